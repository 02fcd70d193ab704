//! The deadline index: everything the correlator must look at again later
//! (an expectation lapsing, a retry window closing, a transaction resting
//! too long at a milestone), ordered by time. One min-heap for all of
//! them, not a task or timer per transaction, so millions of pending
//! deadlines cost one heap slot each. Deadlines are mostly added in time
//! order (now plus a fixed delay), which a heap takes in a compare or two
//! where an ordered map paid a tree insertion (~860 instructions per
//! deadline). Entries are never cancelled: when one
//! comes due, the correlator checks whether it still matters (the expected
//! milestone may have arrived meanwhile) and drops it if not.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::SystemTime;

use crate::config::{Milestone, RouteId};
use crate::extract::Key;

/// What to look at when a deadline comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Expectation `expectation` (index in `Config::expectations`) started
    /// by `exchange` on `object` lapses unless its milestone arrived.
    Expectation {
        expectation: usize,
        object: Key,
        exchange: u64,
    },
    /// The retry window of `route` on `object` closes unless a success came.
    RetryWindow { route: RouteId, object: Key },
    /// The transaction of `object` is stuck if `milestone`, recorded at
    /// `since`, is still its latest.
    Stuck {
        milestone: Milestone,
        object: Key,
        since: SystemTime,
    },
}

/// One deadline: ordered by its time, then by the order it was added in
/// (what it is for takes no part in the order).
#[derive(Debug)]
struct Entry {
    at: SystemTime,
    seq: u64,
    due: Due,
}

impl Entry {
    fn order(&self) -> (SystemTime, u64) {
        (self.at, self.seq)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

/// Deadlines ordered by time; ties keep insertion order.
#[derive(Debug, Default)]
pub struct Schedule {
    queue: BinaryHeap<Reverse<Entry>>,
    next: u64,
}

impl Schedule {
    /// Adds `due` at `at`.
    pub fn add(&mut self, at: SystemTime, due: Due) {
        self.queue.push(Reverse(Entry {
            at,
            seq: self.next,
            due,
        }));
        self.next += 1;
    }

    /// Removes and returns every entry due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: SystemTime) -> Vec<(SystemTime, Due)> {
        let mut due = Vec::new();
        while self.first_at().is_some_and(|at| at <= now) {
            if let Some(Reverse(entry)) = self.queue.pop() {
                due.push((entry.at, entry.due));
            }
        }
        due
    }

    /// When the earliest entry is due.
    pub fn first_at(&self) -> Option<SystemTime> {
        self.queue.peek().map(|Reverse(entry)| entry.at)
    }

    /// Every entry, earliest first (for snapshots: sorted here, once).
    pub fn iter(&self) -> impl Iterator<Item = (SystemTime, &Due)> {
        let mut entries: Vec<&Entry> = self.queue.iter().map(|Reverse(e)| e).collect();
        entries.sort_unstable();
        entries.into_iter().map(|e| (e.at, &e.due))
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{kind, Symbols};
    use std::time::Duration;

    /// An empty schedule, a start time and a retry window of `route` on
    /// order `n` to put in it.
    fn empty() -> (Schedule, SystemTime, impl Fn(usize, &str) -> Due) {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let due = move |route: usize, n: &str| Due::RetryWindow {
            route: RouteId(route),
            object: Key::new(order.clone(), n),
        };
        (Schedule::default(), t0, due)
    }

    #[test]
    fn entries_come_due_in_time_order_and_only_when_due() {
        let (mut schedule, t0, retry) = empty();
        let due = |n: &str| retry(0, n);
        schedule.add(t0 + Duration::from_secs(30), due("late"));
        schedule.add(t0 + Duration::from_secs(10), due("early"));
        schedule.add(t0 + Duration::from_secs(10), due("early-second"));
        assert!(schedule.take_due(t0).is_empty());
        let taken: Vec<Due> = schedule
            .take_due(t0 + Duration::from_secs(10))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(taken, vec![due("early"), due("early-second")]);
        assert_eq!(schedule.len(), 1);
    }

    #[test]
    fn iter_lists_every_entry_in_time_then_insertion_order() {
        let (mut schedule, t0, retry) = empty();
        let due = |n: usize| retry(n, "SO-1");
        // Out of order, with ties: (seconds after t0, what it is).
        let added = [(5, 0), (1, 1), (5, 2), (3, 3), (1, 4), (9, 5), (3, 6)];
        for (s, n) in added {
            schedule.add(t0 + Duration::from_secs(s), due(n));
        }
        let mut expected: Vec<(SystemTime, Due)> = added
            .iter()
            .map(|&(s, n)| (t0 + Duration::from_secs(s), due(n)))
            .collect();
        // A stable sort by time keeps insertion order among ties.
        expected.sort_by_key(|(at, _)| *at);
        let listed: Vec<(SystemTime, Due)> =
            schedule.iter().map(|(at, d)| (at, d.clone())).collect();
        assert_eq!(listed, expected);
        assert_eq!(schedule.first_at(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(schedule.take_due(t0 + Duration::from_secs(100)), expected);
        assert_eq!(schedule.len(), 0);
    }
}

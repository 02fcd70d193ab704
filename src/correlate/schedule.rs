//! The deadline index: everything the correlator must look at again later
//! (an expectation lapsing, a retry window closing, a transaction resting
//! too long at a milestone), ordered by time. One ordered map for all of
//! them, not a task or timer per transaction, so millions of pending
//! deadlines cost one map entry each. Entries are never cancelled: when one
//! comes due, the correlator checks whether it still matters (the expected
//! milestone may have arrived meanwhile) and drops it if not.

use std::collections::BTreeMap;
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

/// Deadlines ordered by time; ties keep insertion order.
#[derive(Debug, Default)]
pub struct Schedule {
    queue: BTreeMap<(SystemTime, u64), Due>,
    next: u64,
}

impl Schedule {
    /// Adds `due` at `at`.
    pub fn add(&mut self, at: SystemTime, due: Due) {
        self.queue.insert((at, self.next), due);
        self.next += 1;
    }

    /// Removes and returns every entry due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: SystemTime) -> Vec<(SystemTime, Due)> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), item) = entry.remove_entry();
            due.push((at, item));
        }
        due
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

    #[test]
    fn entries_come_due_in_time_order_and_only_when_due() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut schedule = Schedule::default();
        let due = |n: &str| Due::RetryWindow {
            route: RouteId(0),
            object: Key::new(order.clone(), n),
        };
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
}

//! The deadline index: everything the correlator must look at again later
//! (an expectation lapsing, a retry window closing, a transaction resting
//! too long at a milestone), ordered by time. One index for all of them,
//! not a task or timer per transaction, so millions of pending deadlines
//! cost one entry each.
//!
//! - **Buckets by second.** Deadlines are mostly added in time order (now
//!   plus a fixed delay), so an entry is appended to the unsorted bucket of
//!   its second, found in an ordered map of seconds. A bucket is sorted
//!   once, when its second comes, and then answers from its front. Nothing
//!   is ever moved whole: a heap of every deadline doubled, copying tens of
//!   megabytes into fresh pages (27–35 ms at 2¹⁸–2¹⁹ entries, held on the
//!   proxy's CPU).
//! - **Entries are never cancelled,** but they do not outlive their
//!   transactions. When one comes due, the correlator checks whether it
//!   still matters (the expected milestone may have arrived meanwhile). And
//!   once the index has doubled since it was last swept, it is swept a few
//!   entries per update ([`Schedule::sweep`]): an entry whose transaction
//!   has left the store (expired, evicted) goes. So the index is bounded
//!   by the store's bound, not by the rate of deadlines times their delay.
//!   A deadline whose transaction left, and whose key a new transaction
//!   took before it came, fires on that one only if no sweep passed it
//!   first.
//! - **An entry remembers where its transaction was held,** and a sweep
//!   keeps it while a transaction is held there, without looking its key
//!   up: a look-up reads the key's text, the key index and a slot, three
//!   cache misses for each entry of an evicted transaction at capacity.
//!   A transaction merged into another is forwarded ([`Schedule::forward`]):
//!   an entry that remembers it is kept for the one it went into, and
//!   remembers that one from then on. A forward is dropped once a whole
//!   sweep that started after it has passed: every entry it could concern
//!   has been re-pointed. An entry that remembers no holder (one restored
//!   from a snapshot whose object was not held) is looked up by key.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, SystemTime};

use crate::clock::Stamp;
use crate::config::{Milestone, RouteId};
use crate::extract::Key;
use crate::state::TxRef;

/// Entries looked at per step of a sweep.
const STEP: usize = 8;

/// Entries tolerated before the first sweep, and besides twice the kept
/// ones before the next.
const SLACK: usize = 1024;

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

impl Due {
    /// The object whose transaction the deadline is about.
    pub fn object(&self) -> &Key {
        match self {
            Due::Expectation { object, .. }
            | Due::RetryWindow { object, .. }
            | Due::Stuck { object, .. } => object,
        }
    }
}

/// One deadline: ordered by its time, then by the order it was added in
/// (what it is for takes no part in the order). `holder` is where the
/// transaction of its object was held when it was added, if known: while
/// that transaction is held, a sweep keeps the entry without a look-up.
#[derive(Debug)]
struct Entry {
    at: Stamp,
    seq: u64,
    holder: Option<TxRef>,
    due: Due,
}

impl Entry {
    fn order(&self) -> (Stamp, u64) {
        (self.at, self.seq)
    }
}

/// Deadlines ordered by time; ties keep insertion order. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct Schedule {
    /// The bucket whose second has come (or an earlier one's leftovers),
    /// sorted: deadlines added for its second (its last entry's) or before
    /// go in at their place.
    head: VecDeque<Entry>,
    /// The buckets of later seconds, unsorted.
    later: BTreeMap<u64, Vec<Entry>>,
    len: usize,
    next: u64,
    /// Where a sweep under way is: a second of `later` and a position in
    /// its bucket.
    sweep: Option<(u64, usize)>,
    /// Entries kept by the last sweep.
    kept: usize,
    /// Where merged transactions went, for the entries that remember them.
    forwards: Forwards,
}

/// Transactions merged into others: absorbed → survivor. `recent` since the
/// sweep under way started (or since the last one ended), `sealed` from
/// before it: once that sweep ends, no entry remembers a transaction in
/// `sealed` (it re-pointed every entry it kept), so `sealed` is dropped.
#[derive(Debug, Default)]
struct Forwards {
    recent: HashMap<TxRef, TxRef>,
    sealed: HashMap<TxRef, TxRef>,
}

impl Forwards {
    /// Where the transaction held at `id` is now held, following merges
    /// (`id` itself when it was not merged).
    fn resolve(&self, mut id: TxRef) -> TxRef {
        // Each forward goes to a transaction held when it was merged into,
        // so a chain has no cycle; bounded all the same.
        for _ in 0..=self.recent.len() + self.sealed.len() {
            match self.recent.get(&id).or_else(|| self.sealed.get(&id)) {
                Some(&next) => id = next,
                None => break,
            }
        }
        id
    }
}

impl Schedule {
    /// Adds `due` at `at`, about the transaction held at `holder` (if
    /// known).
    pub fn add(&mut self, at: SystemTime, holder: Option<TxRef>, due: Due) {
        let at = Stamp::new(at);
        let entry = Entry {
            at,
            seq: self.next,
            holder,
            due,
        };
        self.next += 1;
        self.len += 1;
        let second = second_of(at);
        if self
            .head
            .back()
            .is_some_and(|last| second <= second_of(last.at))
        {
            // Later than everything there (it was added last) unless
            // earlier in time.
            let place = self.head.partition_point(|e| e.order() <= entry.order());
            self.head.insert(place, entry);
            return;
        }
        self.later.entry(second).or_default().push(entry);
    }

    /// Removes and returns every entry due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: SystemTime) -> Vec<(SystemTime, Due)> {
        let mut due = Vec::new();
        let now = Stamp::new(now);
        loop {
            while self.head.front().is_some_and(|e| e.at <= now) {
                if let Some(entry) = self.head.pop_front() {
                    due.push((entry.at.time(), entry.due));
                }
            }
            if !self.head.is_empty() || !self.open_next(second_of(now)) {
                break;
            }
        }
        self.len -= due.len();
        due
    }

    /// Makes the first bucket of `later` the head, sorted, if the head is
    /// empty and that bucket's second is `now` or earlier.
    fn open_next(&mut self, now: u64) -> bool {
        let Some(entry) = self.later.first_entry() else {
            return false;
        };
        if *entry.key() > now {
            return false;
        }
        let (second, mut bucket) = entry.remove_entry();
        if self.sweep.is_some_and(|(at, _)| at == second) {
            self.move_on(second);
        }
        bucket.sort_unstable_by_key(Entry::order);
        self.head = VecDeque::from(bucket);
        true
    }

    /// When the earliest entry is due, or the start of its second while
    /// that has not come yet: never later than the earliest entry.
    pub fn first_at(&self) -> Option<SystemTime> {
        match self.head.front() {
            Some(entry) => Some(entry.at.time()),
            None => self
                .later
                .keys()
                .next()
                .map(|&second| SystemTime::UNIX_EPOCH + Duration::from_secs(second)),
        }
    }

    /// A step of the sweep: once the index has doubled since the last
    /// sweep, [`STEP`] entries of the later buckets are looked at per call
    /// and those for which `keep` (given the entry's holder) is false are
    /// dropped.
    ///
    /// `keep` is given where the entry's transaction is held now, as far
    /// as the schedule knows (its holder, forwarded through merges), or
    /// `None` when the entry remembers no holder.
    ///
    /// A sweep also starts when more transactions were forwarded than
    /// entries are held, so that forwards stay bounded by the index.
    pub fn sweep(&mut self, mut keep: impl FnMut(Option<TxRef>, &Due) -> bool) {
        if self.sweep.is_none()
            && (self.len > 2 * self.kept + SLACK || self.forwards.recent.len() > self.len + SLACK)
        {
            self.kept = 0;
            self.forwards.sealed.extend(self.forwards.recent.drain());
            self.sweep = self.later.keys().next().map(|&second| (second, 0));
            if self.sweep.is_none() {
                // Nothing to sweep: no entry remembers a holder.
                self.forwards.sealed.clear();
            }
        }
        for _ in 0..STEP {
            let Some((second, at)) = self.sweep else {
                return;
            };
            let Some(bucket) = self.later.get_mut(&second) else {
                self.move_on(second);
                continue;
            };
            let Some(entry) = bucket.get_mut(at) else {
                self.leave(second);
                self.move_on(second);
                continue;
            };
            let holder = entry.holder.map(|id| self.forwards.resolve(id));
            if keep(holder, &entry.due) {
                entry.holder = holder;
                self.kept += 1;
                self.sweep = Some((second, at + 1));
            } else {
                bucket.swap_remove(at);
                self.len -= 1;
            }
        }
    }

    /// The transaction held at `from` was merged into the one held at
    /// `into`: entries that remember `from` are about `into` now.
    pub fn forward(&mut self, from: TxRef, into: TxRef) {
        self.forwards.recent.insert(from, into);
    }

    /// The sweep goes on from the bucket after `second`'s; at the end of
    /// the buckets it is over, and the forwards it has re-pointed go.
    fn move_on(&mut self, second: u64) {
        self.sweep = self.next_bucket(second);
        if self.sweep.is_none() {
            self.forwards.sealed.clear();
        }
    }

    /// The sweep is done with the bucket of `second`: an emptied one goes,
    /// one much larger than its entries gives the rest back.
    fn leave(&mut self, second: u64) {
        let Some(bucket) = self.later.get_mut(&second) else {
            return;
        };
        if bucket.is_empty() {
            self.later.remove(&second);
        } else if bucket.len() < bucket.capacity() / 4 {
            bucket.shrink_to_fit();
        }
    }

    /// The first position of the bucket after `second`'s.
    fn next_bucket(&self, second: u64) -> Option<(u64, usize)> {
        self.later
            .range((Bound::Excluded(second), Bound::Unbounded))
            .next()
            .map(|(&second, _)| (second, 0))
    }

    /// Every entry, earliest first (for snapshots: sorted here, once).
    pub fn iter(&self) -> impl Iterator<Item = (SystemTime, &Due)> {
        let mut entries: Vec<&Entry> = self
            .head
            .iter()
            .chain(self.later.values().flatten())
            .collect();
        entries.sort_unstable_by_key(|e| e.order());
        entries.into_iter().map(|e| (e.at.time(), &e.due))
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// The second of `at` since the epoch.
fn second_of(at: Stamp) -> u64 {
    at.nanos() / 1_000_000_000
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
        schedule.add(t0 + Duration::from_secs(30), None, due("late"));
        schedule.add(t0 + Duration::from_secs(10), None, due("early"));
        schedule.add(t0 + Duration::from_secs(10), None, due("early-second"));
        assert!(schedule.take_due(t0).is_empty());
        let taken: Vec<Due> = schedule
            .take_due(t0 + Duration::from_secs(10))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(taken, vec![due("early"), due("early-second")]);
        assert_eq!(schedule.len(), 1);
    }

    /// What a model of the schedule holds: (time, order added, object
    /// number), for `n` entries added.
    type Model = Vec<(SystemTime, u64, usize)>;

    /// The object number of a retry window due made by `empty`.
    fn number(due: &Due) -> usize {
        due.object()
            .value
            .trim_start_matches("SO-")
            .parse()
            .expect("SO-n")
    }

    #[test]
    fn random_adds_come_due_in_order_with_sweeps_dropping_only_gone_objects() {
        let (mut schedule, t0, retry) = empty();
        let mut rng = crate::test_rng::Rng(0x5eed_cafe_f00d_0001);
        // Only objects whose number is a multiple of 4 are in the store
        // (most transactions with a deadline pending were evicted).
        let live = |object: usize| object % 4 == 0;
        let mut model: Model = Vec::new();
        let mut now = t0;
        let (mut taken, mut gone_due, mut gone_taken) = (0, 0, 0);
        for n in 0..40_000usize {
            // Mostly ahead of now (a few seconds, or the same instant), some
            // behind it; a tenth of the time to the nanosecond of another.
            let at = match rng.below(10) {
                0 => model.get(rng.below(model.len())).map_or(now, |m| m.0),
                1 => now - Duration::from_millis(rng.below(3_000) as u64),
                _ => now + Duration::from_millis(rng.below(600_000) as u64),
            };
            schedule.add(at, None, retry(0, &format!("SO-{n}")));
            model.push((at, n as u64, n));
            schedule.sweep(|_, due| live(number(due)));
            if rng.below(20) == 0 {
                now += Duration::from_millis(rng.below(3_000) as u64);
                let first = schedule.first_at();
                // Never after the earliest entry not swept away.
                let earliest = model.iter().filter(|m| live(m.2)).map(|m| m.0).min();
                assert!(
                    earliest.is_none_or(|e| first.is_some_and(|f| f <= e)),
                    "first_at {first:?} after {earliest:?}"
                );
                let due = schedule.take_due(now);
                model.sort_by_key(|&(at, seq, _)| (at, seq));
                let split = model.partition_point(|m| m.0 <= now);
                let expected: Vec<usize> = model.drain(..split).map(|m| m.2).collect();
                let got: Vec<usize> = due.iter().map(|(_, d)| number(d)).collect();
                // Everything taken was due, in order; only gone objects may
                // be missing from what was due.
                assert!(due.iter().all(|(at, _)| *at <= now));
                let mut expected_left = expected.iter().copied();
                for object in &got {
                    assert!(
                        expected_left.any(|e| e == *object),
                        "{object} taken out of order"
                    );
                }
                let kept = |objects: &[usize]| -> Vec<usize> {
                    objects.iter().copied().filter(|&o| live(o)).collect()
                };
                assert_eq!(kept(&got), kept(&expected), "at add {n}");
                taken += got.len();
                gone_due += expected.len() - kept(&expected).len();
                gone_taken += got.len() - kept(&got).len();
            }
        }
        // Swept: the schedule holds at most the live entries twice over, not
        // every entry added and not yet due.
        let held = model.iter().filter(|m| live(m.2)).count();
        assert!(
            schedule.len() <= 2 * held + SLACK + model.len() / 4,
            "{} entries held for {held} live of {}",
            schedule.len(),
            model.len()
        );
        let rest: Vec<usize> = schedule
            .take_due(now + Duration::from_secs(3_600))
            .iter()
            .map(|(_, d)| number(d))
            .filter(|&o| live(o))
            .collect();
        model.sort_by_key(|&(at, seq, _)| (at, seq));
        let expected: Vec<usize> = model.iter().map(|m| m.2).filter(|&o| live(o)).collect();
        assert_eq!(rest, expected);
        assert_eq!(schedule.len(), 0);
        assert!(taken > 10_000, "only {taken} came due on the way");
        // Most entries of gone objects were swept before they came due.
        assert!(
            gone_taken < gone_due / 2,
            "{gone_taken} of {gone_due} gone entries came due"
        );
    }

    #[test]
    fn a_sweep_drops_what_is_gone_once_the_index_doubled_and_not_before() {
        let (mut schedule, t0, retry) = empty();
        let add = |schedule: &mut Schedule, n: usize| {
            let at = t0 + Duration::from_millis(10 * n as u64);
            schedule.add(at, None, retry(0, &format!("SO-{n}")));
        };
        for n in 0..10_000 {
            add(&mut schedule, n);
        }
        let odd = |due: &Due| number(due) % 2 == 1;
        // 10 000 entries over 100 seconds: a step per 8 entries and one more
        // per bucket left.
        for _ in 0..(10_000 / STEP + 101) {
            schedule.sweep(|_, due| odd(due));
        }
        assert_eq!(schedule.len(), 5_000);
        // Kept 5 000: the next sweep waits for 2 × 5 000 + SLACK entries,
        // whatever it would drop.
        for n in 10_000..12_000 {
            add(&mut schedule, n);
            schedule.sweep(|_, _| false);
        }
        assert_eq!(schedule.len(), 7_000);
        let due: Vec<usize> = schedule
            .take_due(t0 + Duration::from_secs(1_000))
            .iter()
            .map(|(_, d)| number(d))
            .collect();
        let expected: Vec<usize> = (0..12_000).filter(|n| *n >= 10_000 || n % 2 == 1).collect();
        assert_eq!(due, expected);
    }

    /// Sweeps until the sweep under way (if any) is over; returns the
    /// holders `keep` was given.
    fn sweep_through(
        schedule: &mut Schedule,
        keep: impl Fn(Option<TxRef>) -> bool,
    ) -> Vec<Option<TxRef>> {
        let mut seen = Vec::new();
        // The first call starts the sweep; the rest take it to its end.
        loop {
            schedule.sweep(|holder, _| {
                seen.push(holder);
                keep(holder)
            });
            if schedule.sweep.is_none() {
                return seen;
            }
        }
    }

    #[test]
    fn entries_follow_merged_transactions_and_forwards_go_after_a_whole_sweep() {
        let (mut schedule, t0, retry) = empty();
        let tx = |n: u32| TxRef::for_test(n, n);
        let add = |schedule: &mut Schedule, n: usize, holder: u32| {
            let at = t0 + Duration::from_millis(10 * n as u64);
            schedule.add(at, Some(tx(holder)), retry(0, &format!("SO-{n}")));
        };
        // 2 000 entries over 20 seconds, 20 for each of transactions 0-99.
        for n in 0..2_000 {
            add(&mut schedule, n, (n % 100) as u32);
        }
        // 0 went into 1 and 1 into 2 (a chain), 50 into 51; 60-99 left the
        // store.
        schedule.forward(tx(0), tx(1));
        schedule.forward(tx(1), tx(2));
        schedule.forward(tx(50), tx(51));
        let held =
            |holder: Option<TxRef>| (2..60).filter(|&n| n != 50).any(|n| holder == Some(tx(n)));
        let seen = sweep_through(&mut schedule, held);
        assert_eq!(seen.len(), 2_000, "every entry looked at once");
        assert_eq!(seen.iter().filter(|h| **h == Some(tx(2))).count(), 60);
        assert_eq!(seen.iter().filter(|h| **h == Some(tx(51))).count(), 40);
        assert_eq!(schedule.len(), 1_200, "those of 60-99 dropped");
        // The sweep re-pointed what it kept: the forwards are gone, and the
        // next sweep finds the entries of 0, 1 and 50 at 2 and 51.
        assert!(schedule.forwards.recent.is_empty() && schedule.forwards.sealed.is_empty());
        for n in 2_000..5_000 {
            add(&mut schedule, n, 3);
        }
        let seen = sweep_through(&mut schedule, held);
        assert_eq!(seen.len(), 4_200);
        assert_eq!(seen.iter().filter(|h| **h == Some(tx(2))).count(), 60);
        assert_eq!(seen.iter().filter(|h| **h == Some(tx(51))).count(), 40);
        assert_eq!(schedule.len(), 4_200);
    }

    #[test]
    fn forwards_stay_bounded_by_the_index() {
        let (mut schedule, t0, retry) = empty();
        let tx = |n: u32| TxRef::for_test(n, n);
        schedule.add(t0 + Duration::from_secs(60), Some(tx(0)), retry(0, "SO-0"));
        // Merges without end, and a schedule too small ever to double.
        for n in 1..20_000u32 {
            schedule.forward(tx(n), tx(n + 1));
            schedule.sweep(|_, _| true);
            let forwards = schedule.forwards.recent.len() + schedule.forwards.sealed.len();
            assert!(
                forwards <= schedule.len() + SLACK + 1,
                "{forwards} forwards"
            );
        }
        assert_eq!(schedule.len(), 1);
    }

    #[test]
    fn iter_lists_every_entry_in_time_then_insertion_order() {
        let (mut schedule, t0, retry) = empty();
        let due = |n: usize| retry(n, "SO-1");
        // Out of order, with ties: (seconds after t0, what it is).
        let added = [(5, 0), (1, 1), (5, 2), (3, 3), (1, 4), (9, 5), (3, 6)];
        for (s, n) in added {
            schedule.add(t0 + Duration::from_secs(s), None, due(n));
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

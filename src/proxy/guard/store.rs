//! The store of one guarded route: idempotency key → the first response
//! given for it, or a marker that the first request is still in flight.
//!
//! Pure bookkeeping, no I/O and no metrics: the caller passes the time in
//! and gets back what was evicted, so expiry and eviction are tested here
//! with plain values.
//!
//! - A stored response answers for `window` after it was stored; the oldest
//!   expired entries are swept on every call (amortised O(1): entries are
//!   kept in the order they were stored, which is time order unless the
//!   clock steps back, and an expired entry found out of order is removed
//!   when it is looked up).
//! - At most `max_entries` responses are stored; storing one more evicts the
//!   oldest. In-flight markers are not counted: there is one per request
//!   being forwarded, bounded by the connections the listener holds.
//! - A marker belongs to a claim `token`; only that claim can store over it
//!   or release it, so a late release never removes someone else's entry.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

/// What a key maps to.
enum Entry<V> {
    /// The first request with this key is being forwarded. Waiters hold a
    /// clone of `done`; it closes when the claim's sender is dropped.
    InFlight {
        token: u64,
        done: watch::Receiver<()>,
    },
    /// The first response, stored at `at`; `seq` is its place in `order`.
    Stored { seq: u64, at: SystemTime, value: V },
}

/// The answer to [`Store::lookup`].
pub(super) enum Lookup<V> {
    /// A stored response, within the window.
    Stored(V),
    /// Another request with this key is in flight; `changed()` on this
    /// receiver returns (with an error) when it is over.
    InFlight(watch::Receiver<()>),
    /// Nothing was stored: the caller now holds the key. It must
    /// [`commit`](Store::commit) or [`release`](Store::release) with
    /// `token` and drop `done` afterwards, which wakes the waiters.
    Claimed { token: u64, done: watch::Sender<()> },
}

/// Entries a call removed, by reason (for the eviction counter), and
/// their keys (so a store beyond memory can forget them too).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Evicted {
    pub(super) expired: u64,
    pub(super) capacity: u64,
    pub(super) keys: Vec<Bytes>,
}

/// Stored responses of one route, bounded in count and age.
pub(super) struct Store<V> {
    window: Duration,
    max_entries: usize,
    entries: HashMap<Bytes, Entry<V>>,
    /// Stored entries (not in-flight markers) by `seq`, oldest first.
    order: BTreeMap<u64, Bytes>,
    /// Source of claim tokens and stored-entry sequence numbers.
    next: u64,
}

impl<V: Clone> Store<V> {
    pub(super) fn new(window: Duration, max_entries: usize) -> Self {
        Store {
            window,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Stored responses (in-flight markers not counted).
    pub(super) fn stored(&self) -> usize {
        self.order.len()
    }

    /// What `key` maps to at `now`; claims it when nothing usable is stored.
    pub(super) fn lookup(&mut self, key: &Bytes, now: SystemTime) -> (Lookup<V>, Evicted) {
        let mut evicted = self.sweep(now);
        let expired_at = match self.entries.get(key) {
            Some(Entry::InFlight { done, .. }) => {
                return (Lookup::InFlight(done.clone()), evicted);
            }
            Some(Entry::Stored { seq, at, value }) => {
                if !self.expired(*at, now) {
                    return (Lookup::Stored(value.clone()), evicted);
                }
                Some(*seq)
            }
            None => None,
        };
        if let Some(seq) = expired_at {
            // Only when the clock stepped back: the sweep takes the rest.
            self.order.remove(&seq);
            evicted.expired += 1;
            evicted.keys.push(key.clone());
        }
        let token = self.take_seq();
        let (done, waiting) = watch::channel(());
        self.entries.insert(
            key.clone(),
            Entry::InFlight {
                token,
                done: waiting,
            },
        );
        (Lookup::Claimed { token, done }, evicted)
    }

    /// Stores `value`, the response for `key` given at `at`, if `token`
    /// still holds the key; evicts the oldest entries to stay within
    /// `max_entries`. Returns whether it was stored.
    pub(super) fn commit(
        &mut self,
        key: &Bytes,
        token: u64,
        value: V,
        at: SystemTime,
        now: SystemTime,
    ) -> (bool, Evicted) {
        let mut evicted = self.sweep(now);
        if !self.holds(key, token) {
            return (false, evicted);
        }
        self.insert(key, value, at, &mut evicted);
        (true, evicted)
    }

    /// Puts back `value`, the response for `key` given at `at`, kept by a
    /// previous run (oldest first): unless it has expired or the key is
    /// already held. Returns whether it was stored.
    pub(super) fn restore(
        &mut self,
        key: &Bytes,
        value: V,
        at: SystemTime,
        now: SystemTime,
    ) -> (bool, Evicted) {
        let mut evicted = self.sweep(now);
        if self.expired(at, now) || self.entries.contains_key(key) {
            return (false, evicted);
        }
        self.insert(key, value, at, &mut evicted);
        (true, evicted)
    }

    fn insert(&mut self, key: &Bytes, value: V, at: SystemTime, evicted: &mut Evicted) {
        while self.order.len() >= self.max_entries {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            evicted.capacity += 1;
            evicted.keys.push(oldest);
        }
        let seq = self.take_seq();
        self.order.insert(seq, key.clone());
        self.entries
            .insert(key.clone(), Entry::Stored { seq, at, value });
    }

    /// Gives up the claim `token` on `key` without storing anything (the
    /// first request failed, was not 2xx, or its response was too large).
    pub(super) fn release(&mut self, key: &Bytes, token: u64) {
        if self.holds(key, token) {
            self.entries.remove(key);
        }
    }

    fn holds(&self, key: &Bytes, token: u64) -> bool {
        matches!(self.entries.get(key), Some(Entry::InFlight { token: t, .. }) if *t == token)
    }

    fn expired(&self, at: SystemTime, now: SystemTime) -> bool {
        // A clock that stepped back makes the entry younger, not expired.
        now.duration_since(at).unwrap_or_default() >= self.window
    }

    /// Removes expired entries from the oldest on, stopping at the first
    /// one still valid.
    fn sweep(&mut self, now: SystemTime) -> Evicted {
        let mut evicted = Evicted::default();
        while let Some((&seq, key)) = self.order.first_key_value() {
            let expired = match self.entries.get(key) {
                Some(Entry::Stored { seq: s, at, .. }) if *s == seq => self.expired(*at, now),
                // Cannot happen (`order` only names stored entries); drop
                // the stale index entry rather than stop sweeping.
                _ => {
                    self.order.pop_first();
                    continue;
                }
            };
            if !expired {
                break;
            }
            if let Some((_, key)) = self.order.pop_first() {
                self.entries.remove(&key);
                evicted.expired += 1;
                evicted.keys.push(key);
            }
        }
        evicted
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    /// Claims `k` and stores `value` for it at `now`.
    fn store(
        s: &mut Store<&'static str>,
        k: &str,
        value: &'static str,
        now: SystemTime,
    ) -> Evicted {
        let (Lookup::Claimed { token, .. }, _) = s.lookup(&key(k), now) else {
            panic!("{k} should be free");
        };
        let (stored, evicted) = s.commit(&key(k), token, value, now, now);
        assert!(stored);
        evicted
    }

    #[test]
    fn a_stored_response_answers_within_the_window_and_not_after() {
        let mut s = Store::new(Duration::from_secs(60), 10);
        store(&mut s, "a", "first", at(0));
        assert!(matches!(
            s.lookup(&key("a"), at(59)).0,
            Lookup::Stored("first")
        ));
        let (found, evicted) = s.lookup(&key("a"), at(60));
        assert!(matches!(found, Lookup::Claimed { .. }));
        assert_eq!(evicted.expired, 1);
        assert_eq!(s.stored(), 0);
    }

    #[test]
    fn storing_past_max_entries_evicts_the_oldest() {
        let mut s = Store::new(Duration::from_secs(60), 2);
        store(&mut s, "a", "A", at(0));
        store(&mut s, "b", "B", at(1));
        let evicted = store(&mut s, "c", "C", at(2));
        assert_eq!(evicted.capacity, 1);
        assert_eq!(s.stored(), 2);
        assert!(matches!(s.lookup(&key("b"), at(3)).0, Lookup::Stored("B")));
        assert!(matches!(s.lookup(&key("c"), at(3)).0, Lookup::Stored("C")));
        assert!(matches!(
            s.lookup(&key("a"), at(3)).0,
            Lookup::Claimed { .. }
        ));
    }

    #[test]
    fn a_key_in_flight_is_not_claimed_twice_and_waiters_wake_when_it_is_released() {
        let mut s = Store::<&str>::new(Duration::from_secs(60), 2);
        let (Lookup::Claimed { token, done }, _) = s.lookup(&key("a"), at(0)) else {
            panic!("free");
        };
        let (Lookup::InFlight(waiting), _) = s.lookup(&key("a"), at(0)) else {
            panic!("in flight");
        };
        s.release(&key("a"), token);
        drop(done);
        assert!(waiting.has_changed().is_err(), "closed when released");
        assert!(matches!(
            s.lookup(&key("a"), at(0)).0,
            Lookup::Claimed { .. }
        ));
    }

    #[test]
    fn a_stale_claim_neither_stores_nor_releases_the_next_claim() {
        let mut s = Store::new(Duration::from_secs(60), 2);
        let (Lookup::Claimed { token: old, .. }, _) = s.lookup(&key("a"), at(0)) else {
            panic!("free");
        };
        s.release(&key("a"), old);
        let (Lookup::Claimed { token: new, .. }, _) = s.lookup(&key("a"), at(0)) else {
            panic!("free again");
        };
        s.release(&key("a"), old);
        assert!(!s.commit(&key("a"), old, "stale", at(0), at(0)).0);
        assert!(s.commit(&key("a"), new, "fresh", at(0), at(0)).0);
        assert!(matches!(
            s.lookup(&key("a"), at(1)).0,
            Lookup::Stored("fresh")
        ));
    }

    #[test]
    fn expired_entries_are_swept_oldest_first_even_when_not_looked_up() {
        let mut s = Store::new(Duration::from_secs(10), 10);
        store(&mut s, "a", "A", at(0));
        store(&mut s, "b", "B", at(5));
        store(&mut s, "c", "C", at(12));
        assert_eq!(s.stored(), 2, "a expired when c was stored");
        let (_, evicted) = s.lookup(&key("x"), at(16));
        assert_eq!(evicted.expired, 1, "b expired at 15");
        assert_eq!(s.stored(), 1);
    }

    #[test]
    fn a_clock_stepping_back_does_not_expire_entries() {
        let mut s = Store::new(Duration::from_secs(10), 10);
        store(&mut s, "a", "A", at(100));
        assert!(matches!(s.lookup(&key("a"), at(50)).0, Lookup::Stored("A")));
    }

    #[test]
    fn restored_responses_answer_until_their_own_window_ends_and_stay_within_capacity() {
        let mut s = Store::new(Duration::from_secs(10), 2);
        let (restored, _) = s.restore(&key("old"), "O", at(0), at(20));
        assert!(!restored, "expired before the restart");
        assert!(s.restore(&key("a"), "A", at(12), at(20)).0);
        assert!(s.restore(&key("b"), "B", at(14), at(20)).0);
        let (restored, evicted) = s.restore(&key("c"), "C", at(15), at(20));
        assert!(restored);
        assert_eq!(evicted.keys, vec![key("a")], "the oldest made room");
        assert!(matches!(s.lookup(&key("b"), at(23)).0, Lookup::Stored("B")));
        let (found, evicted) = s.lookup(&key("b"), at(24));
        assert!(matches!(found, Lookup::Claimed { .. }), "b was given at 14");
        assert_eq!(evicted.keys, vec![key("b")]);
    }
}

//! The expiry order: which transaction was updated least recently (the
//! next to expire by TTL, or to evict when the store is full).
//!
//! A min-heap of (time, id) with one entry per transaction, pushed when
//! the transaction is created and not touched when it is updated: an
//! entry's time is never later than its transaction's last update. When
//! the top entry's transaction was updated since, the entry moves down
//! to the time of that update ([`Heap::replace_top`]) and the next one is
//! looked at; the top whose time is its transaction's last update is the
//! least recently updated transaction, exactly: every other transaction
//! was updated at or after its own entry's time, which is not earlier.
//! An update costs nothing here, and a transaction updated many times
//! between two visits of the top moves down once.
//!
//! Until session 16 every update pushed an entry and left the one before
//! behind, stale: with the common pair of an exchange that creates a
//! transaction and one that updates it, the heap held two entries per
//! transaction, a third of them stale, and was rebuilt from the store's
//! slots every ~100 k exchanges at 200 k live transactions.
//!
//! The entry of a transaction that left the store (evicted, expired, or
//! merged into another) is dropped when it reaches the top, or replaced
//! there by the next new transaction's (a full store evicts its oldest
//! for each new one: one sift, where a push and a pop took two). Those of
//! merged transactions can linger; when they make up a third of the heap,
//! a new heap is built from the live transactions. Built at once, that
//! held the correlator (and with it, on one CPU, the proxy) for ~10 ms at
//! 200 k live transactions, so it is built [`STEP`] slots at a time, one
//! step per update of the store, while the heap in use goes on answering,
//! and every push goes to both: the new heap holds, for every
//! transaction, an entry no later than its last update (read from its
//! slot, or pushed since), and takes over once every slot has been read.
//! Both heaps are held in chunks ([`Heap`]): growing never copies one
//! whole.

use std::time::SystemTime;

use super::heap::Heap;
use super::slab::Slab;
use super::{Stamp, TxRef};

/// Stale entries tolerated besides the live ones before a rebuild.
pub(super) const SLACK: usize = 1024;

/// Slots read into a heap being rebuilt per step ([`Expiry::compact`]).
const STEP: u32 = 8;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Expiry {
    heap: Heap<(Stamp, TxRef)>,
    /// The heap being rebuilt, if one is.
    rebuild: Option<Rebuild>,
}

/// A heap being built from the store's slots, and the next slot to read.
struct Rebuild {
    heap: Heap<(Stamp, TxRef)>,
    next: u32,
}

impl Expiry {
    /// Transaction `id` of `transactions` was created (or restored) at
    /// `at`, its last update. Later updates are not pushed (see the module
    /// documentation). When the top entry's transaction is gone (a full
    /// store has just evicted it for this one), the new entry takes its
    /// place: one sift instead of a push now and a pop later.
    pub(super) fn push(&mut self, at: Stamp, id: TxRef, transactions: &Slab) {
        match self.heap.peek() {
            Some((_, top)) if !transactions.holds(top) => self.heap.replace_top((at, id)),
            _ => self.heap.push((at, id)),
        }
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.heap.push((at, id));
        }
    }

    /// The least recently updated of `transactions` (the first created of
    /// those updated at the same time, see [`TxRef`]): when it was last
    /// updated, and where it is.
    pub(super) fn oldest(&mut self, transactions: &Slab) -> Option<(SystemTime, TxRef)> {
        while let Some((at, id)) = self.heap.peek() {
            match transactions.get(id).map(|tx| tx.last_updated) {
                None => {
                    self.heap.pop();
                }
                Some(updated) if updated > at => self.heap.replace_top((updated, id)),
                Some(updated) => return Some((updated.time(), id)),
            }
        }
        None
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Starts rebuilding the heap from `transactions` when entries of
    /// transactions gone outnumber half the live ones, and takes a step of
    /// a rebuild under way: [`STEP`] slots read (amortized: the reads of
    /// one rebuild are spread over that many updates).
    pub(super) fn compact(&mut self, transactions: &Slab) {
        let live = transactions.len();
        if self.rebuild.is_none() && self.heap.len() > live + live / 2 + SLACK {
            self.rebuild = Some(Rebuild {
                heap: Heap::default(),
                next: 0,
            });
        }
        let Some(rebuild) = &mut self.rebuild else {
            return;
        };
        let slots = transactions.slots();
        let end = rebuild.next.saturating_add(STEP).min(slots);
        for (at, tx) in (rebuild.next..end).filter_map(|slot| transactions.at_slot(slot)) {
            rebuild.heap.push((tx.last_updated, at));
        }
        rebuild.next = end;
        if end == slots {
            if let Some(done) = self.rebuild.take() {
                self.heap = done.heap;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{kind, Symbols};
    use crate::extract::Key;
    use crate::state::{Transaction, TxId};
    use std::time::{Duration, SystemTime};

    fn stamp(s: u64) -> Stamp {
        Stamp::new(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    /// The least recently updated of `slab`'s transactions, by looking at
    /// every one.
    fn oldest_of(slab: &Slab) -> Option<(SystemTime, TxRef)> {
        slab.iter()
            .map(|(at, tx)| (tx.last_updated, at))
            .min()
            .map(|(last, at)| (last.time(), at))
    }

    #[test]
    fn the_oldest_stays_exact_with_updates_unpushed_and_a_rebuild_bounds_the_gone() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let mut slab = Slab::default();
        let mut expiry = Expiry::default();
        let mut held: Vec<TxRef> = Vec::new();
        let mut rebuilds = 0;
        let mut next_id = 0;
        let mut most = 0;
        // Transactions created, updated (no push: the slot's time alone
        // changes), some removed from the middle of the order (as a merge
        // removes the absorbed one: its entry stays behind) and, once
        // 3 000 are held, the oldest evicted for each new one, as a full
        // store does.
        for now in 0..60_000u64 {
            let rebuilding = expiry.rebuild.is_some();
            expiry.compact(&slab);
            if rebuilding && expiry.rebuild.is_none() {
                rebuilds += 1;
            }
            match now % 10 {
                0 | 4 | 7 => {
                    if held.len() == 3_000 {
                        let (_, oldest) = expiry.oldest(&slab).expect("held");
                        assert!(slab.remove(oldest).is_some());
                        held.retain(|&at| at != oldest);
                    }
                    next_id += 1;
                    let name = Key::new(order.clone(), format!("SO-{next_id}").as_str());
                    let mut tx = Transaction::new(TxId(next_id), name, SystemTime::UNIX_EPOCH);
                    tx.last_updated = stamp(now);
                    let at = slab.insert(tx);
                    expiry.push(stamp(now), at, &slab);
                    held.push(at);
                }
                _ if held.is_empty() => {}
                3 | 8 => {
                    let gone = held.remove((now as usize * 7907) % held.len());
                    assert!(slab.remove(gone).is_some());
                }
                _ => {
                    let at = held[(now as usize * 7919) % held.len()];
                    if let Some(tx) = slab.get_mut(at) {
                        tx.last_updated = stamp(now);
                    }
                }
            }
            if now % 8 == 0 {
                assert_eq!(expiry.oldest(&slab), oldest_of(&slab), "at {now}");
            }
            let live = slab.len();
            // Bounded by the rebuild's trigger plus the pushes of one
            // rebuild (one per step, a step per STEP slots).
            let steps = slab.slots().div_ceil(STEP) as usize + 1;
            assert!(expiry.len() <= live + live / 2 + SLACK + steps, "at {now}");
            most = most.max(expiry.len());
        }
        assert!(rebuilds >= 3, "{rebuilds} rebuilds");
        // The gone entries made it grow past one per transaction.
        assert!(most > 3_000 + SLACK, "at most {most} entries");
    }
}

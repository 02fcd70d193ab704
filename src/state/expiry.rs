//! The expiry order: which transaction was updated least recently (the
//! next to expire by TTL, or to evict when the store is full).
//!
//! A min-heap of (last update, id), pushed on every update and never
//! searched: an update pushes a new entry and leaves the old one behind,
//! stale. Stale entries (the transaction was updated since, or is gone)
//! are recognised and dropped when they reach the top, so the top is
//! exact, as an ordered set's first entry would be. Pushing a recent time
//! is a compare or two (it stays at the bottom), where an ordered set
//! paid a removal and an insertion (~700 instructions) per update.
//!
//! When stale entries make up a third of the heap, a new heap is built
//! from the live transactions, which bounds it to 16 bytes × 1.5 per
//! transaction. Built at once, that held the correlator (and with it, on
//! one CPU, the proxy) for ~10 ms at 200 k live transactions, every 100 k
//! updates. So it is built [`STEP`] slots at a time, one step per update
//! of the store, while the heap in use goes on answering, and every push
//! goes to both: the new heap holds, for every transaction, at least the
//! entry of its last update (read from its slot, or pushed since), and
//! takes over once every slot has been read. Both heaps are held in
//! chunks ([`Heap`]): growing never copies one whole.

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
    /// Transaction `id` was last updated at `at` (later than any earlier
    /// push for it).
    pub(super) fn push(&mut self, at: Stamp, id: TxRef) {
        self.heap.push((at, id));
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.heap.push((at, id));
        }
    }

    /// The least recently updated of `transactions` (the first created of
    /// those updated at the same time, see [`TxRef`]): when it was last
    /// updated, and where it is.
    pub(super) fn oldest(&mut self, transactions: &Slab) -> Option<(SystemTime, TxRef)> {
        while let Some((at, id)) = self.heap.peek() {
            if current(transactions, at, id) {
                return Some((at.time(), id));
            }
            self.heap.pop();
        }
        None
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Starts rebuilding the heap from `transactions` when stale entries
    /// outnumber half the live ones, and takes a step of a rebuild under
    /// way: [`STEP`] slots read (amortized: the reads of one rebuild are
    /// spread over that many updates).
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

/// Whether (`at`, `id`) is the current entry of a held transaction.
fn current(transactions: &Slab, at: Stamp, id: TxRef) -> bool {
    transactions.get(id).is_some_and(|tx| tx.last_updated == at)
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
    fn a_rebuild_spread_over_updates_keeps_the_oldest_exact_and_the_heap_bounded() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let mut slab = Slab::default();
        let mut expiry = Expiry::default();
        let mut held: Vec<TxRef> = Vec::new();
        let mut rebuilds = 0;
        let mut next_id = 0;
        // Transactions created, updated (each update leaves a stale entry)
        // and, once 400 are held, the oldest evicted for each new one, as a
        // full store does.
        for now in 0..30_000u64 {
            let rebuilding = expiry.rebuild.is_some();
            expiry.compact(&slab);
            if rebuilding && expiry.rebuild.is_none() {
                rebuilds += 1;
            }
            if now % 10 == 0 {
                if held.len() == 400 {
                    let (_, oldest) = expiry.oldest(&slab).expect("held");
                    assert!(slab.remove(oldest).is_some());
                    held.retain(|&at| at != oldest);
                }
                next_id += 1;
                let name = Key::new(order.clone(), format!("SO-{next_id}").as_str());
                let mut tx = Transaction::new(TxId(next_id), name, SystemTime::UNIX_EPOCH);
                tx.last_updated = stamp(now);
                let at = slab.insert(tx);
                expiry.push(stamp(now), at);
                held.push(at);
            } else {
                let at = held[(now as usize * 7919) % held.len()];
                if let Some(tx) = slab.get_mut(at) {
                    tx.last_updated = stamp(now);
                }
                expiry.push(stamp(now), at);
            }
            assert_eq!(expiry.oldest(&slab), oldest_of(&slab), "at {now}");
            let live = slab.len();
            // Bounded by the rebuild's trigger plus the pushes of one
            // rebuild (one per step, a step per STEP slots).
            let steps = slab.slots().div_ceil(STEP) as usize + 1;
            assert!(expiry.len() <= live + live / 2 + SLACK + steps, "at {now}");
        }
        assert!(rebuilds >= 3, "{rebuilds} rebuilds");
    }
}

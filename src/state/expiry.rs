//! The expiry order: which transaction was updated least recently (the
//! next to expire by TTL, or to evict when the store is full).
//!
//! A min-heap of (last update, id), pushed on every update and never
//! searched: an update pushes a new entry and leaves the old one behind,
//! stale. Stale entries (the transaction was updated since, or is gone)
//! are recognised and dropped when they reach the top, so the top is
//! exact, as an ordered set's first entry would be. Pushing a recent time
//! is a compare or two (it stays at the bottom), where an ordered set
//! paid a removal and an insertion (~700 instructions) per update. The heap
//! is rebuilt from the live transactions when stale entries make up a
//! third of it, which bounds it to 16 bytes × 1.5 per transaction.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::SystemTime;

use super::slab::Slab;
use super::{Stamp, TxRef};

/// Stale entries tolerated besides the live ones before a rebuild.
pub(super) const SLACK: usize = 1024;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Expiry {
    heap: BinaryHeap<Reverse<(Stamp, TxRef)>>,
}

impl Expiry {
    /// Transaction `id` was last updated at `at` (later than any earlier
    /// push for it).
    pub(super) fn push(&mut self, at: Stamp, id: TxRef) {
        self.heap.push(Reverse((at, id)));
    }

    /// The least recently updated of `transactions` (the first created of
    /// those updated at the same time, see [`TxRef`]): when it was last
    /// updated, and where it is.
    pub(super) fn oldest(&mut self, transactions: &Slab) -> Option<(SystemTime, TxRef)> {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
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

    /// Rebuilds the heap from `transactions` when stale entries outnumber
    /// half the live ones (amortized: one rebuild per that many pushes).
    pub(super) fn compact(&mut self, transactions: &Slab) {
        let live = transactions.len();
        if self.heap.len() <= live + live / 2 + SLACK {
            return;
        }
        self.heap = transactions
            .iter()
            .map(|(at, tx)| Reverse((tx.last_updated, at)))
            .collect();
    }
}

/// Whether (`at`, `id`) is the current entry of a held transaction.
fn current(transactions: &Slab, at: Stamp, id: TxRef) -> bool {
    transactions.get(id).is_some_and(|tx| tx.last_updated == at)
}

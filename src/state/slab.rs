//! Where a store's transactions are held: in place, in chunks of
//! [`CHUNK`] slots, each addressed by its slot ([`TxRef`]).
//!
//! A transaction was a `Box` in a hash map from its id: 16 bytes of map
//! entry (plus control byte and the table's empty slots, ~35 bytes at a
//! million) and a 176-byte record in jemalloc's 192-byte class, with a
//! hash look-up for every access and an allocation per new transaction.
//! Here a transaction is held in its slot (176 bytes, no rounding), found
//! by indexing, and a new one takes a freed slot or the next one. Chunks
//! of a fixed size rather than one growing `Vec`: growing never copies
//! the transactions held, nor leaves a freed copy of them behind. A chunk
//! whose last transaction leaves is freed (a burst's chunks go back once
//! it has expired) and allocated again when one of its slots is taken.
//!
//! A [`TxRef`] carries the low 32 bits of its transaction's [`TxId`] (the
//! store's sequence number, which snapshots keep): a reference to a slot
//! since emptied and reused finds nothing rather than another transaction
//! (short of 2³² transactions created in between), and references order
//! as the transactions were created (ties of the expiry order).
//!
//! Each chunk also keeps its slots' tags apart, 4 bytes a slot: the tag of
//! the transaction held, or its complement once the slot is emptied.
//! [`Slab::holds`] answers from them whether a reference still finds its
//! transaction without reading the slot: the deadline schedule's sweep
//! asks that of every entry (and the expiry order of its top), and at a
//! million live transactions the tags (4 MB) stay in the cache where the
//! slots (176 MB) do not.

use super::{Transaction, TxId};

/// Slots per chunk (a power of two): 512 × 176 bytes, ~90 KB, allocated
/// when the first of them is needed.
const CHUNK: usize = 512;

/// A transaction held in a store: its slot, and the low 32 bits of its
/// [`TxId`] that tell it from a later one in the same slot. Orders as the
/// transactions were created (by those bits first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxRef {
    tag: u32,
    slot: u32,
}

impl TxRef {
    /// The slot (what the key index keeps of a reference).
    pub(super) fn slot(self) -> u32 {
        self.slot
    }

    /// A reference to slot `slot` with tag `tag`, for tests of what keeps
    /// references.
    #[cfg(test)]
    pub(crate) fn for_test(tag: u32, slot: u32) -> Self {
        TxRef { tag, slot }
    }
}

/// The part of `id` a [`TxRef`] keeps.
fn tag(id: TxId) -> u32 {
    id.0 as u32
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct Slab {
    chunks: Vec<Chunk>,
    /// Slots emptied and not yet taken again (the last freed first).
    free: Vec<u32>,
    /// Slots ever used: the next new one.
    used: u32,
    /// Transactions held.
    len: usize,
}

/// [`CHUNK`] slots, allocated while one of them holds a transaction.
struct Chunk {
    /// `None` while none of the slots holds a transaction.
    slots: Option<Box<[Option<Transaction>]>>,
    /// Per slot, the tag of the transaction held, or its complement once
    /// emptied (zero for a slot never used, which no reference names).
    tags: Box<[u32]>,
    /// Transactions held in the slots.
    held: u16,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            slots: None,
            tags: vec![0; CHUNK].into_boxed_slice(),
            held: 0,
        }
    }
}

impl Slab {
    fn slot(&self, slot: u32) -> Option<&Option<Transaction>> {
        let slot = slot as usize;
        self.chunks
            .get(slot / CHUNK)?
            .slots
            .as_ref()?
            .get(slot % CHUNK)
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Option<Transaction>> {
        let slot = slot as usize;
        self.chunks
            .get_mut(slot / CHUNK)?
            .slots
            .as_mut()?
            .get_mut(slot % CHUNK)
    }

    /// The transaction `at` refers to, if it is still held.
    #[inline]
    pub(super) fn get(&self, at: TxRef) -> Option<&Transaction> {
        self.slot(at.slot)?
            .as_ref()
            .filter(|tx| tag(tx.id) == at.tag)
    }

    /// Whether the transaction `at` refers to is still held, read from the
    /// chunk's tags (see the module documentation): the same answer as
    /// `get(at).is_some()`.
    #[inline]
    pub(super) fn holds(&self, at: TxRef) -> bool {
        let slot = at.slot as usize;
        self.chunks
            .get(slot / CHUNK)
            .and_then(|chunk| chunk.tags.get(slot % CHUNK))
            == Some(&at.tag)
    }

    /// The transaction held in slot `slot`, with its reference.
    #[inline]
    pub(super) fn at_slot(&self, slot: u32) -> Option<(TxRef, &Transaction)> {
        let tx = self.slot(slot)?.as_ref()?;
        Some((
            TxRef {
                tag: tag(tx.id),
                slot,
            },
            tx,
        ))
    }

    /// The transaction `at` refers to, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, at: TxRef) -> Option<&mut Transaction> {
        self.slot_mut(at.slot)?
            .as_mut()
            .filter(|tx| tag(tx.id) == at.tag)
    }

    /// Holds `tx`; gives where.
    pub(super) fn insert(&mut self, tx: Transaction) -> TxRef {
        let tag = tag(tx.id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.used;
                if slot as usize == self.chunks.len() * CHUNK {
                    self.chunks.push(Chunk::new());
                }
                self.used += 1;
                slot
            }
        };
        if let Some(chunk) = self.chunks.get_mut(slot as usize / CHUNK) {
            let slots = chunk
                .slots
                .get_or_insert_with(|| (0..CHUNK).map(|_| None).collect());
            if let (Some(place), Some(held)) = (
                slots.get_mut(slot as usize % CHUNK),
                chunk.tags.get_mut(slot as usize % CHUNK),
            ) {
                *place = Some(tx);
                *held = tag;
                chunk.held += 1;
                self.len += 1;
            }
        }
        TxRef { tag, slot }
    }

    /// Takes out the transaction `at` refers to; its slot is free again.
    pub(super) fn remove(&mut self, at: TxRef) -> Option<Transaction> {
        let chunk = self.chunks.get_mut(at.slot as usize / CHUNK)?;
        let place = chunk.slots.as_mut()?.get_mut(at.slot as usize % CHUNK)?;
        if place.as_ref().is_none_or(|tx| tag(tx.id) != at.tag) {
            return None;
        }
        let tx = place.take();
        if let Some(held) = chunk.tags.get_mut(at.slot as usize % CHUNK) {
            *held = !at.tag;
        }
        chunk.held -= 1;
        if chunk.held == 0 {
            chunk.slots = None;
        }
        self.free.push(at.slot);
        self.len -= 1;
        tx
    }

    /// How many slots have ever held a transaction: every one held is in
    /// a slot below this.
    pub(super) fn slots(&self) -> u32 {
        self.used
    }

    /// How many transactions are held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every transaction held, with where it is, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (TxRef, &Transaction)> {
        self.chunks
            .iter()
            .zip((0u32..).step_by(CHUNK))
            .filter_map(|(chunk, first)| Some((chunk.slots.as_ref()?, first)))
            .flat_map(|(chunk, first)| chunk.iter().zip(first..))
            .filter_map(|(tx, slot)| {
                let tx = tx.as_ref()?;
                Some((
                    TxRef {
                        tag: tag(tx.id),
                        slot,
                    },
                    tx,
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{kind, Symbols};
    use crate::extract::Key;
    use std::time::SystemTime;

    fn tx(id: u64) -> Transaction {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let name = Key::new(order, format!("SO-{id}").as_str());
        Transaction::new(TxId(id), name, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn a_freed_slot_is_reused_and_the_old_reference_finds_nothing() {
        let mut slab = Slab::default();
        let refs: Vec<TxRef> = (1..=CHUNK as u64 + 3)
            .map(|id| slab.insert(tx(id)))
            .collect();
        assert_eq!(slab.len(), CHUNK + 3);
        assert_eq!(
            slab.chunks.len(),
            2,
            "a second chunk once the first is full"
        );
        for (i, &at) in refs.iter().enumerate() {
            assert_eq!(slab.get(at).map(|tx| tx.id), Some(TxId(i as u64 + 1)));
            assert!(slab.holds(at));
        }
        let gone = refs[5];
        assert_eq!(slab.remove(gone).map(|tx| tx.id), Some(TxId(6)));
        assert!(slab.remove(gone).is_none(), "removed once");
        assert!(slab.get(gone).is_none());
        assert!(!slab.holds(gone));
        let again = slab.insert(tx(1_000));
        assert_eq!(again.slot, gone.slot, "the freed slot is taken again");
        assert!(slab.get(gone).is_none(), "another transaction is there now");
        assert!(!slab.holds(gone));
        assert!(slab.holds(again));
        assert!(slab.get_mut(gone).is_none());
        assert!(slab.remove(gone).is_none());
        assert_eq!(slab.get(again).map(|tx| tx.id), Some(TxId(1_000)));
        assert_eq!(slab.len(), CHUNK + 3);
        assert_eq!(slab.chunks.len(), 2);
        let mut ids: Vec<u64> = slab
            .iter()
            .map(|(at, tx)| {
                assert_eq!(slab.get(at).map(|t| t.id), Some(tx.id));
                tx.id.0
            })
            .collect();
        ids.sort_unstable();
        let mut expected: Vec<u64> = (1..=CHUNK as u64 + 3).filter(|&id| id != 6).collect();
        expected.push(1_000);
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_chunk_is_freed_when_its_last_transaction_leaves_and_comes_back_when_needed() {
        let mut slab = Slab::default();
        let refs: Vec<TxRef> = (0..2 * CHUNK as u64 + 1)
            .map(|id| slab.insert(tx(id)))
            .collect();
        let allocated = |slab: &Slab| slab.chunks.iter().filter(|c| c.slots.is_some()).count();
        assert_eq!(allocated(&slab), 3);
        // Empty the first chunk but one, then the middle one wholly.
        for &at in &refs[1..CHUNK] {
            assert!(slab.remove(at).is_some());
        }
        assert_eq!(allocated(&slab), 3, "one transaction keeps the first");
        for &at in &refs[CHUNK..2 * CHUNK] {
            assert!(slab.remove(at).is_some());
        }
        assert_eq!(allocated(&slab), 2, "the emptied chunk is freed");
        assert_eq!(slab.len(), 2);
        let kept: Vec<u64> = slab.iter().map(|(_, tx)| tx.id.0).collect();
        assert_eq!(
            kept,
            vec![0, 2 * CHUNK as u64],
            "iteration skips the freed chunk"
        );
        assert!(slab.get(refs[CHUNK + 7]).is_none());
        assert!(!slab.holds(refs[CHUNK + 7]), "in a freed chunk");
        // The last freed slot (the freed chunk's) is taken first: the chunk
        // comes back, and what is found there is the new transaction.
        let again = slab.insert(tx(10_000));
        assert_eq!(allocated(&slab), 3);
        assert_eq!(again.slot, refs[2 * CHUNK - 1].slot);
        assert_eq!(slab.get(again).map(|tx| tx.id), Some(TxId(10_000)));
        assert!(
            slab.get(refs[2 * CHUNK - 1]).is_none(),
            "the old reference finds nothing"
        );
        assert!(!slab.holds(refs[2 * CHUNK - 1]));
        assert!(slab.holds(again));
        assert!(slab.holds(refs[0]) && slab.holds(refs[2 * CHUNK]));
        assert_eq!(slab.len(), 3);
    }

    #[test]
    fn an_empty_slot_costs_no_more_than_the_transaction() {
        // The record's non-null pointers make room for `None`.
        assert_eq!(
            std::mem::size_of::<Option<Transaction>>(),
            std::mem::size_of::<Transaction>()
        );
        assert_eq!(std::mem::size_of::<TxRef>(), 8);
    }

    #[test]
    fn references_order_as_their_transactions_were_created() {
        let mut slab = Slab::default();
        let a = slab.insert(tx(7));
        let b = slab.insert(tx(8));
        slab.remove(a);
        // c takes a's slot, lower than b's, but was created later.
        let c = slab.insert(tx(9));
        assert!(c.slot < b.slot);
        assert!(b < c);
    }
}

//! The key index: which transaction each business key belongs to.
//!
//! Keys come from traffic, so they are hashed with std's SipHash, keyed at
//! random per store (a partner or an attacker cannot send colliding keys
//! that turn lookups into scans). The table keeps only the 64-bit hash and
//! the transaction id (16 bytes an entry instead of a 24-byte key copy and
//! the id): a lookup confirms a hash match against the transaction's own
//! keys, through the `holds` check its caller passes, so two keys whose
//! hashes collide are still told apart.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry, HashTable};
use std::collections::hash_map::RandomState;

use super::TxId;
use crate::extract::Key;

/// The hash of a key in one store's [`KeyIndex`]: computed once per key and
/// passed along (a look-up, then attaching the key), so a key is hashed
/// once per exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

/// From every indexed key's hash to its transaction (`S` is SipHash but
/// in tests, which make every key collide).
#[derive(Default)]
pub(super) struct KeyIndex<S = RandomState> {
    table: HashTable<(u64, TxId)>,
    hasher: S,
}

impl<S: BuildHasher> KeyIndex<S> {
    /// The hash of `key` in this index.
    pub(super) fn hash(&self, key: &Key) -> KeyHash {
        KeyHash(self.hasher.hash_one(key))
    }

    /// The transaction the key of hash `hash` is indexed to; `holds(id)`
    /// tells whether transaction `id` has that key among its keys.
    pub(super) fn get(
        &self,
        KeyHash(hash): KeyHash,
        mut holds: impl FnMut(TxId) -> bool,
    ) -> Option<TxId> {
        self.table
            .find(hash, |&(h, id)| h == hash && holds(id))
            .map(|&(_, id)| id)
    }

    /// Indexes the key of hash `hash` to transaction `id`, replacing the
    /// entry of that key that `replaces(other)` recognises (a transaction
    /// that has the key too, or one being merged away).
    pub(super) fn set(
        &mut self,
        KeyHash(hash): KeyHash,
        id: TxId,
        mut replaces: impl FnMut(TxId) -> bool,
    ) {
        match self.table.entry(
            hash,
            |&(h, other)| h == hash && (other == id || replaces(other)),
            |&(h, _)| h,
        ) {
            Entry::Occupied(mut entry) => entry.get_mut().1 = id,
            Entry::Vacant(entry) => {
                entry.insert((hash, id));
            }
        }
    }

    /// Forgets the key of hash `hash` if it is indexed to `id`.
    pub(super) fn remove(&mut self, KeyHash(hash): KeyHash, id: TxId) {
        if let Ok(entry) = self
            .table
            .find_entry(hash, |&(h, other)| h == hash && other == id)
        {
            entry.remove();
        }
    }

    /// How many keys are indexed.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;
    use crate::config::{kind, Symbols};

    /// Every key hashes to 0: only the `holds` check tells them apart.
    #[derive(Default)]
    struct Colliding;

    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn colliding_keys_are_told_apart_by_their_transactions() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let (a, b) = (Key::new(order.clone(), "SO-1"), Key::new(order, "SO-2"));
        // Transaction 1 holds `a`, transaction 2 holds `b`.
        let holder = |key: &Key| {
            let key = key.clone();
            move |id: TxId| {
                (id == TxId(1) && key.value.as_ref() == "SO-1")
                    || (id == TxId(2) && key.value.as_ref() == "SO-2")
            }
        };
        let mut index: KeyIndex<BuildHasherDefault<Colliding>> = KeyIndex::default();
        let (ha, hb) = (index.hash(&a), index.hash(&b));
        index.set(ha, TxId(1), holder(&a));
        index.set(hb, TxId(2), holder(&b));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, holder(&a)), Some(TxId(1)));
        assert_eq!(index.get(hb, holder(&b)), Some(TxId(2)));

        // `a` moves to transaction 3 (which now holds it): one entry still.
        let moved = |id: TxId| id == TxId(3) || holder(&a)(id);
        index.set(ha, TxId(3), moved);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, moved), Some(TxId(3)));

        index.remove(ha, TxId(1));
        assert_eq!(index.len(), 2, "not indexed to 1 any more");
        index.remove(ha, TxId(3));
        assert_eq!(index.get(ha, moved), None);
        assert_eq!(index.get(hb, holder(&b)), Some(TxId(2)));
    }
}

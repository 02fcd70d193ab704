//! The key index: which transaction each business key belongs to.
//!
//! Keys come from traffic, so they are hashed with SipHash-1-3 (the
//! function std's `HashMap` uses), keyed at random per store (a partner or
//! an attacker cannot send colliding keys that turn lookups into scans).
//! It is computed in one pass over the key's kind and text ([`Sip13`])
//! rather than through std's streaming `Hasher`, which buffers each of the
//! three writes a derived `Hash` of a key makes. The table keeps only the
//! 64-bit hash and
//! the transaction's reference (16 bytes an entry instead of a 24-byte key copy and
//! the id): a lookup confirms a hash match against the transaction's own
//! keys, through the `holds` check its caller passes, so two keys whose
//! hashes collide are still told apart.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry, HashTable};

use super::keys::KeyView;
use super::TxRef;

/// The hash of a key in one store's [`KeyIndex`]: computed once per key and
/// passed along (a look-up, then attaching the key), so a key is hashed
/// once per exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

/// How an index hashes its keys.
pub(super) trait HashKey {
    fn hash_key(&self, key: KeyView<'_>) -> u64;
}

/// SipHash-1-3 with a random 128-bit key: the function and strength of
/// std's `RandomState`, computed in one pass over the message "kind index
/// as 8 little-endian bytes, then the key's text" (a fixed-width prefix:
/// two different keys are two different messages).
pub(super) struct Sip13 {
    k0: u64,
    k1: u64,
}

impl Default for Sip13 {
    /// A fresh random key: two outputs of std's randomly keyed SipHash
    /// (unpredictable without its secret key, which is random per process).
    fn default() -> Self {
        let random = RandomState::new();
        Sip13 {
            k0: random.hash_one(0u64),
            k1: random.hash_one(1u64),
        }
    }
}

impl HashKey for Sip13 {
    fn hash_key(&self, key: KeyView<'_>) -> u64 {
        siphash::<1, 3>(self.k0, self.k1, key.kind().index() as u64, key.bytes())
    }
}

/// SipHash-`C`-`D` (`C` compression rounds per 8-byte word, `D`
/// finalization rounds) keyed by (`k0`, `k1`) of the message: `first` as 8
/// little-endian bytes, then `rest`.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, first: u64, rest: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |v: &mut [u64; 4], word: u64| {
        v[3] ^= word;
        for _ in 0..C {
            round(v);
        }
        v[0] ^= word;
    };
    compress(&mut v, first);
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        compress(&mut v, u64::from_le_bytes(bytes));
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // The message's length (mod 256) in the last byte.
    last[7] = (8 + rest.len()) as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// From every indexed key's hash to its transaction (`S` is [`Sip13`] but
/// in tests, which make every key collide).
#[derive(Default)]
pub(super) struct KeyIndex<S = Sip13> {
    table: HashTable<(u64, TxRef)>,
    hasher: S,
}

impl<S: HashKey> KeyIndex<S> {
    /// The hash of `key` in this index.
    pub(super) fn hash(&self, key: KeyView<'_>) -> KeyHash {
        KeyHash(self.hasher.hash_key(key))
    }

    /// The transaction the key of hash `hash` is indexed to; `holds(id)`
    /// tells whether transaction `id` has that key among its keys.
    pub(super) fn get(
        &self,
        KeyHash(hash): KeyHash,
        mut holds: impl FnMut(TxRef) -> bool,
    ) -> Option<TxRef> {
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
        id: TxRef,
        mut replaces: impl FnMut(TxRef) -> bool,
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
    pub(super) fn remove(&mut self, KeyHash(hash): KeyHash, id: TxRef) {
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
    use super::*;
    use crate::config::{kind, Symbols};
    use crate::extract::Key;

    /// Every key hashes to 0: only the `holds` check tells them apart.
    #[derive(Default)]
    struct Colliding;

    impl HashKey for Colliding {
        fn hash_key(&self, _: KeyView<'_>) -> u64 {
            0
        }
    }

    #[test]
    fn the_one_pass_siphash_is_siphash() {
        // SipHash-2-4 by the same code against std's (deprecated, but
        // the reference) SipHash-2-4 of the same message; 1-3 differs only
        // in the round counts.
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        for len in 0..40 {
            let text: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let first = 0x1234_u64 + len as u64;
            #[allow(deprecated)]
            let mut std = std::hash::SipHasher::new_with_keys(k0, k1);
            std::hash::Hasher::write(&mut std, &first.to_le_bytes());
            std::hash::Hasher::write(&mut std, &text);
            let expected = std::hash::Hasher::finish(&std);
            assert_eq!(siphash::<2, 4>(k0, k1, first, &text), expected, "{len}");
        }
    }

    #[test]
    fn keys_of_another_kind_or_text_hash_apart_and_stores_differ() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let shipment = kinds.intern("shipment").expect("intern");
        let sip = Sip13::default();
        let a = sip.hash_key(KeyView::of(&Key::new(order.clone(), "1")));
        assert_eq!(a, sip.hash_key(KeyView::of(&Key::new(order.clone(), "1"))));
        assert_ne!(a, sip.hash_key(KeyView::of(&Key::new(shipment, "1"))));
        assert_ne!(a, sip.hash_key(KeyView::of(&Key::new(order.clone(), "2"))));
        assert_ne!(
            a,
            Sip13::default().hash_key(KeyView::of(&Key::new(order, "1"))),
            "another store, another random key"
        );
    }

    #[test]
    fn colliding_keys_are_told_apart_by_their_transactions() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let (a, b) = (Key::new(order.clone(), "SO-1"), Key::new(order, "SO-2"));
        // Transaction 1 holds `a`, transaction 2 holds `b`.
        let holder = |key: &Key| {
            let key = key.clone();
            move |id: TxRef| {
                (id == TxRef::numbered(1) && key.value.as_ref() == "SO-1")
                    || (id == TxRef::numbered(2) && key.value.as_ref() == "SO-2")
            }
        };
        let mut index: KeyIndex<Colliding> = KeyIndex::default();
        let (ha, hb) = (index.hash(KeyView::of(&a)), index.hash(KeyView::of(&b)));
        index.set(ha, TxRef::numbered(1), holder(&a));
        index.set(hb, TxRef::numbered(2), holder(&b));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, holder(&a)), Some(TxRef::numbered(1)));
        assert_eq!(index.get(hb, holder(&b)), Some(TxRef::numbered(2)));

        // `a` moves to transaction 3 (which now holds it): one entry still.
        let moved = |id: TxRef| id == TxRef::numbered(3) || holder(&a)(id);
        index.set(ha, TxRef::numbered(3), moved);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, moved), Some(TxRef::numbered(3)));

        index.remove(ha, TxRef::numbered(1));
        assert_eq!(index.len(), 2, "not indexed to 1 any more");
        index.remove(ha, TxRef::numbered(3));
        assert_eq!(index.get(ha, moved), None);
        assert_eq!(index.get(hb, holder(&b)), Some(TxRef::numbered(2)));
    }
}

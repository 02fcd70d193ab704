//! The key index: which transaction each business key belongs to.
//!
//! Keys come from traffic, so they are hashed with SipHash-1-3 (the
//! function std's `HashMap` uses), keyed at random per store (a partner or
//! an attacker cannot send colliding keys that turn lookups into scans).
//! It is computed in one pass over the key's kind and text ([`Sip13`])
//! rather than through std's streaming `Hasher`, which buffers each of the
//! three writes a derived `Hash` of a key makes.
//!
//! The table is laid out for a store far larger than the CPU's caches,
//! where every probe of a look-up misses them and what a look-up costs is
//! the cache lines it touches. A SwissTable (std's, hashbrown's) keeps its
//! control bytes apart from its entries: two lines per probe, and the
//! probes of `KeyIndex::get` and `set` took 9.2 % of the business bench's
//! time at 100 k live transactions for a tenth of that share of its
//! instructions (session 13). Here each 64-byte [`Line`] holds up to
//! [`WAYS`] entries and the count of entries that probed past it: a
//! probe reads its home line, and the next only if an entry passed it
//! (linear probing by lines, with a count per line that removals take
//! back instead of tombstones, as folly's F14 does). An entry is 8 bytes:
//! a 32-bit check (the hash's top bits, which also pick the home line) and
//! the slot of its transaction (where the SwissTable held the 64-bit hash,
//! the 8-byte reference and a control byte). The table grows by half, and
//! a grown table's entries move over a few lines per change of the index
//! rather than all at once (see `KeyIndex::grow`).
//!
//! A check match is confirmed against the transaction's own keys, through
//! the check its caller passes (which reads the slot's transaction), so
//! two keys whose checks collide are still told apart.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::keys::KeyView;

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

/// Entries per [`Line`].
const WAYS: usize = 7;

/// The ways of a [`Line`], as bits.
const ALL_WAYS: u32 = (1 << WAYS) - 1;

/// Lines of the first table (the index allocates nothing until then).
const FIRST_LINES: usize = 16;

/// One cache line of the table: [`WAYS`] entries, each a check and a
/// slot, and [`Line::passed`]. The count sits in the checks' eighth place
/// so that a line's checks are compared as one 8-lane vector (a mask
/// leaves the count out). All zeros is an empty line.
#[derive(Clone, Copy, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line {
    /// Each way's entry's check, 0 where the way is empty; then the count
    /// of [`Line::passed`].
    checks: [u32; WAYS + 1],
    /// Each way's entry's transaction slot (the eighth place unused).
    slots: [u32; WAYS + 1],
}

impl Line {
    /// Entries held in a later line whose probe started here or before,
    /// and passed this line because it was full: a look-up goes on to the
    /// next line only while this is not zero.
    fn passed(&self) -> u32 {
        self.checks[WAYS]
    }

    /// [`Line::passed`], to count an entry in or out.
    fn passed_mut(&mut self) -> &mut u32 {
        &mut self.checks[WAYS]
    }

    /// The ways whose check is `check`, as bits (`check` 0: the empty
    /// ways).
    #[inline]
    fn ways_of(&self, check: u32) -> u32 {
        let mut bits = 0;
        for (way, &c) in self.checks.iter().enumerate() {
            bits |= u32::from(c == check) << way;
        }
        bits & ALL_WAYS
    }
}

/// The positions of the bits set in `bits`, lowest first.
fn each(mut bits: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let way = bits.trailing_zeros() as usize;
        bits &= bits.wrapping_sub(1);
        (way < 32).then_some(way)
    })
}

impl KeyHash {
    /// What the table keeps of the hash: its top 32 bits, never 0 (the
    /// mark of an empty way).
    fn check(self) -> u32 {
        ((self.0 >> 32) as u32).max(1)
    }
}

/// The line a probe for `check` starts at in a table of `lines` lines:
/// the check's top bits, scaled to the table.
fn home(check: u32, lines: usize) -> usize {
    ((u64::from(check) * lines as u64) >> 32) as usize
}

/// The lines a probe from `home` visits in a table of `lines` lines, in
/// order: each at most once.
fn probe(home: usize, lines: usize) -> impl Iterator<Item = usize> {
    (home..lines).chain(0..home)
}

/// Lines of a table being left for a larger one moved over per change of
/// the index ([`KeyIndex::grow`]).
const MOVED_PER_CHANGE: usize = 2;

/// The lines of one table.
#[derive(Default)]
struct Table {
    lines: Box<[Line]>,
}

impl Table {
    /// An empty table of `lines` lines, allocated zeroed: pages fresh
    /// from the system are not written here but when an entry is first
    /// placed in them, one at a time. Written out at once, a table held
    /// the correlator (and with it, on one CPU, the proxy) for 7.5 ms at
    /// 61 k keys and 11.2 ms at 92 k, nearly all of it the kernel zeroing
    /// each page as it was first touched.
    fn with_lines(lines: usize) -> Self {
        Table {
            lines: bytemuck::allocation::zeroed_slice_box(lines),
        }
    }

    /// How many entries the lines hold at most.
    fn capacity(&self) -> usize {
        self.lines.len() * WAYS
    }

    /// The lines a probe for `check` visits, in order.
    fn probe(&self, check: u32) -> impl Iterator<Item = usize> {
        probe(home(check, self.lines.len()), self.lines.len())
    }

    /// Where the first entry of check `check` that `is(slot)` accepts is:
    /// its line and way.
    fn find(&self, check: u32, mut is: impl FnMut(u32) -> bool) -> Option<(usize, usize)> {
        for at in self.probe(check) {
            let line = &self.lines[at];
            if let Some(way) = each(line.ways_of(check)).find(|&way| is(line.slots[way])) {
                return Some((at, way));
            }
            if line.passed() == 0 {
                break;
            }
        }
        None
    }

    /// Holds the entry (`check`, `slot`) in the first line of its probe
    /// with an empty way, counting it in each full line it passes.
    fn place(&mut self, check: u32, slot: u32) {
        for at in self.probe(check) {
            let line = &mut self.lines[at];
            if let Some(way) = each(line.ways_of(0)).next() {
                line.checks[way] = check;
                line.slots[way] = slot;
                return;
            }
            *line.passed_mut() += 1;
        }
    }

    /// Empties way `way` of line `at`, which holds an entry of check
    /// `check`, and takes it back from the lines it passed.
    fn take(&mut self, check: u32, at: usize, way: usize) {
        self.lines[at].checks[way] = 0;
        for passed in self.probe(check) {
            if passed == at {
                break;
            }
            let line = &mut self.lines[passed];
            let passed = line.passed_mut();
            *passed = passed.saturating_sub(1);
        }
    }
}

/// From every indexed key's hash to the slot of its transaction (`S` is
/// [`Sip13`] but in tests, which make every key collide).
#[derive(Default)]
pub(super) struct KeyIndex<S = Sip13> {
    table: Table,
    /// The table `table` grew from while its entries are being moved
    /// over, and the next of its lines to move (see [`KeyIndex::grow`]).
    moving: Option<(Table, usize)>,
    /// Entries held, in both tables.
    len: usize,
    hasher: S,
}

impl<S: HashKey> KeyIndex<S> {
    /// The hash of `key` in this index.
    pub(super) fn hash(&self, key: KeyView<'_>) -> KeyHash {
        KeyHash(self.hasher.hash_key(key))
    }

    /// What `found` gives for the first entry of the key of hash `hash`
    /// that it recognises, given the entry's slot (the transaction there,
    /// if it has that key among its keys).
    pub(super) fn get<T>(
        &self,
        hash: KeyHash,
        mut found: impl FnMut(u32) -> Option<T>,
    ) -> Option<T> {
        let mut got = None;
        self.locate(hash.check(), |slot| {
            got = found(slot);
            got.is_some()
        });
        got
    }

    /// Indexes the key of hash `hash` to the transaction in slot `slot`,
    /// replacing the entry of that key that `replaces(other)` recognises
    /// (a transaction that has the key too, or one being merged away).
    pub(super) fn set(&mut self, hash: KeyHash, slot: u32, mut replaces: impl FnMut(u32) -> bool) {
        let check = hash.check();
        if let Some((leaving, at, way)) =
            self.locate(check, |other| other == slot || replaces(other))
        {
            if let Some(table) = self.table_mut(leaving) {
                table.lines[at].slots[way] = slot;
            }
            return;
        }
        if (self.len + 1) * 4 > self.table.capacity() * 3 {
            self.grow();
        }
        self.table.place(check, slot);
        self.len += 1;
        self.move_some();
    }

    /// Forgets the key of hash `hash` if it is indexed to slot `slot`.
    pub(super) fn remove(&mut self, hash: KeyHash, slot: u32) {
        let check = hash.check();
        let Some((leaving, at, way)) = self.locate(check, |other| other == slot) else {
            return;
        };
        if let Some(table) = self.table_mut(leaving) {
            table.take(check, at, way);
        }
        self.len -= 1;
        self.move_some();
    }

    /// How many keys are indexed.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Where the first entry of check `check` that `is(slot)` accepts is,
    /// looked for in the current table, then in the one being left (see
    /// [`KeyIndex::grow`]): whether in the one being left, its line and
    /// its way.
    fn locate(&self, check: u32, mut is: impl FnMut(u32) -> bool) -> Option<(bool, usize, usize)> {
        if let Some((at, way)) = self.table.find(check, &mut is) {
            return Some((false, at, way));
        }
        let (old, _) = self.moving.as_ref()?;
        let (at, way) = old.find(check, is)?;
        Some((true, at, way))
    }

    /// The table being left (`leaving`, while there is one), or the current
    /// one.
    fn table_mut(&mut self, leaving: bool) -> Option<&mut Table> {
        if leaving {
            self.moving.as_mut().map(|(old, _)| old)
        } else {
            Some(&mut self.table)
        }
    }

    /// Grows the table by half, at three quarters full (a line overflows
    /// rarely below that). By half, not double: the table is then between
    /// half and three quarters full (~15 bytes an entry on average, where
    /// doubling would leave it between three eighths and three quarters,
    /// ~17), and any number of lines will do ([`home`] scales).
    ///
    /// The entries are not placed again at once: at 300 k keys that held
    /// the correlator (and with it, on one CPU, the proxy) for ~6 ms. The
    /// old table is kept, looked in after the new one, and moved over
    /// [`MOVED_PER_CHANGE`] lines per change of the index (a moved line is
    /// emptied; its count of entries that passed it is left, so that a
    /// probe still goes on past it to the entries not moved yet). That
    /// finishes long before the new table is three quarters full: getting
    /// there takes new entries for a quarter of its capacity, one change
    /// each, and moving takes one change per two of the old table's lines,
    /// about a twentieth of the new capacity.
    fn grow(&mut self) {
        // Never in practice (see above); if it were, finished at once.
        while self.moving.is_some() {
            self.move_some();
        }
        let lines = (self.table.lines.len() + self.table.lines.len() / 2).max(FIRST_LINES);
        let old = std::mem::replace(&mut self.table, Table::with_lines(lines));
        if !old.lines.is_empty() {
            self.moving = Some((old, 0));
        }
    }

    /// Moves the next [`MOVED_PER_CHANGE`] lines of the table being left
    /// into the current one; forgets it once all are.
    #[inline]
    fn move_some(&mut self) {
        if self.moving.is_some() {
            self.move_lines();
        }
    }

    /// [`KeyIndex::move_some`] while a table is being left.
    fn move_lines(&mut self) {
        let Some((old, next)) = &mut self.moving else {
            return;
        };
        let end = (*next + MOVED_PER_CHANGE).min(old.lines.len());
        for line in &mut old.lines[*next..end] {
            for way in each(!line.ways_of(0) & ALL_WAYS) {
                self.table.place(line.checks[way], line.slots[way]);
            }
            line.checks[..WAYS].fill(0);
        }
        *next = end;
        if end == old.lines.len() {
            self.moving = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{kind, Symbols};
    use crate::extract::Key;
    use crate::test_rng::Rng;

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
        // Slot 1 holds `a`, slot 2 holds `b`.
        let holder = |key: &Key| {
            let key = key.clone();
            move |slot: u32| {
                (slot == 1 && key.value.as_ref() == "SO-1")
                    || (slot == 2 && key.value.as_ref() == "SO-2")
            }
        };
        let found = |key: &Key| {
            let holds = holder(key);
            move |slot| holds(slot).then_some(slot)
        };
        let mut index: KeyIndex<Colliding> = KeyIndex::default();
        let (ha, hb) = (index.hash(KeyView::of(&a)), index.hash(KeyView::of(&b)));
        index.set(ha, 1, holder(&a));
        index.set(hb, 2, holder(&b));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, found(&a)), Some(1));
        assert_eq!(index.get(hb, found(&b)), Some(2));

        // `a` moves to slot 3 (which now holds it): one entry still.
        let moved = |slot: u32| slot == 3 || holder(&a)(slot);
        index.set(ha, 3, moved);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(ha, |slot| moved(slot).then_some(slot)), Some(3));

        index.remove(ha, 1);
        assert_eq!(index.len(), 2, "not indexed to 1 any more");
        index.remove(ha, 3);
        assert_eq!(index.get(ha, |slot| moved(slot).then_some(slot)), None);
        assert_eq!(index.get(hb, found(&b)), Some(2));
    }

    #[test]
    fn a_line_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }

    /// Recounts, from the entries, how many passed each line of `table`,
    /// and checks the lines' counts against it: equal, or for a table
    /// being moved out of, at least as many (a moved line keeps its
    /// count). Gives the entries held.
    fn assert_counts(table: &Table, exact: bool) -> usize {
        let lines = table.lines.len();
        let mut passed = vec![0u32; lines];
        let mut held = 0;
        for (at, line) in table.lines.iter().enumerate() {
            for way in each(!line.ways_of(0) & ALL_WAYS) {
                held += 1;
                for before in probe(home(line.checks[way], lines), lines) {
                    if before == at {
                        break;
                    }
                    passed[before] += 1;
                }
            }
        }
        for (line, passed) in table.lines.iter().zip(passed) {
            if exact {
                assert_eq!(line.passed(), passed);
            } else {
                assert!(line.passed() >= passed);
            }
        }
        held
    }

    /// [`assert_counts`] of both tables; the index's length is what they
    /// hold.
    fn assert_index<S>(index: &KeyIndex<S>) {
        let moving = index
            .moving
            .as_ref()
            .map_or(0, |(old, _)| assert_counts(old, false));
        assert_eq!(assert_counts(&index.table, true) + moving, index.len);
    }

    /// Random settings, moves and removals of keys against a map from key
    /// to slot, with hashes that cluster (a few hundred distinct checks
    /// for a thousand keys, some in the same line): every key is found
    /// where the map has it (after every change while a grown table's
    /// entries are being moved over), and the lines' pass counts stay
    /// exact through removals in the middle of long probes and through
    /// growth.
    #[test]
    fn the_index_agrees_with_a_map_through_growth_moves_and_removals() {
        for (seed, spread) in [(1u64, 300u64), (7, 40), (42, 1 << 32)] {
            let hash = |key: u64| KeyHash(((key * 2_654_435_761) % spread) << 32 | key);
            let mut rng = Rng(seed);
            let mut model: std::collections::HashMap<u64, u32> = Default::default();
            let mut index: KeyIndex<Colliding> = KeyIndex::default();
            let mut mid_move = 0;
            for step in 0..20_000u32 {
                let key = rng.below(1_000) as u64;
                match rng.below(4) {
                    0 | 1 => {
                        let slot = step;
                        let owner = model.get(&key).copied();
                        index.set(hash(key), slot, |other| owner == Some(other));
                        model.insert(key, slot);
                    }
                    2 => {
                        if let Some(slot) = model.remove(&key) {
                            index.remove(hash(key), slot);
                        }
                    }
                    _ => {
                        // Removing under another slot changes nothing.
                        index.remove(hash(key), u32::MAX);
                    }
                }
                if index.moving.is_some() {
                    mid_move += 1;
                }
                if step % 1_000 == 0 || index.moving.is_some() {
                    assert_index(&index);
                    for (&key, &slot) in &model {
                        assert_eq!(
                            index.get(hash(key), |s| (s == slot).then_some(s)),
                            Some(slot)
                        );
                    }
                }
                let owner = model.get(&key).copied();
                assert_eq!(
                    index.get(hash(key), |slot| (owner == Some(slot)).then_some(slot)),
                    owner,
                    "seed {seed}, step {step}, key {key}"
                );
            }
            assert!(mid_move > 100, "{mid_move} steps while moving");
            assert_index(&index);
            assert_eq!(index.len(), model.len());
            for (&key, &slot) in &model {
                assert_eq!(
                    index.get(hash(key), |s| (s == slot).then_some(s)),
                    Some(slot)
                );
            }
            // Emptied, every probe ends at its home line again.
            for (key, slot) in model.drain() {
                index.remove(hash(key), slot);
            }
            assert_eq!(index.len(), 0);
            assert!(index.moving.is_none());
            assert!(index.table.lines.iter().all(|line| line.passed() == 0));
        }
    }

    #[test]
    fn a_full_line_sends_entries_on_and_a_removal_there_loses_none() {
        // Every key collides: all probes start at the same line, so the
        // eighth entry and later are held further on.
        let mut index: KeyIndex<Colliding> = KeyIndex::default();
        let hash = KeyHash(0);
        for slot in 0..20 {
            index.set(hash, slot, |_| false);
        }
        assert_eq!(index.len(), 20);
        assert!(index.moving.is_none());
        let start = home(hash.check(), index.table.lines.len());
        assert_eq!(index.table.lines[start].passed(), 20 - WAYS as u32);
        // A way freed in the first line: the later entries are still found.
        index.remove(hash, 3);
        assert_eq!(index.table.lines[start].passed(), 20 - WAYS as u32);
        for slot in (0..20).filter(|&s| s != 3) {
            assert_eq!(index.get(hash, |s| (s == slot).then_some(s)), Some(slot));
        }
        assert_eq!(index.get(hash, |s| (s == 3).then_some(s)), None);
        // Removing one held further on takes it back from the first line.
        index.remove(hash, 19);
        assert_eq!(index.table.lines[start].passed(), 20 - WAYS as u32 - 1);
        assert_index(&index);
    }
}

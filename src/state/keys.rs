//! A transaction's keys in one allocation ([`KeyBlock`]) and the view a
//! reader gets of one of them ([`KeyView`]).
//!
//! A store holds millions of keys, a few per transaction: one `Key` each
//! (24 bytes in a `Vec`, plus an `Arc<str>` of its own: 16 bytes of counts
//! and the text in a 32- or 48-byte allocation) cost ~70 bytes a key and an
//! allocation per key. The block holds every key of a transaction back to
//! back in one boxed `str`, each as its kind's id and its length (one
//! ASCII byte each below 64) and its text: ~19 bytes for a 17-byte key.
//! Being text, a key's value is handed out as `&str` without validating
//! it again (a `str` is cut only where a character starts, a cheap check).
//! A key is read back as a [`KeyView`] (kind id and text, borrowed); the
//! config's key kinds ([`super::Names`]) turn it into a [`Key`] when a
//! record, the API or a snapshot needs one.

use std::fmt;
use std::num::NonZeroU16;

use serde::{Serialize, Serializer};

use crate::config::{kind, KeyKind, Symbols};
use crate::extract::Key;

use super::NameId;

/// One key of a [`KeyBlock`] (or of a [`Key`], [`KeyView::of`]): its kind
/// as an id and its text, borrowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyView<'a> {
    kind: NameId<kind::KeyKind>,
    text: &'a str,
}

impl<'a> KeyView<'a> {
    /// The view of `key`.
    pub fn of(key: &'a Key) -> Self {
        KeyView {
            kind: NameId::new(&key.kind),
            text: &key.value,
        }
    }

    /// The key's kind, as an id of the config's key kinds.
    pub fn kind(self) -> NameId<kind::KeyKind> {
        self.kind
    }

    /// Whether the key is of kind `kind`.
    pub fn is_of(self, kind: &KeyKind) -> bool {
        self.kind.is(kind)
    }

    /// The key's text.
    pub fn value(self) -> &'a str {
        self.text
    }

    /// The key's text as bytes (what the key index hashes).
    pub fn bytes(self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Whether this is `key`.
    pub fn is(self, key: &Key) -> bool {
        self.kind.is(&key.kind) && self.text == &*key.value
    }

    /// The key, its kind read from `kinds` (`None` only for a table of
    /// another config). Allocates its text.
    pub fn to_key(self, kinds: &Symbols<kind::KeyKind>) -> Option<Key> {
        Some(Key::new(self.kind.get(kinds)?.clone(), self.value()))
    }

    /// The key as the API writes a [`Key`] (`{"kind": …, "value": …}`),
    /// its kind read from `kinds`.
    pub fn json(self, kinds: &'a Symbols<kind::KeyKind>) -> KeyJson<'a> {
        KeyJson { key: self, kinds }
    }
}

impl fmt::Debug for KeyView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{}", self.kind, self.value())
    }
}

/// A [`KeyView`] with the key kinds to write it out ([`KeyView::json`]):
/// the same JSON as the [`Key`] it stands for.
#[derive(Clone, Copy)]
pub struct KeyJson<'a> {
    key: KeyView<'a>,
    kinds: &'a Symbols<kind::KeyKind>,
}

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let kind = self.key.kind.get(self.kinds).map_or("", |k| k.as_str());
        let mut st = s.serialize_struct("Key", 2)?;
        st.serialize_field("kind", kind)?;
        st.serialize_field("value", self.key.value())?;
        st.end()
    }
}

/// The keys of one transaction, in the order added, back to back in one
/// boxed `str`: per key its kind's id plus one and the text's length, each
/// as a [`put`] number (ASCII: one byte below 64), then the text.
/// Positions are the keys' order; reading one walks the block (a
/// transaction holds a handful). Grows exactly: a key is added by
/// reallocating the block.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyBlock(Box<str>);

impl KeyBlock {
    /// A block of `keys`, in that order.
    pub fn of<'k>(keys: impl IntoIterator<Item = KeyView<'k>, IntoIter: Clone>) -> Self {
        let keys = keys.into_iter();
        // Exactly sized: no growth, no shrinking into the box.
        let mut text = String::with_capacity(keys.clone().map(encoded_len).sum());
        for key in keys {
            encode(&mut text, key);
        }
        KeyBlock(text.into_boxed_str())
    }

    /// Every key, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.0 }
    }

    /// The key at position `at`.
    pub fn get(&self, at: usize) -> Option<KeyView<'_>> {
        self.iter().nth(at)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `key` is.
    pub fn position(&self, key: KeyView<'_>) -> Option<usize> {
        // The hot path of every look-up (the key index confirms a match
        // with it): compares the kind's number and the text, builds no view.
        let kind = u32::from(key.kind.plus_one().get());
        let mut rest: &str = &self.0;
        let mut at = 0;
        while let Some((k, text, after)) = entry(rest) {
            if k == kind && text == key.text {
                return Some(at);
            }
            rest = after;
            at += 1;
        }
        None
    }

    /// Whether `key` is one of the keys.
    pub fn contains(&self, key: &Key) -> bool {
        self.iter().any(|k| k.is(key))
    }

    /// Adds `key` at the end (whether or not it is there already: see
    /// [`KeyBlock::position`]); returns its position.
    pub fn push(&mut self, key: KeyView<'_>) -> usize {
        let at = self.len();
        self.push_all(&[key]);
        at
    }

    /// Adds every key of `keys` at the end, in order (whether or not they
    /// are there already), with one reallocation (often in place) exactly
    /// to the new size: an exchange that brings two new keys pays one.
    pub fn push_all(&mut self, keys: &[KeyView<'_>]) {
        if keys.is_empty() {
            return;
        }
        let mut text = std::mem::take(&mut self.0).into_string();
        text.reserve_exact(keys.iter().map(|&k| encoded_len(k)).sum());
        for &key in keys {
            encode(&mut text, key);
        }
        self.0 = text.into_boxed_str();
    }

    /// The keys, each with the kinds to resolve it (the [`Key`]s the
    /// block stands for).
    pub fn keys<'a>(&'a self, kinds: &'a Symbols<kind::KeyKind>) -> impl Iterator<Item = Key> + 'a {
        self.iter().filter_map(move |k| k.to_key(kinds))
    }

    /// The block's size in bytes (its one allocation).
    pub fn bytes(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The bits of a number one byte of [`put`] carries.
const BITS: u32 = 6;

/// The bit of a byte of [`put`] that says another byte follows.
const MORE: u8 = 1 << BITS;

/// The size of `value` written by [`put`].
fn number_len(value: u32) -> usize {
    let bits = u32::BITS - value.leading_zeros();
    bits.div_ceil(BITS).max(1) as usize
}

/// Appends `value` in bytes of [`BITS`] bits, low first, each but the last
/// with [`MORE`] set: every byte is below 128, so ASCII, and the block
/// stays text whatever the numbers.
fn put(text: &mut String, mut value: u32) {
    while value >= u32::from(MORE) {
        text.push(char::from((value as u8 & (MORE - 1)) | MORE));
        value >>= BITS;
    }
    text.push(char::from(value as u8));
}

/// The number [`put`] wrote at the start of `bytes`, and the bytes it took.
#[inline]
fn number(bytes: &[u8]) -> Option<(u32, usize)> {
    let &first = bytes.first()?;
    if first < MORE {
        return Some((u32::from(first), 1));
    }
    let mut value = 0u32;
    for (i, &b) in bytes.iter().enumerate().take(6) {
        value |= u32::from(b & (MORE - 1)) << (BITS * i as u32);
        if b & MORE == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The size of `key` in the block's encoding.
fn encoded_len(key: KeyView<'_>) -> usize {
    // A key's text is far below 4 GiB (bodies are tapped up to a limit).
    let len = u32::try_from(key.text.len()).unwrap_or(u32::MAX);
    number_len(u32::from(key.kind.plus_one().get())) + number_len(len) + key.text.len()
}

/// Appends `key` in the block's encoding.
fn encode(text: &mut String, key: KeyView<'_>) {
    put(text, u32::from(key.kind.plus_one().get()));
    put(text, u32::try_from(key.text.len()).unwrap_or(u32::MAX));
    text.push_str(key.text);
}

/// The first entry of `block`: its kind's id plus one, its text and what
/// follows; `None` at the end.
#[inline]
fn entry(block: &str) -> Option<(u32, &str, &str)> {
    let bytes = block.as_bytes();
    let (kind, k) = number(bytes)?;
    let (len, l) = number(bytes.get(k..)?)?;
    let start = k + l;
    let end = start.checked_add(len as usize)?;
    // Cuts where a character starts (the numbers are ASCII, the texts whole
    // `str`s): checked, not trusted.
    Some((kind, block.get(start..end)?, block.get(end..)?))
}

/// The keys of a [`KeyBlock`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Iter<'a> {
    type Item = KeyView<'a>;

    #[inline]
    fn next(&mut self) -> Option<KeyView<'a>> {
        let (kind, text, rest) = entry(self.rest)?;
        let kind = NonZeroU16::new(u16::try_from(kind).ok()?)?;
        self.rest = rest;
        Some(KeyView {
            kind: NameId::from_plus_one(kind),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_gives_back_its_keys_in_order_and_finds_them() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let ship = kinds.intern("shipment").expect("intern");
        let long: String = "x".repeat(300);
        let edge: String = "y".repeat(254);
        let keys = [
            Key::new(order.clone(), "SO-1"),
            Key::new(ship.clone(), "SO-1"),
            Key::new(ship.clone(), long.as_str()),
            Key::new(order.clone(), ""),
            Key::new(order.clone(), "ünïcode"),
            Key::new(ship.clone(), edge.as_str()),
        ];
        let mut block = KeyBlock::default();
        assert!(block.is_empty());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(block.push(KeyView::of(key)), i);
        }
        assert_eq!(block.len(), keys.len());
        let back: Vec<Key> = block.keys(&kinds).collect();
        assert_eq!(back, keys);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(block.position(KeyView::of(key)), Some(i));
            assert!(block.contains(key));
            assert!(block.get(i).is_some_and(|v| v.is(key)));
        }
        // Same text, other kind; same kind, other text.
        assert!(!block.contains(&Key::new(ship, "SO-2")));
        assert!(!block.contains(&Key::new(order, "SH-1")));
        assert_eq!(block.get(keys.len()), None);
        assert_eq!(block, KeyBlock::of(keys.iter().map(KeyView::of)));
        // 1 + 1 + text for short keys (texts below 64 bytes), 1 + 2 + text
        // for the long ones (300 and 254 bytes).
        assert_eq!(block.bytes(), 6 + 6 + 303 + 2 + 11 + 257);
    }

    #[test]
    fn numbers_of_every_size_read_back_and_stay_ascii() {
        for value in [0, 1, 63, 64, 65, 4095, 4096, 65_535, 1 << 24, u32::MAX] {
            let mut text = String::new();
            put(&mut text, value);
            assert!(text.is_ascii(), "{value}");
            assert_eq!(text.len(), number_len(value), "{value}");
            text.push('é');
            assert_eq!(number(text.as_bytes()), Some((value, number_len(value))));
        }
        // A kind past the first 63 takes two bytes and reads back.
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let mut last = None;
        for i in 0..70 {
            last = Some(kinds.intern(&format!("kind{i}")).expect("intern"));
        }
        let key = Key::new(last.expect("interned"), "é".repeat(40).as_str());
        let block = KeyBlock::of([KeyView::of(&key)]);
        assert_eq!(block.bytes(), 2 + 2 + 80);
        assert_eq!(block.keys(&kinds).collect::<Vec<_>>(), vec![key.clone()]);
        assert_eq!(block.position(KeyView::of(&key)), Some(0));
    }

    #[test]
    fn a_view_writes_the_json_of_its_key() {
        let mut kinds: Symbols<kind::KeyKind> = Symbols::default();
        let order = kinds.intern("order").expect("intern");
        let key = Key::new(order, "SO-\"1\"");
        let block = KeyBlock::of([KeyView::of(&key)]);
        let view = block.get(0).expect("held");
        assert_eq!(
            serde_json::to_value(view.json(&kinds)).expect("json"),
            serde_json::to_value(&key).expect("json")
        );
    }
}

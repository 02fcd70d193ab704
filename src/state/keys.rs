//! A transaction's keys in one allocation ([`KeyBlock`]) and the view a
//! reader gets of one of them ([`KeyView`]).
//!
//! A store holds millions of keys, a few per transaction: one `Key` each
//! (24 bytes in a `Vec`, plus an `Arc<str>` of its own: 16 bytes of counts
//! and the text in a 32- or 48-byte allocation) cost ~70 bytes a key and an
//! allocation per key. The block holds every key of a transaction back to
//! back in one boxed byte slice, each as its kind's id (2 bytes), its
//! length (1 byte below 255) and its text: ~20 bytes for a 17-byte key.
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
    text: &'a [u8],
}

impl<'a> KeyView<'a> {
    /// The view of `key`.
    pub fn of(key: &'a Key) -> Self {
        KeyView {
            kind: NameId::new(&key.kind),
            text: key.value.as_bytes(),
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
        // A block holds whole `str`s and cuts only at their ends, so this
        // never fails; an empty text would only hide a bug, not crash.
        std::str::from_utf8(self.text).unwrap_or_default()
    }

    /// The key's text as bytes (what the key index hashes).
    pub fn bytes(self) -> &'a [u8] {
        self.text
    }

    /// Whether this is `key`.
    pub fn is(self, key: &Key) -> bool {
        self.kind.is(&key.kind) && self.text == key.value.as_bytes()
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
/// boxed byte slice: per key its kind's id plus one (2 bytes, little
/// endian), the text's length (1 byte below 255, else 255 and 4 bytes,
/// little endian) and the text.
/// Positions are the keys' order; reading one walks the block (a
/// transaction holds a handful). Grows exactly: a key is added by
/// reallocating the block.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyBlock(Box<[u8]>);

impl KeyBlock {
    /// A block of `keys`, in that order.
    pub fn of<'k>(keys: impl IntoIterator<Item = KeyView<'k>, IntoIter: Clone>) -> Self {
        let keys = keys.into_iter();
        // Exactly sized: no growth, no shrinking into the box.
        let mut bytes = Vec::with_capacity(keys.clone().map(encoded_len).sum());
        for key in keys {
            encode(&mut bytes, key);
        }
        KeyBlock(bytes.into_boxed_slice())
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
        // with it): compares the raw kind bytes and text, decodes nothing.
        let kind = key.kind.plus_one().get().to_le_bytes();
        let mut rest: &[u8] = &self.0;
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
        let mut bytes = std::mem::take(&mut self.0).into_vec();
        bytes.reserve_exact(keys.iter().map(|k| 7 + k.text.len()).sum());
        for &key in keys {
            encode(&mut bytes, key);
        }
        self.0 = bytes.into_boxed_slice();
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

/// The length byte that says 4 bytes of length follow.
const LONG: u8 = u8::MAX;

/// The size of `key` in the block's encoding.
fn encoded_len(key: KeyView<'_>) -> usize {
    3 + if key.text.len() < usize::from(LONG) {
        0
    } else {
        4
    } + key.text.len()
}

/// Appends `key` in the block's encoding.
fn encode(bytes: &mut Vec<u8>, key: KeyView<'_>) {
    bytes.extend_from_slice(&key.kind.plus_one().get().to_le_bytes());
    match u8::try_from(key.text.len()) {
        Ok(len) if len < LONG => bytes.push(len),
        // A key's text is far below 4 GiB (bodies are tapped up to a limit).
        _ => {
            bytes.push(LONG);
            let len = u32::try_from(key.text.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&len.to_le_bytes());
        }
    }
    bytes.extend_from_slice(key.text);
}

/// The first entry of `bytes`: its kind's bytes, its text and what
/// follows; `None` at the end.
#[inline]
fn entry(bytes: &[u8]) -> Option<([u8; 2], &[u8], &[u8])> {
    let (&[k0, k1, len], rest) = bytes.split_first_chunk::<3>()?;
    let (len, rest) = if len < LONG {
        (usize::from(len), rest)
    } else {
        let (&long, rest) = rest.split_first_chunk::<4>()?;
        (u32::from_le_bytes(long) as usize, rest)
    };
    let (text, rest) = rest.split_at_checked(len)?;
    Some(([k0, k1], text, rest))
}

/// The keys of a [`KeyBlock`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = KeyView<'a>;

    #[inline]
    fn next(&mut self) -> Option<KeyView<'a>> {
        let (kind, text, rest) = entry(self.rest)?;
        let kind = NonZeroU16::new(u16::from_le_bytes(kind))?;
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
        // 2 + 1 + text for short keys; 2 + 1 + 4 + 300 for the long one.
        assert_eq!(block.bytes(), 7 + 7 + 307 + 3 + 12 + 257);
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

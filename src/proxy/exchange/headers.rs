//! [`Headers`]: the header fields of an exchange's request or response
//! head, read by name. The native engine fills it with the head's bytes and
//! the ranges of each field in them (no map is built, no value copied);
//! hyper's path moves its `HeaderMap` in. Either way every reader uses the
//! same lookups: [`Headers::get`], [`Headers::get_all`], [`Headers::iter`].
//!
//! The few names read on every inspected exchange ([`NOTED`]: extraction's
//! content type and coding, the span's `Host`, its link's `traceparent`)
//! have their first field noted when a head's fields are taken in, so
//! looking one of them up reads no other field. The names are not read
//! again for it: the engine's parse recognised them ([`Name`], one
//! classification for the engine and for these look-ups), and a copy
//! asks the same [`Name::of`].

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName};
use smallvec::SmallVec;

use crate::proxy::h1::Name;

/// The header fields of one head, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Headers(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// hyper's map, moved in.
    Map(HeaderMap),
    /// A head's bytes, where each field's name and value are in them,
    /// and where the [`NOTED`] names are among them.
    Lines {
        bytes: Bytes,
        lines: Box<[Line]>,
        noted: Noted,
    },
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Lines {
            bytes: Bytes::new(),
            lines: Box::default(),
            noted: Noted::NONE,
        }
    }
}

/// How many names are [`NOTED`].
const NOTED_COUNT: usize = 4;

/// The names whose fields are noted when the fields are taken in: those
/// read on every inspected exchange.
static NOTED: [HeaderName; NOTED_COUNT] = [
    HOST,
    HeaderName::from_static("traceparent"),
    CONTENT_TYPE,
    CONTENT_ENCODING,
];

/// Where the fields named [`NOTED`] are: per name (same index), the index
/// of its first field ([`Noted::ABSENT`] when it has none) and whether
/// another follows. `None` for fields that were not taken in by
/// [`Headers::in_head`] or a copy (too many to index, or not noted): then
/// every look-up reads the fields.
#[derive(Debug, Clone, Copy)]
struct Noted(Option<[(u16, bool); NOTED_COUNT]>);

impl Noted {
    /// Nothing noted: look-ups read the fields.
    const NONE: Noted = Noted(None);

    /// The first-field index of a name no field has.
    const ABSENT: u16 = u16::MAX;

    /// Nothing seen yet: [`Noted::note`] each field in order.
    fn new() -> Noted {
        Noted(Some([(Self::ABSENT, false); NOTED_COUNT]))
    }

    /// Notes the field at `index`, which the head's parse recognised as
    /// `kind` (the engine's one classification of names, [`Name`]).
    fn note(&mut self, index: usize, kind: Name) {
        let Some(at) = noted_index(kind) else {
            return;
        };
        let Some(slot) = self.0.as_mut().and_then(|noted| noted.get_mut(at)) else {
            return;
        };
        if slot.0 != Self::ABSENT {
            slot.1 = true;
            return;
        }
        match u16::try_from(index) {
            Ok(index) if index < Self::ABSENT => slot.0 = index,
            // Too far to index: look-ups read the fields.
            _ => *self = Noted::NONE,
        }
    }

    /// The fields of `lines` that may be named `name`, and whether each
    /// must still have its name compared: for a [`NOTED`] name none, its
    /// one field (known to be it), or those from its first on; for
    /// another name (or nothing noted) all of them.
    fn candidates<'l>(&self, lines: &'l [Line], name: &HeaderName) -> (&'l [Line], bool) {
        let noted = self.0.as_ref().and_then(|noted| {
            let at = NOTED.iter().position(|known| known == name)?;
            noted.get(at)
        });
        let Some(&(first, more)) = noted else {
            return (lines, true);
        };
        let first = usize::from(first);
        let end = if more { lines.len() } else { first + 1 };
        (lines.get(first..end).unwrap_or_default(), more)
    }
}

/// The recognised header `name` is, as far as [`NOTED`] goes: one of
/// them, or [`Name::Other`].
fn noted_kind(name: &HeaderName) -> Name {
    const KINDS: [Name; NOTED_COUNT] = [
        Name::Host,
        Name::Traceparent,
        Name::ContentType,
        Name::ContentEncoding,
    ];
    NOTED
        .iter()
        .position(|known| known == name)
        .and_then(|at| KINDS.get(at).copied())
        .unwrap_or(Name::Other)
}

/// The index in [`NOTED`] of a recognised header name.
fn noted_index(kind: Name) -> Option<usize> {
    match kind {
        Name::Host => Some(0),
        Name::Traceparent => Some(1),
        Name::ContentType => Some(2),
        Name::ContentEncoding => Some(3),
        _ => None,
    }
}

/// One field: the byte ranges (start, end) of its name and value.
#[derive(Debug, Clone, Copy)]
struct Line {
    name: (u32, u32),
    value: (u32, u32),
}

impl Line {
    fn name<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        range(bytes, self.name)
    }

    fn value<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        range(bytes, self.value)
    }

    /// Whether the field is named `name` (any case); lengths first, so
    /// most other fields are passed over without reading their names.
    fn is(&self, bytes: &[u8], name: &[u8]) -> bool {
        let (start, end) = self.name;
        end.wrapping_sub(start) as usize == name.len()
            && self.name(bytes).eq_ignore_ascii_case(name)
    }
}

/// The bytes of `(start, end)` in `bytes`; empty when out of range.
fn range(bytes: &[u8], (start, end): (u32, u32)) -> &[u8] {
    bytes.get(start as usize..end as usize).unwrap_or_default()
}

impl Headers {
    /// The fields of a head whose bytes are `bytes`: each item of `lines`
    /// is the (start, end) of one field's name and of its value in them,
    /// in order, and the header the parse recognised the name as (the
    /// [`NOTED`] names are noted from it, no name is read again). The
    /// values stay in `bytes` (no copy).
    pub fn in_head(
        bytes: Bytes,
        lines: impl IntoIterator<Item = ((u32, u32), (u32, u32), Name)>,
    ) -> Self {
        let mut noted = Noted::new();
        let lines: Box<[Line]> = lines
            .into_iter()
            .enumerate()
            .map(|(index, (name, value, kind))| {
                noted.note(index, kind);
                Line { name, value }
            })
            .collect();
        Headers(Repr::Lines {
            bytes,
            lines,
            noted,
        })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValueRef<'_>> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = HeaderValueRef<'a>> + use<'a, 'n> {
        match &self.0 {
            Repr::Map(map) => Named::Map(map.get_all(name).iter()),
            Repr::Lines {
                bytes,
                lines,
                noted,
            } => {
                let (lines, compare) = noted.candidates(lines, name);
                Named::Lines {
                    bytes,
                    lines: lines.iter(),
                    name: compare.then(|| name.as_str().as_bytes()),
                }
            }
        }
    }

    /// Every field as (name, value), in order (hyper's map: grouped by
    /// name). Names are as the head had them (the native engine's) or in
    /// lower case (hyper's).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], HeaderValueRef<'_>)> {
        let (map, lines) = match &self.0 {
            Repr::Map(map) => (Some(map.iter()), None),
            Repr::Lines { bytes, lines, .. } => (
                None,
                Some(
                    lines
                        .iter()
                        .map(move |line| (line.name(bytes), line.value(bytes))),
                ),
            ),
        };
        let map = map
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        map.chain(lines.into_iter().flatten())
            .map(|(name, value)| (name, HeaderValueRef(value)))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Map(map) => map.len(),
            Repr::Lines { lines, .. } => lines.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields as a map, to edit them (for tests and hand-built
    /// exchanges); fields in a head become a map on the first call.
    pub fn map_mut(&mut self) -> &mut HeaderMap {
        let map = match std::mem::take(&mut self.0) {
            Repr::Map(map) => map,
            lines => Headers(lines).to_map(),
        };
        self.0 = Repr::Map(map);
        match &mut self.0 {
            Repr::Map(map) => map,
            Repr::Lines { .. } => unreachable!("a map was put there above"),
        }
    }

    fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len());
        for (name, value) in self.iter() {
            let name = HeaderName::from_bytes(name);
            let value = http::HeaderValue::from_bytes(value.as_bytes());
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }

    /// A copy of the fields whose name `keep` accepts, in one buffer of
    /// their own: it shares no memory with these (no read buffer stays
    /// alive for it). Nothing is allocated when no field is kept.
    pub fn copy_where(&self, keep: impl Fn(&[u8]) -> bool) -> Headers {
        // One pass over the fields; the kept ones (a few) noted on the stack.
        let kept: Kept<'_> = self
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, value)| (name, value, Name::of(name)))
            .collect();
        copy_of(&kept)
    }

    /// A copy of the fields named one of `names` (each name's fields
    /// together, in the order of `names`, a name given twice kept once),
    /// in one buffer of their own as [`Headers::copy_where`]'s; the
    /// [`NOTED`] names are found without reading the other fields.
    pub fn copy_named(&self, names: &[&HeaderName]) -> Headers {
        let mut kept = Kept::new();
        for (at, name) in names.iter().enumerate() {
            if names.get(..at).is_some_and(|before| before.contains(name)) {
                continue;
            }
            let name_bytes = name.as_str().as_bytes();
            // The name is known: its fields need not be recognised again.
            let kind = noted_kind(name);
            kept.extend(self.get_all(name).map(|value| (name_bytes, value, kind)));
        }
        copy_of(&kept)
    }
}

/// The values of one name ([`Headers::get_all`]).
enum Named<'a, 'n> {
    Map(http::header::ValueIter<'a, http::HeaderValue>),
    /// The fields that may have the name, and the name to compare theirs
    /// with (`None`: they are known to have it).
    Lines {
        bytes: &'a [u8],
        lines: std::slice::Iter<'a, Line>,
        name: Option<&'n [u8]>,
    },
}

impl<'a> Iterator for Named<'a, '_> {
    type Item = HeaderValueRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = match self {
            Named::Map(values) => values.next()?.as_bytes(),
            Named::Lines { bytes, lines, name } => lines
                .find(|line| name.is_none_or(|name| line.is(bytes, name)))?
                .value(bytes),
        };
        Some(HeaderValueRef(value))
    }
}

/// Fields to copy, as (name, value, the header the name is): a few, on
/// the stack.
type Kept<'a> = SmallVec<[(&'a [u8], HeaderValueRef<'a>, Name); 4]>;

/// `kept` in one buffer of its own (nothing allocated when it is empty).
fn copy_of(kept: &[(&[u8], HeaderValueRef<'_>, Name)]) -> Headers {
    if kept.is_empty() {
        return Headers::default();
    }
    let size = kept
        .iter()
        .map(|(name, value, _)| name.len() + value.0.len())
        .sum();
    let mut bytes = Vec::with_capacity(size);
    let mut put = |part: &[u8]| {
        let start = bytes.len() as u32;
        bytes.extend_from_slice(part);
        (start, bytes.len() as u32)
    };
    // Pushed one by one into room for all (no growth, no shrink).
    let mut lines = Vec::with_capacity(kept.len());
    let mut noted = Noted::new();
    for (index, &(name, value, kind)) in kept.iter().enumerate() {
        noted.note(index, kind);
        let name = put(name);
        lines.push(Line {
            name,
            value: put(value.0),
        });
    }
    let lines = lines.into_boxed_slice();
    Headers(Repr::Lines {
        bytes: Bytes::from(bytes),
        lines,
        noted,
    })
}

impl From<HeaderMap> for Headers {
    fn from(map: HeaderMap) -> Self {
        Headers(Repr::Map(map))
    }
}

/// One field value, borrowed from its [`Headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderValueRef<'a>(&'a [u8]);

impl<'a> HeaderValueRef<'a> {
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The value as text, when it is visible ASCII (tabs and spaces
    /// allowed), as `http::HeaderValue::to_str` reads it.
    pub fn to_str(&self) -> Option<&'a str> {
        let visible = self
            .0
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
        visible.then(|| std::str::from_utf8(self.0).ok()).flatten()
    }
}

impl PartialEq<str> for HeaderValueRef<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for HeaderValueRef<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

    /// `text`'s fields (one `name: value` per line) as the native engine
    /// passes them, and as a map, built apart.
    fn both(text: &str) -> [Headers; 2] {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let mut lines = Vec::new();
        let mut map = HeaderMap::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let (name, value) = line.trim_end().split_once(':').expect("a field");
            let value = value.trim_start();
            let name_at = at as u32;
            let value_at = (at + line.find(value).expect("its value")) as u32;
            lines.push((
                (name_at, name_at + name.len() as u32),
                (value_at, value_at + value.len() as u32),
                Name::of(name.as_bytes()),
            ));
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
            at += line.len();
        }
        [Headers::in_head(bytes, lines), Headers::from(map)]
    }

    #[test]
    fn both_kinds_find_values_by_name_whatever_its_case() {
        for headers in both("Host: a.example\nX-Id: 1\nCONTENT-type: text/plain\nx-id: 2\n") {
            assert_eq!(headers.len(), 4);
            assert_eq!(headers.get(&HOST).expect("host"), "a.example");
            assert_eq!(headers.get(&CONTENT_TYPE).expect("type"), "text/plain");
            let id = HeaderName::from_static("x-id");
            let ids: Vec<_> = headers.get_all(&id).map(|v| v.as_bytes()).collect();
            assert_eq!(ids, [&b"1"[..], b"2"]);
            assert!(headers.get(&TRACEPARENT).is_none());
            let mut names: Vec<_> = headers
                .iter()
                .map(|(name, _)| name.to_ascii_lowercase())
                .collect();
            names.sort();
            assert_eq!(names, [&b"content-type"[..], b"host", b"x-id", b"x-id"]);
        }
    }

    /// `fields` as the native engine passes them (no map: names as given,
    /// any bytes).
    fn in_head(fields: &[(&[u8], &[u8])]) -> Headers {
        let mut bytes = Vec::new();
        let mut lines = Vec::new();
        let mut put = |part: &[u8]| {
            let start = bytes.len() as u32;
            bytes.extend_from_slice(part);
            bytes.extend_from_slice(b"\r\n");
            (start, start + part.len() as u32)
        };
        for (name, value) in fields {
            lines.push((put(name), put(value), Name::of(name)));
        }
        Headers::in_head(Bytes::from(bytes), lines)
    }

    /// The values of `name` found by reading every field's name.
    fn scanned<'h>(headers: &'h Headers, name: &HeaderName) -> Vec<&'h [u8]> {
        headers
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name.as_str().as_bytes()))
            .map(|(_, value)| value.as_bytes())
            .collect()
    }

    #[test]
    fn noted_names_are_found_as_reading_every_field_finds_them() {
        let odd: &[&[(&[u8], &[u8])]] = &[
            &[],
            &[(b"Host", b"a"), (b"Content-Type", b"text/plain")],
            // Repeated, in any case, not next to each other.
            &[
                (b"traceparent", b"t1"),
                (b"X-Other", b"x"),
                (b"TraceParent", b"t2"),
                (b"TRACEPARENT", b"t3"),
            ],
            &[(b"CONTENT-ENCODING", b"gzip"), (b"content-encoding", b"br")],
            // Same lengths, not the names: one byte off, '\r' or '_' for
            // '-', a letter for a digit, case flipped on a non-letter.
            &[
                (b"content-typf", b"1"),
                (b"content\rtype", b"2"),
                (b"content_type", b"3"),
                (b"hosT", b"4"),
                (b"hos\x14", b"5"),
                (b"content-encodinG", b"6"),
                (b"content\x0dencoding", b"7"),
                (b"traceparenT", b"8"),
                (b"tr\xc1ceparent", b"9"),
            ],
            // Prefixes and extensions of a noted name.
            &[
                (b"Content-Types", b"1"),
                (b"Content-Typ", b"2"),
                (b"Hos", b"3"),
                (b"Hosts", b"4"),
                (b"", b"5"),
            ],
        ];
        let names = [
            HOST,
            TRACEPARENT,
            CONTENT_TYPE,
            CONTENT_ENCODING,
            HeaderName::from_static("x-other"),
        ];
        for fields in odd {
            let headers = in_head(fields);
            let Repr::Lines { noted, .. } = &headers.0 else {
                panic!("fields in a head are lines");
            };
            assert!(noted.0.is_some(), "{fields:?} are noted");
            for name in &names {
                let found: Vec<_> = headers.get_all(name).map(|v| v.as_bytes()).collect();
                assert_eq!(found, scanned(&headers, name), "{name} in {fields:?}");
                let first = headers.get(name).map(|v| v.as_bytes());
                assert_eq!(first, found.first().copied(), "{name} in {fields:?}");
            }
        }
        // A copy notes its own fields.
        let headers = in_head(odd[2]);
        let copy = headers.copy_named(&[&TRACEPARENT, &HOST, &TRACEPARENT]);
        let parents: Vec<_> = copy.get_all(&TRACEPARENT).map(|v| v.as_bytes()).collect();
        assert_eq!(parents, [&b"t1"[..], b"t2", b"t3"]);
        assert!(copy.get(&HOST).is_none());
        assert_eq!(copy.len(), 3);
    }

    #[test]
    fn a_noted_name_in_many_fields_is_found_past_the_first() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
            .map(|i| {
                let name: &[u8] = if i % 97 == 5 { b"Content-Type" } else { b"X-F" };
                (name.to_vec(), i.to_string().into_bytes())
            })
            .collect();
        let borrowed: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|(name, value)| (&name[..], &value[..]))
            .collect();
        let headers = in_head(&borrowed);
        let found: Vec<_> = headers
            .get_all(&CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(found, [&b"5"[..], b"102", b"199", b"296"]);
        assert_eq!(
            headers.get(&CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
    }

    #[test]
    fn a_copy_keeps_only_the_named_fields_in_memory_of_its_own() {
        for headers in both("Host: a.example\ntraceparent: t1\nX-Big: 123456\ntraceparent: t2\n") {
            let copy = headers.copy_where(|name| {
                name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"traceparent")
            });
            assert_eq!(copy.len(), 3);
            assert_eq!(copy.get(&HOST).expect("host"), "a.example");
            let parents: Vec<_> = copy.get_all(&TRACEPARENT).map(|v| v.as_bytes()).collect();
            assert_eq!(parents, [&b"t1"[..], b"t2"]);
            assert!(copy.get(&HeaderName::from_static("x-big")).is_none());
            let Repr::Lines { bytes, .. } = &copy.0 else {
                panic!("a copy is lines over its own bytes");
            };
            assert_eq!(bytes.len(), "hosta.exampletraceparentt1traceparentt2".len());
            let all = headers.copy_where(|_| true);
            assert_eq!(all.iter().count(), 4);
        }
        let [lines, _] = both("X-Big: 1\n");
        assert!(lines.copy_where(|_| false).is_empty());
    }

    #[test]
    fn text_is_visible_ascii_as_http_reads_it() {
        for value in [&b"plain text"[..], b"tab\there", b"caf\xc3\xa9", b""] {
            let ours = HeaderValueRef(value).to_str();
            let http = http::HeaderValue::from_bytes(value).expect("value");
            assert_eq!(ours, http.to_str().ok(), "{value:?}");
        }
    }

    #[test]
    fn a_head_becomes_a_map_to_edit() {
        let [mut headers, map] = both("Host: a\nX-Id: 1\nx-id: 2\n");
        headers
            .map_mut()
            .insert(CONTENT_TYPE, "text/plain".parse().expect("value"));
        assert_eq!(headers.get(&CONTENT_TYPE).expect("added"), "text/plain");
        let id = HeaderName::from_static("x-id");
        assert_eq!(headers.get_all(&id).count(), map.get_all(&id).count());
    }
}

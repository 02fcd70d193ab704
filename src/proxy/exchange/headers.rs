//! [`Headers`]: the header fields of an exchange's request or response
//! head, read by name. The native engine fills it with the head's bytes and
//! the ranges of each field in them (no map is built, no value copied);
//! hyper's path moves its `HeaderMap` in. Either way every reader uses the
//! same lookups: [`Headers::get`], [`Headers::get_all`], [`Headers::iter`].

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use smallvec::SmallVec;

/// The header fields of one head, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Headers(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// hyper's map, moved in.
    Map(HeaderMap),
    /// A head's bytes and where each field's name and value are in them.
    Lines { bytes: Bytes, lines: Box<[Line]> },
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Lines {
            bytes: Bytes::new(),
            lines: Box::default(),
        }
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
    /// in order. The values stay in `bytes` (no copy).
    pub fn in_head(
        bytes: Bytes,
        lines: impl IntoIterator<Item = ((u32, u32), (u32, u32))>,
    ) -> Self {
        let lines = lines
            .into_iter()
            .map(|(name, value)| Line { name, value })
            .collect();
        Headers(Repr::Lines { bytes, lines })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValueRef<'_>> {
        let value = match &self.0 {
            Repr::Map(map) => map.get(name)?.as_bytes(),
            Repr::Lines { bytes, lines } => {
                let name = name.as_str().as_bytes();
                lines.iter().find(|line| line.is(bytes, name))?.value(bytes)
            }
        };
        Some(HeaderValueRef(value))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = HeaderValueRef<'a>> + use<'a, 'n> {
        let (map, lines) = match &self.0 {
            Repr::Map(map) => (Some(map.get_all(name).iter()), None),
            Repr::Lines { bytes, lines } => {
                let name = name.as_str().as_bytes();
                let values = lines
                    .iter()
                    .filter(move |line| line.is(bytes, name))
                    .map(move |line| line.value(bytes));
                (None, Some(values))
            }
        };
        let map = map.into_iter().flatten().map(|v| v.as_bytes());
        map.chain(lines.into_iter().flatten()).map(HeaderValueRef)
    }

    /// Every field as (name, value), in order (hyper's map: grouped by
    /// name). Names are as the head had them (the native engine's) or in
    /// lower case (hyper's).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], HeaderValueRef<'_>)> {
        let (map, lines) = match &self.0 {
            Repr::Map(map) => (Some(map.iter()), None),
            Repr::Lines { bytes, lines } => (
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
        let kept: SmallVec<[(&[u8], &[u8]); 4]> = match &self.0 {
            Repr::Map(map) => map
                .iter()
                .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
                .filter(|(name, _)| keep(name))
                .collect(),
            Repr::Lines { bytes, lines } => lines
                .iter()
                .map(|line| (line.name(bytes), line.value(bytes)))
                .filter(|(name, _)| keep(name))
                .collect(),
        };
        if kept.is_empty() {
            return Headers::default();
        }
        let size = kept
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let mut put = |part: &[u8]| {
            let start = bytes.len() as u32;
            bytes.extend_from_slice(part);
            (start, bytes.len() as u32)
        };
        let lines = kept
            .iter()
            .map(|(name, value)| Line {
                name: put(name),
                value: put(value),
            })
            .collect();
        Headers(Repr::Lines {
            bytes: Bytes::from(bytes),
            lines,
        })
    }
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
    use http::header::{CONTENT_TYPE, HOST};

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

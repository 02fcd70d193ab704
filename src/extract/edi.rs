//! What X12 and EDIFACT share once their envelopes are read: a document is
//! a list of segments, a segment a list of elements, an element a list of
//! repetitions of components, all separated by the delimiters the envelope
//! declared. [`x12`](super::x12) and [`edifact`](super::edifact) read the
//! envelopes; this file splits segments and reads [`EdiAddress`]es.
//!
//! EDI is read as bytes: delimiters are single bytes, and a value that is
//! not UTF-8 is read as ISO-8859-1 (EDIFACT's UNOC level), so a key is
//! always text. Values are trimmed of the spaces that pad fixed-width
//! fields (ISA). Splitting honours the release character (EDIFACT `?`),
//! which is removed from values.

use std::borrow::Cow;
use std::ops::Range;

use crate::config::{EdiAddress, EdiPart};

use super::Problem;

/// Most segments read from one document: a 1 MiB body of minimal
/// segments stays below it; the bound keeps the index of a hostile body
/// (`A~A~A~…`) small.
pub(super) const MAX_SEGMENTS: usize = 200_000;

/// The delimiters of one interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delimiters {
    pub element: u8,
    pub component: u8,
    pub repetition: Option<u8>,
    pub release: Option<u8>,
    pub terminator: u8,
}

impl Delimiters {
    /// Delimiters must differ from each other and from letters and digits,
    /// or segments could not be told apart from their data.
    pub fn usable(&self) -> bool {
        let mut all = vec![self.element, self.component, self.terminator];
        all.extend(self.repetition);
        all.extend(self.release);
        let distinct = all
            .iter()
            .enumerate()
            .all(|(i, d)| !all.get(..i).unwrap_or_default().contains(d));
        distinct && all.iter().all(|d| !d.is_ascii_alphanumeric() && *d != b' ')
    }
}

/// An EDI document split into segments.
#[derive(Debug)]
pub(super) struct Document {
    pub delimiters: Delimiters,
    /// Byte ranges of the segments in the body, without terminator and
    /// surrounding line breaks.
    pub segments: Vec<Range<usize>>,
    /// The transaction set ids (X12 ST01) or message types (EDIFACT UNH)
    /// of the document, in order.
    pub kinds: Vec<String>,
    /// Some segment had no valid tag (reported as [`Problem::EdiMalformed`];
    /// the other segments are still read).
    pub malformed: bool,
}

impl Document {
    /// The segments as byte slices of `body`.
    pub fn segments<'b>(&'b self, body: &'b [u8]) -> impl Iterator<Item = &'b [u8]> + 'b {
        self.segments
            .iter()
            .filter_map(move |range| body.get(range.clone()))
    }

    /// True when some segment matches `address` (a condition).
    pub fn contains(&self, body: &[u8], address: &EdiAddress) -> bool {
        self.segments(body)
            .any(|segment| read(address, segment, &self.delimiters, &mut |_| {}))
    }

    /// Every value `address` (a key rule) finds, in document order.
    pub fn values(&self, body: &[u8], address: &EdiAddress) -> Vec<String> {
        let mut values = Vec::new();
        for segment in self.segments(body) {
            read(address, segment, &self.delimiters, &mut |value| {
                values.push(text(&value));
            });
        }
        values
    }
}

/// Splits `body` into segment ranges at `terminator` (not when released),
/// starting at `start`. A partial body's last, unterminated segment is
/// dropped. Fails past [`MAX_SEGMENTS`].
pub(super) fn split_segments(
    body: &[u8],
    start: usize,
    delimiters: &Delimiters,
    partial: bool,
) -> Result<Vec<Range<usize>>, Problem> {
    let mut segments = Vec::new();
    let mut begin = start;
    let mut i = start;
    while let Some(&byte) = body.get(i) {
        if Some(byte) == delimiters.release {
            i += 2;
            continue;
        }
        if byte == delimiters.terminator {
            push_trimmed(body, begin..i, &mut segments)?;
            begin = i + 1;
        }
        i += 1;
    }
    if !partial {
        push_trimmed(body, begin..body.len(), &mut segments)?;
    }
    Ok(segments)
}

/// Adds `range` without surrounding line breaks, unless nothing is left.
fn push_trimmed(
    body: &[u8],
    mut range: Range<usize>,
    segments: &mut Vec<Range<usize>>,
) -> Result<(), Problem> {
    let blank = |i: usize| matches!(body.get(i), Some(b'\r' | b'\n' | b'\t' | b' '));
    while range.start < range.end && blank(range.start) {
        range.start += 1;
    }
    while range.start < range.end && blank(range.end - 1) {
        range.end -= 1;
    }
    if range.start < range.end {
        if segments.len() >= MAX_SEGMENTS {
            return Err(Problem::EdiMalformed);
        }
        segments.push(range);
    }
    Ok(())
}

/// Splits `bytes` at `separator`, except where the release character
/// escapes it. Always yields at least one (possibly empty) piece.
pub(super) fn split(
    bytes: &[u8],
    separator: u8,
    release: Option<u8>,
) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut i = 0;
        while let Some(&byte) = current.get(i) {
            if Some(byte) == release {
                i += 2;
                continue;
            }
            if byte == separator {
                rest = current.get(i + 1..);
                return current.get(..i);
            }
            i += 1;
        }
        rest = None;
        Some(current)
    })
}

/// The tag of a segment (its first element).
pub(super) fn tag<'s>(segment: &'s [u8], delimiters: &Delimiters) -> &'s [u8] {
    split(segment, delimiters.element, delimiters.release)
        .next()
        .unwrap_or_default()
}

/// The value of one component: release characters removed, padding trimmed.
pub(super) fn unescape(raw: &[u8], release: Option<u8>) -> Cow<'_, [u8]> {
    let trimmed = raw.trim_ascii();
    let Some(release) = release.filter(|r| trimmed.contains(r)) else {
        return Cow::Borrowed(trimmed);
    };
    let mut out = Vec::with_capacity(trimmed.len());
    let mut bytes = trimmed.iter();
    while let Some(&byte) = bytes.next() {
        if byte == release {
            if let Some(&escaped) = bytes.next() {
                out.push(escaped);
            }
        } else {
            out.push(byte);
        }
    }
    Cow::Owned(out)
}

/// Bytes as text: UTF-8, or else ISO-8859-1.
pub(super) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Reads `segment` through `address`: true when the tag and every
/// constrained element match, calling `on_value` for the `{value}` of
/// every fitting repetition.
fn read(
    address: &EdiAddress,
    segment: &[u8],
    d: &Delimiters,
    on_value: &mut dyn FnMut(Cow<'_, [u8]>),
) -> bool {
    let mut elements = split(segment, d.element, d.release);
    if elements.next() != Some(address.tag.as_bytes()) {
        return false;
    }
    let mut found: Vec<Cow<'_, [u8]>> = Vec::new();
    for parts in &address.elements {
        let element = elements.next().unwrap_or_default();
        let mut fits = false;
        for repetition in repetitions(element, d) {
            let components: Vec<&[u8]> = split(repetition, d.component, d.release).collect();
            let fit = parts.iter().enumerate().all(|(j, part)| match part {
                EdiPart::Literal(literal) => components
                    .get(j)
                    .is_some_and(|c| unescape(c, d.release).as_ref() == literal.as_bytes()),
                EdiPart::Any | EdiPart::Value => true,
            });
            if !fit {
                continue;
            }
            fits = true;
            for (j, part) in parts.iter().enumerate() {
                if let (EdiPart::Value, Some(component)) = (part, components.get(j)) {
                    found.push(unescape(component, d.release));
                }
            }
        }
        if !fits {
            return false;
        }
    }
    for value in found {
        on_value(value);
    }
    true
}

/// The repetitions of an element (one when the syntax has none).
fn repetitions<'e>(element: &'e [u8], d: &Delimiters) -> Box<dyn Iterator<Item = &'e [u8]> + 'e> {
    match d.repetition {
        Some(separator) => Box::new(split(element, separator, d.release)),
        None => Box::new(std::iter::once(element)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EdiSyntax;

    const EDIFACT: Delimiters = Delimiters {
        element: b'+',
        component: b':',
        repetition: None,
        release: Some(b'?'),
        terminator: b'\'',
    };

    const X12: Delimiters = Delimiters {
        element: b'*',
        component: b'>',
        repetition: Some(b'^'),
        release: None,
        terminator: b'~',
    };

    fn values(address: &str, syntax: EdiSyntax, segment: &[u8], d: &Delimiters) -> Vec<String> {
        let address = EdiAddress::parse(address, syntax, true).expect("valid address");
        let mut out = Vec::new();
        read(&address, segment, d, &mut |v| out.push(text(&v)));
        out
    }

    #[test]
    fn splitting_honours_the_release_character() {
        let pieces: Vec<&[u8]> = split(b"RFF+CN:A?+B?:C+x", b'+', Some(b'?')).collect();
        assert_eq!(pieces, [&b"RFF"[..], b"CN:A?+B?:C", b"x"]);
        assert_eq!(unescape(b" A?+B?:C?? ", Some(b'?')).as_ref(), b"A+B:C?");
    }

    #[test]
    fn a_qualifier_selects_the_segment_and_the_value_is_read() {
        let segment = b"RFF+CN:A?+B";
        assert_eq!(
            values("RFF+CN:{value}", EdiSyntax::Edifact, segment, &EDIFACT),
            ["A+B"]
        );
        assert!(values("RFF+BM:{value}", EdiSyntax::Edifact, segment, &EDIFACT).is_empty());
        assert_eq!(
            values("L11*{value}*BM", EdiSyntax::X12, b"L11*BOL123 *BM", &X12),
            ["BOL123"]
        );
        assert!(values("L11*{value}*BM", EdiSyntax::X12, b"L11*PO9*PO", &X12).is_empty());
    }

    #[test]
    fn every_fitting_repetition_gives_a_value() {
        assert_eq!(
            values("REF*{value}", EdiSyntax::X12, b"REF*A1^A2", &X12),
            ["A1", "A2"]
        );
    }

    #[test]
    fn segments_are_split_at_unreleased_terminators_and_trimmed() {
        let body = b"UNB+x'\r\nRFF+CN:it?'s'\nUNZ+1";
        let ranges = split_segments(body, 0, &EDIFACT, false).expect("splits");
        let segments: Vec<&[u8]> = ranges.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(segments, [&b"UNB+x"[..], b"RFF+CN:it?'s", b"UNZ+1"]);
        let partial = split_segments(body, 0, &EDIFACT, true).expect("splits");
        assert_eq!(partial.len(), 2, "the unterminated tail is dropped");
    }

    #[test]
    fn delimiters_must_be_distinct_symbols() {
        assert!(X12.usable());
        let clash = Delimiters {
            component: b'*',
            ..X12
        };
        assert!(!clash.usable());
        let letter = Delimiters {
            terminator: b'A',
            ..X12
        };
        assert!(!letter.usable());
    }
}

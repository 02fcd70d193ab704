//! What extraction produces: the keys, the operation, the milestone and the
//! measures that one exchange carries, plus why parts of it could not be read.

use std::sync::Arc;

use crate::config::{KeyKind, Milestone, Operation, RouteId};

use super::measure::Measures;
use super::summary::ExchangeSummary;

/// A business identifier: `(order, SO-1001)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub kind: KeyKind,
    pub value: Arc<str>,
}

impl Key {
    pub fn new(kind: KeyKind, value: impl Into<Arc<str>>) -> Self {
        Key {
            kind,
            value: value.into(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Key", 2)?;
        st.serialize_field("kind", self.kind.as_str())?;
        st.serialize_field("value", &*self.value)?;
        st.end()
    }
}

/// One exchange, read through the routes file.
#[derive(Debug, Clone)]
pub struct Observation {
    /// What correlation, spans and the journal read of the exchange (its
    /// body taps and read buffers are dropped once extraction is done).
    pub exchange: ExchangeSummary,
    /// The route the exchange matched, if any.
    pub route: Option<RouteId>,
    pub operation: Option<Operation>,
    /// Every key found, deduplicated, in rule order.
    pub keys: Vec<Key>,
    /// The milestone the route marks, present only when the exchange succeeded.
    pub milestone: Option<Milestone>,
    /// Why some of the exchange could not be read; empty when all was read.
    pub problems: Vec<Problem>,
    /// The measure values it carries (read only when it succeeded), and
    /// those that could not be read.
    pub measures: Measures,
}

/// Why extraction could not read part of an exchange. A bounded set, used as
/// the `reason` label of `waybill_extraction_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    /// The body is not valid JSON where extraction reads it (a container
    /// no rule looks into is only checked for balanced brackets and sound
    /// strings: see `json.rs`).
    MalformedJson,
    /// JSON nested deeper than extraction follows.
    TooDeep,
    /// The body (or a value in it) is not valid text in its charset:
    /// invalid UTF-8, or a lone UTF-16 surrogate.
    InvalidUtf8,
    /// The body declares a `charset` extraction cannot decode.
    UnsupportedCharset,
    /// The body was longer than the tap limit; only its prefix was seen.
    Truncated,
    /// The body was cut off by the peer before its end.
    Incomplete,
    /// A `Content-Encoding` extraction cannot decode.
    UnsupportedEncoding,
    /// The compressed body could not be decoded.
    MalformedEncoding,
    /// The decoded body exceeded the decode limit.
    DecodedTooLarge,
    /// The body is not well-formed XML (or ends inside an element).
    MalformedXml,
    /// XML nested deeper than extraction follows.
    XmlTooDeep,
    /// An XML value refers to an entity declared in a DTD; DTD entities are
    /// never expanded (nor DTDs fetched), so the value cannot be read.
    XmlEntity,
    /// An EDI body whose envelope cannot be read: no (or a truncated) ISA
    /// or UNB header, unusable delimiters, unbalanced ST/SE or UNH/UNT.
    EdiBadEnvelope,
    /// An EDI segment inside a readable envelope is malformed (no valid tag).
    EdiMalformed,
    /// A form rule met a body that is not a readable urlencoded or
    /// multipart form.
    MalformedForm,
    /// A key rule of the matched route found no value.
    KeyMissing,
}

impl Problem {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::MalformedJson => "malformed_json",
            Problem::TooDeep => "too_deep",
            Problem::InvalidUtf8 => "invalid_utf8",
            Problem::UnsupportedCharset => "unsupported_charset",
            Problem::Truncated => "truncated",
            Problem::Incomplete => "incomplete",
            Problem::UnsupportedEncoding => "unsupported_encoding",
            Problem::MalformedEncoding => "malformed_encoding",
            Problem::DecodedTooLarge => "decoded_too_large",
            Problem::MalformedXml => "malformed_xml",
            Problem::XmlTooDeep => "xml_too_deep",
            Problem::XmlEntity => "xml_entity",
            Problem::EdiBadEnvelope => "edi_bad_envelope",
            Problem::EdiMalformed => "edi_malformed",
            Problem::MalformedForm => "malformed_form",
            Problem::KeyMissing => "key_missing",
        }
    }

    /// Every problem, for pre-registering metric label sets.
    pub const ALL: [Problem; 16] = [
        Problem::MalformedJson,
        Problem::TooDeep,
        Problem::InvalidUtf8,
        Problem::UnsupportedCharset,
        Problem::Truncated,
        Problem::Incomplete,
        Problem::UnsupportedEncoding,
        Problem::MalformedEncoding,
        Problem::DecodedTooLarge,
        Problem::MalformedXml,
        Problem::XmlTooDeep,
        Problem::XmlEntity,
        Problem::EdiBadEnvelope,
        Problem::EdiMalformed,
        Problem::MalformedForm,
        Problem::KeyMissing,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_once_with_a_distinct_label() {
        let mut labels: Vec<&str> = Problem::ALL.iter().map(|p| p.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Problem::ALL.len());
        // A variant missing from ALL would have no pre-registered series:
        // `as_str` is exhaustive, so count the variants it names.
        let named = include_str!("observation.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("Problem::") && l.contains("=> \""))
            .count();
        assert_eq!(named, Problem::ALL.len());
    }
}

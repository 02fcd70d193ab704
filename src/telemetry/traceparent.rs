//! The W3C Trace Context `traceparent` request header, read so that an
//! exchange's span can link to the caller's trace (legacy systems rarely
//! send one; when they do, it is kept as a span link, never as the parent,
//! because the transaction's trace ID is derived from its root key).
//!
//! Parsing follows W3C Trace Context level 1: `version-traceid-parentid-flags`
//! in lowercase hex; version `ff` is invalid; version `00` has exactly four
//! fields; a later version may append fields after a `-`; all-zero trace or
//! parent IDs are invalid.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

use crate::proxy::Headers;

/// What reading the `traceparent` header of a request found.
#[derive(Debug, Clone, PartialEq)]
pub enum Traceparent {
    /// No such header.
    Absent,
    /// A valid header: the caller's span, as a remote span context.
    Valid(SpanContext),
    /// A header that is not a valid `traceparent` (counted, then ignored).
    Invalid,
}

/// The header's name, made once: looking it up by a `&str` would check
/// and lowercase the name on every call.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// Reads the `traceparent` header(s) of `headers`; more than one is invalid.
pub fn read(headers: &Headers) -> Traceparent {
    // Mostly none is kept (an outbound listener's exchange without one).
    if headers.is_empty() {
        return Traceparent::Absent;
    }
    let name = TRACEPARENT;
    let mut values = headers.get_all(&name);
    let Some(value) = values.next() else {
        return Traceparent::Absent;
    };
    if values.next().is_some() {
        return Traceparent::Invalid;
    }
    match value.to_str().and_then(parse) {
        Some(context) => Traceparent::Valid(context),
        None => Traceparent::Invalid,
    }
}

/// Parses one `traceparent` value.
pub fn parse(text: &str) -> Option<SpanContext> {
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    let mut fields = text.splitn(5, '-');
    let version = hex::<1>(fields.next()?)?[0];
    let trace_id = hex::<16>(fields.next()?)?;
    let parent_id = hex::<8>(fields.next()?)?;
    let flags = hex::<1>(fields.next()?)?[0];
    let rest = fields.next();
    if version == 0xff || (version == 0 && rest.is_some()) {
        return None;
    }
    let trace_id = TraceId::from_bytes(trace_id);
    let span_id = SpanId::from_bytes(parent_id);
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 0x01),
        true,
        TraceState::default(),
    ))
}

/// Exactly `N` bytes written as `2N` lowercase hex digits.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_becomes_a_remote_sampled_span_context() {
        let context = parse(VALID).expect("valid");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert!(context.is_remote());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let context = parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what")
            .expect("future version");
        assert!(!context.is_sampled());
    }

    #[test]
    fn headers_are_read_as_absent_valid_or_invalid() {
        let mut headers = Headers::default();
        assert_eq!(read(&headers), Traceparent::Absent);
        let map = headers.map_mut();
        map.insert("traceparent", http::HeaderValue::from_static(VALID));
        assert!(matches!(read(&headers), Traceparent::Valid(_)));
        let map = headers.map_mut();
        map.append("traceparent", http::HeaderValue::from_static(VALID));
        assert_eq!(read(&headers), Traceparent::Invalid);
        let map = headers.map_mut();
        map.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert_eq!(read(&headers), Traceparent::Invalid);
    }
}

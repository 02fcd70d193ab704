//! The trace ID of a transaction, derived from the key that names it, so
//! every sidecar that sees part of a transaction, on any machine, on any
//! day, writes into the same trace with no coordination.
//!
//! # Derivation (stable: changing it splits every open transaction's trace)
//!
//! ```text
//! digest   = SHA-256( "waybill.transaction" 0x00 kind 0x00 value )   (UTF-8)
//! trace ID = digest[0..16]
//! anchor   = digest[16..24]
//! ```
//!
//! `kind` and `value` are the key's kind and value as extracted
//! (`order`, `SO-1001`), without normalisation; the NUL separators keep
//! `("ab", "c")` and `("a", "bc")` apart. An all-zero result (invalid in
//! W3C Trace Context; probability 2⁻¹²⁸ or 2⁻⁶⁴) gets its last byte set to 1.
//!
//! The **anchor span ID** names no exported span: it is the documented span
//! ID that span links to a transaction's trace use, because a link needs
//! one and a sidecar cannot know the span IDs another sidecar chose.
//!
//! Test vector: `order` / `SO-1001` → trace ID
//! `f7b15d390d8b21411bc72ccb0e8d5e26`, anchor span ID `a6da854ac816de61`.

use opentelemetry::trace::{SpanId, TraceId};
use ring::digest::{digest, SHA256};

use crate::extract::Key;

/// The namespace that prefixes every digest input.
pub const NAMESPACE: &str = "waybill.transaction";

/// The trace ID of the transaction named by `key`.
pub fn trace_id(key: &Key) -> TraceId {
    trace_and_anchor(key).0
}

/// The span ID that links to the trace of the transaction named by `key` use.
pub fn anchor_span_id(key: &Key) -> SpanId {
    trace_and_anchor(key).1
}

/// [`trace_id`] and [`anchor_span_id`] of `key`, from one digest (a link
/// to a former name's trace needs both).
pub fn trace_and_anchor(key: &Key) -> (TraceId, SpanId) {
    let digest = key_digest(key);
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&digest[..16]);
    if trace == [0; 16] {
        trace[15] = 1;
    }
    let mut anchor = [0u8; 8];
    anchor.copy_from_slice(&digest[16..24]);
    if anchor == [0; 8] {
        anchor[7] = 1;
    }
    (TraceId::from_bytes(trace), SpanId::from_bytes(anchor))
}

/// Digest inputs up to this many bytes (keys whose kind and value are
/// together under ~100 bytes: order numbers, tracking codes) are
/// assembled on the stack; longer ones in a `Vec`. The digest is the same
/// either way; the stack saves an allocation per new transaction.
const STACK_INPUT: usize = 128;

fn key_digest(key: &Key) -> [u8; 32] {
    let parts: [&[u8]; 5] = [
        NAMESPACE.as_bytes(),
        &[0],
        key.kind.as_str().as_bytes(),
        &[0],
        key.value.as_bytes(),
    ];
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mut stack = [0u8; STACK_INPUT];
    let mut heap = Vec::new();
    let input = match stack.get_mut(..len) {
        Some(input) => input,
        None => {
            heap.resize(len, 0);
            &mut heap[..]
        }
    };
    let mut at = 0;
    for part in parts {
        input[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, input).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Symbols;

    fn key(kind: &str, value: &str) -> Key {
        let mut kinds = Symbols::default();
        Key::new(kinds.intern(kind).expect("intern"), value)
    }

    #[test]
    fn the_documented_test_vector_holds() {
        let order = key("order", "SO-1001");
        assert_eq!(
            trace_id(&order).to_string(),
            "f7b15d390d8b21411bc72ccb0e8d5e26"
        );
        assert_eq!(anchor_span_id(&order).to_string(), "a6da854ac816de61");
    }

    #[test]
    fn a_long_key_is_digested_as_a_short_one_would_be() {
        // Past the stack buffer: the digest of the same input bytes.
        let value = "SO-".repeat(60);
        let long = key("order", &value);
        let input = [NAMESPACE, "\0order\0", value.as_str()].concat();
        assert!(input.len() > STACK_INPUT);
        let expected = digest(&SHA256, input.as_bytes());
        let (trace, anchor) = trace_and_anchor(&long);
        assert_eq!(trace.to_bytes()[..], expected.as_ref()[..16]);
        assert_eq!(anchor.to_bytes()[..], expected.as_ref()[16..24]);
        let exact = key("order", &"x".repeat(STACK_INPUT - NAMESPACE.len() - 7));
        let input = [NAMESPACE, "\0order\0", exact.value.as_ref()].concat();
        assert_eq!(input.len(), STACK_INPUT);
        let expected = digest(&SHA256, input.as_bytes());
        assert_eq!(trace_id(&exact).to_bytes()[..], expected.as_ref()[..16]);
    }

    #[test]
    fn the_same_key_always_gives_the_same_trace_id() {
        assert_eq!(
            trace_id(&key("order", "SO-1001")),
            trace_id(&key("order", "SO-1001"))
        );
    }

    #[test]
    fn different_keys_give_different_trace_ids() {
        let ids = [
            trace_id(&key("order", "SO-1001")),
            trace_id(&key("order", "SO-1002")),
            trace_id(&key("shipment", "SO-1001")),
            trace_id(&key("ordera", "bc")),
            trace_id(&key("order", "abc")),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
            assert_ne!(*a, TraceId::INVALID);
        }
    }
}

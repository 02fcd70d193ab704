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
    let digest = key_digest(key);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    TraceId::from_bytes(bytes)
}

/// The span ID that links to the trace of the transaction named by `key` use.
pub fn anchor_span_id(key: &Key) -> SpanId {
    let digest = key_digest(key);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[16..24]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

fn key_digest(key: &Key) -> [u8; 32] {
    let kind = key.kind.as_str();
    let mut input = Vec::with_capacity(NAMESPACE.len() + kind.len() + key.value.len() + 2);
    input.extend_from_slice(NAMESPACE.as_bytes());
    input.push(0);
    input.extend_from_slice(kind.as_bytes());
    input.push(0);
    input.extend_from_slice(key.value.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
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

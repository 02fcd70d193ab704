//! The OTLP trace encoder: writes an `ExportTraceServiceRequest` (the body
//! of an OTLP/HTTP protobuf export and the message of an OTLP/gRPC one)
//! straight from the SDK's [`SpanData`] into one reused byte buffer, by the
//! field numbers of `opentelemetry/proto/trace/v1/trace.proto` and
//! `common/v1/common.proto`. No intermediate protobuf structs, no `String`
//! per attribute: strings are copied once, from where they live into the
//! buffer.
//!
//! Nested messages are written in place: a 5-byte length slot is reserved,
//! the message written after it, and the slot shrunk to the length's real
//! varint size (moving the message left by at most 4 bytes).
//!
//! The request has one `ResourceSpans` (the resource, encoded once at
//! start) and one `ScopeSpans` per run of spans with the same
//! instrumentation scope (waybill's spans all share one). Flags follow the
//! SDK's exporter: the trace flags plus "has is-remote" and, for remote
//! parents and links, "is remote". The unit test decodes the output with
//! the official `opentelemetry-proto` types.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const IS_REMOTE: u32 = 0x200;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Bytes reserved for a nested message's length: a `u32` varint at most.
const LEN_SLOT: usize = 5;

/// Encodes export requests into a buffer it keeps between batches.
pub struct TraceEncoder {
    /// The `Resource` message (without its tag), encoded once.
    resource: Vec<u8>,
    buf: Vec<u8>,
}

impl TraceEncoder {
    /// An encoder for spans of the resource with `attributes`.
    pub fn new(attributes: &BTreeMap<String, String>) -> Self {
        let mut resource = Vec::new();
        for (key, value) in attributes {
            message(&mut resource, 1, |buf| {
                string(buf, 1, key);
                message(buf, 2, |buf| string(buf, 1, value));
            });
        }
        TraceEncoder {
            resource,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The `ExportTraceServiceRequest` carrying `spans`; valid until the
    /// next call.
    pub fn encode(&mut self, spans: &[SpanData]) -> &[u8] {
        let buf = &mut self.buf;
        buf.clear();
        let resource = &self.resource;
        // ExportTraceServiceRequest.resource_spans = 1
        message(buf, 1, |buf| {
            // ResourceSpans.resource = 1
            bytes(buf, 1, resource);
            let mut rest = spans;
            while let Some(first) = rest.first() {
                let scope = &first.instrumentation_scope;
                let run = rest
                    .iter()
                    .position(|s| &s.instrumentation_scope != scope)
                    .unwrap_or(rest.len());
                let (same, next) = rest.split_at(run);
                // ResourceSpans.scope_spans = 2
                message(buf, 2, |buf| scope_spans(buf, scope, same));
                rest = next;
            }
        });
        &self.buf
    }
}

fn scope_spans(buf: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[SpanData]) {
    // ScopeSpans.scope = 1
    message(buf, 1, |buf| {
        string(buf, 1, scope.name());
        string(buf, 2, scope.version().unwrap_or_default());
        for attribute in scope.attributes() {
            message(buf, 3, |buf| key_value(buf, attribute));
        }
    });
    for span_data in spans {
        // ScopeSpans.spans = 2
        message(buf, 2, |buf| span(buf, span_data));
    }
    if let Some(url) = scope.schema_url() {
        string(buf, 3, url);
    }
}

fn span(buf: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes(buf, 1, &context.trace_id().to_bytes());
    bytes(buf, 2, &context.span_id().to_bytes());
    string(buf, 3, &context.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint(buf, 6, kind);
    fixed64(buf, 7, nanos(span.start_time));
    fixed64(buf, 8, nanos(span.end_time));
    for attribute in &span.attributes {
        message(buf, 9, |buf| key_value(buf, attribute));
    }
    uint(buf, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        message(buf, 11, |buf| {
            fixed64(buf, 1, nanos(event.timestamp));
            string(buf, 2, &event.name);
            for attribute in &event.attributes {
                message(buf, 3, |buf| key_value(buf, attribute));
            }
            uint(buf, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(buf, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        message(buf, 13, |buf| {
            let context = &link.span_context;
            bytes(buf, 1, &context.trace_id().to_bytes());
            bytes(buf, 2, &context.span_id().to_bytes());
            string(buf, 3, &context.trace_state().header());
            for attribute in &link.attributes {
                message(buf, 4, |buf| key_value(buf, attribute));
            }
            uint(buf, 5, u64::from(link.dropped_attributes_count));
            fixed32(buf, 6, flags(context.is_remote(), context.trace_flags()));
        });
    }
    uint(buf, 14, u64::from(span.links.dropped_count));
    // Span.status = 15: message = 2, code = 3
    message(buf, 15, |buf| match &span.status {
        Status::Unset => {}
        Status::Ok => uint(buf, 3, 1),
        Status::Error { description } => {
            string(buf, 2, description);
            uint(buf, 3, 2);
        }
    });
    fixed32(
        buf,
        16,
        flags(span.parent_span_is_remote, context.trace_flags()),
    );
}

fn flags(remote: bool, trace_flags: opentelemetry::trace::TraceFlags) -> u32 {
    let remote = if remote { IS_REMOTE } else { 0 };
    u32::from(trace_flags.to_u8()) | HAS_IS_REMOTE | remote
}

/// A `KeyValue` message's fields: key = 1, value = 2.
fn key_value(buf: &mut Vec<u8>, attribute: &KeyValue) {
    string(buf, 1, attribute.key.as_str());
    message(buf, 2, |buf| any_value(buf, &attribute.value));
}

/// An `AnyValue` message's fields: string 1, bool 2, int 3, double 4,
/// array 5.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => string_always(buf, 1, s.as_str()),
        Value::Bool(b) => uint_always(buf, 2, u64::from(*b)),
        // int64 travels as the two's complement varint.
        Value::I64(i) => uint_always(buf, 3, *i as u64),
        Value::F64(f) => double_always(buf, 4, *f),
        Value::Array(array) => message(buf, 5, |buf| match array {
            Array::Bool(values) => array_values(buf, values, |buf, b| {
                uint_always(buf, 2, u64::from(*b));
            }),
            Array::I64(values) => {
                array_values(buf, values, |buf, i| uint_always(buf, 3, *i as u64));
            }
            Array::F64(values) => array_values(buf, values, |buf, f| double_always(buf, 4, *f)),
            Array::String(values) => array_values(buf, values, |buf, s: &StringValue| {
                string_always(buf, 1, s.as_str());
            }),
            // Array kinds newer than this encoder: as text, never lost.
            other => array_values(buf, &[other.to_string()], |buf, s| {
                string_always(buf, 1, s);
            }),
        }),
        // Value kinds newer than this encoder: as text.
        other => string_always(buf, 1, &other.as_str()),
    }
}

/// An `ArrayValue`'s `values = 1`, one `AnyValue` each.
fn array_values<T>(buf: &mut Vec<u8>, values: &[T], mut one: impl FnMut(&mut Vec<u8>, &T)) {
    for value in values {
        message(buf, 1, |buf| one(buf, value));
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// === the wire format ===

fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

/// A nested message: tag, length, then whatever `write` puts in `buf`.
fn message(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let slot = buf.len();
    buf.extend_from_slice(&[0; LEN_SLOT]);
    write(buf);
    let body = slot + LEN_SLOT;
    let len = buf.len() - body;
    let mut prefix = [0u8; LEN_SLOT];
    let mut n = 0;
    let mut rest = len as u64;
    loop {
        let byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            prefix[n] = byte;
            n += 1;
            break;
        }
        prefix[n] = byte | 0x80;
        n += 1;
    }
    buf[slot..slot + n].copy_from_slice(&prefix[..n]);
    buf.copy_within(body.., slot + n);
    buf.truncate(slot + n + len);
}

/// Bytes, left out when empty (proto3 default).
fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        bytes_always(buf, field, value);
    }
}

fn bytes_always(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    tag(buf, field, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

/// A string in a `oneof` (present even when empty).
fn string_always(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes_always(buf, field, value.as_bytes());
}

/// A varint, left out when zero.
fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        uint_always(buf, field, value);
    }
}

fn uint_always(buf: &mut Vec<u8>, field: u32, value: u64) {
    tag(buf, field, VARINT);
    varint(buf, value);
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn double_always(buf: &mut Vec<u8>, field: u32, value: f64) {
    tag(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;

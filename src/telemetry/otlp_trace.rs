//! The OTLP trace wire format, written by hand by the field numbers of
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`:
//!
//! - [`SpanWriter`] encodes **one span** straight into the bytes of its
//!   `Span` message (an [`EncodedSpan`]), on the correlator, from the
//!   observation and the transaction: no intermediate span values, no
//!   `String` per attribute; strings are copied once, from where they live
//!   into the span's buffer (text given in pieces, `kind:value`, is written
//!   piece by piece).
//! - [`TraceEncoder`] wraps a batch of encoded spans into one
//!   `ExportTraceServiceRequest` (the body of an OTLP/HTTP protobuf export
//!   and the message of an OTLP/gRPC one) in a buffer of its exact size,
//!   sent as it is: every length is known, so the spans are only copied in
//!   after their tags, once.
//!
//! The request has one `ResourceSpans` (the resource, encoded once at
//! start) and one `ScopeSpans` (waybill's instrumentation scope, also
//! encoded once). Fields are written in field-number order. Where a length
//! is not known up front (arrays, events, links), a 5-byte length slot is
//! reserved, the message written after it, and the slot shrunk to the
//! length's real varint size. Flags follow the SDK's exporter: the trace
//! flags plus "has is-remote" and, for remote links, "is remote". The unit
//! tests decode the output with the official `opentelemetry-proto` types
//! and compare it with what the SDK's exporter sends for the same spans.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

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

/// `Span` field numbers.
const SPAN_ATTRIBUTES: u32 = 9;
const EVENT_ATTRIBUTES: u32 = 3;
const LINK_ATTRIBUTES: u32 = 4;

/// A first guess of a span's size, so most spans are written without
/// growing their buffer.
const SPAN_CAPACITY: usize = 768;

/// One span, encoded: the fields of an OTLP `Span` message (without its
/// own tag and length), as the export queue carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSpan(Vec<u8>);

impl EncodedSpan {
    /// The `Span` message's bytes (decodable as `opentelemetry_proto`'s `Span`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its buffer, to write another span into
    /// ([`SpanWriter::in_buffer`]).
    pub fn into_buffer(self) -> Vec<u8> {
        self.0
    }

    /// The bytes of the attribute `written` (noted by
    /// [`Attributes::string_noted`] as this span was written), to copy into
    /// another span ([`Attributes::copy_written`]); `None` for an attribute
    /// of another kind of message, or out of range.
    pub fn written(&self, written: &Written) -> Option<EncodedAttribute<'_>> {
        let bytes = self.0.get(written.range.clone())?;
        (written.field == SPAN_ATTRIBUTES).then_some(EncodedAttribute(bytes))
    }
}

/// Where an attribute lies in the bytes of the span it was written into
/// (a span's bytes before its events and links never move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    field: u32,
    range: std::ops::Range<usize>,
}

/// One span attribute's encoded bytes, borrowed from a span
/// ([`EncodedSpan::written`]).
#[derive(Debug, Clone, Copy)]
pub struct EncodedAttribute<'a>(&'a [u8]);

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// Where a span link points: a span of another (or the same) trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTarget {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: TraceFlags,
    pub remote: bool,
}

/// A time as OTLP carries it: nanoseconds since the Unix epoch (a time
/// before the epoch is 0, "unknown"). Converted from a [`SystemTime`] once
/// and reused: a span's end is its start plus the exchange's duration, its
/// milestone events are at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// `duration` later (saturating at the largest time).
    pub fn after(self, duration: Duration) -> Self {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        UnixNanos(self.0.saturating_add(nanos))
    }
}

impl From<SystemTime> for UnixNanos {
    fn from(time: SystemTime) -> Self {
        UnixNanos(time.duration_since(UNIX_EPOCH).map_or(0, |since| {
            since
                .as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(since.subsec_nanos()))
        }))
    }
}

impl From<crate::clock::Stamp> for UnixNanos {
    /// The same nanoseconds (a stamped exchange needs no conversion).
    fn from(stamp: crate::clock::Stamp) -> Self {
        UnixNanos(stamp.nanos())
    }
}

/// Text given whole or in pieces, written into a string field without
/// being joined first.
pub trait Text {
    /// Its length in bytes.
    fn text_len(&self) -> usize;
    /// Appends its bytes to `buf`.
    fn put(&self, buf: &mut Vec<u8>);
}

impl Text for str {
    fn text_len(&self) -> usize {
        self.len()
    }
    fn put(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes());
    }
}

impl Text for [&str] {
    fn text_len(&self) -> usize {
        self.iter().map(|s| s.len()).sum()
    }
    fn put(&self, buf: &mut Vec<u8>) {
        for piece in self {
            buf.extend_from_slice(piece.as_bytes());
        }
    }
}

impl<T: Text + ?Sized> Text for &T {
    fn text_len(&self) -> usize {
        (**self).text_len()
    }
    fn put(&self, buf: &mut Vec<u8>) {
        (**self).put(buf);
    }
}

impl<const N: usize> Text for [&str; N] {
    fn text_len(&self) -> usize {
        self.as_slice().text_len()
    }
    fn put(&self, buf: &mut Vec<u8>) {
        self.as_slice().put(buf);
    }
}

/// Writes one span, field by field in field-number order: ids, name,
/// kind and times ([`SpanWriter::new`]), then attributes, then events,
/// then links, then status and flags ([`SpanWriter::finish`]). Calling
/// them out of that order still decodes to the same span (protobuf
/// accepts any order), only the bytes differ.
pub struct SpanWriter {
    buf: Vec<u8>,
}

impl SpanWriter {
    /// A span `name` of `kind` in trace `trace_id`, from `start` to `end`,
    /// without a parent and with an empty trace state.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        name: &(impl Text + ?Sized),
        kind: Kind,
        times: (impl Into<UnixNanos>, impl Into<UnixNanos>),
    ) -> Self {
        Self::in_buffer(Vec::new(), trace_id, span_id, name, kind, times)
    }

    /// [`SpanWriter::new`], written into `buf` (emptied first): a buffer
    /// recycled from an exported span.
    pub fn in_buffer(
        buf: Vec<u8>,
        trace_id: TraceId,
        span_id: SpanId,
        name: &(impl Text + ?Sized),
        kind: Kind,
        times: (impl Into<UnixNanos>, impl Into<UnixNanos>),
    ) -> Self {
        Self::start(
            buf,
            trace_id,
            span_id,
            |buf| name_and_kind(buf, name, kind),
            times,
        )
    }

    /// [`SpanWriter::in_buffer`] with the name and kind encoded once
    /// ([`EncodedHead`]), copied in.
    pub fn with_head(
        buf: Vec<u8>,
        (trace_id, span_id): (TraceId, SpanId),
        head: &EncodedHead,
        times: (impl Into<UnixNanos>, impl Into<UnixNanos>),
    ) -> Self {
        let copy = |buf: &mut Vec<u8>| buf.extend_from_slice(&head.bytes);
        Self::start(buf, trace_id, span_id, copy, times)
    }

    /// A span in `buf`: ids, then the name and kind `head` writes, then
    /// the times.
    fn start(
        mut buf: Vec<u8>,
        trace_id: TraceId,
        span_id: SpanId,
        head: impl FnOnce(&mut Vec<u8>),
        (start, end): (impl Into<UnixNanos>, impl Into<UnixNanos>),
    ) -> Self {
        buf.clear();
        buf.reserve(SPAN_CAPACITY);
        // trace_id = 1, span_id = 2: never empty, written as one piece.
        let mut ids = [0u8; 28];
        ids[0] = one_byte_tag(1, LEN);
        ids[1] = 16;
        ids[2..18].copy_from_slice(&trace_id.to_bytes());
        ids[18] = one_byte_tag(2, LEN);
        ids[19] = 8;
        ids[20..].copy_from_slice(&span_id.to_bytes());
        buf.extend_from_slice(&ids);
        head(&mut buf);
        fixed64(&mut buf, 7, start.into().0);
        fixed64(&mut buf, 8, end.into().0);
        SpanWriter { buf }
    }

    /// The span's attributes (write them before any event or link).
    pub fn attributes(&mut self) -> Attributes<'_> {
        Attributes {
            buf: &mut self.buf,
            field: SPAN_ATTRIBUTES,
        }
    }

    /// A span event `name` at `at` with the attributes `write` adds.
    pub fn event(
        &mut self,
        name: &(impl Text + ?Sized),
        at: impl Into<UnixNanos>,
        write: impl FnOnce(&mut Attributes<'_>),
    ) {
        let at = at.into().0;
        // Span.events = 11: time_unix_nano = 1, name = 2, attributes = 3
        message(&mut self.buf, 11, |buf| {
            fixed64(buf, 1, at);
            text(buf, 2, name);
            write(&mut Attributes {
                buf,
                field: EVENT_ATTRIBUTES,
            });
        });
    }

    /// A span event at `at`: `head` (its name and first attributes,
    /// encoded once), the string attribute `key` = `value`, then `tail`
    /// (encoded once). Its length is known before it is written: no
    /// length slot is reserved and moved, as [`SpanWriter::event`] does.
    pub fn encoded_event_string(
        &mut self,
        head: &EncodedEvent,
        at: UnixNanos,
        (key, value): (&str, &str),
        tail: &EncodedAttributes,
    ) {
        debug_assert_eq!(tail.field, EVENT_ATTRIBUTES);
        let time_size = if at.0 == 0 { 0 } else { 9 };
        let kv_len = text_field_size(key) + len_field_size(len_field_size(value.len()));
        let len = time_size + head.bytes.len() + len_field_size(kv_len) + tail.bytes.len();
        let buf = &mut self.buf;
        buf.reserve(len + 1 + LEN_SLOT);
        // Span.events = 11
        len_prefix(buf, 11, len);
        let start = buf.len();
        fixed64(buf, 1, at.0);
        buf.extend_from_slice(&head.bytes);
        Attributes {
            buf,
            field: EVENT_ATTRIBUTES,
        }
        .string(key, value);
        buf.extend_from_slice(&tail.bytes);
        debug_assert_eq!(buf.len() - start, len);
    }

    /// A span link to `target` with the attributes `write` adds.
    pub fn link(&mut self, target: LinkTarget, write: impl FnOnce(&mut Attributes<'_>)) {
        // Span.links = 13: trace_id = 1, span_id = 2, attributes = 4, flags = 6
        message(&mut self.buf, 13, |buf| {
            bytes(buf, 1, &target.trace_id.to_bytes());
            bytes(buf, 2, &target.span_id.to_bytes());
            write(&mut Attributes {
                buf,
                field: LINK_ATTRIBUTES,
            });
            fixed32(buf, 6, flags(target.remote, target.flags));
        });
    }

    /// The span, with `dropped_links` links left out and status ERROR
    /// (empty description) when `error`, else UNSET.
    pub fn finish(mut self, dropped_links: u32, error: bool) -> EncodedSpan {
        let buf = &mut self.buf;
        uint(buf, 14, u64::from(dropped_links));
        // Span.status = 15: code = 3 (STATUS_CODE_ERROR = 2), else empty.
        if error {
            buf.extend_from_slice(&[one_byte_tag(15, LEN), 2, one_byte_tag(3, VARINT), 2]);
        } else {
            buf.extend_from_slice(&[one_byte_tag(15, LEN), 0]);
        }
        // A root span: its (absent) parent is not remote.
        fixed32(buf, 16, flags(false, TraceFlags::SAMPLED));
        EncodedSpan(self.buf)
    }
}

/// `KeyValue`s of a span, an event or a link: field `field` of its message.
pub struct Attributes<'a> {
    buf: &'a mut Vec<u8>,
    field: u32,
}

impl Attributes<'_> {
    /// A string attribute. Inlined: most keys are constants, whose length
    /// and bytes are then known where it is called.
    #[inline]
    pub fn string(&mut self, key: &(impl Text + ?Sized), value: &(impl Text + ?Sized)) {
        let key_len = key.text_len();
        let len = value.text_len();
        // The `KeyValue`: its key's field, then its `AnyValue`'s, which
        // holds the string's: three heads of two bytes when short.
        let kv_len = key_len + len + 6;
        if key_len > 0 && kv_len < 0x80 {
            // The usual case: every length is a one-byte varint (and every
            // tag one byte), so no length is measured; the heads go in as
            // two 4-byte pieces.
            self.short_head(key, key_len, kv_len);
            // AnyValue.string_value = 1 (in a oneof: present even when empty)
            self.buf.extend_from_slice(&[
                one_byte_tag(2, LEN),
                (len + 2) as u8,
                one_byte_tag(1, LEN),
                len as u8,
            ]);
            value.put(self.buf);
        } else {
            self.scalar(key, len_field_size(len), |buf| {
                len_prefix(buf, 1, len);
                value.put(buf);
            });
        }
    }

    /// An integer attribute (int64, travelling as its two's complement varint).
    pub fn int(&mut self, key: &(impl Text + ?Sized), value: i64) {
        let value = value as u64;
        self.scalar(key, 1 + varint_len(value), |buf| uint_always(buf, 3, value));
    }

    /// A double attribute.
    pub fn double(&mut self, key: &(impl Text + ?Sized), value: f64) {
        self.scalar(key, 9, |buf| double_always(buf, 4, value));
    }

    /// A boolean attribute.
    pub fn bool(&mut self, key: &(impl Text + ?Sized), value: bool) {
        self.scalar(key, 2, |buf| uint_always(buf, 2, u64::from(value)));
    }

    /// An array-of-strings attribute with the values `write` adds.
    pub fn strings(&mut self, key: &(impl Text + ?Sized), write: impl FnOnce(&mut Strings<'_>)) {
        message(self.buf, self.field, |buf| {
            text(buf, 1, key);
            // KeyValue.value = 2: AnyValue.array_value = 5
            message(buf, 2, |buf| {
                message(buf, 5, |buf| write(&mut Strings { buf }));
            });
        });
    }

    /// An array-of-strings attribute of `values`, known up front: written
    /// in one pass, each value's lengths from its own size, the three
    /// lengths around them in one-byte slots filled in at the end (moved
    /// only when the `KeyValue` is 128 bytes or more, where
    /// [`Attributes::strings`] moves it always).
    pub fn string_array<V: Text>(
        &mut self,
        key: &(impl Text + ?Sized),
        values: impl Iterator<Item = V>,
    ) {
        let head = self.buf.len();
        // KeyValue: key = 1, value = 2 (AnyValue.array_value = 5), each
        // length one byte for now.
        self.buf
            .extend_from_slice(&[one_byte_tag(self.field, LEN), 0]);
        text(self.buf, 1, key);
        let any = self.buf.len();
        self.buf
            .extend_from_slice(&[one_byte_tag(2, LEN), 0, one_byte_tag(5, LEN), 0]);
        let array = self.buf.len();
        for value in values {
            array_string(self.buf, &value);
        }
        let array_len = self.buf.len() - array;
        let kv_len = self.buf.len() - head - 2;
        if kv_len < 0x80 {
            // Every length fits its slot (the array's and the value's are
            // shorter than the `KeyValue`).
            self.buf[head + 1] = kv_len as u8;
            self.buf[any + 1] = (array_len + 2) as u8;
            self.buf[any + 3] = array_len as u8;
        } else {
            let any_len = len_field_size(array_len);
            let kv_len = (any - head - 2) + len_field_size(any_len);
            let mut lengths = Vec::with_capacity(2 * LEN_SLOT + 4);
            len_prefix(&mut lengths, 2, any_len);
            len_prefix(&mut lengths, 5, array_len);
            self.buf.splice(any..array, lengths);
            let mut kv = Vec::with_capacity(LEN_SLOT + 1);
            len_prefix(&mut kv, self.field, kv_len);
            self.buf.splice(head..head + 2, kv);
        }
    }

    /// [`Attributes::string`], and where it lies in the message's bytes,
    /// so that another span can copy it ([`EncodedSpan::written`]).
    pub fn string_noted(
        &mut self,
        key: &(impl Text + ?Sized),
        value: &(impl Text + ?Sized),
    ) -> Written {
        let start = self.buf.len();
        self.string(key, value);
        Written {
            field: self.field,
            range: start..self.buf.len(),
        }
    }

    /// Where the next attribute starts: what is written after it can be
    /// kept encoded ([`Attributes::keep_since`]).
    pub fn mark(&self) -> AttributesMark {
        AttributesMark(self.buf.len())
    }

    /// The attributes written since `mark`, kept in `into` (its memory
    /// reused) to be copied into other messages' attributes of this kind
    /// ([`Attributes::copy`]).
    pub fn keep_since(&self, mark: AttributesMark, into: &mut EncodedAttributes) {
        into.field = self.field;
        into.bytes.clear();
        into.bytes
            .extend_from_slice(self.buf.get(mark.0..).unwrap_or_default());
    }

    /// A span attribute encoded in another span, copied in.
    pub fn copy_written(&mut self, encoded: EncodedAttribute<'_>) {
        debug_assert_eq!(self.field, SPAN_ATTRIBUTES);
        self.buf.extend_from_slice(encoded.0);
    }

    /// Attributes written once ([`EncodedAttributes`]), copied in.
    pub fn copy(&mut self, encoded: &EncodedAttributes) {
        debug_assert_eq!(self.field, encoded.field);
        self.buf.extend_from_slice(&encoded.bytes);
    }

    /// The head of a `KeyValue` of `kv_len` bytes, under 128 (so every
    /// length in it is a one-byte varint), and its key of `key_len` bytes:
    /// room for the whole `KeyValue` reserved, the field's and the key's
    /// tags and lengths as one piece, then the key.
    #[inline]
    fn short_head(&mut self, key: &(impl Text + ?Sized), key_len: usize, kv_len: usize) {
        debug_assert!(kv_len < 0x80 && key_len < kv_len);
        self.buf.reserve(2 + kv_len);
        self.buf.extend_from_slice(&[
            one_byte_tag(self.field, LEN),
            kv_len as u8,
            one_byte_tag(1, LEN),
            key_len as u8,
        ]);
        key.put(self.buf);
    }

    /// A `KeyValue` whose `AnyValue` is `any_len` bytes that `any` writes.
    fn scalar(
        &mut self,
        key: &(impl Text + ?Sized),
        any_len: usize,
        any: impl FnOnce(&mut Vec<u8>),
    ) {
        let key_len = key.text_len();
        let key_size = text_field_size(key);
        let kv_len = key_size + len_field_size(any_len);
        let before = if key_len > 0 && kv_len < 0x80 {
            // The usual case: the `KeyValue`, so every length in it, fits a
            // one-byte varint (every tag is one byte). Its head and its
            // value's head are written as two slices.
            self.short_head(key, key_len, kv_len);
            self.buf
                .extend_from_slice(&[one_byte_tag(2, LEN), any_len as u8]);
            self.buf.len()
        } else {
            len_prefix(self.buf, self.field, kv_len);
            // KeyValue.key = 1 (left out when empty, proto3's default)
            text(self.buf, 1, key);
            tag(self.buf, 2, LEN);
            varint(self.buf, any_len as u64);
            self.buf.len()
        };
        any(self.buf);
        debug_assert_eq!(self.buf.len() - before, any_len);
    }
}

/// Where an attribute starts in its message ([`Attributes::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct AttributesMark(usize);

/// Attributes encoded once, to be copied into many spans (those whose
/// keys and values are the same for every span of a listener or a
/// client's `Host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedAttributes {
    field: u32,
    bytes: Vec<u8>,
}

impl EncodedAttributes {
    /// Span attributes (`Span.attributes`) that `write` adds.
    pub fn span(write: impl FnOnce(&mut Attributes<'_>)) -> Self {
        Self::of_field(SPAN_ATTRIBUTES, write)
    }

    /// Span event attributes (`Event.attributes`) that `write` adds.
    pub fn event(write: impl FnOnce(&mut Attributes<'_>)) -> Self {
        Self::of_field(EVENT_ATTRIBUTES, write)
    }

    fn of_field(field: u32, write: impl FnOnce(&mut Attributes<'_>)) -> Self {
        let mut bytes = Vec::new();
        write(&mut Attributes {
            buf: &mut bytes,
            field,
        });
        EncodedAttributes { field, bytes }
    }
}

/// A span's name and kind, encoded once, for spans many share them
/// ([`SpanWriter::with_head`]: a route's exchanges, flow spans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedHead {
    /// `Span.name` (5), then `Span.kind` (6).
    bytes: Vec<u8>,
}

impl EncodedHead {
    /// The head of spans named `name` of `kind`.
    pub fn new(name: &(impl Text + ?Sized), kind: Kind) -> Self {
        let mut bytes = Vec::new();
        name_and_kind(&mut bytes, name, kind);
        EncodedHead { bytes }
    }
}

/// `Span.name` (5, left out when empty) and `Span.kind` (6: never 0,
/// UNSPECIFIED, so a one-byte varint).
fn name_and_kind(buf: &mut Vec<u8>, name: &(impl Text + ?Sized), kind: Kind) {
    text(buf, 5, name);
    buf.extend_from_slice(&[one_byte_tag(6, VARINT), kind as u8]);
}

/// A span event's name and first attributes, encoded once, for events
/// many spans carry alike (a milestone's name and its object's kind):
/// [`SpanWriter::encoded_event_string`] adds the time and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// `Event.name` (2), then `Event.attributes` (3).
    bytes: Vec<u8>,
}

impl EncodedEvent {
    /// The event `name` with the attributes `write` adds.
    pub fn new(name: &(impl Text + ?Sized), write: impl FnOnce(&mut Attributes<'_>)) -> Self {
        let mut bytes = Vec::new();
        text(&mut bytes, 2, name);
        write(&mut Attributes {
            buf: &mut bytes,
            field: EVENT_ATTRIBUTES,
        });
        EncodedEvent { bytes }
    }
}

/// The values of an array-of-strings attribute.
pub struct Strings<'a> {
    buf: &'a mut Vec<u8>,
}

impl Strings<'_> {
    /// One value.
    pub fn push(&mut self, value: &(impl Text + ?Sized)) {
        array_string(self.buf, value);
    }

    /// One value, formatted in place.
    pub fn push_fmt(&mut self, value: std::fmt::Arguments<'_>) {
        use std::io::Write as _;
        message(self.buf, 1, |buf| {
            message(buf, 1, |buf| {
                // Writing into a `Vec` cannot fail.
                let _ = buf.write_fmt(value);
            });
        });
    }
}

/// One string value of an `ArrayValue`.
fn array_string(buf: &mut Vec<u8>, value: &(impl Text + ?Sized)) {
    let len = value.text_len();
    let any = len_field_size(len);
    // ArrayValue.values = 1: AnyValue.string_value = 1
    if any < 0x80 {
        // Both lengths one byte (the usual case): the two heads at once.
        buf.reserve(2 + any);
        buf.extend_from_slice(&[
            one_byte_tag(1, LEN),
            any as u8,
            one_byte_tag(1, LEN),
            len as u8,
        ]);
    } else {
        len_prefix(buf, 1, any);
        len_prefix(buf, 1, len);
    }
    value.put(buf);
}

/// Wraps batches of encoded spans into export requests, each in a buffer
/// of its exact size: the request's body as it is sent (a `Bytes` of it
/// takes the memory over without copying it again).
pub struct TraceEncoder {
    /// The `Resource` message (without its tag), encoded once.
    resource: Vec<u8>,
    /// The `InstrumentationScope` message (without its tag), encoded once.
    scope: Vec<u8>,
}

impl TraceEncoder {
    /// An encoder for spans of the resource with `attributes`, in the
    /// instrumentation scope `scope` version `version`.
    pub fn new(attributes: &BTreeMap<String, String>, scope: &str, version: &str) -> Self {
        let mut resource = Vec::new();
        {
            // Resource.attributes = 1
            let mut attrs = Attributes {
                buf: &mut resource,
                field: 1,
            };
            for (key, value) in attributes {
                attrs.string(key.as_str(), value.as_str());
            }
        }
        let mut scope_message = Vec::new();
        // InstrumentationScope: name = 1, version = 2
        text(&mut scope_message, 1, scope);
        text(&mut scope_message, 2, version);
        TraceEncoder {
            resource,
            scope: scope_message,
        }
    }

    /// The `ExportTraceServiceRequest` carrying `spans`, in a `Vec` whose
    /// capacity is its length (every length is known before the first
    /// byte is written).
    pub fn encode(&self, spans: &[EncodedSpan]) -> Vec<u8> {
        let scope_spans = len_field_size(self.scope.len())
            + spans
                .iter()
                .map(|s| len_field_size(s.0.len()))
                .sum::<usize>();
        let resource_spans = len_field_size(self.resource.len())
            + if spans.is_empty() {
                0
            } else {
                len_field_size(scope_spans)
            };
        let size = len_field_size(resource_spans);
        let mut buf = Vec::with_capacity(size);
        // ExportTraceServiceRequest.resource_spans = 1
        len_prefix(&mut buf, 1, resource_spans);
        // ResourceSpans.resource = 1
        bytes_always(&mut buf, 1, &self.resource);
        if !spans.is_empty() {
            // ResourceSpans.scope_spans = 2: scope = 1, spans = 2
            len_prefix(&mut buf, 2, scope_spans);
            bytes_always(&mut buf, 1, &self.scope);
            for span in spans {
                bytes_always(&mut buf, 2, &span.0);
            }
        }
        debug_assert_eq!(buf.len(), size);
        buf
    }
}

fn flags(remote: bool, trace_flags: TraceFlags) -> u32 {
    let remote = if remote { IS_REMOTE } else { 0 };
    u32::from(trace_flags.to_u8()) | HAS_IS_REMOTE | remote
}

// === the wire format ===

fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The size of a length-delimited field of a one-byte tag (every field
/// number here is below 16) and `len` bytes.
fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The size of [`text`]'s field for `value`: none when empty.
fn text_field_size(value: &(impl Text + ?Sized)) -> usize {
    match value.text_len() {
        0 => 0,
        len => len_field_size(len),
    }
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    if field < 16 {
        buf.push(one_byte_tag(field, wire));
    } else {
        varint(buf, u64::from(field << 3 | wire));
    }
}

/// The tag of a field numbered below 16: one byte.
fn one_byte_tag(field: u32, wire: u32) -> u8 {
    debug_assert!(field < 16);
    (field << 3 | wire) as u8
}

// Inlined: called for every attribute's and array value's heads, where the
// one-byte case is two stores once the caller has reserved room.
#[inline]
fn len_prefix(buf: &mut Vec<u8>, field: u32, len: usize) {
    if field < 16 && len < 0x80 {
        // One byte each, written at once.
        buf.extend_from_slice(&[one_byte_tag(field, LEN), len as u8]);
    } else {
        tag(buf, field, LEN);
        varint(buf, len as u64);
    }
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
    len_prefix(buf, field, value.len());
    buf.extend_from_slice(value);
}

/// Text, left out when empty (proto3 default).
fn text(buf: &mut Vec<u8>, field: u32, value: &(impl Text + ?Sized)) {
    let len = value.text_len();
    if len > 0 {
        len_prefix(buf, field, len);
        value.put(buf);
    }
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
        fixed64_always(buf, field, value);
    }
}

fn double_always(buf: &mut Vec<u8>, field: u32, value: f64) {
    fixed64_always(buf, field, value.to_bits());
}

/// Tag and value in one piece (every `fixed64` field here is below 16).
fn fixed64_always(buf: &mut Vec<u8>, field: u32, value: u64) {
    let mut field_bytes = [0u8; 9];
    field_bytes[0] = one_byte_tag(field, FIXED64);
    field_bytes[1..].copy_from_slice(&value.to_le_bytes());
    buf.extend_from_slice(&field_bytes);
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;

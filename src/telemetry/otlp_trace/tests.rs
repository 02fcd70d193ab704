//! The hand-written encoding against the SDK's own exporter: the same
//! spans, once as the SDK's `SpanData` converted by `opentelemetry-proto`,
//! once written by [`SpanWriter`] and wrapped by [`TraceEncoder`], must
//! decode to the same request.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::{
    Attributes, EncodedAttributes, EncodedEvent, EncodedSpan, Kind, LinkTarget, SpanWriter,
    TraceEncoder,
};
use crate::telemetry::resource;

const SCOPE: &str = "waybill";
const VERSION: &str = "1.2.3";

fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        TraceState::default(),
    )
}

/// Every attribute kind the writer has, events, links (local and remote,
/// sampled or not), both statuses, every kind.
fn spans() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder(SCOPE)
        .with_version(VERSION)
        .build();
    let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
    let attributes = vec![
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("http.response.status_code", 201_i64),
        KeyValue::new("negative", -3_i64),
        KeyValue::new("waybill.flow.within_slo", true),
        KeyValue::new("falsy", false),
        KeyValue::new("waybill.flow.duration_seconds", 12.25),
        KeyValue::new("empty", ""),
        KeyValue::new("unicode", "Lieferschein Ä → 配送"),
        KeyValue::new(
            "waybill.keys",
            Value::Array(Array::String(vec![
                StringValue::from("order:4711"),
                StringValue::from(""),
                StringValue::from("freight_cost quoted 12.5 EUR"),
            ])),
        ),
        KeyValue::new(
            "waybill.extraction.problems",
            Value::Array(Array::String(vec![
                StringValue::from("request_json: not JSON"),
                StringValue::from(""),
            ])),
        ),
        KeyValue::new("long", "x".repeat(300)),
        KeyValue::new("empty_array", Value::Array(Array::String(Vec::new()))),
    ];
    let mut events = SpanEvents::default();
    events.events = vec![
        Event::new(
            "order_released",
            start,
            vec![KeyValue::new("waybill.milestone.repeat", false)],
            0,
        ),
        Event::new("empty", start + Duration::from_millis(1), Vec::new(), 0),
        // A milestone's shape: its head, the object's value, then a tail.
        Event::new(
            "shipment_booked",
            start,
            vec![
                KeyValue::new("waybill.object.kind", "shipment"),
                KeyValue::new("waybill.object.value", "SH-1"),
                KeyValue::new("waybill.milestone.repeat", true),
            ],
            0,
        ),
        Event::new("cancelled", start, vec![KeyValue::new("reason", "x")], 0),
        // At the epoch: the time is left out (proto3's default).
        Event::new(
            "at_epoch",
            SystemTime::UNIX_EPOCH,
            vec![KeyValue::new("waybill.object.value", "")],
            0,
        ),
    ];
    let mut links = SpanLinks::default();
    links.links = vec![
        Link::new(
            context(0xabc, 0xdef, true),
            vec![KeyValue::new("waybill.link", "former_name")],
            0,
        ),
        Link::new(
            SpanContext::new(
                TraceId::from(7),
                SpanId::from(8),
                TraceFlags::NOT_SAMPLED,
                false,
                TraceState::default(),
            ),
            Vec::new(),
            0,
        ),
    ];
    links.dropped_count = 4;
    let span = |name: &'static str, kind, status| SpanData {
        span_context: context(0x0123_4567_89ab_cdef_0011_2233_4455_6677, 0x42, false),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: start,
        end_time: start + Duration::from_micros(840),
        attributes: attributes.clone(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    };
    let mut full = span("POST /v2/shipments", SpanKind::Client, Status::Unset);
    full.events = events;
    full.links = links;
    vec![
        full,
        span("waybill.flow", SpanKind::Internal, Status::Unset),
        span("GET", SpanKind::Server, Status::error("")),
    ]
}

/// `data` written by [`SpanWriter`]; string values alternate between
/// whole text, text in pieces and formatted text.
fn written(data: &SpanData) -> EncodedSpan {
    let kind = match &data.span_kind {
        SpanKind::Internal => Kind::Internal,
        SpanKind::Server => Kind::Server,
        SpanKind::Client => Kind::Client,
        other => panic!("no such kind in waybill: {other:?}"),
    };
    let context = &data.span_context;
    let mut writer = SpanWriter::new(
        context.trace_id(),
        context.span_id(),
        &*data.name,
        kind,
        (data.start_time, data.end_time),
    );
    write_attributes(&mut writer.attributes(), &data.attributes);
    for (j, event) in data.events.iter().enumerate() {
        // At even places, a head, a string attribute and a tail, where the
        // attributes have that shape (a string second, or first).
        let attributes = &event.attributes;
        let string_at = [1, 0].into_iter().find(|&at| {
            matches!(
                attributes.get(at).map(|kv| &kv.value),
                Some(Value::String(_))
            )
        });
        if let (0, Some(at)) = (j % 2, string_at) {
            let head = EncodedEvent::new(&*event.name, |head| {
                write_attributes(head, &attributes[..at]);
            });
            let tail = EncodedAttributes::event(|tail| {
                write_attributes(tail, &attributes[at + 1..]);
            });
            let value = match &attributes[at].value {
                Value::String(value) => value.as_str(),
                _ => unreachable!("found as a string"),
            };
            let string = (attributes[at].key.as_str(), value);
            writer.encoded_event_string(&head, event.timestamp.into(), string, &tail);
        } else {
            writer.event(&*event.name, event.timestamp, |attributes| {
                write_attributes(attributes, &event.attributes);
            });
        }
    }
    for link in data.links.iter() {
        let target = LinkTarget {
            trace_id: link.span_context.trace_id(),
            span_id: link.span_context.span_id(),
            flags: link.span_context.trace_flags(),
            remote: link.span_context.is_remote(),
        };
        writer.link(target, |attributes| {
            write_attributes(attributes, &link.attributes);
        });
    }
    let error = matches!(data.status, Status::Error { .. });
    writer.finish(data.links.dropped_count, error)
}

fn write_attributes(attributes: &mut Attributes<'_>, values: &[KeyValue]) {
    for (i, kv) in values.iter().enumerate() {
        let key = kv.key.as_str();
        // Half the keys in two pieces.
        let (head, tail) = key.split_at(if i % 2 == 0 { 0 } else { key.len() / 2 });
        let key = [head, tail];
        match &kv.value {
            Value::String(s) => attributes.string(&key, s.as_str()),
            Value::I64(v) => attributes.int(&key, *v),
            Value::F64(v) => attributes.double(&key, *v),
            Value::Bool(v) => attributes.bool(&key, *v),
            // Arrays at odd places written from their values known up front.
            Value::Array(Array::String(values)) if i % 2 == 1 => {
                attributes.string_array(&key, values.iter().map(|s| s.as_str()))
            }
            Value::Array(Array::String(values)) => attributes.strings(&key, |strings| {
                for (j, s) in values.iter().enumerate() {
                    match j % 3 {
                        0 => strings.push(s.as_str()),
                        1 => strings.push(&[s.as_str(), ""]),
                        _ => strings.push_fmt(format_args!("{}", s.as_str())),
                    }
                }
            }),
            other => panic!("no such attribute in waybill: {other:?}"),
        }
    }
}

fn resource_attributes() -> BTreeMap<String, String> {
    [
        ("service.name", "waybill"),
        ("service.version", "0.1.0"),
        ("k8s.pod.name", "erp-0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The request the SDK's own OTLP exporter builds, resource attributes
/// sorted by key (the SDK keeps them in a hash map).
fn official(spans: Vec<SpanData>) -> ExportTraceServiceRequest {
    let attributes = resource_attributes();
    let resource = resource::resource(&attributes);
    let mut resource_spans =
        group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(&resource));
    for r in &mut resource_spans {
        if let Some(resource) = &mut r.resource {
            resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

fn encoder() -> TraceEncoder {
    TraceEncoder::new(&resource_attributes(), SCOPE, VERSION)
}

#[test]
fn the_written_spans_decode_to_what_the_sdk_exporter_sends() {
    let spans = spans();
    let encoded: Vec<EncodedSpan> = spans.iter().map(written).collect();
    let encoder = encoder();
    let decoded =
        ExportTraceServiceRequest::decode(encoder.encode(&encoded).as_slice()).expect("decodes");
    assert_eq!(decoded, official(spans));
}

#[test]
fn each_request_stands_alone_in_a_buffer_of_its_exact_size() {
    let spans = spans();
    let encoded: Vec<EncodedSpan> = spans.iter().map(written).collect();
    let encoder = encoder();
    let all = encoder.encode(&encoded);
    let one = encoder.encode(&encoded[2..3]);
    let empty = encoder.encode(&[]);
    for request in [&all, &one, &empty] {
        assert_eq!(request.len(), request.capacity());
    }
    assert!(all.len() > one.len());
    let one = ExportTraceServiceRequest::decode(one.as_slice()).expect("decodes");
    assert_eq!(one, official(spans[2..3].to_vec()));
    let empty = ExportTraceServiceRequest::decode(empty.as_slice()).expect("decodes");
    assert_eq!(empty.resource_spans.len(), 1);
    assert!(empty.resource_spans[0].scope_spans.is_empty());
}

#[test]
fn messages_longer_than_one_length_byte_keep_their_length() {
    // 127, 128, 16 383 and 16 384 bytes: the varint length's size changes
    // (for the attributes, and for the events, links and arrays that hold
    // them); at 119 a `KeyValue` of key `big` is 128 bytes, past one byte,
    // and at 36 the `KeyValue` of the array `bigs` (three values) is.
    for len in [
        0, 1, 35, 36, 100, 118, 119, 127, 128, 16_383, 16_384, 70_000,
    ] {
        let mut spans = spans();
        spans.truncate(1);
        let bigs = || Value::Array(Array::String(vec!["z".repeat(len).into(); 3]));
        spans[0].attributes = vec![
            KeyValue::new("big", "y".repeat(len)),
            // Known up front (odd place), then written one by one (even).
            KeyValue::new("bigs", bigs()),
            KeyValue::new("bigs.again", bigs()),
        ];
        // Events (one of each way of writing them) and a link that long.
        let big = || vec![KeyValue::new("big", "w".repeat(len))];
        let at = spans[0].start_time;
        for name in ["long", "longer"] {
            spans[0].events.events.push(Event::new(name, at, big(), 0));
        }
        spans[0]
            .links
            .links
            .push(Link::new(context(7, 8, true), big(), 0));
        let encoded: Vec<EncodedSpan> = spans.iter().map(written).collect();
        let decoded = ExportTraceServiceRequest::decode(encoder().encode(&encoded).as_slice())
            .expect("decodes");
        assert_eq!(decoded, official(spans), "attributes of {len} bytes");
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        let value = span.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.clone());
        assert_eq!(
            value,
            Some(any_value::Value::StringValue("y".repeat(len))),
            "attribute of {len} bytes"
        );
    }
}

#[test]
fn an_attribute_noted_in_one_span_is_copied_into_another_as_written() {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let times = (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH);
    let ids = (TraceId::from(7_u128), SpanId::from(9_u64));
    let long = "v".repeat(200);
    for value in ["order:SO-1001", "", long.as_str()] {
        let mut first = SpanWriter::new(ids.0, ids.1, "first", Kind::Server, times);
        let mut attributes = first.attributes();
        attributes.string("before", "x");
        let noted = attributes.string_noted("waybill.transaction", value);
        attributes.string("after", "y");
        first.event("e", SystemTime::UNIX_EPOCH, |a| a.string("in.event", "z"));
        let first = first.finish(0, false);
        let copied = first.written(&noted).expect("a span attribute");
        let mut second = SpanWriter::new(ids.0, ids.1, "second", Kind::Internal, times);
        second.attributes().copy_written(copied);
        let second = Span::decode(second.finish(0, false).as_bytes()).expect("decodes");
        let first = Span::decode(first.as_bytes()).expect("decodes");
        assert_eq!(second.attributes.len(), 1);
        assert_eq!(second.attributes[0], first.attributes[1]);
        assert_eq!(second.attributes[0].key, "waybill.transaction");
    }
    // An event's attribute is not a span's: not handed out.
    let mut span = SpanWriter::new(ids.0, ids.1, "s", Kind::Server, times);
    let mut noted = None;
    span.event("e", SystemTime::UNIX_EPOCH, |a| {
        noted = Some(a.string_noted("k", "v"));
    });
    let span = span.finish(0, false);
    assert!(span.written(&noted.expect("noted")).is_none());
}

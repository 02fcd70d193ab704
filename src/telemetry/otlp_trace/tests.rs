use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

use super::TraceEncoder;
use crate::telemetry::resource;

fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        remote,
        TraceState::from_key_value([("vendor", "x=1")]).unwrap_or_default(),
    )
}

/// Every attribute kind, events, links (local and remote), each status.
fn spans() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("waybill")
        .with_version("1.2.3")
        .build();
    let other_scope = InstrumentationScope::builder("other")
        .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
        .with_attributes([KeyValue::new("scope.attr", 7)])
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
            "waybill.system",
            Value::from(std::sync::Arc::<str>::from("wms")),
        ),
        KeyValue::new(
            "waybill.keys",
            Value::Array(Array::String(vec![
                StringValue::from("order:4711"),
                StringValue::from(""),
            ])),
        ),
        KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2, 300_000]))),
        KeyValue::new("doubles", Value::Array(Array::F64(vec![0.5, -1e300]))),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("long", "x".repeat(300)),
    ];
    let mut events = SpanEvents::default();
    events.events = vec![
        Event::new(
            "order_released",
            start,
            vec![KeyValue::new("waybill.milestone.repeat", false)],
            0,
        ),
        Event::new("empty", start + Duration::from_millis(1), Vec::new(), 2),
    ];
    events.dropped_count = 1;
    let mut links = SpanLinks::default();
    links.links = vec![
        Link::new(
            context(0xabc, 0xdef, true),
            vec![KeyValue::new("waybill.link", "former_name")],
            0,
        ),
        Link::new(context(7, 8, false), Vec::new(), 3),
    ];
    links.dropped_count = 4;
    let span = |name: &'static str, kind, status, scope: &InstrumentationScope| SpanData {
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
    let mut full = span(
        "POST /v2/shipments",
        SpanKind::Client,
        Status::Unset,
        &scope,
    );
    full.events = events;
    full.links = links;
    full.dropped_attributes_count = 5;
    let mut child = span("waybill.flow", SpanKind::Internal, Status::Ok, &scope);
    child.parent_span_id = SpanId::from(0x99);
    child.parent_span_is_remote = true;
    vec![
        full,
        child,
        span(
            "GET",
            SpanKind::Server,
            Status::error("upstream 502"),
            &scope,
        ),
        span("x", SpanKind::Producer, Status::Unset, &other_scope),
        span("y", SpanKind::Consumer, Status::Unset, &other_scope),
    ]
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

#[test]
fn the_encoded_request_decodes_to_what_the_sdk_exporter_sends() {
    let spans = spans();
    let mut encoder = TraceEncoder::new(&resource_attributes());
    let decoded = ExportTraceServiceRequest::decode(encoder.encode(&spans)).expect("decodes");
    assert_eq!(decoded, official(spans));
}

#[test]
fn the_buffer_is_reused_and_each_request_stands_alone() {
    let spans = spans();
    let mut encoder = TraceEncoder::new(&resource_attributes());
    let all = encoder.encode(&spans).to_vec();
    let one = ExportTraceServiceRequest::decode(encoder.encode(&spans[2..3])).expect("decodes");
    assert_eq!(one, official(spans[2..3].to_vec()));
    assert!(all.len() > encoder.encode(&spans[2..3]).len());
    let empty = ExportTraceServiceRequest::decode(encoder.encode(&[])).expect("decodes");
    assert_eq!(empty.resource_spans.len(), 1);
    assert!(empty.resource_spans[0].scope_spans.is_empty());
}

#[test]
fn messages_longer_than_one_length_byte_keep_their_length() {
    // 127, 128, 16 383 and 16 384 bytes: the varint length's size changes.
    for len in [0, 1, 100, 127, 128, 16_383, 16_384, 70_000] {
        let mut spans = spans();
        spans.truncate(1);
        spans[0].attributes = vec![KeyValue::new("big", "y".repeat(len))];
        let mut encoder = TraceEncoder::new(&BTreeMap::new());
        let decoded = ExportTraceServiceRequest::decode(encoder.encode(&spans)).expect("decodes");
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        let value = span.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.clone());
        assert_eq!(
            value,
            Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "y".repeat(len)
                )
            ),
            "attribute of {len} bytes"
        );
    }
}

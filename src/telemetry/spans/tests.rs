//! Span encoding on hand-made correlator events: every span is decoded
//! with the official `opentelemetry-proto` types and read back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prometheus_client::registry::Registry;
use prost::Message as _;

use super::*;
use crate::clock::Stamp;
use crate::config::{ListenerId, RouteId};
use crate::correlate::{Marked, News};
use crate::extract::Problem;
use crate::proxy::{Exchange, Outcome, Tapped, UpstreamError};
use crate::state::{MilestoneRecord, Transaction, TxId};
use crate::telemetry::export::{QueueEnd, SpanQueue};
use crate::telemetry::{anchor_span_id, trace_id};

const CONFIG: &str = r#"
systems: [wms, carrier]
keys: [order, shipment]
listeners:
  - { name: wms-in, bind: 127.0.0.1:18001, upstream: http://127.0.0.1:9000, system: wms }
  - { name: carrier-out, bind: 127.0.0.1:18002, upstream: "https://api.carrier.example/v2", system: carrier, direction: outbound }
milestones:
  - { name: order_released, object: order }
  - { name: shipped, object: shipment }
routes:
  - name: wms.ship
    system: wms
    match: { method: POST, path: "/shipments/{shipment_id}/ship" }
    keys: { shipment: { path_param: shipment_id }, order: { header: x-order } }
    milestone: shipped
  - name: carrier.buy_label
    system: carrier
    match: { method: POST, path: "/shipments/{shipment_id}/buy" }
    keys: { shipment: { path_param: shipment_id } }
flows:
  - { name: order_to_ship, from: order_released, to: shipped, slo: 24h }
measures:
  - { name: freight_cost, unit: currency, currencies: [EUR] }
"#;

fn config() -> Arc<Config> {
    Arc::new(Config::from_yaml(CONFIG, "test.yaml").expect("valid test config"))
}

fn key(config: &Config, kind: &str, value: &str) -> Key {
    Key::new(config.key_kinds.get(kind).expect("declared"), value)
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn exchange(listener: usize, uri: &str, outcome: Outcome) -> ExchangeSummary {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static("wms.local:8080"),
    );
    ExchangeSummary::whole(Exchange {
        id: 7,
        listener: ListenerId(listener),
        system: config().listeners[listener].system.clone(),
        method: http::Method::POST,
        uri: uri.parse().expect("uri"),
        version: http::Version::HTTP_11,
        request_headers: headers.into(),
        started: t0(),
        duration: Duration::from_millis(250),
        upstream_duration: Duration::from_millis(200),
        outcome,
        request_body: Tapped::default(),
        response_body: Tapped::default(),
        replayed: false,
        trace_context: None,
    })
}

fn ok() -> Outcome {
    Outcome::Response {
        status: http::StatusCode::OK,
        headers: Default::default(),
    }
}

fn decode(span: &EncodedSpan) -> Span {
    Span::decode(span.as_bytes()).expect("a valid OTLP Span message")
}

fn find<'a>(attributes: &'a [KeyValue], name: &str) -> Option<&'a Value> {
    let mut found = attributes.iter().filter(|kv| kv.key == name);
    let first = found.next();
    assert!(found.next().is_none(), "attribute {name} twice");
    first.and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn attribute<'a>(span: &'a Span, name: &str) -> Option<&'a Value> {
    find(&span.attributes, name)
}

fn text(span: &Span, name: &str) -> String {
    match attribute(span, name) {
        Some(Value::StringValue(text)) => text.clone(),
        other => panic!("attribute {name} is {other:?}, not a string, in {span:?}"),
    }
}

fn strings(values: &[&str]) -> Value {
    Value::ArrayValue(ArrayValue {
        values: values
            .iter()
            .map(|v| AnyValue {
                value: Some(Value::StringValue((*v).to_owned())),
            })
            .collect(),
    })
}

fn nanos(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).expect("after the epoch");
    u64::try_from(since.as_nanos()).expect("fits")
}

fn status(span: &Span) -> i32 {
    span.status.as_ref().map_or(0, |s| s.code)
}

fn observer(config: &Arc<Config>) -> SpanObserver {
    SpanObserver::new(Arc::clone(config), None, &mut Registry::default())
}

#[test]
fn an_inbound_exchange_span_carries_the_stable_http_conventions_and_the_business_story() {
    let config = config();
    let observer = observer(&config);
    let order = key(&config, "order", "SO-1001");
    let shipment = key(&config, "shipment", "SH-1");
    let shipped = config.milestones.get("shipped").expect("declared");
    let mut observation = Observation {
        exchange: exchange(0, "/shipments/SH-1/ship?dock=3", ok()),
        route: Some(RouteId(0)),
        operation: config.operations.get("wms.ship"),
        keys: vec![shipment.clone(), order.clone()],
        milestone: Some(shipped.clone()),
        problems: vec![Problem::MalformedJson],
        measures: Default::default(),
    };
    observation.exchange.request_headers.map_mut().insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let mut transaction = Transaction::new(TxId(1), order.clone(), t0());
    transaction.set_root(Some(order.clone()));
    transaction.set_former_names(vec![shipment.clone()]);
    let record = MilestoneRecord {
        milestone: shipped.clone(),
        object: shipment.clone(),
        at: Stamp::new(t0()),
        system: observation.exchange.system.clone(),
        operation: observation.operation.clone(),
        exchange: 7,
        repeats: 0,
    };
    let news = News {
        milestones: vec![Marked {
            record,
            repeat: false,
        }],
        flows: vec![FlowRecord {
            flow: config.flow_names.get("order_to_ship").expect("declared"),
            object: shipment.clone(),
            started: Stamp::new(t0() - Duration::from_secs(3600)),
            ended: Stamp::new(t0()),
            duration: Duration::from_secs(3600),
            within_slo: true,
        }],
        ..News::default()
    };
    let keys = [shipment.clone(), order.clone()];
    let event = Correlated {
        observation: &observation,
        transaction: &transaction,
        keys: &keys,
        news: &news,
    };
    let spans = observer.spans(&event);
    assert_eq!(spans.len(), 2, "the exchange span and one flow span");
    let spans: Vec<Span> = spans.iter().map(decode).collect();

    let span = &spans[0];
    assert_eq!(span.name, "POST /shipments/{shipment_id}/ship");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.trace_id, trace_id(&order).to_bytes());
    assert_eq!(span.span_id.len(), 8);
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(span.start_time_unix_nano, nanos(t0()));
    assert_eq!(
        span.end_time_unix_nano,
        nanos(t0() + Duration::from_millis(250))
    );
    assert_eq!(text(span, "http.request.method"), "POST");
    assert_eq!(text(span, "http.route"), "/shipments/{shipment_id}/ship");
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(text(span, "url.path"), "/shipments/SH-1/ship");
    assert_eq!(text(span, "url.query"), "dock=3");
    assert_eq!(text(span, "url.scheme"), "http");
    assert_eq!(text(span, "server.address"), "wms.local");
    assert_eq!(attribute(span, "server.port"), Some(&Value::IntValue(8080)));
    assert_eq!(text(span, "network.protocol.version"), "1.1");
    assert!(attribute(span, "error.type").is_none());
    assert_eq!(status(span), StatusCode::Unset as i32);
    assert_eq!(text(span, "waybill.system"), "wms");
    assert_eq!(text(span, "waybill.operation"), "wms.ship");
    assert_eq!(text(span, "waybill.transaction"), "order:SO-1001");
    assert_eq!(text(span, "waybill.milestone"), "shipped");
    assert_eq!(
        attribute(span, "waybill.keys"),
        Some(&strings(&["shipment:SH-1", "order:SO-1001"]))
    );
    assert_eq!(
        attribute(span, "waybill.extraction.problems"),
        Some(&strings(&["malformed_json"]))
    );

    assert_eq!(span.events.len(), 1);
    let event = &span.events[0];
    assert_eq!(event.name, "shipped");
    assert_eq!(event.time_unix_nano, nanos(t0()));
    assert_eq!(
        find(&event.attributes, "waybill.object.value"),
        Some(&Value::StringValue("SH-1".to_owned()))
    );
    assert_eq!(
        find(&event.attributes, "waybill.object.kind"),
        Some(&Value::StringValue("shipment".to_owned()))
    );
    assert_eq!(
        find(&event.attributes, "waybill.milestone.repeat"),
        Some(&Value::BoolValue(false))
    );

    assert_eq!(span.links.len(), 2, "former name and traceparent");
    assert_eq!(span.dropped_links_count, 0);
    assert_eq!(span.links[0].trace_id, trace_id(&shipment).to_bytes());
    assert_eq!(span.links[0].span_id, anchor_span_id(&shipment).to_bytes());
    assert_eq!(
        find(&span.links[0].attributes, "waybill.transaction"),
        Some(&Value::StringValue("shipment:SH-1".to_owned()))
    );
    assert_eq!(
        find(&span.links[0].attributes, "waybill.link"),
        Some(&Value::StringValue("former_name".to_owned()))
    );
    assert_eq!(
        TraceId::from_bytes(span.links[1].trace_id.clone().try_into().expect("16 bytes"))
            .to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        find(&span.links[1].attributes, "waybill.link"),
        Some(&Value::StringValue("traceparent".to_owned()))
    );

    let flow = &spans[1];
    assert_eq!(flow.name, "waybill.flow");
    assert_eq!(flow.kind, SpanKind::Internal as i32);
    assert_eq!(flow.trace_id, trace_id(&order).to_bytes());
    assert_ne!(flow.span_id, span.span_id);
    assert_eq!(
        flow.start_time_unix_nano,
        nanos(t0() - Duration::from_secs(3600))
    );
    assert_eq!(flow.end_time_unix_nano, nanos(t0()));
    assert_eq!(text(flow, "waybill.flow"), "order_to_ship");
    assert_eq!(text(flow, "waybill.flow.object"), "shipment:SH-1");
    assert_eq!(text(flow, "waybill.transaction"), "order:SO-1001");
    assert_eq!(
        attribute(flow, "waybill.flow.duration_seconds"),
        Some(&Value::DoubleValue(3600.0))
    );
    assert_eq!(
        attribute(flow, "waybill.flow.slo_seconds"),
        Some(&Value::DoubleValue(86400.0))
    );
    assert_eq!(
        attribute(flow, "waybill.flow.within_slo"),
        Some(&Value::BoolValue(true))
    );
}

#[test]
fn an_outbound_upstream_failure_is_a_client_span_with_its_error_type() {
    let config = config();
    let observer = observer(&config);
    let observation = Observation {
        exchange: exchange(
            1,
            "/shipments/SH-1/buy",
            Outcome::UpstreamFailed {
                error: UpstreamError::ConnectRefused,
                status: http::StatusCode::BAD_GATEWAY,
            },
        ),
        route: Some(RouteId(1)),
        operation: config.operations.get("carrier.buy_label"),
        keys: Vec::new(),
        milestone: None,
        problems: Vec::new(),
        measures: Default::default(),
    };
    let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([1; 16])));
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(text(&span, "error.type"), "connect_refused");
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::IntValue(502))
    );
    assert_eq!(text(&span, "server.address"), "api.carrier.example");
    assert_eq!(attribute(&span, "server.port"), Some(&Value::IntValue(443)));
    assert_eq!(text(&span, "url.scheme"), "https");
    assert_eq!(
        text(&span, "url.full"),
        "https://api.carrier.example/v2/shipments/SH-1/buy"
    );
    assert_eq!(status(&span), StatusCode::Error as i32);
}

#[test]
fn a_server_error_response_sets_error_type_to_the_status_code() {
    let config = config();
    let observer = observer(&config);
    let observation = unrouted(exchange(
        0,
        "/unknown",
        Outcome::Response {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            headers: Default::default(),
        },
    ));
    let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([1; 16])));
    assert_eq!(span.name, "POST", "no route: the method alone");
    assert!(attribute(&span, "http.route").is_none());
    assert_eq!(text(&span, "error.type"), "503");
}

#[test]
fn a_client_error_is_an_error_on_client_spans_only() {
    let config = config();
    let observer = observer(&config);
    let not_found = || Outcome::Response {
        status: http::StatusCode::NOT_FOUND,
        headers: Default::default(),
    };
    let observation = |listener| Observation {
        exchange: exchange(listener, "/x", not_found()),
        route: None,
        operation: None,
        keys: Vec::new(),
        milestone: None,
        problems: Vec::new(),
        measures: Default::default(),
    };
    let server = decode(&observer.exchange_span(&observation(0), TraceId::from_bytes([1; 16])));
    assert!(attribute(&server, "error.type").is_none());
    assert_eq!(status(&server), StatusCode::Unset as i32);
    let client = decode(&observer.exchange_span(&observation(1), TraceId::from_bytes([1; 16])));
    assert_eq!(text(&client, "error.type"), "404");
    assert_eq!(status(&client), StatusCode::Error as i32);
}

/// An observer whose spans go to a queue of `capacity`, sampled by `sampler`.
fn queued_observer(
    config: &Arc<Config>,
    capacity: usize,
    sampler: Sampler,
    registry: &mut Registry,
) -> (SpanObserver, QueueEnd) {
    let metrics = super::super::export::ExportMetrics::new(registry);
    let (queue, rx) = SpanQueue::bounded(capacity, metrics);
    let sink = SpanSink { queue, sampler };
    (
        SpanObserver::new(Arc::clone(config), Some(sink), registry),
        rx,
    )
}

fn keyless() -> Observation {
    unrouted(exchange(0, "/health", ok()))
}

/// `exchange`, matched by no route, with nothing extracted.
fn unrouted(exchange: ExchangeSummary) -> Observation {
    Observation {
        exchange,
        route: None,
        operation: None,
        keys: Vec::new(),
        milestone: None,
        problems: Vec::new(),
        measures: Default::default(),
    }
}

#[test]
fn a_full_span_queue_drops_and_counts_instead_of_waiting() {
    let config = config();
    let mut registry = Registry::default();
    let (mut observer, rx) = queued_observer(&config, 2, Sampler::AlwaysOn, &mut registry);
    for _ in 0..5 {
        observer.uncorrelated(&keyless());
    }
    let mut received = 0;
    while rx.try_recv().is_some() {
        received += 1;
    }
    assert_eq!(received, 2);
    let text = crate::telemetry::Metrics::new(registry).render();
    assert!(
        text.contains("waybill_telemetry_dropped_spans_total{reason=\"queue_full\"} 3"),
        "{text}"
    );
}

#[test]
fn a_sampler_that_keeps_nothing_queues_nothing() {
    let config = config();
    let mut registry = Registry::default();
    let (mut observer, rx) = queued_observer(&config, 8, Sampler::AlwaysOff, &mut registry);
    observer.uncorrelated(&keyless());
    assert!(rx.try_recv().is_none());
}

#[test]
fn an_exception_opened_by_a_deadline_is_a_span_in_the_transaction_trace() {
    let config = config();
    let mut registry = Registry::default();
    let (mut observer, rx) = queued_observer(&config, 8, Sampler::AlwaysOn, &mut registry);
    let order = key(&config, "order", "SO-1001");
    let transaction = Transaction::new(TxId(1), order.clone(), t0());
    let exception = crate::state::ExceptionRecord {
        id: 7,
        kind: config
            .exception_kinds
            .get(crate::config::OUT_OF_ORDER)
            .expect("built-in kind"),
        owner: config.systems.iter().next().expect("a system").clone(),
        object: order.clone(),
        reason: "late".to_owned(),
        opened: t0() + Duration::from_secs(900),
        resolved: None,
        evidence: vec![3],
        resolution: crate::state::Resolution::Manual,
    };
    observer.exception(&transaction, &exception);
    let span = decode(&rx.try_recv().expect("one span queued"));
    assert_eq!(span.name, "waybill.exception");
    assert_eq!(span.kind, SpanKind::Internal as i32);
    assert_eq!(span.trace_id, trace_id(&order).to_bytes());
    assert_eq!(
        span.start_time_unix_nano,
        nanos(t0() + Duration::from_secs(900))
    );
    assert_eq!(text(&span, "waybill.exception.kind"), "out_of_order");
    assert_eq!(text(&span, "waybill.exception.state"), "opened");
    assert_eq!(text(&span, "waybill.transaction"), "order:SO-1001");
}

#[test]
fn measure_values_are_attributes_of_the_exchange_that_carried_them() {
    let config = config();
    let observer = observer(&config);
    let cost = config.measures.get("freight_cost").expect("declared");
    let eur = config.units.get("EUR").expect("declared");
    let carrier = config.systems.get("carrier").expect("declared");
    let value = |amount: &str| crate::extract::MeasureValue {
        measure: cost.clone(),
        role: crate::config::Role::Quoted,
        amount: crate::config::Amount::parse(amount).expect("amount"),
        unit: eur.clone(),
        system: carrier.clone(),
    };
    let mut observation = keyless();
    observation.measures.values = vec![value("12.50"), value("0.1")];
    observation
        .measures
        .unreadable
        .push((cost.clone(), crate::extract::Unreadable::Locale));
    let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([7; 16])));
    assert_eq!(
        attribute(&span, "waybill.measure.freight_cost.quoted"),
        Some(&Value::DoubleValue(12.5)),
        "the first value, as a number"
    );
    assert_eq!(
        text(&span, "waybill.measure.freight_cost.quoted.unit"),
        "EUR"
    );
    assert_eq!(
        attribute(&span, "waybill.measures"),
        Some(&strings(&[
            "freight_cost quoted 12.5 EUR",
            "freight_cost quoted 0.1 EUR",
        ]))
    );
    assert_eq!(
        attribute(&span, "waybill.measure.unparseable"),
        Some(&strings(&["freight_cost:locale"]))
    );
    assert_eq!(
        attribute(&keyless_span(&observer), "waybill.measures"),
        None
    );
}

fn keyless_span(observer: &SpanObserver) -> Span {
    decode(&observer.exchange_span(&keyless(), TraceId::from_bytes([8; 16])))
}

#[test]
fn server_attributes_follow_each_exchanges_host() {
    let config = config();
    let observer = observer(&config);
    let span = |uri: &str, host: Option<&'static str>| {
        let mut exchange = exchange(0, uri, ok());
        match host {
            Some(host) => exchange
                .request_headers
                .map_mut()
                .insert(http::header::HOST, http::HeaderValue::from_static(host)),
            None => exchange
                .request_headers
                .map_mut()
                .remove(http::header::HOST),
        };
        decode(&observer.exchange_span(&unrouted(exchange), TraceId::from_bytes([3; 16])))
    };
    let address = |span: &Span| attribute(span, "server.address").cloned();
    let port = |span: &Span| attribute(span, "server.port").cloned();
    let host = |name: &str| Some(Value::StringValue(name.to_owned()));
    // The same Host twice, another, the first again, none, an invalid one,
    // and a request whose target names its own authority.
    for (uri, header, want_address, want_port) in [
        ("/a", Some("a.example:81"), host("a.example"), Some(81)),
        ("/a", Some("a.example:81"), host("a.example"), Some(81)),
        ("/b", Some("b.example"), host("b.example"), None),
        ("/a", Some("a.example:81"), host("a.example"), Some(81)),
        ("/n", None, None, None),
        ("/x", Some("not a host"), None, None),
        (
            "http://c.example:82/c",
            Some("a.example:81"),
            host("c.example"),
            Some(82),
        ),
    ] {
        let span = span(uri, header);
        assert_eq!(address(&span), want_address, "{uri} {header:?}");
        assert_eq!(
            port(&span),
            want_port.map(Value::IntValue),
            "{uri} {header:?}"
        );
        assert_eq!(text(&span, "url.scheme"), "http");
        assert_eq!(
            text(&span, "url.path"),
            uri.trim_start_matches("http://c.example:82")
        );
    }
}

#[test]
fn each_span_carries_its_own_routes_system_and_operation() {
    let config = config();
    let observer = observer(&config);
    // Every route on every listener (systems `wms` and `carrier`), and
    // back: the declared attributes encoded once are each exchange's own.
    let mut seen = Vec::new();
    for round in 0..2 {
        for route in &config.routes {
            for (l, listener) in config.listeners.iter().enumerate() {
                let observation = Observation {
                    route: Some(route.id),
                    operation: Some(route.operation.clone()),
                    ..unrouted(exchange(l, "/shipments/SH-1/ship", ok()))
                };
                let span = decode(
                    &observer.exchange_span(&observation, TraceId::from_bytes([round + 1; 16])),
                );
                assert_eq!(text(&span, "http.route"), route.path.text);
                assert_eq!(text(&span, "waybill.operation"), route.operation.as_str());
                assert_eq!(text(&span, "waybill.system"), listener.system.as_str());
                seen.push((text(&span, "http.route"), text(&span, "waybill.system")));
            }
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), config.routes.len() * config.listeners.len());
    // An unrouted exchange has neither route nor operation.
    let span = keyless_span(&observer);
    assert!(attribute(&span, "http.route").is_none());
    assert!(attribute(&span, "waybill.operation").is_none());
    assert_eq!(
        text(&span, "waybill.system"),
        config.listeners[0].system.as_str()
    );
}

#[test]
fn each_event_queues_its_own_spans_once() {
    let config = config();
    let mut registry = Registry::default();
    let (mut observer, rx) = queued_observer(&config, 16, Sampler::AlwaysOn, &mut registry);
    let shipment = key(&config, "shipment", "SH-1");
    let transaction = Transaction::new(TxId(1), shipment.clone(), t0());
    let observation = Observation {
        route: Some(RouteId(0)),
        operation: config.operations.get("wms.ship"),
        ..unrouted(exchange(0, "/shipments/SH-1/ship", ok()))
    };
    let flow = FlowRecord {
        flow: config.flow_names.get("order_to_ship").expect("declared"),
        object: shipment.clone(),
        started: Stamp::new(t0() - Duration::from_secs(60)),
        ended: Stamp::new(t0()),
        duration: Duration::from_secs(60),
        within_slo: true,
    };
    let with_flow = News {
        flows: vec![flow],
        ..News::default()
    };
    let without = News::default();
    let keys = [shipment];
    // An event with a flow (two spans), one without, the first again.
    for news in [&with_flow, &without, &with_flow] {
        observer.correlated(&Correlated {
            observation: &observation,
            transaction: &transaction,
            keys: &keys,
            news,
        });
    }
    let mut names = Vec::new();
    while let Some(span) = rx.try_recv() {
        let span = decode(&span);
        assert_eq!(span.trace_id, transaction.trace_id().to_bytes());
        names.push(span.name);
    }
    let exchange = "POST /shipments/{shipment_id}/ship";
    assert_eq!(
        names,
        [exchange, "waybill.flow", exchange, exchange, "waybill.flow"]
    );
}

#[test]
fn each_span_carries_its_own_method_and_protocol_version() {
    let config = config();
    let observer = observer(&config);
    let cases = [
        (
            http::Method::GET,
            http::Version::HTTP_10,
            "GET",
            None,
            "1.0",
        ),
        (
            http::Method::DELETE,
            http::Version::HTTP_2,
            "DELETE",
            None,
            "2",
        ),
        (
            http::Method::from_bytes(b"PROPFIND").expect("a method"),
            http::Version::HTTP_11,
            "_OTHER",
            Some("PROPFIND"),
            "1.1",
        ),
        (
            http::Method::TRACE,
            http::Version::HTTP_09,
            "TRACE",
            None,
            "0.9",
        ),
    ];
    // Twice, so each table entry is used after the others.
    for (round, (method, version, name, original, protocol)) in
        cases.iter().chain(cases.iter()).enumerate()
    {
        let mut exchange = exchange(0, "/unknown", ok());
        exchange.method = method.clone();
        exchange.version = *version;
        let trace = TraceId::from_bytes([round as u8 + 1; 16]);
        let span = decode(&observer.exchange_span(&unrouted(exchange), trace));
        assert_eq!(span.name, *name);
        assert_eq!(text(&span, "http.request.method"), *name);
        assert_eq!(
            attribute(&span, "http.request.method_original").is_some(),
            original.is_some()
        );
        if let Some(original) = original {
            assert_eq!(text(&span, "http.request.method_original"), *original);
        }
        assert_eq!(text(&span, "network.protocol.version"), *protocol);
        let methods = span
            .attributes
            .iter()
            .filter(|kv| kv.key == "http.request.method")
            .count();
        assert_eq!(methods, 1, "one method attribute");
    }
}

#[test]
fn each_span_carries_its_own_status_code() {
    let config = config();
    let observer = observer(&config);
    // Kept encoded after their first span (100–599), or written each time.
    for code in [200, 503, 200, 100, 599, 600, 999, 503, 204] {
        let status = http::StatusCode::from_u16(code).expect("a status code");
        let outcome = Outcome::Response {
            status,
            headers: Default::default(),
        };
        let observation = unrouted(exchange(0, "/x", outcome));
        let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([1; 16])));
        assert_eq!(
            attribute(&span, "http.response.status_code"),
            Some(&Value::IntValue(i64::from(code))),
            "{code}"
        );
    }
}

#[test]
fn a_flow_span_says_whether_its_flow_met_the_slo() {
    let config = config();
    let observer = observer(&config);
    let shipment = key(&config, "shipment", "SH-1");
    let transaction = Transaction::new(TxId(1), shipment.clone(), t0());
    let observation = unrouted(exchange(0, "/x", ok()));
    let flow = |within_slo, hours: u64| FlowRecord {
        flow: config.flow_names.get("order_to_ship").expect("declared"),
        object: shipment.clone(),
        started: Stamp::new(t0() - Duration::from_secs(hours * 3600)),
        ended: Stamp::new(t0()),
        duration: Duration::from_secs(hours * 3600),
        within_slo,
    };
    let news = News {
        flows: vec![flow(false, 30), flow(true, 2), flow(false, 25)],
        ..News::default()
    };
    let keys = [shipment];
    let spans = observer.spans(&Correlated {
        observation: &observation,
        transaction: &transaction,
        keys: &keys,
        news: &news,
    });
    let flows: Vec<Span> = spans[1..].iter().map(decode).collect();
    let outcomes: Vec<_> = flows
        .iter()
        .map(|flow| {
            (
                attribute(flow, "waybill.flow.within_slo").cloned(),
                attribute(flow, "waybill.flow.duration_seconds").cloned(),
            )
        })
        .collect();
    let expected = |within, seconds| {
        (
            Some(Value::BoolValue(within)),
            Some(Value::DoubleValue(seconds)),
        )
    };
    assert_eq!(
        outcomes,
        [
            expected(false, 108_000.0),
            expected(true, 7_200.0),
            expected(false, 90_000.0)
        ]
    );
    for flow in &flows {
        assert_eq!(text(flow, "waybill.flow"), "order_to_ship");
        assert_eq!(
            attribute(flow, "waybill.flow.slo_seconds"),
            Some(&Value::DoubleValue(86400.0))
        );
    }
}

#[test]
fn odd_request_targets_give_the_url_attributes_they_always_gave() {
    // (target, url.path, url.query, url.full on the outbound listener),
    // as read from the target's `http::Uri` before it was kept as text.
    let cases = [
        ("/a/b?c=1", "/a/b", Some("c=1"), "/a/b?c=1"),
        ("/a?", "/a", Some(""), "/a?"),
        ("/a??b=?", "/a", Some("?b=?"), "/a??b=?"),
        (
            "/p%20q/%2F?x=%2F&y",
            "/p%20q/%2F",
            Some("x=%2F&y"),
            "/p%20q/%2F?x=%2F&y",
        ),
        ("/a#frag", "/a", None, "/a"),
        ("*", "*", None, "*"),
        ("http://x.example", "/", None, "/"),
        // The summary kept `http://x.example/?a=1` (the `Uri`'s text).
        ("http://x.example?a=1", "/", Some("a=1"), "/?a=1"),
        ("http://x.example/p?q", "/p", Some("q"), "/p?q"),
        ("x.example:443", "", None, "/"),
    ];
    let config = config();
    let observer = observer(&config);
    for (target, path, query, full) in cases {
        for listener in [0, 1] {
            let observation = unrouted(exchange(listener, target, ok()));
            let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([1; 16])));
            assert_eq!(text(&span, "url.path"), path, "url.path of {target}");
            let written = attribute(&span, "url.query").map(|_| text(&span, "url.query"));
            assert_eq!(written.as_deref(), query, "url.query of {target}");
            if listener == 1 {
                let full = ["https://api.carrier.example/v2", full].concat();
                assert_eq!(text(&span, "url.full"), full, "url.full of {target}");
            } else {
                assert!(attribute(&span, "url.full").is_none());
            }
        }
    }
}

#[test]
fn a_route_seen_with_many_statuses_and_kinds_keeps_each_spans_own() {
    let config = config();
    let observer = observer(&config);
    // More combinations than a route keeps encoded: the first ones are
    // copied, the later ones written attribute by attribute; then the
    // first ones again, on both listeners (SERVER and CLIENT spans).
    let codes: Vec<u16> = (200..200 + 2 * FACT_PIECES_PER_ROUTE as u16).collect();
    for code in codes.iter().chain(&codes[..4]) {
        for (listener, kind) in [(0, SpanKind::Server), (1, SpanKind::Client)] {
            let status = http::StatusCode::from_u16(*code).expect("a status code");
            let outcome = Outcome::Response {
                status,
                headers: Default::default(),
            };
            let observation = Observation {
                route: Some(RouteId(1)),
                operation: config.operations.get("carrier.buy_label"),
                ..unrouted(exchange(listener, "/shipments/SH-1/buy", outcome))
            };
            let span = decode(&observer.exchange_span(&observation, TraceId::from_bytes([1; 16])));
            assert_eq!(span.name, "POST /shipments/{shipment_id}/buy");
            assert_eq!(span.kind, kind as i32);
            assert_eq!(
                attribute(&span, "http.response.status_code"),
                Some(&Value::IntValue(i64::from(*code))),
                "{code}"
            );
            assert_eq!(text(&span, "http.request.method"), "POST");
            assert_eq!(text(&span, "http.route"), "/shipments/{shipment_id}/buy");
            assert_eq!(text(&span, "waybill.operation"), "carrier.buy_label");
            assert_eq!(text(&span, "network.protocol.version"), "1.1");
            let system = config.listeners[listener].system.as_str();
            assert_eq!(text(&span, "waybill.system"), system);
        }
    }
}

/// The URL attributes of a route's exchanges, on either listener, with
/// the same target and `Host` twice in a row (copied from the first),
/// another target, query or `Host` (written again), an absolute-form
/// target and a route that matched none: each span's are those a new
/// observer writes for its exchange alone.
#[test]
fn a_route_s_url_attributes_are_copied_only_for_the_same_listener_target_and_host() {
    let config = config();
    let observer = observer(&config);
    let route = &config.routes[0];
    let url = |span: &Span| {
        let names = [
            "url.full",
            "url.scheme",
            "server.address",
            "server.port",
            "url.path",
            "url.query",
        ];
        names.map(|name| attribute(span, name).cloned())
    };
    let cases = [
        (0, "/shipments/SH-1/ship", "wms.local:8080"),
        (0, "/shipments/SH-1/ship", "wms.local:8080"),
        (0, "/shipments/SH-1/ship", "wms.example"),
        (0, "/shipments/SH-1/ship", "wms.example"),
        (1, "/shipments/SH-1/ship", "wms.example"),
        (1, "/shipments/SH-1/ship", "wms.local:8080"),
        (0, "/shipments/SH-1/ship", "wms.local:8080"),
        (0, "/shipments/SH-1/ship?a=1", "wms.local:8080"),
        (0, "/shipments/SH-1/ship?a=2", "wms.local:8080"),
        (0, "/shipments/SH-2/ship?a=2", "wms.local:8080"),
        (
            0,
            "http://x.example:81/shipments/SH-2/ship?a=2",
            "wms.local:8080",
        ),
        (
            0,
            "http://y.example/shipments/SH-2/ship?a=2",
            "wms.local:8080",
        ),
        (
            1,
            "http://y.example/shipments/SH-2/ship?a=2",
            "wms.local:8080",
        ),
        (1, "/shipments/SH-2/ship?a=2", "wms.local:8080"),
        (1, "/shipments/SH-2/ship?a=2", "wms.local:8080"),
    ];
    for routed in [true, false] {
        for (listener, target, host) in cases {
            let observation = || {
                let mut exchange = exchange(listener, target, ok());
                let host = http::HeaderValue::from_static(host);
                exchange
                    .request_headers
                    .map_mut()
                    .insert(http::header::HOST, host);
                Observation {
                    route: routed.then_some(route.id),
                    operation: routed.then(|| route.operation.clone()),
                    ..unrouted(exchange)
                }
            };
            let trace = TraceId::from_bytes([9; 16]);
            let span = decode(&observer.exchange_span(&observation(), trace));
            let alone =
                decode(&super::tests::observer(&config).exchange_span(&observation(), trace));
            assert_eq!(url(&span), url(&alone), "{listener} {target} {host}");
            assert!(url(&span)[4].is_some(), "url.path of {target}");
        }
    }
}

//! OTLP trace export end to end: two sidecars in-process (one beside the
//! WMS, one on the carrier egress), each with a real upstream on loopback,
//! exporting to an in-process OTLP/gRPC receiver built from the official
//! `opentelemetry-proto` service. One order is driven through both; the
//! received spans must tell its story in one trace whose ID is derived from
//! the order number. A missing or hanging collector must not change traffic.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use support::otlp_receiver::{closed_port, hex, HangingReceiver, OtlpReceiver, Received};
use support::serve;
use waybill::app::{self, Sidecar};
use waybill::clock::{Clock, ManualClock};
use waybill::config::{Config, Engine};
use waybill::extract::Key;

/// Upper bound of every wait for the pipeline or the receiver.
const WAIT: Duration = Duration::from_secs(10);
/// Upper bound of a sidecar shutdown when the collector misbehaves.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

/// The documented trace ID of `order` / `SO-1001` (see `telemetry::trace_id`).
const SO_1001_TRACE: &str = "f7b15d390d8b21411bc72ccb0e8d5e26";

/// A clock the test moves: seconds after a fixed start.
fn test_clock() -> (Clock, ManualClock) {
    let manual = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    (manual.clock(), manual)
}

/// The warehouse system behind the WMS sidecar.
async fn wms() -> SocketAddr {
    serve(
        Router::new()
            .route(
                "/orders/{order}/release",
                post(|| async { Json(json!({"status": "released"})) }),
            )
            .route(
                "/shipments/{shipment}/ship",
                post(|| async { Json(json!({"status": "shipped"})) }),
            )
            .route("/health", get(|| async { "ok" })),
    )
    .await
}

/// The carrier API behind the egress sidecar.
async fn carrier() -> SocketAddr {
    serve(
        Router::new()
            .route(
                "/v2/shipments/{id}/rates",
                get(|| async { Json(json!({"rates": [{"service": "ground", "amount": 9.5}]})) }),
            )
            .route(
                "/v2/shipments/{id}/buy",
                post(
                    |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        Json(json!({"id": id, "tracking_code": format!("1Z{id}")}))
                    },
                ),
            ),
    )
    .await
}

fn telemetry(endpoint: &str, service: &str, extra: &str) -> String {
    format!(
        "telemetry:\n  traces: {{ endpoint: \"{endpoint}\", protocol: grpc, service_name: {service}, export_timeout: 1s{extra} }}\n"
    )
}

fn wms_routes(upstream: SocketAddr, telemetry: &str) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [wms, carrier]
keys: [order, shipment, tracking]
root: order
listeners:
  - {{ name: wms-in, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms }}
milestones:
  - {{ name: order_released, object: order }}
  - {{ name: label_created, object: shipment }}
  - {{ name: shipped, object: shipment }}
routes:
  - name: wms.release
    system: wms
    match: {{ method: POST, path: "/orders/{{order_id}}/release" }}
    keys: {{ order: {{ path_param: order_id }} }}
    milestone: order_released
  - name: wms.ship
    system: wms
    match: {{ method: POST, path: "/shipments/{{shipment_id}}/ship" }}
    keys:
      shipment: {{ path_param: shipment_id }}
      order: {{ request_json: $.order_id }}
    milestone: shipped
flows:
  - {{ name: order_to_ship, from: order_released, to: shipped, slo: 24h }}
{telemetry}"#
    )
}

fn carrier_routes(upstream: SocketAddr, telemetry: &str) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [wms, carrier]
keys: [order, shipment, tracking]
root: order
listeners:
  - {{ name: carrier-out, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: carrier, direction: outbound }}
milestones:
  - {{ name: label_created, object: shipment }}
routes:
  - name: carrier.rates
    system: carrier
    match: {{ method: GET, path: "/v2/shipments/{{shipment_id}}/rates" }}
    keys: {{ shipment: {{ path_param: shipment_id }} }}
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: "/v2/shipments/{{shipment_id}}/buy" }}
    keys:
      shipment: {{ path_param: shipment_id }}
      order: {{ request_json: $.reference }}
      tracking: {{ response_json: $.tracking_code }}
    milestone: label_created
{telemetry}"#
    )
}

async fn start(routes: &str, clock: Clock) -> Sidecar {
    let mut config = Config::from_yaml(routes, "otlp-test.yaml").expect("valid routes");
    // `WAYBILL_TEST_ENGINE=hyper` (ci/test.sh's second run): the
    // listeners are served by hyper's HTTP/1 engine (by default, `auto`:
    // the native one).
    if std::env::var("WAYBILL_TEST_ENGINE").as_deref() == Ok("hyper") {
        for listener in &mut config.listeners {
            listener.engine = Engine::Hyper;
        }
    }
    // No OTEL_* variable of the machine running the tests leaks in.
    app::start_with_env(config, clock, &|_| None)
        .await
        .expect("sidecar starts")
}

async fn send(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    listener: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    traceparent: Option<&str>,
) -> (u16, String) {
    let addr = sidecar.listener_addr(listener).expect("listener");
    let mut request = client.request(method, format!("http://{addr}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("request through the sidecar");
    let status = response.status().as_u16();
    (status, response.text().await.expect("response body"))
}

/// The OpenMetrics exposition (the one that carries exemplars), as
/// Prometheus asks for it.
async fn metrics(client: &reqwest::Client, sidecar: &Sidecar) -> String {
    client
        .get(format!("http://{}/metrics", sidecar.admin_addr()))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the sample line starting with `series ` (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn dropped(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        &format!("waybill_telemetry_dropped_spans_total{{reason=\"{reason}\"}}"),
    )
}

fn expected_trace(kind: &str, value: &str, config: &Config) -> String {
    let key = Key::new(config.key_kinds.get(kind).expect("declared kind"), value);
    waybill::telemetry::trace_id(&key).to_string()
}

fn find<'a>(spans: &'a [Received], operation: &str) -> Option<&'a Received> {
    spans.iter().find(|s| {
        matches!(
            s.attribute("waybill.operation"),
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(op)) if op == operation
        )
    })
}

#[tokio::test]
async fn one_order_seen_by_two_sidecars_lands_in_one_deterministic_trace() {
    let receiver = OtlpReceiver::start().await;
    let (clock, offset) = test_clock();
    let wms_routes = wms_routes(
        wms().await,
        &telemetry(&receiver.endpoint(), "waybill-wms", ""),
    );
    let carrier_routes = carrier_routes(
        carrier().await,
        &telemetry(&receiver.endpoint(), "waybill-carrier", ""),
    );
    let config = Config::from_yaml(&wms_routes, "wms.yaml").expect("valid");
    let wms = start(&wms_routes, clock.clone()).await;
    let carrier = start(&carrier_routes, clock).await;
    let client = reqwest::Client::new();
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // 09:00 the order is released at the WMS (the caller sent a traceparent).
    let (status, _) = send(
        &client,
        &wms,
        "wms-in",
        reqwest::Method::POST,
        "/orders/SO-1001/release",
        None,
        Some(caller),
    )
    .await;
    assert_eq!(status, 200);
    assert!(wms.settle(WAIT).await);
    // 10:00 the carrier is asked for rates of a shipment it has never seen.
    offset.set(Duration::from_secs(3600));
    let (status, body) = send(
        &client,
        &carrier,
        "carrier-out",
        reqwest::Method::GET,
        "/v2/shipments/SH-1/rates",
        None,
        Some("not-a-traceparent"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("ground"), "{body}");
    assert!(carrier.settle(WAIT).await);
    // 10:30 the label is bought: the shipment now belongs to the order.
    offset.set(Duration::from_secs(5400));
    let (status, body) = send(
        &client,
        &carrier,
        "carrier-out",
        reqwest::Method::POST,
        "/v2/shipments/SH-1/buy",
        Some(json!({"reference": "SO-1001"})),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("1ZSH-1"), "{body}");
    assert!(carrier.settle(WAIT).await);
    // 11:00 the WMS ships it: order_to_ship took two hours.
    offset.set(Duration::from_secs(7200));
    let (status, _) = send(
        &client,
        &wms,
        "wms-in",
        reqwest::Method::POST,
        "/shipments/SH-1/ship",
        Some(json!({"order_id": "SO-1001"})),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // An exchange that carries no key still gets a span.
    let (status, _) = send(
        &client,
        &wms,
        "wms-in",
        reqwest::Method::GET,
        "/health",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(wms.settle(WAIT).await);

    let spans = receiver
        .wait_for(WAIT, |spans| {
            spans.len() >= 6
                && [
                    "wms.release",
                    "carrier.rates",
                    "carrier.buy_label",
                    "wms.ship",
                ]
                .iter()
                .all(|op| find(spans, op).is_some())
                && spans.iter().any(|s| s.span.name == "waybill.flow")
        })
        .await;
    let names: Vec<_> = spans.iter().map(|s| (&s.service, &s.span.name)).collect();

    // One trace for the order, derived from its number, across both sidecars.
    assert_eq!(expected_trace("order", "SO-1001", &config), SO_1001_TRACE);
    let release =
        find(&spans, "wms.release").unwrap_or_else(|| panic!("no release span in {names:?}"));
    let buy =
        find(&spans, "carrier.buy_label").unwrap_or_else(|| panic!("no buy span in {names:?}"));
    let ship = find(&spans, "wms.ship").unwrap_or_else(|| panic!("no ship span in {names:?}"));
    let rates =
        find(&spans, "carrier.rates").unwrap_or_else(|| panic!("no rates span in {names:?}"));
    for span in [release, buy, ship] {
        assert_eq!(span.trace_id(), SO_1001_TRACE, "{}", span.span.name);
        assert_eq!(span.text("waybill.transaction"), "order:SO-1001");
    }
    assert_eq!(release.service, "waybill-wms");
    assert_eq!(buy.service, "waybill-carrier");
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id() == SO_1001_TRACE)
        .collect();
    assert!(in_trace.iter().any(|s| s.service == "waybill-wms"));
    assert!(in_trace.iter().any(|s| s.service == "waybill-carrier"));

    // Stable HTTP semantic conventions on the inbound release span.
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    assert_eq!(release.span.name, "POST /orders/{order_id}/release");
    assert_eq!(release.span.kind, SpanKind::Server as i32);
    assert_eq!(release.text("http.request.method"), "POST");
    assert_eq!(release.text("http.route"), "/orders/{order_id}/release");
    assert_eq!(release.int("http.response.status_code"), 200);
    assert_eq!(release.text("url.path"), "/orders/SO-1001/release");
    assert_eq!(release.text("url.scheme"), "http");
    assert_eq!(release.text("server.address"), "127.0.0.1");
    let wms_port = wms.listener_addr("wms-in").expect("listener").port();
    assert_eq!(release.int("server.port"), i64::from(wms_port));
    assert_eq!(release.text("network.protocol.version"), "1.1");
    assert_eq!(release.text("waybill.system"), "wms");
    assert_eq!(release.text("waybill.milestone"), "order_released");
    assert_eq!(release.strings("waybill.keys"), ["order:SO-1001"]);
    assert!(release.attribute("error.type").is_none());
    assert_eq!(
        release.span.start_time_unix_nano,
        1_800_000_000 * 1_000_000_000,
        "spans start at the exchange's (business clock) start"
    );
    // The caller's traceparent is a link, not a parent.
    assert!(release.span.parent_span_id.is_empty());
    assert!(release
        .span
        .links
        .iter()
        .any(|l| hex(&l.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736"
            && hex(&l.span_id) == "00f067aa0ba902b7"));

    // The egress span is a CLIENT span towards the carrier.
    assert_eq!(buy.span.kind, SpanKind::Client as i32);
    assert_eq!(buy.span.name, "POST /v2/shipments/{shipment_id}/buy");
    assert_eq!(buy.text("waybill.system"), "carrier");
    let mut keys = buy.strings("waybill.keys");
    keys.sort();
    assert_eq!(keys, ["order:SO-1001", "shipment:SH-1", "tracking:1ZSH-1"]);

    // Milestones are span events.
    let events = |span: &Received| -> Vec<String> {
        span.span.events.iter().map(|e| e.name.clone()).collect()
    };
    assert_eq!(events(release), ["order_released"]);
    assert_eq!(events(buy), ["label_created"]);
    assert_eq!(events(ship), ["shipped"]);

    // The shipment was seen at the carrier before its order: its first span
    // stays in the shipment's own trace, and the later span links to it.
    let shipment_trace = expected_trace("shipment", "SH-1", &config);
    assert_eq!(rates.trace_id(), shipment_trace);
    assert_eq!(rates.text("waybill.transaction"), "shipment:SH-1");
    let link = buy
        .span
        .links
        .iter()
        .find(|l| hex(&l.trace_id) == shipment_trace)
        .unwrap_or_else(|| panic!("no link to the shipment's trace in {:#?}", buy.span.links));
    let shipment_key = Key::new(config.key_kinds.get("shipment").expect("kind"), "SH-1");
    assert_eq!(
        hex(&link.span_id),
        waybill::telemetry::anchor_span_id(&shipment_key).to_string()
    );

    // The flow span covers order_released → shipped: exactly two hours.
    let flow = spans
        .iter()
        .find(|s| s.span.name == "waybill.flow")
        .unwrap_or_else(|| panic!("no flow span in {names:?}"));
    assert_eq!(flow.trace_id(), SO_1001_TRACE);
    assert_eq!(flow.service, "waybill-wms");
    assert_eq!(flow.text("waybill.flow"), "order_to_ship");
    assert_eq!(flow.duration_nanos(), 7200 * 1_000_000_000);
    assert_eq!(
        flow.attribute("waybill.flow.duration_seconds"),
        Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::DoubleValue(7200.0))
    );
    assert_eq!(
        flow.attribute("waybill.flow.within_slo"),
        Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true))
    );

    // The keyless health check has a span of its own, outside any transaction.
    let health = spans
        .iter()
        .find(|s| s.span.name == "GET")
        .unwrap_or_else(|| panic!("no span for the keyless exchange in {names:?}"));
    assert!(health.attribute("waybill.transaction").is_none());
    assert_ne!(health.trace_id(), SO_1001_TRACE);

    // The resource names the service and its version.
    let resource = receiver.resource_of("waybill-wms");
    assert_eq!(
        resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(resource.contains_key("service.instance.id"));

    // The flow histogram's exemplar carries the trace ID; the bad
    // traceparent was counted.
    let wms_metrics = metrics(&client, &wms).await;
    assert!(
        wms_metrics.contains(&format!("# {{trace_id=\"{SO_1001_TRACE}\"}} 7200")),
        "no exemplar in:\n{wms_metrics}"
    );
    let carrier_metrics = metrics(&client, &carrier).await;
    assert_eq!(
        sample(
            &carrier_metrics,
            "waybill_telemetry_invalid_traceparent_total"
        ),
        1.0
    );
    assert!(sample(&wms_metrics, "waybill_telemetry_exported_spans_total") >= 3.0);

    wms.shutdown(Duration::from_secs(5))
        .await
        .expect("wms shutdown");
    carrier
        .shutdown(Duration::from_secs(5))
        .await
        .expect("carrier shutdown");
}

/// Drives `n` orders through a WMS sidecar exporting to `endpoint` and
/// checks every answer, then waits until `counted` holds for its metrics,
/// and proves the sidecar still shuts down in bounded time.
async fn traffic_is_unaffected_by(
    endpoint: &str,
    extra: &str,
    n: usize,
    counted: impl Fn(&str) -> bool,
) {
    let (clock, _) = test_clock();
    let routes = wms_routes(wms().await, &telemetry(endpoint, "waybill-wms", extra));
    let sidecar = start(&routes, clock).await;
    let client = reqwest::Client::new();
    for i in 0..n {
        let (status, body) = send(
            &client,
            &sidecar,
            "wms-in",
            reqwest::Method::POST,
            &format!("/orders/SO-{i}/release"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, r#"{"status":"released"}"#);
    }
    assert!(sidecar.settle(WAIT).await, "the pipeline keeps up");

    let deadline = tokio::time::Instant::now() + WAIT;
    let mut text = metrics(&client, &sidecar).await;
    while !counted(&text) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics(&client, &sidecar).await;
    }
    assert!(
        counted(&text),
        "drops not counted:\n{}",
        text.lines()
            .filter(|l| l.contains("telemetry"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    tokio::time::timeout(SHUTDOWN_BOUND, sidecar.shutdown(Duration::from_secs(2)))
        .await
        .expect("shutdown finishes in bounded time")
        .expect("clean shutdown");
}

#[tokio::test]
async fn an_absent_collector_changes_no_response_and_failed_exports_are_counted() {
    let endpoint = format!("http://{}", closed_port().await);
    traffic_is_unaffected_by(&endpoint, ", max_batch_size: 2", 6, |m| {
        dropped(m, "export_failed") + dropped(m, "export_timeout") > 0.0
    })
    .await;
}

#[tokio::test]
async fn a_collector_that_never_answers_changes_no_response_and_drops_are_counted() {
    let hanging = HangingReceiver::start().await;
    traffic_is_unaffected_by(
        &hanging.endpoint(),
        ", queue_capacity: 2, max_batch_size: 1",
        20,
        |m| {
            dropped(m, "queue_full") > 0.0
                && dropped(m, "export_failed") + dropped(m, "export_timeout") > 0.0
        },
    )
    .await;
}

#[tokio::test]
async fn spans_also_reach_a_collector_over_http_protobuf() {
    let receiver = OtlpReceiver::start_http().await;
    let (clock, _) = test_clock();
    let telemetry = format!(
        "telemetry:\n  traces: {{ endpoint: \"{}\", protocol: http/protobuf, service_name: waybill-http }}\n",
        receiver.endpoint()
    );
    let routes = wms_routes(wms().await, &telemetry);
    let sidecar = start(&routes, clock).await;
    let client = reqwest::Client::new();
    let (status, _) = send(
        &client,
        &sidecar,
        "wms-in",
        reqwest::Method::POST,
        "/orders/SO-1001/release",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let spans = receiver
        .wait_for(WAIT, |spans| find(spans, "wms.release").is_some())
        .await;
    let release = find(&spans, "wms.release").expect("release span over HTTP");
    assert_eq!(release.trace_id(), SO_1001_TRACE);
    assert_eq!(release.service, "waybill-http");
    tokio::time::timeout(SHUTDOWN_BOUND, sidecar.shutdown(Duration::from_secs(2)))
        .await
        .expect("shutdown finishes in bounded time")
        .expect("clean shutdown");
}

/// What an upstream got: path, `traceparent`, `tracestate`.
type Heard = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// A WMS that answers every request with `{}` and records its trace headers.
async fn listening_wms() -> (SocketAddr, Heard) {
    let heard = Heard::default();
    let record = heard.clone();
    let app = Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                let text = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                if let Ok(mut heard) = record.lock() {
                    heard.push((
                        uri.path().to_owned(),
                        text("traceparent"),
                        text("tracestate"),
                    ));
                }
                Json(json!({}))
            }
        },
    );
    (serve(app).await, heard)
}

/// The `(trace ID, span ID)` of the `traceparent` the upstream got at `path`.
fn heard_traceparent(heard: &Heard, path: &str) -> (String, String, Option<String>) {
    let heard = heard.lock().map(|h| h.clone()).unwrap_or_default();
    let (_, traceparent, tracestate) = heard
        .iter()
        .find(|(p, _, _)| p == path)
        .unwrap_or_else(|| panic!("upstream never got {path}: {heard:?}"));
    let traceparent = traceparent
        .clone()
        .unwrap_or_else(|| panic!("no traceparent at {path}"));
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    assert_eq!(fields[3], "01", "sampled: the span is exported");
    (
        fields[1].to_owned(),
        fields[2].to_owned(),
        tracestate.clone(),
    )
}

#[tokio::test]
async fn propagated_traceparent_names_the_exported_span_and_the_transactions_trace() {
    let receiver = OtlpReceiver::start().await;
    let (upstream, heard) = listening_wms().await;
    // The WMS routes of the two-sidecar test, with propagation on both.
    let routes = wms_routes(
        upstream,
        &telemetry(&receiver.endpoint(), "waybill-wms", ""),
    );
    let routes = ["order_released", "shipped"]
        .iter()
        .fold(routes, |routes, milestone| {
            routes.replace(
                &format!("    milestone: {milestone}\n"),
                &format!("    milestone: {milestone}\n    propagate: trace_context\n"),
            )
        });
    let config = Config::from_yaml(&routes, "propagate.yaml").expect("valid");
    let (clock, _) = test_clock();
    let sidecar = start(&routes, clock).await;
    let client = reqwest::Client::new();
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = format!("00-{caller_trace}-00f067aa0ba902b7-01");
    let addr = sidecar.listener_addr("wms-in").expect("listener");
    for (method, path, body) in [
        (reqwest::Method::POST, "/orders/SO-7/release", None),
        (
            reqwest::Method::POST,
            "/shipments/SH-7/ship",
            Some(json!({"order_id": "SO-7"})),
        ),
        (reqwest::Method::GET, "/health", None),
    ] {
        let mut request = client
            .request(method, format!("http://{addr}{path}"))
            .header("traceparent", &caller)
            .header("tracestate", "vendor=abc");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request through the sidecar");
        assert_eq!(response.status(), 200, "{path}");
    }
    let spans = receiver
        .wait_for(WAIT, |spans| {
            ["wms.release", "wms.ship"]
                .iter()
                .all(|op| find(spans, op).is_some())
        })
        .await;
    let order_trace = expected_trace("order", "SO-7", &config);

    // The root key is in the path: the upstream joins the order's trace, as
    // a child of the very span waybill exported; tracestate passes on.
    let (trace, parent, tracestate) = heard_traceparent(&heard, "/orders/SO-7/release");
    assert_eq!(trace, order_trace);
    assert_eq!(tracestate.as_deref(), Some("vendor=abc"));
    let release = find(&spans, "wms.release").expect("release span");
    assert_eq!(release.trace_id(), trace);
    assert_eq!(hex(&release.span.span_id), parent);

    // The root key is only in the body: the caller's trace continues at the
    // upstream; waybill's span stays in the order's trace with the
    // propagated span ID and links to where the upstream's spans are.
    let (trace, parent, _) = heard_traceparent(&heard, "/shipments/SH-7/ship");
    assert_eq!(trace, caller_trace);
    let ship = find(&spans, "wms.ship").expect("ship span");
    assert_eq!(ship.trace_id(), order_trace);
    assert_eq!(hex(&ship.span.span_id), parent);
    let propagated = ship
        .span
        .links
        .iter()
        .find(|l| hex(&l.trace_id) == caller_trace && hex(&l.span_id) == parent)
        .unwrap_or_else(|| panic!("no link to the propagated context: {:#?}", ship.span.links));
    assert!(matches!(
        support::otlp_receiver::attribute(&propagated.attributes, "waybill.link"),
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == "propagated"
    ));

    // A request no propagating route matches is forwarded untouched.
    let heard_now = heard.lock().map(|h| h.clone()).unwrap_or_default();
    let health = heard_now
        .iter()
        .find(|(p, _, _)| p == "/health")
        .expect("health request reached the upstream");
    assert_eq!(health.1.as_deref(), Some(caller.as_str()));

    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn metrics_reach_an_otlp_collector_with_their_labels_and_values() {
    let receiver = OtlpReceiver::start().await;
    let routes = wms_routes(wms().await, "");
    let config = Config::from_yaml(&routes, "metrics.yaml").expect("valid");
    let endpoint = receiver.endpoint();
    // The standard variables alone turn it on; no traces are configured.
    let env = move |name: &str| match name {
        "OTEL_METRICS_EXPORTER" => Some("otlp".to_owned()),
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_METRIC_EXPORT_INTERVAL" => Some("100".to_owned()),
        "OTEL_SERVICE_NAME" => Some("waybill-metrics".to_owned()),
        _ => None,
    };
    let (clock, _) = test_clock();
    let sidecar = app::start_with_env(config, clock, &env)
        .await
        .expect("sidecar starts");
    let client = reqwest::Client::new();
    for order in ["SO-1", "SO-2", "SO-3"] {
        let (status, _) = send(
            &client,
            &sidecar,
            "wms-in",
            reqwest::Method::POST,
            &format!("/orders/{order}/release"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(sidecar.settle(WAIT).await);
    let labels = [
        ("system", "wms"),
        ("operation", "wms.release"),
        ("status_class", "2xx"),
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.counter("waybill_exchanges_total", &labels) != Some(3.0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        receiver.counter("waybill_exchanges_total", &labels),
        Some(3.0),
        "received: {:#?}",
        receiver.metric_requests().last()
    );
    let request = receiver.metric_requests().pop().expect("a metrics export");
    let resource = request.resource_metrics[0]
        .resource
        .as_ref()
        .expect("resource");
    assert!(matches!(
        support::otlp_receiver::attribute(&resource.attributes, "service.name"),
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == "waybill-metrics"
    ));
    // The exporter counts its own successes.
    let text = metrics(&client, &sidecar).await;
    assert!(
        sample(
            &text,
            "waybill_telemetry_metric_exports_total{result=\"ok\"}"
        ) >= 1.0,
        "{text}"
    );
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

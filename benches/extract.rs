//! JSON key extraction on logistics documents (issue 9, target 6:
//! ≥ 2 GB/s per core on 0.5–8 KB documents).
//!
//! Each document in `bench/docs/` is the body of one exchange on a route
//! whose JSON rules read it, and goes through [`Extractor::observe`] as the
//! extraction task does: route lookup, body decode, one targeted scan
//! answering every rule of that side, keys, metrics. Criterion reports the
//! throughput in bytes of document per second on one thread (= one core).
//!
//! `scan/…` measures the targeted scan alone (the paths of the route's
//! rules on that side, compiled once as the extractor does at start-up,
//! over the body's bytes, UTF-8 checked by the scan): the figure target 6
//! is about.
//!
//! Peers on the same documents, for the ratio: `serde_json` validating the
//! whole text without building anything (`IgnoredAny`) and building a DOM
//! (`Value`). And a baseline: the same exchange on a route with no body
//! rule, which is what `observe` costs besides the scan.
//!
//! `cargo bench --bench extract`; CI only builds it (`--no-run`).

#[path = "../src/global_alloc.rs"]
mod global_alloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prometheus_client::registry::Registry;

use waybill::config::{Config, JsonPath, KeySource, ListenerId, Side};
use waybill::extract::{Extractor, JsonPaths};
use waybill::proxy::{Exchange, Outcome, Tapped};

const CONFIG: &str = r#"
systems: [erp, wms, carrier]
keys: [order, shipment, tracking]
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: picked, object: order }
  - { name: packed, object: shipment }
  - { name: label_created, object: shipment }
  - { name: goods_issue_posted, object: shipment }
  - { name: delivered, object: shipment }
routes:
  - name: erp.delivery
    system: erp
    match: { method: GET, path: "/sap/opu/odata/sap/API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryHeader" }
    keys:
      shipment: { response_json: $.d.DeliveryDocument }
      order: { response_json: "$.d.to_DeliveryDocumentItem.results[*].ReferenceSDDocument" }
    milestone: goods_issue_posted
  - name: wms.pack
    system: wms
    match: { method: POST, path: /api/events/pack }
    keys:
      order: { request_json: $.order_id }
      shipment: { request_json: "$.shipments[*].shipment_id" }
    milestone: packed
  - name: wms.pick
    system: wms
    match: { method: POST, path: /api/events/pick }
    keys:
      order: { request_json: $.order_id }
    milestone: picked
  - name: carrier.buy_label
    system: carrier
    match: { method: POST, path: "/v2/shipments/{shipment_id}/buy" }
    keys:
      shipment: { response_json: $.shipment_id }
      order: { response_json: $.reference }
      tracking: { response_json: $.tracking_code }
    milestone: label_created
  - name: carrier.tracking_webhook
    system: erp
    match: { method: POST, path: /webhooks/carrier }
    keys:
      tracking: { request_json: $.tracking_code }
    milestone: delivered
  - name: wms.no_body_rules
    system: wms
    match: { method: POST, path: "/api/orders/{order_id}/allocate" }
    keys:
      order: { path_param: order_id }
"#;

/// One document and the exchange that carries it.
struct Doc {
    name: &'static str,
    text: &'static str,
    method: http::Method,
    path: &'static str,
    /// Which body the document is (the other one is empty).
    response: bool,
}

const DOCS: [Doc; 5] = [
    Doc {
        name: "sap_odata_delivery_7.2KB",
        text: include_str!("../bench/docs/sap_delivery.json"),
        method: http::Method::GET,
        path: "/sap/opu/odata/sap/API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryHeader",
        response: true,
    },
    Doc {
        name: "carrier_label_3.4KB",
        text: include_str!("../bench/docs/carrier_label.json"),
        method: http::Method::POST,
        path: "/v2/shipments/SH-0000104711-1/buy",
        response: true,
    },
    Doc {
        name: "wms_pack_1.8KB",
        text: include_str!("../bench/docs/wms_pack.json"),
        method: http::Method::POST,
        path: "/api/events/pack",
        response: false,
    },
    Doc {
        name: "wms_pick_0.8KB",
        text: include_str!("../bench/docs/wms_pick.json"),
        method: http::Method::POST,
        path: "/api/events/pick",
        response: false,
    },
    Doc {
        name: "carrier_tracking_webhook_0.6KB",
        text: include_str!("../bench/docs/carrier_tracking.json"),
        method: http::Method::POST,
        path: "/webhooks/carrier",
        response: false,
    },
];

fn tapped(body: &'static str) -> Tapped {
    Tapped {
        bytes: Bytes::from_static(body.as_bytes()),
        total_len: body.len() as u64,
        truncated: false,
        complete: true,
    }
}

fn json_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers
}

fn exchange(
    config: &Config,
    method: http::Method,
    path: &str,
    request: &'static str,
    response: &'static str,
) -> Exchange {
    Exchange {
        id: 1,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method,
        uri: path.parse().expect("valid path"),
        version: http::Version::HTTP_11,
        request_headers: json_headers().into(),
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        duration: Duration::from_millis(3),
        upstream_duration: Duration::from_millis(2),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: json_headers().into(),
        },
        request_body: tapped(request),
        response_body: tapped(response),
        replayed: false,
        trace_context: None,
    }
}

/// One scan, kept out of line so that a profiler (callgrind) counts its
/// calls and instructions apart from the harness.
#[inline(never)]
fn scan_document(paths: &JsonPaths, text: &[u8]) -> usize {
    let mut found = 0usize;
    paths
        .scan(text, |_, value| found += value.len())
        .expect("valid JSON");
    found
}

/// The JSON paths of the rules of the route `exchange` takes, on the side
/// the document is.
fn route_paths<'c>(config: &'c Config, exchange: &Exchange, response: bool) -> Vec<&'c JsonPath> {
    let side = if response {
        Side::Response
    } else {
        Side::Request
    };
    let route = config
        .routes
        .iter()
        .find(|route| {
            route.method.as_ref() == Some(&exchange.method)
                && route.path.matches(exchange.uri.path()).is_some()
        })
        .expect("a route serves the document");
    route
        .keys
        .iter()
        .filter_map(|rule| match &rule.source {
            KeySource::Json { side: s, path } if *s == side => Some(path),
            _ => None,
        })
        .collect()
}

fn extraction(c: &mut Criterion) {
    let config = Arc::new(Config::from_yaml(CONFIG, "bench.yaml").expect("valid bench config"));
    let mut registry = Registry::default();
    let extractor = Extractor::new(Arc::clone(&config), &mut registry);

    let mut group = c.benchmark_group("extract");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for doc in &DOCS {
        let (request, response) = if doc.response {
            ("", doc.text)
        } else {
            (doc.text, "")
        };
        let exchange = exchange(&config, doc.method.clone(), doc.path, request, response);
        // The rules must find their keys, or the scan measured is not the real one.
        let observation = extractor.observe(exchange.clone());
        assert!(
            !observation.keys.is_empty() && observation.problems.is_empty(),
            "{}: keys {:?}, problems {:?}",
            doc.name,
            observation.keys,
            observation.problems
        );
        group.throughput(Throughput::Bytes(doc.text.len() as u64));
        group.bench_function(format!("observe/{}", doc.name), |b| {
            b.iter_batched(
                || exchange.clone(),
                |exchange| extractor.observe(exchange),
                BatchSize::SmallInput,
            )
        });
        let paths = route_paths(&config, &exchange, doc.response);
        let compiled = JsonPaths::new(&paths);
        group.bench_function(format!("scan/{}", doc.name), |b| {
            b.iter(|| scan_document(&compiled, black_box(doc.text.as_bytes())))
        });
        group.bench_function(format!("serde_json_ignored_any/{}", doc.name), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(doc.text.as_bytes()))
                    .expect("valid JSON")
            })
        });
        group.bench_function(format!("serde_json_value/{}", doc.name), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(black_box(doc.text.as_bytes()))
                    .expect("valid JSON")
            })
        });
    }
    // What `observe` costs without any body scan (route lookup, path
    // parameter key, metrics): subtract it to see the scan alone.
    let plain = exchange(
        &config,
        http::Method::POST,
        "/api/orders/SO-0000104711/allocate",
        "",
        "",
    );
    group.throughput(Throughput::Elements(1));
    group.bench_function("observe/no_body_rules", |b| {
        b.iter_batched(
            || plain.clone(),
            |exchange| extractor.observe(exchange),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);

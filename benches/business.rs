//! The business part of one exchange (issue 9, target 3: ≤ 3 µs): what
//! the sidecar does for an exchange besides forwarding it, assembled from
//! the public stages the way `app::start` wires them:
//! [`Extractor::observe`] (route lookup, the request and the response
//! body scanned, 840 bytes each, keys, extraction metrics), then
//! [`Correlator::apply`] (store update, milestone, flow, correlation
//! metrics) with the telemetry observer attached: flow histogram and the
//! exchange span encoded into its OTLP bytes (`SpanObserver::spans`, as
//! with traces on).
//!
//! Not included: the proxy's tap and its counter, the queue hop to the
//! correlator, and pushing the span onto the export queue and wrapping it
//! into an export request (the exporter task). The spans' buffers are
//! handed back to the observer's pool after each exchange, as the export
//! task does after each batch.
//!
//! `span/encode_batch/waybill`: that wrapping on its own, for a batch of
//! 512 encoded spans of this traffic (the exporter's default batch), as
//! the export task does before sending (`telemetry::otlp_trace::TraceEncoder`).
//!
//! The exchanges alternate like `bench/proxy.sh`'s traffic: an order
//! release (`POST /api/orders`, one key) then its carrier booking
//! (`POST /v2/shipments`: order and shipment in the request, the tracking
//! code in the response), which completes a flow. The store starts with
//! 100 k transactions. Exchanges are built outside the timed part.
//!
//! `cargo bench --bench business`; CI only builds it (`--no-run`).

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prometheus_client::registry::Registry;

use waybill::clock::Clock;
use waybill::config::{Config, ListenerId};
use waybill::correlate::{Correlated, Correlator, Observer};
use waybill::extract::Extractor;
use waybill::proxy::{Exchange, Outcome, Tapped};
use waybill::telemetry::otlp_trace::{EncodedSpan, TraceEncoder};
use waybill::telemetry::span_buffers::SpanBuffers;
use waybill::telemetry::spans::SpanObserver;

const CONFIG: &str = include_str!("../bench/waybill-bench.yaml");
const PREFILL: usize = 100_000;
const BODY: usize = 840;
/// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default).
const BATCH: usize = 512;

/// The telemetry observer as it runs with traces on, minus the export
/// queue: flows recorded, spans encoded into a reused `Vec` as the
/// observer does for its queue, then their buffers handed back to the
/// observer's pool, as the export task does after sending them (the first
/// [`BATCH`] kept for the encoding bench).
struct BuildSpans(
    SpanObserver,
    Arc<Mutex<Vec<EncodedSpan>>>,
    Vec<EncodedSpan>,
    SpanBuffers,
);

impl Observer for BuildSpans {
    fn correlated(&mut self, event: &Correlated<'_>) {
        self.0.correlated(event);
        self.0.spans_into(event, &mut self.2);
        black_box(&self.2);
        if let Ok(mut kept) = self.1.lock() {
            let room = BATCH.saturating_sub(kept.len()).min(self.2.len());
            kept.extend(self.2.drain(..room));
        }
        self.3.recycle(self.2.drain(..));
    }
}

fn padded(mut doc: String) -> Bytes {
    // `doc` ends with `"note":""}`: fill the note up to BODY bytes.
    let fill = BODY.saturating_sub(doc.len());
    doc.truncate(doc.len() - 2);
    doc.push_str(&"x".repeat(fill));
    doc.push_str("\"}");
    Bytes::from(doc)
}

fn order_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"order_id\":\"SO-{n:010}\",\"sales_org\":\"1000\",\"distribution_channel\":\"10\",\
         \"sold_to\":\"0001000123\",\"ship_to\":\"0001000456\",\"requested_delivery_date\":\"2026-11-30\",\
         \"incoterms\":\"DAP\",\"shipping_condition\":\"01\",\"lines\":[\
         {{\"line\":10,\"material\":\"MAT-00012345\",\"quantity\":4,\"uom\":\"EA\",\"plant\":\"1000\",\"storage_location\":\"0001\"}},\
         {{\"line\":20,\"material\":\"MAT-00067890\",\"quantity\":12,\"uom\":\"EA\",\"plant\":\"1000\",\"storage_location\":\"0001\"}},\
         {{\"line\":30,\"material\":\"MAT-00055511\",\"quantity\":1,\"uom\":\"PAL\",\"plant\":\"1000\",\"storage_location\":\"0002\"}}],\
         \"note\":\"\"}}"
    ))
}

fn shipment_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"reference\":\"SO-{n:010}\",\"shipment_id\":\"SH-{n:010}-1\",\"carrier\":\"UPS\",\
         \"service\":\"EXPRESS_SAVER\",\"ship_date\":\"2026-11-28\",\
         \"ship_from\":{{\"name\":\"DC Rotterdam\",\"street\":\"Waalhaven 12\",\"city\":\"Rotterdam\",\"postal_code\":\"3089JH\",\"country\":\"NL\"}},\
         \"ship_to\":{{\"name\":\"ACME GmbH\",\"street\":\"Hauptstrasse 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"}},\
         \"parcels\":[{{\"weight_kg\":2.4,\"length_cm\":40,\"width_cm\":30,\"height_cm\":20}},\
         {{\"weight_kg\":7.9,\"length_cm\":60,\"width_cm\":40,\"height_cm\":40}}],\
         \"note\":\"\"}}"
    ))
}

fn response_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"tracking_code\":\"1Z{n:030x}\",\"carrier\":\"UPS\",\"service\":\"EXPRESS_SAVER\",\
         \"label\":{{\"format\":\"PDF\",\"size\":\"4x6\",\"url\":\"https://labels.example.com/v1/labels/0001\"}},\
         \"rate\":{{\"amount\":\"18.40\",\"currency\":\"EUR\",\"billable_weight_kg\":10.3}},\
         \"parcels\":[{{\"parcel\":1,\"tracking_code\":\"1Z999AA10123456784\",\"weight_kg\":2.4}},\
         {{\"parcel\":2,\"tracking_code\":\"1Z999AA10123456785\",\"weight_kg\":7.9}}],\
         \"estimated_delivery\":\"2026-11-30T18:00:00Z\",\"note\":\"\"}}"
    ))
}

fn tapped(bytes: Bytes) -> Tapped {
    Tapped {
        total_len: bytes.len() as u64,
        bytes,
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
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("840"),
    );
    headers
}

/// Exchange number `i`: even ones release order i/2, odd ones book it.
fn exchange(config: &Config, i: usize) -> Exchange {
    let n = i / 2;
    let (path, request) = if i % 2 == 0 {
        ("/api/orders", order_doc(n))
    } else {
        ("/v2/shipments", shipment_doc(n))
    };
    Exchange {
        id: i as u64,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method: http::Method::POST,
        uri: http::Uri::from_static(path),
        version: http::Version::HTTP_11,
        request_headers: json_headers(),
        started: SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000)
            + Duration::from_millis(i as u64),
        duration: Duration::from_micros(400),
        upstream_duration: Duration::from_micros(300),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: json_headers(),
        },
        request_body: tapped(request),
        response_body: tapped(response_doc(i)),
        replayed: false,
        trace_context: None,
    }
}

fn business(c: &mut Criterion) {
    let config = Arc::new(
        Config::from_yaml(CONFIG, "bench/waybill-bench.yaml").expect("valid bench config"),
    );
    let mut registry = Registry::default();
    let extractor = Extractor::new(Arc::clone(&config), &mut registry);
    let (mut correlator, _tx, _handle, _inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 1, &mut registry);
    let kept = Arc::new(Mutex::new(Vec::with_capacity(BATCH)));
    let observer = SpanObserver::new(Arc::clone(&config), None, &mut registry);
    let buffers = observer.buffers();
    correlator.observe_with(Box::new(BuildSpans(
        observer,
        Arc::clone(&kept),
        Vec::new(),
        buffers,
    )));

    let check = extractor.observe(exchange(&config, 1));
    assert_eq!(check.keys.len(), 3, "keys: {:?}", check.keys);
    assert!(check.problems.is_empty(), "problems: {:?}", check.problems);
    for i in 0..PREFILL * 2 {
        correlator.apply(extractor.observe(exchange(&config, i)));
    }

    let mut group = c.benchmark_group("business");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut i = PREFILL * 2;
    group.bench_function("exchange/observe+apply+span", |b| {
        b.iter_batched(
            || {
                i += 1;
                exchange(&config, i)
            },
            |exchange| correlator.apply(extractor.observe(exchange)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("exchange/observe_only", |b| {
        b.iter_batched(
            || {
                i += 1;
                exchange(&config, i)
            },
            |exchange| extractor.observe(exchange),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let batch = kept.lock().expect("spans kept").clone();
    assert_eq!(batch.len(), BATCH);
    let resource: std::collections::BTreeMap<String, String> = [
        ("service.name", "waybill"),
        ("service.version", env!("CARGO_PKG_VERSION")),
        (
            "service.instance.id",
            "8a4f7c1e-5b2d-4e9a-9c3f-1d2e3f4a5b6c",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut group = c.benchmark_group("span");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut encoder = TraceEncoder::new(&resource, "waybill", env!("CARGO_PKG_VERSION"));
    group.bench_function("encode_batch/waybill", |b| {
        b.iter(|| black_box(encoder.encode(&batch).len()))
    });
    group.finish();
}

criterion_group!(benches, business);
criterion_main!(benches);

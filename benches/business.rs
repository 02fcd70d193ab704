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
//! the export task does before sending (`telemetry::otlp_trace::TraceEncoder`:
//! the request in a buffer of its exact size, allocated per batch).
//!
//! The exchanges (`benches/traffic`) alternate like `bench/proxy.sh`'s traffic: an order
//! release (`POST /api/orders`, one key) then its carrier booking
//! (`POST /v2/shipments`: order and shipment in the request, the tracking
//! code in the response), which completes a flow. The store starts with
//! 100 k transactions (`WAYBILL_BENCH_LIVE`) and holds at most 200 k.
//! Exchanges are built outside the timed part, eight at a time, so that
//! they are still in the cache when observed, as tapped bytes are.
//!
//! `trace_id/new_transaction`: the trace ID a new transaction derives from
//! its name (`telemetry::trace_id`, SHA-256 by `ring`), on its own, for
//! the native figure: `ring` uses the CPU's SHA extensions where it has
//! them, which valgrind does not emulate (under callgrind it runs its AVX
//! code instead, so callgrind's count is not what runs natively).
//!
//! The bench runs on the binary's allocator (`src/global_alloc.rs`,
//! jemalloc by default), as the proxy does; until session 13 it ran on the
//! system's malloc.
//!
//! `cargo bench --bench business`; CI only builds it (`--no-run`).

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prometheus_client::registry::Registry;

use waybill::clock::Clock;
use waybill::correlate::{Correlated, Correlator, Observer};
use waybill::extract::{Extractor, Key};
use waybill::telemetry::otlp_trace::{EncodedSpan, TraceEncoder};
use waybill::telemetry::span_buffers::SpanBuffers;
use waybill::telemetry::spans::SpanObserver;
use waybill::telemetry::trace_id;

#[path = "../src/global_alloc.rs"]
mod global_alloc;
mod traffic;

use traffic::exchange;

/// Transactions in the store before the timed part, by default.
const PREFILL: usize = 100_000;

#[path = "support/live.rs"]
mod live;

/// Exchanges built per timed batch: few enough that their bodies and
/// headers are still in the cache when they are observed, as a proxy's
/// tapped bytes are (the kernel has just copied them in). With
/// `BatchSize::SmallInput` criterion builds a tenth of a sample at once
/// (up to ~2 000 exchanges, ~5 MB), and every exchange was read cold.
const WARM: BatchSize = BatchSize::NumIterations(8);
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

fn business(c: &mut Criterion) {
    eprintln!("allocator: {}", global_alloc::NAME);
    // Live transactions before the timed part: `WAYBILL_BENCH_LIVE`, else
    // PREFILL. The store holds at most twice as many, as
    // `bench/waybill-bench.yaml` has it for the default (200 000): it fills
    // during the measurement, then evicts its oldest transaction for each
    // new one. A small store (`WAYBILL_BENCH_LIVE=1000`) stays in the cache
    // and shows what the large one spends on cache misses.
    // `WAYBILL_BENCH_FULL=1` fills the store to its bound before the timed
    // part, so that a profile under valgrind (which runs too few exchanges
    // to fill it) sees the steady state of a native run: every new
    // transaction evicts the oldest.
    let live = live::live(PREFILL);
    let full = std::env::var_os("WAYBILL_BENCH_FULL").is_some_and(|v| v == "1");
    let mut config = traffic::config();
    config.state.max_transactions = 2 * live;
    let prefill = if full { 2 * live } else { live };
    eprintln!("live transactions before the timed part: {prefill}");
    let config = Arc::new(config);
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
    for i in 0..prefill * 2 {
        correlator.apply(extractor.observe(exchange(&config, i)));
    }

    let mut group = c.benchmark_group("business");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut i = prefill * 2;
    group.bench_function("exchange/observe+apply+span", |b| {
        b.iter_batched(
            || {
                i += 1;
                exchange(&config, i)
            },
            |exchange| correlator.apply(extractor.observe(exchange)),
            WARM,
        )
    });
    group.bench_function("exchange/observe_only", |b| {
        b.iter_batched(
            || {
                i += 1;
                exchange(&config, i)
            },
            |exchange| extractor.observe(exchange),
            WARM,
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
    let encoder = TraceEncoder::new(&resource, "waybill", env!("CARGO_PKG_VERSION"));
    group.bench_function("encode_batch/waybill", |b| {
        b.iter(|| black_box(encoder.encode(&batch).len()))
    });
    group.finish();

    let order = config
        .key_kinds
        .get("order")
        .expect("the bench declares order");
    let names: Vec<Key> = (0..1024)
        .map(|i| Key::new(order.clone(), format!("SO-{i:010}")))
        .collect();
    let mut group = c.benchmark_group("trace_id");
    group.throughput(Throughput::Elements(1));
    let mut next = names.iter().cycle();
    group.bench_function("new_transaction", |b| {
        b.iter(|| black_box(next.next().map(trace_id)))
    });
    group.finish();
}

criterion_group!(benches, business);
criterion_main!(benches);

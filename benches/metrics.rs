//! Metrics cost (issue 9, target 7: ≤ 50 ns to record one request's
//! metrics with label handles resolved once; a scrape of 5 000 series
//! ≤ 10 ms).
//!
//! Recording:
//! - `per_request/resolved_handles`: what one proxied, extracted and
//!   correlated exchange records today, with the same metric types and the
//!   same pre-resolved-handle pattern the stages use (their handles are
//!   crate-private): the proxy's response counter and handle-time
//!   histogram, the extractor's exchange counter, duration and two
//!   body-size histograms, the correlator's correlated and milestone
//!   counters. The histograms are
//!   [`AtomicHistogram`](waybill::telemetry::histogram::AtomicHistogram)s;
//!   the proxy's counter and histogram are written under its system's
//!   [`WriteLock`] and the extractor's counter and three histograms under
//!   its operation's (one atomic read-modify-write for each group).
//! - `per_request/resolved_handles_atomic_adds`: the same with an atomic
//!   add per figure (two per histogram, one per counter: twelve).
//! - `per_request/resolved_handles_mutex_histogram`: the same with
//!   `prometheus-client`'s own (mutex) `Histogram`, the type the stages
//!   used before, as the reference in the same run.
//! - `per_request/label_lookup`: the proxy counter, exchange counter,
//!   duration histogram and the two correlator counters, with every handle
//!   looked up by its labels at each request (`Family::get_or_create`), the
//!   cost the pattern avoids.
//! - `per_request/observe_unmatched`: [`Extractor::observe`] of an exchange
//!   no route matches, through the public API: a route lookup plus the
//!   extractor's metrics.
//!
//! Scrape: [`Metrics::render`] of the registry every stage registers in
//! (as `app::start` builds it), with enough routes, milestones and flows
//! for about 5 000 series (sample lines of the exposition).
//!
//! `cargo bench --bench metrics`; CI only builds it (`--no-run`).

#[path = "../src/global_alloc.rs"]
mod global_alloc;

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use waybill::clock::Clock;
use waybill::config::{Config, ListenerId};
use waybill::correlate::Correlator;
use waybill::extract::Extractor;
use waybill::proxy::{Exchange, ExchangeSink, Outcome, ProxyMetrics, Tapped};
use waybill::telemetry::histogram::AtomicHistogram;
use waybill::telemetry::spans::SpanObserver;
use waybill::telemetry::write_lock::WriteLock;
use waybill::telemetry::Metrics;

/// The extractor's duration buckets (seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// The proxy's handle-time buckets (seconds).
const HANDLE_BUCKETS: [f64; 14] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1,
];
/// The extractor's body-size buckets (bytes): 64 × 4ⁱ, 11 of them.
const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExchangeLabels {
    system: Arc<str>,
    operation: Arc<str>,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    system: Arc<str>,
    operation: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
    status_class: &'static str,
}

/// A histogram type one exchange's metrics can be recorded with.
trait Observe: EncodeMetric + TypedMetric + Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A histogram of seconds (`true`) or bytes.
    fn with_buckets(buckets: &[f64], seconds: bool) -> Self;
    fn record_duration(&self, value: Duration);
    fn record_size(&self, value: u64);
}

impl Observe for Histogram {
    fn with_buckets(buckets: &[f64], _seconds: bool) -> Self {
        Histogram::new(buckets.iter().copied())
    }
    fn record_duration(&self, value: Duration) {
        self.observe(value.as_secs_f64());
    }
    fn record_size(&self, value: u64) {
        self.observe(value as f64);
    }
}

impl Observe for AtomicHistogram {
    fn with_buckets(buckets: &[f64], seconds: bool) -> Self {
        let buckets = buckets.iter().copied();
        if seconds {
            AtomicHistogram::seconds(buckets)
        } else {
            AtomicHistogram::bytes(buckets)
        }
    }
    fn record_duration(&self, value: Duration) {
        self.observe_duration(value);
    }
    fn record_size(&self, value: u64) {
        self.observe_u64(value);
    }
}

/// The registry and pre-resolved handles of one exchange's metrics, with
/// histograms of type `H`.
struct Handles<H> {
    request: Counter,
    handle_time: H,
    exchange: Counter,
    duration: H,
    request_size: H,
    response_size: H,
    correlated: Counter,
    milestone: Counter,
    /// The proxy's lock over its counter and histogram.
    proxy_lock: WriteLock,
    /// The extractor's lock over its counter and three histograms.
    operation_lock: WriteLock,
    _registry: Registry,
}

impl<H: Observe> Handles<H> {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<ListenerLabels, Counter>::default();
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let histograms = |buckets: &'static [f64], seconds: bool| {
            Family::<OperationLabels, H, _>::new_with_constructor(move || {
                H::with_buckets(buckets, seconds)
            })
        };
        let handle_times = histograms(&HANDLE_BUCKETS, true);
        let durations = histograms(&DURATION_BUCKETS, true);
        let request_sizes = histograms(&SIZE_BUCKETS, false);
        let response_sizes = histograms(&SIZE_BUCKETS, false);
        let correlated = Counter::<u64>::default();
        let milestones = Family::<OperationLabels, Counter>::default();
        registry.register("proxy_requests", "", requests.clone());
        registry.register("handle", "", handle_times.clone());
        registry.register("exchanges", "", exchanges.clone());
        registry.register("exchange_duration", "", durations.clone());
        registry.register("request_size", "", request_sizes.clone());
        registry.register("response_size", "", response_sizes.clone());
        registry.register("correlated", "", correlated.clone());
        registry.register("milestones", "", milestones.clone());
        let (listener, exchange, operation, milestone) = labels();
        Self {
            request: requests.get_or_create_owned(&listener),
            handle_time: handle_times.get_or_create_owned(&operation),
            exchange: exchanges.get_or_create_owned(&exchange),
            duration: durations.get_or_create_owned(&operation),
            request_size: request_sizes.get_or_create_owned(&operation),
            response_size: response_sizes.get_or_create_owned(&operation),
            correlated,
            milestone: milestones.get_or_create_owned(&milestone),
            proxy_lock: WriteLock::default(),
            operation_lock: WriteLock::default(),
            _registry: registry,
        }
    }

    /// What one proxied, extracted and correlated exchange records.
    fn exchange(&self) {
        self.request.inc();
        self.handle_time
            .record_duration(black_box(Duration::from_nanos(12_300)));
        self.exchange.inc();
        self.duration
            .record_duration(black_box(Duration::from_micros(12_300)));
        self.request_size.record_size(black_box(840));
        self.response_size.record_size(black_box(840));
        self.correlated.inc();
        self.milestone.inc();
    }
}

impl Handles<AtomicHistogram> {
    /// What one exchange records, the way the stages record it: the
    /// proxy's counter and histogram under its system's lock, the
    /// extractor's counter and histograms under its operation's.
    fn exchange_locked(&self) {
        {
            let held = self.proxy_lock.lock();
            held.inc(&self.request);
            self.handle_time
                .observe_duration_held(&held, black_box(Duration::from_nanos(12_300)));
        }
        {
            let held = self.operation_lock.lock();
            held.inc(&self.exchange);
            self.duration
                .observe_duration_held(&held, black_box(Duration::from_micros(12_300)));
            self.request_size.observe_u64_held(&held, black_box(840));
            self.response_size.observe_u64_held(&held, black_box(840));
        }
        self.correlated.inc();
        self.milestone.inc();
    }
}

fn labels() -> (
    ListenerLabels,
    ExchangeLabels,
    OperationLabels,
    OperationLabels,
) {
    (
        ListenerLabels {
            listener: "wms-inbound".to_owned(),
            status_class: "2xx",
        },
        ExchangeLabels {
            system: Arc::from("carrier"),
            operation: Arc::from("carrier.buy_label"),
            status_class: "2xx",
        },
        OperationLabels {
            system: Arc::from("carrier"),
            operation: Arc::from("carrier.buy_label"),
        },
        OperationLabels {
            system: Arc::from("carrier"),
            operation: Arc::from("label_created"),
        },
    )
}

fn recording(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let atomic = Handles::<AtomicHistogram>::new();
    let locked = Handles::<Histogram>::new();
    group.bench_function("per_request/resolved_handles", |b| {
        b.iter(|| atomic.exchange_locked())
    });
    group.bench_function("per_request/resolved_handles_atomic_adds", |b| {
        b.iter(|| atomic.exchange())
    });
    group.bench_function("per_request/resolved_handles_mutex_histogram", |b| {
        b.iter(|| locked.exchange())
    });

    // Every handle looked up by its labels at each request.
    let requests = Family::<ListenerLabels, Counter>::default();
    let exchanges = Family::<ExchangeLabels, Counter>::default();
    let durations = Family::<OperationLabels, AtomicHistogram>::new_with_constructor(
        (|| AtomicHistogram::seconds(DURATION_BUCKETS)) as fn() -> AtomicHistogram,
    );
    let correlated = Counter::<u64>::default();
    let milestones = Family::<OperationLabels, Counter>::default();
    let (listener_labels, exchange_labels, operation_labels, milestone_labels) = labels();
    group.bench_function("per_request/label_lookup", |b| {
        b.iter(|| {
            requests.get_or_create(black_box(&listener_labels)).inc();
            exchanges.get_or_create(black_box(&exchange_labels)).inc();
            durations
                .get_or_create(black_box(&operation_labels))
                .observe_duration(black_box(Duration::from_micros(12_300)));
            correlated.inc();
            milestones.get_or_create(black_box(&milestone_labels)).inc();
        })
    });

    let config =
        Arc::new(Config::from_yaml(&scrape_config(10, 8, 2), "bench.yaml").expect("valid"));
    let mut registry = Registry::default();
    let extractor = Extractor::new(Arc::clone(&config), &mut registry);
    let unmatched = Exchange {
        id: 1,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method: http::Method::GET,
        uri: http::Uri::from_static("/nothing/routes/here"),
        version: http::Version::HTTP_11,
        request_headers: Default::default(),
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        duration: Duration::from_millis(3),
        upstream_duration: Duration::from_millis(2),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: Default::default(),
        },
        request_body: Tapped::default(),
        response_body: Tapped::default(),
        replayed: false,
        trace_context: None,
    };
    group.bench_function("per_request/observe_unmatched", |b| {
        b.iter_batched(
            || unmatched.clone(),
            |exchange| extractor.observe(exchange),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A config with `routes` routes over 3 systems, `milestones` milestones
/// and `flows` flows (each flow between consecutive milestones).
fn scrape_config(routes: usize, milestones: usize, flows: usize) -> String {
    let mut yaml = String::from(
        "systems: [erp, wms, carrier]\nkeys: [order, shipment]\nlisteners:\n  \
         - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }\n\
         milestones:\n",
    );
    for m in 0..milestones {
        let _ = writeln!(yaml, "  - {{ name: m{m}, object: order }}");
    }
    yaml.push_str("routes:\n");
    let systems = ["erp", "wms", "carrier"];
    for r in 0..routes {
        let _ = writeln!(
            yaml,
            "  - {{ name: op.r{r}, system: {}, match: {{ method: POST, path: /r{r} }}, keys: {{ order: {{ request_json: $.order_id }} }}, milestone: m{} }}",
            systems[r % 3],
            r % milestones
        );
    }
    yaml.push_str("flows:\n");
    for f in 0..flows {
        let _ = writeln!(
            yaml,
            "  - {{ name: f{f}, from: m{}, to: m{}, slo: 1h }}",
            f % milestones,
            (f + 1) % milestones
        );
    }
    yaml
}

/// The registry `app::start` builds, for `config`; its series count.
fn app_registry(config: &Arc<Config>) -> (Metrics, usize) {
    let mut registry = Registry::default();
    let (tx, _rx) = mpsc::channel(1);
    let _sink = ExchangeSink::new(tx, &mut registry);
    let _proxy = ProxyMetrics::new(&mut registry);
    let _extractor = Extractor::new(Arc::clone(config), &mut registry);
    let (correlator, _obs, _handle, _inbox) =
        Correlator::new(Arc::clone(config), Clock::system(), 1, &mut registry);
    let _spans = SpanObserver::new(Arc::clone(config), None, &mut registry);
    waybill::telemetry::export::ExportMetrics::new(&mut registry);
    drop(correlator);
    let metrics = Metrics::new(registry);
    let series = metrics
        .render()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .count();
    (metrics, series)
}

fn scrape(c: &mut Criterion) {
    // Find the number of routes that gives about 5 000 series.
    let probe =
        Arc::new(Config::from_yaml(&scrape_config(100, 16, 8), "probe.yaml").expect("valid"));
    let (_, per_100) = app_registry(&probe);
    let routes = (5_000 * 100 / per_100.max(1)).max(1);
    let config =
        Arc::new(Config::from_yaml(&scrape_config(routes, 16, 8), "bench.yaml").expect("valid"));
    let (metrics, series) = app_registry(&config);
    let bytes = metrics.render().len();
    println!("scrape: {routes} routes, 16 milestones, 8 flows → {series} series, {bytes} bytes of exposition");

    let mut group = c.benchmark_group("metrics");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(format!("render/{series}_series"), |b| {
        b.iter(|| metrics.render())
    });
    // What the OTLP metrics exporter does per interval, off the proxy's
    // workers: render, then read the text back into one export request.
    let resource =
        std::collections::BTreeMap::from([("service.name".to_owned(), "waybill".to_owned())]);
    let times = waybill::telemetry::snapshot::Times { start: 1, now: 2 };
    group.bench_function(format!("otlp_snapshot/{series}_series"), |b| {
        b.iter(|| waybill::telemetry::snapshot::request(&metrics.render(), &resource, times))
    });
    group.finish();
}

criterion_group!(benches, recording, scrape);
criterion_main!(benches);

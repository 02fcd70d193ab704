//! Span export at fixed rates (issue 9, target 8: zero dropped spans at
//! 2 × the throughput target with the default queue; drops counted beyond
//! that). Not a criterion benchmark: it offers spans at a fixed rate for a
//! few seconds and prints what happened to them.
//!
//! - The spans are the bench traffic's own (`benches/traffic`): exchanges
//!   run through the real extractor, correlator and span observer once,
//!   their encoded spans kept as templates (1.5 spans per exchange: every
//!   booking also completes a flow).
//! - A producer thread, standing in for the correlator, pushes copies of
//!   them onto the real export queue (`telemetry::export::start`, settings
//!   resolved as the sidecar resolves them: the defaults, or the `OTEL_BSP_*`
//!   variables when set) at the rate asked, paced by the clock in steps of
//!   about a millisecond, for `SECONDS` seconds.
//! - The exporter sends them to the tests' OTLP receiver
//!   (`tests/support/otlp_receiver.rs`, counting only: it decodes every
//!   request as a collector does and keeps nothing), over OTLP/gRPC and
//!   OTLP/HTTP, each on its own runtime.
//! - Per rate, after the producer stops and the exporter drains: spans
//!   offered, exported, received, dropped (by reason), export requests,
//!   spans per request, the round trip per request (mean, and the
//!   histogram bucket holding the 99th percentile), and the ceiling those
//!   imply (spans in flight per round trip).
//!
//! `cargo bench --bench export` (all rates, both protocols);
//! `RATES=25000,175000 SECONDS=3 PROTOCOLS=grpc cargo bench --bench export`
//! to choose. The machine's load average is printed with each row: on a
//! shared machine, rates near the ceiling move with it. CI only builds it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use waybill::clock::Clock;
use waybill::config::{OtlpProtocol, TracesConfig};
use waybill::correlate::{Correlated, Correlator, Observer};
use waybill::extract::Extractor;
use waybill::telemetry::export::{self, ExportMetrics, ExportTotals};
use waybill::telemetry::otlp_trace::EncodedSpan;
use waybill::telemetry::settings::{self, TraceSettings};
use waybill::telemetry::spans::SpanObserver;

#[path = "../src/global_alloc.rs"]
mod global_alloc;
#[path = "../tests/support/otlp_receiver.rs"]
#[allow(dead_code)]
mod otlp_receiver;
mod traffic;

use otlp_receiver::{Keeping, OtlpReceiver};

/// Spans per second offered by default: the rate checked through the
/// proxy so far, then up to and past 2 × the throughput target (~175 k
/// spans/s, see docs/performance.md).
const DEFAULT_RATES: [u64; 6] = [25_000, 60_000, 115_000, 175_000, 250_000, 350_000];
/// Seconds each rate is offered for, by default.
const DEFAULT_SECONDS: u64 = 3;
/// Exchanges run through the pipeline to make the span templates.
const TEMPLATE_EXCHANGES: usize = 4096;
/// How long the exporter may take to drain after the producer stops.
const DRAIN: Duration = Duration::from_secs(30);

/// Keeps the spans the span observer builds.
struct Keep(SpanObserver, Arc<Mutex<Vec<EncodedSpan>>>);

impl Observer for Keep {
    fn correlated(&mut self, event: &Correlated<'_>) {
        if let Ok(mut kept) = self.1.lock() {
            self.0.spans_into(event, &mut kept);
        }
    }
}

/// The spans of [`TEMPLATE_EXCHANGES`] exchanges of the bench traffic.
fn templates() -> Vec<EncodedSpan> {
    let config = Arc::new(traffic::config());
    let mut registry = Registry::default();
    let extractor = Extractor::new(Arc::clone(&config), &mut registry);
    let (mut correlator, _tx, _handle, _inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 1, &mut registry);
    let kept = Arc::new(Mutex::new(Vec::new()));
    let observer = SpanObserver::new(Arc::clone(&config), None, &mut registry);
    correlator.observe_with(Box::new(Keep(observer, Arc::clone(&kept))));
    for i in 0..TEMPLATE_EXCHANGES {
        correlator.apply(extractor.observe(traffic::exchange(&config, i)));
    }
    let spans = std::mem::take(&mut *kept.lock().expect("templates"));
    spans
}

fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    Some(value.split(',').map(|s| s.trim().to_owned()).collect())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

/// The exporter's settings for `endpoint`, resolved as the sidecar
/// resolves them (defaults unless `OTEL_BSP_*` says otherwise).
fn trace_settings(endpoint: &str, protocol: OtlpProtocol) -> TraceSettings {
    let config = TracesConfig {
        endpoint: Some(endpoint.parse().expect("receiver endpoint")),
        protocol: Some(protocol),
        ..TracesConfig::default()
    };
    let (resolved, warnings) = settings::resolve(&config, &|name| std::env::var(name).ok());
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    resolved.expect("traces on")
}

/// One rate's outcome.
struct Run {
    offered: u64,
    /// How long the producer took to offer them (longer than asked when
    /// it cannot keep up).
    offering: Duration,
    received: u64,
    totals: ExportTotals,
}

/// Offers `rate` spans per second for `seconds` through a fresh exporter
/// to a fresh receiver over `protocol`.
fn run(protocol: OtlpProtocol, templates: &[EncodedSpan], rate: u64, seconds: u64) -> Run {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let collector = runtime("collector");
    let sidecar = runtime("sidecar");
    let receiver = collector.block_on(async {
        match protocol {
            OtlpProtocol::Grpc => OtlpReceiver::grpc(Keeping::CountOnly).await,
            OtlpProtocol::HttpProtobuf => OtlpReceiver::http(Keeping::CountOnly).await,
        }
    });
    let settings = trace_settings(&receiver.endpoint(), protocol);
    let metrics = ExportMetrics::new(&mut Registry::default());
    let resource = BTreeMap::from([("service.name".to_owned(), "waybill-bench".to_owned())]);
    let (queue, exporting) = {
        let _entered = sidecar.enter();
        export::start(&settings, &resource, metrics.clone()).expect("exporter")
    };

    let total = rate * seconds;
    let started = Instant::now();
    let mut offered = 0u64;
    while offered < total {
        let due = ((rate as f64 * started.elapsed().as_secs_f64()) as u64).min(total);
        while offered < due {
            let template = &templates[offered as usize % templates.len()];
            queue.push(template.clone());
            offered += 1;
        }
        std::thread::sleep(Duration::from_micros(1000));
    }
    let offering = started.elapsed();
    drop(queue);
    sidecar.block_on(exporting.shutdown(DRAIN));
    // The exporter counted a span exported once the receiver answered.
    let received = receiver.span_count();
    drop(receiver);
    sidecar.shutdown_timeout(Duration::from_secs(5));
    collector.shutdown_timeout(Duration::from_secs(5));
    Run {
        offered,
        offering,
        received,
        totals: metrics.totals(),
    }
}

/// The upper bound of the bucket holding the `q` quantile of requests.
fn quantile_bound(buckets: &[(f64, u64)], q: f64) -> f64 {
    let count: u64 = buckets.iter().map(|(_, n)| n).sum();
    let rank = (count as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (bound, n) in buckets {
        seen += n;
        if seen >= rank.max(1) {
            return *bound;
        }
    }
    f64::INFINITY
}

fn main() {
    // `cargo bench` passes `--bench`; no other argument is read.
    let templates = templates();
    let bytes: usize = templates.iter().map(|s| s.as_bytes().len()).sum();
    let rates: Vec<u64> = env_list("RATES")
        .map(|list| list.iter().filter_map(|r| r.parse().ok()).collect())
        .unwrap_or_else(|| DEFAULT_RATES.to_vec());
    let seconds = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let protocols: Vec<OtlpProtocol> = env_list("PROTOCOLS")
        .unwrap_or_else(|| vec!["grpc".to_owned(), "http".to_owned()])
        .iter()
        .filter_map(|p| match p.as_str() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        })
        .collect();
    let probe = trace_settings("http://127.0.0.1:4317", OtlpProtocol::Grpc);
    println!(
        "span export at fixed rates: {} span templates of {} bytes on average; queue {}, batch {}, schedule delay {:?}; {} s per rate",
        templates.len(),
        bytes / templates.len().max(1),
        probe.queue_capacity,
        probe.max_batch_size,
        probe.schedule_delay,
        seconds,
    );
    println!(
        "| protocol | spans/s asked | offered (achieved/s) | exported | received | dropped (queue_full) | requests | spans/request | round trip mean / p99 ≤ | spans/s per request in flight | load average |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for protocol in &protocols {
        for &rate in &rates {
            let run = run(*protocol, &templates, rate, seconds);
            let t = &run.totals;
            let requests = t.requests.max(1);
            let mean = t.round_trip_seconds / requests as f64;
            let per_request = t.exported as f64 / requests as f64;
            println!(
                "| {} | {} | {} ({:.0}) | {} | {} | {} ({}) | {} | {:.0} | {:.2} / {} ms | {:.0} | {} |",
                match protocol {
                    OtlpProtocol::Grpc => "grpc",
                    OtlpProtocol::HttpProtobuf => "http",
                },
                rate,
                run.offered,
                run.offered as f64 / run.offering.as_secs_f64(),
                t.exported,
                run.received,
                t.dropped(),
                t.queue_full,
                t.requests,
                per_request,
                mean * 1e3,
                quantile_bound(&t.round_trip_buckets, 0.99) * 1e3,
                per_request / mean.max(f64::MIN_POSITIVE),
                load_average(),
            );
        }
    }
}

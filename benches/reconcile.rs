//! The reconciliation scheduler under load: a million shipments waiting
//! for their goods issue (one pending expectation each), then the cost of
//! one more `shipped` milestone (record + schedule) and of a tick that
//! finds nothing due. Memory per pending transaction-with-expectation is
//! printed from the process's resident set before and after filling.
//!
//! `cargo bench --bench reconcile`; CI only builds it (`--no-run`).

#[path = "../src/global_alloc.rs"]
mod global_alloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus_client::registry::Registry;

use waybill::clock::Clock;
use waybill::config::{Config, ListenerId};
use waybill::correlate::Correlator;
use waybill::extract::{ExchangeSummary, Key, Observation};
use waybill::proxy::{Exchange, Outcome, Tapped};

const PENDING: usize = 1_000_000;

const CONFIG: &str = r#"
systems: [wms, erp]
keys: [order, shipment]
state: { max_transactions: 2000000, ttl: 30d }
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: shipped, object: shipment }
  - { name: goods_issue_posted, object: shipment }
routes: []
expectations:
  - { after: shipped, expect: goods_issue_posted, within: 15m, exception: missing_goods_issue, owner: erp }
"#;

fn observation(config: &Config, n: usize, at: SystemTime) -> Observation {
    let shipment = config.key_kinds.get("shipment").expect("declared");
    let exchange = Exchange {
        id: n as u64,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method: http::Method::POST,
        uri: http::Uri::from_static("/ship"),
        version: http::Version::HTTP_11,
        request_headers: Default::default(),
        started: at,
        duration: Duration::from_millis(1),
        upstream_duration: Duration::from_millis(1),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: Default::default(),
        },
        request_body: Tapped::default(),
        response_body: Tapped::default(),
        replayed: false,
        trace_context: None,
    };
    Observation {
        exchange: ExchangeSummary::whole(exchange),
        route: None,
        operation: None,
        keys: vec![Key::new(shipment, format!("SH-{n:08}"))],
        milestone: config.milestones.get("shipped"),
        problems: Vec::new(),
        measures: Default::default(),
    }
}

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn pending_expectations(c: &mut Criterion) {
    let config = Arc::new(Config::from_yaml(CONFIG, "bench.yaml").expect("valid bench config"));
    let mut registry = Registry::default();
    let (mut correlator, _tx, _handle, _inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 1, &mut registry);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    let before = rss();
    for n in 0..PENDING {
        correlator.apply(observation(&config, n, start));
    }
    let after = rss();
    println!(
        "{PENDING} shipments each waiting for goods issue: {:.0} bytes resident per transaction with its pending expectation",
        after.saturating_sub(before) as f64 / PENDING as f64
    );

    let mut n = PENDING;
    c.bench_function("shipped milestone with 1M pending expectations", |b| {
        b.iter(|| {
            n += 1;
            correlator.apply(black_box(observation(&config, n, start)));
        })
    });
    c.bench_function("tick with 1M pending, none due", |b| {
        b.iter(|| correlator.tick(black_box(start)))
    });
}

criterion_group!(benches, pending_expectations);
criterion_main!(benches);

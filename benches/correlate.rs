//! The correlation store with a million live transactions (issue 9,
//! targets 4 and 5: ≤ 100 MB per million in-flight transactions of 2–4
//! keys and 8 milestones; ≥ 5 M operations/s on one core).
//!
//! Fills the store with 1 M orders, each driven through 8 milestones by 8
//! exchanges carrying 2–4 keys (order, shipment, tracking, invoice, the
//! way the real flow links them), and prints the resident-set growth per
//! transaction and the longest single apply of the fill (the pauses a
//! growing store puts on the correlator; the fill's time per apply
//! includes the timer). Then times [`Correlator::apply`] of one more
//! observation (2–4 keys and a milestone) on that store:
//! - `new_order`: a release that creates a transaction;
//! - `next_milestone`: an exchange on an existing transaction, spread over
//!   the million (a repeat once a transaction has all its milestones).
//!
//! The observations are built outside the timed part. No observer is
//! attached (the span observer is in the `business` bench).
//!
//! `cargo bench --bench correlate`; CI only builds it (`--no-run`).
//! `WAYBILL_BENCH_LIVE=100000` fills a smaller store (the machine is
//! shared; per-transaction figures are then extrapolated).
//! `--features mimalloc` (or `jemalloc`) measures with the allocator the
//! `waybill` binary gets from the same feature.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prometheus_client::registry::Registry;

use waybill::clock::Clock;
use waybill::config::{Config, ListenerId, Milestone};
use waybill::correlate::Correlator;
use waybill::extract::{ExchangeSummary, Key, Observation};
use waybill::proxy::{Exchange, Outcome, Tapped};

/// The same global allocator as the `waybill` binary (cargo features
/// `mimalloc` / `jemalloc`).
#[path = "../src/global_alloc.rs"]
mod global_alloc;

/// Live transactions by default: the issue's million.
const LIVE: usize = 1_000_000;

#[path = "support/live.rs"]
mod live;

const CONFIG: &str = r#"
systems: [erp, wms, carrier]
keys: [order, shipment, tracking, invoice]
root: order
state: { max_transactions: 3000000, ttl: 30d }
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: order_released, object: order }
  - { name: allocated, object: order }
  - { name: picked, object: order }
  - { name: packed, object: shipment }
  - { name: label_created, object: shipment }
  - { name: shipped, object: shipment }
  - { name: goods_issue_posted, object: shipment }
  - { name: freight_invoiced, object: shipment }
  - { name: delivered, object: shipment }
routes: []
flows:
  - { name: order_to_ship, from: order_released, to: shipped, slo: 24h }
  - { name: pick_to_pack, from: picked, to: packed, slo: 4h }
"#;

/// The 8 milestones one order goes through while the store fills, with
/// the keys each exchange carries (o: order, s: shipment, t: tracking,
/// i: invoice). Every order ends with 2–4 keys linked.
const STEPS: [(&str, &str); 8] = [
    ("order_released", "o"),
    ("allocated", "o"),
    ("picked", "o"),
    ("packed", "os"),
    ("label_created", "st"),
    ("shipped", "st"),
    ("goods_issue_posted", "os"),
    ("freight_invoiced", "sti"),
];

struct Ids {
    order: waybill::config::KeyKind,
    shipment: waybill::config::KeyKind,
    tracking: waybill::config::KeyKind,
    invoice: waybill::config::KeyKind,
    system: waybill::config::System,
}

fn observation(
    ids: &Ids,
    n: usize,
    kinds: &str,
    milestone: Option<Milestone>,
    at: SystemTime,
) -> Observation {
    // How many keys an order ends with: 2, 3 or 4.
    let width = 2 + n % 3;
    let keys = kinds
        .chars()
        .filter_map(|k| match k {
            'o' => Some(Key::new(ids.order.clone(), format!("SO-{n:010}"))),
            's' => Some(Key::new(ids.shipment.clone(), format!("SH-{n:010}-1"))),
            't' if width >= 3 => Some(Key::new(ids.tracking.clone(), format!("1Z999AA1{n:010}"))),
            'i' if width >= 4 => Some(Key::new(ids.invoice.clone(), format!("FI-{n:010}"))),
            _ => None,
        })
        .collect();
    Observation {
        exchange: ExchangeSummary::whole(Exchange {
            id: n as u64,
            listener: ListenerId(0),
            system: ids.system.clone(),
            method: http::Method::POST,
            uri: http::Uri::from_static("/api/step"),
            version: http::Version::HTTP_11,
            request_headers: Default::default(),
            started: at,
            duration: Duration::from_millis(2),
            upstream_duration: Duration::from_millis(1),
            outcome: Outcome::Response {
                status: http::StatusCode::OK,
                headers: Default::default(),
            },
            request_body: Tapped::default(),
            response_body: Tapped::default(),
            replayed: false,
            trace_context: None,
        }),
        route: None,
        operation: None,
        keys,
        milestone,
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

fn store(c: &mut Criterion) {
    let config = Arc::new(Config::from_yaml(CONFIG, "bench.yaml").expect("valid bench config"));
    let ids = Ids {
        order: config.key_kinds.get("order").expect("declared"),
        shipment: config.key_kinds.get("shipment").expect("declared"),
        tracking: config.key_kinds.get("tracking").expect("declared"),
        invoice: config.key_kinds.get("invoice").expect("declared"),
        system: config.systems.get("wms").expect("declared"),
    };
    let steps: Vec<(Milestone, &str)> = STEPS
        .iter()
        .map(|(name, kinds)| (config.milestones.get(name).expect("declared"), *kinds))
        .collect();
    let mut registry = Registry::default();
    let (mut correlator, _tx, _handle, _inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 1, &mut registry);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    let live = live::live(LIVE);
    let before = rss();
    let filling = Instant::now();
    // The longest single `apply` of the fill, and how many took over a
    // millisecond: the pauses a growing store puts on the correlator
    // (and on one CPU, on the proxy), which a mean hides.
    let (mut longest, mut over_1ms) = (Duration::ZERO, 0);
    for n in 0..live {
        for (step, (milestone, kinds)) in steps.iter().enumerate() {
            let at = start + Duration::from_secs(60 * step as u64);
            let observation = observation(&ids, n, kinds, Some(milestone.clone()), at);
            let applying = Instant::now();
            correlator.apply(observation);
            let took = applying.elapsed();
            longest = longest.max(took);
            over_1ms += usize::from(took > Duration::from_millis(1));
        }
    }
    let elapsed = filling.elapsed();
    let after = rss();
    println!(
        "{}: filled {live} transactions (2–4 keys, 8 milestones, 8 exchanges each) in {:.1} s \
         ({:.0} ns per apply, observation building included); resident set +{:.0} MB: \
         {:.0} bytes per transaction, {:.0} MB per million",
        global_alloc::NAME,
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / (live * STEPS.len()) as f64,
        after.saturating_sub(before) as f64 / 1e6,
        after.saturating_sub(before) as f64 / live as f64,
        after.saturating_sub(before) as f64 / live as f64,
    );
    println!(
        "longest apply of the fill: {:.2} ms; applies over 1 ms: {over_1ms}",
        longest.as_secs_f64() * 1e3
    );

    let mut group = c.benchmark_group("correlate_live");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let released = config.milestones.get("order_released").expect("declared");
    let mut next_new = live;
    group.bench_function("new_order", |b| {
        b.iter_batched(
            || {
                next_new += 1;
                observation(&ids, next_new, "o", Some(released.clone()), start)
            },
            |o| correlator.apply(black_box(o)),
            BatchSize::SmallInput,
        )
    });
    let delivered = config.milestones.get("delivered").expect("declared");
    let mut i = 0usize;
    group.bench_function("next_milestone", |b| {
        b.iter_batched(
            || {
                // A stride through the million so consecutive calls do not
                // share cache lines.
                i = i.wrapping_add(1);
                let n = i.wrapping_mul(7919) % live;
                observation(
                    &ids,
                    n,
                    "sti",
                    Some(delivered.clone()),
                    start + Duration::from_secs(3600),
                )
            },
            |o| correlator.apply(black_box(o)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);

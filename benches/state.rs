//! Throughput and size of the embedded durable store, through the real
//! correlator task: observations per second *accepted* (committed, then
//! applied) with group commit and without it (one fsync per observation),
//! and bytes per transaction in the journal and in a snapshot.
//!
//! Then the shared Redis store, when `redis-server` is on the PATH (the
//! bench starts its own on a free port, without persistence): observations
//! per second appended to the shared log *and* read back and applied, and
//! Redis memory per transaction (`MEMORY USAGE` of the log stream). And the
//! outage spill (`state.redis.spill`): with Redis down, entries per second
//! written to the spill and its bytes on disk per entry; then, once Redis
//! starts, entries per second appended from the spill, read back and applied.
//!
//! `cargo bench --bench state` (a plain `main`: the figures are end-to-end
//! rates, not per-iteration timings). `WAYBILL_BENCH_DIR` picks the disk
//! (default: the system temp dir, often tmpfs; point it at a real disk
//! for fsync costs that mean something).

#[path = "../src/global_alloc.rs"]
mod global_alloc;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::registry::Registry;
use waybill::clock::Clock;
use waybill::config::{Config, ListenerId};
use waybill::correlate::Correlator;
use waybill::extract::{ExchangeSummary, Key, Observation};
use waybill::proxy::{Exchange, Outcome, Tapped};
use waybill::state::durable::Durable;

const CONFIG: &str = r#"
systems: [wms]
keys: [order, shipment]
root: order
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: order_released, object: order }
  - { name: packed, object: shipment }
  - { name: shipped, object: shipment }
  - { name: goods_issue_posted, object: shipment }
routes:
  - { name: wms.release, system: wms, match: { path: /release }, keys: { order: { header: x-order } }, milestone: order_released }
flows:
  - { name: order_to_ship, from: order_released, to: shipped, slo: 24h }
expectations:
  - { after: shipped, expect: goods_issue_posted, within: 15m, exception: missing_goods_issue, owner: wms }
"#;

/// Observations per transaction: release, pack (links the shipment),
/// ship, goods issue.
const PER_TRANSACTION: usize = 4;

fn observations(config: &Config, transactions: usize) -> Vec<Observation> {
    let order = config.key_kinds.get("order").expect("declared");
    let shipment = config.key_kinds.get("shipment").expect("declared");
    let milestone = |name: &str| config.milestones.get(name).expect("declared");
    let system = config.systems.get("wms").expect("declared");
    let start = SystemTime::now();
    let mut all = Vec::with_capacity(transactions * PER_TRANSACTION);
    let mut id = 0;
    for t in 0..transactions {
        let so = Key::new(order.clone(), format!("SO-{t:08}"));
        let sh = Key::new(shipment.clone(), format!("SH-{t:08}"));
        let steps = [
            (vec![so.clone()], "order_released", "/orders/SO/release"),
            (
                vec![so, sh.clone()],
                "packed",
                "/orders/SO/shipments/SH/pack",
            ),
            (vec![sh.clone()], "shipped", "/shipments/SH/ship"),
            (vec![sh], "goods_issue_posted", "/shipments/SH/goods_issue"),
        ];
        for (keys, name, path) in steps {
            id += 1;
            all.push(Observation {
                exchange: ExchangeSummary::whole(Exchange {
                    id,
                    listener: ListenerId(0),
                    system: system.clone(),
                    method: http::Method::POST,
                    uri: http::Uri::from_static(path),
                    version: http::Version::HTTP_11,
                    request_headers: Default::default(),
                    started: start + Duration::from_millis(id),
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
                }),
                route: None,
                operation: None,
                keys,
                milestone: Some(milestone(name)),
                problems: Vec::new(),
                measures: Default::default(),
            });
        }
    }
    all
}

/// The sum of every sample of metric `name` (whatever its labels).
fn gauge(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs `transactions` through a durable correlator; prints the figures.
async fn run(label: &str, state: &str, transactions: usize) {
    let base = std::env::var_os("WAYBILL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let yaml = format!(
        "{CONFIG}\nstate: {{ path: '{}', {state}, max_transactions: 10000000 }}\n",
        dir.path().display()
    );
    let config = Arc::new(Config::from_yaml(&yaml, "bench.yaml").expect("valid config"));
    let all = observations(&config, transactions);
    let count = all.len();
    let mut registry = Registry::default();
    let (mut correlator, sender, handle, inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 10_000, &mut registry);
    let waybill::config::StoreConfig::Embedded(embedded) = &config.state.store else {
        panic!("bench config has a state path");
    };
    let durable = Durable::open(embedded, &mut registry).expect("open store");
    correlator.recover(durable).expect("empty store");
    let task = tokio::spawn(correlator.run(inbox));

    let started = Instant::now();
    for observation in all {
        sender.send(observation).await.expect("correlator running");
    }
    while handle.applied() < count as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let journal = gauge(&registry, "waybill_state_journal_bytes");
    let file_before = std::fs::metadata(dir.path().join(waybill::state::durable::FILE_NAME))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  file before the final snapshot: {:.1} MiB",
        file_before as f64 / (1024.0 * 1024.0)
    );
    let commits = gauge(&registry, "waybill_state_commits_total");
    drop(sender);
    task.await.expect("correlator stops");
    let snapshot = gauge(&registry, "waybill_state_snapshot_bytes");
    let file = std::fs::metadata(dir.path().join(waybill::state::durable::FILE_NAME))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{label}: {count} observations accepted in {:.2}s = {:.0} obs/s, {commits} commits ({:.1} obs/commit)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        count as f64 / commits.max(1.0),
    );
    println!(
        "  per transaction ({PER_TRANSACTION} observations): journal {:.0} B, snapshot {:.0} B; file {:.1} MiB for {transactions} transactions",
        journal / transactions as f64,
        snapshot / transactions as f64,
        file as f64 / (1024.0 * 1024.0),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run(
            "group commit (commit_interval 10ms, commit_batch 1024)",
            "commit_interval: 10ms, commit_batch: 1024",
            25_000,
        )
        .await;
        run(
            "no grouping (commit_batch 1: one fsync per observation)",
            "commit_interval: 1ms, commit_batch: 1",
            250,
        )
        .await;
        run_shared(25_000).await;
        run_spill(25_000).await;
    });
}

/// Runs `transactions` through a correlator sharing state through a real
/// `redis-server`; prints the figures. Skipped without `redis-server`.
async fn run_shared(transactions: usize) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((_server, mut conn)) = start_redis(port, dir.path()).await else {
        println!("shared Redis store: skipped (no redis-server on the PATH)");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let yaml = format!(
        "{CONFIG}\nstate: {{ redis: {{ url: '{url}', namespace: bench, max_log_entries: 10000000 }}, max_transactions: 10000000 }}\n"
    );
    let run = drive_shared(&yaml, transactions).await;
    let count = run.count;
    while run.handle.applied() < count as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = run.started.elapsed();
    let dropped = gauge(&run.registry, "waybill_state_shared_dropped_total");
    let log_bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("waybill:{bench}:log")
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("MEMORY USAGE");
    drop(run.sender);
    run.task.await.expect("correlator stops");
    println!(
        "shared Redis store (append, read back, apply): {count} observations in {:.2}s = {:.0} obs/s, {dropped} dropped",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "  per transaction ({PER_TRANSACTION} observations): {:.0} B of Redis memory in the log stream ({:.1} MiB for {transactions} transactions)",
        log_bytes as f64 / transactions as f64,
        log_bytes as f64 / (1024.0 * 1024.0),
    );
}

/// A correlator on the shared store, after every observation was handed to it.
struct Driven {
    registry: Registry,
    sender: waybill::correlate::ObservationSender,
    handle: waybill::correlate::CorrelatorHandle,
    task: tokio::task::JoinHandle<()>,
    /// Observations handed over.
    count: usize,
    /// When the first was handed over.
    started: Instant,
}

/// Starts a correlator on the shared store `yaml` configures and hands it
/// the observations of `transactions` transactions.
async fn drive_shared(yaml: &str, transactions: usize) -> Driven {
    let config = Arc::new(Config::from_yaml(yaml, "bench.yaml").expect("valid config"));
    let all = observations(&config, transactions);
    let count = all.len();
    let mut registry = Registry::default();
    let (mut correlator, sender, handle, inbox) =
        Correlator::new(Arc::clone(&config), Clock::system(), 10_000, &mut registry);
    let waybill::config::StoreConfig::Redis(redis_config) = &config.state.store else {
        panic!("bench config has a Redis URL");
    };
    let shared = waybill::state::shared::Shared::start(redis_config, None, &mut registry)
        .expect("shared store");
    correlator.share_through(shared);
    let task = tokio::spawn(correlator.run(inbox));
    let started = Instant::now();
    for observation in all {
        sender.send(observation).await.expect("correlator running");
    }
    Driven {
        registry,
        sender,
        handle,
        task,
        count,
        started,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` child, killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `redis-server` on `port` without persistence and connects to
/// it; `None` when there is no `redis-server` on the PATH.
async fn start_redis(
    port: u16,
    dir: &std::path::Path,
) -> Option<(Reaped, redis::aio::MultiplexedConnection)> {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let server = Reaped(child);
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}").as_str()).expect("redis url");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(conn) = client.get_multiplexed_async_connection().await {
            return Some((server, conn));
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outage spill: Redis is down while `transactions` go through the
/// correlator into the spill; then Redis starts and the spill drains.
async fn run_spill(transactions: usize) {
    let port = free_port();
    let base = std::env::var_os("WAYBILL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let spill_dir = dir.path().join("spill");
    let yaml = format!(
        "{CONFIG}\nstate: {{ redis: {{ url: 'redis://127.0.0.1:{port}', namespace: bench, max_log_entries: 10000000, spill: {{ path: '{}' }} }}, max_transactions: 10000000 }}\n",
        spill_dir.display()
    );
    let run = drive_shared(&yaml, transactions).await;
    let count = run.count;
    let deadline = Instant::now() + Duration::from_secs(600);
    while gauge(&run.registry, "waybill_state_shared_spilled_total") < count as f64 {
        assert!(
            Instant::now() < deadline,
            "the spill did not take every entry"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let spilled_in = run.started.elapsed();
    let file = std::fs::metadata(spill_dir.join(waybill::state::shared::spill::FILE_NAME))
        .map(|m| m.len())
        .unwrap_or(0);

    let redis_dir = tempfile::tempdir().expect("temp dir");
    let Some((_server, _conn)) = start_redis(port, redis_dir.path()).await else {
        println!("outage spill: skipped (no redis-server on the PATH)");
        return;
    };
    let back = Instant::now();
    while run.handle.applied() < count as u64 {
        assert!(Instant::now() < deadline, "the spill did not drain");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drained_in = back.elapsed();
    let dropped = gauge(&run.registry, "waybill_state_shared_dropped_total");
    drop(run.sender);
    run.task.await.expect("correlator stops");
    println!(
        "outage spill (Redis down): {count} observations spilled in {:.2}s = {:.0} obs/s; spill file {:.1} MiB = {:.0} B per entry",
        spilled_in.as_secs_f64(),
        count as f64 / spilled_in.as_secs_f64(),
        file as f64 / (1024.0 * 1024.0),
        file as f64 / count as f64,
    );
    println!(
        "  Redis back: appended from the spill, read back and applied in {:.2}s = {:.0} obs/s, {dropped} dropped",
        drained_in.as_secs_f64(),
        count as f64 / drained_in.as_secs_f64(),
    );
}

//! The shared Redis store, end to end: a real `redis-server` (started on a
//! free port, no persistence, with a password) and three real `waybill run`
//! processes, each fronting one simulated system (ERP, WMS, carrier). One
//! order's flow crosses all three; every admin API shows the same complete
//! transaction; the flow histogram counts it once and its expectation
//! fires once across the three. Then Redis is stopped while traffic goes
//! on: every request is answered, and once Redis is back every sidecar's
//! picture catches up with what was seen during the outage.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use support::process::Waybill;
use support::redis::{RedisServer, PASSWORD};

/// Bound on every wait of this test.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long after `shipped` the goods issue is expected.
const WITHIN: Duration = Duration::from_millis(1500);
/// Orders driven while Redis is down.
const OUTAGE_ORDERS: usize = 5;
const SYSTEMS: [&str; 3] = ["erp", "wms", "carrier"];

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A simulated system: answers every POST; the carrier's label purchase
/// returns a tracking code made from the shipment id.
async fn system() -> SocketAddr {
    let app = Router::new()
        .route(
            "/v2/shipments/{shipment}/buy",
            post(|UrlPath(shipment): UrlPath<String>| async move {
                Json(json!({ "tracking_code": format!("1Z-{shipment}") }))
            }),
        )
        .fallback(post(|| async { "ok" }));
    support::serve(app).await
}

/// The routes file of the sidecar fronting `system`; `redis` is the
/// content of `state.redis`.
fn config(redis: &str, upstream: SocketAddr, system: &str) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
state: {{ backend: redis, redis: {{ {redis} }} }}
systems: [erp, wms, carrier]
keys: [order, shipment, tracking, invoice]
root: order
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: http://{upstream}, system: {system} }}
milestones:
  - {{ name: order_released, object: order }}
  - {{ name: packed, object: shipment }}
  - {{ name: label_created, object: shipment }}
  - {{ name: shipped, object: shipment }}
  - {{ name: goods_issue_posted, object: shipment }}
  - {{ name: freight_invoiced, object: invoice }}
routes:
  - {{ name: erp.release, system: erp, match: {{ method: POST, path: '/orders/{{order_id}}/release' }}, keys: {{ order: {{ path_param: order_id }} }}, milestone: order_released }}
  - name: wms.pack
    system: wms
    match: {{ method: POST, path: '/orders/{{order_id}}/shipments/{{shipment_id}}/pack' }}
    keys: {{ order: {{ path_param: order_id }}, shipment: {{ path_param: shipment_id }} }}
    milestone: packed
  - {{ name: wms.ship, system: wms, match: {{ method: POST, path: '/shipments/{{shipment_id}}/ship' }}, keys: {{ shipment: {{ path_param: shipment_id }} }}, milestone: shipped }}
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: '/v2/shipments/{{shipment_id}}/buy' }}
    keys: {{ shipment: {{ path_param: shipment_id }}, order: {{ request_json: $.reference }}, tracking: {{ response_json: $.tracking_code }} }}
    milestone: label_created
  - {{ name: erp.goods_issue, system: erp, match: {{ method: POST, path: '/shipments/{{shipment_id}}/goods_issue' }}, keys: {{ shipment: {{ path_param: shipment_id }} }}, milestone: goods_issue_posted }}
  - name: erp.freight_invoice
    system: erp
    match: {{ method: POST, path: '/freight_invoices/{{invoice_id}}' }}
    keys: {{ invoice: {{ path_param: invoice_id }}, tracking: {{ request_json: $.tracking }} }}
    milestone: freight_invoiced
flows:
  - {{ name: order_to_ship, from: order_released, to: shipped, slo: 24h }}
expectations:
  - {{ after: shipped, expect: goods_issue_posted, within: {within}ms, exception: missing_goods_issue, owner: erp }}
"#,
        within = WITHIN.as_millis(),
    )
}

/// The three sidecars, in the order of [`SYSTEMS`].
struct Sidecars {
    all: Vec<Waybill>,
    client: reqwest::Client,
}

impl Sidecars {
    /// One sidecar per system, sharing state through `redis` (the content
    /// of `state.redis`).
    async fn start(dir: &Path, redis: &str) -> Sidecars {
        let mut all = Vec::new();
        for system_name in SYSTEMS {
            let upstream = system().await;
            let text = config(redis, upstream, system_name);
            let path = write_config(dir, system_name, &text);
            all.push(Waybill::start_with(
                &path,
                &[("WAYBILL_REDIS_PASSWORD", PASSWORD)],
                &mut |_| {},
            ));
        }
        Sidecars {
            all,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
        }
    }

    fn by(&self, system: &str) -> &Waybill {
        let i = SYSTEMS.iter().position(|s| *s == system).expect("system");
        &self.all[i]
    }

    /// Sends a request through `system`'s sidecar; returns the answer's body.
    async fn send(&self, system: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://{}{path}", self.by(system).edge);
        let mut request = self.client.post(&url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the sidecar answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let text = response.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// The transaction `key` (`order/SO-1`) as one sidecar's admin API shows it.
    async fn transaction(&self, sidecar: &Waybill, key: &str) -> Option<Value> {
        let url = format!("http://{}/api/v1/transactions/{key}", sidecar.admin);
        let response = self.client.get(&url).send().await.expect("admin API");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        Some(response.json().await.expect("transaction JSON"))
    }

    async fn get(&self, sidecar: &Waybill, path: &str) -> String {
        let url = format!("http://{}{path}", sidecar.admin);
        let response = self.client.get(&url).send().await.expect("admin API");
        response.text().await.expect("text")
    }

    /// Waits until every sidecar shows `milestones` on transaction `key`.
    async fn wait_for(&self, key: &str, milestones: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        for sidecar in &self.all {
            loop {
                let shown = self.transaction(sidecar, key).await;
                let names = shown.as_ref().map(milestone_names).unwrap_or_default();
                if milestones.iter().all(|m| names.iter().any(|n| n == m)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{key} lacks some of {milestones:?} at {}: {shown:?}",
                    sidecar.admin
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The sum over the three sidecars of metric lines starting with `series`.
    async fn metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for sidecar in &self.all {
            sum += metric(&self.get(sidecar, "/metrics").await, series);
        }
        sum
    }

    /// Waits until every sidecar shows the same `key`, and returns it.
    async fn same_everywhere(&self, key: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut shown = Vec::new();
            for sidecar in &self.all {
                shown.push(self.transaction(sidecar, key).await);
            }
            if shown.windows(2).all(|w| w[0] == w[1]) {
                return shown[0]
                    .clone()
                    .unwrap_or_else(|| panic!("{key} is unknown"));
            }
            assert!(
                Instant::now() < deadline,
                "sidecars disagree on {key}: {shown:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn milestone_names(tx: &Value) -> Vec<String> {
    tx["milestones"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["milestone"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The sum of the samples of `series` (a name, optionally with the start
/// of its labels) in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn write_config(dir: &Path, system: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{system}.yaml"));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write config");
    path
}

/// One order across the three sidecars: released in the ERP, packed and
/// shipped in the WMS, its label bought at the carrier (which learns the
/// tracking number), its freight invoice posted to the ERP by tracking
/// number only; every admin API shows the same complete transaction, the
/// flow is counted once and the lapsed expectation opens one exception.
async fn one_order_across_three(sidecars: &Sidecars) {
    // Each step waits until every sidecar shows the last.
    sidecars.send("erp", "/orders/SO-1/release", None).await;
    sidecars.wait_for("order/SO-1", &["order_released"]).await;
    sidecars
        .send("wms", "/orders/SO-1/shipments/SH-1/pack", None)
        .await;
    sidecars.wait_for("order/SO-1", &["packed"]).await;
    let label = sidecars
        .send(
            "carrier",
            "/v2/shipments/SH-1/buy",
            Some(json!({ "reference": "SO-1" })),
        )
        .await;
    assert_eq!(
        label["tracking_code"], "1Z-SH-1",
        "the carrier's answer passes through"
    );
    sidecars.wait_for("order/SO-1", &["label_created"]).await;
    sidecars.send("wms", "/shipments/SH-1/ship", None).await;
    sidecars.wait_for("order/SO-1", &["shipped"]).await;
    sidecars
        .send(
            "erp",
            "/freight_invoices/INV-1",
            Some(json!({ "tracking": "1Z-SH-1" })),
        )
        .await;
    sidecars.wait_for("order/SO-1", &["freight_invoiced"]).await;

    // No goods issue: the expectation lapses after WITHIN, on one tick of
    // one sidecar, and every sidecar shows the one exception.
    let deadline = Instant::now() + PATIENCE;
    for sidecar in &sidecars.all {
        loop {
            let found: Value = serde_json::from_str(
                &sidecars
                    .get(sidecar, "/api/v1/exceptions?kind=missing_goods_issue")
                    .await,
            )
            .expect("exceptions JSON");
            let found = found["exceptions"].as_array().cloned().unwrap_or_default();
            if !found.is_empty() {
                assert_eq!(found.len(), 1, "{found:?}");
                assert_eq!(found[0]["object"]["value"], "SH-1");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "missing_goods_issue never opened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A few more deadline ticks of every sidecar: none opens it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let tx = sidecars.same_everywhere("order/SO-1").await;
    let mut names = milestone_names(&tx);
    names.sort();
    assert_eq!(
        names,
        [
            "freight_invoiced",
            "label_created",
            "order_released",
            "packed",
            "shipped"
        ],
        "{tx:#}"
    );
    let systems: Vec<&str> = tx["milestones"]
        .as_array()
        .expect("milestones")
        .iter()
        .filter_map(|m| m["system"].as_str())
        .collect();
    for system in SYSTEMS {
        assert!(
            systems.contains(&system),
            "no milestone seen by {system}: {systems:?}"
        );
    }
    let exceptions = tx["exceptions"].as_array().expect("exceptions");
    assert_eq!(exceptions.len(), 1, "{tx:#}");
    let flows = tx["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "one order_to_ship flow: {tx:#}");
    let at = |name: &str| {
        tx["milestones"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["milestone"] == name))
            .and_then(|m| m["at"].as_str())
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("{name} time"))
    };
    let expected = at("shipped")
        .duration_since(at("order_released"))
        .expect("shipped after released")
        .as_secs_f64();
    let measured = flows[0]["duration_seconds"].as_f64().expect("seconds");
    assert!(
        (measured - expected).abs() < 0.002,
        "{measured} vs {expected}"
    );
    // Counted once across the three sidecars, by the one that saw `shipped`.
    let flow_count = sidecars
        .metric_sum("waybill_flow_duration_seconds_count{flow=\"order_to_ship\"")
        .await;
    assert_eq!(
        flow_count, 1.0,
        "order_to_ship observed once across the sidecars"
    );
    assert_eq!(
        metric(
            &sidecars.get(sidecars.by("wms"), "/metrics").await,
            "waybill_flow_duration_seconds_count{flow=\"order_to_ship\""
        ),
        1.0,
        "the WMS sidecar, whose `shipped` ended the flow, reports it"
    );
    let opened = sidecars
        .metric_sum("waybill_exceptions_opened_total{kind=\"missing_goods_issue\"")
        .await;
    assert_eq!(
        opened, 1.0,
        "missing_goods_issue opened once across the sidecars"
    );
    eprintln!("one order across three sidecars: same transaction on every admin API; flow counted {flow_count}, exception opened {opened} time(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_share_one_picture_and_catch_up_after_a_redis_outage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let redis = RedisServer::start(port, dir.path()).await;
    let redis_settings = format!(
        "url: '{}', namespace: test-{port}, buffer: 10000",
        redis.url()
    );
    let sidecars = Sidecars::start(dir.path(), &redis_settings).await;
    one_order_across_three(&sidecars).await;

    // Redis goes away; traffic through every sidecar goes on.
    redis.stop();
    for i in 2..2 + OUTAGE_ORDERS {
        sidecars
            .send("erp", &format!("/orders/SO-{i}/release"), None)
            .await;
        sidecars
            .send(
                "wms",
                &format!("/orders/SO-{i}/shipments/SH-{i}/pack"),
                None,
            )
            .await;
        let label = sidecars
            .send(
                "carrier",
                &format!("/v2/shipments/SH-{i}/buy"),
                Some(json!({ "reference": format!("SO-{i}") })),
            )
            .await;
        assert_eq!(label["tracking_code"], format!("1Z-SH-{i}"));
    }
    eprintln!(
        "Redis down: {} requests answered through the sidecars",
        OUTAGE_ORDERS * 3
    );
    for sidecar in &sidecars.all {
        let metrics = sidecars.get(sidecar, "/metrics").await;
        assert!(
            metric(&metrics, "waybill_state_shared_buffered") >= OUTAGE_ORDERS as f64,
            "{} holds its entries while Redis is down",
            sidecar.admin
        );
        assert!(
            sidecars.transaction(sidecar, "order/SO-2").await.is_none(),
            "nothing is applied before it is in the shared log"
        );
    }

    // Redis is back (empty: no persistence); the buffers are appended and
    // every sidecar catches up.
    let redis = RedisServer::start(port, dir.path()).await;
    for i in 2..2 + OUTAGE_ORDERS {
        let key = format!("order/SO-{i}");
        sidecars
            .wait_for(&key, &["order_released", "packed", "label_created"])
            .await;
        sidecars.same_everywhere(&key).await;
    }
    for sidecar in &sidecars.all {
        let metrics = sidecars.get(sidecar, "/metrics").await;
        assert_eq!(metric(&metrics, "waybill_state_shared_dropped_total"), 0.0);
        assert_eq!(metric(&metrics, "waybill_state_shared_buffered"), 0.0);
        assert!(
            metric(&metrics, "waybill_state_shared_errors_total") > 0.0,
            "the outage was seen"
        );
    }
    let opened = sidecars
        .metric_sum("waybill_exceptions_opened_total{kind=\"missing_goods_issue\"")
        .await;
    assert_eq!(opened, 1.0, "still once after the outage");
    eprintln!("Redis back: {OUTAGE_ORDERS} orders seen during the outage caught up on every sidecar, none dropped");
    drop(sidecars);
    drop(redis);
}

/// The append script against a real Redis: a batch re-sent (say after a
/// lost reply) adds nothing, and a batch that overlaps what is already in
/// adds only what is new, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_changes_nothing_in_the_shared_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start(free_port(), dir.path()).await;
    let client = redis::Client::open(redis.url_with_password()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let script = redis::Script::new(waybill::state::shared::APPEND);
    let log = "waybill:{idem}:log";
    let mark = "waybill:{idem}:origin:00000000000000aa";
    let append = |entries: &[(u64, &str)]| {
        let mut call = script.key(log);
        call.key(mark).arg("00000000000000aa").arg(1000).arg(60_000);
        for (seq, entry) in entries {
            call.arg(*seq).arg(*entry);
        }
        call
    };
    let added: u64 = append(&[(1, "a"), (2, "b")])
        .invoke_async(&mut conn)
        .await
        .expect("append");
    assert_eq!(added, 2);
    let again: u64 = append(&[(1, "a"), (2, "b")])
        .invoke_async(&mut conn)
        .await
        .expect("re-send");
    assert_eq!(again, 0, "a re-sent batch adds nothing");
    let overlap: u64 = append(&[(2, "b"), (3, "c")])
        .invoke_async(&mut conn)
        .await
        .expect("overlap");
    assert_eq!(overlap, 1, "only the new entry of an overlapping batch");
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(log)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let seqs: Vec<String> = entries
        .ids
        .iter()
        .map(|id| match id.map.get("q") {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("no sequence: {other:?}"),
        })
        .collect();
    assert_eq!(seqs, ["1", "2", "3"]);
}

/// With Redis unreachable and a tiny buffer, traffic is still answered and
/// what could not be held is counted as dropped, never lost silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_traffic_flows_and_what_the_buffer_cannot_hold_is_counted() {
    // A port nothing listens on.
    let port = free_port();
    let upstream = system().await;
    let text = config(
        &format!("url: 'redis://127.0.0.1:{port}', namespace: down, buffer: 2"),
        upstream,
        "erp",
    );
    let config = waybill::config::Config::from_yaml(&text, "shared-down.yaml").expect("valid");
    let sidecar = waybill::app::start(config, waybill::clock::Clock::system())
        .await
        .expect("starts without Redis");
    let edge = sidecar.listener_addr("edge").expect("edge");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    const SENT: usize = 300;
    for i in 0..SENT {
        let response = client
            .post(format!("http://{edge}/orders/SO-{i}/release"))
            .send()
            .await
            .expect("answered");
        assert!(response.status().is_success(), "{}", response.status());
    }
    let admin = sidecar.admin_addr();
    let deadline = Instant::now() + PATIENCE;
    let (dropped, buffered) = loop {
        let metrics = support::metrics_text(&client, admin).await;
        let dropped = metric(
            &metrics,
            "waybill_state_shared_dropped_total{reason=\"buffer_full\"}",
        );
        let buffered = metric(&metrics, "waybill_state_shared_buffered");
        if dropped + buffered == SENT as f64 {
            break (dropped, buffered);
        }
        assert!(
            Instant::now() < deadline,
            "{dropped} dropped + {buffered} buffered != {SENT} sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(dropped > 0.0, "a buffer of 2 cannot hold {SENT} entries");
    let lookup = client
        .get(format!("http://{admin}/api/v1/transactions/order/SO-0"))
        .send()
        .await
        .expect("admin API");
    assert_eq!(
        lookup.status(),
        reqwest::StatusCode::NOT_FOUND,
        "nothing is applied before it is in the shared log"
    );
    eprintln!("Redis unreachable: {SENT} requests answered; {buffered} entries buffered, {dropped} dropped and counted");
    sidecar
        .shutdown(Duration::from_secs(1))
        .await
        .expect("clean shutdown");
}

/// A port whose cluster bus port (+10000) is a valid port too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && StdListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// The same story through a three-node Redis Cluster: the sidecars connect
/// with `cluster: true` to one seed node; the namespace's hash tag keeps the
/// log and the marks in one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_share_one_picture_through_a_redis_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let port = free_cluster_port();
        let node_dir = dir.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let args = ["--cluster-enabled", "yes", "--masterauth", PASSWORD];
        nodes.push(RedisServer::start_with(port, &node_dir, &args).await);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["-a", PASSWORD, "--no-auth-warning", "--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run redis-cli --cluster create");
    assert!(created.success(), "redis-cli --cluster create");
    let deadline = Instant::now() + PATIENCE;
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-a", PASSWORD, "--no-auth-warning"])
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli cluster info");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Seed the sidecars with a node that does not serve the namespace's
    // slot, so only a cluster client (following MOVED) can work.
    let namespace = format!("cluster-{}", nodes[0].port);
    let log = format!("waybill:{{{namespace}}}:log");
    let xlen = |node: &RedisServer| {
        let out = Command::new("redis-cli")
            .args(["-a", PASSWORD, "--no-auth-warning"])
            .args(["-p", &node.port.to_string(), "XLEN", &log])
            .output()
            .expect("redis-cli XLEN");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let seed = nodes
        .iter()
        .find(|n| xlen(n).starts_with("MOVED"))
        .expect("a node that does not serve the slot");
    let owner = nodes
        .iter()
        .find(|n| !xlen(n).starts_with("MOVED"))
        .expect("the node that serves the slot");
    let redis_settings = format!(
        "url: '{}', namespace: {namespace}, cluster: true",
        seed.url()
    );
    let sidecars = Sidecars::start(dir.path(), &redis_settings).await;
    one_order_across_three(&sidecars).await;
    let entries: u64 = xlen(owner).parse().expect("XLEN on the slot's node");
    assert!(entries > 0, "the log lives on the node serving its slot");
    eprintln!(
        "cluster: seeded with 127.0.0.1:{}, the log ({entries} entries) lives on 127.0.0.1:{}",
        seed.port, owner.port
    );
    drop(sidecars);
    drop(nodes);
}

/// Orders sent in each life of the sidecar during the restart-in-an-outage story.
const ORDERS_PER_LIFE: usize = 60;
/// The memory buffer of that story: far smaller than what an outage brings.
const SMALL_BUFFER: usize = 16;

/// What [`restart_during_an_outage`] counted.
struct OutageCount {
    sent: usize,
    /// Dropped and counted by the first life (read before its `kill -9`).
    dropped_before_kill: f64,
    /// Dropped and counted by the second life.
    dropped_after_restart: f64,
    /// Appended to the log by the second life once Redis was back.
    appended: f64,
    /// Orders another sidecar's admin API shows afterwards.
    shown: usize,
    /// Their log positions (the exchange ids of their milestones), in the
    /// order they were sent.
    positions: Vec<u64>,
}

/// Sends [`ORDERS_PER_LIFE`] releases through `sidecar` (a process that
/// has sent nothing yet), one at a time, each waiting until the sidecar
/// has put its entry somewhere: on disk with a spill, else in memory or
/// dropped. One at a time, because the sidecar answers an exchange before
/// it hands the exchange on: an order sent as soon as the previous one
/// was answered can be observed first (over another connection), and the
/// log would hold the two in the order they were observed, not sent.
async fn release_one_at_a_time(sidecars: &Sidecars, sidecar: &Waybill, prefix: &str, spill: bool) {
    let mut sent = 0;
    while sent < ORDERS_PER_LIFE {
        let url = format!("http://{}/orders/{prefix}-{sent}/release", sidecar.edge);
        let response = sidecars.client.post(&url).send().await.expect("answered");
        assert!(response.status().is_success(), "{}", response.status());
        sent += 1;
        metrics_until(sidecars, sidecar, &format!("{prefix}: {sent} sent"), |m| {
            let placed = if spill {
                metric(m, "waybill_state_shared_spilled_total")
            } else {
                metric(m, "waybill_state_shared_buffered")
                    + metric(m, "waybill_state_shared_dropped_total")
            };
            placed == sent as f64
        })
        .await;
    }
}

/// Polls `sidecar`'s metrics until `done` holds for them; returns them.
async fn metrics_until(
    sidecars: &Sidecars,
    sidecar: &Waybill,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics = sidecars.get(sidecar, "/metrics").await;
        if done(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{what}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis is down; a sidecar with a small memory buffer (and a spill if
/// `spill`) takes orders, is killed with SIGKILL, restarted on the same
/// config while Redis is still down and takes more orders; then Redis
/// starts and a second sidecar (no spill) joins the namespace.
async fn restart_during_an_outage(spill: bool) -> OutageCount {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let spill_setting = if spill {
        format!(
            ", spill: {{ path: '{}' }}",
            dir.path().join("spill").display()
        )
    } else {
        String::new()
    };
    let settings =
        format!("url: 'redis://127.0.0.1:{port}', namespace: outage, buffer: {SMALL_BUFFER}");
    let upstream = system().await;
    let path = write_config(
        dir.path(),
        "erp",
        &config(&format!("{settings}{spill_setting}"), upstream, "erp"),
    );
    let env = [("WAYBILL_REDIS_PASSWORD", PASSWORD)];
    let mut sidecars = Sidecars {
        all: vec![Waybill::start_with(&path, &env, &mut |_| {})],
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client"),
    };
    release_one_at_a_time(&sidecars, &sidecars.all[0], "SO-A", spill).await;
    let metrics = sidecars.get(&sidecars.all[0], "/metrics").await;
    let dropped_before_kill = metric(&metrics, "waybill_state_shared_dropped_total");
    if spill {
        assert_eq!(
            metric(&metrics, "waybill_state_shared_spill_entries"),
            ORDERS_PER_LIFE as f64,
            "every entry is on disk before the kill"
        );
    }
    sidecars.all.pop().expect("first life").kill();

    sidecars
        .all
        .push(Waybill::start_with(&path, &env, &mut |_| {}));
    release_one_at_a_time(&sidecars, &sidecars.all[0], "SO-B", spill).await;
    let metrics = sidecars.get(&sidecars.all[0], "/metrics").await;
    if spill {
        assert_eq!(
            metric(&metrics, "waybill_state_shared_spill_entries"),
            (2 * ORDERS_PER_LIFE) as f64,
            "the first life's entries are still on disk"
        );
    }

    // Redis starts (empty); the restarted sidecar appends what it holds,
    // and a second sidecar reads the log from its start.
    let redis = RedisServer::start(port, dir.path()).await;
    let restarted = &sidecars.all[0];
    let metrics = metrics_until(
        &sidecars,
        restarted,
        "the sidecar empties its buffers",
        |m| {
            metric(m, "waybill_state_shared_buffered") == 0.0
                && metric(m, "waybill_state_shared_spill_entries") == 0.0
                && metric(m, "waybill_state_shared_connected") == 1.0
        },
    )
    .await;
    let appended = metric(&metrics, "waybill_state_shared_appended_total");
    let dropped_after_restart = metric(&metrics, "waybill_state_shared_dropped_total");
    let observer_upstream = system().await;
    let observer_path = write_config(
        dir.path(),
        "wms",
        &config(&settings, observer_upstream, "wms"),
    );
    sidecars
        .all
        .push(Waybill::start_with(&observer_path, &env, &mut |_| {}));
    let observer = &sidecars.all[1];
    metrics_until(
        &sidecars,
        observer,
        "the second sidecar reads the whole log",
        |m| metric(m, "waybill_state_shared_applied_total{origin=\"remote\"}") == appended,
    )
    .await;
    let mut shown = 0;
    let mut positions = Vec::new();
    for prefix in ["SO-A", "SO-B"] {
        for i in 0..ORDERS_PER_LIFE {
            let key = format!("order/{prefix}-{i}");
            if let Some(tx) = sidecars.transaction(observer, &key).await {
                assert_eq!(milestone_names(&tx), ["order_released"], "{key}: {tx}");
                positions.push(
                    tx["milestones"][0]["exchange"]
                        .as_u64()
                        .expect("exchange id"),
                );
                shown += 1;
            }
        }
    }
    drop(sidecars);
    drop(redis);
    OutageCount {
        sent: 2 * ORDERS_PER_LIFE,
        dropped_before_kill,
        dropped_after_restart,
        appended,
        shown,
        positions,
    }
}

/// With a spill, nothing accepted during an outage is lost, not even
/// across a `kill -9`: every order reaches the shared log once Redis is
/// back, and another sidecar shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spill_an_outage_and_a_restart_lose_nothing() {
    let count = restart_during_an_outage(true).await;
    eprintln!(
        "spill: {} orders sent during the outage (buffer {SMALL_BUFFER}, a kill -9 between), {} dropped, {} appended once Redis was back, {} shown by another sidecar",
        count.sent,
        count.dropped_before_kill + count.dropped_after_restart,
        count.appended,
        count.shown
    );
    assert_eq!(count.dropped_before_kill, 0.0);
    assert_eq!(count.dropped_after_restart, 0.0);
    assert_eq!(
        count.appended, count.sent as f64,
        "each entry appended once"
    );
    assert_eq!(count.shown, count.sent);
    assert!(
        count.positions.windows(2).all(|w| w[0] < w[1]),
        "the log holds them in the order they were sent: {:?}",
        count.positions
    );
}

/// The same story without a spill: what the memory buffer could not hold
/// is dropped and counted, and what it held dies with the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spill_an_outage_and_a_restart_lose_what_memory_cannot_hold() {
    let count = restart_during_an_outage(false).await;
    eprintln!(
        "no spill: {} orders sent during the outage (buffer {SMALL_BUFFER}, a kill -9 between), {} + {} dropped and counted, the rest of the first life's lost with it, {} shown by another sidecar",
        count.sent, count.dropped_before_kill, count.dropped_after_restart, count.shown
    );
    assert!(
        count.dropped_before_kill > 0.0,
        "a buffer of {SMALL_BUFFER} cannot hold {ORDERS_PER_LIFE}"
    );
    assert!(count.dropped_after_restart > 0.0);
    assert_eq!(
        count.shown as f64 + count.dropped_after_restart,
        ORDERS_PER_LIFE as f64,
        "the second life's orders are either shown or counted as dropped; the first life's died with it"
    );
    assert_eq!(count.shown as f64, count.appended);
}

/// A `redis-server` and two sidecars sharing it, each in front of
/// `carrier` with the guarded route of [`support::guard::config`], and a
/// client for them.
async fn two_guarded_sidecars(
    dir: &Path,
    carrier: SocketAddr,
) -> (RedisServer, Vec<Waybill>, reqwest::Client) {
    let redis = RedisServer::start(free_port(), dir).await;
    let state = format!(
        "backend: redis, redis: {{ url: '{}', namespace: guard }}",
        redis.url()
    );
    let text = support::guard::config(carrier, &state);
    let mut sidecars = Vec::new();
    for name in ["a", "b"] {
        let path = write_config(dir, name, &text);
        sidecars.push(Waybill::start_with(
            &path,
            &[("WAYBILL_REDIS_PASSWORD", PASSWORD)],
            &mut |_| {},
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    (redis, sidecars, client)
}

/// The idempotency guard across replicas: a label bought through sidecar
/// A, the client's retry sent to sidecar B (same namespace) gets A's
/// answer byte for byte and the carrier sees one purchase. With Redis
/// gone, B still forwards new keys: traffic never fails on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_another_replica_gets_the_response_the_first_one_stored() {
    use support::guard::{buy, sample, wait_for, Counting};
    let dir = tempfile::tempdir().expect("temp dir");
    let carrier = Counting::start().await;
    let (redis, sidecars, client) = two_guarded_sidecars(dir.path(), carrier.addr).await;
    let (a, b) = (&sidecars[0], &sidecars[1]);

    let first = buy(&client, a.edge, "retry-1").await;
    assert_eq!(first.status, 201, "{first:?}");
    wait_for(
        &client,
        a.admin,
        r#"waybill_guard_state_total{result="saved"}"#,
        1.0,
    )
    .await;
    let retry = buy(&client, b.edge, "retry-1").await;
    assert_eq!(retry, first, "B answers with what A stored");
    assert_eq!(carrier.calls(), 1, "the carrier saw one purchase");
    let found = r#"waybill_guard_state_total{result="found"}"#;
    assert_eq!(sample(&client, b.admin, found).await, 1.0);
    let again = buy(&client, b.edge, "retry-1").await;
    assert_eq!(again, first, "B now answers from its own memory");
    assert_eq!(sample(&client, b.admin, found).await, 1.0);

    let other = buy(&client, b.edge, "retry-2").await;
    assert_eq!(carrier.calls(), 2, "a new key is forwarded");
    let missing = r#"waybill_guard_state_total{result="missing"}"#;
    assert_eq!(sample(&client, b.admin, missing).await, 1.0);

    redis.stop();
    let during = buy(&client, b.edge, "retry-3").await;
    assert_eq!(during.status, 201, "forwarded while Redis is down");
    assert_ne!(during.body, other.body);
    assert_eq!(carrier.calls(), 3);
    let failed = r#"waybill_guard_state_total{result="lookup_failed"}"#;
    assert_eq!(sample(&client, b.admin, failed).await, 1.0);
}

/// Two replicas get the same key at once: the first request is still at
/// the carrier (held there) when the retry reaches the other replica,
/// which finds the first one's claim in Redis, waits, and replays its
/// answer: the carrier sees one purchase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_another_replica_waits_for_the_first_request_in_flight() {
    use support::guard::{buy, wait_for, Counting};
    let dir = tempfile::tempdir().expect("temp dir");
    let carrier = Counting::gated().await;
    let (redis, sidecars, client) = two_guarded_sidecars(dir.path(), carrier.addr).await;
    let (a, b) = (sidecars[0].edge, sidecars[1].edge);

    let first = tokio::spawn(buy_owned(client.clone(), a));
    let deadline = Instant::now() + PATIENCE;
    while carrier.calls() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first request never reached the carrier"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retry = tokio::spawn(buy_owned(client.clone(), b));
    let in_flight = r#"waybill_guard_state_total{result="in_flight"}"#;
    wait_for(&client, sidecars[1].admin, in_flight, 1.0).await;
    carrier.open();
    let first = first.await.expect("first request");
    let retry = retry.await.expect("retry");
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(retry, first, "B replays what A got");
    assert_eq!(carrier.calls(), 1, "the carrier saw one purchase");
    drop(redis);

    async fn buy_owned(client: reqwest::Client, edge: SocketAddr) -> support::guard::Answer {
        buy(&client, edge, "at-once").await
    }
}

/// A first request that stores nothing (the carrier failed) gives its
/// claim in Redis up at once, so the client's retry at another replica is
/// forwarded without waiting out the claim (which would outlive this
/// test's patience: the listener's 30 s timeout plus slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_request_releases_its_claim_for_the_other_replicas() {
    use support::guard::{buy, sample, send, Counting};
    let dir = tempfile::tempdir().expect("temp dir");
    let carrier = Counting::start().await;
    let (redis, sidecars, client) = two_guarded_sidecars(dir.path(), carrier.addr).await;
    let failed = send(&client, sidecars[0].edge, "fails-first", true).await;
    assert_eq!(failed.status, 503);
    let claimed = r#"waybill_guard_state_total{result="missing"}"#;
    assert_eq!(
        sample(&client, sidecars[0].admin, claimed).await,
        1.0,
        "A looked the key up in Redis and claimed it"
    );

    let redis_client = redis::Client::open(redis.url_with_password()).expect("redis url");
    let mut conn = redis_client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let claim = "waybill:{guard}:guard:carrier.buy_label:fails-first";
    let deadline = Instant::now() + PATIENCE;
    loop {
        let exists: u32 = redis::cmd("EXISTS")
            .arg(claim)
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        if exists == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the claim on {claim} was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retry = buy(&client, sidecars[1].edge, "fails-first").await;
    assert_eq!(retry.status, 201, "the retry is forwarded: {retry:?}");
    assert_eq!(carrier.calls(), 2);
}

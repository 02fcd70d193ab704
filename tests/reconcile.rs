//! Reconciliation end to end: real upstreams on loopback, the sidecar
//! in-process with a clock the test moves (no real minutes pass), and the
//! exceptions read back from the admin API over HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use waybill::app::{self, Sidecar};
use waybill::clock::ManualClock;
use waybill::config::Config;

mod support;

/// WMS and carrier in one upstream. The carrier answers 503 to the first
/// create of any order whose reference ends in `-flaky`.
async fn upstream() -> SocketAddr {
    let flaky_seen = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/api/shipments/{id}/pack", post(|| async { "{}" }))
        .route("/api/shipments/{id}/ship", post(|| async { "{}" }))
        .route("/sap/goods-issue/{id}", post(|| async { "{}" }))
        .route(
            "/v2/shipments",
            post(move |body: String| {
                let flaky_seen = Arc::clone(&flaky_seen);
                async move {
                    if body.contains("-flaky") && flaky_seen.fetch_add(1, Ordering::AcqRel) == 0 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned());
                    }
                    (StatusCode::CREATED, r#"{"id":"shp_1"}"#.to_owned())
                }
            }),
        );
    support::serve(app).await
}

fn routes(upstream: SocketAddr) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [erp, wms, carrier]
keys: [order, shipment]
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms }}
milestones:
  - {{ name: packed, object: shipment }}
  - {{ name: shipped, object: shipment, requires: [packed] }}
  - {{ name: goods_issue_posted, object: shipment }}
routes:
  - name: wms.pack
    system: wms
    match: {{ method: POST, path: "/api/shipments/{{id}}/pack" }}
    keys: {{ shipment: {{ path_param: id }}, order: {{ query: order }} }}
    milestone: packed
  - name: wms.ship
    system: wms
    match: {{ method: POST, path: "/api/shipments/{{id}}/ship" }}
    keys: {{ shipment: {{ path_param: id }} }}
    milestone: shipped
  - name: erp.goods_issue
    system: erp
    match: {{ method: POST, path: "/sap/goods-issue/{{id}}" }}
    keys: {{ shipment: {{ path_param: id }} }}
    milestone: goods_issue_posted
  - name: carrier.create_shipment
    system: carrier
    match: {{ method: POST, path: /v2/shipments }}
    keys: {{ order: {{ request_json: $.reference }} }}
    repeats:
      by: order
      duplicate: {{ exception: duplicate_shipment }}
      retry: {{ limit: 3, within: 10m, exception: carrier_retry_exhausted }}
expectations:
  - {{ after: shipped, expect: goods_issue_posted, within: 15m, exception: missing_goods_issue, owner: erp }}
"#
    )
}

struct Rig {
    sidecar: Sidecar,
    clock: ManualClock,
    client: reqwest::Client,
}

impl Rig {
    async fn start() -> Self {
        let upstream = upstream().await;
        let config = Config::from_yaml(&routes(upstream), "reconcile.yaml").expect("valid routes");
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let sidecar = app::start(config, clock.clock())
            .await
            .expect("sidecar starts");
        Rig {
            sidecar,
            clock,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &str, idempotency_key: Option<&str>) -> u16 {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| ("Idempotency-Key", key))
            .into_iter()
            .collect();
        support::post_settled(
            &self.client,
            &self.sidecar,
            "edge",
            path,
            body.to_owned(),
            &headers,
        )
        .await
    }

    /// Moves the clock and lets the correlator look at its deadlines.
    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sidecar.correlator().tick().await;
    }

    /// `(kind, state)` of every exception the admin API lists, oldest first.
    async fn exceptions(&self) -> Vec<(String, String)> {
        let url = format!("http://{}/api/v1/exceptions", self.sidecar.admin_addr());
        let body: Value = self
            .client
            .get(url)
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("exceptions JSON");
        let mut found: Vec<(u64, String, String)> = body["exceptions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                let state = if e["resolved"].is_null() {
                    "open"
                } else {
                    "resolved"
                };
                (
                    e["id"].as_u64().unwrap_or(0),
                    e["kind"].as_str().unwrap_or("").to_owned(),
                    state.to_owned(),
                )
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, k, s)| (k, s)).collect()
    }
}

fn pair(kind: &str, state: &str) -> (String, String) {
    (kind.to_owned(), state.to_owned())
}

#[tokio::test]
async fn a_missing_goods_issue_opens_after_fifteen_simulated_minutes_and_closes_when_it_posts() {
    let rig = Rig::start().await;
    assert_eq!(
        rig.post("/api/shipments/SH-1/pack?order=SO-1", "", None)
            .await,
        200
    );
    assert_eq!(rig.post("/api/shipments/SH-1/ship", "", None).await, 200);
    rig.advance(Duration::from_secs(14 * 60)).await;
    assert_eq!(rig.exceptions().await, vec![]);
    rig.advance(Duration::from_secs(2 * 60)).await;
    assert_eq!(
        rig.exceptions().await,
        vec![pair("missing_goods_issue", "open")]
    );

    assert_eq!(rig.post("/sap/goods-issue/SH-1", "", None).await, 200);
    assert_eq!(
        rig.exceptions().await,
        vec![pair("missing_goods_issue", "resolved")]
    );
    rig.sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn shipped_before_packed_is_out_of_order_until_packed_arrives() {
    let rig = Rig::start().await;
    assert_eq!(rig.post("/api/shipments/SH-2/ship", "", None).await, 200);
    assert_eq!(rig.exceptions().await, vec![pair("out_of_order", "open")]);
    assert_eq!(
        rig.post("/api/shipments/SH-2/pack?order=SO-2", "", None)
            .await,
        200
    );
    assert_eq!(
        rig.exceptions().await,
        vec![pair("out_of_order", "resolved")]
    );
    rig.sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn a_retry_after_a_503_is_not_a_duplicate_but_a_second_create_is() {
    let rig = Rig::start().await;
    let body = r#"{"reference":"SO-3-flaky"}"#;
    assert_eq!(rig.post("/v2/shipments", body, Some("k1")).await, 503);
    assert_eq!(rig.post("/v2/shipments", body, Some("k1")).await, 201);
    assert_eq!(rig.exceptions().await, vec![], "a retry is not a duplicate");
    // The same idempotency key again is a replay, not a duplicate.
    assert_eq!(rig.post("/v2/shipments", body, Some("k1")).await, 201);
    assert_eq!(rig.exceptions().await, vec![]);
    // A new key creates a second shipment for the same order.
    assert_eq!(rig.post("/v2/shipments", body, Some("k2")).await, 201);
    assert_eq!(
        rig.exceptions().await,
        vec![pair("duplicate_shipment", "open")]
    );

    let metrics = support::metrics_text(&rig.client, rig.sidecar.admin_addr()).await;
    for line in [
        r#"waybill_retries_total{operation="carrier.create_shipment"} 1"#,
        r#"waybill_idempotent_replays_total{operation="carrier.create_shipment"} 1"#,
        r#"waybill_duplicates_total{operation="carrier.create_shipment"} 1"#,
        r#"waybill_exceptions_open{kind="duplicate_shipment",owner="carrier"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    rig.sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}

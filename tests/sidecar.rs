//! End to end through a real sidecar: real upstream HTTP servers on
//! loopback, the sidecar started in-process with a routes file, requests
//! through its listeners, answers read back from its admin API over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use waybill::app::{self, Sidecar};
use waybill::clock::Clock;
use waybill::config::Config;

mod support;

/// How long a test waits for the pipeline to catch up before failing.
const SETTLE: Duration = Duration::from_secs(10);

/// A carrier-ish and warehouse-ish upstream answering with the JSON the
/// routes below read keys from.
async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route(
            "/api/orders",
            post(|| async { Json(json!({"status": "released"})) }),
        )
        .route(
            "/api/orders/{order}/pack",
            post(
                |axum::extract::Path(order): axum::extract::Path<String>| async move {
                    Json(json!({
                        "order_id": order,
                        "shipments": [
                            {"shipment_id": format!("{order}-A")},
                            {"shipment_id": format!("{order}-B")}
                        ]
                    }))
                },
            ),
        )
        .route(
            "/v2/shipments/{id}/buy",
            post(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    Json(json!({"id": id, "tracking_code": format!("1Z{id}")}))
                },
            ),
        )
        .route(
            "/api/shipments/{id}/ship",
            post(|| async { Json(json!({"ok": true})) }),
        )
        .route("/webhooks/delivered", post(|| async { "" }));
    support::serve(app).await
}

fn routes(upstream: SocketAddr) -> String {
    // The default engine (`auto`: the native one for this listener), or
    // hyper's under `WAYBILL_TEST_ENGINE=hyper` (ci/test.sh's second run).
    let engine = match std::env::var("WAYBILL_TEST_ENGINE").as_deref() {
        Ok("hyper") => "hyper",
        _ => "auto",
    };
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [erp, wms, carrier]
keys: [order, shipment, tracking]
root: order
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms, tap_limit: 32KiB, engine: {engine} }}
milestones:
  - {{ name: order_released, object: order }}
  - {{ name: packed, object: shipment }}
  - {{ name: label_created, object: shipment }}
  - {{ name: shipped, object: shipment }}
  - {{ name: delivered, object: shipment, terminal: true }}
routes:
  - name: wms.release
    system: wms
    match: {{ method: POST, path: /api/orders }}
    keys: {{ order: {{ request_json: $.order_id }} }}
    milestone: order_released
  - name: wms.pack
    system: wms
    match: {{ method: POST, path: "/api/orders/{{order_id}}/pack" }}
    keys:
      order: {{ path_param: order_id }}
      shipment: {{ response_json: "$.shipments[*].shipment_id" }}
    milestone: packed
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: "/v2/shipments/{{shipment_id}}/buy" }}
    keys:
      shipment: {{ path_param: shipment_id }}
      tracking: {{ response_json: $.tracking_code }}
    milestone: label_created
  - name: wms.ship
    system: wms
    match: {{ method: POST, path: "/api/shipments/{{shipment_id}}/ship" }}
    keys: {{ shipment: {{ path_param: shipment_id }} }}
    milestone: shipped
  - name: erp.delivered_webhook
    system: erp
    match: {{ method: POST, path: /webhooks/delivered }}
    keys: {{ tracking: {{ request_json: $.tracking_code }} }}
    milestone: delivered
flows:
  - {{ name: order_to_ship, from: order_released, to: shipped, slo: 24h }}
"#
    )
}

async fn sidecar() -> (Sidecar, reqwest::Client) {
    let upstream = upstream().await;
    let config = Config::from_yaml(&routes(upstream), "sidecar-test.yaml").expect("valid routes");
    let sidecar = app::start(config, Clock::system())
        .await
        .expect("sidecar starts");
    (sidecar, reqwest::Client::new())
}

async fn send(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    path: &str,
    body: &str,
) -> reqwest::StatusCode {
    let addr = sidecar.listener_addr("edge").expect("edge listener");
    client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request through the sidecar")
        .status()
}

async fn admin_get(client: &reqwest::Client, sidecar: &Sidecar, path: &str) -> (u16, String) {
    let response = client
        .get(format!("http://{}{path}", sidecar.admin_addr()))
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("admin body"))
}

async fn transaction(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    kind: &str,
    value: &str,
) -> Value {
    let (status, body) = admin_get(
        client,
        sidecar,
        &format!("/api/v1/transactions/{kind}/{value}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("transaction JSON")
}

fn milestones(tx: &Value, name: &str) -> Vec<String> {
    tx["milestones"]
        .as_array()
        .expect("milestones array")
        .iter()
        .filter(|m| m["milestone"] == name)
        .map(|m| {
            format!(
                "{}:{}",
                m["object"]["kind"].as_str().unwrap_or("?"),
                m["object"]["value"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test]
async fn tracking_only_webhook_joins_its_order_and_split_shipments_ship_separately() {
    let (sidecar, client) = sidecar().await;
    assert_eq!(
        send(
            &client,
            &sidecar,
            "/api/orders",
            r#"{"order_id":"SO-1001"}"#
        )
        .await,
        200
    );
    assert_eq!(
        send(&client, &sidecar, "/api/orders/SO-1001/pack", "{}").await,
        200
    );
    for shipment in ["SO-1001-A", "SO-1001-B"] {
        assert_eq!(
            send(
                &client,
                &sidecar,
                &format!("/v2/shipments/{shipment}/buy"),
                "{}"
            )
            .await,
            200
        );
        assert_eq!(
            send(
                &client,
                &sidecar,
                &format!("/api/shipments/{shipment}/ship"),
                "{}"
            )
            .await,
            200
        );
    }
    let webhook = r#"{"event":"delivered","tracking_code":"1ZSO-1001-B"}"#;
    assert_eq!(
        send(&client, &sidecar, "/webhooks/delivered", webhook).await,
        200
    );
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");

    // Any key finds the same transaction.
    let by_tracking = transaction(&client, &sidecar, "tracking", "1ZSO-1001-B").await;
    let by_order = transaction(&client, &sidecar, "order", "SO-1001").await;
    assert_eq!(by_tracking, by_order);
    assert_eq!(by_order["name"]["value"], "SO-1001");
    assert_eq!(
        milestones(&by_order, "delivered"),
        vec!["shipment:SO-1001-B"]
    );
    assert_eq!(
        milestones(&by_order, "shipped"),
        vec!["shipment:SO-1001-A", "shipment:SO-1001-B"]
    );
    let flows = by_order["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 2, "one order_to_ship per shipment: {flows:?}");
    let exchanges = by_order["exchanges"].as_array().expect("exchanges");
    assert_eq!(
        exchanges.len(),
        7,
        "every exchange of the order is on its timeline"
    );
    let times: Vec<&str> = exchanges
        .iter()
        .map(|e| e["at"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "timeline is in time order");
    assert_eq!(by_order["status"], "open", "shipment A was never delivered");

    let (_, metrics) = admin_get(&client, &sidecar, "/metrics").await;
    assert!(
        metrics.contains(r#"waybill_milestones_total{milestone="shipped"} 2"#),
        "{metrics}"
    );
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn broken_bodies_pass_through_and_are_counted_by_reason() {
    let (sidecar, client) = sidecar().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let long = format!(r#"{{"order_id":"SO-LONG","pad":"{}"}}"#, "x".repeat(40_000));
    let cases: [(&str, &[u8]); 4] = [
        ("malformed", br#"{"order_id": "SO-1", "#),
        ("invalid_utf8", b"{\"order_id\": \"SO-\xff\xfe\"}"),
        ("deep", deep.as_bytes()),
        ("over_tap_limit", long.as_bytes()),
    ];
    for (name, body) in cases {
        let addr = sidecar.listener_addr("edge").expect("edge listener");
        let status = client
            .post(format!("http://{addr}/api/orders"))
            .body(body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .status();
        assert_eq!(status, 200, "{name} passes through to the upstream");
    }
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");
    let (_, metrics) = admin_get(&client, &sidecar, "/metrics").await;
    for reason in ["malformed_json", "invalid_utf8", "too_deep", "truncated"] {
        let line =
            format!(r#"waybill_extraction_failures_total{{system="wms",reason="{reason}"}} 1"#);
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn body_sizes_count_every_streamed_byte_and_handle_time_every_exchange() {
    let (sidecar, client) = sidecar().await;
    // One body far over the 32 KiB tap limit: its size is still all of it.
    let long = format!(r#"{{"order_id":"SO-BIG","pad":"{}"}}"#, "x".repeat(100_000));
    let short = r#"{"order_id":"SO-SMALL"}"#;
    for body in [long.as_str(), short] {
        assert_eq!(send(&client, &sidecar, "/api/orders", body).await, 200);
    }
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");
    let (_, metrics) = admin_get(&client, &sidecar, "/metrics").await;
    let answer = json!({"status": "released"}).to_string();
    let series = r#"{system="wms",operation="wms.release"}"#;
    let lines = [
        format!("waybill_exchange_request_body_size_bytes_count{series} 2"),
        format!(
            "waybill_exchange_request_body_size_bytes_sum{series} {}.0",
            long.len() + short.len()
        ),
        format!("waybill_exchange_response_body_size_bytes_count{series} 2"),
        format!(
            "waybill_exchange_response_body_size_bytes_sum{series} {}.0",
            2 * answer.len()
        ),
        r#"waybill_request_handle_seconds_count{system="wms"} 2"#.to_owned(),
    ];
    for line in lines {
        assert!(
            metrics.contains(&line),
            "missing {line} in
{metrics}"
        );
    }
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn the_admin_api_explains_what_it_cannot_answer() {
    let (sidecar, client) = sidecar().await;
    let (status, body) = admin_get(&client, &sidecar, "/api/v1/transactions/parcel/P-1").await;
    assert_eq!(status, 400);
    assert!(body.contains("order, shipment, tracking"), "{body}");
    let (status, body) = admin_get(&client, &sidecar, "/api/v1/transactions/order/SO-404").await;
    assert_eq!(status, 404);
    assert!(body.contains("order:SO-404"), "{body}");
    let (status, body) = admin_get(&client, &sidecar, "/api/v1/transactions?status=lost").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("expected open, complete, stuck or all"),
        "{body}"
    );
    assert_eq!(admin_get(&client, &sidecar, "/readyz").await.0, 200);
    assert_eq!(admin_get(&client, &sidecar, "/healthz").await.0, 200);
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn listing_returns_recent_transactions_filtered_by_status() {
    let (sidecar, client) = sidecar().await;
    for order in ["SO-1", "SO-2", "SO-3"] {
        let body = format!(r#"{{"order_id":"{order}"}}"#);
        assert_eq!(send(&client, &sidecar, "/api/orders", &body).await, 200);
    }
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");
    let (status, body) = admin_get(
        &client,
        &sidecar,
        "/api/v1/transactions?status=open&limit=2",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).expect("listing JSON");
    let names: Vec<&str> = listing["transactions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"]["value"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 2);
    let (_, body) = admin_get(&client, &sidecar, "/api/v1/transactions?status=complete").await;
    assert!(body.contains(r#""transactions":[]"#), "{body}");
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn metrics_speak_openmetrics_to_prometheus_and_classic_text_to_everyone_else() {
    let (sidecar, client) = sidecar().await;
    let url = format!("http://{}/metrics", sidecar.admin_addr());
    let ask = |accept: Option<&'static str>| {
        let mut request = client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let response = request.send().await.expect("metrics");
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (content_type, response.text().await.expect("metrics body"))
        }
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (content_type, body) = ask(Some(prometheus)).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let (content_type, body) = ask(None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!body.contains("# EOF"));
    assert!(
        body.contains("# TYPE waybill_milestones_total counter"),
        "{body}"
    );
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

//! Logistics payload formats end to end: a real sidecar started in-process
//! in front of a real upstream on loopback. A SAP SOAP delivery
//! confirmation and a brotli-compressed X12 214 "delivered" status go
//! through it; the upstream must receive them byte for byte (still
//! compressed), and the transaction API must show the keys read from the
//! XML and the X12, and the `delivered` milestone that only an AT7 D1
//! status marks.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;

use waybill::app::{self, Sidecar};
use waybill::clock::Clock;
use waybill::config::Config;

/// How long a test waits for the pipeline to catch up before failing.
const SETTLE: Duration = Duration::from_secs(10);

const SOAP: &[u8] = include_bytes!("fixtures/formats/sap_outbound_delivery.soap.xml");
const X12_214_DELIVERED: &str = include_str!("fixtures/formats/x12_214_delivered.edi");
const X12_214_EN_ROUTE: &str = include_str!("fixtures/formats/x12_214_en_route.edi");

/// What the upstream received: each request's `Content-Encoding` and body.
type Received = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// An upstream that records every request body and answers `200 OK`.
async fn upstream() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    async fn record(
        State(received): State<Received>,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let coding = headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut all) = received.lock() {
            all.push((coding, body));
        }
        "OK"
    }
    let app = Router::new()
        .route("/sap/bc/srt/delivery", post(record))
        .route("/edi/inbound", post(record))
        .with_state(received.clone());
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = socket.local_addr().expect("upstream addr");
    tokio::spawn(async move { axum::serve(socket, app).await });
    (addr, received)
}

fn routes(upstream: SocketAddr) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [erp, carrier]
keys: [order, shipment, tracking, bol]
root: order
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: erp }}
milestones:
  - {{ name: goods_issue_posted, object: shipment }}
  - {{ name: status_received, object: shipment }}
  - {{ name: delivered, object: shipment, terminal: true }}
routes:
  - name: erp.delivery_confirmation
    system: erp
    match: {{ method: POST, path: /sap/bc/srt/delivery, soap_action: "http://sap.com/xi/LE/OutboundDeliveryConfirmation" }}
    keys:
      shipment: {{ request_xml: /Envelope/Body/DeliveryConfirmation/Delivery/DeliveryDocument }}
      order: {{ request_xml: /Envelope/Body/DeliveryConfirmation/Delivery/Item/ReferenceSDDocument }}
      tracking: {{ request_xml: /Envelope/Body/DeliveryConfirmation/Delivery/TrackingNumber }}
    milestone: goods_issue_posted
  - name: carrier.status_delivered
    system: carrier
    match: {{ method: POST, path: /edi/inbound, x12: "214", x12_segment: "AT7*D1" }}
    keys:
      shipment: {{ request_x12: "B10**{{value}}" }}
      bol: {{ request_x12: "L11*{{value}}*BM" }}
    milestone: delivered
  - name: carrier.status
    system: carrier
    match: {{ method: POST, path: /edi/inbound, x12: "214" }}
    keys:
      shipment: {{ request_x12: "B10**{{value}}" }}
    milestone: status_received
"#
    )
}

async fn sidecar() -> (Sidecar, Received, reqwest::Client) {
    let (upstream, received) = upstream().await;
    let config = Config::from_yaml(&routes(upstream), "formats-test.yaml").expect("valid routes");
    let sidecar = app::start(config, Clock::system())
        .await
        .expect("sidecar starts");
    (sidecar, received, reqwest::Client::new())
}

async fn send(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> u16 {
    let addr = sidecar.listener_addr("edge").expect("edge listener");
    let mut request = client.post(format!("http://{addr}{path}")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("request through the sidecar")
        .status()
        .as_u16()
}

async fn transaction(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    kind: &str,
    value: &str,
) -> Value {
    let response = client
        .get(format!(
            "http://{}/api/v1/transactions/{kind}/{value}",
            sidecar.admin_addr()
        ))
        .send()
        .await
        .expect("admin request");
    assert_eq!(response.status(), 200, "{kind}/{value}");
    response.json().await.expect("transaction JSON")
}

fn keys(tx: &Value) -> Vec<String> {
    let mut keys: Vec<String> = tx["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| {
            format!(
                "{}:{}",
                k["kind"].as_str().unwrap_or("?"),
                k["value"].as_str().unwrap_or("?")
            )
        })
        .collect();
    keys.sort();
    keys
}

fn milestones(tx: &Value) -> Vec<String> {
    tx["milestones"]
        .as_array()
        .expect("milestones array")
        .iter()
        .map(|m| {
            format!(
                "{}@{}:{}",
                m["milestone"].as_str().unwrap_or("?"),
                m["object"]["kind"].as_str().unwrap_or("?"),
                m["object"]["value"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        writer.write_all(data).expect("write to vec");
    }
    out
}

#[tokio::test]
async fn soap_and_x12_pass_through_byte_identical_and_join_one_transaction() {
    let (sidecar, received, client) = sidecar().await;

    // The ERP confirms goods issue for delivery 80001234 of order SO-1001.
    let soap = SOAP.to_vec();
    let status = send(
        &client,
        &sidecar,
        "/sap/bc/srt/delivery",
        &[
            ("content-type", "text/xml; charset=utf-8"),
            (
                "soapaction",
                "\"http://sap.com/xi/LE/OutboundDeliveryConfirmation\"",
            ),
        ],
        soap.clone(),
    )
    .await;
    assert_eq!(status, 200);

    // The carrier reports the delivery en route (AT7 X6), then delivered
    // (AT7 D1), as brotli-compressed X12 214s about the same shipment.
    let mut sent = Vec::new();
    for document in [X12_214_EN_ROUTE, X12_214_DELIVERED] {
        let x12 = brotli(document.replace("SHP-40017", "80001234").as_bytes());
        let status = send(
            &client,
            &sidecar,
            "/edi/inbound",
            &[
                ("content-type", "application/edi-x12"),
                ("content-encoding", "br"),
            ],
            x12.clone(),
        )
        .await;
        assert_eq!(status, 200);
        sent.push(x12);
    }
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");

    // The upstream got exactly the bytes that were sent, still compressed.
    let received = received.lock().expect("received").clone();
    assert_eq!(received.len(), 3);
    assert_eq!(received[0], (None, Bytes::from(soap)));
    for (got, sent) in received[1..].iter().zip(sent) {
        assert_eq!(got, &(Some("br".to_owned()), Bytes::from(sent)));
    }

    // Keys from the XML and from the X12 meet in one transaction.
    let by_order = transaction(&client, &sidecar, "order", "SO-1001").await;
    let by_bol = transaction(&client, &sidecar, "bol", "BOL-778812").await;
    assert_eq!(by_order, by_bol);
    assert_eq!(
        keys(&by_order),
        [
            "bol:BOL-778812",
            "order:SO-1001",
            "shipment:80001234",
            "tracking:1Z999AA10123456784"
        ]
    );
    // Only the AT7 D1 status is `delivered`; the X6 one is a status.
    assert_eq!(
        milestones(&by_order),
        [
            "goods_issue_posted@shipment:80001234",
            "status_received@shipment:80001234",
            "delivered@shipment:80001234"
        ]
    );

    let metrics = client
        .get(format!("http://{}/metrics", sidecar.admin_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(
            r#"waybill_extraction_failures_total{system="carrier",reason="edi_bad_envelope"} 0"#
        ),
        "the new reasons are pre-registered:\n{metrics}"
    );
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_broken_interchange_passes_through_and_is_counted_as_a_bad_envelope() {
    let (sidecar, received, client) = sidecar().await;
    let truncated_isa = b"ISA*00*          *00*     ".to_vec();
    let status = send(
        &client,
        &sidecar,
        "/edi/inbound",
        &[("content-type", "application/edi-x12")],
        truncated_isa.clone(),
    )
    .await;
    assert_eq!(status, 200, "bad traffic is the upstream's business");
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");
    let received = received.lock().expect("received").clone();
    assert_eq!(received, [(None, Bytes::from(truncated_isa))]);
    let metrics = client
        .get(format!("http://{}/metrics", sidecar.admin_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    // No route matched, so the listener's system counts it.
    let line = r#"waybill_extraction_failures_total{system="erp",reason="edi_bad_envelope"} 1"#;
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

//! Business measures end to end: a real carrier upstream on loopback, the
//! sidecar in-process, JSON label purchases and freight invoices (JSON and
//! an X12 210), and what lands where read back from the admin API and
//! `/metrics` over HTTP.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use waybill::app::{self, Sidecar};
use waybill::clock::ManualClock;
use waybill::config::Config;

mod support;

/// The X12 210 freight invoice of the format tests: net amount due
/// 187500 (type N2, so 1875.00) in USD for bill of lading BOL-778812.
const X12_210: &str = include_str!("fixtures/formats/x12_210_pipes.edi");

/// An EDIFACT INVOIC: message total (MOA 86) 1875.00 for consignment
/// `CN-4471:A` (written with a release character), no currency segment.
const INVOIC: &str = include_str!("fixtures/formats/edifact_invoic.edi");

/// A carrier whose label purchase answers with the rate, currency and bill
/// of lading the request asked it to quote (the test plays the carrier's
/// pricing), and which accepts invoices.
async fn carrier() -> SocketAddr {
    let app = Router::new()
        .route(
            "/v2/shipments/{id}/buy",
            post(|body: String| async move {
                let request: Value = serde_json::from_str(&body).unwrap_or_default();
                json!({
                    "tracking_code": format!("1Z{}", request["reference"].as_str().unwrap_or("")),
                    "bol": request["bol"],
                    "selected_rate": { "rate": request["quote"], "currency": request["currency"] },
                })
                .to_string()
            }),
        )
        .route("/invoices", post(|| async { "{}" }))
        .route("/orders/release", post(|| async { "{}" }))
        .route("/edi", post(|| async { "accepted" }));
    support::serve(app).await
}

fn routes(upstream: SocketAddr) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
systems: [wms, carrier]
keys: [order, shipment, bol, invoice]
listeners:
  - {{ name: egress, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: carrier, direction: outbound }}
milestones:
  - {{ name: order_released, object: order }}
  - {{ name: label_created, object: shipment }}
  - {{ name: freight_invoiced, object: shipment }}
measures:
  - name: freight_cost
    unit: currency
    currencies: [USD, EUR]
    variance: {{ tolerance: "0.50", exception: freight_variance, owner: carrier }}
  - {{ name: shipped_weight, unit: kg }}
  - {{ name: order_lines, unit: count }}
routes:
  - name: wms.release_batch
    system: wms
    match: {{ method: POST, path: /orders/release }}
    keys: {{ order: {{ request_json: "$.orders[*].id" }} }}
    milestone: order_released
    measures:
      - {{ measure: order_lines, value: {{ request_json: "$.orders[*].lines" }} }}
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: "/v2/shipments/{{id}}/buy" }}
    keys:
      shipment: {{ path_param: id }}
      order: {{ request_json: $.reference }}
      bol: {{ response_json: $.bol }}
    milestone: label_created
    measures:
      - measure: freight_cost
        role: quoted
        value: {{ response_json: $.selected_rate.rate }}
        currency: {{ response_json: $.selected_rate.currency }}
      - {{ measure: shipped_weight, value: {{ request_json: $.parcel.weight }}, unit: {{ request_json: $.parcel.unit }} }}
  - name: carrier.invoice
    system: carrier
    match: {{ method: POST, path: /invoices }}
    keys:
      invoice: {{ request_json: $.invoice }}
      shipment: {{ request_json: "$.lines[*].shipment" }}
    milestone: freight_invoiced
    measures:
      - {{ measure: freight_cost, value: {{ request_json: "$.lines[*].total" }}, currency: {{ request_json: $.currency }} }}
  - name: carrier.invoice_210
    system: carrier
    match: {{ method: POST, path: /edi, x12: "210" }}
    keys:
      invoice: {{ request_x12: "B3**{{value}}" }}
      bol: {{ request_x12: "N9*BM*{{value}}" }}
    milestone: freight_invoiced
    measures:
      - {{ measure: freight_cost, value: {{ request_x12: "B3*******{{value}}" }}, decimals: 2, currency: {{ request_x12: "C3*{{value}}" }} }}
  - name: carrier.invoice_edifact
    system: carrier
    match: {{ method: POST, path: /edi, edifact: INVOIC }}
    keys:
      invoice: {{ request_edifact: "BGM+380+{{value}}" }}
      bol: {{ request_edifact: "RFF+CN:{{value}}" }}
    milestone: freight_invoiced
    measures:
      - {{ measure: freight_cost, value: {{ request_edifact: "MOA+86:{{value}}" }}, currency: EUR }}
"#
    )
}

struct Rig {
    sidecar: Sidecar,
    client: reqwest::Client,
}

impl Rig {
    async fn start() -> Self {
        Rig::start_with(&routes(carrier().await)).await
    }

    async fn start_with(routes: &str) -> Self {
        let config = Config::from_yaml(routes, "measures.yaml").expect("valid routes");
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let sidecar = app::start(config, clock.clock())
            .await
            .expect("sidecar starts");
        Rig {
            sidecar,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: String) -> u16 {
        support::post_settled(&self.client, &self.sidecar, "egress", path, body, &[]).await
    }

    /// Buys a label for `shipment` of `order`, the carrier quoting `quote`.
    /// (Ten pounds, bill of lading `BOL-{shipment}`.)
    async fn buy_label(&self, shipment: &str, order: &str, quote: &str, currency: &str) {
        let bol = format!("BOL-{shipment}");
        self.buy_label_for(shipment, order, &bol, (quote, currency))
            .await;
    }

    /// Buys a label for `shipment` of `order` under bill of lading `bol`,
    /// the carrier quoting `(amount, currency)`.
    async fn buy_label_for(&self, shipment: &str, order: &str, bol: &str, quote: (&str, &str)) {
        let body = json!({
            "reference": order, "quote": quote.0, "currency": quote.1, "bol": bol,
            "parcel": { "weight": "10", "unit": "lb" },
        });
        let path = format!("/v2/shipments/{shipment}/buy");
        assert_eq!(self.post(&path, body.to_string()).await, 200);
    }

    /// The transaction `kind:value` belongs to, from the admin API.
    async fn transaction(&self, kind: &str, value: &str) -> Value {
        let url = format!(
            "http://{}/api/v1/transactions/{kind}/{value}",
            self.sidecar.admin_addr()
        );
        let response = self.client.get(url).send().await.expect("admin");
        assert_eq!(response.status().as_u16(), 200, "{kind}:{value} is known");
        response.json().await.expect("transaction JSON")
    }

    /// `(object, role, amount, unit)` of every `measure` value of a transaction.
    async fn measures(&self, kind: &str, value: &str, measure: &str) -> Vec<[String; 4]> {
        let tx = self.transaction(kind, value).await;
        let mut found: Vec<[String; 4]> = tx["measures"]
            .as_array()
            .expect("measures")
            .iter()
            .filter(|m| m["measure"] == measure)
            .map(|m| {
                [
                    m["object"]["value"].as_str().unwrap_or("").to_owned(),
                    m["role"].as_str().unwrap_or("").to_owned(),
                    m["amount"].as_str().unwrap_or("").to_owned(),
                    m["unit"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        found.sort();
        found
    }

    async fn metrics(&self) -> String {
        support::metrics_text(&self.client, self.sidecar.admin_addr()).await
    }

    /// `(kind, object)` of the exceptions the admin API lists in `state`
    /// (`open`, `resolved`, `all`).
    async fn exceptions_in(&self, state: &str) -> Vec<(String, String)> {
        let url = format!(
            "http://{}/api/v1/exceptions?state={state}",
            self.sidecar.admin_addr()
        );
        let response = self.client.get(url).send().await.expect("admin");
        let body: Value = response.json().await.expect("exceptions JSON");
        let mut found: Vec<(String, String)> = body["exceptions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or("").to_owned(),
                    e["object"]["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        found.sort();
        found
    }

    /// Every exception, open or resolved.
    async fn exceptions(&self) -> Vec<(String, String)> {
        self.exceptions_in("all").await
    }

    async fn stop(self) {
        self.sidecar
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
    }
}

fn row(object: &str, role: &str, amount: &str, unit: &str) -> [String; 4] {
    [object, role, amount, unit].map(str::to_owned)
}

/// The value of the one sample `series` (exact text up to the value).
fn sample(metrics: &str, series: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    line[series.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{line}"))
}

fn invoice(number: &str, lines: &[(&str, &str)]) -> String {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(shipment, total)| json!({ "shipment": shipment, "total": total }))
        .collect();
    json!({ "invoice": number, "currency": "USD", "lines": lines }).to_string()
}

const ACTUAL_USD: &str =
    r#"waybill_measure_total{measure="freight_cost",role="actual",system="carrier",unit="USD"}"#;
const QUOTED_USD: &str =
    r#"waybill_measure_total{measure="freight_cost",role="quoted",system="carrier",unit="USD"}"#;

#[tokio::test]
async fn a_split_order_gets_each_shipments_quoted_and_invoiced_cost_with_its_currency() {
    let rig = Rig::start().await;
    rig.buy_label("SH-1", "SO-1", "12.50", "USD").await;
    rig.buy_label("SH-2", "SO-1", "1,234.50", "USD").await;
    // One invoice for both shipments of the order, one line each.
    let body = invoice("INV-1", &[("SH-1", "13.10"), ("SH-2", "1234.50")]);
    assert_eq!(rig.post("/invoices", body).await, 200);

    assert_eq!(
        rig.measures("order", "SO-1", "freight_cost").await,
        vec![
            row("SH-1", "actual", "13.1", "USD"),
            row("SH-1", "quoted", "12.5", "USD"),
            row("SH-2", "actual", "1234.5", "USD"),
            row("SH-2", "quoted", "1234.5", "USD"),
        ]
    );
    // Ten pounds each, stored in kilograms exactly.
    assert_eq!(
        rig.measures("shipment", "SH-2", "shipped_weight").await,
        vec![
            row("SH-1", "actual", "4.5359237", "kg"),
            row("SH-2", "actual", "4.5359237", "kg"),
        ]
    );
    // SH-1 was invoiced 0.60 over its quote, beyond the 0.50 tolerance.
    assert_eq!(
        rig.exceptions().await,
        vec![("freight_variance".to_owned(), "SH-1".to_owned())]
    );

    let metrics = rig.metrics().await;
    assert!((sample(&metrics, ACTUAL_USD) - 1247.6).abs() < 1e-6);
    assert!((sample(&metrics, QUOTED_USD) - 1247.0).abs() < 1e-6);
    let variance =
        r#"waybill_measure_variance_count{measure="freight_cost",system="carrier",unit="USD"}"#;
    assert_eq!(sample(&metrics, variance), 2.0);
    let exact = r#"waybill_measure_variance_bucket{measure="freight_cost",system="carrier",unit="USD",le="0"}"#;
    assert_eq!(sample(&metrics, exact), 1.0, "SH-2 was invoiced as quoted");
    rig.stop().await;
}

#[tokio::test]
async fn a_re_sent_invoice_replaces_its_amount_and_is_counted_once() {
    let rig = Rig::start().await;
    rig.buy_label("SH-5", "SO-5", "40.00", "USD").await;
    let first = invoice("INV-5", &[("SH-5", "40.00")]);
    assert_eq!(rig.post("/invoices", first.clone()).await, 200);
    assert_eq!(rig.post("/invoices", first).await, 200);
    let corrected = invoice("INV-5", &[("SH-5", "41.25")]);
    assert_eq!(rig.post("/invoices", corrected).await, 200);

    assert_eq!(
        rig.measures("order", "SO-5", "freight_cost").await,
        vec![
            row("SH-5", "actual", "41.25", "USD"),
            row("SH-5", "quoted", "40", "USD"),
        ]
    );
    let tx = rig.transaction("order", "SO-5").await;
    let actual = tx["measures"]
        .as_array()
        .expect("measures")
        .iter()
        .find(|m| m["measure"] == "freight_cost" && m["role"] == "actual")
        .expect("actual cost");
    assert_eq!(actual["revisions"], 2);
    // The correction moved the variance beyond tolerance.
    assert_eq!(
        rig.exceptions().await,
        vec![("freight_variance".to_owned(), "SH-5".to_owned())]
    );

    let metrics = rig.metrics().await;
    assert_eq!(sample(&metrics, ACTUAL_USD), 40.0, "counted once");
    let revisions = r#"waybill_measure_revisions_total{measure="freight_cost",role="actual"}"#;
    assert_eq!(sample(&metrics, revisions), 2.0);
    let observed = r#"waybill_measure_value_count{measure="freight_cost",role="actual",system="carrier",unit="USD"}"#;
    assert_eq!(sample(&metrics, observed), 1.0);
    rig.stop().await;
}

#[tokio::test]
async fn an_x12_210_lands_its_implied_decimal_total_on_the_shipment_its_bill_of_lading_names() {
    let rig = Rig::start().await;
    rig.buy_label_for("SH-9", "SO-9", "BOL-778812", ("1875.00", "USD"))
        .await;
    assert_eq!(rig.post("/edi", X12_210.to_owned()).await, 200);

    assert_eq!(
        rig.measures("invoice", "INV-2026-0042", "freight_cost")
            .await,
        vec![
            row("SH-9", "actual", "1875", "USD"),
            row("SH-9", "quoted", "1875", "USD"),
        ]
    );
    let tx = rig.transaction("invoice", "INV-2026-0042").await;
    assert_eq!(tx["name"]["value"], "SO-9", "the invoice joined the order");
    assert_eq!(rig.exceptions().await, vec![]);
    assert_eq!(sample(&rig.metrics().await, ACTUAL_USD), 1875.0);
    rig.stop().await;
}

#[tokio::test]
async fn unreadable_amounts_are_counted_by_reason_and_never_stop_the_exchange() {
    let rig = Rig::start().await;
    rig.buy_label("SH-21", "SO-21", "12,50", "USD").await;
    rig.buy_label("SH-22", "SO-22", "12.50", "").await;
    rig.buy_label("SH-23", "SO-23", "12.50", "GBP").await;
    rig.buy_label("SH-24", "SO-24", "twelve", "USD").await;
    for order in ["SO-21", "SO-22", "SO-23", "SO-24"] {
        let tx = rig.transaction("order", order).await;
        assert_eq!(tx["milestones"][0]["milestone"], "label_created");
        let costs = rig.measures("order", order, "freight_cost").await;
        assert_eq!(costs, Vec::<[String; 4]>::new(), "{order}");
    }
    let metrics = rig.metrics().await;
    for reason in [
        "locale",
        "missing_currency",
        "unknown_currency",
        "not_a_number",
    ] {
        let series = format!(
            r#"waybill_measure_unparseable_total{{measure="freight_cost",reason="{reason}"}}"#
        );
        assert_eq!(sample(&metrics, &series), 1.0, "{reason}");
    }
    assert_eq!(sample(&metrics, QUOTED_USD), 0.0);
    rig.stop().await;
}

#[tokio::test]
async fn measures_survive_a_restart_on_the_embedded_store() {
    let data = tempfile::tempdir().expect("data dir");
    let state = format!(
        "\nstate: {{ backend: embedded, path: \"{}\" }}",
        data.path().display()
    );
    let routes = routes(carrier().await).replacen(
        "admin: { bind: 127.0.0.1:0 }",
        &format!("admin: {{ bind: 127.0.0.1:0 }}{state}"),
        1,
    );
    let rig = Rig::start_with(&routes).await;
    rig.buy_label("SH-31", "SO-31", "99.95", "EUR").await;
    let body = json!({ "invoice": "INV-31", "currency": "EUR",
                       "lines": [{ "shipment": "SH-31", "total": "101.00" }] });
    assert_eq!(rig.post("/invoices", body.to_string()).await, 200);
    let before = rig.measures("order", "SO-31", "freight_cost").await;
    assert_eq!(
        before,
        vec![
            row("SH-31", "actual", "101", "EUR"),
            row("SH-31", "quoted", "99.95", "EUR"),
        ]
    );
    rig.stop().await;

    let rig = Rig::start_with(&routes).await;
    assert_eq!(rig.measures("order", "SO-31", "freight_cost").await, before);
    assert_eq!(
        rig.exceptions().await,
        vec![("freight_variance".to_owned(), "SH-31".to_owned())]
    );
    rig.stop().await;
}

#[tokio::test]
async fn values_that_cannot_be_paired_with_the_milestones_objects_are_left_out_and_counted() {
    let rig = Rig::start().await;
    rig.buy_label("SH-41", "SO-41", "20.00", "USD").await;
    // Two charge lines for one shipment: which is its cost is not ours to guess.
    let body = invoice("INV-41", &[("SH-41", "18.00"), ("SH-41", "2.00")]);
    assert_eq!(rig.post("/invoices", body).await, 200);
    assert_eq!(
        rig.measures("order", "SO-41", "freight_cost").await,
        vec![row("SH-41", "quoted", "20", "USD")]
    );
    let tx = rig.transaction("order", "SO-41").await;
    let invoiced = tx["milestones"]
        .as_array()
        .expect("milestones")
        .iter()
        .any(|m| m["milestone"] == "freight_invoiced");
    assert!(invoiced, "the milestone is recorded all the same");
    let metrics = rig.metrics().await;
    let unattached = r#"waybill_measure_unattached_total{measure="freight_cost"}"#;
    assert_eq!(sample(&metrics, unattached), 2.0);
    assert_eq!(sample(&metrics, ACTUAL_USD), 0.0);
    rig.stop().await;
}

#[tokio::test]
async fn a_batch_of_orders_gives_each_order_its_own_value() {
    let rig = Rig::start().await;
    let body = json!({ "orders": [{ "id": "SO-51", "lines": 3 }, { "id": "SO-52", "lines": 12 }] });
    assert_eq!(rig.post("/orders/release", body.to_string()).await, 200);
    assert_eq!(
        rig.measures("order", "SO-51", "order_lines").await,
        vec![row("SO-51", "actual", "3", "count")]
    );
    assert_eq!(
        rig.measures("order", "SO-52", "order_lines").await,
        vec![row("SO-52", "actual", "12", "count")]
    );
    let metrics = rig.metrics().await;
    let total =
        r#"waybill_measure_total{measure="order_lines",role="actual",system="wms",unit="count"}"#;
    assert_eq!(sample(&metrics, total), 15.0);
    let unattached = r#"waybill_measure_unattached_total{measure="order_lines"}"#;
    assert_eq!(sample(&metrics, unattached), 0.0);
    rig.stop().await;
}

#[tokio::test]
async fn a_corrected_invoice_within_tolerance_resolves_the_variance_it_opened() {
    let rig = Rig::start().await;
    rig.buy_label("SH-61", "SO-61", "30.00", "USD").await;
    let wrong = invoice("INV-61", &[("SH-61", "34.90")]);
    assert_eq!(rig.post("/invoices", wrong).await, 200);
    let variance = vec![("freight_variance".to_owned(), "SH-61".to_owned())];
    assert_eq!(rig.exceptions_in("open").await, variance);
    let corrected = invoice("INV-61", &[("SH-61", "30.20")]);
    assert_eq!(rig.post("/invoices", corrected).await, 200);
    assert_eq!(rig.exceptions_in("open").await, vec![]);
    assert_eq!(rig.exceptions_in("resolved").await, variance);
    rig.stop().await;
}

#[tokio::test]
async fn an_edifact_invoic_lands_its_total_in_the_configured_currency() {
    let rig = Rig::start().await;
    rig.buy_label_for("SH-71", "SO-71", "CN-4471:A", ("1870.00", "EUR"))
        .await;
    assert_eq!(rig.post("/edi", INVOIC.to_owned()).await, 200);
    assert_eq!(
        rig.measures("invoice", "INV-2026-0042", "freight_cost")
            .await,
        vec![
            row("SH-71", "actual", "1875", "EUR"),
            row("SH-71", "quoted", "1870", "EUR"),
        ]
    );
    // 5.00 over the quote, beyond the 0.50 tolerance.
    assert_eq!(
        rig.exceptions().await,
        vec![("freight_variance".to_owned(), "SH-71".to_owned())]
    );
    rig.stop().await;
}

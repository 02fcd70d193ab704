//! `waybill demo` end to end, in-process: the simulated systems, the sidecar
//! with the shipped example config, and the driver. The summary must agree
//! with what the driver itself counted, and a tracking number alone must
//! lead back to its order, both through the correlator and the admin API.

use std::net::SocketAddr;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use waybill::demo::plan::OrderPlan;
use waybill::demo::{self, Demo, DemoOptions, Summary};
use waybill::extract::Key;

const ORDERS: usize = 40;
/// One business day in about 0.4 s: a run takes a few seconds, and a real
/// millisecond of latency is only seven business minutes.
const SPEED: f64 = 200_000.0;

/// The first seed whose plan for `orders` orders has every surprise the
/// driver can inject, so the comparisons below are never vacuous.
fn eventful_seed(orders: usize) -> u64 {
    (1..)
        .find(|seed| {
            let plans: Vec<OrderPlan> = (0..orders).map(|i| OrderPlan::new(*seed, i)).collect();
            plans.iter().any(OrderPlan::spans_zones)
                && plans.iter().any(|p| p.duplicate_booking)
                && plans.iter().any(|p| p.lose_goods_issue)
                && plans.iter().any(|p| p.malformed_webhook)
        })
        .unwrap_or_default()
}

fn options(orders: usize) -> DemoOptions {
    DemoOptions {
        orders,
        speed: SPEED,
        seed: eventful_seed(orders),
        keep_running: false,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_agrees_with_what_the_driver_did() {
    let demo = Demo::start(options(ORDERS)).await.expect("demo starts");
    let summary: Summary = demo
        .drive(&CancellationToken::new())
        .await
        .expect("demo drives");
    let d = &summary.driver;

    assert_eq!(d.errors, Vec::<String>::new());
    assert_eq!((d.orders, d.finished, d.abandoned), (ORDERS, ORDERS, 0));
    assert!(d.split_orders > 0, "no split order: {d:?}");
    assert!(d.carrier_unavailable > 0, "no carrier 503: {d:?}");
    assert!(d.duplicate_bookings > 0, "no duplicate booking: {d:?}");
    assert!(d.lost_goods_issues > 0, "no lost goods issue: {d:?}");
    assert!(d.malformed_bodies > 0, "no malformed body: {d:?}");
    assert_eq!(d.shipments, ORDERS + d.split_orders);

    // One transaction per order, each complete once every shipment is invoiced.
    assert_eq!(summary.transactions, ORDERS);
    assert_eq!((summary.complete, summary.open), (ORDERS, 0));

    // Every 5xx the sidecar saw is a 503 the carrier gave the driver.
    let failures: usize = summary.upstream_failures.values().sum();
    assert_eq!(
        failures, d.carrier_unavailable,
        "{:?}",
        summary.upstream_failures
    );
    assert_eq!(
        summary.upstream_failures.get("carrier.buy_label"),
        Some(&d.carrier_unavailable)
    );
    assert_eq!(
        d.carrier_unavailable as u64,
        demo.systems().carrier_stats.unavailable()
    );

    // Every milestone repeat is a duplicate booking.
    let repeats: u64 = summary.duplicates.values().sum();
    assert_eq!(
        repeats, d.duplicate_bookings as u64,
        "{:?}",
        summary.duplicates
    );
    assert_eq!(
        summary.duplicates.get("shipment_booked"),
        Some(&(d.duplicate_bookings as u64))
    );

    // The sidecar tells the retries after a 503 from the duplicate bookings,
    // and opens an exception for each duplicate and each lost goods issue.
    let buy = summary
        .repeats
        .get("carrier.buy_label")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (buy.retries, buy.duplicates),
        (d.carrier_unavailable as u64, 0)
    );
    let book = summary
        .repeats
        .get("carrier.create_shipment")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (book.retries, book.duplicates),
        (0, d.duplicate_bookings as u64)
    );
    let exceptions = |kind: &str| summary.exceptions.get(kind).map(|e| (e.opened, e.open));
    let (duplicates, lost) = (d.duplicate_bookings, d.lost_goods_issues);
    // Only a person can cancel a duplicate booking: all stay open.
    assert_eq!(
        exceptions("duplicate_shipment"),
        Some((duplicates, duplicates))
    );
    // A goods issue that came late may have opened (and resolved) one too;
    // the ones still open are exactly those never posted.
    let (opened, open) = exceptions("missing_goods_issue").unwrap_or_default();
    assert_eq!(open, lost, "{:?}", summary.exceptions);
    assert!(opened >= lost, "{:?}", summary.exceptions);
    // Every 503 was followed by a successful retry.
    let exhausted = exceptions("carrier_retry_exhausted").map_or(0, |(_, open)| open);
    assert_eq!(exhausted, 0, "{:?}", summary.exceptions);
    // Every step came in order.
    for kind in ["unmatched_freight_invoice", "out_of_order"] {
        assert_eq!(exceptions(kind), None, "{kind}: {:?}", summary.exceptions);
    }
    assert_eq!(summary.stuck, 0);

    // Each shipment shipped; the lost goods issues are exactly the missing ones.
    let goods_issue = summary
        .expectation("missing_goods_issue")
        .expect("the example config expects goods issues");
    assert_eq!(goods_issue.started, d.shipments);
    assert_eq!(goods_issue.missing, d.lost_goods_issues);
    let invoice = summary
        .expectation("missing_freight_invoice")
        .expect("the example config expects freight invoices");
    assert_eq!((invoice.started, invoice.missing), (d.shipments, 0));

    // Truncated bodies are counted by the extractor, not lost.
    assert_eq!(
        summary.extraction_problems.get("malformed_json").copied(),
        Some(d.malformed_bodies as u64),
        "{:?}",
        summary.extraction_problems
    );

    // Flows ending on a shipment milestone are measured once per shipment.
    for flow in ["order_to_ship", "ship_to_deliver", "delivered_to_invoiced"] {
        let stats = summary.flow(flow).expect("flow configured");
        assert_eq!(stats.count, d.shipments, "{flow}");
        assert!(stats.p50 <= stats.p95, "{flow}: {stats:?}");
    }

    assert_eq!(d.deliveries.len(), d.shipments);
    assert_eq!(summary.tracking_joined, d.deliveries.len());

    demo.shutdown().await.expect("demo shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_number_alone_finds_its_order() {
    let demo = Demo::start(options(12)).await.expect("demo starts");
    let summary = demo
        .drive(&CancellationToken::new())
        .await
        .expect("demo drives");
    let tracking = demo
        .config()
        .key_kinds
        .get("tracking")
        .expect("tracking is a key kind");
    let client = reqwest::Client::new();
    let admin = demo.sidecar().admin_addr();
    assert!(!summary.driver.deliveries.is_empty());

    for delivery in &summary.driver.deliveries {
        let key = Key::new(tracking.clone(), delivery.tracking_code.as_str());
        let transaction = demo
            .sidecar()
            .correlator()
            .lookup(key)
            .await
            .unwrap_or_else(|| panic!("no transaction for {}", delivery.tracking_code));
        let root = transaction.root.as_ref().map(|k| k.value.to_string());
        assert_eq!(root.as_deref(), Some(delivery.order_id.as_str()));
        let delivered = transaction.milestones.iter().any(|m| {
            m.milestone.as_str() == "delivered" && *m.object.value == *delivery.shipment_id
        });
        assert!(
            delivered,
            "{} has no delivered milestone",
            delivery.shipment_id
        );

        let url = format!(
            "http://{admin}/api/v1/transactions/tracking/{}",
            delivery.tracking_code
        );
        let body: Value = client
            .get(url)
            .send()
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("admin JSON");
        assert_eq!(body["root"]["value"], delivery.order_id.as_str(), "{body}");
    }
    demo.shutdown().await.expect("demo shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_where_to_look_and_a_readable_summary() {
    let mut out = Vec::new();
    let summary = demo::run(options(8), CancellationToken::new(), &mut out)
        .await
        .expect("demo runs");
    let text = String::from_utf8(out).expect("utf-8 output");
    assert!(text.contains("/api/v1/transactions"), "{text}");
    assert!(text.contains("/metrics"), "{text}");
    for section in [
        "order_to_ship",
        "missing_goods_issue",
        "extraction problems",
    ] {
        assert!(text.contains(section), "no {section} in\n{text}");
    }
    assert_eq!(summary.driver.finished, 8, "{text}");
}

#[tokio::test]
async fn a_speed_that_is_not_positive_is_refused() {
    for speed in [0.0, -1.0, f64::NAN] {
        let options = DemoOptions {
            speed,
            ..options(1)
        };
        let error = Demo::start(options).await.err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("speed")),
            "{error:?}"
        );
    }
}

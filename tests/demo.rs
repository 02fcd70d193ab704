//! `waybill demo` end to end, in-process: the simulated systems, the sidecar
//! with the shipped example config, and the driver. The summary must agree
//! with what the driver itself counted, the sidecar's exceptions with what
//! the driver injected, and a tracking number alone must lead back to its
//! order, both through the correlator and the admin API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use waybill::config::{Amount, Role};
use waybill::demo::driver::{
    FREIGHT_VARIANCE, LABEL_NOT_SHIPPED, MISSING_FREIGHT_INVOICE, OUT_OF_ORDER,
    UNMATCHED_FREIGHT_INVOICE,
};
use waybill::demo::plan::{Incident, OrderPlan};
use waybill::demo::{self, Demo, DemoOptions, Injected, Summary};
use waybill::extract::Key;

const ORDERS: usize = 40;
/// One business day in about 0.4 s: a run takes a few seconds, and a real
/// millisecond of latency is only seven business minutes.
const SPEED: f64 = 200_000.0;

/// The first seed whose plan for `orders` orders has every surprise and
/// every incident the driver can inject, so the comparisons below are never
/// vacuous.
fn eventful_seed(orders: usize) -> u64 {
    (1..)
        .find(|seed| {
            let plans: Vec<OrderPlan> = (0..orders).map(|i| OrderPlan::new(*seed, i)).collect();
            plans.iter().any(OrderPlan::spans_zones)
                && plans.iter().any(|p| p.duplicate_booking)
                && plans.iter().any(|p| p.retry_booking)
                && plans.iter().any(|p| p.lose_goods_issue)
                && plans.iter().any(|p| p.malformed_webhook)
                && plans.iter().any(|p| p.surcharge && p.incident.is_none())
                && Incident::ALL
                    .iter()
                    .all(|kind| plans.iter().any(|p| p.incident == Some(*kind)))
        })
        .unwrap_or_default()
}

fn options(orders: usize) -> DemoOptions {
    DemoOptions {
        orders,
        speed: SPEED,
        // Fewer orders see fewer incidents; the seed is the one that has
        // them all in `ORDERS` orders.
        seed: eventful_seed(ORDERS),
        keep_running: false,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// Orders the driver left short of their last freight invoice on purpose.
fn orders_left_open(summary: &Summary) -> BTreeSet<&str> {
    summary
        .driver
        .injected
        .iter()
        .filter(|i| [LABEL_NOT_SHIPPED, MISSING_FREIGHT_INVOICE].contains(&i.kind))
        .map(|i| i.order_id.as_str())
        .collect()
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
    assert!(d.booking_retries > 0, "no booking timeout-retry: {d:?}");
    assert!(d.lost_goods_issues > 0, "no lost goods issue: {d:?}");
    assert!(d.malformed_bodies > 0, "no malformed body: {d:?}");
    assert_eq!(d.shipments, ORDERS + d.split_orders);

    // One transaction per order, plus one per stray invoice (no order to
    // join). Complete are the orders whose every shipment was invoiced.
    let left_open = orders_left_open(&summary).len();
    assert_eq!(summary.transactions, ORDERS + d.stray_invoices);
    assert_eq!(summary.rootless, d.stray_invoices);
    assert_eq!(summary.complete, ORDERS - left_open);
    assert_eq!(summary.open, left_open + d.stray_invoices);

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

    // Every milestone repeat is a booking sent twice: a duplicate (new
    // key) or a timeout-retry (same key).
    let repeats: u64 = summary.duplicates.values().sum();
    assert_eq!(
        repeats,
        (d.duplicate_bookings + d.booking_retries) as u64,
        "{:?}",
        summary.duplicates
    );

    // The idempotency guard answered every timeout-retry itself: the
    // carrier never saw a repeated key, and booked each shipment once
    // more only for the duplicates.
    assert_eq!(summary.counted.guard_replays, d.booking_retries as u64);
    assert_eq!(demo.systems().carrier_stats.replayed_bookings(), 0);

    // The sidecar tells the retries after a 503 (each 503 was followed by
    // another purchase) from the duplicate bookings.
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

    // The sidecar's exceptions, kind by kind, match what the driver
    // injected: every injected gap the driver never fixed is still open, and
    // nothing else is. Time is compressed (a few milliseconds of scheduling
    // are business minutes), so a step the driver meant to be on time can be
    // late in business time: the sidecar rightly opens an exception for it,
    // which the late step resolves. So opened and resolved may exceed what
    // was injected; open may not. Every kind the config declares was injected.
    let injected = d.injected();
    for kind in demo.config().exception_kinds.iter() {
        let count = injected.get(kind.as_str()).map_or(0, |i| i.count);
        assert!(count > 0, "the demo injected no {kind}: {injected:?}");
    }
    let kinds: BTreeSet<&str> = summary
        .exceptions
        .keys()
        .map(String::as_str)
        .chain(injected.keys().copied())
        .collect();
    for kind in &kinds {
        let e = summary.exceptions.get(*kind).cloned().unwrap_or_default();
        let i: Injected = injected.get(kind).copied().unwrap_or_default();
        assert_eq!(
            e.open,
            i.count - i.resolved,
            "{kind} still open: {e:?} vs {i:?}"
        );
        assert!(e.opened >= i.count, "{kind} opened: {e:?} vs {i:?}");
        assert!(e.resolved >= i.resolved, "{kind} resolved: {e:?} vs {i:?}");
        assert_eq!(e.opened, e.open + e.resolved, "{kind}: {e:?}");
    }
    let lost = injected.get("missing_goods_issue").map_or(0, |i| i.count);
    assert_eq!(lost, d.lost_goods_issues);
    let owner = |kind: &str| summary.exceptions.get(kind).map(|e| e.owner.as_str());
    assert_eq!(owner(UNMATCHED_FREIGHT_INVOICE), Some("carrier"));
    assert_eq!(owner("carrier_retry_exhausted"), Some("carrier"));
    assert_eq!(owner("duplicate_shipment"), Some("wms"));

    // Orders left at their labels are stuck there, and only those.
    assert!(d.unshipped_orders > 0, "{d:?}");
    assert_eq!(
        summary.stuck,
        BTreeMap::from([("label_created".to_owned(), d.unshipped_orders)])
    );

    // The same exceptions through the admin API.
    let admin = demo.sidecar().admin_addr();
    let body: Value = reqwest::get(format!(
        "http://{admin}/api/v1/exceptions?state=all&limit=1000"
    ))
    .await
    .expect("admin answers")
    .json()
    .await
    .expect("admin JSON");
    // (at most 1000 listed: far more than a run of `ORDERS` orders opens)
    let listed = body["exceptions"].as_array().map_or(0, Vec::len);
    let opened: usize = summary.exceptions.values().map(|e| e.opened).sum();
    assert_eq!(listed, opened, "{body}");
    assert_eq!(
        summary.exceptions.values().map(|e| e.open).sum::<usize>(),
        injected
            .values()
            .map(|i| i.count - i.resolved)
            .sum::<usize>()
    );

    // Truncated bodies are counted by the extractor, not lost; so is the
    // stray invoice's line without a shipment.
    assert_eq!(
        summary
            .counted
            .extraction_problems
            .get("malformed_json")
            .copied(),
        Some(d.malformed_bodies as u64),
        "{:?}",
        summary.counted.extraction_problems
    );
    assert_eq!(
        summary
            .counted
            .extraction_problems
            .get("key_missing")
            .copied(),
        Some(d.stray_invoices as u64),
        "{:?}",
        summary.counted.extraction_problems
    );

    // Flows ending on a shipment milestone are measured once per shipment
    // that got there.
    let shipped = d.shipments - d.unshipped_labels;
    let invoiced = shipped - injected.get(MISSING_FREIGHT_INVOICE).map_or(0, |i| i.count);
    for (flow, count) in [
        ("order_to_ship", shipped),
        ("ship_to_deliver", shipped),
        ("delivered_to_invoiced", invoiced),
    ] {
        let stats = summary.flow(flow).expect("flow configured");
        assert_eq!(stats.count, count, "{flow}");
        assert!(stats.p50 <= stats.p95, "{flow}: {stats:?}");
    }

    assert_eq!(d.deliveries.len(), d.shipments);
    assert_eq!(summary.tracking_joined, d.deliveries.len());

    // Freight cost: what the transactions hold, each shipment's quote and
    // invoice once, is exactly what the driver was quoted and invoiced.
    assert!(!d.invoiced_cost.is_empty(), "{d:?}");
    for (role, driver) in [
        (Role::Quoted, &d.quoted_cost),
        (Role::Actual, &d.invoiced_cost),
    ] {
        let sidecar: BTreeMap<String, Amount> = summary
            .freight_cost
            .iter()
            .filter(|((r, _), _)| *r == role)
            .map(|((_, currency), sum)| (currency.clone(), *sum))
            .collect();
        assert_eq!(&sidecar, driver, "{role:?}");
    }
    let surcharged = injected.get(FREIGHT_VARIANCE).map_or(0, |i| i.count);
    assert!(surcharged > 0, "{injected:?}");
    let quoted: Amount = d.quoted_cost.values().fold(Amount::ZERO, |a, b| a.plus(*b));
    let invoiced: Amount = d
        .invoiced_cost
        .values()
        .fold(Amount::ZERO, |a, b| a.plus(*b));
    assert_ne!(quoted, invoiced, "surcharges make the invoices differ");

    demo.shutdown().await.expect("demo shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_api_finds_the_out_of_order_order_with_both_milestones() {
    let demo = Demo::start(options(ORDERS)).await.expect("demo starts");
    let summary = demo
        .drive(&CancellationToken::new())
        .await
        .expect("demo drives");
    let early: Vec<_> = summary
        .driver
        .injected
        .iter()
        .filter(|i| i.kind == OUT_OF_ORDER)
        .collect();
    assert!(!early.is_empty(), "{:?}", summary.driver);
    let order_kind = demo
        .config()
        .key_kinds
        .get("order")
        .expect("order is a key kind");
    let admin = demo.sidecar().admin_addr();
    for injection in early {
        let key = Key::new(order_kind.clone(), injection.order_id.as_str());
        let transaction = demo
            .sidecar()
            .correlator()
            .lookup(key)
            .await
            .unwrap_or_else(|| panic!("no transaction for {}", injection.order_id));
        let at = |milestone: &str| {
            transaction
                .milestones
                .iter()
                .find(|m| {
                    m.milestone()
                        .get(&demo.config().milestones)
                        .is_some_and(|n| n.as_str() == milestone)
                        && transaction
                            .milestone_object(m)
                            .is_some_and(|o| o.value() == &*injection.object)
                })
                .map(|m| m.at())
        };
        let (goods_issue, shipped) = (at("goods_issue_posted"), at("shipped"));
        assert!(
            goods_issue.is_some() && shipped.is_some() && goods_issue < shipped,
            "{}: goods issue {goods_issue:?}, shipped {shipped:?}",
            injection.object
        );
        let out_of_order: Vec<_> = transaction
            .exceptions()
            .iter()
            .filter(|e| e.kind.as_str() == OUT_OF_ORDER)
            .collect();
        assert_eq!(out_of_order.len(), 1, "{:?}", transaction.exceptions());
        assert_eq!(
            out_of_order[0].resolved, shipped,
            "resolved when shipped came"
        );

        let url = format!(
            "http://{admin}/api/v1/transactions/order/{}",
            injection.order_id
        );
        let body: Value = reqwest::get(url)
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("admin JSON");
        let milestones: Vec<(&str, &str)> = body["milestones"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some((m["milestone"].as_str()?, m["object"]["value"].as_str()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for milestone in ["goods_issue_posted", "shipped"] {
            assert!(
                milestones.contains(&(milestone, injection.object.as_str())),
                "{milestone} of {} missing in {body}",
                injection.object
            );
        }
        let kinds: Vec<&str> = body["exceptions"]
            .as_array()
            .map(|es| es.iter().filter_map(|e| e["kind"].as_str()).collect())
            .unwrap_or_default();
        assert!(kinds.contains(&OUT_OF_ORDER), "{body}");
    }
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
        let root = transaction.root().map(|k| k.value.to_string());
        assert_eq!(root.as_deref(), Some(delivery.order_id.as_str()));
        let delivered = transaction.milestones.iter().any(|m| {
            m.milestone()
                .get(&demo.config().milestones)
                .is_some_and(|n| n.as_str() == "delivered")
                && transaction
                    .milestone_object(m)
                    .is_some_and(|o| o.value() == &*delivery.shipment_id)
        });
        // A parcel the driver never shipped is known by its label alone.
        let unshipped = summary
            .driver
            .injected
            .iter()
            .any(|i| i.kind == LABEL_NOT_SHIPPED && i.object == delivery.shipment_id);
        assert!(
            delivered || unshipped,
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
        "exceptions (sidecar)",
        "missing_goods_issue",
        "extraction problems",
        "freight cost",
        "/api/v1/exceptions",
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

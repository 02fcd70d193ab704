//! Correlation behaviour on hand-made observations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;

use super::*;
use crate::config::{ListenerId, Milestone};
use crate::proxy::{Exchange, Outcome, Tapped};
use crate::state::Status;

const CONFIG: &str = r#"
systems: [erp, wms, carrier]
keys: [order, shipment, tracking, invoice]
root: order
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: order_released, object: order }
  - { name: packed, object: shipment }
  - { name: label_created, object: shipment }
  - { name: shipped, object: shipment }
  - { name: delivered, object: shipment }
  - { name: freight_invoiced, object: shipment, terminal: true }
routes:
  - { name: wms.release, system: wms, match: { path: /release }, keys: { order: { header: x-order } }, milestone: order_released }
flows:
  - { name: order_to_ship, from: order_released, to: shipped, slo: 24h }
  - { name: ship_to_deliver, from: shipped, to: delivered, slo: 72h }
"#;

struct Harness {
    correlator: Correlator,
    config: Arc<Config>,
    registry: Registry,
    next_id: u64,
}

impl Harness {
    fn new() -> Self {
        let config =
            Arc::new(Config::from_yaml(CONFIG, "test.yaml").expect("test config is valid"));
        let mut registry = Registry::default();
        let (correlator, _tx, _handle, _inbox) =
            Correlator::new(Arc::clone(&config), Clock::system(), 16, &mut registry);
        Harness {
            correlator,
            config,
            registry,
            next_id: 0,
        }
    }

    fn key(&self, kind: &str, value: &str) -> Key {
        Key::new(
            self.config.key_kinds.get(kind).expect("declared kind"),
            value,
        )
    }

    fn milestone(&self, name: &str) -> Milestone {
        self.config
            .milestones
            .get(name)
            .expect("declared milestone")
    }

    /// Applies an exchange at `hours` after the epoch carrying `keys` and marking `milestone`.
    fn observe(&mut self, hours: f64, keys: &[(&str, &str)], milestone: Option<&str>) {
        self.next_id += 1;
        let exchange = Exchange {
            id: self.next_id,
            listener: ListenerId(0),
            system: self.config.systems.get("wms").expect("declared system"),
            method: http::Method::POST,
            uri: http::Uri::from_static("/release"),
            version: http::Version::HTTP_11,
            request_headers: http::HeaderMap::new(),
            started: at(hours),
            duration: Duration::from_millis(3),
            upstream_duration: Duration::from_millis(2),
            outcome: Outcome::Response {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
            },
            request_body: Tapped::default(),
            response_body: Tapped::default(),
        };
        let observation = Observation {
            exchange,
            route: None,
            operation: None,
            keys: keys.iter().map(|(k, v)| self.key(k, v)).collect(),
            milestone: milestone.map(|m| self.milestone(m)),
            problems: Vec::new(),
        };
        self.correlator.apply(observation);
    }

    fn transaction(&self, kind: &str, value: &str) -> Transaction {
        let store = &self.correlator.store;
        let id = store.find(&self.key(kind, value)).expect("key is known");
        store.get(id).expect("transaction exists").clone()
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode");
        out
    }
}

fn at(hours: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_700_000_000)
        + Duration::from_secs_f64(hours * 3600.0)
}

fn milestone_objects(tx: &Transaction, name: &str) -> Vec<String> {
    tx.milestones
        .iter()
        .filter(|m| m.milestone.as_str() == name)
        .map(|m| m.object.to_string())
        .collect()
}

#[test]
fn tracking_only_webhook_joins_its_order() {
    let mut h = Harness::new();
    h.observe(0.0, &[("order", "SO-1")], Some("order_released"));
    h.observe(
        2.0,
        &[("order", "SO-1"), ("shipment", "SH-1")],
        Some("packed"),
    );
    h.observe(
        2.1,
        &[("shipment", "SH-1"), ("tracking", "1Z1")],
        Some("label_created"),
    );
    h.observe(3.0, &[("shipment", "SH-1")], Some("shipped"));
    h.observe(40.0, &[("tracking", "1Z1")], Some("delivered"));

    let tx = h.transaction("tracking", "1Z1");
    assert_eq!(tx.name.to_string(), "order:SO-1");
    assert_eq!(
        tx.root.as_ref().map(|k| k.to_string()).as_deref(),
        Some("order:SO-1")
    );
    assert_eq!(milestone_objects(&tx, "delivered"), vec!["shipment:SH-1"]);
    let flows: Vec<(String, f64)> = tx
        .flows
        .iter()
        .map(|f| (f.flow.to_string(), f.duration.as_secs_f64() / 3600.0))
        .collect();
    assert_eq!(
        flows,
        vec![
            ("order_to_ship".to_string(), 3.0),
            ("ship_to_deliver".to_string(), 37.0)
        ]
    );
}

#[test]
fn split_shipment_keeps_one_shipped_milestone_per_shipment() {
    let mut h = Harness::new();
    h.observe(0.0, &[("order", "SO-2")], Some("order_released"));
    h.observe(
        1.0,
        &[
            ("order", "SO-2"),
            ("shipment", "SH-A"),
            ("shipment", "SH-B"),
        ],
        Some("packed"),
    );
    h.observe(5.0, &[("shipment", "SH-A")], Some("shipped"));
    h.observe(30.0, &[("shipment", "SH-B")], Some("shipped"));

    let tx = h.transaction("order", "SO-2");
    assert_eq!(
        milestone_objects(&tx, "packed"),
        vec!["shipment:SH-A", "shipment:SH-B"]
    );
    assert_eq!(
        milestone_objects(&tx, "shipped"),
        vec!["shipment:SH-A", "shipment:SH-B"]
    );
    let verdicts: Vec<(String, bool)> = tx
        .flows
        .iter()
        .map(|f| (f.object.to_string(), f.within_slo))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("shipment:SH-A".to_string(), true),
            ("shipment:SH-B".to_string(), false)
        ]
    );
    let metrics = h.metrics();
    assert!(
        metrics.contains(r#"waybill_flows_total{flow="order_to_ship",slo="met"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"waybill_flows_total{flow="order_to_ship",slo="missed"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_repeated_milestone_keeps_its_first_time_and_counts_the_repeat() {
    let mut h = Harness::new();
    h.observe(0.0, &[("order", "SO-3")], Some("order_released"));
    h.observe(4.0, &[("order", "SO-3")], Some("order_released"));

    let tx = h.transaction("order", "SO-3");
    assert_eq!(tx.milestones.len(), 1);
    assert_eq!(tx.milestones[0].at, at(0.0));
    assert_eq!(tx.milestones[0].repeats, 1);
    assert!(h
        .metrics()
        .contains(r#"waybill_milestone_repeats_total{milestone="order_released"} 1"#));
}

#[test]
fn two_transactions_that_turn_out_linked_merge_without_losing_milestones() {
    let mut h = Harness::new();
    // The carrier sees the shipment before anything links it to its order.
    h.observe(
        1.0,
        &[("shipment", "SH-9"), ("tracking", "1Z9")],
        Some("label_created"),
    );
    h.observe(0.0, &[("order", "SO-9")], Some("order_released"));
    assert_ne!(
        h.correlator.store.find(&h.key("order", "SO-9")),
        h.correlator.store.find(&h.key("shipment", "SH-9"))
    );
    h.observe(
        2.0,
        &[("order", "SO-9"), ("shipment", "SH-9")],
        Some("packed"),
    );

    let tx = h.transaction("tracking", "1Z9");
    assert_eq!(tx.name.to_string(), "order:SO-9");
    assert_eq!(h.correlator.store.len(), 1);
    let mut names: Vec<&str> = tx.milestones.iter().map(|m| m.milestone.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["label_created", "order_released", "packed"]);
    assert!(h.metrics().contains("waybill_transactions_merged_total 1"));
}

#[test]
fn a_batch_of_orders_in_one_message_does_not_fuse_the_orders() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-10"), ("order", "SO-11")],
        Some("order_released"),
    );

    let a = h.transaction("order", "SO-10");
    let b = h.transaction("order", "SO-11");
    assert_ne!(a.id, b.id);
    assert_eq!(milestone_objects(&a, "order_released"), vec!["order:SO-10"]);
    assert_eq!(milestone_objects(&b, "order_released"), vec!["order:SO-11"]);
}

#[test]
fn a_transaction_completes_when_every_shipment_is_invoiced() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[
            ("order", "SO-4"),
            ("shipment", "SH-X"),
            ("shipment", "SH-Y"),
        ],
        Some("packed"),
    );
    h.observe(
        1.0,
        &[("shipment", "SH-X"), ("invoice", "INV-1")],
        Some("freight_invoiced"),
    );
    assert_eq!(h.transaction("order", "SO-4").status, Status::Open);
    h.observe(
        2.0,
        &[("shipment", "SH-Y"), ("invoice", "INV-2")],
        Some("freight_invoiced"),
    );
    assert_eq!(h.transaction("order", "SO-4").status, Status::Complete);
    assert!(h
        .metrics()
        .contains("waybill_transactions_completed_total 1"));
    assert!(h
        .metrics()
        .contains(r#"waybill_state_transactions{status="complete"} 1"#));
}

#[test]
fn an_exchange_without_keys_is_counted_and_creates_nothing() {
    let mut h = Harness::new();
    h.observe(0.0, &[], Some("order_released"));
    assert!(h.correlator.store.is_empty());
    assert!(h
        .metrics()
        .contains(r#"waybill_correlated_observations_total{result="no_keys"} 1"#));
}

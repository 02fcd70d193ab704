//! Correlation behaviour on hand-made observations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;

use super::*;
use crate::config::{ListenerId, Milestone};
use crate::proxy::{Exchange, Outcome, Tapped};
use crate::state::{Names, Status};

const CONFIG: &str = r#"
systems: [erp, wms, carrier]
keys: [order, shipment, tracking, invoice]
root: order
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: order_released, object: order }
  - { name: packed, object: shipment }
  - { name: label_created, object: shipment, stuck_after: 4h }
  - { name: shipped, object: shipment, requires: [packed] }
  - { name: goods_issue_posted, object: shipment }
  - { name: delivered, object: shipment }
  - name: freight_invoiced
    object: shipment
    terminal: true
    requires: [label_created]
    unmet: { exception: unmatched_freight_invoice, owner: carrier }
routes:
  - { name: wms.release, system: wms, match: { path: /release }, keys: { order: { header: x-order } }, milestone: order_released }
  - name: carrier.create_shipment
    system: carrier
    match: { method: POST, path: /shipments }
    keys: { order: { request_json: $.reference } }
    repeats:
      by: order
      duplicate: { exception: duplicate_shipment }
      retry: { limit: 3, within: 10m, exception: carrier_retry_exhausted }
expectations:
  - { after: shipped, expect: goods_issue_posted, within: 15m, exception: missing_goods_issue, owner: erp }
flows:
  - { name: order_to_ship, from: order_released, to: shipped, slo: 24h }
  - { name: ship_to_deliver, from: shipped, to: delivered, slo: 72h }
"#;

struct Harness {
    correlator: Correlator,
    config: Arc<Config>,
    registry: Registry,
    next_id: u64,
    /// What the durable store would have journaled, in order.
    journal: Vec<crate::state::durable::record::Entry>,
}

impl Harness {
    fn new() -> Self {
        Self::with(CONFIG)
    }

    /// A harness on routes `yaml`.
    fn with(yaml: &str) -> Self {
        let config = Arc::new(Config::from_yaml(yaml, "test.yaml").expect("test config is valid"));
        let mut registry = Registry::default();
        let (correlator, _tx, _handle, _inbox) =
            Correlator::new(Arc::clone(&config), Clock::system(), 16, &mut registry);
        Harness {
            correlator,
            config,
            registry,
            next_id: 0,
            journal: Vec::new(),
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
        self.observe_call(hours, keys, milestone, None, 200, None);
    }

    /// A call of route `route` answered with `status` (0: the upstream failed).
    fn attempt(&mut self, hours: f64, order: &str, status: u16, idempotency_key: Option<&str>) {
        let keys = [("order", order)];
        let route = Some("carrier.create_shipment");
        self.observe_call(hours, &keys, None, route, status, idempotency_key);
    }

    fn observe_call(
        &mut self,
        hours: f64,
        keys: &[(&str, &str)],
        milestone: Option<&str>,
        route: Option<&str>,
        status: u16,
        idempotency_key: Option<&str>,
    ) {
        self.next_id += 1;
        let route = route.map(|name| {
            self.config
                .routes
                .iter()
                .find(|r| r.operation.as_str() == name)
                .expect("declared route")
        });
        let mut request_headers = http::HeaderMap::new();
        if let Some(key) = idempotency_key {
            request_headers.insert("idempotency-key", key.parse().expect("header value"));
        }
        let outcome = match status {
            0 => Outcome::UpstreamFailed {
                error: crate::proxy::UpstreamError::Timeout,
                status: http::StatusCode::GATEWAY_TIMEOUT,
            },
            status => Outcome::Response {
                status: http::StatusCode::from_u16(status).expect("status"),
                headers: Default::default(),
            },
        };
        let exchange = Exchange {
            id: self.next_id,
            listener: ListenerId(0),
            system: self.config.systems.get("wms").expect("declared system"),
            method: http::Method::POST,
            uri: http::Uri::from_static("/release"),
            version: http::Version::HTTP_11,
            request_headers: request_headers.into(),
            started: at(hours),
            duration: Duration::from_millis(3),
            upstream_duration: Duration::from_millis(2),
            outcome,
            request_body: Tapped::default(),
            response_body: Tapped::default(),
            replayed: false,
            trace_context: None,
        };
        let observation = Observation {
            exchange: crate::extract::ExchangeSummary::whole(exchange),
            route: route.map(|r| r.id),
            operation: route.map(|r| r.operation.clone()),
            keys: keys.iter().map(|(k, v)| self.key(k, v)).collect(),
            milestone: milestone.map(|m| self.milestone(m)),
            problems: Vec::new(),
            measures: Default::default(),
        };
        self.journal
            .push(crate::state::durable::record::Entry::Observed(
                crate::state::durable::record::ObservedRecord::of(&observation, &self.config),
            ));
        self.correlator.apply(observation);
    }

    fn tick(&mut self, hours: f64) {
        self.journal
            .push(crate::state::durable::record::Entry::Tick { at: at(hours) });
        self.correlator.tick(at(hours));
    }

    /// `(kind, open)` of every exception of the transaction of `key`.
    fn exceptions(&self, kind: &str, value: &str) -> Vec<(String, bool)> {
        self.transaction(kind, value)
            .exceptions()
            .iter()
            .map(|e| (e.kind.to_string(), e.is_open()))
            .collect()
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

fn milestone_objects(h: &Harness, tx: &Transaction, name: &str) -> Vec<String> {
    let milestone = h.milestone(name);
    tx.milestones
        .iter()
        .filter(|m| m.milestone().is(&milestone))
        .filter_map(|m| {
            tx.milestone_object(m)?
                .to_key(&h.correlator.config.key_kinds)
        })
        .map(|k| k.to_string())
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
    assert_eq!(tx.name().to_string(), "order:SO-1");
    assert_eq!(
        tx.root().map(|k| k.to_string()).as_deref(),
        Some("order:SO-1")
    );
    assert_eq!(
        milestone_objects(&h, &tx, "delivered"),
        vec!["shipment:SH-1"]
    );
    let flows: Vec<(String, f64)> = tx
        .flows
        .iter()
        .filter_map(|f| tx.flow_record(f, Names::of(&h.correlator.config)))
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
        milestone_objects(&h, &tx, "packed"),
        vec!["shipment:SH-A", "shipment:SH-B"]
    );
    assert_eq!(
        milestone_objects(&h, &tx, "shipped"),
        vec!["shipment:SH-A", "shipment:SH-B"]
    );
    let verdicts: Vec<(String, bool)> = tx
        .flows
        .iter()
        .filter_map(|f| tx.flow_record(f, Names::of(&h.correlator.config)))
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
    assert_eq!(tx.milestones[0].at(), at(0.0));
    assert_eq!(tx.milestones[0].repeats(), 1);
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
    assert_eq!(tx.name().to_string(), "order:SO-9");
    assert_eq!(h.correlator.store.len(), 1);
    let milestones = &h.config.milestones;
    let mut names: Vec<&str> = tx
        .milestones
        .iter()
        .filter_map(|m| m.milestone().get(milestones))
        .map(|m| m.as_str())
        .collect();
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
    assert_eq!(
        milestone_objects(&h, &a, "order_released"),
        vec!["order:SO-10"]
    );
    assert_eq!(
        milestone_objects(&h, &b, "order_released"),
        vec!["order:SO-11"]
    );
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
    let in_flight = r#"waybill_transactions_in_flight{milestone="freight_invoiced"}"#;
    assert!(h.metrics().contains(&format!("{in_flight} 1")));
    h.observe(
        2.0,
        &[("shipment", "SH-Y"), ("invoice", "INV-2")],
        Some("freight_invoiced"),
    );
    assert_eq!(h.transaction("order", "SO-4").status, Status::Complete);
    assert!(h.metrics().contains(&format!("{in_flight} 0")));
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

fn open(kind: &str) -> (String, bool) {
    (kind.to_string(), true)
}

fn resolved(kind: &str) -> (String, bool) {
    (kind.to_string(), false)
}

#[test]
fn a_lapsed_expectation_opens_its_exception_which_the_late_milestone_resolves() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-5"), ("shipment", "SH-5")],
        Some("packed"),
    );
    h.observe(1.0, &[("shipment", "SH-5")], Some("shipped"));
    h.tick(1.24);
    assert_eq!(h.exceptions("order", "SO-5"), vec![]);
    h.tick(1.26);
    assert_eq!(
        h.exceptions("order", "SO-5"),
        vec![open("missing_goods_issue")]
    );
    let tx = h.transaction("order", "SO-5");
    assert_eq!(tx.exceptions()[0].owner.as_str(), "erp");
    assert_eq!(tx.exceptions()[0].object.to_string(), "shipment:SH-5");
    assert!(h
        .metrics()
        .contains(r#"waybill_exceptions_open{kind="missing_goods_issue",owner="erp"} 1"#));

    h.observe(3.0, &[("shipment", "SH-5")], Some("goods_issue_posted"));
    assert_eq!(
        h.exceptions("order", "SO-5"),
        vec![resolved("missing_goods_issue")]
    );
    let metrics = h.metrics();
    assert!(
        metrics.contains(r#"waybill_exceptions_open{kind="missing_goods_issue",owner="erp"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"waybill_exception_resolution_seconds_count{kind="missing_goods_issue"} 1"#
        ),
        "{metrics}"
    );
    // Opened at 1h15m, resolved at 3h: 6300 s.
    assert!(
        metrics.contains(
            r#"waybill_exception_resolution_seconds_sum{kind="missing_goods_issue"} 6300.0"#
        ),
        "{metrics}"
    );
}

#[test]
fn a_milestone_in_time_opens_nothing_even_when_its_deadline_comes() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-6"), ("shipment", "SH-6")],
        Some("packed"),
    );
    h.observe(1.0, &[("shipment", "SH-6")], Some("shipped"));
    h.observe(1.1, &[("shipment", "SH-6")], Some("goods_issue_posted"));
    h.tick(10.0);
    assert_eq!(h.exceptions("order", "SO-6"), vec![]);
}

#[test]
fn shipped_before_packed_opens_out_of_order_keeps_both_and_resolves_when_packed_arrives() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-7"), ("shipment", "SH-7")],
        Some("shipped"),
    );
    assert_eq!(h.exceptions("order", "SO-7"), vec![open("out_of_order")]);
    assert_eq!(
        h.transaction("order", "SO-7").exceptions()[0]
            .owner
            .as_str(),
        "wms"
    );
    h.observe(
        0.1,
        &[("order", "SO-7"), ("shipment", "SH-7")],
        Some("packed"),
    );
    let tx = h.transaction("order", "SO-7");
    assert_eq!(
        h.exceptions("order", "SO-7"),
        vec![resolved("out_of_order")]
    );
    assert_eq!(milestone_objects(&h, &tx, "shipped"), vec!["shipment:SH-7"]);
    assert_eq!(milestone_objects(&h, &tx, "packed"), vec!["shipment:SH-7"]);
}

#[test]
fn a_freight_invoice_for_an_unknown_shipment_is_unmatched_and_owned_by_the_carrier() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("invoice", "INV-9"), ("tracking", "1ZUNKNOWN")],
        Some("freight_invoiced"),
    );
    assert_eq!(
        h.exceptions("invoice", "INV-9"),
        vec![open("unmatched_freight_invoice")]
    );
    assert_eq!(
        h.transaction("invoice", "INV-9").exceptions()[0]
            .owner
            .as_str(),
        "carrier"
    );
    // The label purchase that explains it shows up later and links it.
    h.observe(
        1.0,
        &[("shipment", "SH-9"), ("tracking", "1ZUNKNOWN")],
        Some("label_created"),
    );
    assert_eq!(
        h.exceptions("invoice", "INV-9"),
        vec![resolved("unmatched_freight_invoice")]
    );
}

#[test]
fn a_repeat_after_a_failure_is_a_retry_not_a_duplicate() {
    let mut h = Harness::new();
    h.attempt(0.0, "SO-8", 503, None);
    h.attempt(0.01, "SO-8", 201, None);
    let tx = h.transaction("order", "SO-8");
    assert_eq!(
        (tx.attempts()[0].retries, tx.attempts()[0].duplicates),
        (1, 0)
    );
    assert_eq!(h.exceptions("order", "SO-8"), vec![]);
    let metrics = h.metrics();
    assert!(
        metrics.contains(r#"waybill_retries_total{operation="carrier.create_shipment"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"waybill_duplicates_total{operation="carrier.create_shipment"} 0"#),
        "{metrics}"
    );
}

#[test]
fn a_second_success_with_a_new_idempotency_key_is_a_duplicate_and_a_replay_is_not() {
    let mut h = Harness::new();
    h.attempt(0.0, "SO-9", 201, Some("key-1"));
    h.attempt(0.1, "SO-9", 201, Some("key-1"));
    assert_eq!(h.exceptions("order", "SO-9"), vec![]);
    h.attempt(0.2, "SO-9", 201, Some("key-2"));
    assert_eq!(
        h.exceptions("order", "SO-9"),
        vec![open("duplicate_shipment")]
    );
    let tx = h.transaction("order", "SO-9");
    assert_eq!(tx.exceptions()[0].owner.as_str(), "carrier");
    assert_eq!(
        tx.exceptions()[0].resolution,
        crate::state::Resolution::Manual
    );
    let metrics = h.metrics();
    assert!(
        metrics
            .contains(r#"waybill_idempotent_replays_total{operation="carrier.create_shipment"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"waybill_duplicates_total{operation="carrier.create_shipment"} 1"#),
        "{metrics}"
    );
}

#[test]
fn retries_are_exhausted_at_the_limit_and_a_later_success_resolves_it() {
    let mut h = Harness::new();
    h.attempt(0.0, "SO-10", 503, None);
    h.attempt(0.01, "SO-10", 0, None);
    assert_eq!(h.exceptions("order", "SO-10"), vec![]);
    h.attempt(0.02, "SO-10", 502, None);
    assert_eq!(
        h.exceptions("order", "SO-10"),
        vec![open("carrier_retry_exhausted")]
    );
    h.attempt(0.03, "SO-10", 201, None);
    assert_eq!(
        h.exceptions("order", "SO-10"),
        vec![resolved("carrier_retry_exhausted")]
    );
}

#[test]
fn retries_are_exhausted_when_no_success_comes_within_the_window() {
    let mut h = Harness::new();
    h.attempt(0.0, "SO-11", 503, None);
    h.tick(0.16);
    assert_eq!(h.exceptions("order", "SO-11"), vec![]);
    h.tick(0.17);
    assert_eq!(
        h.exceptions("order", "SO-11"),
        vec![open("carrier_retry_exhausted")]
    );
}

#[test]
fn a_transaction_resting_past_stuck_after_is_stuck_until_it_moves_on() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-12"), ("shipment", "SH-12")],
        Some("packed"),
    );
    h.observe(
        1.0,
        &[("shipment", "SH-12"), ("tracking", "1Z12")],
        Some("label_created"),
    );
    h.tick(4.9);
    assert_eq!(h.transaction("order", "SO-12").stuck(), None);
    h.tick(5.0);
    assert_eq!(
        h.transaction("order", "SO-12")
            .stuck()
            .map(|m| m.to_string())
            .as_deref(),
        Some("label_created")
    );
    assert!(h
        .metrics()
        .contains(r#"waybill_transactions_stuck{milestone="label_created"} 1"#));
    h.observe(6.0, &[("shipment", "SH-12")], Some("shipped"));
    assert_eq!(h.transaction("order", "SO-12").stuck(), None);
    assert!(h
        .metrics()
        .contains(r#"waybill_transactions_stuck{milestone="label_created"} 0"#));
}

#[test]
fn deadlines_leave_with_their_evicted_transactions_and_the_live_ones_still_fire() {
    let mut h = Harness::with(&format!("{CONFIG}state: {{ max_transactions: 100 }}\n"));
    // 5 000 shipments, each starting a 15-minute expectation, in 5 seconds:
    // all but the last 100 transactions are evicted before any comes due.
    // Two shipped shipments whose transactions merge (the order links
    // them), kept recent: the absorbed one's deadline must follow its
    // object into the merged transaction, not leave with its slot.
    h.observe(
        0.0,
        &[("order", "SO-M"), ("shipment", "SH-A")],
        Some("shipped"),
    );
    h.observe(0.0, &[("shipment", "SH-B")], Some("shipped"));
    h.observe(0.0, &[("order", "SO-M"), ("shipment", "SH-B")], None);
    let mut held = 0;
    for n in 0..5_000 {
        let at = n as f64 / 3_600_000.0;
        let shipment = format!("SH-{n}");
        h.observe(at, &[("shipment", &shipment)], Some("shipped"));
        if n % 20 == 0 {
            h.observe(at, &[("order", "SO-M")], None);
        }
        held = held.max(h.correlator.schedule.len());
    }
    assert_eq!(h.correlator.store.len(), 100);
    // Twice the live deadlines, the slack and what a sweep's duration
    // adds; without the sweep it would be all 5 000.
    assert!(held < 1_500, "{held} deadlines held for 100 transactions");
    h.tick(1.0);
    assert_eq!(
        h.exceptions("shipment", "SH-4999"),
        vec![
            ("out_of_order".to_string(), true),
            ("missing_goods_issue".to_string(), true)
        ]
    );
    let lapsed: Vec<String> = h
        .transaction("order", "SO-M")
        .exceptions()
        .iter()
        .filter(|e| e.kind.as_str() == "missing_goods_issue")
        .map(|e| e.object.value.to_string())
        .collect();
    assert_eq!(lapsed.len(), 2, "{lapsed:?}");
    assert!(lapsed.contains(&"SH-A".to_string()) && lapsed.contains(&"SH-B".to_string()));
    assert_eq!(h.correlator.schedule.len(), 0);
}

#[test]
fn a_deadline_passed_by_business_time_fires_before_the_next_exchange_is_applied() {
    let mut h = Harness::new();
    h.observe(
        0.0,
        &[("order", "SO-13"), ("shipment", "SH-13")],
        Some("packed"),
    );
    h.observe(1.0, &[("shipment", "SH-13")], Some("shipped"));
    // No tick came, but an exchange stamped after the deadline did.
    h.observe(2.0, &[("order", "SO-99")], Some("order_released"));
    assert_eq!(
        h.exceptions("order", "SO-13"),
        vec![open("missing_goods_issue")]
    );
}

// === durability ===

mod durability {
    use super::*;
    use crate::state::durable::Durable;

    /// Every transaction as the admin API shows it, in name order.
    fn picture(correlator: &Correlator) -> Vec<serde_json::Value> {
        let mut all: Vec<&Transaction> = correlator.store.iter().collect();
        all.sort_by_key(|tx| tx.name().to_string());
        all.iter()
            .map(|tx| {
                serde_json::to_value(tx.json(Names::of(&correlator.config))).expect("serializable")
            })
            .collect()
    }

    /// A busy history: links, a merge, a split shipment, retries, a
    /// duplicate, a lapsed expectation, a pending one.
    pub(super) fn history(h: &mut Harness) {
        h.observe(0.0, &[("order", "SO-1")], Some("order_released"));
        h.observe(0.5, &[("shipment", "SH-1")], Some("packed"));
        h.observe(0.6, &[("order", "SO-1"), ("shipment", "SH-1")], None);
        h.observe(
            0.7,
            &[("order", "SO-1"), ("shipment", "SH-2")],
            Some("packed"),
        );
        h.observe(1.0, &[("shipment", "SH-1")], Some("shipped"));
        h.attempt(1.1, "SO-2", 503, None);
        h.attempt(1.2, "SO-2", 200, Some("a"));
        h.attempt(1.3, "SO-2", 200, Some("b"));
        h.tick(1.5);
        h.observe(2.0, &[("shipment", "SH-2")], Some("shipped"));
    }

    fn fresh() -> Correlator {
        let h = Harness::new();
        h.correlator
    }

    #[tokio::test]
    async fn replaying_the_journal_rebuilds_exactly_the_same_state() {
        let mut h = Harness::new();
        history(&mut h);
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut durable =
                Durable::open_dir(dir.path(), &mut Registry::default()).expect("open");
            durable.recover().expect("empty store");
            durable.commit(&h.journal).await.expect("commit");
        }
        let mut restored = fresh();
        let durable = Durable::open_dir(dir.path(), &mut Registry::default()).expect("reopen");
        let recovery = restored.recover(durable).expect("recover");
        assert_eq!(recovery.observations + recovery.ticks, h.journal.len());
        assert_eq!(recovery.skipped, 0);
        assert_eq!(picture(&restored), picture(&h.correlator));
        assert_eq!(restored.next_exception, h.correlator.next_exception);
        assert_eq!(restored.schedule.len(), h.correlator.schedule.len());
        assert_eq!(restored.last_exchange(), h.next_id);
    }

    /// A data directory holding `h`'s journal, compacted into a snapshot.
    pub(super) async fn snapshotted(h: &Harness) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut durable = Durable::open_dir(dir.path(), &mut Registry::default()).expect("open");
        durable.recover().expect("empty store");
        durable.commit(&h.journal).await.expect("commit");
        durable
            .snapshot(&h.correlator.snapshot())
            .await
            .expect("snapshot");
        dir
    }

    #[tokio::test]
    async fn a_snapshot_round_trips_every_transaction_and_deadline() {
        let mut h = Harness::new();
        history(&mut h);
        let dir = snapshotted(&h).await;
        let mut restored = fresh();
        let durable = Durable::open_dir(dir.path(), &mut Registry::default()).expect("reopen");
        let recovery = restored.recover(durable).expect("recover");
        assert_eq!(
            recovery.observations + recovery.ticks,
            0,
            "the journal was compacted"
        );
        assert_eq!(recovery.snapshot_transactions, h.correlator.store.len());
        assert_eq!(picture(&restored), picture(&h.correlator));
        assert_eq!(restored.store.next_id(), h.correlator.store.next_id());
        assert_eq!(restored.next_exception, h.correlator.next_exception);

        // The expectation on SH-2 (shipped at 2h, due 2h15m) still fires.
        let key = h.key("shipment", "SH-2");
        let sh2 = |c: &Correlator| {
            let id = c.store.find(&key).expect("known");
            c.store
                .get(id)
                .expect("held")
                .exceptions()
                .iter()
                .filter(|e| {
                    e.kind.as_str() == "missing_goods_issue"
                        && e.object.to_string() == "shipment:SH-2"
                })
                .count()
        };
        assert_eq!(sh2(&restored), 0);
        restored.tick(at(2.3));
        h.tick(2.3);
        assert_eq!(sh2(&restored), 1);
        assert_eq!(picture(&restored), picture(&h.correlator));
    }

    #[tokio::test]
    async fn a_pending_expectation_finds_its_rule_by_name_after_expectations_are_reordered() {
        let mut h = Harness::new();
        history(&mut h);
        let dir = snapshotted(&h).await;
        // The restarted sidecar's config has a new expectation first: the
        // saved deadline (position 0 when saved) belongs to the second now.
        let reordered = CONFIG.replace(
            "expectations:\n",
            "expectations:\n  - { after: order_released, expect: shipped, within: 30d, exception: order_not_shipped, owner: wms }\n",
        );
        let config = Arc::new(Config::from_yaml(&reordered, "test.yaml").expect("valid"));
        assert_eq!(
            config.expectations[1].exception.as_str(),
            "missing_goods_issue"
        );
        let mut registry = Registry::default();
        let (mut restored, _tx, _handle, _inbox) =
            Correlator::new(config, Clock::system(), 16, &mut registry);
        let durable = Durable::open_dir(dir.path(), &mut registry).expect("reopen");
        let recovery = restored.recover(durable).expect("recover");
        assert_eq!(recovery.skipped, 0);

        // The expectation on SH-2 (shipped at 2h, due 2h15m) opens what it
        // said it would, on the object it was about.
        restored.tick(at(2.3));
        let key = h.key("shipment", "SH-2");
        let id = restored.store.find(&key).expect("known");
        let kinds: Vec<(String, String)> = restored
            .store
            .get(id)
            .expect("held")
            .exceptions()
            .iter()
            .map(|e| (e.kind.as_str().to_owned(), e.object.to_string()))
            .collect();
        assert!(
            kinds.contains(&("missing_goods_issue".into(), "shipment:SH-2".into())),
            "{kinds:?}"
        );
        assert!(
            !kinds.iter().any(|(kind, _)| kind == "order_not_shipped"),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn replay_tells_no_observer_and_counts_no_flow_again() {
        struct Counting(Arc<std::sync::atomic::AtomicUsize>);
        impl Observer for Counting {
            fn correlated(&mut self, _: &Correlated<'_>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut h = Harness::new();
        history(&mut h);
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut durable =
                Durable::open_dir(dir.path(), &mut Registry::default()).expect("open");
            durable.recover().expect("empty store");
            durable.commit(&h.journal).await.expect("commit");
        }
        let config = Arc::clone(&h.config);
        let mut registry = Registry::default();
        let (mut restored, _tx, handle, _inbox) =
            Correlator::new(config, Clock::system(), 16, &mut registry);
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        restored.observe_with(Box::new(Counting(Arc::clone(&told))));
        let durable = Durable::open_dir(dir.path(), &mut registry).expect("reopen");
        restored.recover(durable).expect("recover");
        assert_eq!(told.load(Ordering::Relaxed), 0);
        assert_eq!(handle.applied(), 0);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        let flows: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("waybill_flows_total"))
            .collect();
        assert!(
            !flows.is_empty() && flows.iter().all(|l| l.ends_with(" 0")),
            "{out}"
        );
        assert!(
            out.contains("waybill_state_recovered_observations_total"),
            "{out}"
        );
        assert!(
            out.contains(r#"waybill_transactions_in_flight{milestone="shipped"}"#),
            "{out}"
        );
    }
}

// === trace IDs: kept with the transaction, always the trace of its name ===

mod trace_ids {
    use std::sync::Mutex;

    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    use super::*;
    use crate::state::durable::Durable;
    use crate::telemetry::spans::SpanObserver;
    use crate::telemetry::trace_id;

    /// The trace ID of every exchange span the correlator's events yield,
    /// decoded from the encoded span, in order.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    struct SpanTraces(SpanObserver, Seen);

    impl Observer for SpanTraces {
        fn correlated(&mut self, event: &Correlated<'_>) {
            let spans = self.0.spans(event);
            let span = Span::decode(spans[0].as_bytes()).expect("a valid OTLP Span");
            self.1.lock().expect("not poisoned").push(span.trace_id);
        }
    }

    fn watch(correlator: &mut Correlator) -> Seen {
        let seen = Seen::default();
        let observer = SpanObserver::new(
            Arc::clone(&correlator.config),
            None,
            &mut Registry::default(),
        );
        correlator.observe_with(Box::new(SpanTraces(observer, Arc::clone(&seen))));
        seen
    }

    fn last(seen: &Seen) -> Vec<u8> {
        seen.lock()
            .expect("not poisoned")
            .last()
            .cloned()
            .expect("a span")
    }

    fn trace_of(h: &Harness, kind: &str, value: &str) -> Vec<u8> {
        trace_id(&h.key(kind, value)).to_bytes().to_vec()
    }

    /// Every transaction's kept trace ID is the derivation of its name.
    fn all_consistent(correlator: &Correlator) {
        for tx in correlator.store.iter() {
            assert_eq!(
                tx.trace_id(),
                trace_id(&tx.name().to_key()),
                "{}",
                tx.name()
            );
        }
    }

    #[test]
    fn a_root_key_arriving_later_moves_the_spans_to_its_trace() {
        let mut h = Harness::new();
        let seen = watch(&mut h.correlator);
        h.observe(0.0, &[("shipment", "SH-1")], Some("packed"));
        assert_eq!(last(&seen), trace_of(&h, "shipment", "SH-1"));
        h.observe(0.5, &[("order", "SO-1"), ("shipment", "SH-1")], None);
        assert_eq!(last(&seen), trace_of(&h, "order", "SO-1"));
        h.observe(1.0, &[("shipment", "SH-1")], Some("shipped"));
        assert_eq!(last(&seen), trace_of(&h, "order", "SO-1"));
        assert_ne!(
            trace_of(&h, "order", "SO-1"),
            trace_of(&h, "shipment", "SH-1")
        );
        all_consistent(&h.correlator);
    }

    #[test]
    fn merged_transactions_yield_spans_in_the_trace_of_the_merged_name() {
        // Either transaction may be the older one (the one kept).
        for order_first in [false, true] {
            let mut h = Harness::new();
            let seen = watch(&mut h.correlator);
            let shipment = [("shipment", "SH-9"), ("tracking", "1Z9")];
            if order_first {
                h.observe(0.0, &[("order", "SO-9")], Some("order_released"));
                h.observe(1.0, &shipment, Some("label_created"));
            } else {
                h.observe(1.0, &shipment, Some("label_created"));
                h.observe(0.0, &[("order", "SO-9")], Some("order_released"));
            }
            assert_eq!(h.correlator.store.len(), 2);
            h.observe(2.0, &[("order", "SO-9"), ("shipment", "SH-9")], None);
            assert_eq!(h.correlator.store.len(), 1, "merged");
            assert_eq!(last(&seen), trace_of(&h, "order", "SO-9"));
            h.observe(3.0, &[("tracking", "1Z9")], Some("delivered"));
            assert_eq!(last(&seen), trace_of(&h, "order", "SO-9"), "{order_first}");
            all_consistent(&h.correlator);
        }
    }

    #[tokio::test]
    async fn after_a_restart_renamed_transactions_keep_the_trace_of_their_name() {
        let mut h = Harness::new();
        // SH-1 is seen alone first, then linked to its order: renamed.
        super::durability::history(&mut h);
        let dir = super::durability::snapshotted(&h).await;
        // From the snapshot (no journal left), then from a journal only.
        let journal = tempfile::tempdir().expect("temp dir");
        {
            let mut durable =
                Durable::open_dir(journal.path(), &mut Registry::default()).expect("open");
            durable.recover().expect("empty store");
            durable.commit(&h.journal).await.expect("commit");
        }
        for data in [dir.path(), journal.path()] {
            let mut restored = Harness::new();
            let durable = Durable::open_dir(data, &mut Registry::default()).expect("reopen");
            restored.correlator.recover(durable).expect("recover");
            all_consistent(&restored.correlator);
            let seen = watch(&mut restored.correlator);
            restored.next_id = h.next_id;
            restored.observe(3.0, &[("shipment", "SH-1")], Some("delivered"));
            assert_eq!(last(&seen), trace_of(&h, "order", "SO-1"));
        }
    }
}

//! The driver: plays the integration traffic between the systems for each
//! planned order, sending every call through the sidecar's listeners, and
//! keeps a [`Tally`] of what it did so the summary can be checked against
//! what the sidecar reconstructed.
//!
//! One order walks: release (ERP → WMS) → allocate → pick → pack; then for
//! each shipment: book with the carrier → buy the label (retrying on 503 up
//! to [`LABEL_ATTEMPTS`]) → ship confirm (WMS) → goods issue (WMS → ERP) →
//! delivery webhook (carrier → ERP, tracking code only) → freight invoice
//! (carrier → ERP). The plan's surprises and [`Incident`]s bend that walk
//! for a few orders; every exception they should make the sidecar open is
//! recorded as an [`Injection`], so the summary can set the sidecar's
//! exceptions next to them. Waits between steps are business durations
//! divided by the demo's speed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::carrier::Outages;
use super::erp::GOODS_ISSUE_PATH;
use super::plan::{
    Incident, OrderPlan, Rng, LABEL_ATTEMPTS, UNINVOICED_PATIENCE, UNSHIPPED_PATIENCE,
};
use crate::clock::Clock;

/// Requests in flight at once, across all orders. Orders mostly sleep
/// between steps, so every order runs as its own task and only the calls
/// are bounded: enough to keep the sidecar busy on two cores without
/// opening hundreds of sockets.
pub const MAX_IN_FLIGHT: usize = 32;
/// A call that takes longer than this (real time) fails the order.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Errors kept verbatim in the tally; the rest are only counted.
const ERRORS_KEPT: usize = 5;

// The exception kinds of the example config the driver's surprises open.
pub const DUPLICATE_SHIPMENT: &str = "duplicate_shipment";
pub const CARRIER_RETRY_EXHAUSTED: &str = "carrier_retry_exhausted";
pub const MISSING_GOODS_ISSUE: &str = "missing_goods_issue";
pub const OUT_OF_ORDER: &str = "out_of_order";
pub const LABEL_NOT_SHIPPED: &str = "label_not_shipped";
pub const MISSING_FREIGHT_INVOICE: &str = "missing_freight_invoice";
pub const UNMATCHED_FREIGHT_INVOICE: &str = "unmatched_freight_invoice";

/// What the driver does to open an exception of `kind`, in a few words.
pub fn how_injected(kind: &str) -> &'static str {
    match kind {
        DUPLICATE_SHIPMENT => "booked twice, new Idempotency-Key",
        CARRIER_RETRY_EXHAUSTED => "label 503 to the last retry, bought by hand later",
        MISSING_GOODS_ISSUE => "goods issue never posted",
        OUT_OF_ORDER => "goods issue posted before the ship confirm",
        LABEL_NOT_SHIPPED => "label bought, parcel never shipped",
        MISSING_FREIGHT_INVOICE => "delivered, never invoiced",
        UNMATCHED_FREIGHT_INVOICE => "invoice for a tracking number never seen",
        _ => "",
    }
}

/// An exception the driver set up on purpose for the sidecar to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The exception kind the example config opens for it.
    pub kind: &'static str,
    pub order_id: String,
    /// The shipment it is about (for a stray invoice: its tracking code).
    pub object: String,
    /// The driver later sent what resolves it (the label bought by hand,
    /// the late ship confirm).
    pub resolved: bool,
}

/// Injections of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    pub count: usize,
    /// Of those, how many the driver resolved later.
    pub resolved: usize,
}

/// Base URLs (`http://127.0.0.1:port`) of the sidecar listeners the driver
/// talks through, one per system being called.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub erp: String,
    pub wms: String,
    pub carrier: String,
}

/// What the driver did, counted on its side of the wire.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Orders started.
    pub orders: usize,
    /// Orders walked all the way to the freight invoice.
    pub finished: usize,
    /// Orders stopped by an unexpected answer (see `errors`) or by shutdown.
    pub abandoned: usize,
    /// Orders the WMS packed into more than one shipment.
    pub split_orders: usize,
    pub shipments: usize,
    /// `503` answers the carrier gave to label purchases (each followed by
    /// another purchase: a retry, or a person's purchase by hand).
    pub carrier_unavailable: usize,
    /// Carrier bookings sent a second time for the same shipment.
    pub duplicate_bookings: usize,
    /// Carrier bookings resent with the same idempotency key (timeout
    /// retries): the sidecar's idempotency guard should answer each.
    pub booking_retries: usize,
    /// Shipments whose goods issue was never posted to the ERP.
    pub lost_goods_issues: usize,
    /// Requests sent with a truncated JSON body (answered 400, then resent).
    pub malformed_bodies: usize,
    /// Shipments left at their label, never shipped.
    pub unshipped_labels: usize,
    /// Orders whose every shipment was left at its label: the sidecar
    /// should list their transactions as stuck at `label_created`.
    pub unshipped_orders: usize,
    /// Freight invoices for tracking numbers no shipment had; each makes
    /// a transaction of its own, with no order.
    pub stray_invoices: usize,
    /// Every exception the driver set up, in no particular order.
    pub injected: Vec<Injection>,
    /// Every HTTP call made.
    pub requests: usize,
    /// Each shipment that got a tracking code, for lookups.
    pub deliveries: Vec<Delivery>,
    /// The first few unexpected failures, verbatim.
    pub errors: Vec<String>,
}

/// How far the orders have got: orders released, shipments shipped and
/// shipments freight-invoiced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub released: usize,
    pub shipped: usize,
    pub invoiced: usize,
}

/// A shipment and the keys it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub order_id: String,
    pub shipment_id: String,
    pub tracking_code: String,
}

/// Sends the traffic of the planned orders.
pub struct Driver {
    client: reqwest::Client,
    endpoints: Endpoints,
    /// Business seconds per real second.
    speed: f64,
    /// Business time, for the timestamps the systems put in payloads.
    clock: Clock,
    in_flight: Semaphore,
    /// The carrier's lever for label service outages.
    outages: Outages,
    requests: AtomicUsize,
    /// Counters for the progress line, read while orders run.
    released: AtomicUsize,
    shipped: AtomicUsize,
    invoiced: AtomicUsize,
    shutdown: CancellationToken,
}

impl Tally {
    /// Injections by exception kind.
    pub fn injected(&self) -> BTreeMap<&'static str, Injected> {
        let mut by_kind: BTreeMap<&'static str, Injected> = BTreeMap::new();
        for injection in &self.injected {
            let entry = by_kind.entry(injection.kind).or_default();
            entry.count += 1;
            entry.resolved += usize::from(injection.resolved);
        }
        by_kind
    }
}

/// What happened to one shipment.
#[derive(Default)]
struct ShipmentRecord {
    carrier_unavailable: usize,
    duplicate_booking: bool,
    booking_retry: bool,
    lost_goods_issue: bool,
    malformed_bodies: usize,
    unshipped: bool,
    stray_invoices: usize,
    injected: Vec<Injection>,
    delivery: Option<Delivery>,
}

impl ShipmentRecord {
    fn inject(&mut self, kind: &'static str, order_id: &str, object: &str, resolved: bool) {
        self.injected.push(Injection {
            kind,
            order_id: order_id.to_owned(),
            object: object.to_owned(),
            resolved,
        });
    }

    /// The driver just sent what resolves the injections of `kind`.
    fn resolved(&mut self, kind: &str) {
        for injection in self.injected.iter_mut().filter(|i| i.kind == kind) {
            injection.resolved = true;
        }
    }
}

/// What to do differently for one shipment.
#[derive(Clone, Copy, Default)]
struct Surprises {
    duplicate_booking: bool,
    retry_booking: bool,
    lose_goods_issue: bool,
    malformed_webhook: bool,
    incident: Option<Incident>,
}

impl Driver {
    pub fn new(
        endpoints: Endpoints,
        outages: Outages,
        speed: f64,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build()
            .context("building the HTTP client")?;
        Ok(Driver {
            client,
            endpoints,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
            clock,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            outages,
            requests: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            shipped: AtomicUsize::new(0),
            invoiced: AtomicUsize::new(0),
            shutdown,
        })
    }

    /// Drives every planned order concurrently and returns the tally once
    /// all have finished (or stopped, when `shutdown` is cancelled).
    pub async fn drive(self: Arc<Self>, plans: Vec<OrderPlan>) -> Tally {
        let mut tally = Tally {
            orders: plans.len(),
            ..Tally::default()
        };
        let mut orders = JoinSet::new();
        for plan in plans {
            let driver = Arc::clone(&self);
            orders.spawn(async move {
                let order_id = plan.order_id.clone();
                let mut shipments = Vec::new();
                let outcome = driver.order(plan, &mut shipments).await;
                (order_id, outcome, shipments)
            });
        }
        while let Some(joined) = orders.join_next().await {
            let (order_id, outcome, shipments) = match joined {
                Ok(done) => done,
                Err(e) => {
                    tally.abandoned += 1;
                    keep_error(&mut tally, format!("order task failed: {e}"));
                    continue;
                }
            };
            if shipments.len() > 1 {
                tally.split_orders += 1;
            }
            if !shipments.is_empty() && shipments.iter().all(|s| s.unshipped) {
                tally.unshipped_orders += 1;
            }
            tally.shipments += shipments.len();
            for shipment in shipments {
                tally.carrier_unavailable += shipment.carrier_unavailable;
                tally.duplicate_bookings += usize::from(shipment.duplicate_booking);
                tally.booking_retries += usize::from(shipment.booking_retry);
                tally.lost_goods_issues += usize::from(shipment.lost_goods_issue);
                tally.malformed_bodies += shipment.malformed_bodies;
                tally.unshipped_labels += usize::from(shipment.unshipped);
                tally.stray_invoices += shipment.stray_invoices;
                tally.injected.extend(shipment.injected);
                tally.deliveries.extend(shipment.delivery);
            }
            match outcome {
                Ok(()) => tally.finished += 1,
                Err(_) if self.shutdown.is_cancelled() => tally.abandoned += 1,
                Err(e) => {
                    tally.abandoned += 1;
                    keep_error(&mut tally, format!("{order_id}: {e:#}"));
                }
            }
        }
        tally.requests = self.requests.load(Ordering::Relaxed);
        tally
            .deliveries
            .sort_by(|a, b| a.shipment_id.cmp(&b.shipment_id));
        tally
    }

    /// Walks one order; `shipments` is filled as shipments progress so a
    /// failure late in the walk still reports what happened before it.
    async fn order(
        &self,
        mut plan: OrderPlan,
        shipments: &mut Vec<ShipmentRecord>,
    ) -> anyhow::Result<()> {
        let order_id = plan.order_id.clone();
        let rng = &mut plan.rng;
        self.pause(plan.release_after).await?;

        let lines: Vec<Value> = plan
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "line": 10 * (i + 1),
                    "sku": l.sku,
                    "description": l.description,
                    "qty": l.qty,
                    "uom": "EA",
                    "zone": l.zone,
                    "unit_weight_kg": l.unit_weight_kg,
                })
            })
            .collect();
        let release = json!({
            "order_id": order_id,
            "order_type": "ZOR",
            "sales_org": "1010",
            "customer": { "name": plan.customer },
            "ship_to": { "name": plan.customer, "city": plan.city, "country": country(plan.city) },
            "released_at": self.now(),
            "lines": lines,
        });
        let wms = &self.endpoints.wms;
        self.expect_ok(
            "release order",
            self.client.post(format!("{wms}/api/orders")).json(&release),
        )
        .await?;
        self.released.fetch_add(1, Ordering::Relaxed);

        self.pause(rng.allocate_delay()).await?;
        self.expect_ok(
            "allocate",
            self.client
                .post(format!("{wms}/api/orders/{order_id}/allocate"))
                .json(
                    &json!({ "strategy": "FEFO", "wave": format!("W-{:04}", rng.below(10_000)) }),
                ),
        )
        .await?;

        self.pause(rng.pick_delay()).await?;
        self.expect_ok(
            "pick",
            self.client
                .post(format!("{wms}/api/orders/{order_id}/pick"))
                .json(&json!({ "picker": format!("P-{:02}", 1 + rng.below(24)), "tote": format!("T-{:04}", rng.below(10_000)) })),
        )
        .await?;

        self.pause(rng.pack_delay()).await?;
        let packed = self
            .expect_ok(
                "pack",
                self.client
                    .post(format!("{wms}/api/orders/{order_id}/pack"))
                    .json(&json!({ "station": format!("PACK-{:02}", 1 + rng.below(6)) })),
            )
            .await?;
        let parcels: Vec<Value> = packed["shipments"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("pack answered without shipments"))?;

        let surprises = Surprises {
            duplicate_booking: plan.duplicate_booking,
            retry_booking: plan.retry_booking,
            lose_goods_issue: plan.lose_goods_issue,
            malformed_webhook: plan.malformed_webhook,
            incident: plan.incident,
        };
        let walks = parcels.iter().enumerate().map(|(i, parcel)| {
            // Surprises hit the first shipment only, except a missed truck,
            // which all of the order's parcels miss; each shipment draws
            // its durations from its own stream.
            let surprises = if i == 0 {
                surprises
            } else {
                Surprises {
                    incident: surprises.incident.filter(|i| *i == Incident::NeverShipped),
                    ..Surprises::default()
                }
            };
            let rng = Rng::new(rng.next_u64());
            let (order_id, city) = (order_id.as_str(), plan.city);
            async move {
                let mut record = ShipmentRecord::default();
                let outcome = self
                    .shipment(order_id, city, parcel, surprises, rng, &mut record)
                    .await;
                (record, outcome)
            }
        });
        let mut first_error = None;
        for (record, outcome) in join_all(walks.collect::<Vec<_>>()).await {
            shipments.push(record);
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Walks one shipment from carrier booking to freight invoice.
    async fn shipment(
        &self,
        order_id: &str,
        city: &str,
        parcel: &Value,
        surprises: Surprises,
        mut rng: Rng,
        record: &mut ShipmentRecord,
    ) -> anyhow::Result<()> {
        let shipment_id = parcel["shipment_id"]
            .as_str()
            .ok_or_else(|| anyhow!("pack answered a shipment without shipment_id"))?
            .to_owned();
        let (carrier, wms, erp) = (
            &self.endpoints.carrier,
            &self.endpoints.wms,
            &self.endpoints.erp,
        );

        self.pause(rng.booking_delay()).await?;
        let booking = json!({
            "shipment_id": shipment_id,
            "reference": order_id,
            "from_address": { "company": "Waybill Demo DC", "city": "Venlo", "country": "NL" },
            "to_address": { "city": city, "country": country(city) },
            "parcel": { "weight_kg": parcel["weight_kg"], "dimensions": parcel["parcel"] },
            "options": { "label_format": "ZPL" },
        });
        let book = |attempt: u32| {
            self.client
                .post(format!("{carrier}/v2/shipments"))
                .header("idempotency-key", format!("book-{shipment_id}-{attempt}"))
                .json(&booking)
        };
        let booked = self.expect_ok("book shipment", book(1)).await?;
        if surprises.retry_booking {
            // The client gave up waiting and sends the very same request
            // again: the sidecar's idempotency guard answers it with the
            // first response, and the carrier books nothing new.
            record.booking_retry = true;
            let again = self
                .expect_ok("book shipment, timeout retry", book(1))
                .await?;
            if again != booked {
                bail!("book shipment: the timeout retry got a different answer than the first");
            }
        }
        if surprises.duplicate_booking {
            // The client timed out waiting for the first answer and books
            // again, with a fresh idempotency key: the carrier books twice.
            record.duplicate_booking = true;
            record.inject(DUPLICATE_SHIPMENT, order_id, &shipment_id, false);
            self.expect_ok("book shipment again", book(2)).await?;
        }

        self.pause(rng.label_delay()).await?;
        let buy = json!({ "rate": { "id": booked["rates"][0]["id"] } });
        let buy_url = format!("{carrier}/v2/shipments/{shipment_id}/buy");
        if surprises.incident == Some(Incident::LabelOutage) {
            self.outages
                .label_service_down(&shipment_id, LABEL_ATTEMPTS);
        }
        let mut bought = None;
        for attempt in 1..=LABEL_ATTEMPTS {
            let (status, body) = self
                .send(self.client.post(&buy_url).json(&buy))
                .await
                .context("buy label")?;
            if status.is_success() {
                bought = Some(body);
                break;
            }
            if status != StatusCode::SERVICE_UNAVAILABLE {
                bail!("buy label: carrier answered {status}");
            }
            record.carrier_unavailable += 1;
            if attempt < LABEL_ATTEMPTS {
                self.pause(rng.retry_delay()).await?;
            }
        }
        let label = match bought {
            Some(label) => label,
            None => {
                // The WMS gave up; the shipment waits on hold until a
                // person buys its label by hand, which the carrier sells.
                record.inject(CARRIER_RETRY_EXHAUSTED, order_id, &shipment_id, false);
                self.pause(rng.manual_label_delay()).await?;
                let label = self
                    .expect_ok("buy label (by hand)", self.client.post(&buy_url).json(&buy))
                    .await?;
                record.resolved(CARRIER_RETRY_EXHAUSTED);
                label
            }
        };
        let tracking_code = label["tracking_code"]
            .as_str()
            .ok_or_else(|| anyhow!("label without tracking_code"))?
            .to_owned();
        let amount = label["selected_rate"]["rate"].clone();
        record.delivery = Some(Delivery {
            order_id: order_id.to_owned(),
            shipment_id: shipment_id.clone(),
            tracking_code: tracking_code.clone(),
        });

        if surprises.incident == Some(Incident::NeverShipped) {
            // The truck was missed and the parcel never leaves the dock.
            // The WMS shows the shipment as labelled; the driver waits past
            // every deadline about it and gives up.
            record.unshipped = true;
            record.inject(LABEL_NOT_SHIPPED, order_id, &shipment_id, false);
            return self.pause(UNSHIPPED_PATIENCE).await;
        }

        self.pause(rng.ship_delay()).await?;
        let goods_issue = || {
            self.expect_ok(
                "goods issue",
                self.client
                    .post(format!("{erp}{GOODS_ISSUE_PATH}"))
                    .query(&[
                        ("DeliveryDocument", shipment_id.as_str()),
                        ("sap-client", "100"),
                    ])
                    .header("x-csrf-token", "demo-7f3a9c")
                    .header("accept", "application/json"),
            )
        };
        let early_goods_issue = surprises.incident == Some(Incident::GoodsIssueFirst);
        if early_goods_issue {
            // The dock's handheld was offline: the goods issue went from
            // the loading list to the ERP, the ship confirm comes later.
            goods_issue().await?;
            record.inject(OUT_OF_ORDER, order_id, &shipment_id, false);
            self.pause(rng.late_confirm_delay()).await?;
        }
        self.expect_ok(
            "ship confirm",
            self.client
                .post(format!("{wms}/api/shipments/{shipment_id}/ship"))
                .json(&json!({
                    "tracking_code": tracking_code,
                    "carrier": "UPS",
                    "dock": format!("D-{}", 1 + rng.below(4)),
                    "shipped_at": self.now(),
                })),
        )
        .await?;
        self.shipped.fetch_add(1, Ordering::Relaxed);

        if early_goods_issue {
            // Posted already; the ship confirm resolves what it opened.
            record.resolved(OUT_OF_ORDER);
        } else if surprises.lose_goods_issue {
            // The WMS → ERP interface drops this one: no goods issue, ever.
            record.lost_goods_issue = true;
            record.inject(MISSING_GOODS_ISSUE, order_id, &shipment_id, false);
        } else {
            self.pause(rng.goods_issue_delay()).await?;
            goods_issue().await?;
        }

        self.pause(rng.delivery_delay()).await?;
        let event = json!({
            "event": "tracker.updated",
            "tracking_code": tracking_code,
            "status": "delivered",
            "delivered_at": self.now(),
            "signed_by": "M. KELLER",
        });
        let webhook_url = format!("{erp}/webhooks/carrier/delivered");
        if surprises.malformed_webhook {
            // The carrier's webhook sender cuts the body short; the ERP
            // refuses it and the carrier redelivers.
            let text = event.to_string();
            let cut = text.len() * 2 / 3;
            let truncated = text.get(..cut).unwrap_or(&text).to_owned();
            record.malformed_bodies += 1;
            let (status, _) = self
                .send(
                    self.client
                        .post(&webhook_url)
                        .header("content-type", "application/json")
                        .body(truncated),
                )
                .await
                .context("truncated webhook")?;
            if status != StatusCode::BAD_REQUEST {
                bail!("truncated webhook: ERP answered {status}, expected 400");
            }
            self.pause(rng.redelivery_delay()).await?;
        }
        self.expect_ok(
            "delivered webhook",
            self.client.post(&webhook_url).json(&event),
        )
        .await?;

        if surprises.incident == Some(Incident::NeverInvoiced) {
            // The carrier's billing run skips it; the driver waits past
            // the week the example config gives it, then stops waiting.
            record.inject(MISSING_FREIGHT_INVOICE, order_id, &shipment_id, false);
            return self.pause(UNINVOICED_PATIENCE).await;
        }

        self.pause(rng.invoice_delay()).await?;
        let line = json!({
            "shipment_id": shipment_id,
            "tracking_code": tracking_code,
            "service": "Standard",
            "amount": amount,
        });
        self.freight_invoice(&tracking_code, line).await?;
        self.invoiced.fetch_add(1, Ordering::Relaxed);

        if surprises.incident == Some(Incident::StrayInvoice) {
            // In the same billing run: a label someone bought by hand on
            // the carrier's portal. Its line has a tracking number and no
            // shipment of ours.
            let stray = format!("1ZW4Y83X66{:08}", rng.below(100_000_000));
            let line = json!({
                "tracking_code": stray,
                "service": "Standard",
                "reference": "portal",
                "amount": "11.40",
            });
            self.freight_invoice(&stray, line).await?;
            record.stray_invoices += 1;
            record.inject(UNMATCHED_FREIGHT_INVOICE, order_id, &stray, false);
        }
        Ok(())
    }

    /// Posts the carrier's freight invoice for one `line`, numbered after
    /// its `tracking_code`.
    async fn freight_invoice(&self, tracking_code: &str, line: Value) -> anyhow::Result<()> {
        let digits = tracking_code
            .get(tracking_code.len().saturating_sub(8)..)
            .unwrap_or(tracking_code);
        let invoice_number = format!("INV-UPS-{digits}");
        self.expect_ok(
            "freight invoice",
            self.client
                .post(format!("{}/api/freight-invoices", self.endpoints.erp))
                .header("x-carrier-invoice", &invoice_number)
                .json(&json!({
                    "invoice_number": invoice_number,
                    "carrier": "UPS",
                    "invoice_date": self.now(),
                    "currency": "EUR",
                    "lines": [line],
                })),
        )
        .await
        .map(drop)
    }

    /// How far the orders have got, while they run.
    pub fn progress(&self) -> Progress {
        Progress {
            released: self.released.load(Ordering::Relaxed),
            shipped: self.shipped.load(Ordering::Relaxed),
            invoiced: self.invoiced.load(Ordering::Relaxed),
        }
    }

    /// Sends one request, bounded by [`MAX_IN_FLIGHT`], and reads its JSON
    /// answer (`null` when the body is not JSON).
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let _permit = self.in_flight.acquire().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Sends one request that must succeed, returning its JSON answer.
    async fn expect_ok(
        &self,
        step: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.send(request).await.with_context(|| step.to_owned())?;
        if !status.is_success() {
            bail!("{step}: answered {status}: {body}");
        }
        Ok(body)
    }

    /// Waits `business` time, compressed by the speed; fails on shutdown.
    async fn pause(&self, business: Duration) -> anyhow::Result<()> {
        let real = business.div_f64(self.speed);
        tokio::select! {
            () = tokio::time::sleep(real) => Ok(()),
            () = self.shutdown.cancelled() => bail!("shutting down"),
        }
    }

    /// The business time now, as the systems write it in payloads.
    fn now(&self) -> String {
        humantime::format_rfc3339_seconds(self.clock.now()).to_string()
    }
}

fn keep_error(tally: &mut Tally, error: String) {
    if tally.errors.len() < ERRORS_KEPT {
        tally.errors.push(error);
    }
}

fn country(city: &str) -> &'static str {
    match city {
        "Hamburg" | "München" => "DE",
        "Rotterdam" => "NL",
        "Valencia" => "ES",
        "Bergen" => "NO",
        _ => "FR",
    }
}

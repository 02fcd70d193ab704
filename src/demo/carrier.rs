//! The simulated parcel carrier: a shipments API in the style of EasyPost or
//! Shippo. Booking a shipment returns rates; buying one returns a label and
//! a `1Z…` tracking code. A booking repeated with the same `Idempotency-Key`
//! is answered from the first; with a new key the carrier books (and will
//! bill) the shipment again, as real carriers do for a client that times
//! out and retries blindly.
//!
//! The carrier is sometimes overloaded: for about one shipment in seven
//! (decided from the seed and the shipment ID, so runs repeat) the first
//! label purchase answers `503 Service Unavailable` with `Retry-After`;
//! the retry succeeds. Through [`Outages`] the demo can also take the label
//! service down for one shipment for a number of purchases in a row (the
//! plan decides which), so a client's retries run out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::plan::{hash_str, mix};

/// One in this many shipments gets a 503 on its first label purchase.
const OVERLOAD_ONE_IN: u64 = 7;

/// The carrier's HTTP API. `seed` decides which label purchases fail first;
/// the returned [`Outages`] takes the label service down for chosen shipments.
pub fn router(seed: u64) -> (Router, CarrierStats, Outages) {
    let carrier = Carrier {
        seed,
        shipments: Arc::default(),
        stats: CarrierStats::default(),
        outages: Outages::default(),
    };
    let stats = carrier.stats.clone();
    let outages = carrier.outages.clone();
    let router = Router::new()
        .route("/v2/shipments", post(create_shipment))
        .route("/v2/shipments/{shipment_id}/buy", post(buy_label))
        .with_state(carrier);
    (router, stats, outages)
}

/// Label purchases the carrier will refuse, per shipment: the simulation's
/// lever for an outage that outlasts a client's retries.
#[derive(Clone, Default)]
pub struct Outages(Arc<Mutex<HashMap<String, u32>>>);

impl Outages {
    /// The next `purchases` label purchases of `shipment_id` answer 503.
    pub fn label_service_down(&self, shipment_id: &str, purchases: u32) {
        self.lock().insert(shipment_id.to_owned(), purchases);
    }

    /// True (and one fewer to come) when this purchase of `shipment_id`
    /// falls into an outage.
    fn refuse(&self, shipment_id: &str) -> bool {
        let mut outages = self.lock();
        match outages.get_mut(shipment_id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// True when the carrier answers the first label purchase of `shipment_id`
/// with 503 under `seed`.
pub fn overloaded_on_first_buy(seed: u64, shipment_id: &str) -> bool {
    mix(seed ^ hash_str(shipment_id)) % OVERLOAD_ONE_IN == 0
}

/// What the carrier itself counted, for cross-checking the sidecar.
#[derive(Clone, Default)]
pub struct CarrierStats {
    unavailable: Arc<AtomicU64>,
    replayed_bookings: Arc<AtomicU64>,
    duplicate_bookings: Arc<AtomicU64>,
}

impl CarrierStats {
    /// 503 answers given.
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Bookings answered from an earlier one with the same idempotency key.
    pub fn replayed_bookings(&self) -> u64 {
        self.replayed_bookings.load(Ordering::Relaxed)
    }

    /// Shipments booked a second time under a new idempotency key.
    pub fn duplicate_bookings(&self) -> u64 {
        self.duplicate_bookings.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Carrier {
    seed: u64,
    shipments: Arc<Mutex<HashMap<String, CarrierShipment>>>,
    stats: CarrierStats,
    outages: Outages,
}

struct CarrierShipment {
    /// The booking as answered, replayed for repeats.
    booked: Value,
    /// Idempotency keys the shipment was booked under.
    idempotency_keys: Vec<String>,
    buy_attempts: u32,
    label: Option<Value>,
}

impl Carrier {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, CarrierShipment>> {
        self.shipments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Deserialize)]
struct Booking {
    shipment_id: String,
    reference: String,
    #[serde(default)]
    parcel: Value,
    #[serde(default)]
    to_address: Value,
}

async fn create_shipment(
    State(carrier): State<Carrier>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let booking: Booking = match serde_json::from_slice(&body) {
        Ok(booking) => booking,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "SHIPMENT.INVALID_PARAMS",
                &e.to_string(),
            )
        }
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut shipments = carrier.lock();
    if let Some(existing) = shipments.get_mut(&booking.shipment_id) {
        let replay = idempotency_key
            .as_ref()
            .is_some_and(|key| existing.idempotency_keys.contains(key));
        if replay {
            carrier
                .stats
                .replayed_bookings
                .fetch_add(1, Ordering::Relaxed);
            let mut response = Json(existing.booked.clone()).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        // A new key: booked (and billed) once more.
        carrier
            .stats
            .duplicate_bookings
            .fetch_add(1, Ordering::Relaxed);
        existing.idempotency_keys.extend(idempotency_key);
        return (StatusCode::CREATED, Json(existing.booked.clone())).into_response();
    }
    let weight = booking.parcel["weight_kg"].as_f64().unwrap_or(1.0);
    let h = hash_str(&booking.shipment_id);
    let rate = |service: &str, base: f64, days: u64| {
        json!({
            "id": format!("rate_{:012x}{}", h & 0xFFFF_FFFF_FFFF, &service[..2].to_lowercase()),
            "carrier": "UPS",
            "service": service,
            "rate": format!("{:.2}", base + weight * 0.85),
            "currency": "EUR",
            "delivery_days": days,
        })
    };
    let booked = json!({
        "id": booking.shipment_id,
        "object": "Shipment",
        "reference": booking.reference,
        "status": "unknown",
        "to_address": booking.to_address,
        "parcel": booking.parcel,
        "rates": [rate("Standard", 6.90, 3), rate("Express", 14.50, 1)],
    });
    shipments.insert(
        booking.shipment_id,
        CarrierShipment {
            booked: booked.clone(),
            idempotency_keys: idempotency_key.into_iter().collect(),
            buy_attempts: 0,
            label: None,
        },
    );
    (StatusCode::CREATED, Json(booked)).into_response()
}

async fn buy_label(State(carrier): State<Carrier>, Path(shipment_id): Path<String>) -> Response {
    let mut shipments = carrier.lock();
    let Some(shipment) = shipments.get_mut(&shipment_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "SHIPMENT.NOT_FOUND",
            &format!("no shipment {shipment_id}"),
        );
    };
    shipment.buy_attempts += 1;
    if let Some(label) = &shipment.label {
        return Json(label.clone()).into_response();
    }
    let overloaded =
        shipment.buy_attempts == 1 && overloaded_on_first_buy(carrier.seed, &shipment_id);
    if carrier.outages.refuse(&shipment_id) || overloaded {
        carrier.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE.UNAVAILABLE",
            "label service is temporarily overloaded, retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return response;
    }
    let tracking_code = tracking_code(carrier.seed, &shipment_id);
    let rate = shipment.booked["rates"][0].clone();
    let label = json!({
        "id": shipment_id,
        "object": "Shipment",
        "reference": shipment.booked["reference"],
        "status": "pre_transit",
        "tracking_code": tracking_code,
        "selected_rate": rate,
        "postage_label": {
            "label_format": "ZPL",
            "label_url": format!("https://labels.example-carrier.test/{tracking_code}.zpl"),
        },
    });
    shipment.label = Some(label.clone());
    Json(label).into_response()
}

/// A UPS-style tracking number: `1Z`, a six-character shipper account, a
/// two-digit service code and eight digits.
fn tracking_code(seed: u64, shipment_id: &str) -> String {
    let h = mix(seed.rotate_left(17) ^ hash_str(shipment_id));
    format!("1ZW4Y83X03{:08}", h % 100_000_000)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_codes_look_like_ups_and_repeat_per_shipment() {
        let a = tracking_code(1, "SH-100001-1");
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("1Z"));
        assert_eq!(a, tracking_code(1, "SH-100001-1"));
        assert_ne!(a, tracking_code(1, "SH-100001-2"));
    }

    #[test]
    fn roughly_one_in_seven_first_buys_fail() {
        let failing = (0..7000)
            .filter(|i| overloaded_on_first_buy(3, &format!("SH-{i}-1")))
            .count();
        assert!((800..1200).contains(&failing), "failing {failing}");
    }
}

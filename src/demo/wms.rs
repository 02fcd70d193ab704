//! The simulated warehouse management system (WMS): takes orders released
//! by the ERP, allocates and picks them, packs them into one shipment per
//! temperature zone (so orders with chilled lines split in two) and takes
//! ship confirmations. JSON in the style of a modern WMS REST API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

/// The WMS's HTTP API.
pub fn router() -> Router {
    Router::new()
        .route("/api/orders", post(create_order))
        .route("/api/orders/{order_id}/allocate", post(allocate))
        .route("/api/orders/{order_id}/pick", post(pick))
        .route("/api/orders/{order_id}/pack", post(pack))
        .route("/api/shipments/{shipment_id}/ship", post(ship_confirm))
        .with_state(Warehouse::default())
}

/// What the warehouse remembers: just enough to answer consistently.
#[derive(Clone, Default)]
struct Warehouse(Arc<Mutex<Stock>>);

#[derive(Default)]
struct Stock {
    orders: HashMap<String, WmsOrder>,
    /// Shipment ID → order ID.
    shipments: HashMap<String, String>,
}

struct WmsOrder {
    lines: Vec<OrderLine>,
    status: &'static str,
    /// Shipments created at pack time, kept so a repeated pack answers the same.
    packed: Option<Value>,
}

#[derive(Deserialize)]
struct NewOrder {
    order_id: String,
    lines: Vec<OrderLine>,
}

#[derive(Deserialize, Clone)]
struct OrderLine {
    sku: String,
    qty: u32,
    zone: String,
    #[serde(default)]
    unit_weight_kg: f64,
}

impl Warehouse {
    fn lock(&self) -> MutexGuard<'_, Stock> {
        // A panicking handler cannot leave the maps half-updated in a way that
        // matters to a simulation, so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn create_order(State(wms): State<Warehouse>, body: Bytes) -> Response {
    let order: NewOrder = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_PAYLOAD", &e.to_string()),
    };
    if order.lines.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "NO_LINES",
            "order has no lines",
        );
    }
    let mut stock = wms.lock();
    let wms_ref = format!("WO-{:06}", stock.orders.len() + 1);
    let line_count = order.lines.len();
    stock.orders.insert(
        order.order_id.clone(),
        WmsOrder {
            lines: order.lines,
            status: "released",
            packed: None,
        },
    );
    let body = json!({
        "order_id": order.order_id,
        "wms_order": wms_ref,
        "status": "released",
        "lines": line_count,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn allocate(State(wms): State<Warehouse>, Path(order_id): Path<String>) -> Response {
    advance(&wms, &order_id, "allocated", |order| {
        let allocations: Vec<Value> = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let aisle = if line.zone == "chilled" { "C" } else { "A" };
                json!({ "sku": line.sku, "qty": line.qty, "location": format!("{aisle}-{:02}-{:02}", 3 + i, 1 + line.qty % 7) })
            })
            .collect();
        json!({ "order_id": order_id, "status": "allocated", "allocations": allocations })
    })
}

async fn pick(State(wms): State<Warehouse>, Path(order_id): Path<String>) -> Response {
    advance(&wms, &order_id, "picked", |order| {
        let units: u32 = order.lines.iter().map(|l| l.qty).sum();
        json!({ "order_id": order_id, "status": "picked", "units_picked": units })
    })
}

async fn pack(State(wms): State<Warehouse>, Path(order_id): Path<String>) -> Response {
    let mut stock = wms.lock();
    let Some(order) = stock.orders.get_mut(&order_id) else {
        return unknown_order(&order_id);
    };
    if let Some(packed) = &order.packed {
        return Json(packed.clone()).into_response();
    }
    // One shipment per temperature zone, in the order zones first appear.
    let mut zones: Vec<&str> = Vec::new();
    for line in &order.lines {
        if !zones.contains(&line.zone.as_str()) {
            zones.push(&line.zone);
        }
    }
    let number = order_id.trim_start_matches("SO-");
    let shipments: Vec<Value> = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let lines: Vec<&OrderLine> = order.lines.iter().filter(|l| l.zone == *zone).collect();
            let weight: f64 = lines
                .iter()
                .map(|l| f64::from(l.qty) * l.unit_weight_kg)
                .sum();
            json!({
                "shipment_id": format!("SH-{number}-{}", i + 1),
                "zone": zone,
                "weight_kg": (weight * 100.0).round() / 100.0 + 0.35,
                "parcel": if *zone == "chilled" {
                    json!({ "type": "insulated_box", "length_cm": 40, "width_cm": 30, "height_cm": 30 })
                } else {
                    json!({ "type": "carton", "length_cm": 60, "width_cm": 40, "height_cm": 40 })
                },
                "lines": lines.iter().map(|l| json!({ "sku": l.sku, "qty": l.qty })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ids: Vec<String> = shipments
        .iter()
        .filter_map(|s| s["shipment_id"].as_str().map(str::to_owned))
        .collect();
    let body = json!({ "order_id": order_id, "status": "packed", "shipments": shipments });
    order.status = "packed";
    order.packed = Some(body.clone());
    for id in ids {
        stock.shipments.insert(id, order_id.clone());
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
struct ShipConfirm {
    tracking_code: String,
}

async fn ship_confirm(
    State(wms): State<Warehouse>,
    Path(shipment_id): Path<String>,
    body: Bytes,
) -> Response {
    let confirm: ShipConfirm = match serde_json::from_slice(&body) {
        Ok(confirm) => confirm,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_PAYLOAD", &e.to_string()),
    };
    let stock = wms.lock();
    let Some(order_id) = stock.shipments.get(&shipment_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "UNKNOWN_SHIPMENT",
            &format!("no shipment {shipment_id}"),
        );
    };
    Json(json!({
        "shipment_id": shipment_id,
        "order_id": order_id,
        "tracking_code": confirm.tracking_code,
        "status": "shipped",
    }))
    .into_response()
}

/// Moves a known order to `status` and answers with `reply(order)`.
fn advance(
    wms: &Warehouse,
    order_id: &str,
    status: &'static str,
    reply: impl FnOnce(&WmsOrder) -> Value,
) -> Response {
    let mut stock = wms.lock();
    let Some(order) = stock.orders.get_mut(order_id) else {
        return unknown_order(order_id);
    };
    order.status = status;
    Json(reply(order)).into_response()
}

fn unknown_order(order_id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_ORDER",
        &format!("no order {order_id}"),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

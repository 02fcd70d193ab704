//! The simulated ERP: an SAP-flavoured backend that posts goods issues
//! through an OData v2 function import, receives the carrier's delivery
//! webhooks and books freight invoices.
//!
//! Simplification: the real ERP created each outbound delivery and knows
//! its sales order; here the ERP reads the order back out of the delivery
//! number (`SH-100001-1` belongs to `SO-100001`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

/// The OData service path of the goods-issue function import.
pub const GOODS_ISSUE_PATH: &str = "/sap/opu/odata/sap/API_OUTBOUND_DELIVERY_SRV/PostGoodsIssue";

/// The ERP's HTTP API.
pub fn router() -> Router {
    Router::new()
        .route(GOODS_ISSUE_PATH, post(post_goods_issue))
        .route("/webhooks/carrier/delivered", post(delivered_webhook))
        .route("/api/freight-invoices", post(freight_invoice))
        .with_state(Erp::default())
}

#[derive(Clone, Default)]
struct Erp {
    /// Deliveries whose goods issue is posted; SAP refuses to post twice.
    posted: Arc<Mutex<HashSet<String>>>,
    /// Accounting document numbers, as SAP's number ranges hand them out.
    documents: Arc<AtomicU64>,
}

impl Erp {
    fn next_document(&self, base: u64) -> u64 {
        base + self.documents.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
struct GoodsIssueParams {
    #[serde(rename = "DeliveryDocument")]
    delivery: Option<String>,
}

async fn post_goods_issue(
    State(erp): State<Erp>,
    Query(params): Query<GoodsIssueParams>,
) -> Response {
    let Some(delivery) = params.delivery.filter(|d| !d.is_empty()) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "VL/001",
            "Parameter DeliveryDocument is missing",
        );
    };
    let fresh = erp
        .posted
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(delivery.clone());
    if !fresh {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "VL/023",
            &format!("Goods issue for delivery {delivery} already posted"),
        );
    }
    let order = sales_order_of(&delivery);
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let document = erp.next_document(4_900_000_000);
    Json(json!({
        "d": {
            "__metadata": {
                "id": format!("A_OutbDeliveryHeader('{delivery}')"),
                "type": "API_OUTBOUND_DELIVERY_SRV.A_OutbDeliveryHeaderType",
            },
            "DeliveryDocument": delivery,
            "ReferenceSDDocument": order,
            "OverallGoodsMovementStatus": "C",
            "ActualGoodsMovementDate": format!("/Date({millis})/"),
            "MaterialDocument": document.to_string(),
        }
    }))
    .into_response()
}

#[derive(Deserialize)]
struct DeliveredEvent {
    tracking_code: String,
}

async fn delivered_webhook(body: Bytes) -> Response {
    match serde_json::from_slice::<DeliveredEvent>(&body) {
        Ok(event) => (
            StatusCode::ACCEPTED,
            Json(json!({ "received": true, "tracking_code": event.tracking_code })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "received": false, "error": e.to_string() })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct FreightInvoice {
    invoice_number: String,
    #[serde(default)]
    lines: Vec<Value>,
}

async fn freight_invoice(State(erp): State<Erp>, headers: HeaderMap, body: Bytes) -> Response {
    let invoice: FreightInvoice = match serde_json::from_slice(&body) {
        Ok(invoice) => invoice,
        Err(e) => return odata_error(StatusCode::BAD_REQUEST, "FI/400", &e.to_string()),
    };
    let header = headers
        .get("x-carrier-invoice")
        .and_then(|v| v.to_str().ok());
    if header != Some(invoice.invoice_number.as_str()) {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "FI/401",
            "X-Carrier-Invoice must name the invoice in the body",
        );
    }
    let document = erp.next_document(5_105_600_000);
    (
        StatusCode::CREATED,
        Json(json!({
            "invoice_number": invoice.invoice_number,
            "accounting_document": document.to_string(),
            "lines": invoice.lines.len(),
            "status": "posted",
        })),
    )
        .into_response()
}

/// `SH-100001-2` → `SO-100001`.
fn sales_order_of(delivery: &str) -> String {
    let number = delivery
        .trim_start_matches("SH-")
        .rsplit_once('-')
        .map_or(delivery, |(order, _)| order);
    format!("SO-{number}")
}

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": { "lang": "en", "value": message } } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_numbers_name_their_sales_order() {
        assert_eq!(sales_order_of("SH-100001-2"), "SO-100001");
    }
}

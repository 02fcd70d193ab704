//! The traffic the business and export benchmarks share: `bench/proxy.sh`'s
//! exchanges on the bench config (`bench/waybill-bench.yaml`), built as the
//! proxy taps them. Exchanges alternate: an order release (`POST
//! /api/orders`, one key) then its carrier booking (`POST /v2/shipments`:
//! order and shipment in the request, the tracking code in the response),
//! which completes a flow; every body is 840 bytes of JSON.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use waybill::config::{Config, ListenerId};
use waybill::proxy::{Exchange, Outcome, Tapped};

/// The routes file of the proxy benchmark.
pub const CONFIG: &str = include_str!("../../bench/waybill-bench.yaml");
/// Bytes per request and response body.
pub const BODY: usize = 840;

/// The bench config, parsed.
pub fn config() -> Config {
    Config::from_yaml(CONFIG, "bench/waybill-bench.yaml").expect("valid bench config")
}

fn padded(mut doc: String) -> Bytes {
    // `doc` ends with `"note":""}`: fill the note up to BODY bytes.
    let fill = BODY.saturating_sub(doc.len());
    doc.truncate(doc.len() - 2);
    doc.push_str(&"x".repeat(fill));
    doc.push_str("\"}");
    Bytes::from(doc)
}

fn order_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"order_id\":\"SO-{n:010}\",\"sales_org\":\"1000\",\"distribution_channel\":\"10\",\
         \"sold_to\":\"0001000123\",\"ship_to\":\"0001000456\",\"requested_delivery_date\":\"2026-11-30\",\
         \"incoterms\":\"DAP\",\"shipping_condition\":\"01\",\"lines\":[\
         {{\"line\":10,\"material\":\"MAT-00012345\",\"quantity\":4,\"uom\":\"EA\",\"plant\":\"1000\",\"storage_location\":\"0001\"}},\
         {{\"line\":20,\"material\":\"MAT-00067890\",\"quantity\":12,\"uom\":\"EA\",\"plant\":\"1000\",\"storage_location\":\"0001\"}},\
         {{\"line\":30,\"material\":\"MAT-00055511\",\"quantity\":1,\"uom\":\"PAL\",\"plant\":\"1000\",\"storage_location\":\"0002\"}}],\
         \"note\":\"\"}}"
    ))
}

fn shipment_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"reference\":\"SO-{n:010}\",\"shipment_id\":\"SH-{n:010}-1\",\"carrier\":\"UPS\",\
         \"service\":\"EXPRESS_SAVER\",\"ship_date\":\"2026-11-28\",\
         \"ship_from\":{{\"name\":\"DC Rotterdam\",\"street\":\"Waalhaven 12\",\"city\":\"Rotterdam\",\"postal_code\":\"3089JH\",\"country\":\"NL\"}},\
         \"ship_to\":{{\"name\":\"ACME GmbH\",\"street\":\"Hauptstrasse 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"}},\
         \"parcels\":[{{\"weight_kg\":2.4,\"length_cm\":40,\"width_cm\":30,\"height_cm\":20}},\
         {{\"weight_kg\":7.9,\"length_cm\":60,\"width_cm\":40,\"height_cm\":40}}],\
         \"note\":\"\"}}"
    ))
}

fn response_doc(n: usize) -> Bytes {
    padded(format!(
        "{{\"tracking_code\":\"1Z{n:030x}\",\"carrier\":\"UPS\",\"service\":\"EXPRESS_SAVER\",\
         \"label\":{{\"format\":\"PDF\",\"size\":\"4x6\",\"url\":\"https://labels.example.com/v1/labels/0001\"}},\
         \"rate\":{{\"amount\":\"18.40\",\"currency\":\"EUR\",\"billable_weight_kg\":10.3}},\
         \"parcels\":[{{\"parcel\":1,\"tracking_code\":\"1Z999AA10123456784\",\"weight_kg\":2.4}},\
         {{\"parcel\":2,\"tracking_code\":\"1Z999AA10123456785\",\"weight_kg\":7.9}}],\
         \"estimated_delivery\":\"2026-11-30T18:00:00Z\",\"note\":\"\"}}"
    ))
}

fn tapped(bytes: Bytes) -> Tapped {
    Tapped {
        total_len: bytes.len() as u64,
        bytes,
        truncated: false,
        complete: true,
    }
}

fn json_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("840"),
    );
    headers
}

/// Exchange number `i`: even ones release order i/2, odd ones book it.
pub fn exchange(config: &Config, i: usize) -> Exchange {
    let n = i / 2;
    let (path, request) = if i % 2 == 0 {
        ("/api/orders", order_doc(n))
    } else {
        ("/v2/shipments", shipment_doc(n))
    };
    Exchange {
        id: i as u64,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method: http::Method::POST,
        uri: http::Uri::from_static(path),
        version: http::Version::HTTP_11,
        request_headers: json_headers().into(),
        started: SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_800_000_000)
            + Duration::from_millis(i as u64),
        duration: Duration::from_micros(400),
        upstream_duration: Duration::from_micros(300),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: json_headers().into(),
        },
        request_body: tapped(request),
        response_body: tapped(response_doc(i)),
        replayed: false,
        trace_context: None,
    }
}

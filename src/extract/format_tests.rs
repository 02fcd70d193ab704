//! Tests of the payload formats on real-shaped documents (the fixtures
//! under `tests/fixtures/formats/`, written after the published X12,
//! EDIFACT, SOAP and SAP OData layouts): a routes file loaded from YAML,
//! an exchange in, keys, milestone and problems out.

use std::io::Write;

use bytes::Bytes;
use http::{HeaderValue, Method};
use prometheus_client::registry::Registry;

use super::testkit::{exchange, tapped};
use super::*;
use crate::config::Config;
use crate::proxy::Tapped;

const SOAP: &[u8] = include_bytes!("../../tests/fixtures/formats/sap_outbound_delivery.soap.xml");
const ODATA: &[u8] = include_bytes!("../../tests/fixtures/formats/sap_odata_outbound_delivery.xml");
const LATIN1: &[u8] = include_bytes!("../../tests/fixtures/formats/wms_delivery_latin1.xml");
const UTF16: &[u8] = include_bytes!("../../tests/fixtures/formats/wms_delivery_utf16.xml");
const X12_856: &[u8] = include_bytes!("../../tests/fixtures/formats/x12_856_two_shipments.edi");
const X12_214_D1: &[u8] = include_bytes!("../../tests/fixtures/formats/x12_214_delivered.edi");
const X12_214_X6: &[u8] = include_bytes!("../../tests/fixtures/formats/x12_214_en_route.edi");
const X12_210: &[u8] = include_bytes!("../../tests/fixtures/formats/x12_210_pipes.edi");
const IFTSTA: &[u8] = include_bytes!("../../tests/fixtures/formats/edifact_iftsta.edi");
const INVOIC: &[u8] = include_bytes!("../../tests/fixtures/formats/edifact_invoic.edi");
const DESADV: &[u8] = include_bytes!("../../tests/fixtures/formats/edifact_desadv.edi");

/// One routes file covering every new source and condition.
const ROUTES: &str = r#"
systems: [wms, erp, carrier]
keys: [order, shipment, tracking, bol, invoice, consignment, carrier_name, city]
root: order
observation: { max_decoded_bytes: 256KiB }
listeners:
  - { name: edge, bind: 127.0.0.1:18080, upstream: "http://127.0.0.1:19000", system: wms }
milestones:
  - { name: goods_issue_posted, object: shipment }
  - { name: ship_notice, object: shipment }
  - { name: status_received, object: shipment }
  - { name: delivered, object: shipment }
  - { name: freight_invoiced, object: invoice }
  - { name: tracker_updated, object: tracking }
routes:
  - name: erp.delivery_confirmation
    system: erp
    match: { method: POST, path: /sap/bc/srt/delivery, soap_action: "http://sap.com/xi/LE/OutboundDeliveryConfirmation" }
    keys:
      shipment: { request_xml: /soapenv:Envelope/Body/DeliveryConfirmation/Delivery/DeliveryDocument }
      order: { request_xml: /Envelope/Body/*/Delivery/Item/ReferenceSDDocument }
      tracking: { request_xml: /Envelope/Body/DeliveryConfirmation/Delivery/TrackingNumber }
    milestone: goods_issue_posted
  - name: erp.odata_delivery
    system: erp
    match: { method: GET, path: "/sap/opu/odata/sap/API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryHeader/{id}" }
    keys:
      shipment: { response_xml: /entry/content/properties/DeliveryDocument }
  - name: wms.delivery_xml
    system: wms
    match: { method: POST, path: /wms/deliveries }
    keys:
      shipment: { request_xml: /Delivery/DeliveryDocument }
      carrier_name: { request_xml: /Delivery/Carrier }
      city: { request_xml: /Delivery/Consignee/@city }
  - name: edi.ship_notice
    system: wms
    match: { method: POST, path: /edi/inbound, x12: "856" }
    keys:
      shipment: { request_x12: "BSN**{value}" }
      bol: { request_x12: "REF*BM*{value}" }
      tracking: { request_x12: "REF*CN*{value}" }
      order: { request_x12: "REF*VN*{value}" }
    milestone: ship_notice
  - name: edi.status_delivered
    system: carrier
    match: { method: POST, path: /edi/inbound, x12: "214", x12_segment: "AT7*D1" }
    keys:
      shipment: { request_x12: "B10**{value}" }
      bol: { request_x12: "L11*{value}*BM" }
    milestone: delivered
  - name: edi.status
    system: carrier
    match: { method: POST, path: /edi/inbound, x12: "214" }
    keys:
      shipment: { request_x12: "B10**{value}" }
    milestone: status_received
  - name: edi.freight_invoice
    system: carrier
    match: { method: POST, path: /edi/inbound, x12: "210" }
    keys:
      invoice: { request_x12: "B3**{value}" }
      bol: { request_x12: "N9*BM*{value}" }
    milestone: freight_invoiced
  - name: edi.status_report
    system: carrier
    match: { method: POST, path: /edi/inbound, edifact: IFTSTA, edifact_segment: "STS+1+21" }
    keys:
      consignment: { request_edifact: "RFF+CN:{value}" }
      bol: { request_edifact: "RFF+BN:{value}" }
      carrier_name: { request_edifact: "NAD+CA+++{value}" }
    milestone: delivered
  - name: edi.invoice
    system: carrier
    match: { method: POST, path: /edi/inbound, edifact: INVOIC }
    keys:
      invoice: { request_edifact: "BGM+380+{value}" }
      consignment: { request_edifact: "RFF+CN:{value}" }
    milestone: freight_invoiced
  - name: edi.despatch_advice
    system: wms
    match: { method: POST, path: /edi/inbound, edifact: DESADV }
    keys:
      shipment: { request_edifact: "BGM+351+{value}" }
      order: { request_edifact: "RFF+ON:{value}" }
  - name: carrier.tracker_updated
    system: carrier
    match: { method: POST, path: /webhooks/carrier, json: "$.event == tracker.updated" }
    keys:
      tracking: { request_json: $.result.tracking_code }
    milestone: tracker_updated
  - name: carrier.webhook
    system: carrier
    match: { method: POST, path: /webhooks/carrier }
  - name: portal.pickup_form
    system: carrier
    match: { method: POST, path: /portal/pickup, content_type: application/x-www-form-urlencoded }
    keys:
      order: { request_form: order_ref }
      tracking: { request_form: tracking }
  - name: portal.pickup_upload
    system: carrier
    match: { method: POST, path: /portal/pickup, content_type: multipart/form-data }
    keys:
      order: { request_form: order_ref }
"#;

fn config() -> Config {
    Config::from_yaml(ROUTES, "formats.yaml").expect("the formats routes file is valid")
}

fn extractor(config: &Config) -> Extractor {
    Extractor::new(Arc::new(config.clone()), &mut Registry::default())
}

/// `method path` with `headers` and request `body`, answered 200.
fn observe(
    method: Method,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: impl Into<Bytes>,
) -> Observation {
    let config = config();
    let mut ex = exchange(&config, method, path, 200);
    for (name, value) in headers {
        ex.request_headers
            .map_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    ex.request_body = tapped(body);
    extractor(&config).observe(ex)
}

fn post_edi(body: impl Into<Bytes>) -> Observation {
    observe(
        Method::POST,
        "/edi/inbound",
        &[("content-type", "application/edi-x12")],
        body,
    )
}

fn keys(observation: &Observation) -> Vec<String> {
    observation.keys.iter().map(|k| k.to_string()).collect()
}

fn operation(observation: &Observation) -> Option<&str> {
    observation.operation.as_ref().map(|o| o.as_str())
}

fn milestone(observation: &Observation) -> Option<&str> {
    observation.milestone.as_ref().map(|m| m.as_str())
}

const SOAP_ACTION: (&str, &str) = (
    "soapaction",
    "\"http://sap.com/xi/LE/OutboundDeliveryConfirmation\"",
);

#[test]
fn a_soap_envelope_with_namespaces_gives_the_delivery_number_and_its_orders() {
    let observation = observe(
        Method::POST,
        "/sap/bc/srt/delivery",
        &[("content-type", "text/xml; charset=utf-8"), SOAP_ACTION],
        SOAP,
    );
    assert_eq!(operation(&observation), Some("erp.delivery_confirmation"));
    assert_eq!(
        keys(&observation),
        [
            "shipment:80001234",
            "order:SO-1001",
            "tracking:1Z999AA10123456784"
        ]
    );
    assert_eq!(milestone(&observation), Some("goods_issue_posted"));
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn a_soap_call_with_another_action_does_not_match_and_is_not_parsed() {
    let observation = observe(
        Method::POST,
        "/sap/bc/srt/delivery",
        &[("soapaction", "urn:Other")],
        &b"<not even xml"[..],
    );
    assert_eq!(observation.route, None);
    assert!(observation.problems.is_empty());
}

#[test]
fn an_odata_response_gives_the_delivery_document() {
    let config = config();
    let mut ex = exchange(
        &config,
        Method::GET,
        "/sap/opu/odata/sap/API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryHeader/80001234",
        200,
    );
    ex.response_body = tapped(ODATA);
    let observation = extractor(&config).observe(ex);
    assert_eq!(keys(&observation), ["shipment:80001234"]);
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn latin1_xml_is_read_by_its_declaration_or_its_content_type() {
    let expected = [
        "shipment:80005678",
        "carrier_name:Spedition Müller & Söhne",
        "city:Köln",
    ];
    for headers in [
        &[][..],
        &[("content-type", "application/xml; charset=ISO-8859-1")][..],
    ] {
        let observation = observe(Method::POST, "/wms/deliveries", headers, LATIN1);
        assert_eq!(keys(&observation), expected, "{headers:?}");
        assert!(
            observation.problems.is_empty(),
            "{:?}",
            observation.problems
        );
    }
}

#[test]
fn utf16_xml_with_a_byte_order_mark_is_read() {
    let observation = observe(
        Method::POST,
        "/wms/deliveries",
        &[("content-type", "application/xml")],
        UTF16,
    );
    assert_eq!(
        keys(&observation),
        [
            "shipment:80005678",
            "carrier_name:Spedition Müller & Söhne",
            "city:Köln"
        ]
    );
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn an_unknown_charset_is_reported_not_guessed() {
    let observation = observe(
        Method::POST,
        "/wms/deliveries",
        &[("content-type", "application/xml; charset=x-klingon")],
        LATIN1,
    );
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, [Problem::UnsupportedCharset]);
}

#[test]
fn an_x12_856_with_two_transaction_sets_gives_both_shipments_keys() {
    let observation = post_edi(X12_856);
    assert_eq!(operation(&observation), Some("edi.ship_notice"));
    assert_eq!(
        keys(&observation),
        [
            "shipment:SHP-40017",
            "shipment:SHP-40018",
            "bol:BOL-778812",
            "bol:BOL-778813",
            "tracking:1Z999AA10123456784",
            "tracking:794612345678",
            "order:SO-1001",
            "order:SO-1002"
        ]
    );
    assert_eq!(milestone(&observation), Some("ship_notice"));
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn an_x12_214_with_at7_d1_is_delivered_while_at7_x6_is_only_a_status() {
    let delivered = post_edi(X12_214_D1);
    assert_eq!(operation(&delivered), Some("edi.status_delivered"));
    assert_eq!(milestone(&delivered), Some("delivered"));
    assert_eq!(keys(&delivered), ["shipment:SHP-40017", "bol:BOL-778812"]);

    let en_route = post_edi(X12_214_X6);
    assert_eq!(operation(&en_route), Some("edi.status"));
    assert_eq!(milestone(&en_route), Some("status_received"));
    assert_eq!(keys(&en_route), ["shipment:SHP-40017"]);
    assert!(en_route.problems.is_empty(), "{:?}", en_route.problems);
}

#[test]
fn an_x12_210_with_non_default_delimiters_gives_the_freight_invoice() {
    let observation = post_edi(X12_210);
    assert_eq!(operation(&observation), Some("edi.freight_invoice"));
    assert_eq!(
        keys(&observation),
        ["invoice:INV-2026-0042", "bol:BOL-778812"]
    );
    assert_eq!(milestone(&observation), Some("freight_invoiced"));
}

#[test]
fn an_edifact_iftsta_with_una_and_release_characters_is_delivered() {
    let observation = post_edi(IFTSTA);
    assert_eq!(operation(&observation), Some("edi.status_report"));
    assert_eq!(
        keys(&observation),
        [
            "consignment:CN-4471:A",
            "bol:BOL-778812",
            "carrier_name:O'BRIEN HAULAGE + SONS LTD"
        ]
    );
    assert_eq!(milestone(&observation), Some("delivered"));
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn edifact_invoices_and_despatch_advices_are_told_apart_by_message_type() {
    let invoice = post_edi(INVOIC);
    assert_eq!(operation(&invoice), Some("edi.invoice"));
    assert_eq!(
        keys(&invoice),
        ["invoice:INV-2026-0042", "consignment:CN-4471:A"]
    );
    let advice = post_edi(DESADV);
    assert_eq!(operation(&advice), Some("edi.despatch_advice"));
    assert_eq!(
        keys(&advice),
        [
            "shipment:SHP-40017",
            "shipment:SHP-40018",
            "order:PO-55012",
            "order:PO-55013"
        ]
    );
}

#[test]
fn an_edi_body_matching_no_condition_falls_through_with_its_problem() {
    let truncated_isa = &X12_856[..60];
    let observation = post_edi(truncated_isa.to_vec());
    assert_eq!(observation.route, None);
    assert!(observation.problems.contains(&Problem::EdiBadEnvelope));
    assert!(observation.problems.contains(&Problem::EdiBadEnvelope));
    let garbage = post_edi(&b"\x00\xFFnot edi at all~~~''"[..]);
    assert_eq!(garbage.route, None);
    assert_eq!(garbage.problems, [Problem::EdiBadEnvelope]);
}

#[test]
fn a_truncated_tap_of_an_interchange_still_gives_its_whole_segments() {
    let config = config();
    let mut ex = exchange(&config, Method::POST, "/edi/inbound", 200);
    ex.request_body = Tapped {
        bytes: Bytes::from_static(&X12_856[..400]),
        total_len: X12_856.len() as u64,
        truncated: true,
        complete: true,
    };
    let observation = extractor(&config).observe(ex);
    assert_eq!(operation(&observation), Some("edi.ship_notice"));
    assert!(keys(&observation).contains(&"shipment:SHP-40017".to_owned()));
    assert!(observation.problems.contains(&Problem::Truncated));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("write to vec");
    encoder.finish().expect("finish to vec")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        writer.write_all(data).expect("write to vec");
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn gzip_brotli_and_zstd_bodies_are_decoded_for_extraction() {
    for (coding, body) in [
        ("gzip", gzip(X12_856)),
        ("br", brotli(X12_856)),
        ("zstd", zstd(X12_856)),
    ] {
        let mut headers = vec![("content-type", "application/edi-x12")];
        headers.push(("content-encoding", coding));
        let observation = observe(Method::POST, "/edi/inbound", &headers, body);
        assert_eq!(operation(&observation), Some("edi.ship_notice"), "{coding}");
        assert_eq!(observation.keys.len(), 8, "{coding}");
        assert!(
            observation.problems.is_empty(),
            "{coding}: {:?}",
            observation.problems
        );
    }
}

#[test]
fn compression_bombs_are_decoded_too_large_whatever_the_coding() {
    let zeros = vec![0u8; 32 * 1024 * 1024];
    for (coding, body) in [
        ("gzip", gzip(&zeros)),
        ("br", brotli(&zeros)),
        ("zstd", zstd(&zeros)),
    ] {
        assert!(body.len() < 1024 * 1024, "{coding} bomb is small");
        let observation = observe(
            Method::POST,
            "/edi/inbound",
            &[("content-encoding", coding)],
            body,
        );
        assert_eq!(observation.route, None, "{coding}");
        assert_eq!(observation.problems, [Problem::DecodedTooLarge], "{coding}");
    }
}

#[test]
fn billion_laughs_are_not_expanded_and_the_entity_is_reported() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE Delivery [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY remote SYSTEM "http://169.254.169.254/latest/meta-data/">
]>
<Delivery><DeliveryDocument>&d;</DeliveryDocument><Carrier>&remote;</Carrier><Consignee city="x"/></Delivery>"#;
    let observation = observe(Method::POST, "/wms/deliveries", &[], laughs);
    assert_eq!(keys(&observation), ["city:x"]);
    assert_eq!(observation.problems, [Problem::XmlEntity]);
}

#[test]
fn deeply_nested_xml_stops_at_the_depth_bound() {
    let deep = "<Delivery>".repeat(10_000) + &"</Delivery>".repeat(10_000);
    let observation = observe(Method::POST, "/wms/deliveries", &[], deep);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, [Problem::XmlTooDeep]);
}

#[test]
fn malformed_xml_gives_no_keys_and_its_reason() {
    let observation = observe(
        Method::POST,
        "/wms/deliveries",
        &[],
        "<Delivery><DeliveryDocument>1</Delivery>",
    );
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, [Problem::MalformedXml]);
}

#[test]
fn a_json_field_value_picks_the_webhook_route() {
    let updated = observe(
        Method::POST,
        "/webhooks/carrier",
        &[("content-type", "application/json")],
        r#"{"id":"evt_1","event":"tracker.updated","result":{"tracking_code":"1Z999"}}"#,
    );
    assert_eq!(operation(&updated), Some("carrier.tracker_updated"));
    assert_eq!(keys(&updated), ["tracking:1Z999"]);
    assert_eq!(milestone(&updated), Some("tracker_updated"));
    let created = observe(
        Method::POST,
        "/webhooks/carrier",
        &[],
        r#"{"event":"tracker.created","result":{"tracking_code":"1Z999"}}"#,
    );
    assert_eq!(operation(&created), Some("carrier.webhook"));
    assert!(created.keys.is_empty());
}

#[test]
fn urlencoded_and_multipart_forms_give_their_fields() {
    let form = observe(
        Method::POST,
        "/portal/pickup",
        &[("content-type", "application/x-www-form-urlencoded")],
        "order_ref=SO-1001&tracking=1Z+999&submit=Book+pickup",
    );
    assert_eq!(operation(&form), Some("portal.pickup_form"));
    assert_eq!(keys(&form), ["order:SO-1001", "tracking:1Z 999"]);
    let upload = observe(
        Method::POST,
        "/portal/pickup",
        &[("content-type", "multipart/form-data; boundary=----wb7MA4YWxk")],
        "------wb7MA4YWxk\r\nContent-Disposition: form-data; name=\"order_ref\"\r\n\r\nSO-1002\r\n------wb7MA4YWxk\r\nContent-Disposition: form-data; name=\"manifest\"; filename=\"m.csv\"\r\n\r\norder_ref,SO-9\r\n------wb7MA4YWxk--\r\n",
    );
    assert_eq!(operation(&upload), Some("portal.pickup_upload"));
    assert_eq!(keys(&upload), ["order:SO-1002"]);
    assert!(upload.problems.is_empty(), "{:?}", upload.problems);
}

#[test]
fn a_form_route_over_a_body_that_is_not_a_form_reports_malformed_form() {
    let observation = observe(
        Method::POST,
        "/portal/pickup",
        &[("content-type", "multipart/form-data; boundary=B")],
        "{\"order_ref\":\"SO-1\"}",
    );
    assert_eq!(operation(&observation), Some("portal.pickup_upload"));
    assert_eq!(observation.problems, [Problem::MalformedForm]);
}

#[test]
fn a_route_that_cannot_match_never_reads_the_body() {
    // GET on the EDI endpoint: no route has that method, so no condition
    // is asked and the garbage body is never decoded.
    let observation = observe(
        Method::GET,
        "/edi/inbound",
        &[("content-encoding", "gzip")],
        &b"not gzip"[..],
    );
    assert_eq!(observation.route, None);
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

/// A xorshift stream, so the hostile inputs are the same on every run.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn mutated_documents_of_every_format_never_panic() {
    let config = config();
    let extractor = extractor(&config);
    let documents: [(&str, &[u8], &str); 8] = [
        ("/edi/inbound", X12_856, ""),
        ("/edi/inbound", X12_210, ""),
        ("/edi/inbound", IFTSTA, ""),
        ("/edi/inbound", DESADV, ""),
        ("/sap/bc/srt/delivery", SOAP, ""),
        ("/wms/deliveries", UTF16, ""),
        (
            "/portal/pickup",
            b"order_ref=SO-1&tracking=%41",
            "application/x-www-form-urlencoded",
        ),
        (
            "/portal/pickup",
            b"--B\r\nContent-Disposition: form-data; name=order_ref\r\n\r\nSO-1\r\n--B--",
            "multipart/form-data; boundary=B",
        ),
    ];
    let specials = b"*~>^|+:'?\n<>/&;\"=[]!#\x00\xFF\xFE";
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for round in 0..3_000usize {
        let (path, document, content_type) = documents[round % documents.len()];
        let mut body = document.to_vec();
        for _ in 0..(1 + round % 5) {
            let r = noise(&mut seed) as usize;
            match r % 4 {
                0 if !body.is_empty() => body.truncate(r / 4 % body.len()),
                1 if !body.is_empty() => {
                    let at = r / 4 % body.len();
                    body[at] = specials[r / 7 % specials.len()];
                }
                2 if !body.is_empty() => {
                    body.remove(r / 4 % body.len());
                }
                _ => body.insert(r / 4 % (body.len() + 1), specials[r / 7 % specials.len()]),
            }
        }
        let mut ex = exchange(&config, Method::POST, path, 200);
        if !content_type.is_empty() {
            ex.request_headers.map_mut().insert(
                "content-type",
                HeaderValue::from_str(content_type).expect("valid header"),
            );
        }
        ex.request_headers
            .map_mut()
            .insert("soapaction", HeaderValue::from_static(SOAP_ACTION.1));
        ex.request_body = tapped(body);
        ex.request_body.truncated = round % 7 == 0;
        let _ = extractor.observe(ex);
    }
}

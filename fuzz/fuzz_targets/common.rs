//! What every target shares: one routes file with a route per format, an
//! extractor built once, and an exchange carrying the fuzzer's bytes.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prometheus_client::registry::Registry;

use waybill::config::{Config, ListenerId};
use waybill::extract::{Extractor, Observation};
use waybill::proxy::{Exchange, Outcome, Tapped};

const ROUTES: &str = r#"
systems: [wms]
keys: [order, shipment, tracking]
observation: { max_decoded_bytes: 256KiB }
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: delivered, object: shipment }
routes:
  - name: json
    system: wms
    match: { method: POST, path: /json }
    keys:
      order: { request_json: "$.orders[*].id" }
      shipment: { request_json: "$['ship-to'][0].*" }
      tracking: { response_json: $.tracking_code }
  - name: json_condition
    system: wms
    match: { method: POST, path: /json, json: "$.event == tracker.updated" }
    keys:
      tracking: { request_json: $.result.tracking_code }
  - name: xml
    system: wms
    match: { method: POST, path: /xml }
    keys:
      shipment: { request_xml: /Envelope/Body/*/DeliveryDocument }
      order: { request_xml: /Envelope/Body/Delivery/Item/@ref }
      tracking: { response_xml: /a/b }
  - name: x12_delivered
    system: wms
    match: { method: POST, path: /edi, x12: "214", x12_segment: "AT7*D1" }
    keys:
      shipment: { request_x12: "B10**{value}" }
    milestone: delivered
  - name: x12
    system: wms
    match: { method: POST, path: /edi, x12: "856" }
    keys:
      shipment: { request_x12: "BSN**{value}" }
      order: { request_x12: "REF*VN*{value}" }
      tracking: { request_x12: "TD5****{value}" }
  - name: edifact_delivered
    system: wms
    match: { method: POST, path: /edi, edifact: IFTSTA, edifact_segment: "STS+1+21" }
    keys:
      shipment: { request_edifact: "RFF+CN:{value}" }
    milestone: delivered
  - name: edifact
    system: wms
    match: { method: POST, path: /edi, edifact: DESADV }
    keys:
      shipment: { request_edifact: "BGM+351+{value}" }
      order: { request_edifact: "RFF+ON:{value}" }
  - name: any_edi
    system: wms
    match: { method: POST, path: /edi }
    keys:
      order: { request_x12: "REF*VN*{value}" }
      shipment: { request_edifact: "RFF+CN:{value}" }
  - name: form
    system: wms
    match: { method: POST, path: /form }
    keys:
      order: { request_form: order }
      tracking: { response_form: tracking }
  - name: raw
    system: wms
    match: { method: POST, path: /raw }
    keys:
      order: { request_regex: "SO-[0-9]+" }
"#;

fn extractor() -> &'static (Config, Extractor) {
    static EXTRACTOR: OnceLock<(Config, Extractor)> = OnceLock::new();
    EXTRACTOR.get_or_init(|| {
        let config = match Config::from_yaml(ROUTES, "fuzz.yaml") {
            Ok(config) => config,
            Err(errors) => panic!("the fuzz routes file is invalid:\n{errors}"),
        };
        let extractor = Extractor::new(Arc::new(config.clone()), &mut Registry::default());
        (config, extractor)
    })
}

/// Observes a `POST path` whose request and response bodies are `body`,
/// both described by `headers`; `truncated` marks the tap as a prefix.
/// `None` only if the routes file lost its system.
pub fn observe(
    path: &'static str,
    headers: &[(&'static str, &str)],
    body: &[u8],
    truncated: bool,
) -> Option<Observation> {
    let (config, extractor) = extractor();
    let mut request_headers = http::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            request_headers.append(*name, value);
        }
    }
    let system = config.systems.get("wms")?;
    let tapped = Tapped {
        bytes: Bytes::copy_from_slice(body),
        total_len: body.len() as u64,
        truncated,
        complete: true,
    };
    let exchange = Exchange {
        id: 1,
        listener: ListenerId(0),
        system,
        method: http::Method::POST,
        uri: http::Uri::from_static(path),
        version: http::Version::HTTP_11,
        response_body: tapped.clone(),
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: request_headers.clone().into(),
        },
        request_headers: request_headers.into(),
        started: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(1),
        upstream_duration: Duration::from_millis(1),
        replayed: false,
        trace_context: None,
        request_body: tapped,
    };
    Some(extractor.observe(exchange))
}

/// Splits off the first byte as a selector.
pub fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// What [`observe_text`] sent.
#[allow(dead_code)]
pub struct Sent<'a> {
    /// The charset parameter of the content type, `""` for none.
    pub charset: &'static str,
    pub truncated: bool,
    pub body: &'a [u8],
}

/// A text format's target: the first byte picks the charset added to
/// `media_type` and whether the tap is truncated; the rest is the body.
/// (Every target compiles this module; the binary ones do not call it.)
#[allow(dead_code)]
pub fn observe_text<'a>(
    path: &'static str,
    media_type: &str,
    data: &'a [u8],
) -> (Sent<'a>, Option<Observation>) {
    const CHARSETS: [&str; 4] = [
        "",
        "; charset=utf-8",
        "; charset=iso-8859-1",
        "; charset=utf-16",
    ];
    let (selector, body) = split(data);
    let charset = CHARSETS[usize::from(selector) % CHARSETS.len()];
    let content_type = format!("{media_type}{charset}");
    let truncated = selector & 0x80 != 0;
    let observation = observe(
        path,
        &[("content-type", content_type.as_str())],
        body,
        truncated,
    );
    let sent = Sent {
        charset,
        truncated,
        body,
    };
    (sent, observation)
}

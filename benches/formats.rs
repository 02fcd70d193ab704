//! Extraction throughput per payload format, in bytes of body per second,
//! on a ~4 KB and a ~64 KB document each: JSON, XML (SOAP), X12 (856),
//! EDIFACT (DESADV), a urlencoded form, and gzip- and zstd-compressed XML
//! (decoding included). Each iteration is one whole `Extractor::observe`:
//! route matching (with a content condition for the EDI routes), body
//! decoding, the format's parse and the key rules.
//!
//! `cargo bench --bench formats`; CI only builds it (`--no-run`).

#[path = "../src/global_alloc.rs"]
mod global_alloc;

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prometheus_client::registry::Registry;

use waybill::config::{Config, ListenerId};
use waybill::extract::Extractor;
use waybill::proxy::{Exchange, Outcome, Tapped};

const CONFIG: &str = r#"
systems: [wms]
keys: [order, shipment]
observation: { max_decoded_bytes: 4MiB }
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
routes:
  - name: json
    system: wms
    match: { method: POST, path: /json }
    keys: { order: { request_json: "$.orders[*].id" } }
  - name: xml
    system: wms
    match: { method: POST, path: /xml }
    keys: { order: { request_xml: /Envelope/Body/Delivery/Item/ReferenceSDDocument } }
  - name: x12
    system: wms
    match: { method: POST, path: /edi, x12: "856" }
    keys: { order: { request_x12: "REF*VN*{value}" } }
  - name: edifact
    system: wms
    match: { method: POST, path: /edi, edifact: DESADV }
    keys: { order: { request_edifact: "RFF+ON:{value}" } }
  - name: form
    system: wms
    match: { method: POST, path: /form }
    keys: { order: { request_form: order } }
"#;

/// Repeats `item(i)` between `head` and `tail` until the document reaches
/// `size` bytes.
fn document(size: usize, head: &str, item: impl Fn(usize) -> String, tail: &str) -> String {
    let mut text = head.to_owned();
    let mut i = 0;
    while text.len() + tail.len() < size {
        text.push_str(&item(i));
        i += 1;
    }
    text.push_str(tail);
    text
}

fn json(size: usize) -> String {
    let body = document(
        size,
        r#"{"batch":"B-1","orders":["#,
        |i| {
            format!(
                r#"{}{{"id":"SO-{i}","lines":[{{"sku":"012345678905","qty":12}}],"ship_to":{{"zip":"38118"}}}}"#,
                if i == 0 { "" } else { "," }
            )
        },
        "]}",
    );
    body
}

fn xml(size: usize) -> String {
    document(
        size,
        r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><n0:Delivery xmlns:n0="urn:sap"><DeliveryDocument>80001234</DeliveryDocument>"#,
        |i| {
            format!(
                r#"<Item ItemNumber="{i:06}"><ReferenceSDDocument>SO-{i}</ReferenceSDDocument><Material>012345678905</Material><Quantity unitCode="EA">12</Quantity></Item>"#
            )
        },
        "</n0:Delivery></soapenv:Body></soapenv:Envelope>",
    )
}

fn x12(size: usize) -> String {
    document(
        size,
        "ISA*00*          *00*          *ZZ*WMSDC01        *ZZ*RETAILERX      *260105*1432*U*00401*000000905*0*P*>~\nGS*SH*WMSDC01*RETAILERX*20260105*1432*905*X*004010~\nST*856*0001~\nBSN*00*SHP-1*20260105*1430*0001~\n",
        |i| format!("HL*{}*1*O~\nPRF*PO-{i}***20260102~\nREF*VN*SO-{i}~\nSN1**12*EA~\n", i + 2),
        "SE*1*0001~\nGE*1*905~\nIEA*1*000000905~\n",
    )
}

fn edifact(size: usize) -> String {
    document(
        size,
        "UNA:+.? '\nUNB+UNOC:3+WMSDC01+RETAILERX+260105:1432+DES0905'\nUNH+1+DESADV:D:96A:UN'\nBGM+351+SHP-1+9'\n",
        |i| format!("CPS+{i}'\nRFF+ON:SO-{i}'\nLIN+1++012345678905:EN'\nQTY+12:12'\n"),
        "UNT+1+1'\nUNZ+1+DES0905'\n",
    )
}

fn form(size: usize) -> String {
    document(
        size,
        "batch=B-1",
        |i| format!("&order=SO-{i}&note=pick+up+at+dock+{i}"),
        "",
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

fn exchange(config: &Config, path: &str, encoding: Option<&'static str>, body: Bytes) -> Exchange {
    let mut headers = http::HeaderMap::new();
    if let Some(encoding) = encoding {
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static(encoding),
        );
    }
    if path == "/form" {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    Exchange {
        id: 1,
        listener: ListenerId(0),
        system: config.systems.get("wms").expect("declared"),
        method: http::Method::POST,
        uri: path.parse().expect("valid path"),
        version: http::Version::HTTP_11,
        request_headers: headers.into(),
        started: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(1),
        upstream_duration: Duration::from_millis(1),
        replayed: false,
        trace_context: None,
        outcome: Outcome::Response {
            status: http::StatusCode::OK,
            headers: Default::default(),
        },
        request_body: Tapped {
            total_len: body.len() as u64,
            bytes: body,
            truncated: false,
            complete: true,
        },
        response_body: Tapped::default(),
    }
}

fn throughput(c: &mut Criterion) {
    let config = Config::from_yaml(CONFIG, "bench.yaml").expect("valid config");
    let extractor = Extractor::new(Arc::new(config.clone()), &mut Registry::default());
    let mut group = c.benchmark_group("extract");
    for size in [4 * 1024, 64 * 1024] {
        let cases: [(&str, &str, Option<&'static str>, Vec<u8>); 7] = [
            ("json", "/json", None, json(size).into_bytes()),
            ("xml", "/xml", None, xml(size).into_bytes()),
            ("x12", "/edi", None, x12(size).into_bytes()),
            ("edifact", "/edi", None, edifact(size).into_bytes()),
            ("form", "/form", None, form(size).into_bytes()),
            ("xml_gzip", "/xml", Some("gzip"), gzip(xml(size).as_bytes())),
            (
                "xml_zstd",
                "/xml",
                Some("zstd"),
                ruzstd::encoding::compress_to_vec(
                    xml(size).as_bytes(),
                    ruzstd::encoding::CompressionLevel::Fastest,
                ),
            ),
        ];
        for (name, path, encoding, body) in cases {
            // Throughput counts the document's decoded size, so compressed
            // cases compare with their plain counterpart.
            let decoded = if encoding.is_some() {
                xml(size).len()
            } else {
                body.len()
            };
            let body = Bytes::from(body);
            let probe = extractor.observe(exchange(&config, path, encoding, body.clone()));
            assert!(
                probe.problems.is_empty() && !probe.keys.is_empty(),
                "{name}: {:?}",
                probe.problems
            );
            group.throughput(Throughput::Bytes(decoded as u64));
            group.bench_with_input(BenchmarkId::new(name, size), &body, |b, body| {
                b.iter(|| {
                    let ex = exchange(&config, path, encoding, body.clone());
                    black_box(extractor.observe(ex))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = throughput
}
criterion_main!(benches);

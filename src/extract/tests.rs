//! Tests of the whole stage: an exchange in, an observation and counted
//! metrics out.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::{HeaderName, HeaderValue, Method};
use prometheus_client::registry::Registry;

use super::testkit::{
    exchange, json, json_path, regex, response_headers, shared, tapped, ConfigBuilder,
};
use super::*;
use crate::config::{KeySource, Side};
use crate::proxy::{Tapped, UpstreamError};

fn extractor(builder: &ConfigBuilder) -> (Extractor, Registry) {
    let mut registry = Registry::default();
    let extractor = Extractor::new(shared(builder.build()), &mut registry);
    (extractor, registry)
}

fn key_strings(observation: &Observation) -> Vec<String> {
    observation.keys.iter().map(|k| k.to_string()).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("write to vec");
    encoder.finish().expect("finish to vec")
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

/// A route `POST /orders/batch` reading `$.orders[*].id` from the request.
fn batch_route() -> ConfigBuilder {
    let mut b = ConfigBuilder::new();
    b.route("wms.order_batch", Some(Method::POST), "/orders/batch");
    b.key("order", json(Side::Request, "$.orders[*].id"));
    b
}

#[test]
fn extractor_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Extractor>();
}

#[test]
fn matched_route_names_the_operation_and_later_routes_do_not_win() {
    let mut b = ConfigBuilder::new();
    b.route("wms.order_special", Some(Method::GET), "/orders/special");
    b.route("wms.order", Some(Method::GET), "/orders/{id}");
    b.key(
        "order",
        KeySource::PathParam {
            name: "id".into(),
            index: 0,
        },
    );
    let (extractor, _) = extractor(&b);
    let config = b.build();
    let special = extractor.observe(exchange(&config, Method::GET, "/orders/special", 200));
    assert_eq!(
        special.operation.as_ref().map(|o| o.as_str()),
        Some("wms.order_special")
    );
    assert_eq!(special.route, Some(crate::config::RouteId(0)));
    assert!(special.keys.is_empty());
    let order = extractor.observe(exchange(&config, Method::GET, "/orders/SO-1?x=1", 200));
    assert_eq!(
        order.operation.as_ref().map(|o| o.as_str()),
        Some("wms.order")
    );
    assert_eq!(key_strings(&order), vec!["order:SO-1"]);
    let wrong_method = extractor.observe(exchange(&config, Method::DELETE, "/orders/SO-1", 200));
    assert_eq!(wrong_method.route, None);
}

#[test]
fn header_query_and_path_param_keys_are_read_in_rule_order() {
    let mut b = ConfigBuilder::new();
    b.route("wms.ship", None, "/v2/shipments/{shipment_id}/buy");
    b.key(
        "shipment",
        KeySource::PathParam {
            name: "shipment_id".into(),
            index: 0,
        },
    );
    b.key(
        "order",
        KeySource::Header(HeaderName::from_static("x-order-id")),
    );
    b.key("tracking", KeySource::Query("tracking".into()));
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(
        &b.build(),
        Method::POST,
        "/v2/shipments/SH%2F7/buy?tracking=1Z+9&tracking=1Z%2D8",
        200,
    );
    ex.request_headers
        .map_mut()
        .insert("x-order-id", HeaderValue::from_static(" SO-1 "));
    let observation = extractor.observe(ex);
    assert_eq!(
        key_strings(&observation),
        vec![
            "shipment:SH/7",
            "order:SO-1",
            "tracking:1Z 9",
            "tracking:1Z-8"
        ]
    );
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn header_that_is_not_utf8_is_a_problem_and_not_a_missing_key() {
    let mut b = ConfigBuilder::new();
    b.route("wms.any", None, "/x");
    b.key(
        "order",
        KeySource::Header(HeaderName::from_static("x-order-id")),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::GET, "/x", 200);
    let latin = HeaderValue::from_bytes(b"SO-\xE9").expect("obs-text is a valid header value");
    ex.request_headers.map_mut().insert("x-order-id", latin);
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, vec![Problem::InvalidUtf8]);
}

#[test]
fn batch_message_gives_one_key_per_order() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 202);
    ex.request_body =
        tapped(r#"{"orders":[{"id":"SO-1"},{"id":"SO-2"},{"id":"SO-1"},{"id":""},{"id":"SO-3"}]}"#);
    let observation = extractor.observe(ex);
    assert_eq!(
        key_strings(&observation),
        vec!["order:SO-1", "order:SO-2", "order:SO-3"]
    );
    assert!(observation.problems.is_empty());
}

#[test]
fn a_long_batch_is_deduplicated_in_first_seen_order() {
    // More keys than `Keys` looks up linearly, each sent twice, then a
    // header rule repeating one of them and adding one.
    let mut b = batch_route();
    b.key(
        "order",
        KeySource::Header(HeaderName::from_static("x-order")),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 202);
    let ids: Vec<String> = (0..3 * Keys::LINEAR).map(|i| format!("SO-{i}")).collect();
    let items: Vec<String> = ids
        .iter()
        .chain(ids.iter().rev())
        .map(|id| format!(r#"{{"id":"{id}"}}"#))
        .collect();
    ex.request_body = tapped(format!(r#"{{"orders":[{}]}}"#, items.join(",")));
    let headers = ex.request_headers.map_mut();
    headers.insert("x-order", HeaderValue::from_static("SO-new"));
    let observation = extractor.observe(ex.clone());
    let mut expected: Vec<String> = ids.iter().map(|id| format!("order:{id}")).collect();
    expected.push("order:SO-new".into());
    assert_eq!(key_strings(&observation), expected);
    // A header value already found in the body is not a second key.
    ex.request_headers
        .map_mut()
        .insert("x-order", HeaderValue::from_static("SO-7"));
    expected.pop();
    assert_eq!(key_strings(&extractor.observe(ex)), expected);
}

#[test]
fn numbers_become_keys_as_written_in_the_json_text() {
    let mut b = ConfigBuilder::new();
    b.route("erp.invoice", None, "/invoices");
    b.key("invoice", json(Side::Response, "$.invoice_no"));
    b.key("order", json(Side::Response, "$.orders[*]"));
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/invoices", 201);
    ex.response_body =
        tapped(r#"{"invoice_no": 4500012345, "orders": [10001, 1.50, null, true, {"x": 1}]}"#);
    let observation = extractor.observe(ex);
    assert_eq!(
        key_strings(&observation),
        vec!["invoice:4500012345", "order:10001", "order:1.50"]
    );
}

#[test]
fn regex_with_named_group_reads_every_match_of_the_response() {
    let mut b = ConfigBuilder::new();
    b.route("carrier.label", None, "/labels");
    b.key(
        "tracking",
        regex(Side::Response, r"<Tracking>(?P<value>[^<]+)</Tracking>"),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/labels", 200);
    ex.response_body =
        tapped("<Label><Tracking>1Z001</Tracking><Tracking>1Z002</Tracking></Label>");
    let observation = extractor.observe(ex);
    assert_eq!(
        key_strings(&observation),
        vec!["tracking:1Z001", "tracking:1Z002"]
    );
}

#[test]
fn gzip_json_response_is_decoded_for_extraction() {
    let mut b = ConfigBuilder::new();
    b.route("carrier.buy", None, "/buy");
    b.key("tracking", json(Side::Response, "$.tracking_code"));
    b.key("shipment", regex(Side::Response, r#""shipment":"([^"]+)""#));
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/buy", 200);
    ex.response_body = tapped(gzip(br#"{"tracking_code":"1Z999","shipment":"SH-1"}"#));
    response_headers(&mut ex).insert("content-encoding", HeaderValue::from_static("gzip"));
    let observation = extractor.observe(ex);
    assert_eq!(
        key_strings(&observation),
        vec!["tracking:1Z999", "shipment:SH-1"]
    );
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn gzip_bomb_is_refused_as_decoded_too_large() {
    let mut b = batch_route();
    b.max_decoded_bytes(1024 * 1024);
    let (extractor, registry) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = tapped(gzip(&vec![0u8; 50 * 1024 * 1024]));
    ex.request_headers
        .map_mut()
        .insert("content-encoding", HeaderValue::from_static("gzip"));
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, vec![Problem::DecodedTooLarge]);
    assert!(metrics_text(&registry).contains(
        r#"waybill_extraction_failures_total{system="wms",reason="decoded_too_large"} 1"#
    ));
}

#[test]
fn unsupported_and_malformed_encodings_are_reported() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    for (coding, problem) in [
        ("compress", Problem::UnsupportedEncoding),
        ("gzip", Problem::MalformedEncoding),
        ("br", Problem::MalformedEncoding),
        ("zstd", Problem::MalformedEncoding),
    ] {
        let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
        ex.request_body = tapped(r#"{"orders":[{"id":"SO-1"}]}"#);
        ex.request_headers
            .map_mut()
            .insert("content-encoding", HeaderValue::from_static(coding));
        let observation = extractor.observe(ex);
        assert_eq!(observation.problems, vec![problem], "{coding}");
    }
}

#[test]
fn truncated_body_skips_json_rules_but_not_regex_rules() {
    let mut b = batch_route();
    b.key(
        "shipment",
        regex(Side::Request, r#""shipment":"(?P<value>[^"]+)""#),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = Tapped {
        bytes: Bytes::from_static(br#"{"shipment":"SH-1","orders":[{"id":"SO-1"},{"id":"SO-"#),
        total_len: 100_000,
        truncated: true,
        complete: true,
    };
    let observation = extractor.observe(ex);
    assert_eq!(key_strings(&observation), vec!["shipment:SH-1"]);
    assert_eq!(observation.problems, vec![Problem::Truncated]);
}

#[test]
fn aborted_body_is_incomplete() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = Tapped {
        bytes: Bytes::from_static(br#"{"orders":[{"id":"SO-1"}"#),
        total_len: 24,
        truncated: false,
        complete: false,
    };
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, vec![Problem::Incomplete]);
}

#[test]
fn malformed_json_is_reported_and_gives_no_keys() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = tapped(r#"{"orders":[{"id":"SO-1"},{"id":"SO-2"},]}"#);
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, vec![Problem::MalformedJson]);
}

#[test]
fn json_body_that_is_not_utf8_is_reported() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = tapped(&b"{\"orders\":[{\"id\":\"SO-\xFF\"}]}"[..]);
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert_eq!(observation.problems, vec![Problem::InvalidUtf8]);
}

#[test]
fn ten_thousand_levels_of_nesting_are_too_deep_and_do_not_crash() {
    let b = batch_route();
    let (extractor, registry) = extractor(&b);
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    for body in [arrays, objects] {
        let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
        ex.request_body = tapped(body);
        let observation = extractor.observe(ex);
        assert!(observation.keys.is_empty());
        assert_eq!(observation.problems, vec![Problem::TooDeep]);
    }
    assert!(metrics_text(&registry)
        .contains(r#"waybill_extraction_failures_total{system="wms",reason="too_deep"} 2"#));
}

#[test]
fn rule_that_finds_nothing_is_key_missing_and_other_keys_are_kept() {
    let mut b = batch_route();
    b.key("shipment", json(Side::Request, "$.shipment_id"));
    b.key(
        "invoice",
        KeySource::Header(HeaderName::from_static("x-invoice")),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = tapped(r#"{"orders":[{"id":"SO-1"}],"shipment_id":""}"#);
    let observation = extractor.observe(ex);
    assert_eq!(key_strings(&observation), vec!["order:SO-1"]);
    assert_eq!(observation.problems, vec![Problem::KeyMissing]);
}

#[test]
fn milestone_is_marked_only_when_the_upstream_answered_2xx() {
    let mut b = ConfigBuilder::new();
    b.route("wms.ship", None, "/ship");
    b.milestone("shipped");
    let (extractor, _) = extractor(&b);
    let config = b.build();
    for (status, marked) in [
        (200, true),
        (201, true),
        (204, true),
        (302, false),
        (404, false),
        (503, false),
    ] {
        let observation = extractor.observe(exchange(&config, Method::POST, "/ship", status));
        assert_eq!(observation.milestone.is_some(), marked, "status {status}");
    }
    let mut failed = exchange(&config, Method::POST, "/ship", 200);
    failed.outcome = Outcome::UpstreamFailed {
        error: UpstreamError::Timeout,
        status: http::StatusCode::GATEWAY_TIMEOUT,
    };
    let observation = extractor.observe(failed);
    assert_eq!(
        observation.operation.as_ref().map(|o| o.as_str()),
        Some("wms.ship")
    );
    assert!(observation.milestone.is_none());
}

#[test]
fn unmatched_exchange_is_still_an_observation_and_counted() {
    let b = batch_route();
    let (extractor, registry) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::GET, "/health", 200);
    ex.request_body = tapped("not json at all");
    let observation = extractor.observe(ex);
    assert_eq!(observation.route, None);
    assert_eq!(observation.operation, None);
    assert!(observation.keys.is_empty());
    assert!(observation.milestone.is_none());
    assert!(observation.problems.is_empty());
    assert_eq!(observation.exchange.uri.path(), "/health");
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            r#"waybill_exchanges_total{system="wms",operation="unmatched",status_class="2xx"} 1"#
        ),
        "{text}"
    );
}

#[test]
fn exchanges_and_durations_are_counted_by_operation_and_status_class() {
    let b = batch_route();
    let (extractor, registry) = extractor(&b);
    let config = b.build();
    let mut ok = exchange(&config, Method::POST, "/orders/batch", 200);
    ok.request_body = tapped(r#"{"orders":[{"id":"SO-1"}]}"#);
    extractor.observe(ok.clone());
    extractor.observe(ok);
    extractor.observe(exchange(&config, Method::POST, "/orders/batch", 503));
    let mut failed = exchange(&config, Method::POST, "/orders/batch", 502);
    failed.outcome = Outcome::UpstreamFailed {
        error: UpstreamError::ConnectRefused,
        status: http::StatusCode::BAD_GATEWAY,
    };
    extractor.observe(failed);
    let text = metrics_text(&registry);
    let lines = [
        r#"waybill_exchanges_total{system="wms",operation="wms.order_batch",status_class="2xx"} 2"#,
        r#"waybill_exchanges_total{system="wms",operation="wms.order_batch",status_class="5xx"} 1"#,
        r#"waybill_exchanges_total{system="wms",operation="wms.order_batch",status_class="error"} 1"#,
        r#"waybill_exchanges_total{system="wms",operation="wms.order_batch",status_class="4xx"} 0"#,
        r#"waybill_exchange_duration_seconds_count{system="wms",operation="wms.order_batch"} 4"#,
        r#"waybill_exchange_duration_seconds_bucket{le="0.05",system="wms",operation="wms.order_batch"} 4"#,
        r#"waybill_exchange_duration_seconds_bucket{le="0.025",system="wms",operation="wms.order_batch"} 0"#,
        // The 503 and the upstream failure carried no body: the rule found nothing.
        r#"waybill_extraction_failures_total{system="wms",reason="key_missing"} 2"#,
        "# TYPE waybill_exchange_duration_seconds histogram",
        "# UNIT waybill_exchange_duration_seconds seconds",
    ];
    for line in lines {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(
        !text.contains("SO-1"),
        "a business key leaked into metrics:\n{text}"
    );
}

#[test]
fn hostile_bodies_never_panic() {
    let mut b = batch_route();
    b.key("shipment", json(Side::Response, "$[*][*].id"));
    b.key("tracking", regex(Side::Response, r"(?-u)(?P<value>1Z\S*)"));
    b.max_decoded_bytes(4096);
    let (extractor, _) = extractor(&b);
    let config = b.build();
    let alphabet = b"{}[]\",:\\u1Z0 \xFF\x00\x1f";
    let mut seed = 0x1234_5678_u64;
    for round in 0..500 {
        let len = (round * 7) % 300;
        let body: Vec<u8> = (0..len)
            .filter_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet
                    .get((seed % alphabet.len() as u64) as usize)
                    .copied()
            })
            .collect();
        let mut ex = exchange(&config, Method::POST, "/orders/batch", 200);
        ex.request_body = tapped(body.clone());
        ex.response_body = tapped(if round % 2 == 0 { gzip(&body) } else { body });
        response_headers(&mut ex).insert(
            "content-encoding",
            HeaderValue::from_static(if round % 3 == 0 { "deflate" } else { "gzip" }),
        );
        let _ = extractor.observe(ex);
    }
}

#[test]
fn failed_exchange_owes_no_response_keys_but_still_owes_request_keys() {
    let mut b = ConfigBuilder::new();
    b.route("carrier.buy", None, "/buy");
    b.key("tracking", json(Side::Response, "$.tracking_code"));
    let (carrier, _) = extractor(&b);
    let mut error_page = exchange(&b.build(), Method::POST, "/buy", 503);
    error_page.response_body = tapped(r#"{"error":"try later"}"#);
    assert!(carrier.observe(error_page).problems.is_empty());
    let mut ok = exchange(&b.build(), Method::POST, "/buy", 200);
    ok.response_body = tapped(r#"{"status":"ok"}"#);
    assert_eq!(carrier.observe(ok).problems, vec![Problem::KeyMissing]);

    let b = batch_route();
    let (batch, _) = extractor(&b);
    let bodyless = exchange(&b.build(), Method::POST, "/orders/batch", 500);
    assert_eq!(batch.observe(bodyless).problems, vec![Problem::KeyMissing]);
}

#[test]
fn empty_json_body_is_a_missing_key_not_malformed_json() {
    let b = batch_route();
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/orders/batch", 200);
    ex.request_body = tapped(" \r\n");
    assert_eq!(extractor.observe(ex).problems, vec![Problem::KeyMissing]);
}

#[test]
fn body_no_rule_reads_is_not_decoded_or_reported() {
    let mut b = ConfigBuilder::new();
    b.route("wms.any", None, "/x");
    b.key(
        "order",
        KeySource::Header(HeaderName::from_static("x-order-id")),
    );
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/x", 200);
    ex.request_headers
        .map_mut()
        .insert("x-order-id", HeaderValue::from_static("SO-1"));
    ex.request_headers
        .map_mut()
        .insert("content-encoding", HeaderValue::from_static("br"));
    ex.request_body = Tapped {
        bytes: Bytes::from_static(b"\x00\x01"),
        total_len: 1 << 20,
        truncated: true,
        complete: false,
    };
    let observation = extractor.observe(ex);
    assert_eq!(key_strings(&observation), vec!["order:SO-1"]);
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn upstream_failure_has_no_response_body_to_report_on() {
    let mut b = ConfigBuilder::new();
    b.route("carrier.buy", None, "/buy");
    b.key("tracking", json(Side::Response, "$.tracking_code"));
    b.key("shipment", regex(Side::Response, "SH-[0-9]+"));
    let (extractor, _) = extractor(&b);
    let mut ex = exchange(&b.build(), Method::POST, "/buy", 502);
    ex.outcome = Outcome::UpstreamFailed {
        error: UpstreamError::Reset,
        status: http::StatusCode::BAD_GATEWAY,
    };
    ex.response_body = Tapped::default();
    let observation = extractor.observe(ex);
    assert!(observation.keys.is_empty());
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
}

#[test]
fn body_sizes_count_the_bytes_that_streamed_not_the_tapped_prefix() {
    let b = batch_route();
    let (extractor, registry) = extractor(&b);
    let config = b.build();
    let mut big = exchange(&config, Method::POST, "/orders/batch", 200);
    big.request_body = Tapped {
        bytes: Bytes::from_static(br#"{"orders":[{"id":"SO-1"},"#),
        total_len: 300_000,
        truncated: true,
        complete: true,
    };
    big.response_body = tapped(r#"{"ok":true}"#);
    extractor.observe(big);
    let mut failed = exchange(&config, Method::POST, "/orders/batch", 502);
    failed.request_body = tapped("{}");
    failed.outcome = Outcome::UpstreamFailed {
        error: UpstreamError::ConnectRefused,
        status: http::StatusCode::BAD_GATEWAY,
    };
    extractor.observe(failed);
    let text = metrics_text(&registry);
    let series = r#"{system="wms",operation="wms.order_batch"}"#;
    let bucket = |le: &str, count: u32| {
        format!(
            r#"waybill_exchange_request_body_size_bytes_bucket{{le="{le}",system="wms",operation="wms.order_batch"}} {count}"#
        )
    };
    let lines = [
        // Both requests count, with every byte that streamed.
        format!("waybill_exchange_request_body_size_bytes_count{series} 2"),
        format!("waybill_exchange_request_body_size_bytes_sum{series} 300002.0"),
        bucket("64.0", 1),
        bucket("262144.0", 1),
        bucket("1048576.0", 2),
        // The sidecar's own 502 is no response of the upstream.
        format!("waybill_exchange_response_body_size_bytes_count{series} 1"),
        format!("waybill_exchange_response_body_size_bytes_sum{series} 11.0"),
        "# UNIT waybill_exchange_response_body_size_bytes bytes".to_owned(),
    ];
    for line in lines {
        assert!(text.contains(&line), "missing {line}\n{text}");
    }
}

#[test]
fn json_rules_and_conditions_compiled_per_route_keep_their_rule_order_and_sides() {
    use crate::config::Condition;
    let mut b = ConfigBuilder::new();
    // A JSON condition listed before a header condition (header ones are
    // asked first), then rules alternating sides and sources.
    let route = b.route("wms.pack", Some(Method::POST), "/pack");
    route.conditions.push(Condition::Json {
        path: json_path("$.event"),
        value: "packed".into(),
    });
    route
        .conditions
        .push(Condition::ContentType("application/json".into()));
    b.key("shipment", json(Side::Response, "$.shipment_id"));
    b.key("order", json(Side::Request, "$.order_id"));
    b.key(
        "order",
        KeySource::Header(HeaderName::from_static("x-order")),
    );
    b.key("carton", json(Side::Request, "$.cartons[*].id"));
    b.key("tracking", json(Side::Response, "$.parcels[*].tracking"));
    b.route("wms.other", Some(Method::POST), "/pack");
    b.key("order", json(Side::Request, "$.event"));
    let (extractor, _) = extractor(&b);
    let config = b.build();
    let pack = |event: &str, content_type: &'static str| {
        let mut ex = exchange(&config, Method::POST, "/pack", 200);
        ex.request_headers
            .map_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        ex.request_headers
            .map_mut()
            .insert("x-order", HeaderValue::from_static("SO-H"));
        ex.request_body = tapped(format!(
            r#"{{"cartons":[{{"id":"C-1"}},{{"id":"C-2"}}],"event":"{event}","order_id":"SO-1"}}"#
        ));
        ex.response_body =
            tapped(r#"{"parcels":[{"tracking":"1Z1"}],"shipment_id":"SH-1","x":[1]}"#);
        extractor.observe(ex)
    };
    let observation = pack("packed", "application/json");
    assert_eq!(
        observation.operation.as_ref().map(|o| o.as_str()),
        Some("wms.pack")
    );
    assert_eq!(
        key_strings(&observation),
        vec![
            "shipment:SH-1",
            "order:SO-1",
            "order:SO-H",
            "carton:C-1",
            "carton:C-2",
            "tracking:1Z1"
        ]
    );
    assert!(
        observation.problems.is_empty(),
        "{:?}",
        observation.problems
    );
    // Either condition failing falls through to the next route.
    for (event, content_type) in [("picked", "application/json"), ("packed", "text/plain")] {
        let observation = pack(event, content_type);
        assert_eq!(
            observation.operation.as_ref().map(|o| o.as_str()),
            Some("wms.other"),
            "{event} {content_type}"
        );
        assert_eq!(key_strings(&observation), vec![format!("order:{event}")]);
    }
}

//! The tap: bodies stream through whole while the exchange keeps at most
//! `tap_limit` bytes of each; the exchange reaches the queue once, with what
//! was seen, also when a body is cut short; a full queue drops and counts
//! without slowing traffic.

mod proxy_support;

use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use waybill::config::ListenerId;
use waybill::proxy::Outcome;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i % 253) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn a_body_over_the_tap_limit_streams_through_while_the_exchange_keeps_only_the_limit() {
    let response_body = pattern(20_000, 3);
    let reply_body = response_body.clone();
    let mut upstream = TestUpstream::start(move |_| {
        let mut reply = Reply::ok("");
        reply.chunks = reply_body
            .chunks(5_000)
            .map(Bytes::copy_from_slice)
            .collect();
        reply.sized = false;
        reply
    })
    .await;
    let mut listener = listener(&upstream.url());
    listener.tap_limit = 1_000;
    let mut proxy = Proxy::start(listener).await;

    let request_body = pattern(10_000, 9);
    let request = Request::post(proxy.url("/v1/shipments?batch=7"))
        .header("content-type", "application/octet-stream")
        .body(full(request_body.clone()))
        .expect("request");
    let before = SystemTime::now();
    let answer = send(&client(ClientProtocol::Http1), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body == response_body,
        "response body changed on the way"
    );
    assert!(
        upstream.request().await.body == request_body,
        "request body changed on the way"
    );

    let exchange = proxy.exchange().await;
    assert_eq!(exchange.request_body.bytes, request_body.slice(..1_000));
    assert_eq!(exchange.request_body.total_len, 10_000);
    assert!(exchange.request_body.truncated);
    assert!(exchange.request_body.complete);
    assert_eq!(exchange.response_body.bytes, response_body.slice(..1_000));
    assert_eq!(exchange.response_body.total_len, 20_000);
    assert!(exchange.response_body.truncated);
    assert!(exchange.response_body.complete);

    assert_eq!(exchange.listener, ListenerId(0));
    assert_eq!(exchange.system.as_str(), "wms");
    assert_eq!(exchange.method, Method::POST);
    assert_eq!(exchange.uri, "/v1/shipments?batch=7");
    assert_eq!(exchange.version, Version::HTTP_11);
    assert_eq!(
        exchange
            .request_headers
            .get(&http::header::CONTENT_TYPE)
            .expect("content-type"),
        "application/octet-stream"
    );
    assert!(exchange.started >= before);
    assert!(exchange.duration >= exchange.upstream_duration);
    assert_eq!(exchange.outcome.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_small_body_is_tapped_completely_and_the_exchange_carries_the_response() {
    let mut upstream = TestUpstream::start(|_| {
        Reply::ok(r#"{"tracking_code":"1Z999"}"#).header("content-type", "application/json")
    })
    .await;
    let mut proxy = Proxy::start(listener(&upstream.url())).await;
    let client = client(ClientProtocol::H2c);

    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = Request::post(proxy.url("/v2/shipments/SH-7/buy"))
            .body(full(r#"{"reference":"SO-1001"}"#))
            .expect("request");
        assert_eq!(send(&client, request).await.status, StatusCode::OK);
        upstream.request().await;

        let exchange = proxy.exchange().await;
        ids.push(exchange.id);
        assert_eq!(
            &exchange.request_body.bytes[..],
            br#"{"reference":"SO-1001"}"#
        );
        assert!(!exchange.request_body.truncated);
        assert!(exchange.request_body.complete);
        assert_eq!(
            &exchange.response_body.bytes[..],
            br#"{"tracking_code":"1Z999"}"#
        );
        assert_eq!(exchange.response_body.total_len, 25);
        assert!(!exchange.response_body.truncated);
        assert!(exchange.response_body.complete);
        assert_eq!(exchange.version, Version::HTTP_2);
        assert_eq!(exchange.uri, "/v2/shipments/SH-7/buy");
        match &exchange.outcome {
            Outcome::Response { status, headers } => {
                assert_eq!(*status, StatusCode::OK);
                let content_type = headers.get(&http::header::CONTENT_TYPE);
                assert_eq!(content_type.expect("content-type"), "application/json");
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }
    assert!(ids[1] > ids[0], "exchange ids increase: {ids:?}");
}

#[tokio::test]
async fn a_full_observation_queue_drops_and_counts_while_traffic_flows() {
    let mut upstream = TestUpstream::start(|_| Reply::ok("ok")).await;
    // Capacity 1 and never read: the first exchange fills it.
    let proxy = Proxy::start_with_queue(listener(&upstream.url()), 1).await;
    let client = client(ClientProtocol::Http1);
    for _ in 0..3 {
        let request = Request::get(proxy.url("/healthz"))
            .body(full(""))
            .expect("request");
        let answer = send(&client, request).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"ok");
        upstream.request().await;
    }
    assert_eq!(
        proxy
            .metric_reaches(
                "waybill_observations_dropped_total{reason=\"queue_full\"}",
                2.0
            )
            .await,
        Some(2.0)
    );
    assert_eq!(
        proxy.metric("waybill_observations_dropped_total{reason=\"closed\"}"),
        Some(0.0)
    );
    assert_eq!(
        proxy
            .metric_reaches(
                "waybill_proxy_requests_total{listener=\"wms-inbound\",status_class=\"2xx\"}",
                3.0
            )
            .await,
        Some(3.0)
    );
}

/// Reads from `stream` until `needle` has arrived.
async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("bytes within the wait")
            .expect("read");
        assert!(
            read > 0,
            "peer closed before {:?}",
            String::from_utf8_lossy(needle)
        );
        seen.extend_from_slice(&buffer[..read]);
    }
    seen
}

#[tokio::test]
async fn a_request_still_streaming_when_the_response_ends_is_recorded_as_seen() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.expect("accept");
        // Answer once the first piece of the body got through, not waiting
        // for the rest.
        read_until(&mut stream, b"first-part").await;
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    });
    let mut proxy = Proxy::start(listener(&format!("http://{upstream_addr}"))).await;

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client
        .write_all(b"POST /edi/inbound HTTP/1.1\r\nHost: wms\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst-part\r\n")
        .await
        .expect("write");
    let answer = read_until(&mut client, b"\r\n\r\nok").await;
    assert!(answer.starts_with(b"HTTP/1.1 202 Accepted\r\n"));

    let exchange = proxy.exchange().await;
    assert_eq!(exchange.outcome.status(), StatusCode::ACCEPTED);
    assert_eq!(&exchange.request_body.bytes[..], b"first-part");
    assert!(
        !exchange.request_body.complete,
        "the request body had not ended"
    );
    assert_eq!(&exchange.response_body.bytes[..], b"ok");
    assert!(exchange.response_body.complete);
}

#[tokio::test]
async fn a_response_body_cut_short_by_the_upstream_is_recorded_incomplete() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.expect("accept");
        read_until(&mut stream, b"\r\n\r\n").await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!")
            .await
            .expect("write");
        // Closing here leaves the body 90 bytes short.
    });
    let mut proxy = Proxy::start(listener(&format!("http://{upstream_addr}"))).await;

    let request = Request::get(proxy.url("/v1/labels/1"))
        .body(full(""))
        .expect("request");
    let response = tokio::time::timeout(WAIT, client(ClientProtocol::Http1).request(request))
        .await
        .expect("head within the wait")
        .expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(WAIT, http_body_util::BodyExt::collect(response.into_body()))
        .await
        .expect("body ends within the wait");
    assert!(body.is_err(), "the client sees the body cut short too");

    let exchange = proxy.exchange().await;
    assert_eq!(&exchange.response_body.bytes[..], b"only-ten!!");
    assert_eq!(exchange.response_body.total_len, 10);
    assert!(!exchange.response_body.complete);
    assert!(proxy.exchanges.try_recv().is_err(), "offered exactly once");
}

#[tokio::test]
async fn a_client_that_goes_away_mid_response_still_yields_one_incomplete_exchange() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.expect("accept");
        read_until(&mut stream, b"\r\n\r\n").await;
        // One chunk, then nothing more: the body stays open.
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    });
    let mut proxy = Proxy::start(listener(&format!("http://{upstream_addr}"))).await;

    // HTTP/2, so going away is an explicit stream reset the proxy sees.
    let client = client(ClientProtocol::H2c);
    let request = Request::get(proxy.url("/v1/tracking/stream"))
        .body(full(""))
        .expect("request");
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("head within the wait")
        .expect("head");
    let mut body = response.into_body();
    let frame = tokio::time::timeout(WAIT, http_body_util::BodyExt::frame(&mut body))
        .await
        .expect("first frame within the wait")
        .expect("a frame")
        .expect("frame");
    assert_eq!(frame.data_ref().map(|d| &d[..]), Some(&b"first"[..]));
    drop(body);
    drop(client);

    let exchange = proxy.exchange().await;
    assert_eq!(&exchange.response_body.bytes[..], b"first");
    assert!(!exchange.response_body.complete);
    assert_eq!(exchange.outcome.status(), StatusCode::OK);
}

/// `inspect: false`: the route's traffic is forwarded byte for byte with
/// no exchange; a route that inspects on the same listener still yields
/// its exchange (so the queue's first exchange proves the first request
/// left none).
#[tokio::test]
async fn an_uninspected_route_is_forwarded_byte_exact_and_yields_no_exchange() {
    let response_body = pattern(30_000, 5);
    let reply_body = response_body.clone();
    let mut upstream = TestUpstream::start(move |_| {
        let mut reply = Reply::ok("");
        reply.chunks = reply_body
            .chunks(7_000)
            .map(Bytes::copy_from_slice)
            .collect();
        reply.sized = false;
        reply
    })
    .await;
    let config = waybill::config::Config::from_yaml(
        &format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: wms-inbound, bind: 127.0.0.1:0, upstream: \"{}\", system: wms }}\nroutes:\n  - {{ name: label, system: wms, match: {{ path: \"/labels/{{id}}\" }}, inspect: false }}\n  - {{ name: order, system: wms, match: {{ path: \"/orders/{{id}}\" }}, keys: {{ order: {{ path_param: id }} }} }}\n",
            upstream.url()
        ),
        "inspect.yaml",
    )
    .expect("valid config");
    let options = waybill::proxy::ListenerOptions {
        uninspected: waybill::proxy::UninspectedRoutes::new(ListenerId(0), &config.routes),
        ..Default::default()
    };
    let mut proxy = Proxy::start_with_options(config.listeners[0].clone(), options, 8).await;
    let http = client(ClientProtocol::Http1);

    let request_body = pattern(12_000, 11);
    let request = Request::post(proxy.url("/labels/L-1?format=zpl"))
        .header("content-type", "application/octet-stream")
        .header("x-case", "Kept")
        .body(full(request_body.clone()))
        .expect("request");
    let answer = send(&http, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body == response_body, "response body changed");
    let received = upstream.request().await;
    assert!(received.body == request_body, "request body changed");
    assert_eq!(received.uri, "/labels/L-1?format=zpl");
    assert_eq!(received.headers["x-case"], "Kept");

    let request = Request::post(proxy.url("/orders/SO-9"))
        .body(full("{}"))
        .expect("request");
    assert_eq!(send(&http, request).await.status, StatusCode::OK);
    let exchange = proxy.exchange().await;
    assert_eq!(
        exchange.uri, "/orders/SO-9",
        "the label request left an exchange"
    );
    assert!(proxy.exchanges.try_recv().is_err());
    // Both were still answered and counted by the proxy.
    assert_eq!(
        proxy
            .metric_reaches(
                "waybill_proxy_requests_total{listener=\"wms-inbound\",status_class=\"2xx\"}",
                2.0
            )
            .await,
        Some(2.0)
    );
    proxy.stop().await.expect("stops");
}

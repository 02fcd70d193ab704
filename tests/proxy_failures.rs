//! Upstream failures become the sidecar's own 502/504 with a short
//! plain-text body, are recorded as `UpstreamFailed` exchanges and counted;
//! shutdown stops the listener.

mod proxy_support;

use std::time::Duration;

use http::{Request, StatusCode};
use proxy_support::*;
use tokio::net::{TcpListener, TcpStream};
use waybill::config::UpstreamProtocol;
use waybill::proxy::{Outcome, UpstreamError};

/// An address nobody listens on: bound, then released.
async fn closed_port() -> String {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    drop(socket);
    format!("http://{addr}")
}

fn failure(outcome: &Outcome) -> (UpstreamError, StatusCode) {
    match outcome {
        Outcome::UpstreamFailed { error, status } => (*error, *status),
        other => panic!("expected an upstream failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_gives_502_and_a_connect_refused_exchange() {
    let mut proxy = Proxy::start(listener(&closed_port().await)).await;
    for protocol in [ClientProtocol::Http1, ClientProtocol::H2c] {
        let request = Request::post(proxy.url("/v1/orders"))
            .body(full(r#"{"order":"SO-1"}"#))
            .expect("request");
        let answer = send(&client(protocol), request).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{protocol:?}");
        assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
        assert!(
            String::from_utf8_lossy(&answer.body).starts_with("waybill: "),
            "{:?}",
            answer.body
        );

        let exchange = proxy.exchange().await;
        assert_eq!(
            failure(&exchange.outcome),
            (UpstreamError::ConnectRefused, StatusCode::BAD_GATEWAY)
        );
        assert_eq!(exchange.uri, "/v1/orders");
    }
    let series =
        "waybill_upstream_errors_total{listener=\"wms-inbound\",error=\"connect_refused\"}";
    assert_eq!(proxy.metric_reaches(series, 2.0).await, Some(2.0));
    let series = "waybill_proxy_requests_total{listener=\"wms-inbound\",status_class=\"5xx\"}";
    assert_eq!(proxy.metric(series), Some(2.0));
}

#[tokio::test]
async fn an_upstream_slower_than_the_timeout_gives_504_and_a_timeout_exchange() {
    let mut upstream = TestUpstream::start(|_| {
        let mut reply = Reply::ok("too late");
        reply.delay = Duration::from_secs(5);
        reply
    })
    .await;
    let mut listener = listener(&upstream.url());
    listener.timeout = Duration::from_millis(200);
    let mut proxy = Proxy::start(listener).await;

    let request = Request::get(proxy.url("/v1/rates"))
        .body(full(""))
        .expect("request");
    let answer = send(&client(ClientProtocol::Http1), request).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    upstream.request().await;

    let exchange = proxy.exchange().await;
    assert_eq!(
        failure(&exchange.outcome),
        (UpstreamError::Timeout, StatusCode::GATEWAY_TIMEOUT)
    );
    assert!(exchange.upstream_duration >= Duration::from_millis(200));
    let series = "waybill_upstream_errors_total{listener=\"wms-inbound\",error=\"timeout\"}";
    assert_eq!(proxy.metric_reaches(series, 1.0).await, Some(1.0));
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_gives_502_and_a_reset_exchange() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            drop(stream);
        }
    });
    let mut proxy = Proxy::start(listener(&format!("http://{upstream_addr}"))).await;

    let request = Request::get(proxy.url("/v1/rates"))
        .body(full(""))
        .expect("request");
    let answer = send(&client(ClientProtocol::Http1), request).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let exchange = proxy.exchange().await;
    assert_eq!(
        failure(&exchange.outcome),
        (UpstreamError::Reset, StatusCode::BAD_GATEWAY)
    );
}

#[tokio::test]
async fn a_tls_handshake_that_stalls_past_the_connect_timeout_gives_502_and_connect_timeout() {
    // Accepts TCP, never answers the TLS ClientHello.
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = upstream.accept().await {
            held.push(stream);
        }
    });
    for listener in https_listeners(&upstream_addr.to_string()) {
        let mut listener = listener;
        listener.connect_timeout = Duration::from_millis(200);
        let mut proxy = Proxy::start(listener).await;
        gets_502(&mut proxy, "/v1/rates", UpstreamError::ConnectTimeout).await;
    }
}

/// A GET of `path` through `proxy` gets the sidecar's 502 and is recorded
/// as failed with `error`.
async fn gets_502(proxy: &mut Proxy, path: &str, error: UpstreamError) {
    let request = Request::get(proxy.url(path))
        .body(full(""))
        .expect("request");
    let answer = send(&client(ClientProtocol::Http1), request).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{path}");
    let exchange = proxy.exchange().await;
    assert_eq!(
        failure(&exchange.outcome),
        (error, StatusCode::BAD_GATEWAY),
        "{path}"
    );
}

/// A listener to `https://{addr}` per upstream protocol that may go over
/// TLS: `auto` (ALPN may pick HTTP/2: always hyper) and `http1` (served
/// by the native engine unless `WAYBILL_TEST_ENGINE=hyper`).
fn https_listeners(addr: &str) -> Vec<waybill::config::Listener> {
    [UpstreamProtocol::Auto, UpstreamProtocol::Http1]
        .into_iter()
        .map(|protocol| {
            let mut listener = listener(&format!("https://{addr}"));
            listener.upstream.protocol = protocol;
            let native = listener.native_refusal(false).is_none();
            assert_eq!(native, protocol == UpstreamProtocol::Http1, "{protocol:?}");
            listener
        })
        .collect()
}

#[tokio::test]
async fn an_upstream_that_does_not_speak_tls_gives_502_and_a_tls_exchange() {
    let upstream = TestUpstream::start(|_| Reply::ok("plain text")).await;
    for listener in https_listeners(&upstream.addr.to_string()) {
        let what = format!("{:?}", listener.upstream.protocol);
        let mut proxy = Proxy::start(listener).await;

        for path in ["/v1/rates", "/v1/rates/again"] {
            gets_502(&mut proxy, path, UpstreamError::Tls).await;
        }
        let series = "waybill_upstream_errors_total{listener=\"wms-inbound\",error=\"tls\"}";
        assert_eq!(proxy.metric_reaches(series, 2.0).await, Some(2.0), "{what}");
    }
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_serve_returns() {
    let mut upstream = TestUpstream::start(|_| {
        let mut reply = Reply::ok("late but whole");
        reply.delay = Duration::from_millis(300);
        reply
    })
    .await;
    let proxy = Proxy::start(listener(&upstream.url())).await;
    let addr = proxy.addr;
    let client = client(ClientProtocol::Http1);
    let request = Request::get(proxy.url("/"))
        .body(full(""))
        .expect("request");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { send(&client, request).await }
    });
    // The upstream has the request and is taking its time.
    upstream.request().await;

    proxy.stop().await.expect("serve returns Ok");
    let answer = in_flight.await.expect("request task");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(&answer.body[..], b"late but whole");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

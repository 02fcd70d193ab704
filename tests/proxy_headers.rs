//! The header rules: hop-by-hop headers stay on their hop, `Host` and
//! `X-Forwarded-*` follow the listener's settings, the upstream's base path
//! is prefixed.

mod proxy_support;

use http::{Request, StatusCode};
use proxy_support::*;
use waybill::config::{Forwarded, HostHeader};

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross_the_proxy_in_either_direction() {
    let mut upstream = TestUpstream::start(|_| {
        Reply::ok("ok")
            .header("connection", "x-upstream-private")
            .header("x-upstream-private", "secret")
            .header("keep-alive", "timeout=30")
            .header("x-kept", "yes")
    })
    .await;
    let proxy = Proxy::start(listener(&upstream.url())).await;

    let request = Request::get(proxy.url("/v1/orders"))
        .header("connection", "x-custom")
        .header("x-custom", "hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers, deflate")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("x-end-to-end", "kept")
        .body(full(""))
        .expect("request");
    let answer = send(&client(ClientProtocol::Http1), request).await;
    let received = upstream.request().await;

    for name in ["connection", "x-custom", "keep-alive", "proxy-connection"] {
        assert!(
            received.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(received.headers["te"], "trailers");
    assert_eq!(
        received.headers["proxy-authorization"],
        "Basic dXNlcjpwYXNz"
    );
    assert_eq!(received.headers["x-end-to-end"], "kept");

    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get("x-upstream-private").is_none());
    assert!(answer.headers.get("keep-alive").is_none());
    assert_ne!(
        answer.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"x-upstream-private"[..])
    );
    assert_eq!(answer.headers["x-kept"], "yes");
}

#[tokio::test]
async fn forwarded_append_adds_the_client_address_proto_and_host() {
    let mut upstream = TestUpstream::start(|_| Reply::ok("ok")).await;
    let mut listener = listener(&upstream.url());
    listener.forwarded = Forwarded::Append;
    let proxy = Proxy::start(listener).await;
    let client = client(ClientProtocol::Http1);

    let request = Request::get(proxy.url("/a"))
        .header("host", "erp.example")
        .body(full(""))
        .expect("request");
    send(&client, request).await;
    let received = upstream.request().await;
    assert_eq!(received.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(received.headers["x-forwarded-proto"], "http");
    assert_eq!(received.headers["x-forwarded-host"], "erp.example");
    assert_eq!(received.headers["host"], "erp.example");

    let request = Request::get(proxy.url("/b"))
        .header("host", "erp.example")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "portal.example")
        .body(full(""))
        .expect("request");
    send(&client, request).await;
    let received = upstream.request().await;
    assert_eq!(
        received.headers["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(received.headers["x-forwarded-proto"], "https");
    assert_eq!(received.headers["x-forwarded-host"], "portal.example");
}

#[tokio::test]
async fn forwarded_off_adds_nothing() {
    let mut upstream = TestUpstream::start(|_| Reply::ok("ok")).await;
    let proxy = Proxy::start(listener(&upstream.url())).await;
    let request = Request::get(proxy.url("/a"))
        .body(full(""))
        .expect("request");
    send(&client(ClientProtocol::Http1), request).await;
    let received = upstream.request().await;
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "via",
        "forwarded",
    ] {
        assert!(received.headers.get(name).is_none(), "{name} was added");
    }
}

#[tokio::test]
async fn host_upstream_sends_the_upstream_authority_and_preserve_keeps_the_clients() {
    let mut upstream = TestUpstream::start(|_| Reply::ok("ok")).await;
    for (setting, protocol, expected) in [
        (
            HostHeader::Upstream,
            ClientProtocol::Http1,
            upstream.addr.to_string(),
        ),
        (
            HostHeader::Upstream,
            ClientProtocol::H2c,
            upstream.addr.to_string(),
        ),
        (
            HostHeader::Preserve,
            ClientProtocol::Http1,
            "erp.example".to_owned(),
        ),
    ] {
        let mut listener = listener(&upstream.url());
        listener.host_header = setting;
        let proxy = Proxy::start(listener).await;
        let mut request = Request::get(proxy.url("/a"));
        if protocol == ClientProtocol::Http1 {
            request = request.header("host", "erp.example");
        }
        send(&client(protocol), request.body(full("")).expect("request")).await;
        let received = upstream.request().await;
        assert_eq!(
            received.headers["host"],
            expected.as_str(),
            "{setting:?} {protocol:?}"
        );
    }
}

#[tokio::test]
async fn the_upstream_base_path_is_prefixed_to_every_path() {
    let mut upstream = TestUpstream::start(|_| Reply::ok("ok")).await;
    let proxy = Proxy::start(listener(&format!("{}/erp/api/", upstream.url()))).await;
    let request = Request::get(proxy.url("/v1/orders?status=open"))
        .body(full(""))
        .expect("request");
    assert_eq!(
        send(&client(ClientProtocol::H2c), request).await.status,
        StatusCode::OK
    );
    let received = upstream.request().await;
    assert_eq!(
        received.uri.path_and_query().map(|p| p.as_str()),
        Some("/erp/api/v1/orders?status=open")
    );
}

//! `proxy_is_transparent`: what the client sends is what the upstream gets
//! and what the upstream answers is what the client gets, byte for byte,
//! for JSON, binary, chunked, large and compressed bodies, on HTTP/1.1 and
//! HTTP/2 (h2c) at either hop.

mod proxy_support;

use std::io::Write;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use waybill::config::{HeaderCase, UpstreamProtocol};

/// One kind of traffic: the request the client sends and the upstream's reply.
struct Case {
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Bytes,
    /// Send the request body in frames without a length (chunked on HTTP/1).
    stream_request: bool,
    reply: Reply,
}

fn all_byte_values() -> Bytes {
    (0..=255u8).collect::<Vec<u8>>().into()
}

fn large(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip").into()
}

fn cases() -> Vec<Case> {
    let json_reply = Reply::ok(r#"{"shipment_id":"SH-7","tracking_code":"1Z999AA10123456784"}"#)
        .header("content-type", "application/json")
        .header("x-request-id", "req-1")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2");
    let mut chunked_reply = Reply::ok("").header("content-type", "text/csv");
    chunked_reply.chunks = vec![
        Bytes::from_static(b"order,status\n"),
        Bytes::from_static(b"SO-1001,packed\n"),
        Bytes::from_static(b"SO-1002,shipped\n"),
    ];
    chunked_reply.sized = false;
    vec![
        Case {
            method: Method::POST,
            path: "/v2/shipments/SH-7/buy?dry_run=false&x=%20y",
            headers: vec![
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("x-api-key", "k-123"),
            ],
            body: Bytes::from_static(
                br#"{"reference":"SO-1001","weight":{"value":1.5,"unit":"kg"}}"#,
            ),
            stream_request: false,
            reply: json_reply,
        },
        Case {
            method: Method::PUT,
            path: "/blobs/label.bin",
            headers: vec![("content-type", "application/octet-stream")],
            body: all_byte_values(),
            stream_request: false,
            reply: Reply::ok(all_byte_values().iter().rev().copied().collect::<Vec<u8>>())
                .header("content-type", "application/octet-stream"),
        },
        Case {
            method: Method::POST,
            path: "/edi/inbound",
            headers: vec![("content-type", "application/edi-x12")],
            body: Bytes::from_static(b"ISA*00*~GS*SH~ST*856*0001~SE*2*0001~"),
            stream_request: true,
            reply: chunked_reply,
        },
        Case {
            method: Method::POST,
            path: "/bulk",
            headers: vec![("content-type", "application/octet-stream")],
            body: large(5 * 1024 * 1024, 0x5a),
            stream_request: false,
            reply: Reply::ok(large(5 * 1024 * 1024, 0xa5)),
        },
        Case {
            method: Method::GET,
            path: "/v1/orders/SO-1001",
            headers: vec![("accept-encoding", "gzip")],
            body: Bytes::new(),
            stream_request: false,
            reply: Reply::ok(gzip(br#"{"order":"SO-1001","lines":[1,2,3]}"#))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .header("vary", "accept-encoding"),
        },
    ]
}

/// `headers` without the framing headers each hop sets for itself.
fn without_framing(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    for name in ["host", "content-length", "transfer-encoding"] {
        headers.remove(name);
    }
    headers
}

fn reply_headers(reply: &Reply) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.headers {
        headers.append(*name, value.parse().expect("header value"));
    }
    headers
}

async fn check_transparency(client_protocol: ClientProtocol, upstream_protocol: UpstreamProtocol) {
    let cases = cases();
    let replies: Vec<(&'static str, Reply)> = cases
        .iter()
        .map(|case| {
            (
                case.path.split('?').next().unwrap_or_default(),
                case.reply.clone(),
            )
        })
        .collect();
    let mut upstream = TestUpstream::start(move |received| {
        replies
            .iter()
            .find(|(path, _)| *path == received.uri.path())
            .map(|(_, reply)| reply.clone())
            .unwrap_or_else(|| Reply::ok("no such case"))
    })
    .await;
    let mut listener = listener(&upstream.url());
    listener.upstream.protocol = upstream_protocol;
    let mut proxy = Proxy::start(listener).await;
    let client = client(client_protocol);
    let context = format!("client {client_protocol:?}, upstream {upstream_protocol:?}");

    for case in cases {
        let mut request = Request::builder()
            .method(case.method.clone())
            .uri(proxy.url(case.path));
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        let body = if case.stream_request {
            streaming(case.body.chunks(7).map(Bytes::copy_from_slice).collect())
        } else {
            full(case.body.clone())
        };
        let request = request.body(body).expect("request");
        let sent_headers = request.headers().clone();

        let answer = send(&client, request).await;
        let received = upstream.request().await;
        let context = format!("{context}, {} {}", case.method, case.path);

        // The upstream got the client's request.
        assert_eq!(received.method, case.method, "{context}");
        assert_eq!(
            received.uri.path_and_query().map(|p| p.as_str()),
            Some(case.path),
            "{context}"
        );
        let expected_version = match upstream_protocol {
            UpstreamProtocol::Http2 => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        assert_eq!(received.version, expected_version, "{context}");
        assert_eq!(
            without_framing(&received.headers),
            sent_headers,
            "{context}"
        );
        let host = received
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| received.uri.authority().map(|a| a.to_string()));
        assert_eq!(host, Some(proxy.addr.to_string()), "{context}: host");
        assert_eq!(received.body.len(), case.body.len(), "{context}");
        assert!(
            received.body == case.body,
            "{context}: request body differs"
        );
        if case.stream_request {
            assert!(
                received.headers.get("content-length").is_none(),
                "{context}"
            );
        }

        // The client got the upstream's response.
        assert_eq!(answer.status, case.reply.status, "{context}");
        assert_eq!(answer.version, client_version(client_protocol), "{context}");
        assert_eq!(
            without_framing(&answer.headers),
            reply_headers(&case.reply),
            "{context}"
        );
        let reply_body = case.reply.body();
        let content_length = answer
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok());
        if case.reply.sized {
            assert_eq!(
                content_length,
                Some(reply_body.len().to_string().as_str()),
                "{context}"
            );
        } else {
            assert_eq!(
                content_length, None,
                "{context}: streamed reply got a length"
            );
        }
        assert_eq!(answer.body.len(), reply_body.len(), "{context}");
        assert!(
            answer.body == reply_body,
            "{context}: response body differs"
        );

        let exchange = proxy.exchange().await;
        assert_eq!(exchange.outcome.status(), StatusCode::OK, "{context}");
    }
    proxy.stop().await.expect("serve ends cleanly");
}

fn client_version(protocol: ClientProtocol) -> Version {
    match protocol {
        ClientProtocol::Http1 => Version::HTTP_11,
        ClientProtocol::H2c => Version::HTTP_2,
    }
}

#[tokio::test]
async fn proxy_is_transparent_on_http1() {
    check_transparency(ClientProtocol::Http1, UpstreamProtocol::Auto).await;
}

#[tokio::test]
async fn proxy_is_transparent_for_an_h2c_client_in_front_of_an_http1_upstream() {
    check_transparency(ClientProtocol::H2c, UpstreamProtocol::Http1).await;
}

#[tokio::test]
async fn proxy_is_transparent_for_an_http1_client_in_front_of_an_h2c_upstream() {
    check_transparency(ClientProtocol::Http1, UpstreamProtocol::Http2).await;
}

#[tokio::test]
async fn proxy_is_transparent_on_h2c_end_to_end() {
    check_transparency(ClientProtocol::H2c, UpstreamProtocol::Http2).await;
}

fn trailer_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().expect("trailer value"));
    }
    map
}

async fn check_trailers(client_protocol: ClientProtocol, upstream_protocol: UpstreamProtocol) {
    let response_trailers = trailer_map(&[("grpc-status", "0"), ("x-checksum", "abc123")]);
    let reply_trailers = response_trailers.clone();
    let mut upstream = TestUpstream::start(move |_| {
        let mut reply =
            Reply::ok("streamed with trailers").header("trailer", "grpc-status, x-checksum");
        reply.trailers = Some(reply_trailers.clone());
        reply
    })
    .await;
    let mut listener = listener(&upstream.url());
    listener.upstream.protocol = upstream_protocol;
    let proxy = Proxy::start(listener).await;
    let context = format!("client {client_protocol:?}, upstream {upstream_protocol:?}");

    let request_trailers = trailer_map(&[("x-request-checksum", "def456")]);
    let request = Request::post(proxy.url("/upload"))
        .header("te", "trailers")
        .header("trailer", "x-request-checksum")
        .body(with_trailers(
            vec![
                Bytes::from_static(b"part one, "),
                Bytes::from_static(b"part two"),
            ],
            request_trailers.clone(),
        ))
        .expect("request");
    let answer = send(&client(client_protocol), request).await;
    let received = upstream.request().await;

    assert_eq!(&received.body[..], b"part one, part two", "{context}");
    assert_eq!(
        received.trailers,
        Some(request_trailers),
        "{context}: request trailers"
    );
    assert_eq!(&answer.body[..], b"streamed with trailers", "{context}");
    assert_eq!(
        answer.trailers,
        Some(response_trailers),
        "{context}: response trailers"
    );
}

#[tokio::test]
async fn trailers_cross_the_proxy_in_both_directions_on_h2c() {
    check_trailers(ClientProtocol::H2c, UpstreamProtocol::Http2).await;
}

#[tokio::test]
async fn trailers_cross_the_proxy_in_both_directions_on_http1_chunked() {
    check_trailers(ClientProtocol::Http1, UpstreamProtocol::Http1).await;
}

/// Reads from `stream` until `len` bytes arrived or the peer closed.
async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buffer = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer[filled..]))
            .await
            .expect("bytes within the wait")
            .expect("read");
        if read == 0 {
            break;
        }
        filled += read;
    }
    buffer.truncate(filled);
    buffer
}

/// A request and its response with header names in mixed case, as raw
/// HTTP/1 bytes.
const MIXED_CASE_REQUEST: &[u8] = b"POST /Orders/SO-1001?Expand=Lines HTTP/1.1\r\n\
Host: erp.example:8080\r\n\
X-MiXeD-Case: One\r\n\
content-type: application/json\r\n\
X-ALL-CAPS: two\r\n\
x-all-caps: three\r\n\
Content-Length: 2\r\n\
\r\n\
{}";
const MIXED_CASE_RESPONSE: &[u8] = b"HTTP/1.1 200 Everything Fine\r\n\
X-Trace-ID: abc\r\n\
content-TYPE: text/plain\r\n\
Set-Cookie: a=1\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

/// Sends [`MIXED_CASE_REQUEST`] through a proxy with `header_case` to a raw
/// upstream that answers [`MIXED_CASE_RESPONSE`]; returns the bytes the
/// upstream received and the bytes the client received.
async fn mixed_case_exchange(header_case: HeaderCase) -> (String, String) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.expect("accept");
        // Lower-cased names take as many bytes as the original ones.
        let seen = read_exactly(&mut stream, MIXED_CASE_REQUEST.len()).await;
        let _ = seen_tx.send(seen);
        stream.write_all(MIXED_CASE_RESPONSE).await.expect("write");
        // Hold the connection open until the proxy lets go of it.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    });

    let mut listener = listener(&format!("http://{upstream_addr}"));
    listener.header_case = header_case;
    let proxy = Proxy::start(listener).await;
    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client.write_all(MIXED_CASE_REQUEST).await.expect("write");
    let seen = tokio::time::timeout(WAIT, seen_rx)
        .await
        .expect("upstream saw the request")
        .expect("upstream task");
    let answer = read_exactly(&mut client, MIXED_CASE_RESPONSE.len()).await;
    (
        String::from_utf8_lossy(&seen).into_owned(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test]
async fn proxy_keeps_http1_header_case_order_and_reason_phrase_byte_for_byte() {
    let (seen, answer) = mixed_case_exchange(HeaderCase::Preserve).await;
    assert_eq!(seen, String::from_utf8_lossy(MIXED_CASE_REQUEST));
    assert_eq!(answer, String::from_utf8_lossy(MIXED_CASE_RESPONSE));
}

/// Lower-cases the header names of a raw HTTP/1 message (the text before
/// each `:` on the lines between the start line and the empty line).
fn lowercase_names(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().expect("start line").to_owned()];
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        out.push(format!("{}:{value}", name.to_ascii_lowercase()));
    }
    format!("{}\r\n\r\n{body}", out.join("\r\n"))
}

#[tokio::test]
async fn a_lowercase_listener_sends_header_names_in_lower_case_both_ways() {
    let (seen, answer) = mixed_case_exchange(HeaderCase::Lowercase).await;
    // Everything else unchanged: order, values, reason phrase, body.
    assert_eq!(seen, lowercase_names(MIXED_CASE_REQUEST));
    assert_eq!(answer, lowercase_names(MIXED_CASE_RESPONSE));
    assert_ne!(seen, String::from_utf8_lossy(MIXED_CASE_REQUEST));
}

//! The codec against hyper, in-process over `tokio::io::duplex`:
//!
//! - framing: for a corpus of requests (valid ones and every smuggling
//!   vector), hyper's HTTP/1 server (configured as the listener's) and the
//!   codec each say accept or reject and which body bytes the request
//!   carries. The codec must never accept what hyper rejects, and must
//!   agree on the body where both accept; every case where it is stricter
//!   is listed in `STRICTER`, and any other disagreement fails.
//! - rewriting: for a table of request heads, hyper's server parses the
//!   head, `headers.rs` and `forward.rs`'s rules rewrite it, hyper's client
//!   writes it; the codec's [`write_request`] must write the same bytes.

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::*;
use crate::proxy::headers::{append_forwarded, strip_hop_by_hop};

/// Every exchange with hyper ends within this (a bound, not a measure).
const LIMIT: Duration = Duration::from_secs(10);

/// What hyper's server made of `raw`: the request's head and body bytes,
/// or `None` when it refused the request (head or body).
async fn hyper_reads(raw: &[u8]) -> Option<(http::request::Parts, Bytes)> {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (seen, mut heard) = mpsc::unbounded_channel();
    let service = service_fn(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|body| body.to_bytes()).ok();
            let _ = seen.send(body.map(|body| (parts, body)));
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Half-close: the client shuts its write side after the request and
    // still reads the answer.
    builder
        .preserve_header_case(true)
        .auto_date_header(false)
        .half_close(true);
    let connection = builder.serve_connection(TokioIo::new(server), service);
    let exchange = async {
        let serve = tokio::spawn(connection);
        client.write_all(raw).await.ok()?;
        client.shutdown().await.ok()?;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let _ = serve.await;
        heard.recv().await.flatten()
    };
    tokio::time::timeout(LIMIT, exchange).await.ok().flatten()
}

/// What the codec makes of `raw`: the body bytes, or the fault.
fn codec_reads(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut head = RequestHead::default();
    let len = match head.parse(raw) {
        Ok(Parsed::Complete(len)) => len,
        Ok(Parsed::Partial) => return Err("partial head".into()),
        Err(error) => return Err(error.to_string()),
    };
    let framing = request_framing(raw, &head).map_err(|error| error.to_string())?;
    let rest = raw.get(len..).unwrap_or_default();
    match framing.body {
        BodyLength::Empty => Ok(Vec::new()),
        BodyLength::Length(length) => usize::try_from(length)
            .ok()
            .and_then(|length| rest.get(..length))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "body shorter than its length".into()),
        BodyLength::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            let progress = decoder
                .feed(rest, |piece| {
                    if let Piece::Data(range) = piece {
                        body.extend_from_slice(rest.get(range).unwrap_or_default());
                    }
                })
                .map_err(|error| error.to_string())?;
            match progress {
                Progress::Done(_) => Ok(body),
                Progress::More => Err("chunked body not ended".into()),
            }
        }
        BodyLength::UntilClose => Err("a request is never read until close".into()),
    }
}

/// Requests the codec refuses on purpose though hyper accepts them (see
/// the module doc of `h1`).
const STRICTER: [&str; 3] = [
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\x01\r\nabc\r\n0\r\n\r\n",
];

/// The corpus: valid requests and the smuggling vectors.
fn corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x?y=1 HTTP/1.0\r\n\r\n",
        "POST /api/orders HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"1\"}\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\nabcdefg",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 9\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3  \r\nabc\r\n0\r\n\r\n",
        // Smuggling vectors and malformed framing.
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3 \r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n Content-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: 1\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX : 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX\x7fBad: 1\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /{x}\"y\" HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/b HTTP/1.1\r\n\r\n",
        // Read as hyper reads them (chunked wins; identical lengths are one).
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    .map(String::from)
    .to_vec();
    let mut many = "GET / HTTP/1.1\r\n".to_owned();
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    corpus.push(many);
    corpus.extend(STRICTER.map(String::from));
    corpus
}

#[tokio::test]
async fn the_codec_never_accepts_what_hyper_refuses_and_agrees_on_bodies() {
    let mut stricter = Vec::new();
    for raw in corpus() {
        let hyper = hyper_reads(raw.as_bytes())
            .await
            .map(|(_, body)| body.to_vec());
        let codec = codec_reads(raw.as_bytes());
        match (&hyper, &codec) {
            (Some(theirs), Ok(ours)) => assert_eq!(ours, theirs, "body of {raw:?}"),
            (None, Ok(_)) => panic!("the codec accepts what hyper refuses: {raw:?}"),
            (Some(_), Err(_)) => stricter.push(raw),
            (None, Err(_)) => {}
        }
    }
    assert_eq!(
        stricter,
        STRICTER.map(String::from).to_vec(),
        "the stricter cases"
    );
}

/// The head hyper's client writes for the request hyper's server parsed
/// from `raw`, after `headers.rs` and `forward.rs`'s rules (as for a
/// dedicated HTTP/1 upstream connection).
async fn hyper_rewrites(raw: &str, rewrite: &RequestRewrite<'_>) -> String {
    let (mut parts, body) = hyper_reads(raw.as_bytes()).await.expect("hyper accepts");
    let client_host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("value");
    let host = match rewrite.host {
        HostRewrite::Preserve { fallback } => {
            client_host.clone().unwrap_or_else(|| value(fallback))
        }
        HostRewrite::Replace(host) => value(host),
    };
    strip_hop_by_hop(&mut parts.headers);
    if let Some(ip) = rewrite.forwarded_for {
        append_forwarded(&mut parts.headers, ip, client_host.as_ref());
    }
    if let Some(traceparent) = rewrite.traceparent {
        parts.headers.insert("traceparent", value(traceparent));
    }
    if parts.headers.get(http::header::HOST) != Some(&host) {
        parts.headers.insert(http::header::HOST, host);
    }
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let base = String::from_utf8_lossy(rewrite.base_path);
    parts.uri = format!("{base}{path}").parse().expect("path");
    parts.version = http::Version::HTTP_11;

    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.preserve_header_case(true).writev(false);
    let exchange = async {
        let (mut sender, connection) = builder
            .handshake(TokioIo::new(ours))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        // The body as the proxy streams it: of unknown length.
        let frames = (!body.is_empty()).then(|| Ok::<_, Infallible>(Frame::data(body)));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let request = Request::from_parts(parts, body);
        tokio::spawn(async move { sender.send_request(request).await });
        let mut written = Vec::new();
        let mut chunk = [0u8; 4096];
        while !written.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = theirs.read(&mut chunk).await.expect("read");
            assert!(read > 0, "hyper's client ended before its head");
            written.extend_from_slice(&chunk[..read]);
        }
        let end = written
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_default()
            + 4;
        String::from_utf8_lossy(&written[..end]).into_owned()
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("in time")
}

/// No change but the hop-by-hop headers.
const PLAIN: RequestRewrite<'static> = RequestRewrite {
    base_path: b"",
    host: HostRewrite::Preserve {
        fallback: b"up:8080",
    },
    forwarded_for: None,
    traceparent: None,
    chunked: false,
};

#[tokio::test]
async fn the_rewritten_request_head_is_the_one_hyper_writes() {
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    let plain = PLAIN;
    let everything = RequestRewrite {
        base_path: b"/base",
        host: HostRewrite::Replace(b"up:8080"),
        forwarded_for: Some(ip),
        traceparent: Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        chunked: false,
    };
    let forwarded = RequestRewrite {
        forwarded_for: Some(ip),
        ..plain
    };
    let chunked = RequestRewrite {
        chunked: true,
        ..plain
    };
    // wrk's request of bench/proxy.sh.
    let wrk = format!(
        "POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nContent-Type: application/json\r\nContent-Length: 840\r\n\r\n{}",
        "x".repeat(840)
    );
    let table: [(&str, &RequestRewrite<'_>); 12] = [
        (&wrk, &plain),
        (&wrk, &everything),
        ("GET /a?b=1 HTTP/1.1\r\nhost: erp\r\nAccept: */*\r\nUser-Agent: curl/8.5\r\nX-Empty:\r\n\r\n", &plain),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n", &plain),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nTE: deflate, trailers\r\nAccept: */*\r\n\r\n", &plain),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nTe: Trailers\r\nAccept: */*\r\n\r\n", &plain),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nTE: gzip\r\n\r\n", &plain),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n", &forwarded),
        ("GET /a HTTP/1.1\r\nHost: erp\r\nTraceparent: 00-aa-bb-00\r\nX-A: 1\r\n\r\n", &everything),
        ("GET http://erp.example/a?b HTTP/1.1\r\nAccept: */*\r\n\r\n", &forwarded),
        ("GET /a HTTP/1.0\r\nAccept: */*\r\n\r\n", &plain),
        ("POST /a HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n0\r\n\r\n", &chunked),
    ];
    for (raw, rewrite) in table {
        let theirs = hyper_rewrites(raw, rewrite).await;
        let mut head = RequestHead::default();
        assert!(matches!(
            head.parse(raw.as_bytes()),
            Ok(Parsed::Complete(_))
        ));
        let mut ours = Vec::new();
        write_request(raw.as_bytes(), &head, rewrite, &mut ours).expect("forwardable");
        assert_eq!(String::from_utf8_lossy(&ours), theirs, "for {raw:?}");
    }
}

#[tokio::test]
async fn interleaved_repeats_keep_the_clients_order_where_hyper_groups_them() {
    let raw = "GET / HTTP/1.1\r\nHost: erp\r\nX-A: 1\r\nX-B: 2\r\nx-a: 3\r\n\r\n";
    let rewrite = PLAIN;
    let theirs = hyper_rewrites(raw, &rewrite).await;
    assert_eq!(
        theirs,
        "GET / HTTP/1.1\r\nHost: erp\r\nX-A: 1\r\nx-a: 3\r\nX-B: 2\r\n\r\n"
    );
    let mut head = RequestHead::default();
    assert!(matches!(
        head.parse(raw.as_bytes()),
        Ok(Parsed::Complete(_))
    ));
    let mut ours = Vec::new();
    write_request(raw.as_bytes(), &head, &rewrite, &mut ours).expect("forwardable");
    assert_eq!(String::from_utf8_lossy(&ours), raw);
}

/// The head hyper's server writes to a client for the response hyper's
/// client read from an upstream that sent `raw`, after `headers.rs`
/// (as `forward.rs` responds: hop-by-hop removed, the body streamed).
async fn hyper_responds(raw: &str) -> String {
    // Upstream: hyper's client reads `raw` as the answer to a GET.
    let (ours, mut upstream) = tokio::io::duplex(1 << 16);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.preserve_header_case(true).writev(false);
    let fetch = async {
        let (mut sender, connection) = builder.handshake(TokioIo::new(ours)).await.ok()?;
        tokio::spawn(connection);
        let request = Request::get("/").body(Empty::<Bytes>::new()).ok()?;
        let answer = tokio::spawn(async move { sender.send_request(request).await });
        let mut chunk = [0u8; 4096];
        let _ = upstream.read(&mut chunk).await;
        upstream.write_all(raw.as_bytes()).await.ok()?;
        let response = answer.await.ok()?.ok()?;
        let (mut parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        strip_hop_by_hop(&mut parts.headers);
        Some((parts, body))
    };
    let (parts, body) = tokio::time::timeout(LIMIT, fetch)
        .await
        .ok()
        .flatten()
        .expect("hyper's client reads the response");

    // Client side: hyper's server answers a GET with it.
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let response = std::sync::Mutex::new(Some((parts, body)));
    let service = service_fn(move |_: Request<Incoming>| {
        let (parts, body) = response
            .lock()
            .ok()
            .and_then(|mut once| once.take())
            .expect("one request");
        let frames = (!body.is_empty()).then(|| Ok::<_, Infallible>(Frame::data(body)));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        async move { Ok::<_, Infallible>(Response::from_parts(parts, body)) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .preserve_header_case(true)
        .auto_date_header(false)
        .writev(false);
    let exchange = async {
        tokio::spawn(builder.serve_connection(TokioIo::new(server), service));
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .ok()?;
        let mut written = Vec::new();
        let mut chunk = [0u8; 4096];
        while !written.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = client.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            written.extend_from_slice(&chunk[..read]);
        }
        let end = written.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        Some(String::from_utf8_lossy(&written[..end]).into_owned())
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .ok()
        .flatten()
        .expect("hyper's server writes a head")
}

#[tokio::test]
async fn the_rewritten_response_head_is_the_one_hyper_writes() {
    let table = [
        // nginx's reply in bench/proxy.sh.
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 02:20:39 GMT\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}",
        "HTTP/1.1 201 Created Here\r\nlocation: /o/1\r\nKeep-Alive: timeout=5\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 1\r\nX-A: 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    for raw in table {
        let theirs = hyper_responds(raw).await;
        let mut head = ResponseHead::default();
        assert!(matches!(
            head.parse(raw.as_bytes()),
            Ok(Parsed::Complete(_))
        ));
        let framing = response_framing(raw.as_bytes(), &head, MethodKind::Other);
        let rewrite = ResponseRewrite {
            version: Version::Http11,
            chunked: matches!(
                framing,
                Ok(ResponseFraming::Final {
                    body: BodyLength::Chunked,
                    ..
                })
            ),
            drop_content_length: head.fields.transfer_encoding_lines > 0,
            connection: None,
        };
        let mut ours = Vec::new();
        write_response(raw.as_bytes(), &head, &rewrite, &mut ours);
        assert_eq!(String::from_utf8_lossy(&ours), theirs, "for {raw:?}");
    }
}

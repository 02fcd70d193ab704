//! What only the native HTTP/1 engine (`engine: native`) has to show
//! beyond the suites every engine runs (natively by default, `engine:
//! auto`; again with `WAYBILL_TEST_ENGINE=hyper`): it refuses a listener
//! it cannot serve at start-up, saying why, and drains
//! on shutdown (idle connections closed at once, a busy one after its
//! in-flight response, which then says `connection: close`), and cuts off
//! an upstream that stalls mid-body after the listener's `timeout`.

mod proxy_support;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use proxy_support::raw::{dechunk, split_head, RawClient, RawUpstream, Script};
use proxy_support::{listener, Proxy, WAIT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use waybill::clock::Clock;
use waybill::config::{Engine, HeaderCase, NativeRefusal, UpstreamProtocol};
use waybill::proxy::{serve_with, Exchange, ExchangeSink, ListenerOptions, Outcome, ProxyMetrics};

#[tokio::test]
async fn a_listener_the_native_engine_cannot_serve_is_refused_saying_why() {
    for (protocol, reason) in [(UpstreamProtocol::Http2, NativeRefusal::Http2Upstream)] {
        let mut listener = listener("http://127.0.0.1:9");
        listener.engine = Engine::Native;
        listener.upstream.protocol = protocol;
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut registry = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        let served = tokio::time::timeout(
            WAIT,
            serve_with(
                socket,
                Arc::new(listener),
                ListenerOptions::default(),
                ExchangeSink::new(tx, &mut registry),
                ProxyMetrics::new(&mut registry),
                Clock::system(),
                CancellationToken::new(),
            ),
        )
        .await
        .expect("refused at once");
        let error = served.expect_err("refused");
        assert!(
            error.to_string().contains("listener `wms-inbound`")
                && error.to_string().contains(&reason.to_string()),
            "{error}"
        );
    }
}

/// The answer of [`held_upstream`] to everything.
const DONE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone";

/// An upstream that tells `arrived` when `/slow` came and answers it only
/// once `release` is notified, with `slow_answer`; everything else at
/// once with [`DONE`].
async fn held_upstream(
    arrived: Arc<Notify>,
    release: Arc<Notify>,
    slow_answer: &'static [u8],
) -> String {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    let mut answer = DONE;
                    if seen.starts_with(b"GET /slow ") {
                        arrived.notify_one();
                        release.notified().await;
                        answer = slow_answer;
                    }
                    seen.clear();
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_busy_one_finish() {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let upstream = held_upstream(Arc::clone(&arrived), Arc::clone(&release), DONE).await;
    let mut native = listener(&upstream);
    native.engine = Engine::Native;
    let proxy = Proxy::start(native).await;

    let mut idle = RawClient::connect(proxy.addr).await;
    idle.write(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let first = idle.response().await;
    assert_eq!(first, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");

    let mut busy = RawClient::connect(proxy.addr).await;
    busy.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n").await;
    tokio::time::timeout(WAIT, arrived.notified())
        .await
        .expect("the slow request reached the upstream");
    let stopping = tokio::spawn(proxy.stop());

    // The idle connection closing shows the shutdown has begun; only then
    // does the busy one's response come.
    assert_eq!(idle.rest().await, "", "an idle connection closes at once");
    release.notify_one();
    assert_eq!(
        busy.rest().await,
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nconnection: close\r\n\r\ndone",
        "the in-flight response is finished, then the connection closes"
    );
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("serve returns once every connection ended")
        .expect("not panicked")
        .expect("served");
}

/// A client gone (reset) while an upstream's 103 is relayed: the request
/// is still counted with its final response's status and its exchange
/// recorded, as for any response the client did not take.
#[tokio::test]
async fn a_client_gone_while_a_1xx_is_relayed_still_counts_its_request() {
    const HINTS_THEN_DONE: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone";
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let upstream = held_upstream(Arc::clone(&arrived), Arc::clone(&release), HINTS_THEN_DONE).await;
    let mut native = listener(&upstream);
    native.engine = Engine::Native;
    let mut proxy = Proxy::start(native).await;

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("write");
    tokio::time::timeout(WAIT, arrived.notified())
        .await
        .expect("the request reached the upstream");
    // Closed with a reset: the proxy's next write to it fails.
    client.set_zero_linger().expect("linger");
    drop(client);
    release.notify_one();

    let series = "waybill_proxy_requests_total{listener=\"wms-inbound\",status_class=\"2xx\"}";
    let exchange = counted_then_recorded_as_200(&mut proxy, series).await;
    assert_eq!(exchange.uri.path(), "/slow");
}

/// Waits until `series` counts one, then for the exchange, which must be
/// recorded with the upstream's 200.
async fn counted_then_recorded_as_200(proxy: &mut Proxy, series: &str) -> Exchange {
    assert_eq!(proxy.metric_reaches(series, 1.0).await, Some(1.0));
    let exchange = proxy.exchange().await;
    assert!(
        matches!(exchange.outcome, Outcome::Response { status, .. } if status == 200),
        "{:?}",
        exchange.outcome
    );
    exchange
}

/// The answer every upstream in these tests gives a `GET`.
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Found by the `h1_connection` fuzz target (session 9): the engine's own
/// answers (the 502 of a failed upstream, the refusals) carried their body
/// to a `HEAD` request, which the client reads as the start of the next
/// response. Now they go without it, as hyper's server writes them.
#[tokio::test]
async fn the_engines_own_answers_to_head_have_no_body() {
    let upstream = RawUpstream::start(|request| {
        if request.starts_with(b"HEAD ") {
            Script::bytes("not a response\r\n\r\n")
        } else {
            Script::bytes(OK)
        }
    })
    .await;
    let mut native = listener(&format!("http://{}", upstream.addr));
    native.engine = Engine::Native;
    let proxy = Proxy::start(native).await;

    // A 502, then the connection still carries the next request.
    let mut client = RawClient::connect(proxy.addr).await;
    client.write(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let failed = client.head_response().await;
    assert!(failed.starts_with("HTTP/1.1 502 "), "{failed}");
    client.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(client.response().await, OK);

    // A refusal (no `Host`), then the connection closes.
    let mut client = RawClient::connect(proxy.addr).await;
    client.write(b"HEAD /a HTTP/1.1\r\n\r\n").await;
    let refused = client.rest().await;
    let (head, body) = split_head(refused.as_bytes());
    assert!(head.starts_with("HTTP/1.1 400 "), "{refused}");
    assert!(!head.contains("content-length: 0\r\n"), "{refused}");
    assert_eq!(body, b"", "{refused}");
}

/// On a `header_case: lowercase` listener the trailer fields that go on
/// are lower case too (as on every listener: the engine writes trailer
/// names as hyper forwards them), like every head the engine writes.
#[tokio::test]
async fn a_lowercase_listener_relays_trailers_in_lower_case() {
    let upstream = RawUpstream::start(|_| {
        Script::bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n")
    })
    .await;
    let mut native = listener(&format!("http://{}", upstream.addr));
    native.engine = Engine::Native;
    native.header_case = HeaderCase::Lowercase;
    let proxy = Proxy::start(native).await;

    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"GET /a HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        .await;
    let response = client.response().await;
    let (head, body) = split_head(response.as_bytes());
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\ntrailer: X-Sum\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        dechunk(body),
        (b"ok".to_vec(), "x-sum: 42\r\n\r\n".to_owned())
    );
}

/// An upstream that answers every request with `head_and_start` (a head
/// and the start of its body) and then stalls: it sends nothing more and
/// keeps the connection open until the test ends.
async fn stalling_upstream(head_and_start: &'static [u8]) -> String {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = socket.accept().await {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = stream.write_all(head_and_start).await;
            // Never closed nor written again: the test's runtime ends it.
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

/// An upstream that sends its response head and then stalls mid-body
/// does not hold the client connection: each read of a response body must
/// bring bytes within the listener's `timeout` (as its head must), else
/// the client gets what was relayed and the connection closes (the status
/// went with the head: too late for a 504), counted as an upstream
/// `timeout`, and the exchange is recorded with its body cut short.
#[tokio::test]
async fn an_upstream_stalling_mid_body_is_cut_off_after_the_listener_timeout() {
    let cases: [(&[u8], &str); 2] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ];
    for (upstream_sends, client_gets) in cases {
        let upstream = stalling_upstream(upstream_sends).await;
        let mut native = listener(&upstream);
        native.engine = Engine::Native;
        native.timeout = std::time::Duration::from_millis(200);
        let mut proxy = Proxy::start(native).await;

        let mut client = RawClient::connect(proxy.addr).await;
        client
            .write(b"GET /stalls HTTP/1.1\r\nHost: h\r\n\r\n")
            .await;
        // `rest` fails the test unless the proxy closes within the wait.
        assert_eq!(client.rest().await, client_gets);

        let series = "waybill_upstream_errors_total{listener=\"wms-inbound\",error=\"timeout\"}";
        let exchange = counted_then_recorded_as_200(&mut proxy, series).await;
        assert_eq!(&exchange.response_body.bytes[..], b"hello");
        assert!(!exchange.response_body.complete);
    }
}

//! The upstream connection an HTTP/1 client connection gets for itself:
//! its requests reuse one upstream connection, each client connection has
//! its own, and when the upstream closes it between two requests the next
//! request goes through on a new one; an ended client connection's upstream
//! connection serves the next client connection. Observed from the
//! upstream's side, by counting the connections it accepted.

mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 upstream that counts the connections it accepts and answers
/// every request with its path; with `keep_alive: false` it closes each
/// connection after one response (`Connection: close`).
struct CountingUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start(keep_alive: bool) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = socket.local_addr().expect("upstream addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let service = service_fn(|request: Request<Incoming>| async move {
                    let path = request.uri().path().to_owned();
                    // Read the request body before answering, as a server
                    // that keeps the connection must.
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(path))))
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        CountingUpstream { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// One HTTP/1.1 client connection to the proxy.
async fn client_connection(proxy: &Proxy) -> SendRequest<TestBody> {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(proxy.addr))
        .await
        .expect("connect within the wait")
        .expect("connect to the proxy");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("client handshake");
    tokio::spawn(connection);
    sender
}

/// Sends a POST of `path` on `sender` and returns the status and body.
async fn post(
    sender: &mut SendRequest<TestBody>,
    proxy: &Proxy,
    path: &str,
) -> (StatusCode, Bytes) {
    tokio::time::timeout(WAIT, sender.ready())
        .await
        .expect("client connection ready within the wait")
        .expect("client connection open");
    let request = Request::post(path)
        .version(Version::HTTP_11)
        .header("host", proxy.addr.to_string())
        .body(full(r#"{"shipment":"SH-1"}"#))
        .expect("request");
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("response within the wait")
        .expect("response");
    let status = response.status();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body within the wait")
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test]
async fn requests_of_one_client_connection_share_one_upstream_connection() {
    let upstream = CountingUpstream::start(true).await;
    let proxy = Proxy::start(listener(&upstream.url())).await;

    let mut first = client_connection(&proxy).await;
    for n in 0..3 {
        let path = format!("/v1/shipments/{n}");
        let (status, body) = post(&mut first, &proxy, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, path.as_bytes());
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "three requests, one upstream connection"
    );

    // Another client connection gets an upstream connection of its own.
    let mut second = client_connection(&proxy).await;
    let (status, _) = post(&mut second, &proxy, "/v1/shipments/3").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&mut first, &proxy, "/v1/shipments/4").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.accepted(), 2);

    proxy.stop().await.expect("proxy stops");
}

/// One client connection to the proxy that sends a single GET of `path` in
/// `version` (with `Connection: close` for HTTP/1.1) and reads until the
/// proxy closes it; returns the status line and the body.
async fn one_shot(proxy: &Proxy, version: &str, path: &str) -> (String, String) {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(proxy.addr))
        .await
        .expect("connect within the wait")
        .expect("connect to the proxy");
    let close = if version == "HTTP/1.1" {
        "connection: close\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} {version}\r\nhost: {}\r\n{close}\r\n",
        proxy.addr
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy closes within the wait")
        .expect("read the answer");
    let answer = String::from_utf8(answer).expect("a UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

#[tokio::test]
async fn client_connections_of_one_request_each_reuse_one_upstream_connection() {
    let upstream = CountingUpstream::start(true).await;
    let proxy = Proxy::start(listener(&upstream.url())).await;

    for n in 0..4 {
        // `Connection: close` and HTTP/1.0: the proxy closes each client
        // connection after its one response.
        let version = if n % 2 == 0 { "HTTP/1.1" } else { "HTTP/1.0" };
        let path = format!("/v1/parcels/{n}");
        let (status, body) = one_shot(&proxy, version, &path).await;
        assert!(status.ends_with(" 200 OK"), "request {n}: {status}");
        assert_eq!(body, path);
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "each ended client connection hands its upstream connection to the next"
    );

    proxy.stop().await.expect("proxy stops");
}

#[tokio::test]
async fn an_upstream_connection_closed_between_requests_is_opened_again() {
    let upstream = CountingUpstream::start(false).await;
    let proxy = Proxy::start(listener(&upstream.url())).await;

    let mut client = client_connection(&proxy).await;
    for n in 0..3 {
        let path = format!("/v1/labels/{n}");
        let (status, body) = post(&mut client, &proxy, &path).await;
        assert_eq!(status, StatusCode::OK, "request {n}");
        assert_eq!(body, path.as_bytes());
    }
    assert_eq!(
        upstream.accepted(),
        3,
        "the upstream closes after every response: one connection per request"
    );

    proxy.stop().await.expect("proxy stops");
}

#[tokio::test]
async fn h2c_clients_still_reach_an_http1_upstream() {
    let upstream = CountingUpstream::start(true).await;
    let proxy = Proxy::start(listener(&upstream.url())).await;

    let client = client(ClientProtocol::H2c);
    let requests = (0..4).map(|n| {
        let request = Request::post(proxy.url(&format!("/v1/orders/{n}")))
            .body(full("{}"))
            .expect("request");
        send(&client, request)
    });
    let answers = futures_util::future::join_all(requests).await;
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.version, Version::HTTP_2);
        assert_eq!(answer.body, format!("/v1/orders/{n}").as_bytes());
    }

    proxy.stop().await.expect("proxy stops");
}

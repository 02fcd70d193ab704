//! Shared pieces of the proxy integration tests: a listener built by hand
//! (the config loader is not used here), the proxy started in-process on
//! `127.0.0.1:0`, a recording upstream, HTTP/1.1 and h2c clients, and a
//! metrics reader. Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

pub mod raw;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use waybill::clock::Clock;
use waybill::config::{
    kind, Config, Direction, Engine, Forwarded, HeaderCase, HostHeader, Listener, ListenerId,
    Serving, Symbols, Upstream, UpstreamProtocol,
};
use waybill::proxy::{
    engine_serving, serve_with, Exchange, ExchangeSink, ListenerOptions, ProxyMetrics,
};

/// Upper bound of every wait in these tests; a failure, never a threshold.
pub const WAIT: Duration = Duration::from_secs(20);

pub type TestBody = BoxBody<Bytes, Infallible>;

/// A listener with the defaults an integration engineer would get, fronting
/// `upstream`.
pub fn listener(upstream: &str) -> Listener {
    let mut systems = Symbols::<kind::System>::default();
    let system = systems.intern("wms").expect("intern system");
    Listener {
        id: ListenerId(0),
        name: "wms-inbound".to_owned(),
        bind: "127.0.0.1:0".parse().expect("bind address"),
        upstream: Upstream {
            uri: upstream.parse().expect("upstream uri"),
            protocol: UpstreamProtocol::Auto,
        },
        system,
        direction: Direction::Inbound,
        host_header: HostHeader::Preserve,
        header_case: HeaderCase::Preserve,
        forwarded: Forwarded::Off,
        engine: Engine::Auto,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        tap_limit: 64 * 1024,
    }
}

/// The listener that `yaml` (one entry of a routes file's `listeners:`,
/// in flow style) declares, read through the config loader as the sidecar
/// reads it; its system is `wms`.
pub fn listener_from_yaml(yaml: &str) -> Listener {
    let routes = format!(
        "admin: {{ bind: 127.0.0.1:0 }}\nsystems: [wms]\nkeys: [order]\nroot: order\n\
         listeners:\n  - {yaml}\nmilestones: []\nroutes: []\n"
    );
    let config = Config::from_yaml(&routes, "listener.yaml")
        .unwrap_or_else(|errors| panic!("{errors}\n{routes}"));
    config.listeners.into_iter().next().expect("one listener")
}

/// `WAYBILL_TEST_ENGINE=hyper` (ci/test.sh's second run) runs the proxy
/// tests against hyper's HTTP/1 engine: every listener that does not
/// choose an engine (`engine: auto`, the default) gets `engine: hyper`.
/// Without it such a listener is served as the sidecar would serve it: by
/// the native engine where it can (see [`Listener::serving`]).
fn with_test_engine(mut listener: Listener) -> Listener {
    if test_engine_is_hyper() && listener.engine == Engine::Auto {
        listener.engine = Engine::Hyper;
    }
    listener
}

/// Whether the tests run against hyper's engine (see [`with_test_engine`]).
pub fn test_engine_is_hyper() -> bool {
    std::env::var("WAYBILL_TEST_ENGINE").is_ok_and(|engine| engine == "hyper")
}

/// Whether [`Proxy`] serves `listener` with `options` by the native engine.
pub fn served_natively(listener: &Listener, options: &ListenerOptions) -> bool {
    engine_serving(&with_test_engine(listener.clone()), options) == Ok(Serving::Native)
}

/// The proxy running in-process for one listener.
pub struct Proxy {
    pub addr: SocketAddr,
    pub exchanges: mpsc::Receiver<Exchange>,
    pub registry: Registry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Proxy {
    /// Starts the proxy with an observation queue of `queue` places.
    pub async fn start_with_queue(listener: Listener, queue: usize) -> Proxy {
        Proxy::start_with_options(listener, ListenerOptions::default(), queue).await
    }

    /// Starts the proxy with the listener's opt-in route `options`.
    pub async fn start_with_options(
        listener: Listener,
        options: ListenerOptions,
        queue: usize,
    ) -> Proxy {
        let listener = with_test_engine(listener);
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = socket.local_addr().expect("proxy addr");
        let mut registry = Registry::default();
        let (tx, exchanges) = mpsc::channel(queue);
        let sink = ExchangeSink::new(tx, &mut registry);
        let metrics = ProxyMetrics::new(&mut registry);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(
            socket,
            Arc::new(listener),
            options,
            sink,
            metrics,
            Clock::system(),
            shutdown.clone(),
        ));
        Proxy {
            addr,
            exchanges,
            registry,
            shutdown,
            task,
        }
    }

    pub async fn start(listener: Listener) -> Proxy {
        Proxy::start_with_queue(listener, 64).await
    }

    pub fn url(&self, path: &str) -> Uri {
        format!("http://{}{path}", self.addr)
            .parse()
            .expect("proxy url")
    }

    /// The next exchange the proxy offered.
    pub async fn exchange(&mut self) -> Exchange {
        tokio::time::timeout(WAIT, self.exchanges.recv())
            .await
            .expect("an exchange within the wait")
            .expect("exchange queue open")
    }

    /// The value of the sample `series` (name with labels, as exposed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    /// Waits until `series` reaches `value` (the proxy counts after the
    /// client may already have its answer); returns the last value seen.
    pub async fn metric_reaches(&self, series: &str, value: f64) -> Option<f64> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.metric(series);
            if seen == Some(value) || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Cancels the shutdown token and waits for `serve` to return.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task not panicked")
    }
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    /// Sent as these frames; with `sized` the body has a `Content-Length`.
    pub chunks: Vec<Bytes>,
    pub sized: bool,
    /// Sent after the body (which then streams, without a length).
    pub trailers: Option<HeaderMap>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: Vec::new(),
            chunks: vec![body.into()],
            sized: true,
            trailers: None,
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The full body bytes.
    pub fn body(&self) -> Bytes {
        self.chunks.concat().into()
    }
}

type Responder = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// An upstream HTTP server (HTTP/1.1 and h2c) that records every request
/// and answers with `respond`. It adds no `Date` header, so what it sends
/// is exactly the reply's headers plus framing.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub received: mpsc::UnboundedReceiver<Received>,
}

impl TestUpstream {
    pub async fn start(respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = socket.local_addr().expect("upstream addr");
        let (tx, received) = mpsc::unbounded_channel();
        let respond: Responder = Arc::new(respond);
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .preserve_header_case(true)
                .auto_date_header(false);
            builder.http2().auto_date_header(false);
            while let Ok((stream, _)) = socket.accept().await {
                let tx = tx.clone();
                let respond = Arc::clone(&respond);
                let service = service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    let respond = Arc::clone(&respond);
                    async move {
                        let (parts, body) = request.into_parts();
                        let (body, trailers) = match body.collect().await {
                            Ok(collected) => {
                                let trailers = collected.trailers().cloned();
                                (collected.to_bytes(), trailers)
                            }
                            Err(_) => (Bytes::new(), None),
                        };
                        let received = Received {
                            method: parts.method,
                            uri: parts.uri,
                            version: parts.version,
                            headers: parts.headers,
                            body,
                            trailers,
                        };
                        let reply = respond(&received);
                        let _ = tx.send(received);
                        tokio::time::sleep(reply.delay).await;
                        Ok::<_, Infallible>(reply_response(reply))
                    }
                });
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestUpstream { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request the upstream received.
    pub async fn request(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("upstream request within the wait")
            .expect("upstream running")
    }
}

fn reply_response(reply: Reply) -> Response<TestBody> {
    let body = if let Some(trailers) = reply.trailers {
        with_trailers(reply.chunks, trailers)
    } else if reply.sized {
        Full::new(reply.body()).boxed()
    } else {
        streaming(reply.chunks)
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .append(name, value.parse().expect("header value"));
    }
    response
}

/// A body of these frames with no known length (chunked on HTTP/1).
pub fn streaming(chunks: Vec<Bytes>) -> TestBody {
    let frames = chunks
        .into_iter()
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    StreamBody::new(stream::iter(frames)).boxed()
}

/// A body of these frames followed by `trailers`.
pub fn with_trailers(chunks: Vec<Bytes>, trailers: HeaderMap) -> TestBody {
    let frames = chunks
        .into_iter()
        .map(Frame::data)
        .chain(std::iter::once(Frame::trailers(trailers)))
        .map(Ok::<_, Infallible>);
    StreamBody::new(stream::iter(frames)).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// Which protocol a test client speaks to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    Http1,
    H2c,
}

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>;

pub fn client(protocol: ClientProtocol) -> TestClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(protocol == ClientProtocol::H2c);
    builder.build_http()
}

/// A response read to its end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

pub async fn send(client: &TestClient, request: Request<TestBody>) -> Answer {
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("response within the wait")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body within the wait")
        .expect("body");
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        trailers: body.trailers().cloned(),
        body: body.to_bytes(),
    }
}

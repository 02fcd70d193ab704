//! The idempotency guard through the real proxy: a repeated key on a guarded
//! route gets the identical stored first response and is not forwarded;
//! everything else is forwarded; only complete 2xx responses within
//! `max_response` are stored; the window runs on the injected clock and
//! `max_entries` evicts the oldest; a repeat that arrives while the first
//! request is in flight waits for it. The upstream counts what it receives.

mod proxy_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use prometheus_client::registry::Registry;
use proxy_support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use waybill::app;
use waybill::clock::Clock;
use waybill::config::Config;
use waybill::proxy::{serve_guarded, Exchange, ExchangeSink, GuardedRoutes, ProxyMetrics};

const BUY: &str = "/v2/shipments/SH-1/buy";
const LISTENER: &str = "carrier-out";

/// The guard settings of the tests unless one says otherwise.
const GUARD: &str = "{ window: 1h, max_entries: 2, max_response: 1KiB }";

/// A routes file with one guarded route (`carrier.buy_label`), a more
/// specific unguarded route on the same path shape, and an unguarded one.
fn config(upstream: &str, guard: &str) -> Config {
    let yaml = format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
systems: [carrier]
keys: [order, shipment]
listeners:
  - {{ name: {LISTENER}, bind: "127.0.0.1:0", upstream: "{upstream}", system: carrier, timeout: 10s }}
routes:
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: "/v2/shipments/{{shipment_id}}/buy" }}
    keys: {{ shipment: {{ path_param: shipment_id }} }}
    idempotency_guard: {guard}
  - name: carrier.buy_test_label
    system: carrier
    match: {{ method: POST, path: "/v2/shipments/test/buy" }}
  - name: carrier.track
    system: carrier
    match: {{ method: POST, path: "/v2/track" }}
"#
    );
    Config::from_yaml(&yaml, "<proxy_guard>").expect("valid routes file")
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock {
    origin: SystemTime,
    offset_secs: Arc<AtomicU64>,
}

impl TestClock {
    fn new() -> Self {
        TestClock {
            origin: SystemTime::now(),
            offset_secs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn clock(&self) -> Clock {
        let (origin, offset) = (self.origin, Arc::clone(&self.offset_secs));
        Clock::from_fn(move || origin + Duration::from_secs(offset.load(Ordering::SeqCst)))
    }

    fn advance(&self, by: Duration) {
        self.offset_secs.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

/// The proxy serving the test config's listener with its guards.
struct GuardedProxy {
    addr: std::net::SocketAddr,
    exchanges: mpsc::Receiver<Exchange>,
    registry: Registry,
    time: TestClock,
    _shutdown: tokio_util::sync::DropGuard,
}

impl GuardedProxy {
    async fn start(upstream: &TestUpstream, guard: &str) -> GuardedProxy {
        let config = config(&upstream.url(), guard);
        let listener = config.listeners[0].clone();
        let guarded = GuardedRoutes::new(listener.id, &config.routes);
        assert!(!guarded.is_empty());
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = socket.local_addr().expect("proxy addr");
        let mut registry = Registry::default();
        let (tx, exchanges) = mpsc::channel(64);
        let sink = ExchangeSink::new(tx, &mut registry);
        let metrics = ProxyMetrics::new(&mut registry);
        let time = TestClock::new();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_guarded(
            socket,
            Arc::new(listener),
            guarded,
            sink,
            metrics,
            time.clock(),
            shutdown.clone(),
        ));
        GuardedProxy {
            addr,
            exchanges,
            registry,
            time,
            _shutdown: shutdown.drop_guard(),
        }
    }

    fn request(&self, path: &str, key: Option<&str>) -> Request<TestBody> {
        let mut request = Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request
            .body(full(r#"{"reference":"SO-1001"}"#))
            .expect("request")
    }

    /// Sends `path` with idempotency key `key` over HTTP/1.1.
    async fn post(&self, path: &str, key: Option<&str>) -> Answer {
        send(&client(ClientProtocol::Http1), self.request(path, key)).await
    }

    async fn exchange(&mut self) -> Exchange {
        tokio::time::timeout(WAIT, self.exchanges.recv())
            .await
            .expect("an exchange within the wait")
            .expect("exchange queue open")
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }
}

/// Requests the upstream has received so far (each is recorded before it
/// is answered, so every request whose answer the test holds is counted).
fn drain(upstream: &mut TestUpstream) -> usize {
    let mut count = 0;
    while upstream.received.try_recv().is_ok() {
        count += 1;
    }
    count
}

/// An upstream that answers every request with a new label number in a
/// header and the body, so a forwarded repeat never looks like a replay.
async fn numbering_upstream(status: StatusCode) -> TestUpstream {
    let next = Arc::new(AtomicU64::new(1));
    TestUpstream::start(move |_| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let mut reply = Reply::ok(format!(r#"{{"label":"LBL-{n}","tracking_code":"1Z{n}"}}"#))
            .header("content-type", "application/json")
            .header("x-label-number", n.to_string())
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2");
        reply.status = status;
        reply
    })
    .await
}

fn assert_same(first: &Answer, repeat: &Answer) {
    assert_eq!(repeat.status, first.status);
    assert_eq!(repeat.headers, first.headers);
    assert_eq!(repeat.body, first.body);
    assert_eq!(repeat.trailers, first.trailers);
}

fn replays(proxy: &GuardedProxy) -> Option<f64> {
    proxy.metric(&format!(
        r#"waybill_guard_replays_total{{listener="{LISTENER}",operation="carrier.buy_label"}}"#
    ))
}

fn stored(proxy: &GuardedProxy) -> Option<f64> {
    proxy.metric(&format!(
        r#"waybill_guard_stored_responses{{listener="{LISTENER}"}}"#
    ))
}

fn evictions(proxy: &GuardedProxy, reason: &str) -> Option<f64> {
    proxy.metric(&format!(
        r#"waybill_guard_evictions_total{{listener="{LISTENER}",reason="{reason}"}}"#
    ))
}

#[tokio::test]
async fn a_repeated_key_gets_the_identical_stored_response_and_the_upstream_sees_one_request() {
    let mut upstream = numbering_upstream(StatusCode::CREATED).await;
    let proxy = GuardedProxy::start(&upstream, GUARD).await;

    let first = proxy.post(BUY, Some("key-1")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.headers["x-label-number"], "1");
    let repeat = proxy.post(BUY, Some("key-1")).await;
    assert_same(&first, &repeat);
    let h2 = send(
        &client(ClientProtocol::H2c),
        proxy.request(BUY, Some("key-1")),
    )
    .await;
    assert_eq!(h2.status, first.status);
    assert_eq!(h2.body, first.body);
    assert_eq!(h2.headers["x-label-number"], "1");
    assert_eq!(
        h2.headers.get_all("set-cookie").iter().count(),
        2,
        "every value of a repeated header is replayed"
    );

    assert_eq!(
        drain(&mut upstream),
        1,
        "only the first request is forwarded"
    );
    assert_eq!(replays(&proxy), Some(2.0));
    assert_eq!(stored(&proxy), Some(1.0));
}

#[tokio::test]
async fn a_streamed_body_and_its_trailers_are_replayed_whole() {
    let next = Arc::new(AtomicU64::new(1));
    let mut upstream = TestUpstream::start(move |_| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", n.to_string().parse().expect("value"));
        let mut reply = Reply::ok("").header("trailer", "x-checksum");
        reply.chunks = vec![
            Bytes::from(format!("label {n}, ")),
            Bytes::from_static(b"part two"),
        ];
        reply.sized = false;
        reply.trailers = Some(trailers);
        reply
    })
    .await;
    let mut proxy = GuardedProxy::start(&upstream, GUARD).await;

    let with_te = |proxy: &GuardedProxy| {
        let mut request = proxy.request(BUY, Some("k"));
        request
            .headers_mut()
            .insert("te", http::HeaderValue::from_static("trailers"));
        request
    };
    let first = send(&client(ClientProtocol::Http1), with_te(&proxy)).await;
    assert_eq!(first.body, "label 1, part two");
    assert!(first.trailers.is_some());
    assert!(
        proxy.exchange().await.response_body.complete,
        "a body ending in trailers is complete"
    );
    let repeat = send(&client(ClientProtocol::Http1), with_te(&proxy)).await;
    assert_same(&first, &repeat);
    assert_eq!(drain(&mut upstream), 1);
}

#[tokio::test]
async fn a_different_key_no_key_or_an_unguarded_route_is_forwarded() {
    let mut upstream = numbering_upstream(StatusCode::OK).await;
    let proxy = GuardedProxy::start(&upstream, GUARD).await;

    let first = proxy.post(BUY, Some("key-1")).await;
    let other_key = proxy.post(BUY, Some("key-2")).await;
    assert_ne!(other_key.body, first.body);
    let no_key = proxy.post(BUY, None).await;
    assert_ne!(no_key.body, first.body);
    // The same key on other routes: one the guarded template would match
    // but a more specific unguarded route wins, and an unrelated route.
    let specific = proxy.post("/v2/shipments/test/buy", Some("key-1")).await;
    assert_ne!(specific.body, first.body);
    let track = proxy.post("/v2/track", Some("key-1")).await;
    assert_ne!(track.body, first.body);
    let track_again = proxy.post("/v2/track", Some("key-1")).await;
    assert_ne!(track_again.body, track.body);
    // The key is (route, header value): the same key for another shipment
    // of the same route gets the first response (documented).
    let again = proxy.post("/v2/shipments/SH-2/buy", Some("key-1")).await;
    assert_same(&first, &again);

    assert_eq!(drain(&mut upstream), 6);
    assert_eq!(replays(&proxy), Some(1.0));
}

#[tokio::test]
async fn a_non_2xx_first_response_is_not_stored_and_its_repeat_is_forwarded() {
    let mut upstream = numbering_upstream(StatusCode::SERVICE_UNAVAILABLE).await;
    let proxy = GuardedProxy::start(&upstream, GUARD).await;

    let first = proxy.post(BUY, Some("key-1")).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    let repeat = proxy.post(BUY, Some("key-1")).await;
    assert_eq!(repeat.headers["x-label-number"], "2");
    assert_eq!(drain(&mut upstream), 2);
    assert_eq!(stored(&proxy), Some(0.0));
    assert_eq!(replays(&proxy), Some(0.0));
}

#[tokio::test]
async fn a_response_over_max_response_streams_whole_to_its_client_but_is_not_stored() {
    for sized in [true, false] {
        let next = Arc::new(AtomicU64::new(0));
        let mut upstream = TestUpstream::start(move |_| {
            let n = next.fetch_add(1, Ordering::SeqCst) as u8;
            let body: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8 ^ n).collect();
            let mut reply = Reply::ok("");
            reply.chunks = body.chunks(700).map(Bytes::copy_from_slice).collect();
            reply.sized = sized;
            reply
        })
        .await;
        let proxy = GuardedProxy::start(&upstream, GUARD).await;

        let first = proxy.post(BUY, Some("big")).await;
        assert_eq!(first.body.len(), 4000, "sized: {sized}");
        let expected: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        assert!(first.body == expected, "body changed on the way");
        let repeat = proxy.post(BUY, Some("big")).await;
        assert_ne!(repeat.body, first.body, "the repeat was forwarded");
        assert_eq!(drain(&mut upstream), 2, "sized: {sized}");
        assert_eq!(stored(&proxy), Some(0.0));
    }
}

#[tokio::test]
async fn after_the_window_the_repeat_is_forwarded_again() {
    let mut upstream = numbering_upstream(StatusCode::OK).await;
    let proxy = GuardedProxy::start(&upstream, GUARD).await;

    let first = proxy.post(BUY, Some("key-1")).await;
    proxy.time.advance(Duration::from_secs(3599));
    assert_same(&first, &proxy.post(BUY, Some("key-1")).await);
    proxy.time.advance(Duration::from_secs(1));
    let late = proxy.post(BUY, Some("key-1")).await;
    assert_eq!(late.headers["x-label-number"], "2");
    assert_eq!(evictions(&proxy, "expired"), Some(1.0));
    // The late answer is stored in turn.
    assert_same(&late, &proxy.post(BUY, Some("key-1")).await);
    assert_eq!(drain(&mut upstream), 2);
}

#[tokio::test]
async fn max_entries_evicts_the_oldest_stored_response() {
    let mut upstream = numbering_upstream(StatusCode::OK).await;
    let proxy = GuardedProxy::start(&upstream, GUARD).await;

    let a = proxy.post(BUY, Some("a")).await;
    let b = proxy.post(BUY, Some("b")).await;
    let c = proxy.post(BUY, Some("c")).await;
    assert_eq!(stored(&proxy), Some(2.0));
    assert_eq!(evictions(&proxy, "capacity"), Some(1.0));
    assert_same(&c, &proxy.post(BUY, Some("c")).await);
    assert_same(&b, &proxy.post(BUY, Some("b")).await);
    let a_again = proxy.post(BUY, Some("a")).await;
    assert_ne!(
        a_again.body, a.body,
        "a was evicted, so its repeat is forwarded"
    );
    assert_eq!(drain(&mut upstream), 4);
}

#[tokio::test]
async fn a_repeat_arriving_while_the_first_is_in_flight_waits_and_gets_its_response() {
    let next = Arc::new(AtomicU64::new(1));
    let mut upstream = TestUpstream::start(move |_| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let mut reply = Reply::ok(format!("label {n}")).header("x-label-number", n.to_string());
        reply.delay = Duration::from_millis(300);
        reply
    })
    .await;
    let proxy = Arc::new(GuardedProxy::start(&upstream, GUARD).await);

    let first = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.post(BUY, Some("slow")).await }
    });
    // The first request is at the upstream (which answers in 300 ms).
    upstream.request().await;
    let repeat = proxy.post(BUY, Some("slow")).await;
    let first = first.await.expect("first request task");
    assert_eq!(first.body, "label 1");
    assert_same(&first, &repeat);
    assert_eq!(drain(&mut upstream), 0, "the repeat was never forwarded");
    assert_eq!(replays(&proxy), Some(1.0));
}

#[tokio::test]
async fn a_repeat_waiting_on_a_first_request_that_fails_is_forwarded_in_its_place() {
    let next = Arc::new(AtomicU64::new(1));
    let mut upstream = TestUpstream::start(move |_| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let mut reply = Reply::ok(format!("attempt {n}"));
        if n == 1 {
            reply.status = StatusCode::INTERNAL_SERVER_ERROR;
            reply.delay = Duration::from_millis(300);
        }
        reply
    })
    .await;
    let proxy = Arc::new(GuardedProxy::start(&upstream, GUARD).await);

    let first = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.post(BUY, Some("flaky")).await }
    });
    upstream.request().await;
    let repeat = proxy.post(BUY, Some("flaky")).await;
    let first = first.await.expect("first request task");
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(repeat.status, StatusCode::OK);
    assert_eq!(repeat.body, "attempt 2");
    // The successful retry is what later repeats get.
    assert_same(&repeat, &proxy.post(BUY, Some("flaky")).await);
    assert_eq!(drain(&mut upstream), 1, "the retry, after the first");
}

#[tokio::test]
async fn the_replayed_exchange_reaches_the_sink_marked_replayed() {
    let mut upstream = numbering_upstream(StatusCode::CREATED).await;
    let mut proxy = GuardedProxy::start(&upstream, GUARD).await;

    let first = proxy.post(BUY, Some("key-1")).await;
    let original = proxy.exchange().await;
    assert!(!original.replayed);
    proxy.post(BUY, Some("key-1")).await;
    let replayed = proxy.exchange().await;
    assert!(replayed.replayed);
    assert_ne!(replayed.id, original.id);
    assert_eq!(replayed.uri, BUY);
    let key = http::HeaderName::from_static("idempotency-key");
    assert_eq!(replayed.request_headers.get(&key).expect("key"), "key-1");
    assert_eq!(replayed.request_body.bytes, r#"{"reference":"SO-1001"}"#);
    assert!(replayed.request_body.complete);
    assert_eq!(replayed.outcome.status(), StatusCode::CREATED);
    assert_eq!(replayed.response_body.bytes, first.body);
    assert!(replayed.response_body.complete);
    assert_eq!(replayed.upstream_duration, Duration::ZERO);
    assert_eq!(drain(&mut upstream), 1);
}

#[tokio::test]
async fn the_sidecar_guards_the_routes_that_opt_in_in_its_routes_file() {
    let mut upstream = numbering_upstream(StatusCode::CREATED).await;
    let config = config(&upstream.url(), GUARD);
    let sidecar = app::start_with_env(config, Clock::system(), &|_| None)
        .await
        .expect("sidecar starts");
    let addr = sidecar.listener_addr(LISTENER).expect("listener bound");
    let request = |path: &str, key: &str| {
        Request::post(format!("http://{addr}{path}"))
            .header("idempotency-key", key)
            .body(full("{}"))
            .expect("request")
    };
    let http = client(ClientProtocol::Http1);

    let first = send(&http, request(BUY, "k")).await;
    assert_same(&first, &send(&http, request(BUY, "k")).await);
    let track = send(&http, request("/v2/track", "k")).await;
    assert_ne!(track.body, first.body);
    assert_eq!(
        drain(&mut upstream),
        2,
        "the guarded repeat was not forwarded"
    );

    let metrics = send(
        &http,
        Request::get(format!("http://{}/metrics", sidecar.admin_addr()))
            .body(full(""))
            .expect("request"),
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let replays = format!(
        r#"waybill_guard_replays_total{{listener="{LISTENER}",operation="carrier.buy_label"}} 1"#
    );
    assert!(metrics.contains(&replays), "{metrics}");
    sidecar
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

//! The idempotency guard across restarts and replicas: an upstream that
//! counts the calls it gets and answers each one differently (so a replayed
//! answer is told apart from a forwarded one), a routes file with one
//! guarded route, and reading the sidecar's metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::Semaphore;

/// Bound on every wait.
const PATIENCE: Duration = Duration::from_secs(20);

/// An upstream that answers the n-th label purchase with `201`, header
/// `x-label: L-n` and body `{"label":"L-n"}` (`503` when the request has
/// an `x-fail` header); a gated one answers only once the test
/// [`open`](Counting::open)s it.
pub struct Counting {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Counting {
    pub async fn start() -> Counting {
        Self::with_gate(Semaphore::MAX_PERMITS).await
    }

    /// Counts each request as it arrives and holds its answer until
    /// [`Counting::open`].
    pub async fn gated() -> Counting {
        Self::with_gate(0).await
    }

    async fn with_gate(permits: usize) -> Counting {
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(permits));
        let counter = Arc::clone(&calls);
        let waiting = Arc::clone(&gate);
        let app = Router::new().fallback(post(move |request: HeaderMap| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = Arc::clone(&waiting);
            async move {
                let _pass = gate.acquire().await.expect("gate open");
                let mut headers = HeaderMap::new();
                headers.insert("x-label", format!("L-{n}").parse().expect("header"));
                let status = if request.contains_key("x-fail") {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::CREATED
                };
                (status, headers, format!("{{\"label\":\"L-{n}\"}}"))
            }
        }));
        Counting {
            addr: super::serve(app).await,
            calls,
            gate,
        }
    }

    /// Lets every held and later request be answered.
    pub fn open(&self) {
        self.gate.add_permits(1024);
    }

    /// Requests the upstream has answered.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A routes file with one listener in front of `upstream` and the guarded
/// route `carrier.buy_label`; `state` is the content of `state:`.
pub fn config(upstream: SocketAddr, state: &str) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
state: {{ {state} }}
systems: [carrier]
keys: [shipment]
root: shipment
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: http://{upstream}, system: carrier }}
routes:
  - name: carrier.buy_label
    system: carrier
    match: {{ method: POST, path: '/v2/shipments/{{shipment_id}}/buy' }}
    keys: {{ shipment: {{ path_param: shipment_id }} }}
    idempotency_guard: {{ window: 10m, max_entries: 100 }}
"#
    )
}

/// What a client got: status, `x-label`, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub label: Option<String>,
    pub body: Vec<u8>,
}

/// Buys a label through the sidecar at `edge` with idempotency key `key`.
pub async fn buy(client: &reqwest::Client, edge: SocketAddr, key: &str) -> Answer {
    send(client, edge, key, false).await
}

/// [`buy`]; with `fail`, the upstream answers `503`.
pub async fn send(client: &reqwest::Client, edge: SocketAddr, key: &str, fail: bool) -> Answer {
    let mut request = client
        .post(format!("http://{edge}/v2/shipments/SH-1/buy"))
        .header("idempotency-key", key)
        .body("{\"service\":\"express\"}");
    if fail {
        request = request.header("x-fail", "1");
    }
    let response = request.send().await.expect("the sidecar answers");
    Answer {
        status: response.status().as_u16(),
        label: response
            .headers()
            .get("x-label")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

/// The sum of the samples of `series` (a name, optionally with the start
/// of its labels) on the sidecar's `/metrics`.
pub async fn sample(client: &reqwest::Client, admin: SocketAddr, series: &str) -> f64 {
    let text = super::metrics_text(client, admin).await;
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `series` reaches `at_least` on the sidecar's `/metrics`.
pub async fn wait_for(client: &reqwest::Client, admin: SocketAddr, series: &str, at_least: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = sample(client, admin, series).await;
        if value >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value}, below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

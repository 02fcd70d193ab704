//! Helpers shared by the integration tests. Each test crate uses some of
//! them, so unused ones are expected per crate.
#![allow(dead_code)]

pub mod guard;
pub mod otlp_receiver;
pub mod process;
pub mod redis;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// The sidecar's `/metrics` text (the classic Prometheus exposition) from
/// its admin address.
pub async fn metrics_text(client: &reqwest::Client, admin: SocketAddr) -> String {
    client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics text")
}

/// Longest an in-process sidecar's pipeline may take to settle.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// POSTs `body` with `headers` through listener `listener` of an
/// in-process sidecar, waits (at most [`SETTLE`]) until its pipeline has
/// settled, and returns the status the client got.
pub async fn post_settled(
    client: &reqwest::Client,
    sidecar: &waybill::app::Sidecar,
    listener: &str,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> u16 {
    let addr = sidecar.listener_addr(listener).expect("listener");
    let mut request = client.post(format!("http://{addr}{path}")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let status = request
        .send()
        .await
        .expect("through the sidecar")
        .status()
        .as_u16();
    assert!(sidecar.settle(SETTLE).await, "pipeline settles");
    status
}

/// Serves `app` on a free loopback port for the rest of the test.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = socket.local_addr().expect("upstream addr");
    tokio::spawn(async move { axum::serve(socket, app).await });
    addr
}

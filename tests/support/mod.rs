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

/// Serves `app` on a free loopback port for the rest of the test.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = socket.local_addr().expect("upstream addr");
    tokio::spawn(async move { axum::serve(socket, app).await });
    addr
}

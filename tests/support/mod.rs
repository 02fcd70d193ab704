//! Helpers shared by the integration tests. Each test crate uses some of
//! them, so unused ones are expected per crate.
#![allow(dead_code)]

pub mod guard;
pub mod otlp_receiver;
pub mod process;
pub mod redis;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Serves `app` on a free loopback port for the rest of the test.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = socket.local_addr().expect("upstream addr");
    tokio::spawn(async move { axum::serve(socket, app).await });
    addr
}

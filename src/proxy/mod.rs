//! The proxy stage: listeners that forward each request to their upstream
//! byte-for-byte, streaming, and tap a bounded copy of both bodies into an
//! [`Exchange`] handed to extraction with `try_send` (dropped and counted
//! when the queue is full; traffic never waits on observation).

mod exchange;

pub use exchange::{Exchange, Outcome, Tapped, UpstreamError};

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Listener;

/// Where finished exchanges go: a bounded queue that never blocks the proxy.
#[derive(Clone)]
pub struct ExchangeSink {
    tx: mpsc::Sender<Exchange>,
}

impl ExchangeSink {
    /// Wraps the sending half of the observation queue and registers the
    /// drop counter in `registry`.
    pub fn new(tx: mpsc::Sender<Exchange>, _registry: &mut Registry) -> Self {
        ExchangeSink { tx }
    }

    /// Hands `exchange` on without waiting; drops and counts it when full.
    pub fn offer(&self, exchange: Exchange) {
        let _ = self.tx.try_send(exchange);
    }
}

/// Serves one listener until `shutdown` is cancelled.
pub async fn serve(
    _socket: TcpListener,
    _listener: Arc<Listener>,
    _sink: ExchangeSink,
    _clock: Clock,
    _shutdown: CancellationToken,
) -> std::io::Result<()> {
    unimplemented!("proxy::serve is being written")
}

//! The hand-off from the proxy to extraction: a bounded queue that never
//! makes traffic wait. A full (or closed) queue drops the exchange and counts
//! it in `waybill_observations_dropped_total{reason}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Exchange;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// Where finished exchanges go: a bounded queue that never blocks the proxy.
///
/// Clones share the queue, the drop counters and the exchange id counter, so
/// one sink cloned into every listener gives ids unique across the process.
#[derive(Clone, Debug)]
pub struct ExchangeSink {
    tx: mpsc::Sender<Exchange>,
    /// Next exchange id. Shared, not global: whoever builds the sink owns
    /// the id space (one per process in the app, one per test).
    next_id: Arc<AtomicU64>,
    /// Pre-resolved handles of the drop counter, one per reason.
    dropped_full: Counter,
    dropped_closed: Counter,
}

impl ExchangeSink {
    /// Wraps the sending half of the observation queue and registers
    /// `waybill_observations_dropped_total{reason="queue_full"|"closed"}`
    /// in `registry`.
    pub fn new(tx: mpsc::Sender<Exchange>, registry: &mut Registry) -> Self {
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "waybill_observations_dropped",
            "Exchanges the proxy could not hand to extraction, by reason",
            dropped.clone(),
        );
        let dropped_full = dropped
            .get_or_create(&DropLabels {
                reason: "queue_full",
            })
            .clone();
        let dropped_closed = dropped
            .get_or_create(&DropLabels { reason: "closed" })
            .clone();
        ExchangeSink {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            dropped_full,
            dropped_closed,
        }
    }

    /// Hands `exchange` on without waiting; drops and counts it when the
    /// queue is full or its reader is gone.
    pub fn offer(&self, exchange: Exchange) {
        match self.tx.try_send(exchange) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped_full.inc();
            }
            Err(TrySendError::Closed(_)) => {
                self.dropped_closed.inc();
            }
        }
    }

    /// A fresh exchange id: unique among clones of this sink, increasing.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

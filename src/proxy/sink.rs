//! The hand-off from the proxy to the next stage: a bounded queue that
//! never makes traffic wait. A full (or closed) queue drops the exchange and
//! counts it in `waybill_observations_dropped_total{reason}`.
//!
//! What takes the exchange is a [`Handover`]: a queue of [`Exchange`]s (to
//! an extraction task, or a test), or the app's extraction run in place on
//! the connection's task in front of the correlator's bounded queue (one
//! hop between threads per exchange instead of two).

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

/// Why a [`Handover`] did not take an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full.
    Full,
    /// Its reader is gone (shutting down).
    Closed,
}

impl<T> From<TrySendError<T>> for Refused {
    fn from(error: TrySendError<T>) -> Self {
        match error {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Closed(_) => Refused::Closed,
        }
    }
}

/// Takes finished exchanges without waiting, on the connection's task
/// (after the response body's last frame).
pub trait Handover: Send + Sync + 'static {
    /// Takes `exchange`, or says why not (the sink then counts the drop).
    fn take(&self, exchange: Exchange) -> Result<(), Refused>;
}

/// A queue of exchanges, read by whoever holds the receiver.
impl Handover for mpsc::Sender<Exchange> {
    fn take(&self, exchange: Exchange) -> Result<(), Refused> {
        self.try_send(exchange).map_err(Refused::from)
    }
}

/// Where finished exchanges go: a bounded queue that never blocks the proxy.
///
/// Clones share the queue, the drop counters and the exchange id counter, so
/// one sink cloned into every listener gives ids unique across the process.
#[derive(Clone)]
pub struct ExchangeSink {
    handover: Arc<dyn Handover>,
    /// Next exchange id. Shared, not global: whoever builds the sink owns
    /// the id space (one per process in the app, one per test).
    next_id: Arc<AtomicU64>,
    /// Pre-resolved handles of the drop counter, one per reason.
    dropped_full: Counter,
    dropped_closed: Counter,
}

impl ExchangeSink {
    /// Wraps the sending half of a queue of exchanges and registers
    /// `waybill_observations_dropped_total{reason="queue_full"|"closed"}`
    /// in `registry`.
    pub fn new(tx: mpsc::Sender<Exchange>, registry: &mut Registry) -> Self {
        Self::handing_to(tx, registry)
    }

    /// [`ExchangeSink::new`] with any [`Handover`].
    pub fn handing_to(handover: impl Handover, registry: &mut Registry) -> Self {
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
            handover: Arc::new(handover),
            next_id: Arc::new(AtomicU64::new(1)),
            dropped_full,
            dropped_closed,
        }
    }

    /// Hands `exchange` on without waiting; drops and counts it when the
    /// queue is full or its reader is gone.
    pub fn offer(&self, exchange: Exchange) {
        match self.handover.take(exchange) {
            Ok(()) => {}
            Err(Refused::Full) => {
                self.dropped_full.inc();
            }
            Err(Refused::Closed) => {
                self.dropped_closed.inc();
            }
        }
    }

    /// Continues the id space after `last` (the highest id recovered from
    /// the durable store), so ids stay unique across restarts.
    pub fn continue_after(&self, last: u64) {
        self.next_id
            .fetch_max(last.saturating_add(1), Ordering::Relaxed);
    }

    /// A fresh exchange id: unique among clones of this sink, increasing.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ExchangeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeSink")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

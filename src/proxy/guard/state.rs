//! Keeping stored responses beyond this process's memory, so a retry that
//! arrives after a restart, or at another replica, is still answered:
//! the narrow interface a state backend implements ([`GuardState`], in
//! `state::durable` and `state::shared`; data flows one way, the guard
//! never names them) and the counter of its outcomes ([`GuardStateMetrics`]).
//!
//! What crosses the interface is the record of [`super::record`] as opaque
//! bytes, keyed by (route name, idempotency key).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What [`GuardState::fetch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The record another replica stored for the key.
    Found(Bytes),
    /// Nothing is stored for the key, and it is now claimed for this
    /// replica until it saves a record or [releases](GuardState::release) it.
    Claimed,
    /// Another replica is forwarding a request with this key (its claim
    /// holds it); ask again shortly.
    InFlight,
    /// The store did not answer in time or failed; the request is
    /// forwarded (traffic never fails because the store is down).
    Failed,
}

/// A [`GuardState::fetch`] in progress; bounded in time by the backend.
pub type Fetch = Pin<Box<dyn Future<Output = Fetched> + Send>>;

/// A store of the guard's records beyond this process. Phases:
///
/// 1. [`load`](GuardState::load), once per guarded route before its
///    listener serves: the records a previous run kept.
/// 2. [`fetch`](GuardState::fetch), when a key is not in memory, before
///    the request is forwarded: a record another replica stored, or a
///    claim on the key so other replicas wait for this one (shared
///    backends only). [`release`](GuardState::release) gives a claim up
///    when the first request stored nothing.
/// 3. [`save`](GuardState::save) when a first response was stored, and
///    [`forget`](GuardState::forget) when one expired or was evicted.
///    These are called on the proxy path: they hand the work off and never
///    wait (what cannot be handed off is dropped and counted).
pub trait GuardState: Send + Sync {
    /// The records kept for `route`, as (idempotency key, record), in any
    /// order; the guard drops those past their window or over capacity
    /// (and forgets them).
    fn load(&self, _route: &str) -> Vec<(Bytes, Bytes)> {
        Vec::new()
    }

    /// Looks up `(route, key)` among what other replicas stored and, when
    /// nothing is stored or claimed, claims it for about `hold` (how long
    /// the request may take); `None` when the backend is not shared.
    fn fetch(&self, _route: &str, _key: &Bytes, _hold: Duration) -> Option<Fetch> {
        None
    }

    /// Gives up this replica's claim on `(route, key)`: its request stored
    /// nothing (failed, not 2xx, too large).
    fn release(&self, _route: &str, _key: &Bytes) {}

    /// Keeps `record` for `(route, key)` for `ttl` (the route's window).
    fn save(&self, route: &str, key: &Bytes, record: Bytes, ttl: Duration);

    /// `(route, key)` no longer answers: expired or evicted.
    fn forget(&self, _route: &str, _key: &Bytes) {}
}

/// Outcomes of keeping and finding records, the `result` label of
/// `waybill_guard_state_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateResult {
    /// A record was written (durably, or to Redis).
    Saved,
    /// Writing a record failed; the response still answers from memory.
    SaveFailed,
    /// A record (or a removal) was dropped: the backend's queue was full.
    Dropped,
    /// A record was restored at start.
    Loaded,
    /// A record another replica stored answered a request here.
    Found,
    /// A lookup found nothing; the request was forwarded.
    Missing,
    /// A lookup found another replica's request with the key in flight;
    /// this one waited for it.
    InFlight,
    /// A lookup failed or ran out of time; the request was forwarded.
    LookupFailed,
    /// A record could not be read; it was skipped.
    Damaged,
}

impl StateResult {
    const ALL: [StateResult; 9] = [
        StateResult::Saved,
        StateResult::SaveFailed,
        StateResult::Dropped,
        StateResult::Loaded,
        StateResult::Found,
        StateResult::Missing,
        StateResult::InFlight,
        StateResult::LookupFailed,
        StateResult::Damaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateResult::Saved => "saved",
            StateResult::SaveFailed => "save_failed",
            StateResult::Dropped => "dropped",
            StateResult::Loaded => "loaded",
            StateResult::Found => "found",
            StateResult::Missing => "missing",
            StateResult::InFlight => "in_flight",
            StateResult::LookupFailed => "lookup_failed",
            StateResult::Damaged => "damaged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `waybill_guard_state_total{result}`, every label resolved at start;
/// shared by the guard and the backend that keeps its records.
#[derive(Debug, Clone)]
pub struct GuardStateMetrics {
    counts: Arc<[Counter; 9]>,
}

impl GuardStateMetrics {
    /// Registers `waybill_guard_state_total`.
    pub fn new(registry: &mut Registry) -> Self {
        let family = Family::<ResultLabel, Counter>::default();
        registry.register(
            "waybill_guard_state",
            "Idempotency guard records kept beyond memory, by result (saved, save_failed, dropped, loaded, found, missing, in_flight, lookup_failed, damaged)",
            family.clone(),
        );
        let counts = StateResult::ALL.map(|result| {
            family
                .get_or_create(&ResultLabel {
                    result: result.as_str(),
                })
                .clone()
        });
        GuardStateMetrics {
            counts: Arc::new(counts),
        }
    }

    /// Counts `n` outcomes `result`.
    pub fn count(&self, result: StateResult, n: u64) {
        if n > 0 {
            self.counts[result as usize].inc_by(n);
        }
    }
}

/// How a backend hands saves and removals to its writer task from the
/// proxy path without waiting: a bounded queue of [`Handoff::QUEUE`]
/// operations, beyond which they are dropped and counted (the response
/// still answers from memory).
pub struct Handoff<T> {
    ops: tokio::sync::mpsc::Sender<T>,
    metrics: GuardStateMetrics,
}

impl<T> Handoff<T> {
    /// Operations waiting for the writer: covers bursts of thousands of
    /// guarded responses per second.
    pub const QUEUE: usize = 4096;

    /// The sending side, and the receiving side for the writer task.
    pub fn new(metrics: GuardStateMetrics) -> (Self, tokio::sync::mpsc::Receiver<T>) {
        let (ops, pending) = tokio::sync::mpsc::channel(Self::QUEUE);
        (Handoff { ops, metrics }, pending)
    }

    /// Queues `op`, or counts it as dropped when the queue is full.
    pub fn send(&self, op: T) {
        if self.ops.try_send(op).is_err() {
            self.metrics.count(StateResult::Dropped, 1);
        }
    }
}

/// Where a listener's guards keep their records, and the counter of how
/// that went: given to [`GuardedRoutes::kept_in`](super::GuardedRoutes::kept_in).
#[derive(Clone)]
pub struct GuardKeeping {
    pub state: Arc<dyn GuardState>,
    pub metrics: GuardStateMetrics,
}

impl std::fmt::Debug for GuardKeeping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardKeeping").finish_non_exhaustive()
    }
}

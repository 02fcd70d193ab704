//! The extraction stage's metrics. Labels are bounded sets only (system,
//! operation, status class, problem reason); a business identifier is
//! never a label. Every label combination the config allows is created at
//! start-up, so series exist (at zero) before the first exchange and the hot
//! path only increments pre-resolved handles.
//!
//! | metric | labels |
//! |---|---|
//! | `waybill_exchanges_total` | `system`, `operation`, `status_class` |
//! | `waybill_exchange_duration_seconds` | `system`, `operation` |
//! | `waybill_exchange_request_body_size_bytes` | `system`, `operation` |
//! | `waybill_exchange_response_body_size_bytes` | `system`, `operation` |
//! | `waybill_extraction_failures_total` | `system`, `reason` |
//! | `waybill_measure_unparseable_total` | `measure`, `reason` |
//!
//! Body sizes are the bytes that streamed through the proxy (the tap counts
//! every byte it passes on, not only the prefix it keeps), as far as the
//! body was read; a body that arrived compressed is counted compressed. A
//! response is counted only when the upstream answered (or the guard
//! replayed a stored one), not for the sidecar's own 502/504.
//!
//! `system` is the matched route's system (the one serving the operation);
//! for an unmatched exchange it is the listener's system and `operation` is
//! `unmatched`.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::histogram::AtomicHistogram;
use crate::telemetry::write_lock::WriteLock;

use crate::config::{Config, RouteId, System};
use crate::proxy::{status_class_index, Exchange, Outcome, STATUS_CLASSES};

use super::{Problem, Unreadable};

/// The `operation` label of exchanges no route matched.
pub(super) const UNMATCHED: &str = "unmatched";

/// Upper bounds of the duration histogram, in seconds: from a fast local
/// WMS call (5 ms) to a carrier API at the default upstream timeout (30 s).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Upper bounds of the body size histograms, in bytes: ×4 from 64 B (an
/// empty JSON object with its envelope) to 64 MiB (a large EDI batch or
/// label PDF); 11 buckets keep the series per operation few.
fn size_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(64.0, 4.0, 11)
}

/// The label of exchanges whose upstream failed (the client got the
/// sidecar's own 502/504), after the proxy's status classes.
const UPSTREAM_FAILED: &str = "error";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExchangeLabels {
    system: Arc<str>,
    operation: Arc<str>,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    system: Arc<str>,
    operation: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UnreadableLabels {
    measure: Arc<str>,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    system: Arc<str>,
    reason: &'static str,
}

/// Pre-resolved handles of one operation (a route, or `unmatched` for one
/// system); routes with the same labels share one.
#[derive(Debug)]
struct OperationHandles {
    /// Held to write `exchanges`, `duration` and the sizes: one atomic
    /// read-modify-write per exchange instead of seven. Every writer of
    /// these series goes through this value (one per label set).
    lock: WriteLock,
    /// Indexed by [`status_class`].
    exchanges: Vec<Counter>,
    duration: AtomicHistogram,
    request_size: AtomicHistogram,
    response_size: AtomicHistogram,
    /// Indexed like [`Problem::ALL`].
    failures: Vec<Counter>,
}

/// Where extraction counts what it saw.
#[derive(Debug)]
pub(super) struct Metrics {
    /// One entry per route, indexed by `RouteId`.
    routes: Vec<Arc<OperationHandles>>,
    /// One entry per system, indexed by `System::id()`.
    unmatched: Vec<Arc<OperationHandles>>,
    /// Per measure (`MeasureName::id()`), indexed like [`Unreadable::ALL`].
    unreadable: Vec<Vec<Counter>>,
}

impl Metrics {
    /// Registers the families in `registry` and resolves every handle.
    pub fn new(config: &Config, registry: &mut Registry) -> Self {
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let durations = Family::<OperationLabels, AtomicHistogram>::new_with_constructor(
            (|| AtomicHistogram::seconds(DURATION_BUCKETS)) as fn() -> AtomicHistogram,
        );
        let sizes = || {
            Family::<OperationLabels, AtomicHistogram>::new_with_constructor(
                (|| AtomicHistogram::bytes(size_buckets())) as fn() -> AtomicHistogram,
            )
        };
        let request_sizes = sizes();
        let response_sizes = sizes();
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "waybill_exchanges",
            "Exchanges observed, by the system and operation they matched and the status class the client saw",
            exchanges.clone(),
        );
        registry.register_with_unit(
            "waybill_exchange_duration",
            "Time from request head to the end of the response, by system and operation",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register_with_unit(
            "waybill_exchange_request_body_size",
            "Bytes of request body that streamed to the upstream, by system and operation",
            Unit::Bytes,
            request_sizes.clone(),
        );
        registry.register_with_unit(
            "waybill_exchange_response_body_size",
            "Bytes of response body that streamed to the client, by system and operation",
            Unit::Bytes,
            response_sizes.clone(),
        );
        registry.register(
            "waybill_extraction_failures",
            "Exchanges whose extraction met a problem, by system and reason",
            failures.clone(),
        );
        let labels = |system: &System, operation: &str| OperationLabels {
            system: Arc::from(system.as_str()),
            operation: Arc::from(operation),
        };
        let new_handles = |system: &System, operation: &str| OperationHandles {
            lock: WriteLock::default(),
            exchanges: STATUS_CLASSES
                .iter()
                .chain([&UPSTREAM_FAILED])
                .map(|class| {
                    exchanges.get_or_create_owned(&ExchangeLabels {
                        system: Arc::from(system.as_str()),
                        operation: Arc::from(operation),
                        status_class: class,
                    })
                })
                .collect(),
            duration: durations.get_or_create_owned(&labels(system, operation)),
            request_size: request_sizes.get_or_create_owned(&labels(system, operation)),
            response_size: response_sizes.get_or_create_owned(&labels(system, operation)),
            failures: Problem::ALL
                .iter()
                .map(|problem| {
                    failures.get_or_create_owned(&FailureLabels {
                        system: Arc::from(system.as_str()),
                        reason: problem.as_str(),
                    })
                })
                .collect(),
        };
        // One set of handles (and so one lock) per label set, however many
        // routes share it.
        let mut by_labels = HashMap::<(String, String), Arc<OperationHandles>>::new();
        let mut handles = |system: &System, operation: &str| {
            Arc::clone(
                by_labels
                    .entry((system.as_str().to_owned(), operation.to_owned()))
                    .or_insert_with(|| Arc::new(new_handles(system, operation))),
            )
        };
        let unparseable = Family::<UnreadableLabels, Counter>::default();
        registry.register(
            "waybill_measure_unparseable",
            "Measure values that could not be read (and were left out), by measure and reason",
            unparseable.clone(),
        );
        let unreadable = config
            .measures
            .iter()
            .map(|measure| {
                Unreadable::ALL
                    .iter()
                    .map(|reason| {
                        unparseable.get_or_create_owned(&UnreadableLabels {
                            measure: Arc::from(measure.as_str()),
                            reason: reason.as_str(),
                        })
                    })
                    .collect()
            })
            .collect();
        Metrics {
            unreadable,
            routes: config
                .routes
                .iter()
                .map(|route| handles(&route.system, route.operation.as_str()))
                .collect(),
            unmatched: config
                .systems
                .iter()
                .map(|system| handles(system, UNMATCHED))
                .collect(),
        }
    }

    /// Counts one observed exchange (matched to `route`, if any) and its problems.
    pub fn record(&self, route: Option<RouteId>, exchange: &Exchange, problems: &[Problem]) {
        let handles = match route {
            Some(id) => self.routes.get(id.0),
            None => self.unmatched.get(exchange.system.id()),
        };
        let outcome = &exchange.outcome;
        // Every route and system of the config has handles; an exchange
        // from elsewhere (impossible by construction) is not counted.
        let Some(handles) = handles else {
            return;
        };
        {
            let held = handles.lock.lock();
            if let Some(counter) = handles.exchanges.get(status_class(outcome)) {
                held.inc(counter);
            }
            handles
                .duration
                .observe_duration_held(&held, exchange.duration);
            handles
                .request_size
                .observe_u64_held(&held, exchange.request_body.total_len);
            if let Outcome::Response { .. } = outcome {
                handles
                    .response_size
                    .observe_u64_held(&held, exchange.response_body.total_len);
            }
        }
        for problem in problems {
            if let Some(counter) = Problem::ALL
                .iter()
                .position(|p| p == problem)
                .and_then(|i| handles.failures.get(i))
            {
                counter.inc();
            }
        }
    }
}

impl Metrics {
    /// Counts measure values that could not be read.
    pub fn record_unreadable(&self, unreadable: &[(crate::config::MeasureName, Unreadable)]) {
        for (measure, reason) in unreadable {
            if let Some(counter) = self
                .unreadable
                .get(measure.id())
                .and_then(|reasons| reasons.get(Unreadable::ALL.iter().position(|r| r == reason)?))
            {
                counter.inc();
            }
        }
    }
}

/// Index of the status class the client saw; upstream failures are
/// `error` whatever status the sidecar answered with.
fn status_class(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::UpstreamFailed { .. } => STATUS_CLASSES.len(),
        Outcome::Response { status, .. } => status_class_index(*status),
    }
}

//! The proxy's own metrics, kept minimal (per-exchange metrics by system and
//! operation belong to telemetry, after extraction):
//!
//! - `waybill_proxy_requests_total{listener, status_class}`: responses sent
//!   to clients, including the sidecar's own 502/504.
//! - `waybill_upstream_errors_total{listener, error}`: upstream failures by
//!   [`UpstreamError`] kind.
//! - `waybill_requests_rejected_total{listener, reason}`: requests the
//!   proxy refused itself, forwarding nothing ([`Rejection`] reasons:
//!   `host_missing`, `host_duplicate`, `host_invalid`, `transfer_coding`,
//!   `body`: a request body malformed or cut short while it streamed). Heads hyper cannot
//!   parse (its own 400/414/431) never reach the proxy and are not in it.
//! - `waybill_request_handle_seconds{system}`: the time each exchange spent
//!   inside the sidecar, the upstream's time excluded: from the request head
//!   received to the request handed to the upstream client, plus from the
//!   response head received to the response head handed to the client's
//!   connection (or the 502/504 built). Connecting to the upstream and
//!   waiting for its answer count as the upstream's time; replays of the
//!   idempotency guard (no upstream) are not in it, but a repeat's wait for
//!   a concurrent first request with its key is (it is held in the sidecar).
//! - `waybill_guard_replays_total{listener, operation}`: repeats the
//!   idempotency guard answered from a stored response (not forwarded).
//! - `waybill_guard_stored_responses{listener}`: responses the guard holds,
//!   over all guarded routes of the listener.
//! - `waybill_guard_evictions_total{listener, reason}`: stored responses
//!   dropped, `reason` = `expired` (past the window) or `capacity` (the
//!   route's `max_entries` was reached and the oldest made room).
//!
//! The guard series exist only for listeners with a guarded route.
//! Label values are bounded: listener and operation names come from the
//! config, status classes, error kinds and eviction reasons are fixed sets. Handles are resolved once per
//! listener so the hot path only increments an atomic.
//!
//! A proxied response's counter and handle time are written together, under
//! one [`WriteLock`](crate::telemetry::write_lock::WriteLock) per system (the
//! handle-time series' own, [`Locked`]): one atomic read-modify-write for
//! the three figures (the counter, the bucket, the sum) instead of three.
//! Every writer of those series takes that lock: a listener's response
//! counters are written only through its [`ListenerMetrics`], whose system
//! is the listener's.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::histogram::AtomicHistogram;
use crate::telemetry::write_lock::Locked;
use tokio::time::Instant;

use super::reject::Rejection;
use super::UpstreamError;

/// Status classes, in index order of [`status_class_index`].
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Upper bounds of the handle-time histogram, in seconds: from 5 µs (a
/// keep-alive request with a small head) to 100 ms (a stalled runtime),
/// roughly ×2.5 per step so that 10–100 µs, where a healthy sidecar
/// sits, has four buckets.
const HANDLE_BUCKETS: [f64; 14] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

/// The class of `status` as a metric label: `"1xx"` … `"5xx"`, or `"other"`
/// for the codes 600–999 that `http` accepts but HTTP does not define.
pub fn status_class(status: StatusCode) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// Index of `status`'s class in [`STATUS_CLASSES`], for label handles
/// resolved once into an array.
pub fn status_class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    listener: String,
    error: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabels {
    system: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplayLabels {
    listener: String,
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    listener: String,
    reason: &'static str,
}

/// The proxy's metric families, registered once and shared by every listener.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    requests: Family<RequestLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    rejected: Family<RejectionLabels, Counter>,
    handle: Family<SystemLabels, HandleHistogram, fn() -> HandleHistogram>,
    guard_replays: Family<ReplayLabels, Counter>,
    guard_stored: Family<ListenerLabels, Gauge>,
    guard_evictions: Family<EvictionLabels, Counter>,
}

impl ProxyMetrics {
    /// Registers `waybill_proxy_requests_total`,
    /// `waybill_upstream_errors_total`, `waybill_request_handle_seconds` and
    /// the guard's families in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "waybill_proxy_requests",
            "Responses the proxy sent to clients, by listener and status class",
            requests.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "waybill_upstream_errors",
            "Requests the upstream failed to answer, by listener and error kind",
            upstream_errors.clone(),
        );
        let rejected = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "waybill_requests_rejected",
            "Requests the proxy refused itself without forwarding them, by listener and reason",
            rejected.clone(),
        );
        let handle =
            Family::<SystemLabels, HandleHistogram, fn() -> HandleHistogram>::new_with_constructor(
                || Locked::new(AtomicHistogram::seconds(HANDLE_BUCKETS)),
            );
        registry.register_with_unit(
            "waybill_request_handle",
            "Time each exchange spent inside the sidecar, the upstream's time excluded, by system",
            Unit::Seconds,
            handle.clone(),
        );
        let guard_replays = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "waybill_guard_replays",
            "Requests the idempotency guard answered with a stored response instead of forwarding",
            guard_replays.clone(),
        );
        let guard_stored = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "waybill_guard_stored_responses",
            "Responses the idempotency guard holds to answer repeats",
            guard_stored.clone(),
        );
        let guard_evictions = Family::<EvictionLabels, Counter>::default();
        registry.register(
            "waybill_guard_evictions",
            "Stored responses the idempotency guard dropped, by reason (expired, capacity)",
            guard_evictions.clone(),
        );
        ProxyMetrics {
            requests,
            upstream_errors,
            rejected,
            handle,
            guard_replays,
            guard_stored,
            guard_evictions,
        }
    }

    /// Handles for the guard of route `operation` on `listener`; the stored
    /// gauge and eviction counters are shared by the listener's routes.
    pub(crate) fn for_guard(&self, listener: &str, operation: &str) -> GuardMetrics {
        let eviction = |reason| {
            self.guard_evictions
                .get_or_create(&EvictionLabels {
                    listener: listener.to_owned(),
                    reason,
                })
                .clone()
        };
        GuardMetrics {
            replays: self
                .guard_replays
                .get_or_create(&ReplayLabels {
                    listener: listener.to_owned(),
                    operation: operation.to_owned(),
                })
                .clone(),
            stored: self
                .guard_stored
                .get_or_create(&ListenerLabels {
                    listener: listener.to_owned(),
                })
                .clone(),
            expired: eviction("expired"),
            capacity: eviction("capacity"),
        }
    }

    /// Handles for one listener of `system`, every label combination
    /// resolved up front.
    pub(crate) fn for_listener(&self, listener: &str, system: &str) -> ListenerMetrics {
        let requests = STATUS_CLASSES.map(|status_class| {
            self.requests
                .get_or_create(&RequestLabels {
                    listener: listener.to_owned(),
                    status_class,
                })
                .clone()
        });
        let upstream_errors = UpstreamError::ALL.map(|error| {
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    listener: listener.to_owned(),
                    error: error.as_str(),
                })
                .clone()
        });
        let rejected = Rejection::ALL.map(|reason| {
            self.rejected
                .get_or_create(&RejectionLabels {
                    listener: listener.to_owned(),
                    reason: reason.as_str(),
                })
                .clone()
        });
        let handle = self
            .handle
            .get_or_create(&SystemLabels {
                system: system.to_owned(),
            })
            .clone();
        ListenerMetrics {
            requests,
            upstream_errors,
            rejected,
            handle,
        }
    }
}

/// A system's handle-time histogram and the lock its writers and the
/// response counters of the system's listeners share.
type HandleHistogram = Locked<AtomicHistogram>;

/// One listener's pre-resolved counters.
#[derive(Clone, Debug)]
pub(crate) struct ListenerMetrics {
    /// Written under `handle`'s lock.
    requests: [Counter; 6],
    upstream_errors: [Counter; 6],
    rejected: [Counter; Rejection::ALL.len()],
    handle: HandleHistogram,
}

impl ListenerMetrics {
    /// A response with `status` went to the client without the sidecar
    /// timing it (a replay of the idempotency guard).
    pub(crate) fn response(&self, status: StatusCode) {
        let held = self.handle.lock();
        held.inc(&self.requests[status_class_index(status)]);
    }

    /// A response with `status` went to the client after its exchange's
    /// time in the sidecar, given by its [`HandleTime`]: the counter and
    /// the histogram under one lock.
    pub(crate) fn answered(&self, status: StatusCode, time: &HandleTime, now: Instant) {
        let total = time.total(now);
        let held = self.handle.lock();
        held.inc(&self.requests[status_class_index(status)]);
        self.handle.metric().observe_duration_held(&held, total);
    }

    /// The upstream failed with `error`.
    pub(crate) fn upstream_error(&self, error: UpstreamError) {
        self.upstream_errors[error.index()].inc();
    }

    /// The proxy refused a request for `reason`.
    pub(crate) fn rejected(&self, reason: Rejection) {
        self.rejected[reason.index()].inc();
    }
}

/// The instants that bound the sidecar's own work on one exchange:
/// `began` → `forwarded` is the request's way through, `answered` → the
/// instant given to [`HandleTime::total`] the response's. Plain `Copy`
/// instants: measuring allocates nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandleTime {
    pub(crate) began: Instant,
    pub(crate) forwarded: Instant,
    pub(crate) answered: Instant,
}

impl HandleTime {
    /// Request head → forwarded, plus answered → `now`.
    pub(crate) fn total(&self, now: Instant) -> std::time::Duration {
        self.forwarded.saturating_duration_since(self.began)
            + now.saturating_duration_since(self.answered)
    }
}

/// One guarded route's pre-resolved handles.
#[derive(Clone, Debug)]
pub(crate) struct GuardMetrics {
    replays: Counter,
    stored: Gauge,
    expired: Counter,
    capacity: Counter,
}

impl GuardMetrics {
    /// A repeat was answered from the store.
    pub(crate) fn replayed(&self) {
        self.replays.inc();
    }

    /// Stored responses were dropped.
    pub(crate) fn evicted(&self, expired: u64, capacity: u64) {
        if expired > 0 {
            self.expired.inc_by(expired);
        }
        if capacity > 0 {
            self.capacity.inc_by(capacity);
        }
    }

    /// The route's store went from `before` to `after` stored responses.
    pub(crate) fn stored_changed(&self, before: usize, after: usize) {
        let delta =
            i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        if delta != 0 {
            self.stored.inc_by(delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_the_first_digit() {
        assert_eq!(status_class(StatusCode::CONTINUE), "1xx");
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::NOT_MODIFIED), "3xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::BAD_GATEWAY), "5xx");
        let odd = StatusCode::from_u16(799).unwrap_or(StatusCode::OK);
        assert_eq!(status_class(odd), "other");
    }

    #[test]
    fn handle_time_leaves_out_the_wait_for_the_upstream() {
        let began = Instant::now();
        let ms = std::time::Duration::from_millis;
        let time = HandleTime {
            began,
            forwarded: began + ms(2),
            answered: began + ms(500),
        };
        assert_eq!(time.total(began + ms(503)), ms(5));
    }

    #[test]
    fn handle_time_is_recorded_per_system() {
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::new(&mut registry);
        let a = metrics.for_listener("in", "wms");
        let b = metrics.for_listener("out", "wms");
        let began = Instant::now();
        let time = HandleTime {
            began,
            forwarded: began,
            answered: began,
        };
        a.answered(
            StatusCode::OK,
            &time,
            began + std::time::Duration::from_micros(30),
        );
        b.answered(
            StatusCode::OK,
            &time,
            began + std::time::Duration::from_micros(30),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("waybill_request_handle_seconds_count{system=\"wms\"} 2"),
            "{text}"
        );
        // 30 µs falls in the 50 µs bucket, not in the 25 µs one.
        for (le, count) in [("0.000025", 0), ("0.00005", 2)] {
            let line = format!(
                "waybill_request_handle_seconds_bucket{{le=\"{le}\",system=\"wms\"}} {count}"
            );
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn concurrent_answers_and_replays_are_counted_exactly() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 20_000;
        let mut registry = Registry::default();
        let metrics = ProxyMetrics::new(&mut registry);
        // Two listeners of one system: one handle-time series, one lock.
        let listeners = [
            metrics.for_listener("in", "wms"),
            metrics.for_listener("out", "wms"),
        ];
        let began = Instant::now();
        let time = HandleTime {
            began,
            forwarded: began,
            answered: began,
        };
        // What each exchange does: replayed or answered, status, duration.
        let exchange = |i: u64| {
            let status = if i % 4 == 0 {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::OK
            };
            (
                i % 10 == 9,
                status,
                std::time::Duration::from_micros(i % 100),
            )
        };
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let listener = &listeners[(thread % 2) as usize];
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        match exchange(i) {
                            (true, status, _) => listener.response(status),
                            (false, status, took) => listener.answered(status, &time, began + took),
                        }
                    }
                });
            }
        });
        let (mut responses, mut timed, mut nanos, mut under_25us) = ([0u64; 2], 0u64, 0u128, 0);
        for i in 0..PER_THREAD {
            let (replayed, status, took) = exchange(i);
            responses[usize::from(status.is_server_error())] += THREADS / 2;
            if !replayed {
                timed += THREADS;
                nanos += took.as_nanos() * u128::from(THREADS);
                if took.as_secs_f64() <= 0.000_025 {
                    under_25us += THREADS;
                }
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let mut expected = Vec::new();
        for listener in ["in", "out"] {
            for (class, n) in [("2xx", responses[0]), ("5xx", responses[1])] {
                expected.push(format!(
                    "waybill_proxy_requests_total{{listener=\"{listener}\",status_class=\"{class}\"}} {n}"
                ));
            }
        }
        expected.push(format!(
            "waybill_request_handle_seconds_count{{system=\"wms\"}} {timed}"
        ));
        expected.push(format!(
            "waybill_request_handle_seconds_bucket{{le=\"0.000025\",system=\"wms\"}} {under_25us}"
        ));
        for line in expected {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("waybill_request_handle_seconds_sum{system=\"wms\"} "))
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(sum, Some(nanos as f64 / 1e9), "{text}");
    }

    #[test]
    fn error_indexes_match_the_label_table() {
        for (i, error) in UpstreamError::ALL.iter().enumerate() {
            assert_eq!(error.index(), i);
        }
    }
}

//! The proxy's own metrics, kept minimal (per-exchange metrics by system and
//! operation belong to telemetry, after extraction):
//!
//! - `waybill_proxy_requests_total{listener, status_class}`: responses sent
//!   to clients, including the sidecar's own 502/504.
//! - `waybill_upstream_errors_total{listener, error}`: upstream failures by
//!   [`UpstreamError`] kind.
//!
//! Label values are bounded: listener names come from the config, status
//! classes and error kinds are fixed sets. Handles are resolved once per
//! listener so the hot path only increments an atomic.

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::UpstreamError;

/// Status classes, in index order of [`status_class_index`].
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Every upstream error kind, in index order of [`error_index`].
const UPSTREAM_ERRORS: [UpstreamError; 6] = [
    UpstreamError::ConnectRefused,
    UpstreamError::ConnectTimeout,
    UpstreamError::Timeout,
    UpstreamError::Reset,
    UpstreamError::Tls,
    UpstreamError::Protocol,
];

/// The class of `status` as a metric label: `"1xx"` … `"5xx"`, or `"other"`
/// for the codes 600–999 that `http` accepts but HTTP does not define.
pub fn status_class(status: StatusCode) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

fn status_class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

fn error_index(error: UpstreamError) -> usize {
    match error {
        UpstreamError::ConnectRefused => 0,
        UpstreamError::ConnectTimeout => 1,
        UpstreamError::Timeout => 2,
        UpstreamError::Reset => 3,
        UpstreamError::Tls => 4,
        UpstreamError::Protocol => 5,
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

/// The proxy's metric families, registered once and shared by every listener.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    requests: Family<RequestLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

impl ProxyMetrics {
    /// Registers `waybill_proxy_requests_total` and
    /// `waybill_upstream_errors_total` in `registry`.
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
        ProxyMetrics {
            requests,
            upstream_errors,
        }
    }

    /// Handles for one listener, every label combination resolved up front.
    pub(crate) fn for_listener(&self, listener: &str) -> ListenerMetrics {
        let requests = STATUS_CLASSES.map(|status_class| {
            self.requests
                .get_or_create(&RequestLabels {
                    listener: listener.to_owned(),
                    status_class,
                })
                .clone()
        });
        let upstream_errors = UPSTREAM_ERRORS.map(|error| {
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    listener: listener.to_owned(),
                    error: error.as_str(),
                })
                .clone()
        });
        ListenerMetrics {
            requests,
            upstream_errors,
        }
    }
}

/// One listener's pre-resolved counters.
#[derive(Clone, Debug)]
pub(crate) struct ListenerMetrics {
    requests: [Counter; 6],
    upstream_errors: [Counter; 6],
}

impl ListenerMetrics {
    /// A response with `status` went to the client.
    pub(crate) fn response(&self, status: StatusCode) {
        self.requests[status_class_index(status)].inc();
    }

    /// The upstream failed with `error`.
    pub(crate) fn upstream_error(&self, error: UpstreamError) {
        self.upstream_errors[error_index(error)].inc();
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
    fn error_indexes_match_the_label_table() {
        for (i, error) in UPSTREAM_ERRORS.iter().enumerate() {
            assert_eq!(error_index(*error), i);
        }
    }
}

//! [`ExchangeSummary`]: what an [`Observation`](super::Observation) keeps of
//! its exchange once extraction has read it. Correlation, spans and the
//! journal read only the exchange's ids, times, method, target, status and
//! a few request headers; the summary copies those out of the proxy's read
//! buffers and drops the rest (the body taps, the other headers), so an
//! observation waiting in the correlator's queue holds no read buffer alive.

use std::time::{Duration, SystemTime};

use http::header::HOST;
use http::HeaderName;
use smallvec::SmallVec;

use crate::config::{ListenerId, System};
use crate::proxy::{Exchange, Headers, Outcome, TraceContext, UpstreamError};

/// The `traceparent` header's name (the span links to the caller's trace).
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// One exchange as correlation, spans and the journal see it.
#[derive(Debug, Clone)]
pub struct ExchangeSummary {
    /// Unique per process, increasing (the journal's position, once shared).
    pub id: u64,
    pub listener: ListenerId,
    /// The listener's system.
    pub system: System,
    pub method: http::Method,
    /// Path and query as the client sent them, in memory of their own.
    pub uri: http::Uri,
    /// HTTP version between client and sidecar.
    pub version: http::Version,
    /// Wall-clock time the request head arrived.
    pub started: SystemTime,
    /// From request head to the end of the response body (or failure).
    pub duration: Duration,
    /// The status the client saw.
    pub status: http::StatusCode,
    /// Why the upstream failed, when it did (the client then got `status`
    /// from the sidecar).
    pub upstream_error: Option<UpstreamError>,
    /// Answered by the idempotency guard from its store.
    pub replayed: bool,
    /// The trace context the proxy propagated to the upstream, if any.
    pub trace_context: Option<TraceContext>,
    /// The request headers read after extraction (`Host`, `traceparent`
    /// and the matched route's idempotency header), copied.
    pub request_headers: Headers,
}

impl ExchangeSummary {
    /// The summary of `exchange`, keeping `Host`, `traceparent` and
    /// `idempotency_header` of its request headers; the exchange (its taps
    /// and the buffers they share) is dropped.
    pub fn new(exchange: Exchange, idempotency_header: Option<&HeaderName>) -> Self {
        let (host, traceparent) = (HOST, TRACEPARENT);
        let names = [Some(&host), Some(&traceparent), idempotency_header];
        let names: SmallVec<[&HeaderName; 3]> = names.into_iter().flatten().collect();
        let request_headers = exchange.request_headers.copy_named(&names);
        ExchangeSummary {
            request_headers,
            ..Self::without_headers(exchange)
        }
    }

    /// The summary of `exchange` with every request header kept (copied),
    /// for observations built by hand (tests, benchmarks).
    pub fn whole(exchange: Exchange) -> Self {
        ExchangeSummary {
            request_headers: exchange.request_headers.copy_where(|_| true),
            ..Self::without_headers(exchange)
        }
    }

    fn without_headers(exchange: Exchange) -> Self {
        let upstream_error = match &exchange.outcome {
            Outcome::UpstreamFailed { error, .. } => Some(*error),
            Outcome::Response { .. } => None,
        };
        ExchangeSummary {
            id: exchange.id,
            listener: exchange.listener,
            system: exchange.system,
            method: exchange.method,
            uri: copied(&exchange.uri),
            version: exchange.version,
            started: exchange.started,
            duration: exchange.duration,
            status: exchange.outcome.status(),
            upstream_error,
            replayed: exchange.replayed,
            trace_context: exchange.trace_context,
            request_headers: Headers::default(),
        }
    }
}

/// `uri` in memory of its own: the proxy's shares its read buffer.
fn copied(uri: &http::Uri) -> http::Uri {
    let text = match (uri.authority(), uri.path_and_query()) {
        (None, Some(path)) => path.as_str().to_owned(),
        _ => uri.to_string(),
    };
    // It parsed once: it parses again (else it stays shared).
    http::Uri::try_from(text).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::testkit::{self, ConfigBuilder};

    fn exchange(uri: &str, status: u16) -> Exchange {
        let config = ConfigBuilder::new().build();
        let mut exchange = testkit::exchange(&config, http::Method::POST, uri, status);
        let map = exchange.request_headers.map_mut();
        for (name, value) in [
            ("host", "wms.local"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("idempotency-key", "k-1"),
            ("content-type", "application/json"),
        ] {
            map.insert(name, value.parse().expect("value"));
        }
        exchange
    }

    #[test]
    fn a_summary_keeps_what_is_read_downstream_and_the_route_s_idempotency_header() {
        let key = HeaderName::from_static("idempotency-key");
        let summary = ExchangeSummary::new(exchange("/a/b?c=1", 201), Some(&key));
        assert_eq!(summary.uri, "/a/b?c=1");
        assert_eq!(summary.status, http::StatusCode::CREATED);
        assert_eq!(summary.upstream_error, None);
        let headers = &summary.request_headers;
        assert_eq!(headers.get(&HOST).expect("host"), "wms.local");
        assert!(headers.get(&TRACEPARENT).is_some());
        assert_eq!(headers.get(&key).expect("key"), "k-1");
        assert!(headers.get(&http::header::CONTENT_TYPE).is_none());
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn without_a_rule_the_idempotency_header_is_not_kept_and_failures_are() {
        let mut failed = exchange("http://x.example/p", 200);
        failed.outcome = Outcome::UpstreamFailed {
            error: UpstreamError::Timeout,
            status: http::StatusCode::GATEWAY_TIMEOUT,
        };
        let summary = ExchangeSummary::new(failed, None);
        assert_eq!(summary.upstream_error, Some(UpstreamError::Timeout));
        assert_eq!(summary.status, http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            summary.uri.authority().map(|a| a.as_str()),
            Some("x.example")
        );
        assert_eq!(summary.uri.path(), "/p");
        let key = HeaderName::from_static("idempotency-key");
        assert!(summary.request_headers.get(&key).is_none());
        assert_eq!(summary.request_headers.len(), 2);
    }
}

//! [`ExchangeSummary`]: what an [`Observation`](super::Observation) keeps of
//! its exchange once extraction has read it. Correlation, spans and the
//! journal read only the exchange's ids, times, method, target, status and
//! a few request headers; the summary copies those out of the proxy's read
//! buffers and drops the rest (the body taps, the other headers), so an
//! observation waiting in the correlator's queue holds no read buffer alive.
//! The request target is kept as text ([`RequestTarget`]), read as
//! `http::Uri` reads it, without being parsed a second time.

use std::time::Duration;

use http::header::HOST;
use http::HeaderName;
use smallvec::SmallVec;

use crate::clock::Stamp;
use crate::config::{Config, Direction, ListenerId, System};
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
    pub uri: RequestTarget,
    /// HTTP version between client and sidecar.
    pub version: http::Version,
    /// Wall-clock time the request head arrived (converted from the
    /// proxy's `SystemTime` once, here).
    pub started: Stamp,
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
    /// The summary of `exchange`, keeping of its request headers those a
    /// reader reads: `traceparent` (the span's link), `Host` unless the
    /// listener is outbound (only a SERVER span reads it, see
    /// [`ExchangeSummary::is_outbound`]) and `idempotency_header` (the route's repeat rule:
    /// the correlator and the journal); the exchange (its taps and the
    /// buffers they share) is dropped. On an outbound listener without a
    /// repeat rule and no `traceparent`, nothing is copied.
    pub fn new(
        exchange: Exchange,
        config: &Config,
        idempotency_header: Option<&HeaderName>,
    ) -> Self {
        let (host, traceparent) = (HOST, TRACEPARENT);
        let headers = &exchange.request_headers;
        let reads_host = !is_outbound(config, exchange.listener);
        // In this order; none of them present copies (and allocates) nothing.
        let named = [
            reads_host.then_some(&host),
            Some(&traceparent),
            idempotency_header,
        ];
        let named: SmallVec<[&HeaderName; 3]> = named.into_iter().flatten().collect();
        let request_headers = headers.copy_named(&named);
        Self::with_headers(exchange, request_headers)
    }

    /// Whether the exchange came through an outbound listener of `config`
    /// (its span is a CLIENT span; it reads no `Host`).
    pub fn is_outbound(&self, config: &Config) -> bool {
        is_outbound(config, self.listener)
    }

    /// The summary of `exchange` with every request header kept (copied),
    /// for observations built by hand (tests, benchmarks).
    pub fn whole(exchange: Exchange) -> Self {
        let request_headers = exchange.request_headers.copy_where(|_| true);
        Self::with_headers(exchange, request_headers)
    }

    fn with_headers(exchange: Exchange, request_headers: Headers) -> Self {
        let upstream_error = match &exchange.outcome {
            Outcome::UpstreamFailed { error, .. } => Some(*error),
            Outcome::Response { .. } => None,
        };
        ExchangeSummary {
            id: exchange.id,
            listener: exchange.listener,
            system: exchange.system,
            method: exchange.method,
            uri: RequestTarget::from(&exchange.uri),
            version: exchange.version,
            started: Stamp::new(exchange.started),
            duration: exchange.duration,
            status: exchange.outcome.status(),
            upstream_error,
            replayed: exchange.replayed,
            trace_context: exchange.trace_context,
            request_headers,
        }
    }
}

/// Whether `listener` is an outbound one (the sidecar in front of the
/// upstream it calls): its exchanges' spans are CLIENT spans, which say
/// where the request went from the listener's upstream, not from the
/// `Host` the client sent. An unknown listener is not.
fn is_outbound(config: &Config, listener: ListenerId) -> bool {
    config
        .listeners
        .get(listener.0)
        .is_some_and(|l| l.direction == Direction::Outbound)
}

/// A request target, copied out of the proxy's read buffer as text: the
/// path and query as sent (`/a/b?c=1`), after the authority of an
/// absolute-form target (`http://x.example/p`). Its parts read as
/// `http::Uri`'s do (`path`, `query`, `path_and_query`, `authority`),
/// from offsets noted when it was copied: no second parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// The authority, if any, then the path and query (`http::Uri`'s
    /// `path_and_query().as_str()`, or nothing when it has none).
    text: Box<str>,
    /// Where the path and query start: the authority's length.
    path_at: usize,
    /// Where the query starts (after its `?`), if there is one.
    query_at: Option<usize>,
    /// Whether the target has a path and query at all (an authority-form
    /// target, `x.example:443`, has none).
    has_path_and_query: bool,
}

impl RequestTarget {
    /// The path, as `http::Uri::path`: `/` for an absolute-form target
    /// without one, empty for an authority-form target.
    pub fn path(&self) -> &str {
        if !self.has_path_and_query {
            return "";
        }
        let end = self.query_at.map_or(self.text.len(), |at| at - 1);
        match self.text.get(self.path_at..end) {
            Some("") | None => "/",
            Some(path) => path,
        }
    }

    /// The query, without its `?` (`http::Uri::query`).
    pub fn query(&self) -> Option<&str> {
        self.text.get(self.query_at?..)
    }

    /// The path and query as sent (`http::Uri::path_and_query`): `/` when
    /// empty, `None` for an authority-form target.
    pub fn path_and_query(&self) -> Option<&str> {
        if !self.has_path_and_query {
            return None;
        }
        match self.text.get(self.path_at..) {
            Some("") | None => Some("/"),
            Some(path_and_query) => Some(path_and_query),
        }
    }

    /// The authority of an absolute- or authority-form target
    /// (`http::Uri::authority`).
    pub fn authority(&self) -> Option<&str> {
        match self.text.get(..self.path_at) {
            Some("") | None => None,
            authority => authority,
        }
    }
}

impl From<&http::Uri> for RequestTarget {
    /// `uri`'s parts copied into memory of their own (the proxy's `Uri`
    /// shares its read buffer). An origin-form target (`/a/b?c=1`, `*`:
    /// nearly all) is copied as it is; any other is read as the `Uri` its
    /// text parses to, as the summary always kept it (`http://x.example?a=1`
    /// as `http://x.example/?a=1`).
    fn from(uri: &http::Uri) -> Self {
        match (uri.authority(), uri.path_and_query()) {
            (None, Some(_)) => Self::of_parts(uri),
            _ => Self::of_parts(&reparsed(uri)),
        }
    }
}

impl RequestTarget {
    /// The parts of `uri`, whatever its form.
    fn of_parts(uri: &http::Uri) -> Self {
        let path_and_query = uri.path_and_query();
        let authority = uri.authority().map_or("", |a| a.as_str());
        let rest = path_and_query.map_or("", |p| p.as_str());
        let text: Box<str> = match authority {
            "" => Box::from(rest),
            _ => Box::from([authority, rest].concat()),
        };
        // The query is the end of the path and query's text.
        let query_at = uri.query().map(|query| text.len() - query.len());
        RequestTarget {
            text,
            path_at: authority.len(),
            query_at,
            has_path_and_query: path_and_query.is_some(),
        }
    }
}

/// `uri` as its text parses again (the `Uri` the summary kept before it
/// kept text): an absolute-form target gains the `/` its text shows.
fn reparsed(uri: &http::Uri) -> http::Uri {
    // It parsed once: it parses again (else it is read as it is).
    http::Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
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
        let config = ConfigBuilder::new().build();
        let summary = ExchangeSummary::new(exchange("/a/b?c=1", 201), &config, Some(&key));
        assert_eq!(summary.uri.path_and_query(), Some("/a/b?c=1"));
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
        let config = ConfigBuilder::new().build();
        let summary = ExchangeSummary::new(failed, &config, None);
        assert_eq!(summary.upstream_error, Some(UpstreamError::Timeout));
        assert_eq!(summary.status, http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(summary.uri.authority(), Some("x.example"));
        assert_eq!(summary.uri.path(), "/p");
        let key = HeaderName::from_static("idempotency-key");
        assert!(summary.request_headers.get(&key).is_none());
        assert_eq!(summary.request_headers.len(), 2);
    }

    /// An inbound listener (0) and an outbound one (1).
    const LISTENERS: &str = r#"
systems: [wms]
keys: [order]
listeners:
  - { name: in, bind: 127.0.0.1:18001, upstream: http://127.0.0.1:9000, system: wms }
  - { name: out, bind: 127.0.0.1:18002, upstream: http://127.0.0.1:9001, system: wms, direction: outbound }
"#;

    #[test]
    fn an_outbound_listener_s_summary_keeps_no_host_as_no_reader_reads_it() {
        let config = Config::from_yaml(LISTENERS, "test.yaml").expect("valid test config");
        let key = HeaderName::from_static("idempotency-key");
        for (listener, outbound) in [(0, false), (1, true), (2, false)] {
            for idempotency_header in [None, Some(&key)] {
                let mut sent = exchange("/a", 200);
                sent.listener = ListenerId(listener);
                let summary = ExchangeSummary::new(sent, &config, idempotency_header);
                assert_eq!(
                    summary.is_outbound(&config),
                    outbound,
                    "listener {listener}"
                );
                let headers = &summary.request_headers;
                assert_eq!(
                    headers.get(&HOST).is_none(),
                    outbound,
                    "listener {listener}"
                );
                assert!(headers.get(&TRACEPARENT).is_some());
                let kept_key = headers.get(&key).is_some();
                assert_eq!(kept_key, idempotency_header.is_some());
                let expected = 1 + usize::from(!outbound) + usize::from(kept_key);
                assert_eq!(headers.len(), expected, "listener {listener}");
            }
        }
        // Nothing a reader reads: nothing kept.
        let mut sent = exchange("/a", 200);
        sent.listener = ListenerId(1);
        sent.request_headers.map_mut().remove(&TRACEPARENT);
        let summary = ExchangeSummary::new(sent, &config, None);
        assert!(summary.request_headers.is_empty());
    }

    /// Request targets of every form, and odd ones.
    const TARGETS: [&str; 16] = [
        "/",
        "/a/b?c=1",
        "/a?",
        "/a??b=?",
        "/p%20q/%2F?x=%2F&y",
        "/a/b?c=1#frag",
        "*",
        "http://x.example",
        "http://x.example?a=1",
        "http://x.example/p?q",
        "https://u@x.example:8443/p/?",
        "x.example:443",
        "/ü?ä=1",
        "//double/slash",
        "/a;b,c?d=e;f",
        "HTTP://X.EXAMPLE/UPPER",
    ];

    #[test]
    fn a_request_target_reads_as_the_uri_it_was_copied_from() {
        for target in TARGETS {
            let Ok(uri) = target.parse::<http::Uri>() else {
                continue;
            };
            let copy = RequestTarget::from(&uri);
            // What the summary kept before: `uri` in memory of its own.
            let uri = match (uri.authority(), uri.path_and_query()) {
                (None, Some(path)) => path.as_str().parse().expect("parsed before"),
                _ => reparsed(&uri),
            };
            assert_eq!(copy.path(), uri.path(), "path of {target}");
            assert_eq!(copy.query(), uri.query(), "query of {target}");
            assert_eq!(
                copy.path_and_query(),
                uri.path_and_query().map(|p| p.as_str()),
                "path and query of {target}"
            );
            assert_eq!(
                copy.authority(),
                uri.authority().map(|a| a.as_str()),
                "authority of {target}"
            );
        }
        // Most of them are targets `http` accepts.
        let parsed = TARGETS.iter().filter(|t| t.parse::<http::Uri>().is_ok());
        assert!(parsed.count() >= 14);
    }
}

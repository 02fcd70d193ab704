//! Forwarding one request: rewrite the head for the upstream hop (see
//! [`headers`](super::headers)), stream the body through the tap, wait for
//! the response head within the listener's `timeout`, and stream the
//! response back; or answer 502/504 when the upstream fails.
//!
//! The sidecar's own time per exchange (`waybill_request_handle_seconds`)
//! is taken from [`Instant`] pairs around the upstream call: request head
//! to the request handed to the client, response head back to the response
//! handed to the connection.
//!
//! On a listener with guarded routes the [`guard`](super::guard) is asked
//! first: a repeat is answered from its store (the request body is read
//! through the tap and discarded, nothing is forwarded), a first request
//! is forwarded with a capture of its response.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{request, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::dedicated::Held;
use super::error::failure_response;
use super::guard::{Admission, Capture, Claim, Guards, RouteGuard, StoredResponse};
use super::headers::{append_forwarded, has_unknown_transfer_coding, strip_hop_by_hop};
use super::inspect::UninspectedRoutes;
use super::listener::ListenerOptions;
use super::metrics::{HandleTime, ListenerMetrics, ProxyMetrics};
use super::record::{Pending, ResponseObserver};
use super::reject::{self, Rejection};
use super::sink::ExchangeSink;
use super::tap::{RequestTap, SharedTap, TapBody};
use super::upstream::{Upstream, UpstreamBody};
use super::{Headers, Outcome, RequestHeadRef, TraceContext, TraceContextSource, UpstreamError};
use crate::clock::Clock;
use crate::config::{Forwarded, HostHeader, Listener, UpstreamProtocol};

/// The W3C Trace Context request header.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// Everything one listener needs to forward a request, built once per
/// [`serve`](super::serve) call and shared by its connections.
pub(crate) struct Forwarder {
    listener: Arc<Listener>,
    upstream: Upstream,
    scheme: Scheme,
    /// The upstream's `host:port`, for `HostHeader::Upstream` and as the
    /// request authority when the client's host is unusable.
    upstream_authority: Authority,
    upstream_host: HeaderValue,
    /// The upstream URI's path without its trailing `/`; empty for none.
    base_path: String,
    /// The version requests are sent in (the connection may still turn out
    /// to be HTTP/2 through ALPN; hyper handles that).
    upstream_version: Version,
    /// HTTP/2 upstreams get the host as `:authority` only.
    host_in_authority_only: bool,
    /// The host travels in the request URI's authority: needed when the
    /// connection may be HTTP/2. Otherwise the URI keeps the upstream's
    /// authority, so the client pool has one key per listener, not one per
    /// `Host` value clients send.
    host_in_uri: bool,
    /// `None` unless a route of the listener has an idempotency guard:
    /// then requests do no guard work at all.
    guards: Option<Guards>,
    /// `None` unless a route of the listener propagates trace context:
    /// then requests do no trace context work at all.
    trace_context: Option<Arc<dyn TraceContextSource>>,
    /// Empty unless a route of the listener has `inspect: false`: then
    /// requests do no inspection matching at all.
    uninspected: UninspectedRoutes,
    sink: ExchangeSink,
    clock: Clock,
    metrics: ListenerMetrics,
}

impl Forwarder {
    pub(crate) fn new(
        listener: Arc<Listener>,
        options: ListenerOptions,
        sink: ExchangeSink,
        metrics: &ProxyMetrics,
        clock: Clock,
    ) -> io::Result<Self> {
        let uri = &listener.upstream.uri;
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listener `{}`: upstream `{uri}` {what}", listener.name),
            )
        };
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("has no scheme"))?;
        let upstream_authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("has no host"))?;
        let upstream_host = HeaderValue::from_str(upstream_authority.as_str())
            .map_err(|_| invalid("has a host that is not a valid header value"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let http2 = listener.upstream.protocol == UpstreamProtocol::Http2;
        Ok(Forwarder {
            upstream: Upstream::new(&listener)?,
            scheme,
            upstream_authority,
            upstream_host,
            base_path,
            upstream_version: if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            host_in_authority_only: http2,
            host_in_uri: http2
                || (listener.upstream.protocol == UpstreamProtocol::Auto
                    && listener.upstream.is_tls()),
            guards: Guards::new(options.guarded, &listener.name, metrics, &clock),
            trace_context: options.trace_context,
            uninspected: options.uninspected,
            sink,
            clock,
            metrics: metrics.for_listener(&listener.name, listener.system.as_str()),
            listener,
        })
    }

    /// Forwards `request` from the client at `peer` and returns the response
    /// to send back. Never fails: upstream failures become 502/504. `held`
    /// is the client connection's own upstream connection (see
    /// [`dedicated`](super::dedicated)).
    pub(crate) async fn forward(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        held: &Held,
    ) -> Response<ProxyBody> {
        let began = Instant::now();
        let (parts, body) = request.into_parts();
        let client_version = parts.version;
        if let Err(rejection) = reject::check(&parts) {
            return self.reject(rejection, client_version);
        }
        let inspect = self.inspects(&parts.method, parts.uri.path());
        // An uninspected request has no exchange: nothing is tapped,
        // copied or queued for it.
        let request_tap =
            inspect.then(|| SharedTap::new(self.listener.tap_limit, body.is_end_stream()));
        let mut pending = request_tap.as_ref().map(|request_tap| {
            let mut pending = self.pending(
                parts.method.clone(),
                origin_form(&parts.uri),
                client_version,
                parts.headers.clone().into(),
                began,
                RequestTap::Shared(request_tap.clone()),
            );
            pending.trace_context = self.trace_context(RequestHeadRef {
                method: &pending.method,
                uri: &parts.uri,
                headers: &pending.request_headers,
            });
            pending
        });
        let trace_context = pending.as_ref().and_then(|pending| pending.trace_context);

        let mut claim = None;
        // Validation keeps guards off uninspected routes: only a request
        // with an exchange can be guarded.
        let guard_key = match pending {
            Some(_) => self.guards.as_ref().and_then(|g| g.key_of(&parts)),
            None => None,
        };
        if let Some((guard, key)) = guard_key {
            match guard.admit(key, began + self.listener.timeout).await {
                Admission::Replay(stored) => {
                    if let Some(pending) = pending.take() {
                        return self
                            .replay(pending, body, &guard, &stored, client_version)
                            .await;
                    }
                }
                Admission::First(first) => claim = Some(first),
                Admission::Forward => {}
            }
        }

        let body = TapBody::new(body, request_tap);
        let dedicated = self.upstream.dedicated_for(client_version);
        let Some(upstream_request) =
            self.upstream_request(parts, body, peer, trace_context, dedicated)
        else {
            let now = Instant::now();
            let time = HandleTime {
                began,
                forwarded: now,
                answered: now,
            };
            return self.fail(pending, UpstreamError::Protocol, client_version, time);
        };
        let forwarded = Instant::now();
        let answer = tokio::time::timeout(
            self.listener.timeout,
            self.upstream.send(upstream_request, held, dedicated),
        )
        .await;
        let answered = Instant::now();
        if let Some(pending) = &mut pending {
            pending.upstream_duration = answered.saturating_duration_since(began);
        }
        let time = HandleTime {
            began,
            forwarded,
            answered,
        };
        match answer {
            Ok(Ok(response)) if has_unknown_transfer_coding(response.headers()) => {
                // Its coding would vanish with the hop-by-hop header and the
                // client would take coded bytes for the content; the proxy
                // decodes none but chunked, so the exchange fails.
                tracing::debug!(listener = %self.listener.name, "upstream used a transfer coding other than chunked");
                self.fail(pending, UpstreamError::Protocol, client_version, time)
            }
            Ok(Ok(response)) => self.respond(pending, response, client_version, claim, time),
            Ok(Err(failure)) if failure.is_client_body() => {
                // The client's malformed body, not the upstream's failure:
                // no exchange (nothing whole was forwarded), a 400.
                tracing::debug!(listener = %self.listener.name, cause = ?failure.cause, "request body failed");
                self.reject(Rejection::Body, client_version)
            }
            Ok(Err(failure)) => {
                tracing::debug!(listener = %self.listener.name, error = failure.kind.as_str(), cause = ?failure.cause, "upstream failed");
                self.fail(pending, failure.kind, client_version, time)
            }
            Err(_elapsed) => {
                tracing::debug!(listener = %self.listener.name, timeout = ?self.listener.timeout, "upstream did not answer in time");
                self.fail(pending, UpstreamError::Timeout, client_version, time)
            }
        }
    }

    /// The listener served.
    pub(crate) fn listener(&self) -> &Listener {
        &self.listener
    }

    /// The listener's metrics.
    pub(crate) fn metrics(&self) -> &ListenerMetrics {
        &self.metrics
    }

    /// The upstream's `host:port` (the `Host` sent for `HostHeader::Upstream`
    /// and when the client sent none).
    pub(crate) fn upstream_host(&self) -> &[u8] {
        self.upstream_host.as_bytes()
    }

    /// The upstream URI's path without its trailing `/`; empty for none.
    pub(crate) fn base_path(&self) -> &[u8] {
        self.base_path.as_bytes()
    }

    /// The listener's ways to its upstream.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The trace context to send upstream for an inspected request with
    /// `head` (`None` when no route of the listener propagates, or the
    /// request's route does not).
    pub(crate) fn trace_context(&self, head: RequestHeadRef<'_>) -> Option<TraceContext> {
        self.trace_context.as_ref()?.context(head)
    }

    /// Whether a request with `method` and `path` is tapped and observed
    /// (no matching at all on a listener whose routes all inspect).
    pub(crate) fn inspects(&self, method: &http::Method, path: &str) -> bool {
        self.uninspected.is_empty() || self.uninspected.inspects(method, path)
    }

    /// The exchange of an inspected request whose head arrived at `began`
    /// (its body goes through `request_tap`); no trace context.
    pub(crate) fn pending(
        &self,
        method: http::Method,
        uri: Uri,
        version: Version,
        request_headers: Headers,
        began: Instant,
        request_tap: RequestTap,
    ) -> Pending {
        Pending {
            id: self.sink.next_id(),
            listener: self.listener.id,
            system: self.listener.system.clone(),
            method,
            uri,
            version,
            request_headers,
            // The wall clock is read only for a request with an exchange.
            started: self.clock.now(),
            began,
            upstream_duration: Default::default(),
            request_tap,
            sink: self.sink.clone(),
            replayed: false,
            trace_context: None,
        }
    }

    /// The request for the upstream hop: same method, headers (minus
    /// hop-by-hop, plus the configured `Host` / `X-Forwarded-*` and the
    /// route's `traceparent`), extensions
    /// (which carry the HTTP/1 header case) and body; path under the
    /// upstream's base path; version of the upstream. For a `dedicated`
    /// connection the URI is the origin form and `Host` is always set (the
    /// pooled client does both itself).
    fn upstream_request(
        &self,
        mut parts: request::Parts,
        body: UpstreamBody,
        peer: SocketAddr,
        trace_context: Option<TraceContext>,
        dedicated: bool,
    ) -> Option<Request<UpstreamBody>> {
        let from_host = || parts.headers.get(HOST).cloned();
        let from_target = || {
            parts
                .uri
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        };
        // HTTP/1: an absolute-form target's authority wins over `Host` (RFC
        // 9112 §3.2.2); an origin-form target has none. HTTP/2: `Host`, if
        // the client sent one, else `:authority`.
        let client_host = if parts.version == Version::HTTP_2 {
            from_host().or_else(from_target)
        } else {
            from_target().or_else(from_host)
        };
        let host = match self.listener.host_header {
            HostHeader::Preserve => client_host.clone(),
            HostHeader::Upstream => Some(self.upstream_host.clone()),
        };

        strip_hop_by_hop(&mut parts.headers);
        if self.listener.forwarded == Forwarded::Append {
            append_forwarded(&mut parts.headers, peer.ip(), client_host.as_ref());
        }
        if let Some(traceparent) = trace_context.and_then(|c| c.traceparent()) {
            // Replaces the caller's (kept on the exchange as a span link);
            // `tracestate` passes on untouched.
            parts.headers.insert(TRACEPARENT, traceparent);
        }
        if self.host_in_authority_only {
            parts.headers.remove(HOST);
        } else if let Some(host) = &host {
            if parts.headers.get(HOST) != Some(host) {
                parts.headers.insert(HOST, host.clone());
            }
        } else if dedicated {
            parts.headers.insert(HOST, self.upstream_host.clone());
        }

        let path = parts.uri.path_and_query();
        // Without a base path the client's path and query are reused as
        // parsed (a shared `Bytes`, no copy, no second parse).
        let path = match (self.base_path.is_empty(), path) {
            (true, Some(path)) => path.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, path) => {
                let path = path.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{path}", self.base_path)).ok()?
            }
        };
        parts.version = self.upstream_version;
        if dedicated {
            parts.uri = Uri::from(path);
            return Some(Request::from_parts(parts, body));
        }
        let authority = host
            .filter(|_| self.host_in_uri)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| self.upstream_authority.clone());
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(authority);
        uri.path_and_query = Some(path);
        parts.uri = Uri::from_parts(uri).ok()?;
        Some(Request::from_parts(parts, body))
    }

    /// Streams the upstream's response back: same status, reason phrase and
    /// header case (both travel in the extensions), headers minus
    /// hop-by-hop, body through the tap; in the client's HTTP version.
    ///
    /// With a guard `claim`, the response is captured for the store (if it
    /// can be stored at all; otherwise the claim is released here).
    fn respond(
        &self,
        pending: Option<Pending>,
        response: Response<Incoming>,
        client_version: Version,
        claim: Option<Claim>,
        time: HandleTime,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = response.into_parts();
        let status = parts.status;
        let outcome = pending.map(|pending| {
            let outcome = Outcome::Response {
                status: parts.status,
                headers: parts.headers.clone().into(),
            };
            (pending, outcome)
        });
        if parts.headers.contains_key(TRANSFER_ENCODING) {
            // RFC 9112 §6.3: the body was read by its transfer coding; a
            // `Content-Length` beside it is stale and would cut the client
            // short (the rest polluting its next response). The body goes
            // on re-framed for the client's hop.
            parts.headers.remove(CONTENT_LENGTH);
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.version = client_version;
        let capture = claim.and_then(|claim| Capture::start(claim, &parts));
        let observer = outcome.map(|(pending, outcome)| {
            ResponseObserver::new(self.listener.tap_limit, pending, outcome, capture)
        });
        let response =
            Response::from_parts(parts, ProxyBody::Upstream(TapBody::new(body, observer)));
        self.metrics.answered(status, &time, Instant::now());
        response
    }

    /// Answers a repeat with the `stored` response of its key, without
    /// forwarding. The request body is read first (through the tap, for the
    /// exchange; at most until the listener's `timeout` after the request
    /// arrived) and discarded, as a server answering it would.
    async fn replay(
        &self,
        mut pending: Pending,
        body: Incoming,
        guard: &RouteGuard,
        stored: &Arc<StoredResponse>,
        client_version: Version,
    ) -> Response<ProxyBody> {
        pending.replayed = true;
        let deadline = pending.began + self.listener.timeout;
        let mut body = TapBody::new(body, &mut pending.request_tap);
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!(listener = %self.listener.name, "request body of a replayed repeat not read in time");
        }
        drop(body);
        guard.replayed();
        self.metrics.response(stored.status);
        let outcome = Outcome::Response {
            status: stored.status,
            headers: stored.headers.clone().into(),
        };
        let observer = ResponseObserver::new(self.listener.tap_limit, pending, outcome, None);
        stored
            .replay(client_version)
            .map(|body| ProxyBody::Replay(TapBody::new(body, observer)))
    }

    /// Refuses a request without forwarding it (see
    /// [`reject`](super::reject)): no exchange, counted by reason.
    pub(crate) fn reject(
        &self,
        rejection: Rejection,
        client_version: Version,
    ) -> Response<ProxyBody> {
        tracing::debug!(listener = %self.listener.name, reason = rejection.as_str(), "request rejected");
        let response = rejection.response(client_version);
        self.metrics.rejected(rejection);
        self.metrics.response(response.status());
        response
    }

    /// Answers for a failed upstream and records the exchange at once.
    pub(crate) fn fail(
        &self,
        pending: Option<Pending>,
        error: UpstreamError,
        client_version: Version,
        time: HandleTime,
    ) -> Response<ProxyBody> {
        let response = failure_response(error, client_version);
        self.metrics
            .answered(response.status(), &time, Instant::now());
        self.metrics.upstream_error(error);
        if let Some(pending) = pending {
            pending.finish_failed(Outcome::UpstreamFailed {
                error,
                status: response.status(),
            });
        }
        response
    }
}

/// The path and query of `uri`: what an HTTP/1 client sends in origin form,
/// also for HTTP/2 and absolute-form requests.
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) if uri.authority().is_some() => Uri::from(path.clone()),
        _ => uri.clone(),
    }
}

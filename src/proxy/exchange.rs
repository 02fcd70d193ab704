//! The exchange record: what the proxy saw of one request/response pair,
//! handed to extraction after the bytes are on their way.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{SpanId, TraceId};

use crate::config::{ListenerId, System};

mod headers;

pub use headers::{HeaderValueRef, Headers};

/// One observed request/response pair.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Unique per process, increasing.
    pub id: u64,
    pub listener: ListenerId,
    /// The listener's system.
    pub system: System,
    pub method: http::Method,
    /// Path and query as the client sent them.
    pub uri: http::Uri,
    /// HTTP version between client and sidecar.
    pub version: http::Version,
    /// As the client sent them, hop-by-hop headers included (the upstream
    /// got them without those, see the proxy module doc).
    pub request_headers: Headers,
    /// Wall-clock time the request head arrived.
    pub started: SystemTime,
    /// From request head to the end of the response body (or failure).
    pub duration: Duration,
    /// Time spent waiting for the upstream's response head.
    pub upstream_duration: Duration,
    pub outcome: Outcome,
    pub request_body: Tapped,
    pub response_body: Tapped,
    /// The idempotency guard answered this request with the stored first
    /// response for its key; the upstream never saw it. `outcome` then has
    /// the stored status and headers (hop-by-hop ones already removed) and
    /// `upstream_duration` is zero.
    pub replayed: bool,
    /// The trace context the proxy sent to the upstream in `traceparent`,
    /// on routes with `propagate: trace_context`; the exchange's span must
    /// carry its span ID. `None` on every other route (nothing was added).
    pub trace_context: Option<TraceContext>,
}

/// A W3C trace context the proxy propagated to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The span ID of the exchange's span, chosen when the request arrived.
    pub span_id: SpanId,
    /// The `sampled` flag: whether that span will be exported.
    pub sampled: bool,
}

impl TraceContext {
    /// The `traceparent` header value (version `00`); lowercase hex and
    /// dashes only, so always a valid header value.
    pub fn traceparent(&self) -> Option<http::HeaderValue> {
        let flags = u8::from(self.sampled);
        let text = format!("00-{}-{}-{flags:02x}", self.trace_id, self.span_id);
        http::HeaderValue::from_str(&text).ok()
    }
}

/// Decides, per request of a listener, the trace context to send to the
/// upstream; built once per listener, only for listeners with a route that
/// opted in (`propagate: trace_context`). Called on the proxy path: it
/// must not wait or allocate much.
pub trait TraceContextSource: Send + Sync {
    /// The context for a request with `head`, or `None` to forward it
    /// untouched (the route it matches did not opt in).
    fn context(&self, head: RequestHeadRef<'_>) -> Option<TraceContext>;
}

/// What a [`TraceContextSource`] reads of a request head: borrowed from
/// the exchange being built (its method and headers) and the target as
/// the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct RequestHeadRef<'a> {
    pub method: &'a http::Method,
    /// The request target as the client sent it.
    pub uri: &'a http::Uri,
    pub headers: &'a Headers,
}

/// How the exchange ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The upstream answered; the response was streamed to the client (or,
    /// when the exchange is `replayed`, the stored response was sent).
    Response {
        status: http::StatusCode,
        /// As the upstream sent them, hop-by-hop headers included.
        headers: Headers,
    },
    /// The upstream could not be reached or failed; the client got
    /// `status` (502 or 504) from the sidecar.
    UpstreamFailed {
        error: UpstreamError,
        status: http::StatusCode,
    },
}

impl Outcome {
    /// The status the client saw.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Outcome::Response { status, .. } | Outcome::UpstreamFailed { status, .. } => *status,
        }
    }

    /// Response headers from the upstream, if it answered.
    pub fn response_headers(&self) -> Option<&Headers> {
        match self {
            Outcome::Response { headers, .. } => Some(headers),
            Outcome::UpstreamFailed { .. } => None,
        }
    }
}

/// Why the upstream failed: a bounded set, safe as a metric label
/// (and the `error.type` span attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamError {
    ConnectRefused,
    ConnectTimeout,
    Timeout,
    Reset,
    Tls,
    Protocol,
}

impl UpstreamError {
    /// Every kind, in declaration order.
    pub const ALL: [UpstreamError; 6] = [
        UpstreamError::ConnectRefused,
        UpstreamError::ConnectTimeout,
        UpstreamError::Timeout,
        UpstreamError::Reset,
        UpstreamError::Tls,
        UpstreamError::Protocol,
    ];

    /// Its position in [`UpstreamError::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::ConnectRefused => "connect_refused",
            UpstreamError::ConnectTimeout => "connect_timeout",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Reset => "reset",
            UpstreamError::Tls => "tls",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// The bounded copy of one body that the proxy kept for extraction.
#[derive(Debug, Clone, Default)]
pub struct Tapped {
    /// At most the listener's tap limit of the body's first bytes.
    pub bytes: Bytes,
    /// Bytes the body really had (as far as it was read).
    pub total_len: u64,
    /// The body was longer than the tap limit; `bytes` is a prefix.
    pub truncated: bool,
    /// The body was read to its end (false when the peer aborted it).
    pub complete: bool,
}

//! The proxy stage: listeners that forward each request to their upstream
//! byte-for-byte, streaming, and tap a bounded copy of both bodies into an
//! [`Exchange`] handed to extraction with `try_send` (dropped and counted
//! when the queue is full; traffic never waits on observation).
//!
//! # What reaches the other side
//!
//! Unchanged: method, path and query (under the upstream's base path, if its
//! URI has one), status, reason phrase (HTTP/1), header names, values and —
//! on HTTP/1 — their order and case (unless the listener has
//! `header_case: lowercase`: then names go out in lower case), body bytes (compressed bodies stay
//! compressed; `Content-Length` bodies keep their length, others stream
//! chunked on HTTP/1), trailers.
//!
//! Changed, per hop:
//! - hop-by-hop headers are not forwarded in either direction (RFC 9110
//!   §7.6.1): `Connection` and the headers it names, `Keep-Alive`,
//!   `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, and `TE` except
//!   `trailers`. `Proxy-Authorization`/`Proxy-Authenticate` are forwarded
//!   (see `headers.rs`). Protocol upgrades (WebSocket) are therefore not
//!   proxied.
//! - a response with both `Transfer-Encoding` and `Content-Length` loses
//!   the `Content-Length` (RFC 9112 §6.3: the body is read by its coding
//!   and re-framed for the client's hop; requests with both are forwarded
//!   chunked and the client connection closed after the response).
//! - the HTTP version is each hop's own: a client on HTTP/2 may reach an
//!   HTTP/1.1 upstream and the other way round (HTTP/1.0 clients are
//!   forwarded as HTTP/1.1).
//! - `Host`: [`HostHeader::Preserve`](crate::config::HostHeader) forwards the
//!   client's `Host` (or HTTP/2 `:authority`; for an HTTP/1 absolute-form
//!   target its authority, RFC 9112 §3.2.2); `Upstream` replaces it with
//!   the upstream's `host:port`. To an HTTP/2 upstream it travels as
//!   `:authority`.
//! - [`Forwarded::Append`](crate::config::Forwarded) appends the client IP to
//!   `X-Forwarded-For` and sets `X-Forwarded-Proto: http` and
//!   `X-Forwarded-Host` when the client did not; `Off` adds nothing.
//! - a route with `propagate: trace_context` gets a W3C `traceparent`
//!   (replacing the caller's; `tracestate` passes on) from the listener's
//!   [`TraceContextSource`], and the exchange carries it
//!   ([`Exchange::trace_context`]); routes without it get nothing.
//! - nothing else is added: no `Via`, no `Date` of the sidecar's own.
//!
//! Routes with `inspect: false` are forwarded exactly the same way, but
//! nothing watches them: no tap, no [`Exchange`], no trace context (see
//! `inspect.rs`; the proxy's request counters and handle time still count
//! them).
//!
//! Refused, not forwarded (`reject.rs`; counted in
//! `waybill_requests_rejected_total`, no [`Exchange`]): HTTP/1 requests
//! without exactly one valid `Host` (400, RFC 9112 §3.2) or with a
//! transfer coding other than `chunked` (501, §6.1), and requests whose
//! body turns out malformed or cut short while it streams (400; the
//! upstream has the head and a valid prefix, never a whole request, and
//! nothing is counted against it); then the client connection closes. A response in a coding other than `chunked` is a
//! `protocol` failure (502): the coding is hop-by-hop and would vanish.
//!
//! When the upstream fails the client gets a 502 (504 when the response head
//! did not arrive within the listener's `timeout`) with a one-line
//! plain-text body; `error.rs` has the table.
//!
//! # The idempotency guard (opt-in per route; changes traffic)
//!
//! A route with `idempotency_guard:` in the routes file, served with
//! [`serve_guarded`] (the app does), answers a repeated idempotency key
//! from a store instead of forwarding it, so a client's timeout-retry
//! cannot create a second shipment or posting. Off by default: routes
//! without it, and every route of a listener without a guarded route, are
//! forwarded as above and do no guard work.
//!
//! - **Key**: (route, value of the guard's request header — first value,
//!   1 to [`MAX_KEY_LEN`] bytes; `Idempotency-Key` unless configured).
//!   The route is the one extraction matches: the first in priority order
//!   that serves the listener, accepts the method and matches the path. The
//!   key does not include the path, query or body: a client that reuses a
//!   key for a different request of the same route gets the first response.
//! - **Stored**: only a first response that is 2xx, ends complete and has
//!   a body of at most `max_response` bytes: status, headers as sent to the
//!   client (hop-by-hop removed), reason phrase and header case, body,
//!   trailers. It streams to its own client unchanged; the copy is taken on
//!   the way and stored when its body ends. Failures (502/504), other
//!   statuses, larger or aborted bodies are not stored, so their repeats
//!   are forwarded.
//! - **Replay**: within `window` (on the listener's [`Clock`](crate::clock::Clock))
//!   a repeat gets the stored response in its own HTTP version and is not
//!   forwarded; its request body is read and discarded. It is still an
//!   [`Exchange`], with `replayed: true`.
//! - **Concurrent repeat**: while the first request with a key is in
//!   flight, a repeat waits for it (at most the listener's `timeout` from
//!   its arrival) and is then replayed; if the first stored nothing the
//!   repeat is forwarded in its place, and if the wait runs out it is
//!   forwarded too (the guard then cannot prevent a duplicate).
//! - **Memory bound**: per guarded route at most `max_entries` stored
//!   responses (the oldest is evicted to make room; expired ones are
//!   dropped), so stored bodies take at most `max_entries × max_response`
//!   bytes per route, plus each response's head and key.
//! - **Metrics**: `waybill_guard_replays_total{listener,operation}`,
//!   `waybill_guard_stored_responses{listener}`,
//!   `waybill_guard_evictions_total{listener,reason="expired"|"capacity"}`.
//! - The store is in memory, per process; with a state store the app
//!   gives the guards a [`GuardKeeping`]: stored responses are also kept in
//!   the embedded database (restored after a restart) or in Redis (found by
//!   every replica of the namespace), counted in
//!   `waybill_guard_state_total{result}` (see `guard/state.rs`).
//!
//! # Files
//! - `listener.rs`: [`serve`], accepting connections, graceful shutdown,
//!   the engine selection ([`engine_serving`]).
//! - `forward.rs`: one request: rewrite the head, forward, respond.
//! - `headers.rs`: hop-by-hop removal, `X-Forwarded-*`.
//! - `h1/`: an HTTP/1 codec of our own (heads kept as bytes, framing,
//!   chunked decoding, head rewriting) and the engine around it that
//!   serves listeners with `engine: native`, and `auto` (the default)
//!   where it can (one task per client
//!   connection, no hyper on the HTTP/1 path; same contract, same
//!   metrics, same [`Exchange`]).
//! - `upstream.rs`: the pooled client and connector per listener.
//! - `dedicated.rs`: an HTTP/1 client connection's own upstream connection.
//! - `tap.rs`: the body wrapper that copies a bounded prefix.
//! - `inspect.rs`: routes with `inspect: false`, forwarded untapped and unobserved.
//! - `guard/`: the idempotency guard: matching and waiting (`mod.rs`), the
//!   bounded store (`store.rs`), capture and replay (`replay.rs`).
//! - `record.rs`: assembling the [`Exchange`] and offering it once.
//! - `body.rs`: the response body type served to clients.
//! - `error.rs`: upstream error kinds and the responses for them.
//! - `reject.rs`: requests the proxy refuses itself (HTTP/1 `Host` and
//!   transfer-coding checks).
//! - `sink.rs`, `metrics.rs`: the observation queue and the proxy's metrics.

mod body;
mod dedicated;
mod error;
mod exchange;
mod forward;
mod guard;
pub mod h1;
mod headers;
mod inspect;
mod listener;
mod metrics;
mod record;
mod reject;
mod sink;
mod tap;
mod upstream;

pub use exchange::{
    Exchange, HeaderValueRef, Headers, Outcome, RequestHeadRef, Tapped, TraceContext,
    TraceContextSource, UpstreamError,
};
pub use guard::{
    Fetch, Fetched, GuardKeeping, GuardState, GuardStateMetrics, GuardedRoutes, Handoff,
    StateResult, MAX_KEY_LEN,
};
pub use inspect::UninspectedRoutes;
pub use listener::{engine_serving, serve, serve_guarded, serve_with, ListenerOptions};
pub use metrics::{status_class, status_class_index, ProxyMetrics, STATUS_CLASSES};
pub use sink::{ExchangeSink, Handover, Refused};

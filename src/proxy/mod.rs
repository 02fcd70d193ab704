//! The proxy stage: listeners that forward each request to their upstream
//! byte-for-byte, streaming, and tap a bounded copy of both bodies into an
//! [`Exchange`] handed to extraction with `try_send` (dropped and counted
//! when the queue is full; traffic never waits on observation).
//!
//! # What reaches the other side
//!
//! Unchanged: method, path and query (under the upstream's base path, if its
//! URI has one), status, reason phrase (HTTP/1), header names, values and —
//! on HTTP/1 — their case and order, body bytes (compressed bodies stay
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
//! - the HTTP version is each hop's own: a client on HTTP/2 may reach an
//!   HTTP/1.1 upstream and the other way round (HTTP/1.0 clients are
//!   forwarded as HTTP/1.1).
//! - `Host`: [`HostHeader::Preserve`](crate::config::HostHeader) forwards the
//!   client's `Host` (or HTTP/2 `:authority`); `Upstream` replaces it with
//!   the upstream's `host:port`. To an HTTP/2 upstream it travels as
//!   `:authority`.
//! - [`Forwarded::Append`](crate::config::Forwarded) appends the client IP to
//!   `X-Forwarded-For` and sets `X-Forwarded-Proto: http` and
//!   `X-Forwarded-Host` when the client did not; `Off` adds nothing.
//! - nothing else is added: no `Via`, no `Date` of the sidecar's own.
//!
//! When the upstream fails the client gets a 502 (504 when the response head
//! did not arrive within the listener's `timeout`) with a one-line
//! plain-text body; `error.rs` has the table.
//!
//! # Files
//! - `listener.rs`: [`serve`], accepting connections, graceful shutdown.
//! - `forward.rs`: one request: rewrite the head, forward, respond.
//! - `headers.rs`: hop-by-hop removal, `X-Forwarded-*`.
//! - `upstream.rs`: the pooled client and connector per listener.
//! - `tap.rs`: the body wrapper that copies a bounded prefix.
//! - `record.rs`: assembling the [`Exchange`] and offering it once.
//! - `body.rs`: the response body type served to clients.
//! - `error.rs`: upstream error kinds and the responses for them.
//! - `sink.rs`, `metrics.rs`: the observation queue and the proxy's metrics.

mod body;
mod error;
mod exchange;
mod forward;
mod headers;
mod listener;
mod metrics;
mod record;
mod sink;
mod tap;
mod upstream;

pub use exchange::{Exchange, Outcome, Tapped, UpstreamError};
pub use listener::serve;
pub use metrics::{status_class, ProxyMetrics};
pub use sink::ExchangeSink;

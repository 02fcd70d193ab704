//! Listeners: where the sidecar accepts traffic and which upstream it fronts.

use std::net::SocketAddr;
use std::time::Duration;

use super::System;

/// Index of a listener in `Config::listeners`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub usize);

/// One listening socket forwarding to one upstream.
#[derive(Debug, Clone)]
pub struct Listener {
    pub id: ListenerId,
    /// Name from the config, used in logs and the `listener` metric label.
    pub name: String,
    pub bind: SocketAddr,
    pub upstream: Upstream,
    /// The system the upstream is (for inbound) or the caller is (outbound).
    pub system: System,
    /// Inbound fronts the pod's own app (span kind SERVER); outbound is the
    /// app's egress to another system (span kind CLIENT).
    pub direction: Direction,
    pub host_header: HostHeader,
    pub header_case: HeaderCase,
    pub forwarded: Forwarded,
    /// Upstream must answer with response headers within this time, else 504.
    pub timeout: Duration,
    /// Connect (TCP and TLS) must finish within this time, else 502.
    pub connect_timeout: Duration,
    /// Bytes of each request and response body copied for extraction.
    pub tap_limit: usize,
}

/// Where a listener forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://host:port` or `https://host:port`, possibly with a base path
    /// that is prefixed to every forwarded path.
    pub uri: http::Uri,
    pub protocol: UpstreamProtocol,
}

impl Upstream {
    /// True when the upstream is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.uri.scheme() == Some(&http::uri::Scheme::HTTPS)
    }
}

/// HTTP version spoken to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 for `http://`; ALPN (h2 preferred) for `https://`.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: prior knowledge (h2c) for `http://`, ALPN h2 for `https://`.
    Http2,
}

/// Which way traffic goes through a listener, relative to the pod's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// What the forwarded request's `Host` (or `:authority`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's value, unchanged (default: traffic is not altered).
    Preserve,
    /// The upstream's authority, as nginx's `proxy_set_header Host $proxy_host`.
    Upstream,
}

/// The case of header names on HTTP/1 hops (HTTP/2 names are always
/// lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCase {
    /// Names reach the other side as the client (or upstream) wrote them
    /// (default: some ERP and EDI endpoints compare names case-sensitively).
    Preserve,
    /// Names are sent in lower case, as Envoy and linkerd do: cheaper (hyper
    /// keeps no per-head map of the original case), same meaning to every
    /// HTTP-conforming peer.
    Lowercase,
}

/// Whether the proxy adds `X-Forwarded-For/-Proto/-Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Headers pass as the client sent them (default).
    Off,
    /// Append the client address to `X-Forwarded-For` and set
    /// `X-Forwarded-Proto` / `X-Forwarded-Host` when absent.
    Append,
}

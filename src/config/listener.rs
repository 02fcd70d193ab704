//! Listeners: where the sidecar accepts traffic and which upstream it fronts.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Route, System};

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
    /// What serves the listener's HTTP/1 client connections.
    pub engine: Engine,
    /// Upstream must answer with response headers within this time, else 504.
    pub timeout: Duration,
    /// Connect (TCP and TLS) must finish within this time, else 502.
    pub connect_timeout: Duration,
    /// Bytes of each request and response body copied for extraction.
    pub tap_limit: usize,
}

impl Listener {
    /// Why the native engine cannot serve this listener with its `routes`
    /// (all of the config's; those serving other listeners are skipped),
    /// or `None` when it can.
    pub fn native_refusal(&self, routes: &[Route]) -> Option<&'static str> {
        self.native_refusal_by_listener().or_else(|| {
            routes
                .iter()
                .any(|route| route.serves(self.id) && route.guard.is_some())
                .then_some(NATIVE_GUARD)
        })
    }

    /// [`Listener::native_refusal`] for what the listener alone decides.
    pub fn native_refusal_by_listener(&self) -> Option<&'static str> {
        let http1_only = match self.upstream.protocol {
            UpstreamProtocol::Http1 => true,
            UpstreamProtocol::Auto => !self.upstream.is_tls(),
            UpstreamProtocol::Http2 => false,
        };
        if !http1_only {
            return Some("`engine: native` needs an HTTP/1-only upstream (`http://` with `upstream_protocol` `auto` or `http1`, or `upstream_protocol: http1`); this one may speak HTTP/2: use `engine: hyper`");
        }
        None
    }
}

/// Why the native engine refuses a listener with a guarded route.
pub const NATIVE_GUARD: &str = "`engine: native` does not implement the idempotency guard, and a route of this listener has `idempotency_guard`: use `engine: hyper`";

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

/// What serves a listener's HTTP/1 client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// hyper's HTTP/1 server and client (default).
    #[default]
    Hyper,
    /// The proxy's own HTTP/1 engine (`proxy/h1/`): one task per client
    /// connection; only for listeners it can serve entirely (see
    /// `proxy::native_refusal`).
    Native,
}

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
    /// Whether a route serving this listener (of all the config's
    /// `routes`) has an idempotency guard: the `guarded` of
    /// [`Listener::serving`] once the routes are read.
    pub fn has_guarded_route(&self, routes: &[Route]) -> bool {
        routes
            .iter()
            .any(|route| route.serves(self.id) && route.guard.is_some())
    }

    /// Why the native engine cannot serve this listener, `guarded` saying
    /// whether a route of it has an idempotency guard; `None` when it can.
    /// The one statement of the rules: validation, start-up and
    /// `engine: auto` all decide with it (through [`Listener::serving`]).
    pub fn native_refusal(&self, guarded: bool) -> Option<NativeRefusal> {
        let http1_only = match self.upstream.protocol {
            UpstreamProtocol::Http1 => true,
            UpstreamProtocol::Auto => !self.upstream.is_tls(),
            UpstreamProtocol::Http2 => false,
        };
        if !http1_only {
            Some(NativeRefusal::Http2Upstream)
        } else if guarded {
            Some(NativeRefusal::Guard)
        } else {
            None
        }
    }

    /// The engine serving this listener's HTTP/1 client connections,
    /// `guarded` as for [`Listener::native_refusal`]; an error only for
    /// `engine: native` on a listener the native engine cannot serve.
    pub fn serving(&self, guarded: bool) -> Result<Serving, NativeRefusal> {
        let refusal = self.native_refusal(guarded);
        match (self.engine, refusal) {
            (Engine::Hyper, _) => Ok(Serving::Hyper(None)),
            (Engine::Native | Engine::Auto, None) => Ok(Serving::Native),
            (Engine::Native, Some(refusal)) => Err(refusal),
            (Engine::Auto, Some(refusal)) => Ok(Serving::Hyper(Some(refusal))),
        }
    }
}

/// Why the native engine cannot serve a listener (see
/// [`Listener::native_refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeRefusal {
    /// The upstream may speak HTTP/2: `upstream_protocol: http2`, or
    /// `https://` with `upstream_protocol: auto` (ALPN may pick h2).
    Http2Upstream,
    /// A route of the listener has `idempotency_guard`.
    Guard,
}

impl std::fmt::Display for NativeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NativeRefusal::Http2Upstream => "the native engine needs an HTTP/1-only upstream (`http://` with `upstream_protocol` `auto` or `http1`, or `upstream_protocol: http1`); this one may speak HTTP/2",
            NativeRefusal::Guard => "the native engine does not implement the idempotency guard, and a route of this listener has `idempotency_guard`",
        })
    }
}

/// The engine that serves a listener (see [`Listener::serving`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The proxy's own HTTP/1 engine.
    Native,
    /// hyper's; with the reason when `engine: auto` could not pick the
    /// native engine.
    Hyper(Option<NativeRefusal>),
}

impl Serving {
    /// The engine's name as in the config (`native`, `hyper`).
    pub fn name(self) -> &'static str {
        match self {
            Serving::Native => "native",
            Serving::Hyper(_) => "hyper",
        }
    }
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

/// What serves a listener's HTTP/1 client connections (the one that
/// does, once the routes are known: [`Listener::serving`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The native engine where it can serve the listener, hyper where not
    /// (default).
    #[default]
    Auto,
    /// hyper's HTTP/1 server and client.
    Hyper,
    /// The proxy's own HTTP/1 engine (`proxy/h1/`): one task per client
    /// connection; only for listeners it can serve entirely (a listener
    /// it cannot serve is refused).
    Native,
}

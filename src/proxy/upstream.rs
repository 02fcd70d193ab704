//! The client that reaches a listener's upstream: built once per listener,
//! pooled, speaking HTTP/1.1 or HTTP/2 as [`UpstreamProtocol`] says, over
//! TLS (rustls with the ring provider and the webpki roots) for `https://`.
//! An upstream that can only be HTTP/1 (`http1`, or `auto` over `http://`)
//! is reached from HTTP/1 client connections over a connection of their
//! own instead (see [`dedicated`](super::dedicated)); HTTP/2 clients and
//! upstreams that may be HTTP/2 use the pooled client.
//!
//! | protocol | `http://` | `https://` (ALPN) |
//! |---|---|---|
//! | `Auto` | HTTP/1.1 | `h2`, `http/1.1` |
//! | `Http1` | HTTP/1.1 | none (HTTP/1.1) |
//! | `Http2` | h2c, prior knowledge | `h2` |
//!
//! The connector always dials the configured upstream, whatever authority
//! the forwarded request carries: that authority is the `Host` the upstream
//! should see (see [`HostHeader`](crate::config::HostHeader)), which for an
//! HTTP/2 upstream can only travel as `:authority` (so with `Preserve` the
//! pool has one key per client `Host` there; HTTP/1-only upstreams keep the
//! upstream's authority in the URI and one pool key). TLS server name and
//! certificate check use the configured upstream host. TCP connect and TLS
//! handshake together are bounded by the listener's `connect_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::dedicated::{Dialer, Held};
use super::error::{classify, ConnectTimedOut, Failure};
use super::tap::{SharedTap, TapBody};
use crate::config::{HeaderCase, Listener, UpstreamProtocol};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request on its way to the upstream.
pub(crate) type UpstreamBody = TapBody<Incoming, Option<SharedTap>>;

/// A listener's pooled upstream client.
pub(crate) type UpstreamClient = Client<UpstreamConnector, UpstreamBody>;

/// A listener's ways to its upstream: the pooled client, and for an
/// HTTP/1-only upstream the [`Dialer`] of connections dedicated to one
/// client connection.
pub(crate) struct Upstream {
    pooled: UpstreamClient,
    dedicated: Option<Dialer>,
}

impl Upstream {
    pub(crate) fn new(listener: &Listener) -> io::Result<Self> {
        let (pooled, connector) = build_client(listener)?;
        let preserve_header_case = listener.header_case == HeaderCase::Preserve;
        let http1_only = match listener.upstream.protocol {
            UpstreamProtocol::Http1 => true,
            UpstreamProtocol::Auto => !listener.upstream.is_tls(),
            UpstreamProtocol::Http2 => false,
        };
        Ok(Upstream {
            pooled,
            dedicated: http1_only.then(|| Dialer::new(connector, preserve_header_case)),
        })
    }

    /// Whether a request from a client connection speaking `version` goes
    /// over that connection's own upstream connection; such a request must
    /// carry an origin-form URI and a `Host`.
    pub(crate) fn dedicated_for(&self, version: Version) -> bool {
        self.dedicated.is_some() && version != Version::HTTP_2
    }

    /// The connector of an HTTP/1-only upstream (`None` when it may speak
    /// HTTP/2): TCP, TLS and `connect_timeout` for the native engine too.
    pub(crate) fn http1_connector(&self) -> Option<&UpstreamConnector> {
        self.dedicated.as_ref().map(Dialer::connector)
    }

    /// Sends `request` and returns the response head: over `held` when
    /// `dedicated` (see [`Upstream::dedicated_for`]), else through the pool.
    pub(crate) async fn send(
        &self,
        request: Request<UpstreamBody>,
        held: &Held,
        dedicated: bool,
    ) -> Result<Response<Incoming>, Failure> {
        match self.dedicated.as_ref().filter(|_| dedicated) {
            Some(dialer) => dialer.send(held, request).await,
            None => self
                .pooled
                .request(request)
                .await
                .map_err(|error| Failure::new(classify(&error), error)),
        }
    }
}

/// Builds the pooled client for `listener`'s upstream, and the connector
/// it uses.
fn build_client(listener: &Listener) -> io::Result<(UpstreamClient, UpstreamConnector)> {
    let upstream = &listener.upstream;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(io::Error::other)?
        .https_or_http();

    let mut http = HttpConnector::new();
    // The scheme is checked by the TLS layer; TCP just connects.
    http.enforce_http(false);
    http.set_nodelay(true);

    let connector = match upstream.protocol {
        UpstreamProtocol::Auto => tls.enable_all_versions().wrap_connector(http),
        UpstreamProtocol::Http1 => tls.enable_http1().wrap_connector(http),
        UpstreamProtocol::Http2 => tls.enable_http2().wrap_connector(http),
    };
    let connector = UpstreamConnector {
        inner: connector,
        target: target_of(&upstream.uri)?,
        timeout: listener.connect_timeout,
    };

    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http1_preserve_header_case(listener.header_case == HeaderCase::Preserve)
        .http2_only(upstream.protocol == UpstreamProtocol::Http2);
    Ok((builder.build(connector.clone()), connector))
}

/// The upstream's scheme and authority: all the connector needs.
fn target_of(uri: &Uri) -> io::Result<Uri> {
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("upstream `{uri}` has no scheme or authority"),
        ));
    };
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(io::Error::other)
}

/// Connects to one fixed upstream whatever URI it is asked for, within a
/// time limit.
#[derive(Clone)]
pub(crate) struct UpstreamConnector {
    inner: HttpsConnector<HttpConnector>,
    target: Uri,
    timeout: Duration,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        Box::pin(self.connect())
    }
}

impl UpstreamConnector {
    /// A new TCP (and TLS) connection to the upstream, within the
    /// listener's `connect_timeout`.
    pub(crate) fn connect(
        &self,
    ) -> impl Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send + 'static
    {
        let connecting = tower_service::Service::call(&mut self.inner.clone(), self.target.clone());
        let timeout = self.timeout;
        async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_elapsed) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        }
    }
}

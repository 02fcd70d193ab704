//! Serving one listener: accept TCP connections, speak HTTP/1.1 (keep-alive)
//! or HTTP/2 with prior knowledge (h2c) on the same port, and forward every
//! request; on shutdown stop accepting and let open connections finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::dedicated::Held;
use super::forward::Forwarder;
use super::guard::GuardedRoutes;
use super::h1::Engine as NativeEngine;
use super::inspect::UninspectedRoutes;
use super::metrics::ProxyMetrics;
use super::sink::ExchangeSink;
use super::TraceContextSource;
use crate::clock::Clock;
use crate::config::{HeaderCase, Listener, NativeRefusal, Serving};

/// Pause after a failed `accept` (out of file descriptors, say) so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` on `socket` until `shutdown` is cancelled, then stops
/// accepting, asks open connections to close once their in-flight requests
/// are answered, and returns when they have. Bound the wait from outside
/// (e.g. `tokio::time::timeout`) if a drain deadline is wanted.
///
/// Every request is forwarded: no idempotency guard (see
/// [`serve_guarded`]).
///
/// Fails only when the listener's upstream cannot be set up (no scheme or
/// host in its URI, TLS provider error); accept errors are logged and
/// retried.
pub async fn serve(
    socket: TcpListener,
    listener: Arc<Listener>,
    sink: ExchangeSink,
    metrics: ProxyMetrics,
    clock: Clock,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_guarded(
        socket,
        listener,
        GuardedRoutes::none(),
        sink,
        metrics,
        clock,
        shutdown,
    )
    .await
}

/// [`serve`], with the idempotency guard on the listener's guarded routes
/// (see [`GuardedRoutes::new`]); `clock` also times the guard's window.
pub async fn serve_guarded(
    socket: TcpListener,
    listener: Arc<Listener>,
    guarded: GuardedRoutes,
    sink: ExchangeSink,
    metrics: ProxyMetrics,
    clock: Clock,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let options = ListenerOptions {
        guarded,
        ..ListenerOptions::default()
    };
    serve_with(socket, listener, options, sink, metrics, clock, shutdown).await
}

/// What a listener's routes opted into that changes traffic; the default
/// is nothing (every request forwarded byte-for-byte).
#[derive(Default)]
pub struct ListenerOptions {
    /// The idempotency guard's routes (see [`GuardedRoutes::new`]).
    pub guarded: GuardedRoutes,
    /// Trace context propagation, `None` unless a route of the listener
    /// has `propagate: trace_context`.
    pub trace_context: Option<Arc<dyn TraceContextSource>>,
    /// Routes with `inspect: false` (see [`UninspectedRoutes::new`]).
    pub uninspected: UninspectedRoutes,
}

/// [`serve`], with the listener's opt-in route `options`; `clock` also
/// times the guard's window.
pub async fn serve_with(
    socket: TcpListener,
    listener: Arc<Listener>,
    options: ListenerOptions,
    sink: ExchangeSink,
    metrics: ProxyMetrics,
    clock: Clock,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let name = listener.name.clone();
    let preserve_header_case = listener.header_case == HeaderCase::Preserve;
    let serving = engine_serving(&listener, &options).map_err(|refusal| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("listener `{name}`: `engine: native` cannot serve it: {refusal}"),
        )
    })?;
    match serving {
        Serving::Hyper(Some(refusal)) => tracing::info!(
            listener = %name,
            engine = serving.name(),
            reason = %refusal,
            "listener served by hyper's HTTP/1 engine (`engine: auto`)"
        ),
        _ => tracing::info!(listener = %name, engine = serving.name(), "listener engine"),
    }
    let forwarder = Arc::new(Forwarder::new(listener, options, sink, &metrics, clock)?);
    if serving == Serving::Native {
        let engine = NativeEngine::new(forwarder).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("listener `{name}`: the native engine needs an HTTP/1-only upstream"),
            )
        })?;
        serve_native(socket, &name, Arc::new(engine), shutdown).await;
        return Ok(());
    }

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .preserve_header_case(preserve_header_case)
        // Head and body copied into one buffer and sent with one `write`.
        .writev(false)
        // The client gets the upstream's `Date` (or none), not ours.
        .auto_date_header(false)
        .timer(TokioTimer::new());
    builder
        .http2()
        .auto_date_header(false)
        .timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    accept_until(socket, &name, &shutdown, |stream, peer| {
        spawn_connection(&builder, &graceful, stream, peer, Arc::clone(&forwarder));
    })
    .await;
    tracing::debug!(listener = %name, open = graceful.count(), "draining connections");
    graceful.shutdown().await;
    Ok(())
}

/// The engine serving `listener` with its routes' `options`
/// ([`Listener::serving`], the routes known here through what they opted
/// into); an error for `engine: native` on a listener it cannot serve.
pub fn engine_serving(
    listener: &Listener,
    options: &ListenerOptions,
) -> Result<Serving, NativeRefusal> {
    listener.serving(!options.guarded.is_empty())
}

/// The accept loop of a listener served by the native engine: one task
/// per connection; on shutdown stops accepting and returns when every
/// connection has ended (idle ones at once, busy ones after their
/// in-flight response).
async fn serve_native(
    socket: TcpListener,
    name: &str,
    engine: Arc<NativeEngine>,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    accept_until(socket, name, &shutdown, |stream, peer| {
        let engine = Arc::clone(&engine);
        connections.spawn(engine.serve(stream, peer, shutdown.clone()));
    })
    .await;
    connections.close();
    tracing::debug!(listener = %name, open = connections.len(), "draining connections");
    connections.wait().await;
}

/// Accepts connections on `socket` until `shutdown`, handing each (with
/// `TCP_NODELAY` set) to `serve`; a failed `accept` is logged and retried
/// after [`ACCEPT_BACKOFF`]. The socket is closed when it returns.
async fn accept_until(
    socket: TcpListener,
    name: &str,
    shutdown: &CancellationToken,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Nagle would hold back small frames of a streamed body.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                    }
                    serve(stream, peer);
                }
                Err(error) => {
                    tracing::warn!(listener = %name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// Serves one client connection on its own task, watched by `graceful`.
fn spawn_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    forwarder: Arc<Forwarder>,
) {
    // The connection's own upstream connection, if the upstream gets one
    // (handed to the listener's idle ones when the connection ends).
    let held = Arc::new(Held::default());
    let service = service_fn(move |request: Request<Incoming>| {
        let forwarder = Arc::clone(&forwarder);
        let held = Arc::clone(&held);
        async move { Ok::<_, Infallible>(forwarder.forward(request, peer, &held).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%peer, %error, "client connection ended with an error");
        }
    });
}

//! h2c with prior knowledge on a native engine's port: a connection whose
//! first bytes are the HTTP/2 preface is handed, with the bytes already
//! read, to hyper's HTTP/2 server and the listener's [`Forwarder`], as on a
//! hyper listener.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::proxy::dedicated::Held;
use crate::proxy::forward::Forwarder;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// The HTTP/2 preface.
    Http2,
    /// Still a prefix of the preface: read more.
    Undecided,
    /// HTTP/1.
    Http1,
}

/// Sorts a connection by its first bytes `read`.
pub(crate) fn sniff(read: &[u8]) -> Sniffed {
    if read.starts_with(PREFACE) {
        Sniffed::Http2
    } else if PREFACE.starts_with(read) {
        Sniffed::Undecided
    } else {
        Sniffed::Http1
    }
}

/// Serves an HTTP/2 client connection whose first bytes `read` were
/// already taken from `stream`, until it ends; on `shutdown` it is asked
/// to finish gracefully (GOAWAY, in-flight streams answered).
pub(crate) async fn serve_h2(
    forwarder: Arc<Forwarder>,
    stream: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let held = Arc::new(Held::default());
    let service = service_fn(move |request: Request<Incoming>| {
        let forwarder = Arc::clone(&forwarder);
        let held = Arc::clone(&held);
        async move { Ok::<_, std::convert::Infallible>(forwarder.forward(request, peer, &held).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new()).auto_date_header(false);
    let io = TokioIo::new(Prefixed {
        prefix: read,
        inner: stream,
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "h2c client connection ended with an error");
    }
}

/// A stream whose first bytes were already read: they are read again
/// first.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let take = self.prefix.len().min(buf.remaining());
            buf.put_slice(self.prefix.get(..take).unwrap_or_default());
            self.prefix.advance(take);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_from_http1_early() {
        assert_eq!(sniff(PREFACE), Sniffed::Http2);
        assert_eq!(sniff(&PREFACE[..5]), Sniffed::Undecided);
        assert_eq!(sniff(b""), Sniffed::Undecided);
        assert_eq!(sniff(b"POST / HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(sniff(b"PRI * HTTP/1.1\r\n"), Sniffed::Http1);
    }
}

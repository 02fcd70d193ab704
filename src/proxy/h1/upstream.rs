//! The native engine's upstream HTTP/1 connection: a stream opened by the
//! listener's [`UpstreamConnector`] (so TCP, TLS and `connect_timeout`
//! stay one piece of code with the hyper path) and its read buffer. A
//! client connection keeps one for its requests, one at a time; when the
//! client connection ends an open one goes to the listener's
//! [`Idle`](crate::proxy::dedicated::Idle) list, the same list type the
//! hyper path keeps its connections in.

use std::io;

use bytes::BytesMut;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::READ_CHUNK;
use crate::proxy::dedicated::Reusable;
use crate::proxy::error::{classify_connecting, Failure};
use crate::proxy::upstream::UpstreamConnector;

/// One HTTP/1 connection to the upstream and the bytes read from it not
/// used yet.
pub(crate) struct UpstreamConn {
    pub(crate) io: UpstreamIo,
    pub(crate) buf: BytesMut,
}

/// The stream under an [`UpstreamConn`]: the connector's stream, which
/// [`TokioIo`] lets tokio's traits read and write.
pub(crate) type UpstreamIo = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

impl UpstreamConn {
    /// A new connection to the upstream; boxed, as it is handed around
    /// (and a TLS stream is large).
    pub(crate) async fn connect(connector: &UpstreamConnector) -> Result<Box<Self>, Failure> {
        let stream = connector
            .connect()
            .await
            .map_err(|error| Failure::new(classify_connecting(&*error), error))?;
        Ok(Box::new(UpstreamConn {
            io: TokioIo::new(stream),
            buf: BytesMut::with_capacity(READ_CHUNK),
        }))
    }
}

impl Reusable for Box<UpstreamConn> {
    /// Closed, or not fit for another request: stray bytes already read or
    /// waiting, or the peer's end of stream. Plain TCP is checked without
    /// waiting; a TLS stream cannot be peeked below its records, so it is
    /// taken as open (a request that then fails before any of it was
    /// written is sent again on a new connection).
    fn is_closed(&self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        match self.io.inner() {
            MaybeHttpsStream::Http(tcp) => {
                let mut byte = [0u8; 1];
                !matches!(tcp.inner().try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
            }
            MaybeHttpsStream::Https(_) => false,
        }
    }
}

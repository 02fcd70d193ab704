//! The upstream connection a client connection keeps for itself. For an
//! HTTP/1-only upstream every HTTP/1 client connection gets its own
//! upstream connection (hyper's `client::conn::http1` over the stream the
//! listener's [`UpstreamConnector`] makes: TCP, TLS, `connect_timeout`),
//! opened on its first request and used by the ones after it: HTTP/1
//! requests on one connection are sequential, so one upstream connection
//! serves them all, with no pool, no pool key and no checkout.
//!
//! The connection is opened again when the upstream closed it or it
//! failed; a request is sent once more, on a new connection, only when the
//! kept one refused it before any of it was written (as hyper-util's pooled
//! client does). It is closed when the client connection ends (its
//! [`Held`] is dropped) or a request on it is abandoned (the listener's
//! `timeout`).
//!
//! The price: a client that opens a connection per request (no
//! keep-alive) gets an upstream connect per request, where the pool would
//! have reused an idle one.

use std::sync::{Mutex, PoisonError};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};

use super::error::{classify, classify_connecting, Failure};
use super::upstream::{UpstreamBody, UpstreamConnector};

type Sender = SendRequest<UpstreamBody>;

/// Opens upstream connections dedicated to one client connection.
pub(crate) struct Dialer {
    connector: UpstreamConnector,
    handshake: http1::Builder,
}

/// A client connection's own upstream connection, while one is open and
/// no request is using it.
#[derive(Default)]
pub(crate) struct Held(Mutex<Option<Sender>>);

impl Held {
    fn take(&self) -> Option<Sender> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn keep(&self, sender: Sender) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
    }
}

impl Dialer {
    pub(crate) fn new(connector: UpstreamConnector) -> Self {
        let mut handshake = http1::Builder::new();
        handshake.preserve_header_case(true);
        Dialer {
            connector,
            handshake,
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) on `held`'s connection,
    /// or on a new one, and returns the response head; the connection is
    /// held again for the next request (which waits until this response's
    /// body has been read).
    pub(crate) async fn send(
        &self,
        held: &Held,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, Failure> {
        let mut kept = held.take();
        // At most twice: on the kept connection, then on a new one.
        loop {
            let reusable = match kept.as_mut() {
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            let mut sender = match kept.take().filter(|_| reusable) {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    held.keep(sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reusable => request = unsent,
                    _ => {
                        let error = failed.into_error();
                        return Err(Failure::new(classify(&error), error));
                    }
                },
            }
        }
    }

    /// A new connection, driven on a task of its own until its last
    /// [`Sender`] is dropped or the upstream closes it.
    async fn connect(&self) -> Result<Sender, Failure> {
        let stream = self
            .connector
            .connect()
            .await
            .map_err(|error| Failure::new(classify_connecting(&*error), error))?;
        let (sender, connection) = self
            .handshake
            .handshake(stream)
            .await
            .map_err(|error| Failure::new(classify_connecting(&error), error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

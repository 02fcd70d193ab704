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
//! client does). It is closed when a request on it is abandoned (the
//! listener's `timeout`); when the client connection ends (its [`Held`] is
//! dropped) an open one is kept for another client connection (below).
//!
//! A client that opens a connection per request (no keep-alive,
//! `Connection: close`, HTTP/1.0) would otherwise pay an upstream connect
//! (and TLS handshake) per request: so when a client connection ends, its
//! upstream connection, if still open, goes to the listener's short list
//! of idle ones (at most [`MAX_IDLE`], newest kept), and a client
//! connection without one takes the newest from there before dialing
//! (skipping closed ones and dropping those idle for longer than
//! [`IDLE_TIMEOUT`], checked then, with no timer). What remains: a burst of
//! more concurrent connection-per-request clients than [`MAX_IDLE`] dials
//! for the excess. A kept-alive client connection's requests never touch
//! the list.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};

use super::error::{classify, classify_connecting, Failure};
use super::upstream::{UpstreamBody, UpstreamConnector};

type Sender = SendRequest<UpstreamBody>;

/// At most this many idle upstream connections wait per listener for a
/// client connection; beyond it the oldest is closed.
pub(crate) const MAX_IDLE: usize = 32;

/// An idle upstream connection older than this is closed instead of reused
/// (hyper-util's pool default).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Opens upstream connections dedicated to one client connection, and
/// keeps those the ended client connections left.
pub(crate) struct Dialer {
    connector: UpstreamConnector,
    handshake: http1::Builder,
    idle: Arc<Idle<Sender>>,
}

/// An upstream connection that can tell, without waiting, whether it was
/// closed (a closed one is not handed out again).
pub(crate) trait Reusable {
    fn is_closed(&self) -> bool;
}

impl Reusable for Sender {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

/// A listener's idle upstream connections, oldest first, each with the
/// time it went idle: hyper's [`Sender`]s here, the native engine's own
/// connections in [`h1`](super::h1).
pub(crate) struct Idle<C>(Mutex<VecDeque<(C, Instant)>>);

impl<C> Default for Idle<C> {
    fn default() -> Self {
        Idle(Mutex::default())
    }
}

impl<C: Reusable> Idle<C> {
    pub(crate) fn put(&self, connection: C) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back((connection, Instant::now()));
    }

    /// The newest open idle connection that at `now` has been idle for no
    /// longer than [`IDLE_TIMEOUT`]; the expired and closed ones met on the
    /// way are dropped.
    pub(crate) fn take(&self, now: Instant) -> Option<C> {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while idle
            .front()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        while let Some((connection, _)) = idle.pop_back() {
            if !connection.is_closed() {
                return Some(connection);
            }
        }
        None
    }
}

/// A client connection's own upstream connection, while one is open and
/// no request is using it; when dropped (the client connection ended), an
/// open one goes to the list of idle ones it came from.
#[derive(Default)]
pub(crate) struct Held(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    sender: Option<Sender>,
    /// Set once the client connection got an upstream connection.
    idle: Option<Arc<Idle<Sender>>>,
}

impl Held {
    fn take(&self) -> Option<Sender> {
        self.slot().sender.take()
    }

    /// Holds `sender` again; `idle` (only on a connection's first use, so
    /// only when the client connection had none) is where it goes when the
    /// client connection ends.
    fn keep(&self, sender: Sender, idle: Option<&Arc<Idle<Sender>>>) {
        let mut slot = self.slot();
        slot.sender = Some(sender);
        if let (None, Some(idle)) = (&slot.idle, idle) {
            slot.idle = Some(Arc::clone(idle));
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let (Some(sender), Some(idle)) = (slot.sender.take(), &slot.idle) {
            if !Reusable::is_closed(&sender) {
                idle.put(sender);
            }
        }
    }
}

impl Dialer {
    /// Opens connections with `connector`, keeping the case of header
    /// names when `preserve_header_case`.
    pub(crate) fn new(connector: UpstreamConnector, preserve_header_case: bool) -> Self {
        let mut handshake = http1::Builder::new();
        handshake
            .preserve_header_case(preserve_header_case)
            .writev(false);
        Dialer {
            connector,
            handshake,
            idle: Arc::default(),
        }
    }

    /// The connector new connections are opened with.
    pub(crate) fn connector(&self) -> &UpstreamConnector {
        &self.connector
    }

    /// Sends `request` (origin-form URI, `Host` set) on `held`'s connection,
    /// or an idle one, or a new one, and returns the response head; the
    /// connection is held again for the next request (which waits until
    /// this response's body has been read).
    pub(crate) async fn send(
        &self,
        held: &Held,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, Failure> {
        let mut kept = held.take();
        // Only a client connection without one gets the list (to hand the
        // connection back to when it ends).
        let idle = match kept {
            Some(_) => None,
            None => {
                kept = self.idle.take(Instant::now());
                Some(&self.idle)
            }
        };
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
                    held.keep(sender, idle);
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::DuplexStream;

    /// A connection over an in-memory pipe, open while the returned peer
    /// end lives (its driving task ends with the runtime at the latest),
    /// or closed at once if `open` is false.
    async fn sender(open: bool) -> (Sender, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake(TokioIo::new(ours))
            .await
            .expect("handshake over a pipe");
        if open {
            tokio::spawn(connection);
        }
        (sender, theirs)
    }

    fn len<C>(idle: &Idle<C>) -> usize {
        idle.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    #[tokio::test]
    async fn the_list_keeps_at_most_max_idle() {
        let idle = Idle::<Sender>::default();
        let mut peers = Vec::new();
        for _ in 0..=MAX_IDLE {
            let (sender, peer) = sender(true).await;
            peers.push(peer);
            idle.put(sender);
        }
        assert_eq!(len(&idle), MAX_IDLE);
    }

    #[tokio::test]
    async fn take_skips_closed_connections_and_drops_expired_ones() {
        let idle = Idle::<Sender>::default();
        let (open, _peer) = sender(true).await;
        let (closed, _) = sender(false).await;
        assert!(closed.is_closed());
        idle.put(open);
        idle.put(closed);
        let taken = idle.take(Instant::now()).expect("the open one");
        assert!(!taken.is_closed());
        assert!(idle.take(Instant::now()).is_none());

        idle.put(taken);
        let later = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(idle.take(later).is_none());
        assert_eq!(len(&idle), 0, "the expired one is dropped");
    }

    #[tokio::test]
    async fn an_ended_client_connection_hands_back_an_open_connection_only() {
        let idle = Arc::new(Idle::<Sender>::default());
        let (open, _peer) = sender(true).await;
        let held = Held::default();
        held.keep(open, Some(&idle));
        drop(held);
        assert_eq!(len(&idle), 1);

        let (closed, _) = sender(false).await;
        let held = Held::default();
        held.keep(closed, Some(&idle));
        drop(held);
        assert_eq!(len(&idle), 1, "a closed one is not handed back");
    }
}

//! The body of a response the proxy sends to a client: the upstream's body
//! passed through the tap, a response the idempotency guard stored (also
//! through the tap, so the replayed exchange is recorded the same way), or
//! a short message of the sidecar's own (a 502 or 504).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::guard::ReplayBody;
use super::record::ResponseObserver;
use super::tap::TapBody;

/// A response body the proxy serves.
// Nearly every response is `Upstream`; boxing it would add an allocation per
// request to save space only on the rare sidecar message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProxyBody {
    /// The upstream's body, streamed and tapped.
    Upstream(TapBody<Incoming, Option<ResponseObserver>>),
    /// A stored response sent again by the idempotency guard.
    Replay(TapBody<ReplayBody, ResponseObserver>),
    /// The sidecar's own message, sent in one frame.
    Message(Option<Bytes>),
}

impl ProxyBody {
    pub(crate) fn message(text: Bytes) -> Self {
        ProxyBody::Message(Some(text))
    }

    /// The bytes of a message of the sidecar's own not yet sent (empty for
    /// the other kinds): for the native engine, which writes it itself.
    pub(crate) fn message_bytes(&self) -> &[u8] {
        match self {
            ProxyBody::Message(Some(text)) => text,
            _ => &[],
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Replay(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Message(text) => Poll::Ready(text.take().map(|text| Ok(Frame::data(text)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Replay(body) => body.is_end_stream(),
            ProxyBody::Message(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Replay(body) => body.size_hint(),
            ProxyBody::Message(text) => {
                SizeHint::with_exact(text.as_ref().map_or(0, |text| text.len() as u64))
            }
        }
    }
}

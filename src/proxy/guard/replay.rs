//! The stored first response: captured while it streams to the first client
//! ([`Capture`]), kept whole ([`StoredResponse`]) and sent again to a
//! repeat ([`ReplayBody`]).
//!
//! What is stored is what the first client got: status, headers after the
//! hop-by-hop ones were removed, the response extensions (on HTTP/1 they
//! carry the reason phrase and header case), the body bytes and trailers.
//! A replay sends the body with a known length only if the first response
//! had a `Content-Length`, so an HTTP/1 client sees the same framing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{response, Extensions, HeaderMap, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};

use super::Claim;

/// A complete 2xx response, kept to answer repeats of its key.
#[derive(Debug)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    /// As sent to the first client (hop-by-hop headers removed).
    pub(crate) headers: HeaderMap,
    pub(super) extensions: Extensions,
    pub(super) body: Bytes,
    pub(super) trailers: Option<HeaderMap>,
    /// The first response had a `Content-Length`.
    pub(super) sized: bool,
}

impl StoredResponse {
    /// The response head for a repeat in the client's `version`, with a
    /// body that sends the stored bytes.
    pub(crate) fn replay(self: &Arc<Self>, version: Version) -> Response<ReplayBody> {
        let mut response = Response::new(ReplayBody {
            stored: Arc::clone(self),
            next: Next::for_body(&self.body),
        });
        *response.status_mut() = self.status;
        *response.version_mut() = version;
        *response.headers_mut() = self.headers.clone();
        *response.extensions_mut() = self.extensions.clone();
        response
    }
}

/// The copy of a first response on its way to its client, committed to the
/// store when the body ends complete. Dropping it (body failed, client
/// gone, body over the limit) releases the claim instead.
pub(crate) struct Capture {
    claim: Claim,
    status: StatusCode,
    headers: HeaderMap,
    extensions: Extensions,
    sized: bool,
    /// Frames seen so far (reference-counted slices, copied once at commit).
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
}

impl Capture {
    /// Starts capturing the response whose head is `parts` (as it goes to
    /// the client) for `claim`; `None`, which releases the claim at once,
    /// when it cannot be stored: not 2xx, or a `Content-Length` over the
    /// route's `max_response`.
    pub(crate) fn start(claim: Claim, parts: &response::Parts) -> Option<Capture> {
        if !parts.status.is_success() {
            return None;
        }
        let length = parts.headers.get(CONTENT_LENGTH);
        if let Some(length) = length {
            let fits = length
                .to_str()
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .is_some_and(|len| len <= claim.max_response() as u64);
            if !fits {
                return None;
            }
        }
        Some(Capture {
            status: parts.status,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
            sized: length.is_some(),
            chunks: Vec::new(),
            len: 0,
            trailers: None,
            claim,
        })
    }

    /// Keeps `data`; false when the body has grown over `max_response`
    /// (the caller then drops the capture).
    pub(crate) fn data(&mut self, data: &Bytes) -> bool {
        self.len = self.len.saturating_add(data.len());
        if self.len > self.claim.max_response() {
            return false;
        }
        if !data.is_empty() {
            self.chunks.push(data.clone());
        }
        true
    }

    pub(crate) fn trailers(&mut self, trailers: &HeaderMap) {
        self.trailers = Some(trailers.clone());
    }

    /// The body ended complete: store the response.
    pub(crate) fn commit(self) {
        // One fresh buffer: the frames may be slices of larger read buffers
        // that must not stay alive for the whole window.
        let mut body = BytesMut::with_capacity(self.len);
        for chunk in &self.chunks {
            body.extend_from_slice(chunk);
        }
        let stored = StoredResponse {
            status: self.status,
            headers: self.headers,
            extensions: self.extensions,
            body: body.freeze(),
            trailers: self.trailers,
            sized: self.sized,
        };
        self.claim.commit(stored);
    }
}

/// Which frame a [`ReplayBody`] sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Data,
    Trailers,
    Done,
}

impl Next {
    fn for_body(body: &Bytes) -> Next {
        if body.is_empty() {
            Next::Trailers
        } else {
            Next::Data
        }
    }
}

/// The body of a replayed response: the stored bytes in one frame, then
/// the stored trailers, if any.
pub(crate) struct ReplayBody {
    stored: Arc<StoredResponse>,
    next: Next,
}

impl Body for ReplayBody {
    type Data = Bytes;
    // Never produced; the type the other response bodies have.
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            match this.next {
                Next::Data => {
                    this.next = Next::Trailers;
                    return Poll::Ready(Some(Ok(Frame::data(this.stored.body.clone()))));
                }
                Next::Trailers => {
                    this.next = Next::Done;
                    if let Some(trailers) = &this.stored.trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                    }
                }
                Next::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.next {
            Next::Data => false,
            Next::Trailers => self.stored.trailers.is_none(),
            Next::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.stored.sized {
            let left = if self.next == Next::Data {
                self.stored.body.len() as u64
            } else {
                0
            };
            SizeHint::with_exact(left)
        } else {
            SizeHint::default()
        }
    }
}

//! The body tap: an [`http_body::Body`] wrapper that hands every frame on
//! unchanged (data, trailers, `size_hint`, `is_end_stream`) while keeping a
//! bounded copy of the first `tap_limit` bytes for extraction.
//!
//! The copy is cheap: frames are `Bytes`, so the tap keeps reference-counted
//! slices of them until the limit is reached and joins them into one buffer
//! only when the exchange is finished (no join at all for a body that came
//! in one frame). Past the limit only the length is counted.
//!
//! What happens when a body ends is the [`Observer`]'s business: the request
//! side publishes into a [`SharedTap`] that the response side reads when the
//! exchange finishes (the request may still be streaming then), or, on the
//! native engine, into the exchange's own [`RequestTap`]; the response
//! side finishes the exchange (see `record.rs`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use smallvec::SmallVec;

use super::Tapped;

/// The bounded copy of one body, as far as it has been read.
#[derive(Debug)]
pub(crate) struct Tap {
    limit: usize,
    /// Slices of the frames seen so far, together at most `limit` bytes;
    /// one inline: a body that comes in one frame (the usual tapped JSON
    /// document) allocates nothing here.
    chunks: SmallVec<[Bytes; 1]>,
    kept: usize,
    total: u64,
    truncated: bool,
    complete: bool,
}

impl Tap {
    pub(crate) fn new(limit: usize) -> Self {
        Tap {
            limit,
            chunks: SmallVec::new(),
            kept: 0,
            total: 0,
            truncated: false,
            complete: false,
        }
    }

    /// Counts `data` and keeps the part of it that still fits under the limit.
    pub(crate) fn observe(&mut self, data: &Bytes) {
        self.total = self.total.saturating_add(data.len() as u64);
        let room = self.limit.saturating_sub(self.kept);
        if data.len() > room {
            self.truncated = true;
        }
        let take = data.len().min(room);
        if take > 0 {
            self.chunks.push(data.slice(..take));
            self.kept += take;
        }
    }

    /// Marks the body as read to its end (or not).
    pub(crate) fn set_complete(&mut self, complete: bool) {
        self.complete = complete;
    }

    /// The copy so far, joined into one buffer.
    pub(crate) fn snapshot(&self) -> Tapped {
        Tapped {
            bytes: join(&self.chunks, self.kept),
            total_len: self.total,
            truncated: self.truncated,
            complete: self.complete,
        }
    }
}

fn join(chunks: &[Bytes], len: usize) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut joined = BytesMut::with_capacity(len);
            for chunk in many {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    }
}

/// What a [`TapBody`] tells about the body it wraps.
pub(crate) trait Observer {
    /// A data frame passed through.
    fn data(&mut self, data: &Bytes);
    /// The trailers passed through.
    fn trailers(&mut self, _trailers: &HeaderMap) {}
    /// The body ended (`complete`), failed or was dropped before its end
    /// (`!complete`). Called exactly once.
    fn end(&mut self, complete: bool);
}

/// No observer: the body of an uninspected request or response passes
/// through with nothing watching it.
impl<O: Observer> Observer for Option<O> {
    fn data(&mut self, data: &Bytes) {
        if let Some(observer) = self {
            observer.data(data);
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(observer) = self {
            observer.trailers(trailers);
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(observer) = self {
            observer.end(complete);
        }
    }
}

/// An observer behind a pointer (the native engine's boxed response
/// observer, its exchange's request tap lent to the pump) is that observer.
macro_rules! observer_behind {
    ($($pointer:ty),*) => {$(
        impl<O: Observer + ?Sized> Observer for $pointer {
            fn data(&mut self, data: &Bytes) {
                (**self).data(data);
            }

            fn trailers(&mut self, trailers: &HeaderMap) {
                (**self).trailers(trailers);
            }

            fn end(&mut self, complete: bool) {
                (**self).end(complete);
            }
        }
    )*};
}

observer_behind!(&mut O, Box<O>);

/// A [`Tap`] shared between the request body (which writes it, possibly on
/// the upstream connection's task) and the exchange (which reads it when the
/// response ends). The lock is held only to copy a frame reference.
#[derive(Debug, Clone)]
pub(crate) struct SharedTap(Arc<Mutex<Tap>>);

impl SharedTap {
    /// A tap for a body that is already at its end when `complete`.
    pub(crate) fn new(limit: usize, complete: bool) -> Self {
        let mut tap = Tap::new(limit);
        tap.set_complete(complete);
        SharedTap(Arc::new(Mutex::new(tap)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tap) -> R) -> R {
        // A panic elsewhere cannot leave a `Tap` half-updated in a way that
        // matters here, so a poisoned lock is still read.
        let mut tap = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut tap)
    }

    /// What the body showed so far.
    pub(crate) fn snapshot(&self) -> Tapped {
        self.with(|tap| tap.snapshot())
    }
}

impl Observer for SharedTap {
    fn data(&mut self, data: &Bytes) {
        self.with(|tap| tap.observe(data));
    }

    fn end(&mut self, complete: bool) {
        self.with(|tap| tap.set_complete(complete));
    }
}

/// An exchange's request tap: shared with the body that streams the
/// request (hyper's path, where that body is hyper's to poll), or the
/// exchange's own (the native engine pumps the body itself and observes
/// it through the exchange: no `Arc` allocated, no lock per frame).
#[derive(Debug)]
pub(crate) enum RequestTap {
    Shared(SharedTap),
    Own(Tap),
}

impl RequestTap {
    /// An own tap for a body that is already at its end when `complete`.
    pub(crate) fn own(limit: usize, complete: bool) -> Self {
        let mut tap = Tap::new(limit);
        tap.set_complete(complete);
        RequestTap::Own(tap)
    }

    /// What the body showed so far.
    pub(crate) fn snapshot(&self) -> Tapped {
        match self {
            RequestTap::Shared(shared) => shared.snapshot(),
            RequestTap::Own(tap) => tap.snapshot(),
        }
    }
}

impl Observer for RequestTap {
    fn data(&mut self, data: &Bytes) {
        match self {
            RequestTap::Shared(shared) => shared.data(data),
            RequestTap::Own(tap) => tap.observe(data),
        }
    }

    fn end(&mut self, complete: bool) {
        match self {
            RequestTap::Shared(shared) => shared.end(complete),
            RequestTap::Own(tap) => tap.set_complete(complete),
        }
    }
}

/// A body that passes every frame of `inner` through unchanged and shows
/// each data frame to its observer.
pub(crate) struct TapBody<B: Body, O: Observer> {
    inner: B,
    observer: O,
    ended: bool,
}

impl<B: Body, O: Observer> TapBody<B, O> {
    pub(crate) fn new(inner: B, observer: O) -> Self {
        TapBody {
            inner,
            observer,
            ended: false,
        }
    }

    fn end(&mut self, complete: bool) {
        if !self.ended {
            self.ended = true;
            self.observer.end(complete);
        }
    }
}

impl<B, O> Body for TapBody<B, O>
where
    B: Body<Data = Bytes> + Unpin,
    O: Observer + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.observer.data(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.observer.trailers(trailers);
                }
                // Finish before the last bytes are handed on, so whoever
                // reads this body to its end can count on the observer
                // having been told. Trailers are always the last frame (an
                // HTTP/1 server does not poll the body again after them, and
                // a chunked `Incoming` does not report its end before that).
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.end(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Ready(None) => this.end(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body, O: Observer> Drop for TapBody<B, O> {
    fn drop(&mut self) {
        // Dropped unread: complete only when nothing was left to read
        // (a bodiless response the server never polled).
        let complete = self.inner.is_end_stream();
        self.end(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_keeps_at_most_the_limit_and_counts_the_rest() {
        let mut tap = Tap::new(5);
        tap.observe(&Bytes::from_static(b"abc"));
        tap.observe(&Bytes::from_static(b"defgh"));
        tap.set_complete(true);
        let tapped = tap.snapshot();
        assert_eq!(&tapped.bytes[..], b"abcde");
        assert_eq!(tapped.total_len, 8);
        assert!(tapped.truncated);
        assert!(tapped.complete);
    }

    #[test]
    fn an_own_request_tap_shows_what_a_shared_one_shows() {
        let shared = SharedTap::new(5, false);
        let mut taps = [
            RequestTap::Shared(shared.clone()),
            RequestTap::own(5, false),
        ];
        for tap in &mut taps {
            // Through `&mut`, as the native engine's pump observes it.
            let mut observer = Some(&mut *tap);
            observer.data(&Bytes::from_static(b"abc"));
            observer.data(&Bytes::from_static(b"defgh"));
            observer.end(true);
        }
        for tap in &taps {
            let tapped = tap.snapshot();
            assert_eq!(&tapped.bytes[..], b"abcde");
            assert_eq!(tapped.total_len, 8);
            assert!(tapped.truncated && tapped.complete);
        }
        // The shared one is the body's too.
        assert_eq!(shared.snapshot().total_len, 8);
        // An own tap of a bodiless request is complete from the start.
        assert!(RequestTap::own(5, true).snapshot().complete);
    }

    #[test]
    fn tap_of_a_body_exactly_at_the_limit_is_not_truncated() {
        let mut tap = Tap::new(3);
        tap.observe(&Bytes::from_static(b"abc"));
        tap.observe(&Bytes::new());
        let tapped = tap.snapshot();
        assert_eq!(&tapped.bytes[..], b"abc");
        assert!(!tapped.truncated);
    }

    #[test]
    fn a_body_in_one_frame_is_kept_as_that_frame_and_more_are_joined() {
        let frame = Bytes::from_static(b"one frame");
        let mut tap = Tap::new(64);
        tap.observe(&frame);
        let tapped = tap.snapshot();
        assert_eq!(tapped.bytes.as_ptr(), frame.as_ptr(), "not copied");
        assert_eq!(&tapped.bytes[..], b"one frame");
        for piece in [&b", two"[..], b", three"] {
            tap.observe(&Bytes::from_static(piece));
        }
        let tapped = tap.snapshot();
        assert_eq!(&tapped.bytes[..], b"one frame, two, three");
        assert_eq!(tapped.total_len, 21);
        assert!(!tapped.truncated);
    }

    #[test]
    fn tap_with_zero_limit_keeps_nothing() {
        let mut tap = Tap::new(0);
        tap.observe(&Bytes::from_static(b"x"));
        let tapped = tap.snapshot();
        assert!(tapped.bytes.is_empty());
        assert!(tapped.truncated);
        assert_eq!(tapped.total_len, 1);
    }
}

//! Assembling the [`Exchange`] record: what is known when the request head
//! arrives ([`Pending`]), what the upstream answered, and the two taps; and
//! offering it to the sink exactly once, when the response body ends, fails
//! or is dropped (the client went away), or at once when the upstream failed.
//! The response observer also carries the idempotency guard's [`Capture`]
//! of a first response, committed to the guard's store when the body ends
//! complete.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use tokio::time::Instant;

use super::guard::Capture;
use super::sink::ExchangeSink;
use super::tap::{Observer, RequestTap, Tap};
use super::{Exchange, Headers, Outcome, Tapped, TraceContext};
use crate::config::{ListenerId, System};

/// An exchange whose request head has arrived; finished into an
/// [`Exchange`] by [`Pending::finish`], which consumes it, so it is offered
/// at most once.
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) listener: ListenerId,
    pub(crate) system: System,
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
    pub(crate) version: http::Version,
    pub(crate) request_headers: Headers,
    pub(crate) started: SystemTime,
    /// Monotonic time the request head arrived, for durations.
    pub(crate) began: Instant,
    /// Time until the response head (or failure); set once known.
    pub(crate) upstream_duration: Duration,
    /// Written by the request body as it streams to the upstream.
    pub(crate) request_tap: RequestTap,
    pub(crate) sink: ExchangeSink,
    /// Answered by the idempotency guard from its store.
    pub(crate) replayed: bool,
    /// Sent to the upstream in `traceparent`, if the route opted in.
    pub(crate) trace_context: Option<TraceContext>,
}

impl Pending {
    /// Builds the record with the request body as seen so far and offers it.
    pub(crate) fn finish(self, outcome: Outcome, response_body: Tapped) {
        let exchange = Exchange {
            id: self.id,
            listener: self.listener,
            system: self.system,
            method: self.method,
            uri: self.uri,
            version: self.version,
            request_headers: self.request_headers,
            started: self.started,
            duration: self.began.elapsed(),
            upstream_duration: self.upstream_duration,
            outcome,
            request_body: self.request_tap.snapshot(),
            response_body,
            replayed: self.replayed,
            trace_context: self.trace_context,
        };
        self.sink.offer(exchange);
    }

    /// Finishes an exchange the upstream never answered: no response body.
    pub(crate) fn finish_failed(self, outcome: Outcome) {
        let response_body = Tapped {
            bytes: Bytes::new(),
            total_len: 0,
            truncated: false,
            complete: true,
        };
        self.finish(outcome, response_body);
    }
}

/// An exchange waiting for its response body: a [`Pending`], or a boxed
/// one (the native engine's, kept in the box it was built in rather than
/// moved out of it).
pub(crate) trait Finish {
    /// As [`Pending::finish`].
    fn finish(self, outcome: Outcome, response_body: Tapped);
}

impl Finish for Pending {
    fn finish(self, outcome: Outcome, response_body: Tapped) {
        Pending::finish(self, outcome, response_body);
    }
}

impl Finish for Box<Pending> {
    fn finish(self, outcome: Outcome, response_body: Tapped) {
        Pending::finish(*self, outcome, response_body);
    }
}

/// Watches the response body on its way to the client and finishes the
/// exchange (a [`Pending`] or a boxed one, `P`) when that body is over.
pub(crate) struct ResponseObserver<P = Pending> {
    tap: Tap,
    /// Taken when the exchange is finished, so it is offered once.
    pending: Option<(P, Outcome)>,
    /// The guard's copy of a first response; dropped (releasing its key)
    /// as soon as the body outgrows the route's limit. Boxed: only guarded
    /// routes have one, and inline it would triple the observer that every
    /// inspected response moves around.
    capture: Option<Box<Capture>>,
}

impl<P: Finish> ResponseObserver<P> {
    pub(crate) fn new(
        limit: usize,
        pending: P,
        outcome: Outcome,
        capture: Option<Capture>,
    ) -> Self {
        ResponseObserver {
            tap: Tap::new(limit),
            pending: Some((pending, outcome)),
            capture: capture.map(Box::new),
        }
    }
}

impl<P: Finish> Observer for ResponseObserver<P> {
    fn data(&mut self, data: &Bytes) {
        self.tap.observe(data);
        if self
            .capture
            .as_mut()
            .is_some_and(|capture| !capture.data(data))
        {
            self.capture = None;
        }
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(capture) = &mut self.capture {
            capture.trailers(trailers);
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(capture) = self.capture.take() {
            if complete {
                capture.commit();
            }
        }
        if let Some((pending, outcome)) = self.pending.take() {
            self.tap.set_complete(complete);
            pending.finish(outcome, self.tap.snapshot());
        }
    }
}

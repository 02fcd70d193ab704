//! The native engine's client connection: one task per connection reads
//! the client's requests into one buffer, one at a time (a pipelined next
//! head may already be there), writes each to the connection's own
//! upstream connection with the codec, and streams the response back; no
//! hyper on that path. h2c clients are handed to hyper (`handoff.rs`).
//!
//! Per request: the head is parsed in place ([`RequestHead`], byte ranges
//! of the buffer); refused heads get 400/414/431 (bytes as hyper writes
//! them) or the proxy's own refusals (`reject.rs`, counted); the head for
//! the upstream is written by [`write_request`]; the body is pumped
//! (`body.rs`); the response head is read within the listener's `timeout`
//! (else 504), 1xx other than 100 are relayed, 101 ends the connection
//! (counted and recorded as any response);
//! upstream failures are answered by `error.rs`'s responses, counted the
//! same way as on the hyper path (the [`Forwarder`]'s `fail`/`reject`).
//! An [`Exchange`](crate::proxy::Exchange) is built only for an inspected
//! request: its `http` method, URI and header maps are made from the head
//! ranges then, and never otherwise.
//!
//! Timeouts: a request head must arrive within [`HEADER_READ_TIMEOUT`]
//! (also the keep-alive idle limit, as hyper's header read timer is);
//! request body bytes must keep coming within [`BODY_READ_TIMEOUT`];
//! response body bytes within the listener's `timeout` (the limit of its
//! response head), else the client connection closes after what was
//! relayed, counted as an upstream `timeout` (the hyper path has no such
//! limit: a stalled upstream body holds its client connection). The head
//! read, the exchange's way upstream with its response head (the
//! listener's `timeout`) and the lingering close share one timer per
//! connection, re-armed only when a deadline moves earlier than its entry
//! (`Timer`): on a busy keep-alive connection about once per `timeout`.
//!
//! Graceful drain: on shutdown an idle connection closes at once, a busy
//! one after its in-flight response (which then says `connection: close`).
//!
//! Upstream reuse: only after a response whose framing allows it (length
//! or chunked, no `close`, nothing read past it); a reused connection
//! found closed before the request is written is replaced by a new one
//! (one retry, only for a bodiless request, the only kind whose bytes are
//! all still at hand); when the client connection ends an open one goes to
//! the listener's idle list.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONNECTION;
use http::{HeaderValue, Response, StatusCode, Uri};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::body::{flush, Pump, PumpError, Pumped, Trailers, READ_CHUNK};
use super::framing::{self, BodyLength, FramingError, MethodKind, RequestFraming, ResponseFraming};
use super::handoff::{self, Sniffed};
use super::head::{Parsed, RequestHead, ResponseHead, Version};
use super::rewrite::{
    lowercase_names, write_request, write_response, HostRewrite, RequestRewrite, ResponseRewrite,
};
use super::shutdown::Shutdown;
use super::upstream::UpstreamConn;
use crate::config::{Forwarded, HeaderCase, HostHeader};
use crate::proxy::body::ProxyBody;
use crate::proxy::dedicated::{Idle, Reusable};
use crate::proxy::error::{classify, Failure};
use crate::proxy::forward::{origin_form as forward_origin_form, Forwarder};
use crate::proxy::metrics::HandleTime;
use crate::proxy::record::{Pending, ResponseObserver};
use crate::proxy::reject::{check_fields, Http1Fields, Rejection};
use crate::proxy::tap::{Observer, RequestTap};
use crate::proxy::upstream::UpstreamConnector;
use crate::proxy::{Outcome, RequestHeadRef, TraceContext, UpstreamError};

/// A request head must arrive within this (hyper's default header read
/// timeout once a timer is set); also how long an idle keep-alive
/// connection is kept.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait for the next bytes of a request body.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest request target (hyper's, from `http::Uri`): longer gets 414.
const MAX_TARGET_LEN: usize = u16::MAX as usize - 1;

/// Answers to heads that cannot be read, as hyper writes them; the
/// connection closes after each.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const URI_TOO_LONG: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const HEADERS_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A listener's native engine, shared by its connections.
pub(crate) struct Engine {
    forwarder: Arc<Forwarder>,
    connector: UpstreamConnector,
    idle: Idle<Box<UpstreamConn>>,
    /// `header_case: lowercase`: every written head's names in lower case.
    lowercase: bool,
}

/// Whether the client connection carries on after an exchange.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

impl Engine {
    /// The engine of `forwarder`'s listener; `None` when its upstream is
    /// not HTTP/1-only (the selection refuses such listeners first).
    pub(crate) fn new(forwarder: Arc<Forwarder>) -> Option<Self> {
        let connector = forwarder.upstream().http1_connector()?.clone();
        let lowercase = forwarder.listener().header_case == HeaderCase::Lowercase;
        Some(Engine {
            forwarder,
            connector,
            idle: Idle::default(),
            lowercase,
        })
    }

    /// Serves one client connection until it ends.
    pub(crate) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let mut connection = Connection {
            engine: &self,
            io: stream,
            peer,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            head: Box::default(),
            response: Box::default(),
            upstream: None,
            shutdown: Shutdown::watch(&shutdown).await,
            timer: Timer::new(Instant::now() + HEADER_READ_TIMEOUT),
        };
        let Some(first) = connection.first_bytes().await else {
            return;
        };
        if first == Sniffed::Http2 {
            let read = connection.buf.split().freeze();
            let forwarder = Arc::clone(&self.forwarder);
            // A clone: the connection's wait still borrows the token.
            let shutdown = shutdown.clone();
            return handoff::serve_h2(forwarder, connection.io, read, peer, shutdown).await;
        }
        while connection.exchange().await == Next::KeepAlive {
            if connection.shutdown.came() {
                break;
            }
        }
        connection.linger().await;
        if let Some(upstream) = connection.upstream.take() {
            if !upstream.is_closed() {
                self.idle.put(upstream);
            }
        }
    }
}

/// One client connection's state.
struct Connection<'e> {
    engine: &'e Engine,
    io: TcpStream,
    peer: SocketAddr,
    /// Bytes read from the client not used yet.
    buf: BytesMut,
    /// Bytes to write next (a head, then body pieces).
    out: Vec<u8>,
    head: Box<RequestHead>,
    response: Box<ResponseHead>,
    /// The connection's own upstream connection, while it is reusable.
    upstream: Option<Box<UpstreamConn>>,
    /// The listener's shutdown, watched once per connection (not per
    /// read).
    shutdown: Shutdown<'e>,
    /// The connection's one timer, set for each wait that has a deadline
    /// (a head read, an exchange's upstream part, the lingering close).
    timer: Timer,
}

/// A connection's one timer: the deadline of the current wait, and one
/// timer entry that is re-armed only when a deadline moves **earlier**
/// than the entry's. A later deadline (the next head read's, the next
/// exchange's: every exchange's but the first) just replaces the field;
/// when the entry fires before it, it is re-armed then. So a busy
/// keep-alive connection touches the timer wheel about once per
/// listener `timeout`, not twice per exchange.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    deadline: Instant,
}

impl Timer {
    fn new(deadline: Instant) -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            deadline,
        }
    }

    /// The current wait times out at `deadline`.
    fn set(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Completes once the current deadline has passed.
    fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| loop {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            if self.sleep.deadline() >= self.deadline {
                return std::task::Poll::Ready(());
            }
            // Armed for an earlier deadline than the current one.
            let deadline = self.deadline;
            self.sleep.as_mut().reset(deadline);
        })
    }
}

/// `future`'s output, or `None` when `timer`'s deadline passes first (the
/// future is polled first, as `tokio::time::timeout` does).
async fn before<F: Future>(timer: &mut Timer, future: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        output = future => Some(output),
        () = timer.expired() => None,
    }
}

/// What the response side needs to know of the request.
struct Asked {
    framing: RequestFraming,
    version: Version,
    /// The client accepts trailers (`TE: trailers`).
    te_trailers: bool,
    began: Instant,
    /// The request body went upstream to its end.
    body_whole: bool,
}

fn http_version(version: Version) -> http::Version {
    match version {
        Version::Http10 => http::Version::HTTP_10,
        Version::Http11 => http::Version::HTTP_11,
    }
}

/// The failure of an upstream whose response head did not come within the
/// listener's `timeout`.
fn no_head_in_time() -> Failure {
    Failure::new(UpstreamError::Timeout, "no response head in time")
}

/// Writes a response of the sidecar's own as hyper's server writes it:
/// status line in the client's version, the headers in order, names in
/// lower case, then `content-length` and the body; `connection: close`
/// added when the connection closes after it.
/// To a `HEAD` request (`head_request`) without its body, as hyper's
/// server writes it: the body would be read as the next response.
fn write_own(response: &Response<ProxyBody>, close: bool, head_request: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let version = match response.version() {
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let status = response.status();
    let _ = write!(
        out,
        "{version} {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close && version == "HTTP/1.1" && !response.headers().contains_key(CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let body = response.body().message_bytes();
    let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
    if !head_request {
        out.extend_from_slice(body);
    }
}

/// After closing its side, how long the engine goes on reading (and
/// dropping) what a client still sends, and how much: closing with unread
/// bytes would reset the connection and could destroy the answer before
/// the client read it (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

impl Connection<'_> {
    /// Ends the client connection: the sending side first, then reads
    /// until the client closes (bounded by [`LINGER`] and
    /// [`LINGER_BYTES`]).
    async fn linger(&mut self) {
        if self.io.shutdown().await.is_err() {
            return;
        }
        self.timer.set(Instant::now() + LINGER);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            self.buf.clear();
            match before(&mut self.timer, self.io.read_buf(&mut self.buf)).await {
                Some(Ok(n)) if n > 0 => dropped += n,
                _ => return,
            }
        }
    }

    /// Reads until the first bytes tell HTTP/1 from the h2c preface;
    /// `None` when the client went away (or shutdown came) first.
    async fn first_bytes(&mut self) -> Option<Sniffed> {
        // Armed when the connection was made.
        loop {
            match handoff::sniff(&self.buf) {
                Sniffed::Undecided => {}
                decided => return Some(decided),
            }
            if self.read_client().await? == 0 {
                return None;
            }
        }
    }

    /// Reads more of the client's bytes, before `deadline`; `None` when
    /// the read failed, timed out, or shutdown came while nothing was
    /// buffered (an idle connection closes at once).
    async fn read_client(&mut self) -> Option<usize> {
        self.buf.reserve(READ_CHUNK);
        let idle = self.buf.is_empty();
        let read = before(&mut self.timer, self.io.read_buf(&mut self.buf));
        // The read first: a request already there is served (the
        // connection then closes after it); the shutdown's wait is polled
        // only while the read waits.
        let read = tokio::select! {
            biased;
            read = read => read,
            () = self.shutdown.arrival(), if idle => return None,
        };
        match read {
            Some(Ok(n)) => Some(n),
            Some(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "client read failed");
                None
            }
            None => None,
        }
    }

    /// Writes what `out` holds to the client; false when it is gone.
    async fn write_out(&mut self) -> bool {
        self.io.write_all(&self.out).await.is_ok()
    }

    /// Writes `bytes` to the client; false when it is gone.
    async fn write_client(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok()
    }

    /// Waits for the next request head; its length, or `None` when the
    /// connection is over (answered already if the head was refused).
    async fn next_head(&mut self) -> Option<usize> {
        self.timer.set(Instant::now() + HEADER_READ_TIMEOUT);
        loop {
            if !self.buf.is_empty() {
                match self.head.parse(&self.buf) {
                    Ok(Parsed::Complete(len)) => return Some(len),
                    Ok(Parsed::Partial) => {
                        // A request line this long gets 414 before its end.
                        let line_open = !self.buf.contains(&b'\n');
                        if line_open && self.buf.len() > MAX_TARGET_LEN {
                            self.write_client(URI_TOO_LONG).await;
                            return None;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(peer = %self.peer, %error, "request head refused");
                        let answer = if error.too_large() {
                            self.too_large_answer()
                        } else {
                            BAD_REQUEST
                        };
                        self.write_client(answer).await;
                        return None;
                    }
                }
            }
            if self.read_client().await? == 0 {
                return None;
            }
        }
    }

    /// 414 when the request line alone is too long, else 431.
    fn too_large_answer(&self) -> &'static [u8] {
        let line = self
            .buf
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(self.buf.len());
        if line > MAX_TARGET_LEN {
            URI_TOO_LONG
        } else {
            HEADERS_TOO_LARGE
        }
    }

    /// Serves one request: reads its head, forwards it and its body,
    /// streams the response back.
    async fn exchange(&mut self) -> Next {
        let Some(len) = self.next_head().await else {
            return Next::Close;
        };
        let began = Instant::now();
        let head_bytes = self.buf.split_to(len).freeze();
        let buf = &head_bytes[..];
        let head = &self.head;
        let version = head.version;
        let head_request = MethodKind::of(head.method(buf)) == MethodKind::Head;
        if head.target(buf).len() > MAX_TARGET_LEN {
            self.write_client(URI_TOO_LONG).await;
            return Next::Close;
        }
        // The target as hyper reads it (`http::Uri`, without a copy): what
        // it refuses is a 400 here too.
        let target = head.target;
        let Ok(uri) =
            Uri::from_maybe_shared(head_bytes.slice(target.start as usize..target.end as usize))
        else {
            self.write_client(BAD_REQUEST).await;
            return Next::Close;
        };
        let framing = framing::request(buf, head);
        if let Err(error) = framing {
            if !error.not_implemented() {
                tracing::debug!(peer = %self.peer, %error, "request framing refused");
                self.write_client(BAD_REQUEST).await;
                return Next::Close;
            }
        }
        let fields = Http1Fields {
            http11: version == Version::Http11,
            host: head.fields.host.map(|host| host.of(buf)),
            host_lines: usize::from(head.fields.host_lines),
            unknown_coding: framing == Err(FramingError::UnsupportedCoding),
            authority: uri
                .authority()
                .map(|authority| authority.as_str().as_bytes()),
        };
        if let Err(rejection) = check_fields(&fields) {
            return self.refuse(rejection, version, head_request).await;
        }
        let Ok(framing) = framing else {
            return self
                .refuse(Rejection::TransferCoding, version, head_request)
                .await;
        };
        let pending = self.pending(&head_bytes, &uri, began, &framing);
        let asked = Asked {
            framing,
            version,
            te_trailers: self.head.fields.te_trailers,
            began,
            body_whole: false,
        };
        if framing.expect_continue
            && version == Version::Http11
            && framing.body != BodyLength::Empty
            && self.buf.is_empty()
            && !self.write_client(CONTINUE).await
        {
            return Next::Close;
        }
        self.forward(&head_bytes, asked, pending).await
    }

    /// The exchange of an inspected request (`None` for an uninspected
    /// one: nothing is built, tapped or queued for it).
    fn pending(
        &self,
        buf: &Bytes,
        uri: &Uri,
        began: Instant,
        framing: &RequestFraming,
    ) -> Option<Box<Pending>> {
        let forwarder = &self.engine.forwarder;
        let head = &self.head;
        let method = http::Method::from_bytes(head.method(buf)).ok()?;
        if !forwarder.inspects(&method, uri.path()) {
            return None;
        }
        // The exchange's own: the pump observes the body through it.
        let tap = RequestTap::own(
            forwarder.listener().tap_limit,
            framing.body == BodyLength::Empty,
        );
        let headers = head.lines.headers(buf);
        let trace_context = forwarder.trace_context(RequestHeadRef {
            method: &method,
            uri,
            headers: &headers,
        });
        // Boxed: it waits across the whole exchange, and an inline one
        // would be copied with every future that holds it.
        let mut pending = Box::new(forwarder.pending(
            method,
            forward_origin_form(uri),
            http_version(head.version),
            headers,
            began,
            tap,
        ));
        pending.trace_context = trace_context;
        Some(pending)
    }

    /// Refuses the request (no exchange, counted) and closes; without a
    /// body when it is a `HEAD` request (`head_request`).
    async fn refuse(&mut self, rejection: Rejection, version: Version, head_request: bool) -> Next {
        // Written out before the first `await`, so the response is no
        // part of the future's state.
        self.out.clear();
        let response = self
            .engine
            .forwarder
            .reject(rejection, http_version(version));
        write_own(&response, true, head_request, &mut self.out);
        drop(response);
        self.write_out().await;
        Next::Close
    }

    /// Answers for a failed upstream (the exchange is recorded at once);
    /// the client connection closes after it when `close`.
    async fn fail(
        &mut self,
        pending: Option<Box<Pending>>,
        failure: &Failure,
        asked: &Asked,
        time: HandleTime,
        close: bool,
    ) -> Next {
        tracing::debug!(peer = %self.peer, error = failure.kind.as_str(), cause = %failure.cause, "upstream failed");
        let close = close || !asked.framing.keep_alive || asked.version == Version::Http10;
        // Written out before the first `await`, so the response is no
        // part of the future's state.
        self.out.clear();
        let response = self.engine.forwarder.fail(
            pending.map(|pending| *pending),
            failure.kind,
            http_version(asked.version),
            time,
        );
        let head_request = asked.framing.method == MethodKind::Head;
        write_own(&response, close, head_request, &mut self.out);
        drop(response);
        let written = self.write_out().await;
        if close || !written {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// The connection's upstream connection when one can be used again
    /// (its own kept one, else an idle one of the listener's); `None`:
    /// a new one is needed. Not `async`: the connecting future (with its
    /// timer) is made, and moved into the exchange's state, only when a
    /// connection is opened.
    fn reusable_upstream(&mut self) -> Option<Box<UpstreamConn>> {
        if let Some(kept) = self.upstream.take().filter(|kept| !kept.is_closed()) {
            return Some(kept);
        }
        self.engine.idle.take(std::time::Instant::now())
    }

    /// Writes the upstream request head for the head in `buf` into `out`,
    /// with the `traceparent` of `trace` (replacing the client's) if any.
    fn write_upstream_head(
        &mut self,
        buf: &[u8],
        body: BodyLength,
        trace: Option<TraceContext>,
    ) -> bool {
        let traceparent = trace.and_then(|trace| trace.traceparent());
        let forwarder = &self.engine.forwarder;
        let listener = forwarder.listener();
        let upstream_host = forwarder.upstream_host();
        let rewrite = RequestRewrite {
            base_path: forwarder.base_path(),
            host: match listener.host_header {
                HostHeader::Preserve => HostRewrite::Preserve {
                    fallback: upstream_host,
                },
                HostHeader::Upstream => HostRewrite::Replace(upstream_host),
            },
            forwarded_for: (listener.forwarded == Forwarded::Append).then(|| self.peer.ip()),
            traceparent: traceparent.as_ref().map(HeaderValue::as_bytes),
            chunked: body == BodyLength::Chunked,
        };
        self.out.clear();
        let written = write_request(buf, &self.head, &rewrite, &mut self.out).is_ok();
        self.lower_case_head();
        written
    }

    /// Lower-cases the names of the head just written into `out`, on a
    /// `header_case: lowercase` listener.
    fn lower_case_head(&mut self) {
        if self.engine.lowercase {
            lowercase_names(&mut self.out);
        }
    }

    /// Forwards the request whose head is `head_bytes` and relays the
    /// response.
    async fn forward(
        &mut self,
        head_bytes: &Bytes,
        mut asked: Asked,
        mut pending: Option<Box<Pending>>,
    ) -> Next {
        let body = asked.framing.body;
        let time_now = |forwarded: Instant| HandleTime {
            began: asked.began,
            forwarded,
            answered: Instant::now(),
        };
        let trace = pending.as_ref().and_then(|pending| pending.trace_context);
        if !self.write_upstream_head(head_bytes, body, trace) {
            let failure = Failure::new(
                UpstreamError::Protocol,
                "request target cannot be forwarded",
            );
            let close = body != BodyLength::Empty;
            return self
                .fail(pending, &failure, &asked, time_now(Instant::now()), close)
                .await;
        }
        let forwarded = Instant::now();
        // The request's way upstream and the response head, within the
        // listener's `timeout`.
        self.timer
            .set(forwarded + self.engine.forwarder.listener().timeout);
        let mut request_tap = pending.as_mut().map(|pending| &mut pending.request_tap);
        let trailers = if body == BodyLength::Chunked {
            Trailers::declared(head_bytes, &self.head.lines)
        } else {
            Trailers::none()
        };
        let pump = Pump {
            length: body,
            chunked_out: body == BodyLength::Chunked,
            trailers: &trailers,
            read_timeout: Some(BODY_READ_TIMEOUT),
        };
        // At most twice: a reused connection found closed when the
        // request is written is replaced once (bodiless requests only).
        let mut retry = body == BodyLength::Empty;
        let (mut upstream, pumped) = loop {
            let (mut upstream, reused) = match self.reusable_upstream() {
                Some(kept) => (kept, true),
                None => match UpstreamConn::connect(&self.engine.connector).await {
                    Ok(new) => (new, false),
                    Err(failure) => {
                        return self
                            .fail(
                                pending,
                                &failure,
                                &asked,
                                time_now(forwarded),
                                body != BodyLength::Empty,
                            )
                            .await
                    }
                },
            };
            let sent = before(
                &mut self.timer,
                pump.run(
                    &mut self.io,
                    &mut self.buf,
                    &mut upstream.io,
                    &mut self.out,
                    &mut request_tap,
                    Some(&mut upstream.buf),
                ),
            )
            .await;
            let failure = match sent {
                Some(Ok(pumped)) => break (upstream, pumped),
                Some(Err(PumpError::Write(_))) if reused && retry => {
                    retry = false;
                    self.write_upstream_head(head_bytes, body, trace);
                    continue;
                }
                Some(Err(PumpError::Write(error))) => Failure::new(classify(&error), error),
                // Every other pump error is the client's body's.
                Some(Err(error)) => {
                    tracing::debug!(peer = %self.peer, %error, "request body failed");
                    request_tap.end(false);
                    let head_request = asked.framing.method == MethodKind::Head;
                    return self
                        .refuse(Rejection::Body, asked.version, head_request)
                        .await;
                }
                None => no_head_in_time(),
            };
            return self
                .fail(pending, &failure, &asked, time_now(forwarded), true)
                .await;
        };
        // An upstream that answered before the request body ended gets no
        // more of it: the response is relayed, then both connections end
        // (the client's next request cannot be found).
        asked.body_whole = pumped == Pumped::Whole;
        request_tap.end(asked.body_whole);

        let answer = self.response_head(&mut upstream, &asked).await;
        let answered = Instant::now();
        if let Some(pending) = &mut pending {
            pending.upstream_duration = answered.saturating_duration_since(asked.began);
        }
        let time = HandleTime {
            began: asked.began,
            forwarded,
            answered,
        };
        let (response_bytes, framing) = match answer {
            Ok(got) => got,
            Err(failure) => return self.fail(pending, &failure, &asked, time, false).await,
        };
        self.respond(upstream, &response_bytes, framing, &asked, pending, time)
            .await
    }

    /// Reads the final response head (or a 101) from `upstream`, relaying
    /// 1xx other than 100 to an HTTP/1.1 client while it is there (a
    /// client gone meanwhile still gets its request's final response
    /// counted and recorded: `respond` finds it gone); all before the
    /// connection's timer (armed by `forward`) fires, else a timeout. The
    /// head's bytes are split off the upstream buffer.
    async fn response_head(
        &mut self,
        upstream: &mut UpstreamConn,
        asked: &Asked,
    ) -> Result<(Bytes, ResponseFraming), Failure> {
        let mut client_gone = false;
        loop {
            let len = loop {
                if !upstream.buf.is_empty() {
                    match self.response.parse(&upstream.buf) {
                        Ok(Parsed::Complete(len)) => break len,
                        Ok(Parsed::Partial) => {}
                        Err(error) => return Err(Failure::new(UpstreamError::Protocol, error)),
                    }
                }
                upstream.buf.reserve(READ_CHUNK);
                match before(&mut self.timer, upstream.io.read_buf(&mut upstream.buf)).await {
                    Some(Ok(0)) => {
                        return Err(Failure::new(
                            UpstreamError::Reset,
                            "upstream closed before the response head",
                        ))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(Failure::new(classify(&error), error)),
                    None => return Err(no_head_in_time()),
                }
            };
            let bytes = upstream.buf.split_to(len).freeze();
            let framing = framing::response(&bytes, &self.response, asked.framing.method)
                .map_err(|error| Failure::new(UpstreamError::Protocol, error))?;
            match framing {
                ResponseFraming::Final { .. } | ResponseFraming::Switch => {
                    return Ok((bytes, framing))
                }
                ResponseFraming::Interim
                    if self.response.status == 100
                        || asked.version != Version::Http11
                        || client_gone => {}
                ResponseFraming::Interim => client_gone = !self.relay_head(&bytes, asked).await,
            }
        }
    }

    /// Writes the response head in `bytes` (parsed into `self.response`)
    /// to the client as it came, minus hop-by-hop fields; false when the
    /// client is gone.
    async fn relay_head(&mut self, bytes: &[u8], asked: &Asked) -> bool {
        self.out.clear();
        let rewrite = ResponseRewrite::bare(asked.version);
        write_response(bytes, &self.response, &rewrite, &mut self.out);
        self.lower_case_head();
        // Within the exchange's deadline (a client not reading counts as
        // gone).
        let written = before(&mut self.timer, self.io.write_all(&self.out)).await;
        matches!(written, Some(Ok(())))
    }

    /// Streams the response whose head is `bytes` to the client.
    async fn respond(
        &mut self,
        mut upstream: Box<UpstreamConn>,
        bytes: &Bytes,
        framing: ResponseFraming,
        asked: &Asked,
        pending: Option<Box<Pending>>,
        time: HandleTime,
    ) -> Next {
        let status = StatusCode::from_u16(self.response.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut observer = pending.map(|pending| {
            let outcome = Outcome::Response {
                status,
                headers: self.response.lines.headers(bytes),
            };
            // Boxed, as the exchange it finishes (see `pending`), which
            // stays in its own box (not moved out into this one).
            Box::new(ResponseObserver::new(
                self.engine.forwarder.listener().tap_limit,
                pending,
                outcome,
                None,
            ))
        });
        self.engine
            .forwarder
            .metrics()
            .answered(status, &time, Instant::now());
        let ResponseFraming::Final {
            body,
            keep_alive: upstream_keep_alive,
        } = framing
        else {
            // A 101: upgrades are not proxied. Its head goes on without
            // its hop-by-hop fields (counted and recorded as any
            // response), then both connections end.
            let written = self.relay_head(bytes, asked).await;
            observer.end(written);
            return Next::Close;
        };
        let response = &self.response;
        let http11 = asked.version == Version::Http11;
        let delimited_by_close = matches!(body, BodyLength::Chunked | BodyLength::UntilClose);
        let chunked_out = delimited_by_close && http11;
        // HTTP/1.0 clients are always closed after the response (their
        // `keep-alive` is not honoured), which also ends a body delimited
        // by the close.
        let close =
            !asked.framing.keep_alive || !http11 || !asked.body_whole || self.shutdown.came();
        let rewrite = ResponseRewrite {
            version: asked.version,
            chunked: chunked_out,
            drop_content_length: response.fields.transfer_encoding_lines > 0
                || matches!(response.status, 204 | 304),
            connection: (close && http11).then_some(&b"close"[..]),
        };
        self.out.clear();
        write_response(bytes, response, &rewrite, &mut self.out);
        self.lower_case_head();
        let trailers = if chunked_out && asked.te_trailers {
            Trailers::declared(bytes, &self.response.lines)
        } else {
            Trailers::none()
        };
        // An upstream that stalls mid-body must not hold the client
        // connection: each read of its body must bring bytes within the
        // listener's `timeout` (as its response head must).
        let pump = Pump {
            length: body,
            chunked_out,
            trailers: &trailers,
            read_timeout: Some(self.engine.forwarder.listener().timeout),
        };
        let relayed = pump
            .run(
                &mut upstream.io,
                &mut upstream.buf,
                &mut self.io,
                &mut self.out,
                &mut observer,
                None,
            )
            .await;
        match relayed {
            Ok(_) => {
                observer.end(true);
                let reusable = upstream_keep_alive
                    && asked.body_whole
                    && body != BodyLength::UntilClose
                    && upstream.buf.is_empty();
                if reusable {
                    self.upstream = Some(upstream);
                }
                if close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "response body failed");
                observer.end(false);
                if matches!(error, PumpError::TimedOut) {
                    // Its head (and status) already went: too late for a
                    // 504, the close tells the client; counted as one.
                    self.engine
                        .forwarder
                        .metrics()
                        .upstream_error(UpstreamError::Timeout);
                }
                if error.of_reader() {
                    // Flush what was relayed; the close tells the client
                    // the body was cut short.
                    let _ = flush(&mut self.io, &mut self.out).await;
                }
                Next::Close
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_later_deadline_is_kept_without_rearming_and_still_waited_for() {
        let start = Instant::now();
        let mut timer = Timer::new(start + Duration::from_millis(20));
        timer.set(start + Duration::from_millis(120));
        // The entry stays armed for the earlier instant...
        assert_eq!(timer.sleep.deadline(), start + Duration::from_millis(20));
        timer.expired().await;
        // ...and firing then does not end the wait before its deadline.
        assert!(Instant::now() >= start + Duration::from_millis(120));
        assert_eq!(timer.sleep.deadline(), start + Duration::from_millis(120));
    }

    #[tokio::test]
    async fn an_earlier_deadline_rearms_the_timer() {
        let mut timer = Timer::new(Instant::now() + Duration::from_secs(3600));
        let deadline = Instant::now() + Duration::from_millis(10);
        timer.set(deadline);
        assert_eq!(timer.sleep.deadline(), deadline);
        let waited = tokio::time::timeout(Duration::from_secs(60), timer.expired()).await;
        assert!(waited.is_ok(), "the hour-long entry was not re-armed");
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn before_gives_the_output_or_none_at_the_deadline() {
        let mut timer = Timer::new(Instant::now() + Duration::from_secs(3600));
        assert_eq!(before(&mut timer, async { 7 }).await, Some(7));
        timer.set(Instant::now() + Duration::from_millis(10));
        let never = std::future::pending::<()>();
        assert_eq!(before(&mut timer, never).await, None);
    }
}

//! Upstream failures: sorting an error from the upstream client into the
//! bounded [`UpstreamError`] set, and the one place that turns such a
//! failure into the response the client gets.
//!
//! | error | status | cause |
//! |---|---|---|
//! | `connect_refused` | 502 | TCP connect failed (refused, unreachable, name not resolved) |
//! | `connect_timeout` | 502 | TCP + TLS connect took longer than `connect_timeout` |
//! | `timeout` | 504 | no response head within `timeout`; on the native engine also a response body that stalls longer than `timeout` between reads (no 504 then: the status went out with the head, the client connection closes after what was relayed) |
//! | `reset` | 502 | the connection closed or reset before the response head |
//! | `tls` | 502 | TLS handshake or certificate failure |
//! | `protocol` | 502 | anything else: a malformed response, a transfer coding other than `chunked`, an unusable request |
//!
//! The body is one short plain-text line naming the failure; it says
//! `waybill` so nobody mistakes it for the upstream's own answer.
//!
//! Not an upstream failure, though the upstream client reports it: the
//! client's own request body failing while it streams (a malformed chunk,
//! see [`Failure::is_client_body`]). That is the client's fault; the
//! forwarder refuses it (400, `reject.rs`) and counts nothing against the
//! upstream.

use std::error::Error as StdError;
use std::io;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode, Version};

use super::body::ProxyBody;
use super::UpstreamError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// An upstream failure: its kind and, for the log, its cause.
pub(crate) struct Failure {
    pub(crate) kind: UpstreamError,
    pub(crate) cause: BoxError,
}

impl Failure {
    pub(crate) fn new(kind: UpstreamError, cause: impl Into<BoxError>) -> Self {
        Failure {
            kind,
            cause: cause.into(),
        }
    }

    /// The request body the proxy was sending, which is the client's, failed:
    /// the upstream client reports a user body error (hyper's
    /// `User(Body)`) whose cause is the error of the client connection's
    /// body (a `hyper::Error`); the upstream is not to blame.
    pub(crate) fn is_client_body(&self) -> bool {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(&*self.cause);
        while let Some(current) = cause {
            if let Some(error) = current.downcast_ref::<hyper::Error>() {
                return error.is_user()
                    && error
                        .source()
                        .is_some_and(|source| source.is::<hyper::Error>());
            }
            cause = current.source();
        }
        false
    }
}

/// The connector gave up after the listener's `connect_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("connect to upstream timed out")]
pub(crate) struct ConnectTimedOut;

/// Sorts an error from the upstream client (and its causes) into a kind.
pub(crate) fn classify(error: &(dyn StdError + 'static)) -> UpstreamError {
    let connecting = error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|error| error.is_connect());
    classify_as(error, connecting)
}

/// Sorts an error met while opening an upstream connection into a kind.
pub(crate) fn classify_connecting(error: &(dyn StdError + 'static)) -> UpstreamError {
    classify_as(error, true)
}

fn classify_as(error: &(dyn StdError + 'static), connecting: bool) -> UpstreamError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(kind) = classify_one(current, connecting) {
            return kind;
        }
        cause = current.source();
    }
    if connecting {
        UpstreamError::ConnectRefused
    } else {
        UpstreamError::Protocol
    }
}

fn classify_one(error: &(dyn StdError + 'static), connecting: bool) -> Option<UpstreamError> {
    if error.is::<ConnectTimedOut>() {
        return Some(UpstreamError::ConnectTimeout);
    }
    if error.is::<rustls::Error>() {
        return Some(UpstreamError::Tls);
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        // `io::Error::source` skips the wrapped error itself (often another
        // `io::Error` around a `rustls::Error`); look inside first.
        let wrapped = error
            .get_ref()
            .map(|inner| inner as &(dyn StdError + 'static));
        if let Some(kind) = wrapped.and_then(|inner| classify_one(inner, connecting)) {
            return Some(kind);
        }
        return Some(match error.kind() {
            io::ErrorKind::ConnectionRefused => UpstreamError::ConnectRefused,
            io::ErrorKind::TimedOut if connecting => UpstreamError::ConnectTimeout,
            io::ErrorKind::TimedOut => UpstreamError::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => UpstreamError::Reset,
            _ if connecting => UpstreamError::ConnectRefused,
            _ => UpstreamError::Reset,
        });
    }
    if let Some(error) = error.downcast_ref::<hyper::Error>() {
        if error.is_timeout() {
            return Some(UpstreamError::Timeout);
        }
        if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
            return Some(UpstreamError::Reset);
        }
        if error.is_parse() || error.is_parse_status() {
            return Some(UpstreamError::Protocol);
        }
        return None;
    }
    if let Some(error) = error.downcast_ref::<h2::Error>() {
        if error.is_io() || error.is_go_away() || error.is_reset() {
            return Some(UpstreamError::Reset);
        }
        return Some(UpstreamError::Protocol);
    }
    None
}

/// The status the client gets when the upstream failed with `error`.
pub(crate) fn failure_status(error: UpstreamError) -> StatusCode {
    match error {
        UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::ConnectRefused
        | UpstreamError::ConnectTimeout
        | UpstreamError::Reset
        | UpstreamError::Tls
        | UpstreamError::Protocol => StatusCode::BAD_GATEWAY,
    }
}

fn failure_message(error: UpstreamError) -> &'static str {
    match error {
        UpstreamError::ConnectRefused => "waybill: could not connect to the upstream\n",
        UpstreamError::ConnectTimeout => "waybill: connecting to the upstream timed out\n",
        UpstreamError::Timeout => "waybill: the upstream did not answer in time\n",
        UpstreamError::Reset => "waybill: the upstream closed the connection\n",
        UpstreamError::Tls => "waybill: TLS with the upstream failed\n",
        UpstreamError::Protocol => "waybill: the upstream exchange failed\n",
    }
}

/// The response for a client whose request the upstream failed with
/// `error`, in the client's HTTP `version`.
pub(crate) fn failure_response(error: UpstreamError, version: Version) -> Response<ProxyBody> {
    plain_response(failure_status(error), failure_message(error), version)
}

/// A response of the sidecar's own: `status` with the one-line plain-text
/// `message`, in the client's HTTP `version`.
pub(crate) fn plain_response(
    status: StatusCode,
    message: &'static str,
    version: Version,
) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::message(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    *response.version_mut() = version;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connections_and_timeouts_are_told_apart() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), UpstreamError::ConnectRefused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), UpstreamError::Reset);
        assert_eq!(classify(&ConnectTimedOut), UpstreamError::ConnectTimeout);
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(classify(&tls), UpstreamError::Tls);
        let nested = io::Error::other(tls);
        assert_eq!(classify(&nested), UpstreamError::Tls);
    }

    #[test]
    fn an_error_while_opening_a_connection_is_a_connect_failure() {
        let other = io::Error::other("no route");
        assert_eq!(classify(&other), UpstreamError::Reset);
        assert_eq!(classify_connecting(&other), UpstreamError::ConnectRefused);
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            classify_connecting(&timed_out),
            UpstreamError::ConnectTimeout
        );
        assert_eq!(
            classify_connecting(&ConnectTimedOut),
            UpstreamError::ConnectTimeout
        );
    }

    #[test]
    fn an_upstream_io_failure_is_not_the_clients_body() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let failure = Failure::new(classify(&reset), reset);
        assert!(!failure.is_client_body());
        let nested = Failure::new(UpstreamError::Protocol, io::Error::other(ConnectTimedOut));
        assert!(!nested.is_client_body());
    }

    #[test]
    fn only_a_response_timeout_is_a_gateway_timeout() {
        assert_eq!(
            failure_status(UpstreamError::Timeout),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            failure_status(UpstreamError::ConnectTimeout),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            failure_status(UpstreamError::ConnectRefused),
            StatusCode::BAD_GATEWAY
        );
    }
}

//! Message body length (RFC 9112 §6.1–6.3) and connection persistence
//! (§9.3) of a parsed head, with the request-smuggling defences: every
//! ambiguous or unsupported framing is refused with its own error, never
//! guessed at.

use thiserror::Error;

use super::head::{tokens, trim, Fields, Lines, Name, RequestHead, ResponseHead, Version};

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body at all (also `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes (more than zero).
    Length(u64),
    /// `Transfer-Encoding: chunked`: see [`chunked`](super::chunked).
    Chunked,
    /// A response without length: until the upstream closes.
    UntilClose,
}

impl BodyLength {
    fn of_length(length: u64) -> BodyLength {
        if length == 0 {
            BodyLength::Empty
        } else {
            BodyLength::Length(length)
        }
    }
}

/// The method classes framing depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MethodKind {
    #[default]
    Other,
    Head,
    Connect,
}

impl MethodKind {
    pub fn of(method: &[u8]) -> MethodKind {
        // Methods are case-sensitive (RFC 9110 §9.1).
        match method {
            b"HEAD" => MethodKind::Head,
            b"CONNECT" => MethodKind::Connect,
            _ => MethodKind::Other,
        }
    }
}

/// A request's framing and what its connection asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: BodyLength,
    pub method: MethodKind,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `CONNECT`, or an HTTP/1.1 request with `Upgrade`: the engine
    /// refuses both (the proxy forwards no tunnels or upgrades).
    pub wants_upgrade: bool,
}

/// A response's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// A 1xx other than 101: the final response follows on the same
    /// connection.
    Interim,
    /// 101, or a 2xx to `CONNECT`: the connection stops being HTTP.
    Switch,
    /// A final response.
    Final { body: BodyLength, keep_alive: bool },
}

/// A framing fault: the request is answered 400 (501 where
/// [`FramingError::not_implemented`]), a response becomes a 502; either
/// way the connection is closed, as its next message cannot be found.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("Content-Length is not a decimal number of at most 20 digits that fits 64 bits")]
    InvalidContentLength,
    #[error("several Content-Length values that differ")]
    ConflictingContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    #[error("Transfer-Encoding whose final coding is not chunked")]
    NotChunkedLast,
    #[error("Transfer-Encoding with an empty coding")]
    EmptyCoding,
    #[error("Transfer-Encoding with a coding other than chunked")]
    UnsupportedCoding,
}

impl FramingError {
    /// A request with a transfer coding the proxy does not forward:
    /// 501 (RFC 9112 §6.1) rather than 400.
    pub fn not_implemented(self) -> bool {
        self == FramingError::UnsupportedCoding
    }
}

/// `1*DIGIT` as a u64 (RFC 9110 §8.6): no sign, no spaces, no list.
pub fn parse_content_length(value: &[u8]) -> Result<u64, FramingError> {
    if value.is_empty() {
        return Err(FramingError::InvalidContentLength);
    }
    value.iter().try_fold(0u64, |length, &b| {
        if !b.is_ascii_digit() {
            return Err(FramingError::InvalidContentLength);
        }
        length
            .checked_mul(10)
            .and_then(|length| length.checked_add(u64::from(b - b'0')))
            .ok_or(FramingError::InvalidContentLength)
    })
}

/// The `Transfer-Encoding` lines, all together one list: the last coding
/// must be `chunked` (any case); before it only `chunked` again or
/// `identity` (no-ops to a reader of one chunked coding, as hyper reads
/// them); any other coding is [`FramingError::UnsupportedCoding`]: the
/// proxy removes the header before forwarding, so it could only forward a
/// body coded another way by decoding it, which it does not.
fn transfer_coding(buf: &[u8], lines: &Lines) -> Result<(), FramingError> {
    let mut last_chunked = false;
    let mut unsupported = false;
    for line in lines.of(Name::TransferEncoding) {
        for coding in tokens(line.value.of(buf)) {
            if coding.is_empty() {
                return Err(FramingError::EmptyCoding);
            }
            if last_chunked && !coding.eq_ignore_ascii_case(b"chunked") {
                // `chunked` must come last.
                return Err(FramingError::NotChunkedLast);
            }
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            unsupported |= !last_chunked && !coding.eq_ignore_ascii_case(b"identity");
        }
    }
    match (last_chunked, unsupported) {
        (true, false) => Ok(()),
        (true, true) => Err(FramingError::UnsupportedCoding),
        (false, _) => Err(FramingError::NotChunkedLast),
    }
}

/// Persistence by version and `Connection` tokens (RFC 9112 §9.3): a
/// `close` anywhere wins; HTTP/1.0 needs `keep-alive`.
fn keep_alive(version: Version, fields: &Fields) -> bool {
    !fields.connection.close && (version == Version::Http11 || fields.connection.keep_alive)
}

/// The body length and persistence of a request (RFC 9112 §6.3 items 3–6).
pub fn request(buf: &[u8], head: &RequestHead) -> Result<RequestFraming, FramingError> {
    let fields = &head.fields;
    let body = if fields.transfer_encoding_lines > 0 {
        if head.version == Version::Http10 {
            return Err(FramingError::TransferEncodingInHttp10);
        }
        transfer_coding(buf, &head.lines)?;
        BodyLength::Chunked
    } else if let (1, Some(value)) = (fields.content_length_lines, fields.content_length) {
        // The usual lone line, where the parser saw it.
        BodyLength::of_length(parse_content_length(value.of(buf))?)
    } else if fields.content_length_lines > 0 {
        let mut lines = head.lines.of(Name::ContentLength);
        let first = lines
            .next()
            .map_or(Ok(0), |line| parse_content_length(line.value.of(buf)))?;
        // Identical repeats are one length (RFC 9110 §8.6, as hyper); the
        // head written upstream keeps the first line only.
        for other in lines {
            if parse_content_length(other.value.of(buf))? != first {
                return Err(FramingError::ConflictingContentLength);
            }
        }
        BodyLength::of_length(first)
    } else {
        BodyLength::Empty
    };
    let method = MethodKind::of(head.method(buf));
    // With both framings the chunked coding wins (RFC 9112 §6.3 item 3):
    // the body goes on chunked and the connection closes after the
    // response (§6.1), as hyper does.
    let both = fields.transfer_encoding_lines > 0 && fields.content_length_lines > 0;
    Ok(RequestFraming {
        body,
        method,
        keep_alive: keep_alive(head.version, fields) && !both,
        expect_continue: fields.expect_continue,
        wants_upgrade: method == MethodKind::Connect
            || (head.version == Version::Http11 && fields.upgrade.is_some()),
    })
}

/// The body length and persistence of a response to a request of
/// `method` (RFC 9112 §6.3 items 1–7).
pub fn response(
    buf: &[u8],
    head: &ResponseHead,
    method: MethodKind,
) -> Result<ResponseFraming, FramingError> {
    let fields = &head.fields;
    let keep_alive = keep_alive(head.version, fields);
    let bodiless = |keep_alive| {
        Ok(ResponseFraming::Final {
            body: BodyLength::Empty,
            keep_alive,
        })
    };
    match head.status {
        101 => return Ok(ResponseFraming::Switch),
        100..=199 => return Ok(ResponseFraming::Interim),
        204 | 304 => return bodiless(keep_alive),
        200..=299 if method == MethodKind::Connect => return Ok(ResponseFraming::Switch),
        _ if method == MethodKind::Head => return bodiless(keep_alive),
        _ => {}
    }
    if fields.transfer_encoding_lines > 0 {
        if head.version == Version::Http10 {
            return Err(FramingError::TransferEncodingInHttp10);
        }
        transfer_coding(buf, &head.lines)?;
        // With a Content-Length beside it the chunked coding wins (RFC 9112
        // §6.3 item 3), and the connection is not reused.
        return Ok(ResponseFraming::Final {
            body: BodyLength::Chunked,
            keep_alive: keep_alive && fields.content_length_lines == 0,
        });
    }
    if fields.content_length_lines == 0 {
        return Ok(ResponseFraming::Final {
            body: BodyLength::UntilClose,
            keep_alive: false,
        });
    }
    // The usual lone line of one number, where the parser saw it.
    if let (1, Some(value)) = (fields.content_length_lines, fields.content_length) {
        let value = value.of(buf);
        if !value.contains(&b',') {
            return Ok(ResponseFraming::Final {
                body: BodyLength::of_length(parse_content_length(trim(value))?),
                keep_alive,
            });
        }
    }
    // As hyper's client: every value of every line (comma lists allowed),
    // identical repeats accepted (RFC 9110 §8.6), differing ones refused.
    let mut length = None;
    for line in head.lines.of(Name::ContentLength) {
        for value in tokens(line.value.of(buf)) {
            let value = parse_content_length(value)?;
            if length.is_some_and(|length| length != value) {
                return Err(FramingError::ConflictingContentLength);
            }
            length = Some(value);
        }
    }
    Ok(ResponseFraming::Final {
        body: BodyLength::of_length(length.unwrap_or_default()),
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::head::Parsed;

    fn request_framing(text: &str) -> Result<RequestFraming, FramingError> {
        let mut head = RequestHead::default();
        assert!(
            matches!(head.parse(text.as_bytes()), Ok(Parsed::Complete(_))),
            "{text}"
        );
        request(text.as_bytes(), &head)
    }

    fn request_body(text: &str) -> Result<BodyLength, FramingError> {
        request_framing(text).map(|framing| framing.body)
    }

    fn response_framing(text: &str, method: MethodKind) -> Result<ResponseFraming, FramingError> {
        let mut head = ResponseHead::default();
        assert!(
            matches!(head.parse(text.as_bytes()), Ok(Parsed::Complete(_))),
            "{text}"
        );
        response(text.as_bytes(), &head, method)
    }

    #[test]
    fn request_bodies_are_delimited_by_length_chunked_or_nothing() {
        use BodyLength::*;
        assert_eq!(request_body("GET / HTTP/1.1\r\n\r\n"), Ok(Empty));
        assert_eq!(
            request_body("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(Empty)
        );
        assert_eq!(
            request_body("POST / HTTP/1.1\r\ncontent-length: 0042\r\n\r\n"),
            Ok(Length(42))
        );
        assert_eq!(
            request_body("POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n"),
            Ok(Chunked)
        );
        assert_eq!(
            request_body("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Ok(Length(u64::MAX))
        );
    }

    #[test]
    fn transfer_encoding_with_content_length_in_a_request_is_chunked_then_closed() {
        for text in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let framing = request_framing(text).expect("chunked wins");
            assert_eq!(framing.body, BodyLength::Chunked);
            assert!(!framing.keep_alive);
        }
    }

    #[test]
    fn conflicting_content_lengths_in_a_request_are_refused_identical_ones_are_one() {
        assert_eq!(
            request_body("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(FramingError::ConflictingContentLength)
        );
        assert_eq!(
            request_body("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
            Ok(BodyLength::Length(5))
        );
    }

    #[test]
    fn content_length_must_be_digits_that_fit_64_bits() {
        for value in [
            "",
            "-1",
            "+5",
            "5 5",
            "5,5",
            "0x10",
            "1e3",
            "18446744073709551616",
            "５",
        ] {
            let text = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                request_body(&text),
                Err(FramingError::InvalidContentLength),
                "{value:?}"
            );
        }
    }

    #[test]
    fn request_transfer_codings_must_be_exactly_chunked() {
        let cases = [
            ("gzip", FramingError::NotChunkedLast),
            ("chunked, gzip", FramingError::NotChunkedLast),
            ("chunked,", FramingError::EmptyCoding),
            (", chunked", FramingError::EmptyCoding),
            ("gzip, chunked", FramingError::UnsupportedCoding),
            ("x-custom, chunked", FramingError::UnsupportedCoding),
            ("chunked;q=1", FramingError::NotChunkedLast),
            ("\"chunked\"", FramingError::NotChunkedLast),
        ];
        for (value, fault) in cases {
            let text = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(request_body(&text), Err(fault), "{value:?}");
        }
        // Two lines are one list; `chunked` again or `identity` before the
        // last `chunked` are read as one chunked coding (as hyper does).
        for value in [
            "chunked\r\nTransfer-Encoding: chunked",
            "chunked, chunked",
            "identity, chunked",
        ] {
            let text = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(request_body(&text), Ok(BodyLength::Chunked), "{value:?}");
        }
        assert_eq!(
            request_body(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(FramingError::UnsupportedCoding)
        );
        assert!(FramingError::UnsupportedCoding.not_implemented());
    }

    #[test]
    fn transfer_encoding_in_http_1_0_is_refused() {
        assert_eq!(
            request_body("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(FramingError::TransferEncodingInHttp10)
        );
        assert_eq!(
            response_framing(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                MethodKind::Other
            ),
            Err(FramingError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn persistence_follows_version_and_connection_tokens() {
        let keep = |text: &str| request_framing(text).map(|f| f.keep_alive);
        assert_eq!(keep("GET / HTTP/1.1\r\n\r\n"), Ok(true));
        assert_eq!(
            keep("GET / HTTP/1.1\r\nConnection: x, CLOSE\r\n\r\n"),
            Ok(false)
        );
        assert_eq!(
            keep("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n"),
            Ok(false)
        );
        assert_eq!(keep("GET / HTTP/1.0\r\n\r\n"), Ok(false));
        assert_eq!(
            keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Ok(true)
        );
    }

    #[test]
    fn upgrades_connect_and_expectations_are_reported() {
        let framing = request_framing("CONNECT a:443 HTTP/1.1\r\n\r\n").expect("valid");
        assert!(framing.wants_upgrade && framing.method == MethodKind::Connect);
        let framing =
            request_framing("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").expect("valid");
        assert!(framing.wants_upgrade);
        let framing =
            request_framing("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").expect("valid");
        assert!(!framing.wants_upgrade);
        let framing =
            request_framing("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect("valid");
        assert!(framing.expect_continue);
    }

    #[test]
    fn responses_without_a_body_by_status_or_method() {
        let empty = |keep_alive| {
            Ok(ResponseFraming::Final {
                body: BodyLength::Empty,
                keep_alive,
            })
        };
        let with_length = "Content-Length: 10\r\n\r\n";
        for (status, method, expected) in [
            ("204 No Content", MethodKind::Other, empty(true)),
            ("304 Not Modified", MethodKind::Other, empty(true)),
            ("200 OK", MethodKind::Head, empty(true)),
            (
                "100 Continue",
                MethodKind::Other,
                Ok(ResponseFraming::Interim),
            ),
            (
                "103 Early Hints",
                MethodKind::Other,
                Ok(ResponseFraming::Interim),
            ),
            (
                "101 Switching Protocols",
                MethodKind::Other,
                Ok(ResponseFraming::Switch),
            ),
            ("200 OK", MethodKind::Connect, Ok(ResponseFraming::Switch)),
            (
                "407 Proxy Authentication Required",
                MethodKind::Connect,
                Ok(ResponseFraming::Final {
                    body: BodyLength::Length(10),
                    keep_alive: true,
                }),
            ),
        ] {
            let text = format!("HTTP/1.1 {status}\r\n{with_length}");
            assert_eq!(
                response_framing(&text, method),
                expected,
                "{status} to {method:?}"
            );
        }
    }

    #[test]
    fn response_lengths_and_close_delimited_bodies() {
        let framing = |text: &str| response_framing(text, MethodKind::Other);
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n"),
            Ok(ResponseFraming::Final {
                body: BodyLength::Length(7),
                keep_alive: true
            })
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7, 8\r\n\r\n"),
            Err(FramingError::ConflictingContentLength)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7,\r\n\r\n"),
            Err(FramingError::InvalidContentLength)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n"),
            Ok(ResponseFraming::Final {
                body: BodyLength::UntilClose,
                keep_alive: false
            })
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            Ok(ResponseFraming::Final {
                body: BodyLength::Chunked,
                keep_alive: false
            })
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(FramingError::NotChunkedLast)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"),
            Ok(ResponseFraming::Final {
                body: BodyLength::Length(2),
                keep_alive: false
            })
        );
    }
}

//! Request and response heads parsed with `httparse` into byte ranges of
//! the caller's buffer: nothing is copied or allocated, and every header
//! line keeps its spelling, case and place. The few headers the proxy acts
//! on are recognised once, while parsing ([`Name`]), and read typed from
//! the head ([`RequestHead::fields`]).

use std::mem::MaybeUninit;

use thiserror::Error;

use crate::proxy::headers::ALWAYS_HOP_BY_HOP_NAMES;

/// At most this many header lines in a head (hyper's default, 100); more is
/// [`HeadError::TooManyHeaders`] (431 for a request).
pub const MAX_HEADERS: usize = 100;

/// At most this many bytes in a head, from the request or status line to
/// the empty line included; more is [`HeadError::TooLarge`] (431 for a
/// request). 256 KiB: a header section of 100 KiB passes, as it does
/// through hyper (whose read buffer limit is ~400 KiB); a request line
/// longer than 64 KiB is refused apart (414, see the engine); and every
/// offset fits a `u32`.
pub const MAX_HEAD_LEN: usize = 256 * 1024;

/// A range of bytes in the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes of this span in `buf` (the buffer the head was parsed
    /// from); empty when `buf` is another, shorter one.
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The span of `part`, a subslice of `buf` (as httparse hands out).
    fn within(buf: &[u8], part: &[u8]) -> Span {
        // Addresses only, compared and subtracted: no unsafe code. A part
        // that is not inside `buf` (never, from httparse) becomes empty.
        let offset = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        if offset > buf.len() || part.len() > buf.len() - offset {
            return Span::default();
        }
        // The head is at most `MAX_HEAD_LEN` bytes: both fit a u32.
        let start = u32::try_from(offset).unwrap_or(u32::MAX);
        let end = u32::try_from(offset + part.len()).unwrap_or(u32::MAX);
        Span { start, end }
    }
}

/// The headers the proxy reads or rewrites, recognised by name (any case)
/// while parsing; every other header is [`Name::Other`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Name {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
    Connection,
    Host,
    Expect,
    Upgrade,
    Te,
    KeepAlive,
    ProxyConnection,
    Traceparent,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
}

/// Lower-case names of the recognised headers. The hop-by-hop ones come
/// from `headers.rs`, which the hyper path uses too: one list for both.
const KNOWN: [(&str, Name); 13] = [
    (ALWAYS_HOP_BY_HOP_NAMES[0], Name::Connection),
    (ALWAYS_HOP_BY_HOP_NAMES[1], Name::KeepAlive),
    (ALWAYS_HOP_BY_HOP_NAMES[2], Name::ProxyConnection),
    (ALWAYS_HOP_BY_HOP_NAMES[3], Name::TransferEncoding),
    (ALWAYS_HOP_BY_HOP_NAMES[4], Name::Upgrade),
    ("content-length", Name::ContentLength),
    ("host", Name::Host),
    ("expect", Name::Expect),
    ("te", Name::Te),
    ("traceparent", Name::Traceparent),
    ("x-forwarded-for", Name::XForwardedFor),
    ("x-forwarded-proto", Name::XForwardedProto),
    ("x-forwarded-host", Name::XForwardedHost),
];

/// Bit `n` is set when a recognised name is `n` bytes long: most other
/// names are told apart by their length alone.
const KNOWN_LENGTHS: u32 = {
    let mut lengths = 0u32;
    let mut i = 0;
    while i < KNOWN.len() {
        lengths |= 1 << KNOWN[i].0.len();
        i += 1;
    }
    lengths
};

impl Name {
    /// The recognised header `name` is, in any case.
    pub fn of(name: &[u8]) -> Name {
        if name.len() >= 32 || KNOWN_LENGTHS & (1 << name.len()) == 0 {
            return Name::Other;
        }
        KNOWN
            .iter()
            .find(|(known, _)| {
                known.len() == name.len() && known.as_bytes().eq_ignore_ascii_case(name)
            })
            .map_or(Name::Other, |&(_, kind)| kind)
    }

    /// Hop-by-hop whatever `Connection` says (`TE` is handled apart).
    pub fn always_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::TransferEncoding
                | Name::Upgrade
        )
    }
}

/// One header line: where its name and value are (the value without the
/// whitespace around it), and which recognised header it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub name: Span,
    pub value: Span,
    pub kind: Name,
}

/// The header lines of a head, in order: a fixed array, so parsing never
/// allocates.
#[derive(Clone, Debug)]
pub struct Lines {
    lines: [Line; MAX_HEADERS],
    len: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            lines: [Line::default(); MAX_HEADERS],
            len: 0,
        }
    }
}

impl Lines {
    pub fn as_slice(&self) -> &[Line] {
        self.lines.get(..self.len).unwrap_or_default()
    }

    /// The lines of one recognised header, in order.
    pub fn of(&self, kind: Name) -> impl Iterator<Item = &Line> {
        self.as_slice().iter().filter(move |line| line.kind == kind)
    }

    fn fill(&mut self, buf: &[u8], headers: &[httparse::Header<'_>]) -> Fields {
        let mut fields = Fields::default();
        self.len = 0;
        for (slot, header) in self.lines.iter_mut().zip(headers) {
            let name = header.name.as_bytes();
            let kind = Name::of(name);
            *slot = Line {
                name: Span::within(buf, name),
                value: Span::within(buf, header.value),
                kind,
            };
            fields.note(kind, slot.value, header.value);
            self.len += 1;
        }
        fields
    }
}

/// HTTP/1.0 or HTTP/1.1 (httparse accepts nothing else).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

impl Version {
    fn from_minor(minor: Option<u8>) -> Version {
        match minor {
            Some(0) => Version::Http10,
            _ => Version::Http11,
        }
    }

    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// The tokens of the `Connection` lines that matter to the connection
/// itself, and whether they name other headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// A token that is not an always hop-by-hop name (`close` included): a
    /// header of that name is removed before forwarding.
    pub names_others: bool,
}

/// What the proxy reads from a head, gathered while parsing. Framing
/// (`Content-Length`, `Transfer-Encoding`) is judged apart, in
/// [`framing`](super::framing), where each fault has its own error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The first `Host` value, and how many `Host` lines there were.
    pub host: Option<Span>,
    pub host_lines: u8,
    pub connection: ConnectionTokens,
    /// An `Expect` line whose whole value is `100-continue` (any case).
    pub expect_continue: bool,
    /// The first `Upgrade` value.
    pub upgrade: Option<Span>,
    /// Some `TE` line lists `trailers`; `te_lines` counts them.
    pub te_trailers: bool,
    pub te_lines: u8,
    pub keep_alive: bool,
    pub proxy_connection: bool,
    pub content_length_lines: u8,
    pub transfer_encoding_lines: u8,
    /// The first `traceparent` value.
    pub traceparent: Option<Span>,
    /// Some header is hop-by-hop (so forwarding has lines to drop).
    pub any_hop_by_hop: bool,
}

impl Fields {
    fn note(&mut self, kind: Name, span: Span, value: &[u8]) {
        let count = |n: &mut u8| *n = n.saturating_add(1);
        self.any_hop_by_hop |= kind.always_hop_by_hop() || kind == Name::Te;
        match kind {
            Name::Host => {
                self.host.get_or_insert(span);
                count(&mut self.host_lines);
            }
            Name::Connection => {
                for token in tokens(value) {
                    let connection = &mut self.connection;
                    if token.eq_ignore_ascii_case(b"close") {
                        connection.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        connection.keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        connection.upgrade = true;
                    }
                    // `close` too: a header of that name would be named.
                    connection.names_others |=
                        !token.is_empty() && !Name::of(token).always_hop_by_hop();
                }
            }
            Name::Expect => self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue"),
            Name::Upgrade => {
                self.upgrade.get_or_insert(span);
            }
            Name::Te => {
                count(&mut self.te_lines);
                self.te_trailers |= lists_trailers(value);
            }
            Name::KeepAlive => self.keep_alive = true,
            Name::ProxyConnection => self.proxy_connection = true,
            Name::ContentLength => count(&mut self.content_length_lines),
            Name::TransferEncoding => count(&mut self.transfer_encoding_lines),
            Name::Traceparent => {
                self.traceparent.get_or_insert(span);
            }
            Name::Other | Name::XForwardedFor | Name::XForwardedProto | Name::XForwardedHost => {}
        }
    }
}

/// The comma-separated elements of a list header value, trimmed of
/// spaces and tabs (empty elements included: callers decide).
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim)
}

/// Whether a `TE` value lists `trailers` (parameters after `;` ignored).
pub fn lists_trailers(te: &[u8]) -> bool {
    tokens(te).any(|token| {
        let coding = token.split(|&b| b == b';').next().unwrap_or_default();
        trim(coding).eq_ignore_ascii_case(b"trailers")
    })
}

pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Why a head cannot be read. The later engine answers a request's with
/// 431 ([`HeadError::TooLarge`], [`HeadError::TooManyHeaders`]) or 400
/// (the rest), and an upstream response's with 502.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("head longer than {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("invalid method token")]
    Method,
    #[error("invalid request target")]
    Target,
    #[error("invalid HTTP version (only HTTP/1.0 and HTTP/1.1)")]
    Version,
    #[error("invalid status code")]
    Status,
    #[error("invalid byte in a header name (or whitespace before its colon, or a folded line)")]
    HeaderName,
    #[error("invalid byte in a header value")]
    HeaderValue,
    #[error("invalid line ending")]
    NewLine,
}

impl HeadError {
    /// Whether the answer to a client is 431 rather than 400.
    pub fn too_large(self) -> bool {
        matches!(self, HeadError::TooLarge | HeadError::TooManyHeaders)
    }

    fn from_httparse(error: httparse::Error, token: HeadError) -> HeadError {
        match error {
            httparse::Error::HeaderName => HeadError::HeaderName,
            httparse::Error::HeaderValue => HeadError::HeaderValue,
            httparse::Error::NewLine => HeadError::NewLine,
            httparse::Error::Status => HeadError::Status,
            httparse::Error::Token => token,
            httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
            httparse::Error::Version => HeadError::Version,
        }
    }
}

/// How far a parse got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete: its length in bytes (the body starts there).
    Complete(usize),
    /// The buffer holds the start of a head: read more bytes and parse
    /// again from the start.
    Partial,
}

/// Scratch space httparse writes headers into: never read before httparse
/// has written it, so it needs no initialising.
fn scratch<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// httparse's answer within the limits: the head's length, `None` for a
/// partial head (one already longer than the limit will not get shorter),
/// or the fault (`token`: what an invalid token is).
fn head_len(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    token: HeadError,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_LEN => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_LEN => Ok(None),
        Ok(_) => Err(HeadError::TooLarge),
        Err(error) => Err(HeadError::from_httparse(error, token)),
    }
}

/// A request head: ranges into the buffer it was parsed from. Reuse one
/// per connection: parsing fills it in place.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: Span,
    pub target: Span,
    pub version: Version,
    pub lines: Lines,
    pub fields: Fields,
    /// The head's length, empty line included.
    pub len: usize,
}

impl RequestHead {
    /// Parses the request head at the start of `buf`.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, HeadError> {
        let mut headers = scratch();
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            buf,
            &mut headers,
        );
        let token = if request.method.is_none() {
            HeadError::Method
        } else {
            HeadError::Target
        };
        let Some(len) = head_len(parsed, buf, token)? else {
            return Ok(Parsed::Partial);
        };
        let (Some(method), Some(target)) = (request.method, request.path) else {
            return Err(HeadError::Method);
        };
        self.method = Span::within(buf, method.as_bytes());
        self.target = Span::within(buf, target.as_bytes());
        self.version = Version::from_minor(request.version);
        self.fields = self.lines.fill(buf, request.headers);
        self.len = len;
        Ok(Parsed::Complete(len))
    }

    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method.of(buf)
    }

    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.of(buf)
    }
}

/// A response head: ranges into the buffer it was parsed from.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase; empty when missing or not valid text (as hyper).
    pub reason: Span,
    pub version: Version,
    pub lines: Lines,
    pub fields: Fields,
    pub len: usize,
}

impl ResponseHead {
    /// Parses the response head at the start of `buf`.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, HeadError> {
        let mut headers = scratch();
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut headers,
        );
        let Some(len) = head_len(parsed, buf, HeadError::Status)? else {
            return Ok(Parsed::Partial);
        };
        let Some(status) = response.code.filter(|code| (100..=999).contains(code)) else {
            return Err(HeadError::Status);
        };
        self.status = status;
        self.reason = response
            .reason
            .filter(|reason| !reason.is_empty())
            .map_or_else(Span::default, |reason| Span::within(buf, reason.as_bytes()));
        self.version = Version::from_minor(response.version);
        self.fields = self.lines.fill(buf, response.headers);
        self.len = len;
        Ok(Parsed::Complete(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &[u8]) -> Result<(RequestHead, Parsed), HeadError> {
        let mut head = RequestHead::default();
        head.parse(text).map(|parsed| (head, parsed))
    }

    #[test]
    fn a_request_head_is_ranges_of_the_buffer_in_order_and_case() {
        let text = b"POST /api/orders?x=1 HTTP/1.1\r\nHost: erp.example\r\nContent-Type: application/json\r\nX-Custom:  spaced  \r\ncontent-length: 5\r\n\r\nhello";
        let (head, parsed) = request(text).expect("valid");
        assert_eq!(parsed, Parsed::Complete(text.len() - 5));
        assert_eq!(head.method(text), b"POST");
        assert_eq!(head.target(text), b"/api/orders?x=1");
        assert_eq!(head.version, Version::Http11);
        let lines: Vec<_> = head
            .lines
            .as_slice()
            .iter()
            .map(|line| (line.name.of(text), line.value.of(text), line.kind))
            .collect();
        assert_eq!(
            lines,
            [
                (&b"Host"[..], &b"erp.example"[..], Name::Host),
                (b"Content-Type", b"application/json", Name::Other),
                (b"X-Custom", b"spaced", Name::Other),
                (b"content-length", b"5", Name::ContentLength),
            ]
        );
        assert_eq!(
            head.fields.host.map(|s| s.of(text)),
            Some(&b"erp.example"[..])
        );
        assert!(!head.fields.any_hop_by_hop);
    }

    #[test]
    fn a_partial_head_asks_for_more_at_every_split() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
        for end in 0..text.len() {
            let (_, parsed) = request(&text[..end]).expect("a prefix is not an error");
            assert_eq!(parsed, Parsed::Partial, "prefix of {end} bytes");
        }
        assert_eq!(request(text).map(|r| r.1), Ok(Parsed::Complete(text.len())));
    }

    #[test]
    fn heads_over_the_limits_are_refused_as_too_large() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(request(&many).map(|r| r.1), Err(HeadError::TooManyHeaders));

        let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        long.resize(MAX_HEAD_LEN, b'a');
        assert_eq!(request(&long).map(|r| r.1), Ok(Parsed::Partial));
        long.push(b'a');
        assert_eq!(request(&long).map(|r| r.1), Err(HeadError::TooLarge));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(request(&long).map(|r| r.1), Err(HeadError::TooLarge));
        assert!(HeadError::TooLarge.too_large() && HeadError::TooManyHeaders.too_large());
    }

    #[test]
    fn malformed_heads_name_their_fault() {
        let cases: [(&[u8], HeadError); 8] = [
            (b"G(T / HTTP/1.1\r\n\r\n", HeadError::Method),
            (b"GET /a\x7fb HTTP/1.1\r\n\r\n", HeadError::Target),
            (b"GET / HTTP/2.0\r\n\r\n", HeadError::Version),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", HeadError::HeaderName),
            (
                b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
                HeadError::HeaderName,
            ),
            (b"GET / HTTP/1.1\r\nX\x01: a\r\n\r\n", HeadError::HeaderName),
            (
                b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
                HeadError::HeaderValue,
            ),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", HeadError::HeaderValue),
        ];
        for (text, fault) in cases {
            assert_eq!(
                request(text).map(|r| r.1),
                Err(fault),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn the_fields_the_proxy_reads_come_out_typed() {
        let text = b"PUT /x HTTP/1.1\r\nhost: a\r\nHOST: b\r\nConnection: Keep-Alive, X-Secret, Upgrade\r\nexpect: 100-Continue\r\nUpgrade: websocket\r\nTE: deflate, trailers;q=1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\ntraceparent: 00-aa-bb-01\r\n\r\n";
        let (head, _) = request(text).expect("valid");
        let f = head.fields;
        assert_eq!(f.host.map(|s| s.of(text)), Some(&b"a"[..]));
        assert_eq!(f.host_lines, 2);
        assert_eq!(
            f.connection,
            ConnectionTokens {
                close: false,
                keep_alive: true,
                upgrade: true,
                names_others: true
            }
        );
        assert!(f.expect_continue && f.te_trailers && f.keep_alive && f.proxy_connection);
        assert_eq!(f.upgrade.map(|s| s.of(text)), Some(&b"websocket"[..]));
        assert_eq!(f.traceparent.map(|s| s.of(text)), Some(&b"00-aa-bb-01"[..]));
        assert!(f.any_hop_by_hop);
    }

    #[test]
    fn every_shared_hop_by_hop_name_is_recognised_as_such() {
        for name in ALWAYS_HOP_BY_HOP_NAMES {
            assert!(Name::of(name.as_bytes()).always_hop_by_hop(), "{name}");
            assert!(Name::of(name.to_ascii_uppercase().as_bytes()).always_hop_by_hop());
        }
        assert!(!Name::of(b"te").always_hop_by_hop());
        assert_eq!(Name::of(b"connectio"), Name::Other);
    }

    #[test]
    fn a_response_head_keeps_status_and_reason() {
        let text = b"HTTP/1.0 404 Not  Found\r\nServer: nginx\r\n\r\n";
        let mut head = ResponseHead::default();
        assert_eq!(head.parse(text), Ok(Parsed::Complete(text.len())));
        assert_eq!((head.status, head.version), (404, Version::Http10));
        assert_eq!(head.reason.of(text), b"Not  Found");
        assert_eq!(head.lines.as_slice().len(), 1);
        assert_eq!(
            head.parse(b"HTTP/1.1 099 x\r\n\r\n"),
            Err(HeadError::Status)
        );
        assert_eq!(head.parse(b"HTTP/1.1 20"), Ok(Parsed::Partial));
    }
}

//! Request and response heads parsed into byte ranges of the caller's
//! buffer: nothing is copied or allocated, and every header line keeps its
//! spelling, case and place. The few headers the proxy acts on are
//! recognised once, while parsing ([`Name`]), and read typed from the head
//! ([`RequestHead::fields`]). A plain head (CRLF line ends, ASCII text, no
//! fault) is read in one pass of this module's own (`plain`); any other
//! by `httparse`, whose answer is the authority (the tests hold the plain
//! pass to it, byte for byte).

use std::mem::MaybeUninit;

use bytes::Bytes;
use thiserror::Error;

use crate::proxy::headers::ALWAYS_HOP_BY_HOP_NAMES;
use crate::proxy::Headers;

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
    /// Not acted on by the engine: recognised for the exchange's
    /// [`Headers`](crate::proxy::Headers), which extraction reads it from.
    ContentType,
    /// As [`Name::ContentType`].
    ContentEncoding,
}

/// Lower-case names of the recognised headers. The hop-by-hop ones come
/// from `headers.rs`, which the hyper path uses too: one list for both.
/// The last two are there for the exchange's look-ups alone (noted where
/// the head's lines are, `exchange/headers.rs`), so that a head's names
/// are classified once, here.
const KNOWN: [(&str, Name); 15] = [
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
    ("content-type", Name::ContentType),
    ("content-encoding", Name::ContentEncoding),
];

/// The one candidate in [`KNOWN`] for a name, by its length (under 32)
/// and the low five bits of its first byte: `KNOWN`'s index + 1, or 0 when
/// no recognised name has that length and initial. No two recognised
/// names share both (checked when this is built).
const CANDIDATE: [[u8; 32]; 32] = {
    let mut table = [[0u8; 32]; 32];
    let mut i = 0;
    while i < KNOWN.len() {
        let name = KNOWN[i].0.as_bytes();
        let slot = &mut table[name.len()][(name[0] & 31) as usize];
        assert!(
            *slot == 0,
            "two recognised names share a length and initial"
        );
        *slot = i as u8 + 1;
        i += 1;
    }
    table
};

/// Each of [`KNOWN`]'s names as little-endian numbers, its first byte
/// lowest, zero past its end (every recognised name is at most 24 bytes):
/// its first 16 bytes, and its bytes 16 to 24. [`Name::in_head`] compares
/// a name with these in one or two steps.
const KNOWN_WORDS: [(u128, u64); KNOWN.len()] = {
    let mut words = [(0u128, 0u64); KNOWN.len()];
    let mut i = 0;
    while i < KNOWN.len() {
        let name = KNOWN[i].0.as_bytes();
        assert!(
            name.len() <= 24,
            "a recognised name longer than three words"
        );
        let mut j = 0;
        while j < name.len() {
            if j < 16 {
                words[i].0 |= (name[j] as u128) << (8 * j);
            } else {
                words[i].1 |= (name[j] as u64) << (8 * (j - 16));
            }
            j += 1;
        }
        i += 1;
    }
    words
};

/// The eight bytes of `buf` from `at` as a little-endian word (the byte at
/// `at` lowest); `None` when fewer than eight remain.
fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A byte of value 1 in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const HIGH: u64 = ONES * 0x80;
/// ASCII's case bit (0x20) in every byte of 16.
const CASE_BITS: u128 = u128::from_le_bytes([0x20; 16]);

impl Name {
    /// The recognised header `name` is, in any case.
    pub fn of(name: &[u8]) -> Name {
        let (Some(&first), Some(row)) = (name.first(), CANDIDATE.get(name.len())) else {
            return Name::Other;
        };
        match row[usize::from(first & 31)] {
            0 => Name::Other,
            index => match KNOWN.get(usize::from(index - 1)) {
                Some(&(known, kind)) if known.as_bytes().eq_ignore_ascii_case(name) => kind,
                _ => Name::Other,
            },
        }
    }

    /// The recognised header the token `name` of `buf` is, in any case
    /// (as [`Name::of`]), compared sixteen bytes at once (and eight more
    /// for a longer name) where `buf` has the bytes. `name` must be a
    /// `tchar` token (the plain pass's names are): then setting each byte's 0x20 bit folds exactly the letters'
    /// case, as no other `tchar` byte becomes a letter or `-` by it.
    fn in_head(buf: &[u8], name: Span) -> Name {
        let (start, len) = (name.start as usize, name.len());
        let (Some(&first), Some(row)) = (buf.get(start), CANDIDATE.get(len)) else {
            return Name::Other;
        };
        let index = usize::from(row[usize::from(first & 31)]);
        let (Some(&(_, kind)), Some(&(head, tail))) = (
            KNOWN.get(index.wrapping_sub(1)),
            KNOWN_WORDS.get(index.wrapping_sub(1)),
        ) else {
            return Name::Other;
        };
        let Some(bytes) = buf.get(start..start + 16) else {
            // Too near the buffer's end for 16 bytes.
            return Name::of(name.of(buf));
        };
        let mut first = [0u8; 16];
        first.copy_from_slice(bytes);
        let mask = match len {
            16.. => u128::MAX,
            _ => (1u128 << (8 * len)) - 1,
        };
        if (u128::from_le_bytes(first) | CASE_BITS) & mask != head {
            return Name::Other;
        }
        if len > 16 {
            let Some(word) = word_at(buf, start + 16) else {
                return Name::of(name.of(buf));
            };
            let mask = match len - 16 {
                8.. => u64::MAX,
                left => (1u64 << (8 * left)) - 1,
            };
            if (word | (ONES * 0x20)) & mask != tail {
                return Name::Other;
            }
        }
        kind
    }

    /// Whether [`Fields`] reads anything from a header of this name (the
    /// others are recognised for rewriting or for the exchange's look-ups).
    fn read_by_fields(self) -> bool {
        !matches!(
            self,
            Name::Other
                | Name::XForwardedFor
                | Name::XForwardedProto
                | Name::XForwardedHost
                | Name::ContentType
                | Name::ContentEncoding
        )
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

    /// These lines of a head in `buf` as an exchange's fields: the values
    /// stay in `buf`'s memory (no copy, no map), and the names as this
    /// parse recognised them (not read again to note where `Host`,
    /// `Content-Type` … are).
    pub fn headers(&self, buf: &Bytes) -> Headers {
        let span = |span: Span| (span.start, span.end);
        let lines = self.as_slice().iter();
        Headers::in_head(
            buf.clone(),
            lines.map(|line| (span(line.name), span(line.value), line.kind)),
        )
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
    /// The first `Content-Length` value (framing reads a lone line's
    /// here, without looking for the line again).
    pub content_length: Option<Span>,
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
            Name::Connection if is_keep_alive(value) => {
                // The usual value, whole (as its one token would be read).
                self.connection.keep_alive = true;
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
            Name::ContentLength => {
                self.content_length.get_or_insert(span);
                count(&mut self.content_length_lines);
            }
            Name::TransferEncoding => count(&mut self.transfer_encoding_lines),
            Name::Traceparent => {
                self.traceparent.get_or_insert(span);
            }
            Name::Other
            | Name::XForwardedFor
            | Name::XForwardedProto
            | Name::XForwardedHost
            | Name::ContentType
            | Name::ContentEncoding => {}
        }
    }
}

/// Whether a header value is `keep-alive` in any case, compared eight
/// bytes at a time with each byte's 0x20 bit set: exact on a value, as
/// the only other byte that folds onto one of its letters or `-` is the
/// case-swapped letter or CR, which no parsed value holds.
fn is_keep_alive(value: &[u8]) -> bool {
    const FIRST: u64 = u64::from_le_bytes(*b"keep-ali");
    match *value {
        [a, b, c, d, e, f, g, h, i, j] => {
            let first = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
            first | (ONES * 0x20) == FIRST && [i | 0x20, j | 0x20] == *b"ve"
        }
        _ => false,
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

/// The plain path of both parsers: one pass over a head made only of the
/// common, plainly valid forms, every byte checked against the classes
/// httparse checks it against (its default, strict configuration),
/// recognising the headers the proxy acts on as it goes. It answers only
/// for a **complete** head it read to its end; anything else (a partial
/// head, any fault, a bare LF, leading empty lines, obs-text, more than
/// [`MAX_HEADERS`] lines or [`MAX_HEAD_LEN`] bytes) is `None`, and httparse
/// reads the head instead: its answer stays the authority for every head
/// that is not plain. The spans are the ones httparse gives (the tests
/// hold the two to each other).
mod plain {
    use super::{word_at, Fields, Line, Lines, Name, Span, HIGH, MAX_HEAD_LEN, ONES};

    /// `tchar` (RFC 9110 §5.6.2): the bytes of a method and a header name.
    const TOKEN: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                );
            b += 1;
        }
        table
    };

    /// A visible ASCII byte (VCHAR): a target's, or a value's or reason's
    /// besides SP and HTAB.
    fn visible(b: u8) -> bool {
        (0x21..=0x7e).contains(&b)
    }

    fn span(start: usize, end: usize) -> Span {
        // Within `MAX_HEAD_LEN` (see `within_limit`): both fit a u32.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// At most [`MAX_HEAD_LEN`] bytes of `buf`: a longer head runs out of
    /// bytes here and is httparse's to refuse.
    pub(super) fn within_limit(buf: &[u8]) -> &[u8] {
        buf.get(..MAX_HEAD_LEN).unwrap_or(buf)
    }

    /// How many `TOKEN` bytes `bytes` starts with; `None` when they all
    /// are (the head goes on past them).
    pub(super) fn token_len(bytes: &[u8]) -> Option<usize> {
        bytes.iter().position(|&b| !TOKEN[usize::from(b)])
    }

    /// Per byte of `word`, its high bit set unless the byte is an ASCII
    /// letter, digit or `-` (what nearly every header name is made of).
    /// Exact in every byte: no step carries from one byte into the next.
    pub(super) fn unusual_name_bytes(word: u64) -> u64 {
        // Seven bits a byte, so that adding up to 0x80 never carries out
        // of a byte; bytes of 0x80 and above are flagged at the end. A
        // byte `x` is at least `lo` when `x + (0x80 - lo)` has its high
        // bit, and at most `hi` when `x + (0x7f - hi)` has not.
        let low = word & !HIGH;
        let folded = low | (ONES * 0x20);
        let letter = (folded + ONES * (0x80 - 0x61)) & !(folded + ONES * (0x7f - 0x7a));
        let digit = (low + ONES * (0x80 - 0x30)) & !(low + ONES * (0x7f - 0x39));
        let dash = !((low ^ (ONES * u64::from(b'-'))) + ONES * 0x7f);
        !((letter | digit | dash) & !word) & HIGH
    }

    /// How many `TOKEN` bytes `buf` holds from `at`, eight at a time where
    /// they are letters, digits and `-`; `None` when they run to its end.
    pub(super) fn name_len(buf: &[u8], at: usize) -> Option<usize> {
        let mut end = at;
        while let Some(word) = word_at(buf, end) {
            let unusual = unusual_name_bytes(word);
            if unusual == 0 {
                end += 8;
                continue;
            }
            end += (unusual.trailing_zeros() / 8) as usize;
            if !TOKEN[usize::from(*buf.get(end)?)] {
                return Some(end - at);
            }
            end += 1;
        }
        Some(end - at + token_len(buf.get(end..)?)?)
    }

    /// How many SP or visible ASCII bytes `bytes` starts with (eight at a
    /// time); `None` when they all are.
    fn text_len(bytes: &[u8]) -> Option<usize> {
        let mut chunks = bytes.chunks_exact(8);
        let mut offset = 0;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            // Per byte, exact up to the first one flagged: under 0x20,
            // 0x7f, or 0x80 and above.
            let control = word.wrapping_sub(ONES * 0x20) & !word;
            let del = word ^ (ONES * 0x7f);
            let del = del.wrapping_sub(ONES) & !del;
            let stop = (control | del | word) & HIGH;
            if stop != 0 {
                return Some(offset + (stop.trailing_zeros() / 8) as usize);
            }
            offset += 8;
        }
        chunks
            .remainder()
            .iter()
            .position(|&b| b != b' ' && !visible(b))
            .map(|i| offset + i)
    }

    /// A token from `at` to the SP after it.
    pub(super) fn token(buf: &[u8], at: usize) -> Option<Span> {
        let end = at + token_len(buf.get(at..)?)?;
        (end > at && buf.get(end) == Some(&b' ')).then(|| span(at, end))
    }

    /// A request target of visible ASCII from `at` to the SP after it.
    pub(super) fn target(buf: &[u8], at: usize) -> Option<Span> {
        let end = at + buf.get(at..)?.iter().position(|&b| !visible(b))?;
        (end > at && buf.get(end) == Some(&b' ')).then(|| span(at, end))
    }

    /// Where the text from `at` (SP, HTAB and visible ASCII) ends at a CR
    /// followed by LF: the CR's offset.
    fn line_end(buf: &[u8], at: usize) -> Option<usize> {
        let mut end = at;
        loop {
            end += text_len(buf.get(end..)?)?;
            match buf.get(end)? {
                b'\t' => end += 1,
                b'\r' if buf.get(end + 1) == Some(&b'\n') => return Some(end),
                _ => return None,
            }
        }
    }

    /// A reason phrase from `at` to its CRLF: SP, HTAB and visible ASCII;
    /// empty as [`Span::default`] (as the parser's other path keeps an
    /// empty reason). With where the header lines start.
    pub(super) fn reason(buf: &[u8], at: usize) -> Option<(Span, usize)> {
        let end = line_end(buf, at)?;
        let reason = if end == at {
            Span::default()
        } else {
            span(at, end)
        };
        Some((reason, end + 2))
    }

    /// The header lines from `at` to the empty line, into `lines`: the
    /// head's length and its fields.
    pub(super) fn lines(buf: &[u8], mut at: usize, lines: &mut Lines) -> Option<(usize, Fields)> {
        let mut fields = Fields::default();
        lines.len = 0;
        loop {
            if *buf.get(at)? == b'\r' {
                return (buf.get(at + 1) == Some(&b'\n')).then_some((at + 2, fields));
            }
            let name_end = at + name_len(buf, at)?;
            if name_end == at || buf.get(name_end) != Some(&b':') {
                return None;
            }
            let name = span(at, name_end);
            let mut start = name_end + 1;
            while matches!(buf.get(start), Some(b' ' | b'\t')) {
                start += 1;
            }
            let line_end = line_end(buf, start)?;
            // The value without the whitespace around it (an empty one
            // where its line ends, as httparse points it).
            let mut end = line_end;
            while end > start && matches!(buf.get(end - 1), Some(b' ' | b'\t')) {
                end -= 1;
            }
            let value = span(start, end);
            let slot = lines.lines.get_mut(lines.len)?;
            let kind = Name::in_head(buf, name);
            *slot = Line { name, value, kind };
            if kind.read_by_fields() {
                fields.note(kind, value, value.of(buf));
            }
            lines.len += 1;
            at = line_end + 2;
        }
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
        match self.parse_plain(buf) {
            Some(len) => Ok(Parsed::Complete(len)),
            None => self.parse_any(buf),
        }
    }

    /// The plain path: a complete head made only of what [`plain`] reads
    /// (`method SP target SP HTTP/1.x CRLF`, an ASCII target); `None` for
    /// anything else, which httparse then reads.
    fn parse_plain(&mut self, buf: &[u8]) -> Option<usize> {
        let buf = plain::within_limit(buf);
        let method = plain::token(buf, 0)?;
        let target = plain::target(buf, method.end as usize + 1)?;
        let at = target.end as usize + 1;
        let version = match buf.get(at..at + 10)? {
            b"HTTP/1.1\r\n" => Version::Http11,
            b"HTTP/1.0\r\n" => Version::Http10,
            _ => return None,
        };
        let (len, fields) = plain::lines(buf, at + 10, &mut self.lines)?;
        self.method = method;
        self.target = target;
        self.version = version;
        self.fields = fields;
        self.len = len;
        Some(len)
    }

    /// Any head, as httparse reads it.
    fn parse_any(&mut self, buf: &[u8]) -> Result<Parsed, HeadError> {
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
        match self.parse_plain(buf) {
            Some(len) => Ok(Parsed::Complete(len)),
            None => self.parse_any(buf),
        }
    }

    /// The plain path: a complete head made only of what [`plain`] reads
    /// (`HTTP/1.x SP status [SP reason] CRLF`, an ASCII reason, a status
    /// of 100 or more); `None` for anything else, which httparse then
    /// reads.
    fn parse_plain(&mut self, buf: &[u8]) -> Option<usize> {
        let buf = plain::within_limit(buf);
        let (version, digits) = match buf.get(..12)? {
            [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, b' ', digits @ ..] => {
                let version = match minor {
                    b'1' => Version::Http11,
                    b'0' => Version::Http10,
                    _ => return None,
                };
                (version, digits)
            }
            _ => return None,
        };
        let mut status = 0u16;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return None;
            }
            status = status * 10 + u16::from(digit - b'0');
        }
        if status < 100 {
            return None;
        }
        let (reason, at) = match buf.get(12..14)? {
            b"\r\n" => (Span::default(), 14),
            [b' ', _] => plain::reason(buf, 13)?,
            _ => return None,
        };
        let (len, fields) = plain::lines(buf, at, &mut self.lines)?;
        self.status = status;
        self.reason = reason;
        self.version = version;
        self.fields = fields;
        self.len = len;
        Some(len)
    }

    /// Any head, as httparse reads it.
    fn parse_any(&mut self, buf: &[u8]) -> Result<Parsed, HeadError> {
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
                (b"Content-Type", b"application/json", Name::ContentType),
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
    fn a_lone_connection_token_reads_as_in_a_list() {
        for (value, close, keep_alive) in [
            ("keep-alive", false, true),
            ("Keep-Alive", false, true),
            ("close", true, false),
            ("keep-alive, close", true, true),
        ] {
            let text = format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n");
            let (head, _) = request(text.as_bytes()).expect("valid");
            let tokens = head.fields.connection;
            assert_eq!(
                (tokens.close, tokens.keep_alive),
                (close, keep_alive),
                "{value}"
            );
            // `close` names itself (a header of that name is dropped).
            assert_eq!(tokens.names_others, close, "{value}");
        }
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
    fn unusual_name_bytes_flags_exactly_the_bytes_that_are_no_letter_digit_or_dash() {
        let usual = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
        let fillers = [
            0u8, b'a', b'Z', b'-', b'9', b'@', b'[', 0x7f, 0x80, 0xff, b':',
        ];
        for b in 0..=255u8 {
            for at in 0..8 {
                for filler in fillers {
                    let mut bytes = [filler; 8];
                    bytes[at] = b;
                    let expected = bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, &b)| !usual(b))
                        .fold(0u64, |mask, (i, _)| mask | 0x80 << (8 * i));
                    let flagged = plain::unusual_name_bytes(u64::from_le_bytes(bytes));
                    assert_eq!(flagged, expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn a_name_is_measured_as_byte_by_byte_at_any_length_and_end() {
        let stops = [b':', b' ', b'\t', b'\r', b'(', 0x80];
        let names: [&[u8]; 4] = [
            b"Content-Length-And-More-Than-Two-Words",
            b"X_Under.Score!#$%&'*+^`|~-0123456789",
            b"a",
            b"",
        ];
        for name in names {
            for len in 0..=name.len() {
                for stop in stops {
                    for padding in [0usize, 1, 7, 8, 9, 20] {
                        let mut buf = name[..len].to_vec();
                        buf.push(stop);
                        buf.resize(buf.len() + padding, b'x');
                        assert_eq!(
                            plain::name_len(&buf, 0),
                            plain::token_len(&buf),
                            "{}",
                            String::from_utf8_lossy(&buf)
                        );
                    }
                    // A name running to the buffer's end.
                    let buf = &name[..len];
                    assert_eq!(plain::name_len(buf, 0), plain::token_len(buf));
                }
            }
        }
    }

    #[test]
    fn keep_alive_is_recognised_in_any_case_and_nothing_else() {
        let mut values = vec![b"keep-alive".to_vec(), b"KEEP-ALIVE".to_vec()];
        for i in 0..10 {
            for b in 0..=255u8 {
                let mut value = b"Keep-Alive".to_vec();
                value[i] = b;
                if b != b'\r' {
                    values.push(value);
                }
            }
        }
        values.extend([b"keep-aliv".to_vec(), b"keep-alive ".to_vec()]);
        for value in values {
            assert_eq!(
                is_keep_alive(&value),
                value.eq_ignore_ascii_case(b"keep-alive"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_name_is_recognised_in_a_head_as_alone() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for (known, _) in KNOWN {
            let known = known.as_bytes();
            names.push(known.to_vec());
            names.push(known.to_ascii_uppercase());
            for i in 0..known.len() {
                // One byte changed: case, a near letter, a `tchar` that
                // folds onto another byte, dropped.
                for b in [
                    known[i].to_ascii_uppercase(),
                    known[i] ^ 1,
                    b'_',
                    b'~',
                    b'^',
                    b'`',
                    b'|',
                ] {
                    let mut changed = known.to_vec();
                    changed[i] = b;
                    names.push(changed);
                }
                let mut dropped = known.to_vec();
                dropped.remove(i);
                names.push(dropped);
            }
        }
        for name in &names {
            for tail in [&b""[..], b":", b": v\r\n\r\n", b": a longer value\r\n\r\n"] {
                let buf = [&name[..], tail].concat();
                let span = Span {
                    start: 0,
                    end: name.len() as u32,
                };
                assert_eq!(
                    Name::in_head(&buf, span),
                    Name::of(name),
                    "{}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }

    /// `text` and every variant of it one byte apart (each byte replaced
    /// by, or preceded by, a byte of interest, or dropped) and every
    /// prefix of it.
    fn variants(text: &[u8]) -> Vec<Vec<u8>> {
        const BYTES: [u8; 20] = [
            b'\t', b' ', b':', b'\r', b'\n', 0x7f, 0x80, 0xff, 0, b'a', b'Z', b',', b'"', b'(',
            b'1', b'/', b'-', b'_', b'~', b'@',
        ];
        let mut all = vec![text.to_vec()];
        for i in 0..=text.len() {
            all.push(text[..i].to_vec());
            for b in BYTES {
                let mut inserted = text.to_vec();
                inserted.insert(i, b);
                all.push(inserted);
                if i < text.len() {
                    let mut replaced = text.to_vec();
                    replaced[i] = b;
                    all.push(replaced);
                }
            }
            if i < text.len() {
                let mut dropped = text.to_vec();
                dropped.remove(i);
                all.push(dropped);
            }
        }
        all
    }

    /// Every variant of each of `bases` the plain path reads (the bases
    /// among them) is read by httparse to the same length and the same
    /// `summary` (every field of the head, its lines included).
    fn plain_reads_as_httparse<H: Default, S: PartialEq + std::fmt::Debug>(
        bases: &[&[u8]],
        parse_plain: fn(&mut H, &[u8]) -> Option<usize>,
        parse_any: fn(&mut H, &[u8]) -> Result<Parsed, HeadError>,
        summary: fn(&H) -> S,
    ) {
        let mut answered = 0;
        for base in bases {
            let context = String::from_utf8_lossy(base);
            assert!(parse_plain(&mut H::default(), base).is_some(), "{context}");
            for text in variants(base) {
                let mut plain = H::default();
                let Some(len) = parse_plain(&mut plain, &text) else {
                    continue;
                };
                answered += 1;
                let mut any = H::default();
                let context = String::from_utf8_lossy(&text);
                assert_eq!(
                    parse_any(&mut any, &text),
                    Ok(Parsed::Complete(len)),
                    "{context}"
                );
                assert_eq!(summary(&plain), summary(&any), "{context}");
            }
        }
        // Variants that stay plain were compared too, not only the bases.
        assert!(answered > 400, "{answered}");
    }

    #[test]
    fn the_plain_request_path_reads_what_httparse_reads() {
        plain_reads_as_httparse(
            &[
                b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1:18091\r\nContent-Type: application/json\r\nContent-Length: 840\r\n\r\n{}",
                b"GET / HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\nTE: trailers\r\nX-Empty:\r\nX-Sp: \t a b \t\r\ntraceparent: 00-ab-cd-01\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
                b"GET http://a.example/x?y=1 HTTP/1.1\r\nhost: a.example\r\nTransfer-Encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
                b"OPTIONS * HTTP/1.1\r\n\r\n",
                // Recognised names in other cases, names over two words,
                // every `tchar` that is no letter, digit or `-`.
                b"PATCH /x HTTP/1.1\r\nHOST: h\r\nCONTENT-LENGTH: 0\r\nX-Forwarded-Proto: https\r\nx-forwarded-HOST: a\r\nProxy-Connection: close\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\nAccept-Encoding-Preference-List: 1\r\nX_Under.Score!#$%&'*+^`|~: v\r\n\r\n",
            ],
            RequestHead::parse_plain,
            RequestHead::parse_any,
            |head| {
                let lines = head.lines.as_slice().to_vec();
                (head.method, head.target, head.version, head.fields, head.len, lines)
            },
        );
    }

    #[test]
    fn the_plain_response_path_reads_what_httparse_reads() {
        plain_reads_as_httparse(
            &[
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 07:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 840\r\nConnection: keep-alive\r\n\r\n{}",
                b"HTTP/1.0 404 Not  Found \r\nTransfer-Encoding: chunked\r\nX:\r\nTrailer: a, b\r\n\r\n",
                b"HTTP/1.1 204\r\n\r\n",
                b"HTTP/1.1 101 \r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                // Recognised names in other cases, the last ones too near
                // the buffer's end for a whole word.
                b"HTTP/1.1 200 OK\r\nCONNECTION: close\r\ncontent-ENCODING: gzip\r\nTransfer-encoding: chunked\r\nTraceparent: 1\r\nX-Forwarded-For: a\r\nTE: x\r\nHost: h\r\n\r\n",
            ],
            ResponseHead::parse_plain,
            ResponseHead::parse_any,
            |head| {
                let lines = head.lines.as_slice().to_vec();
                (head.status, head.reason, head.version, head.fields, head.len, lines)
            },
        );
    }

    #[test]
    fn the_names_a_parse_recognised_are_found_as_reading_every_field_finds_them() {
        use http::header::{HeaderName, CONTENT_ENCODING, CONTENT_TYPE, HOST};
        let names = [
            HOST,
            HeaderName::from_static("traceparent"),
            CONTENT_TYPE,
            CONTENT_ENCODING,
            HeaderName::from_static("x-other"),
        ];
        // Repeated names apart, in any case; names that are prefixes or
        // extensions of others or one `tchar` off; the last name too near
        // the buffer's end for a whole word; each also with obs-text in a
        // value (then httparse reads the head, and `Name::of` recognises).
        let fields: [&[u8]; 6] = [
            b"Host: a\r\nContent-Type: text/plain\r\n",
            b"traceparent: t1\r\nX-Other: x\r\nTraceParent: t2\r\nTRACEPARENT: t3\r\n",
            b"CONTENT-ENCODING: gzip\r\nx-other: y\r\ncontent-encoding: br\r\n",
            b"Content-Types: 1\r\nContent-Typ: 2\r\nHos: 3\r\nHosts: 4\r\nContent_Type: 5\r\nContent-Encodings: 6\r\ntraceparent~: 7\r\nhosT: 8\r\n",
            b"Content-Length: 0\r\nX-Other: 1\r\ncontent-type: a\r\nCoNtEnT-tYpE: b\r\nHOST: h\r\n",
            b"",
        ];
        for fields in fields {
            for obs_text in [&b""[..], b"X-Other: caf\xc3\xa9\r\n"] {
                let request = [&b"GET / HTTP/1.1\r\n"[..], fields, obs_text, b"\r\n"].concat();
                let response = [&b"HTTP/1.1 200 OK\r\n"[..], fields, obs_text, b"\r\n"].concat();
                let mut request_head = RequestHead::default();
                let mut response_head = ResponseHead::default();
                assert_eq!(
                    request_head.parse_plain(&request).is_some(),
                    obs_text.is_empty()
                );
                assert_eq!(
                    request_head.parse(&request),
                    Ok(Parsed::Complete(request.len()))
                );
                assert_eq!(
                    response_head.parse(&response),
                    Ok(Parsed::Complete(response.len()))
                );
                let heads = [
                    (Bytes::from(request), &request_head.lines),
                    (Bytes::from(response), &response_head.lines),
                ];
                for (buf, lines) in heads {
                    let headers = lines.headers(&buf);
                    let context = String::from_utf8_lossy(&buf);
                    for name in &names {
                        let found: Vec<_> = headers.get_all(name).map(|v| v.as_bytes()).collect();
                        let scanned: Vec<_> = headers
                            .iter()
                            .filter(|(field, _)| {
                                field.eq_ignore_ascii_case(name.as_str().as_bytes())
                            })
                            .map(|(_, value)| value.as_bytes())
                            .collect();
                        assert_eq!(found, scanned, "{name} in {context}");
                        let first = headers.get(name).map(|v| v.as_bytes());
                        assert_eq!(first, found.first().copied(), "{name} in {context}");
                    }
                }
            }
        }
        // A folded line (obs-fold) is refused by both paths: no fields.
        let folded = b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n";
        assert_eq!(
            RequestHead::default().parse(folded),
            Err(HeadError::HeaderName)
        );
    }

    #[test]
    fn heads_the_plain_path_leaves_to_httparse_still_parse() {
        // A bare LF, obs-text, leading empty lines: not plain, still valid.
        let requests: [&[u8]; 3] = [
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        for text in requests {
            let mut head = RequestHead::default();
            assert_eq!(head.parse_plain(text), None);
            assert_eq!(head.parse(text), Ok(Parsed::Complete(text.len())));
        }
        let mut head = ResponseHead::default();
        let text = b"HTTP/1.1 200 D\xe9j\xe0 vu\r\n\r\n";
        assert_eq!(head.parse_plain(text), None);
        assert_eq!(head.parse(text), Ok(Parsed::Complete(text.len())));
        assert!(head.reason.is_empty());
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

//! Writing the heads for the other hop: the client's request head for the
//! upstream, the upstream's response head for the client. Header lines
//! are copied from the parsed head in their order, case and spelling,
//! minus the hop-by-hop ones (the list `headers.rs` uses for the hyper
//! path), plus the proxy's own: `Host` when replaced, `X-Forwarded-*`,
//! `traceparent`, and the framing header of the body as forwarded. The
//! result is what `headers.rs` and hyper write today for the same head;
//! the few places where it differs are listed in the module doc of
//! [`h1`](super).

use std::io::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use thiserror::Error;

use super::head::{tokens, trim, Fields, Line, Lines, Name, RequestHead, ResponseHead, Version};

/// The `Host` header toward the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRewrite<'a> {
    /// The client's `Host` (or its absolute-form target's authority); the
    /// `fallback` (the upstream's `host:port`) when it sent neither.
    Preserve { fallback: &'a [u8] },
    /// This value (the upstream's `host:port`).
    Replace(&'a [u8]),
}

/// What the proxy changes in a request head on its way upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRewrite<'a> {
    /// The upstream URI's path without its trailing `/`; empty for none.
    pub base_path: &'a [u8],
    pub host: HostRewrite<'a>,
    /// The client's address for `X-Forwarded-For` (and with it
    /// `X-Forwarded-Proto: http` and `X-Forwarded-Host`); `None`: nothing
    /// added.
    pub forwarded_for: Option<IpAddr>,
    /// A `traceparent` value replacing the client's.
    pub traceparent: Option<&'a [u8]>,
    /// The body goes upstream chunked: add `Transfer-Encoding: chunked`
    /// and drop any `Content-Length` (RFC 9112 §6.3: chunked won).
    /// Otherwise the first `Content-Length` line travels as the client
    /// sent it (identical repeats are dropped).
    pub chunked: bool,
}

/// What the proxy adds to a response head on its way to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseRewrite<'a> {
    /// The client's HTTP version: the status line's.
    pub version: Version,
    /// The body goes to the client chunked: add `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Drop the `Content-Length` lines: beside `Transfer-Encoding` (RFC
    /// 9112 §6.3), and on a 204 or 304 (as hyper does).
    pub drop_content_length: bool,
    /// A `Connection` value of the client connection's own (`close`,
    /// `keep-alive`), added last.
    pub connection: Option<&'a [u8]>,
}

impl ResponseRewrite<'_> {
    /// A head relayed as it came to a client speaking `version`: no body
    /// framing of the proxy's own, no `Connection` (a 1xx, a 101).
    pub fn bare(version: Version) -> Self {
        ResponseRewrite {
            version,
            chunked: false,
            drop_content_length: false,
            connection: None,
        }
    }
}

/// A request the proxy cannot forward as it is.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("request target is neither origin form, absolute form nor `*`")]
    Target,
}

/// The path and query to send: an origin-form target as it is, an
/// absolute-form one's part after the authority (`/` when empty), any
/// fragment cut off; and the absolute form's authority.
fn origin_form(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), RewriteError> {
    let target = target
        .iter()
        .position(|&b| b == b'#')
        .map_or(target, |hash| target.get(..hash).unwrap_or_default());
    match target.first() {
        Some(b'/') | Some(b'*') => return Ok((target, None)),
        None => return Err(RewriteError::Target),
        Some(_) => {}
    }
    let rest = [&b"http://"[..], b"https://"]
        .iter()
        .find(|scheme| {
            target.len() >= scheme.len()
                && target
                    .get(..scheme.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        })
        .and_then(|scheme| target.get(scheme.len()..))
        .ok_or(RewriteError::Target)?;
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(RewriteError::Target);
    }
    Ok((path, Some(authority)))
}

/// One header line as hyper writes it: `Name: value`; an empty value as
/// `Name:` when `bare_empty` (hyper's client does, its server writes
/// `Name: `).
fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8], bare_empty: bool) {
    out.extend_from_slice(name);
    if value.is_empty() && bare_empty {
        out.extend_from_slice(b":\r\n");
    } else {
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The header block being written: runs of header lines that go on as
/// they came, and are spelled as hyper writes them (`Name: value` and
/// CRLF), are copied from the parsed buffer in one piece each.
struct Block<'o, 'b> {
    out: &'o mut Vec<u8>,
    buf: &'b [u8],
    /// Bytes of `buf` still to copy.
    run: Range<usize>,
    /// An empty value is written `Name:` (else `Name: `).
    bare_empty: bool,
}

impl<'o, 'b> Block<'o, 'b> {
    fn new(out: &'o mut Vec<u8>, buf: &'b [u8], bare_empty: bool) -> Self {
        Block {
            out,
            buf,
            run: 0..0,
            bare_empty,
        }
    }

    /// `line` as it came.
    fn copy(&mut self, line: &Line) {
        let (start, end) = (line.name.start as usize, line.value.end as usize);
        let as_hyper_writes = !line.value.is_empty()
            && self
                .buf
                .get(line.name.end as usize..line.value.start as usize)
                == Some(b": ")
            && self.buf.get(end..end + 2) == Some(b"\r\n");
        if !as_hyper_writes {
            return self.put(line.name.of(self.buf), line.value.of(self.buf));
        }
        if self.run.is_empty() || self.run.end != start {
            self.flush();
            self.run.start = start;
        }
        self.run.end = end + 2;
    }

    /// A line of the proxy's own (or changed).
    fn put(&mut self, name: &[u8], value: &[u8]) {
        self.flush();
        put_line(self.out, name, value, self.bare_empty);
    }

    /// `line` with the value `changed`, or as it came.
    fn line(&mut self, line: &Line, changed: Option<&[u8]>) {
        match changed {
            Some(value) => self.put(line.name.of(self.buf), value),
            None => self.copy(line),
        }
    }

    fn flush(&mut self) {
        let run = std::mem::replace(&mut self.run, 0..0);
        self.out
            .extend_from_slice(self.buf.get(run).unwrap_or_default());
    }

    /// Ends the head with its empty line.
    fn finish(mut self) {
        self.flush();
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Writes `ip` as `Display` does, IPv4 without the formatting machinery
/// (a tenth of its instructions).
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// Whether a `Connection` line of `lines` names `name`.
fn named_by_connection(buf: &[u8], lines: &Lines, name: &[u8]) -> bool {
    lines
        .of(Name::Connection)
        .any(|line| tokens(line.value.of(buf)).any(|token| token.eq_ignore_ascii_case(name)))
}

/// The `TE` value to forward (`headers.rs`'s rule): a line that is
/// exactly `trailers` as it is, a plain `trailers` when some line lists
/// it among others, nothing otherwise.
fn te_value<'b>(buf: &'b [u8], lines: &Lines, fields: &Fields) -> Option<&'b [u8]> {
    if !fields.te_trailers {
        return None;
    }
    lines
        .of(Name::Te)
        .map(|line| line.value.of(buf))
        .find(|value| value.eq_ignore_ascii_case(b"trailers"))
        .or(Some(b"trailers"))
}

/// The header lines that go on: not hop-by-hop, not named by
/// `Connection`, one `TE: trailers` at most. Calls `keep` with each line
/// and, for a `TE` line whose value changes, the value to write.
fn forwarded_lines<'b>(
    buf: &'b [u8],
    lines: &Lines,
    fields: &Fields,
    mut keep: impl FnMut(&Line, Option<&'b [u8]>),
) {
    let te = te_value(buf, lines, fields);
    let mut te_written = false;
    for line in lines.as_slice() {
        if line.kind.always_hop_by_hop() {
            continue;
        }
        if fields.connection.names_others && named_by_connection(buf, lines, line.name.of(buf)) {
            continue;
        }
        if line.kind == Name::Te {
            if let Some(te) = te.filter(|_| !te_written) {
                te_written = true;
                keep(line, Some(te).filter(|te| *te != line.value.of(buf)));
            }
            continue;
        }
        keep(line, None);
    }
}

/// The name a header the proxy adds is written with: the client's
/// spelling of its first line of that name, if any (hyper keeps the case
/// of every name it saw), else lower case.
fn spelling<'b>(buf: &'b [u8], lines: &Lines, kind: Name, lower: &'static [u8]) -> &'b [u8] {
    lines
        .of(kind)
        .next()
        .map_or(lower, |line| line.name.of(buf))
}

/// Writes the request head for the upstream into `out` (appended).
pub fn write_request(
    buf: &[u8],
    head: &RequestHead,
    rewrite: &RequestRewrite<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RewriteError> {
    let (path, authority) = origin_form(head.target(buf))?;
    let fields = &head.fields;
    // An absolute-form target's authority wins over `Host` (RFC 9112
    // §3.2.2), as on the hyper path.
    let client_host = authority.or_else(|| fields.host.map(|host| host.of(buf)));
    let host = match rewrite.host {
        HostRewrite::Preserve { fallback } => client_host.unwrap_or(fallback),
        HostRewrite::Replace(host) => host,
    };
    // As `forward.rs`: the `Host` lines are replaced by one only when the
    // first differs (or there is none).
    let replace_host = fields.host.map(|first| first.of(buf)) != Some(host);

    out.reserve(head.len + 128);
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    out.extend_from_slice(rewrite.base_path);
    if path.is_empty() || path.first() == Some(&b'?') {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let xff_lines = if rewrite.forwarded_for.is_some() {
        head.lines.of(Name::XForwardedFor).count()
    } else {
        0
    };
    let (mut xff_seen, mut host_written, mut traceparent_written) = (0, false, false);
    let mut length_written = rewrite.chunked;
    let (mut xff_kept, mut xfp_kept, mut xfh_kept) = (false, false, false);
    let mut block = Block::new(out, buf, true);
    forwarded_lines(buf, &head.lines, fields, |line, changed| match line.kind {
        Name::Host => {
            if !host_written {
                block.line(line, Some(host).filter(|_| replace_host));
            } else if !replace_host {
                block.copy(line);
            }
            host_written = true;
        }
        Name::Traceparent if rewrite.traceparent.is_some() => {
            if !traceparent_written {
                block.line(line, rewrite.traceparent);
            }
            traceparent_written = true;
        }
        Name::ContentLength => {
            if !length_written {
                block.copy(line);
            }
            length_written = true;
        }
        Name::XForwardedFor => {
            xff_seen += 1;
            xff_kept = true;
            match rewrite.forwarded_for.filter(|_| xff_seen == xff_lines) {
                Some(ip) => {
                    block.flush();
                    block.out.extend_from_slice(line.name.of(buf));
                    block.out.extend_from_slice(b": ");
                    block.out.extend_from_slice(line.value.of(buf));
                    block.out.extend_from_slice(b", ");
                    put_ip(block.out, ip.to_canonical());
                    block.out.extend_from_slice(b"\r\n");
                }
                None => block.copy(line),
            }
        }
        kind => {
            xfp_kept |= kind == Name::XForwardedProto;
            xfh_kept |= kind == Name::XForwardedHost;
            block.line(line, changed);
        }
    });
    if let Some(ip) = rewrite.forwarded_for {
        if !xff_kept {
            block.flush();
            block.out.extend_from_slice(b"x-forwarded-for: ");
            put_ip(block.out, ip.to_canonical());
            block.out.extend_from_slice(b"\r\n");
        }
        if !xfp_kept {
            block.put(b"x-forwarded-proto", b"http");
        }
        if let Some(client_host) = client_host.filter(|_| !xfh_kept) {
            block.put(b"x-forwarded-host", client_host);
        }
    }
    if let Some(traceparent) = rewrite.traceparent.filter(|_| !traceparent_written) {
        block.put(b"traceparent", traceparent);
    }
    if !host_written {
        block.put(b"host", host);
    }
    if rewrite.chunked {
        let name = spelling(
            buf,
            &head.lines,
            Name::TransferEncoding,
            b"transfer-encoding",
        );
        block.put(name, b"chunked");
    }
    block.finish();
    Ok(())
}

/// Writes the response head for the client into `out` (appended).
pub fn write_response(
    buf: &[u8],
    head: &ResponseHead,
    rewrite: &ResponseRewrite<'_>,
    out: &mut Vec<u8>,
) {
    out.reserve(head.len + 64);
    out.extend_from_slice(rewrite.version.as_bytes());
    let mut status = [b' ', b'0', b'0', b'0', b' '];
    let digits = [head.status / 100, head.status / 10 % 10, head.status % 10];
    for (slot, digit) in status.iter_mut().skip(1).zip(digits) {
        // A status is three digits (the parser refuses others).
        *slot = b'0' + u8::try_from(digit).unwrap_or_default();
    }
    out.extend_from_slice(&status);
    out.extend_from_slice(trim(head.reason.of(buf)));
    out.extend_from_slice(b"\r\n");
    let mut block = Block::new(out, buf, false);
    forwarded_lines(buf, &head.lines, &head.fields, |line, changed| {
        if !(rewrite.drop_content_length && line.kind == Name::ContentLength) {
            block.line(line, changed);
        }
    });
    if rewrite.chunked {
        let name = spelling(
            buf,
            &head.lines,
            Name::TransferEncoding,
            b"transfer-encoding",
        );
        block.put(name, b"chunked");
    }
    if let Some(connection) = rewrite.connection {
        let name = spelling(buf, &head.lines, Name::Connection, b"connection");
        block.put(name, connection);
    }
    block.finish();
}

/// Lower-cases the header names of a head in `head` written by this
/// module (`header_case: lowercase`): on each line after the start line,
/// the bytes before its first `:` (a written line is `Name: value`; a
/// value holds no CR or LF, the parser refuses them).
pub fn lowercase_names(head: &mut [u8]) {
    for line in head.split_mut(|&b| b == b'\n').skip(1) {
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
        if let Some(name) = line.get_mut(..name_end) {
            name.make_ascii_lowercase();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::head::Parsed;

    #[test]
    fn lowercase_names_changes_names_only() {
        let text = "POST /Orders?Expand=Lines HTTP/1.1\r\nHost: ERP:80\r\nX-MiXeD: Va:Lue\r\nx-Empty:\r\n\r\n";
        let mut head = rewrite_request(text, &PLAIN).into_bytes();
        lowercase_names(&mut head);
        assert_eq!(
            String::from_utf8_lossy(&head),
            "POST /Orders?Expand=Lines HTTP/1.1\r\nhost: ERP:80\r\nx-mixed: Va:Lue\r\nx-empty:\r\n\r\n"
        );
    }

    fn rewrite_request(text: &str, rewrite: &RequestRewrite<'_>) -> String {
        let mut head = RequestHead::default();
        assert!(matches!(
            head.parse(text.as_bytes()),
            Ok(Parsed::Complete(_))
        ));
        let mut out = Vec::new();
        write_request(text.as_bytes(), &head, rewrite, &mut out).expect("forwardable");
        String::from_utf8(out).expect("text")
    }

    const PLAIN: RequestRewrite<'static> = RequestRewrite {
        base_path: b"",
        host: HostRewrite::Preserve { fallback: b"up:80" },
        forwarded_for: None,
        traceparent: None,
        chunked: false,
    };

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.20.255.9",
            "192.0.2.100",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut out = Vec::new();
            put_ip(&mut out, ip);
            assert_eq!(String::from_utf8_lossy(&out), ip.to_string());
        }
    }

    #[test]
    fn a_request_without_hop_by_hop_headers_goes_on_as_it_came() {
        let text = "POST /api/orders HTTP/1.1\r\nHost: erp\r\nX-A: 1\r\nx-empty:\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(rewrite_request(text, &PLAIN), text);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let text = "GET /a?b HTTP/1.0\r\nHost: erp\r\nConnection: keep-alive, X-Secret\r\nx-secret: 1\r\nKeep-Alive: 5\r\nTE: gzip, trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nX-B: 2\r\nte: trailers\r\n\r\n";
        assert_eq!(
            rewrite_request(text, &PLAIN),
            "GET /a?b HTTP/1.1\r\nHost: erp\r\nTE: trailers\r\nX-B: 2\r\n\r\n"
        );
    }

    #[test]
    fn base_path_host_forwarded_and_traceparent_are_applied() {
        let rewrite = RequestRewrite {
            base_path: b"/base",
            host: HostRewrite::Replace(b"up:8080"),
            forwarded_for: Some("::ffff:192.0.2.7".parse().expect("ip")),
            traceparent: Some(b"00-11-22-01"),
            chunked: true,
        };
        let text = "POST /x HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: erp\r\nTraceparent: old\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n";
        assert_eq!(
            rewrite_request(text, &rewrite),
            "POST /base/x HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: up:8080\r\nTraceparent: 00-11-22-01\r\nX-Forwarded-For: 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\nx-forwarded-host: erp\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_targets_go_on_in_origin_form() {
        let text = "GET http://erp.example:81?q=1#frag HTTP/1.1\r\n\r\n";
        assert_eq!(
            rewrite_request(text, &PLAIN),
            "GET /?q=1 HTTP/1.1\r\nhost: erp.example:81\r\n\r\n"
        );
        let mut head = RequestHead::default();
        let text = b"CONNECT erp:443 HTTP/1.1\r\n\r\n";
        assert!(head.parse(text).is_ok());
        assert_eq!(
            write_request(text, &head, &PLAIN, &mut Vec::new()),
            Err(RewriteError::Target)
        );
    }

    #[test]
    fn a_response_keeps_status_reason_and_lines_minus_hop_by_hop() {
        let text = b"HTTP/1.1 201 Created Here\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n";
        let mut head = ResponseHead::default();
        assert!(head.parse(text).is_ok());
        let mut out = Vec::new();
        let rewrite = ResponseRewrite {
            version: Version::Http10,
            chunked: false,
            drop_content_length: false,
            connection: Some(b"keep-alive"),
        };
        write_response(text, &head, &rewrite, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.0 201 Created Here\r\nServer: nginx\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}

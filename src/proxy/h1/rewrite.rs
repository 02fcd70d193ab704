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
    /// The body goes upstream chunked: add `Transfer-Encoding: chunked`.
    /// (A `Content-Length` travels as the client sent it.)
    pub chunked: bool,
}

/// What the proxy adds to a response head on its way to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseRewrite<'a> {
    /// The client's HTTP version: the status line's.
    pub version: Version,
    /// The body goes to the client chunked: add `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// A `Connection` value of the client connection's own (`close`,
    /// `keep-alive`), added last.
    pub connection: Option<&'a [u8]>,
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

/// One header line as hyper writes it: `Name: value`, or `Name:` when the
/// value is empty.
fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    if value.is_empty() {
        out.extend_from_slice(b":\r\n");
    } else {
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
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
/// and, for the `TE` line, the value to write.
fn forwarded_lines<'b>(
    buf: &'b [u8],
    lines: &Lines,
    fields: &Fields,
    mut keep: impl FnMut(&Line, &'b [u8]),
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
                keep(line, te);
            }
            continue;
        }
        keep(line, line.value.of(buf));
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
    let client_host = fields.host.map(|host| host.of(buf)).or(authority);
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
    let (mut xff_kept, mut xfp_kept, mut xfh_kept) = (false, false, false);
    forwarded_lines(buf, &head.lines, fields, |line, value| {
        let name = line.name.of(buf);
        match line.kind {
            Name::Host if replace_host => {
                if !host_written {
                    put_line(out, name, host);
                }
                host_written = true;
            }
            Name::Host => {
                host_written = true;
                put_line(out, name, value);
            }
            Name::Traceparent if rewrite.traceparent.is_some() => {
                if let Some(traceparent) = rewrite.traceparent.filter(|_| !traceparent_written) {
                    put_line(out, name, traceparent);
                }
                traceparent_written = true;
            }
            Name::XForwardedFor => {
                xff_seen += 1;
                xff_kept = true;
                match rewrite.forwarded_for.filter(|_| xff_seen == xff_lines) {
                    Some(ip) => {
                        out.extend_from_slice(name);
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value);
                        let _ = write!(out, ", {}\r\n", ip.to_canonical());
                    }
                    None => put_line(out, name, value),
                }
            }
            kind => {
                xfp_kept |= kind == Name::XForwardedProto;
                xfh_kept |= kind == Name::XForwardedHost;
                put_line(out, name, value);
            }
        }
    });
    if let Some(ip) = rewrite.forwarded_for {
        if !xff_kept {
            let _ = write!(out, "x-forwarded-for: {}\r\n", ip.to_canonical());
        }
        if !xfp_kept {
            out.extend_from_slice(b"x-forwarded-proto: http\r\n");
        }
        if let Some(client_host) = client_host.filter(|_| !xfh_kept) {
            put_line(out, b"x-forwarded-host", client_host);
        }
    }
    if let Some(traceparent) = rewrite.traceparent.filter(|_| !traceparent_written) {
        put_line(out, b"traceparent", traceparent);
    }
    if !host_written {
        put_line(out, b"host", host);
    }
    if rewrite.chunked {
        let name = spelling(
            buf,
            &head.lines,
            Name::TransferEncoding,
            b"transfer-encoding",
        );
        put_line(out, name, b"chunked");
    }
    out.extend_from_slice(b"\r\n");
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
    forwarded_lines(buf, &head.lines, &head.fields, |line, value| {
        put_line(out, line.name.of(buf), value);
    });
    if rewrite.chunked {
        let name = spelling(
            buf,
            &head.lines,
            Name::TransferEncoding,
            b"transfer-encoding",
        );
        put_line(out, name, b"chunked");
    }
    if let Some(connection) = rewrite.connection {
        let name = spelling(buf, &head.lines, Name::Connection, b"connection");
        put_line(out, name, connection);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::head::Parsed;

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
            connection: Some(b"keep-alive"),
        };
        write_response(text, &head, &rewrite, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.0 201 Created Here\r\nServer: nginx\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}

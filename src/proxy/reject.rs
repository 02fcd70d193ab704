//! Requests the proxy refuses itself, before anything is forwarded: the
//! checks an HTTP/1 request head must pass beyond what hyper's parser
//! already enforces (RFC 9112 §3.2 `Host`, §6.1 transfer codings), the bounded set of reasons
//! (the `reason` label of `waybill_requests_rejected_total`) and the
//! response for each: the status, one plain-text line naming the reason,
//! then the client connection is closed.
//!
//! A rejected request reaches no upstream and is no [`Exchange`](super::Exchange):
//! there is nothing to correlate; the counter is its record. One reason is
//! found later, by the forwarder: a request body that fails while it
//! streams (`body`); its head has gone upstream, but never a whole request.
//!
//! HTTP/2 requests are not checked here: they carry the host as
//! `:authority`, which h2 validates as part of the request URI.

use http::header::{self, HeaderValue};
use http::{request, Response, StatusCode, Version};

use super::body::ProxyBody;
use super::error::plain_response;
use super::headers::has_unknown_transfer_coding;

/// Why the proxy refused a request: a bounded set, safe as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rejection {
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    HostMissing,
    /// More than one `Host` field line (RFC 9112 §3.2).
    HostDuplicate,
    /// A `Host`, or an absolute-form target's authority, that is not
    /// `host[:port]` (RFC 9112 §3.2, RFC 9110 §7.2).
    HostInvalid,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    TransferCoding,
    /// The request body turned out malformed (a bad chunk) or ended
    /// before its declared end while it was streaming to the upstream: found after the head was forwarded, so
    /// the upstream got the head and a valid prefix, never a whole request.
    Body,
}

impl Rejection {
    /// Every reason, in declaration order.
    pub(crate) const ALL: [Rejection; 5] = [
        Rejection::HostMissing,
        Rejection::HostDuplicate,
        Rejection::HostInvalid,
        Rejection::TransferCoding,
        Rejection::Body,
    ];

    /// Its position in [`Rejection::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::HostMissing => "host_missing",
            Rejection::HostDuplicate => "host_duplicate",
            Rejection::HostInvalid => "host_invalid",
            Rejection::TransferCoding => "transfer_coding",
            Rejection::Body => "body",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Rejection::HostMissing
            | Rejection::HostDuplicate
            | Rejection::HostInvalid
            | Rejection::Body => StatusCode::BAD_REQUEST,
            Rejection::TransferCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Rejection::HostMissing => "waybill: the request has no Host\n",
            Rejection::HostDuplicate => "waybill: the request has more than one Host\n",
            Rejection::HostInvalid => "waybill: the request's Host is not a valid host[:port]\n",
            Rejection::TransferCoding => {
                "waybill: transfer codings other than chunked are not implemented\n"
            }
            Rejection::Body => "waybill: the request body is malformed or cut short\n",
        }
    }

    /// The answer to the client, in its HTTP `version`; the connection
    /// closes after it (the rest of the request is not read).
    pub(crate) fn response(self, version: Version) -> Response<ProxyBody> {
        let mut response = plain_response(self.status(), self.message(), version);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Checks an HTTP/1 request head; HTTP/2 heads pass unchecked.
pub(crate) fn check(parts: &request::Parts) -> Result<(), Rejection> {
    if parts.version != Version::HTTP_10 && parts.version != Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next().map(HeaderValue::as_bytes);
    let host_lines = usize::from(host.is_some()) + hosts.count();
    check_fields(&Http1Fields {
        http11: parts.version == Version::HTTP_11,
        host,
        host_lines,
        unknown_coding: has_unknown_transfer_coding(&parts.headers),
        authority: parts.uri.authority().map(|a| a.as_str().as_bytes()),
    })
}

/// What the checks read from an HTTP/1 request head, however it was parsed
/// (hyper's `Parts`, or the native engine's codec).
pub(crate) struct Http1Fields<'a> {
    pub(crate) http11: bool,
    /// The first `Host` value, and how many `Host` lines there were.
    pub(crate) host: Option<&'a [u8]>,
    pub(crate) host_lines: usize,
    /// A transfer coding other than `chunked` (and `identity`).
    pub(crate) unknown_coding: bool,
    /// An absolute-form target's authority.
    pub(crate) authority: Option<&'a [u8]>,
}

/// The checks, in the order they are reported.
pub(crate) fn check_fields(fields: &Http1Fields<'_>) -> Result<(), Rejection> {
    match (fields.host, fields.host_lines) {
        (Some(_), 2..) => return Err(Rejection::HostDuplicate),
        (Some(host), _) if !is_host(host) => return Err(Rejection::HostInvalid),
        (None, _) if fields.http11 => return Err(Rejection::HostMissing),
        _ => {}
    }
    if fields.unknown_coding {
        return Err(Rejection::TransferCoding);
    }
    // An absolute-form target's authority replaces `Host` (RFC 9112
    // §3.2.2), so it must be a host too (no userinfo).
    match fields.authority {
        Some(authority) if !is_host(authority) => Err(Rejection::HostInvalid),
        _ => Ok(()),
    }
}

/// `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a non-empty
/// reg-name or IPv4 address, or an IP literal in brackets, then an
/// optional port of digits.
fn is_host(value: &[u8]) -> bool {
    let (host_ok, rest) = match value.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(end) => (
                end > 0
                    && literal[..end]
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                &literal[end + 1..],
            ),
            None => (false, &b""[..]),
        },
        None => {
            // One pass: the reg-name ends at its first other byte, which
            // must then start the port.
            let end = value
                .iter()
                .position(|&b| !REG_NAME[usize::from(b)])
                .unwrap_or(value.len());
            (end > 0, value.get(end..).unwrap_or_default())
        }
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// unreserved, sub-delims and `%` of pct-encoded (RFC 3986 §3.2.2), as a
/// table (one load per byte): it runs on every HTTP/1 request's `Host`.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'_' | b'~'
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b'%');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_ports_and_ip_literals_are_valid() {
        for host in [
            "h",
            "erp.example:8080",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "h:",
        ] {
            assert!(is_host(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn a_host_is_a_reg_name_then_a_port_whatever_byte_stands_anywhere() {
        // Every byte at every place of a name with a port: valid exactly
        // when the part before the first colon is all reg-name bytes and
        // the rest, if any, is a colon and digits.
        let by_parts = |value: &[u8]| match value.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (name, port) = value.split_at(colon);
                !name.is_empty()
                    && name.iter().all(|&b| REG_NAME[usize::from(b)])
                    && port[1..].iter().all(u8::is_ascii_digit)
            }
            None => !value.is_empty() && value.iter().all(|&b| REG_NAME[usize::from(b)]),
        };
        let base = b"erp.example:8080";
        for at in 0..base.len() {
            for b in 0..=255u8 {
                let mut value = base.to_vec();
                value[at] = b;
                assert_eq!(is_host(&value), by_parts(&value), "{value:?}");
            }
        }
        let unreserved = (0..=255u8).filter(|&b| REG_NAME[usize::from(b)]).count();
        assert_eq!(unreserved, 26 * 2 + 10 + 4 + 11 + 1);
    }

    #[test]
    fn paths_userinfo_and_bad_ports_are_not_hosts() {
        for host in [
            "", "h/x", "u@h", "h:80x", ":80", "[::1", "[]", "[::1]x", "h h", "h:1:2",
        ] {
            assert!(!is_host(host.as_bytes()), "{host}");
        }
    }

    fn head(request: &str) -> request::Parts {
        let mut builder = http::Request::builder();
        let mut lines = request.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        builder = builder.uri(first.nth(1).unwrap_or("/"));
        builder = builder.version(match first.next() {
            Some("HTTP/1.0") => Version::HTTP_10,
            Some("HTTP/2") => Version::HTTP_2,
            _ => Version::HTTP_11,
        });
        for line in lines {
            if let Some((name, value)) = line.split_once(": ") {
                builder = builder.header(name, value);
            }
        }
        let (parts, ()) = builder
            .body(())
            .map(http::Request::into_parts)
            .unwrap_or_else(|error| panic!("{request}: {error}"));
        parts
    }

    #[test]
    fn host_rules_follow_rfc_9112() {
        let cases = [
            ("GET / HTTP/1.1\nHost: h", Ok(())),
            ("GET / HTTP/1.0", Ok(())),
            ("GET / HTTP/2", Ok(())),
            ("GET / HTTP/1.1", Err(Rejection::HostMissing)),
            (
                "GET / HTTP/1.1\nHost: h\nHost: h",
                Err(Rejection::HostDuplicate),
            ),
            ("GET / HTTP/1.0\nHost: h/x", Err(Rejection::HostInvalid)),
            ("GET http://o.example/ HTTP/1.1\nHost: h", Ok(())),
            (
                "GET http://u@o/ HTTP/1.1\nHost: h",
                Err(Rejection::HostInvalid),
            ),
            (
                "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked",
                Ok(()),
            ),
            (
                "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: gzip, chunked",
                Err(Rejection::TransferCoding),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(check(&head(request)), expected, "{request}");
        }
    }

    #[test]
    fn reason_indexes_match_the_label_table() {
        for (i, reason) in Rejection::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}

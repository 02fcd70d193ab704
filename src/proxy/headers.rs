//! Header rules between the two hops: which headers belong to one
//! connection only (and are therefore not forwarded), what the forwarded
//! `Host` is, and the optional `X-Forwarded-*` headers.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1), removed in both directions:
//! `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`,
//! `Transfer-Encoding`, `Upgrade`, and `TE` unless it asks for `trailers`
//! (then it is forwarded as `TE: trailers`, the one value HTTP/2 allows).
//! Removal keeps the order of the remaining headers.
//!
//! `Proxy-Authorization` and `Proxy-Authenticate` *are* forwarded: the
//! sidecar authenticates no one, so credentials meant for a proxy are not
//! its to consume, and a transparent sidecar must not break a proxy chain
//! behind it.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use super::h1::{lists_trailers, tokens};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Names (lower case) of the headers that are hop-by-hop whether or not
/// `Connection` names them (`TE` is handled apart): `Keep-Alive` is RFC
/// 2068's, `Proxy-Connection` non-standard, sent by old clients. The one
/// list for both HTTP/1 paths: this module's and the codec's
/// ([`h1`](super::h1)).
pub(crate) const ALWAYS_HOP_BY_HOP_NAMES: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

const ALWAYS_HOP_BY_HOP: [HeaderName; 5] = [
    HeaderName::from_static(ALWAYS_HOP_BY_HOP_NAMES[0]),
    HeaderName::from_static(ALWAYS_HOP_BY_HOP_NAMES[1]),
    HeaderName::from_static(ALWAYS_HOP_BY_HOP_NAMES[2]),
    HeaderName::from_static(ALWAYS_HOP_BY_HOP_NAMES[3]),
    HeaderName::from_static(ALWAYS_HOP_BY_HOP_NAMES[4]),
];

/// Removes the hop-by-hop headers from `headers`, keeping the order of the
/// others. Does not allocate when there is nothing to remove.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names, no hashing: a head without `TE` and without
    // any of the always hop-by-hop headers (`Connection` among them, which
    // alone can name others) has nothing to remove.
    let (mut any_hop, mut has_te) = (false, false);
    for name in headers.keys() {
        if name == header::TE {
            has_te = true;
        } else if ALWAYS_HOP_BY_HOP.contains(name) {
            any_hop = true;
        }
    }
    if !any_hop && !has_te {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        named.extend(
            tokens(value.as_bytes())
                // `keep-alive` and the like go anyway: no name to parse.
                .filter(|token| {
                    !ALWAYS_HOP_BY_HOP
                        .iter()
                        .any(|always| token.eq_ignore_ascii_case(always.as_str().as_bytes()))
                })
                .filter_map(|token| HeaderName::from_bytes(token).ok()),
        );
    }
    let te = if has_te { te_to_forward(headers) } else { None };
    let te_changes = has_te
        && match (&te, headers.get(header::TE)) {
            (None, None) => false,
            (Some(keep), Some(current)) => {
                keep != current || headers.get_all(header::TE).iter().count() > 1
            }
            _ => true,
        };
    let drops = |name: &HeaderName| ALWAYS_HOP_BY_HOP.contains(name) || named.contains(name);
    if !te_changes {
        // The common case: the hop-by-hop headers come last (an nginx
        // upstream ends its head with `Connection`). Removing the last
        // entry keeps the others in order, without building a new map.
        while let Some(last) = headers.keys().last().filter(|name| drops(name)).cloned() {
            headers.remove(&last);
        }
        if !headers.keys().any(drops) {
            return;
        }
    }

    let mut kept = HeaderMap::with_capacity(headers.len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in std::mem::take(headers) {
        // `into_iter` names each header once, then yields its further values
        // with `None`.
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = &current else { continue };
        if name == header::TE {
            if let Some(te) = &te {
                if !kept.contains_key(header::TE) {
                    kept.insert(header::TE, te.clone());
                }
            }
            continue;
        }
        if !drops(name) {
            kept.append(name.clone(), value);
        }
    }
    *headers = kept;
}

/// The `TE` header to forward: the client's own when it is exactly
/// `trailers`, a plain `trailers` when it lists trailers among others,
/// nothing otherwise.
fn te_to_forward(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut wants_trailers = false;
    for value in headers.get_all(header::TE) {
        if value.as_bytes().eq_ignore_ascii_case(b"trailers") {
            return Some(value.clone());
        }
        let Ok(value) = value.to_str() else { continue };
        wants_trailers |= lists_trailers(value.as_bytes());
    }
    wants_trailers.then(|| HeaderValue::from_static("trailers"))
}

/// Whether `headers` list a transfer coding other than `chunked` (and the
/// no-op `identity`): one the proxy cannot decode, which would vanish
/// with the hop-by-hop `Transfer-Encoding` and leave the other side
/// taking coded bytes for the content (RFC 9112 §6.1).
pub(crate) fn has_unknown_transfer_coding(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|value| {
            tokens(value.as_bytes()).any(|coding| {
                !coding.eq_ignore_ascii_case(b"chunked")
                    && !coding.eq_ignore_ascii_case(b"identity")
            })
        })
}

/// Adds the `X-Forwarded-*` headers for a request from `client_ip` that
/// asked for `host` over plain HTTP (the sidecar does not terminate TLS):
/// appends the client address to the last `X-Forwarded-For` value (or adds
/// the header), sets `X-Forwarded-Proto: http` and `X-Forwarded-Host` only
/// when the client did not send them.
pub(crate) fn append_forwarded(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
) {
    let ip = client_ip.to_canonical().to_string();
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            if let Ok(value) = HeaderValue::from_str(&ip) {
                entry.insert(value);
            }
        }
        Entry::Occupied(mut entry) => {
            if let Some(last) = entry.iter_mut().last() {
                let mut joined = Vec::with_capacity(last.len() + 2 + ip.len());
                joined.extend_from_slice(last.as_bytes());
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(ip.as_bytes());
                if let Ok(value) = HeaderValue::from_bytes(&joined) {
                    *last = value;
                }
            }
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host {
        if !headers.contains_key(X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        headers.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn headers_named_by_connection_are_removed_and_order_kept() {
        let mut headers = map(&[
            ("accept", "*/*"),
            ("connection", "x-custom, keep-alive"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("content-type", "text/plain"),
            ("x-other", "a"),
            ("x-other", "b"),
            ("transfer-encoding", "chunked"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            names(&headers),
            ["accept", "content-type", "x-other", "x-other"]
        );
        let others: Vec<_> = headers.get_all("x-other").iter().collect();
        assert_eq!(others, ["a", "b"]);
    }

    #[test]
    fn hop_by_hop_headers_at_the_end_are_removed_and_order_kept() {
        let mut headers = map(&[
            ("server", "nginx"),
            ("x-other", "a"),
            ("content-type", "application/json"),
            ("x-other", "b"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "1"),
            ("connection", "keep-alive, x-custom"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            names(&headers),
            ["server", "x-other", "x-other", "content-type"]
        );
        let others: Vec<_> = headers.get_all("x-other").iter().collect();
        assert_eq!(others, ["a", "b"]);
    }

    #[test]
    fn a_head_without_hop_by_hop_headers_is_left_as_it_is() {
        let pairs = [
            ("host", "erp.example"),
            ("x-other", "a"),
            ("content-type", "application/json"),
            ("x-other", "b"),
            ("trailer", "x-checksum"),
        ];
        let mut headers = map(&pairs);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, map(&pairs));
        assert_eq!(
            names(&headers),
            ["host", "x-other", "x-other", "content-type", "trailer"]
        );
    }

    #[test]
    fn te_is_reduced_to_trailers_or_removed() {
        let mut headers = map(&[("te", "trailers, deflate;q=0.5")]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            headers.get("te").map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );

        let mut headers = map(&[("te", "deflate")]);
        strip_hop_by_hop(&mut headers);
        assert!(headers.get("te").is_none());

        let mut headers = map(&[("te", "trailers"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["te", "accept"]);
    }

    #[test]
    fn only_chunked_and_identity_are_known_transfer_codings() {
        for (codings, unknown) in [
            (&["chunked"][..], false),
            (&["identity, CHUNKED"], false),
            (&["chunked", " chunked "], false),
            (&["gzip, chunked"], true),
            (&["chunked", "gzip"], true),
            (&["chunked;q=1"], true),
        ] {
            let mut headers = HeaderMap::new();
            for coding in codings {
                headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static(coding));
            }
            assert_eq!(
                has_unknown_transfer_coding(&headers),
                unknown,
                "{codings:?}"
            );
        }
        assert!(!has_unknown_transfer_coding(&HeaderMap::new()));
    }

    #[test]
    fn proxy_authorization_is_forwarded() {
        let mut headers = map(&[
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["proxy-authorization"]);
    }

    #[test]
    fn forwarded_for_appends_to_the_last_value() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let ip: IpAddr = [192, 0, 2, 7].into();
        append_forwarded(
            &mut headers,
            ip,
            Some(&HeaderValue::from_static("erp.example")),
        );
        let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values, ["10.0.0.1", "10.0.0.2, 192.0.2.7"]);
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "erp.example");
    }

    #[test]
    fn forwarded_headers_the_client_set_are_kept() {
        let mut headers = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "a.example"),
        ]);
        let ip: IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
        append_forwarded(
            &mut headers,
            ip,
            Some(&HeaderValue::from_static("b.example")),
        );
        assert_eq!(headers["x-forwarded-for"], "::1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "a.example");
    }
}

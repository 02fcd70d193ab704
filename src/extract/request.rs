//! Key sources in the request head: a header, a query parameter, a path
//! parameter of the matched route's template.
//!
//! - Header: the first value of the header, trimmed. Header values are
//!   bytes; one that is not UTF-8 is [`Problem::InvalidUtf8`].
//! - Query: every value of the parameter (`?order=A&order=B` gives two
//!   keys), form-url-decoded (`+` is a space, `%XX` a byte). A value whose
//!   decoded bytes are not UTF-8 is [`Problem::InvalidUtf8`].
//! - Path parameter: the raw segment, percent-decoded. Matching happens on
//!   the raw path, so `%2F` inside a parameter stays in its value as `/`
//!   and never splits the segment; `+` stays a plus.

use std::borrow::Cow;

use http::HeaderName;
use percent_encoding::percent_decode_str;

use super::Problem;
use crate::config::KeySource;
use crate::proxy::Headers;

/// The first value of header `name`, trimmed.
pub(super) fn header<'h>(
    headers: &'h Headers,
    name: &HeaderName,
) -> Result<Option<&'h str>, Problem> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    std::str::from_utf8(value.as_bytes())
        .map(|v| Some(v.trim()))
        .map_err(|_| Problem::InvalidUtf8)
}

/// Every value of query parameter `name` in `query`, form-url-decoded.
/// A value that is not UTF-8 once decoded is skipped and reported.
pub(super) fn query<'q>(
    query: &'q str,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Cow<'q, str>> {
    let mut values = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        match form_decode(raw_name) {
            Ok(decoded) if decoded == name => {}
            Ok(_) => continue,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        }
        match form_decode(raw_value) {
            Ok(value) => values.push(value),
            Err(problem) => problems.push(problem),
        }
    }
    values
}

/// A path parameter value, percent-decoded. Most have no escape at all:
/// those are the raw text itself, already UTF-8, with no decoding pass.
pub(super) fn path_param(raw: &str) -> Result<Cow<'_, str>, Problem> {
    if !raw.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Problem::InvalidUtf8)
}

/// The first non-empty value `source` reads from a request head, as
/// extraction reads it: `headers`, the raw `query` string, and the raw
/// `params` of the route's path template. `None` for a body source, a
/// value that is absent, empty or unreadable. For whoever needs a key
/// before the exchange exists (trace context propagation).
pub fn head_value<'a>(
    source: &KeySource,
    headers: &'a Headers,
    query: &'a str,
    params: &[&'a str],
) -> Option<Cow<'a, str>> {
    let value = match source {
        KeySource::Header(name) => header(headers, name).ok()?.map(Cow::Borrowed),
        KeySource::Query(name) => self::query(query, name, &mut Vec::new())
            .into_iter()
            .find(|v| !v.is_empty()),
        KeySource::PathParam { index, .. } => path_param(params.get(*index)?).ok(),
        _ => None,
    }?;
    (!value.is_empty()).then_some(value)
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
pub(super) fn form_decode(raw: &str) -> Result<Cow<'_, str>, Problem> {
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        percent_decode_str(&spaced)
            .decode_utf8()
            .map(|v| Cow::Owned(v.into_owned()))
            .map_err(|_| Problem::InvalidUtf8)
    } else {
        percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Problem::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_gives_the_first_value_trimmed() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-order-id", http::HeaderValue::from_static("  SO-1 "));
        headers.append("x-order-id", http::HeaderValue::from_static("SO-2"));
        let headers = Headers::from(headers);
        let name = HeaderName::from_static("x-order-id");
        assert_eq!(header(&headers, &name), Ok(Some("SO-1")));
        let absent = HeaderName::from_static("x-other");
        assert_eq!(header(&headers, &absent), Ok(None));
    }

    #[test]
    fn header_that_is_not_utf8_is_a_problem_but_utf8_text_is_read() {
        let mut headers = http::HeaderMap::new();
        let latin = http::HeaderValue::from_bytes(b"M\xFCller").expect("obs-text is allowed");
        headers.insert("x-bad", latin);
        let utf8 = http::HeaderValue::from_bytes("Müller".as_bytes()).expect("obs-text is allowed");
        headers.insert("x-good", utf8);
        let headers = Headers::from(headers);
        assert_eq!(
            header(&headers, &HeaderName::from_static("x-bad")),
            Err(Problem::InvalidUtf8)
        );
        assert_eq!(
            header(&headers, &HeaderName::from_static("x-good")),
            Ok(Some("Müller"))
        );
    }

    #[test]
    fn query_values_are_form_decoded_and_all_returned() {
        let mut problems = Vec::new();
        let values = query(
            "a=1&order=SO%2D1&x&order=SO+2&ord%65r=SO-3",
            "order",
            &mut problems,
        );
        assert_eq!(values, vec!["SO-1", "SO 2", "SO-3"]);
        assert!(problems.is_empty());
        assert!(query("order", "order", &mut problems) == vec![""]);
        assert!(query("", "order", &mut problems).is_empty());
    }

    #[test]
    fn query_value_that_is_not_utf8_is_skipped_and_reported() {
        let mut problems = Vec::new();
        let values = query("order=%FF&order=SO-1", "order", &mut problems);
        assert_eq!(values, vec!["SO-1"]);
        assert_eq!(problems, vec![Problem::InvalidUtf8]);
    }

    #[test]
    fn head_value_reads_header_query_and_path_param_but_no_body() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-order-id", http::HeaderValue::from_static(" SO-H "));
        let headers = Headers::from(headers);
        let header_rule = KeySource::Header(HeaderName::from_static("x-order-id"));
        let query_rule = KeySource::Query("order".into());
        let param_rule = KeySource::PathParam {
            name: "id".into(),
            index: 1,
        };
        let read = |rule| head_value(rule, &headers, "order=&order=SO%2DQ", &["x", "SO%2FP"]);
        assert_eq!(read(&header_rule).as_deref(), Some("SO-H"));
        assert_eq!(read(&query_rule).as_deref(), Some("SO-Q"));
        assert_eq!(read(&param_rule).as_deref(), Some("SO/P"));
        let body_rule = KeySource::Form {
            side: crate::config::Side::Request,
            field: "order".into(),
        };
        assert_eq!(read(&body_rule), None);
        assert_eq!(head_value(&query_rule, &headers, "other=1", &[]), None);
    }

    #[test]
    fn path_param_is_percent_decoded_and_keeps_plus_and_slash() {
        assert_eq!(path_param("SH%2F1+2").as_deref(), Ok("SH/1+2"));
        assert_eq!(path_param("%E2%82%AC").as_deref(), Ok("€"));
        assert_eq!(path_param("%FF").err(), Some(Problem::InvalidUtf8));
        // Without an escape the value is the raw text, not a copy.
        let plain = path_param("SO-0000104711+ü");
        assert!(
            matches!(plain, Ok(Cow::Borrowed("SO-0000104711+ü"))),
            "{plain:?}"
        );
    }
}

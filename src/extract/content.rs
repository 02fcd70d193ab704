//! Route conditions on the request's content: media type, SOAP action,
//! X12 transaction set or segment, EDIFACT message type or segment, a JSON
//! field's value. A route's conditions are checked only after its method
//! and path matched, cheapest first (headers before bodies), and stop at
//! the first that fails; bodies come from the exchange's [`Reading`], so a
//! body is decoded and parsed once however many routes look at it.
//!
//! A body that cannot be read satisfies no condition (the route does not
//! match), and its problem is reported with the observation.

use http::HeaderName;

use crate::proxy::Headers;

use crate::config::{Condition, Side};

use super::body::{content_type_param, media_type};
use super::json::JsonPaths;
use super::plan::RoutePlan;
use super::reading::Reading;

/// True when every condition holds for the exchange's request; `plan`
/// holds the route's compiled JSON condition paths.
pub(super) fn all_hold(
    conditions: &[Condition],
    plan: &RoutePlan,
    reading: &mut Reading<'_>,
) -> bool {
    let reads_body =
        |c: &Condition| !matches!(c, Condition::ContentType(_) | Condition::SoapAction(_));
    // Header conditions first, then body ones.
    let mut ordered = conditions
        .iter()
        .enumerate()
        .filter(|(_, c)| !reads_body(c))
        .chain(conditions.iter().enumerate().filter(|(_, c)| reads_body(c)));
    ordered.all(|(index, condition)| holds(condition, plan.condition(index), reading))
}

fn holds(condition: &Condition, json: Option<&JsonPaths>, reading: &mut Reading<'_>) -> bool {
    let side = Side::Request;
    match condition {
        Condition::ContentType(wanted) => reading
            .headers(side)
            .and_then(media_type)
            .is_some_and(|media| media == *wanted),
        Condition::SoapAction(wanted) => reading
            .headers(side)
            .is_some_and(|headers| soap_action(headers).as_deref() == Some(wanted)),
        Condition::X12Set(id) => reading
            .x12(side)
            .is_some_and(|(document, _)| document.kinds.contains(id)),
        Condition::X12Segment(address) => reading
            .x12(side)
            .is_some_and(|(document, body)| document.contains(body, address)),
        Condition::EdifactMessage(kind) => reading
            .edifact(side)
            .is_some_and(|(document, _)| document.kinds.contains(kind)),
        Condition::EdifactSegment(address) => reading
            .edifact(side)
            .is_some_and(|(document, body)| document.contains(body, address)),
        Condition::Json { value, .. } => {
            json.is_some_and(|paths| reading.json_equals(side, paths, value))
        }
    }
}

/// The SOAP 1.1 header, made once (see `soap_action`).
const SOAP_ACTION: HeaderName = HeaderName::from_static("soapaction");

/// The SOAP 1.1 `SOAPAction` header (quotes removed), else the SOAP 1.2
/// `action` parameter of `Content-Type`.
fn soap_action(headers: &Headers) -> Option<String> {
    let header = headers
        .get(&SOAP_ACTION)
        .and_then(|v| v.to_str())
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty());
    header.or_else(|| content_type_param(headers, "action").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soap_action_comes_from_the_header_or_the_content_type() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static(
                "application/soap+xml; charset=utf-8; action=\"urn:Confirm\"",
            ),
        );
        let read = |headers: &http::HeaderMap| soap_action(&Headers::from(headers.clone()));
        assert_eq!(read(&headers).as_deref(), Some("urn:Confirm"));
        headers.insert(
            "soapaction",
            http::HeaderValue::from_static("\"urn:Other\""),
        );
        assert_eq!(read(&headers).as_deref(), Some("urn:Other"));
    }
}

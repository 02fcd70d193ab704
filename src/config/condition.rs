//! Reading the content conditions of a route's `match:` (`content_type`,
//! `soap_action`, `x12`, `x12_segment`, `edifact`, `edifact_segment`,
//! `json`) into [`Condition`]s. Each is checked at load time so that at
//! run time a condition is a comparison, never a string to interpret.

use super::{Condition, EdiAddress, EdiSyntax, JsonPath};

impl Condition {
    /// `content_type: application/edi-x12`: a `type/subtype` media type;
    /// parameters are refused (they are ignored when matching).
    pub fn content_type(text: &str) -> Result<Condition, String> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match text.split_once('/') {
            Some((kind, subtype)) if token(kind) && token(subtype) => {
                Ok(Condition::ContentType(text.to_ascii_lowercase()))
            }
            _ => Err(format!(
                "invalid media type `{text}`; expected `type/subtype` without parameters, e.g. `application/edi-x12` or `text/xml`"
            )),
        }
    }

    /// `soap_action: http://sap.com/xi/…`: any non-empty text, quotes removed.
    pub fn soap_action(text: &str) -> Result<Condition, String> {
        let action = text.trim().trim_matches('"');
        if action.is_empty() {
            return Err(
                "a SOAP action must not be empty; expected the action URI, e.g. `urn:sap-com:document:sap:rfc:functions:DeliveryConfirm`".to_owned(),
            );
        }
        Ok(Condition::SoapAction(action.to_owned()))
    }

    /// `x12: "214"`: a transaction set id of three digits.
    pub fn x12_set(text: &str) -> Result<Condition, String> {
        if text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Condition::X12Set(text.to_owned()))
        } else {
            Err(format!(
                "invalid X12 transaction set id `{text}`; expected three digits, e.g. `\"214\"` (shipment status) or `\"856\"` (ship notice)"
            ))
        }
    }

    /// `edifact: IFTSTA`: a message type of up to six upper-case letters.
    pub fn edifact_message(text: &str) -> Result<Condition, String> {
        if (1..=6).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Condition::EdifactMessage(text.to_owned()))
        } else {
            Err(format!(
                "invalid EDIFACT message type `{text}`; expected up to six upper-case letters, e.g. `IFTSTA`, `DESADV` or `INVOIC`"
            ))
        }
    }

    /// `x12_segment: AT7*D1` or `edifact_segment: STS+1+21`.
    pub fn segment(text: &str, syntax: EdiSyntax) -> Result<Condition, String> {
        let address = EdiAddress::parse(text, syntax, false)?;
        Ok(match syntax {
            EdiSyntax::X12 => Condition::X12Segment(address),
            EdiSyntax::Edifact => Condition::EdifactSegment(address),
        })
    }

    /// `json: $.event == tracker.updated`.
    pub fn json(text: &str) -> Result<Condition, String> {
        let Some((path, value)) = text.split_once("==") else {
            return Err(format!(
                "invalid JSON condition `{text}`; expected `PATH == VALUE`, e.g. `$.event == tracker.updated`"
            ));
        };
        let path = JsonPath::parse(path.trim())?;
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value);
        if unquoted.is_empty() {
            return Err(format!(
                "invalid JSON condition `{text}`: the value after `==` is empty; expected e.g. `$.event == tracker.updated`"
            ));
        }
        Ok(Condition::Json {
            path,
            value: unquoted.to_owned(),
        })
    }

    /// The field name in the routes file, for messages.
    pub fn field(&self) -> &'static str {
        match self {
            Condition::ContentType(_) => "content_type",
            Condition::SoapAction(_) => "soap_action",
            Condition::X12Set(_) => "x12",
            Condition::X12Segment(_) => "x12_segment",
            Condition::EdifactMessage(_) => "edifact",
            Condition::EdifactSegment(_) => "edifact_segment",
            Condition::Json { .. } => "json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_condition_splits_path_and_value_and_unquotes_it() {
        let condition = Condition::json("$.event == 'tracker.updated'").expect("valid");
        let Condition::Json { path, value } = condition else {
            panic!("json condition");
        };
        assert_eq!(path.text, "$.event");
        assert_eq!(value, "tracker.updated");
        assert!(Condition::json("$.event = x")
            .expect_err("no ==")
            .contains("expected `PATH == VALUE`"));
        assert!(Condition::json("$..event == x")
            .expect_err("bad path")
            .contains("recursive descent"));
        assert!(Condition::json("$.event == \"\"")
            .expect_err("empty")
            .contains("the value after `==` is empty"));
    }

    #[test]
    fn media_types_set_ids_and_message_types_are_checked() {
        assert_eq!(
            Condition::content_type("Application/EDI-X12"),
            Ok(Condition::ContentType("application/edi-x12".into()))
        );
        assert!(Condition::content_type("text/xml; charset=utf-8").is_err());
        assert!(Condition::x12_set("214").is_ok());
        assert!(Condition::x12_set("21").is_err());
        assert!(Condition::edifact_message("IFTSTA").is_ok());
        assert!(Condition::edifact_message("iftsta").is_err());
        assert!(Condition::soap_action(" \"\" ").is_err());
    }
}

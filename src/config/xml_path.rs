//! Reading the XML paths of key rules: `/Envelope/Body/Delivery/DeliveryDocument`
//! (the text of every element at that path) or `/Delivery/Item/@number`
//! (an attribute of every such element).
//!
//! Steps are element names matched by **local name**: a namespace prefix
//! written in the path (`/soapenv:Envelope`) is dropped at load time, and
//! prefixes and default namespaces in the document are ignored, so a path
//! does not depend on which prefix a sender chose. `*` matches any one
//! element. Descendant search (`//`), predicates (`[1]`, `[@a='b']`) and
//! functions are refused with a message saying what is supported.

use super::{XmlPath, XmlStep};

/// Deepest element nesting extraction follows (and so the longest path
/// that can ever match). SOAP and SAP IDoc documents stay within a few
/// dozen levels; the bound keeps a hostile `<a><a><a>…` cheap.
pub const MAX_XML_DEPTH: usize = 256;

/// What the supported syntax is, appended to every message.
const SUPPORTED: &str =
    "supported: `/Element/Child` (local names, prefixes ignored), `*` for any element, a final `/@attribute`";

impl XmlPath {
    /// Parses a path such as `/Envelope/Body/Delivery/@id`.
    pub fn parse(text: &str) -> Result<XmlPath, String> {
        let fail = |why: String| format!("invalid XML path `{text}`: {why}; {SUPPORTED}");
        let Some(rest) = text.strip_prefix('/') else {
            return Err(fail(
                "it must start with `/` at the document element".to_owned(),
            ));
        };
        let mut steps = Vec::new();
        let mut attribute = None;
        let pieces: Vec<&str> = rest.split('/').collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            if piece.is_empty() {
                let why = if last {
                    "it ends with `/`; name the element whose text is the key".to_owned()
                } else {
                    "descendant search `//` is not supported, write every step".to_owned()
                };
                return Err(fail(why));
            }
            if let Some(name) = piece.strip_prefix('@') {
                if !last {
                    return Err(fail(format!("attribute `{piece}` must be the last step")));
                }
                if steps.is_empty() {
                    return Err(fail(
                        "an attribute needs an element before it, e.g. `/Delivery/@id`".to_owned(),
                    ));
                }
                attribute = Some(local_name(name).map_err(fail)?);
                continue;
            }
            if *piece == "*" {
                steps.push(XmlStep::Any);
                continue;
            }
            if piece.contains(['[', ']', '(', ')', '=']) {
                return Err(fail(format!(
                    "predicates and functions (`{piece}`) are not supported"
                )));
            }
            steps.push(XmlStep::Name(local_name(piece).map_err(fail)?));
        }
        if steps.len() > MAX_XML_DEPTH {
            return Err(fail(format!(
                "it is {} steps deep; extraction follows at most {MAX_XML_DEPTH} levels",
                steps.len()
            )));
        }
        Ok(XmlPath {
            text: text.to_owned(),
            steps,
            attribute,
        })
    }
}

/// The local part of `prefix:name`, checked to be an XML name.
fn local_name(written: &str) -> Result<String, String> {
    let local = match written.split_once(':') {
        Some((prefix, local)) if is_name(prefix) => local,
        Some(_) => return Err(format!("`{written}` is not an XML name")),
        None => written,
    };
    if is_name(local) {
        Ok(local.to_owned())
    } else {
        Err(format!("`{written}` is not an XML name"))
    }
}

/// An XML NCName: a letter or `_` first, then letters, digits, `-`, `.`, `_`.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &XmlPath) -> Vec<String> {
        path.steps
            .iter()
            .map(|s| match s {
                XmlStep::Name(n) => n.clone(),
                XmlStep::Any => "*".to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_path_keeps_local_names_and_drops_prefixes() {
        let path = XmlPath::parse("/soapenv:Envelope/Body/*/n0:DeliveryDocument").expect("valid");
        assert_eq!(names(&path), ["Envelope", "Body", "*", "DeliveryDocument"]);
        assert_eq!(path.attribute, None);
    }

    #[test]
    fn a_final_attribute_step_names_the_attribute() {
        let path = XmlPath::parse("/Delivery/Item/@xsi:number").expect("valid");
        assert_eq!(names(&path), ["Delivery", "Item"]);
        assert_eq!(path.attribute.as_deref(), Some("number"));
    }

    #[test]
    fn unsupported_xpath_forms_are_refused_with_the_reason() {
        for (text, why) in [
            ("Envelope/Body", "must start with `/`"),
            ("//DeliveryDocument", "descendant search `//`"),
            ("/a/b/", "ends with `/`"),
            ("/a/@id/b", "must be the last step"),
            ("/@id", "needs an element before it"),
            ("/a/b[1]", "predicates and functions (`b[1]`)"),
            ("/a/1b", "`1b` is not an XML name"),
        ] {
            let message = XmlPath::parse(text).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
            assert!(message.ends_with(SUPPORTED), "{message}");
        }
    }
}

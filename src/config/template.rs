//! Reading path templates (`/v2/shipments/{shipment_id}/buy`) and deciding
//! which of two templates is more specific. At the first segment where one
//! template has a literal and the other a `{param}`, the literal wins; two
//! templates with the same shape (`/a/{x}` and `/a/{y}`) tie, which the
//! validator reports as an overlap when their methods can coincide.

use std::cmp::Ordering;

use super::{PathTemplate, Segment};

impl PathTemplate {
    /// Parses a template: it starts with `/`, segments are literals or whole
    /// `{name}` params with unique, non-empty names. A trailing `/` is
    /// ignored, as it is when matching.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let invalid = |why: String| format!("invalid path template `{text}`: {why}");
        let Some(rest) = text.strip_prefix('/') else {
            return Err(invalid(
                "it must start with `/`, e.g. `/v2/orders/{order_id}`".into(),
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        if rest.is_empty() {
            return Ok(PathTemplate {
                text: text.to_owned(),
                segments,
            });
        }
        for piece in rest.split('/') {
            segments.push(parse_segment(piece).map_err(invalid)?);
        }
        let params: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        for (i, name) in params.iter().enumerate() {
            if params[..i].contains(name) {
                return Err(invalid(format!(
                    "parameter `{{{name}}}` appears twice; give each a distinct name"
                )));
            }
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            segments,
        })
    }

    /// Orders templates by matching priority: `Less` means `self` is tried
    /// first. Compares segment kinds left to right (a literal before a
    /// param); only templates whose kinds are all equal compare `Equal`.
    pub fn specificity(&self, other: &PathTemplate) -> Ordering {
        let kinds = |t: &PathTemplate| {
            t.segments
                .iter()
                .map(|s| matches!(s, Segment::Param(_)))
                .collect::<Vec<_>>()
        };
        kinds(self).cmp(&kinds(other))
    }

    /// True when some path matches both templates and neither is more
    /// specific than the other: the templates have the same shape and the
    /// same literals.
    pub fn ties_with(&self, other: &PathTemplate) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }

    /// Index of `{name}` among the template's params.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params().position(|param| param == name)
    }
}

fn parse_segment(piece: &str) -> Result<Segment, String> {
    if piece.is_empty() {
        return Err("empty segment `//`".into());
    }
    let Some(inner) = piece.strip_prefix('{') else {
        if piece.contains(['{', '}']) {
            return Err(format!("unbalanced or misplaced brace in `{piece}`; a parameter is a whole segment like `{{id}}`"));
        }
        return Ok(Segment::Literal(piece.to_owned()));
    };
    let Some(name) = inner.strip_suffix('}') else {
        return Err(format!(
            "unbalanced brace in `{piece}`; a parameter is a whole segment like `{{id}}`"
        ));
    };
    if name.is_empty() {
        return Err("empty parameter name `{}`".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "parameter name `{name}` may hold only letters, digits and `_`"
        ));
    }
    Ok(Segment::Param(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PathTemplate {
        PathTemplate::parse(text).expect("valid template")
    }

    #[test]
    fn a_template_reads_literals_and_params_and_ignores_a_trailing_slash() {
        let t = parse("/v2/shipments/{shipment_id}/buy/");
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("v2".into()),
                Segment::Literal("shipments".into()),
                Segment::Param("shipment_id".into()),
                Segment::Literal("buy".into()),
            ]
        );
        assert_eq!(t.text, "/v2/shipments/{shipment_id}/buy/");
        assert_eq!(t.param_index("shipment_id"), Some(0));
        assert_eq!(t.matches("/v2/shipments/SH-1/buy"), Some(vec!["SH-1"]));
    }

    #[test]
    fn the_root_template_matches_only_the_root() {
        let t = parse("/");
        assert!(t.segments.is_empty());
        assert_eq!(t.matches("/"), Some(vec![]));
        assert_eq!(t.matches("/x"), None);
    }

    #[test]
    fn malformed_templates_say_what_is_wrong() {
        let cases = [
            ("orders/{id}", "must start with `/`"),
            ("/orders/{id", "unbalanced brace"),
            ("/orders/id}", "unbalanced or misplaced brace"),
            ("/orders/x{id}", "unbalanced or misplaced brace"),
            ("/orders/{}", "empty parameter name"),
            ("/orders//lines", "empty segment"),
            ("/a/{id}/b/{id}", "`{id}` appears twice"),
            ("/a/{order-id}", "only letters, digits and `_`"),
        ];
        for (text, expected) in cases {
            let message = PathTemplate::parse(text).expect_err("refused");
            assert!(
                message.starts_with(&format!("invalid path template `{text}`")),
                "{message}"
            );
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn a_literal_is_more_specific_than_a_param_at_the_first_difference() {
        let literal = parse("/orders/open/lines");
        let param = parse("/orders/{id}/lines");
        assert_eq!(literal.specificity(&param), Ordering::Less);
        assert_eq!(param.specificity(&literal), Ordering::Greater);
        assert!(!literal.ties_with(&param));
        // The first difference decides, even when later segments disagree.
        assert_eq!(
            parse("/a/b/{x}").specificity(&parse("/a/{y}/c")),
            Ordering::Less
        );
    }

    #[test]
    fn templates_of_the_same_shape_tie_whatever_their_param_names() {
        assert!(parse("/a/{x}").ties_with(&parse("/a/{y}")));
        assert_eq!(
            parse("/a/{x}").specificity(&parse("/a/{y}")),
            Ordering::Equal
        );
        assert!(!parse("/a/{x}").ties_with(&parse("/b/{x}")));
        assert!(!parse("/a/{x}").ties_with(&parse("/a/{x}/c")));
    }
}

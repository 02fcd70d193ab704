//! Reading the JSON path subset of key rules: `$`, `.field`, `['field']`,
//! `[index]` and `[*]` (or `.*`). Anything else (recursive descent `..`,
//! filters, slices, unions) is refused at load time with a message saying
//! what is supported, so a path never silently matches nothing.

use super::{JsonPath, JsonStep};

/// What the supported subset is, appended to every message.
const SUPPORTED: &str = "supported: `$`, `.field`, `['field']`, `[0]`, `[*]`";

impl JsonPath {
    /// Parses a path such as `$.lines[*].order_id` or `$['ship-to'].zip`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let steps = Steps::new(text).collect::<Result<Vec<_>, _>>()?;
        Ok(JsonPath {
            text: text.to_owned(),
            steps,
        })
    }
}

/// Iterates the steps of a path, failing at the first unsupported piece.
struct Steps<'t> {
    text: &'t str,
    rest: &'t str,
    started: bool,
    failed: bool,
}

impl<'t> Steps<'t> {
    fn new(text: &'t str) -> Self {
        Steps {
            text,
            rest: text,
            started: false,
            failed: false,
        }
    }

    fn fail(&mut self, why: &str) -> Option<Result<JsonStep, String>> {
        self.failed = true;
        Some(Err(format!(
            "invalid JSON path `{}`: {why}; {SUPPORTED}",
            self.text
        )))
    }

    fn bracket(&mut self) -> Option<Result<JsonStep, String>> {
        let Some(close) = self.rest.find(']') else {
            return self.fail("unclosed `[`");
        };
        let inside = self.rest[1..close].trim();
        self.rest = &self.rest[close + 1..];
        if inside == "*" {
            return Some(Ok(JsonStep::Wildcard));
        }
        if inside.starts_with('?') {
            return self.fail("filters `[?(...)]` are not supported");
        }
        for quote in ['\'', '"'] {
            if let Some(name) = inside
                .strip_prefix(quote)
                .and_then(|s| s.strip_suffix(quote))
            {
                if name.is_empty() || name.contains(quote) {
                    return self.fail("a quoted field name must be non-empty");
                }
                return Some(Ok(JsonStep::Field(name.to_owned())));
            }
        }
        if inside.contains([':', ',']) {
            return self.fail("slices and unions are not supported");
        }
        match inside.parse::<usize>() {
            Ok(index) => Some(Ok(JsonStep::Index(index))),
            Err(_) => self.fail(&format!(
                "`[{inside}]` is not an index, `*` or a quoted name"
            )),
        }
    }

    fn dotted(&mut self) -> Option<Result<JsonStep, String>> {
        let after = &self.rest[1..];
        if after.starts_with('.') {
            return self.fail("recursive descent `..` is not supported, write every step (e.g. `$.lines[*].order`)");
        }
        let end = after.find(['.', '[']).unwrap_or(after.len());
        let name = &after[..end];
        self.rest = &after[end..];
        match name {
            "" => self.fail("`.` must be followed by a field name"),
            "*" => Some(Ok(JsonStep::Wildcard)),
            _ if name.contains(['(', ')', '?', '@', ' ', '\'', '"']) => self.fail(&format!(
                "`{name}` is not a plain field name, quote it as `['{name}']`"
            )),
            _ => Some(Ok(JsonStep::Field(name.to_owned()))),
        }
    }
}

impl Iterator for Steps<'_> {
    type Item = Result<JsonStep, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            match self.rest.strip_prefix('$') {
                Some(rest) => self.rest = rest,
                None => return self.fail("a path starts with `$`"),
            }
        }
        match self.rest.chars().next()? {
            '.' => self.dotted(),
            '[' => self.bracket(),
            other => self.fail(&format!("unexpected `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<JsonStep> {
        JsonPath::parse(text).expect("valid path").steps
    }

    fn field(name: &str) -> JsonStep {
        JsonStep::Field(name.to_owned())
    }

    #[test]
    fn the_root_alone_is_a_path_with_no_steps() {
        assert_eq!(steps("$"), vec![]);
    }

    #[test]
    fn dotted_bracketed_indexed_and_wildcard_steps_are_read_in_order() {
        assert_eq!(
            steps("$.lines[*].refs[0]['ship-to'][\"zip code\"].*"),
            vec![
                field("lines"),
                JsonStep::Wildcard,
                field("refs"),
                JsonStep::Index(0),
                field("ship-to"),
                field("zip code"),
                JsonStep::Wildcard,
            ]
        );
    }

    #[test]
    fn recursive_descent_is_refused_as_unsupported() {
        let message = JsonPath::parse("$..order").expect_err("refused");
        assert!(
            message.contains("recursive descent `..` is not supported"),
            "{message}"
        );
        assert!(message.contains("supported: `$`"), "{message}");
    }

    #[test]
    fn filters_slices_and_unions_are_refused_as_unsupported() {
        assert!(JsonPath::parse("$.lines[?(@.qty > 1)]")
            .expect_err("refused")
            .contains("filters"));
        assert!(JsonPath::parse("$.lines[0:2]")
            .expect_err("refused")
            .contains("slices"));
        assert!(JsonPath::parse("$.lines[0,1]")
            .expect_err("refused")
            .contains("unions"));
    }

    #[test]
    fn a_path_must_start_at_the_root_and_be_well_formed() {
        assert!(JsonPath::parse("order.id")
            .expect_err("refused")
            .contains("starts with `$`"));
        assert!(JsonPath::parse("$.")
            .expect_err("refused")
            .contains("followed by a field name"));
        assert!(JsonPath::parse("$.a[1")
            .expect_err("refused")
            .contains("unclosed `[`"));
        assert!(JsonPath::parse("$.a[x]")
            .expect_err("refused")
            .contains("not an index"));
        assert!(JsonPath::parse("$x")
            .expect_err("refused")
            .contains("unexpected `x`"));
    }
}

//! What a mistake in the routes file looks like: [`ConfigError`] names the
//! file, line, column and field and says what was expected; [`ConfigErrors`]
//! carries every error (and the warnings) found in one pass.

use std::fmt;

/// One problem in the routes file, printed as
/// `{file}:{line}:{column}: {field}: {message}` so editors and terminals can
/// jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the text came from (its path as given), or a label such as `<inline>`.
    pub source: String,
    /// 1-based line, when the position is known.
    pub line: Option<usize>,
    /// 1-based column, when the position is known.
    pub column: Option<usize>,
    /// Dotted path of the field at fault, like `routes[2].keys.order.request_json`;
    /// empty for mistakes about the document itself (YAML syntax, unreadable file).
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}")?,
            (Some(line), None) => write!(f, ":{line}")?,
            _ => {}
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

// Not derived with `thiserror`: it would take the `source` field (the file
// name) for the error's cause.
impl std::error::Error for ConfigError {}

/// Every error found in the routes file, plus the warnings found alongside.
/// Displayed one per line, `error: …` then `warning: …`, the way `waybill
/// check` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A failure made of one error.
    pub fn single(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
            warnings: Vec::new(),
        }
    }

    /// One line per error, then one per warning.
    fn render(&self) -> String {
        let errors = self.errors.iter().map(|e| format!("error: {e}"));
        let warnings = self.warnings.iter().map(|w| format!("warning: {w}"));
        errors.chain(warnings).collect::<Vec<_>>().join("\n")
    }
}

/// Turns serde_yaml's error (syntax, unknown field, wrong type, missing
/// field) into a [`ConfigError`]. serde_yaml writes `{path}: {message} at
/// line L column C`; the path and position are split off into their fields.
pub(super) fn from_serde(error: &serde_yaml::Error, text: &str, source: &str) -> ConfigError {
    let location = error.location();
    let mut message_text = error.to_string();
    if let Some(location) = &location {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(cut) = message_text.find(&suffix) {
            // Syntax errors go on with ", while parsing … at line …"; keep that.
            message_text.replace_range(cut..cut + suffix.len(), "");
        }
    }
    let (field, message) = split_path(&message_text);
    let line_text = location
        .as_ref()
        .and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
    ConfigError {
        source: source.to_owned(),
        line: location.as_ref().map(serde_yaml::Location::line),
        column: location.as_ref().map(serde_yaml::Location::column),
        field: field.to_owned(),
        message: explain(message, line_text),
    }
}

/// What each raw struct looks like, for serde's "expected struct RawX".
const SHAPES: [(&str, &str); 12] = [
    ("RawConfig", "a mapping with `systems`, `keys` and `listeners`"),
    ("RawAdmin", "a mapping like `{ bind: 127.0.0.1:9901 }`"),
    ("RawState", "a mapping like `{ ttl: 14d, max_transactions: 100000, backend: embedded, path: /var/lib/waybill }`"),
    ("RawRedis", "a mapping like `{ url: redis://redis:6379, namespace: shop }`"),
    ("RawObservation", "a mapping like `{ queue_capacity: 10000, max_decoded_bytes: 1MiB }`"),
    ("RawListener", "a mapping like `{ name: wms-inbound, bind: 0.0.0.0:8080, upstream: http://127.0.0.1:9000, system: wms }`"),
    ("RawMilestone", "a mapping like `{ name: shipped, object: shipment }`"),
    ("RawRoute", "a mapping with `name`, `system`, `match` and optionally `listeners`, `keys`, `milestone`"),
    ("RawMatch", "a mapping like `{ method: POST, path: \"/orders/{id}\" }`"),
    ("RawKeySource", "a mapping with one source, like `{ header: X-Order-Id }` or `{ request_json: $.order_id }`"),
    ("RawFlow", "a mapping like `{ name: order_to_ship, from: order_released, to: shipped, slo: 24h }`"),
    ("RawExpectation", "a mapping like `{ after: shipped, expect: goods_issue_posted, within: 15m, exception: missing_goods_issue, owner: erp }`"),
];

/// Words for serde's Rust-flavoured expectations, and hints for the most
/// likely syntax mistakes: an unquoted `{param}` template inside `{ … }`,
/// and tabs in indentation.
fn explain(message: &str, line_text: Option<&str>) -> String {
    let mut message = message
        .replace("expected usize", "expected a whole number")
        .replace("expected u64", "expected a whole number");
    for (name, shape) in SHAPES {
        message = message.replace(
            &format!("expected struct {name}"),
            &format!("expected {shape}"),
        );
    }
    if message.contains("while parsing a flow mapping") {
        message.push_str(
            "; inside `{ … }` quote values that contain `{`, `}`, `[`, `]` or `,`, e.g. `path: \"/orders/{id}\"`",
        );
    }
    let indent_has_tab = line_text.is_some_and(|line| {
        line.chars()
            .take_while(|c| c.is_whitespace())
            .any(|c| c == '\t')
    });
    if indent_has_tab {
        message.push_str("; indent with spaces, YAML does not allow tabs");
    }
    message
}

/// `routes[0].match: unknown field …` → (`routes[0].match`, `unknown field …`).
/// A path has no spaces; serde's own messages start with words like
/// `unknown field` or `invalid type`, so they are never taken for a path.
fn split_path(text: &str) -> (&str, &str) {
    match text.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
            (path, rest)
        }
        _ => ("", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, field: &str) -> ConfigError {
        ConfigError {
            source: "routes.yaml".into(),
            line,
            column: line.map(|_| 7),
            field: field.into(),
            message: "expected one of: erp, wms".into(),
        }
    }

    #[test]
    fn an_error_reads_file_line_column_field_then_message() {
        assert_eq!(
            error(Some(12), "routes[0].system").to_string(),
            "routes.yaml:12:7: routes[0].system: expected one of: erp, wms"
        );
    }

    #[test]
    fn an_error_without_position_or_field_still_names_the_file() {
        assert_eq!(
            error(None, "").to_string(),
            "routes.yaml: expected one of: erp, wms"
        );
    }

    #[test]
    fn errors_print_one_per_line_followed_by_warnings() {
        let all = ConfigErrors {
            errors: vec![error(Some(1), "a"), error(Some(2), "b")],
            warnings: vec![error(Some(3), "c")],
        };
        let text = all.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("error: routes.yaml:1:7: a: "));
        assert!(lines[1].starts_with("error: routes.yaml:2:7: b: "));
        assert!(lines[2].starts_with("warning: routes.yaml:3:7: c: "));
    }
}

//! Routes: names, systems, listeners, method, path template, content
//! conditions, key rules and milestone; then the routes are sorted into
//! matching priority and any two that tie on the same listener, method and
//! conditions are reported.

use std::cmp::Ordering;

use super::super::raw::{RawKeySource, RawListener, RawMatch, RawPropagate, RawRoute};
use super::super::{
    kind, Condition, EdiAddress, EdiSyntax, Guard, JsonPath, KeyKind, KeyRule, KeySource,
    ListenerId, MeasureRule, Milestone, PathTemplate, Propagate, Repeats, Route, RouteId, Side,
    Symbols, System, XmlPath,
};
use super::Validator;

/// The names a route may refer to.
pub(super) struct Declared<'a> {
    pub systems: &'a Symbols<kind::System>,
    pub key_kinds: &'a Symbols<kind::KeyKind>,
    pub milestones: &'a Symbols<kind::Milestone>,
    pub listeners: &'a [RawListener],
    pub exceptions: &'a Symbols<kind::Exception>,
    pub measures: &'a Symbols<kind::Measure>,
    pub measure_defs: &'a [crate::config::MeasureDef],
}

/// The methods a route may match on; anything else is most likely a typo.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// A route that passed its own checks, before sorting gives it an id.
struct Checked {
    /// Position in the file's `routes:` list, for messages.
    index: usize,
    name: String,
    system: System,
    listeners: Vec<ListenerId>,
    method: Option<http::Method>,
    path: PathTemplate,
    conditions: Vec<Condition>,
    keys: Vec<KeyRule>,
    milestone: Option<Milestone>,
    repeats: Option<Repeats>,
    guard: Option<Guard>,
    measures: Vec<MeasureRule>,
    propagate: Option<Propagate>,
    inspect: bool,
}

impl Checked {
    /// Matching priority: the more specific template first; with the same
    /// template shape, a route with a method before one matching any
    /// method; then the route with more content conditions; then the order
    /// of the file.
    fn priority(&self, other: &Checked) -> Ordering {
        self.path
            .specificity(&other.path)
            .then(self.method.is_none().cmp(&other.method.is_none()))
            .then(other.conditions.len().cmp(&self.conditions.len()))
            .then(self.index.cmp(&other.index))
    }

    /// True when some request could match both and neither wins: same
    /// listeners, method, template shape and the same content conditions.
    /// Routes that differ only in their conditions do not overlap: the
    /// conditions tell them apart (or the order of the file does).
    fn ties_with(&self, other: &Checked) -> bool {
        let listeners_meet = self.listeners.is_empty()
            || other.listeners.is_empty()
            || self.listeners.iter().any(|l| other.listeners.contains(l));
        let same_conditions = self.conditions.len() == other.conditions.len()
            && self.conditions.iter().all(|c| other.conditions.contains(c));
        listeners_meet
            && self.method == other.method
            && same_conditions
            && self.path.ties_with(&other.path)
    }
}

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: &[RawRoute],
        declared: &Declared<'_>,
    ) -> (Symbols<kind::Operation>, Vec<Route>) {
        let names: Vec<&str> = raw.iter().map(|r| r.name.as_str()).collect();
        self.check_unique("routes", "route", &names);
        let mut checked: Vec<Checked> = raw
            .iter()
            .enumerate()
            .filter_map(|(index, route)| self.route(index, route, declared))
            .collect();
        checked.sort_by(Checked::priority);
        self.report_ties(&checked);

        let mut operations = Symbols::default();
        let mut routes = Vec::new();
        for (position, c) in checked.into_iter().enumerate() {
            let Some(operation) = self.intern(
                &mut operations,
                &format!("routes[{}].name", c.index),
                &c.name,
            ) else {
                continue;
            };
            routes.push(Route {
                id: RouteId(position),
                operation,
                system: c.system,
                listeners: c.listeners,
                method: c.method,
                path: c.path,
                conditions: c.conditions,
                keys: c.keys,
                milestone: c.milestone,
                repeats: c.repeats,
                guard: c.guard,
                measures: c.measures,
                propagate: c.propagate,
                inspect: c.inspect,
            });
        }
        (operations, routes)
    }

    /// Checks one route; `None` when any part of it is wrong (each reported).
    fn route(&mut self, index: usize, raw: &RawRoute, declared: &Declared<'_>) -> Option<Checked> {
        let at = |leaf: &str| format!("routes[{index}].{leaf}");
        let errors_before = self.errors.len();
        let system = self.lookup(declared.systems, "system", &at("system"), &raw.system);
        let mut listeners = Vec::new();
        for (i, name) in raw.listeners.iter().enumerate() {
            match declared.listeners.iter().position(|l| &l.name == name) {
                Some(id) => listeners.push(ListenerId(id)),
                None => {
                    let known: Vec<&str> =
                        declared.listeners.iter().map(|l| l.name.as_str()).collect();
                    self.error(
                        &format!("routes[{index}].listeners[{i}]"),
                        format!(
                            "unknown listener `{name}`; declared listeners: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let method = raw
            .matcher
            .method
            .as_deref()
            .and_then(|m| self.method(&at("match.method"), m));
        let path = match PathTemplate::parse(&raw.matcher.path) {
            Ok(path) => Some(path),
            Err(message) => {
                self.error(&at("match.path"), message);
                None
            }
        };
        let conditions = self.conditions(index, &raw.matcher);
        let mut keys = Vec::new();
        for (i, (kind_name, source)) in raw.keys.0.iter().enumerate() {
            let field = at(&format!("keys.{kind_name}"));
            if raw.keys.0[..i].iter().any(|(k, _)| k == kind_name) {
                self.error_at_key(
                    &field,
                    format!("key kind `{kind_name}` has two rules; give one source per key kind"),
                );
                continue;
            }
            let kind = self.key_kind(&field, kind_name, declared.key_kinds);
            let source = self.key_source(&field, source, path.as_ref());
            if let (Some(kind), Some(source)) = (kind, source) {
                keys.push(KeyRule { kind, source });
            }
        }
        let milestone = match raw.milestone.as_deref() {
            Some(name) => self.lookup(declared.milestones, "milestone", &at("milestone"), name),
            None => None,
        };
        let repeats = raw
            .repeats
            .as_ref()
            .and_then(|r| self.repeats(&at("repeats"), r, declared));
        let guard = raw
            .idempotency_guard
            .as_ref()
            .and_then(|g| self.guard(&at("idempotency_guard"), g));
        let measures = self.route_measures(index, raw, path.as_ref(), declared);
        let inspect = raw.inspect.unwrap_or(true);
        if !inspect {
            self.uninspected(&at("inspect"), raw);
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Checked {
            index,
            name: raw.name.clone(),
            system: system?,
            listeners,
            method,
            path: path?,
            conditions,
            keys,
            milestone,
            repeats,
            guard,
            measures,
            propagate: raw.propagate.map(|p| match p {
                RawPropagate::TraceContext => Propagate::TraceContext,
            }),
            inspect,
        })
    }

    /// A route with `inspect: false` is never observed: anything that reads
    /// its exchanges (or changes its traffic) would silently do nothing.
    fn uninspected(&mut self, field: &str, raw: &RawRoute) {
        let matcher = &raw.matcher;
        let conditions = matcher.content_type.is_some()
            || matcher.soap_action.is_some()
            || matcher.x12.is_some()
            || matcher.x12_segment.is_some()
            || matcher.edifact.is_some()
            || matcher.edifact_segment.is_some()
            || matcher.json.is_some();
        let given: Vec<&str> = [
            (conditions, "content conditions"),
            (!raw.keys.0.is_empty(), "keys"),
            (raw.milestone.is_some(), "milestone"),
            (!raw.measures.is_empty(), "measures"),
            (raw.repeats.is_some(), "repeats"),
            (raw.idempotency_guard.is_some(), "idempotency_guard"),
            (raw.propagate.is_some(), "propagate"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        if !given.is_empty() {
            self.error(
                field,
                format!(
                    "a route with `inspect: false` is forwarded unobserved, so its {} would never apply; remove them or the switch",
                    given.join(", ")
                ),
            );
        }
    }

    /// The content conditions of a route's `match:`, each checked.
    fn conditions(&mut self, index: usize, raw: &RawMatch) -> Vec<Condition> {
        type Parse = fn(&str) -> Result<Condition, String>;
        let given: [(&str, Option<&str>, Parse); 7] = [
            (
                "content_type",
                raw.content_type.as_deref(),
                Condition::content_type,
            ),
            (
                "soap_action",
                raw.soap_action.as_deref(),
                Condition::soap_action,
            ),
            (
                "x12",
                raw.x12.as_ref().map(|s| s.0.as_str()),
                Condition::x12_set,
            ),
            ("x12_segment", raw.x12_segment.as_deref(), |t| {
                Condition::segment(t, EdiSyntax::X12)
            }),
            (
                "edifact",
                raw.edifact.as_deref(),
                Condition::edifact_message,
            ),
            ("edifact_segment", raw.edifact_segment.as_deref(), |t| {
                Condition::segment(t, EdiSyntax::Edifact)
            }),
            ("json", raw.json.as_deref(), Condition::json),
        ];
        let mut conditions = Vec::new();
        for (field, text, parse) in given {
            let Some(text) = text else { continue };
            match parse(text) {
                Ok(condition) => conditions.push(condition),
                Err(message) => self.error(&format!("routes[{index}].match.{field}"), message),
            }
        }
        conditions
    }

    /// An unknown key kind is reported at the key itself (`order:`).
    fn key_kind(
        &mut self,
        field: &str,
        name: &str,
        key_kinds: &Symbols<kind::KeyKind>,
    ) -> Option<KeyKind> {
        let found = key_kinds.get(name);
        if found.is_none() {
            self.error_at_key(
                field,
                format!(
                    "unknown key kind `{name}`; declared key kinds: {}",
                    key_kinds.names()
                ),
            );
        }
        found
    }

    fn method(&mut self, field: &str, text: &str) -> Option<http::Method> {
        if METHODS.contains(&text) {
            if let Ok(method) = http::Method::from_bytes(text.as_bytes()) {
                return Some(method);
            }
        }
        let hint = if METHODS.contains(&text.to_ascii_uppercase().as_str()) {
            format!(
                " (methods are case-sensitive: `{}`)",
                text.to_ascii_uppercase()
            )
        } else {
            String::new()
        };
        self.error(
            field,
            format!("invalid HTTP method `{text}`{hint}; expected one of {}, or leave `method` out to match any", METHODS.join(", ")),
        );
        None
    }

    /// Exactly one source, each made into its real type.
    pub(super) fn key_source(
        &mut self,
        field: &str,
        raw: &RawKeySource,
        path: Option<&PathTemplate>,
    ) -> Option<KeySource> {
        let given: Vec<(&str, &String)> = [
            ("header", &raw.header),
            ("query", &raw.query),
            ("path_param", &raw.path_param),
            ("request_json", &raw.request_json),
            ("response_json", &raw.response_json),
            ("request_regex", &raw.request_regex),
            ("response_regex", &raw.response_regex),
            ("request_xml", &raw.request_xml),
            ("response_xml", &raw.response_xml),
            ("request_x12", &raw.request_x12),
            ("response_x12", &raw.response_x12),
            ("request_edifact", &raw.request_edifact),
            ("response_edifact", &raw.response_edifact),
            ("request_form", &raw.request_form),
            ("response_form", &raw.response_form),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_ref()?)))
        .collect();
        let (source, value) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.error(field, "no source given; expected one of `header`, `query`, `path_param`, `request_json`, `response_json`, `request_regex`, `response_regex`, `request_xml`, `response_xml`, `request_x12`, `response_x12`, `request_edifact`, `response_edifact`, `request_form`, `response_form`");
                return None;
            }
            several => {
                let names: Vec<&str> = several.iter().map(|(n, _)| *n).collect();
                self.error(
                    field,
                    format!(
                        "several sources given ({}); expected exactly one per key kind",
                        names.join(", ")
                    ),
                );
                return None;
            }
        };
        let field = format!("{field}.{source}");
        let side = if source.starts_with("response_") {
            Side::Response
        } else {
            Side::Request
        };
        let result = match source {
            "header" => http::HeaderName::from_bytes(value.as_bytes())
                .map(KeySource::Header)
                .map_err(|_| {
                    format!("invalid header name `{value}`; expected a token such as `X-Order-Id`")
                }),
            "query" if value.is_empty() => {
                Err("a query parameter name must not be empty".to_owned())
            }
            "query" => Ok(KeySource::Query(value.clone())),
            "path_param" => match path {
                // The template's own error is already reported.
                None => return None,
                Some(path) => path_param(path, value),
            },
            "request_json" => JsonPath::parse(value).map(|path| KeySource::Json {
                side: Side::Request,
                path,
            }),
            "response_json" => JsonPath::parse(value).map(|path| KeySource::Json {
                side: Side::Response,
                path,
            }),
            "request_regex" | "response_regex" => {
                regex(value).map(|regex| KeySource::Regex { side, regex })
            }
            "request_xml" | "response_xml" => {
                XmlPath::parse(value).map(|path| KeySource::Xml { side, path })
            }
            "request_x12" | "response_x12" => EdiAddress::parse(value, EdiSyntax::X12, true)
                .map(|address| KeySource::X12 { side, address }),
            "request_edifact" | "response_edifact" => {
                EdiAddress::parse(value, EdiSyntax::Edifact, true)
                    .map(|address| KeySource::Edifact { side, address })
            }
            _ if value.trim().is_empty() => Err("a form field name must not be empty".to_owned()),
            _ => Ok(KeySource::Form {
                side,
                field: value.clone(),
            }),
        };
        result.map_err(|message| self.error(&field, message)).ok()
    }

    /// Reports every pair of routes that tie. After sorting, tying routes
    /// are neighbours within one run of equal specificity.
    fn report_ties(&mut self, sorted: &[Checked]) {
        for (i, a) in sorted.iter().enumerate() {
            for b in sorted[i + 1..]
                .iter()
                .take_while(|b| a.path.specificity(&b.path) == Ordering::Equal)
            {
                if !a.ties_with(b) {
                    continue;
                }
                let (first, second) = if a.index < b.index { (a, b) } else { (b, a) };
                let first_line = self.line_of(&format!("routes[{}].match.path", first.index));
                let method = first
                    .method
                    .as_ref()
                    .map_or("any method".to_owned(), |m| m.to_string());
                let conditions = if first.conditions.is_empty() {
                    String::new()
                } else {
                    let fields: Vec<String> = first
                        .conditions
                        .iter()
                        .map(|c| format!("`{}`", c.field()))
                        .collect();
                    let plural = if fields.len() > 1 { "s" } else { "" };
                    format!(" with the same {} condition{plural}", fields.join(", "))
                };
                self.error(
                    &format!("routes[{}].match", second.index),
                    format!(
                        "route `{}` overlaps route `{}` (routes[{}]{first_line}): both match {method} `{}`{conditions} on the same listeners and neither is more specific; use a literal segment, a different method, different listeners or a content condition (e.g. `x12: \"214\"`)",
                        second.name, first.name, first.index, second.path.text
                    ),
                );
            }
        }
    }
}

fn path_param(path: &PathTemplate, name: &str) -> Result<KeySource, String> {
    match path.param_index(name) {
        Some(index) => Ok(KeySource::PathParam {
            name: name.to_owned(),
            index,
        }),
        None => {
            let params: Vec<String> = path.params().map(|p| format!("`{p}`")).collect();
            let known = if params.is_empty() {
                "it has no parameters".to_owned()
            } else {
                format!("its parameters: {}", params.join(", "))
            };
            Err(format!(
                "`{name}` is not a parameter of `{}`; {known}",
                path.text
            ))
        }
    }
}

/// Compiles a key regex; the regex crate's multi-line report is folded into
/// one line.
fn regex(text: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(text).map_err(|error| {
        let report = error.to_string();
        let reason = report
            .lines()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .unwrap_or(report.trim())
            .to_owned();
        format!("invalid regex `{text}`: {reason}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A config with two listeners and the given `routes:` entries.
    fn load(routes: &str) -> Result<Config, String> {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }}\n  - {{ name: b, bind: 127.0.0.1:8081, upstream: http://127.0.0.1:9001, system: wms }}\nroutes:\n{routes}"
        );
        Config::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn inspect_is_on_unless_a_route_turns_it_off_and_then_reads_nothing() {
        let config = load(
            "  - { name: on, system: wms, match: { path: /a } }\n  - { name: off, system: wms, match: { path: /b }, inspect: false }\n",
        )
        .expect("valid");
        let inspect: Vec<_> = config.routes.iter().map(|r| r.inspect).collect();
        assert_eq!(inspect, [true, false]);
        let error = load(
            "  - { name: off, system: wms, match: { path: \"/b/{id}\", content_type: application/json }, keys: { order: { path_param: id } }, inspect: false }\n",
        )
        .expect_err("an uninspected route with keys");
        assert!(
            error.contains("t.yaml:7:")
                && error.contains("routes[0].inspect")
                && error.contains("its content conditions, keys would never apply"),
            "{error}"
        );
    }

    fn operations(config: &Config) -> Vec<&str> {
        config.routes.iter().map(|r| r.operation.as_str()).collect()
    }

    #[test]
    fn propagate_is_off_unless_a_route_asks_for_trace_context() {
        let config = load(
            "  - { name: on, system: wms, match: { path: /a }, propagate: trace_context }\n  - { name: off, system: wms, match: { path: /b } }\n",
        )
        .expect("valid");
        let propagate: Vec<_> = config.routes.iter().map(|r| r.propagate).collect();
        assert_eq!(propagate, [Some(Propagate::TraceContext), None]);
        let error =
            load("  - { name: on, system: wms, match: { path: /a }, propagate: traceparent }\n")
                .expect_err("unknown value");
        assert!(error.contains("t.yaml:7:"), "{error}");
        assert!(error.contains("trace_context"), "{error}");
    }

    #[test]
    fn routes_sort_literal_first_at_the_first_differing_segment() {
        let config = load(
            "  - { name: by_id, system: wms, match: { path: \"/o/{id}/lines\" } }\n  - { name: open, system: wms, match: { path: /o/open/lines } }\n  - { name: root, system: wms, match: { path: \"/{any}\" } }\n",
        )
        .expect("valid");
        assert_eq!(operations(&config), ["open", "by_id", "root"]);
        assert_eq!(config.routes[1].id, RouteId(1));
    }

    #[test]
    fn a_route_with_a_method_wins_over_the_same_shape_with_any_method() {
        let config = load(
            "  - { name: any, system: wms, match: { path: \"/o/{x}\" } }\n  - { name: get, system: wms, match: { method: GET, path: \"/o/{y}\" } }\n",
        )
        .expect("no overlap");
        assert_eq!(operations(&config), ["get", "any"]);
    }

    #[test]
    fn the_same_shape_on_different_listeners_or_methods_is_no_overlap() {
        load("  - { name: one, system: wms, listeners: [a], match: { path: \"/o/{x}\" } }\n  - { name: two, system: wms, listeners: [b], match: { path: \"/o/{y}\" } }\n")
            .expect("different listeners");
        load("  - { name: one, system: wms, match: { method: GET, path: \"/o/{x}\" } }\n  - { name: two, system: wms, match: { method: PUT, path: \"/o/{y}\" } }\n")
            .expect("different methods");
    }

    #[test]
    fn routes_differing_only_in_content_conditions_load_and_the_narrower_is_tried_first() {
        let config = load(
            "  - { name: status, system: wms, match: { method: POST, path: /edi, x12: \"214\" } }\n  - { name: delivered, system: wms, match: { method: POST, path: /edi, x12: \"214\", x12_segment: AT7*D1 } }\n  - { name: invoice, system: wms, match: { method: POST, path: /edi, x12: \"210\" } }\n  - { name: webhook, system: wms, match: { method: POST, path: /edi, json: \"$.event == x\" } }\n  - { name: any, system: wms, match: { method: POST, path: /edi } }\n",
        )
        .expect("conditions tell them apart");
        assert_eq!(
            operations(&config),
            ["delivered", "status", "invoice", "webhook", "any"]
        );
        assert_eq!(config.routes[0].conditions.len(), 2);
    }

    #[test]
    fn an_empty_route_name_is_refused() {
        let message =
            load("  - { name: \"\", system: wms, match: { path: /o } }\n").expect_err("empty name");
        assert!(
            message.contains("routes[0].name: a route name must not be empty"),
            "{message}"
        );
    }

    #[test]
    fn the_same_shape_on_a_shared_listener_overlaps() {
        let message = load("  - { name: one, system: wms, listeners: [a, b], match: { path: \"/o/{x}\" } }\n  - { name: two, system: wms, listeners: [b], match: { path: \"/o/{y}\" } }\n")
            .expect_err("overlap");
        assert!(
            message.contains(
                "routes[1].match: route `two` overlaps route `one` (routes[0] at line 7)"
            ),
            "{message}"
        );
        assert!(
            message.contains("both match any method `/o/{y}`"),
            "{message}"
        );
    }

    #[test]
    fn a_regex_error_is_folded_into_one_line() {
        let message = regex(r"INV-(?P<value>\d+").expect_err("refused");
        assert_eq!(
            message,
            r"invalid regex `INV-(?P<value>\d+`: unclosed group"
        );
    }

    #[test]
    fn a_path_param_resolves_to_its_index_or_lists_the_params() {
        let path = PathTemplate::parse("/a/{x}/b/{y}").expect("template");
        assert!(matches!(
            path_param(&path, "y"),
            Ok(KeySource::PathParam { index: 1, .. })
        ));
        assert_eq!(
            path_param(&path, "z").expect_err("refused"),
            "`z` is not a parameter of `/a/{x}/b/{y}`; its parameters: `x`, `y`"
        );
    }
}

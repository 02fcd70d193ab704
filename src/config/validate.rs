//! Turns the raw routes file into the typed [`Config`], collecting every
//! mistake (with its line, column and field) before failing, and the
//! warnings about things declared but never used. The declarations and the
//! business model are checked here; listeners and routes in their own files.

mod listener;
mod measure;
mod reconcile;
mod route;
mod store;
mod telemetry;

use super::error::{ConfigError, ConfigErrors};
use super::locate::Locator;
use super::raw::RawConfig;
use super::units::parse_duration;
use super::{kind, Config, Expectation, Flow, KeyKind, MilestoneDef, Symbol, Symbols};
use std::time::Duration;

/// A validated config and the warnings found on the way.
pub type Validated = (Config, Vec<ConfigError>);

/// Validates `raw`, read from `text` (for positions) that came from `source`.
pub fn validate(raw: &RawConfig, text: &str, source: &str) -> Result<Validated, ConfigErrors> {
    let mut v = Validator {
        source,
        locator: Locator::new(text),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let systems: Symbols<kind::System> = v.declare("systems", "system", &raw.systems);
    let key_kinds: Symbols<kind::KeyKind> = v.declare("keys", "key kind", &raw.keys);
    let root = v.root(raw.root.as_deref(), &key_kinds);
    let exception_kinds = v.exception_kinds(raw);
    let (milestones, milestone_defs) = v.milestones(raw, &key_kinds, &systems, &exception_kinds);
    let measures = v.measures(raw, &systems, &exception_kinds);
    let admin = v.admin(raw.admin.as_ref());
    let state = v.state(raw.state.as_ref());
    let observation = v.observation(raw.observation.as_ref());
    let telemetry = v.telemetry(raw.telemetry.as_ref());
    let listeners = v.listeners(&raw.listeners, &systems, admin.as_ref());
    let declared = route::Declared {
        systems: &systems,
        key_kinds: &key_kinds,
        milestones: &milestones,
        listeners: &raw.listeners,
        exceptions: &exception_kinds,
        measures: &measures.names,
        measure_defs: &measures.defs,
    };
    let (operations, routes) = v.routes(&raw.routes, &declared);
    for listener in &listeners {
        if let Err(refusal) = listener.serving(listener.has_guarded_route(&routes)) {
            v.error(
                &format!("listeners[{}].engine", listener.id.0),
                format!("`engine: native` cannot serve this listener: {refusal}: use `engine: auto` or `hyper`"),
            );
        }
    }
    let (flow_names, flows) = v.flows(raw, &milestones);
    let expectations = v.expectations(raw, &milestones, &systems, &exception_kinds);
    v.warn_unused(raw, &key_kinds, &milestones);

    // Report in file order, as a compiler would.
    v.errors.sort_by_key(|e| (e.line, e.column));
    v.warnings.sort_by_key(|w| (w.line, w.column));
    let (Some(root), Some(admin), true) = (root, admin, v.errors.is_empty()) else {
        if v.errors.is_empty() {
            // Every `None` above comes with an error; keep that promise visible.
            v.error(
                "",
                "the config could not be built (internal error: no reason recorded)",
            );
        }
        return Err(ConfigErrors {
            errors: v.errors,
            warnings: v.warnings,
        });
    };
    let config = Config {
        source: source.to_owned(),
        listeners,
        systems,
        key_kinds,
        root,
        operations,
        routes,
        milestones,
        milestone_defs,
        flow_names,
        flows,
        exception_kinds,
        expectations,
        measures: measures.names,
        measure_defs: measures.defs,
        units: measures.units,
        admin,
        state,
        observation,
        telemetry,
    };
    Ok((config, v.warnings))
}

/// Collects errors and warnings, placing each with the [`Locator`].
struct Validator<'t> {
    source: &'t str,
    locator: Locator,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Validator<'_> {
    fn at(&self, field: &str, message: String, key: bool) -> ConfigError {
        let position = if key {
            self.locator.find_key(field)
        } else {
            self.locator.find(field)
        };
        ConfigError {
            source: self.source.to_owned(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            field: field.to_owned(),
            message,
        }
    }

    /// An error about the value of `field`.
    fn error(&mut self, field: &str, message: impl Into<String>) {
        let error = self.at(field, message.into(), false);
        self.errors.push(error);
    }

    /// An error about the key of the mapping entry `field` (an unknown key kind).
    fn error_at_key(&mut self, field: &str, message: impl Into<String>) {
        let error = self.at(field, message.into(), true);
        self.errors.push(error);
    }

    fn warning(&mut self, field: &str, message: impl Into<String>) {
        let warning = self.at(field, message.into(), false);
        self.warnings.push(warning);
    }

    /// ` at line N` for pointing from one error at another place, or nothing.
    fn line_of(&self, field: &str) -> String {
        self.locator
            .find(field)
            .map(|p| format!(" at line {}", p.line))
            .unwrap_or_default()
    }

    /// Declares every name of a `systems:`/`keys:` list, refusing repeats.
    fn declare<T>(&mut self, list: &str, what: &str, names: &[String]) -> Symbols<T> {
        let mut table = Symbols::default();
        for (i, name) in names.iter().enumerate() {
            let field = format!("{list}[{i}]");
            if name.trim().is_empty() {
                self.error(&field, format!("a {what} name must not be empty"));
                continue;
            }
            if let Some(first) = names[..i].iter().position(|n| n == name) {
                let first_line = self.line_of(&format!("{list}[{first}]"));
                self.error(
                    &field,
                    format!(
                        "{what} `{name}` is declared twice (first as {list}[{first}]{first_line})"
                    ),
                );
                continue;
            }
            self.intern(&mut table, &field, name);
        }
        table
    }

    /// Interns `name`, reporting a table overflow at `field`.
    fn intern<T>(&mut self, table: &mut Symbols<T>, field: &str, name: &str) -> Option<Symbol<T>> {
        match table.intern(name) {
            Ok(symbol) => Some(symbol),
            Err(error) => {
                self.error(field, error.to_string());
                None
            }
        }
    }

    /// Looks up a reference to a declared name, reporting which are declared.
    fn lookup<T>(
        &mut self,
        table: &Symbols<T>,
        what: &str,
        field: &str,
        name: &str,
    ) -> Option<Symbol<T>> {
        if let Some(symbol) = table.get(name) {
            return Some(symbol);
        }
        let declared = if table.is_empty() {
            format!("no {what}s are declared")
        } else {
            format!("declared {what}s: {}", table.names())
        };
        self.error(field, format!("unknown {what} `{name}`; {declared}"));
        None
    }

    /// Reports an empty name, or a second use of a name, in a list of
    /// named entries.
    fn check_unique(&mut self, list: &str, what: &str, names: &[&str]) {
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                self.error(
                    &format!("{list}[{i}].name"),
                    format!("a {what} name must not be empty"),
                );
            } else if let Some(first) = names[..i].iter().position(|n| n == name) {
                let first_line = self.line_of(&format!("{list}[{first}].name"));
                self.error(
                    &format!("{list}[{i}].name"),
                    format!("{what} name `{name}` is already used by {list}[{first}]{first_line}; names must be unique"),
                );
            }
        }
    }

    fn duration(
        &mut self,
        field: &str,
        raw: Option<&super::raw::Scalar>,
        default: Duration,
    ) -> Duration {
        let Some(text) = raw else { return default };
        parse_duration(&text.0).unwrap_or_else(|message| {
            self.error(field, message);
            default
        })
    }

    /// The root key kind: the one given, else `order` when declared.
    fn root(&mut self, root: Option<&str>, key_kinds: &Symbols<kind::KeyKind>) -> Option<KeyKind> {
        match root {
            Some(name) => {
                let found = key_kinds.get(name);
                if found.is_none() {
                    self.error(
                        "root",
                        format!(
                            "root `{name}` is not a declared key kind; expected one of: {}",
                            key_kinds.names()
                        ),
                    );
                }
                found
            }
            None => {
                let found = key_kinds.get("order");
                if found.is_none() && !key_kinds.is_empty() {
                    self.error(
                        "keys",
                        format!(
                            "no `root:` is given and `order` is not declared; set `root:` to the key kind that names a transaction, one of: {}",
                            key_kinds.names()
                        ),
                    );
                } else if found.is_none() {
                    self.error(
                        "keys",
                        "no key kinds are declared; expected e.g. `keys: [order, shipment]`",
                    );
                }
                found
            }
        }
    }

    fn milestones(
        &mut self,
        raw: &RawConfig,
        key_kinds: &Symbols<kind::KeyKind>,
        systems: &Symbols<kind::System>,
        exceptions: &Symbols<kind::Exception>,
    ) -> (Symbols<kind::Milestone>, Vec<MilestoneDef>) {
        let names: Vec<&str> = raw.milestones.iter().map(|m| m.name.as_str()).collect();
        self.check_unique("milestones", "milestone", &names);
        let mut table = Symbols::default();
        let mut defs = Vec::new();
        for (i, m) in raw.milestones.iter().enumerate() {
            if names[..i].contains(&m.name.as_str()) {
                continue;
            }
            let object = self.lookup(
                key_kinds,
                "key kind",
                &format!("milestones[{i}].object"),
                &m.object,
            );
            let name = self.intern(&mut table, &format!("milestones[{i}].name"), &m.name);
            if let (Some(name), Some(object)) = (name, object) {
                defs.push((i, name, object));
            }
        }
        // Rules may name any milestone of the list, so they come second.
        let defs = defs
            .into_iter()
            .filter_map(|(i, name, object)| {
                let rules =
                    self.milestone_rules(i, &raw.milestones[i], &table, systems, exceptions)?;
                Some(MilestoneDef {
                    name,
                    object,
                    terminal: raw.milestones[i].terminal,
                    requires: rules.requires,
                    unmet: rules.unmet,
                    stuck_after: rules.stuck_after,
                })
            })
            .collect();
        (table, defs)
    }

    fn flows(
        &mut self,
        raw: &RawConfig,
        milestones: &Symbols<kind::Milestone>,
    ) -> (Symbols<kind::Flow>, Vec<Flow>) {
        let names: Vec<&str> = raw.flows.iter().map(|f| f.name.as_str()).collect();
        self.check_unique("flows", "flow", &names);
        let mut table = Symbols::default();
        let mut flows = Vec::new();
        for (i, f) in raw.flows.iter().enumerate() {
            let at = |leaf: &str| format!("flows[{i}].{leaf}");
            let from = self.lookup(milestones, "milestone", &at("from"), &f.from);
            let to = self.lookup(milestones, "milestone", &at("to"), &f.to);
            if f.from == f.to {
                self.error(
                    &at("to"),
                    format!(
                        "flow `{}` starts and ends at `{}`; expected two different milestones",
                        f.name, f.to
                    ),
                );
            }
            let slo = self.duration(&at("slo"), Some(&f.slo), Duration::ZERO);
            let name = self.intern(&mut table, &at("name"), &f.name);
            if let (Some(name), Some(from), Some(to)) = (name, from, to) {
                flows.push(Flow {
                    name,
                    from,
                    to,
                    slo,
                });
            }
        }
        (table, flows)
    }

    fn expectations(
        &mut self,
        raw: &RawConfig,
        milestones: &Symbols<kind::Milestone>,
        systems: &Symbols<kind::System>,
        exceptions: &Symbols<kind::Exception>,
    ) -> Vec<Expectation> {
        let mut expectations = Vec::new();
        for (i, e) in raw.expectations.iter().enumerate() {
            let at = |leaf: &str| format!("expectations[{i}].{leaf}");
            let after = self.lookup(milestones, "milestone", &at("after"), &e.after);
            let expect = self.lookup(milestones, "milestone", &at("expect"), &e.expect);
            if e.after == e.expect {
                self.error(
                    &at("expect"),
                    format!(
                        "`{}` cannot be expected after itself; expected a different milestone",
                        e.expect
                    ),
                );
            }
            let within = self.duration(&at("within"), Some(&e.within), Duration::ZERO);
            let owner = self.lookup(systems, "system", &at("owner"), &e.owner);
            // Empty names were reported when the kinds were collected.
            let exception = exceptions.get(&e.exception);
            if let (Some(after), Some(expect), Some(owner), Some(exception)) =
                (after, expect, owner, exception)
            {
                expectations.push(Expectation {
                    after,
                    expect,
                    within,
                    exception,
                    owner,
                });
            }
        }
        expectations
    }

    /// Warnings for declarations nothing uses: a key kind or measure no route
    /// reads, a milestone no route marks, a flow or expectation that can never
    /// complete.
    fn warn_unused(
        &mut self,
        raw: &RawConfig,
        key_kinds: &Symbols<kind::KeyKind>,
        milestones: &Symbols<kind::Milestone>,
    ) {
        let read = |kind: &str| {
            raw.routes
                .iter()
                .any(|r| r.keys.0.iter().any(|(k, _)| k == kind))
        };
        for (i, kind) in raw.keys.iter().enumerate() {
            if key_kinds.get(kind).is_some() && !read(kind) {
                self.warning(
                    &format!("keys[{i}]"),
                    format!("key kind `{kind}` is declared but no route reads it"),
                );
            }
        }
        for (i, m) in raw.measures.iter().enumerate() {
            let read = raw
                .routes
                .iter()
                .any(|r| r.measures.iter().any(|rule| rule.measure == m.name));
            if !read {
                self.warning(
                    &format!("measures[{i}].name"),
                    format!("measure `{}` is declared but no route reads it", m.name),
                );
            }
        }
        let marked = |name: &str| {
            raw.routes
                .iter()
                .any(|r| r.milestone.as_deref() == Some(name))
        };
        for (i, m) in raw.milestones.iter().enumerate() {
            if milestones.get(&m.name).is_some() && !marked(&m.name) {
                self.warning(
                    &format!("milestones[{i}].name"),
                    format!("milestone `{}` is declared but no route marks it", m.name),
                );
            }
        }
        for (i, f) in raw.flows.iter().enumerate() {
            let mut unmarked: Vec<&str> = [f.from.as_str(), f.to.as_str()]
                .into_iter()
                .filter(|m| milestones.get(m).is_some() && !marked(m))
                .collect();
            unmarked.dedup();
            if !unmarked.is_empty() {
                self.warning(
                    &format!("flows[{i}].name"),
                    format!(
                        "flow `{}` is never measured: no route marks `{}`",
                        f.name,
                        unmarked.join("`, `")
                    ),
                );
            }
        }
        for (i, e) in raw.expectations.iter().enumerate() {
            if milestones.get(&e.expect).is_some() && !marked(&e.expect) {
                self.warning(
                    &format!("expectations[{i}].expect"),
                    format!(
                        "no route marks `{}`, so `{}` opens after every `{}`",
                        e.expect, e.exception, e.after
                    ),
                );
            }
        }
    }
}

//! The reconciliation rules of the config: exception kinds, what a
//! milestone requires and when it is stuck, how a route's repeats are told
//! apart (retry, duplicate) and its opt-in idempotency guard.

use std::time::Duration;

use super::super::raw::{RawConfig, RawExceptionRule, RawGuard, RawMilestone, RawRepeats};
use super::super::{
    defaults, kind, ExceptionRule, Guard, Milestone, Repeats, RetryRule, Symbols, IDEMPOTENCY_KEY,
    OUT_OF_ORDER,
};
use super::route::Declared;
use super::Validator;

/// What a milestone's rules validated into.
pub(super) struct MilestoneRules {
    pub requires: Vec<Milestone>,
    pub unmet: ExceptionRule,
    pub stuck_after: Option<Duration>,
}

impl Validator<'_> {
    /// Every exception kind named anywhere in the file, plus the built-in
    /// `out_of_order`: the bounded set of `kind` label values.
    pub(super) fn exception_kinds(&mut self, raw: &RawConfig) -> Symbols<kind::Exception> {
        let mut table = Symbols::default();
        self.intern(&mut table, "", OUT_OF_ORDER);
        let mut named: Vec<(String, &str)> = Vec::new();
        for (i, m) in raw.milestones.iter().enumerate() {
            if let Some(unmet) = &m.unmet {
                named.push((format!("milestones[{i}].unmet.exception"), &unmet.exception));
            }
        }
        for (i, r) in raw.routes.iter().enumerate() {
            if let Some(repeats) = &r.repeats {
                if let Some(d) = &repeats.duplicate {
                    named.push((
                        format!("routes[{i}].repeats.duplicate.exception"),
                        &d.exception,
                    ));
                }
                if let Some(retry) = &repeats.retry {
                    named.push((
                        format!("routes[{i}].repeats.retry.exception"),
                        &retry.exception,
                    ));
                }
            }
        }
        for (i, e) in raw.expectations.iter().enumerate() {
            named.push((format!("expectations[{i}].exception"), &e.exception));
        }
        for (i, m) in raw.measures.iter().enumerate() {
            if let Some(variance) = &m.variance {
                named.push((
                    format!("measures[{i}].variance.exception"),
                    &variance.exception,
                ));
            }
        }
        for (field, name) in named {
            if name.trim().is_empty() {
                self.error(
                    &field,
                    "an exception kind must not be empty; expected e.g. `missing_goods_issue`",
                );
            } else {
                self.intern(&mut table, &field, name);
            }
        }
        table
    }

    /// `requires`, `unmet` and `stuck_after` of milestone `index`.
    pub(super) fn milestone_rules(
        &mut self,
        index: usize,
        raw: &RawMilestone,
        milestones: &Symbols<kind::Milestone>,
        systems: &Symbols<kind::System>,
        exceptions: &Symbols<kind::Exception>,
    ) -> Option<MilestoneRules> {
        let at = |leaf: &str| format!("milestones[{index}].{leaf}");
        let errors_before = self.errors.len();
        let mut requires = Vec::new();
        for (i, name) in raw.requires.iter().enumerate() {
            let field = at(&format!("requires[{i}]"));
            if name == &raw.name {
                self.error(&field, format!("`{name}` cannot require itself"));
            } else if let Some(m) = self.lookup(milestones, "milestone", &field, name) {
                requires.push(m);
            }
        }
        let unmet = match &raw.unmet {
            Some(rule) => {
                if raw.requires.is_empty() {
                    self.error(
                        &at("unmet"),
                        "`unmet` says which exception opens when `requires` is not met, but no `requires` is given",
                    );
                }
                self.exception_rule(&at("unmet"), rule, systems, exceptions)
            }
            None => exceptions
                .get(OUT_OF_ORDER)
                .map(|kind| ExceptionRule { kind, owner: None }),
        };
        let stuck_after = raw
            .stuck_after
            .as_ref()
            .map(|d| self.duration(&at("stuck_after"), Some(d), Duration::ZERO));
        if self.errors.len() > errors_before {
            return None;
        }
        Some(MilestoneRules {
            requires,
            unmet: unmet?,
            stuck_after,
        })
    }

    /// `repeats:` of a route.
    pub(super) fn repeats(
        &mut self,
        field: &str,
        raw: &RawRepeats,
        declared: &Declared<'_>,
    ) -> Option<Repeats> {
        let by = self.lookup(
            declared.key_kinds,
            "key kind",
            &format!("{field}.by"),
            &raw.by,
        );
        let idempotency_header = self.header(
            &format!("{field}.idempotency_header"),
            raw.idempotency_header.as_deref(),
        );
        let duplicate = match &raw.duplicate {
            Some(rule) => Some(self.exception_rule(
                &format!("{field}.duplicate"),
                rule,
                declared.systems,
                declared.exceptions,
            )?),
            None => None,
        };
        let retry = match &raw.retry {
            Some(retry) => {
                let at = |leaf: &str| format!("{field}.retry.{leaf}");
                if retry.limit == 0 {
                    self.error(&at("limit"), "must be at least 1 failed attempt");
                }
                let within = self.duration(&at("within"), Some(&retry.within), Duration::ZERO);
                let rule = RawExceptionRule {
                    exception: retry.exception.clone(),
                    owner: retry.owner.clone(),
                };
                let exception = self.exception_rule(
                    &format!("{field}.retry"),
                    &rule,
                    declared.systems,
                    declared.exceptions,
                )?;
                Some(RetryRule {
                    limit: retry.limit,
                    within,
                    exception,
                })
            }
            None => None,
        };
        Some(Repeats {
            by: by?,
            idempotency_header: idempotency_header?,
            duplicate,
            retry,
        })
    }

    /// `idempotency_guard:` of a route.
    pub(super) fn guard(&mut self, field: &str, raw: &RawGuard) -> Option<Guard> {
        let header = self.header(&format!("{field}.header"), raw.header.as_deref());
        let window = self.duration(
            &format!("{field}.window"),
            raw.window.as_ref(),
            defaults::GUARD_WINDOW,
        );
        let max_entries = self.at_least_one(
            &format!("{field}.max_entries"),
            raw.max_entries,
            defaults::GUARD_MAX_ENTRIES,
        );
        let max_response = self.size(
            &format!("{field}.max_response"),
            raw.max_response.as_ref(),
            defaults::GUARD_MAX_RESPONSE,
        );
        Some(Guard {
            header: header?,
            window,
            max_entries,
            max_response,
        })
    }

    fn exception_rule(
        &mut self,
        field: &str,
        raw: &RawExceptionRule,
        systems: &Symbols<kind::System>,
        exceptions: &Symbols<kind::Exception>,
    ) -> Option<ExceptionRule> {
        // An empty kind was reported when the kinds were collected.
        let kind = exceptions.get(&raw.exception)?;
        let owner = match &raw.owner {
            Some(name) => Some(self.lookup(systems, "system", &format!("{field}.owner"), name)?),
            None => None,
        };
        Some(ExceptionRule { kind, owner })
    }

    /// A header name, `Idempotency-Key` when none is given.
    fn header(&mut self, field: &str, raw: Option<&str>) -> Option<http::HeaderName> {
        let text = raw.unwrap_or(IDEMPOTENCY_KEY);
        match http::HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.error(
                    field,
                    format!(
                        "invalid header name `{text}`; expected a token such as `Idempotency-Key`"
                    ),
                );
                None
            }
        }
    }
}

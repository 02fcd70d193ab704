//! Measures: the declared `measures:` (name, unit, currencies, variance)
//! and each route's measure rules (value and unit sources, read with the
//! same source machinery as keys).

use super::super::raw::{RawConfig, RawMeasureRule, RawRoute, RawUnitSource};
use super::super::{
    kind, Amount, MeasureDef, MeasureRule, PathTemplate, Role, Symbols, UnitKind, UnitRule,
    VarianceRule, COUNT, KG,
};
use super::route::Declared;
use super::Validator;

/// The measures declared, their definitions and every unit they use.
pub(super) struct Measures {
    pub names: Symbols<kind::Measure>,
    pub defs: Vec<MeasureDef>,
    pub units: Symbols<kind::Unit>,
}

impl Validator<'_> {
    pub(super) fn measures(
        &mut self,
        raw: &RawConfig,
        systems: &Symbols<kind::System>,
        exceptions: &Symbols<kind::Exception>,
    ) -> Measures {
        let names: Vec<&str> = raw.measures.iter().map(|m| m.name.as_str()).collect();
        self.check_unique("measures", "measure", &names);
        let mut table = Symbols::default();
        let mut units = Symbols::default();
        let mut defs = Vec::new();
        for (i, m) in raw.measures.iter().enumerate() {
            if names[..i].contains(&m.name.as_str()) || m.name.trim().is_empty() {
                continue;
            }
            let at = |leaf: &str| format!("measures[{i}].{leaf}");
            let kind = match m.unit.as_str() {
                "currency" => Some(UnitKind::Currency),
                KG => Some(UnitKind::Mass),
                COUNT => Some(UnitKind::Count),
                other => {
                    self.error(
                        &at("unit"),
                        format!("unknown unit `{other}`; expected `currency`, `kg` or `count`"),
                    );
                    None
                }
            };
            let mut def_units = Vec::new();
            match kind {
                Some(UnitKind::Currency) if m.currencies.is_empty() => self.error(
                    &at("unit"),
                    "a `currency` measure needs `currencies:`, the codes it accepts, e.g. `[USD, EUR]`",
                ),
                Some(UnitKind::Currency) => {
                    for (c, code) in m.currencies.iter().enumerate() {
                        let field = at(&format!("currencies[{c}]"));
                        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                            self.error(
                                &field,
                                format!("invalid currency `{code}`; expected an ISO 4217 code of three capital letters, e.g. `USD`"),
                            );
                        } else if let Some(unit) = self.intern(&mut units, &field, code) {
                            def_units.push(unit);
                        }
                    }
                }
                Some(other) => {
                    if !m.currencies.is_empty() {
                        self.error(
                            &at("currencies"),
                            format!("only a `currency` measure has currencies; this one is `{}`", m.unit),
                        );
                    }
                    let label = if other == UnitKind::Mass { KG } else { COUNT };
                    def_units.extend(self.intern(&mut units, &at("unit"), label));
                }
                None => {}
            }
            let variance = m.variance.as_ref().and_then(|v| {
                let field = at("variance");
                let tolerance = match &v.tolerance {
                    None => Amount::ZERO,
                    Some(text) => match Amount::parse(&text.0) {
                        Ok(t) if t >= Amount::ZERO => t,
                        _ => {
                            self.error(
                                &format!("{field}.tolerance"),
                                format!("invalid tolerance `{}`; expected a plain non-negative decimal in the measure's unit, e.g. `2.50`", text.0),
                            );
                            return None;
                        }
                    },
                };
                let owner = match &v.owner {
                    Some(name) => {
                        Some(self.lookup(systems, "system", &format!("{field}.owner"), name)?)
                    }
                    None => None,
                };
                // An empty kind was reported when the kinds were collected.
                let kind = exceptions.get(&v.exception)?;
                Some(VarianceRule {
                    tolerance,
                    exception: super::super::ExceptionRule { kind, owner },
                })
            });
            let name = self.intern(&mut table, &at("name"), &m.name);
            if let (Some(name), Some(kind)) = (name, kind) {
                defs.push(MeasureDef {
                    name,
                    kind,
                    units: def_units,
                    variance,
                });
            }
        }
        Measures {
            names: table,
            defs,
            units,
        }
    }

    /// The measure rules of route `index`; they need its milestone.
    pub(super) fn route_measures(
        &mut self,
        index: usize,
        raw: &RawRoute,
        path: Option<&PathTemplate>,
        declared: &Declared<'_>,
    ) -> Vec<MeasureRule> {
        if !raw.measures.is_empty() && raw.milestone.is_none() {
            self.error(
                &format!("routes[{index}].measures"),
                "measures are attached to the route's milestone and its object; give the route a `milestone:`",
            );
        }
        let mut rules: Vec<MeasureRule> = Vec::new();
        for (i, rule) in raw.measures.iter().enumerate() {
            let field = format!("routes[{index}].measures[{i}]");
            if let Some(rule) = self.measure_rule(&field, rule, path, declared) {
                if rules
                    .iter()
                    .any(|r| r.measure == rule.measure && r.role == rule.role)
                {
                    self.error(
                        &format!("{field}.measure"),
                        format!(
                            "measure `{}` with role `{}` is read twice by this route; give it one rule",
                            rule.measure,
                            rule.role.as_str()
                        ),
                    );
                    continue;
                }
                rules.push(rule);
            }
        }
        rules
    }

    fn measure_rule(
        &mut self,
        field: &str,
        raw: &RawMeasureRule,
        path: Option<&PathTemplate>,
        declared: &Declared<'_>,
    ) -> Option<MeasureRule> {
        let measure = self.lookup(
            declared.measures,
            "measure",
            &format!("{field}.measure"),
            &raw.measure,
        );
        let role = match raw.role.as_deref() {
            None => Some(Role::Actual),
            Some(text) => {
                let role = Role::parse(text);
                if role.is_none() {
                    self.error(
                        &format!("{field}.role"),
                        format!("unknown role `{text}`; expected `quoted` or `actual`"),
                    );
                }
                role
            }
        };
        let value = self.key_source(&format!("{field}.value"), &raw.value, path);
        let def = declared
            .measure_defs
            .iter()
            .find(|d| Some(&d.name) == measure.as_ref())?;
        let (wanted, other) = match def.kind {
            UnitKind::Currency => (("currency", raw.currency.as_ref()), ("unit", &raw.unit)),
            UnitKind::Mass | UnitKind::Count => {
                (("unit", raw.unit.as_ref()), ("currency", &raw.currency))
            }
        };
        if other.1.is_some() {
            self.error(
                &format!("{field}.{}", other.0),
                format!(
                    "measure `{}` has no {}; {}",
                    raw.measure,
                    other.0,
                    match def.kind {
                        UnitKind::Currency => "give its currency in `currency:`",
                        UnitKind::Mass => "give its unit in `unit:`",
                        UnitKind::Count => "a count has no unit",
                    }
                ),
            );
            return None;
        }
        let unit_field = format!("{field}.{}", wanted.0);
        let unit = match (def.kind, wanted.1) {
            (UnitKind::Currency, None) => {
                self.error(
                    field,
                    format!("measure `{}` is money: give `currency:`, a code such as `USD` or a source such as `{{ response_json: $.currency }}`", raw.measure),
                );
                return None;
            }
            (UnitKind::Count, Some(_)) => {
                self.error(&unit_field, "a count has no unit");
                return None;
            }
            (_, None) => {
                let unit = def.units.first()?.clone();
                UnitRule::Fixed {
                    unit,
                    factor: Amount::ONE,
                }
            }
            (_, Some(RawUnitSource::Fixed(text))) => match def.unit_of(text) {
                Some((unit, factor)) => UnitRule::Fixed { unit, factor },
                None => {
                    let expected = match def.kind {
                        UnitKind::Currency => format!(
                            "one of the measure's currencies: {}",
                            def.units
                                .iter()
                                .map(|u| u.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        _ => "`kg`, `kgs`, `g`, `lb`, `lbs` or `t`".to_owned(),
                    };
                    self.error(
                        &unit_field,
                        format!("unknown {} `{text}`; expected {expected}", wanted.0),
                    );
                    return None;
                }
            },
            (_, Some(RawUnitSource::Read(source))) => {
                UnitRule::Read(self.key_source(&unit_field, source, path)?)
            }
        };
        let system = match &raw.system {
            Some(name) => {
                Some(self.lookup(declared.systems, "system", &format!("{field}.system"), name)?)
            }
            None => None,
        };
        let decimals = raw.decimals.unwrap_or(0);
        if decimals > 9 {
            self.error(
                &format!("{field}.decimals"),
                format!("{decimals} implied decimals; expected 0 to 9"),
            );
            return None;
        }
        Some(MeasureRule {
            measure: measure?,
            role: role?,
            value: value?,
            unit,
            decimals,
            system,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Role, UnitRule};

    /// A config with a label route carrying `measures` and the declared `declared`.
    fn load(declared: &str, measures: &str) -> Result<Config, String> {
        let text = format!(
            "systems: [carrier]\nkeys: [order, shipment]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: carrier }}\nmilestones:\n  - {{ name: label_created, object: shipment }}\nmeasures:\n{declared}routes:\n  - name: buy\n    system: carrier\n    match: {{ method: POST, path: \"/s/{{id}}/buy\" }}\n    keys: {{ shipment: {{ path_param: id }} }}\n    milestone: label_created\n    measures:\n{measures}"
        );
        Config::from_yaml(&text, "m.yaml").map_err(|e| e.to_string())
    }

    const COST: &str = "  - { name: freight_cost, unit: currency, currencies: [USD, EUR] }\n  - { name: weight, unit: kg }\n";

    #[test]
    fn a_measure_rule_reads_its_value_and_currency_like_a_key() {
        let config = load(
            COST,
            "      - { measure: freight_cost, role: quoted, value: { response_json: $.rate }, currency: { response_json: $.currency } }\n      - { measure: weight, value: { request_json: $.weight }, unit: lb }\n",
        )
        .expect("valid");
        let rules = &config.routes[0].measures;
        assert_eq!(rules[0].role, Role::Quoted);
        assert!(matches!(rules[0].unit, UnitRule::Read(_)));
        assert_eq!(rules[1].role, Role::Actual, "actual by default");
        match &rules[1].unit {
            UnitRule::Fixed { unit, factor } => {
                assert_eq!(unit.as_str(), "kg");
                assert_eq!(factor.to_string(), "0.45359237");
            }
            UnitRule::Read(_) => panic!("a fixed unit"),
        }
        let sources = config.routes[0].sources();
        assert_eq!(sources.len(), 4, "key, value, currency, value");
        let listed: Vec<_> = sources.iter().collect();
        let json = |s: &crate::config::KeySource| match s {
            crate::config::KeySource::Json { path, .. } => path.text.clone(),
            _ => String::new(),
        };
        assert_eq!(
            listed.iter().map(|s| json(s)).collect::<Vec<_>>()[1..],
            ["$.rate", "$.currency", "$.weight"]
        );
        for (index, source) in listed.iter().enumerate() {
            let got = sources.get(index).expect("in range");
            assert!(std::ptr::eq(got, *source), "source {index}");
        }
        assert!(sources.get(4).is_none());
        assert_eq!(
            config.units.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            ["USD", "EUR", "kg"]
        );
    }

    #[test]
    fn mistakes_in_measures_are_reported_at_their_field() {
        let message = load(
            "  - { name: freight_cost, unit: currency, currencies: [usd] }\n  - { name: weight, unit: stone }\n",
            "      - { measure: freight_cost, value: { response_json: $.rate } }\n",
        )
        .expect_err("refused");
        says(
            &message,
            &[
                "measures[0].currencies[0]: invalid currency `usd`",
                "measures[1].unit: unknown unit `stone`",
            ],
        );
        let message = load(
            COST,
            "      - { measure: freight_cost, value: { response_json: $.rate } }\n      - { measure: weight, role: guessed, value: { request_json: $.w }, currency: USD }\n      - { measure: cost, value: { request_json: $.c } }\n",
        )
        .expect_err("refused");
        says(
            &message,
            &[
                "routes[0].measures[0]: measure `freight_cost` is money: give `currency:`",
                "routes[0].measures[1].role: unknown role `guessed`",
                "routes[0].measures[1].currency: measure `weight` has no currency",
                "routes[0].measures[2].measure: unknown measure `cost`",
            ],
        );
        let message = load(
            COST,
            "      - { measure: freight_cost, value: { response_json: $.rate }, currency: GBP }\n",
        )
        .expect_err("refused");
        says(
            &message,
            &["unknown currency `GBP`; expected one of the measure's currencies: USD, EUR"],
        );
    }

    #[test]
    fn a_measure_no_route_reads_is_a_warning() {
        let text = "systems: [carrier]\nkeys: [order]\nlisteners:\n  - { name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: carrier }\nmeasures:\n  - { name: pieces, unit: count }\n";
        let (_, warnings) = Config::from_yaml_with_warnings(text, "m.yaml").expect("valid");
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings.iter().any(|w| w
                .contains("measures[0].name: measure `pieces` is declared but no route reads it")),
            "{warnings:?}"
        );
    }

    #[test]
    fn measures_need_the_routes_milestone() {
        let text = "systems: [carrier]\nkeys: [shipment]\nroot: shipment\nlisteners:\n  - { name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: carrier }\nmeasures:\n  - { name: pieces, unit: count }\nroutes:\n  - name: scan\n    system: carrier\n    match: { path: \"/s/{id}\" }\n    keys: { shipment: { path_param: id } }\n    measures:\n      - { measure: pieces, value: { query: n }, unit: kg }\n";
        let message = Config::from_yaml(text, "m.yaml")
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        says(
            &message,
            &[
                "routes[0].measures: measures are attached to the route's milestone",
                "routes[0].measures[0].unit: a count has no unit",
            ],
        );
    }

    /// Asserts that `message` contains every one of `expected`.
    fn says(message: &str, expected: &[&str]) {
        for expected in expected {
            assert!(message.contains(expected), "{expected}\n{message}");
        }
    }
}

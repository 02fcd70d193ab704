//! Measure values: the numbers a successful exchange carries (a quoted
//! rate, an invoiced total, a weight), read by the matched route's measure
//! rules through the same sources, scans and walks as its keys, then
//! parsed as exact decimals with their unit. A value that cannot be read
//! is counted by reason ([`Unreadable`]) and never stops the exchange.

use std::sync::Arc;

use crate::config::{
    Amount, Config, MeasureName, MeasureRule, Role, System, Unit, UnitKind, UnitRule,
};
use crate::proxy::Exchange;

use super::plan::RoutePlan;
use super::reading::Reading;
use super::route::Matched;
use super::{rule_values, Problem};

/// One value of one measure, in its stored unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureValue {
    pub measure: MeasureName,
    pub role: Role,
    pub amount: Amount,
    /// A declared currency, `kg` or `count`.
    pub unit: Unit,
    /// The system the value is about: the rule's, else the route's.
    pub system: System,
}

/// Why a measure value could not be read: the `reason` label of
/// `waybill_measure_unparseable_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unreadable {
    /// The rule found no value in a successful exchange.
    Missing,
    /// A value that is no plain decimal.
    NotANumber,
    /// A decimal comma or ambiguous grouping (`12,50`, `1,234`).
    Locale,
    /// A money value with no currency beside it.
    MissingCurrency,
    /// A currency the measure does not declare.
    UnknownCurrency,
    /// A mass with no unit beside it.
    MissingUnit,
    /// A mass unit that is not `kg`, `g`, `lb`, `lbs` or `t`.
    UnknownUnit,
    /// Values and units (or values and objects) that cannot be paired:
    /// two currencies for three amounts.
    Ambiguous,
}

impl Unreadable {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::Missing => "missing",
            Unreadable::NotANumber => "not_a_number",
            Unreadable::Locale => "locale",
            Unreadable::MissingCurrency => "missing_currency",
            Unreadable::UnknownCurrency => "unknown_currency",
            Unreadable::MissingUnit => "missing_unit",
            Unreadable::UnknownUnit => "unknown_unit",
            Unreadable::Ambiguous => "ambiguous",
        }
    }

    /// Every reason, for pre-registering label sets.
    pub const ALL: [Unreadable; 8] = [
        Unreadable::Missing,
        Unreadable::NotANumber,
        Unreadable::Locale,
        Unreadable::MissingCurrency,
        Unreadable::UnknownCurrency,
        Unreadable::MissingUnit,
        Unreadable::UnknownUnit,
        Unreadable::Ambiguous,
    ];
}

/// What the measure rules of one exchange gave.
#[derive(Debug, Default, Clone)]
pub struct Measures {
    pub values: Vec<MeasureValue>,
    /// One entry per value (or rule) that could not be read.
    pub unreadable: Vec<(MeasureName, Unreadable)>,
}

/// Runs the matched route's measure rules. `sources` is the route's
/// [`crate::config::Route::sources`]: measure sources follow the keys'.
pub(super) fn read(
    config: &Config,
    exchange: &Exchange,
    matched: &Matched<'_, '_>,
    (plan, sources): (&RoutePlan, crate::config::Sources<'_>),
    reading: &mut Reading<'_>,
    problems: &mut Vec<Problem>,
) -> Measures {
    let mut measures = Measures::default();
    let mut next = matched.route.keys.len();
    for rule in &matched.route.measures {
        let value_at = next;
        let unit_at = matches!(rule.unit, UnitRule::Read(_)).then_some(value_at + 1);
        next = unit_at.unwrap_or(value_at) + 1;
        let values = rule_values(
            exchange,
            matched,
            (plan, sources),
            value_at,
            reading,
            problems,
        );
        let values: Vec<Arc<str>> = values
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !v.trim().is_empty())
            .collect();
        if values.is_empty() {
            // An unreadable body has its own problem too; either way no value.
            measures
                .unreadable
                .push((rule.measure.clone(), Unreadable::Missing));
            continue;
        }
        let units = unit_at.map(|at| {
            rule_values(exchange, matched, (plan, sources), at, reading, problems)
                .unwrap_or_default()
                .into_iter()
                .filter(|v| !v.trim().is_empty())
                .collect::<Vec<_>>()
        });
        let def = config.measure_def(&rule.measure);
        for (position, text) in values.iter().enumerate() {
            let unit = units
                .as_deref()
                .map(|units| unit_text(units, position, values.len()));
            match value(def, rule, &matched.route.system, text, unit) {
                Ok(value) => measures.values.push(value),
                Err(reason) => measures.unreadable.push((rule.measure.clone(), reason)),
            }
        }
    }
    measures
}

/// The unit text for value `position` of `count`: the only unit, or the
/// one at the same position.
fn unit_text(units: &[Arc<str>], position: usize, count: usize) -> Result<&str, Unreadable> {
    match units {
        [] => Err(Unreadable::Missing),
        [one] => Ok(one),
        many if many.len() == count => Ok(&many[position]),
        _ => Err(Unreadable::Ambiguous),
    }
}

/// One value: the number, then its unit (fixed or read), converted.
fn value(
    def: &crate::config::MeasureDef,
    rule: &MeasureRule,
    route_system: &System,
    text: &str,
    unit: Option<Result<&str, Unreadable>>,
) -> Result<MeasureValue, Unreadable> {
    let amount = Amount::parse(text)
        .map_err(|e| match e {
            crate::config::AmountError::Locale => Unreadable::Locale,
            crate::config::AmountError::NotANumber => Unreadable::NotANumber,
        })?
        .with_implied_decimals(rule.decimals);
    let (unit, factor) = match (&rule.unit, unit) {
        (UnitRule::Fixed { unit, factor }, _) => (unit.clone(), *factor),
        (UnitRule::Read(_), Some(Ok(text))) => def.unit_of(text).ok_or(match def.kind {
            UnitKind::Currency => Unreadable::UnknownCurrency,
            UnitKind::Mass | UnitKind::Count => Unreadable::UnknownUnit,
        })?,
        (UnitRule::Read(_), Some(Err(Unreadable::Missing)) | None) => {
            return Err(match def.kind {
                UnitKind::Currency => Unreadable::MissingCurrency,
                UnitKind::Mass | UnitKind::Count => Unreadable::MissingUnit,
            })
        }
        (UnitRule::Read(_), Some(Err(reason))) => return Err(reason),
    };
    Ok(MeasureValue {
        measure: rule.measure.clone(),
        role: rule.role,
        amount: amount.times(factor),
        unit,
        system: rule.system.clone().unwrap_or_else(|| route_system.clone()),
    })
}

//! Business measures declared in config: named numeric values (freight
//! cost, shipped weight, package count) with a unit, read by a route's
//! measure rules from the same sources as keys, and attached to the
//! route's milestone and its object. A measure may compare its quoted and
//! actual values (`variance`) and open an exception beyond a tolerance.

use super::{Amount, ExceptionRule, KeySource, MeasureName, System, Unit};

/// The label value of the unit every mass is stored in.
pub const KG: &str = "kg";
/// The label value of the unit of counts.
pub const COUNT: &str = "count";

/// A declared measure.
#[derive(Debug, Clone)]
pub struct MeasureDef {
    pub name: MeasureName,
    pub kind: UnitKind,
    /// The units it is stored in (metric label values): its declared
    /// currencies, or `kg`, or `count`.
    pub units: Vec<Unit>,
    /// Compare quoted and actual values per object. Optional.
    pub variance: Option<VarianceRule>,
}

/// What a measure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Money in one of the measure's declared currencies (never converted).
    Currency,
    /// Mass, stored in kilograms (`lb` and `g` are converted).
    Mass,
    /// A plain count (packages, pallets, lines).
    Count,
}

/// "When both a quoted and an actual value exist for an object and they
/// differ by more than `tolerance`, open `exception`."
#[derive(Debug, Clone)]
pub struct VarianceRule {
    /// Largest difference that is not an exception, in the measure's unit.
    pub tolerance: Amount,
    pub exception: ExceptionRule,
}

/// Which value of a measure a route reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A value promised before the fact: the rate quoted at label purchase.
    Quoted,
    /// The value that counts: the invoiced cost, the shipped weight.
    Actual,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Quoted => "quoted",
            Role::Actual => "actual",
        }
    }

    /// Both roles, for pre-registering label sets.
    pub const ALL: [Role; 2] = [Role::Quoted, Role::Actual];

    /// Reads a label value back (journal and snapshot).
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// One measure a route reads: where its value is and where its unit is.
#[derive(Debug, Clone)]
pub struct MeasureRule {
    pub measure: MeasureName,
    pub role: Role,
    /// Where the number is read; every match is one value.
    pub value: KeySource,
    pub unit: UnitRule,
    /// Implied decimal places of the value as written (2 for X12 `N2`).
    pub decimals: u32,
    /// The system the value is about (the `system` label); `None`: the
    /// route's own.
    pub system: Option<System>,
}

/// Where a value's unit comes from.
#[derive(Debug, Clone)]
pub enum UnitRule {
    /// Always this unit, converted to the stored one by `factor` (a pound
    /// is 0.45359237 kg; one when no conversion is needed).
    Fixed { unit: Unit, factor: Amount },
    /// Read beside the value (a sibling currency field) and resolved with
    /// [`MeasureDef::unit_of`]; one unit for every value, or one per value.
    Read(KeySource),
}

/// Mass units accepted in documents and their factor to kilograms (the
/// pound exactly, by its 1959 definition).
const MASS_UNITS: [(&str, Amount); 6] = [
    ("kg", Amount::ONE),
    ("kgs", Amount::ONE),
    ("g", Amount::from_billionths(1_000_000)),
    ("lb", Amount::from_billionths(453_592_370)),
    ("lbs", Amount::from_billionths(453_592_370)),
    ("t", Amount::from_billionths(1_000_000_000_000)),
];

impl MeasureDef {
    /// The stored unit and conversion factor for a unit as a document (or
    /// the config) writes it: a declared currency (case-insensitive) for
    /// money, `kg`/`kgs`/`g`/`lb`/`lbs`/`t` for mass. `None` when unknown.
    pub fn unit_of(&self, text: &str) -> Option<(Unit, Amount)> {
        let text = text.trim();
        match self.kind {
            UnitKind::Currency => self
                .units
                .iter()
                .find(|u| u.as_str().eq_ignore_ascii_case(text))
                .map(|u| (u.clone(), Amount::ONE)),
            UnitKind::Mass => {
                let (_, factor) = MASS_UNITS
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(text))?;
                Some((self.units.first()?.clone(), *factor))
            }
            UnitKind::Count => None,
        }
    }
}

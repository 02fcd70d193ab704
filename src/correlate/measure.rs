//! Measures on transactions: the values an exchange carried are attached
//! to the objects of the milestone it marked (in order: the n-th value to
//! the n-th object; one value for one object), one record per object,
//! measure and role. A later value for the same record (a re-sent or
//! corrected invoice) replaces it and is counted as a revision, so totals
//! count each object's value once. When an object has both a quoted and an
//! actual value in one unit, their difference `actual - quoted` is its
//! variance: observed once, and beyond the measure's tolerance it opens
//! the measure's variance exception, which a corrected value within the
//! tolerance resolves.
//!
//! Metrics (labels are bounded: measure, role, system, unit; `unit` is the
//! currency code for money, `kg` or `count`; never an identifier), every
//! series the config allows created at zero:
//! - `waybill_measure_total{measure, role, system, unit}`: sum of first
//!   values per object (`waybill_measure_total{measure="freight_cost",
//!   role="actual", system="carrier", unit="USD"}` is the invoiced freight
//!   cost). Negative values (credits) are left out of the sum.
//! - `waybill_measure_value{measure, role, system, unit}`: histogram of
//!   values per object (cost per shipment, shipped weight).
//! - `waybill_measure_variance{measure, system, unit}`: histogram of
//!   `actual - quoted` per object; `system` is the one reporting actuals.
//! - `waybill_measure_revisions_total{measure, role}`: values replaced by a
//!   later report for the same object.
//! - `waybill_measure_unattached_total{measure}`: values left out because
//!   they could not be paired with the milestone's objects.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{Amount, Config, MeasureName, Milestone, Role};
use crate::extract::{Key, MeasureValue, Observation};
use crate::state::{MeasureRecord, Resolution, TxRef};

use super::reconcile::Opening;
use super::{Correlator, News};

/// Upper bounds of the value histogram: a parcel label (a few dollars or
/// kilograms) to a full truckload.
const VALUE_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0,
];

/// Upper bounds of the variance histogram: symmetric, with a bucket for
/// "exactly as quoted" (`le="0"` minus `le="-1"`).
const VARIANCE_BUCKETS: [f64; 15] = [
    -500.0, -100.0, -50.0, -20.0, -10.0, -5.0, -1.0, 0.0, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ValueLabels {
    measure: String,
    role: &'static str,
    system: String,
    unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VarianceLabels {
    measure: String,
    system: String,
    unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoleLabels {
    measure: String,
    role: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MeasureLabel {
    measure: String,
}

/// Handles of one (measure, role, system, unit).
struct ValueHandles {
    total: Counter<f64, AtomicU64>,
    values: Histogram,
}

/// The measure metrics, with every handle the config allows resolved at start.
pub(super) struct MeasureMetrics {
    /// By (measure id, role, system id, unit id).
    values: HashMap<(usize, Role, usize, usize), ValueHandles>,
    /// By (measure id, system id, unit id).
    variance: HashMap<(usize, usize, usize), Histogram>,
    /// By (measure id, role).
    revisions: HashMap<(usize, Role), Counter>,
    /// By measure id.
    unattached: Vec<Counter>,
}

impl MeasureMetrics {
    pub fn new(config: &Config, registry: &mut Registry) -> Self {
        let totals = Family::<ValueLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "waybill_measure",
            "Sum of measure values, each object's value counted once, by measure, role, reporting system and unit",
            totals.clone(),
        );
        let histograms =
            Family::<ValueLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(VALUE_BUCKETS)
            });
        registry.register(
            "waybill_measure_value",
            "Measure values per object (cost per shipment, shipped weight), by measure, role, reporting system and unit",
            histograms.clone(),
        );
        let variances =
            Family::<VarianceLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(VARIANCE_BUCKETS)
            });
        registry.register(
            "waybill_measure_variance",
            "Actual minus quoted value per object that has both, by measure, system reporting the actual value, and unit",
            variances.clone(),
        );
        let revised = Family::<RoleLabels, Counter>::default();
        registry.register(
            "waybill_measure_revisions",
            "Measure values replaced by a later report for the same object, measure and role (a re-sent invoice)",
            revised.clone(),
        );
        let unattached_family = Family::<MeasureLabel, Counter>::default();
        registry.register(
            "waybill_measure_unattached",
            "Measure values left out because they could not be paired with the milestone's objects",
            unattached_family.clone(),
        );

        let mut values = HashMap::new();
        let mut variance = HashMap::new();
        let mut revisions = HashMap::new();
        for route in &config.routes {
            for rule in &route.measures {
                let def = config.measure_def(&rule.measure);
                let system = rule.system.as_ref().unwrap_or(&route.system);
                for unit in &def.units {
                    let labels = ValueLabels {
                        measure: rule.measure.to_string(),
                        role: rule.role.as_str(),
                        system: system.to_string(),
                        unit: unit.to_string(),
                    };
                    values.insert(
                        (rule.measure.id(), rule.role, system.id(), unit.id()),
                        ValueHandles {
                            total: totals.get_or_create_owned(&labels),
                            values: histograms.get_or_create_owned(&labels),
                        },
                    );
                    // A variance needs both roles somewhere in the routes.
                    let quoted = config
                        .routes
                        .iter()
                        .flat_map(|r| &r.measures)
                        .any(|m| m.measure == rule.measure && m.role == Role::Quoted);
                    if rule.role == Role::Actual && quoted {
                        variance.insert(
                            (rule.measure.id(), system.id(), unit.id()),
                            variances.get_or_create_owned(&VarianceLabels {
                                measure: rule.measure.to_string(),
                                system: system.to_string(),
                                unit: unit.to_string(),
                            }),
                        );
                    }
                }
                revisions.insert(
                    (rule.measure.id(), rule.role),
                    revised.get_or_create_owned(&RoleLabels {
                        measure: rule.measure.to_string(),
                        role: rule.role.as_str(),
                    }),
                );
            }
        }
        let unattached = config
            .measures
            .iter()
            .map(|m| {
                unattached_family.get_or_create_owned(&MeasureLabel {
                    measure: m.to_string(),
                })
            })
            .collect();
        MeasureMetrics {
            values,
            variance,
            revisions,
            unattached,
        }
    }
}

/// What storing one value did.
enum Stored {
    /// No value of this measure and role was on the object.
    New,
    /// It replaced a different value.
    Changed,
    /// Nothing changed (the same value again, or a replayed exchange).
    Same,
}

impl Correlator {
    /// Attaches the observation's measure values to the objects of
    /// `milestone` this exchange marked in transaction `id` (from `news`),
    /// then checks variances.
    pub(super) fn record_measures(
        &mut self,
        id: TxRef,
        milestone: &Milestone,
        observation: &Observation,
        news: &mut News,
    ) {
        let values = &observation.measures.values;
        if values.is_empty() {
            return;
        }
        // The objects this group's exchange marked, and the objects the
        // whole exchange carries as keys (a batch of orders is split into
        // groups, but its values are in one list, in key order).
        let marked: Vec<Key> = news
            .milestones
            .iter()
            .filter(|m| &m.record.milestone == milestone)
            .map(|m| m.record.object.clone())
            .collect();
        let object_kind = &self.config.milestone_def(milestone).object;
        let carried: Vec<&Key> = observation
            .keys
            .iter()
            .filter(|k| &k.kind == object_kind)
            .collect();
        // Values of one rule, in document order.
        let mut rules: Vec<(&MeasureName, Role)> = Vec::new();
        for value in values {
            if !rules.contains(&(&value.measure, value.role)) {
                rules.push((&value.measure, value.role));
            }
        }
        // (measure, object, whether a value is new there), once each.
        let mut changed: Vec<(MeasureName, Key, bool)> = Vec::new();
        for (measure, role) in rules {
            let mine: Vec<&MeasureValue> = values
                .iter()
                .filter(|v| &v.measure == measure && v.role == role)
                .collect();
            let Some(pairs) = pair(&mine, &carried, &marked) else {
                // Counted once per exchange: by the group of its first object.
                let first = carried.first().copied().or(marked.first());
                if first.is_some_and(|o| marked.contains(o)) {
                    if let Some(counter) = self.metrics.measures.unattached.get(measure.id()) {
                        counter.inc_by(mine.len() as u64);
                    }
                }
                continue;
            };
            for (value, object) in pairs {
                let new = match self.record_value(id, milestone, observation, value, &object) {
                    Stored::New => true,
                    Stored::Changed => false,
                    Stored::Same => continue,
                };
                match changed
                    .iter_mut()
                    .find(|(m, o, _)| m == measure && o == &object)
                {
                    Some(entry) => entry.2 |= new,
                    None => changed.push((measure.clone(), object, new)),
                }
            }
        }
        for (measure, object, new) in changed {
            self.check_variance(id, &measure, &object, new, news);
        }
    }

    /// Stores one value on `object`.
    fn record_value(
        &mut self,
        id: TxRef,
        milestone: &Milestone,
        observation: &Observation,
        value: &MeasureValue,
        object: &Key,
    ) -> Stored {
        let exchange = &observation.exchange;
        let Some(tx) = self.store.get_mut(id) else {
            return Stored::Same;
        };
        let metrics = &self.metrics.measures;
        if let Some(existing) = tx.measure_mut(&value.measure, value.role, object) {
            if existing.exchange == exchange.id {
                // The same exchange again (a replayed journal record).
                return Stored::Same;
            }
            existing.revisions += 1;
            if let Some(counter) = metrics.revisions.get(&(value.measure.id(), value.role)) {
                counter.inc();
            }
            let changed = existing.amount != value.amount || existing.unit != value.unit;
            existing.amount = value.amount;
            existing.unit = value.unit.clone();
            existing.exchange = exchange.id;
            existing.at = exchange.started.time();
            existing.system = value.system.clone();
            return if changed {
                Stored::Changed
            } else {
                Stored::Same
            };
        }
        let key = (
            value.measure.id(),
            value.role,
            value.system.id(),
            value.unit.id(),
        );
        if let Some(handles) = metrics.values.get(&key) {
            if value.amount >= Amount::ZERO {
                handles.total.inc_by(value.amount.to_f64());
            }
            handles.values.observe(value.amount.to_f64());
        }
        tx.push_measure(MeasureRecord {
            measure: value.measure.clone(),
            role: value.role,
            object: object.clone(),
            amount: value.amount,
            unit: value.unit.clone(),
            milestone: milestone.clone(),
            system: value.system.clone(),
            exchange: exchange.id,
            at: exchange.started.time(),
            revisions: 0,
        });
        Stored::New
    }

    /// Observes the variance of `measure` on `object` when a `new` value
    /// completed the pair, and opens the variance exception when it exceeds
    /// the tolerance, or resolves it when a changed value is within it.
    fn check_variance(
        &mut self,
        id: TxRef,
        measure: &MeasureName,
        object: &Key,
        new: bool,
        news: &mut News,
    ) {
        let Some(tx) = self.store.get(id) else { return };
        let find = |role| {
            tx.measures()
                .iter()
                .find(|m| &m.measure == measure && m.role == role && &m.object == object)
        };
        let (Some(quoted), Some(actual)) = (find(Role::Quoted), find(Role::Actual)) else {
            return;
        };
        if quoted.unit != actual.unit {
            return;
        }
        let variance = actual.amount.minus(quoted.amount);
        if new {
            let key = (measure.id(), actual.system.id(), actual.unit.id());
            if let Some(histogram) = self.metrics.measures.variance.get(&key) {
                histogram.observe(variance.to_f64());
            }
        }
        let Some(rule) = self.config.measure_def(measure).variance.clone() else {
            return;
        };
        let resolution = Resolution::Measure {
            measure: measure.clone(),
            object: object.clone(),
        };
        if variance.abs() <= rule.tolerance {
            // A corrected value closes what the earlier one opened.
            let at = quoted.at.max(actual.at);
            self.resolve_where(id, at, news, |_, r| r == &resolution);
            return;
        }
        let opening = Opening {
            kind: rule.exception.kind,
            owner: rule
                .exception
                .owner
                .unwrap_or_else(|| actual.system.clone()),
            object: object.clone(),
            reason: variance_reason(measure, object, quoted, actual, variance),
            evidence: vec![quoted.exchange, actual.exchange],
            resolution,
            at: quoted.at.max(actual.at),
        };
        self.open(id, opening, Some(news));
    }
}

/// The values of one rule paired with the objects of this group: the n-th
/// value with the n-th object key the exchange carries (kept when this group
/// marked it), or, when the exchange carries no such key (the object was
/// found through a link), with the objects the group marked. `None` when
/// the counts differ.
fn pair<'v>(
    values: &[&'v MeasureValue],
    carried: &[&Key],
    marked: &[Key],
) -> Option<Vec<(&'v MeasureValue, Key)>> {
    if carried.is_empty() {
        return (values.len() == marked.len())
            .then(|| values.iter().copied().zip(marked.iter().cloned()).collect());
    }
    (values.len() == carried.len()).then(|| {
        values
            .iter()
            .copied()
            .zip(carried.iter().copied())
            .filter(|(_, object)| marked.contains(object))
            .map(|(value, object)| (value, object.clone()))
            .collect()
    })
}

/// "freight_cost of shipment:SH-1: actual 131.5 USD vs quoted 120 USD (+11.5)".
fn variance_reason(
    measure: &MeasureName,
    object: &Key,
    quoted: &MeasureRecord,
    actual: &MeasureRecord,
    variance: Amount,
) -> String {
    let sign = if variance > Amount::ZERO { "+" } else { "" };
    format!(
        "{measure} of {object}: actual {} {} vs quoted {} {} ({sign}{variance})",
        actual.amount, actual.unit, quoted.amount, quoted.unit
    )
}

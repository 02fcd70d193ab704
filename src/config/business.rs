//! The business model declared in config: milestones and the key kind each
//! is about, flows measured between milestones, and expectations.

use std::time::Duration;

use super::{ExceptionKind, FlowName, KeyKind, Milestone, System};

/// A declared milestone and the kind of key it is about (its object):
/// `shipped` is about a `shipment`, so a split order has one per shipment.
#[derive(Debug, Clone)]
pub struct MilestoneDef {
    pub name: Milestone,
    pub object: KeyKind,
    /// Reaching this milestone on every object of its kind completes the
    /// transaction (`freight_invoiced` on every shipment of an order).
    pub terminal: bool,
    /// Milestones the transaction must have reached before this one.
    pub requires: Vec<Milestone>,
    /// The exception opened when `requires` is not met on arrival.
    pub unmet: ExceptionRule,
    /// A transaction resting at this milestone longer than this is stuck.
    pub stuck_after: Option<Duration>,
}

/// An exception to open: its kind and, when known in advance, its owner
/// (else the system of the exchange that revealed it).
#[derive(Debug, Clone)]
pub struct ExceptionRule {
    pub kind: ExceptionKind,
    pub owner: Option<System>,
}

/// The exception kind opened when a milestone arrives before the ones it
/// requires and no other kind is configured.
pub const OUT_OF_ORDER: &str = "out_of_order";

/// A duration measured from one milestone to another, with its objective.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: FlowName,
    pub from: Milestone,
    pub to: Milestone,
    pub slo: Duration,
}

/// "After `after`, expect `expect` within `within`, else open `exception`
/// owned by `owner`." Evaluated by the exceptions stage (a later issue).
#[derive(Debug, Clone)]
pub struct Expectation {
    pub after: Milestone,
    pub expect: Milestone,
    pub within: Duration,
    pub exception: ExceptionKind,
    pub owner: System,
}

impl super::Config {
    /// Every exception (kind, owner system) this config can open, each once
    /// and in a stable order, so their metric series can exist at zero from
    /// the first scrape. A rule whose owner is the system of the revealing
    /// exchange gives one pair per system that can reveal it.
    pub fn possible_exceptions(&self) -> Vec<(ExceptionKind, System)> {
        let mut pairs = std::collections::BTreeSet::new();
        for e in &self.expectations {
            pairs.insert((e.exception.clone(), e.owner.clone()));
        }
        for def in &self.milestone_defs {
            match &def.unmet.owner {
                Some(owner) => {
                    pairs.insert((def.unmet.kind.clone(), owner.clone()));
                }
                None if !def.requires.is_empty() => {
                    for system in self.systems.iter() {
                        pairs.insert((def.unmet.kind.clone(), system.clone()));
                    }
                }
                None => {}
            }
        }
        for route in &self.routes {
            let Some(repeats) = &route.repeats else {
                continue;
            };
            let rules = repeats
                .duplicate
                .iter()
                .chain(repeats.retry.iter().map(|r| &r.exception));
            for rule in rules {
                let owner = rule.owner.as_ref().unwrap_or(&route.system);
                pairs.insert((rule.kind.clone(), owner.clone()));
            }
        }
        pairs.into_iter().collect()
    }
}

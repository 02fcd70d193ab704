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

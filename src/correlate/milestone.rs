//! Milestones, flows and completion. A milestone is recorded on its object:
//! the key of the milestone's declared kind in the exchange, else such a key
//! linked directly to one in the exchange (a tracking-only webhook finds its
//! shipment), else the root key. The first occurrence sets the time; later
//! ones are counted as repeats. A flow is measured when its end milestone
//! arrives.

use prometheus_client::metrics::counter::Counter;
use smallvec::SmallVec;

use crate::config::{Config, Flow, Milestone};
use crate::extract::{Key, Observation};
use crate::state::{FlowRecord, MilestoneRecord, NameId, Names, Status, Transaction, TxMut};

use super::metrics::CorrelateMetrics;
use super::{Marked, News};

/// Records `milestone` on each of its objects in `tx`, adding what it
/// marked and the flows it completed to `news`.
pub(super) fn record(
    config: &Config,
    metrics: &CorrelateMetrics,
    tx: &mut Transaction,
    milestone: &Milestone,
    observation: &Observation,
    keys: &[Key],
    news: &mut News,
) {
    let object_kind = &config.milestone_def(milestone).object;
    let counters = &metrics.milestones[milestone.id()];
    let mut objects: SmallVec<[Key; 2]> = keys
        .iter()
        .filter(|k| &k.kind == object_kind)
        .cloned()
        .collect();
    if objects.is_empty() {
        objects = keys
            .iter()
            .flat_map(|k| tx.neighbours(k))
            .filter(|k| k.is_of(object_kind))
            .filter_map(|k| k.to_key(&config.key_kinds))
            .collect();
        objects.sort();
        objects.dedup();
    }
    if objects.is_empty() {
        match tx.root() {
            Some(root) if root.kind == object_kind => objects.push(root.to_key()),
            _ => {
                counters.unresolved.inc();
                objects.push(tx.name().to_key());
            }
        }
    }

    let exchange = &observation.exchange;
    let id = NameId::new(milestone);
    for object in objects {
        // Where the object is in the transaction's keys, found once for
        // the look-up, the record and its flows.
        let at = tx.position(&object);
        if let Some(existing) = at.and_then(|at| tx.milestone_at_mut(id, at)) {
            existing.add_repeat();
            let existing = existing.clone();
            counters.repeats.inc();
            if let Some(record) =
                Transaction::milestone_record_on(&existing, object, Names::of(config))
            {
                news.milestones.push(Marked {
                    record,
                    repeat: true,
                });
            }
            continue;
        }
        counters.recorded.inc();
        let record = MilestoneRecord {
            milestone: milestone.clone(),
            object: object.clone(),
            at: exchange.started,
            system: exchange.system.clone(),
            operation: observation.operation.clone(),
            exchange: exchange.id,
            repeats: 0,
        };
        let Some(at) = at else {
            continue;
        };
        tx.push_milestone_at(&record, at);
        news.milestones.push(Marked {
            record,
            repeat: false,
        });
        for (index, flow) in config.flows.iter().enumerate() {
            if &flow.to != milestone {
                continue;
            }
            if let Some(record) = measure(config, flow, tx, &object, at) {
                let handles = &metrics.flows[index];
                if record.within_slo {
                    handles.met.inc();
                } else {
                    handles.missed.inc();
                }
                tx.push_flow_at(&record, at);
                news.flows.push(record);
            }
        }
    }
}

/// Marks the transaction complete when every object of each terminal
/// milestone's kind has reached it (and at least one has), open otherwise;
/// counts a completion in `completed`.
pub(super) fn refresh_status(config: &Config, completed: &Counter, tx: &mut TxMut<'_>) {
    let mut terminals = config
        .milestone_defs
        .iter()
        .filter(|d| d.terminal)
        .peekable();
    let complete = terminals.peek().is_some()
        && terminals.all(|def| {
            let mut objects = tx
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.is_of(&def.object))
                .peekable();
            objects.peek().is_some() && objects.all(|(at, _)| tx.reached_at(&def.name, Some(at)))
        });
    let status = if complete {
        Status::Complete
    } else {
        Status::Open
    };
    let current = match status {
        Status::Open => tx
            .last_milestone()
            .and_then(|m| m.milestone().get(&config.milestones))
            .cloned(),
        Status::Complete => None,
    };
    if tx.set_status(status) == Status::Open && complete {
        completed.inc();
        tx.set_stuck(None);
    }
    tx.set_current(current);
}

/// The flow `flow` ending on `object` (at `position` in the transaction's
/// keys), if its start milestone was reached:
/// on the same object when both milestones are about the same kind of key,
/// else the earliest start on an object linked to `object` (the order a
/// shipment belongs to), else the earliest start in the transaction.
fn measure(
    config: &crate::config::Config,
    flow: &Flow,
    tx: &Transaction,
    object: &Key,
    position: usize,
) -> Option<FlowRecord> {
    if tx.measured_at(&flow.name, position) {
        return None;
    }
    let end = tx
        .milestones
        .iter()
        .find(|m| m.milestone().is(&flow.to) && m.object_position() == position)?;
    let starts = || {
        tx.milestones
            .iter()
            .filter(|m| m.milestone().is(&flow.from))
    };
    let same_kind =
        config.milestone_def(&flow.from).object == config.milestone_def(&flow.to).object;
    let start = if same_kind {
        starts().find(|m| m.object_position() == position)?
    } else {
        let linked: SmallVec<[_; 4]> = tx.neighbours_at(Some(position)).collect();
        starts()
            .filter(|m| tx.milestone_object(m).is_some_and(|o| linked.contains(&o)))
            .min_by_key(|m| m.stamp())
            .or_else(|| starts().min_by_key(|m| m.stamp()))?
    };
    let (started, ended) = (start.stamp(), end.stamp());
    let duration = ended.since(started);
    Some(FlowRecord {
        flow: flow.name.clone(),
        object: object.clone(),
        started,
        ended,
        duration,
        within_slo: duration <= flow.slo,
    })
}

//! The transaction record and what it holds: keys and the links between
//! them, milestones per object, measures per object, completed flows and
//! the exchange timeline.
//! Records serialize to the JSON the admin API returns.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::config::{
    Amount, ExceptionKind, FlowName, MeasureName, Milestone, Operation, Role, System, Unit,
};
use crate::extract::Key;

/// Identity of a transaction inside one store; not a business identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TxId(pub u64);

/// Whether a transaction still has work ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Some object has not reached a terminal milestone yet.
    Open,
    /// Every object of the terminal milestones' kind has reached one.
    Complete,
}

impl Status {
    /// The name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Complete => "complete",
        }
    }
}

/// The set of keys linked together by exchanges that carried more than one,
/// and everything observed about them.
#[derive(Debug, Clone, Serialize)]
pub struct Transaction {
    #[serde(skip)]
    pub id: TxId,
    /// The key that names the transaction: the first key of the root kind
    /// seen, or until one is seen, the first key seen at all.
    pub name: Key,
    /// The first key of the root kind seen, if any yet.
    pub root: Option<Key>,
    /// Names the transaction went by before (before its root key was seen,
    /// or of transactions merged into it): its earlier trace IDs derive
    /// from them, so later spans link to those traces.
    pub former_names: Vec<Key>,
    pub status: Status,
    /// Every key, in the order first seen.
    pub keys: Vec<Key>,
    /// Pairs of keys seen together in one exchange: how the set was built,
    /// and how a milestone finds its object (a tracking number's shipment).
    pub links: Vec<(Key, Key)>,
    /// Milestones in the order they were first recorded.
    pub milestones: Vec<MilestoneRecord>,
    /// Measure values per object, measure and role (a re-sent invoice
    /// replaces its value), in the order first recorded.
    pub measures: Vec<MeasureRecord>,
    /// Flows measured so far.
    pub flows: Vec<FlowRecord>,
    /// Exceptions opened on this transaction, open and resolved.
    pub exceptions: Vec<ExceptionRecord>,
    /// Attempts of operations that tell retries from duplicates.
    pub attempts: Vec<Attempt>,
    /// The latest milestone of an open transaction (where it is now);
    /// `None` once complete or before any milestone.
    pub current: Option<Milestone>,
    /// The milestone the transaction has been resting at for longer than
    /// that milestone's `stuck_after`, if any.
    pub stuck: Option<Milestone>,
    /// The most recent exchanges, oldest first (bounded).
    pub exchanges: VecDeque<ExchangeRecord>,
    /// Exchanges that fell off the bounded timeline.
    pub exchanges_dropped: u64,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub last_updated: SystemTime,
}

/// One milestone reached by one object.
#[derive(Debug, Clone, Serialize)]
pub struct MilestoneRecord {
    pub milestone: Milestone,
    /// The key the milestone is about (`shipped` → a shipment).
    pub object: Key,
    /// When it first happened (the exchange's start).
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    pub system: System,
    pub operation: Option<Operation>,
    /// The exchange that recorded it first.
    pub exchange: u64,
    /// How many later exchanges marked the same milestone on the same object.
    pub repeats: u32,
}

/// The value of one measure in one role on one object: the quoted freight
/// cost of a shipment, its invoiced cost, its weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureRecord {
    pub measure: MeasureName,
    pub role: Role,
    /// The key the value is about (the milestone's object).
    pub object: Key,
    /// Exact decimal, serialized as a string (`"12.5"`).
    pub amount: Amount,
    /// A declared currency, `kg` or `count`.
    pub unit: Unit,
    /// The milestone it came with.
    pub milestone: Milestone,
    pub system: System,
    /// The exchange that carried the current value.
    pub exchange: u64,
    /// When the current value arrived.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// How many later exchanges reported it again (a re-sent invoice); the
    /// latest value replaces the earlier one, never adds to it.
    pub revisions: u32,
}

/// One measured flow on one object.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRecord {
    pub flow: FlowName,
    /// The object of the flow's end milestone.
    pub object: Key,
    #[serde(serialize_with = "rfc3339")]
    pub started: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub ended: SystemTime,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    pub within_slo: bool,
}

/// Something a person must own: a gap between systems.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionRecord {
    /// Unique per sidecar.
    pub id: u64,
    pub kind: ExceptionKind,
    /// The system whose people must act.
    pub owner: System,
    /// The key the exception is about.
    pub object: Key,
    /// What happened, in words.
    pub reason: String,
    #[serde(serialize_with = "rfc3339")]
    pub opened: SystemTime,
    #[serde(serialize_with = "rfc3339_opt")]
    pub resolved: Option<SystemTime>,
    /// The exchanges involved.
    pub evidence: Vec<u64>,
    /// What closes it by itself.
    pub resolution: Resolution,
}

impl ExceptionRecord {
    /// Still open?
    pub fn is_open(&self) -> bool {
        self.resolved.is_none()
    }
}

/// What resolves an exception without a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "on")]
pub enum Resolution {
    /// The milestone arriving on the object (or, when `object` is `None`,
    /// anywhere in the transaction).
    Milestone {
        milestone: Milestone,
        object: Option<Key>,
    },
    /// A successful attempt of the operation on the object.
    Success { operation: Operation, object: Key },
    /// Only a person can close it (a duplicate shipment must be cancelled).
    Manual,
    /// The object's quoted and actual values of the measure coming within
    /// the measure's variance tolerance (a corrected invoice).
    Measure { measure: MeasureName, object: Key },
}

/// The attempts of one operation on one object.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub operation: Operation,
    pub object: Key,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub successes: u32,
    /// Retries: attempts that followed a failure.
    pub retries: u32,
    /// Duplicates: successes after the first with a new idempotency key.
    pub duplicates: u32,
    #[serde(serialize_with = "rfc3339_opt")]
    pub first_failure: Option<SystemTime>,
    /// Idempotency keys of the successful attempts (bounded).
    pub idempotency_keys: Vec<String>,
}

/// One exchange in a transaction's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    pub id: u64,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    pub system: System,
    pub operation: Option<Operation>,
    pub method: String,
    pub path: String,
    /// The status the client saw (502/504 when the upstream failed).
    pub status: u16,
    /// Why the upstream failed, when it did.
    pub error: Option<&'static str>,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    pub keys: Vec<Key>,
    pub milestone: Option<Milestone>,
    /// Extraction problems (`malformed_json` …).
    pub problems: Vec<&'static str>,
}

impl Transaction {
    /// A new transaction named by `name`.
    pub fn new(id: TxId, name: Key, now: SystemTime) -> Self {
        Transaction {
            id,
            name,
            root: None,
            former_names: Vec::new(),
            status: Status::Open,
            keys: Vec::new(),
            links: Vec::new(),
            milestones: Vec::new(),
            measures: Vec::new(),
            flows: Vec::new(),
            exceptions: Vec::new(),
            attempts: Vec::new(),
            current: None,
            stuck: None,
            exchanges: VecDeque::new(),
            exchanges_dropped: 0,
            first_seen: now,
            last_updated: now,
        }
    }

    /// Renames the transaction, remembering the old name.
    pub fn rename(&mut self, name: Key) {
        if name != self.name {
            let old = std::mem::replace(&mut self.name, name);
            if !self.former_names.contains(&old) {
                self.former_names.push(old);
            }
            self.former_names.retain(|k| k != &self.name);
        }
    }

    /// The record of `milestone` on `object`, if reached.
    pub fn milestone_mut(
        &mut self,
        milestone: &Milestone,
        object: &Key,
    ) -> Option<&mut MilestoneRecord> {
        self.milestones
            .iter_mut()
            .find(|m| &m.milestone == milestone && &m.object == object)
    }

    /// The value of `measure` in `role` on `object`, if recorded.
    pub fn measure_mut(
        &mut self,
        measure: &MeasureName,
        role: Role,
        object: &Key,
    ) -> Option<&mut MeasureRecord> {
        self.measures
            .iter_mut()
            .find(|m| &m.measure == measure && m.role == role && &m.object == object)
    }

    /// Has `milestone` been reached on `object` (on any object when `None`)?
    pub fn reached(&self, milestone: &Milestone, object: Option<&Key>) -> bool {
        self.milestones
            .iter()
            .any(|m| &m.milestone == milestone && object.is_none_or(|o| &m.object == o))
    }

    /// Keys linked directly to `key` by some exchange.
    pub fn neighbours<'a>(&'a self, key: &'a Key) -> impl Iterator<Item = &'a Key> + 'a {
        self.links.iter().filter_map(move |(a, b)| {
            if a == key {
                Some(b)
            } else if b == key {
                Some(a)
            } else {
                None
            }
        })
    }

    /// The last milestone recorded, for listings.
    pub fn last_milestone(&self) -> Option<&MilestoneRecord> {
        self.milestones.iter().max_by_key(|m| m.at)
    }
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

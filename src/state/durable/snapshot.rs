//! The snapshot format: every held transaction, the correlator's pending
//! deadlines and its counters, at one journal position. Loading the
//! snapshot and replaying the journal after that position gives the state
//! the correlator had.
//!
//! The types here mirror the in-memory records with config names as text
//! (resolved against the config on load, like journal records) and exact
//! times (the admin API's JSON rounds to milliseconds; a snapshot must
//! not). The bytes are framed like journal records: version, CRC32, JSON.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Symbol, Symbols};
use crate::extract::{Key, MeasureValue, Problem};
use crate::state::{
    Attempt, ExceptionRecord, FlowRecord, KeyBlock, KeyView, MeasureRecord, MilestoneRecord, Name,
    NameId, Names, NewExchange, Resolution, Stamp, Status, Timeline, Transaction, TxId,
};

use super::record::{load_value, save_value, upstream_error, Damaged, SavedValue, VERSION};

/// Everything the correlator needs to continue where it was.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub transactions: Vec<SavedTransaction>,
    /// Pending deadlines, in due order.
    pub schedule: Vec<SavedDue>,
    /// The store's next transaction id.
    pub next_transaction: u64,
    /// The last exception id handed out.
    pub next_exception: u64,
    /// The highest exchange id applied, so ids stay unique after restart.
    pub last_exchange: u64,
}

/// A business key as `(kind, value)`.
pub type SavedKey = (String, String);

/// One pending deadline of the correlator's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedDue {
    pub at: SystemTime,
    pub due: SavedDueKind,
}

/// What a deadline is for (see the correlator's schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SavedDueKind {
    Expectation {
        /// Position in `expectations:` when saved; only read for snapshots
        /// written before `name` existed.
        expectation: usize,
        /// Which expectation, by what it says: it is found again by name,
        /// so reordering `expectations:` between restarts misroutes nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<ExpectationName>,
        object: SavedKey,
        exchange: u64,
    },
    RetryWindow {
        route: String,
        object: SavedKey,
    },
    Stuck {
        milestone: String,
        object: SavedKey,
        since: SystemTime,
    },
}

/// An expectation named by its config: after, expect and the exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationName {
    pub after: String,
    pub expect: String,
    pub exception: String,
}

impl ExpectationName {
    /// The name of `config.expectations[index]`.
    pub fn of(config: &Config, index: usize) -> Option<Self> {
        config.expectations.get(index).map(|e| ExpectationName {
            after: e.after.as_str().to_owned(),
            expect: e.expect.as_str().to_owned(),
            exception: e.exception.as_str().to_owned(),
        })
    }

    /// Where this expectation is in `config.expectations` now, if it still is.
    pub fn find(&self, config: &Config) -> Option<usize> {
        config.expectations.iter().position(|e| {
            e.after.as_str() == self.after
                && e.expect.as_str() == self.expect
                && e.exception.as_str() == self.exception
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedTransaction {
    pub id: u64,
    pub name: SavedKey,
    pub root: Option<SavedKey>,
    pub former_names: Vec<SavedKey>,
    pub complete: bool,
    pub keys: Vec<SavedKey>,
    pub links: Vec<(SavedKey, SavedKey)>,
    pub milestones: Vec<SavedMilestone>,
    /// Added after version 1 shipped: absent in older snapshots, which had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<SavedMeasure>,
    pub flows: Vec<SavedFlow>,
    pub exceptions: Vec<SavedException>,
    pub attempts: Vec<SavedAttempt>,
    pub current: Option<String>,
    pub stuck: Option<String>,
    pub exchanges: Vec<SavedExchange>,
    pub exchanges_dropped: u64,
    pub first_seen: SystemTime,
    pub last_updated: SystemTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedMilestone {
    pub milestone: String,
    pub object: SavedKey,
    pub at: SystemTime,
    pub system: String,
    pub operation: Option<String>,
    pub exchange: u64,
    pub repeats: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedMeasure {
    /// Measure, role, exact amount, unit, system.
    pub value: SavedValue,
    pub object: SavedKey,
    pub milestone: String,
    pub exchange: u64,
    pub at: SystemTime,
    pub revisions: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedFlow {
    pub flow: String,
    pub object: SavedKey,
    pub started: SystemTime,
    pub ended: SystemTime,
    pub duration: Duration,
    pub within_slo: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedException {
    pub id: u64,
    pub kind: String,
    pub owner: String,
    pub object: SavedKey,
    pub reason: String,
    pub opened: SystemTime,
    pub resolved: Option<SystemTime>,
    pub evidence: Vec<u64>,
    pub resolution: SavedResolution,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SavedResolution {
    Milestone {
        milestone: String,
        object: Option<SavedKey>,
    },
    Success {
        operation: String,
        object: SavedKey,
    },
    Manual,
    /// Added after version 1 shipped; older builds never wrote it.
    Measure {
        measure: String,
        object: SavedKey,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedAttempt {
    pub operation: String,
    pub object: SavedKey,
    pub failures: u32,
    pub successes: u32,
    pub retries: u32,
    pub duplicates: u32,
    pub first_failure: Option<SystemTime>,
    pub idempotency_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedExchange {
    pub id: u64,
    pub at: SystemTime,
    pub system: String,
    pub operation: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub error: Option<String>,
    pub duration: Duration,
    pub keys: Vec<SavedKey>,
    pub milestone: Option<String>,
    pub problems: Vec<String>,
}

impl Snapshot {
    /// The framed bytes of this snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let mut frame = Vec::with_capacity(5 + payload.len());
        frame.push(VERSION);
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    /// Reads framed snapshot bytes, checking version and checksum.
    pub fn decode(frame: &[u8]) -> Result<Snapshot, Damaged> {
        if frame.len() < 5 {
            return Err(Damaged::Short(frame.len()));
        }
        if frame[0] != VERSION {
            return Err(Damaged::Version(frame[0]));
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&frame[1..5]);
        let payload = &frame[5..];
        if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
            return Err(Damaged::Checksum);
        }
        serde_json::from_slice(payload).map_err(|e| Damaged::Payload(e.to_string()))
    }
}

// === saving ===

/// The saved form of a key.
pub fn save_key(key: &Key) -> SavedKey {
    (key.kind.as_str().to_owned(), key.value.to_string())
}

/// The saved form of a transaction's name or root.
fn save_name(name: Name<'_>) -> SavedKey {
    (name.kind.as_str().to_owned(), name.value.to_owned())
}

/// The saved form of a transaction's key, its kind read from `names`.
fn save_view(key: KeyView<'_>, names: Names<'_>) -> SavedKey {
    let kind = key.kind().get(names.key_kinds).map_or("", |k| k.as_str());
    (kind.to_owned(), key.value().to_owned())
}

fn name<T>(symbol: &Symbol<T>) -> String {
    symbol.as_str().to_owned()
}

impl SavedTransaction {
    /// The saved form of `tx`, config names read from `names`.
    pub fn of(tx: &Transaction, names: Names<'_>) -> Self {
        SavedTransaction {
            id: tx.id.0,
            name: save_name(tx.name()),
            root: tx.root().map(save_name),
            former_names: tx.former_names().iter().map(save_key).collect(),
            complete: tx.status == Status::Complete,
            keys: tx.keys.iter().map(|k| save_view(k, names)).collect(),
            links: tx
                .linked_keys()
                .map(|(a, b)| (save_view(a, names), save_view(b, names)))
                .collect(),
            milestones: tx
                .milestones
                .iter()
                .filter_map(|m| tx.milestone_record(m, names))
                .map(|m| SavedMilestone {
                    milestone: name(&m.milestone),
                    object: save_key(&m.object),
                    at: m.at.time(),
                    system: name(&m.system),
                    operation: m.operation.as_ref().map(name),
                    exchange: m.exchange,
                    repeats: m.repeats,
                })
                .collect(),
            measures: tx
                .measures()
                .iter()
                .map(|m| SavedMeasure {
                    value: save_value(&MeasureValue {
                        measure: m.measure.clone(),
                        role: m.role,
                        amount: m.amount,
                        unit: m.unit.clone(),
                        system: m.system.clone(),
                    }),
                    object: save_key(&m.object),
                    milestone: name(&m.milestone),
                    exchange: m.exchange,
                    at: m.at,
                    revisions: m.revisions,
                })
                .collect(),
            flows: tx
                .flows
                .iter()
                .filter_map(|f| tx.flow_record(f, names))
                .map(|f| SavedFlow {
                    flow: name(&f.flow),
                    object: save_key(&f.object),
                    started: f.started.time(),
                    ended: f.ended.time(),
                    duration: f.duration,
                    within_slo: f.within_slo,
                })
                .collect(),
            exceptions: tx
                .exceptions()
                .iter()
                .map(|e| SavedException {
                    id: e.id,
                    kind: name(&e.kind),
                    owner: name(&e.owner),
                    object: save_key(&e.object),
                    reason: e.reason.clone(),
                    opened: e.opened,
                    resolved: e.resolved,
                    evidence: e.evidence.clone(),
                    resolution: match &e.resolution {
                        Resolution::Milestone { milestone, object } => SavedResolution::Milestone {
                            milestone: name(milestone),
                            object: object.as_ref().map(save_key),
                        },
                        Resolution::Success { operation, object } => SavedResolution::Success {
                            operation: name(operation),
                            object: save_key(object),
                        },
                        Resolution::Manual => SavedResolution::Manual,
                        Resolution::Measure { measure, object } => SavedResolution::Measure {
                            measure: name(measure),
                            object: save_key(object),
                        },
                    },
                })
                .collect(),
            attempts: tx
                .attempts()
                .iter()
                .map(|a| SavedAttempt {
                    operation: name(&a.operation),
                    object: save_key(&a.object),
                    failures: a.failures,
                    successes: a.successes,
                    retries: a.retries,
                    duplicates: a.duplicates,
                    first_failure: a.first_failure,
                    idempotency_keys: a.idempotency_keys.clone(),
                })
                .collect(),
            current: tx.current().and_then(|m| m.get(names.milestones)).map(name),
            stuck: tx.stuck().map(name),
            exchanges: tx
                .exchanges
                .iter()
                .map(|x| SavedExchange {
                    id: x.id,
                    at: x.at(),
                    system: x.system.get(names.systems).map(name).unwrap_or_default(),
                    operation: x.operation.and_then(|o| o.get(names.operations)).map(name),
                    method: x.method().to_owned(),
                    path: x.path().to_owned(),
                    status: x.status,
                    error: x.error.map(|e| e.as_str().to_owned()),
                    duration: x.duration(),
                    keys: tx.exchange_keys(x).map(|k| save_view(k, names)).collect(),
                    milestone: x.milestone.and_then(|m| m.get(names.milestones)).map(name),
                    problems: x.problems().iter().map(|p| p.as_str().to_owned()).collect(),
                })
                .collect(),
            exchanges_dropped: u64::from(tx.exchanges_dropped()),
            first_seen: tx.first_seen.time(),
            last_updated: tx.last_updated.time(),
        }
    }
}

// === loading ===

/// A saved milestone or flow on a key its transaction does not have: never
/// written (both are recorded on the transaction's own keys).
fn not_a_key(what: &str, name: &str, object: &Key) -> Damaged {
    Damaged::Unknown(format!(
        "{what} {name} on {object}, not a key of its transaction"
    ))
}

/// Resolves saved names against the config.
pub struct Resolver<'a> {
    config: &'a Config,
}

impl<'a> Resolver<'a> {
    pub fn new(config: &'a Config) -> Self {
        Resolver { config }
    }

    fn symbol<T>(&self, table: &Symbols<T>, what: &str, name: &str) -> Result<Symbol<T>, Damaged> {
        table
            .get(name)
            .ok_or_else(|| Damaged::Unknown(format!("{what} {name}")))
    }

    /// The key `(kind, value)`.
    pub fn key(&self, (kind, value): &SavedKey) -> Result<Key, Damaged> {
        let kind = self.symbol(&self.config.key_kinds, "key kind", kind)?;
        Ok(Key::new(kind, value.as_str()))
    }

    fn keys(&self, keys: &[SavedKey]) -> Result<Vec<Key>, Damaged> {
        keys.iter().map(|k| self.key(k)).collect()
    }

    /// The milestone named `name`.
    pub fn milestone(&self, name: &str) -> Result<crate::config::Milestone, Damaged> {
        self.symbol(&self.config.milestones, "milestone", name)
    }

    fn system(&self, name: &str) -> Result<crate::config::System, Damaged> {
        self.symbol(&self.config.systems, "system", name)
    }

    fn operation(&self, name: &str) -> Result<crate::config::Operation, Damaged> {
        self.symbol(&self.config.operations, "operation", name)
    }

    /// The operation named `name`, if one is.
    fn maybe_operation(
        &self,
        name: Option<&str>,
    ) -> Result<Option<crate::config::Operation>, Damaged> {
        name.map(|o| self.operation(o)).transpose()
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Result<crate::config::RouteId, Damaged> {
        self.config
            .routes
            .iter()
            .find(|r| r.operation.as_str() == name)
            .map(|r| r.id)
            .ok_or_else(|| Damaged::Unknown(format!("route {name}")))
    }

    /// The transaction `saved` stands for.
    pub fn transaction(&self, saved: &SavedTransaction) -> Result<Transaction, Damaged> {
        let mut tx = Transaction::new(TxId(saved.id), self.key(&saved.name)?, saved.first_seen);
        let root = saved.root.as_ref().map(|k| self.key(k)).transpose()?;
        tx.set_former_names(self.keys(&saved.former_names)?);
        tx.status = if saved.complete {
            Status::Complete
        } else {
            Status::Open
        };
        tx.set_keys(KeyBlock::of(
            self.keys(&saved.keys)?.iter().map(KeyView::of),
        ));
        for (a, b) in &saved.links {
            let (a, b) = (self.key(a)?, self.key(b)?);
            if let (Some(a), Some(b)) = (tx.position(&a), tx.position(&b)) {
                tx.link(a, b);
            }
        }
        tx.set_root(root);
        tx.milestones = Vec::with_capacity(saved.milestones.len());
        for m in &saved.milestones {
            let record = MilestoneRecord {
                milestone: self.milestone(&m.milestone)?,
                object: self.key(&m.object)?,
                at: Stamp::new(m.at),
                system: self.system(&m.system)?,
                operation: self.maybe_operation(m.operation.as_deref())?,
                exchange: m.exchange,
                repeats: m.repeats,
            };
            if !tx.push_milestone(&record) {
                return Err(not_a_key("milestone", &m.milestone, &record.object));
            }
        }
        let measures = saved
            .measures
            .iter()
            .map(|m| {
                let value = load_value(self.config, &m.value)?;
                Ok(MeasureRecord {
                    measure: value.measure,
                    role: value.role,
                    object: self.key(&m.object)?,
                    amount: value.amount,
                    unit: value.unit,
                    milestone: self.milestone(&m.milestone)?,
                    system: value.system,
                    exchange: m.exchange,
                    at: m.at,
                    revisions: m.revisions,
                })
            })
            .collect::<Result<_, Damaged>>()?;
        for f in &saved.flows {
            let record = FlowRecord {
                flow: self.symbol(&self.config.flow_names, "flow", &f.flow)?,
                object: self.key(&f.object)?,
                started: Stamp::new(f.started),
                ended: Stamp::new(f.ended),
                duration: f.duration,
                within_slo: f.within_slo,
            };
            if !tx.push_flow(&record) {
                return Err(not_a_key("flow", &f.flow, &record.object));
            }
        }
        let exceptions = saved
            .exceptions
            .iter()
            .map(|e| {
                Ok(ExceptionRecord {
                    id: e.id,
                    kind: self.symbol(&self.config.exception_kinds, "exception kind", &e.kind)?,
                    owner: self.system(&e.owner)?,
                    object: self.key(&e.object)?,
                    reason: e.reason.clone(),
                    opened: e.opened,
                    resolved: e.resolved,
                    evidence: e.evidence.clone(),
                    resolution: match &e.resolution {
                        SavedResolution::Milestone { milestone, object } => Resolution::Milestone {
                            milestone: self.milestone(milestone)?,
                            object: object.as_ref().map(|k| self.key(k)).transpose()?,
                        },
                        SavedResolution::Success { operation, object } => Resolution::Success {
                            operation: self.operation(operation)?,
                            object: self.key(object)?,
                        },
                        SavedResolution::Manual => Resolution::Manual,
                        SavedResolution::Measure { measure, object } => Resolution::Measure {
                            measure: self.symbol(&self.config.measures, "measure", measure)?,
                            object: self.key(object)?,
                        },
                    },
                })
            })
            .collect::<Result<_, Damaged>>()?;
        let attempts = saved
            .attempts
            .iter()
            .map(|a| {
                Ok(Attempt {
                    operation: self.operation(&a.operation)?,
                    object: self.key(&a.object)?,
                    failures: a.failures,
                    successes: a.successes,
                    retries: a.retries,
                    duplicates: a.duplicates,
                    first_failure: a.first_failure,
                    idempotency_keys: a.idempotency_keys.clone(),
                })
            })
            .collect::<Result<_, Damaged>>()?;
        tx.set_records(measures, exceptions, attempts);
        let current = saved
            .current
            .as_deref()
            .map(|m| self.milestone(m))
            .transpose()?;
        tx.replace_current(current.as_ref().map(NameId::new));
        let stuck = saved
            .stuck
            .as_deref()
            .map(|m| self.milestone(m))
            .transpose()?;
        tx.replace_stuck(stuck);
        tx.exchanges = Timeline::default();
        for x in &saved.exchanges {
            let method = http::Method::from_bytes(x.method.as_bytes())
                .map_err(|_| Damaged::Unknown(format!("method {}", x.method)))?;
            let problems: Vec<Problem> = x
                .problems
                .iter()
                .filter_map(|p| Problem::ALL.into_iter().find(|k| k.as_str() == p))
                .collect();
            let system = self.system(&x.system)?;
            let operation = self.maybe_operation(x.operation.as_deref())?;
            let milestone = x
                .milestone
                .as_deref()
                .map(|m| self.milestone(m))
                .transpose()?;
            tx.exchanges.push(NewExchange {
                id: x.id,
                at: Stamp::new(x.at),
                system: &system,
                operation: operation.as_ref(),
                method: &method,
                path: &x.path,
                status: x.status,
                error: x.error.as_deref().and_then(upstream_error),
                duration: x.duration,
                // A key the transaction does not have (never written)
                // could not be shown with the exchange: it is left out.
                keys: tx.key_refs(&self.keys(&x.keys)?),
                milestone: milestone.as_ref(),
                problems: &problems,
            });
        }
        tx.count_dropped(usize::try_from(saved.exchanges_dropped).unwrap_or(usize::MAX));
        tx.last_updated = Stamp::new(saved.last_updated);
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
systems: [wms]
keys: [order, shipment, tracking]
root: order
listeners:
  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }
milestones:
  - { name: packed, object: shipment }
  - { name: labelled, object: tracking }
routes: []
"#;

    /// A transaction as the build before compact records wrote it (the
    /// saved format did not change: keys by value everywhere). Its third
    /// exchange starts 55 hours after the first (beyond a packed record's
    /// time offset), took 7 s (beyond its `u32` nanoseconds) and shares
    /// the second's path; its second milestone was recorded by an exchange
    /// beyond 48 bits and repeated beyond 16 bits (beyond a packed
    /// milestone): it must come back exactly all the same.
    const WRITTEN_BEFORE: &str = r#"{
      "id": 7,
      "name": ["order", "SO-1"], "root": ["order", "SO-1"], "former_names": [["shipment", "SH-1"]],
      "complete": false,
      "keys": [["order", "SO-1"], ["shipment", "SH-1"], ["tracking", "1Z1"]],
      "links": [[["shipment", "SH-1"], ["tracking", "1Z1"]], [["order", "SO-1"], ["shipment", "SH-1"]]],
      "milestones": [{"milestone": "packed", "object": ["shipment", "SH-1"],
        "at": {"secs_since_epoch": 1800000000, "nanos_since_epoch": 5}, "system": "wms",
        "operation": null, "exchange": 2, "repeats": 0},
        {"milestone": "labelled", "object": ["tracking", "1Z1"],
        "at": {"secs_since_epoch": 1800000001, "nanos_since_epoch": 0}, "system": "wms",
        "operation": null, "exchange": 281474976710659, "repeats": 70000}],
      "flows": [], "exceptions": [], "attempts": [], "current": "packed", "stuck": null,
      "exchanges": [
        {"id": 1, "at": {"secs_since_epoch": 1800000000, "nanos_since_epoch": 5}, "system": "wms",
         "operation": null, "method": "PURGE", "path": "/labels/1Z1", "status": 502,
         "error": "connect_refused", "duration": {"secs": 0, "nanos": 1500},
         "keys": [["tracking", "1Z1"], ["shipment", "SH-1"]], "milestone": null,
         "problems": ["key_missing", "malformed_json"]},
        {"id": 2, "at": {"secs_since_epoch": 1800000001, "nanos_since_epoch": 0}, "system": "wms",
         "operation": null, "method": "POST", "path": "/packs", "status": 200, "error": null,
         "duration": {"secs": 1, "nanos": 0}, "keys": [["order", "SO-1"], ["shipment", "SH-1"]],
         "milestone": "packed", "problems": []},
        {"id": 3, "at": {"secs_since_epoch": 1800200000, "nanos_since_epoch": 999999999}, "system": "wms",
         "operation": null, "method": "POST", "path": "/packs", "status": 200, "error": null,
         "duration": {"secs": 7, "nanos": 1}, "keys": [], "milestone": null, "problems": []}
      ],
      "exchanges_dropped": 3,
      "first_seen": {"secs_since_epoch": 1800000000, "nanos_since_epoch": 5},
      "last_updated": {"secs_since_epoch": 1800000001, "nanos_since_epoch": 0}
    }"#;

    #[test]
    fn a_transaction_saved_before_compact_records_loads_and_saves_back_the_same() {
        let config = Config::from_yaml(CONFIG, "t.yaml").expect("valid config");
        let saved: SavedTransaction = serde_json::from_str(WRITTEN_BEFORE).expect("parses");
        let tx = Resolver::new(&config)
            .transaction(&saved)
            .expect("resolves");

        let text = |k: crate::state::KeyView<'_>| {
            k.to_key(&config.key_kinds)
                .map(|k| k.to_string())
                .unwrap_or_default()
        };
        let linked: Vec<(String, String)> =
            tx.linked_keys().map(|(a, b)| (text(a), text(b))).collect();
        assert_eq!(
            linked,
            vec![
                ("shipment:SH-1".to_owned(), "tracking:1Z1".to_owned()),
                ("order:SO-1".to_owned(), "shipment:SH-1".to_owned()),
            ]
        );
        let spilled: Vec<bool> = tx.milestones.iter().map(|m| m.is_spilled()).collect();
        assert_eq!(
            spilled,
            [false, true],
            "the second does not fit the packed form"
        );
        let first = tx.exchanges.get(0).expect("loaded");
        let keys: Vec<String> = tx.exchange_keys(first).map(text).collect();
        assert_eq!(
            keys,
            ["tracking:1Z1", "shipment:SH-1"],
            "in the order carried"
        );
        assert_eq!(first.method(), "PURGE");
        assert_eq!(
            first
                .problems()
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>(),
            ["key_missing", "malformed_json"]
        );

        let again = serde_json::to_value(SavedTransaction::of(&tx, Names::of(&config)))
            .expect("serializable");
        let before: serde_json::Value = serde_json::from_str(WRITTEN_BEFORE).expect("parses");
        assert_eq!(again, before);
    }
}

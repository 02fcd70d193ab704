//! The correlation stage: one task owns the [`Store`] and applies every
//! [`Observation`] to it in arrival order: keys found together are linked
//! into one transaction (merging transactions that turn out to be one),
//! milestones are recorded per object, flows are measured when their end
//! milestone arrives. Others talk to it through a [`CorrelatorHandle`]:
//! observations on one bounded channel, queries (admin API) on another.
//!
//! Exceptions and expectations (a later stage) slot in beside milestones:
//! they are driven by the same milestone records and the store's clock.

mod link;
mod metrics;
mod milestone;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::extract::{Key, Observation};
use crate::state::{ExchangeRecord, FlowRecord, MilestoneRecord, Status, Store, Transaction};

use metrics::CorrelateMetrics;

/// How often idle transactions are expired. Expiry is cheap (an ordered
/// index), so a short period keeps memory close to the configured bound.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);

/// Queries waiting for the correlator. Small: the admin API is the only
/// client and each query answers in microseconds.
const QUERY_QUEUE: usize = 64;

/// A milestone an exchange marked: recorded for the first time, or a repeat
/// of one already reached (then `record` is the first occurrence).
#[derive(Debug, Clone)]
pub struct Marked {
    pub record: MilestoneRecord,
    pub repeat: bool,
}

/// What applying one exchange to one transaction changed.
#[derive(Debug, Default)]
pub struct News {
    pub milestones: Vec<Marked>,
    /// Flows this exchange completed.
    pub flows: Vec<FlowRecord>,
}

/// What the correlator reports after applying one exchange to one
/// transaction: the stages after it (telemetry) read from this.
pub struct Correlated<'a> {
    pub observation: &'a Observation,
    /// The transaction after the update.
    pub transaction: &'a Transaction,
    /// The exchange's keys that were linked into it.
    pub keys: &'a [Key],
    pub news: &'a News,
}

/// A stage that wants to hear about every applied exchange (telemetry).
/// Called on the correlator's task: implementations must not block; hand
/// the work to your own bounded queue and count what you drop.
pub trait Observer: Send {
    /// An exchange was applied to a transaction (once per transaction it
    /// touched: a batch of orders reports once per order).
    fn correlated(&mut self, event: &Correlated<'_>);

    /// An exchange carried no key, so it belongs to no transaction.
    fn uncorrelated(&mut self, _observation: &Observation) {}
}

/// Which transactions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only transactions with this status; all when `None`.
    pub status: Option<Status>,
    /// At most this many, most recently updated first; 0 means no limit.
    pub limit: usize,
}

enum Query {
    Lookup {
        key: Key,
        reply: oneshot::Sender<Option<Transaction>>,
    },
    List {
        query: ListQuery,
        reply: oneshot::Sender<Vec<Transaction>>,
    },
}

/// The way observations reach the correlator. Extraction waits on it
/// while the correlator is busy (this runs behind the proxy's queue, never
/// on the forwarding path). When every sender is dropped, the correlator
/// applies what is queued and stops.
pub type ObservationSender = mpsc::Sender<Observation>;

/// The way queries reach the correlator task: cheap to clone.
#[derive(Clone)]
pub struct CorrelatorHandle {
    queries: mpsc::Sender<Query>,
    applied: Arc<AtomicU64>,
}

impl CorrelatorHandle {
    /// The transaction `key` belongs to, with everything recorded about it.
    pub async fn lookup(&self, key: Key) -> Option<Transaction> {
        let (reply, answer) = oneshot::channel();
        self.queries.send(Query::Lookup { key, reply }).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Transactions matching `query`, most recently updated first.
    pub async fn list(&self, query: ListQuery) -> Vec<Transaction> {
        let (reply, answer) = oneshot::channel();
        if self
            .queries
            .send(Query::List { query, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Observations applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
}

/// The task that owns the transaction store.
pub struct Correlator {
    config: Arc<Config>,
    store: Store,
    clock: Clock,
    metrics: CorrelateMetrics,
    applied: Arc<AtomicU64>,
    observers: Vec<Box<dyn Observer>>,
}

impl Correlator {
    /// Adds a stage to tell about every applied exchange.
    pub fn observe_with(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Builds the correlator and its handle; `capacity` bounds the queue of
    /// observations waiting to be applied.
    pub fn new(
        config: Arc<Config>,
        clock: Clock,
        capacity: usize,
        registry: &mut Registry,
    ) -> (Self, ObservationSender, CorrelatorHandle, CorrelatorInbox) {
        let store = Store::new(config.state.clone(), registry);
        let metrics = CorrelateMetrics::new(&config, registry);
        let (obs_tx, obs_rx) = mpsc::channel(capacity.max(1));
        let (query_tx, query_rx) = mpsc::channel(QUERY_QUEUE);
        let applied = Arc::new(AtomicU64::new(0));
        let handle = CorrelatorHandle {
            queries: query_tx,
            applied: Arc::clone(&applied),
        };
        let correlator = Correlator {
            config,
            store,
            clock,
            metrics,
            applied,
            observers: Vec::new(),
        };
        let inbox = CorrelatorInbox {
            observations: obs_rx,
            queries: query_rx,
        };
        (correlator, obs_tx, handle, inbox)
    }

    /// Applies observations and answers queries until every
    /// [`ObservationSender`] is dropped and the queue is drained.
    pub async fn run(mut self, mut inbox: CorrelatorInbox) {
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                observation = inbox.observations.recv() => match observation {
                    Some(observation) => self.apply(observation),
                    None => break,
                },
                Some(query) = inbox.queries.recv() => self.answer(query),
                _ = expiry.tick() => {
                    self.store.expire(self.clock.now());
                }
            }
        }
    }

    /// Applies one observation to the store.
    pub fn apply(&mut self, observation: Observation) {
        let at = observation.exchange.started;
        let groups = link::groups(&observation.keys, &self.config.root);
        if groups.is_empty() {
            self.metrics.no_keys.inc();
            for observer in &mut self.observers {
                observer.uncorrelated(&observation);
            }
        } else {
            self.metrics.correlated.inc();
        }
        for group in groups {
            let Some(id) = self.link(&group, at) else {
                continue;
            };
            self.store
                .push_exchange(id, exchange_record(&observation, &group));
            let mut news = News::default();
            if let Some(milestone) = &observation.milestone {
                self.record_milestone(id, milestone, &observation, &group, &mut news);
            }
            self.refresh_status(id);
            self.store.touch(id, at);
            if let Some(transaction) = self.store.get(id) {
                let event = Correlated {
                    observation: &observation,
                    transaction,
                    keys: &group,
                    news: &news,
                };
                for observer in &mut self.observers {
                    observer.correlated(&event);
                }
            }
        }
        self.applied.fetch_add(1, Ordering::Release);
    }

    fn answer(&self, query: Query) {
        match query {
            Query::Lookup { key, reply } => {
                let found = self.store.find(&key).and_then(|id| self.store.get(id));
                let _ = reply.send(found.cloned());
            }
            Query::List { query, reply } => {
                let mut matching: Vec<&Transaction> = self
                    .store
                    .iter()
                    .filter(|tx| query.status.is_none_or(|s| tx.status == s))
                    .collect();
                matching.sort_by(|a, b| b.last_updated.cmp(&a.last_updated));
                if query.limit > 0 {
                    matching.truncate(query.limit);
                }
                let _ = reply.send(matching.into_iter().cloned().collect());
            }
        }
    }
}

/// The receiving ends of the correlator's channels, consumed by [`Correlator::run`].
pub struct CorrelatorInbox {
    observations: mpsc::Receiver<Observation>,
    queries: mpsc::Receiver<Query>,
}

/// The timeline entry for one exchange, as far as it concerns `keys`.
fn exchange_record(observation: &Observation, keys: &[Key]) -> ExchangeRecord {
    let exchange = &observation.exchange;
    let error = match &exchange.outcome {
        crate::proxy::Outcome::UpstreamFailed { error, .. } => Some(error.as_str()),
        crate::proxy::Outcome::Response { .. } => None,
    };
    ExchangeRecord {
        id: exchange.id,
        at: exchange.started,
        system: exchange.system.clone(),
        operation: observation.operation.clone(),
        method: exchange.method.to_string(),
        path: exchange.uri.path().to_owned(),
        status: exchange.outcome.status().as_u16(),
        error,
        duration: exchange.duration,
        keys: keys.to_vec(),
        milestone: observation.milestone.clone(),
        problems: observation.problems.iter().map(|p| p.as_str()).collect(),
    }
}

#[cfg(test)]
mod tests;

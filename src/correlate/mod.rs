//! The correlation stage: one task owns the [`Store`] and applies every
//! [`Observation`] to it in arrival order: keys found together are linked
//! into one transaction (merging transactions that turn out to be one),
//! milestones are recorded per object (with the measure values the
//! exchange carried), flows are measured when their end milestone arrives. Others talk to it through a [`CorrelatorHandle`]:
//! observations on one bounded channel, queries (admin API) on another.
//!
//! Exceptions and expectations (a later stage) slot in beside milestones:
//! they are driven by the same milestone records and the store's clock.
//!
//! With the embedded store ([`crate::state::durable`]), the correlator
//! recovers its state at start and commits every batch of observations
//! (and every deadline tick that changes something) before applying it,
//! so what it shows is always durable (see `persist.rs`). With the shared
//! store ([`crate::state::shared`]) it applies the shared log's entries in
//! log order and reports only what its own entries caused (`shared.rs`).

mod link;
mod measure;
mod metrics;
mod milestone;
mod persist;
mod reconcile;
mod schedule;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::extract::{Key, Observation};
use crate::state::{
    ExceptionRecord, FlowRecord, KeyRefs, MilestoneRecord, NewExchange, Status, Store, Transaction,
    TxRef,
};

use metrics::CorrelateMetrics;
pub use metrics::FLOW_BUCKETS;
pub use persist::Recovery;

/// How often idle transactions are expired. Expiry is cheap (an ordered
/// index), so a short period keeps memory close to the configured bound.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);

/// Queries waiting for the correlator. Small: the admin API is the only
/// client and each query answers in microseconds.
const QUERY_QUEUE: usize = 64;

/// Most observations taken from the inbox per wake-up: enough to amortize
/// the wake-up, few enough that a query or an expiry tick waits for at
/// most this many `apply` calls.
const INBOX_BATCH: usize = 64;

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
    /// Exceptions this exchange opened or resolved.
    pub exceptions: Vec<ExceptionRecord>,
}

impl News {
    /// Empties every list, keeping what they allocated.
    fn clear(&mut self) {
        self.milestones.clear();
        self.flows.clear();
        self.exceptions.clear();
    }
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

    /// An exception opened or resolved by a deadline rather than by an
    /// exchange (those travel in [`News`]).
    fn exception(&mut self, _transaction: &Transaction, _exception: &ExceptionRecord) {}
}

/// Which transactions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only transactions with this status; all when `None`.
    pub status: Option<Status>,
    /// Only transactions that are stuck at some milestone.
    pub stuck: bool,
    /// At most this many, most recently updated first; 0 means no limit.
    pub limit: usize,
}

/// Which exceptions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ExceptionQuery {
    pub kind: Option<String>,
    pub owner: Option<String>,
    /// `Some(true)`: open only; `Some(false)`: resolved only; `None`: all.
    pub open: Option<bool>,
    /// At most this many, most recently opened first; 0 means no limit.
    pub limit: usize,
}

/// An exception and the name of its transaction, for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptionEntry {
    pub transaction: Key,
    #[serde(flatten)]
    pub exception: ExceptionRecord,
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
    Exceptions {
        query: ExceptionQuery,
        reply: oneshot::Sender<Vec<ExceptionEntry>>,
    },
    Tick {
        reply: oneshot::Sender<()>,
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

    /// Exceptions matching `query`, most recently opened first.
    pub async fn exceptions(&self, query: ExceptionQuery) -> Vec<ExceptionEntry> {
        let (reply, answer) = oneshot::channel();
        if self
            .queries
            .send(Query::Exceptions { query, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Makes the correlator look at its deadlines now (they are otherwise
    /// looked at once a second), and waits until it has.
    pub async fn tick(&self) {
        let (reply, answer) = oneshot::channel();
        if self.queries.send(Query::Tick { reply }).await.is_ok() {
            let _ = answer.await;
        }
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
    /// Deadlines of expectations, retry windows and stuck checks.
    schedule: schedule::Schedule,
    /// The last exception id handed out.
    next_exception: u64,
    /// The highest exchange id applied, so ids stay unique across restarts.
    last_exchange: u64,
    /// The embedded store, when state is durable (see [`Correlator::recover`]).
    durable: Option<crate::state::durable::Durable>,
    /// The shared log, when state is shared (see [`Correlator::share_through`]).
    shared: Option<crate::state::shared::Shared>,
    /// The lists of the last [`News`], emptied: reused, so the usual
    /// exchange allocates none.
    news: News,
}

impl Correlator {
    /// Adds a stage to tell about every applied exchange.
    pub fn observe_with(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Shares state with other sidecars through `shared`: from now on
    /// everything is applied as it comes back from the shared log.
    pub fn share_through(&mut self, shared: crate::state::shared::Shared) {
        self.shared = Some(shared);
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
        store.declare_exceptions(&config.possible_exceptions());
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
            schedule: schedule::Schedule::default(),
            next_exception: 0,
            last_exchange: 0,
            durable: None,
            shared: None,
            news: News::default(),
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
        if let Some(shared) = self.shared.take() {
            return self.run_shared(inbox, shared).await;
        }
        if self.durable.is_some() {
            return self.run_durable(inbox).await;
        }
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Observations are taken up to INBOX_BATCH at a time (one wake-up
        // for all that waited), applied in arrival order; queries and
        // expiry ticks are served between batches.
        let mut batch = Vec::with_capacity(INBOX_BATCH);
        loop {
            tokio::select! {
                taken = inbox.observations.recv_many(&mut batch, INBOX_BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    for observation in batch.drain(..) {
                        self.apply(observation);
                    }
                }
                Some(query) = inbox.queries.recv() => self.answer(query),
                _ = expiry.tick() => self.tick(self.clock.now()),
            }
        }
    }

    /// Applies one observation to the store.
    pub fn apply(&mut self, observation: Observation) {
        let at = observation.exchange.started;
        self.last_exchange = self.last_exchange.max(observation.exchange.id);
        self.fire_due(at.time());
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
            let Some((id, refs)) = self.link(group, at) else {
                continue;
            };
            self.update(id, refs, &observation, group);
        }
        self.applied.fetch_add(1, Ordering::Release);
    }

    /// Everything the exchange of `observation` means for transaction
    /// `id`, which `group` (its keys) was just linked into: the timeline,
    /// attempts, milestones, measures, reconciliation, status, expiry and
    /// the observers. The transaction is looked up once; only what is rare
    /// (a `repeats` rule, measures, an exception to open or resolve) looks
    /// it up again.
    fn update(&mut self, id: TxRef, refs: KeyRefs, observation: &Observation, group: &[Key]) {
        let at = observation.exchange.started;
        // Kept empty between exchanges (cleared below after the observers).
        let mut news = std::mem::take(&mut self.news);
        self.record_attempt(id, observation, group, &mut news);
        let config = Arc::clone(&self.config);
        let Some(mut tx) = self.store.entry(id) else {
            return;
        };
        let record = exchange_record(observation, refs);
        tx.push_exchange(record);
        if let Some(milestone) = &observation.milestone {
            milestone::record(
                &config,
                &self.metrics,
                &mut tx,
                milestone,
                observation,
                group,
                &mut news,
            );
            if !observation.measures.values.is_empty() {
                // Rare paths end the handle (its borrow of the store) and
                // look the transaction up again afterwards.
                self.record_measures(id, milestone, observation, &mut news);
                let Some(again) = self.store.entry(id) else {
                    return;
                };
                tx = again;
            }
            // Reconciling adds exceptions to `news`, never milestones.
            let mut openings = Vec::new();
            for m in news.milestones.iter().filter(|m| !m.repeat) {
                openings.extend(reconcile::reconcile_milestone(
                    &config,
                    &mut self.schedule,
                    &mut tx,
                    &m.record,
                    observation,
                ));
            }
            if !openings.is_empty() {
                self.open_all(id, openings, &mut news);
                let Some(again) = self.store.entry(id) else {
                    return;
                };
                tx = again;
            }
        }
        let satisfied = reconcile::satisfied(&tx);
        if !satisfied.is_empty() {
            self.resolve_all(id, at.time(), satisfied, &mut news);
            let Some(again) = self.store.entry(id) else {
                return;
            };
            tx = again;
        }
        milestone::refresh_status(&config, &self.metrics.completed, &mut tx);
        tx.touch(at);
        let event = Correlated {
            observation,
            transaction: &tx,
            keys: group,
            news: &news,
        };
        for observer in &mut self.observers {
            observer.correlated(&event);
        }
        news.clear();
        self.news = news;
    }

    fn answer(&mut self, query: Query) {
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
                    .filter(|tx| !query.stuck || tx.stuck().is_some())
                    .collect();
                matching.sort_by_key(|tx| std::cmp::Reverse(tx.last_updated));
                if query.limit > 0 {
                    matching.truncate(query.limit);
                }
                let _ = reply.send(matching.into_iter().cloned().collect());
            }
            Query::Exceptions { query, reply } => {
                let mut matching: Vec<ExceptionEntry> = self
                    .store
                    .iter()
                    .flat_map(|tx| tx.exceptions().iter().map(move |e| (tx, e)))
                    .filter(|(_, e)| query.kind.as_deref().is_none_or(|k| e.kind.as_str() == k))
                    .filter(|(_, e)| query.owner.as_deref().is_none_or(|o| e.owner.as_str() == o))
                    .filter(|(_, e)| query.open.is_none_or(|open| e.is_open() == open))
                    .map(|(tx, e)| ExceptionEntry {
                        transaction: tx.name().to_key(),
                        exception: e.clone(),
                    })
                    .collect();
                matching.sort_by_key(|e| std::cmp::Reverse(e.exception.opened));
                if query.limit > 0 {
                    matching.truncate(query.limit);
                }
                let _ = reply.send(matching);
            }
            Query::Tick { reply } => {
                self.tick(self.clock.now());
                let _ = reply.send(());
            }
        }
    }
}

/// The receiving ends of the correlator's channels, consumed by [`Correlator::run`].
pub struct CorrelatorInbox {
    observations: mpsc::Receiver<Observation>,
    queries: mpsc::Receiver<Query>,
}

/// The timeline entry for one exchange, as far as it concerns `keys` (which
/// are already keys of `tx`).
/// The timeline record of `observation`'s exchange, whose keys are at
/// `keys` in the transaction.
fn exchange_record(observation: &Observation, keys: KeyRefs) -> NewExchange<'_> {
    let exchange = &observation.exchange;
    NewExchange {
        id: exchange.id,
        at: exchange.started,
        system: &exchange.system,
        operation: observation.operation.as_ref(),
        method: &exchange.method,
        path: exchange.uri.path(),
        status: exchange.status.as_u16(),
        error: exchange.upstream_error,
        duration: exchange.duration,
        keys,
        milestone: observation.milestone.as_ref(),
        problems: &observation.problems,
    }
}

#[cfg(test)]
mod tests;

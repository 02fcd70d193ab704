//! The correlator with the embedded durable store: recovery at start
//! (snapshot, then journal replay with observers and correlation metrics
//! muted), group commit before apply, journaled deadline ticks, periodic
//! and final snapshots. See [`crate::state::durable`] for the format.
//!
//! Order is the whole trick: every batch is committed before it is
//! applied, and ticks that will change something are committed as a
//! record before they run, so the journal is exactly the sequence the
//! correlator applied, and replaying it rebuilds the same state.
//!
//! Across a restart: spans are not exported again for replayed records,
//! and the correlation metrics (flows, exceptions, milestones counted)
//! are not counted again (they restart from zero with the process, as
//! Prometheus counters do). Gauges (transactions, open exceptions, stuck,
//! in flight) are rebuilt from the recovered state. TTL and capacity
//! removals that happen during replay are counted again.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prometheus_client::registry::Registry;

use crate::config::{EmbeddedConfig, StoreConfig};
use crate::extract::Observation;
use crate::state::durable::record::{Entry, ObservedRecord};
use crate::state::durable::snapshot::{
    save_key, ExpectationName, Resolver, SavedDue, SavedDueKind, SavedTransaction, Snapshot,
};
use crate::state::durable::{Durable, StoreError};
use crate::state::Names;

use super::metrics::CorrelateMetrics;
use super::schedule::Due;
use super::{Correlator, CorrelatorInbox, Query, EXPIRY_PERIOD};

/// What recovery found and did, for the start-up log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovery {
    /// Transactions loaded from the snapshot.
    pub snapshot_transactions: usize,
    /// Observations replayed from the journal.
    pub observations: usize,
    /// Deadline ticks replayed from the journal.
    pub ticks: usize,
    /// Records skipped: damaged, or naming what the config no longer declares.
    pub skipped: usize,
}

impl Correlator {
    /// Loads the state `durable` holds (snapshot, then the journal after
    /// it) without telling observers or counting metrics, and from then on
    /// commits everything before applying it.
    pub fn recover(&mut self, mut durable: Durable) -> Result<Recovery, StoreError> {
        let found = durable.recover()?;
        let mut recovery = Recovery {
            skipped: found.damaged,
            ..Recovery::default()
        };
        if let Some(snapshot) = found.snapshot {
            self.restore(snapshot, &mut recovery, &durable);
        }
        let observers = std::mem::take(&mut self.observers);
        let metrics = std::mem::replace(
            &mut self.metrics,
            CorrelateMetrics::new(&self.config, &mut Registry::default()),
        );
        let applied = self.applied.load(Ordering::Acquire);
        let config = std::sync::Arc::clone(&self.config);
        let mut unusable = 0;
        for entry in found.entries {
            match entry {
                Entry::Observed(record) => match record.observation(&config) {
                    Ok(observation) => {
                        self.apply(observation);
                        recovery.observations += 1;
                    }
                    Err(damage) => {
                        tracing::warn!(exchange = record.exchange, %damage, "skipping a journal record");
                        unusable += 1;
                    }
                },
                Entry::Tick { at } => {
                    self.tick(at);
                    recovery.ticks += 1;
                }
            }
        }
        self.observers = observers;
        self.metrics = metrics;
        self.applied.store(applied, Ordering::Release);
        durable.count_damaged(unusable);
        recovery.skipped += unusable;
        self.durable = Some(durable);
        Ok(recovery)
    }

    /// The highest exchange id applied (recovered ones included), so the
    /// proxy can hand out ids after it.
    pub fn last_exchange(&self) -> u64 {
        self.last_exchange
    }

    /// Everything needed to continue from here.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            transactions: self
                .store
                .iter()
                .map(|tx| SavedTransaction::of(tx, Names::of(&self.config)))
                .collect(),
            schedule: self
                .schedule
                .iter()
                .map(|(at, due)| SavedDue {
                    at,
                    due: self.save_due(due),
                })
                .collect(),
            next_transaction: self.store.next_id(),
            next_exception: self.next_exception,
            last_exchange: self.last_exchange,
        }
    }

    fn save_due(&self, due: &Due) -> SavedDueKind {
        match due {
            Due::Expectation {
                expectation,
                object,
                exchange,
            } => SavedDueKind::Expectation {
                expectation: *expectation,
                name: ExpectationName::of(&self.config, *expectation),
                object: save_key(object),
                exchange: *exchange,
            },
            Due::RetryWindow { route, object } => SavedDueKind::RetryWindow {
                route: self.config.route(*route).operation.as_str().to_owned(),
                object: save_key(object),
            },
            Due::Stuck {
                milestone,
                object,
                since,
            } => SavedDueKind::Stuck {
                milestone: milestone.as_str().to_owned(),
                object: save_key(object),
                since: *since,
            },
        }
    }

    fn restore(&mut self, snapshot: Snapshot, recovery: &mut Recovery, durable: &Durable) {
        let config = std::sync::Arc::clone(&self.config);
        let resolver = Resolver::new(&config);
        let mut transactions = Vec::with_capacity(snapshot.transactions.len());
        let mut skipped = 0;
        for saved in &snapshot.transactions {
            match resolver.transaction(saved) {
                Ok(tx) => transactions.push(tx),
                Err(damage) => {
                    tracing::warn!(%damage, "skipping a transaction of the snapshot");
                    skipped += 1;
                }
            }
        }
        recovery.snapshot_transactions = transactions.len();
        self.store
            .restore(transactions, snapshot.next_transaction, &config.milestones);
        for saved in snapshot.schedule {
            let due = match saved.due {
                SavedDueKind::Expectation {
                    expectation,
                    name,
                    object,
                    exchange,
                } => {
                    // By name; by position only in snapshots older than names.
                    let found = match &name {
                        Some(name) => name.find(&config),
                        None => (expectation < config.expectations.len()).then_some(expectation),
                    };
                    match found {
                        Some(expectation) => resolver.key(&object).map(|object| Due::Expectation {
                            expectation,
                            object,
                            exchange,
                        }),
                        None => Err(crate::state::durable::record::Damaged::Unknown(
                            match name {
                                Some(n) => format!(
                                    "expectation {} -> {} ({})",
                                    n.after, n.expect, n.exception
                                ),
                                None => format!("expectation {expectation}"),
                            },
                        )),
                    }
                }
                SavedDueKind::RetryWindow { route, object } => {
                    resolver.route(&route).and_then(|route| {
                        Ok(Due::RetryWindow {
                            route,
                            object: resolver.key(&object)?,
                        })
                    })
                }
                SavedDueKind::Stuck {
                    milestone,
                    object,
                    since,
                } => resolver.milestone(&milestone).and_then(|milestone| {
                    Ok(Due::Stuck {
                        milestone,
                        object: resolver.key(&object)?,
                        since,
                    })
                }),
            };
            match due {
                Ok(due) => {
                    let holder = self.store.find(due.object());
                    self.schedule.add(saved.at, holder, due)
                }
                Err(damage) => {
                    tracing::warn!(%damage, "skipping a deadline of the snapshot");
                    skipped += 1;
                }
            }
        }
        self.next_exception = self.next_exception.max(snapshot.next_exception);
        self.last_exchange = self.last_exchange.max(snapshot.last_exchange);
        durable.count_damaged(skipped);
        recovery.skipped += skipped;
    }

    /// [`Correlator::run`] with the durable store: observations are
    /// gathered for at most `commit_interval` (or `commit_batch` of
    /// them), committed, then applied.
    pub(super) async fn run_durable(mut self, mut inbox: CorrelatorInbox) {
        let settings = match &self.config.state.store {
            StoreConfig::Embedded(embedded) => embedded.clone(),
            StoreConfig::Memory | StoreConfig::Redis(_) => EmbeddedConfig {
                path: Default::default(),
                commit_interval: crate::config::defaults::COMMIT_INTERVAL,
                commit_batch: crate::config::defaults::COMMIT_BATCH,
                snapshot_interval: crate::config::defaults::SNAPSHOT_INTERVAL,
            },
        };
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut snapshots = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.snapshot_interval,
            settings.snapshot_interval,
        );
        snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                observation = inbox.observations.recv() => match observation {
                    Some(first) => {
                        let (batch, closed) = gather(first, &mut inbox, &settings).await;
                        self.commit_and_apply(batch).await;
                        if closed {
                            break;
                        }
                    }
                    None => break,
                },
                Some(query) = inbox.queries.recv() => match query {
                    Query::Tick { reply } => {
                        self.durable_tick(self.clock.now()).await;
                        let _ = reply.send(());
                    }
                    query => self.answer(query),
                },
                _ = expiry.tick() => self.durable_tick(self.clock.now()).await,
                _ = snapshots.tick() => self.write_snapshot().await,
            }
        }
        self.write_snapshot().await;
    }

    async fn commit_and_apply(&mut self, batch: Vec<Observation>) {
        let entries: Vec<Entry> = batch
            .iter()
            .map(|o| Entry::Observed(ObservedRecord::of(o, &self.config)))
            .collect();
        self.commit(&entries).await;
        for observation in batch {
            self.apply(observation);
        }
    }

    /// Journals a tick that will change something, then runs it. Ticks
    /// with nothing due are not journaled: replay without them is the same.
    async fn durable_tick(&mut self, now: SystemTime) {
        let due = |at: Option<SystemTime>| at.is_some_and(|at| at <= now);
        if due(self.schedule.first_at()) || due(self.store.next_expiry()) {
            self.commit(&[Entry::Tick { at: now }]).await;
        }
        self.tick(now);
    }

    /// Commits `entries`. A failed commit is logged and counted, and the
    /// entries are applied anyway: the picture stays complete while the
    /// disk is failing, at the price of those entries not surviving a crash.
    async fn commit(&mut self, entries: &[Entry]) {
        if let Some(durable) = self.durable.as_mut() {
            if let Err(error) = durable.commit(entries).await {
                tracing::error!(%error, records = entries.len(), "journal commit failed; applying without durability");
            }
        }
    }

    async fn write_snapshot(&mut self) {
        if self.durable.is_none() {
            return;
        }
        let snapshot = self.snapshot();
        let transactions = snapshot.transactions.len();
        if let Some(durable) = self.durable.as_mut() {
            match durable.snapshot(&snapshot).await {
                Ok(bytes) => tracing::debug!(transactions, bytes, "state snapshot written"),
                Err(error) => {
                    tracing::error!(%error, "state snapshot failed; the journal keeps growing until one succeeds")
                }
            }
        }
    }
}

/// The batch that starts with `first`: whatever else arrives within the
/// commit interval, up to the batch bound. Also says whether the queue closed.
async fn gather(
    first: Observation,
    inbox: &mut CorrelatorInbox,
    settings: &EmbeddedConfig,
) -> (Vec<Observation>, bool) {
    let deadline = tokio::time::Instant::now() + settings.commit_interval;
    let mut batch = vec![first];
    while batch.len() < settings.commit_batch {
        match tokio::time::timeout_at(deadline, inbox.observations.recv()).await {
            Ok(Some(observation)) => batch.push(observation),
            Ok(None) => return (batch, true),
            Err(_) => break,
        }
    }
    (batch, false)
}

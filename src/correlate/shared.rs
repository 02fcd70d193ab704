//! The correlator with the shared Redis store ([`crate::state::shared`]):
//! nothing is applied when it is seen, everything is applied when it comes
//! back from the shared log, in log order, on every sidecar alike.
//!
//! - An observation becomes an [`Entry`] handed to the log (never
//!   waiting: a full buffer drops and counts it); the observation itself
//!   waits here, without its bodies, until its entry comes back, so this
//!   sidecar's spans keep the request headers the record does not carry.
//! - A deadline tick is appended when something is due (one own tick in
//!   flight at a time); every sidecar applies every tick at its logged time.
//! - **Once-only side effects.** Spans, the flow histogram and the
//!   correlation counters (milestones, flows, exceptions opened and
//!   resolved) come from the sidecar whose own entry caused them; entries
//!   of other sidecars are applied with observers and counters muted, as
//!   recovery does. Since every sidecar applies the same sequence, the
//!   first tick that finds an expectation lapsed is one entry with one
//!   origin: its exception is reported exactly once across replicas.
//!   Gauges (transactions, open exceptions, stuck) show the whole shared
//!   picture on every sidecar: aggregate them with `max`, not `sum`.
//! - Exchange ids become the entry's log position, so ids are unique and
//!   the same on every sidecar.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::extract::Observation;
use crate::state::durable::record::{Entry, ObservedRecord};
use crate::state::shared::{LogEntry, Shared};

use super::metrics::CorrelateMetrics;
use super::{Correlator, CorrelatorInbox, Observer, Query, EXPIRY_PERIOD};

/// How long a stopping sidecar waits for Redis to take its buffered entries.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// An own tick not back after this long is given up on (a Redis without
/// persistence that restarted may have lost it), so deadlines go on.
const TICK_GIVE_UP: Duration = Duration::from_secs(10);

/// Own entries appended and not yet read back, oldest first.
struct InFlight {
    /// `(seq, the observation)`; `None` for a tick.
    entries: VecDeque<(u64, Option<Observation>)>,
    /// Most observations held; beyond it the oldest is let go (its entry is
    /// then applied from the record, as other sidecars apply it).
    capacity: usize,
    /// Since when an own tick is on its way.
    tick: Option<tokio::time::Instant>,
    /// `tick()` callers, answered when the next own tick is applied.
    waiters: Vec<oneshot::Sender<()>>,
}

impl InFlight {
    fn push(&mut self, seq: u64, observation: Option<Observation>) {
        if self.entries.len() >= self.capacity {
            if let Some((_, None)) = self.entries.pop_front() {
                self.tick = None;
            }
        }
        self.entries.push_back((seq, observation));
    }

    /// The observation behind own entry `seq`; entries before it that never
    /// came back (the log trimmed them) are let go.
    fn take(&mut self, seq: u64) -> Option<Observation> {
        while let Some((first, observation)) = self.entries.pop_front() {
            if observation.is_none() {
                self.tick = None;
            }
            if first == seq {
                return observation;
            }
            if first > seq {
                self.entries.push_front((first, observation));
                return None;
            }
        }
        None
    }
}

/// The metrics and observers swapped in while applying another sidecar's
/// entry: nothing they see is reported.
struct Muted {
    metrics: CorrelateMetrics,
    observers: Vec<Box<dyn Observer>>,
}

impl Correlator {
    /// [`Correlator::run`] with the shared store: observations and due
    /// ticks go to the log; the log's entries are applied in order.
    pub(super) async fn run_shared(mut self, mut inbox: CorrelatorInbox, mut shared: Shared) {
        tracing::info!(replica = %shared.replica(), "sharing state through Redis");
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight = InFlight {
            entries: VecDeque::new(),
            capacity: self.config.observation.queue_capacity.max(1),
            tick: None,
            waiters: Vec::new(),
        };
        let mut muted = Muted {
            metrics: CorrelateMetrics::new(&self.config, &mut Registry::default()),
            observers: Vec::new(),
        };
        loop {
            tokio::select! {
                observation = inbox.observations.recv() => match observation {
                    Some(observation) => self.share(observation, &mut shared, &mut in_flight),
                    None => break,
                },
                Some(entry) = shared.log.recv() => {
                    self.apply_logged(entry, &shared, &mut in_flight, &mut muted);
                }
                Some(query) = inbox.queries.recv() => match query {
                    Query::Tick { reply } => {
                        in_flight.waiters.push(reply);
                        self.share_tick(true, &mut shared, &mut in_flight);
                    }
                    query => self.answer(query),
                },
                _ = expiry.tick() => self.share_tick(false, &mut shared, &mut in_flight),
            }
        }
        shared.close(CLOSE_GRACE).await;
    }

    /// Hands an observation to the log and keeps it until it comes back.
    fn share(&mut self, observation: Observation, shared: &mut Shared, in_flight: &mut InFlight) {
        let entry = Entry::Observed(ObservedRecord::of(&observation, &self.config));
        match shared.append(&entry) {
            Some(seq) => {
                in_flight.push(seq, Some(observation));
            }
            // Dropped and counted; it will never be applied, so it counts
            // as handled for whoever waits for the pipeline to settle.
            None => {
                self.applied.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Appends a tick when something is due (or when asked), unless one of
    /// ours is already on its way.
    fn share_tick(&mut self, asked: bool, shared: &mut Shared, in_flight: &mut InFlight) {
        if in_flight
            .tick
            .is_some_and(|since| since.elapsed() < TICK_GIVE_UP)
        {
            return;
        }
        let now = self.clock.now();
        let due = |at: Option<SystemTime>| at.is_some_and(|at| at <= now);
        if !(asked || due(self.schedule.first_at()) || due(self.store.next_expiry())) {
            return;
        }
        match shared.append(&Entry::Tick { at: now }) {
            Some(seq) => {
                in_flight.push(seq, None);
                in_flight.tick = Some(tokio::time::Instant::now());
            }
            None => {
                for waiter in in_flight.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
    }

    /// Applies one entry of the log; reports its effects only when this
    /// sidecar appended it.
    fn apply_logged(
        &mut self,
        logged: LogEntry,
        shared: &Shared,
        in_flight: &mut InFlight,
        muted: &mut Muted,
    ) {
        let local = logged.origin == shared.replica();
        let original = if local {
            in_flight.take(logged.seq)
        } else {
            None
        };
        let entry = match logged.entry {
            Ok(entry) => entry,
            Err(damage) => {
                tracing::warn!(position = logged.position, %damage, "skipping an entry of the shared log");
                shared.metrics().damaged();
                return;
            }
        };
        let observation = match (&entry, original) {
            (Entry::Observed(_), Some(observation)) => Some(observation),
            (Entry::Observed(record), None) => match record.observation(&self.config) {
                Ok(observation) => Some(observation),
                Err(damage) => {
                    tracing::warn!(position = logged.position, %damage, "skipping an entry of the shared log");
                    shared.metrics().damaged();
                    return;
                }
            },
            (Entry::Tick { .. }, _) => None,
        };
        if !local {
            self.swap_muted(muted);
        }
        let applied = self.applied.load(Ordering::Acquire);
        let mut own_tick = false;
        match (entry, observation) {
            (_, Some(mut observation)) => {
                observation.exchange.id = logged.position;
                self.apply(observation);
            }
            (Entry::Tick { at }, _) => {
                self.tick(at);
                own_tick = local;
            }
            (Entry::Observed(_), None) => {}
        }
        if !local {
            // Only own observations count as applied: that is what
            // `settle` compares with what extraction handed over.
            self.applied.store(applied, Ordering::Release);
            self.swap_muted(muted);
        }
        if own_tick {
            for waiter in in_flight.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
        shared.metrics().applied(local);
    }

    fn swap_muted(&mut self, muted: &mut Muted) {
        std::mem::swap(&mut self.metrics, &mut muted.metrics);
        std::mem::swap(&mut self.observers, &mut muted.observers);
    }
}

//! Reconciliation: the gaps between systems that a person must own.
//!
//! - **Order rules**: a milestone that arrives before the milestones it
//!   `requires` opens its `unmet` exception (`out_of_order` by default),
//!   resolved when the required milestone arrives; both are kept.
//! - **Expectations**: after milestone A on an object, B must follow within
//!   T, else the expectation's exception opens; it resolves when B arrives.
//! - **Repeats** of an operation on one object: after a failure it is a
//!   retry; a second success with a new (or no) idempotency key is a
//!   duplicate. Too many failures, or no success within the window, opens
//!   the retry exception; a later success resolves it.
//! - **Stuck**: a transaction resting at a milestone longer than its
//!   `stuck_after` is marked stuck until it moves on or completes.
//!
//! Deadlines go into one [`Schedule`](super::schedule::Schedule), checked on
//! every tick of the correlator's clock.

use std::time::SystemTime;

use crate::config::{Config, ExceptionKind, Milestone, System};
use crate::extract::{Key, Observation};
use crate::state::{
    Attempt, ExceptionRecord, MilestoneRecord, Resolution, Status, Transaction, TxMut, TxRef,
};

use super::metrics::ExceptionMetrics;
use super::schedule::{Due, Schedule};
use super::{Correlator, News};

/// Idempotency keys remembered per attempt: enough to tell a client's
/// replays from new calls without growing with a misbehaving client.
const IDEMPOTENCY_KEYS_KEPT: usize = 8;

/// An exception about to be opened.
pub(super) struct Opening {
    pub kind: ExceptionKind,
    pub owner: System,
    pub object: Key,
    pub reason: String,
    pub evidence: Vec<u64>,
    pub resolution: Resolution,
    pub at: SystemTime,
}

impl Correlator {
    /// Retry and duplicate bookkeeping for an exchange of a route with a
    /// `repeats` rule.
    pub(super) fn record_attempt(
        &mut self,
        id: TxRef,
        observation: &Observation,
        keys: &[Key],
        news: &mut News,
    ) {
        let config = std::sync::Arc::clone(&self.config);
        let Some(route) = observation.route.map(|r| config.route(r)) else {
            return;
        };
        let Some(rule) = &route.repeats else { return };
        let Some(object) = keys.iter().find(|k| k.kind == rule.by) else {
            return;
        };
        let exchange = &observation.exchange;
        let status = exchange.status;
        let (failed, succeeded) = match exchange.upstream_error {
            Some(_) => (true, false),
            None => (
                status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS,
                status.is_success(),
            ),
        };
        if !failed && !succeeded {
            // A 4xx is the caller's mistake: neither a retry nor a duplicate.
            return;
        }
        let idempotency_key = exchange
            .request_headers
            .get(&rule.idempotency_header)
            .and_then(|v| v.to_str())
            .map(str::to_owned);
        let operation = route.operation.clone();
        let label = ExceptionMetrics::operation(&operation);
        let at = exchange.started.time();

        let Some(tx) = self.store.get_mut(id) else {
            return;
        };
        let index = match tx
            .attempts()
            .iter()
            .position(|a| a.operation == operation && &a.object == object)
        {
            Some(index) => index,
            None => tx.push_attempt(Attempt {
                operation: operation.clone(),
                object: object.clone(),
                failures: 0,
                successes: 0,
                retries: 0,
                duplicates: 0,
                first_failure: None,
                idempotency_keys: Vec::new(),
            }),
        };
        let Some(attempt) = tx.attempts_mut().get_mut(index) else {
            return;
        };
        let mut exhausted = None;
        let mut duplicate = false;
        let mut recovered = false;
        if failed {
            if attempt.failures > 0 {
                attempt.retries += 1;
                self.metrics.exceptions.retries.get_or_create(&label).inc();
            } else {
                attempt.first_failure = Some(at);
                if let Some(retry) = &rule.retry {
                    self.schedule.add(
                        at + retry.within,
                        Some(id),
                        Due::RetryWindow {
                            route: route.id,
                            object: object.clone(),
                        },
                    );
                }
            }
            attempt.failures += 1;
            if let Some(retry) = &rule.retry {
                if attempt.failures == retry.limit {
                    exhausted = Some(retry.exception.clone());
                }
            }
        } else {
            if attempt.failures > 0 {
                attempt.retries += 1;
                self.metrics.exceptions.retries.get_or_create(&label).inc();
                attempt.failures = 0;
                attempt.first_failure = None;
                recovered = true;
            } else if attempt.successes > 0 {
                let replay = idempotency_key
                    .as_ref()
                    .is_some_and(|k| attempt.idempotency_keys.contains(k));
                if replay {
                    self.metrics.exceptions.replays.get_or_create(&label).inc();
                } else {
                    attempt.duplicates += 1;
                    self.metrics
                        .exceptions
                        .duplicates
                        .get_or_create(&label)
                        .inc();
                    duplicate = true;
                }
            }
            attempt.successes += 1;
            if let Some(key) = idempotency_key {
                if !attempt.idempotency_keys.contains(&key)
                    && attempt.idempotency_keys.len() < IDEMPOTENCY_KEYS_KEPT
                {
                    attempt.idempotency_keys.push(key);
                }
            }
        }
        let attempts = attempt.successes + attempt.failures;

        if recovered {
            let success = Resolution::Success {
                operation: operation.clone(),
                object: object.clone(),
            };
            self.resolve_where(id, at, news, |_, r| r == &success);
        }
        if let Some(rule_exception) = exhausted {
            self.open(
                id,
                Opening {
                    kind: rule_exception.kind,
                    owner: rule_exception.owner.unwrap_or_else(|| route.system.clone()),
                    object: object.clone(),
                    reason: format!("`{operation}` failed {attempts} times for {object}"),
                    evidence: vec![exchange.id],
                    resolution: Resolution::Success {
                        operation: operation.clone(),
                        object: object.clone(),
                    },
                    at,
                },
                Some(news),
            );
        }
        if let (true, Some(rule_exception)) = (duplicate, &rule.duplicate) {
            self.open(
                id,
                Opening {
                    kind: rule_exception.kind.clone(),
                    owner: rule_exception
                        .owner
                        .clone()
                        .unwrap_or_else(|| route.system.clone()),
                    object: object.clone(),
                    reason: format!(
                        "`{operation}` succeeded again for {object} without the same idempotency key"
                    ),
                    evidence: vec![exchange.id],
                    resolution: Resolution::Manual,
                    at,
                },
                Some(news),
            );
        }
    }

    /// Opens the exceptions [`reconcile_milestone`] asked for, in order,
    /// with `news`.
    pub(super) fn open_all(&mut self, id: TxRef, openings: Vec<Opening>, news: &mut News) {
        for opening in openings {
            self.open(id, opening, Some(&mut *news));
        }
    }

    /// Resolves the open exceptions `exceptions` of `id` (what [`satisfied`]
    /// found), adding them to `news`.
    pub(super) fn resolve_all(
        &mut self,
        id: TxRef,
        at: SystemTime,
        exceptions: Vec<u64>,
        news: &mut News,
    ) {
        for exception in exceptions {
            self.resolve(id, exception, at, Some(&mut *news));
        }
    }

    /// Looks at every deadline due at `now`, then expires idle transactions.
    pub fn tick(&mut self, now: SystemTime) {
        self.fire_due(now);
        self.store.expire(now);
    }

    /// Looks at every deadline due at or before `now`. Called on every tick
    /// and before each observation (with the exchange's time), so deadlines
    /// fire in business-time order even when the clock runs fast (the demo)
    /// or ticks are far apart.
    pub(super) fn fire_due(&mut self, now: SystemTime) {
        for (at, due) in self.schedule.take_due(now) {
            match due {
                Due::Expectation {
                    expectation,
                    object,
                    exchange,
                } => self.expectation_due(expectation, &object, exchange, at),
                Due::RetryWindow { route, object } => self.retry_window_due(route, &object, at),
                Due::Stuck {
                    milestone,
                    object,
                    since,
                } => self.stuck_due(&milestone, &object, since),
            }
        }
        // Kept while its transaction is held where it was (or where it was
        // merged into); one that remembers no holder while its object has
        // a transaction.
        let store = &self.store;
        self.schedule.sweep(|holder, due| match holder {
            Some(id) => store.holds(id),
            None => store.find(due.object()).is_some(),
        });
        self.metrics
            .exceptions
            .deadlines
            .set(i64::try_from(self.schedule.len()).unwrap_or(i64::MAX));
    }

    fn expectation_due(&mut self, index: usize, object: &Key, exchange: u64, at: SystemTime) {
        let config = std::sync::Arc::clone(&self.config);
        let Some(expectation) = config.expectations.get(index) else {
            return;
        };
        let Some(id) = self.store.find(object) else {
            return;
        };
        let Some(tx) = self.store.get(id) else { return };
        let awaited = object_for(&config, &expectation.expect, object);
        if tx.reached(&expectation.expect, awaited.as_ref()) {
            return;
        }
        self.open(
            id,
            Opening {
                kind: expectation.exception.clone(),
                owner: expectation.owner.clone(),
                object: object.clone(),
                reason: format!(
                    "no `{}` within {} after `{}` of {object}",
                    expectation.expect,
                    humantime::format_duration(expectation.within),
                    expectation.after
                ),
                evidence: vec![exchange],
                resolution: Resolution::Milestone {
                    milestone: expectation.expect.clone(),
                    object: awaited,
                },
                at,
            },
            None,
        );
    }

    fn retry_window_due(&mut self, route: crate::config::RouteId, object: &Key, at: SystemTime) {
        let config = std::sync::Arc::clone(&self.config);
        let route = config.route(route);
        let Some(retry) = route.repeats.as_ref().and_then(|r| r.retry.as_ref()) else {
            return;
        };
        let Some(id) = self.store.find(object) else {
            return;
        };
        let Some(tx) = self.store.get(id) else { return };
        let Some(attempt) = tx
            .attempts()
            .iter()
            .find(|a| a.operation == route.operation && &a.object == object)
        else {
            return;
        };
        // Still failing, and not yet reported as exhausted by the limit.
        let still_failing = attempt.failures > 0 && attempt.failures < retry.limit;
        let window_open = attempt
            .first_failure
            .is_some_and(|f| f + retry.within <= at);
        if !(still_failing && window_open) {
            return;
        }
        let failures = attempt.failures;
        self.open(
            id,
            Opening {
                kind: retry.exception.kind.clone(),
                owner: retry
                    .exception
                    .owner
                    .clone()
                    .unwrap_or_else(|| route.system.clone()),
                object: object.clone(),
                reason: format!(
                    "`{}` for {object} still failing {} after the first failure ({failures} attempts)",
                    route.operation,
                    humantime::format_duration(retry.within)
                ),
                evidence: Vec::new(),
                resolution: Resolution::Success {
                    operation: route.operation.clone(),
                    object: object.clone(),
                },
                at,
            },
            None,
        );
    }

    fn stuck_due(&mut self, milestone: &Milestone, object: &Key, since: SystemTime) {
        let Some(id) = self.store.find(object) else {
            return;
        };
        let Some(tx) = self.store.get(id) else { return };
        let latest = tx.last_milestone();
        let resting = tx.status == Status::Open
            && latest.is_some_and(|m| m.milestone().is(milestone) && m.at() == since);
        if resting {
            self.store.set_stuck(id, Some(milestone.clone()));
        }
    }

    pub(super) fn open(&mut self, id: TxRef, opening: Opening, news: Option<&mut News>) {
        // One open exception of a kind per object is enough for a person.
        if let Some(tx) = self.store.get(id) {
            let already = tx.exceptions().iter().any(|e| {
                e.is_open()
                    && e.kind == opening.kind
                    && e.object == opening.object
                    && e.resolution == opening.resolution
            });
            if already {
                return;
            }
        }
        self.next_exception += 1;
        let record = ExceptionRecord {
            id: self.next_exception,
            kind: opening.kind,
            owner: opening.owner,
            object: opening.object,
            reason: opening.reason,
            opened: opening.at,
            resolved: None,
            evidence: opening.evidence,
            resolution: opening.resolution,
        };
        self.metrics
            .exceptions
            .opened
            .get_or_create(&ExceptionMetrics::labels(&record.kind, &record.owner))
            .inc();
        self.store.open_exception(id, record.clone());
        self.report(id, record, news);
    }

    pub(super) fn resolve_where(
        &mut self,
        id: TxRef,
        at: SystemTime,
        news: &mut News,
        matches: impl Fn(&Transaction, &Resolution) -> bool,
    ) {
        let Some(tx) = self.store.get(id) else { return };
        let ids = open_matching(tx, matches);
        self.resolve_all(id, at, ids, news);
    }

    fn resolve(&mut self, id: TxRef, exception: u64, at: SystemTime, news: Option<&mut News>) {
        let Some(record) = self.store.resolve_exception(id, exception, at) else {
            return;
        };
        let labels = ExceptionMetrics::labels(&record.kind, &record.owner);
        self.metrics
            .exceptions
            .resolved
            .get_or_create(&labels)
            .inc();
        let took = at.duration_since(record.opened).unwrap_or_default();
        self.metrics
            .exceptions
            .resolution
            .get_or_create(&super::metrics::KindLabel {
                kind: record.kind.to_string(),
            })
            .observe(took.as_secs_f64());
        self.report(id, record, news);
    }

    /// An exception opened or resolved by an exchange travels with that
    /// exchange's news; one opened by a deadline is told to observers now.
    fn report(&mut self, id: TxRef, record: ExceptionRecord, news: Option<&mut News>) {
        match news {
            Some(news) => news.exceptions.push(record),
            None => {
                if let Some(tx) = self.store.get(id) {
                    for observer in &mut self.observers {
                        observer.exception(tx, &record);
                    }
                }
            }
        }
    }
}

/// The object a rule about `milestone` waits for, given the object of the
/// milestone that set the rule off: the same key when both are about the
/// same kind of key, else any object (`None`).
fn object_for(config: &Config, milestone: &Milestone, object: &Key) -> Option<Key> {
    (config.milestone_def(milestone).object == object.kind).then(|| object.clone())
}

/// What a newly recorded milestone means for reconciliation, worked out on
/// the transaction itself (no look-up): the expectations and the stuck
/// check it starts go into `schedule`, the transaction is no longer stuck,
/// and the exceptions of required milestones still missing are returned,
/// in order, for the caller to open ([`Correlator::open_all`]; usually
/// none, and an empty list allocates nothing).
pub(super) fn reconcile_milestone(
    config: &Config,
    schedule: &mut Schedule,
    tx: &mut TxMut<'_>,
    record: &MilestoneRecord,
    observation: &Observation,
) -> Vec<Opening> {
    let def = config.milestone_def(&record.milestone);
    let mut openings = Vec::new();
    for required in &def.requires {
        let object = object_for(config, required, &record.object);
        if tx.reached(required, object.as_ref()) {
            continue;
        }
        let reporter = observation
            .route
            .map(|r| config.route(r).system.clone())
            .unwrap_or_else(|| observation.exchange.system.clone());
        openings.push(Opening {
            kind: def.unmet.kind.clone(),
            owner: def.unmet.owner.clone().unwrap_or(reporter),
            object: record.object.clone(),
            reason: format!(
                "`{}` arrived for {} before `{required}`",
                record.milestone, record.object
            ),
            evidence: vec![record.exchange],
            resolution: Resolution::Milestone {
                milestone: required.clone(),
                object,
            },
            at: record.at.time(),
        });
    }

    for (index, expectation) in config.expectations.iter().enumerate() {
        if expectation.after == record.milestone {
            schedule.add(
                record.at.time() + expectation.within,
                Some(tx.id()),
                Due::Expectation {
                    expectation: index,
                    object: record.object.clone(),
                    exchange: record.exchange,
                },
            );
        }
    }
    if let Some(after) = def.stuck_after {
        schedule.add(
            record.at.time() + after,
            Some(tx.id()),
            Due::Stuck {
                milestone: record.milestone.clone(),
                object: record.object.clone(),
                since: record.at.time(),
            },
        );
    }
    tx.set_stuck(None);
    openings
}

/// The open exceptions of `tx` whose awaited milestone it now has (it may
/// have arrived just now, or come with a transaction merged into this
/// one): for [`Correlator::resolve_all`].
pub(super) fn satisfied(tx: &Transaction) -> Vec<u64> {
    open_matching(tx, |tx, resolution| match resolution {
        Resolution::Milestone { milestone, object } => tx.reached(milestone, object.as_ref()),
        Resolution::Success { .. } | Resolution::Manual | Resolution::Measure { .. } => false,
    })
}

/// The ids of the open exceptions of `tx` whose resolution `matches`.
fn open_matching(
    tx: &Transaction,
    matches: impl Fn(&Transaction, &Resolution) -> bool,
) -> Vec<u64> {
    tx.exceptions()
        .iter()
        .filter(|e| e.is_open() && matches(tx, &e.resolution))
        .map(|e| e.id)
        .collect()
}

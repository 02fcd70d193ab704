//! The correlator's self-instrumentation: milestones, repeats, flows and
//! transaction lifecycle. Labels are bounded sets from the config
//! (milestone, flow); no business identifier is ever a label. The flow
//! duration histogram lives in the telemetry stage, which knows the trace
//! ID its exemplars carry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::histogram::AtomicHistogram;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct MilestoneLabel {
    pub milestone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct FlowSloLabel {
    pub flow: String,
    pub slo: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ExceptionLabel {
    pub kind: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OperationLabel {
    pub operation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub result: &'static str,
}

/// Per-milestone counters, resolved once at start and indexed by `Milestone::id()`.
pub(super) struct MilestoneCounters {
    pub recorded: Counter,
    pub repeats: Counter,
    pub unresolved: Counter,
}

/// Per-flow handles, indexed by position in `Config::flows`.
pub(super) struct FlowHandles {
    pub met: Counter,
    pub missed: Counter,
}

/// Every metric the correlator writes, with label handles resolved once.
pub(super) struct CorrelateMetrics {
    pub correlated: Counter,
    pub no_keys: Counter,
    pub created: Counter,
    pub merged: Counter,
    pub completed: Counter,
    pub milestones: Vec<MilestoneCounters>,
    pub flows: Vec<FlowHandles>,
    pub exceptions: ExceptionMetrics,
    pub measures: super::measure::MeasureMetrics,
}

/// Exceptions and repeats. Opened at most a few times a minute, so label
/// handles are looked up when needed; label values are bounded by config
/// (exception kinds, systems, operations).
pub(super) struct ExceptionMetrics {
    pub opened: Family<ExceptionLabel, Counter>,
    pub resolved: Family<ExceptionLabel, Counter>,
    pub resolution: Family<KindLabel, AtomicHistogram, fn() -> AtomicHistogram>,
    pub retries: Family<OperationLabel, Counter>,
    pub duplicates: Family<OperationLabel, Counter>,
    pub replays: Family<OperationLabel, Counter>,
    /// Entries in the deadline index.
    pub deadlines: Gauge,
}

fn resolution_histogram() -> AtomicHistogram {
    AtomicHistogram::seconds(FLOW_BUCKETS.iter().copied())
}

impl ExceptionMetrics {
    /// Registers the families and creates every series the config makes
    /// possible at zero, so `rate()` and `increase()` work from the first
    /// scrape instead of only after the first exception of a kind.
    fn new(config: &Config, registry: &mut Registry) -> Self {
        let metrics = Self::register(registry);
        for (kind, owner) in config.possible_exceptions() {
            let labels = Self::labels(&kind, &owner);
            drop(metrics.opened.get_or_create(&labels));
            drop(metrics.resolved.get_or_create(&labels));
            drop(metrics.resolution.get_or_create(&KindLabel {
                kind: kind.to_string(),
            }));
        }
        for route in config.routes.iter().filter(|r| r.repeats.is_some()) {
            let operation = Self::operation(&route.operation);
            for family in [&metrics.retries, &metrics.duplicates, &metrics.replays] {
                drop(family.get_or_create(&operation));
            }
        }
        metrics
    }

    fn register(registry: &mut Registry) -> Self {
        let opened = Family::default();
        registry.register(
            "waybill_exceptions_opened",
            "Exceptions opened, by kind and owner system",
            Family::clone(&opened),
        );
        let resolved = Family::default();
        registry.register(
            "waybill_exceptions_resolved",
            "Exceptions resolved by the awaited milestone or success arriving, by kind and owner system",
            Family::clone(&resolved),
        );
        let resolution: Family<KindLabel, AtomicHistogram, fn() -> AtomicHistogram> =
            Family::new_with_constructor(resolution_histogram);
        registry.register(
            "waybill_exception_resolution_seconds",
            "Time from an exception opening to its resolution, by kind",
            resolution.clone(),
        );
        let per_operation = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<OperationLabel, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let retries = per_operation(
            registry,
            "waybill_retries",
            "Attempts of an operation that followed a failed attempt on the same object",
        );
        let duplicates = per_operation(
            registry,
            "waybill_duplicates",
            "Successful attempts of an operation on an object that already had one, with a new (or no) idempotency key",
        );
        let replays = per_operation(
            registry,
            "waybill_idempotent_replays",
            "Repeats of a successful operation with the same idempotency key (not duplicates)",
        );
        let deadlines = Gauge::default();
        registry.register(
            "waybill_reconcile_deadlines",
            "Deadlines waiting in the reconciliation index (expectations, retry windows, stuck checks)",
            deadlines.clone(),
        );
        ExceptionMetrics {
            opened,
            resolved,
            resolution,
            retries,
            duplicates,
            replays,
            deadlines,
        }
    }

    pub fn labels(kind: &impl ToString, owner: &impl ToString) -> ExceptionLabel {
        ExceptionLabel {
            kind: kind.to_string(),
            owner: owner.to_string(),
        }
    }

    pub fn operation(operation: &impl ToString) -> OperationLabel {
        OperationLabel {
            operation: operation.to_string(),
        }
    }
}

/// Business-time buckets in seconds, from a minute to a month: business
/// flows take minutes (pick to pack) to weeks (delivery to invoice), and so
/// does resolving an exception. The telemetry stage's flow histogram uses
/// them too (adding each flow's SLO as a bound).
pub const FLOW_BUCKETS: [f64; 15] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0,
    259200.0, 604800.0, 1209600.0, 2592000.0,
];

impl CorrelateMetrics {
    pub fn new(config: &Config, registry: &mut Registry) -> Self {
        let observations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "waybill_correlated_observations",
            "Observations applied by the correlator, by result (correlated, no_keys)",
            observations.clone(),
        );
        let lifecycle = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let created = lifecycle(
            registry,
            "waybill_transactions_created",
            "Transactions started by a key not seen before",
        );
        let merged = lifecycle(
            registry,
            "waybill_transactions_merged",
            "Transactions merged into another when an exchange linked them",
        );
        let completed = lifecycle(
            registry,
            "waybill_transactions_completed",
            "Transactions whose every object reached a terminal milestone",
        );

        let recorded = Family::<MilestoneLabel, Counter>::default();
        registry.register(
            "waybill_milestones",
            "Milestones recorded for the first time on an object",
            recorded.clone(),
        );
        let repeats = Family::<MilestoneLabel, Counter>::default();
        registry.register(
            "waybill_milestone_repeats",
            "Milestones marked again on an object that had already reached them (duplicates)",
            repeats.clone(),
        );
        let unresolved = Family::<MilestoneLabel, Counter>::default();
        registry.register(
            "waybill_milestones_unresolved",
            "Milestones whose object key was not in the exchange nor linked to it; recorded against the transaction's name",
            unresolved.clone(),
        );
        let milestones = config
            .milestones
            .iter()
            .map(|m| {
                let label = MilestoneLabel {
                    milestone: m.to_string(),
                };
                MilestoneCounters {
                    recorded: recorded.get_or_create(&label).clone(),
                    repeats: repeats.get_or_create(&label).clone(),
                    unresolved: unresolved.get_or_create(&label).clone(),
                }
            })
            .collect();

        let verdicts = Family::<FlowSloLabel, Counter>::default();
        registry.register(
            "waybill_flows",
            "Completed flows by SLO verdict (met, missed)",
            verdicts.clone(),
        );
        let flows = config
            .flows
            .iter()
            .map(|f| {
                let flow = f.name.to_string();
                let verdict = |slo| {
                    verdicts
                        .get_or_create(&FlowSloLabel {
                            flow: flow.clone(),
                            slo,
                        })
                        .clone()
                };
                FlowHandles {
                    met: verdict("met"),
                    missed: verdict("missed"),
                }
            })
            .collect();

        let result = |result| observations.get_or_create(&ResultLabel { result }).clone();
        let correlated = result("correlated");
        let no_keys = result("no_keys");
        CorrelateMetrics {
            correlated,
            no_keys,
            created,
            merged,
            completed,
            milestones,
            flows,
            exceptions: ExceptionMetrics::new(config, registry),
            measures: super::measure::MeasureMetrics::new(config, registry),
        }
    }
}

//! The correlator's self-instrumentation: milestones, repeats, flows and
//! transaction lifecycle. Labels are bounded sets from the config
//! (milestone, flow); no business identifier is ever a label. The flow
//! duration histogram lives in the telemetry stage, which knows the trace
//! ID its exemplars carry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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
}

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
        }
    }
}

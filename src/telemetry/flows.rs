//! `waybill_flow_duration_seconds{flow}`: each completed flow's duration,
//! with the transaction's trace ID as the OpenMetrics exemplar of the bucket
//! it fell in (`trace_id` label), so a slow bucket in Grafana opens the
//! trace. The trace ID is derived from the transaction's name, so the
//! exemplar is right even when trace export is off or the trace was
//! sampled out (then the link finds nothing).
//!
//! Observed here, from the correlator's [`News`](crate::correlate::News),
//! rather than in the correlator: the correlator does not know trace IDs.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use opentelemetry::trace::TraceId;
use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::{Config, FlowName};
use crate::correlate::FLOW_BUCKETS;
use crate::state::FlowRecord;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FlowLabel {
    flow: String,
}

/// The exemplar's label set, `trace_id`: the trace ID kept as it is and
/// written as its 32 lowercase hex digits when scraped, so a completed
/// flow formats and allocates nothing for its exemplar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceExemplar(pub TraceId);

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        ("trace_id", TraceIdText(self.0)).encode(encoder.encode_label())
    }
}

/// A trace ID as a label value (its `Display`: 32 lowercase hex digits).
struct TraceIdText(TraceId);

impl EncodeLabelValue for TraceIdText {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

/// One histogram handle per declared flow.
pub struct FlowMetrics {
    durations: Vec<(FlowName, HistogramWithExemplars<TraceExemplar>)>,
}

impl FlowMetrics {
    /// Registers the histogram with one series per declared flow.
    pub fn new(config: &Config, registry: &mut Registry) -> Self {
        let mut buckets: Vec<f64> = FLOW_BUCKETS.to_vec();
        buckets.extend(config.flows.iter().map(|f| f.slo.as_secs_f64()));
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        let buckets = Arc::new(buckets);
        let family =
            Family::<FlowLabel, HistogramWithExemplars<TraceExemplar>, _>::new_with_constructor(
                move || HistogramWithExemplars::new(buckets.iter().copied()),
            );
        registry.register(
            "waybill_flow_duration_seconds",
            "Duration of each completed flow, from its start milestone to its end milestone; exemplars carry the trace ID",
            family.clone(),
        );
        let durations = config
            .flows
            .iter()
            .map(|f| {
                let label = FlowLabel {
                    flow: f.name.to_string(),
                };
                (f.name.clone(), family.get_or_create(&label).clone())
            })
            .collect();
        FlowMetrics { durations }
    }

    /// Records `flow`, completed in the transaction whose trace is `trace_id`.
    pub fn observe(&self, flow: &FlowRecord, trace_id: TraceId) {
        if let Some((_, histogram)) = self.durations.iter().find(|(name, _)| name == &flow.flow) {
            histogram.observe(
                flow.duration.as_secs_f64(),
                Some(TraceExemplar(trace_id)),
                // Scrape time: the business clock may be compressed (demo)
                // and Prometheus refuses exemplars far from the scrape.
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::clock::Stamp;
    use crate::extract::Key;

    #[test]
    fn a_flow_observation_carries_the_trace_id_as_its_bucket_exemplar() {
        let config = Config::from_yaml(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - { name: a, bind: 127.0.0.1:18003, upstream: http://127.0.0.1:9000, system: wms }\nmilestones:\n  - { name: released, object: order }\n  - { name: shipped, object: order }\nroutes:\n  - { name: r, system: wms, match: { path: /r }, keys: { order: { header: x-o } }, milestone: released }\n  - { name: s, system: wms, match: { path: /s }, keys: { order: { header: x-o } }, milestone: shipped }\nflows:\n  - { name: order_to_ship, from: released, to: shipped, slo: 2h }\n",
            "t.yaml",
        )
        .expect("valid");
        let mut registry = Registry::default();
        let flows = FlowMetrics::new(&config, &mut registry);
        let order = Key::new(config.key_kinds.get("order").expect("kind"), "SO-1001");
        let start = SystemTime::UNIX_EPOCH;
        flows.observe(
            &FlowRecord {
                flow: config.flow_names.get("order_to_ship").expect("flow"),
                object: order.clone(),
                started: Stamp::new(start),
                ended: Stamp::new(start + Duration::from_secs(5400)),
                duration: Duration::from_secs(5400),
                within_slo: true,
            },
            crate::telemetry::trace_id(&order),
        );
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "waybill_flow_duration_seconds_bucket{le=\"7200.0\",flow=\"order_to_ship\"} 1 # {trace_id=\"f7b15d390d8b21411bc72ccb0e8d5e26\"} 5400.0"
            ),
            "{text}"
        );
    }
}

//! The telemetry stage: the Prometheus registry every stage registers its
//! metrics in at start, frozen and shared for scraping once the app is
//! wired; and OTLP traces built from what the correlator reports.
//!
//! - [`trace_id`]: the trace ID derived from a transaction's root key
//!   (SHA-256, documented namespace and test vector there).
//! - [`traceparent`]: W3C `traceparent` parsing, for span links.
//! - [`propagation`]: the `traceparent` routes with `propagate:
//!   trace_context` send to their upstream (the proxy asks per request).
//! - [`spans`]: the correlator [`Observer`](crate::correlate::Observer)
//!   that builds spans, milestone events and flow spans.
//! - [`flows`]: the flow duration histogram with trace-ID exemplars.
//! - [`histogram`]: the lock-free classic histogram the per-exchange
//!   metrics observe (same exposition as `prometheus-client`'s).
//! - [`settings`]: `OTEL_*` environment plus `telemetry.traces` overrides.
//! - [`resource`]: `service.name`, `service.version`, Kubernetes attributes.
//! - [`export`]: the bounded span queue and the OTLP export task.
//! - [`span_buffers`]: span buffers the export task hands back to the
//!   span observer, so a span allocates nothing once traffic runs.
//! - [`otlp_trace`]: the OTLP wire format: each span written straight into its
//!   protobuf bytes on the correlator, batches wrapped into export requests.
//! - [`transport`]: the gRPC or HTTP connection to the collector both exporters use.
//! - [`metrics_export`]: optional periodic OTLP export of the registry's
//!   [`snapshot`] (off by default; Prometheus scrapes `/metrics` either way).
//!
//! Naming follows Prometheus conventions: `waybill_` prefix, `_total` on
//! counters (added by the encoder), `_seconds` for durations, labels only
//! from bounded sets (system, operation, milestone, flow, reason, status
//! class); a business identifier is never a label (the trace ID exemplar is
//! not a label of the series).

pub mod export;
pub mod flows;
pub mod histogram;
pub mod metrics_export;
pub mod otlp_trace;
pub mod propagation;
pub mod resource;
pub mod settings;
pub mod snapshot;
pub mod span_buffers;
pub mod spans;
pub mod trace_id;
pub mod traceparent;
pub mod transport;
pub mod write_lock;

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::config::Config;
use export::{ExportMetrics, ExporterError, Exporting};
use settings::Env;
use spans::{SpanObserver, SpanSink};

pub use trace_id::{anchor_span_id, trace_id};

/// The exposition formats `/metrics` speaks, chosen by the scraper's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text: what Prometheus asks for first; carries the
    /// flow histograms' trace exemplars.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for `curl`, promtool and
    /// scrapers that do not ask for OpenMetrics (no exemplars).
    PrometheusText,
}

impl Exposition {
    /// The format an `Accept` header asks for: OpenMetrics only when it is
    /// named, as Prometheus does; anything else gets the classic format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => {
                Exposition::OpenMetrics
            }
            _ => Exposition::PrometheusText,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The frozen registry, shared by the admin surface.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    /// Freezes `registry` once every stage has registered its metrics.
    pub fn new(registry: Registry) -> Self {
        Metrics {
            registry: Arc::new(registry),
        }
    }

    /// The current value of every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        self.render_as(Exposition::OpenMetrics)
    }

    /// The current value of every metric in `format`.
    pub fn render_as(&self, format: Exposition) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = match format {
            Exposition::OpenMetrics => encode(&mut out, &self.registry),
            Exposition::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

/// The trace pipeline the app owns: shut it down after the correlator has
/// stopped (which closes the span queue), so queued spans are exported.
pub struct Traces {
    exporting: Option<Exporting>,
    /// The resource every OTLP export carries (spans and metrics).
    resource: std::collections::BTreeMap<String, String>,
    /// Which traces are exported; `None` when traces are off.
    sampler: Option<settings::Sampler>,
}

impl Traces {
    /// Resolves the trace settings from `config` and `env`, starts the
    /// exporter when traces are on (needs a Tokio runtime) and returns the
    /// observer to give the correlator. The observer records the flow
    /// histogram (with exemplars) whether or not traces are on.
    pub fn start(
        config: Arc<Config>,
        env: Env<'_>,
        registry: &mut Registry,
    ) -> Result<(SpanObserver, Traces), ExporterError> {
        let export_metrics = ExportMetrics::new(registry);
        let (settings, mut warnings) = settings::resolve(&config.telemetry.traces, env);
        let sampler = settings.as_ref().map(|s| s.sampler);
        let (attributes, more) = resource::attributes(&config.telemetry.traces, env);
        warnings.extend(more);
        let (sink, exporting) = match settings {
            None => {
                tracing::info!("no OTLP endpoint configured; traces are off");
                (None, None)
            }
            Some(settings) => {
                let (queue, exporting) = export::start(&settings, &attributes, export_metrics)?;
                tracing::info!(
                    endpoint = %settings.endpoint,
                    protocol = settings.protocol.as_str(),
                    sampler = ?settings.sampler,
                    service = attributes.get("service.name").map(String::as_str).unwrap_or_default(),
                    "exporting traces over OTLP"
                );
                let sink = SpanSink {
                    queue,
                    sampler: settings.sampler,
                };
                (Some(sink), Some(exporting))
            }
        };
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let observer = SpanObserver::new(config, sink, registry);
        Ok((
            observer,
            Traces {
                exporting,
                resource: attributes,
                sampler,
            },
        ))
    }

    /// The resource attributes of every OTLP export.
    pub fn resource(&self) -> &std::collections::BTreeMap<String, String> {
        &self.resource
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.exporting.is_some()
    }

    /// The trace context source of `listener` for the proxy, `None` when
    /// none of its routes propagates trace context.
    pub fn propagation(
        &self,
        config: &Config,
        listener: crate::config::ListenerId,
    ) -> Option<Arc<dyn crate::proxy::TraceContextSource>> {
        propagation::Propagation::for_listener(config, listener, self.sampler)
    }

    /// Exports what is queued, waiting at most `deadline`; the rest is
    /// dropped and counted. Call after the correlator has stopped.
    pub async fn shutdown(self, deadline: Duration) {
        if let Some(exporting) = self.exporting {
            exporting.shutdown(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_an_endpoint_traces_are_off_but_their_metrics_are_exposed() {
        let config = Config::from_yaml(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - { name: a, bind: 127.0.0.1:18004, upstream: http://127.0.0.1:9000, system: wms }\n",
            "t.yaml",
        )
        .expect("valid");
        let mut registry = Registry::default();
        let (_observer, traces) =
            Traces::start(Arc::new(config), &|_| None, &mut registry).expect("starts");
        assert!(!traces.enabled());
        let text = Metrics::new(registry).render();
        for series in [
            "waybill_telemetry_dropped_spans_total{reason=\"queue_full\"} 0",
            "waybill_telemetry_exported_spans_total 0",
            "waybill_telemetry_invalid_traceparent_total 0",
        ] {
            assert!(text.contains(series), "no {series} in:\n{text}");
        }
        traces.shutdown(Duration::from_secs(1)).await;
    }
}

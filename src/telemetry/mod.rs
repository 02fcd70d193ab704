//! The telemetry stage: the Prometheus registry every stage registers its
//! metrics in at start, frozen and shared for scraping once the app is
//! wired. OTLP spans (one per exchange, milestone events, flow spans) are a
//! later addition beside it.
//!
//! Naming follows Prometheus conventions: `waybill_` prefix, `_total` on
//! counters (added by the encoder), `_seconds` for durations, labels only
//! from bounded sets (system, operation, milestone, flow, reason, status
//! class); a business identifier is never a label.

pub mod process;

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::render`]: the OpenMetrics text format, which
/// Prometheus negotiates and which carries exemplars.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

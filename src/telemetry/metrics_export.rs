//! Optional OTLP export of the metrics, for users without Prometheus. Off by
//! default. One source of truth: every interval one task takes a snapshot
//! of the same registry `/metrics` serves ([`snapshot`](super::snapshot),
//! rendered on a blocking thread, off the proxy's workers) and sends it as
//! one `ExportMetricsServiceRequest` (cumulative temporality), over gRPC or
//! HTTP/protobuf ([`transport`](super::transport)), bounded by the export timeout. One export at a time: a
//! slow collector delays the next snapshot, it never queues them. The
//! resource is the one spans carry.
//!
//! | setting | file (`telemetry.metrics.`) | environment | default |
//! |---|---|---|---|
//! | on/off | `enabled` | `OTEL_METRICS_EXPORTER=otlp` turns it on (`none` or `OTEL_SDK_DISABLED=true`: off) | off |
//! | endpoint | `endpoint` (as written) | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (as written), `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/metrics` appended for HTTP) | `http://localhost:4317` / `http://localhost:4318/v1/metrics` |
//! | protocol | `protocol` | `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | headers | — | `OTEL_EXPORTER_OTLP_METRICS_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | none |
//! | interval | `interval` | `OTEL_METRIC_EXPORT_INTERVAL` (ms) | 60 s |
//! | export timeout | `export_timeout` | `OTEL_METRIC_EXPORT_TIMEOUT` (ms) | 30 s |
//!
//! Outcomes are counted in `waybill_telemetry_metric_exports_total{result}`
//! (`ok`, `export_failed`, `export_timeout`); failures are logged at most
//! once per [`ERROR_LOG_PERIOD`](super::export::ERROR_LOG_PERIOD). On
//! shutdown one last snapshot is sent, within the shutdown deadline.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::export::ErrorLog;
use super::settings::{parse_pairs, Env, Signal};
use super::snapshot::{self, Times};
use super::transport::Collector;
use super::{Exposition, Metrics};
use crate::config::{MetricsConfig, OtlpProtocol};

/// Time between exports when nothing says otherwise (the OpenTelemetry default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How long one export may take (the OpenTelemetry default).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the metrics exporter needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsExportSettings {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub interval: Duration,
    pub export_timeout: Duration,
}

/// The settings, or `None` when OTLP metrics export is off, and warnings
/// about environment values that were ignored.
pub fn resolve(
    config: &MetricsConfig,
    env: Env<'_>,
) -> (Option<MetricsExportSettings>, Vec<String>) {
    let mut warnings = Vec::new();
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let exporter = var("OTEL_METRICS_EXPORTER");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let enabled = config.enabled.unwrap_or_else(|| match exporter.as_deref() {
        Some(list) => {
            let otlp = list.split(',').any(|e| e.trim() == "otlp");
            if !otlp && !list.split(',').all(|e| matches!(e.trim(), "none" | "prometheus")) {
                warnings.push(format!(
                    "OTEL_METRICS_EXPORTER=`{list}`: only `otlp` is exported (Prometheus is always on /metrics)"
                ));
            }
            otlp && !disabled
        }
        None => false,
    });
    if !enabled {
        return (None, warnings);
    }
    let signal = Signal::Metrics;
    let protocol = config
        .protocol
        .unwrap_or_else(|| signal.env_protocol(&var, &mut warnings));
    let endpoint = match &config.endpoint {
        Some(uri) => uri.to_string(),
        None => signal
            .env_endpoint(&var, protocol)
            .unwrap_or_else(|| signal.default_endpoint(protocol)),
    };
    let headers = var("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
        .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
        .map(|text| parse_pairs(&text, "OTEL_EXPORTER_OTLP_HEADERS", &mut warnings))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| {
            let header = http::HeaderName::try_from(name.as_str())
                .ok()
                .zip(http::HeaderValue::try_from(value.as_str()).ok());
            if header.is_none() {
                warnings.push(format!(
                    "OTEL_EXPORTER_OTLP_HEADERS: `{name}` is not a valid HTTP header; ignored"
                ));
            }
            header
        })
        .collect();
    let mut millis = |name: &str| {
        let value = var(name)?;
        match value.parse::<u64>() {
            Ok(n) if n > 0 => Some(Duration::from_millis(n)),
            _ => {
                warnings.push(format!(
                    "{name}=`{value}` is not a positive integer; ignored"
                ));
                None
            }
        }
    };
    let interval = config
        .interval
        .or_else(|| millis("OTEL_METRIC_EXPORT_INTERVAL"))
        .unwrap_or(DEFAULT_INTERVAL);
    let export_timeout = config
        .export_timeout
        .or_else(|| millis("OTEL_METRIC_EXPORT_TIMEOUT"))
        .unwrap_or(DEFAULT_EXPORT_TIMEOUT);
    let settings = MetricsExportSettings {
        endpoint,
        protocol,
        headers,
        interval,
        export_timeout,
    };
    (Some(settings), warnings)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The exporter's own counters, registered whether or not it is on.
#[derive(Clone, Debug)]
pub struct MetricExportMetrics {
    ok: Counter,
    failed: Counter,
    timeout: Counter,
}

impl MetricExportMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let exports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "waybill_telemetry_metric_exports",
            "OTLP metrics exports by result (ok, export_failed, export_timeout)",
            exports.clone(),
        );
        let result = |result| exports.get_or_create(&ResultLabel { result }).clone();
        MetricExportMetrics {
            ok: result("ok"),
            failed: result("export_failed"),
            timeout: result("export_timeout"),
        }
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP {protocol} metrics exporter for `{endpoint}`: {reason}")]
pub struct MetricsExporterError {
    protocol: &'static str,
    endpoint: String,
    reason: String,
}

/// The running export task.
pub struct MetricExporting {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Spawns the export task (needs a Tokio runtime); it exports `metrics`
/// with `resource` every interval until [`MetricExporting::shutdown`].
pub fn start(
    settings: MetricsExportSettings,
    metrics: Metrics,
    resource: BTreeMap<String, String>,
    counters: MetricExportMetrics,
) -> Result<MetricExporting, MetricsExporterError> {
    let error = |reason: String| MetricsExporterError {
        protocol: settings.protocol.as_str(),
        endpoint: settings.endpoint.clone(),
        reason,
    };
    let transport = Collector::new(
        Signal::Metrics,
        &settings.endpoint,
        settings.protocol,
        settings.export_timeout,
        settings.headers.iter().cloned().collect(),
    )
    .map_err(error)?;
    let stop = CancellationToken::new();
    let exporter = Exporter {
        transport,
        metrics,
        resource,
        counters,
        start: unix_nanos(SystemTime::now()),
        errors: ErrorLog::default(),
        settings,
    };
    let task = tokio::spawn(exporter.run(stop.clone()));
    Ok(MetricExporting { stop, task })
}

impl MetricExporting {
    /// Sends one last snapshot and stops, giving up after `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            tracing::warn!(
                ?deadline,
                "the last OTLP metrics export did not finish before the shutdown deadline"
            );
        }
    }
}

/// The export task's state.
struct Exporter {
    transport: Collector,
    metrics: Metrics,
    resource: BTreeMap<String, String>,
    counters: MetricExportMetrics,
    /// Start of the cumulative series, in Unix nanoseconds.
    start: u64,
    errors: ErrorLog,
    settings: MetricsExportSettings,
}

impl Exporter {
    async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval_at(
            Instant::now() + self.settings.interval,
            self.settings.interval,
        );
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = ticks.tick() => self.export().await,
            }
        }
        self.export().await;
    }

    /// Takes a snapshot and sends it, within the export timeout.
    async fn export(&mut self) {
        let metrics = self.metrics.clone();
        let resource = self.resource.clone();
        let start = self.start;
        let request = tokio::task::spawn_blocking(move || {
            let times = Times {
                start,
                now: unix_nanos(SystemTime::now()),
            };
            snapshot::request(
                &metrics.render_as(Exposition::OpenMetrics),
                &resource,
                times,
            )
        })
        .await;
        let Ok(request) = request else {
            return;
        };
        let sent = tokio::time::timeout(self.settings.export_timeout, self.send(request)).await;
        let failure = match sent {
            Ok(Ok(())) => {
                self.counters.ok.inc();
                return;
            }
            Ok(Err(error)) => {
                self.counters.failed.inc();
                error
            }
            Err(_) => {
                self.counters.timeout.inc();
                format!("no answer within {:?}", self.settings.export_timeout)
            }
        };
        if let Some(suppressed) = self.errors.should_log(Instant::now()) {
            tracing::warn!(
                endpoint = %self.settings.endpoint,
                error = %failure,
                failed_exports_since_last_message = suppressed,
                "OTLP metrics export failed (see waybill_telemetry_metric_exports_total)"
            );
        }
    }

    async fn send(&mut self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        self.transport.send(request.encode_to_vec().into()).await
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn metrics_export_is_off_unless_asked_for() {
        let config = MetricsConfig::default();
        assert!(resolve(&config, &env(&[])).0.is_none());
        let endpoint_only = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        assert!(resolve(&config, &endpoint_only).0.is_none());
    }

    #[test]
    fn the_standard_variables_configure_it() {
        let vars = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]);
        let (settings, warnings) = resolve(&MetricsConfig::default(), &vars);
        let settings = settings.expect("on");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(settings.interval, Duration::from_secs(5));
        assert_eq!(settings.export_timeout, DEFAULT_EXPORT_TIMEOUT);
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let vars = env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://env:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]);
        let config = MetricsConfig {
            enabled: None,
            endpoint: Some(http::Uri::from_static("http://file:4317")),
            protocol: None,
            interval: Some(Duration::from_secs(10)),
            export_timeout: None,
        };
        let settings = resolve(&config, &vars).0.expect("on");
        assert_eq!(settings.endpoint, "http://file:4317/");
        assert_eq!(settings.interval, Duration::from_secs(10));
        let off = MetricsConfig {
            enabled: Some(false),
            ..config
        };
        assert!(resolve(&off, &vars).0.is_none());
    }
}

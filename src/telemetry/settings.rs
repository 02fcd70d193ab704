//! Resolving the trace export settings once at start: for each setting the
//! routes file's `telemetry.traces` value wins, else the standard `OTEL_*`
//! environment variable, else the default below.
//!
//! | setting | file (`telemetry.traces.`) | environment | default |
//! |---|---|---|---|
//! | on/off | `enabled` | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` turn it off | on exactly when an endpoint is configured |
//! | endpoint | `endpoint` (as written) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as written), `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended for HTTP) | `http://localhost:4317` / `http://localhost:4318/v1/traces` when forced on |
//! | protocol | `protocol` | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | headers | `headers` | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values percent-decoded) | none |
//! | sampling | `sampler_ratio` | `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio`, `parentbased_*`), `OTEL_TRACES_SAMPLER_ARG` | every transaction |
//! | export timeout | `export_timeout` | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) | 10 s |
//! | queue | `queue_capacity` | `OTEL_BSP_MAX_QUEUE_SIZE` | 2048 |
//! | batch | `max_batch_size` | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | 512 |
//! | batch delay | — | `OTEL_BSP_SCHEDULE_DELAY` (ms) | 1 s |
//! | requests in flight | — | `OTEL_BSP_MAX_CONCURRENT_EXPORTS` | 2 |
//!
//! **No endpoint, no traces**: unlike the OpenTelemetry SDK default
//! (`localhost:4317`), a sidecar with no endpoint configured exports
//! nothing, so a pod without a collector spends nothing on spans and logs no
//! connection errors. Metrics, flow exemplars included, work either way.
//!
//! Sampling is decided on the trace ID with the SDK's `TraceIdRatioBased`
//! rule, and the trace ID is derived from the transaction's root key, so
//! every sidecar keeps or drops the same transactions. `parentbased_*`
//! samplers behave as their root sampler: an exchange span never has a
//! parent (an incoming `traceparent` is a link, not a parent).
//!
//! A malformed environment value is ignored with a warning (the variable's
//! default applies); a malformed file value is a config error.

use std::time::Duration;

use opentelemetry::trace::TraceId;

use crate::config::{OtlpProtocol, TracesConfig};

/// A way to read environment variables: `std::env::var` in the binary, a
/// map in tests (no process-global state is read behind the caller's back).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Spans waiting for export: a few seconds of a busy sidecar's exchanges,
/// a few MiB at most; beyond it new spans are dropped and counted.
pub const DEFAULT_QUEUE_CAPACITY: usize = 2048;
/// Spans per export request: the OTLP collector's comfortable size.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
/// One export request may take this long before it is abandoned (and its
/// spans counted as dropped); also bounds how long shutdown waits per batch.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Export requests in flight at once: with one, spans only queue while the
/// collector answers, so a slow answer drops spans (`queue_full`) at a rate
/// the collector could take; with two, the next batch is sent meanwhile.
/// Measured in docs/performance.md ("Re-run (session 8, spans)"): one
/// request in flight dropped spans at 2 × the throughput target on a loaded
/// machine. More spans in flight cost memory: a batch each.
pub const DEFAULT_MAX_CONCURRENT_EXPORTS: usize = 2;
/// How long a partial batch waits for more spans: shorter than the SDK's
/// 5 s so on-call sees a fresh trace quickly; spans are small.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(1);

/// Which transactions are exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Share of trace IDs kept, `0.0..=1.0`.
    Ratio(f64),
}

impl Sampler {
    /// Whether spans of `trace_id` are exported: the OpenTelemetry
    /// `TraceIdRatioBased` rule on the low 8 bytes of the trace ID.
    pub fn samples(self, trace_id: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(ratio) if ratio >= 1.0 => true,
            Sampler::Ratio(ratio) if ratio <= 0.0 || ratio.is_nan() => false,
            Sampler::Ratio(ratio) => {
                let bytes = trace_id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..]);
                let bound = (ratio * (1u64 << 63) as f64) as u64;
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

/// Everything the exporter needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The URL requests go to (for HTTP, including `/v1/traces`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(String, String)>,
    pub sampler: Sampler,
    pub queue_capacity: usize,
    pub max_batch_size: usize,
    /// Export requests sent before the first is answered, at least 1.
    pub max_concurrent_exports: usize,
    pub export_timeout: Duration,
    pub schedule_delay: Duration,
}

/// The settings, or `None` when traces are off, and warnings about
/// environment values that were ignored.
pub fn resolve(config: &TracesConfig, env: Env<'_>) -> (Option<TraceSettings>, Vec<String>) {
    let mut warnings = Vec::new();
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };

    let signal = Signal::Traces;
    let protocol = config
        .protocol
        .unwrap_or_else(|| signal.env_protocol(&var, &mut warnings));
    let endpoint = match &config.endpoint {
        Some(uri) => Some(uri.to_string()),
        None => signal.env_endpoint(&var, protocol),
    };
    let endpoint = endpoint.filter(|text| {
        let valid = text
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !valid {
            warnings.push(format!(
                "OTLP endpoint `{text}` is not an http(s) URL; traces are off"
            ));
        }
        valid
    });

    let disabled_by_env = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let enabled = config
        .enabled
        .unwrap_or(!disabled_by_env && endpoint.is_some());
    if !enabled {
        return (None, warnings);
    }
    let endpoint = endpoint.unwrap_or_else(|| signal.default_endpoint(protocol));

    let headers = match &config.headers {
        Some(headers) => headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        None => var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|text| parse_pairs(&text, "OTEL_EXPORTER_OTLP_HEADERS", &mut warnings))
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, value)| {
                let valid = http::HeaderName::try_from(name.as_str()).is_ok()
                    && http::HeaderValue::try_from(value.as_str()).is_ok();
                if !valid {
                    warnings.push(format!(
                        "OTEL_EXPORTER_OTLP_HEADERS: `{name}` is not a valid HTTP header; ignored"
                    ));
                }
                valid
            })
            .collect(),
    };

    let sampler = match config.sampler_ratio {
        Some(ratio) => Sampler::Ratio(ratio),
        None => env_sampler(
            var("OTEL_TRACES_SAMPLER"),
            var("OTEL_TRACES_SAMPLER_ARG"),
            &mut warnings,
        ),
    };

    let mut number = |name: &str| -> Option<u64> {
        let value = var(name)?;
        match value.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                warnings.push(format!(
                    "{name}=`{value}` is not a positive integer; ignored"
                ));
                None
            }
        }
    };
    let export_timeout = config.export_timeout.unwrap_or_else(|| {
        number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| number("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_EXPORT_TIMEOUT)
    });
    let queue_capacity = config.queue_capacity.unwrap_or_else(|| {
        number("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_QUEUE_CAPACITY)
    });
    let max_batch_size = config
        .max_batch_size
        .unwrap_or_else(|| {
            number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(DEFAULT_MAX_BATCH_SIZE)
        })
        .min(queue_capacity);
    let schedule_delay = number("OTEL_BSP_SCHEDULE_DELAY")
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_SCHEDULE_DELAY);
    let max_concurrent_exports = number("OTEL_BSP_MAX_CONCURRENT_EXPORTS")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_CONCURRENT_EXPORTS);

    let settings = TraceSettings {
        endpoint,
        protocol,
        headers,
        sampler,
        queue_capacity,
        max_batch_size,
        max_concurrent_exports,
        export_timeout,
        schedule_delay,
    };
    (Some(settings), warnings)
}

/// What an OTLP export carries; the standard variables are named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// `TRACES` in `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    fn variable(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    /// The gRPC method that exports the signal.
    pub(super) fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    /// The OTLP/HTTP path of the signal.
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The protocol from `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC (an unknown value warns).
    pub(super) fn env_protocol(
        self,
        var: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> OtlpProtocol {
        let names = [
            format!("OTEL_EXPORTER_OTLP_{}_PROTOCOL", self.variable()),
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
        ];
        let Some((name, value)) = names
            .into_iter()
            .find_map(|name| var(&name).map(|value| (name, value)))
        else {
            return OtlpProtocol::Grpc;
        };
        OtlpProtocol::parse(&value).unwrap_or_else(|| {
            warnings.push(format!(
                "{name}=`{value}` is not supported (expected `grpc` or `http/protobuf`); using grpc"
            ));
            OtlpProtocol::Grpc
        })
    }

    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` as written, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (with the signal's path for HTTP).
    pub(super) fn env_endpoint(
        self,
        var: &dyn Fn(&str) -> Option<String>,
        protocol: OtlpProtocol,
    ) -> Option<String> {
        var(&format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", self.variable())).or_else(|| {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => {
                    format!("{}{}", base.trim_end_matches('/'), self.path())
                }
            })
        })
    }

    /// The local collector's default address.
    pub(super) fn default_endpoint(self, protocol: OtlpProtocol) -> String {
        match protocol {
            OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
            OtlpProtocol::HttpProtobuf => format!("http://localhost:4318{}", self.path()),
        }
    }
}

fn env_sampler(name: Option<String>, arg: Option<String>, warnings: &mut Vec<String>) -> Sampler {
    let ratio = |warnings: &mut Vec<String>| match arg.as_deref().map(str::parse::<f64>) {
        None => 1.0,
        Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER_ARG=`{}` is not a ratio between 0 and 1; using 1.0",
                arg.as_deref().unwrap_or_default()
            ));
            1.0
        }
    };
    match name.as_deref() {
        None | Some("always_on" | "parentbased_always_on") => Sampler::AlwaysOn,
        Some("always_off" | "parentbased_always_off") => Sampler::AlwaysOff,
        Some("traceidratio" | "parentbased_traceidratio") => Sampler::Ratio(ratio(warnings)),
        Some(other) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER=`{other}` is not supported; sampling every transaction"
            ));
            Sampler::AlwaysOn
        }
    }
}

/// Reads `k=v,k2=v2` (W3C Baggage-like, as `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` are written): keys trimmed, values trimmed
/// and percent-decoded; malformed entries are skipped with a warning.
pub fn parse_pairs(
    text: &str,
    variable: &str,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            warnings.push(format!("{variable}: entry `{entry}` has no `=`; ignored"));
            continue;
        };
        let key = key.trim();
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8();
        match value {
            Ok(value) if !key.is_empty() => pairs.push((key.to_owned(), value.into_owned())),
            _ => warnings.push(format!(
                "{variable}: entry for `{key}` is malformed; ignored"
            )),
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn traces(yaml: &str) -> TracesConfig {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }}\n{yaml}"
        );
        Config::from_yaml(&text, "t.yaml")
            .expect("valid")
            .telemetry
            .traces
    }

    fn resolve_with(
        config: &TracesConfig,
        vars: &[(&str, &str)],
    ) -> (Option<TraceSettings>, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(config, &|name| vars.get(name).cloned())
    }

    #[test]
    fn traces_are_off_when_no_endpoint_is_configured() {
        let (settings, warnings) = resolve_with(&TracesConfig::default(), &[]);
        assert!(settings.is_none());
        assert!(warnings.is_empty());
    }

    #[test]
    fn the_generic_endpoint_gets_the_traces_path_for_http_only() {
        let config = TracesConfig::default();
        let (grpc, _) = resolve_with(&config, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        let grpc = grpc.expect("on");
        assert_eq!(grpc.endpoint, "http://c:4317");
        assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
        let (http, _) = resolve_with(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        );
        assert_eq!(http.expect("on").endpoint, "http://c:4318/v1/traces");
        let (specific, _) = resolve_with(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        );
        assert_eq!(specific.expect("on").endpoint, "http://t:4318/custom");
    }

    #[test]
    fn file_values_win_over_the_environment() {
        let config = traces(
            "telemetry:\n  traces: { endpoint: \"http://file:4317\", headers: { x-a: b }, sampler_ratio: 0.5, export_timeout: 3s }\n",
        );
        let (settings, _) = resolve_with(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-env=1"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ],
        );
        let settings = settings.expect("on");
        assert_eq!(settings.endpoint, "http://file:4317/");
        assert_eq!(settings.headers, [("x-a".to_owned(), "b".to_owned())]);
        assert_eq!(settings.sampler, Sampler::Ratio(0.5));
        assert_eq!(settings.export_timeout, Duration::from_secs(3));
    }

    #[test]
    fn the_environment_configures_what_the_file_leaves_out() {
        let (settings, warnings) = resolve_with(
            &TracesConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20t0k, x-b = 2 ,broken,bad name=1",
                ),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50"),
                ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "4"),
            ],
        );
        let settings = settings.expect("on");
        assert_eq!(
            settings.headers,
            [
                ("authorization".to_owned(), "Bearer t0k".to_owned()),
                ("x-b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(settings.sampler, Sampler::Ratio(0.1));
        assert_eq!(settings.export_timeout, Duration::from_millis(2500));
        assert_eq!(settings.queue_capacity, 10);
        assert_eq!(
            settings.max_batch_size, 10,
            "a batch never exceeds the queue"
        );
        assert_eq!(settings.max_concurrent_exports, 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn the_sdk_switches_turn_traces_off_unless_the_file_forces_them_on() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317");
        let off = resolve_with(
            &TracesConfig::default(),
            &[endpoint, ("OTEL_SDK_DISABLED", "true")],
        );
        assert!(off.0.is_none());
        let off = resolve_with(
            &TracesConfig::default(),
            &[endpoint, ("OTEL_TRACES_EXPORTER", "none")],
        );
        assert!(off.0.is_none());
        let forced = traces("telemetry:\n  traces: { enabled: true }\n");
        let (on, _) = resolve_with(&forced, &[("OTEL_SDK_DISABLED", "true")]);
        assert_eq!(on.expect("forced on").endpoint, "http://localhost:4317");
        let off = traces("telemetry:\n  traces: { enabled: false }\n");
        assert!(resolve_with(&off, &[endpoint]).0.is_none());
    }

    #[test]
    fn an_invalid_environment_endpoint_turns_traces_off_with_a_warning() {
        let (settings, warnings) = resolve_with(
            &TracesConfig::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
        );
        assert!(settings.is_none());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn ratio_sampling_keeps_about_the_requested_share_and_is_deterministic() {
        let sampler = Sampler::Ratio(0.25);
        let kept = (0u64..4000)
            .filter(|i| {
                let mut bytes = [0u8; 16];
                bytes[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                sampler.samples(TraceId::from_bytes(bytes))
            })
            .count();
        assert!((800..1200).contains(&kept), "kept {kept}");
        let id = TraceId::from_bytes([7; 16]);
        assert_eq!(sampler.samples(id), sampler.samples(id));
        assert!(Sampler::Ratio(1.0).samples(id));
        assert!(!Sampler::Ratio(0.0).samples(id));
    }
}

//! Telemetry settings from the routes file: overrides for the standard
//! `OTEL_*` environment variables that configure OTLP trace and metrics export. Every
//! field is optional here; the telemetry stage resolves the final settings
//! (file value, else environment, else default) when the app starts.

use std::time::Duration;

/// `telemetry:` as validated.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    pub traces: TracesConfig,
    pub metrics: MetricsConfig,
}

/// `telemetry.metrics:` as validated; `None` means "not set in the file".
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Forces OTLP metrics export on or off; unset means the environment decides.
    pub enabled: Option<bool>,
    /// An `http://` or `https://` URL with a host.
    pub endpoint: Option<http::Uri>,
    pub protocol: Option<OtlpProtocol>,
    /// More than zero.
    pub interval: Option<Duration>,
    /// More than zero.
    pub export_timeout: Option<Duration>,
}

/// `telemetry.traces:` as validated; `None` means "not set in the file".
#[derive(Debug, Clone, Default)]
pub struct TracesConfig {
    /// Forces export on or off; unset means "on when an endpoint is known".
    pub enabled: Option<bool>,
    /// An `http://` or `https://` URL with a host.
    pub endpoint: Option<http::Uri>,
    pub protocol: Option<OtlpProtocol>,
    /// Valid HTTP header names and values, sorted by name.
    pub headers: Option<Vec<(http::HeaderName, http::HeaderValue)>>,
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    /// Between 0.0 and 1.0 inclusive.
    pub sampler_ratio: Option<f64>,
    /// At least 1.
    pub queue_capacity: Option<usize>,
    /// At least 1.
    pub max_batch_size: Option<usize>,
    pub export_timeout: Option<Duration>,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Reads the value of `OTEL_EXPORTER_OTLP_PROTOCOL` / `protocol:`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }

    /// The name as written in config and environment.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

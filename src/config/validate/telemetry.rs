//! `telemetry:`: the overrides for OTLP trace and metrics export. Endpoints must be
//! `http(s)://` URLs with a host, header names and values must be valid
//! HTTP, the sampler ratio a share between 0 and 1.

use super::super::raw::{RawMetrics, RawTelemetry, RawTraces};
use super::super::{MetricsConfig, OtlpProtocol, TelemetryConfig, TracesConfig};
use super::Validator;

impl Validator<'_> {
    pub(super) fn telemetry(&mut self, raw: Option<&RawTelemetry>) -> TelemetryConfig {
        let traces = match raw.and_then(|t| t.traces.as_ref()) {
            Some(traces) => self.traces(traces),
            None => TracesConfig::default(),
        };
        let metrics = match raw.and_then(|t| t.metrics.as_ref()) {
            Some(metrics) => self.metrics(metrics),
            None => MetricsConfig::default(),
        };
        TelemetryConfig { traces, metrics }
    }

    fn metrics(&mut self, raw: &RawMetrics) -> MetricsConfig {
        let endpoint = raw
            .endpoint
            .as_deref()
            .and_then(|text| self.otlp_endpoint("telemetry.metrics.endpoint", text));
        let protocol = raw
            .protocol
            .as_deref()
            .and_then(|text| self.otlp_protocol("telemetry.metrics.protocol", text));
        // The duration parser refuses zero.
        let interval = raw.interval.as_ref().map(|interval| {
            self.duration(
                "telemetry.metrics.interval",
                Some(interval),
                std::time::Duration::from_secs(60),
            )
        });
        let export_timeout = raw.export_timeout.as_ref().map(|timeout| {
            self.duration(
                "telemetry.metrics.export_timeout",
                Some(timeout),
                std::time::Duration::from_secs(30),
            )
        });
        MetricsConfig {
            enabled: raw.enabled,
            endpoint,
            protocol,
            interval,
            export_timeout,
        }
    }

    fn otlp_protocol(&mut self, field: &str, text: &str) -> Option<OtlpProtocol> {
        let protocol = OtlpProtocol::parse(text);
        if protocol.is_none() {
            self.error(
                field,
                format!("unknown OTLP protocol `{text}`; expected `grpc` or `http/protobuf`"),
            );
        }
        protocol
    }

    fn traces(&mut self, raw: &RawTraces) -> TracesConfig {
        let endpoint = raw
            .endpoint
            .as_deref()
            .and_then(|text| self.otlp_endpoint("telemetry.traces.endpoint", text));
        let protocol = raw
            .protocol
            .as_deref()
            .and_then(|text| self.otlp_protocol("telemetry.traces.protocol", text));
        let headers = raw.headers.as_ref().map(|headers| {
            let mut valid = Vec::with_capacity(headers.len());
            for (name, value) in headers {
                let field = format!("telemetry.traces.headers.{name}");
                match (
                    http::HeaderName::try_from(name.as_str()),
                    http::HeaderValue::try_from(value.as_str()),
                ) {
                    (Ok(name), Ok(value)) => valid.push((name, value)),
                    (Err(_), _) => self.error(
                        &field,
                        format!("`{name}` is not a valid HTTP header name; expected letters, digits and `-`"),
                    ),
                    (_, Err(_)) => self.error(
                        &field,
                        "not a valid HTTP header value (control characters are not allowed)",
                    ),
                }
            }
            valid
        });
        let service_name = raw.service_name.as_deref().and_then(|name| {
            if name.trim().is_empty() {
                self.error(
                    "telemetry.traces.service_name",
                    "is empty; expected a name such as `waybill-wms`",
                );
                None
            } else {
                Some(name.to_owned())
            }
        });
        let resource_attributes = raw
            .resource_attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sampler_ratio = raw.sampler_ratio.and_then(|ratio| {
            if (0.0..=1.0).contains(&ratio) {
                Some(ratio)
            } else {
                self.error(
                    "telemetry.traces.sampler_ratio",
                    format!("{ratio} is not a share; expected a number from 0.0 (no transaction) to 1.0 (every transaction)"),
                );
                None
            }
        });
        let queue_capacity = self.positive("telemetry.traces.queue_capacity", raw.queue_capacity);
        let max_batch_size = self.positive("telemetry.traces.max_batch_size", raw.max_batch_size);
        let export_timeout = raw.export_timeout.as_ref().map(|timeout| {
            self.duration(
                "telemetry.traces.export_timeout",
                Some(timeout),
                std::time::Duration::from_secs(10),
            )
        });
        TracesConfig {
            enabled: raw.enabled,
            endpoint,
            protocol,
            headers,
            service_name,
            resource_attributes,
            sampler_ratio,
            queue_capacity,
            max_batch_size,
            export_timeout,
        }
    }

    fn otlp_endpoint(&mut self, field: &str, text: &str) -> Option<http::Uri> {
        let expected = "expected an `http://` or `https://` URL, e.g. `http://otel-collector:4317`";
        match text.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Some(uri)
            }
            Ok(_) => {
                self.error(
                    field,
                    format!("`{text}` is not a collector URL; {expected}"),
                );
                None
            }
            Err(error) => {
                self.error(field, format!("invalid URL `{text}` ({error}); {expected}"));
                None
            }
        }
    }

    fn positive(&mut self, field: &str, raw: Option<usize>) -> Option<usize> {
        match raw {
            Some(0) => {
                self.error(field, "must be at least 1");
                None
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, OtlpProtocol};

    fn load(telemetry: &str) -> Result<Config, String> {
        let text = format!(
            "systems: [wms]\nkeys: [order]\nlisteners:\n  - {{ name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }}\n{telemetry}"
        );
        Config::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_without_telemetry_overrides_nothing() {
        let config = load("").expect("valid");
        let traces = &config.telemetry.traces;
        assert!(traces.enabled.is_none() && traces.endpoint.is_none());
        assert!(traces.protocol.is_none() && traces.sampler_ratio.is_none());
    }

    #[test]
    fn every_trace_override_is_read_into_a_typed_value() {
        let config = load(
            "telemetry:\n  traces:\n    enabled: true\n    endpoint: http://collector:4318/v1/traces\n    protocol: http/protobuf\n    headers: { authorization: Bearer abc }\n    service_name: waybill-wms\n    resource_attributes: { deployment.environment: prod }\n    sampler_ratio: 0.25\n    queue_capacity: 100\n    max_batch_size: 10\n    export_timeout: 2s\n",
        )
        .expect("valid");
        let traces = &config.telemetry.traces;
        assert_eq!(traces.enabled, Some(true));
        assert_eq!(
            traces.endpoint.as_ref().map(|u| u.to_string()).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(traces.protocol, Some(OtlpProtocol::HttpProtobuf));
        let headers = traces.headers.as_ref().expect("headers");
        assert_eq!(headers[0].0.as_str(), "authorization");
        assert_eq!(headers[0].1, "Bearer abc");
        assert_eq!(traces.service_name.as_deref(), Some("waybill-wms"));
        assert_eq!(
            traces.resource_attributes,
            [("deployment.environment".to_owned(), "prod".to_owned())]
        );
        assert_eq!(traces.sampler_ratio, Some(0.25));
        assert_eq!(traces.queue_capacity, Some(100));
        assert_eq!(traces.max_batch_size, Some(10));
        assert_eq!(traces.export_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn bad_trace_overrides_are_all_reported_with_their_fields() {
        let error = load(
            "telemetry:\n  traces:\n    endpoint: collector:4317\n    protocol: thrift\n    headers: { \"bad header\": x }\n    sampler_ratio: 1.5\n    queue_capacity: 0\n    export_timeout: soon\n",
        )
        .expect_err("invalid");
        for needle in [
            "telemetry.traces.endpoint",
            "telemetry.traces.protocol",
            "telemetry.traces.headers.bad header",
            "telemetry.traces.sampler_ratio",
            "telemetry.traces.queue_capacity",
            "telemetry.traces.export_timeout",
        ] {
            assert!(error.contains(needle), "missing {needle} in:\n{error}");
        }
        assert!(error.contains("`grpc` or `http/protobuf`"), "{error}");
    }

    #[test]
    fn an_unknown_field_under_traces_is_refused() {
        let error =
            load("telemetry:\n  traces: { endpoitn: http://x:4317 }\n").expect_err("unknown");
        assert!(error.contains("endpoitn"), "{error}");
    }

    #[test]
    fn metrics_export_overrides_are_read_and_bad_ones_reported() {
        let config = load(
            "telemetry:\n  metrics: { enabled: true, endpoint: \"http://c:4317\", protocol: grpc, interval: 15s, export_timeout: 5s }\n",
        )
        .expect("valid");
        let metrics = &config.telemetry.metrics;
        assert_eq!(metrics.enabled, Some(true));
        assert_eq!(metrics.protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(metrics.interval, Some(Duration::from_secs(15)));
        assert_eq!(metrics.export_timeout, Some(Duration::from_secs(5)));
        let error = load(
            "telemetry:\n  metrics: { endpoint: c:4317, protocol: thrift, interval: 0s, export_timeout: soon }\n",
        )
        .expect_err("invalid");
        for needle in [
            "t.yaml:6:",
            "telemetry.metrics.endpoint",
            "telemetry.metrics.protocol",
            "telemetry.metrics.interval: duration `0s` is zero",
            "telemetry.metrics.export_timeout",
        ] {
            assert!(error.contains(needle), "missing {needle} in:\n{error}");
        }
    }
}

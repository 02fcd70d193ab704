//! One snapshot of the Prometheus registry as OTLP metrics: the OpenMetrics
//! text `/metrics` serves (so both exports always agree: one source of
//! truth) read back into an `ExportMetricsServiceRequest`.
//!
//! | OpenMetrics family | OTLP |
//! |---|---|
//! | `counter` (sample `name_total`) | monotonic cumulative Sum named `name_total` |
//! | `gauge` | Gauge |
//! | `histogram` (`_bucket`, `_sum`, `_count`) | cumulative explicit-bucket Histogram |
//! | anything else (`info`, `unknown` …) | left out |
//!
//! Labels become attributes (string values); the `le` of buckets becomes
//! the explicit bounds. Exemplars and `_created` samples are left out. The
//! unit is `s` for names ending in `_seconds`, `By` for `_bytes`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Times of the data points, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// When the cumulative series started (the exporter's start).
    pub start: u64,
    /// When the snapshot was taken.
    pub now: u64,
}

/// The OTLP request for the OpenMetrics `text`, with `resource` attributes.
pub fn request(
    text: &str,
    resource: &BTreeMap<String, String>,
    times: Times,
) -> ExportMetricsServiceRequest {
    let metrics = families(text)
        .into_iter()
        .filter_map(|family| family.into_metric(times))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| attribute(k, v)).collect(),
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "waybill".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// Labels of one sample, in exposition order.
type Labels = Vec<(String, String)>;

/// A histogram bucket as exposed: `(le, cumulative count)`.
type Bucket = (f64, f64);

/// One metric family read from the text.
#[derive(Debug, Default)]
struct Family {
    name: String,
    kind: String,
    help: String,
    /// `(suffix, labels, value)`; suffix is what follows the family name.
    samples: Vec<(String, Labels, f64)>,
}

impl Family {
    fn into_metric(self, times: Times) -> Option<Metric> {
        let unit = if self.name.ends_with("_seconds") {
            "s"
        } else if self.name.ends_with("_bytes") {
            "By"
        } else {
            ""
        };
        let (name, data) = match self.kind.as_str() {
            "counter" => (
                format!("{}_total", self.name),
                metric::Data::Sum(Sum {
                    data_points: self.numbers("_total", times),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            "gauge" => (
                self.name.clone(),
                metric::Data::Gauge(Gauge {
                    data_points: self.numbers("", times),
                }),
            ),
            "histogram" => (
                self.name.clone(),
                metric::Data::Histogram(Histogram {
                    data_points: self.histograms(times),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            _ => return None,
        };
        Some(Metric {
            name,
            description: self.help,
            unit: unit.to_owned(),
            data: Some(data),
            ..Metric::default()
        })
    }

    fn numbers(&self, suffix: &str, times: Times) -> Vec<NumberDataPoint> {
        self.samples
            .iter()
            .filter(|(s, _, _)| s == suffix)
            .map(|(_, labels, value)| NumberDataPoint {
                attributes: labels.iter().map(|(k, v)| attribute(k, v)).collect(),
                start_time_unix_nano: times.start,
                time_unix_nano: times.now,
                value: Some(number_data_point::Value::AsDouble(*value)),
                ..NumberDataPoint::default()
            })
            .collect()
    }

    /// One data point per label set: cumulative `_bucket` counts become
    /// per-bucket counts, `+Inf` the last one.
    fn histograms(&self, times: Times) -> Vec<HistogramDataPoint> {
        let mut points: Vec<(Labels, HistogramDataPoint, Vec<Bucket>)> = Vec::new();
        for (suffix, labels, value) in &self.samples {
            let mut labels = labels.clone();
            let le = labels
                .iter()
                .position(|(k, _)| k == "le")
                .map(|i| labels.remove(i).1);
            let index = match points.iter().position(|(l, _, _)| *l == labels) {
                Some(index) => index,
                None => {
                    let point = HistogramDataPoint {
                        attributes: labels.iter().map(|(k, v)| attribute(k, v)).collect(),
                        start_time_unix_nano: times.start,
                        time_unix_nano: times.now,
                        ..HistogramDataPoint::default()
                    };
                    points.push((labels, point, Vec::new()));
                    points.len() - 1
                }
            };
            let (_, point, buckets) = &mut points[index];
            match (suffix.as_str(), le) {
                ("_bucket", Some(le)) => {
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::NAN)
                    };
                    buckets.push((bound, *value));
                }
                ("_sum", _) => point.sum = Some(*value),
                // Counts are integers written as such; rounding only
                // guards against a float rendering.
                ("_count", _) => point.count = value.round() as u64,
                _ => {}
            }
        }
        points
            .into_iter()
            .map(|(_, mut point, mut buckets)| {
                buckets.retain(|(bound, _)| !bound.is_nan());
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut below = 0.0;
                for (bound, cumulative) in buckets {
                    if bound.is_finite() {
                        point.explicit_bounds.push(bound);
                    }
                    point
                        .bucket_counts
                        .push((cumulative - below).max(0.0).round() as u64);
                    below = cumulative;
                }
                point
            })
            .collect()
    }
}

/// The families of an OpenMetrics text, in order.
fn families(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = parts.next().unwrap_or_default();
            if families.last().is_none_or(|f| f.name != name) {
                families.push(Family {
                    name: name.to_owned(),
                    ..Family::default()
                });
            }
            if let Some(family) = families.last_mut() {
                match keyword {
                    "TYPE" => family.kind = value.to_owned(),
                    "HELP" => family.help = unescape(value),
                    _ => {}
                }
            }
            continue;
        }
        let Some(family) = families.last_mut() else {
            continue;
        };
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if let Some(suffix) = name.strip_prefix(family.name.as_str()) {
            family.samples.push((suffix.to_owned(), labels, value));
        }
    }
    families
}

/// `name{a="1",b="2"} value [timestamp] [# exemplar]`.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The labels up to the closing `}` and what follows it.
fn label_set(mut text: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        text = &rest[end + 1..];
    }
}

fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP waybill_exchanges Exchanges observed.
# TYPE waybill_exchanges counter
waybill_exchanges_total{system="wms",operation="wms.release",status_class="2xx"} 3
waybill_exchanges_total{system="wms",operation="a \"quoted\" op",status_class="5xx"} 1
# HELP waybill_state_keys Keys indexed.
# TYPE waybill_state_keys gauge
waybill_state_keys 7
# HELP waybill_flow_duration_seconds Flow durations.
# TYPE waybill_flow_duration_seconds histogram
# UNIT waybill_flow_duration_seconds seconds
waybill_flow_duration_seconds_sum{flow="order_to_ship"} 5400.0
waybill_flow_duration_seconds_count{flow="order_to_ship"} 3
waybill_flow_duration_seconds_bucket{le="60.0",flow="order_to_ship"} 1
waybill_flow_duration_seconds_bucket{le="3600.0",flow="order_to_ship"} 2 # {trace_id="abc"} 1800.0 1.0
waybill_flow_duration_seconds_bucket{le="+Inf",flow="order_to_ship"} 3
# HELP target_info Target metadata.
# TYPE target_info info
target_info_info{service="x"} 1
# EOF
"#;

    fn convert() -> Vec<Metric> {
        let mut resource = BTreeMap::new();
        resource.insert("service.name".to_owned(), "waybill-test".to_owned());
        let request = request(TEXT, &resource, Times { start: 1, now: 2 });
        let resource_metrics = &request.resource_metrics[0];
        let service = &resource_metrics
            .resource
            .as_ref()
            .expect("resource")
            .attributes[0];
        assert_eq!(service.key, "service.name");
        resource_metrics.scope_metrics[0].metrics.clone()
    }

    fn text_attributes(attributes: &[KeyValue]) -> Vec<(String, String)> {
        attributes
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                    other => (kv.key.clone(), format!("{other:?}")),
                },
            )
            .collect()
    }

    #[test]
    fn counters_become_monotonic_cumulative_sums_named_with_total() {
        let metrics = convert();
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "waybill_exchanges_total",
                "waybill_state_keys",
                "waybill_flow_duration_seconds"
            ],
            "info families are left out"
        );
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("not a sum: {:?}", metrics[0]);
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        let second = &sum.data_points[1];
        assert_eq!(
            text_attributes(&second.attributes),
            [
                ("system".to_owned(), "wms".to_owned()),
                ("operation".to_owned(), "a \"quoted\" op".to_owned()),
                ("status_class".to_owned(), "5xx".to_owned()),
            ]
        );
        assert_eq!(second.value, Some(number_data_point::Value::AsDouble(1.0)));
        assert_eq!((second.start_time_unix_nano, second.time_unix_nano), (1, 2));
        assert_eq!(metrics[0].description, "Exchanges observed.");
    }

    #[test]
    fn gauges_stay_gauges() {
        let metrics = convert();
        let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
            panic!("not a gauge: {:?}", metrics[1]);
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(7.0))
        );
        assert!(gauge.data_points[0].attributes.is_empty());
    }

    #[test]
    fn histograms_get_per_bucket_counts_and_finite_bounds() {
        let metrics = convert();
        assert_eq!(metrics[2].unit, "s");
        let Some(metric::Data::Histogram(histogram)) = &metrics[2].data else {
            panic!("not a histogram: {:?}", metrics[2]);
        };
        let point = &histogram.data_points[0];
        assert_eq!(
            text_attributes(&point.attributes),
            [("flow".to_owned(), "order_to_ship".to_owned())]
        );
        assert_eq!(point.explicit_bounds, [60.0, 3600.0]);
        assert_eq!(point.bucket_counts, [1, 1, 1]);
        assert_eq!(point.count, 3);
        assert_eq!(point.sum, Some(5400.0));
    }
}

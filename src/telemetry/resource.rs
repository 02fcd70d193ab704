//! The OTLP resource: who emitted the spans. Built once at start from, in
//! increasing precedence: `OTEL_RESOURCE_ATTRIBUTES`, `K8S_POD_NAME` /
//! `K8S_NAMESPACE_NAME` / `K8S_NODE_NAME` (as the Helm chart sets them from
//! the downward API),
//! the file's `telemetry.traces.resource_attributes`, then `service.name`
//! (`service_name` in the file, else `OTEL_SERVICE_NAME`, else a
//! `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `waybill`) and
//! `service.version` (this build). `service.instance.id` is kept when given,
//! else a random UUID (v4) per process, as the semantic conventions advise.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use opentelemetry_sdk::Resource;

use super::settings::{parse_pairs, Env};
use crate::config::TracesConfig;

/// `service.name` when nothing else names the service.
pub const DEFAULT_SERVICE_NAME: &str = "waybill";

/// The resource attributes, sorted by key, and warnings about ignored
/// environment values.
pub fn attributes(config: &TracesConfig, env: Env<'_>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut attributes = BTreeMap::new();
    if let Some(text) = var("OTEL_RESOURCE_ATTRIBUTES") {
        attributes.extend(parse_pairs(
            &text,
            "OTEL_RESOURCE_ATTRIBUTES",
            &mut warnings,
        ));
    }
    if let Some(pod) = var("K8S_POD_NAME") {
        attributes.insert("k8s.pod.name".to_owned(), pod);
    }
    if let Some(namespace) = var("K8S_NAMESPACE_NAME") {
        attributes.insert("k8s.namespace.name".to_owned(), namespace);
    }
    if let Some(node) = var("K8S_NODE_NAME") {
        attributes.insert("k8s.node.name".to_owned(), node);
    }
    attributes.extend(config.resource_attributes.iter().cloned());
    let service = config
        .service_name
        .clone()
        .or_else(|| var("OTEL_SERVICE_NAME"))
        .or_else(|| attributes.get("service.name").cloned())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    attributes.insert("service.name".to_owned(), service);
    attributes.insert(
        "service.version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    attributes
        .entry("service.instance.id".to_owned())
        .or_insert_with(random_uuid);
    (attributes, warnings)
}

/// The resource for the exporter.
pub fn resource(attributes: &BTreeMap<String, String>) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

/// A random version 4 UUID, from the SDK's random ID source.
fn random_uuid() -> String {
    let mut bytes = RandomIdGenerator::default().new_trace_id().to_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with_env(config: &TracesConfig, vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        attributes(config, &|name| vars.get(name).cloned()).0
    }

    #[test]
    fn the_service_is_called_waybill_with_this_version_by_default() {
        let attributes = with_env(&TracesConfig::default(), &[]);
        assert_eq!(attributes["service.name"], "waybill");
        assert_eq!(attributes["service.version"], env!("CARGO_PKG_VERSION"));
        let id = &attributes["service.instance.id"];
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(!attributes.contains_key("k8s.pod.name"));
    }

    #[test]
    fn environment_and_file_attributes_combine_in_precedence_order() {
        let config = TracesConfig {
            resource_attributes: vec![("deployment.environment".into(), "prod".into())],
            ..TracesConfig::default()
        };
        let attributes = with_env(
            &config,
            &[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=from-attrs,deployment.environment=dev,team=logistics%20ops",
                ),
                ("OTEL_SERVICE_NAME", "waybill-wms"),
                ("K8S_POD_NAME", "wms-0"),
                ("K8S_NAMESPACE_NAME", "integration"),
                ("K8S_NODE_NAME", "node-7"),
            ],
        );
        assert_eq!(attributes["service.name"], "waybill-wms");
        assert_eq!(attributes["deployment.environment"], "prod");
        assert_eq!(attributes["team"], "logistics ops");
        assert_eq!(attributes["k8s.pod.name"], "wms-0");
        assert_eq!(attributes["k8s.namespace.name"], "integration");
        assert_eq!(attributes["k8s.node.name"], "node-7");
    }

    #[test]
    fn the_file_service_name_wins() {
        let config = TracesConfig {
            service_name: Some("waybill-carrier".into()),
            ..TracesConfig::default()
        };
        let attributes = with_env(&config, &[("OTEL_SERVICE_NAME", "other")]);
        assert_eq!(attributes["service.name"], "waybill-carrier");
    }
}

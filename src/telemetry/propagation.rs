//! Trace context propagation to the upstream, for routes with
//! `propagate: trace_context` (off by default: it changes traffic). This
//! module owns the decision the proxy asks for per request (the proxy
//! inserts the header and carries the context on the exchange; the span
//! observer exports the exchange's span with that span ID).
//!
//! Per request of a listener with such a route:
//! 1. **Route**: the first route in priority order that serves the listener
//!    and matches the method and path (content conditions are not asked,
//!    the body has not arrived; as for the idempotency guard). If it did
//!    not opt in, the request is forwarded untouched.
//! 2. **Trace ID**: the transaction's ([`trace_id`] of the root key) when
//!    the route reads the root key kind from the request head (`path_param`,
//!    `query` or `header`; the first non-empty value, read as extraction
//!    reads it); otherwise the trace ID of a valid incoming `traceparent`
//!    (the caller's trace continues at the upstream); otherwise a random one.
//! 3. **Span ID**: random, chosen now; the exchange's exported span carries
//!    it, so the upstream's spans name it as their parent. When the trace ID
//!    is not the transaction's (step 2 fell through, or the transaction
//!    turns out to be named by another key), the span is still exported in
//!    the transaction's trace and carries a link `waybill.link=propagated`
//!    to (propagated trace ID, its own span ID), where the upstream's spans
//!    hang.
//! 4. **Flags**: `sampled` when traces are exported and the sampler keeps
//!    the trace ID.

use std::sync::Arc;

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use super::settings::Sampler;
use super::trace_id::trace_id;
use super::traceparent::{self, Traceparent};
use crate::config::{Config, HeadRoutes, KeyKind, KeySource, ListenerId};
use crate::extract::{head_value, Key};
use crate::proxy::{RequestHeadRef, TraceContext, TraceContextSource};

/// The [`TraceContextSource`] of one listener.
#[derive(Debug)]
pub struct Propagation {
    /// Routes serving the listener up to its last route that propagates;
    /// each that does with its rule for the root key kind, when that rule
    /// reads the head.
    routes: HeadRoutes<Option<KeySource>>,
    root: KeyKind,
    /// `None` when traces are off: nothing will be exported.
    sampler: Option<Sampler>,
    ids: RandomIdGenerator,
}

impl Propagation {
    /// The propagation of listener `listener`, or `None` when none of its
    /// routes has `propagate: trace_context` (its requests then pay nothing).
    pub fn for_listener(
        config: &Config,
        listener: ListenerId,
        sampler: Option<Sampler>,
    ) -> Option<Arc<dyn TraceContextSource>> {
        let routes = HeadRoutes::new(&config.routes, listener, |route| {
            route.propagate?;
            Some(
                route
                    .keys
                    .iter()
                    .find(|rule| rule.kind == config.root && rule.source.body_side().is_none())
                    .map(|rule| rule.source.clone()),
            )
        });
        if routes.is_empty() {
            return None;
        }
        Some(Arc::new(Propagation {
            routes,
            root: config.root.clone(),
            sampler,
            ids: RandomIdGenerator::default(),
        }))
    }

    /// The trace ID for a request of `route` (step 2 of the module doc).
    fn trace_id(
        &self,
        root: Option<&KeySource>,
        head: RequestHeadRef<'_>,
        params: &[&str],
    ) -> TraceId {
        let query = head.uri.query().unwrap_or_default();
        if let Some(value) = root.and_then(|rule| head_value(rule, head.headers, query, params)) {
            return trace_id(&Key::new(self.root.clone(), value.as_ref()));
        }
        match traceparent::read(head.headers) {
            Traceparent::Valid(caller) => caller.trace_id(),
            Traceparent::Absent | Traceparent::Invalid => self.ids.new_trace_id(),
        }
    }
}

impl TraceContextSource for Propagation {
    fn context(&self, head: RequestHeadRef<'_>) -> Option<TraceContext> {
        let (root, params) = self.routes.decide(head.method, head.uri.path())?;
        let trace_id = self.trace_id(root.as_ref(), head, &params);
        Some(TraceContext {
            trace_id,
            span_id: self.ids.new_span_id(),
            sampled: self.sampler.is_some_and(|s| s.samples(trace_id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"
systems: [wms]
keys: [order, shipment]
root: order
listeners:
  - { name: a, bind: 127.0.0.1:18004, upstream: http://127.0.0.1:9000, system: wms }
routes:
  - name: wms.pack
    system: wms
    match: { method: POST, path: "/orders/{id}/pack" }
    keys: { order: { path_param: id } }
    propagate: trace_context
  - name: wms.ship
    system: wms
    match: { method: POST, path: "/shipments/{id}/ship" }
    keys: { shipment: { path_param: id }, order: { request_json: $.order } }
    propagate: trace_context
  - name: wms.plain
    system: wms
    match: { path: "/orders/{id}" }
    keys: { order: { path_param: id } }
"#;

    fn source(routes: &str) -> Option<Arc<dyn TraceContextSource>> {
        let config = Config::from_yaml(routes, "t.yaml").expect("valid");
        Propagation::for_listener(&config, ListenerId(0), Some(Sampler::AlwaysOn))
    }

    /// A request head as an engine has it when it asks for a context.
    struct Head {
        method: http::Method,
        uri: http::Uri,
        headers: crate::proxy::Headers,
    }

    impl<'a> From<&'a Head> for RequestHeadRef<'a> {
        fn from(head: &'a Head) -> Self {
            RequestHeadRef {
                method: &head.method,
                uri: &head.uri,
                headers: &head.headers,
            }
        }
    }

    fn head(method: &str, uri: &str, traceparent: Option<&str>) -> Head {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(value) = traceparent {
            builder = builder.header("traceparent", value);
        }
        let parts = builder.body(()).expect("request").into_parts().0;
        Head {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers.into(),
        }
    }

    fn order(value: &str) -> TraceId {
        let config = Config::from_yaml(ROUTES, "t.yaml").expect("valid");
        trace_id(&Key::new(config.root.clone(), value))
    }

    #[test]
    fn a_root_key_in_the_path_gives_the_transactions_trace_id() {
        let source = source(ROUTES).expect("a route propagates");
        let context = source
            .context(RequestHeadRef::from(&head(
                "POST",
                "/orders/SO-1/pack",
                None,
            )))
            .expect("propagated");
        assert_eq!(context.trace_id, order("SO-1"));
        assert!(context.sampled);
        let again = source
            .context(RequestHeadRef::from(&head(
                "POST",
                "/orders/SO-1/pack",
                None,
            )))
            .expect("propagated");
        assert_eq!(again.trace_id, context.trace_id);
        assert_ne!(again.span_id, context.span_id, "a new span per request");
    }

    #[test]
    fn without_a_root_key_in_the_head_the_callers_trace_continues() {
        let source = source(ROUTES).expect("a route propagates");
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = source
            .context(RequestHeadRef::from(&head(
                "POST",
                "/shipments/SH-1/ship",
                Some(caller),
            )))
            .expect("propagated");
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let alone = source
            .context(RequestHeadRef::from(&head(
                "POST",
                "/shipments/SH-1/ship",
                None,
            )))
            .expect("propagated");
        assert_ne!(alone.trace_id, TraceId::INVALID);
        assert_ne!(alone.trace_id, context.trace_id);
    }

    #[test]
    fn routes_without_the_option_and_unmatched_requests_are_left_alone() {
        let source = source(ROUTES).expect("a route propagates");
        assert!(source
            .context(RequestHeadRef::from(&head("GET", "/orders/SO-1", None)))
            .is_none());
        assert!(source
            .context(RequestHeadRef::from(&head(
                "GET",
                "/orders/SO-1/pack",
                None
            )))
            .is_none());
        assert!(source
            .context(RequestHeadRef::from(&head("POST", "/elsewhere", None)))
            .is_none());
        let none = ROUTES.replace("    propagate: trace_context\n", "");
        assert!(self::source(&none).is_none(), "no route opted in");
    }
}

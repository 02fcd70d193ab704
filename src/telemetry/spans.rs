//! The span observer: runs on the correlator's task after each applied
//! exchange and turns it into OTLP span data. It only builds data and hands
//! it to the export queue with `try_send`; it never waits.
//!
//! What it builds, per [`Correlated`] event:
//!
//! - **One span per exchange and transaction** in the transaction's trace
//!   ([`trace_id`] of its name), named `{method} {http.route}` (or
//!   `{method}` when no route matched), kind SERVER on inbound listeners and
//!   CLIENT on outbound ones, from the exchange's start to its end, with the
//!   stable HTTP semantic conventions (`http.request.method`, `http.route`,
//!   `http.response.status_code`, `url.scheme`, `url.path`, `url.query`,
//!   `url.full` on CLIENT spans, `server.address`, `server.port`,
//!   `network.protocol.version`, `error.type`) and `waybill.system`,
//!   `waybill.operation`, `waybill.transaction`, `waybill.keys`,
//!   `waybill.milestone`, `waybill.extraction.problems`; and for the
//!   measure values it carried, `waybill.measure.{measure}.{role}` (the
//!   first value as a double) with `….unit`, every value exactly in
//!   `waybill.measures` (`freight_cost quoted 12.5 USD`), and values that
//!   could not be read in `waybill.measure.unparseable` (`measure:reason`).
//! - **Span events** for milestones it marked: named after the milestone,
//!   with `waybill.object.kind`, `waybill.object.value` and
//!   `waybill.milestone.repeat`; and `waybill.exception` events for
//!   exceptions it opened or resolved (`waybill.exception.kind`, `.owner`,
//!   `.state` = `opened`/`resolved`, `.reason`, and the object). Exceptions
//!   opened by a lapsed deadline have no exchange, so no span.
//! - **Span links** to the traces of the transaction's former names (spans
//!   exported before a key was linked to its root are not rewritten; the
//!   later spans point back at them, at the documented anchor span ID), and
//!   to the caller's span when the request carried a valid `traceparent`.
//! - On routes with `propagate: trace_context` the exchange span has the
//!   span ID the proxy sent upstream in `traceparent`
//!   ([`Exchange::trace_context`](crate::proxy::Exchange)); when the
//!   propagated trace ID is not the span's trace, a link
//!   `waybill.link=propagated` points at (that trace ID, the span's ID).
//! - **A `waybill.flow` span** per flow it completed, from the start
//!   milestone's time to the end milestone's, with `waybill.flow`,
//!   `waybill.flow.duration_seconds`, `waybill.flow.slo_seconds`,
//!   `waybill.flow.within_slo` and `waybill.flow.object`.
//!
//! Exchanges that carried no key get a span with a random trace ID (the
//! propagated one, if any) and no `waybill.transaction`.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::export::SpanQueue;
use super::flows::FlowMetrics;
use super::settings::Sampler;
use super::trace_id::{anchor_span_id, trace_id};
use super::traceparent::{self, Traceparent};
use crate::config::{Config, Direction};
use crate::correlate::{Correlated, Observer};
use crate::extract::{Key, Observation};
use crate::proxy::Outcome;
use crate::state::{ExceptionRecord, FlowRecord, Transaction};

/// Most links one span carries: a transaction merged from many others
/// links to the first ones only (the SDK's default link limit).
pub const MAX_LINKS: usize = 128;

/// Where spans go when traces are on.
pub struct SpanSink {
    pub queue: SpanQueue,
    pub sampler: Sampler,
}

/// The telemetry stage's [`Observer`]: flow histograms always, spans when
/// a [`SpanSink`] is given.
pub struct SpanObserver {
    config: Arc<Config>,
    /// `http.route` of each route, by [`RouteId`](crate::config::RouteId):
    /// shared by every span instead of copied into each.
    route_templates: Vec<Arc<str>>,
    sink: Option<SpanSink>,
    flows: FlowMetrics,
    invalid_traceparent: Counter,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
}

impl SpanObserver {
    /// Registers the flow histogram and the `traceparent` counter in `registry`.
    pub fn new(config: Arc<Config>, sink: Option<SpanSink>, registry: &mut Registry) -> Self {
        let flows = FlowMetrics::new(&config, registry);
        let invalid_traceparent = Counter::default();
        registry.register(
            "waybill_telemetry_invalid_traceparent",
            "Requests whose traceparent header was not valid W3C Trace Context (ignored)",
            invalid_traceparent.clone(),
        );
        SpanObserver {
            route_templates: config
                .routes
                .iter()
                .map(|route| Arc::from(route.path.text.as_str()))
                .collect(),
            config,
            sink,
            flows,
            invalid_traceparent,
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder("waybill")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }

    /// The span of `observation` in trace `trace_id` (without transaction
    /// attributes, events or transaction links).
    pub fn exchange_span(&self, observation: &Observation, trace_id: TraceId) -> SpanData {
        let exchange = &observation.exchange;
        let listener = self.config.listeners.get(exchange.listener.0);
        let outbound = listener.is_some_and(|l| l.direction == Direction::Outbound);
        let route = observation
            .route
            .and_then(|id| self.route_templates.get(id.0));

        let (method, original) = semconv_method(&exchange.method);
        let mut attributes = vec![KeyValue::new("http.request.method", method)];
        if let Some(original) = original {
            attributes.push(KeyValue::new("http.request.method_original", original));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", Value::from(Arc::clone(route))));
        }
        let status = exchange.outcome.status().as_u16();
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        match listener.filter(|_| outbound) {
            Some(listener) => client_target(&mut attributes, &listener.upstream.uri, &exchange.uri),
            None => server_target(&mut attributes, exchange),
        }
        attributes.push(KeyValue::new("url.path", exchange.uri.path().to_owned()));
        if let Some(query) = exchange.uri.query() {
            attributes.push(KeyValue::new("url.query", query.to_owned()));
        }
        attributes.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(exchange.version),
        ));
        let error_type = error_type(&exchange.outcome, outbound);
        let span_status = match &error_type {
            Some(_) => Status::error(""),
            None => Status::Unset,
        };
        if let Some(error_type) = error_type {
            attributes.push(KeyValue::new("error.type", error_type));
        }
        attributes.push(KeyValue::new(
            "waybill.system",
            Value::from(exchange.system.shared_name()),
        ));
        if let Some(operation) = &observation.operation {
            attributes.push(KeyValue::new(
                "waybill.operation",
                Value::from(operation.shared_name()),
            ));
        }
        if !observation.problems.is_empty() {
            attributes.push(KeyValue::new(
                "waybill.extraction.problems",
                strings(observation.problems.iter().map(|p| p.as_str())),
            ));
        }

        measure_attributes(&mut attributes, observation);

        let name: Cow<'static, str> = match route {
            Some(route) => [method, " ", route].concat().into(),
            None => method.into(),
        };
        let start_time = exchange.started;
        let span_id = match exchange.trace_context {
            Some(propagated) => propagated.span_id,
            None => self.ids.new_span_id(),
        };
        SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: if outbound {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            name,
            start_time,
            end_time: start_time + exchange.duration,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: span_status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Everything `event` yields in `trace` (the [`trace_id`] of its
    /// transaction's name, computed once by the caller): the exchange span,
    /// then one span per completed flow. Sampling is not applied here.
    pub fn spans(&mut self, event: &Correlated<'_>, trace: TraceId) -> Vec<SpanData> {
        let transaction = event.transaction;
        let mut span = self.exchange_span(event.observation, trace);
        span.attributes.push(KeyValue::new(
            "waybill.transaction",
            key_text(&transaction.name),
        ));
        span.attributes.push(KeyValue::new(
            "waybill.keys",
            strings(event.keys.iter().map(key_text)),
        ));
        if let (Some(milestone), false) = (
            &event.observation.milestone,
            event.news.milestones.is_empty(),
        ) {
            span.attributes.push(KeyValue::new(
                "waybill.milestone",
                Value::from(milestone.shared_name()),
            ));
        }
        let at = event.observation.exchange.started;
        span.events.events = event
            .news
            .milestones
            .iter()
            .map(|marked| {
                Event::new(
                    marked.record.milestone.as_str().to_owned(),
                    at,
                    vec![
                        KeyValue::new(
                            "waybill.object.kind",
                            Value::from(marked.record.object.kind.shared_name()),
                        ),
                        KeyValue::new(
                            "waybill.object.value",
                            Value::from(Arc::clone(&marked.record.object.value)),
                        ),
                        KeyValue::new("waybill.milestone.repeat", marked.repeat),
                    ],
                    0,
                )
            })
            .collect();
        span.events
            .events
            .extend(event.news.exceptions.iter().map(|exception| {
                Event::new("waybill.exception", at, exception_attributes(exception), 0)
            }));
        let mut links: Vec<Link> = transaction
            .former_names
            .iter()
            .map(|former| {
                Link::new(
                    SpanContext::new(
                        trace_id(former),
                        anchor_span_id(former),
                        TraceFlags::SAMPLED,
                        true,
                        TraceState::default(),
                    ),
                    vec![
                        KeyValue::new("waybill.link", "former_name"),
                        KeyValue::new("waybill.transaction", key_text(former)),
                    ],
                    0,
                )
            })
            .collect();
        links.extend(self.traceparent_link(event.observation));
        links.extend(propagated_link(event.observation, trace));
        self.set_links(&mut span, links);

        let mut spans = vec![span];
        spans.extend(
            event
                .news
                .flows
                .iter()
                .map(|flow| self.flow_span(flow, key_text(&transaction.name), trace)),
        );
        spans
    }

    /// The `waybill.flow` span covering `flow`.
    fn flow_span(&self, flow: &FlowRecord, transaction: String, trace: TraceId) -> SpanData {
        let slo = self
            .config
            .flows
            .iter()
            .find(|f| f.name == flow.flow)
            .map(|f| f.slo.as_secs_f64());
        let mut attributes = vec![
            KeyValue::new("waybill.flow", Value::from(flow.flow.shared_name())),
            KeyValue::new("waybill.flow.duration_seconds", flow.duration.as_secs_f64()),
            KeyValue::new("waybill.flow.within_slo", flow.within_slo),
            KeyValue::new("waybill.flow.object", key_text(&flow.object)),
            KeyValue::new("waybill.transaction", transaction),
        ];
        if let Some(slo) = slo {
            attributes.push(KeyValue::new("waybill.flow.slo_seconds", slo));
        }
        let end = flow.ended.max(flow.started);
        self.internal_span("waybill.flow", trace, (flow.started, end), attributes)
    }

    /// A span of the sidecar's own (a flow, an exception) in trace `trace`.
    fn internal_span(
        &self,
        name: &'static str,
        trace: TraceId,
        (start_time, end_time): (std::time::SystemTime, std::time::SystemTime),
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        SpanData {
            span_context: self.span_context(trace),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }
    }

    fn span_context(&self, trace: TraceId) -> SpanContext {
        SpanContext::new(
            trace,
            self.ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    }

    fn traceparent_link(&self, observation: &Observation) -> Option<Link> {
        match traceparent::read(&observation.exchange.request_headers) {
            Traceparent::Absent => None,
            Traceparent::Invalid => {
                self.invalid_traceparent.inc();
                None
            }
            Traceparent::Valid(context) => Some(Link::new(
                context,
                vec![KeyValue::new("waybill.link", "traceparent")],
                0,
            )),
        }
    }

    fn set_links(&self, span: &mut SpanData, mut links: Vec<Link>) {
        let dropped = links.len().saturating_sub(MAX_LINKS);
        links.truncate(MAX_LINKS);
        span.links.links = links;
        span.links.dropped_count = u32::try_from(dropped).unwrap_or(u32::MAX);
    }

    fn send(&self, spans: Vec<SpanData>) {
        if let Some(sink) = &self.sink {
            for span in spans {
                sink.queue.push(span);
            }
        }
    }

    fn sampled(&self, trace: TraceId) -> bool {
        self.sink.as_ref().is_some_and(|s| s.sampler.samples(trace))
    }
}

impl Observer for SpanObserver {
    fn correlated(&mut self, event: &Correlated<'_>) {
        let trace = trace_id(&event.transaction.name);
        for flow in &event.news.flows {
            self.flows.observe(flow, trace);
        }
        if self.sampled(trace) {
            let spans = self.spans(event, trace);
            self.send(spans);
        }
    }

    /// An exception opened by a deadline (no exchange to hang it on)
    /// becomes a short `waybill.exception` span in the transaction's trace.
    fn exception(&mut self, transaction: &Transaction, exception: &ExceptionRecord) {
        let trace = trace_id(&transaction.name);
        if !self.sampled(trace) {
            return;
        }
        let at = exception.resolved.unwrap_or(exception.opened);
        let mut attributes = exception_attributes(exception);
        attributes.push(KeyValue::new(
            "waybill.transaction",
            key_text(&transaction.name),
        ));
        let span = self.internal_span("waybill.exception", trace, (at, at), attributes);
        self.send(vec![span]);
    }

    fn uncorrelated(&mut self, observation: &Observation) {
        // A propagated trace ID is where the upstream's spans are.
        let trace = match observation.exchange.trace_context {
            Some(propagated) => propagated.trace_id,
            None => self.ids.new_trace_id(),
        };
        if self.sampled(trace) {
            let mut span = self.exchange_span(observation, trace);
            let links = self.traceparent_link(observation).into_iter().collect();
            self.set_links(&mut span, links);
            self.send(vec![span]);
        }
    }
}

/// When the proxy propagated a trace ID other than `trace` (the span's),
/// a link to the span's own ID in that trace, where the upstream's spans
/// name it as their parent.
fn propagated_link(observation: &Observation, trace: TraceId) -> Option<Link> {
    let propagated = observation.exchange.trace_context?;
    (propagated.trace_id != trace).then(|| {
        Link::new(
            SpanContext::new(
                propagated.trace_id,
                propagated.span_id,
                TraceFlags::new(u8::from(propagated.sampled)),
                true,
                TraceState::default(),
            ),
            vec![KeyValue::new("waybill.link", "propagated")],
            0,
        )
    })
}

/// What a span (event) says about an exception.
/// The measure attributes of an exchange span.
fn measure_attributes(attributes: &mut Vec<KeyValue>, observation: &Observation) {
    let measures = &observation.measures;
    let mut named: Vec<String> = Vec::new();
    for value in &measures.values {
        let key = format!("waybill.measure.{}.{}", value.measure, value.role.as_str());
        if !named.contains(&key) {
            attributes.push(KeyValue::new(format!("{key}.unit"), value.unit.to_string()));
            attributes.push(KeyValue::new(key.clone(), value.amount.to_f64()));
            named.push(key);
        }
    }
    if !measures.values.is_empty() {
        attributes.push(KeyValue::new(
            "waybill.measures",
            strings(
                measures
                    .values
                    .iter()
                    .map(|v| format!("{} {} {} {}", v.measure, v.role.as_str(), v.amount, v.unit)),
            ),
        ));
    }
    if !measures.unreadable.is_empty() {
        attributes.push(KeyValue::new(
            "waybill.measure.unparseable",
            strings(
                measures
                    .unreadable
                    .iter()
                    .map(|(m, reason)| format!("{m}:{}", reason.as_str())),
            ),
        ));
    }
}

fn exception_attributes(exception: &ExceptionRecord) -> Vec<KeyValue> {
    let state = if exception.is_open() {
        "opened"
    } else {
        "resolved"
    };
    vec![
        KeyValue::new("waybill.exception.kind", exception.kind.to_string()),
        KeyValue::new("waybill.exception.owner", exception.owner.to_string()),
        KeyValue::new("waybill.exception.state", state),
        KeyValue::new("waybill.object.kind", exception.object.kind.to_string()),
        KeyValue::new("waybill.object.value", exception.object.value.to_string()),
        KeyValue::new("waybill.exception.reason", exception.reason.clone()),
    ]
}

/// `url.full`, `url.scheme`, `server.address` and `server.port` of a CLIENT
/// span: where the sidecar sent the request (the upstream, its base path
/// prefixed to the request's path).
fn client_target(attributes: &mut Vec<KeyValue>, upstream: &http::Uri, request: &http::Uri) {
    let scheme = upstream.scheme_str().unwrap_or("http");
    let base = upstream.path().trim_end_matches('/');
    let authority = upstream.authority().map(|a| a.as_str()).unwrap_or_default();
    let path_and_query = request.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    attributes.push(KeyValue::new(
        "url.full",
        [scheme, "://", authority, base, path_and_query].concat(),
    ));
    attributes.push(KeyValue::new("url.scheme", scheme.to_owned()));
    if let Some(host) = upstream.host() {
        attributes.push(KeyValue::new("server.address", host.to_owned()));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = upstream.port_u16().unwrap_or(default_port);
    attributes.push(KeyValue::new("server.port", i64::from(port)));
}

/// `url.scheme`, `server.address` and `server.port` of a SERVER span: the
/// authority the client addressed (`:authority` or `Host`).
fn server_target(attributes: &mut Vec<KeyValue>, exchange: &crate::proxy::Exchange) {
    attributes.push(KeyValue::new("url.scheme", "http"));
    let authority = exchange.uri.authority().cloned().or_else(|| {
        exchange
            .request_headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
    });
    if let Some(authority) = authority {
        attributes.push(KeyValue::new("server.address", authority.host().to_owned()));
        if let Some(port) = authority.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
}

/// `error.type` per the HTTP conventions: the upstream failure's kind, or
/// the status code for 5xx (and 4xx on CLIENT spans, where the sidecar's
/// side made the failing call).
fn error_type(outcome: &Outcome, outbound: bool) -> Option<String> {
    match outcome {
        Outcome::UpstreamFailed { error, .. } => Some(error.as_str().to_owned()),
        Outcome::Response { status, .. } => {
            let failed = status.is_server_error() || (outbound && status.is_client_error());
            failed.then(|| status.as_u16().to_string())
        }
    }
}

/// `http.request.method`: the method when it is one the HTTP RFCs define,
/// else `_OTHER` with the original in `http.request.method_original`.
fn semconv_method(method: &http::Method) -> (&'static str, Option<String>) {
    const KNOWN: [(http::Method, &str); 9] = [
        (http::Method::GET, "GET"),
        (http::Method::POST, "POST"),
        (http::Method::PUT, "PUT"),
        (http::Method::DELETE, "DELETE"),
        (http::Method::PATCH, "PATCH"),
        (http::Method::HEAD, "HEAD"),
        (http::Method::OPTIONS, "OPTIONS"),
        (http::Method::CONNECT, "CONNECT"),
        (http::Method::TRACE, "TRACE"),
    ];
    match KNOWN.iter().find(|(m, _)| m == method) {
        Some((_, name)) => (name, None),
        None => ("_OTHER", Some(method.as_str().to_owned())),
    }
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// A key as spans show it, `kind:value` (its `Display`), built in one
/// allocation of the right size: this runs several times per exchange.
fn key_text(key: &Key) -> String {
    [key.kind.as_str(), ":", &key.value].concat()
}

fn strings<S: Into<StringValue>>(values: impl Iterator<Item = S>) -> Value {
    Value::Array(Array::String(values.map(Into::into).collect()))
}

#[cfg(test)]
mod tests;

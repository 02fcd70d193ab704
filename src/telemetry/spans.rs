//! The span observer: runs on the correlator's task after each applied
//! exchange and encodes its spans straight into OTLP protobuf bytes
//! ([`SpanWriter`]: no intermediate span values, no string per attribute),
//! then hands them to the export queue ([`SpanQueue::push`]); it never waits.
//!
//! What it builds, per [`Correlated`] event:
//!
//! - **One span per exchange and transaction** in the transaction's trace
//!   ([`trace_id`] of its name, derived once per name and kept with the
//!   transaction: [`Transaction::trace_id`]), named `{method} {http.route}` (or
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

use std::cell::RefCell;
use std::sync::Arc;

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::export::SpanQueue;
use super::flows::FlowMetrics;
use super::otlp_trace::{
    Attributes, EncodedAttribute, EncodedAttributes, EncodedEvent, EncodedHead, EncodedSpan, Kind,
    LinkTarget, SpanWriter, Text, UnixNanos,
};
use super::settings::Sampler;
use super::span_buffers::{BufferStash, SpanBuffers};
use super::trace_id::trace_and_anchor;
use super::traceparent::{self, Traceparent};
use crate::config::{Config, Direction, Operation, System};
use crate::correlate::{Correlated, Marked, Observer};
use crate::extract::{ExchangeSummary, Key, Observation};
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
    sink: Option<SpanSink>,
    flows: FlowMetrics,
    invalid_traceparent: Counter,
    ids: RandomIdGenerator,
    /// The last `Host` header a SERVER span was written for, with its
    /// `url.scheme`, `server.address` and `server.port` attributes encoded
    /// (a listener's clients mostly address it by one name).
    last_host: RefCell<Option<(Box<[u8]>, EncodedAttributes)>>,
    /// Per listener (by `ListenerId`), for outbound ones.
    client_targets: Vec<Option<ClientTarget>>,
    /// Attributes of the config's routes, systems and operations, encoded.
    declared: DeclaredAttributes,
    /// By `RouteId` plus one (0: no route), an exchange span's name, kind
    /// and [`ExchangeFacts`] attributes encoded, per combination seen (at
    /// most [`FACT_PIECES_PER_ROUTE`]; mostly one).
    fact_pieces: RefCell<Vec<Vec<FactPiece>>>,
    /// By `RouteId` plus one (0: no route), the URL attributes of the
    /// route's last exchange (routes without path parameters mostly see
    /// one path).
    url_pieces: RefCell<Vec<UrlPiece>>,
    /// The milestone events' fixed parts, encoded.
    milestone_events: MilestoneEvents,
    /// The name and kind of `waybill.flow` and `waybill.exception` spans.
    flow_head: EncodedHead,
    exception_head: EncodedHead,
    /// By `FlowName::id`, the declared flows' fixed attributes, encoded.
    flow_attributes: Vec<Option<FlowAttributes>>,
    /// By `KeyKind::id`, `{kind}:`, the start of every key's text.
    key_prefixes: Vec<String>,
    /// By status code minus 100, `http.response.status_code`, encoded the
    /// first time a response has it (100–599: a bounded set).
    status_codes: RefCell<Vec<Option<EncodedAttributes>>>,
    /// The spans of one event on their way to the queue: emptied after
    /// each, kept so its room is allocated once.
    outgoing: Vec<EncodedSpan>,
    /// Buffers to write spans into, returned by the export task.
    buffers: RefCell<BufferStash>,
}

/// An exchange span being written, whether its status is ERROR, and its
/// start (where its events are).
struct Exchange {
    writer: SpanWriter,
    error: bool,
    start: UnixNanos,
}

/// The links of one span, at most [`MAX_LINKS`]; the rest are counted.
struct Links<'a> {
    writer: &'a mut SpanWriter,
    written: usize,
    dropped: u32,
}

impl<'a> Links<'a> {
    fn new(writer: &'a mut SpanWriter) -> Self {
        Links {
            writer,
            written: 0,
            dropped: 0,
        }
    }

    fn add(&mut self, target: LinkTarget, write: impl FnOnce(&mut Attributes<'_>)) {
        if self.written < MAX_LINKS {
            self.writer.link(target, write);
            self.written += 1;
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
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
        let client_targets = config
            .listeners
            .iter()
            .map(|l| {
                (l.direction == Direction::Outbound).then(|| ClientTarget::new(&l.upstream.uri))
            })
            .collect();
        let declared = DeclaredAttributes::new(&config);
        let config_routes = config.routes.len();
        let milestone_events = MilestoneEvents::new(&config);
        let buffers = sink
            .as_ref()
            .map(|sink| sink.queue.buffers().clone())
            .unwrap_or_default();
        let mut flow_attributes: Vec<Option<FlowAttributes>> = Vec::new();
        for flow in &config.flows {
            let id = flow.name.id();
            if flow_attributes.len() <= id {
                flow_attributes.resize_with(id + 1, || None);
            }
            flow_attributes[id].get_or_insert_with(|| FlowAttributes::new(flow));
        }
        let key_prefixes = config
            .key_kinds
            .iter()
            .map(|kind| [kind.as_str(), ":"].concat())
            .collect();
        SpanObserver {
            key_prefixes,
            config,
            sink,
            flows,
            invalid_traceparent,
            ids: RandomIdGenerator::default(),
            last_host: RefCell::new(None),
            declared,
            fact_pieces: RefCell::new((0..=config_routes).map(|_| Vec::new()).collect()),
            url_pieces: RefCell::new((0..=config_routes).map(|_| UrlPiece::default()).collect()),
            milestone_events,
            flow_attributes,
            flow_head: EncodedHead::new("waybill.flow", Kind::Internal),
            exception_head: EncodedHead::new("waybill.exception", Kind::Internal),
            client_targets,
            status_codes: RefCell::new(vec![None; STATUS_CODES]),
            outgoing: Vec::new(),
            buffers: RefCell::new(BufferStash::new(buffers)),
        }
    }

    /// The pool this observer writes its spans into, refilled by the export
    /// task (by whoever is done with the spans, when there is no queue).
    pub fn buffers(&self) -> SpanBuffers {
        self.buffers
            .try_borrow()
            .map(|stash| stash.pool().clone())
            .unwrap_or_default()
    }

    /// An empty buffer to write a span into.
    fn buffer(&self) -> Vec<u8> {
        self.buffers
            .try_borrow_mut()
            .map(|mut stash| stash.take())
            .unwrap_or_default()
    }

    /// The span of `observation` in trace `trace_id` (without transaction
    /// attributes, events or links).
    pub fn exchange_span(&self, observation: &Observation, trace_id: TraceId) -> EncodedSpan {
        let span = self.exchange_writer(observation, trace_id);
        span.writer.finish(0, span.error)
    }

    /// The exchange span's ids, name, kind, times and the attributes of
    /// the observation.
    fn exchange_writer(&self, observation: &Observation, trace_id: TraceId) -> Exchange {
        let exchange = &observation.exchange;
        let outbound = exchange.is_outbound(&self.config);
        let route = observation
            .route
            .and_then(|id| self.config.routes.get(id.0))
            .map(|route| route.path.text.as_str());
        let known = KNOWN_METHODS
            .iter()
            .position(|(known, _)| *known == exchange.method);
        let span_id = match exchange.trace_context {
            Some(propagated) => propagated.span_id,
            None => self.ids.new_span_id(),
        };
        let kind = if outbound { Kind::Client } else { Kind::Server };
        let start = UnixNanos::from(exchange.started);
        let error_type = error_type(exchange, outbound);
        let version = PROTOCOL_VERSIONS
            .iter()
            .position(|(known, _)| *known == exchange.version)
            .unwrap_or(PROTOCOL_VERSIONS.len() - 1);
        let facts = ExchangeFacts {
            method: known.ok_or(exchange.method.as_str()),
            route: observation.route.map(|id| id.0).zip(route),
            kind,
            status: exchange.status.as_u16(),
            version,
            system: &exchange.system,
            operation: observation.operation.as_ref(),
        };
        let mut writer = self.start_exchange(
            &facts,
            (trace_id, span_id),
            (start, start.after(exchange.duration)),
        );
        let mut attributes = writer.attributes();
        let slot = facts.route.map_or(0, |(id, _)| id + 1);
        self.url_attributes(&mut attributes, exchange, outbound, slot);
        if let Some(error_type) = error_type {
            attributes.string("error.type", error_type);
        }
        if !observation.problems.is_empty() {
            attributes.strings("waybill.extraction.problems", |values| {
                for problem in &observation.problems {
                    values.push(problem.as_str());
                }
            });
        }
        measure_attributes(&mut attributes, observation);
        Exchange {
            writer,
            error: error_type.is_some(),
            start,
        }
    }

    /// Everything `event` yields in its transaction's trace (the
    /// [`trace_id`] of its name, kept with the transaction:
    /// [`Transaction::trace_id`]): the exchange span, then one span per
    /// completed flow. Sampling is not applied here.
    pub fn spans(&self, event: &Correlated<'_>) -> Vec<EncodedSpan> {
        let mut spans = Vec::with_capacity(1 + event.news.flows.len());
        self.spans_into(event, &mut spans);
        spans
    }

    /// [`spans`](Self::spans), appended to `spans` (a `Vec` the caller
    /// reuses from one event to the next).
    pub fn spans_into(&self, event: &Correlated<'_>, spans: &mut Vec<EncodedSpan>) {
        let transaction = event.transaction;
        let trace = transaction.trace_id();
        let observation = event.observation;
        let Exchange {
            mut writer,
            error,
            start: at,
        } = self.exchange_writer(observation, trace);
        let name = KeyText::Pieces(transaction.name().text(&self.key_prefixes));
        let mut attributes = writer.attributes();
        let transaction_written = attributes.string_noted("waybill.transaction", &name);
        let keys = event.keys.iter().map(|key| self.key_text(key));
        attributes.string_array("waybill.keys", keys);
        if let (Some(milestone), false) = (&observation.milestone, event.news.milestones.is_empty())
        {
            self.declared
                .milestones
                .write(&mut attributes, milestone.id(), milestone.as_str());
        }
        for marked in &event.news.milestones {
            self.milestone_events.write(&mut writer, marked, at);
        }
        for exception in &event.news.exceptions {
            writer.event("waybill.exception", at, |attributes| {
                exception_attributes(attributes, exception);
            });
        }
        let mut links = Links::new(&mut writer);
        for former in transaction.former_names() {
            let (trace_id, span_id) = trace_and_anchor(former);
            let target = LinkTarget {
                trace_id,
                span_id,
                flags: TraceFlags::SAMPLED,
                remote: true,
            };
            links.add(target, |attributes| {
                attributes.string("waybill.link", "former_name");
                attributes.string("waybill.transaction", &self.key_text(former));
            });
        }
        self.caller_links(&mut links, observation, trace);
        let dropped = links.dropped;
        let exchange_at = spans.len();
        spans.push(writer.finish(dropped, error));
        for flow in &event.news.flows {
            // The flow span's `waybill.transaction` is the exchange span's.
            let encoded = spans
                .get(exchange_at)
                .and_then(|span| span.written(&transaction_written));
            let span = self.flow_span(flow, (&name, encoded), trace);
            spans.push(span);
        }
    }

    /// The links to the caller's span (`traceparent`) and, when the proxy
    /// propagated another trace ID, to this span's ID in that trace.
    fn caller_links(&self, links: &mut Links<'_>, observation: &Observation, trace: TraceId) {
        match traceparent::read(&observation.exchange.request_headers) {
            Traceparent::Absent => {}
            Traceparent::Invalid => {
                self.invalid_traceparent.inc();
            }
            Traceparent::Valid(context) => {
                let target = LinkTarget {
                    trace_id: context.trace_id(),
                    span_id: context.span_id(),
                    flags: context.trace_flags(),
                    remote: context.is_remote(),
                };
                links.add(target, |attributes| {
                    attributes.string("waybill.link", "traceparent");
                });
            }
        }
        if let Some(target) = propagated_link(observation, trace) {
            links.add(target, |attributes| {
                attributes.string("waybill.link", "propagated");
            });
        }
    }

    /// The `waybill.flow` span covering `flow`, in the transaction named
    /// `transaction` (its attribute copied when given encoded).
    fn flow_span(
        &self,
        flow: &FlowRecord,
        transaction: (&KeyText<'_>, Option<EncodedAttribute<'_>>),
        trace: TraceId,
    ) -> EncodedSpan {
        let declared = self
            .flow_attributes
            .get(flow.flow.id())
            .and_then(Option::as_ref);
        let end = flow.ended.max(flow.started);
        let head = &self.flow_head;
        self.internal_span(head, trace, (flow.started, end), |attributes| {
            match declared {
                Some(declared) => {
                    attributes.copy(&declared.by_outcome[usize::from(flow.within_slo)])
                }
                None => {
                    attributes.string("waybill.flow", flow.flow.as_str());
                    attributes.bool("waybill.flow.within_slo", flow.within_slo);
                }
            }
            attributes.double("waybill.flow.duration_seconds", flow.duration.as_secs_f64());
            attributes.string("waybill.flow.object", &self.key_text(&flow.object));
            match transaction {
                (_, Some(encoded)) => attributes.copy_written(encoded),
                (name, None) => attributes.string("waybill.transaction", name),
            }
        })
    }

    /// A span of the sidecar's own (a flow, an exception: its `head`) in
    /// trace `trace` with the attributes `write` adds.
    fn internal_span(
        &self,
        head: &EncodedHead,
        trace: TraceId,
        times: (impl Into<UnixNanos>, impl Into<UnixNanos>),
        write: impl FnOnce(&mut Attributes<'_>),
    ) -> EncodedSpan {
        let span_id = self.ids.new_span_id();
        let mut writer = SpanWriter::with_head(self.buffer(), (trace, span_id), head, times);
        write(&mut writer.attributes());
        writer.finish(0, false)
    }

    /// The URL attributes of `exchange` (`url.full` or `url.scheme`,
    /// `server.address`, `server.port`; `url.path`, `url.query`), copied
    /// as one piece when the route's last exchange (`slot`: [`UrlPiece`])
    /// came through the same listener with the same origin-form target
    /// (and `Host`, on SERVER spans), else written and kept for the next.
    fn url_attributes(
        &self,
        attributes: &mut Attributes<'_>,
        exchange: &ExchangeSummary,
        outbound: bool,
        slot: usize,
    ) {
        let client = self
            .client_targets
            .get(exchange.listener.0)
            .and_then(Option::as_ref)
            .filter(|_| outbound);
        // Every URL attribute is read from these three (an absolute-form
        // target's authority, rare, is not kept: written each time).
        let host = match client {
            Some(_) => None,
            None => exchange.request_headers.get(&http::header::HOST),
        };
        let host = host.map_or(&[][..], |host| host.as_bytes());
        let target = exchange
            .uri
            .path_and_query()
            .filter(|_| exchange.uri.authority().is_none());
        let mut pieces = self.url_pieces.try_borrow_mut();
        let piece = pieces.as_mut().ok().and_then(|pieces| pieces.get_mut(slot));
        let (Some(target), Some(piece)) = (target, piece) else {
            return self.write_url(attributes, exchange, client);
        };
        let listener = Some(exchange.listener.0);
        if piece.listener == listener && *piece.target == *target && *piece.host == *host {
            return attributes.copy(&piece.attributes);
        }
        let mark = attributes.mark();
        self.write_url(attributes, exchange, client);
        attributes.keep_since(mark, &mut piece.attributes);
        piece.listener = listener;
        piece.target.clear();
        piece.target.push_str(target);
        piece.host.clear();
        piece.host.extend_from_slice(host);
    }

    /// The URL attributes of `exchange`, each written on its own: those of
    /// `client` (a CLIENT span's target), else of the `Host` it was sent to.
    fn write_url(
        &self,
        attributes: &mut Attributes<'_>,
        exchange: &ExchangeSummary,
        client: Option<&ClientTarget>,
    ) {
        match client {
            Some(target) => target.write(attributes, exchange.uri.path_and_query()),
            None => self.server_target(attributes, exchange),
        }
        attributes.string("url.path", exchange.uri.path());
        if let Some(query) = exchange.uri.query() {
            attributes.string("url.query", query);
        }
    }

    /// [`server_target`] of `exchange`; from the `Host` header, parsed and
    /// encoded once for as long as the following exchanges carry the same.
    fn server_target(&self, attributes: &mut Attributes<'_>, exchange: &ExchangeSummary) {
        let host = exchange.request_headers.get(&http::header::HOST);
        let (None, Some(host), Ok(mut last)) = (
            exchange.uri.authority(),
            host,
            self.last_host.try_borrow_mut(),
        ) else {
            // An absolute-form target's authority parsed when it was
            // received: it parses again.
            let target = exchange.uri.authority().and_then(|a| a.parse().ok());
            let authority = target.or_else(|| {
                host.and_then(|h| h.to_str())
                    .and_then(|h| h.parse::<http::uri::Authority>().ok())
            });
            return server_target(attributes, authority.as_ref());
        };
        if last
            .as_ref()
            .is_none_or(|(seen, _)| **seen != *host.as_bytes())
        {
            let authority = host
                .to_str()
                .and_then(|h| h.parse::<http::uri::Authority>().ok());
            let encoded =
                EncodedAttributes::span(|attributes| server_target(attributes, authority.as_ref()));
            *last = Some((host.as_bytes().into(), encoded));
        }
        if let Some((_, encoded)) = &*last {
            attributes.copy(encoded);
        }
    }

    /// An exchange span of `facts` with `ids` from `times`: its name and
    /// kind, then the attributes of `facts` (method, route, status code,
    /// protocol version, system, operation). Each is one piece, copied,
    /// when the facts are declared ones and this combination was seen
    /// before on the route (else encoded and kept for the next, while the
    /// route has room); written on its own otherwise.
    fn start_exchange(
        &self,
        facts: &ExchangeFacts<'_>,
        (trace_id, span_id): (TraceId, SpanId),
        times: (UnixNanos, UnixNanos),
    ) -> SpanWriter {
        let buffer = self.buffer();
        let slot = facts.route.map_or(0, |(id, _)| id + 1);
        let mut pieces = self.fact_pieces.try_borrow_mut();
        let pieces = pieces.as_mut().ok().and_then(|pieces| pieces.get_mut(slot));
        let (Some(key), Some(pieces)) = (facts.key(&self.declared), pieces) else {
            return self.write_exchange_start(buffer, facts, (trace_id, span_id), times);
        };
        let at = match pieces.iter().position(|piece| piece.key == key) {
            Some(at) => at,
            None if pieces.len() < FACT_PIECES_PER_ROUTE => {
                pieces.push(FactPiece {
                    key,
                    head: EncodedHead::new(&facts.name(), facts.kind),
                    attributes: EncodedAttributes::span(|piece| self.write_facts(piece, facts)),
                });
                pieces.len() - 1
            }
            None => return self.write_exchange_start(buffer, facts, (trace_id, span_id), times),
        };
        let Some(piece) = pieces.get(at) else {
            return self.write_exchange_start(buffer, facts, (trace_id, span_id), times);
        };
        let mut writer = SpanWriter::with_head(buffer, (trace_id, span_id), &piece.head, times);
        writer.attributes().copy(&piece.attributes);
        writer
    }

    /// [`start_exchange`](Self::start_exchange), every part written on its own.
    fn write_exchange_start(
        &self,
        buffer: Vec<u8>,
        facts: &ExchangeFacts<'_>,
        (trace_id, span_id): (TraceId, SpanId),
        times: (UnixNanos, UnixNanos),
    ) -> SpanWriter {
        let mut writer =
            SpanWriter::in_buffer(buffer, trace_id, span_id, &facts.name(), facts.kind, times);
        self.write_facts(&mut writer.attributes(), facts);
        writer
    }

    /// The attributes of `facts`, each on its own (declared ones copied).
    fn write_facts(&self, attributes: &mut Attributes<'_>, facts: &ExchangeFacts<'_>) {
        let declared = &self.declared;
        match facts.method {
            Ok(i) => {
                let name = KNOWN_METHODS.get(i).map_or(OTHER_METHOD, |(_, name)| *name);
                declared.methods.write(attributes, i, name);
            }
            Err(original) => {
                attributes.string("http.request.method", OTHER_METHOD);
                attributes.string("http.request.method_original", original);
            }
        }
        if let Some((id, route)) = facts.route {
            declared.routes.write(attributes, id, route);
        }
        self.status_code(attributes, facts.status);
        if let Some((_, name)) = PROTOCOL_VERSIONS.get(facts.version) {
            declared.versions.write(attributes, facts.version, name);
        }
        let system = facts.system;
        declared
            .systems
            .write(attributes, system.id(), system.as_str());
        if let Some(operation) = facts.operation {
            declared
                .operations
                .write(attributes, operation.id(), operation.as_str());
        }
    }

    /// `http.response.status_code`, copied when a response had this
    /// status before (else encoded and kept for the next).
    fn status_code(&self, attributes: &mut Attributes<'_>, status: u16) {
        let write = |attributes: &mut Attributes<'_>| {
            attributes.int("http.response.status_code", i64::from(status));
        };
        let slot = usize::from(status).checked_sub(FIRST_STATUS_CODE);
        let Some((mut encoded, slot)) = self.status_codes.try_borrow_mut().ok().zip(slot) else {
            return write(attributes);
        };
        match encoded.get_mut(slot) {
            Some(Some(known)) => attributes.copy(known),
            Some(empty) => attributes.copy(empty.insert(EncodedAttributes::span(write))),
            None => write(attributes),
        }
    }

    fn send(&self, span: EncodedSpan) {
        if let Some(sink) = &self.sink {
            sink.queue.push(span);
        }
    }

    fn sampled(&self, trace: TraceId) -> bool {
        self.sink.as_ref().is_some_and(|s| s.sampler.samples(trace))
    }
}

impl Observer for SpanObserver {
    fn correlated(&mut self, event: &Correlated<'_>) {
        let trace = event.transaction.trace_id();
        for flow in &event.news.flows {
            self.flows.observe(flow, trace);
        }
        if self.sampled(trace) {
            let mut outgoing = std::mem::take(&mut self.outgoing);
            self.spans_into(event, &mut outgoing);
            for span in outgoing.drain(..) {
                self.send(span);
            }
            self.outgoing = outgoing;
        }
    }

    /// An exception opened by a deadline (no exchange to hang it on)
    /// becomes a short `waybill.exception` span in the transaction's trace.
    fn exception(&mut self, transaction: &Transaction, exception: &ExceptionRecord) {
        let trace = transaction.trace_id();
        if !self.sampled(trace) {
            return;
        }
        let at = exception.resolved.unwrap_or(exception.opened);
        let head = &self.exception_head;
        let span = self.internal_span(head, trace, (at, at), |attributes| {
            exception_attributes(attributes, exception);
            attributes.string(
                "waybill.transaction",
                &transaction.name().text(&self.key_prefixes),
            );
        });
        self.send(span);
    }

    fn uncorrelated(&mut self, observation: &Observation) {
        // A propagated trace ID is where the upstream's spans are.
        let trace = match observation.exchange.trace_context {
            Some(propagated) => propagated.trace_id,
            None => self.ids.new_trace_id(),
        };
        if self.sampled(trace) {
            let Exchange {
                mut writer, error, ..
            } = self.exchange_writer(observation, trace);
            let mut links = Links::new(&mut writer);
            // The trace is the propagated one, if any: no `propagated` link.
            self.caller_links(&mut links, observation, trace);
            let dropped = links.dropped;
            self.send(writer.finish(dropped, error));
        }
    }
}

/// When the proxy propagated a trace ID other than `trace` (the span's),
/// a link to the span's own ID in that trace, where the upstream's spans
/// name it as their parent.
fn propagated_link(observation: &Observation, trace: TraceId) -> Option<LinkTarget> {
    let propagated = observation.exchange.trace_context?;
    (propagated.trace_id != trace).then(|| LinkTarget {
        trace_id: propagated.trace_id,
        span_id: propagated.span_id,
        flags: TraceFlags::new(u8::from(propagated.sampled)),
        remote: true,
    })
}

/// The measure attributes of an exchange span.
fn measure_attributes(attributes: &mut Attributes<'_>, observation: &Observation) {
    let measures = &observation.measures;
    for (i, value) in measures.values.iter().enumerate() {
        let seen = measures.values[..i]
            .iter()
            .any(|v| v.measure == value.measure && v.role == value.role);
        if !seen {
            let (measure, role) = (value.measure.as_str(), value.role.as_str());
            attributes.string(
                &["waybill.measure.", measure, ".", role, ".unit"],
                value.unit.as_str(),
            );
            attributes.double(
                &["waybill.measure.", measure, ".", role],
                value.amount.to_f64(),
            );
        }
    }
    if !measures.values.is_empty() {
        attributes.strings("waybill.measures", |values| {
            for v in &measures.values {
                values.push_fmt(format_args!(
                    "{} {} {} {}",
                    v.measure,
                    v.role.as_str(),
                    v.amount,
                    v.unit
                ));
            }
        });
    }
    if !measures.unreadable.is_empty() {
        attributes.strings("waybill.measure.unparseable", |values| {
            for (measure, reason) in &measures.unreadable {
                values.push(&[measure.as_str(), ":", reason.as_str()]);
            }
        });
    }
}

/// What a span (event) says about an exception.
fn exception_attributes(attributes: &mut Attributes<'_>, exception: &ExceptionRecord) {
    let state = if exception.is_open() {
        "opened"
    } else {
        "resolved"
    };
    attributes.string("waybill.exception.kind", exception.kind.as_str());
    attributes.string("waybill.exception.owner", exception.owner.as_str());
    attributes.string("waybill.exception.state", state);
    attributes.string("waybill.object.kind", exception.object.kind.as_str());
    attributes.string("waybill.object.value", &*exception.object.value);
    attributes.string("waybill.exception.reason", exception.reason.as_str());
}

/// What an exchange span says from short lists: its method (by position
/// in [`KNOWN_METHODS`], else the method's text), route (`RouteId` and
/// path template), status code, protocol version (by position in
/// [`PROTOCOL_VERSIONS`]), system and operation. Exchanges of one route
/// mostly share them all, so they are copied as one piece
/// ([`SpanObserver::fixed_attributes`]).
struct ExchangeFacts<'a> {
    method: Result<usize, &'a str>,
    route: Option<(usize, &'a str)>,
    /// SERVER or CLIENT, by the listener's direction (the span's kind).
    kind: Kind,
    status: u16,
    version: usize,
    system: &'a System,
    operation: Option<&'a Operation>,
}

/// [`ExchangeFacts`] by index, when every name in them is a declared one
/// (so the index says what is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FactsKey {
    method: usize,
    kind: Kind,
    status: u16,
    version: usize,
    system: usize,
    operation: Option<usize>,
}

/// The parts of an exchange span that its [`ExchangeFacts`] decide,
/// encoded.
struct FactPiece {
    key: FactsKey,
    /// The span's name, `{method} {http.route}`, and kind.
    head: EncodedHead,
    /// The attributes of the facts.
    attributes: EncodedAttributes,
}

/// An exchange span's URL attributes, encoded, and what they were
/// written from: the listener (a CLIENT span's upstream), the `Host`
/// header (a SERVER span's; empty on CLIENT spans) and the origin-form
/// request target (`/a/b?c=1`).
#[derive(Default)]
struct UrlPiece {
    /// `ListenerId`; `None` until a first exchange is kept.
    listener: Option<usize>,
    host: Vec<u8>,
    target: String,
    attributes: EncodedAttributes,
}

/// Combinations of [`ExchangeFacts`] kept encoded per route: a route
/// sees one or two (its method, a status or two); past these, exchanges
/// write their facts one by one.
const FACT_PIECES_PER_ROUTE: usize = 16;

impl ExchangeFacts<'_> {
    /// The span's name: `{method} {http.route}`, or `{method}` when no
    /// route matched.
    fn name(&self) -> [&str; 3] {
        let method = match self.method {
            Ok(i) => KNOWN_METHODS.get(i).map_or(OTHER_METHOD, |(_, name)| *name),
            Err(_) => OTHER_METHOD,
        };
        match self.route {
            Some((_, route)) => [method, " ", route],
            None => [method, "", ""],
        }
    }

    /// The key of these facts, or `None` when one of them is not a
    /// declared name (written from its text each time).
    fn key(&self, declared: &DeclaredAttributes) -> Option<FactsKey> {
        let method = self.method.ok()?;
        let route_known = self
            .route
            .is_none_or(|(id, _)| declared.routes.encoded.get(id).is_some());
        let system = self.system.id();
        let operation = self.operation.map(|o| o.id());
        let known = route_known
            && declared.methods.encoded.get(method).is_some()
            && declared.versions.encoded.get(self.version).is_some()
            && declared.systems.encoded.get(system).is_some()
            && operation.is_none_or(|o| declared.operations.encoded.get(o).is_some());
        known.then_some(FactsKey {
            method,
            kind: self.kind,
            status: self.status,
            version: self.version,
            system,
            operation,
        })
    }
}

/// The span attributes whose values are names the config declares (a
/// route's path template, a system, an operation) or come from a short
/// fixed list (the HTTP method and version): each encoded once when the
/// observer is built, copied into every span that carries it.
struct DeclaredAttributes {
    /// `http.request.method`, by position in [`KNOWN_METHODS`].
    methods: Declared,
    /// `network.protocol.version`, by position in [`PROTOCOL_VERSIONS`].
    versions: Declared,
    /// `http.route`, by `RouteId`.
    routes: Declared,
    /// `waybill.system`, by `System::id`.
    systems: Declared,
    /// `waybill.operation`, by `Operation::id`.
    operations: Declared,
    /// `waybill.milestone`, by `Milestone::id`.
    milestones: Declared,
}

impl DeclaredAttributes {
    fn new(config: &Config) -> Self {
        DeclaredAttributes {
            methods: Declared::new(
                "http.request.method",
                KNOWN_METHODS.iter().map(|(_, name)| *name),
            ),
            versions: Declared::new(
                "network.protocol.version",
                PROTOCOL_VERSIONS.iter().map(|(_, name)| *name),
            ),
            routes: Declared::new(
                "http.route",
                config.routes.iter().map(|r| r.path.text.as_str()),
            ),
            systems: Declared::new("waybill.system", config.systems.iter().map(|s| s.as_str())),
            operations: Declared::new(
                "waybill.operation",
                config.operations.iter().map(|o| o.as_str()),
            ),
            milestones: Declared::new(
                "waybill.milestone",
                config.milestones.iter().map(|m| m.as_str()),
            ),
        }
    }
}

/// One attribute `key` for each of a declared list of values, encoded.
struct Declared {
    key: &'static str,
    /// By the value's index in its declaration list.
    encoded: Vec<EncodedAttributes>,
}

impl Declared {
    fn new<'a>(key: &'static str, values: impl Iterator<Item = &'a str>) -> Self {
        let encoded = values
            .map(|value| EncodedAttributes::span(|attributes| attributes.string(key, value)))
            .collect();
        Declared { key, encoded }
    }

    /// The attribute of `value`, number `index` in the declaration list
    /// (written from `value` should the index be past the list).
    fn write(&self, attributes: &mut Attributes<'_>, index: usize, value: &str) {
        match self.encoded.get(index) {
            Some(encoded) => attributes.copy(encoded),
            None => attributes.string(self.key, value),
        }
    }
}

/// What a milestone's span event says besides its object's value: its
/// name, `waybill.object.kind` (the milestone's declared object) and
/// `waybill.milestone.repeat`, encoded once per milestone and per value.
struct MilestoneEvents {
    /// By `Milestone::id`: the event's name and `waybill.object.kind`, and
    /// the `KeyKind::id` of that kind.
    heads: Vec<(EncodedEvent, usize)>,
    /// `waybill.milestone.repeat`, `false` then `true`.
    repeat: [EncodedAttributes; 2],
}

impl MilestoneEvents {
    fn new(config: &Config) -> Self {
        let heads = config
            .milestone_defs
            .iter()
            .map(|def| {
                let head = EncodedEvent::new(def.name.as_str(), |attributes| {
                    attributes.string("waybill.object.kind", def.object.as_str());
                });
                (head, def.object.id())
            })
            .collect();
        let repeat = [false, true].map(|repeat| {
            EncodedAttributes::event(|attributes| {
                attributes.bool("waybill.milestone.repeat", repeat);
            })
        });
        MilestoneEvents { heads, repeat }
    }

    /// The event of `marked` at `at` (written whole should its milestone
    /// or object kind not be the declared ones).
    fn write(&self, writer: &mut SpanWriter, marked: &Marked, at: UnixNanos) {
        let record = &marked.record;
        let object = &record.object;
        let repeat = &self.repeat[usize::from(marked.repeat)];
        match self.heads.get(record.milestone.id()) {
            Some((head, kind)) if *kind == object.kind.id() => {
                let value = ("waybill.object.value", &*object.value);
                writer.encoded_event_string(head, at, value, repeat);
            }
            _ => writer.event(record.milestone.as_str(), at, |attributes| {
                attributes.string("waybill.object.kind", object.kind.as_str());
                attributes.string("waybill.object.value", &*object.value);
                attributes.copy(repeat);
            }),
        }
    }
}

/// A `waybill.flow` span's attributes that only depend on the flow and
/// on whether it met its SLO: `waybill.flow`, `waybill.flow.within_slo`
/// and `waybill.flow.slo_seconds`, encoded as one piece.
struct FlowAttributes {
    /// By `within_slo`: `false`, then `true`.
    by_outcome: [EncodedAttributes; 2],
}

impl FlowAttributes {
    fn new(flow: &crate::config::Flow) -> Self {
        let by_outcome = [false, true].map(|within_slo| {
            EncodedAttributes::span(|attributes| {
                attributes.string("waybill.flow", flow.name.as_str());
                attributes.bool("waybill.flow.within_slo", within_slo);
                attributes.double("waybill.flow.slo_seconds", flow.slo.as_secs_f64());
            })
        });
        FlowAttributes { by_outcome }
    }
}

/// What a CLIENT span says of where the sidecar sent the request: the
/// upstream, its base path prefixed to the request's path. The same for
/// every exchange of an outbound listener, so prepared once per listener.
struct ClientTarget {
    /// `url.full` up to the request's path: `{scheme}://{authority}{base}`.
    prefix: String,
    /// `url.scheme`, `server.address` and `server.port`, encoded.
    attributes: EncodedAttributes,
}

impl ClientTarget {
    fn new(upstream: &http::Uri) -> Self {
        let scheme = upstream.scheme_str().unwrap_or("http");
        let base = upstream.path().trim_end_matches('/');
        let authority = upstream.authority().map(|a| a.as_str()).unwrap_or_default();
        let attributes = EncodedAttributes::span(|attributes| {
            attributes.string("url.scheme", scheme);
            if let Some(host) = upstream.host() {
                attributes.string("server.address", host);
            }
            let default_port = if scheme == "https" { 443 } else { 80 };
            let port = upstream.port_u16().unwrap_or(default_port);
            attributes.int("server.port", i64::from(port));
        });
        ClientTarget {
            prefix: [scheme, "://", authority, base].concat(),
            attributes,
        }
    }

    /// `url.full`, `url.scheme`, `server.address` and `server.port` of a
    /// CLIENT span for the request's path and query (`/` when it has none).
    fn write(&self, attributes: &mut Attributes<'_>, path_and_query: Option<&str>) {
        let path_and_query = path_and_query.unwrap_or("/");
        attributes.string("url.full", &[self.prefix.as_str(), path_and_query]);
        attributes.copy(&self.attributes);
    }
}

/// `url.scheme`, `server.address` and `server.port` of a SERVER span: the
/// authority the client addressed (`:authority`, else `Host`).
fn server_target(attributes: &mut Attributes<'_>, authority: Option<&http::uri::Authority>) {
    attributes.string("url.scheme", "http");
    if let Some(authority) = authority {
        attributes.string("server.address", authority.host());
        if let Some(port) = authority.port_u16() {
            attributes.int("server.port", i64::from(port));
        }
    }
}

/// `error.type` per the HTTP conventions: the upstream failure's kind, or
/// the status code for 5xx (and 4xx on CLIENT spans, where the sidecar's
/// side made the failing call).
fn error_type(exchange: &ExchangeSummary, outbound: bool) -> Option<&str> {
    let status = &exchange.status;
    match exchange.upstream_error {
        Some(error) => Some(error.as_str()),
        None => {
            let failed = status.is_server_error() || (outbound && status.is_client_error());
            failed.then(|| status.as_str())
        }
    }
}

/// `http.request.method` of the methods the HTTP RFCs define; any other
/// is [`OTHER_METHOD`], with the original in `http.request.method_original`.
/// A `static`: `http::Method` may own memory, so a `const` of them would be
/// built (and dropped) wherever it is read.
static KNOWN_METHODS: [(http::Method, &str); 9] = [
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

/// The status codes whose `http.response.status_code` attribute is kept
/// encoded are the `STATUS_CODES` from `FIRST_STATUS_CODE` on, 100–599
/// (`http::StatusCode` allows up to 999; those are written each time).
const FIRST_STATUS_CODE: usize = 100;
const STATUS_CODES: usize = 500;

/// `http.request.method` of a method not in [`KNOWN_METHODS`].
const OTHER_METHOD: &str = "_OTHER";

/// `network.protocol.version` per HTTP version; the last, `1.1`, for any
/// version `http` may add.
const PROTOCOL_VERSIONS: [(http::Version, &str); 5] = [
    (http::Version::HTTP_09, "0.9"),
    (http::Version::HTTP_10, "1.0"),
    (http::Version::HTTP_2, "2"),
    (http::Version::HTTP_3, "3"),
    (http::Version::HTTP_11, "1.1"),
];

/// A key as spans show it, `kind:value` (its `Display`), in pieces
/// written straight into the span: no string is built.
#[derive(Clone, Copy)]
enum KeyText<'a> {
    /// The kind's `{kind}:`, prepared once, and the value.
    Prefixed([&'a str; 2]),
    /// A kind the config does not declare: kind, `:` and value.
    Pieces([&'a str; 3]),
}

impl Text for KeyText<'_> {
    fn text_len(&self) -> usize {
        match self {
            KeyText::Prefixed(pieces) => pieces.text_len(),
            KeyText::Pieces(pieces) => pieces.text_len(),
        }
    }

    fn put(&self, buf: &mut Vec<u8>) {
        match self {
            KeyText::Prefixed(pieces) => pieces.put(buf),
            KeyText::Pieces(pieces) => pieces.put(buf),
        }
    }
}

impl SpanObserver {
    /// `key`'s text, from its kind's prefix.
    fn key_text<'a>(&'a self, key: &'a Key) -> KeyText<'a> {
        match self.key_prefixes.get(key.kind.id()) {
            Some(prefix) => KeyText::Prefixed([prefix, &key.value]),
            None => KeyText::Pieces([key.kind.as_str(), ":", &key.value]),
        }
    }
}

#[cfg(test)]
mod tests;

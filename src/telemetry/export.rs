//! OTLP span export off the traffic path. The span observer hands each
//! finished span, already encoded ([`EncodedSpan`]), to a bounded queue
//! (a `Vec` under a lock held for a push) and never waits; one export
//! task takes every waiting span at once into its batch, wraps each batch
//! into one export request in a buffer of its exact size, sent without
//! another copy ([`otlp_trace`](super::otlp_trace)), and sends it to the
//! collector ([`transport`](super::transport): gRPC, with TLS and the
//! webpki roots for `https://` endpoints, or HTTP/protobuf, plain
//! `http://` only), bounded by the export timeout. Whatever cannot be
//! exported is dropped and counted in
//! `waybill_telemetry_dropped_spans_total{reason}`:
//!
//! - `queue_full`: the collector is slower than traffic; new spans are dropped.
//! - `export_failed`: the collector refused or could not be reached.
//! - `export_timeout`: the collector did not answer within the export timeout.
//! - `shutdown`: spans still queued when the shutdown deadline passed.
//!
//! The export task is woken once per batch, not once per span: by a
//! first span when it holds none, when the queue holds a full batch (or
//! half its capacity, if that is less), when the schedule delay of the
//! batch's first span is over, or when the queue closes. Up to
//! `max_concurrent_exports` requests (2 by default) are in flight at once,
//! each on a task of its own: while the collector answers one batch, the
//! next is taken and sent, so the queue does not have to hold every span
//! that arrives during a round trip.
//!
//! Each export request's round trip (sent to answered, failed or timed out)
//! is observed in `waybill_telemetry_export_duration_seconds`: with the
//! batch size, it says how many spans per second the collector can take.
//!
//! Export errors are logged at most once per [`ERROR_LOG_PERIOD`], with the
//! number of failed batches since the last message, never once per span.
//! No global tracer provider is installed: the app owns the [`Exporting`]
//! handle and shuts it down last.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::histogram::AtomicHistogram;
use super::otlp_trace::{EncodedSpan, TraceEncoder};
use super::settings::{Signal, TraceSettings};
use super::span_buffers::SpanBuffers;
use super::transport::Collector;

/// At most one export error message per this period; the rest are counted
/// into the next message.
pub const ERROR_LOG_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Bounds of `waybill_telemetry_export_duration_seconds`: a loopback
/// collector answers a default batch in about a millisecond, a remote one
/// in tens; the export timeout is 10 s by default.
const ROUND_TRIP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.125, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The exporter's self-instrumentation, registered whether or not traces
/// are on, so dashboards and alerts always find the series.
#[derive(Clone)]
pub struct ExportMetrics {
    queue_full: Counter,
    export_failed: Counter,
    export_timeout: Counter,
    shutdown: Counter,
    exported: Counter,
    /// Each export request's round trip, whatever its outcome.
    round_trip: AtomicHistogram,
}

/// What an exporter has done so far ([`ExportMetrics::totals`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportTotals {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub queue_full: u64,
    /// Spans dropped because the collector refused them or could not be reached.
    pub export_failed: u64,
    /// Spans dropped because the collector did not answer in time.
    pub export_timeout: u64,
    /// Spans still queued when the shutdown deadline passed.
    pub shutdown: u64,
    /// Export requests sent.
    pub requests: u64,
    /// Their round trips added up, in seconds.
    pub round_trip_seconds: f64,
    /// Export requests per round-trip bucket: `(upper bound in seconds, count)`.
    pub round_trip_buckets: Vec<(f64, u64)>,
}

impl ExportTotals {
    /// Spans dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.queue_full + self.export_failed + self.export_timeout + self.shutdown
    }
}

impl ExportMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "waybill_telemetry_dropped_spans",
            "Spans not exported, by reason (queue_full, export_failed, export_timeout, shutdown)",
            dropped.clone(),
        );
        let exported = Counter::default();
        registry.register(
            "waybill_telemetry_exported_spans",
            "Spans the OTLP collector accepted",
            exported.clone(),
        );
        let round_trip = AtomicHistogram::seconds(ROUND_TRIP_BUCKETS);
        registry.register(
            "waybill_telemetry_export_duration_seconds",
            "Round trip of each span export request to the OTLP collector, whatever its outcome",
            round_trip.clone(),
        );
        let reason = |reason| dropped.get_or_create(&ReasonLabel { reason }).clone();
        ExportMetrics {
            queue_full: reason("queue_full"),
            export_failed: reason("export_failed"),
            export_timeout: reason("export_timeout"),
            shutdown: reason("shutdown"),
            exported,
            round_trip,
        }
    }

    /// The counts so far.
    pub fn totals(&self) -> ExportTotals {
        let (round_trip_seconds, requests, round_trip_buckets) = self.round_trip.snapshot();
        ExportTotals {
            exported: self.exported.get(),
            queue_full: self.queue_full.get(),
            export_failed: self.export_failed.get(),
            export_timeout: self.export_timeout.get(),
            shutdown: self.shutdown.get(),
            requests,
            round_trip_seconds,
            round_trip_buckets,
        }
    }
}

/// What the span queue and the export task share: the spans waiting,
/// under one lock that each side takes briefly (the observer once per
/// span, the export task once per wake, taking every waiting span at
/// once), and the export task's wake-up.
struct Shared {
    waiting: Mutex<Waiting>,
    /// Wakes the export task: a first span, a batch waiting, or the queue
    /// closed.
    ready: Notify,
    /// Most spans waiting; beyond it new spans are dropped (`queue_full`).
    capacity: usize,
}

/// The spans the export task has not taken yet.
#[derive(Default)]
struct Waiting {
    spans: Vec<EncodedSpan>,
    /// The span observer dropped its queue (export what is left and stop),
    /// or the export task is gone (drop and count what comes).
    closed: bool,
    /// The export task holds no span and waits for one: the next span
    /// wakes it (once it holds some, only a batch waiting does).
    idle: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the span observer puts finished spans. Never blocks.
pub struct SpanQueue {
    shared: Arc<Shared>,
    metrics: ExportMetrics,
    /// Spans waiting in the queue that make a batch worth waking for.
    batch: usize,
    /// Where the export task returns the buffers of the spans it is done with.
    buffers: SpanBuffers,
}

/// The export task's end of a [`SpanQueue`].
pub(super) struct QueueEnd {
    shared: Arc<Shared>,
}

impl SpanQueue {
    /// A queue of `capacity` spans and its receiving end (the export task's).
    pub(super) fn bounded(capacity: usize, metrics: ExportMetrics) -> (SpanQueue, QueueEnd) {
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            ready: Notify::new(),
            capacity: capacity.max(1),
        });
        let queue = SpanQueue {
            shared: Arc::clone(&shared),
            metrics,
            batch: 1,
            buffers: SpanBuffers::default(),
        };
        (queue, QueueEnd { shared })
    }

    /// The pool the export task returns span buffers to, for the span
    /// observer to write its next spans into.
    pub fn buffers(&self) -> &SpanBuffers {
        &self.buffers
    }

    /// Queues `span` for export, or drops and counts it when the queue is
    /// full (or the export task is gone).
    pub fn push(&self, span: EncodedSpan) {
        let mut waiting = self.shared.lock();
        let dropped = if waiting.closed {
            &self.metrics.shutdown
        } else if waiting.spans.len() >= self.shared.capacity {
            &self.metrics.queue_full
        } else {
            waiting.spans.push(span);
            let wake = waiting.spans.len() == self.batch || std::mem::take(&mut waiting.idle);
            drop(waiting);
            if wake {
                self.shared.ready.notify_one();
            }
            return;
        };
        drop(waiting);
        dropped.inc();
    }
}

impl Drop for SpanQueue {
    /// Closes the queue, then wakes the export task to drain it and stop.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }
}

#[cfg(test)]
impl QueueEnd {
    /// The first span waiting, taken.
    pub(super) fn try_recv(&self) -> Option<EncodedSpan> {
        let mut waiting = self.shared.lock();
        (!waiting.spans.is_empty()).then(|| waiting.spans.remove(0))
    }
}

/// The running export task; the app shuts it down after the correlator.
pub struct Exporting {
    task: JoinHandle<()>,
    /// The spans the task has taken from the queue and not yet done with.
    queued: Arc<AtomicUsize>,
    /// The queue, for the spans still waiting in it.
    shared: Arc<Shared>,
    metrics: ExportMetrics,
}

/// Why the exporter could not be built (a bad endpoint or header).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP {protocol} span exporter for `{endpoint}`: {reason}")]
pub struct ExporterError {
    protocol: &'static str,
    endpoint: String,
    reason: String,
}

/// Builds the OTLP exporter and spawns the export task (needs a Tokio runtime).
pub fn start(
    settings: &TraceSettings,
    resource: &BTreeMap<String, String>,
    metrics: ExportMetrics,
) -> Result<(SpanQueue, Exporting), ExporterError> {
    let collector = build_collector(settings)?;
    let (mut queue, end) = SpanQueue::bounded(settings.queue_capacity, metrics.clone());
    let queued = Arc::new(AtomicUsize::new(0));
    let max_batch_size = settings.max_batch_size.max(1);
    // Woken at a full batch, but never later than half the queue: the
    // other half takes the spans that arrive until the task runs.
    queue.batch = max_batch_size.min(settings.queue_capacity / 2).max(1);
    let batcher = Batcher {
        shared: Arc::clone(&end.shared),
        buffers: queue.buffers.clone(),
        encoder: TraceEncoder::new(resource, "waybill", env!("CARGO_PKG_VERSION")),
        queued: Arc::clone(&queued),
        max_batch_size,
        max_concurrent_exports: settings.max_concurrent_exports.max(1),
        schedule_delay: settings.schedule_delay,
        request: Request {
            collector,
            metrics: metrics.clone(),
            export_timeout: settings.export_timeout,
        },
        in_flight: JoinSet::new(),
        endpoint: settings.endpoint.clone(),
        errors: ErrorLog::default(),
    };
    let task = tokio::spawn(batcher.run());
    Ok((
        queue,
        Exporting {
            task,
            queued,
            shared: end.shared,
            metrics,
        },
    ))
}

impl Exporting {
    /// Exports what is queued (the queue closes when the span observer is
    /// dropped with the correlator) and stops, giving up after `deadline`:
    /// whatever is still queued then is counted as dropped (`shutdown`).
    pub async fn shutdown(mut self, deadline: Duration) {
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let waiting = std::mem::take(&mut self.shared.lock().spans).len();
            let left = self.queued.swap(0, Ordering::Relaxed) + waiting;
            self.metrics.shutdown.inc_by(left as u64);
            tracing::warn!(
                spans = left,
                ?deadline,
                "span export did not finish before the shutdown deadline; dropping the rest"
            );
        }
    }
}

fn build_collector(settings: &TraceSettings) -> Result<Collector, ExporterError> {
    let error = |reason: String| ExporterError {
        protocol: settings.protocol.as_str(),
        endpoint: settings.endpoint.clone(),
        reason,
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = http::HeaderName::try_from(name.as_str())
            .map_err(|e| error(format!("header `{name}`: {e}")))?;
        let value = http::HeaderValue::try_from(value.as_str())
            .map_err(|e| error(format!("header `{name}`: {e}")))?;
        headers.append(name, value);
    }
    Collector::new(
        Signal::Traces,
        &settings.endpoint,
        settings.protocol,
        settings.export_timeout,
        headers,
    )
    .map_err(error)
}

/// The export task's state.
struct Batcher {
    /// The queue: its waiting spans, and the notification that a first
    /// span or a batch is waiting, or that it closed.
    shared: Arc<Shared>,
    /// Exported batches' buffers go back here.
    buffers: SpanBuffers,
    encoder: TraceEncoder,
    /// Spans taken from the queue and not yet done with (exported or
    /// dropped), counted per batch.
    queued: Arc<AtomicUsize>,
    max_batch_size: usize,
    /// Requests sent and not yet answered, at most this many.
    max_concurrent_exports: usize,
    schedule_delay: Duration,
    /// What each request needs, cloned into its task.
    request: Request,
    /// The requests in flight, each answering with its batch and outcome.
    /// Dropped with the task (shutdown giving up), it aborts them.
    in_flight: JoinSet<Sent>,
    endpoint: String,
    errors: ErrorLog,
}

/// How one export request is sent and counted.
#[derive(Clone)]
struct Request {
    collector: Collector,
    metrics: ExportMetrics,
    export_timeout: Duration,
}

/// A request done: its spans (their buffers to recycle) and, when it
/// failed, why.
struct Sent {
    batch: Vec<EncodedSpan>,
    failure: Option<String>,
}

impl Batcher {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch_size);
        loop {
            // Woken by a first span (or the queue closing).
            while self.take_queued(&mut batch) && batch.is_empty() {
                self.shared.ready.notified().await;
            }
            if batch.is_empty() {
                // Closed, and nothing waits.
                break;
            }
            let flush = tokio::time::sleep_until(Instant::now() + self.schedule_delay);
            tokio::pin!(flush);
            // Not woken per span: the queue notifies when a batch is
            // waiting or it closed (a notification sent while this task
            // was taking spans is kept, so none is missed).
            while self.take_queued(&mut batch) {
                tokio::select! {
                    () = self.shared.ready.notified() => {}
                    () = &mut flush => {
                        self.take_queued(&mut batch);
                        break;
                    }
                }
            }
            while self.in_flight.len() >= self.max_concurrent_exports {
                self.answered().await;
            }
            while let Some(done) = self.in_flight.try_join_next() {
                self.finished(done);
            }
            let message = Bytes::from(self.encoder.encode(&batch));
            let next = Vec::with_capacity(self.max_batch_size);
            let request = self.request.clone();
            self.in_flight
                .spawn(request.send(message, std::mem::replace(&mut batch, next)));
        }
        while !self.in_flight.is_empty() {
            self.answered().await;
        }
    }

    /// Waits for one request in flight to be answered.
    async fn answered(&mut self) {
        if let Some(done) = self.in_flight.join_next().await {
            self.finished(done);
        }
    }

    /// Moves waiting spans into `batch` (every one, up to a full batch)
    /// without waiting; false when the batch is full or the queue closed
    /// with nothing left waiting (export now). Holding no span, this task
    /// is marked idle, so that the next span wakes it.
    fn take_queued(&mut self, batch: &mut Vec<EncodedSpan>) -> bool {
        let mut waiting = self.shared.lock();
        let room = self.max_batch_size.saturating_sub(batch.len());
        let taken = waiting.spans.len().min(room);
        if batch.is_empty() && taken == waiting.spans.len() {
            // All of them: the two buffers trade places.
            std::mem::swap(batch, &mut waiting.spans);
        } else {
            batch.extend(waiting.spans.drain(..taken));
        }
        let more = batch.len() < self.max_batch_size && !waiting.closed;
        waiting.idle = more && batch.is_empty();
        drop(waiting);
        self.queued.fetch_add(taken, Ordering::Relaxed);
        more
    }

    /// A request's end: its buffers recycled, its spans no longer queued,
    /// its failure logged (rate-limited). A request's task cannot panic;
    /// should it, its spans stay counted as queued (dropped at shutdown).
    fn finished(&mut self, done: Result<Sent, tokio::task::JoinError>) {
        let Ok(Sent { batch, failure }) = done else {
            return;
        };
        let spans = batch.len();
        self.buffers.recycle(batch.into_iter());
        // Subtracted only once the batch is done, so spans being exported
        // when shutdown gives up are counted as dropped too.
        self.queued.fetch_sub(spans, Ordering::Relaxed);
        let Some(failure) = failure else { return };
        if let Some(suppressed) = self.errors.should_log(Instant::now()) {
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %failure,
                spans,
                failed_batches_since_last_message = suppressed,
                "OTLP span export failed; spans dropped (see waybill_telemetry_dropped_spans_total)"
            );
        }
    }
}

impl Drop for Batcher {
    /// The export task is gone (done, or given up on at shutdown): spans
    /// pushed from now on are dropped and counted (`shutdown`).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
    }
}

impl Request {
    /// Sends `message`, the request carrying `batch`, and counts the outcome.
    async fn send(mut self, message: Bytes, batch: Vec<EncodedSpan>) -> Sent {
        let spans = batch.len() as u64;
        let sent = Instant::now();
        let outcome = tokio::time::timeout(self.export_timeout, self.collector.send(message)).await;
        self.metrics.round_trip.observe_duration(sent.elapsed());
        let failure = match outcome {
            Ok(Ok(())) => {
                self.metrics.exported.inc_by(spans);
                None
            }
            Ok(Err(error)) => {
                self.metrics.export_failed.inc_by(spans);
                Some(error)
            }
            Err(_) => {
                self.metrics.export_timeout.inc_by(spans);
                Some(format!("no answer within {:?}", self.export_timeout))
            }
        };
        Sent { batch, failure }
    }
}

/// Rate limiting for export error messages.
#[derive(Default)]
pub(super) struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    /// `Some(failures suppressed since the last message)` when a message is due.
    pub(super) fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < ERROR_LOG_PERIOD => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpProtocol;
    use crate::telemetry::settings::Sampler;

    fn settings(endpoint: &str, protocol: OtlpProtocol) -> TraceSettings {
        TraceSettings {
            endpoint: endpoint.to_owned(),
            protocol,
            headers: vec![("authorization".to_owned(), "Bearer x".to_owned())],
            sampler: Sampler::AlwaysOn,
            queue_capacity: 8,
            max_batch_size: 4,
            max_concurrent_exports: 2,
            export_timeout: Duration::from_secs(1),
            schedule_delay: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn a_grpc_exporter_to_a_tls_collector_builds_without_connecting() {
        let built = build_collector(&settings(
            "https://collector.example:4317",
            OtlpProtocol::Grpc,
        ));
        assert!(built.is_ok(), "{:?}", built.err().map(|e| e.to_string()));
    }

    #[tokio::test]
    async fn an_http_exporter_to_a_tls_collector_is_refused_with_a_reason() {
        let error = build_collector(&settings(
            "https://collector.example:4318/v1/traces",
            OtlpProtocol::HttpProtobuf,
        ))
        .expect_err("https over HTTP is not supported");
        assert!(error.to_string().contains("use protocol grpc"), "{error}");
        assert!(build_collector(&settings(
            "http://collector.example:4318/v1/traces",
            OtlpProtocol::HttpProtobuf
        ))
        .is_ok());
    }

    fn span() -> EncodedSpan {
        use crate::telemetry::otlp_trace::{Kind, SpanWriter};
        use opentelemetry::trace::{SpanId, TraceId};
        let at = std::time::SystemTime::UNIX_EPOCH;
        SpanWriter::new(
            TraceId::from(1),
            SpanId::from(1),
            "span",
            Kind::Internal,
            (at, at),
        )
        .finish(0, false)
    }

    /// Fewer spans than a batch and a schedule delay of an hour: once the
    /// export task holds them and waits, only the queue closing can wake it
    /// before the deadline. Sent to a port nothing listens on, they count
    /// as failed (or timed out); spans never exported would count as
    /// dropped at `shutdown`.
    #[tokio::test]
    async fn closing_the_queue_exports_what_it_holds_without_waiting_for_the_schedule() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}/v1/traces", closed.local_addr().expect("addr"));
        drop(closed);
        let mut settings = settings(&endpoint, OtlpProtocol::HttpProtobuf);
        settings.schedule_delay = Duration::from_secs(3600);
        let metrics = ExportMetrics::new(&mut Registry::default());
        let (queue, exporting) =
            start(&settings, &BTreeMap::new(), metrics.clone()).expect("exporter");
        // The (single-threaded) test runtime runs the export task at each
        // yield: first to wait for a span, then to take the three and wait
        // for more.
        tokio::task::yield_now().await;
        for _ in 0..3 {
            queue.push(span());
        }
        tokio::task::yield_now().await;
        drop(queue);
        exporting.shutdown(Duration::from_secs(30)).await;
        assert_eq!(metrics.shutdown.get(), 0, "spans left in the queue");
        assert_eq!(
            metrics.export_failed.get() + metrics.export_timeout.get(),
            3
        );
    }

    /// A collector that accepts connections and never answers: with two
    /// requests allowed in flight, the second batch goes out while the
    /// first waits (over HTTP/1 each request in flight needs a connection of
    /// its own, so the collector sees two). With one allowed, it would see
    /// one until the export timeout.
    #[tokio::test]
    async fn a_second_batch_is_sent_while_the_first_waits_for_its_answer() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}/v1/traces", silent.local_addr().expect("addr"));
        let mut settings = settings(&endpoint, OtlpProtocol::HttpProtobuf);
        settings.export_timeout = Duration::from_secs(60);
        assert_eq!(
            (settings.max_batch_size, settings.max_concurrent_exports),
            (4, 2)
        );
        let metrics = ExportMetrics::new(&mut Registry::default());
        let (queue, exporting) =
            start(&settings, &BTreeMap::new(), metrics.clone()).expect("exporter");
        for _ in 0..8 {
            queue.push(span());
        }
        let mut held = Vec::new();
        let accepted = tokio::time::timeout(Duration::from_secs(30), async {
            while held.len() < 2 {
                held.push(silent.accept().await?);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        assert!(
            matches!(accepted, Ok(Ok(()))),
            "connections from the exporter: {} ({accepted:?})",
            held.len()
        );
        assert_eq!(metrics.totals().requests, 0, "none answered yet");
        // Closing them fails both requests.
        drop(held);
        drop(queue);
        exporting.shutdown(Duration::from_secs(30)).await;
        let totals = metrics.totals();
        assert_eq!(
            (totals.export_failed, totals.shutdown),
            (8, 0),
            "{totals:?}"
        );
        assert_eq!(totals.requests, 2, "{totals:?}");
    }

    #[test]
    fn export_errors_are_logged_at_most_once_per_period_with_a_count() {
        let mut log = ErrorLog::default();
        let start = Instant::now();
        assert_eq!(log.should_log(start), Some(0));
        assert_eq!(log.should_log(start + Duration::from_secs(1)), None);
        assert_eq!(log.should_log(start + Duration::from_secs(2)), None);
        assert_eq!(log.should_log(start + ERROR_LOG_PERIOD), Some(2));
        assert_eq!(log.should_log(start + ERROR_LOG_PERIOD), None);
    }
}

//! The routes file as written: serde structs that mirror the YAML one to one
//! and reject unknown fields. Their doc comments are the configuration
//! reference. Values that need checking (addresses, durations, templates,
//! paths, names of declared things) stay text here; the validator turns
//! them into typed domain values and reports every mistake at once.
//!
//! ```yaml
//! admin: { bind: 127.0.0.1:9901 }
//! state: { ttl: 14d, max_transactions: 100000, max_exchanges_per_transaction: 256,
//!          backend: embedded, path: /var/lib/waybill, commit_interval: 10ms, snapshot_interval: 5m }
//! # or, shared by several sidecars:
//! # state: { backend: redis, redis: { url: redis://redis:6379, namespace: shop } }
//! observation: { queue_capacity: 10000, max_decoded_bytes: 1MiB }
//! systems: [erp, wms, carrier]
//! keys: [order, shipment, tracking]
//! root: order
//! listeners:
//!   - { name: wms-inbound, bind: 0.0.0.0:8080, upstream: http://127.0.0.1:9000, system: wms }
//! milestones:
//!   - { name: shipped, object: shipment }
//! routes:
//!   - name: wms.ship
//!     system: wms
//!     match: { method: POST, path: /shipments/{shipment_id}/ship }
//!     keys:
//!       shipment: { path_param: shipment_id }
//!       order: { request_json: $.order_id }
//!     milestone: shipped
//!   - name: carrier.status_delivered
//!     system: carrier
//!     match: { method: POST, path: /edi/inbound, x12: "214", x12_segment: AT7*D1 }
//!     keys:
//!       shipment: { request_x12: "BSN**{value}" }
//!     milestone: delivered
//! flows: []
//! expectations: []
//! telemetry:
//!   traces: { endpoint: http://otel-collector:4317, protocol: grpc, sampler_ratio: 0.25 }
//! ```

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The whole routes file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The admin surface (`/metrics`, `/healthz`, the JSON API). Optional.
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// Bounds of the transaction store. Optional.
    #[serde(default)]
    pub state: Option<RawState>,
    /// Bounds of the path from the proxy to extraction. Optional.
    #[serde(default)]
    pub observation: Option<RawObservation>,
    /// Names of the parties whose traffic is watched: `[erp, wms, tms, carrier]`.
    /// Routes, listeners and expectations refer to these names.
    pub systems: Vec<String>,
    /// Kinds of business keys: `[order, shipment, tracking, invoice]`.
    /// Route key rules and milestone objects refer to these names.
    pub keys: Vec<String>,
    /// The key kind that names a transaction. Optional: `order` when declared.
    #[serde(default)]
    pub root: Option<String>,
    /// Where the sidecar accepts traffic; at least one.
    pub listeners: Vec<RawListener>,
    /// Named business steps and the key kind each is about. Optional.
    #[serde(default)]
    pub milestones: Vec<RawMilestone>,
    /// Which exchanges carry which keys and mark which milestone. Optional.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Durations measured between two milestones, with an objective. Optional.
    #[serde(default)]
    pub flows: Vec<RawFlow>,
    /// Reconciliation rules: after one milestone, expect another in time. Optional.
    #[serde(default)]
    pub expectations: Vec<RawExpectation>,
    /// Business measures (freight cost, weight, counts) that routes read
    /// beside their keys. Optional.
    #[serde(default)]
    pub measures: Vec<RawMeasure>,
    /// Where OTLP traces go. Optional: the standard `OTEL_*` environment
    /// variables configure the same; a value given here wins over them.
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
}

/// `telemetry:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP trace export. Optional.
    #[serde(default)]
    pub traces: Option<RawTraces>,
    /// OTLP metrics export of the `/metrics` instruments, for users without
    /// Prometheus. Optional; off unless `OTEL_METRICS_EXPORTER=otlp` or
    /// `enabled: true`.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
}

/// `telemetry.metrics:` every field overrides its `OTEL_*` variable. The
/// resource (service name, attributes) is the one of `telemetry.traces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `true` turns OTLP metrics export on, `false` off. Overrides
    /// `OTEL_METRICS_EXPORTER` (`otlp` turns it on). Default off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Collector URL, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318/v1/metrics` (HTTP, used as written).
    /// Overrides `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Overrides `OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Time between exports, e.g. `60s` (default). Overrides
    /// `OTEL_METRIC_EXPORT_INTERVAL` (ms).
    #[serde(default)]
    pub interval: Option<Scalar>,
    /// How long one export may take before it is abandoned (and counted),
    /// e.g. `30s` (default). Overrides `OTEL_METRIC_EXPORT_TIMEOUT` (ms).
    #[serde(default)]
    pub export_timeout: Option<Scalar>,
}

/// `telemetry.traces:` every field overrides its `OTEL_*` variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraces {
    /// `false` turns trace export off whatever the environment says; `true`
    /// turns it on (an endpoint is then required from here or the
    /// environment). Default: on exactly when an endpoint is configured.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Collector URL, e.g. `http://otel-collector:4317` (gRPC) or
    /// `http://otel-collector:4318/v1/traces` (HTTP, used as written).
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Overrides `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Headers sent with every export (`authorization: Bearer …`).
    /// Overrides `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`.
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// `service.name` of the resource. Overrides `OTEL_SERVICE_NAME`. Default `waybill`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Extra resource attributes, added to (and winning over) `OTEL_RESOURCE_ATTRIBUTES`.
    #[serde(default)]
    pub resource_attributes: Option<std::collections::BTreeMap<String, String>>,
    /// Share of transactions whose spans are exported, 0.0 to 1.0. Decided
    /// on the trace ID, so every sidecar keeps the same transactions.
    /// Overrides `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`. Default 1.0.
    #[serde(default)]
    pub sampler_ratio: Option<f64>,
    /// Spans waiting for export before new ones are dropped (and counted).
    /// Overrides `OTEL_BSP_MAX_QUEUE_SIZE`. Default 2048.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Most spans in one export request. Overrides
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`. Default 512.
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// How long one export request may take, e.g. `10s` (default).
    /// Overrides `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`.
    #[serde(default)]
    pub export_timeout: Option<Scalar>,
}

/// `admin:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `ip:port` of the admin surface; default `127.0.0.1:9901` (loopback,
    /// since it shows business keys).
    #[serde(default)]
    pub bind: Option<String>,
}

/// `state:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// How long an untouched transaction is remembered, e.g. `14d` (default).
    #[serde(default)]
    pub ttl: Option<Scalar>,
    /// Most transactions kept; the least recently updated is evicted first.
    /// Default 100000.
    #[serde(default)]
    pub max_transactions: Option<usize>,
    /// Exchanges kept in one transaction's timeline. Default 256.
    #[serde(default)]
    pub max_exchanges_per_transaction: Option<usize>,
    /// Where state lives: `memory` (lost at restart), `embedded` (a
    /// durable store in `path`, survives `kill -9`) or `redis` (shared by
    /// several sidecars, see `redis`). Default: `embedded` when `path` is
    /// given, `redis` when `redis` is, else `memory`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Data directory of the embedded store, e.g. `/var/lib/waybill`;
    /// created if missing. One sidecar per directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Longest an observation waits for others to share its durable
    /// commit (one fsync per batch), e.g. `10ms` (default). Longer means
    /// fewer fsyncs, and admin API answers that lag by up to this much.
    #[serde(default)]
    pub commit_interval: Option<Scalar>,
    /// Most observations in one durable commit. Default 1024.
    #[serde(default)]
    pub commit_batch: Option<usize>,
    /// How often the whole state is written as a snapshot and the journal
    /// before it dropped, e.g. `5m` (default); also done at clean shutdown.
    #[serde(default)]
    pub snapshot_interval: Option<Scalar>,
    /// The shared Redis store (`backend: redis`, and the default backend
    /// when this is given): sidecars with the same `url` and `namespace`
    /// share one picture.
    #[serde(default)]
    pub redis: Option<RawRedis>,
}

/// `state.redis:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port[/db]`, or `rediss://` for TLS. No credentials
    /// here: the password comes from the `WAYBILL_REDIS_PASSWORD`
    /// environment variable or from `password_file`.
    pub url: String,
    /// Sidecars with the same namespace share state. It is the Redis
    /// Cluster hash tag of every key (`waybill:{<namespace>}:log`), so one
    /// namespace lives in one slot. Default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A file holding the Redis password (a mounted Secret), read at start;
    /// used when `WAYBILL_REDIS_PASSWORD` is not set.
    #[serde(default)]
    pub password_file: Option<String>,
    /// Entries this sidecar holds in memory while Redis is unreachable
    /// before new ones are dropped (and counted), besides the one batch (at
    /// most 256) the writer is retrying. With `spill`, memory only stages
    /// entries on their way to disk (and must absorb what arrives while a
    /// connection attempt waits, up to 5 s). Default 100000.
    #[serde(default)]
    pub buffer: Option<usize>,
    /// Entries the shared log keeps (`XADD MAXLEN ~`); a sidecar that starts
    /// rebuilds its picture from them. Default 1000000.
    #[serde(default)]
    pub max_log_entries: Option<usize>,
    /// `true` when `url` is a node of a Redis Cluster (the client learns
    /// the other nodes from it). Default `false`.
    #[serde(default)]
    pub cluster: Option<bool>,
    /// An on-disk outage buffer: while Redis is unreachable, this sidecar's
    /// entries are written to a local file instead of waiting in memory,
    /// survive a restart of the sidecar, and are appended in order when
    /// Redis returns. Off by default (then what does not fit `buffer` is
    /// dropped, and a restart during an outage loses what was buffered).
    #[serde(default)]
    pub spill: Option<RawSpill>,
}

/// `state.redis.spill:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpill {
    /// Directory of the spill file (`spill.redb`, created if missing); one
    /// sidecar per directory. On a volume that outlives the container, e.g.
    /// an `emptyDir`, for the spill to survive container restarts.
    pub path: String,
    /// Most entries the spill holds (~680 B each in the file, measured);
    /// beyond it new
    /// entries are dropped and counted (`reason="spill_full"`).
    /// Default 1000000.
    #[serde(default)]
    pub max_entries: Option<usize>,
}

/// `observation:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObservation {
    /// Exchanges waiting for extraction before new ones are dropped (and
    /// counted). Default 10000.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Largest decoded body extraction reads, as bytes or `1MiB` (default).
    /// A compressed body (gzip, deflate, br, zstd) may also decode to at
    /// most 200 times its size (bodies under 64 KiB decoded are exempt).
    #[serde(default)]
    pub max_decoded_bytes: Option<Scalar>,
}

/// One entry of `listeners:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Unique name, used in logs, metrics and a route's `listeners:`.
    pub name: String,
    /// `ip:port` to accept connections on, e.g. `0.0.0.0:8080`.
    pub bind: String,
    /// `http://host:port` or `https://host:port`, optionally with a base
    /// path prefixed to every forwarded path.
    pub upstream: String,
    /// `auto` (default), `http1` or `http2`.
    #[serde(default)]
    pub upstream_protocol: Option<RawUpstreamProtocol>,
    /// The declared system this listener fronts (inbound) or whose egress
    /// it carries (outbound).
    pub system: String,
    /// `inbound` (default) or `outbound`.
    #[serde(default)]
    pub direction: Option<RawDirection>,
    /// `preserve` (default) keeps the client's `Host`; `upstream` sends the
    /// upstream's authority.
    #[serde(default)]
    pub host_header: Option<RawHostHeader>,
    /// Header names on HTTP/1 hops, both directions: `preserve` (default)
    /// forwards them in the case they arrived in; `lowercase` sends them in
    /// lower case (cheaper: ~5 k fewer instructions per exchange, about
    /// 12 % of the proxying). HTTP/2 hops are lower case either way.
    #[serde(default)]
    pub header_case: Option<RawHeaderCase>,
    /// `off` (default) or `append` to add `X-Forwarded-*` headers.
    #[serde(default)]
    pub forwarded: Option<RawForwarded>,
    /// What serves HTTP/1 client connections: `auto` (default), `native`
    /// or `hyper`. `native` is the proxy's own HTTP/1 engine (fewer
    /// instructions per exchange, fuzzed; docs/http1.md); it serves only a
    /// listener it can serve entirely: an HTTP/1-only upstream (`http://`
    /// with `upstream_protocol` `auto` or `http1`, or `https://` with
    /// `http1`) and no route of the listener with an `idempotency_guard`.
    /// `auto` picks `native` where it can and `hyper` where not (the
    /// start-up log says which engine serves each listener, and why not
    /// `native`); `native` on a listener it cannot serve is an error,
    /// saying why. h2c clients on the same port are served by hyper
    /// either way.
    #[serde(default)]
    pub engine: Option<RawEngine>,
    /// Time allowed for the upstream's response head, e.g. `30s` (default);
    /// on the native engine also the longest pause between reads of the
    /// response body (then the client connection closes after what was
    /// relayed).
    #[serde(default)]
    pub timeout: Option<Scalar>,
    /// Time allowed to connect (TCP and TLS), e.g. `5s` (default).
    #[serde(default)]
    pub connect_timeout: Option<Scalar>,
    /// Bytes of each body copied for extraction, e.g. `64KiB` (default).
    #[serde(default)]
    pub tap_limit: Option<Scalar>,
}

/// `upstream_protocol:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawUpstreamProtocol {
    Auto,
    Http1,
    Http2,
}

/// `direction:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDirection {
    Inbound,
    Outbound,
}

/// `host_header:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawHostHeader {
    Preserve,
    Upstream,
}

/// `header_case:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawHeaderCase {
    Preserve,
    Lowercase,
}

/// `engine:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawEngine {
    Auto,
    Hyper,
    Native,
}

/// `forwarded:` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawForwarded {
    Off,
    Append,
}

/// One entry of `milestones:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMilestone {
    /// Unique name, e.g. `shipped`; a metric label value.
    pub name: String,
    /// The declared key kind the milestone is about, e.g. `shipment`.
    pub object: String,
    /// Reaching it on every object of its kind completes the transaction
    /// (e.g. `freight_invoiced` on every shipment). Optional, default false.
    #[serde(default)]
    pub terminal: bool,
    /// Declared milestones the transaction must have reached before this
    /// one; arriving earlier opens an exception (`out_of_order` unless
    /// `unmet` names another) that resolves when they arrive. Optional.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The exception opened when `requires` is not met, e.g.
    /// `{ exception: unmatched_freight_invoice, owner: carrier }`. Optional:
    /// `out_of_order`, owned by the system that reported the milestone.
    #[serde(default)]
    pub unmet: Option<RawExceptionRule>,
    /// A transaction whose latest milestone is this one for longer than
    /// this is stuck, e.g. `4h`. Optional: never stuck here.
    #[serde(default)]
    pub stuck_after: Option<Scalar>,
}

/// An exception to open: its kind and the declared system that owns it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExceptionRule {
    /// The exception kind, e.g. `duplicate_shipment`; a metric label value.
    pub exception: String,
    /// The declared system a person there must act. Optional: the system
    /// of the route (or of the exchange) that revealed it.
    #[serde(default)]
    pub owner: Option<String>,
}

/// `repeats:` of a route: how repeated calls of the operation for the same
/// object are told apart. A repeat after a failure is a retry; a second
/// success is a duplicate, unless both carried the same idempotency key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepeats {
    /// The declared key kind the operation is about, e.g. `order` for a
    /// `create_shipment` (one shipment per order expected).
    pub by: String,
    /// The request header carrying the client's idempotency key. Optional:
    /// `Idempotency-Key`.
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// The exception a duplicate opens. Optional: duplicates are counted only.
    #[serde(default)]
    pub duplicate: Option<RawExceptionRule>,
    /// When failed attempts are given up on. Optional: retries are counted only.
    #[serde(default)]
    pub retry: Option<RawRetry>,
}

/// `repeats.retry:` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Failed attempts after which the operation is exhausted, e.g. `3`.
    pub limit: u32,
    /// Time after the first failure within which a success must come, e.g. `10m`.
    pub within: Scalar,
    /// The exception opened when exhausted, e.g. `carrier_retry_exhausted`;
    /// owned by the route's system unless `owner` says otherwise.
    pub exception: String,
    /// Optional owner (a declared system).
    #[serde(default)]
    pub owner: Option<String>,
}

/// `idempotency_guard:` of a route: opt-in, it changes traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// The request header carrying the idempotency key. Optional: `Idempotency-Key`.
    #[serde(default)]
    pub header: Option<String>,
    /// How long a stored first response answers repeats, e.g. `24h` (default).
    #[serde(default)]
    pub window: Option<Scalar>,
    /// Stored responses kept; the oldest is dropped first. Optional: 10000.
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// Largest response body stored (larger ones are not stored, so their
    /// repeats are forwarded), e.g. `64KiB` (default).
    #[serde(default)]
    pub max_response: Option<Scalar>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, e.g. `carrier.buy_label`; the `operation` metric label.
    pub name: String,
    /// The declared system that serves this operation.
    pub system: String,
    /// Names of the listeners the route applies to. Optional: every listener.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Which requests the route matches.
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// Key kind → where its value is read. Optional.
    #[serde(default)]
    pub keys: KeyRules,
    /// A declared milestone recorded when the exchange succeeds (2xx). Optional.
    #[serde(default)]
    pub milestone: Option<String>,
    /// How repeats of this operation are told apart (retry, duplicate). Optional.
    #[serde(default)]
    pub repeats: Option<RawRepeats>,
    /// Answer a repeated idempotency key with the stored first response
    /// instead of forwarding it. Optional, off: it changes traffic. With
    /// `state.path` the stored responses survive restarts; with
    /// `state.redis` every sidecar of the namespace answers them.
    #[serde(default)]
    pub idempotency_guard: Option<RawGuard>,
    /// Numbers the exchange carries, attached to the route's milestone
    /// (required then) and its object when the exchange succeeds. Optional.
    #[serde(default)]
    pub measures: Vec<RawMeasureRule>,
    /// `trace_context`: send a W3C `traceparent` to the upstream (replacing
    /// the caller's; `tracestate` passes on as the caller sent it), naming
    /// the span waybill exports for the exchange, so the upstream's own
    /// spans join the trace. Its trace ID is the transaction's when the
    /// route reads the root key from the request head (`path_param`,
    /// `query` or `header`), else the caller's `traceparent` trace ID, else
    /// a random one (the exported span then links to it). Optional, off:
    /// it changes traffic.
    #[serde(default)]
    pub propagate: Option<RawPropagate>,
    /// `false`: forward the route's requests without watching them: no
    /// body tap, no exchange handed to extraction, so no keys, milestone,
    /// store update or span (the proxy's request counters and handle time
    /// still count them). For bulk or chatty endpoints whose traffic is
    /// not part of any transaction (label image downloads, health pings).
    /// The proxy decides on the request head: a request is uninspected
    /// when the first route, in matching priority, that serves its
    /// listener and accepts its method and path says `inspect: false`. Such
    /// a route cannot have content conditions (`match:` beyond `method` and
    /// `path`), keys, a milestone, measures, repeats, an idempotency guard
    /// or `propagate`: none would ever be applied. Optional: `true`.
    #[serde(default)]
    pub inspect: Option<bool>,
}

/// `propagate:` values of a route.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawPropagate {
    TraceContext,
}

/// One entry of `measures:`, e.g.
/// `{ name: freight_cost, unit: currency, currencies: [USD, EUR],
///    variance: { tolerance: "5.00", exception: freight_variance, owner: carrier } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeasure {
    /// Unique name, e.g. `freight_cost`; the `measure` metric label value.
    pub name: String,
    /// `currency` (money, never converted), `kg` (mass: values in `lb`,
    /// `lbs`, `g`, `t` are converted to kilograms) or `count`.
    pub unit: String,
    /// For `unit: currency`, the ISO 4217 codes accepted, e.g. `[USD, EUR]`:
    /// the bounded `unit` label values. An amount in any other currency is
    /// counted as unparseable (`unknown_currency`).
    #[serde(default)]
    pub currencies: Vec<String>,
    /// Compare each object's `quoted` and `actual` values. Optional.
    #[serde(default)]
    pub variance: Option<RawVariance>,
}

/// `variance:` of a measure: when an object has both a quoted and an
/// actual value (same unit), their difference `actual - quoted` is
/// observed once; beyond `tolerance` either way it opens an exception.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariance {
    /// Largest difference that is no exception, in the measure's unit,
    /// e.g. `"2.50"`. Optional: `0` (any difference).
    #[serde(default)]
    pub tolerance: Option<Scalar>,
    /// The exception kind, e.g. `freight_variance`.
    pub exception: String,
    /// The declared system that owns it. Optional: the system of the route
    /// that reported the actual value.
    #[serde(default)]
    pub owner: Option<String>,
}

/// One entry of a route's `measures:`, e.g.
/// `{ measure: freight_cost, role: quoted, value: { response_json: $.selected_rate.rate },
///    currency: { response_json: $.selected_rate.currency } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeasureRule {
    /// A declared measure.
    pub measure: String,
    /// `quoted` (promised before the fact: a rate at label purchase) or
    /// `actual` (what counts: the invoiced amount). Optional: `actual`.
    /// A later value of the same measure and role on the same object (a
    /// re-sent invoice) replaces the earlier one; it is never added.
    #[serde(default)]
    pub role: Option<String>,
    /// Where the number is read: exactly one source, as for keys. Plain
    /// decimals (`12.50`, `-3`); thousands commas only when unambiguous
    /// (`1,234.50`); `12,50` is refused (`locale`). Every match is one
    /// value, paired in order with the milestone's objects.
    pub value: RawKeySource,
    /// For a `currency` measure (required): a fixed code (`currency: USD`)
    /// or a source beside the value (`currency: { response_json: $.rate.currency }`).
    #[serde(default)]
    pub currency: Option<RawUnitSource>,
    /// For a `kg` measure: `kg` (default), `lb`, `lbs`, `g`, `t`, or a
    /// source to read it from. Not allowed for other measures.
    #[serde(default)]
    pub unit: Option<RawUnitSource>,
    /// The declared system the value is about, a label value: `carrier`
    /// for a freight invoice the ERP receives. Optional: the route's system.
    #[serde(default)]
    pub system: Option<String>,
    /// Implied decimal places of the value, 0 to 9: X12 numeric type `N2`
    /// (the L3 charge of a 210) writes 850.00 as `85000`, so `decimals: 2`.
    /// Optional: 0, the value carries its own decimal point.
    #[serde(default)]
    pub decimals: Option<u32>,
}

/// A unit written in the config, or a source to read it from.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawUnitSource {
    /// `USD`, `lb`.
    Fixed(String),
    /// `{ response_json: $.selected_rate.currency }`.
    Read(Box<RawKeySource>),
}

/// `match:` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Upper-case HTTP method, e.g. `POST`. Optional: any method. Of two
    /// routes with the same template shape, the one with a method is tried
    /// first; two with the same shape and method on a common listener are
    /// an error (overlap).
    #[serde(default)]
    pub method: Option<String>,
    /// Path template, e.g. `/v2/shipments/{shipment_id}/buy`. A `{param}`
    /// is a whole segment; at the first differing segment a literal is more
    /// specific than a param.
    pub path: String,
    /// Content conditions: the request must also carry this media type in
    /// `Content-Type` (parameters ignored), e.g. `application/soap+xml`.
    /// Optional, like every condition below. Routes that differ only in
    /// their conditions do not overlap: the one with more conditions is
    /// tried first, then the order of the file. A body is read for a
    /// condition only when method and path already matched.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The SOAP action: the `SOAPAction` header (SOAP 1.1, quotes removed)
    /// or the `action` parameter of `Content-Type` (SOAP 1.2), e.g.
    /// `http://sap.com/xi/LE/OutboundDeliveryConfirm`.
    #[serde(default)]
    pub soap_action: Option<String>,
    /// The request body is an X12 interchange carrying a transaction set
    /// with this id (ST01), e.g. `"214"` (quote it: it is text).
    #[serde(default)]
    pub x12: Option<Scalar>,
    /// The request body is an X12 interchange with a segment like this,
    /// written with `*` between elements and no `{value}`, e.g. `AT7*D1`
    /// (a 214 whose status is "delivered").
    #[serde(default)]
    pub x12_segment: Option<String>,
    /// The request body is an EDIFACT interchange carrying a message of
    /// this type (UNH, data element 0065), e.g. `IFTSTA`.
    #[serde(default)]
    pub edifact: Option<String>,
    /// The request body is an EDIFACT interchange with a segment like
    /// this, written with `+` and `:` and no `{value}`, e.g. `STS+1+21`.
    #[serde(default)]
    pub edifact_segment: Option<String>,
    /// The request body is JSON with this value at a path, written
    /// `PATH == VALUE`, e.g. `$.event == tracker.updated` (the value may
    /// be quoted). Compares strings and numbers as written.
    #[serde(default)]
    pub json: Option<String>,
}

/// Where one key is read: exactly one of these fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeySource {
    /// A request header name, e.g. `X-Order-Id`.
    #[serde(default)]
    pub header: Option<String>,
    /// A query parameter name of the request URL.
    #[serde(default)]
    pub query: Option<String>,
    /// The name of a `{param}` of the route's path template.
    #[serde(default)]
    pub path_param: Option<String>,
    /// A JSON path over the request body, e.g. `$.lines[*].order_id`.
    /// Supported: `$`, `.field`, `['field']`, `[0]`, `[*]`.
    #[serde(default)]
    pub request_json: Option<String>,
    /// A JSON path over the response body.
    #[serde(default)]
    pub response_json: Option<String>,
    /// A regex over the request body; group `value`, else group 1, else
    /// the whole match is the key, e.g. `INV-(?P<value>\d+)`.
    #[serde(default)]
    pub request_regex: Option<String>,
    /// A regex over the response body.
    #[serde(default)]
    pub response_regex: Option<String>,
    /// An XML path over the request body, e.g.
    /// `/Envelope/Body/DeliveryConfirmation/Delivery/DeliveryDocument`.
    /// Steps match local names (namespace prefixes are ignored), `*` is any
    /// element, a final `/@attr` reads an attribute. Every match is a key.
    #[serde(default)]
    pub request_xml: Option<String>,
    /// An XML path over the response body.
    #[serde(default)]
    pub response_xml: Option<String>,
    /// An X12 segment address over the request body, written like the
    /// segment with `{value}` at the key: `L11*{value}*BM` (bill of lading),
    /// `BSN**{value}` (shipment id), `N9*PO*{value}`. An empty position
    /// matches anything; components are separated by `>`.
    #[serde(default)]
    pub request_x12: Option<String>,
    /// An X12 segment address over the response body.
    #[serde(default)]
    pub response_x12: Option<String>,
    /// An EDIFACT segment address over the request body, written like the
    /// segment: `RFF+CN:{value}`, `BGM+220+{value}`.
    #[serde(default)]
    pub request_edifact: Option<String>,
    /// An EDIFACT segment address over the response body.
    #[serde(default)]
    pub response_edifact: Option<String>,
    /// A field name of a form request body (`application/x-www-form-urlencoded`
    /// or `multipart/form-data`; file parts are not read).
    #[serde(default)]
    pub request_form: Option<String>,
    /// A field name of a form response body.
    #[serde(default)]
    pub response_form: Option<String>,
}

/// One entry of `flows:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    /// Unique name, e.g. `order_to_ship`; a metric label value.
    pub name: String,
    /// The declared milestone the duration starts at.
    pub from: String,
    /// The declared milestone the duration ends at (not `from`).
    pub to: String,
    /// The objective, e.g. `24h`.
    pub slo: Scalar,
}

/// One entry of `expectations:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpectation {
    /// The declared milestone that starts the wait.
    pub after: String,
    /// The declared milestone expected next (not `after`).
    pub expect: String,
    /// How long to wait, e.g. `15m`.
    pub within: Scalar,
    /// The exception kind opened when the wait lapses, e.g. `missing_goods_issue`.
    pub exception: String,
    /// The declared system that owns the exception.
    pub owner: String,
}

// === impl Scalar ===

/// A scalar read as text whether YAML saw a string or a number, so `30`
/// and `30s` both reach the duration or size reader, which says what is
/// expected instead of serde's "invalid type".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

// === impl KeyRules ===

/// A route's `keys:` mapping in the order written (rule order is the order
/// keys are reported in).
#[derive(Debug, Default)]
pub struct KeyRules(pub Vec<(String, RawKeySource)>);

impl<'de> Deserialize<'de> for KeyRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;

        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = KeyRules;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a mapping from key kind to source, e.g. `order: { header: X-Order-Id }`",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyRules, A::Error> {
                let mut rules = Vec::new();
                while let Some((kind, source)) = map.next_entry::<String, RawKeySource>()? {
                    rules.push((kind, source));
                }
                Ok(KeyRules(rules))
            }
        }

        deserializer.deserialize_map(RulesVisitor)
    }
}

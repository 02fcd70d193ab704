//! The routes file: one YAML document parsed once, validated into the typed
//! domain values below, and never looked at as text again. Every mistake is
//! collected with its file, line, column and field before start-up stops
//! (see [`ConfigError`]); `waybill check FILE` runs the same validation.

mod amount;
mod business;
mod condition;
mod edi_address;
mod error;
pub(crate) mod head_routes;
mod json_path;
mod listener;
mod locate;
mod measure;
pub mod raw;
mod route;
mod symbol;
mod telemetry;
mod template;
mod units;
mod validate;
mod xml_path;

pub use amount::{Amount, AmountError};
pub use business::{ExceptionRule, Expectation, Flow, MilestoneDef, OUT_OF_ORDER};
pub use error::{ConfigError, ConfigErrors};
pub use head_routes::HeadRoutes;
pub use listener::{
    Direction, Engine, Forwarded, HeaderCase, HostHeader, Listener, ListenerId, NativeRefusal,
    Serving, Upstream, UpstreamProtocol,
};
pub use measure::{MeasureDef, MeasureRule, Role, UnitKind, UnitRule, VarianceRule, COUNT, KG};
pub use route::{
    Condition, EdiAddress, EdiPart, EdiSyntax, Guard, JsonPath, JsonStep, KeyRule, KeySource,
    Params, PathTemplate, Propagate, Repeats, RetryRule, Route, RouteId, Segment, Side, Sources,
    XmlPath, XmlStep, IDEMPOTENCY_KEY,
};
pub use symbol::{
    kind, ExceptionKind, FlowName, KeyKind, MeasureName, Milestone, Operation, Symbol, Symbols,
    System, Unit,
};
pub use telemetry::{MetricsConfig, OtlpProtocol, TelemetryConfig, TracesConfig};
pub use xml_path::MAX_XML_DEPTH;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The whole validated configuration. Built only by [`Config::load`] /
/// [`Config::from_yaml`], so every value in it has passed validation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file came from, for messages.
    pub source: String,
    pub listeners: Vec<Listener>,
    pub systems: Symbols<kind::System>,
    pub key_kinds: Symbols<kind::KeyKind>,
    /// The key kind that names a transaction (`order` by default).
    pub root: KeyKind,
    pub operations: Symbols<kind::Operation>,
    /// Routes in matching priority order; `routes[i].id == RouteId(i)`.
    pub routes: Vec<Route>,
    pub milestones: Symbols<kind::Milestone>,
    /// One definition per milestone, indexed by `Milestone::id()`.
    pub milestone_defs: Vec<MilestoneDef>,
    pub flow_names: Symbols<kind::Flow>,
    pub flows: Vec<Flow>,
    pub exception_kinds: Symbols<kind::Exception>,
    pub expectations: Vec<Expectation>,
    pub measures: Symbols<kind::Measure>,
    /// One definition per measure, indexed by `MeasureName::id()`.
    pub measure_defs: Vec<MeasureDef>,
    /// Every unit a measure is stored in: declared currencies, `kg`, `count`.
    pub units: Symbols<kind::Unit>,
    pub admin: AdminConfig,
    pub state: StateConfig,
    pub observation: ObservationConfig,
    /// Overrides for OTLP export (the `OTEL_*` variables configure the rest).
    pub telemetry: TelemetryConfig,
}

/// Where the admin surface listens.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
}

/// Bounds of the in-memory transaction store.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// A transaction untouched for this long is removed (counted as `ttl`).
    pub ttl: Duration,
    /// At most this many transactions are kept; the least recently updated
    /// one is evicted first (counted as `capacity`).
    pub max_transactions: usize,
    /// Exchanges remembered per transaction for the timeline; older ones are
    /// dropped from the timeline (milestones are always kept).
    pub max_exchanges_per_transaction: usize,
    /// Where the state lives: only in memory, or durably on disk.
    pub store: StoreConfig,
}

/// Which store backs the state.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// Only in memory: a restart forgets every transaction. The default
    /// when no data directory is configured (tests, the demo).
    #[default]
    Memory,
    /// The embedded durable store: a journal of accepted observations plus
    /// snapshots in one data directory (see [`crate::state::durable`]).
    Embedded(EmbeddedConfig),
    /// Shared by several sidecars through a replicated log in Redis (see
    /// [`crate::state::shared`]).
    Redis(RedisConfig),
}

/// Settings of the shared Redis store.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL without credentials (checked at load).
    pub url: String,
    /// The hash tag every key carries; sidecars with the same one share state.
    pub namespace: String,
    /// Where the password is, when not in `WAYBILL_REDIS_PASSWORD`.
    pub password_file: Option<std::path::PathBuf>,
    /// Own entries held while Redis is unreachable before drops.
    pub buffer: usize,
    /// Entries the shared log keeps.
    pub max_log_entries: usize,
    /// `url` is a seed node of a Redis Cluster.
    pub cluster: bool,
    /// The on-disk outage buffer, if configured.
    pub spill: Option<SpillConfig>,
}

/// The shared store's on-disk outage buffer (see
/// [`crate::state::shared::spill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    /// Directory of the spill file.
    pub path: std::path::PathBuf,
    /// Most entries it holds before new ones are dropped.
    pub max_entries: usize,
}

/// Settings of the embedded durable store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The data directory.
    pub path: std::path::PathBuf,
    /// Longest an observation waits for others to share its commit.
    pub commit_interval: Duration,
    /// Most observations per commit.
    pub commit_batch: usize,
    /// How often a snapshot replaces the journal.
    pub snapshot_interval: Duration,
}

/// Bounds of the observation path between the proxy and the correlator.
#[derive(Debug, Clone)]
pub struct ObservationConfig {
    /// Capacity of the queue between the proxy and extraction. When it is
    /// full the observation is dropped and counted; traffic is never slowed.
    pub queue_capacity: usize,
    /// Largest decoded (e.g. gunzipped) body extraction will look at.
    pub max_decoded_bytes: usize,
}

/// Named defaults, each a trade-off documented where it is chosen.
pub mod defaults {
    use std::time::Duration;

    /// Bytes of each body copied for extraction: logistics documents are
    /// rarely larger, and the copy is paid on every exchange.
    pub const TAP_LIMIT: usize = 64 * 1024;
    /// Queue between proxy and extraction: ~10 s of a busy sidecar's traffic
    /// at 1 k req/s, at a few KiB each.
    pub const QUEUE_CAPACITY: usize = 10_000;
    /// A decoded body may grow to this size before extraction gives up
    /// (`decoded_too_large`); bounds gzip, brotli and zstd bombs (a ratio
    /// bound applies as well, see the extract stage's body decoding).
    pub const MAX_DECODED_BYTES: usize = 1024 * 1024;
    /// How long an untouched transaction is remembered: long enough for a
    /// freight invoice that arrives a week after delivery.
    pub const STATE_TTL: Duration = Duration::from_secs(14 * 24 * 3600);
    /// Transactions kept in memory before the least recently updated is evicted.
    pub const MAX_TRANSACTIONS: usize = 100_000;
    /// Exchanges kept per transaction timeline.
    pub const MAX_EXCHANGES_PER_TRANSACTION: usize = 256;
    /// Longest an observation waits to share a durable commit: an fsync
    /// costs ~1-10 ms, so 10 ms lets a busy sidecar batch hundreds of
    /// observations per fsync while the admin API lags by at most that.
    pub const COMMIT_INTERVAL: Duration = Duration::from_millis(10);
    /// Longest commit_interval accepted: beyond a second the admin API
    /// looks stale and a crash loses more that was seen but not accepted.
    pub const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
    /// Most observations per commit: bounds the memory of one batch and
    /// the time one commit holds the correlator.
    pub const COMMIT_BATCH: usize = 1024;
    /// How often a snapshot replaces the journal: restart replays at most
    /// this much journal, and the journal stays at most this long.
    pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5 * 60);
    /// Own entries a sidecar holds while Redis is unreachable: ~100 s of a
    /// busy sidecar's traffic at 1 k req/s, ~25 MB at ~250 B per entry.
    pub const REDIS_BUFFER: usize = 100_000;
    /// Entries the shared log keeps: a starting sidecar replays them, so
    /// this bounds both Redis memory (~310 B each measured, ~300 MB) and
    /// how far back a new replica's picture reaches.
    pub const REDIS_MAX_LOG_ENTRIES: usize = 1_000_000;
    /// Entries the Redis outage spill holds: ~1.4 h of a busy sidecar's
    /// traffic at 200 req/s; the spill file grows to ~700 MB at the ~680 B
    /// per entry measured (an entry is ~250 B; the rest is redb's pages).
    pub const REDIS_SPILL_MAX_ENTRIES: usize = 1_000_000;
    /// Namespace (hash tag) when none is given.
    pub const REDIS_NAMESPACE: &str = "default";
    /// Upstream must answer with response headers within this time, else 504.
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
    /// Upstream TCP (and TLS) connect must finish within this time, else 502.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long the idempotency guard answers a repeated key from the
    /// stored first response: a day covers every client retry schedule.
    pub const GUARD_WINDOW: Duration = Duration::from_secs(24 * 3600);
    /// Stored responses per guarded route, oldest dropped first.
    pub const GUARD_MAX_ENTRIES: usize = 10_000;
    /// Largest response body the guard stores (bigger ones are forwarded).
    pub const GUARD_MAX_RESPONSE: usize = 64 * 1024;
    /// Admin surface address: loopback, since it exposes business keys.
    pub const ADMIN_BIND: &str = "127.0.0.1:9901";
}

impl Config {
    /// Reads and validates the routes file at `path`; messages name it as
    /// written. Warnings are dropped; see [`Config::load_with_warnings`].
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_warnings(path).map(|(config, _warnings)| config)
    }

    /// Validates routes-file `text` that came from `source` (a path or a
    /// label such as `<inline>`, used in messages).
    pub fn from_yaml(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        Config::from_yaml_with_warnings(text, source).map(|(config, _warnings)| config)
    }

    /// [`Config::load`], also returning the warnings (declared names no
    /// route uses …) for `waybill check` to print.
    pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_yaml_with_warnings(&text, &source),
            Err(error) => Err(ConfigErrors::single(ConfigError {
                source,
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read the routes file: {error}"),
            })),
        }
    }

    /// [`Config::from_yaml`], also returning the warnings.
    ///
    /// The YAML is first read into the raw structs of [`raw`]; serde stops
    /// at the first syntax error, unknown field, wrong type or missing field,
    /// which is then the only error. Everything serde accepts is validated
    /// in full and every mistake is reported.
    pub fn from_yaml_with_warnings(
        text: &str,
        source: &str,
    ) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let raw: raw::RawConfig = serde_yaml::from_str(text)
            .map_err(|error| ConfigErrors::single(error::from_serde(&error, text, source)))?;
        validate::validate(&raw, text, source)
    }

    /// The definition of `milestone` (its object kind …).
    pub fn milestone_def(&self, milestone: &Milestone) -> &MilestoneDef {
        &self.milestone_defs[milestone.id()]
    }

    /// The definition of `measure` (its unit, its variance rule).
    pub fn measure_def(&self, measure: &MeasureName) -> &MeasureDef {
        &self.measure_defs[measure.id()]
    }

    /// The route with this id.
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.0]
    }
}

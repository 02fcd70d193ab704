//! The shared Redis store: a replicated log of what the correlators apply.
//!
//! The correlator is deterministic given the sequence of entries it applies
//! (observations, and deadline ticks with their time: [`Entry`], the same
//! records the embedded journal keeps). So sidecars share one picture by
//! sharing one sequence: every sidecar appends its own entries to one Redis
//! Stream, and every sidecar reads that stream in order and applies every
//! entry to its own in-memory store. Any sidecar's admin API then shows the
//! same transactions.
//!
//! - **Keys.** `waybill:{<namespace>}:log` (the stream) and
//!   `waybill:{<namespace>}:origin:<replica>` (one replica's high-water
//!   mark). The `{namespace}` hash tag puts them in one Redis Cluster slot
//!   (`state.redis.cluster` connects through a cluster client, see `server.rs`).
//! - **Atomic, idempotent appends.** A Lua script ([`APPEND`]) appends a
//!   batch of one replica's entries, skipping every entry whose sequence
//!   number is not above that replica's mark, and moves the mark, in one
//!   step. A batch re-sent after a lost reply changes nothing.
//! - **Bounded.** `XADD MAXLEN ~ max_log_entries`: a starting sidecar
//!   rebuilds its picture from what the log still holds.
//! - **Outages.** Traffic never waits on any of this (the proxy hands
//!   exchanges to a bounded queue; the correlator hands entries to the
//!   writer with `try_send`). While Redis is unreachable a replica's own
//!   entries wait in a bounded buffer (`state.redis.buffer`); beyond it
//!   they are dropped and counted
//!   (`waybill_state_shared_dropped_total{reason="buffer_full"}`). With
//!   `state.redis.spill` the writer moves them to a file on disk instead
//!   ([`spill`], bounded, kept across restarts of the sidecar; see
//!   `writer.rs`). When Redis returns the spill and the buffer are
//!   appended in order and reading resumes after the last entry read.
//!
//! Who reports what (spans, flow histograms, exception counters) is the
//! correlator's business: see `correlate/shared.rs`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::{IntoConnectionInfo, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::RedisConfig;
use crate::state::durable::record::{Damaged, Entry};

pub mod guard;
mod server;
pub mod spill;
mod writer;
use server::{Connection, Server};
use spill::{Spill, SpillError};
use writer::{Backoff, Writer};

/// Appends a batch of one replica's entries, skipping those already in the
/// log (sequence not above the replica's mark), and returns how many were
/// added. KEYS: the log, the replica's mark. ARGV: replica, log length
/// bound, mark expiry (ms), then `seq, entry` pairs in increasing order.
pub const APPEND: &str = r"
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local added = 0
for i = 4, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > mark then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
      'o', ARGV[1], 'q', ARGV[i], 'e', ARGV[i + 1])
    mark = seq
    added = added + 1
  end
end
redis.call('SET', KEYS[2], mark, 'PX', ARGV[3])
return added
";

/// Entries per append (one script call): bounds one call's time on the
/// Redis server (every script blocks it while it runs).
const APPEND_BATCH: usize = 256;
/// Entries per read.
const READ_BATCH: usize = 1024;
/// How long one `XREAD` waits for new entries.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Longest wait for a command's reply (besides the read's own block).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries read but not yet applied: the reader waits when the correlator
/// is this far behind.
const READ_QUEUE: usize = 4096;

/// The shared store could not start.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("state.redis.url: {0}")]
    Url(redis::RedisError),
    #[error("state.redis.password_file {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spill(#[from] SpillError),
}

/// One replica: a random id per process, so a restarted sidecar's
/// sequence numbers (which start again at 1) never collide with its
/// previous life's. With a spill the id is kept in the spill file instead,
/// with a lease that keeps sequence numbers increasing across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica(pub u64);

impl Replica {
    fn random() -> Replica {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // No system randomness: time and pid still tell processes apart.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            bytes = (nanos ^ u64::from(std::process::id()).rotate_left(40)).to_le_bytes();
        }
        Replica(u64::from_le_bytes(bytes))
    }

    fn text(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One entry of the shared log, as read back.
#[derive(Debug)]
pub struct LogEntry {
    /// Its place in the log, as one number (stream id `ms-n` as
    /// `ms << 20 | n`): the same on every replica, increasing.
    pub position: u64,
    /// The replica that appended it.
    pub origin: Replica,
    /// Its sequence number at that replica.
    pub seq: u64,
    pub entry: Result<Entry, Damaged>,
}

/// Why own entries never reached the log: `buffer_full` (the memory
/// buffer, with no spill), `spill_full` (the spill's bound), `spill_failed`
/// (the spill file could not be written), `shutdown` (left in memory when
/// the sidecar stopped).
const DROP_REASONS: [&str; 4] = ["buffer_full", "spill_full", "spill_failed", "shutdown"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OriginLabel {
    origin: &'static str,
}

/// The shared store's self-instrumentation.
#[derive(Clone)]
pub struct SharedMetrics {
    appended: Counter,
    applied: Family<OriginLabel, Counter>,
    dropped: Family<ReasonLabel, Counter>,
    buffered: Gauge,
    connected: Gauge,
    errors: Family<OperationLabel, Counter>,
    damaged: Counter,
    spilled: Counter,
    spill_entries: Gauge,
}

impl SharedMetrics {
    fn new(registry: &mut Registry) -> Self {
        let metrics = SharedMetrics {
            appended: Counter::default(),
            applied: Family::default(),
            dropped: Family::default(),
            buffered: Gauge::default(),
            connected: Gauge::default(),
            errors: Family::default(),
            damaged: Counter::default(),
            spilled: Counter::default(),
            spill_entries: Gauge::default(),
        };
        // Every known label value exists from the start (at 0), so alerts
        // and `rate()` see the first increase.
        for reason in DROP_REASONS {
            let _ = metrics.dropped.get_or_create(&ReasonLabel { reason });
        }
        for operation in ["append", "read"] {
            let _ = metrics.errors.get_or_create(&OperationLabel { operation });
        }
        for origin in ["local", "remote"] {
            let _ = metrics.applied.get_or_create(&OriginLabel { origin });
        }
        registry.register(
            "waybill_state_shared_appended",
            "Entries this sidecar appended to the shared log (re-sent ones already there are not counted)",
            metrics.appended.clone(),
        );
        registry.register(
            "waybill_state_shared_applied",
            "Entries of the shared log applied to this sidecar's picture, by origin (local: appended by this sidecar)",
            metrics.applied.clone(),
        );
        registry.register(
            "waybill_state_shared_dropped",
            "Own entries dropped before reaching the shared log, by reason (buffer_full, spill_full: Redis was unreachable for too long; spill_failed: the spill file could not be written; shutdown)",
            metrics.dropped.clone(),
        );
        registry.register(
            "waybill_state_shared_buffered",
            "Own entries waiting to be appended to the shared log",
            metrics.buffered.clone(),
        );
        registry.register(
            "waybill_state_shared_connected",
            "1 while the last command to Redis succeeded, else 0",
            metrics.connected.clone(),
        );
        registry.register(
            "waybill_state_shared_errors",
            "Failed Redis commands, by operation (append, read); each is retried",
            metrics.errors.clone(),
        );
        registry.register(
            "waybill_state_shared_damaged",
            "Entries of the shared log that could not be read or name things this sidecar's config does not declare (skipped)",
            metrics.damaged.clone(),
        );
        registry.register(
            "waybill_state_shared_spilled",
            "Own entries written to the on-disk spill while Redis was unreachable",
            metrics.spilled.clone(),
        );
        registry.register(
            "waybill_state_shared_spill_entries",
            "Own entries waiting in the on-disk spill to be appended to the shared log",
            metrics.spill_entries.clone(),
        );
        metrics
    }

    /// Counts `count` own entries that will never reach the log.
    fn drop_entries(&self, reason: &'static str, count: usize) {
        self.dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(count as u64);
    }

    fn error(&self, operation: &'static str) {
        self.errors
            .get_or_create(&OperationLabel { operation })
            .inc();
        self.connected.set(0);
    }

    /// Counts one entry applied.
    pub fn applied(&self, local: bool) {
        let origin = if local { "local" } else { "remote" };
        self.applied.get_or_create(&OriginLabel { origin }).inc();
    }

    /// Counts entries that could not be applied.
    pub fn damaged(&self) {
        self.damaged.inc();
    }
}

/// Names of the keys of one namespace.
#[derive(Debug, Clone)]
struct Keys {
    log: String,
    prefix: String,
}

impl Keys {
    fn new(namespace: &str) -> Keys {
        Keys {
            log: format!("waybill:{{{namespace}}}:log"),
            prefix: format!("waybill:{{{namespace}}}:origin:"),
        }
    }

    fn mark(&self, replica: Replica) -> String {
        format!("{}{}", self.prefix, replica.text())
    }
}

/// An entry on its way to the log.
#[derive(Debug, PartialEq, Eq)]
struct Outgoing {
    seq: u64,
    frame: Vec<u8>,
}

/// This sidecar's end of the shared log, owned by the correlator: append
/// own entries (never waiting), receive every entry in log order.
pub struct Shared {
    replica: Replica,
    next_seq: u64,
    /// With a spill: sequence numbers below the lease's end are this
    /// life's; past it, a new lease is taken before one is used.
    lease: Option<(Spill, u64)>,
    outbox: Option<mpsc::Sender<Outgoing>>,
    /// Every entry of the log, in order.
    pub log: mpsc::Receiver<LogEntry>,
    metrics: SharedMetrics,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
    /// For the idempotency guard's records ([`Shared::guard_records`]).
    server: Server,
    namespace: String,
}

impl Shared {
    /// Starts the writer and the reader (they connect, and reconnect, on
    /// their own: an unreachable Redis is not an error here) and registers
    /// the metrics. `password` is the password from the environment; else
    /// `password_file` is read.
    pub fn start(
        config: &RedisConfig,
        password: Option<String>,
        registry: &mut Registry,
    ) -> Result<Shared, SharedError> {
        let password = match (password, &config.password_file) {
            (Some(password), _) => Some(password),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| SharedError::PasswordFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(SharedError::Url)?;
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = Server::new(info, config.cluster).map_err(SharedError::Url)?;
        let metrics = SharedMetrics::new(registry);
        let keys = Keys::new(&config.namespace);
        let (replica, next_seq, lease) = match &config.spill {
            Some(spill_config) => {
                let spill = Spill::open(spill_config)?;
                let identity = spill.identity(Replica::random())?;
                (
                    identity.replica,
                    identity.next_seq,
                    Some((spill, identity.lease_end)),
                )
            }
            None => (Replica::random(), 1, None),
        };
        let (outbox, pending) = mpsc::channel(config.buffer.max(1));
        let (found, log) = mpsc::channel(READ_QUEUE);
        let writer = tokio::spawn(writer::write(Writer {
            client: client.clone(),
            keys: keys.clone(),
            replica,
            max_log_entries: config.max_log_entries,
            metrics: metrics.clone(),
            pending,
            spill: lease.as_ref().map(|(spill, _)| spill.clone()),
        }));
        let reader = tokio::spawn(read(client.clone(), keys, found, metrics.clone()));
        Ok(Shared {
            replica,
            next_seq,
            lease,
            outbox: Some(outbox),
            log,
            metrics,
            writer,
            reader,
            server: client,
            namespace: config.namespace.clone(),
        })
    }

    /// The idempotency guard's records, in the same Redis and namespace.
    pub fn guard_records(&self, metrics: crate::proxy::GuardStateMetrics) -> guard::SharedGuard {
        guard::SharedGuard::start(self.server.clone(), &self.namespace, self.replica, metrics)
    }

    /// This sidecar's id in the log.
    pub fn replica(&self) -> Replica {
        self.replica
    }

    /// The metrics, for the correlator to count what it applies.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// Hands `entry` to the writer without waiting; returns its sequence
    /// number, or `None` when the buffer is full (dropped and counted).
    pub fn append(&mut self, entry: &Entry) -> Option<u64> {
        let outbox = self.outbox.as_ref()?;
        let seq = self.next_seq;
        if let Some((spill, lease_end)) = self.lease.as_mut().filter(|(_, end)| seq >= *end) {
            // One fsync per lease; if it fails, a restart may reuse numbers
            // of this life, and the script would skip those new entries.
            match spill.renew(*lease_end) {
                Ok(end) => *lease_end = end,
                Err(error) => {
                    tracing::error!(%error, "cannot extend the sequence lease in the spill")
                }
            }
        }
        match outbox.try_send(Outgoing {
            seq,
            frame: entry.encode(),
        }) {
            Ok(()) => {
                self.next_seq += 1;
                self.metrics.buffered.inc();
                Some(seq)
            }
            Err(_) => {
                self.metrics.drop_entries("buffer_full", 1);
                None
            }
        }
    }

    /// Stops reading, and gives the writer up to `grace` to append what is
    /// buffered, or with a spill to append it or write it to disk (what is
    /// left in memory after it is counted as dropped).
    pub async fn close(mut self, grace: Duration) {
        self.reader.abort();
        self.outbox = None;
        if tokio::time::timeout(grace, &mut self.writer).await.is_err() {
            self.writer.abort();
            let left = self.metrics.buffered.get();
            tracing::warn!(
                entries = left,
                "Redis did not take the buffered entries in time; dropping them"
            );
            self.metrics
                .drop_entries("shutdown", usize::try_from(left).unwrap_or_default());
            self.metrics.buffered.set(0);
        }
    }
}

/// Connects, retrying with growing delays until it works.
async fn connect(
    server: &Server,
    response_timeout: Duration,
    metrics: &SharedMetrics,
    operation: &'static str,
) -> Connection {
    let mut backoff = Backoff::default();
    loop {
        match server.connect(response_timeout).await {
            Ok(connection) => return connection,
            Err(error) => {
                tracing::debug!(%error, operation, "Redis unreachable; retrying");
                metrics.error(operation);
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// Reads the log from its start, in order, forever; after a failure it
/// reconnects and goes on after the last entry it read. Ends when the
/// correlator stops listening.
async fn read(client: Server, keys: Keys, found: mpsc::Sender<LogEntry>, metrics: SharedMetrics) {
    let mut last = String::from("0-0");
    let mut connection: Option<Connection> = None;
    let options = redis::streams::StreamReadOptions::default()
        .count(READ_BATCH)
        .block(READ_BLOCK.as_millis() as usize);
    let mut backoff = Backoff::default();
    loop {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => connection
                .insert(connect(&client, READ_BLOCK + RESPONSE_TIMEOUT, &metrics, "read").await),
        };
        let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
            redis::AsyncCommands::xread_options(conn, &[&keys.log], &[&last], &options).await;
        match reply {
            Ok(reply) => {
                metrics.connected.set(1);
                backoff.reset();
                let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                for id in ids {
                    let entry = log_entry(&id);
                    last = id.id;
                    if found.send(entry).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "reading the shared log failed; retrying");
                metrics.error("read");
                connection = None;
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// Reads one stream entry; what cannot be read is a damaged entry, never a panic.
fn log_entry(id: &redis::streams::StreamId) -> LogEntry {
    let position = position(&id.id);
    let bytes = |field: &str| -> Option<Vec<u8>> {
        match id.map.get(field)? {
            Value::BulkString(bytes) => Some(bytes.clone()),
            Value::SimpleString(text) => Some(text.clone().into_bytes()),
            _ => None,
        }
    };
    let text = |field: &str| bytes(field).and_then(|b| String::from_utf8(b).ok());
    let origin = text("o").and_then(|o| u64::from_str_radix(&o, 16).ok());
    let seq = text("q").and_then(|q| q.parse().ok());
    let frame = bytes("e");
    match (origin, seq, frame) {
        (Some(origin), Some(seq), Some(frame)) => LogEntry {
            position,
            origin: Replica(origin),
            seq,
            entry: Entry::decode(&frame),
        },
        _ => LogEntry {
            position,
            origin: Replica(0),
            seq: 0,
            entry: Err(Damaged::Payload(format!(
                "log entry {} lacks its origin, sequence or record",
                id.id
            ))),
        },
    }
}

/// A stream id `ms-n` as one increasing number.
fn position(id: &str) -> u64 {
    let (ms, n) = id.split_once('-').unwrap_or((id, "0"));
    let ms: u64 = ms.parse().unwrap_or_default();
    let n: u64 = n.parse().unwrap_or_default();
    (ms << 20) | n.min((1 << 20) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_positions_increase_with_the_stream_id() {
        let ids = [
            "0-1",
            "1700000000000-0",
            "1700000000000-1",
            "1700000000001-0",
        ];
        let positions: Vec<u64> = ids.iter().map(|id| position(id)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    }

    #[test]
    fn every_key_of_a_namespace_carries_its_hash_tag() {
        let keys = Keys::new("shop-eu");
        assert_eq!(keys.log, "waybill:{shop-eu}:log");
        assert!(keys
            .mark(Replica(255))
            .starts_with("waybill:{shop-eu}:origin:"));
        assert!(keys.mark(Replica(255)).ends_with("00000000000000ff"));
    }

    #[test]
    fn a_log_entry_without_its_fields_is_damaged_not_a_panic() {
        let id = redis::streams::StreamId {
            id: "5-1".into(),
            ..Default::default()
        };
        let entry = log_entry(&id);
        assert!(entry.entry.is_err());
        assert_eq!(entry.position, position("5-1"));
    }
}

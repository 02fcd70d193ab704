//! The embedded durable store: a journal of accepted observations plus
//! snapshots, in one [redb](https://www.redb.org) file in the data
//! directory (`state.path`).
//!
//! The correlator is deterministic given the sequence of what it applies
//! (observations, and deadline ticks with their time), so the journal
//! records exactly that sequence ([`record::Entry`]) and recovery replays
//! it. Writes use group commit: the correlator gathers observations for
//! at most `state.commit_interval` (or `state.commit_batch` of them),
//! [`Durable::commit`]s them in one redb write transaction (one fsync),
//! and only then applies them. So an observation is *accepted* exactly
//! when its batch is durable, and the admin API, which reads the
//! correlator's state, never shows anything a crash could take back.
//!
//! Every `state.snapshot_interval` and at clean shutdown the correlator
//! writes a [`snapshot::Snapshot`] of its whole state at the current
//! journal position; the same write transaction deletes the journal up to
//! there. Recovery loads the snapshot and replays the journal after it.
//! TTL and capacity removal bound what a snapshot holds, and snapshots
//! bound the journal, so the file stays bounded (redb reuses freed pages;
//! the file does not shrink below its high-water mark).
//!
//! Damaged records (a checksum or version mismatch; redb's own commit
//! protocol already keeps torn writes out) are skipped and counted, never
//! trusted and never a panic. Layout (redb tables):
//!
//! | table | key | value |
//! |---|---|---|
//! | `journal` | sequence number (u64, increasing) | framed [`record::Entry`] |
//! | `snapshot` | chunk number | a slice of the framed [`snapshot::Snapshot`] |
//! | `meta` | `snapshot_seq` | last journal sequence the snapshot covers |
//! | `guard` | (route, idempotency key) | the guard's stored response ([`guard`]) |

pub mod guard;
pub mod record;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::config::EmbeddedConfig;
use record::Entry;
use snapshot::Snapshot;

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SNAPSHOT_SEQ: &str = "snapshot_seq";

/// The database file inside the data directory.
pub const FILE_NAME: &str = "state.redb";

/// Snapshot bytes per redb value. redb allocates pages in power-of-two
/// runs: a chunk just under 64 KiB (with its key and header) fits one run
/// of 64 KiB, where a 64 KiB or 4 MiB chunk took twice its size or more
/// (measured: 73 MB of snapshot grew the file by 190 MB in 64 KiB chunks,
/// 65 MB in 60 KiB chunks).
const SNAPSHOT_CHUNK: usize = 60 * 1024;

/// Commit durations: an fsync takes ~0.1 ms on a good SSD, tens of ms on
/// network disks.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The embedded store could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("state database: {0}")]
    Database(String),
}

fn db_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The store's self-instrumentation.
#[derive(Clone)]
struct DurableMetrics {
    commits: Counter,
    commit_failures: Counter,
    commit_duration: Histogram,
    journal_bytes: Gauge,
    snapshot_bytes: Gauge,
    snapshots: Counter,
    recovered: Counter,
    damaged: Counter,
}

impl DurableMetrics {
    fn new(registry: &mut Registry) -> Self {
        let metrics = DurableMetrics {
            commits: Counter::default(),
            commit_failures: Counter::default(),
            commit_duration: Histogram::new(COMMIT_BUCKETS),
            journal_bytes: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            snapshots: Counter::default(),
            recovered: Counter::default(),
            damaged: Counter::default(),
        };
        registry.register(
            "waybill_state_commits",
            "Durable commits of the journal (one fsync each, many observations per commit)",
            metrics.commits.clone(),
        );
        registry.register(
            "waybill_state_commit_failures",
            "Journal commits that failed; their observations were applied but are not durable",
            metrics.commit_failures.clone(),
        );
        registry.register(
            "waybill_state_commit_duration_seconds",
            "Time to make one batch of observations durable",
            metrics.commit_duration.clone(),
        );
        registry.register(
            "waybill_state_journal_bytes",
            "Bytes of journal records written since the last snapshot",
            metrics.journal_bytes.clone(),
        );
        registry.register(
            "waybill_state_snapshot_bytes",
            "Bytes of the latest snapshot",
            metrics.snapshot_bytes.clone(),
        );
        registry.register(
            "waybill_state_snapshots",
            "Snapshots written (each replaces the journal before it)",
            metrics.snapshots.clone(),
        );
        registry.register(
            "waybill_state_recovered_observations",
            "Journal records replayed at start (observations and deadline ticks)",
            metrics.recovered.clone(),
        );
        registry.register(
            "waybill_state_damaged_records",
            "Journal or snapshot records skipped at start because they were damaged or name things the config no longer declares",
            metrics.damaged.clone(),
        );
        metrics
    }
}

/// What [`Durable::recover`] found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The latest snapshot, if one was written.
    pub snapshot: Option<Snapshot>,
    /// Journal records after the snapshot, in order.
    pub entries: Vec<Entry>,
    /// Records that could not be read (skipped).
    pub damaged: usize,
}

/// The open embedded store. Owned by the correlator task; blocking disk
/// work runs on tokio's blocking pool.
pub struct Durable {
    db: Arc<Database>,
    file: PathBuf,
    /// The sequence number the next journal record gets.
    next_seq: u64,
    /// Bytes of journal written since the snapshot.
    journal_bytes: u64,
    metrics: DurableMetrics,
}

impl Durable {
    /// Opens (creating if needed) the store in `config.path` and registers
    /// its metrics. Fails if another process holds the file.
    pub fn open(config: &EmbeddedConfig, registry: &mut Registry) -> Result<Self, StoreError> {
        Self::open_dir(&config.path, registry)
    }

    /// [`Durable::open`] given only the directory.
    pub fn open_dir(dir: &Path, registry: &mut Registry) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let file = dir.join(FILE_NAME);
        let db = Database::create(&file).map_err(|source| StoreError::Open {
            path: file.clone(),
            source,
        })?;
        let write = db.begin_write().map_err(db_error)?;
        {
            write.open_table(JOURNAL).map_err(db_error)?;
            write.open_table(SNAPSHOT).map_err(db_error)?;
            write.open_table(META).map_err(db_error)?;
        }
        write.commit().map_err(db_error)?;
        Ok(Durable {
            db: Arc::new(db),
            file,
            next_seq: 1,
            journal_bytes: 0,
            metrics: DurableMetrics::new(registry),
        })
    }

    /// Reads the snapshot and the journal after it. Damaged journal records
    /// are skipped and counted; a damaged snapshot is an error (starting
    /// empty would silently lose everything it held).
    pub fn recover(&mut self) -> Result<Recovered, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let meta = read.open_table(META).map_err(db_error)?;
        let snapshot_seq = meta
            .get(SNAPSHOT_SEQ)
            .map_err(db_error)?
            .map(|v| v.value())
            .unwrap_or(0);
        let mut recovered = Recovered::default();
        let chunks = read.open_table(SNAPSHOT).map_err(db_error)?;
        if chunks.len().map_err(db_error)? > 0 {
            let mut bytes = Vec::new();
            for chunk in chunks.iter().map_err(db_error)? {
                let (_, value) = chunk.map_err(db_error)?;
                bytes.extend_from_slice(value.value());
            }
            self.metrics
                .snapshot_bytes
                .set(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
            let snapshot = Snapshot::decode(&bytes).map_err(|e| {
                StoreError::Database(format!(
                    "the snapshot in {} is damaged ({e}); move the file away to start empty",
                    self.file.display()
                ))
            })?;
            recovered.snapshot = Some(snapshot);
        }
        let journal = read.open_table(JOURNAL).map_err(db_error)?;
        let mut last = snapshot_seq;
        for item in journal.range((snapshot_seq + 1)..).map_err(db_error)? {
            let (seq, value) = item.map_err(db_error)?;
            last = last.max(seq.value());
            self.journal_bytes += value.value().len() as u64;
            match Entry::decode(value.value()) {
                Ok(entry) => recovered.entries.push(entry),
                Err(damage) => {
                    tracing::warn!(seq = seq.value(), %damage, "skipping a damaged journal record");
                    recovered.damaged += 1;
                }
            }
        }
        self.next_seq = last + 1;
        self.metrics
            .recovered
            .inc_by(recovered.entries.len() as u64);
        self.metrics.damaged.inc_by(recovered.damaged as u64);
        self.metrics
            .journal_bytes
            .set(i64::try_from(self.journal_bytes).unwrap_or(i64::MAX));
        Ok(recovered)
    }

    /// Counts records that were read but could not be applied.
    pub fn count_damaged(&self, n: usize) {
        self.metrics.damaged.inc_by(n as u64);
    }

    /// Makes `entries` durable in one write transaction (one fsync).
    pub async fn commit(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let frames: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        let first = self.next_seq;
        let db = Arc::clone(&self.db);
        let started = Instant::now();
        let written = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let write = db.begin_write().map_err(db_error)?;
            let mut bytes = 0u64;
            {
                let mut journal = write.open_table(JOURNAL).map_err(db_error)?;
                for (seq, frame) in (first..).zip(&frames) {
                    journal.insert(seq, frame.as_slice()).map_err(db_error)?;
                    bytes += frame.len() as u64;
                }
            }
            write.commit().map_err(db_error)?;
            Ok(bytes)
        })
        .await
        .map_err(db_error)
        .and_then(|r| r);
        match written {
            Ok(bytes) => {
                self.next_seq += entries.len() as u64;
                self.journal_bytes += bytes;
                self.metrics.commits.inc();
                self.metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .journal_bytes
                    .set(i64::try_from(self.journal_bytes).unwrap_or(i64::MAX));
                Ok(())
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                Err(e)
            }
        }
    }

    /// Writes `snapshot` as the state after every record committed so far
    /// and drops those records, in one write transaction. Returns the
    /// snapshot's size in bytes.
    pub async fn snapshot(&mut self, snapshot: &Snapshot) -> Result<usize, StoreError> {
        let bytes = snapshot.encode();
        let size = bytes.len();
        let covered = self.next_seq - 1;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let write = db.begin_write().map_err(db_error)?;
            {
                // Whole tables are dropped, not emptied record by record:
                // deleting 100k journal records one by one grew the file
                // tenfold (redb 2.6), dropping the table frees its pages at
                // once. The snapshot covers every committed record (the
                // correlator takes it between batches), so the whole
                // journal goes.
                write.delete_table(SNAPSHOT).map_err(db_error)?;
                let mut chunks = write.open_table(SNAPSHOT).map_err(db_error)?;
                for (i, chunk) in (0u64..).zip(bytes.chunks(SNAPSHOT_CHUNK)) {
                    chunks.insert(i, chunk).map_err(db_error)?;
                }
                write.delete_table(JOURNAL).map_err(db_error)?;
                write.open_table(JOURNAL).map_err(db_error)?;
                let mut meta = write.open_table(META).map_err(db_error)?;
                meta.insert(SNAPSHOT_SEQ, covered).map_err(db_error)?;
            }
            write.commit().map_err(db_error)
        })
        .await
        .map_err(db_error)??;
        self.journal_bytes = 0;
        self.metrics.snapshots.inc();
        self.metrics.journal_bytes.set(0);
        self.metrics
            .snapshot_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        Ok(size)
    }

    /// The idempotency guard's records in the same file, and the task
    /// that writes them (it ends once every [`guard::DurableGuard`] is
    /// dropped and their records are written).
    pub fn guard_records(
        &self,
        metrics: crate::proxy::GuardStateMetrics,
    ) -> Result<(guard::DurableGuard, tokio::task::JoinHandle<()>), StoreError> {
        guard::DurableGuard::open(Arc::clone(&self.db), metrics)
    }

    /// Bytes of journal written since the last snapshot.
    pub fn journal_bytes(&self) -> u64 {
        self.journal_bytes
    }

    /// Size of the database file on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;

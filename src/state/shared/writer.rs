//! The writer task: appends this sidecar's own entries to the shared log,
//! in order, through the [`super::APPEND`] script.
//!
//! - **Without a spill**, a batch that fails is retried (growing delays)
//!   until Redis takes it; meanwhile new entries wait in the memory buffer
//!   (`state.redis.buffer`), and beyond it the correlator drops them.
//! - **With a spill** ([`super::spill`]), a batch that fails goes to disk,
//!   and so does every entry that arrives while anything is on disk, so
//!   the memory buffer keeps emptying during an outage and order is kept:
//!   the spill is appended oldest first (each batch removed once Redis has
//!   it) before new entries go straight to Redis again. Entries
//!   that do not fit the spill's bound are dropped and counted. At
//!   shutdown what is on disk stays there for the next start.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::server::{Connection, Server};
use super::spill::{Spill, SpillError};
use super::{Keys, Outgoing, Replica, SharedMetrics, APPEND, APPEND_BATCH, RESPONSE_TIMEOUT};

/// Retry delays after a failure: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// A replica's mark outlives its last append by this much: long enough for
/// any re-send of a batch, short enough that marks of replicas that are
/// gone do not pile up.
const MARK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Growing delays between attempts.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(RETRY_FIRST)
    }
}

impl Backoff {
    /// The delay before the next attempt (each one twice the last, capped).
    pub(super) fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(RETRY_MAX);
        delay
    }

    pub(super) fn reset(&mut self) {
        self.0 = RETRY_FIRST;
    }
}

/// What the writer task needs.
pub(super) struct Writer {
    pub client: Server,
    pub keys: Keys,
    pub replica: Replica,
    pub max_log_entries: usize,
    pub metrics: SharedMetrics,
    pub pending: mpsc::Receiver<Outgoing>,
    pub spill: Option<Spill>,
}

/// One attempt at a time of appending a batch to the log.
struct Appender {
    client: Server,
    script: redis::Script,
    log: String,
    mark: String,
    replica: String,
    max_log_entries: usize,
    metrics: SharedMetrics,
    connection: Option<Connection>,
}

impl Appender {
    /// Appends `batch` (connecting first if needed): one attempt.
    async fn append(&mut self, batch: &[Outgoing]) -> Result<(), ()> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => match self.client.connect(RESPONSE_TIMEOUT).await {
                Ok(connection) => self.connection.insert(connection),
                Err(error) => {
                    tracing::debug!(%error, "Redis unreachable; will retry the append");
                    self.metrics.error("append");
                    return Err(());
                }
            },
        };
        let mut call = self.script.key(&self.log);
        call.key(&self.mark)
            .arg(&self.replica)
            .arg(self.max_log_entries)
            .arg(MARK_TTL.as_millis() as u64);
        for outgoing in batch {
            call.arg(outgoing.seq).arg(outgoing.frame.as_slice());
        }
        match call.invoke_async::<u64>(connection).await {
            Ok(added) => {
                self.metrics.connected.set(1);
                self.metrics.appended.inc_by(added);
                Ok(())
            }
            Err(error) => {
                tracing::debug!(%error, entries = batch.len(), "append to the shared log failed; will retry");
                self.metrics.error("append");
                self.connection = None;
                Err(())
            }
        }
    }
}

/// Appends own entries in order until the correlator closes the buffer
/// and everything in it is appended (or, with a spill, on disk).
pub(super) async fn write(writer: Writer) {
    let mut appender = Appender {
        client: writer.client,
        script: redis::Script::new(APPEND),
        log: writer.keys.log.clone(),
        mark: writer.keys.mark(writer.replica),
        replica: writer.replica.text(),
        max_log_entries: writer.max_log_entries,
        metrics: writer.metrics,
        connection: None,
    };
    match writer.spill {
        None => write_from_memory(writer.pending, appender).await,
        Some(spill) => {
            let mut spilling = Spilling {
                spill,
                waiting: 0,
                backoff: Backoff::default(),
            };
            spilling.write(writer.pending, &mut appender).await;
        }
    }
}

/// Without a spill: each batch is retried until it is in.
async fn write_from_memory(mut pending: mpsc::Receiver<Outgoing>, mut appender: Appender) {
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    while pending.recv_many(&mut batch, APPEND_BATCH).await > 0 {
        let mut backoff = Backoff::default();
        while appender.append(&batch).await.is_err() {
            tokio::time::sleep(backoff.next()).await;
        }
        appender.metrics.buffered.dec_by(batch.len() as i64);
        batch.clear();
    }
}

/// The writer with a spill.
struct Spilling {
    spill: Spill,
    /// Entries on disk.
    waiting: u64,
    backoff: Backoff,
}

/// Runs one blocking spill operation on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    spill: &Spill,
    operation: impl FnOnce(&Spill) -> Result<T, SpillError> + Send + 'static,
) -> Result<T, SpillError> {
    let spill = spill.clone();
    tokio::task::spawn_blocking(move || operation(&spill))
        .await
        .unwrap_or_else(|error| Err(SpillError::Database(error.to_string())))
}

impl Spilling {
    async fn write(&mut self, mut pending: mpsc::Receiver<Outgoing>, appender: &mut Appender) {
        self.waiting = match blocking(&self.spill, Spill::waiting).await {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::error!(%error, "cannot read the spill; its entries wait until it can be read");
                0
            }
        };
        appender.metrics.spill_entries.set(self.waiting as i64);
        if self.waiting > 0 {
            tracing::info!(
                entries = self.waiting,
                "entries spilled before this start wait for Redis"
            );
        }
        let mut retry_at = Instant::now();
        let mut open = true;
        let mut batch = Vec::with_capacity(APPEND_BATCH);
        loop {
            if self.waiting == 0 {
                if !open || pending.recv_many(&mut batch, APPEND_BATCH).await == 0 {
                    return;
                }
                let appended = appender.append(&batch).await;
                appender.metrics.buffered.dec_by(batch.len() as i64);
                if appended.is_err() {
                    self.spill_batch(std::mem::take(&mut batch), &appender.metrics)
                        .await;
                    retry_at = Instant::now() + self.backoff.next();
                }
                batch.clear();
                continue;
            }
            tokio::select! {
                received = pending.recv_many(&mut batch, APPEND_BATCH), if open => {
                    if received == 0 {
                        open = false;
                    } else {
                        appender.metrics.buffered.dec_by(batch.len() as i64);
                        self.spill_batch(std::mem::take(&mut batch), &appender.metrics)
                            .await;
                    }
                }
                () = tokio::time::sleep_until(retry_at) => {
                    if self.drain(appender).await {
                        self.backoff.reset();
                        retry_at = Instant::now();
                    } else if open {
                        retry_at = Instant::now() + self.backoff.next();
                    } else {
                        // Stopping with Redis away: the rest waits on disk.
                        return;
                    }
                }
            }
        }
    }

    /// Writes `batch` to disk; what does not fit is dropped and counted.
    async fn spill_batch(&mut self, batch: Vec<Outgoing>, metrics: &SharedMetrics) {
        let count = batch.len();
        let written = match blocking(&self.spill, move |spill| spill.push(&batch)).await {
            Ok(written) => written,
            Err(error) => {
                tracing::warn!(%error, entries = count, "cannot spill entries to disk; dropping them");
                metrics.drop_entries("spill_failed", count);
                return;
            }
        };
        if written < count {
            metrics.drop_entries("spill_full", count - written);
        }
        self.waiting += written as u64;
        metrics.spilled.inc_by(written as u64);
        metrics.spill_entries.set(self.waiting as i64);
    }

    /// Appends the oldest spilled batch and removes it from disk; false
    /// when Redis (or the disk) failed.
    async fn drain(&mut self, appender: &mut Appender) -> bool {
        let batch = match blocking(&self.spill, |spill| spill.oldest(APPEND_BATCH)).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "cannot read the spill; retrying");
                return false;
            }
        };
        let Some(last) = batch.last().map(|entry| entry.seq) else {
            self.waiting = 0;
            appender.metrics.spill_entries.set(0);
            return true;
        };
        if appender.append(&batch).await.is_err() {
            return false;
        }
        // Removal may fail or be cut short by a crash: the entries are then
        // sent again later, and the script skips them.
        let removed = blocking(&self.spill, move |spill| {
            spill.remove_through(last)?;
            spill.waiting()
        })
        .await;
        match removed {
            Ok(left) => {
                self.waiting = left;
                appender.metrics.spill_entries.set(left as i64);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot remove appended entries from the spill; retrying");
                false
            }
        }
    }
}

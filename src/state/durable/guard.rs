//! The idempotency guard's stored responses in the embedded store, so a
//! retry that arrives after a restart (even after `kill -9`) is answered
//! from the response its first request got instead of being forwarded again.
//!
//! One redb table in the same file as the journal, `guard`: key (route
//! name, idempotency key), value the guard's record (opaque here). It
//! mirrors the guard's memory: a record is inserted when a first response
//! is stored and removed when the guard expires or evicts it, so the table
//! holds at most `max_entries` records per route (plus, after a full queue
//! dropped a removal, stragglers that the next start removes).
//!
//! **When a record is durable.** Not before the first client gets its
//! response: that would hold every guarded response for an fsync, and
//! traffic never waits on storage. Instead the guard hands the record to
//! [`DurableGuard`]'s writer task, which commits whatever is queued in
//! one write transaction (one fsync; group commit, like the journal) as
//! soon as the previous commit is done. A retry needs the record only
//! after the client has seen (or given up on) the first answer and sent
//! again, which takes longer than a commit; a `kill -9` in the
//! milliseconds between the response and its commit loses that record,
//! and then the retry is forwarded. Once `waybill_guard_state_total{result="saved"}`
//! counted it, it survives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{db_error, StoreError};
use crate::proxy::{GuardState, GuardStateMetrics, Handoff, StateResult};

const GUARD: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("guard");

/// Most saves and removals per write transaction.
const BATCH: usize = 512;

/// What the writer does.
enum Op {
    Save {
        route: String,
        key: Bytes,
        record: Bytes,
    },
    Forget {
        route: String,
        key: Bytes,
    },
}

/// The guard's records in the embedded store: loaded at start, written by
/// a task of their own.
pub struct DurableGuard {
    /// What the table held at start, by route; each route takes its own
    /// once.
    loaded: Mutex<HashMap<String, Vec<(Bytes, Bytes)>>>,
    ops: Handoff<Op>,
}

impl DurableGuard {
    /// Reads the table and starts the writer; the writer ends when the
    /// last [`DurableGuard`] is dropped and what it was given is written.
    pub(super) fn open(
        db: Arc<Database>,
        metrics: GuardStateMetrics,
    ) -> Result<(DurableGuard, JoinHandle<()>), StoreError> {
        let write = db.begin_write().map_err(db_error)?;
        write.open_table(GUARD).map_err(db_error)?;
        write.commit().map_err(db_error)?;
        let mut loaded: HashMap<String, Vec<(Bytes, Bytes)>> = HashMap::new();
        let read = db.begin_read().map_err(db_error)?;
        let table = read.open_table(GUARD).map_err(db_error)?;
        for row in table.iter().map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            let (route, key) = key.value();
            loaded.entry(route.to_owned()).or_default().push((
                Bytes::copy_from_slice(key),
                Bytes::copy_from_slice(value.value()),
            ));
        }
        let (ops, pending) = Handoff::new(metrics.clone());
        let writer = tokio::spawn(write_ops(db, pending, metrics.clone()));
        let guard = DurableGuard {
            loaded: Mutex::new(loaded),
            ops,
        };
        Ok((guard, writer))
    }
}

impl GuardState for DurableGuard {
    fn load(&self, route: &str) -> Vec<(Bytes, Bytes)> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(route)
            .unwrap_or_default()
    }

    fn save(&self, route: &str, key: &Bytes, record: Bytes, _ttl: Duration) {
        self.ops.send(Op::Save {
            route: route.to_owned(),
            key: key.clone(),
            record,
        });
    }

    fn forget(&self, route: &str, key: &Bytes) {
        self.ops.send(Op::Forget {
            route: route.to_owned(),
            key: key.clone(),
        });
    }
}

/// Commits queued operations, everything queued at once (up to [`BATCH`]),
/// in order; counts each save as saved or failed.
async fn write_ops(db: Arc<Database>, mut pending: mpsc::Receiver<Op>, metrics: GuardStateMetrics) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let ops = std::mem::take(&mut batch);
        let saves = ops
            .iter()
            .filter(|op| matches!(op, Op::Save { .. }))
            .count() as u64;
        let db = Arc::clone(&db);
        let written = tokio::task::spawn_blocking(move || commit(&db, &ops))
            .await
            .map_err(db_error)
            .and_then(|r| r);
        match written {
            Ok(()) => metrics.count(StateResult::Saved, saves),
            Err(error) => {
                tracing::warn!(%error, saves, "idempotency guard: kept responses not written");
                metrics.count(StateResult::SaveFailed, saves);
            }
        }
    }
}

/// One write transaction (one fsync) for `ops`.
fn commit(db: &Database, ops: &[Op]) -> Result<(), StoreError> {
    let write = db.begin_write().map_err(db_error)?;
    {
        let mut table = write.open_table(GUARD).map_err(db_error)?;
        for op in ops {
            match op {
                Op::Save { route, key, record } => {
                    table
                        .insert((route.as_str(), key.as_ref()), record.as_ref())
                        .map_err(db_error)?;
                }
                Op::Forget { route, key } => {
                    table
                        .remove((route.as_str(), key.as_ref()))
                        .map_err(db_error)?;
                }
            }
        }
    }
    write.commit().map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn open(dir: &std::path::Path) -> (DurableGuard, JoinHandle<()>) {
        let db = Database::create(dir.join("guard.redb")).unwrap_or_else(|e| panic!("{e}"));
        let metrics = GuardStateMetrics::new(&mut Registry::default());
        DurableGuard::open(Arc::new(db), metrics).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Drops the store and waits until its writer wrote everything.
    async fn close((guard, writer): (DurableGuard, JoinHandle<()>)) {
        drop(guard);
        writer.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn saved_records_are_there_after_reopening_and_forgotten_ones_are_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ttl = Duration::from_secs(60);
        let store = open(dir.path());
        let k = |s: &'static str| Bytes::from_static(s.as_bytes());
        store.0.save("buy", &k("a"), k("record a"), ttl);
        store.0.save("buy", &k("b"), k("record b"), ttl);
        store.0.save("post", &k("a"), k("other route"), ttl);
        store.0.forget("buy", &k("b"));
        close(store).await;

        let store = open(dir.path());
        let mut buy = store.0.load("buy");
        buy.sort();
        assert_eq!(buy, vec![(k("a"), k("record a"))]);
        assert_eq!(store.0.load("post"), vec![(k("a"), k("other route"))]);
        assert!(store.0.load("buy").is_empty(), "each route loads once");
        close(store).await;
    }
}

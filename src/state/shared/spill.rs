//! The shared store's on-disk outage buffer (`state.redis.spill`): own
//! entries that could not be appended to the shared log wait here, in
//! order, in one [redb](https://www.redb.org) file, until Redis takes them.
//!
//! - **Survives a restart.** The file also keeps this sidecar's replica id
//!   and a *lease* on its sequence numbers, so a sidecar restarted during
//!   an outage appends what its previous life spilled under the same id,
//!   and everything it appends afterwards has higher sequence numbers: the
//!   Lua high-water mark (see [`super::APPEND`]) then makes any re-send
//!   harmless and never skips a new entry.
//! - **Lease.** Starting takes the next [`LEASE`] sequence numbers (one
//!   write); the next lease is taken when they run out. Numbers a life did
//!   not use are skipped, never reused. Redis's script reads them as
//!   doubles (exact to 2^53): 2^33 restarts.
//! - **Bounded** by `max_entries`; beyond it the writer drops and counts.
//!
//! Every method is a blocking disk operation (one fsync per write): the
//! writer calls them on tokio's blocking pool.
//!
//! | table | key | value |
//! |---|---|---|
//! | `spill` | sequence number | framed [`crate::state::durable::record::Entry`] |
//! | `meta` | `replica`, `lease` | the replica id; the end of the sequence lease |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::config::SpillConfig;

use super::{Outgoing, Replica};

const SPILL: TableDefinition<u64, &[u8]> = TableDefinition::new("spill");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REPLICA: &str = "replica";
const LEASE_END: &str = "lease";

/// The spill file inside its directory.
pub const FILE_NAME: &str = "spill.redb";

/// Sequence numbers taken per lease: one write per this many entries.
pub const LEASE: u64 = 1 << 20;

/// The spill could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("state.redis.spill.path {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state.redis.spill {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("state.redis.spill: {0}")]
    Database(String),
}

fn db_error(e: impl std::fmt::Display) -> SpillError {
    SpillError::Database(e.to_string())
}

/// The open spill file; cheap to clone (one database).
#[derive(Clone)]
pub struct Spill {
    db: Arc<Database>,
    max_entries: usize,
}

/// Who this sidecar is in the shared log, as the spill remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub replica: Replica,
    /// The first sequence number this life may use.
    pub next_seq: u64,
    /// Sequence numbers below this are leased to this life.
    pub lease_end: u64,
}

impl Spill {
    /// Opens (creating if needed) the spill in `config.path`. Fails if
    /// another process holds the file.
    pub fn open(config: &SpillConfig) -> Result<Spill, SpillError> {
        Self::open_dir(&config.path, config.max_entries)
    }

    fn open_dir(dir: &Path, max_entries: usize) -> Result<Spill, SpillError> {
        std::fs::create_dir_all(dir).map_err(|source| SpillError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let file = dir.join(FILE_NAME);
        let db = Database::create(&file).map_err(|source| SpillError::Open {
            path: file.clone(),
            source,
        })?;
        let spill = Spill {
            db: Arc::new(db),
            max_entries,
        };
        let write = spill.db.begin_write().map_err(db_error)?;
        write.open_table(SPILL).map_err(db_error)?;
        write.open_table(META).map_err(db_error)?;
        write.commit().map_err(db_error)?;
        Ok(spill)
    }

    /// The replica id kept in the file (`fresh` is stored when there is
    /// none yet) and a new lease of sequence numbers, above every number a
    /// previous life could have used.
    pub fn identity(&self, fresh: Replica) -> Result<Identity, SpillError> {
        let write = self.db.begin_write().map_err(db_error)?;
        let identity = {
            let mut meta = write.open_table(META).map_err(db_error)?;
            let replica = match meta.get(REPLICA).map_err(db_error)? {
                Some(id) => Replica(id.value()),
                None => fresh,
            };
            // Numbers start at 1: the script's mark starts at 0.
            let next_seq = meta
                .get(LEASE_END)
                .map_err(db_error)?
                .map_or(1, |end| end.value());
            let lease_end = next_seq.saturating_add(LEASE);
            meta.insert(REPLICA, replica.0).map_err(db_error)?;
            meta.insert(LEASE_END, lease_end).map_err(db_error)?;
            Identity {
                replica,
                next_seq,
                lease_end,
            }
        };
        write.commit().map_err(db_error)?;
        Ok(identity)
    }

    /// Takes the lease after `lease_end`; returns its end.
    pub fn renew(&self, lease_end: u64) -> Result<u64, SpillError> {
        let end = lease_end.saturating_add(LEASE);
        let write = self.db.begin_write().map_err(db_error)?;
        write
            .open_table(META)
            .map_err(db_error)?
            .insert(LEASE_END, end)
            .map_err(db_error)?;
        write.commit().map_err(db_error)?;
        Ok(end)
    }

    /// Entries waiting.
    pub fn waiting(&self) -> Result<u64, SpillError> {
        let read = self.db.begin_read().map_err(db_error)?;
        read.open_table(SPILL)
            .map_err(db_error)?
            .len()
            .map_err(db_error)
    }

    /// Writes as many of `entries` (in increasing sequence order, above
    /// every entry already here) as fit the bound, durably, in one
    /// commit; returns how many were written (the rest did not fit).
    pub(super) fn push(&self, entries: &[Outgoing]) -> Result<usize, SpillError> {
        let write = self.db.begin_write().map_err(db_error)?;
        let written = {
            let mut table = write.open_table(SPILL).map_err(db_error)?;
            let held = usize::try_from(table.len().map_err(db_error)?).unwrap_or(usize::MAX);
            let room = self.max_entries.saturating_sub(held).min(entries.len());
            for entry in &entries[..room] {
                table
                    .insert(entry.seq, entry.frame.as_slice())
                    .map_err(db_error)?;
            }
            room
        };
        write.commit().map_err(db_error)?;
        Ok(written)
    }

    /// The oldest `count` entries, in order.
    pub(super) fn oldest(&self, count: usize) -> Result<Vec<Outgoing>, SpillError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = read.open_table(SPILL).map_err(db_error)?;
        let mut entries = Vec::with_capacity(count);
        for item in table.iter().map_err(db_error)?.take(count) {
            let (seq, frame) = item.map_err(db_error)?;
            entries.push(Outgoing {
                seq: seq.value(),
                frame: frame.value().to_vec(),
            });
        }
        Ok(entries)
    }

    /// Removes every entry up to and including `seq` (they are in the log).
    pub fn remove_through(&self, seq: u64) -> Result<(), SpillError> {
        let write = self.db.begin_write().map_err(db_error)?;
        write
            .open_table(SPILL)
            .map_err(db_error)?
            .retain_in(..=seq, |_, _| false)
            .map_err(db_error)?;
        write.commit().map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: std::ops::RangeInclusive<u64>) -> Vec<Outgoing> {
        seqs.map(|seq| Outgoing {
            seq,
            frame: format!("entry {seq}").into_bytes(),
        })
        .collect()
    }

    #[test]
    fn a_reopened_spill_keeps_its_entries_its_replica_and_never_reuses_a_sequence_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = {
            let spill = Spill::open_dir(dir.path(), 100).expect("open");
            let identity = spill.identity(Replica(7)).expect("identity");
            assert_eq!(spill.push(&entries(1..=3)).expect("push"), 3);
            identity
        };
        let spill = Spill::open_dir(dir.path(), 100).expect("reopen");
        let second = spill.identity(Replica(99)).expect("identity");
        assert_eq!(second.replica, first.replica, "the replica id is kept");
        assert!(
            second.next_seq >= first.lease_end,
            "{second:?} may reuse numbers of {first:?}"
        );
        let renewed = spill.renew(second.lease_end).expect("renew");
        drop(spill);
        let spill = Spill::open_dir(dir.path(), 100).expect("reopen");
        let third = spill.identity(Replica(5)).expect("identity");
        assert!(
            third.next_seq >= renewed,
            "{third:?} after a lease to {renewed}"
        );
        assert_eq!(spill.oldest(10).expect("oldest"), entries(1..=3));
    }

    #[test]
    fn entries_leave_in_order_and_beyond_the_bound_nothing_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spill = Spill::open_dir(dir.path(), 5).expect("open");
        assert_eq!(spill.push(&entries(1..=3)).expect("push"), 3);
        assert_eq!(spill.push(&entries(4..=9)).expect("push"), 2, "room for 2");
        assert_eq!(spill.waiting().expect("waiting"), 5);
        assert_eq!(spill.oldest(2).expect("oldest"), entries(1..=2));
        spill.remove_through(2).expect("remove");
        assert_eq!(spill.oldest(10).expect("oldest"), entries(3..=5));
        assert_eq!(spill.push(&entries(6..=6)).expect("push"), 1);
        assert_eq!(spill.waiting().expect("waiting"), 4);
    }
}

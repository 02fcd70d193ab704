//! The idempotency guard's stored responses in Redis, so every replica of
//! a namespace answers a retry that one of them forwarded.
//!
//! - **Keys.** `waybill:{<namespace>}:guard:<route>:<idempotency key>`,
//!   the guard's record as value, written with `SET … PX <window>`: Redis
//!   expires them, so nothing here bounds or removes them (the hash tag puts
//!   them in the namespace's slot, beside its log).
//! - **Saves** go to a writer task through a bounded queue (never waiting;
//!   beyond it dropped and counted), which sends what is queued as one
//!   pipeline. A failed save is counted and not retried: the response
//!   still answers from this replica's memory.
//! - **Lookups and claims.** When a key is not in a replica's memory, the
//!   guard asks here before forwarding: one script call ([`CLAIM`]),
//!   bounded by [`LOOKUP_TIMEOUT`] (waiting for a connection being made
//!   counts in it), returns the record, or another replica's claim marker
//!   (its request is in flight: the guard asks again shortly, until its
//!   request's deadline), or sets this replica's marker (`PX` the request's
//!   time left plus `CLAIM_SLACK`) and returns nothing: forward. Saving
//!   the record replaces the marker; a first request that stores nothing
//!   releases it ([`RELEASE`] deletes it only if it is still this
//!   replica's). Without a connection in time, or on an error or timeout,
//!   the answer is [`Fetched::Failed`] and the request is forwarded:
//!   traffic never fails because Redis is down. A lost connection is
//!   re-established in the background.
//! - Markers start with a zero byte; records with their version (never
//!   zero), so the two are told apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::server::{Connection, Server};
use super::RESPONSE_TIMEOUT;
use crate::proxy::{Fetch, Fetched, GuardState, GuardStateMetrics, Handoff, StateResult};

/// Returns the record or marker at `KEYS[1]`; when there is none, sets
/// `ARGV[1]` (this replica's marker) with expiry `ARGV[2]` ms and returns nil.
pub const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes `KEYS[1]` if it still holds `ARGV[1]` (this replica's marker).
pub const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A claim outlives its request's deadline by this much: time for the
/// response body to reach the client and the record to be saved. A replica
/// that dies while holding a claim delays others by at most their own
/// deadline (they then forward).
const CLAIM_SLACK: Duration = Duration::from_secs(5);

/// Longest a lookup waits for Redis before the request is forwarded: far
/// above a healthy round trip (well under 1 ms in one network), short
/// enough that a struggling Redis adds little to a guarded request.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(200);
/// Most saves per pipeline.
const BATCH: usize = 256;

/// A write on its way to Redis.
enum Op {
    /// `SET key record PX ttl`.
    Save {
        key: Vec<u8>,
        record: Bytes,
        ttl: Duration,
    },
    /// Drop this replica's claim on `key`.
    Release { key: Vec<u8> },
}

/// One connection, shared by lookups and the writer, re-established in
/// the background when lost.
struct Link {
    server: Server,
    /// The current connection; a lookup that finds none waits here (within
    /// its time bound) for the one being made.
    connection: watch::Sender<Option<Connection>>,
    connecting: AtomicBool,
}

impl Link {
    fn current(&self) -> Option<Connection> {
        self.connection.borrow().clone()
    }

    /// The current connection, or the next one made.
    async fn ready(self: &Arc<Self>) -> Option<Connection> {
        if let Some(connection) = self.current() {
            return Some(connection);
        }
        let mut made = self.connection.subscribe();
        self.reconnect();
        let connection = made.wait_for(Option::is_some).await.ok()?;
        connection.clone()
    }

    /// Drops the connection and starts connecting again (once at a time).
    fn lost(self: &Arc<Self>) {
        self.connection.send_replace(None);
        self.reconnect();
    }

    fn reconnect(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = Arc::clone(self);
        tokio::spawn(async move {
            match link.server.connect(RESPONSE_TIMEOUT).await {
                Ok(connection) => {
                    link.connection.send_replace(Some(connection));
                }
                Err(error) => {
                    tracing::debug!(%error, "idempotency guard: Redis unreachable");
                }
            }
            link.connecting.store(false, Ordering::Release);
        });
    }
}

/// The guard's records in Redis.
pub struct SharedGuard {
    /// `waybill:{<namespace>}:guard:`
    prefix: String,
    link: Arc<Link>,
    /// This replica's claim marker: a zero byte, then random bytes.
    marker: Arc<[u8]>,
    ops: Handoff<Op>,
}

impl SharedGuard {
    /// Connects (in the background) and starts the writer.
    pub(super) fn start(
        server: Server,
        namespace: &str,
        replica: super::Replica,
        metrics: GuardStateMetrics,
    ) -> Self {
        let link = Arc::new(Link {
            server,
            connection: watch::Sender::new(None),
            connecting: AtomicBool::new(false),
        });
        link.reconnect();
        let (ops, pending) = Handoff::new(metrics.clone());
        let mut marker = vec![0u8];
        marker.extend_from_slice(replica.to_string().as_bytes());
        let marker: Arc<[u8]> = marker.into();
        tokio::spawn(write(
            Arc::clone(&link),
            Arc::clone(&marker),
            pending,
            metrics.clone(),
        ));
        SharedGuard {
            prefix: format!("waybill:{{{namespace}}}:guard:"),
            link,
            marker,
            ops,
        }
    }

    /// The Redis key of `(route, key)`.
    fn key(&self, route: &str, key: &[u8]) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.prefix.len() + route.len() + 1 + key.len());
        name.extend_from_slice(self.prefix.as_bytes());
        name.extend_from_slice(route.as_bytes());
        name.push(b':');
        name.extend_from_slice(key);
        name
    }
}

impl GuardState for SharedGuard {
    fn fetch(&self, route: &str, key: &Bytes, hold: Duration) -> Option<Fetch> {
        let link = Arc::clone(&self.link);
        let name = self.key(route, key);
        let marker = Arc::clone(&self.marker);
        let hold = u64::try_from((hold + CLAIM_SLACK).as_millis()).unwrap_or(u64::MAX);
        let lookup = async move {
            let mut connection = link.ready().await?;
            let script = redis::Script::new(CLAIM);
            let mut call = script.key(&name);
            call.arg(&*marker).arg(hold);
            let found = call.invoke_async::<Option<Vec<u8>>>(&mut connection).await;
            Some(match found {
                Ok(None) => Fetched::Claimed,
                // Our own marker: an earlier claim of this replica that
                // was not released yet; the key is ours again.
                Ok(Some(value)) if *value == *marker => Fetched::Claimed,
                Ok(Some(value)) if value.first() == Some(&0) => Fetched::InFlight,
                Ok(Some(record)) => Fetched::Found(Bytes::from(record)),
                Err(error) => {
                    tracing::debug!(%error, "idempotency guard: Redis lookup failed; forwarding");
                    if error.is_io_error() || error.is_connection_dropped() {
                        link.lost();
                    }
                    Fetched::Failed
                }
            })
        };
        Some(Box::pin(async move {
            tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
                .await
                .ok()
                .flatten()
                .unwrap_or(Fetched::Failed)
        }))
    }

    fn save(&self, route: &str, key: &Bytes, record: Bytes, ttl: Duration) {
        self.ops.send(Op::Save {
            key: self.key(route, key),
            record,
            ttl,
        });
    }

    fn release(&self, route: &str, key: &Bytes) {
        self.ops.send(Op::Release {
            key: self.key(route, key),
        });
    }
}

/// Sends queued saves (`SET … PX`) and releases, in order, as one
/// pipeline per batch; counts each save as saved or failed (not retried).
async fn write(
    link: Arc<Link>,
    marker: Arc<[u8]>,
    mut pending: mpsc::Receiver<Op>,
    metrics: GuardStateMetrics,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch
            .iter()
            .filter(|op| matches!(op, Op::Save { .. }))
            .count() as u64;
        let mut connection = match link.current() {
            Some(connection) => connection,
            None => match link.server.connect(RESPONSE_TIMEOUT).await {
                Ok(connection) => {
                    link.connection.send_replace(Some(connection.clone()));
                    connection
                }
                Err(error) => {
                    tracing::debug!(%error, saves = n, "idempotency guard: Redis unreachable; responses kept in memory only");
                    metrics.count(StateResult::SaveFailed, n);
                    batch.clear();
                    continue;
                }
            },
        };
        let mut pipe = redis::pipe();
        for op in &batch {
            match op {
                Op::Save { key, record, ttl } => {
                    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(record.as_ref())
                        .arg("PX")
                        .arg(ttl)
                        .ignore();
                }
                Op::Release { key } => {
                    pipe.cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(key)
                        .arg(&*marker)
                        .ignore();
                }
            }
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) => metrics.count(StateResult::Saved, n),
            Err(error) => {
                tracing::debug!(%error, saves = n, "idempotency guard: saving to Redis failed; responses kept in memory only");
                metrics.count(StateResult::SaveFailed, n);
                link.lost();
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_key_carries_the_namespace_hash_tag_then_route_and_key() {
        let info = redis::IntoConnectionInfo::into_connection_info("redis://127.0.0.1:1")
            .unwrap_or_else(|e| panic!("{e}"));
        let server = Server::new(info, false).unwrap_or_else(|e| panic!("{e}"));
        let metrics = GuardStateMetrics::new(&mut prometheus_client::registry::Registry::default());
        let guard =
            SharedGuard::start(server, "shop-eu", crate::state::shared::Replica(1), metrics);
        assert_eq!(
            guard.key("carrier.buy", b"k-1"),
            b"waybill:{shop-eu}:guard:carrier.buy:k-1".to_vec()
        );
    }
}

//! How the shared store reaches Redis: one server (standalone, or a
//! primary behind a proxy) or a Redis Cluster (`state.redis.cluster`),
//! with the password applied, behind one connection type. Every key of a
//! namespace carries its hash tag, so in a cluster each script and each
//! read touches one slot.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionInfo, Pipeline, RedisFuture, Value};

/// Longest wait for a connection (TCP, TLS, AUTH).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
#[derive(Clone)]
pub(super) enum Server {
    Single(Client),
    /// A seed node of the cluster; the client learns the others.
    Cluster(ConnectionInfo),
}

impl Server {
    pub(super) fn new(info: ConnectionInfo, cluster: bool) -> redis::RedisResult<Server> {
        if cluster {
            // Fails early on a URL the cluster client cannot use.
            ClusterClientBuilder::new(vec![info.clone()]).build()?;
            Ok(Server::Cluster(info))
        } else {
            Ok(Server::Single(Client::open(info)?))
        }
    }

    /// A new connection whose replies may take up to `response_timeout`.
    pub(super) async fn connect(
        &self,
        response_timeout: Duration,
    ) -> redis::RedisResult<Connection> {
        match self {
            Server::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Connection::Single)
            }
            Server::Cluster(seed) => {
                let mut builder = ClusterClientBuilder::new(vec![seed.clone()])
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .retries(1);
                if let Some(password) = seed.redis_settings().password() {
                    builder = builder.password(password);
                }
                builder
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Connection::Cluster)
            }
        }
    }
}

/// A connection to one server or to the cluster (a clone shares it).
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

//! The connection to one instance: redis-rs's `ConnectionManager`, or — for an endpoint whose
//! certificate names another host than the one dialled (`sslHost=`, e.g. an Azure cache
//! behind a private endpoint's IP address) — a connection that dials the endpoint's address
//! and checks the certificate against that name. redis-rs checks the certificate against the
//! host it resolves, and its manager takes no resolver, so the second kind resolves the name
//! to the endpoint's address itself and reconnects after a dropped connection on its own.
//!
//! Each link counts its connections (its epoch, see [`Link::epoch`]): what was learned on one
//! connection — how long the instance has been up (start.rs) — holds only while it lives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::io::AsyncDNSResolver;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value,
};
use tokio::sync::Mutex;

use super::cluster_link::{self, Cluster};
use super::sentinel::SentinelLink;

/// A connection to one instance (or, `Cluster`, to a Redis Cluster: see cluster.rs); clones
/// share it.
#[derive(Clone)]
pub(crate) enum Link {
    /// The manager, and its epoch.
    Managed(ConnectionManager, Arc<AtomicU64>),
    Named(Arc<Named>),
    /// A Sentinel-managed primary, looked up again after a failover (sentinel.rs).
    Sentinel(Arc<SentinelLink>),
    Cluster(Arc<Cluster>),
}

/// Dials `address` for a client whose host is the name its certificate must carry.
pub(crate) struct Named {
    client: Client,
    config: AsyncConnectionConfig,
    current: Mutex<Option<MultiplexedConnection>>,
    /// Counts the connections made.
    epoch: Arc<AtomicU64>,
}

impl Named {
    /// `client`'s host is the certificate's name; `host:port` is where to connect. Connects
    /// on first use.
    pub(crate) fn new(
        client: Client,
        config: AsyncConnectionConfig,
        host: &str,
        port: u16,
    ) -> Named {
        let at = Dial {
            host: host.to_string(),
            port,
        };
        Named {
            client,
            config: config.set_dns_resolver(at),
            current: Mutex::new(None),
            epoch: Arc::default(),
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        // Before the connection exists, so that no call on it can see the old epoch.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// After a dead connection, the next call connects anew.
    async fn forget_if_dead<T>(&self, answer: &redis::RedisResult<T>) {
        if answer.as_ref().is_err_and(|e| e.is_unrecoverable_error()) {
            *self.current.lock().await = None;
        }
    }

    /// The settings of a connection to this endpoint (timeouts, the resolver).
    pub(crate) fn config(&self) -> &AsyncConnectionConfig {
        &self.config
    }
}

/// Opens a RESP3 connection like `client`'s that sends its pushes (pub/sub messages) to
/// `pushes`: the notifications' connection (see hub.rs).
pub(crate) async fn push_connection(
    client: &Client,
    config: AsyncConnectionConfig,
    pushes: impl redis::aio::AsyncPushSender,
) -> redis::RedisResult<MultiplexedConnection> {
    let info = client.get_connection_info().clone();
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = Client::open(info.set_redis_settings(resp3))?;
    let config = config.set_push_sender(pushes);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl Link {
    /// A link that keeps its connection with redis-rs's connection manager.
    pub(crate) fn managed(manager: ConnectionManager) -> Link {
        Link::Managed(manager, Arc::default())
    }

    /// Which connection of this link's calls go out on: a call that answered, and whose link
    /// shows the same epoch before it was sent and after it answered, went out on the same
    /// connection as every other call between those two readings.
    ///
    /// The manager replaces its connection only after a call on it failed with an I/O error
    /// or a dropped connection (RESP2 connections, as these are: no disconnection pushes), and
    /// hands that error to its caller — here — in the same poll; every such error moves the
    /// epoch on, before any call can have been answered on the new connection. The other kind
    /// moves it on when it connects anew.
    pub(crate) fn epoch(&self) -> &Arc<AtomicU64> {
        match self {
            Link::Managed(_, epoch) => epoch,
            Link::Named(named) => &named.epoch,
            // Their connections change behind the link (a failover, a slot's new primary):
            // nothing learned on one is trusted, as every reading is a new epoch. (Only
            // quorum mode asks, and it is made of standalone instances.)
            Link::Sentinel(_) | Link::Cluster(_) => {
                UNTRACKED.fetch_add(1, Ordering::SeqCst);
                &UNTRACKED
            }
        }
    }
}

/// The epoch of links that do not track their connections.
static UNTRACKED: std::sync::LazyLock<Arc<AtomicU64>> = std::sync::LazyLock::new(Arc::default);

/// Moves the epoch on after an error that may have made the manager reconnect (anything but an
/// answer from the server).
fn note<T>(epoch: &AtomicU64, answer: &redis::RedisResult<T>) {
    if answer.as_ref().is_err_and(may_reconnect) {
        epoch.fetch_add(1, Ordering::SeqCst);
    }
}

fn may_reconnect(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_unrecoverable_error()
        || !matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Managed(manager, epoch) => Box::pin(async move {
                let answer = manager.req_packed_command(cmd).await;
                note(epoch, &answer);
                if !answer.as_ref().is_err_and(is_stale_refusal) {
                    return answer;
                }
                let answer = manager.req_packed_command(cmd).await;
                note(epoch, &answer);
                answer
            }),
            Link::Named(named) => Box::pin(async move {
                let answer = named.connection().await?.req_packed_command(cmd).await;
                named.forget_if_dead(&answer).await;
                answer
            }),
            Link::Sentinel(primary) => primary.command(cmd),
            Link::Cluster(cluster) => cluster_link::request(cluster, cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Managed(manager, epoch) => Box::pin(async move {
                let answer = manager.req_packed_commands(pipeline, offset, count).await;
                note(epoch, &answer);
                if !answer.as_ref().is_err_and(is_stale_refusal) {
                    return answer;
                }
                let answer = manager.req_packed_commands(pipeline, offset, count).await;
                note(epoch, &answer);
                answer
            }),
            Link::Named(named) => Box::pin(async move {
                let mut connection = named.connection().await?;
                let answer = connection
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                named.forget_if_dead(&answer).await;
                answer
            }),
            Link::Sentinel(primary) => primary.commands(pipeline, offset, count),
            Link::Cluster(cluster) => {
                cluster_link::request_pipeline(cluster, pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Managed(manager, _) => manager.get_db(),
            Link::Named(named) => named.client.get_connection_info().redis_settings().db(),
            Link::Sentinel(primary) => primary.database(),
            Link::Cluster(_) => 0,
        }
    }
}

/// A refused connection may be an old answer: the connection manager keeps its last failed
/// connection attempt — made while the instance was down — until a call fails on it, and only
/// then starts a new one. Without one more try, an instance that was down (at connect, say)
/// stayed "connection refused" for one more call after it came back: with a renewal every few
/// seconds, seconds of an instance counted as down. While it is still down, the second try is
/// refused too.
fn is_stale_refusal(error: &redis::RedisError) -> bool {
    error.is_connection_refusal()
}

/// Resolves any name to one endpoint's address.
struct Dial {
    host: String,
    port: u16,
}

impl AsyncDNSResolver for Dial {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _name: &'b str,
        _port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((self.host.as_str(), self.port)).await?;
            let addresses: Vec<SocketAddr> = addresses.collect();
            Ok(Box::new(addresses.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

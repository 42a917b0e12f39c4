//! The connection to a Redis Cluster (see cluster.rs): redis-rs's cluster client, which routes
//! every command by its first key to the primary owning the key's slot, follows MOVED and ASK,
//! and refreshes its slot map after a failover; SCAN on every primary; the release
//! notifications' connection (sharded pub/sub on Redis 7+).

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
};
use redis::{Cmd, ConnectionInfo, EntraIdCredentialsProvider, RedisFuture, Value};

use super::connect::tcp_settings;

/// Retries of one call, far more than fit in `SyncTimeout` at the longest wait between them
/// (the timeout, not the count, ends a call's retries).
const RETRIES: u32 = 1000;

/// A connection to a whole cluster; clones share it.
pub(crate) struct Cluster {
    connection: ClusterConnection,
    recipe: Recipe,
    /// Whether releases are announced with sharded pub/sub (Redis 7+).
    pub(crate) sharded: bool,
}

/// What a cluster client is built from: the seed nodes, the timeouts, TLS roots and the
/// Entra ID provider (a second client, for the notifications, is built the same way).
pub(crate) struct Recipe {
    pub(crate) seeds: Vec<ConnectionInfo>,
    pub(crate) connect_timeout: Duration,
    pub(crate) sync_timeout: Duration,
    pub(crate) roots: Option<Vec<u8>>,
    pub(crate) credentials: Option<EntraIdCredentialsProvider>,
}

impl Recipe {
    fn builder(&self) -> ClusterClientBuilder {
        let mut builder = ClusterClientBuilder::new(self.seeds.clone())
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.sync_timeout)
            // During a failover or a migration a call is retried (connection refused,
            // CLUSTERDOWN, TRYAGAIN, MOVED) until the slot's primary answers: as often as
            // fits in SyncTimeout, which bounds the whole call, retries and redirections
            // included.
            .overall_response_timeout(Some(self.sync_timeout))
            .retries(RETRIES)
            .min_retry_wait(20)
            .max_retry_wait(250)
            // Each wait between 20 and 250 ms, not growing: redis-rs computes the growth as
            // base^retry × factor in u64, which overflows (a panic in a debug build) long
            // before the thousandth retry with the default base of 2.
            .retry_wait_formula(250, 1)
            .tcp_settings(tcp_settings());
        if let Some(roots) = &self.roots {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.clone()),
            });
        }
        if let Some(credentials) = &self.credentials {
            builder = builder.set_credentials_provider(credentials.clone());
        }
        builder
    }
}

impl Cluster {
    /// Connects through the recipe's seed nodes; answers the cluster (sharded pub/sub when a
    /// node says Redis 7 or later) and every primary's memory policy, for the eviction check.
    pub(crate) async fn connect(
        recipe: Recipe,
    ) -> redis::RedisResult<(Cluster, Vec<(String, u64, String)>)> {
        let client = recipe.builder().build()?;
        let mut connection = client.get_async_connection().await?;
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let server = connection.route_command(info, random).await?;
        let policies = memory_policies(&mut connection).await;
        let sharded = redis::from_redis_value::<String>(server)
            .ok()
            .and_then(|text| major_version(&text))
            .is_some_and(|major| major >= 7);
        let cluster = Cluster {
            connection,
            recipe,
            sharded,
        };
        Ok((cluster, policies))
    }

    /// A RESP3 connection to the cluster that hands its pushes to `pushes`: the release
    /// notifications' subscriptions (see hub.rs), which redis-rs keeps on the node that owns
    /// each channel's slot and subscribes again after a reconnection.
    pub(crate) async fn push_connection(
        &self,
        pushes: impl redis::aio::AsyncPushSender,
    ) -> redis::RedisResult<Subscriber> {
        let client = self
            .recipe
            .builder()
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?;
        let connection = client.get_async_connection().await?;
        Ok(Subscriber::Cluster {
            connection,
            sharded: self.sharded,
        })
    }

    /// The addresses (`host`, `port`) of every primary, from CLUSTER SHARDS' older sibling
    /// CLUSTER SLOTS (which every version since 3.0 answers).
    pub(crate) async fn primaries(&self) -> redis::RedisResult<Vec<(String, u16)>> {
        let mut connection = self.connection.clone();
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let ranges: Vec<Vec<Value>> = slots.query_async(&mut connection).await?;
        let mut primaries = Vec::new();
        for range in ranges {
            let Some(Value::Array(primary)) = range.get(2) else {
                continue;
            };
            let host: Option<String> = primary
                .first()
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            let port: Option<u16> = primary
                .get(1)
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            if let (Some(host), Some(port)) = (host, port) {
                if !primaries.contains(&(host.clone(), port)) {
                    primaries.push((host, port));
                }
            }
        }
        Ok(primaries)
    }

    /// Runs `command` on the node at `host:port`.
    pub(crate) async fn on_node(
        &self,
        host: &str,
        port: u16,
        command: Cmd,
    ) -> redis::RedisResult<Value> {
        let mut connection = self.connection.clone();
        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_string(),
            port,
        });
        connection.route_command(command, at).await
    }

    /// Every key matching `pattern` on every primary (SCAN on each, merged), skipping names
    /// that are not UTF-8. A primary that fails fails the whole scan: its leases would be
    /// missing.
    pub(crate) async fn scan(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let primaries = self.primaries().await?;
        let scans = primaries.iter().map(|(host, port)| {
            super::nodes::scan_pages(pattern, move |page| async move {
                let answer = self.on_node(host, *port, page).await?;
                Ok::<_, redis::RedisError>(redis::from_redis_value(answer)?)
            })
        });
        let mut keys: Vec<String> = futures_util::future::try_join_all(scans)
            .await?
            .into_iter()
            .flatten()
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

/// Every primary's `host:port`, `maxmemory` and `maxmemory-policy` (INFO memory), for the
/// eviction warning; those that refuse INFO are left out.
async fn memory_policies(connection: &mut ClusterConnection) -> Vec<(String, u64, String)> {
    let mut info = redis::cmd("INFO");
    info.arg("memory");
    let every = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllMasters,
        Some(ResponsePolicy::Special),
    ));
    let Ok(answer) = connection.route_command(info, every).await else {
        return Vec::new();
    };
    let answers: HashMap<String, Value> = redis::from_redis_value(answer).unwrap_or_default();
    answers
        .into_iter()
        .filter_map(|(address, answer)| {
            let text: String = redis::from_redis_value(answer).ok()?;
            let field = |name: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .map(|value| value.trim().to_string())
            };
            let limit = field("maxmemory")?.parse().ok()?;
            Some((address, limit, field("maxmemory_policy")?))
        })
        .collect()
}

/// `redis_version:7.0.15` → 7.
fn major_version(info: &str) -> Option<u32> {
    let version = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))?;
    version.split('.').next()?.parse().ok()
}

/// The connection a release-notification hub subscribes on: to one instance, or to a
/// cluster (sharded channels on the node owning their slot when `sharded`).
pub(crate) enum Subscriber {
    Plain(MultiplexedConnection),
    Cluster {
        connection: ClusterConnection,
        sharded: bool,
    },
}

impl Subscriber {
    pub(crate) async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Subscriber::Plain(connection) => connection.subscribe(channel).await,
            Subscriber::Cluster {
                connection,
                sharded: true,
            } => connection.ssubscribe(channel).await,
            Subscriber::Cluster { connection, .. } => connection.subscribe(channel).await,
        }
    }

    /// Drops `channels`, one at a time on a cluster (they may be in different slots).
    pub(crate) async fn unsubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Subscriber::Plain(connection) => connection.unsubscribe(channels).await,
            Subscriber::Cluster {
                connection,
                sharded,
            } => {
                for channel in channels {
                    if *sharded {
                        connection.sunsubscribe(channel).await?;
                    } else {
                        connection.unsubscribe(channel).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Commands and pipelines on a cluster connection are routed by redis-rs.
pub(super) fn request<'a>(cluster: &'a Cluster, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    let mut connection = cluster.connection.clone();
    Box::pin(async move { connection.req_packed_command(cmd).await })
}

pub(super) fn request_pipeline<'a>(
    cluster: &'a Cluster,
    pipeline: &'a redis::Pipeline,
    offset: usize,
    count: usize,
) -> RedisFuture<'a, Vec<Value>> {
    let mut connection = cluster.connection.clone();
    Box::pin(async move {
        connection
            .req_packed_commands(pipeline, offset, count)
            .await
    })
}

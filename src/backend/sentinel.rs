//! The connection to a Sentinel-managed primary: the sentinels are asked which instance is
//! the primary (redis-rs's `SentinelClient`, which also checks that the instance it names
//! answers `ROLE` as a primary), and asked again after a failover. A failover shows as a
//! lost connection (the primary died, or Sentinel cut its clients when it made it a replica)
//! or as a `READONLY` answer (the old primary came back as a replica): the primary is then
//! looked up again and the command sent once more, to the new one. When the sentinels do not
//! yet name a new primary the command fails, and the caller's retries (a renewal's, a
//! waiter's) try again later. And as it happens: a watcher listens to the sentinels'
//! `+switch-master` announcements (as StackExchange.Redis does), so that the next command goes
//! to the new primary even while the old one — paused, or cut off, and back — still answers
//! as a primary until the sentinels demote it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, ServerErrorKind, TlsMode, Value,
};
use tokio::sync::Mutex;

use super::connect::{tcp_settings, trusted_roots};
use super::link::Link;
use crate::endpoint::{Endpoint, Sentinels};
use crate::error::{Error, Result};
use crate::settings::Settings;

/// How long the watcher waits for a sentinel to take its subscription, and before it tries
/// the next one.
const SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The sentinels of one service and the connection to its current primary.
pub(crate) struct SentinelLink {
    sentinels: Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    current: Mutex<Option<Primary>>,
    /// Counts the primaries connected to, so that a failure forgets only the connection it
    /// met (not a newer one another call made meanwhile).
    generation: AtomicU64,
    database: i64,
    service: String,
    /// A client per sentinel, for the watcher of `+switch-master` (taken when it starts).
    watcher: std::sync::Mutex<Vec<Client>>,
    /// Dropped with the link: the watcher then ends.
    stop: tokio::sync::watch::Sender<()>,
}

struct Primary {
    connection: MultiplexedConnection,
    generation: u64,
}

impl SentinelLink {
    /// Sentinels and primary alike get the endpoint's user, password and TLS (with `roots`,
    /// the PEM bundle to trust, when given); the primary's database is `database`.
    pub(crate) fn new(
        endpoint: &Endpoint,
        sentinels: &Sentinels,
        database: i64,
        config: AsyncConnectionConfig,
        roots: Option<Vec<u8>>,
    ) -> redis::RedisResult<SentinelLink> {
        let addresses: Vec<ConnectionAddr> = sentinels
            .hosts
            .iter()
            .map(|(host, port)| match endpoint.tls {
                true => ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                },
                false => ConnectionAddr::Tcp(host.clone(), *port),
            })
            .collect();
        // The watcher's clients: the sentinels, with the same user, password and TLS.
        let mut signed_in = RedisConnectionInfo::default();
        if let Some(user) = &endpoint.username {
            signed_in = signed_in.set_username(user);
        }
        if let Some(password) = endpoint.password() {
            signed_in = signed_in.set_password(password);
        }
        let certificates = roots.clone().map(|roots| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(roots),
        });
        let watcher = addresses
            .iter()
            .map(|address| {
                let info = address
                    .clone()
                    .into_connection_info()?
                    .set_redis_settings(signed_in.clone())
                    .set_tcp_settings(tcp_settings());
                match &certificates {
                    Some(certificates) => Client::build_with_tls(info, certificates.clone()),
                    None => Client::open(info),
                }
            })
            .collect::<redis::RedisResult<Vec<Client>>>()?;
        let mut builder =
            SentinelClientBuilder::new(addresses, &sentinels.service, SentinelServerType::Master)?
                .set_client_to_redis_db(database)
                .set_client_to_redis_tcp_settings(tcp_settings())
                .set_client_to_sentinel_tcp_settings(tcp_settings());
        if endpoint.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(roots) = roots {
                let certificates = || redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots.clone()),
                };
                builder = builder
                    .set_client_to_redis_certificates(certificates())
                    .set_client_to_sentinel_certificates(certificates());
            }
        }
        if let Some(user) = &endpoint.username {
            builder = builder
                .set_client_to_redis_username(user)
                .set_client_to_sentinel_username(user);
        }
        if let Some(password) = endpoint.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        Ok(SentinelLink {
            sentinels: Mutex::new(builder.build()?),
            config,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            database,
            service: sentinels.service.clone(),
            watcher: std::sync::Mutex::new(watcher),
            stop: tokio::sync::watch::channel(()).0,
        })
    }

    /// The settings of a connection to the primary (timeouts).
    pub(crate) fn config(&self) -> &AsyncConnectionConfig {
        &self.config
    }

    /// The database selected on the primary.
    pub(crate) fn database(&self) -> i64 {
        self.database
    }

    /// A client of the primary the sentinels name now (asked afresh): for a connection of
    /// its own, such as the release notifications'.
    pub(crate) async fn primary_client(&self) -> redis::RedisResult<Client> {
        let found = self.sentinels.lock().await.async_get_client().await;
        found.map_err(|error| match error.kind() {
            // Most likely a failover under way (the primary is down, no other promoted yet):
            // a connection error, which callers retry, not an answer.
            ErrorKind::MasterNameNotFoundBySentinel => std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the sentinels name no primary that answers as one (a failover under way? or a wrong serviceName)",
            )
            .into(),
            _ => error,
        })
    }

    /// The connection to the primary, made when there is none.
    async fn connection(&self) -> redis::RedisResult<(MultiplexedConnection, u64)> {
        let mut current = self.current.lock().await;
        if let Some(primary) = current.as_ref() {
            return Ok((primary.connection.clone(), primary.generation));
        }
        let client = self.primary_client().await?;
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *current = Some(Primary {
            connection: connection.clone(),
            generation,
        });
        Ok((connection, generation))
    }

    /// Forgets the connection of `generation`, so that the next call asks the sentinels.
    async fn forget(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|p| p.generation == generation) {
            tracing::debug!("the Sentinel primary's connection failed; asking the sentinels");
            *current = None;
        }
    }

    /// Forgets whatever connection there is: the sentinels announced a new primary.
    async fn forget_all(&self) {
        if self.current.lock().await.take().is_some() {
            tracing::debug!(service = %self.service, "the sentinels switched the primary");
        }
    }

    /// Listens to the sentinels' `+switch-master` announcements for as long as `link` is in
    /// use, one sentinel at a time (the next when its connection ends).
    fn watch(link: &Arc<SentinelLink>) {
        let sentinels = std::mem::take(&mut *link.watcher.lock().expect("watcher"));
        let (mut stopped, service) = (link.stop.subscribe(), link.service.clone());
        let link = Arc::downgrade(link);
        tokio::spawn(async move {
            for sentinel in sentinels.iter().cycle() {
                let subscribed = async {
                    let mut pubsub = sentinel.get_async_pubsub().await?;
                    pubsub.subscribe("+switch-master").await?;
                    Ok::<_, redis::RedisError>(pubsub.into_on_message())
                };
                let mut messages = tokio::select! {
                    _ = stopped.changed() => return,
                    subscribed = tokio::time::timeout(SWITCH_WAIT, subscribed) => match subscribed {
                        Ok(Ok(messages)) => messages,
                        _ => {
                            tokio::select! {
                                _ = stopped.changed() => return,
                                _ = tokio::time::sleep(SWITCH_WAIT) => continue,
                            }
                        }
                    },
                };
                // "<service> <old ip> <old port> <new ip> <new port>"
                loop {
                    let message = tokio::select! {
                        _ = stopped.changed() => return,
                        message = messages.next() => match message {
                            Some(message) => message,
                            None => break,
                        },
                    };
                    let text: String = message.get_payload().unwrap_or_default();
                    if text.split(' ').next() != Some(service.as_str()) {
                        continue;
                    }
                    match link.upgrade() {
                        Some(link) => link.forget_all().await,
                        None => return,
                    }
                }
            }
        });
    }

    /// Sends `request` to the primary; after a failover (see the module's comment) once more,
    /// to the primary the sentinels name then.
    async fn send(&self, request: Request<'_>) -> redis::RedisResult<Answer> {
        let (mut connection, generation) = self.connection().await?;
        let answer = request.send(&mut connection).await;
        if !failed_over(&answer) {
            return answer;
        }
        self.forget(generation).await;
        let (mut connection, generation) = self.connection().await?;
        let answer = request.send(&mut connection).await;
        if failed_over(&answer) {
            self.forget(generation).await;
        }
        answer
    }

    pub(crate) fn command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.send(Request::One(cmd)).await? {
                Answer::One(value) => Ok(value),
                Answer::Many(mut values) => Ok(values.pop().unwrap_or(Value::Nil)),
            }
        })
    }

    pub(crate) fn commands<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.send(Request::Many(pipeline, offset, count)).await? {
                Answer::Many(values) => Ok(values),
                Answer::One(value) => Ok(vec![value]),
            }
        })
    }
}

/// A command or a pipeline, and its answer.
#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Answer {
    One(Value),
    Many(Vec<Value>),
}

impl Request<'_> {
    async fn send(self, connection: &mut MultiplexedConnection) -> redis::RedisResult<Answer> {
        match self {
            Request::One(cmd) => connection.req_packed_command(cmd).await.map(Answer::One),
            Request::Many(pipeline, offset, count) => connection
                .req_packed_commands(pipeline, offset, count)
                .await
                .map(Answer::Many),
        }
    }
}

/// Whether an answer says that the instance may no longer be the primary.
fn failed_over(answer: &redis::RedisResult<Answer>) -> bool {
    match answer {
        Err(error) => is_failover(error),
        Ok(Answer::One(value)) => is_read_only(value),
        // A pipeline's answers hold the errors of its commands.
        Ok(Answer::Many(values)) => values.iter().any(is_read_only),
    }
}

/// Whether an error says that the primary we talk to may no longer be the primary: the
/// connection is gone or cannot be made, or the instance is now a replica. (A timeout
/// forgets the connection too: a paused primary is likely being replaced.)
fn is_failover(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || error.is_unrecoverable_error()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

fn is_read_only(value: &Value) -> bool {
    matches!(value, Value::ServerError(error) if error.kind() == Some(ServerErrorKind::ReadOnly))
}

/// The link to the primary of a sentinel endpoint (see [`SentinelLink::new`]).
pub(crate) fn link(endpoint: &Endpoint, settings: &Settings) -> Result<Link> {
    let sentinels = endpoint.sentinel.as_ref().expect("a sentinel endpoint");
    let roots = match (&settings.tls_ca_certificate, endpoint.tls) {
        (Some(path), true) => Some(trusted_roots(path)?),
        _ => None,
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.sync_timeout));
    let database = endpoint.database.unwrap_or(settings.database);
    let primary = SentinelLink::new(endpoint, sentinels, database, config, roots)
        .map_err(|e| Error::Settings(format!("{}: {e}", address(sentinels))))?;
    let primary = Arc::new(primary);
    SentinelLink::watch(&primary);
    Ok(Link::Sentinel(primary))
}

/// How messages name a sentinel endpoint: `mymaster (sentinels h1:26379,h2:26379)`.
pub(crate) fn address(sentinels: &Sentinels) -> String {
    format!(
        "{} (sentinels {})",
        sentinels.service,
        sentinels.addresses()
    )
}

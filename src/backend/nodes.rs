//! The Redis instances behind a client, and the fan-out over them: a call goes to every
//! instance at once, each under its own timeout, and the caller reads the answers as they
//! arrive and stops as soon as it can decide (node-redlock's way). Single mode is the same
//! with one instance, so both modes share one code path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, FuturesUnordered, StreamExt};
use redis::AsyncConnectionConfig;
use redis::{
    Client, Cmd, EntraIdCredentialsProvider, FromRedisValue, StreamingCredentialsProvider,
    ToRedisArgs,
};
use tokio::time::{timeout, Instant};

use super::cluster_link::Subscriber;
use super::hub::Hub;
use super::link::{push_connection, Link};
use super::retry::Retry;
use super::scripts::Lua;
use super::start::Start;
use crate::error::{Error, Result};

/// Redis's answer to EVALSHA for a script it does not have.
pub(super) const NO_SCRIPT: redis::ErrorKind =
    redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);

/// One Redis instance; clones share its connection.
#[derive(Clone)]
pub(crate) struct Node {
    /// `host:port`, for messages.
    pub(crate) address: String,
    pub(super) connection: Link,
    pub(super) client: Client,
    /// The connection's own response timeout, for messages.
    pub(super) response_timeout: Duration,
    /// Whether it is reached over TLS.
    pub(super) tls: bool,
    /// Its release notifications, for every waiter.
    pub(super) hub: Arc<Hub>,
    /// How a call here is retried after a transient error.
    pub(super) retry: Retry,
    /// How long it has been up, as this connection learned (quorum mode).
    pub(super) start: Arc<Start>,
}

/// One script call, sent alike to every instance.
pub(crate) struct Call {
    script: &'static Lua,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    /// The EVALSHA command, encoded once for every instance and retry.
    command: OnceLock<Cmd>,
    /// `WaitReplicas`: the replicas that must acknowledge it (replicas.rs).
    pub(super) wait: Option<super::replicas::Wait>,
    /// No retry starts that could not end before this (a lease's validity).
    deadline: Option<Instant>,
}

impl Call {
    pub(crate) fn new(script: &'static Lua) -> Call {
        Call {
            script,
            keys: Vec::new(),
            args: Vec::new(),
            command: OnceLock::new(),
            wait: None,
            deadline: None,
        }
    }

    /// Retries of this call (after a transient error) end at `deadline`.
    pub(crate) fn until(mut self, deadline: Instant) -> Call {
        self.deadline = Some(deadline);
        self
    }

    pub(crate) fn key(mut self, key: impl Into<String>) -> Call {
        self.keys.push(key.into());
        self
    }

    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Call {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// The EVAL command: the script's text instead of its hash (after a NOSCRIPT).
    pub(super) fn eval(&self) -> Cmd {
        self.run("EVAL", &self.script.code)
    }

    /// The EVALSHA command, made anew (for a pipeline that takes it whole).
    pub(super) fn evalsha(&self) -> Cmd {
        self.run("EVALSHA", &self.script.hash)
    }

    /// The EVALSHA command, encoded once.
    pub(super) fn command(&self) -> &Cmd {
        self.command.get_or_init(|| self.evalsha())
    }

    /// `name script numkeys keys... args...`.
    fn run(&self, name: &str, script: &str) -> Cmd {
        let mut command = redis::cmd(name);
        command
            .arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        command
    }
}

/// An instance's answer to a call.
pub(crate) struct Vote<T> {
    /// The instance's index in [`Nodes::list`].
    pub(crate) node: usize,
    pub(crate) answer: Result<T>,
}

/// One instance's release notifications, tagged with its index in [`Nodes::list`]; the last
/// item, with no message, says that the subscription ended (its connection died).
pub(crate) type Notifications = BoxStream<'static, (usize, Option<redis::Msg>)>;

/// Calls still under way when a decision was reached; drop them, or keep reading them.
pub(crate) type Pending<T> = FuturesUnordered<BoxFuture<'static, Vote<T>>>;

/// Every instance of the deployment.
pub(crate) struct Nodes {
    pub(crate) list: Vec<Node>,
    /// The bound on one call to one instance (`SyncTimeout`).
    pub(super) call_timeout: Duration,
    pub(super) connect_timeout: Duration,
    /// Entra ID: the pub/sub connections (which the connection manager does not make) sign
    /// in with its current token too.
    pub(super) credentials: Option<EntraIdCredentialsProvider>,
}

impl Nodes {
    /// Retries every call after a transient error as `retry` says.
    pub(super) fn retry_calls(&mut self, retry: Retry) {
        for node in &mut self.list {
            node.retry = retry;
        }
    }

    /// How many instances make a majority.
    pub(crate) fn majority(&self) -> usize {
        self.list.len() / 2 + 1
    }

    /// Runs `call` on every instance at once and collects the answers as they arrive, until
    /// `decided` says so or all have answered. Each instance's call may take `SyncTimeout`
    /// per attempt, with its retries (see `retry.rs`).
    pub(crate) async fn gather<T: Send + 'static>(
        &self,
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
        decided: impl FnMut(&[Vote<T>]) -> bool,
    ) -> (Vec<Vote<T>>, Pending<T>) {
        self.gather_within(self.call_budget(), call, decided).await
    }

    /// The longest one call to one instance may take, retries included.
    fn call_budget(&self) -> Duration {
        let retry = self.list.first().map(|node| node.retry);
        retry.map_or(self.call_timeout, |r| r.budget(self.call_timeout))
    }

    pub(super) async fn gather_within<T: Send + 'static>(
        &self,
        limit: Duration,
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
        decided: impl FnMut(&[Vote<T>]) -> bool,
    ) -> (Vec<Vote<T>>, Pending<T>) {
        self.gather_on(0..self.list.len(), limit, call, decided)
            .await
    }

    /// Runs `call` on the instances `which` and waits for their answers.
    pub(crate) async fn on<T: Send + 'static>(
        &self,
        which: &[usize],
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
    ) -> Vec<Vote<T>> {
        self.gather_on(which.iter().copied(), self.call_budget(), call, |_| false)
            .await
            .0
    }

    async fn gather_on<T: Send + 'static>(
        &self,
        which: impl Iterator<Item = usize>,
        limit: Duration,
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
        mut decided: impl FnMut(&[Vote<T>]) -> bool,
    ) -> (Vec<Vote<T>>, Pending<T>) {
        let which: Vec<usize> = which.collect();
        if let [index] = which[..] {
            // One instance (single mode): nothing to fan out.
            let node = &self.list[index];
            let answer = match timeout(limit, call(node)).await {
                Ok(answer) => answer,
                Err(_) => Err(Error::Timeout {
                    endpoint: node.address.clone(),
                    after: limit,
                }),
            };
            return (
                vec![Vote {
                    node: index,
                    answer,
                }],
                Pending::new(),
            );
        }
        let mut pending: Pending<T> = which
            .into_iter()
            .map(|index| (index, &self.list[index]))
            .map(|(index, node)| {
                let request = call(node);
                let address = node.address.clone();
                let vote: BoxFuture<'static, Vote<T>> = Box::pin(async move {
                    let answer = match timeout(limit, request).await {
                        Ok(answer) => answer,
                        Err(_) => Err(Error::Timeout {
                            endpoint: address,
                            after: limit,
                        }),
                    };
                    Vote {
                        node: index,
                        answer,
                    }
                });
                vote
            })
            .collect();
        let mut votes = Vec::with_capacity(self.list.len());
        while let Some(vote) = pending.next().await {
            votes.push(vote);
            if decided(&votes) {
                break;
            }
        }
        (votes, pending)
    }

    /// Runs `call` on every instance and waits for all answers.
    pub(crate) async fn all<T: Send + 'static>(
        &self,
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
    ) -> Vec<Vote<T>> {
        self.gather(call, |_| false).await.0
    }

    /// The release notifications of `channel` from every instance that lets us subscribe, for
    /// a listener outside any queue; `None` (the listener then polls) when none does.
    pub(crate) async fn subscribe(&self, channel: &str) -> Option<BoxStream<'static, redis::Msg>> {
        let every: Vec<usize> = (0..self.list.len()).collect();
        let (streams, _) = self.listen(&every, channel, None).await;
        (!streams.is_empty()).then(|| {
            let messages = stream::select_all(streams);
            messages.filter_map(|(_, m)| async move { m }).boxed()
        })
    }

    /// The release notifications of `channel` from each of the instances `which` that lets
    /// us subscribe, for a waiter at `place` in the lease's queue (see hub.rs); and the
    /// instances that did not. Each stream ends with an item that says so, so that the
    /// waiter can subscribe to that instance again rather than miss its releases.
    pub(crate) async fn listen(
        &self,
        which: &[usize],
        channel: &str,
        place: Option<&str>,
    ) -> (Vec<Notifications>, Vec<usize>) {
        let subscriptions = which.iter().map(|&index| async move {
            let node = &self.list[index];
            let subscribe = async {
                // The shared connection is opened once, by the first waiter.
                let shared = node.hub.listen(channel, place, |pushes| async {
                    let config = match &node.connection {
                        Link::Named(named) => named.config().clone(),
                        Link::Sentinel(primary) => primary.config().clone(),
                        Link::Cluster(cluster) => return cluster.push_connection(pushes).await,
                        Link::Managed(..) => AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(self.connect_timeout))
                            .set_response_timeout(Some(self.call_timeout)),
                    };
                    let client = self.subscriber(node).await?;
                    let connection = push_connection(&client, config, pushes).await?;
                    Ok(Subscriber::Plain(connection))
                });
                match (shared.await, &node.connection) {
                    (Ok(stream), _) => Ok(stream),
                    (Err(error), Link::Named(_) | Link::Sentinel(_) | Link::Cluster(_)) => {
                        Err(error)
                    }
                    // A server without RESP3 (before Redis 6): a RESP2 connection of its own.
                    (Err(error), Link::Managed(..)) if !error.is_io_error() => {
                        tracing::debug!(node = %node.address, %error, "no shared subscription");
                        let mut pubsub = self.subscriber(node).await?.get_async_pubsub().await?;
                        pubsub.subscribe(channel).await?;
                        Ok::<_, redis::RedisError>(pubsub.into_on_message().boxed())
                    }
                    (Err(error), Link::Managed(..)) => Err(error),
                }
            };
            match timeout(self.connect_timeout, subscribe).await {
                Ok(Ok(stream)) => {
                    let messages = stream.map(move |m| (index, Some(m)));
                    Ok(messages.chain(stream::iter([(index, None)])).boxed())
                }
                Ok(Err(error)) => {
                    tracing::debug!(node = %node.address, %error, "cannot subscribe to releases; polling");
                    Err(index)
                }
                Err(_) => Err(index),
            }
        });
        let (mut streams, mut failed) = (Vec::new(), Vec::new());
        for subscription in futures_util::future::join_all(subscriptions).await {
            match subscription {
                Ok(stream) => streams.push(stream),
                Err(index) => failed.push(index),
            }
        }
        (streams, failed)
    }

    /// As [`Nodes::listen`] on every instance, but only when each of them is subscribed to
    /// `channel` already (for another waiter): no round trip, and `None` otherwise.
    pub(crate) async fn listen_subscribed(
        &self,
        channel: &str,
        place: Option<&str>,
    ) -> Option<Vec<Notifications>> {
        let mut streams = Vec::with_capacity(self.list.len());
        for (index, node) in self.list.iter().enumerate() {
            let stream = node.hub.listen_subscribed(channel, place).await?;
            let messages = stream.map(move |m| (index, Some(m)));
            streams.push(messages.chain(stream::iter([(index, None)])).boxed());
        }
        Some(streams)
    }

    /// The client a pub/sub connection to `node` opens with: under Entra ID (which the
    /// connection manager's provider does not cover there) signed in with the current token.
    async fn subscriber(&self, node: &Node) -> redis::RedisResult<Client> {
        if let Link::Sentinel(primary) = &node.connection {
            return primary.primary_client().await;
        }
        let Some(provider) = &self.credentials else {
            return Ok(node.client.clone());
        };
        match timeout(self.connect_timeout, provider.subscribe().next()).await {
            Ok(Some(Ok(token))) => node.client_signed_in(&token),
            _ => Ok(node.client.clone()),
        }
    }

    /// `127.0.0.1:7001 held by us-east-1`: one instance's vote for a message; `answer` words a
    /// successful one.
    pub(crate) fn describe<T>(&self, vote: &Vote<T>, answer: impl Fn(&T) -> String) -> String {
        let address = &self.list[vote.node].address;
        match &vote.answer {
            Ok(value) => format!("{address} {}", answer(value)),
            Err(error) => format!("{address} {}", error.short()),
        }
    }

    /// The one "no quorum" error: `agreed` instances did what was needed (`outcome`:
    /// `granted`, `confirmed`, `answered`, ...), too few of them; `votes` describes each
    /// instance's answer.
    pub(crate) fn no_quorum(
        &self,
        agreed: usize,
        outcome: &'static str,
        votes: Vec<String>,
    ) -> Error {
        Error::NoQuorum {
            agreed,
            needed: self.majority(),
            total: self.list.len(),
            outcome,
            votes,
        }
    }
}

impl Node {
    /// Runs a script here (EVALSHA; on NOSCRIPT, EVAL), retried after a transient error
    /// until the call's deadline.
    pub(crate) fn script<T: FromRedisValue + Send + 'static>(
        &self,
        call: &Arc<Call>,
    ) -> BoxFuture<'static, Result<T>> {
        let (node, call) = (self.clone(), call.clone());
        Box::pin(async move {
            let answer = node
                .retry
                .run(call.deadline, || run_script(&call, node.connection.clone()))
                .await;
            match answer {
                Err(e) if e.code() == Some("WRONGTYPE") => Err(node.wrong_type(&call, &e).await),
                answer => {
                    answer.map_err(|e| Error::from_redis(&node.address, &e, node.response_timeout))
                }
            }
        })
    }

    /// The error for a script that met a key of another type than leasectl keeps there
    /// (something else wrote it): which key, and what it should hold. Boxed: off the script
    /// call's own path.
    fn wrong_type(&self, call: &Call, error: &redis::RedisError) -> BoxFuture<'static, Error> {
        let (node, keys) = (self.clone(), call.keys.clone());
        let error = Error::from_redis(&self.address, error, self.response_timeout);
        Box::pin(async move {
            let mut types = redis::pipe();
            for key in &keys {
                types.cmd("TYPE").arg(key);
            }
            let mut connection = node.connection.clone();
            let Ok(types) = types.query_async::<Vec<String>>(&mut connection).await else {
                return error;
            };
            let odd = keys.iter().zip(types).find_map(|(key, found)| {
                let (what, kept) = super::keys::kept_in(key, &keys)?;
                (found != kept && found != "none").then(|| {
                    let kept = if kept == "zset" { "sorted set" } else { kept };
                    format!("{key} holds a {found}, where leasectl keeps {what} (a {kept}): delete that key, or use another key prefix")
                })
            });
            match odd {
                Some(detail) => Error::Redis {
                    endpoint: node.address.clone(),
                    detail,
                },
                None => error,
            }
        })
    }

    /// Every key matching `pattern` here (SCAN), skipping names that are not UTF-8.
    pub(crate) fn scan(&self, pattern: &str) -> BoxFuture<'static, Result<Vec<String>>> {
        let (node, pattern) = (self.clone(), pattern.to_string());
        Box::pin(async move { scan_pages(&pattern, |page| node.command(page)).await })
    }

    /// A client like this node's that signs in with `token` (user and password).
    fn client_signed_in(&self, token: &redis::BasicAuth) -> redis::RedisResult<Client> {
        let info = self.client.get_connection_info().clone();
        let signed_in = info
            .redis_settings()
            .clone()
            .set_username(token.username())
            .set_password(token.password());
        Client::open(info.set_redis_settings(signed_in))
    }

    /// Runs one command here, retried after a transient error.
    pub(crate) fn command<T: FromRedisValue + Send + 'static>(
        &self,
        command: redis::Cmd,
    ) -> BoxFuture<'static, Result<T>> {
        let (connection, address, after, retry) = (
            self.connection.clone(),
            self.address.clone(),
            self.response_timeout,
            self.retry,
        );
        Box::pin(async move {
            let answer = retry
                .run(None, || {
                    let (command, mut connection) = (&command, connection.clone());
                    async move {
                        let mut answer = command.query_async(&mut connection).await;
                        if answer.as_ref().is_err_and(was_dropped) {
                            answer = command.query_async(&mut connection).await;
                        }
                        answer
                    }
                })
                .await;
            answer.map_err(|e| Error::from_redis(&address, &e, after))
        })
    }
}

/// One attempt at a script call: EVALSHA; once more at once when the connection had died;
/// on NOSCRIPT, EVAL.
async fn run_script<T: FromRedisValue>(call: &Call, mut connection: Link) -> redis::RedisResult<T> {
    let mut answer = call.query(&mut connection).await;
    if answer.as_ref().is_err_and(was_dropped) {
        // The connection manager reconnects only after a command failed on a dead
        // connection (a restarted instance): try once more. Every script is safe to
        // repeat — acquire answers "granted" again for its own lease id.
        answer = call.query(&mut connection).await;
    }
    if answer.as_ref().is_err_and(|e| e.kind() == NO_SCRIPT) {
        // First use on this instance (or it restarted, or a Sentinel's or a cluster slot's
        // primary changed): EVAL, which goes where the EVALSHA went (routed by the same first
        // key) and leaves the script cached there for the next EVALSHA.
        answer = call.send(&call.eval(), &mut connection).await;
    }
    answer
}

/// Every key matching `pattern` that SCAN finds, page by page (`page` runs one SCAN command
/// where it must go), skipping names that are not UTF-8.
pub(super) async fn scan_pages<E, F, Fut>(
    pattern: &str,
    mut page: F,
) -> std::result::Result<Vec<String>, E>
where
    F: FnMut(Cmd) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(u64, Vec<Vec<u8>>), E>>,
{
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, batch) = page(command).await?;
        keys.extend(
            batch
                .into_iter()
                .filter_map(|key| String::from_utf8(key).ok()),
        );
        cursor = next;
        if cursor == 0 {
            return Ok(keys);
        }
    }
}

/// True when a command failed because its connection had died (not refused, not timed out):
/// one retry goes out on the connection the manager makes anew.
pub(super) fn was_dropped(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal() && !error.is_timeout()
}

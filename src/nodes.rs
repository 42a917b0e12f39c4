//! The Redis instances behind a client, and the fan-out over them: a call goes to every
//! instance at once, each under its own timeout, and the caller reads the answers as they
//! arrive and stops as soon as it can decide (node-redlock's way). Single mode is the same
//! with one instance, so both modes share one code path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, FuturesUnordered, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncConnectionConfig;
use redis::{
    Client, Cmd, EntraIdCredentialsProvider, FromRedisValue, RetryConfig, Script,
    StreamingCredentialsProvider, ToRedisArgs,
};
use tokio::time::timeout;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::link::{push_connection, Link, Named};
use crate::settings::Settings;

/// Redis's answer to EVALSHA for a script it does not have.
const NO_SCRIPT: redis::ErrorKind = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);

/// One Redis instance.
pub(crate) struct Node {
    /// `host:port`, for messages.
    pub(crate) address: String,
    connection: Link,
    client: Client,
    /// The connection's own response timeout, for messages.
    response_timeout: Duration,
    /// Whether it is reached over TLS.
    tls: bool,
    /// Its release notifications, for every waiter.
    hub: Arc<Hub>,
}

/// One script call, sent alike to every instance.
pub(crate) struct Call {
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    /// The EVALSHA command, encoded once for every instance and retry.
    command: OnceLock<Cmd>,
}

impl Call {
    pub(crate) fn new(script: &'static Script) -> Call {
        Call {
            script,
            keys: Vec::new(),
            args: Vec::new(),
            command: OnceLock::new(),
        }
    }

    pub(crate) fn key(mut self, key: impl Into<String>) -> Call {
        self.keys.push(key.into());
        self
    }

    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Call {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn command(&self) -> &Cmd {
        self.command.get_or_init(|| {
            let mut command = redis::cmd("EVALSHA");
            command
                .arg(self.script.get_hash())
                .arg(self.keys.len())
                .arg(&self.keys)
                .arg(&self.args);
            command
        })
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
    call_timeout: Duration,
    connect_timeout: Duration,
    /// Entra ID: the pub/sub connections (which the connection manager does not make) sign
    /// in with its current token too.
    credentials: Option<EntraIdCredentialsProvider>,
}

impl Nodes {
    /// Opens a connection manager per endpoint and PINGs them all; a majority must answer.
    ///
    /// # Errors
    /// In single mode the instance's own error; in quorum mode [`Error::NoQuorum`] listing
    /// every instance's answer; [`Error::Settings`] when there is no endpoint or a CA file
    /// cannot be read.
    pub(crate) async fn connect(
        settings: &Settings,
        credentials: Option<EntraIdCredentialsProvider>,
    ) -> Result<Nodes> {
        if settings.endpoints.is_empty() {
            return Err(Error::Settings("no Redis endpoint is configured".into()));
        }
        let credentials = match (credentials, &settings.entra_id) {
            // A provider yields no token until started (connecting would wait for one until
            // it timed out); starting one that is already running does nothing.
            (Some(mut given), _) => {
                given.start(RetryConfig::default());
                Some(given)
            }
            (None, Some(entra_id)) => Some(entra_id.provider(settings.connect_timeout).await?),
            (None, None) => None,
        };
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.sync_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        if let Some(credentials) = &credentials {
            config = config.set_credentials_provider(credentials.clone());
        }
        let mut list = Vec::with_capacity(settings.endpoints.len());
        for endpoint in &settings.endpoints {
            let client = open_client(endpoint, settings)?;
            let connection = match &endpoint.tls_host {
                Some(_) if endpoint.tls => {
                    let mut named = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(settings.connect_timeout))
                        .set_response_timeout(Some(settings.sync_timeout));
                    if let Some(credentials) = &credentials {
                        named = named.set_credentials_provider(credentials.clone());
                    }
                    let (host, port) = (&endpoint.host, endpoint.port);
                    Link::Named(Arc::new(Named::new(client.clone(), named, host, port)))
                }
                _ => Link::Managed(
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .map_err(|e| {
                            Error::from_redis(&endpoint.address(), &e, settings.sync_timeout)
                        })?,
                ),
            };
            let response_timeout = settings.sync_timeout;
            list.push(Node {
                address: endpoint.address(),
                connection,
                client,
                response_timeout,
                tls: endpoint.tls,
                hub: Arc::default(),
            });
        }
        let nodes = Nodes {
            list,
            call_timeout: settings.sync_timeout,
            connect_timeout: settings.connect_timeout,
            credentials,
        };
        let limit = settings.connect_timeout;
        // Each instance's memory policy is read alongside the PING (no extra round trip).
        // Decided at the first majority either way: an instance that does not answer must not
        // add its whole timeout to every command's start (it is retried as it is used).
        let policies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (total, majority) = (nodes.list.len(), nodes.majority());
        let (votes, pending) = nodes
            .gather_within(
                limit,
                |node| {
                    let ping = node.command::<String>(redis::cmd("PING"));
                    let policy = node.memory_policy();
                    let policies = policies.clone();
                    Box::pin(async move {
                        let (ping, policy) = futures_util::future::join(ping, policy).await;
                        if let Some(policy) = policy {
                            policies.lock().expect("policies").push(policy);
                        }
                        ping
                    })
                },
                |votes| {
                    let answered = votes.iter().filter(|v| v.answer.is_ok()).count();
                    answered >= majority || votes.len() - answered > total - majority
                },
            )
            .await;
        warn_of_eviction(&policies.lock().expect("policies"));
        // The slower instances' connections are still being made: let them finish, so that
        // they are ready for the first calls (which would otherwise all wait on them at once).
        if !pending.is_empty() {
            tokio::spawn(async move {
                let mut pending = pending;
                while pending.next().await.is_some() {}
            });
        }
        let votes: Vec<Vote<String>> = votes
            .into_iter()
            .map(|vote| {
                let tls = nodes.list[vote.node].tls;
                Vote {
                    node: vote.node,
                    answer: vote.answer.map_err(|error| tls_hint(error, tls)),
                }
            })
            .collect();
        let answered = votes.iter().filter(|v| v.answer.is_ok()).count();
        if answered >= nodes.majority() {
            return Ok(nodes);
        }
        let mut votes = votes;
        if nodes.list.len() == 1 {
            let error = votes
                .remove(0)
                .answer
                .expect_err("the only instance failed");
            return Err(explain_auth(error, &settings.endpoints[0], settings).await);
        }
        let described = votes
            .iter()
            .map(|v| nodes.describe(v, |_| "answered".into()))
            .collect();
        Err(Error::NoQuorum {
            agreed: answered,
            needed: nodes.majority(),
            total: nodes.list.len(),
            outcome: "answered",
            votes: described,
        })
    }

    /// How many instances make a majority.
    pub(crate) fn majority(&self) -> usize {
        self.list.len() / 2 + 1
    }

    /// Runs `call` on every instance at once and collects the answers as they arrive, until
    /// `decided` says so or all have answered.
    pub(crate) async fn gather<T: Send + 'static>(
        &self,
        call: impl Fn(&Node) -> BoxFuture<'static, Result<T>>,
        decided: impl FnMut(&[Vote<T>]) -> bool,
    ) -> (Vec<Vote<T>>, Pending<T>) {
        self.gather_within(self.call_timeout, call, decided).await
    }

    async fn gather_within<T: Send + 'static>(
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
        self.gather_on(which.iter().copied(), self.call_timeout, call, |_| false)
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
                    let client = self.subscriber(node).await?;
                    let config = match &node.connection {
                        Link::Named(named) => named.config().clone(),
                        Link::Managed(_) => AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(self.connect_timeout))
                            .set_response_timeout(Some(self.call_timeout)),
                    };
                    push_connection(&client, config, pushes).await
                });
                match (shared.await, &node.connection) {
                    (Ok(stream), _) => Ok(stream),
                    (Err(error), Link::Named(_)) => Err(error),
                    // A server without RESP3 (before Redis 6): a RESP2 connection of its own.
                    (Err(error), Link::Managed(_)) if !error.is_io_error() => {
                        tracing::debug!(node = %node.address, %error, "no shared subscription");
                        let mut pubsub = self.subscriber(node).await?.get_async_pubsub().await?;
                        pubsub.subscribe(channel).await?;
                        Ok::<_, redis::RedisError>(pubsub.into_on_message().boxed())
                    }
                    (Err(error), Link::Managed(_)) => Err(error),
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

    /// The client a pub/sub connection to `node` opens with: under Entra ID (which the
    /// connection manager's provider does not cover there) signed in with the current token.
    async fn subscriber(&self, node: &Node) -> redis::RedisResult<Client> {
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
}

impl Node {
    /// Runs a script here (EVALSHA; on NOSCRIPT, SCRIPT LOAD and EVALSHA again).
    pub(crate) fn script<T: FromRedisValue + Send + 'static>(
        &self,
        call: &Arc<Call>,
    ) -> BoxFuture<'static, Result<T>> {
        let (call, mut connection, address, after) = (
            call.clone(),
            self.connection.clone(),
            self.address.clone(),
            self.response_timeout,
        );
        Box::pin(async move {
            let mut answer = call.command().query_async(&mut connection).await;
            if answer.as_ref().is_err_and(was_dropped) {
                // The connection manager reconnects only after a command failed on a dead
                // connection (a restarted instance): try once more. Every script is safe to
                // repeat — acquire answers "granted" again for its own lease id.
                answer = call.command().query_async(&mut connection).await;
            }
            if answer.as_ref().is_err_and(|e| e.kind() == NO_SCRIPT) {
                // First use on this instance (or it restarted): load the script, then run it.
                let loaded = call
                    .script
                    .prepare_invoke()
                    .load_async(&mut connection)
                    .await;
                answer = match loaded {
                    Ok(_) => call.command().query_async(&mut connection).await,
                    Err(error) => Err(error),
                };
            }
            answer.map_err(|e| Error::from_redis(&address, &e, after))
        })
    }

    /// Every key matching `pattern` here (SCAN), skipping names that are not UTF-8.
    pub(crate) fn scan(&self, pattern: &str) -> BoxFuture<'static, Result<Vec<String>>> {
        let (node_command, pattern) = (self.clone_handle(), pattern.to_string());
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let mut command = redis::cmd("SCAN");
                command
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, batch): (u64, Vec<Vec<u8>>) = node_command.command(command).await?;
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
        })
    }

    /// A copy that shares the connection, for work that outlives a borrow.
    fn clone_handle(&self) -> Node {
        Node {
            address: self.address.clone(),
            connection: self.connection.clone(),
            client: self.client.clone(),
            response_timeout: self.response_timeout,
            tls: self.tls,
            hub: self.hub.clone(),
        }
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

    /// `host:port`, `maxmemory` and `maxmemory-policy` here: from INFO memory, else CONFIG
    /// GET (`None` when neither is allowed).
    fn memory_policy(&self) -> BoxFuture<'static, Option<(String, u64, String)>> {
        let mut info = redis::cmd("INFO");
        info.arg("memory");
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("maxmemory*");
        let (info, config) = (
            self.command::<String>(info),
            self.command::<Vec<String>>(config),
        );
        let address = self.address.clone();
        Box::pin(async move {
            let field = |name: &str, text: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .map(|value| value.trim().to_string())
            };
            let (limit, policy) = match info.await {
                Ok(text) => (
                    field("maxmemory", &text)?,
                    field("maxmemory_policy", &text)?,
                ),
                Err(error) if error.is_transient() => return None,
                Err(error) => {
                    tracing::debug!(%error, node = %address, "INFO memory refused; CONFIG GET");
                    let pairs = config.await.ok()?;
                    let value = |name: &str| {
                        pairs
                            .chunks(2)
                            .find(|pair| pair[0] == name)
                            .and_then(|pair| pair.get(1).cloned())
                    };
                    (value("maxmemory")?, value("maxmemory-policy")?)
                }
            };
            Some((address, limit.parse().ok()?, policy))
        })
    }

    /// Runs one command here.
    pub(crate) fn command<T: FromRedisValue + Send + 'static>(
        &self,
        command: redis::Cmd,
    ) -> BoxFuture<'static, Result<T>> {
        let (mut connection, address, after) = (
            self.connection.clone(),
            self.address.clone(),
            self.response_timeout,
        );
        Box::pin(async move {
            let mut answer = command.query_async(&mut connection).await;
            if answer.as_ref().is_err_and(was_dropped) {
                answer = command.query_async(&mut connection).await;
            }
            answer.map_err(|e| Error::from_redis(&address, &e, after))
        })
    }
}

/// Warns (once per process) when an instance may evict keys — a memory limit and an evicting
/// `maxmemory-policy` (`allkeys-*`, `volatile-*`) — since it may evict a held lease, which a
/// second holder then takes.
fn warn_of_eviction(policies: &[(String, u64, String)]) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let evicting: Vec<String> = policies
        .iter()
        .filter(|(_, limit, policy)| *limit > 0 && policy != "noeviction")
        .map(|(address, _, policy)| format!("{address} ({policy})"))
        .collect();
    if evicting.is_empty() || WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    tracing::warn!(
        "Redis may evict a held lease when it runs out of memory, and a second holder would then get it: {} has maxmemory set and an evicting maxmemory-policy: set it to noeviction (on Azure Cache for Redis under Advanced settings)",
        evicting.join(", ")
    );
}

/// True when a command failed because its connection had died (not refused, not timed out):
/// one retry goes out on the connection the manager makes anew.
fn was_dropped(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal() && !error.is_timeout()
}

/// Says so when an authentication failure is a password sent to a server that has none:
/// redis-rs reports every refused AUTH alike, so this asks once more on a connection without
/// credentials and reads the server's own answer.
async fn explain_auth(error: Error, endpoint: &Endpoint, settings: &Settings) -> Error {
    let (
        Error::Auth {
            endpoint: address, ..
        },
        Some(password),
    ) = (&error, endpoint.password())
    else {
        return error;
    };
    let probe = async {
        let client = open_client(&endpoint.without_credentials(), settings).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = &endpoint.username {
            auth.arg(user);
        }
        auth.arg(password);
        auth.query_async::<()>(&mut connection).await.err()
    };
    match tokio::time::timeout(settings.connect_timeout, probe).await {
        Ok(Some(answer))
            if answer
                .to_string()
                .contains("without any password configured")
                || answer.to_string().contains("no password is set") =>
        {
            Error::Auth {
                endpoint: address.clone(),
                detail: "the server has no password, yet a password was given \
                         (remove it from the settings, or set one on the server)"
                    .into(),
            }
        }
        _ => error,
    }
}

fn open_client(endpoint: &Endpoint, settings: &Settings) -> Result<Client> {
    // rustls needs one process-wide crypto provider; a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let (Some(name), false) = (&endpoint.tls_host, endpoint.tls) {
        tracing::warn!(
            "sslHost={name} has no effect on {}: it does not use TLS",
            endpoint.address()
        );
    }
    let info = endpoint
        .connection_info(settings.database)
        .map_err(|e| Error::Settings(e.to_string()))?;
    let client = match (&settings.tls_ca_certificate, endpoint.tls) {
        (Some(path), true) => {
            let root_cert = Some(trusted_roots(path)?);
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert,
                },
            )
        }
        _ => Client::open(info),
    };
    client.map_err(|e| Error::Settings(format!("{}: {e}", endpoint.address())))
}

/// The PEM bundle to trust: the `TlsCaCertificate` file plus the system's roots (redis-rs
/// trusts only the bundle it is given, so the system's are added to it).
fn trusted_roots(path: &std::path::Path) -> Result<Vec<u8>> {
    use base64::Engine;
    let unreadable =
        |e: String| Error::Settings(format!("TlsCaCertificate {}: {e}", path.display()));
    let mut bundle = std::fs::read(path).map_err(|e| unreadable(format!("cannot read: {e}")))?;
    if !String::from_utf8_lossy(&bundle).contains("-----BEGIN CERTIFICATE-----") {
        return Err(unreadable("not a PEM certificate bundle".into()));
    }
    bundle.push(b'\n');
    for certificate in rustls_native_certs::load_native_certs().certs {
        let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
        bundle.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            bundle.extend_from_slice(line);
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(bundle)
}

/// A failed first contact says whether TLS may be the cause: a TLS endpoint that never
/// finishes its handshake is likely a plain port, and a plain endpoint whose connection is cut
/// at once is likely a TLS port.
fn tls_hint(error: Error, tls: bool) -> Error {
    match error {
        Error::Timeout { endpoint, after } if tls => Error::Connection {
            endpoint,
            detail: format!(
                "no TLS handshake within {} (is it a plain, non-TLS port? then use redis:// or ssl=False)",
                humantime::format_duration(after)
            ),
        },
        Error::Connection { endpoint, detail }
            if !tls && !detail.starts_with("TLS") && !detail.contains("refused") =>
        {
            let detail = format!("{detail} (is it a TLS port? then use rediss:// or ssl=True)");
            Error::Connection { endpoint, detail }
        }
        other => other,
    }
}

//! Connecting to the instances: a connection per endpoint (TLS, Entra ID), a PING to each
//! within `ConnectTimeout` (a majority must answer), and the check that none may evict a lease.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncConnectionConfig;
use redis::{Client, EntraIdCredentialsProvider, RetryConfig};

use super::link::{Link, Named};
use super::nodes::{Node, Nodes, Vote};
use super::retry::Retry;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::settings::Settings;

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
        if settings.cluster == Some(true) {
            return connect_cluster(settings, credentials).await;
        }
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
                _ if endpoint.sentinel.is_some() => super::sentinel::link(endpoint, settings)?,
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
                _ => Link::managed(
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .map_err(|e| {
                            Error::from_redis(&endpoint.address(), &e, settings.sync_timeout)
                        })?,
                ),
            };
            let response_timeout = settings.sync_timeout;
            list.push(Node {
                address: match &endpoint.sentinel {
                    Some(sentinels) => super::sentinel::address(sentinels),
                    None => endpoint.address(),
                },
                connection,
                client,
                response_timeout,
                tls: endpoint.tls,
                hub: Arc::default(),
                // The first PINGs are not retried: a start that fails, fails at once
                // (AbortOnConnectFail); the calls after them are.
                retry: Retry::NONE,
                start: Arc::default(),
            });
        }
        let mut nodes = Nodes {
            list,
            call_timeout: settings.sync_timeout,
            connect_timeout: settings.connect_timeout,
            credentials,
        };
        let limit = settings.connect_timeout;
        // Each instance's memory policy (and in quorum mode its uptime) is read alongside the
        // PING (no extra round trip).
        // Decided at the first majority either way: an instance that does not answer must not
        // add its whole timeout to every command's start (it is retried as it is used).
        let policies = Arc::new(std::sync::Mutex::new(Vec::new()));
        // So is whether the first endpoint is a Redis Cluster node (unless `Cluster` says).
        let first_is_cluster = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = nodes.list[0].address.clone();
        let (total, majority) = (nodes.list.len(), nodes.majority());
        let (votes, pending) = nodes
            .gather_within(
                limit,
                |node| {
                    let ping = node.command::<String>(redis::cmd("PING"));
                    let policy = node.memory_policy();
                    let probe = (settings.cluster.is_none() && node.address == first)
                        .then(|| super::cluster::probe(node, first_is_cluster.clone()));
                    let policies = policies.clone();
                    // Quorum mode: how long it has been up, for the first acquire (start.rs).
                    let uptime = (total > 1).then(|| node.uptime());
                    Box::pin(async move {
                        let probe = async move {
                            if let Some(probe) = probe {
                                probe.await;
                            }
                        };
                        let uptime = async move {
                            if let Some(uptime) = uptime {
                                uptime.await;
                            }
                        };
                        let (ping, policy, (), ()) =
                            futures_util::future::join4(ping, policy, probe, uptime).await;
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
            if first_is_cluster.load(std::sync::atomic::Ordering::Acquire) {
                return connect_cluster(settings, nodes.credentials).await;
            }
            nodes.retry_calls(Retry::of(settings));
            return Ok(nodes);
        }
        // AbortOnConnectFail false: start anyway when no instance refused us for good; the
        // connections are made again as they are used (a waiting acquire tries until its wait
        // ends).
        let unreachable = |v: &Vote<String>| v.answer.as_ref().is_err_and(Error::is_transient);
        if !settings.abort_on_connect_fail
            && votes.iter().all(|v| v.answer.is_ok() || unreachable(v))
        {
            for vote in &votes {
                if let Err(error) = &vote.answer {
                    let address = &nodes.list[vote.node].address;
                    let why = error.short();
                    tracing::warn!("Redis at {address} is not reachable yet ({why}); retrying as it is used (AbortOnConnectFail is false)");
                }
            }
            nodes.retry_calls(Retry::of(settings));
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
        Err(nodes.no_quorum(answered, "answered", described))
    }
}

/// Connects to the Redis Cluster the settings' endpoints belong to (see cluster.rs), with the
/// first endpoint's client and TLS roots, and checks every primary's memory policy.
async fn connect_cluster(
    settings: &Settings,
    credentials: Option<EntraIdCredentialsProvider>,
) -> Result<Nodes> {
    let first = &settings.endpoints[0];
    let client = open_client(first, settings)?;
    let roots = match (&settings.tls_ca_certificate, first.tls) {
        (Some(path), true) => Some(trusted_roots(path)?),
        _ => None,
    };
    let (mut nodes, policies) =
        Nodes::connect_cluster(settings, credentials, client, roots).await?;
    warn_of_eviction(&policies);
    nodes.retry_calls(Retry::of(settings));
    Ok(nodes)
}

impl Node {
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

/// The TCP settings of every connection leasectl opens (single, quorum, Sentinel and its
/// sentinels, Cluster, notifications): TCP_NODELAY, as redis-rs leaves Nagle on. A call
/// written while another is unanswered on the shared connection — waiters, the quorum's
/// background calls, a renewal — then goes out at once instead of after the other's reply.
pub(crate) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
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
        .map_err(|e| Error::Settings(e.to_string()))?
        .set_tcp_settings(tcp_settings());
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
pub(super) fn trusted_roots(path: &std::path::Path) -> Result<Vec<u8>> {
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

//! `LeaseClient`: the connection to Redis and every lease operation on it — try-acquire,
//! acquire with a bounded wait (woken by the release notification), inspect, release.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};
use tokio::time::{timeout, Instant};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::holder::{Holder, LeaseInfo};
use crate::lease::Lease;
use crate::scripts;
use crate::settings::Settings;

/// The longest a lease name may be, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// How often a waiter polls by default when no release notification arrives.
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// The shortest TTL: below it the drift allowance (1% + 2 ms) leaves hardly any validity.
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// The longest TTL in milliseconds: PEXPIRE refuses one whose expiry instant overflows, and
/// by then the acquire script has already written the key, which would then never expire.
const MAX_TTL_MS: u64 = i64::MAX as u64 / 2;

/// What to ask for when acquiring a lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// The time to live set on acquisition and on every renewal.
    pub ttl: Duration,
    /// Renew automatically at this interval (clamped to two thirds of the TTL); `None` = never.
    pub auto_renew: Option<Duration>,
    /// Stored as `meta_<key>` hash fields.
    pub metadata: Vec<(String, String)>,
    /// While waiting, how often to try again when no release notification arrives (±25%
    /// jitter). A waiter never sleeps past the holder's remaining TTL, so an expiry is seen
    /// at once anyway; this only bounds the cost of a lost notification.
    pub fallback_poll: Duration,
}

impl LeaseOptions {
    /// The TTL and renewal of the settings, with no metadata.
    pub fn from_settings(settings: &Settings) -> LeaseOptions {
        LeaseOptions {
            ttl: settings.lease_duration,
            auto_renew: settings.auto_renew.then_some(settings.auto_renew_interval),
            metadata: Vec::new(),
            fallback_poll: FALLBACK_POLL,
        }
    }

    /// Adds one metadata field.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> LeaseOptions {
        self.metadata.push((key.into(), value.into()));
        self
    }
}

/// The outcome of an acquire: held by us, or by someone else (a normal outcome, not an error).
#[derive(Debug)]
pub enum Acquire {
    Acquired(Lease),
    Held(Holder),
}

/// A connection to one Redis endpoint and the settings of its leases.
#[derive(Clone)]
pub struct LeaseClient {
    shared: Arc<Shared>,
}

/// What a client and its leases share.
pub(crate) struct Shared {
    connection: ConnectionManager,
    client: Client,
    endpoint: String,
    settings: Settings,
}

impl LeaseClient {
    /// Connects to the settings' endpoint (PING included), within `ConnectTimeout`.
    ///
    /// # Errors
    /// [`Error::Connection`], [`Error::Auth`] or [`Error::Timeout`] naming the endpoint;
    /// [`Error::Settings`] for quorum settings (not in this version) or an unreadable CA file.
    pub async fn connect(settings: Settings) -> Result<LeaseClient> {
        let endpoint = match settings.endpoints.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Error::Settings(
                    "quorum mode (several Endpoints) is not available in this version; name one endpoint".into(),
                ))
            }
        };
        let address = endpoint.address();
        let client = open_client(&endpoint, &settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.sync_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connect = ConnectionManager::new_with_config(client.clone(), config);
        let connection = match timeout(settings.connect_timeout, connect).await {
            Ok(result) => result.map_err(|e| Error::from_redis(&address, &e))?,
            Err(_) => {
                return Err(Error::Timeout {
                    endpoint: address,
                    after: settings.connect_timeout,
                })
            }
        };
        let shared = Shared {
            connection,
            client,
            endpoint: address,
            settings,
        };
        let _: String = shared.run(&redis::cmd("PING")).await?;
        Ok(LeaseClient {
            shared: Arc::new(shared),
        })
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// `host:port` of the endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Takes the lease if it is free; otherwise answers its holder. One round trip.
    ///
    /// # Errors
    /// [`Error::Settings`] for an empty or huge name or a zero or huge TTL; connection errors.
    pub async fn try_acquire(&self, name: &str, options: &LeaseOptions) -> Result<Acquire> {
        check_name(name)?;
        let ttl_ms = check_ttl(options.ttl)?;
        let key = self.shared.settings.key_for(name);
        let id = uuid::Uuid::new_v4().to_string();
        let acquired_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut invocation = scripts::ACQUIRE.key(&key);
        invocation
            .key(fence_key(&key))
            .arg(&id)
            .arg(ttl_ms)
            .arg(&acquired_at);
        for (field, value) in &options.metadata {
            invocation.arg(format!("meta_{field}")).arg(value);
        }
        let sent_at = Instant::now();
        let reply: Value = self.shared.invoke(&invocation).await?;
        match reply {
            Value::Array(parts) if parts.first() == Some(&Value::Int(1)) => {
                let token = match parts.get(1) {
                    Some(Value::Int(t)) => *t as u64,
                    _ => return Err(self.shared.unexpected("acquire")),
                };
                let renew_every = options
                    .auto_renew
                    .map(|every| every.min(options.ttl * 2 / 3));
                Ok(Acquire::Acquired(Lease::new(
                    self.shared.clone(),
                    name,
                    key,
                    id,
                    token,
                    acquired_at,
                    options.ttl,
                    sent_at,
                    renew_every,
                )))
            }
            Value::Array(parts) => {
                let holder = parts.get(1).and_then(Holder::from_reply);
                // The key may expire between the check and the read: then it is simply free now.
                match holder {
                    Some(holder) => Ok(Acquire::Held(holder)),
                    None => Box::pin(self.try_acquire(name, options)).await,
                }
            }
            _ => Err(self.shared.unexpected("acquire")),
        }
    }

    /// Takes the lease, waiting up to `wait` while someone else holds it.
    ///
    /// See [`LeaseClient::acquire_observed`].
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire`].
    pub async fn acquire(
        &self,
        name: &str,
        options: &LeaseOptions,
        wait: Duration,
    ) -> Result<Acquire> {
        self.acquire_observed(name, options, wait, |_| {}).await
    }

    /// Takes the lease, waiting up to `wait`; `observe` sees the holder after every failed try.
    ///
    /// A release wakes the waiter at once (PUBLISH on the lease's release channel); otherwise
    /// it polls with jitter, never sleeping past the holder's remaining TTL.
    /// Answers [`Acquire::Held`] with the last holder seen when `wait` runs out.
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire`].
    pub async fn acquire_observed(
        &self,
        name: &str,
        options: &LeaseOptions,
        wait: Duration,
        mut observe: impl FnMut(&Holder),
    ) -> Result<Acquire> {
        let deadline = Instant::now() + wait;
        let mut notifications = None;
        let mut subscribed = false;
        loop {
            let holder = match self.try_acquire(name, options).await? {
                Acquire::Held(holder) => holder,
                acquired => return Ok(acquired),
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Acquire::Held(holder));
            }
            observe(&holder);
            if !subscribed {
                // Subscribe, then try again at once: a release between the two is not missed.
                subscribed = true;
                let channel = release_channel(&self.shared.settings.key_for(name));
                notifications = self.shared.subscribe(&channel).await;
                continue;
            }
            let jitter = 0.75 + fastrand::f64() / 2.0;
            let mut pause = options.fallback_poll.mul_f64(jitter).min(deadline - now);
            if let Some(ttl) = holder.ttl {
                pause = pause.min(ttl + Duration::from_millis(1));
            }
            match notifications.as_mut() {
                Some(stream) => {
                    let _ = timeout(pause, stream.next()).await;
                }
                None => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Reads who holds `name`, in any of the formats of SPEC 2.
    ///
    /// # Errors
    /// [`Error::Settings`] for an empty or huge name; connection errors.
    pub async fn inspect(&self, name: &str) -> Result<LeaseInfo> {
        check_name(name)?;
        self.inspect_key(name, self.shared.settings.key_for(name))
            .await
    }

    /// Reads who holds `key`, the lease `name`. The name is not checked: `inspect_all` also
    /// lists keys that other tools wrote under the prefix with names we would refuse.
    async fn inspect_key(&self, name: &str, key: String) -> Result<LeaseInfo> {
        let reply: Value = self.shared.invoke(&scripts::INSPECT.key(&key)).await?;
        Ok(LeaseInfo {
            name: name.to_string(),
            holder: Holder::from_reply(&reply),
            key,
        })
    }

    /// Every lease under the key prefix (SCAN), sorted by name.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn inspect_all(&self) -> Result<Vec<LeaseInfo>> {
        let prefix = &self.shared.settings.key_prefix;
        let pattern = format!("{}*", escape_glob(prefix));
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = self
                .shared
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            // A key that is not UTF-8 cannot be named through this API: skip it.
            let batch = batch.into_iter().filter_map(|k| String::from_utf8(k).ok());
            keys.extend(batch.filter(|k| !is_fence_key(k)));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        let reads = keys
            .iter()
            .map(|key| self.inspect_key(&key[prefix.len()..], key.clone()));
        let infos = futures_util::future::try_join_all(reads).await?;
        Ok(infos
            .into_iter()
            .filter(|info| info.holder.is_some())
            .collect())
    }

    /// Releases `name` if its current lease id is `lease_id`. Answers whether it did.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        check_name(name)?;
        self.shared
            .release(&self.shared.settings.key_for(name), lease_id)
            .await
    }

    /// Deletes `name`'s key whoever holds it (an operator's action). Answers whether a key was there.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn force_release(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let key = self.shared.settings.key_for(name);
        let deleted: i64 = self
            .shared
            .invoke(scripts::FORCE_RELEASE.key(&key).arg(release_channel(&key)))
            .await?;
        Ok(deleted == 1)
    }
}

impl Shared {
    /// Runs a script invocation, mapping errors to ours.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))
    }

    /// Runs one command, mapping errors to ours.
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T> {
        let mut connection = self.connection.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(&e))
    }

    pub(crate) async fn extend(&self, key: &str, id: &str, ttl: Duration) -> Result<bool> {
        let extended: i64 = self
            .invoke(scripts::EXTEND.key(key).arg(id).arg(ttl.as_millis() as u64))
            .await?;
        Ok(extended == 1)
    }

    pub(crate) async fn release(&self, key: &str, id: &str) -> Result<bool> {
        let released: i64 = self
            .invoke(scripts::RELEASE.key(key).arg(id).arg(release_channel(key)))
            .await?;
        Ok(released == 1)
    }

    /// A stream of release notifications; `None` (the waiter then polls) when it cannot subscribe.
    async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<impl futures_util::Stream<Item = redis::Msg> + Unpin> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match timeout(self.settings.connect_timeout, subscribe).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(error = %self.error(&error), "cannot subscribe to releases; polling");
                None
            }
            Err(_) => None,
        }
    }

    fn error(&self, error: &redis::RedisError) -> Error {
        match Error::from_redis(&self.endpoint, error) {
            Error::Timeout { endpoint, .. } => Error::Timeout {
                endpoint,
                after: self.settings.sync_timeout,
            },
            other => other,
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        Error::Redis {
            endpoint: self.endpoint.clone(),
            detail: format!("unexpected answer to the {what} script"),
        }
    }
}

fn open_client(endpoint: &Endpoint, settings: &Settings) -> Result<Client> {
    // rustls needs one process-wide crypto provider; a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let info = endpoint
        .connection_info(settings.database)
        .map_err(|e| Error::Settings(e.to_string()))?;
    let client = match (&settings.tls_ca_certificate, endpoint.tls) {
        (Some(path), true) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Settings(format!(
                    "TlsCaCertificate {}: cannot read: {e}",
                    path.display()
                ))
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(info, certificates)
        }
        _ => Client::open(info),
    };
    client.map_err(|e| Error::Settings(format!("{}: {e}", endpoint.address())))
}

/// The TTL in whole milliseconds, as PEXPIRE takes it.
fn check_ttl(ttl: Duration) -> Result<u64> {
    if ttl < MIN_TTL {
        return Err(Error::Settings(format!(
            "the lease TTL must be at least {}ms, more than its clock-drift allowance",
            MIN_TTL.as_millis()
        )));
    }
    match u64::try_from(ttl.as_millis()) {
        Ok(ms) if ms <= MAX_TTL_MS => Ok(ms),
        _ => Err(Error::Settings(format!(
            "the lease TTL of {} is too long for Redis",
            humantime::format_duration(ttl)
        ))),
    }
}

/// Checks a lease name: not empty, at most [`MAX_NAME_LEN`] bytes.
///
/// # Errors
/// [`Error::Settings`] saying what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Settings("the lease name must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::Settings(format!(
            "the lease name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    Ok(())
}

/// The fencing counter's key: in the same Redis Cluster slot as the lease key, and outside
/// the `KeyPrefix*` pattern when the key has no hash tag of its own.
pub(crate) fn fence_key(key: &str) -> String {
    if has_hash_tag(key) {
        format!("{key}:fence")
    } else {
        format!("{{{key}}}:fence")
    }
}

fn is_fence_key(key: &str) -> bool {
    key.strip_suffix(":fence")
        .is_some_and(|lease_key| fence_key(lease_key) == key)
}

/// True when Redis Cluster would hash only a `{...}` part of `key`.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .is_some_and(|open| key[open + 1..].find('}').is_some_and(|len| len > 0))
}

/// The channel on which a release of `key` is announced.
pub(crate) fn release_channel(key: &str) -> String {
    format!("{key}:released")
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_keys_share_the_slot_and_stay_out_of_the_prefix() {
        assert_eq!(fence_key("lease:job"), "{lease:job}:fence");
        assert_eq!(fence_key("lease:{job}"), "lease:{job}:fence");
        assert!(is_fence_key("lease:{job}:fence"));
        assert!(!is_fence_key("lease:my:fence"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name("critical-section-lock").is_ok());
    }
}

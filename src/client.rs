//! `LeaseClient`: every lease operation — try-acquire, acquire with a bounded wait (woken
//! by the release notification), inspect, release — on one Redis instance or, in quorum
//! mode (Redlock), on a majority of several independent ones.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::Value;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::holder::{Holder, InstanceView, LeaseInfo};
use crate::keys::{
    check_name, check_ttl, escape_glob, fence_key, is_fence_key, newest_token_key, queue_keys,
    release_channel,
};
use crate::lease::{validity_end, Lease, Schedule};
use crate::nodes::{Call, Node, Nodes, Pending, Vote};
use crate::quorum::{self, Grant, Tally};
use crate::scripts;
use crate::settings::Settings;
use crate::wait::{queue_grace, Waiter};
use redis::EntraIdCredentialsProvider;

/// How many times a quorum attempt that ended in a split vote is tried again.
const SPLIT_RETRIES: u32 = 3;
/// How often a waiter polls by default when no release notification arrives.
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

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
    /// A cap on the hold time: renewal stops after it and the lost signal fires with
    /// [`LostReason::MaxHold`](crate::LostReason::MaxHold), so a stuck holder cannot renew forever.
    pub max_hold: Option<Duration>,
    /// With auto-renewal: also listen on the lease's release channel, so that a forced
    /// release is noticed at once instead of at the next renewal (one pub/sub connection per
    /// lease, so it is off by default; `run` and `exec` turn it on).
    pub watch_releases: bool,
}

impl LeaseOptions {
    /// The TTL and renewal of the settings, with no metadata.
    pub fn from_settings(settings: &Settings) -> LeaseOptions {
        LeaseOptions {
            ttl: settings.lease_duration,
            auto_renew: settings.auto_renew.then_some(settings.auto_renew_interval),
            metadata: Vec::new(),
            fallback_poll: FALLBACK_POLL,
            max_hold: None,
            watch_releases: false,
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

/// The outcome of [`LeaseClient::fenced_set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FencedWrite {
    /// The value was written; the key now remembers this token.
    Written,
    /// Refused: a write with this newer token came first.
    Stale { newest: u64 },
}

/// A connection to the Redis instance (or, in quorum mode, instances) of the settings.
#[derive(Clone)]
pub struct LeaseClient {
    shared: Arc<Shared>,
}

/// What a client and its leases share.
pub(crate) struct Shared {
    nodes: Nodes,
    settings: Settings,
}

impl LeaseClient {
    /// Connects to the settings' endpoints and PINGs them, within `ConnectTimeout`; in quorum
    /// mode a majority must answer (the others are retried as they are used).
    ///
    /// # Errors
    /// [`Error::Connection`], [`Error::Auth`] or [`Error::Timeout`] naming the endpoint;
    /// [`Error::NoQuorum`] in quorum mode; [`Error::Settings`] for an unreadable CA file.
    pub async fn connect(settings: Settings) -> Result<LeaseClient> {
        let nodes = Nodes::connect(&settings, None).await?;
        Ok(LeaseClient {
            shared: Arc::new(Shared { nodes, settings }),
        })
    }

    /// Connects with Microsoft Entra ID tokens from `credentials` (for example built by
    /// [`EntraIdCredentialsProvider::new_with_credential`] around any `TokenCredential`),
    /// refreshed and re-applied to live connections before they expire.
    ///
    /// # Errors
    /// As [`LeaseClient::connect`].
    pub async fn connect_with_credentials(
        settings: Settings,
        credentials: EntraIdCredentialsProvider,
    ) -> Result<LeaseClient> {
        let nodes = Nodes::connect(&settings, Some(credentials)).await?;
        Ok(LeaseClient {
            shared: Arc::new(Shared { nodes, settings }),
        })
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// `host:port` of each instance, for messages.
    pub fn endpoints(&self) -> Vec<&str> {
        self.shared
            .nodes
            .list
            .iter()
            .map(|node| node.address.as_str())
            .collect()
    }

    /// Takes the lease if it is free; otherwise answers its holder. One round trip to each
    /// instance in the usual case.
    ///
    /// In quorum mode the lease is ours when a majority granted it within its validity; the
    /// fencing token is then one that a majority's counters stand at (raised first when the
    /// instances' counters disagreed), and what a failed attempt was granted is undone.
    ///
    /// # Errors
    /// [`Error::Settings`] for an empty or huge name or a too short or huge TTL; connection
    /// errors; [`Error::NoQuorum`] when too few instances answered.
    pub async fn try_acquire(&self, name: &str, options: &LeaseOptions) -> Result<Acquire> {
        self.attempt(name, options, "", SPLIT_RETRIES).await
    }

    /// One acquire attempt; `waiter` (single mode, `""` for none) keeps a place in the
    /// lease's queue, so that waiters get the lease in the order they came.
    async fn attempt(
        &self,
        name: &str,
        options: &LeaseOptions,
        waiter: &str,
        splits_left: u32,
    ) -> Result<Acquire> {
        check_name(name)?;
        let ttl_ms = check_ttl(options.ttl)?;
        let shared = &self.shared;
        let key = shared.settings.key_for(name);
        let id = uuid::Uuid::new_v4().to_string();
        let acquired_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (queue, deadlines) = queue_keys(&key);
        let mut call = Call::new(&scripts::ACQUIRE)
            .key(&key)
            .key(fence_key(&key))
            .key(queue)
            .key(deadlines)
            .arg(&id)
            .arg(ttl_ms)
            .arg(&acquired_at)
            .arg(waiter)
            .arg(queue_grace(options).as_millis() as u64);
        for (field, value) in &options.metadata {
            call = call.arg(format!("meta_{field}")).arg(value);
        }
        let call = Arc::new(call);
        let total = shared.nodes.list.len();
        let sent_at = Instant::now();
        let (votes, pending) = shared
            .nodes
            .gather(
                |node| grant(node, &call),
                |votes| Tally::of(votes).decides(total),
            )
            .await;
        let tally = Tally::of(&votes);
        if tally.granted >= quorum::majority(total) {
            let token = shared.settle_token(&key, &id, &votes, pending).await;
            let in_time = Instant::now() < validity_end(sent_at, options.ttl);
            return match token {
                Ok(token) if in_time => {
                    let schedule = Schedule {
                        ttl: options.ttl,
                        renew_every: options
                            .auto_renew
                            .map(|every| every.min(options.ttl * 2 / 3)),
                        hold_until: options.max_hold.map(|cap| sent_at + cap),
                        watch_releases: options.watch_releases,
                    };
                    let lease = Lease::new(
                        shared.clone(),
                        name,
                        key,
                        id,
                        token,
                        acquired_at,
                        sent_at,
                        schedule,
                    );
                    Ok(Acquire::Acquired(lease))
                }
                outcome => {
                    shared.undo(&key, &id).await;
                    Err(outcome.err().unwrap_or_else(|| {
                        shared.no_quorum(
                            &votes,
                            tally.granted,
                            "the lease's validity ran out while acquiring",
                        )
                    }))
                }
            };
        }
        if total == 1 {
            return match votes.into_iter().next().map(|vote| vote.answer) {
                Some(Ok(Grant::Held {
                    holder: Some(holder),
                    ..
                })) => Ok(Acquire::Held(holder)),
                // Held, but the key vanished between the check and the read: it is free now.
                Some(Ok(Grant::Held { holder: None, .. })) => {
                    Box::pin(self.attempt(name, options, waiter, splits_left)).await
                }
                Some(Err(error)) => Err(error),
                _ => Err(shared.unexpected("acquire")),
            };
        }
        // Quorum mode: undo what may have been granted, here or by calls still under way.
        if tally.granted > 0 || tally.failed > 0 || !pending.is_empty() {
            shared.undo(&key, &id).await;
        }
        let holders: Vec<&Holder> = votes
            .iter()
            .filter_map(|v| match &v.answer {
                Ok(Grant::Held {
                    holder: Some(holder),
                    ..
                }) => Some(holder),
                _ => None,
            })
            .collect();
        let majority = quorum::majority(total);
        let agreed = quorum::agreed_holder(holders.iter().copied(), majority);
        match holders.first() {
            // A split vote: contenders each won a minority and undid it. Try again after a
            // random pause (Redlock's remedy), so that one of them wins.
            Some(_) if agreed.is_none() && tally.granted > 0 && splits_left > 0 => {
                tokio::time::sleep(Duration::from_micros(fastrand::u64(1_000..20_000))).await;
                Box::pin(self.attempt(name, options, waiter, splits_left - 1)).await
            }
            Some(first) if tally.granted + tally.held >= majority => {
                Ok(Acquire::Held(agreed.unwrap_or(first).clone()))
            }
            _ => Err(shared.no_quorum(&votes, tally.granted, "")),
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

    /// Takes the lease, waiting up to `wait`; `observe` sees the holder after each failed try
    /// that leaves time to wait.
    ///
    /// A release wakes the waiter at once (PUBLISH on the lease's release channel, from any
    /// instance); otherwise it polls with jitter, never sleeping past the holder's remaining
    /// TTL. Answers [`Acquire::Held`] with the last holder seen when `wait` runs out.
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
        let key = self.shared.settings.key_for(name);
        // Queueing is per instance, so it is for single mode: in quorum mode different
        // instances could each promise the lease to a different waiter, and none would win.
        let place = match self.shared.nodes.list.len() {
            1 => uuid::Uuid::new_v4().to_string(),
            _ => String::new(),
        };
        let queued = Some(place.clone()).filter(|place| !place.is_empty());
        let mut waiter = Waiter::new(key.clone(), wait, options.fallback_poll, queued);
        let (started, mut attempts) = (Instant::now(), 0u64);
        loop {
            attempts += 1;
            let holder = match self.attempt(name, options, &place, SPLIT_RETRIES).await? {
                Acquire::Held(holder) => holder,
                acquired => {
                    let waited_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(lease = name, attempts, waited_ms, "acquired after waiting");
                    return Ok(acquired);
                }
            };
            if waiter.is_over() {
                if !place.is_empty() {
                    self.shared.leave_queue(&key, &place).await;
                }
                let waited_ms = started.elapsed().as_millis() as u64;
                tracing::info!(lease = name, attempts, waited_ms, holder = %holder.display_name(), "still held when the wait ran out");
                return Ok(Acquire::Held(holder));
            }
            observe(&holder);
            waiter.pause(&self.shared.nodes, &holder).await;
        }
    }

    /// Waits up to `wait` until `name` is free, woken by its release like a waiting acquire.
    /// Answers `None` once it is free, or the holder when the wait ran out.
    ///
    /// # Errors
    /// As [`LeaseClient::inspect`].
    pub async fn wait_until_free(&self, name: &str, wait: Duration) -> Result<Option<Holder>> {
        check_name(name)?;
        let mut waiter = Waiter::new(
            self.shared.settings.key_for(name),
            wait,
            FALLBACK_POLL,
            None,
        );
        loop {
            let Some(holder) = self.inspect(name).await?.holder else {
                return Ok(None);
            };
            if waiter.is_over() {
                return Ok(Some(holder));
            }
            waiter.pause(&self.shared.nodes, &holder).await;
        }
    }

    /// Writes `value` to `key` only when `token` is not older than the newest fencing token a
    /// write to `key` has carried (the protected-resource side of fencing). Runs on the first
    /// instance of the settings.
    ///
    /// # Errors
    /// Connection errors; [`Error::Redis`] when `key` holds something other than a string.
    pub async fn fenced_set(&self, key: &str, value: &str, token: u64) -> Result<FencedWrite> {
        let call = Arc::new(
            Call::new(&scripts::FENCED_SET)
                .key(key)
                .key(newest_token_key(key))
                .arg(value)
                .arg(token),
        );
        let node = &self.shared.nodes.list[0];
        let (written, newest): (i64, i64) = node.script(&call).await?;
        Ok(if written == 1 {
            FencedWrite::Written
        } else {
            FencedWrite::Stale {
                newest: newest as u64,
            }
        })
    }

    /// Reads who holds `name`, in any of the formats of SPEC 2 (in quorum mode: the holder a
    /// majority agrees on, and each instance's view).
    ///
    /// # Errors
    /// [`Error::Settings`] for an empty or huge name; connection errors;
    /// [`Error::NoQuorum`] when too few instances answered.
    pub async fn inspect(&self, name: &str) -> Result<LeaseInfo> {
        check_name(name)?;
        self.inspect_key(name, self.shared.settings.key_for(name))
            .await
    }

    /// Reads who holds `key`, the lease `name`. The name is not checked: `inspect_all` also
    /// lists keys that other tools wrote under the prefix with names we would refuse.
    async fn inspect_key(&self, name: &str, key: String) -> Result<LeaseInfo> {
        let call = Arc::new(Call::new(&scripts::INSPECT).key(&key).key(fence_key(&key)));
        let nodes = &self.shared.nodes;
        let votes = nodes.all(|node| node.script::<Value>(&call)).await;
        let views: Vec<InstanceView> = votes
            .iter()
            .map(|vote| view_of(&nodes.list[vote.node], &vote.answer))
            .collect();
        let answered = views.iter().filter(|v| v.error.is_none()).count();
        let majority = nodes.majority();
        if answered < majority {
            let first = votes.into_iter().find_map(|v| v.answer.err());
            return Err(match first {
                Some(error) if nodes.list.len() == 1 => error,
                _ => self.shared.no_quorum_of(&views, answered),
            });
        }
        let holder =
            quorum::agreed_holder(views.iter().filter_map(|v| v.holder.as_ref()), majority)
                .cloned();
        let mut instances = views;
        instances.sort_by_key(|v| nodes.list.iter().position(|n| n.address == v.address));
        if nodes.list.len() == 1 {
            instances.clear();
        }
        Ok(LeaseInfo {
            name: name.to_string(),
            key,
            holder,
            instances,
        })
    }

    /// Every lease under the key prefix (SCAN on every instance), sorted by name.
    ///
    /// # Errors
    /// Connection errors; [`Error::NoQuorum`] when too few instances answered.
    pub async fn inspect_all(&self) -> Result<Vec<LeaseInfo>> {
        let prefix = &self.shared.settings.key_prefix;
        let pattern = format!("{}*", escape_glob(prefix));
        let nodes = &self.shared.nodes;
        let votes = nodes.all(|node| node.scan(&pattern)).await;
        let answered = votes.iter().filter(|v| v.answer.is_ok()).count();
        if answered < nodes.majority() {
            let mut errors = votes.into_iter().filter_map(|v| v.answer.err());
            return Err(errors.next().expect("some instance failed"));
        }
        let mut keys: Vec<String> = votes
            .into_iter()
            .filter_map(|v| v.answer.ok())
            .flatten()
            .filter(|key| !is_fence_key(key))
            .collect();
        keys.sort();
        keys.dedup();
        let reads = keys
            .iter()
            .map(|key| self.inspect_key(&key[prefix.len()..], key.clone()));
        let infos = futures_util::future::try_join_all(reads).await?;
        Ok(infos
            .into_iter()
            .filter(|info| {
                info.holder.is_some() || info.instances.iter().any(|i| i.holder.is_some())
            })
            .collect())
    }

    /// Releases `name` if its current lease id is `lease_id`. Answers whether it did (on any
    /// instance).
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        check_name(name)?;
        self.shared
            .release(&self.shared.settings.key_for(name), lease_id)
            .await
    }

    /// Deletes `name`'s key whoever holds it (an operator's action), on every instance.
    /// Answers whether a key was there.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn force_release(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let key = self.shared.settings.key_for(name);
        let call = Arc::new(
            Call::new(&scripts::FORCE_RELEASE)
                .key(&key)
                .key(queue_keys(&key).0)
                .arg(release_channel(&key)),
        );
        self.shared.any(&call).await
    }
}

impl Shared {
    /// Extends the lease on a majority. `Ok(false)`: it is no longer ours.
    pub(crate) async fn extend(&self, key: &str, id: &str, ttl: Duration) -> Result<bool> {
        let call = Arc::new(
            Call::new(&scripts::EXTEND)
                .key(key)
                .arg(id)
                .arg(check_ttl(ttl)?),
        );
        let total = self.nodes.list.len();
        let (votes, pending) = self
            .nodes
            .gather(
                |node| node.script::<i64>(&call),
                |votes| quorum::extension(votes, total).is_some(),
            )
            .await;
        // The instances still answering are extended all the same: let their calls finish.
        finish_in_background(pending);
        match quorum::extension(&votes, total) {
            Some(extended) => Ok(extended),
            None if total == 1 => Err(votes
                .into_iter()
                .find_map(|v| v.answer.err())
                .unwrap_or_else(|| self.unexpected("extend"))),
            None => {
                let confirmed = votes.iter().filter(|v| matches!(v.answer, Ok(1))).count();
                let described = votes
                    .iter()
                    .map(|v| {
                        self.nodes.describe(v, |n| {
                            if *n == 1 {
                                "confirmed".into()
                            } else {
                                "not ours".into()
                            }
                        })
                    })
                    .collect();
                Err(Error::NoQuorum {
                    agreed: confirmed,
                    needed: self.nodes.majority(),
                    total,
                    outcome: "confirmed",
                    votes: described,
                })
            }
        }
    }

    /// The release announcements of `key` (`None` when no instance lets us subscribe).
    pub(crate) async fn subscribe_releases(
        &self,
        key: &str,
    ) -> Option<futures_util::stream::BoxStream<'static, redis::Msg>> {
        self.nodes.subscribe(&release_channel(key)).await
    }

    /// Releases our lease on every instance and wakes the waiters; answers whether any
    /// instance held it.
    pub(crate) async fn release(&self, key: &str, id: &str) -> Result<bool> {
        self.release_on_all(key, id, &release_channel(key)).await
    }

    /// Releases on every instance; `channel` is where waiters are woken (`""`: nowhere).
    async fn release_on_all(&self, key: &str, id: &str, channel: &str) -> Result<bool> {
        let call = Arc::new(
            Call::new(&scripts::RELEASE)
                .key(key)
                .key(queue_keys(key).0)
                .arg(id)
                .arg(channel),
        );
        self.any(&call).await
    }

    /// Runs `call` on every instance; answers whether any answered 1. An error only when no
    /// instance answered at all.
    async fn any(&self, call: &Arc<Call>) -> Result<bool> {
        // Every instance's answer is awaited: when this returns, the lease is gone wherever
        // it could be reached, so that the next acquire does not meet a leftover.
        let votes = self.nodes.all(|node| node.script::<i64>(call)).await;
        if votes.iter().any(|v| matches!(v.answer, Ok(1))) {
            return Ok(true);
        }
        if votes.iter().any(|v| v.answer.is_ok()) {
            return Ok(false);
        }
        Err(votes
            .into_iter()
            .find_map(|v| v.answer.err())
            .expect("no instance answered"))
    }

    /// Gives up a waiter's place in the queue (it would otherwise time out).
    async fn leave_queue(&self, key: &str, waiter: &str) {
        let (queue, deadlines) = queue_keys(key);
        let call = Arc::new(
            Call::new(&scripts::LEAVE_QUEUE)
                .key(queue)
                .key(deadlines)
                .arg(waiter),
        );
        let _ = self.nodes.all(|node| node.script::<i64>(&call)).await;
    }

    /// Undoes an acquire that did not reach a majority: releases it wherever it was granted.
    async fn undo(&self, key: &str, id: &str) {
        // Silently: nothing was held that anyone waits for.
        if let Err(error) = self.release_on_all(key, id, "").await {
            tracing::debug!(%error, "undoing a partial acquire failed; the TTL will end it");
        }
    }

    /// Makes sure that a majority's fencing counters stand at the token before it is handed
    /// out, so that no later acquisition — by any majority — can get a smaller one. When the
    /// granting instances agree (the usual case) this costs nothing; otherwise the instances
    /// behind are raised first. Instances still answering, or that answered behind, are raised
    /// in the background.
    async fn settle_token(
        self: &Arc<Self>,
        key: &str,
        id: &str,
        votes: &[Vote<Grant>],
        pending: Pending<Grant>,
    ) -> Result<u64> {
        let (token, agreeing) = quorum::token_of(votes);
        let raise = Arc::new(
            Call::new(&scripts::RAISE)
                .key(key)
                .key(fence_key(key))
                .arg(token)
                .arg(id),
        );
        let mut behind = quorum::behind(votes, token);
        let majority = self.nodes.majority();
        if agreeing < majority {
            let granting_behind: Vec<usize> = behind
                .iter()
                .copied()
                .filter(|i| {
                    votes
                        .iter()
                        .any(|v| v.node == *i && matches!(v.answer, Ok(Grant::Granted(_))))
                })
                .collect();
            let raised = self
                .nodes
                .on(&granting_behind, |node| node.script::<i64>(&raise))
                .await;
            let standing = agreeing
                + raised
                    .iter()
                    .filter(|v| v.answer.as_ref().is_ok_and(|c| *c as u64 >= token))
                    .count();
            if standing < majority {
                return Err(self.no_quorum(
                    votes,
                    standing,
                    "the instances could not agree on a fencing token",
                ));
            }
            behind.retain(|i| !granting_behind.contains(i));
        }
        if !behind.is_empty() || !pending.is_empty() {
            tokio::spawn(raise_stragglers(
                self.clone(),
                raise,
                behind,
                pending,
                token,
            ));
        }
        Ok(token)
    }

    fn no_quorum(&self, votes: &[Vote<Grant>], granted: usize, why: &str) -> Error {
        let mut described: Vec<String> = votes
            .iter()
            .map(|vote| {
                self.nodes.describe(vote, |grant| match grant {
                    Grant::Granted(_) => "granted".into(),
                    Grant::Held {
                        holder: Some(holder),
                        ..
                    } => format!("held by {}", holder.display_name()),
                    Grant::Held { holder: None, .. } => "held".into(),
                })
            })
            .collect();
        let answered: Vec<usize> = votes.iter().map(|v| v.node).collect();
        for (_, node) in self
            .nodes
            .list
            .iter()
            .enumerate()
            .filter(|(i, _)| !answered.contains(i))
        {
            described.push(format!("{} undecided", node.address));
        }
        if !why.is_empty() {
            described.push(why.to_string());
        }
        Error::NoQuorum {
            agreed: granted,
            needed: self.nodes.majority(),
            total: self.nodes.list.len(),
            outcome: "granted",
            votes: described,
        }
    }

    fn no_quorum_of(&self, views: &[InstanceView], answered: usize) -> Error {
        let votes = views
            .iter()
            .map(|v| match &v.error {
                Some(error) => format!("{} {error}", v.address),
                None => format!("{} answered", v.address),
            })
            .collect();
        Error::NoQuorum {
            agreed: answered,
            needed: self.nodes.majority(),
            total: self.nodes.list.len(),
            outcome: "answered",
            votes,
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        let endpoint = self
            .nodes
            .list
            .first()
            .map(|n| n.address.clone())
            .unwrap_or_default();
        Error::Redis {
            endpoint,
            detail: format!("unexpected answer to the {what} script"),
        }
    }
}

/// Lets calls that are still under way finish (and be read) in the background, so that each
/// instance gets the call even though the decision did not wait for its answer.
fn finish_in_background<T: Send + 'static>(mut pending: Pending<T>) {
    if !pending.is_empty() {
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
}

/// Runs the acquire script on one instance and reads its answer.
fn grant(node: &Node, call: &Arc<Call>) -> BoxFuture<'static, Result<Grant>> {
    let request = node.script::<Value>(call);
    let address = node.address.clone();
    Box::pin(async move {
        let reply = request.await?;
        Grant::parse(&reply).ok_or_else(|| Error::Redis {
            endpoint: address,
            detail: "unexpected answer to the acquire script".into(),
        })
    })
}

/// Raises the instances that answered behind the token, and those whose answers were still
/// under way when the acquire was decided.
async fn raise_stragglers(
    shared: Arc<Shared>,
    raise: Arc<Call>,
    mut behind: Vec<usize>,
    mut pending: Pending<Grant>,
    token: u64,
) {
    while let Some(late) = pending.next().await {
        behind.extend(quorum::behind(std::slice::from_ref(&late), token));
    }
    let raised = shared
        .nodes
        .on(&behind, |node| node.script::<i64>(&raise))
        .await;
    for vote in raised.iter().filter(|v| v.answer.is_err()) {
        tracing::debug!(node = %shared.nodes.list[vote.node].address, "raising the fencing counter failed");
    }
}

/// One instance's answer to the inspect script, as a view.
fn view_of(node: &Node, answer: &Result<Value>) -> InstanceView {
    let mut view = InstanceView {
        address: node.address.clone(),
        holder: None,
        counter: None,
        error: None,
    };
    match answer {
        Ok(Value::Array(parts)) => {
            view.holder = parts.first().and_then(Holder::from_reply);
            view.counter = match parts.get(1) {
                Some(Value::Int(counter)) => Some(*counter as u64),
                _ => None,
            };
        }
        Ok(_) => view.error = Some("unexpected answer to the inspect script".into()),
        Err(error) => view.error = Some(error.short()),
    }
    view
}

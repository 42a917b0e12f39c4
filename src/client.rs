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
use crate::holder::{Holder, InstanceView, KeyFormat, LeaseInfo};
use crate::keys::{
    check_name, check_ttl, escape_glob, fence_key, is_internal, longest_ttl_key, newest_token_key,
    queue_keys, release_channel,
};
use crate::lease::{validity_end, Lease, Schedule};
use crate::lease_set::LeaseSet;
use crate::nodes::{Call, Node, Nodes, Pending, Vote};
use crate::quorum::{self, Grant, Tally};
use crate::scripts;
use crate::settings::Settings;
use crate::wait::{Background, Backoff, Place, Waiter, QUEUE_GRACE};
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

/// The outcome of acquiring a set of leases together: all of them, or who holds one of them.
#[derive(Debug)]
pub enum AcquireSet {
    Acquired(LeaseSet),
    /// `name`, one of the set, is held by `holder`; none of the set was taken.
    Held {
        name: String,
        holder: Holder,
    },
}

/// What an attempt at a set of names (one, usually) came to.
enum Taken {
    /// One lease per name, in the order of the names.
    Acquired(Vec<Lease>),
    /// The lease at this index is held.
    Held { lease: usize, holder: Holder },
}

impl From<Taken> for Acquire {
    /// For an attempt at one name.
    fn from(taken: Taken) -> Acquire {
        match taken {
            Taken::Acquired(mut leases) => Acquire::Acquired(leases.remove(0)),
            Taken::Held { holder, .. } => Acquire::Held(holder),
        }
    }
}

impl AcquireSet {
    fn of(taken: Taken, names: &[String]) -> AcquireSet {
        match taken {
            Taken::Acquired(leases) => AcquireSet::Acquired(LeaseSet::new(leases)),
            Taken::Held { lease, holder } => AcquireSet::Held {
                name: names[lease].clone(),
                holder,
            },
        }
    }
}

/// A set's names, checked, sorted and each once: the fixed order every caller takes them in.
fn set_names(names: &[impl AsRef<str>]) -> Result<Vec<String>> {
    let mut sorted = Vec::with_capacity(names.len());
    for name in names {
        check_name(name.as_ref())?;
        sorted.push(name.as_ref().to_string());
    }
    if sorted.is_empty() {
        return Err(Error::Settings(
            "a set of leases needs at least one name".into(),
        ));
    }
    sorted.sort();
    sorted.dedup();
    Ok(sorted)
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
    /// Queue places that dropped waits give up.
    background: Arc<Background>,
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
            shared: Arc::new(Shared {
                nodes,
                settings,
                background: Arc::default(),
            }),
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
            shared: Arc::new(Shared {
                nodes,
                settings,
                background: Arc::default(),
            }),
        })
    }

    /// Waits for the clean-up that dropped waits left to do in the background (giving up
    /// their places in the queue), so that it is done before the process exits. Each call in
    /// it is bounded by `SyncTimeout`.
    pub async fn flush(&self) {
        self.shared.background.finish().await;
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
        check_name(name)?;
        let names = [name.to_string()];
        Ok(Acquire::from(
            self.attempt(&names, options, "", SPLIT_RETRIES).await?,
        ))
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
    /// TTL. In single mode waiters get the lease in the order they came. Answers
    /// [`Acquire::Held`] with the last holder seen when `wait` runs out.
    ///
    /// A try that fails on a connection error, a timeout or no quorum (a restart, a cut) is
    /// tried again with backoff while `wait` lasts. Dropping the future gives up its place in
    /// the queue in the background (see [`LeaseClient::flush`]).
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire`]; a connection error only when it lasted until `wait`
    /// ran out (the last one).
    pub async fn acquire_observed(
        &self,
        name: &str,
        options: &LeaseOptions,
        wait: Duration,
        mut observe: impl FnMut(&Holder),
    ) -> Result<Acquire> {
        check_name(name)?;
        let names = [name.to_string()];
        let taken = self
            .wait_for(&names, options, wait, |_, holder| observe(holder))
            .await?;
        Ok(Acquire::from(taken))
    }

    /// Takes every lease of `names` or none, in one script per instance, so that two callers
    /// asking for overlapping sets — in any order — can never each hold a part and wait for
    /// the other. The names are taken in sorted order (duplicates once); in quorum mode a
    /// majority must grant the whole set. The leases share one lease id and are released
    /// together by [`LeaseSet::release`]; each has its own fencing token and renewal.
    ///
    /// In Redis Cluster mode the names must share a hash tag (`{job}:input`, `{job}:output`).
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire`]; [`Error::Settings`] for an empty set.
    pub async fn try_acquire_set(
        &self,
        names: &[impl AsRef<str>],
        options: &LeaseOptions,
    ) -> Result<AcquireSet> {
        let names = set_names(names)?;
        let taken = self.attempt(&names, options, "", SPLIT_RETRIES).await?;
        Ok(AcquireSet::of(taken, &names))
    }

    /// Takes every lease of `names` or none, waiting up to `wait`; see
    /// [`LeaseClient::try_acquire_set`] and [`LeaseClient::acquire_set_observed`].
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire_set`].
    pub async fn acquire_set(
        &self,
        names: &[impl AsRef<str>],
        options: &LeaseOptions,
        wait: Duration,
    ) -> Result<AcquireSet> {
        self.acquire_set_observed(names, options, wait, |_, _| {})
            .await
    }

    /// Takes every lease of `names` or none, waiting up to `wait`, woken by the release of the
    /// lease that stood in the way; `observe` sees that lease's name and holder after each
    /// failed try that leaves time to wait. A set does not queue behind the waiters of its
    /// leases (it would have to hold a place in several queues at once); it tries again when
    /// a lease that stood in the way is released. With one name this is
    /// [`LeaseClient::acquire_observed`].
    ///
    /// # Errors
    /// As [`LeaseClient::try_acquire_set`].
    pub async fn acquire_set_observed(
        &self,
        names: &[impl AsRef<str>],
        options: &LeaseOptions,
        wait: Duration,
        observe: impl FnMut(&str, &Holder),
    ) -> Result<AcquireSet> {
        let names = set_names(names)?;
        let taken = self.wait_for(&names, options, wait, observe).await?;
        Ok(AcquireSet::of(taken, &names))
    }

    /// One acquire attempt for a set of checked names (one, usually); `waiter` (single mode
    /// and one lease, `""` for none) keeps a place in the lease's queue, so that waiters get
    /// the lease in the order they came.
    async fn attempt(
        &self,
        names: &[String],
        options: &LeaseOptions,
        waiter: &str,
        splits_left: u32,
    ) -> Result<Taken> {
        let ttl_ms = check_ttl(options.ttl)?;
        let shared = &self.shared;
        let keys: Vec<String> = names.iter().map(|n| shared.settings.key_for(n)).collect();
        let id = uuid::Uuid::new_v4().to_string();
        let acquired_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut call = Call::new(&scripts::ACQUIRE);
        let prefix = &shared.settings.key_prefix;
        for key in &keys {
            let (queue, deadlines) = queue_keys(prefix, key);
            call = call
                .key(key)
                .key(fence_key(prefix, key))
                .key(queue)
                .key(deadlines)
                .key(longest_ttl_key(prefix, key));
        }
        let total = shared.nodes.list.len();
        // Quorum mode: one clock for every instance's token floor (see acquire.lua), so that
        // they agree; in single mode the server's own clock is the floor.
        let floor = match total {
            1 => String::new(),
            _ => unix_micros(SystemTime::now()).to_string(),
        };
        call = call
            .arg(&id)
            .arg(ttl_ms)
            .arg(&acquired_at)
            .arg(waiter)
            .arg(QUEUE_GRACE.as_millis() as u64)
            .arg(floor);
        for (field, value) in &options.metadata {
            call = call.arg(format!("meta_{field}")).arg(value);
        }
        let call = Arc::new(call);
        let sent_at = Instant::now();
        let (votes, pending) = shared
            .nodes
            .gather(
                |node| grant(node, &call),
                |votes| Tally::of(votes, options.ttl).decides(total),
            )
            .await;
        let tally = Tally::of(&votes, options.ttl);
        if tally.counted() >= quorum::majority(total) {
            let tokens = shared
                .settle_tokens(&keys, &id, &votes, pending, options.ttl)
                .await;
            let in_time = Instant::now() < validity_end(sent_at, options.ttl);
            return match tokens {
                Ok(tokens) if in_time => {
                    let schedule = Schedule {
                        sent_at,
                        ttl: options.ttl,
                        renew_every: options
                            .auto_renew
                            .map(|every| every.min(options.ttl * 2 / 3)),
                        hold_until: options.max_hold.map(|cap| sent_at + cap),
                        watch_releases: options.watch_releases,
                    };
                    let leases = names.iter().zip(keys).zip(tokens);
                    let leases = leases.map(|((name, key), token)| {
                        let (id, at) = (id.clone(), acquired_at.clone());
                        Lease::new(shared.clone(), name, key, id, token, at, sent_at, schedule)
                    });
                    Ok(Taken::Acquired(leases.collect()))
                }
                outcome => {
                    shared.undo(&keys, &id, &votes).await;
                    Err(outcome.err().unwrap_or_else(|| {
                        shared.no_quorum(
                            &votes,
                            options.ttl,
                            tally.counted(),
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
                    lease,
                    ..
                })) => Ok(Taken::Held { lease, holder }),
                // Held, but the key vanished between the check and the read: it is free now.
                Some(Ok(Grant::Held { holder: None, .. })) => {
                    Box::pin(self.attempt(names, options, waiter, splits_left)).await
                }
                Some(Err(error)) => Err(error),
                _ => Err(shared.unexpected("acquire")),
            };
        }
        // Quorum mode: undo what may have been granted, here or by calls still under way.
        if tally.any_written() || tally.failed > 0 || !pending.is_empty() {
            shared.undo(&keys, &id, &votes).await;
        }
        let holders: Vec<(usize, &Holder)> = votes
            .iter()
            .filter_map(|v| match &v.answer {
                Ok(Grant::Held {
                    holder: Some(holder),
                    lease,
                    ..
                }) => Some((*lease, holder)),
                _ => None,
            })
            .collect();
        let majority = quorum::majority(total);
        let agreed = quorum::agreed_holder(holders.iter().map(|(_, holder)| *holder), majority)
            .and_then(|agreed| holders.iter().find(|(_, h)| std::ptr::eq(*h, agreed)));
        match holders.first() {
            // A split vote: contenders each won a minority and undid it (or voided each other's
            // grants from young instances). Try again after a random pause (Redlock's remedy),
            // so that one of them wins.
            Some(_)
                if agreed.is_none() && tally.counted() + tally.voided > 0 && splits_left > 0 =>
            {
                tokio::time::sleep(Duration::from_micros(fastrand::u64(1_000..20_000))).await;
                Box::pin(self.attempt(names, options, waiter, splits_left - 1)).await
            }
            Some(first) if tally.counted() + tally.held + tally.voided >= majority => {
                let (lease, holder) = agreed.unwrap_or(first);
                Ok(Taken::Held {
                    lease: *lease,
                    holder: (*holder).clone(),
                })
            }
            _ => Err(shared.no_quorum(&votes, options.ttl, tally.counted(), "")),
        }
    }

    /// Tries to take `names` until it does or `wait` runs out, woken by the release of the
    /// lease that stood in the way (see [`LeaseClient::acquire_set_observed`]).
    async fn wait_for(
        &self,
        names: &[String],
        options: &LeaseOptions,
        wait: Duration,
        mut observe: impl FnMut(&str, &Holder),
    ) -> Result<Taken> {
        let deadline = Instant::now() + wait;
        // Queueing is per instance and per lease, so it is for one lease in single mode: in
        // quorum mode different instances could each promise the lease to a different waiter,
        // and none would win; a set would hold places in several queues at once.
        let place = match (self.shared.nodes.list.len(), names.len()) {
            (1, 1) => uuid::Uuid::new_v4().to_string(),
            _ => String::new(),
        };
        // Given up on every way out but success (whose script took us out of the queue).
        let queued = match place.is_empty() {
            true => Place::none(self.shared.background.clone()),
            false => {
                let (shared, place) = (self.shared.clone(), place.clone());
                let key = shared.settings.key_for(&names[0]);
                let leave = Box::pin(async move { shared.leave_queue(&key, &place).await });
                Place::new(leave, self.shared.background.clone())
            }
        };
        // The waiter for the lease that stood in the way last time.
        let mut waiter: Option<(usize, Waiter)> = None;
        let mut backoff = Backoff::until(deadline);
        let (started, mut attempts) = (Instant::now(), 0u64);
        loop {
            attempts += 1;
            let attempt = self.attempt(names, options, &place, SPLIT_RETRIES).await;
            let (lease, holder) = match attempt {
                Ok(Taken::Held { lease, holder }) => (lease, holder),
                Ok(acquired) => {
                    queued.taken();
                    let waited_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(lease = %names.join(","), attempts, waited_ms, "acquired after waiting");
                    return Ok(acquired);
                }
                // A restart, a cut: try again within the wait, backing off.
                Err(error) => match backoff.after(error).await {
                    Ok(()) => continue,
                    Err(error) => {
                        queued.leave().await;
                        return Err(error);
                    }
                },
            };
            backoff.reset();
            if Instant::now() >= deadline {
                queued.leave().await;
                let waited_ms = started.elapsed().as_millis() as u64;
                tracing::info!(lease = %names.join(","), attempts, waited_ms, holder = %holder.display_name(), "still held when the wait ran out");
                return Ok(Taken::Held { lease, holder });
            }
            observe(&names[lease], &holder);
            if waiter
                .as_ref()
                .is_none_or(|(blocking, _)| *blocking != lease)
            {
                let key = self.shared.settings.key_for(&names[lease]);
                let prefix = &self.shared.settings.key_prefix;
                let place = Some(place.clone()).filter(|place| !place.is_empty());
                let fresh = Waiter::new(prefix, &key, deadline, options.fallback_poll, place);
                waiter = Some((lease, fresh));
            }
            if let Some((_, waiter)) = waiter.as_mut() {
                waiter.pause(&self.shared.nodes, &holder).await;
            }
        }
    }

    /// Waits up to `wait` until `name` is free, woken by its release like a waiting acquire.
    /// Answers `None` once it is free, or the holder when the wait ran out.
    ///
    /// # Errors
    /// As [`LeaseClient::inspect`].
    pub async fn wait_until_free(&self, name: &str, wait: Duration) -> Result<Option<Holder>> {
        check_name(name)?;
        let deadline = Instant::now() + wait;
        let key = self.shared.settings.key_for(name);
        let prefix = &self.shared.settings.key_prefix;
        let mut waiter = Waiter::new(prefix, &key, deadline, FALLBACK_POLL, None);
        let mut backoff = Backoff::until(deadline);
        loop {
            let info = match self.inspect(name).await {
                Ok(info) => info,
                // A restart, a cut: try again within the wait, backing off.
                Err(error) => {
                    backoff.after(error).await?;
                    continue;
                }
            };
            backoff.reset();
            let Some(holder) = info.holder else {
                return Ok(None);
            };
            if waiter.is_over() {
                return Ok(Some(holder));
            }
            waiter.pause(&self.shared.nodes, &holder).await;
        }
    }

    /// Writes `value` to `key` only when `token` is not older than the newest fencing token a
    /// write to `key` has carried (the protected-resource side of fencing).
    ///
    /// In quorum mode the write goes to every instance and the newest token is kept on each:
    /// it is written when a majority accepted it, and refused as soon as any instance knows a
    /// newer token. Any two majorities share an instance, so a write refused by a majority's
    /// record is refused whatever minority restarted empty or is down.
    ///
    /// # Errors
    /// Connection errors; [`Error::NoQuorum`] when too few instances answered;
    /// [`Error::Redis`] when `key` holds something other than a string.
    pub async fn fenced_set(&self, key: &str, value: &str, token: u64) -> Result<FencedWrite> {
        let call = Arc::new(
            Call::new(&scripts::FENCED_SET)
                .key(key)
                .key(newest_token_key(key))
                .arg(value)
                .arg(token),
        );
        let nodes = &self.shared.nodes;
        let (total, majority) = (nodes.list.len(), nodes.majority());
        let newest = |votes: &[Vote<(i64, i64)>]| {
            votes
                .iter()
                .filter_map(|v| match v.answer {
                    Ok((0, newest)) => Some(newest as u64),
                    _ => None,
                })
                .max()
        };
        let written = |votes: &[Vote<(i64, i64)>]| {
            votes
                .iter()
                .filter(|v| matches!(v.answer, Ok((1, _))))
                .count()
        };
        let (votes, pending) = nodes
            .gather(
                |node| node.script::<(i64, i64)>(&call),
                |votes| {
                    let failed = votes.iter().filter(|v| v.answer.is_err()).count();
                    newest(votes).is_some()
                        || written(votes) >= majority
                        || failed > total - majority
                },
            )
            .await;
        finish_in_background(pending);
        if let Some(newest) = newest(&votes) {
            return Ok(FencedWrite::Stale { newest });
        }
        let accepted = written(&votes);
        if accepted >= majority {
            return Ok(FencedWrite::Written);
        }
        if total == 1 {
            return Err(votes
                .into_iter()
                .find_map(|v| v.answer.err())
                .unwrap_or_else(|| self.shared.unexpected("fenced set")));
        }
        let described = votes
            .iter()
            .map(|v| nodes.describe(v, |_| "accepted".into()))
            .collect();
        Err(Error::NoQuorum {
            agreed: accepted,
            needed: majority,
            total,
            outcome: "accepted",
            votes: described,
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
        let fence = fence_key(&self.shared.settings.key_prefix, &key);
        let call = Arc::new(Call::new(&scripts::INSPECT).key(&key).key(fence));
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
        for vote in votes.iter().filter(|v| v.answer.is_err()) {
            let failed = nodes.describe(vote, |_| String::new());
            tracing::warn!("{failed}: leases held only there are not listed");
        }
        let mut keys: Vec<String> = votes
            .into_iter()
            .filter_map(|v| v.answer.ok())
            .flatten()
            .filter(|key| !is_internal(prefix, key))
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
        let key = self.shared.settings.key_for(name);
        Ok(self.shared.release(&[key], lease_id).await? > 0)
    }

    /// Deletes `name`'s key whoever holds it (an operator's action), on every instance.
    /// Answers whether a key was there.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn force_release(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let key = self.shared.settings.key_for(name);
        let prefix = &self.shared.settings.key_prefix;
        let call = Arc::new(
            Call::new(&scripts::FORCE_RELEASE)
                .key(&key)
                .key(queue_keys(prefix, &key).0)
                .arg(release_channel(prefix, &key)),
        );
        Ok(self.shared.announced(&call, None).await? > 0)
    }

    /// How long a round trip to Redis takes: the median of three PINGs, each timed until a
    /// majority of the instances answered (what a renewal waits for). For judging whether a
    /// TTL leaves time to renew.
    ///
    /// # Errors
    /// Connection errors, when too few instances answered.
    pub async fn round_trip(&self) -> Result<Duration> {
        let nodes = &self.shared.nodes;
        let majority = nodes.majority();
        let mut times = Vec::with_capacity(3);
        for _ in 0..3 {
            let started = Instant::now();
            let (votes, pending) = nodes
                .gather(
                    |node| node.command::<String>(redis::cmd("PING")),
                    |votes| votes.iter().filter(|v| v.answer.is_ok()).count() >= majority,
                )
                .await;
            finish_in_background(pending);
            if votes.iter().filter(|v| v.answer.is_ok()).count() < majority {
                let first = votes.into_iter().find_map(|v| v.answer.err());
                return Err(first.unwrap_or_else(|| self.shared.unexpected("PING")));
            }
            times.push(started.elapsed());
        }
        times.sort();
        Ok(times[1])
    }

    /// Deletes `name`'s key (an operator's action, on every instance) only if it still holds
    /// `shown`, as [`inspect`](Self::inspect) read it: the same lease id for a hash that has
    /// one, every field unchanged for another hash, the same string for the JSON and token
    /// formats, the same Redis type for any other key. Compared and deleted in one script, so
    /// a holder that took the lease after `shown` was read is never deleted. Answers whether
    /// it deleted.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn force_release_shown(&self, name: &str, shown: &Holder) -> Result<bool> {
        check_name(name)?;
        let kind = match (&shown.format, &shown.lease_id) {
            (KeyFormat::Hash, Some(lease_id)) => return self.release(name, lease_id).await,
            (KeyFormat::Queued { .. }, _) => return Ok(false),
            (KeyFormat::Hash, None) => "hash",
            (KeyFormat::Json | KeyFormat::Token, _) => "string",
            (KeyFormat::Other(kind), _) => kind.as_str(),
        };
        let key = self.shared.settings.key_for(name);
        let prefix = &self.shared.settings.key_prefix;
        let mut call = Call::new(&scripts::FORCE_RELEASE)
            .key(&key)
            .key(queue_keys(prefix, &key).0)
            .arg(release_channel(prefix, &key))
            .arg(kind);
        match &shown.format {
            KeyFormat::Hash => {
                for (field, value) in &shown.fields {
                    call = call.arg(field).arg(value);
                }
            }
            KeyFormat::Json | KeyFormat::Token => {
                call = call.arg(shown.value.as_deref().unwrap_or_default());
            }
            _ => {}
        }
        Ok(self.shared.announced(&Arc::new(call), None).await? > 0)
    }
}

impl Shared {
    /// Extends the lease on a majority. `Ok(false)`: it is no longer ours.
    pub(crate) async fn extend(&self, key: &str, id: &str, ttl: Duration) -> Result<bool> {
        let total = self.nodes.list.len();
        let mut call = Call::new(&scripts::EXTEND).key(key);
        if total > 1 {
            call = call.key(longest_ttl_key(&self.settings.key_prefix, key));
        }
        let call = Arc::new(call.arg(id).arg(check_ttl(ttl)?));
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

    /// The channel on which releases of the lease key `key` are announced.
    pub(crate) fn channel(&self, key: &str) -> String {
        release_channel(&self.settings.key_prefix, key)
    }

    /// The release announcements of `key` (`None` when no instance lets us subscribe).
    pub(crate) async fn subscribe_releases(
        &self,
        key: &str,
    ) -> Option<futures_util::stream::BoxStream<'static, redis::Msg>> {
        self.nodes.subscribe(&self.channel(key)).await
    }

    /// Releases our lease (or set of leases) on every instance and wakes their waiters;
    /// answers how many of them an instance still held.
    pub(crate) async fn release(&self, keys: &[String], id: &str) -> Result<i64> {
        self.release_on_all(keys, id, true, None).await
    }

    /// Releases on every instance, waking the waiters when `notify` (else silently); waits as
    /// [`Shared::announced`] does, the rest in the background.
    async fn release_on_all(
        &self,
        keys: &[String],
        id: &str,
        notify: bool,
        undoing: Option<&[usize]>,
    ) -> Result<i64> {
        let prefix = &self.settings.key_prefix;
        let mut call = Call::new(&scripts::RELEASE);
        for key in keys {
            call = call.key(key).key(queue_keys(prefix, key).0);
        }
        call = call.arg(id);
        for key in keys {
            call = call.arg(if notify {
                release_channel(prefix, key)
            } else {
                String::new()
            });
        }
        self.announced(&Arc::new(call), undoing).await
    }

    /// Runs a release `call` on every instance (waiting as [`Shared::on_a_majority`] does);
    /// answers the largest count released. An error only when no instance answered at all.
    /// A release stands even when its notification was refused (an ACL user without PUBLISH):
    /// that is a warning, and the waiters notice within their fallback poll.
    ///
    /// `undoing`: the instances that granted a refused attempt, whose answers are awaited;
    /// `None` for a release, which, when the first majority did not hold the lease, waits for
    /// every answer (the instance still to answer may be the one that holds it).
    async fn announced(&self, call: &Arc<Call>, undoing: Option<&[usize]>) -> Result<i64> {
        let votes = match undoing {
            Some(granted) => self.on_a_majority(call, granted, |_| true).await,
            None => {
                let released = |answer: &(i64, String)| answer.0 > 0;
                self.on_a_majority(call, &[], released).await
            }
        };
        for vote in &votes {
            if let Ok((_, refused)) = vote.answer.as_ref() {
                if refused.is_empty() {
                    continue;
                }
                let address = &self.nodes.list[vote.node].address;
                tracing::warn!("released, but Redis at {address} refused to notify the waiters ({refused}); they notice within their fallback poll (allow PUBLISH on the release channels)");
            }
        }
        largest(votes.into_iter().map(|v| Vote {
            node: v.node,
            answer: v.answer.map(|(released, _)| released),
        }))
    }

    /// Runs `call` on every instance until a majority answered, so did the instances
    /// `wait_for`, and one answer is `telling` (else until all answered), and lets the calls
    /// still under way finish in the background: an instance that does not answer does not
    /// hold up a release or an undo for its whole timeout, and still gets the call (on the
    /// same connection, so before anything this client sends it later).
    async fn on_a_majority<T: redis::FromRedisValue + Send + 'static>(
        &self,
        call: &Arc<Call>,
        wait_for: &[usize],
        telling: impl Fn(&T) -> bool,
    ) -> Vec<Vote<T>> {
        let majority = self.nodes.majority();
        let (votes, pending) = self
            .nodes
            .gather(
                |node| node.script::<T>(call),
                |votes| {
                    let answers = votes.iter().filter_map(|v| v.answer.as_ref().ok());
                    answers.clone().count() >= majority
                        && answers.clone().any(&telling)
                        && wait_for.iter().all(|i| votes.iter().any(|v| v.node == *i))
                },
            )
            .await;
        finish_in_background(pending);
        votes
    }

    /// Gives up a waiter's place in the queue (it would otherwise time out).
    async fn leave_queue(&self, key: &str, waiter: &str) {
        let (queue, deadlines) = queue_keys(&self.settings.key_prefix, key);
        let call = Arc::new(
            Call::new(&scripts::LEAVE_QUEUE)
                .key(queue)
                .key(deadlines)
                .arg(waiter),
        );
        let _ = self.on_a_majority::<i64>(&call, &[], |_| true).await;
    }

    /// Undoes an acquire that did not reach a majority: releases it wherever it was granted.
    /// Waits for the instances that answered with a grant (they answer: the key is gone there
    /// when this returns); those that failed or did not answer are undone in the background.
    async fn undo(&self, keys: &[String], id: &str, votes: &[Vote<Grant>]) {
        let granted: Vec<usize> = votes
            .iter()
            .filter(|v| matches!(v.answer, Ok(Grant::Granted { .. })))
            .map(|v| v.node)
            .collect();
        // Silently: nothing was held that anyone waits for.
        if let Err(error) = self.release_on_all(keys, id, false, Some(&granted)).await {
            tracing::debug!(%error, "undoing a partial acquire failed; the TTL will end it");
        }
    }

    /// Makes sure that a majority's fencing counters stand at each lease's token before it is
    /// handed out, so that no later acquisition — by any majority — can get a smaller one.
    /// When the granting instances agree (the usual case) this costs nothing; otherwise the
    /// instances behind are raised first. Instances still answering, or that answered behind,
    /// are raised in the background.
    async fn settle_tokens(
        self: &Arc<Self>,
        keys: &[String],
        id: &str,
        votes: &[Vote<Grant>],
        pending: Pending<Grant>,
        ttl: Duration,
    ) -> Result<Vec<u64>> {
        let majority = self.nodes.majority();
        let mut tokens = Vec::with_capacity(keys.len());
        let mut stragglers = Vec::new();
        for (lease, key) in keys.iter().enumerate() {
            let (token, agreeing) = quorum::token_of(votes, lease);
            let mut behind = quorum::behind(votes, token, lease);
            if agreeing < majority {
                let granting_behind: Vec<usize> = behind
                    .iter()
                    .copied()
                    .filter(|i| {
                        votes
                            .iter()
                            .any(|v| v.node == *i && matches!(v.answer, Ok(Grant::Granted { .. })))
                    })
                    .collect();
                let raise = raise_call(&self.settings.key_prefix, key, token, id);
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
                        ttl,
                        standing,
                        "the instances could not agree on a fencing token",
                    ));
                }
                behind.retain(|i| !granting_behind.contains(i));
            }
            stragglers.push(behind);
            tokens.push(token);
        }
        let all_settled = stragglers.iter().all(Vec::is_empty);
        if !all_settled || !pending.is_empty() {
            let raise = raise_stragglers(
                self.clone(),
                keys.to_vec(),
                id.to_string(),
                stragglers,
                pending,
                tokens.clone(),
            );
            tokio::spawn(raise);
        }
        Ok(tokens)
    }

    /// Why an acquire with `ttl` failed, with every instance's answer.
    fn no_quorum(&self, votes: &[Vote<Grant>], ttl: Duration, granted: usize, why: &str) -> Error {
        let longest = quorum::longest_ttl(votes, ttl);
        let mut described: Vec<String> = votes
            .iter()
            .map(|vote| {
                self.nodes.describe(vote, |grant| match grant {
                    Grant::Granted {
                        uptime: Some(uptime),
                        ..
                    } if quorum::is_young(Some(*uptime), longest) => {
                        format!("granted, but started {uptime} s ago")
                    }
                    Grant::Granted { .. } => "granted".into(),
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

/// The largest answer; an error only when no instance answered at all.
fn largest(votes: impl IntoIterator<Item = Vote<i64>>) -> Result<i64> {
    let (mut most, mut first_error) = (None, None);
    for vote in votes {
        match vote.answer {
            Ok(answer) => most = most.max(Some(answer)),
            Err(error) => drop(first_error.get_or_insert(error)),
        }
    }
    most.ok_or_else(|| first_error.expect("no instance answered"))
}

/// Microseconds since the Unix epoch (0 before it).
fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
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

/// The call that raises `key`'s fencing counter to `token` (and records it in our lease).
fn raise_call(prefix: &str, key: &str, token: u64, id: &str) -> Arc<Call> {
    Arc::new(
        Call::new(&scripts::RAISE)
            .key(key)
            .key(fence_key(prefix, key))
            .arg(token)
            .arg(id),
    )
}

/// Raises the instances that answered behind each lease's token, and those whose answers
/// were still under way when the acquire was decided.
async fn raise_stragglers(
    shared: Arc<Shared>,
    keys: Vec<String>,
    id: String,
    mut behind: Vec<Vec<usize>>,
    mut pending: Pending<Grant>,
    tokens: Vec<u64>,
) {
    while let Some(late) = pending.next().await {
        for (lease, behind) in behind.iter_mut().enumerate() {
            behind.extend(quorum::behind(
                std::slice::from_ref(&late),
                tokens[lease],
                lease,
            ));
        }
    }
    for (lease, behind) in behind.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        let prefix = &shared.settings.key_prefix;
        let raise = raise_call(prefix, &keys[lease], tokens[lease], &id);
        let raised = shared
            .nodes
            .on(behind, |node| node.script::<i64>(&raise))
            .await;
        for vote in raised.iter().filter(|v| v.answer.is_err()) {
            tracing::debug!(node = %shared.nodes.list[vote.node].address, "raising the fencing counter failed");
        }
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

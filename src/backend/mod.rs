//! The backend: the Redis instances, a connection to each, the fan-out over them with a
//! timeout per instance, the tally of their votes, the Lua scripts and the release
//! notifications. Everything above it (the lease layer, the operations, [`LeaseClient`])
//! reaches Redis through [`Backend`] and never sees a connection; single mode and quorum mode
//! (Redlock) are the same code with one instance or several, and another topology (Redis
//! Cluster, Sentinel) is a change here alone.
//!
//! - `connect.rs`: a connection per endpoint (TLS, Entra ID), the first PINGs, the eviction
//!   check; `link.rs`: the connection kinds; `cluster.rs`: a Redis Cluster as one node whose
//!   connection (`cluster_link.rs`) routes by slot; `hub.rs`: one pub/sub connection per instance
//!   for every release notification;
//! - `nodes.rs`: a call sent to every instance at once, each under its own timeout, read as
//!   the answers arrive; [`Nodes::no_quorum`] is the one "no quorum" error;
//! - `quorum.rs`: the tally of the votes (single mode is the case of one instance);
//! - `start.rs`: how long each instance has been up, learned once per connection (quorum
//!   mode's restart check);
//! - `batch.rs`: the renewals of many leases at once, one pipeline per instance;
//! - `scripts.rs`: one Lua script per operation (`src/scripts/*.lua`); `keys.rs`: the names
//!   beside a lease key (fencing counter, waiters' queue, release channel).
//!
//! [`LeaseClient`]: crate::LeaseClient

pub(crate) mod batch;
pub(crate) mod cluster;
pub(crate) mod cluster_link;
pub(crate) mod connect;
pub(crate) mod format;
pub(crate) mod hub;
pub(crate) mod keys;
pub(crate) mod link;
pub(crate) mod nodes;
pub(crate) mod quorum;
pub(crate) mod replicas;
pub(crate) mod retry;
pub(crate) mod scripts;
pub(crate) mod sentinel;
pub(crate) mod start;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use redis::EntraIdCredentialsProvider;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::format::LeaseFormat;
use crate::settings::Settings;
use keys::{
    check_ttl, fence_key, grants_key, longest_ttl_key, queue_key, queue_keys, release_channel,
};
use nodes::{Call, Nodes, Pending, Vote};
use quorum::Grant;

/// The instances of the settings and the operations every layer above uses on them: what a
/// client and its leases share.
pub(crate) struct Backend {
    pub(crate) nodes: Nodes,
    pub(crate) settings: Settings,
    /// Calls that go on after their operation was decided (the slower instances' answers).
    unfinished: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What the lease layer keeps per client (its watchdog, renew/), made on first use; of a
    /// type the backend does not know, as it imports nothing from the layers above.
    pub(crate) above: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl Backend {
    /// Connects to the settings' endpoints (see [`LeaseClient::connect`](crate::LeaseClient::connect)).
    pub(crate) async fn connect(
        settings: Settings,
        credentials: Option<EntraIdCredentialsProvider>,
    ) -> Result<Backend> {
        let nodes = Nodes::connect(&settings, credentials).await?;
        Ok(Backend {
            nodes,
            settings,
            unfinished: Default::default(),
            above: Default::default(),
        })
    }

    /// Extends the lease on a majority. `Ok(false)`: it is no longer ours.
    pub(crate) async fn extend(&self, key: &str, id: &str, ttl: Duration) -> Result<bool> {
        let total = self.nodes.list.len();
        let mut call = self.extend_call(key, id, check_ttl(ttl)?);
        // Retries stop where the validity this TTL gives (from now) would end.
        let until = crate::renew::validity_end(Instant::now(), ttl);
        // WaitReplicas: one deployment with replicas (quorum instances are independent).
        if total == 1 {
            call = call.acknowledged(&self.settings);
        }
        let call = Arc::new(call.until(until));
        let (votes, pending) = self
            .nodes
            .gather(
                |node| node.script_acknowledged::<i64>(&call, |answer| *answer == 1),
                |votes| quorum::extension(votes, total).is_some(),
            )
            .await;
        // The instances still answering are extended all the same: let their calls finish.
        self.finish_in_background(pending);
        self.extension_outcome(votes)
    }

    /// The extend script's call for one lease (with quorum mode's longest-TTL key), shared
    /// by [`Backend::extend`] and the batches of [`Backend::extend_many`].
    fn extend_call(&self, key: &str, id: &str, ttl_ms: u64) -> Call {
        let mut call = Call::new(format::scripts(self.settings.lease_format).extend).key(key);
        if self.nodes.list.len() > 1 {
            call = call.key(longest_ttl_key(&self.settings.key_prefix, key));
        }
        call.arg(id).arg(ttl_ms)
    }

    /// What the instances' answers to an extension come to: extended on a majority, no longer
    /// ours, or (undecided) the error that says why.
    pub(crate) fn extension_outcome(&self, votes: Vec<Vote<i64>>) -> Result<bool> {
        let total = self.nodes.list.len();
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
                Err(self.nodes.no_quorum(confirmed, "confirmed", described))
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
    /// answers how many of them an instance still held. One lease in single mode goes
    /// straight to its first queued waiter (`handoff.lua`).
    pub(crate) async fn release(&self, keys: &[String], id: &str) -> Result<i64> {
        match (self.nodes.list.len(), keys) {
            (1, [key]) => {
                let prefix = &self.settings.key_prefix;
                let (queue, deadlines) = queue_keys(prefix, key);
                let call = Call::new(&scripts::HANDOFF)
                    .key(key)
                    .key(queue)
                    .key(deadlines)
                    .key(grants_key(prefix, key))
                    .key(fence_key(prefix, key))
                    .arg(self.nodes.publish_command())
                    .arg(id)
                    .arg(release_channel(prefix, key))
                    .arg(LeaseFormat::Hash.acquired_at(SystemTime::now()));
                self.announced(&Arc::new(call), None).await
            }
            _ => self.release_on_all(keys, id, true, None).await,
        }
    }

    /// Releases on every instance, waking the waiters when `notify` (else silently); waits as
    /// [`Backend::announced`] does, the rest in the background.
    pub(crate) async fn release_on_all(
        &self,
        keys: &[String],
        id: &str,
        notify: bool,
        undoing: Option<&[usize]>,
    ) -> Result<i64> {
        let prefix = &self.settings.key_prefix;
        let mut call = Call::new(&scripts::RELEASE);
        for key in keys {
            call = call.key(key).key(queue_key(prefix, key));
        }
        call = call.arg(self.nodes.publish_command()).arg(id);
        for key in keys {
            call = call.arg(if notify {
                release_channel(prefix, key)
            } else {
                String::new()
            });
        }
        self.announced(&Arc::new(call), undoing).await
    }

    /// Runs a release `call` on every instance (waiting as [`Backend::on_a_majority`] does);
    /// answers the largest count released. An error only when no instance answered at all.
    /// A release stands even when its notification was refused (an ACL user without PUBLISH):
    /// that is a warning, and the waiters notice within their fallback poll.
    ///
    /// `undoing`: the instances that granted a refused attempt, whose answers are awaited;
    /// `None` for a release, which, when the first majority did not hold the lease, waits for
    /// every answer (the instance still to answer may be the one that holds it).
    pub(crate) async fn announced(
        &self,
        call: &Arc<Call>,
        undoing: Option<&[usize]>,
    ) -> Result<i64> {
        let votes = match undoing {
            Some(granted) => self.on_a_majority(call, granted, |_| true).await,
            None => {
                let released = |answer: &Released| answer.count > 0;
                self.on_a_majority(call, &[], released).await
            }
        };
        for vote in &votes {
            if let Ok(Released { refused, .. }) = vote.answer.as_ref() {
                if refused.is_empty() {
                    continue;
                }
                let address = &self.nodes.list[vote.node].address;
                tracing::warn!("released, but Redis at {address} refused to notify the waiters ({refused}); they notice within their fallback poll (allow PUBLISH on the release channels)");
            }
        }
        largest(votes.into_iter().map(|v| Vote {
            node: v.node,
            answer: v.answer.map(|released| released.count),
        }))
    }

    /// Runs `call` on every instance until a majority answered, so did the instances
    /// `wait_for`, and one answer is `telling` (else until all answered), and lets the calls
    /// still under way finish in the background: an instance that does not answer does not
    /// hold up a release or an undo for its whole timeout, and still gets the call (on the
    /// same connection, so before anything this client sends it later).
    pub(crate) async fn on_a_majority<T: redis::FromRedisValue + Send + 'static>(
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
        self.finish_in_background(pending);
        votes
    }

    /// Deletes the lease key `key` whoever holds it (an operator's action), on every instance,
    /// and wakes its waiters; with `shown` (the Redis type and what to compare, see
    /// `force_release.lua`), only if the key is still as shown. Answers whether it deleted.
    pub(crate) async fn force_release(
        &self,
        key: &str,
        shown: Option<(&str, &[&str])>,
    ) -> Result<bool> {
        let prefix = &self.settings.key_prefix;
        let mut call = Call::new(&scripts::FORCE_RELEASE)
            .key(key)
            .key(queue_key(prefix, key))
            .arg(self.nodes.publish_command())
            .arg(release_channel(prefix, key));
        if let Some((kind, compared)) = shown {
            call = call.arg(kind);
            for value in compared {
                call = call.arg(*value);
            }
        }
        Ok(self.announced(&Arc::new(call), None).await? > 0)
    }

    /// How long a round trip takes (see [`LeaseClient::round_trip`](crate::LeaseClient::round_trip)).
    pub(crate) async fn round_trip(&self) -> Result<Duration> {
        let nodes = &self.nodes;
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
            self.finish_in_background(pending);
            if votes.iter().filter(|v| v.answer.is_ok()).count() < majority {
                let first = votes.into_iter().find_map(|v| v.answer.err());
                return Err(first.unwrap_or_else(|| self.unexpected("PING")));
            }
            times.push(started.elapsed());
        }
        times.sort();
        Ok(times[1])
    }

    /// Gives up a waiter's place in the queue (it would otherwise time out); when it is no
    /// longer there, a release may have handed the waiter the lease meanwhile (unnoticed, as
    /// it gives up): that lease, held under the waiter's place as lease id, is released.
    pub(crate) async fn leave_queue(&self, key: &str, waiter: &str) {
        let prefix = &self.settings.key_prefix;
        let (queue, deadlines) = queue_keys(prefix, key);
        let call = Arc::new(
            Call::new(&scripts::LEAVE_QUEUE)
                .key(queue)
                .key(deadlines)
                .key(grants_key(prefix, key))
                .arg(waiter),
        );
        let votes = self.on_a_majority::<i64>(&call, &[], |_| true).await;
        if votes.iter().any(|vote| matches!(vote.answer, Ok(0))) {
            if let Err(error) = self.release(&[key.to_string()], waiter).await {
                tracing::debug!(%error, "releasing a lease handed to a waiter that gave up failed; its TTL will end it");
            }
        }
    }

    /// Undoes an acquire that did not reach a majority: releases it wherever it was granted.
    /// Waits for the instances that answered with a grant (they answer: the key is gone there
    /// when this returns); those that failed or did not answer are undone in the background.
    pub(crate) async fn undo(&self, keys: &[String], id: &str, votes: &[Vote<Grant>]) {
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

    /// Lets calls that are still under way finish (and be read) in the background, so that
    /// each instance gets the call even though the decision did not wait for its answer.
    pub(crate) fn finish_in_background<T: Send + 'static>(&self, mut pending: Pending<T>) {
        if !pending.is_empty() {
            self.in_background(async move { while pending.next().await.is_some() {} });
        }
    }

    /// Runs `work` after its operation returned; [`Backend::finish`] waits for it.
    pub(crate) fn in_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut unfinished = self.unfinished.lock().expect("unfinished calls");
        unfinished.retain(|task| !task.is_finished());
        unfinished.push(tokio::spawn(work));
    }

    /// Waits for the calls still under way (each bounded by its retries of `SyncTimeout`),
    /// so that a process that exits next has made them on every instance.
    pub(crate) async fn finish(&self) {
        let unfinished = std::mem::take(&mut *self.unfinished.lock().expect("unfinished calls"));
        for task in unfinished {
            let _ = task.await;
        }
    }

    /// An error for an answer a script should not give.
    pub(crate) fn unexpected(&self, what: &str) -> Error {
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

/// A release script's answer: how many keys it released, and why its notification was refused
/// (empty when it was not). A number alone in the usual case (release.lua), else `{count, why}`.
pub(crate) struct Released {
    count: i64,
    refused: String,
}

impl redis::FromRedisValue for Released {
    fn from_redis_value(value: redis::Value) -> std::result::Result<Self, redis::ParsingError> {
        let (count, refused) = match value {
            redis::Value::Int(count) => (count, String::new()),
            value => redis::FromRedisValue::from_redis_value(value)?,
        };
        Ok(Released { count, refused })
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

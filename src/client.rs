//! `LeaseClient`: every lease operation — try-acquire, acquire with a bounded wait (woken
//! by the release notification), inspect, release — on one Redis instance or, in quorum
//! mode (Redlock), on a majority of several independent ones. A thin layer: each method
//! checks its input and hands over to the operation's module (`acquire.rs`, `wait.rs`,
//! `inspect.rs`, `fence.rs`) or to the backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::EntraIdCredentialsProvider;

use crate::acquire::{attempt, Taken, SPLIT_RETRIES};
use crate::backend::keys::check_name;
use crate::backend::Backend;
use crate::error::{Error, LostReason, Result};
use crate::fence::{fenced_set, FencedWrite};
use crate::holder::{Holder, KeyFormat, LeaseInfo};
use crate::inspect;
use crate::lease::Lease;
use crate::lease_set::LeaseSet;
use crate::options::LeaseOptions;
use crate::renew::validity_end;
use crate::settings::Settings;
use crate::telemetry;
use crate::wait::{wait_for, wait_until_free, Background};

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
            Taken::Held { lease, holder, .. } => AcquireSet::Held {
                name: names[lease].clone(),
                holder,
            },
        }
    }
}

/// Runs an acquisition of `names` in a `lease.acquire` span (with the lease id and fencing
/// token taken, or the holder found) and records its metrics; `contended`: it found the lease
/// held on the way.
async fn measured(
    names: &[String],
    waited: bool,
    contended: &AtomicBool,
    work: impl std::future::Future<Output = Result<Taken>>,
) -> Result<Taken> {
    let span = tracing::info_span!(
        "lease.acquire",
        lease.name = %names.join(","),
        lease.id = tracing::field::Empty,
        lease.fencing_token = tracing::field::Empty,
        lease.holder = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let taken = tracing::Instrument::instrument(work, span.clone()).await;
    match &taken {
        Ok(Taken::Acquired(leases)) => {
            span.record("lease.id", leases[0].id());
            span.record("lease.fencing_token", leases[0].fencing_token());
        }
        Ok(Taken::Held { holder, .. }) => {
            span.record("lease.holder", holder.display_name());
        }
        Err(_) => {}
    }
    let held = |taken: &Taken| matches!(taken, Taken::Held { .. });
    let outcome = telemetry::outcome(&taken, held, waited);
    let contended = contended.load(Ordering::Relaxed);
    telemetry::acquisition(&names[0], outcome, started.elapsed(), contended);
    taken
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

/// Refuses a set whose names are in different Redis Cluster slots (see
/// [`LeaseClient::try_acquire_set`]).
fn check_one_slot(backend: &Backend, names: &[String]) -> Result<()> {
    let keys: Vec<String> = names.iter().map(|n| backend.settings.key_for(n)).collect();
    backend.nodes.check_one_slot(names, &keys)
}

/// A connection to the Redis instance (or, in quorum mode, instances) of the settings.
#[derive(Clone)]
pub struct LeaseClient {
    pub(crate) backend: Arc<Backend>,
    /// Queue places that dropped waits give up.
    background: Arc<Background>,
}

impl LeaseClient {
    /// A client over a connected backend.
    fn over(backend: Backend) -> LeaseClient {
        LeaseClient {
            backend: Arc::new(backend),
            background: Arc::default(),
        }
    }

    /// Connects to the settings' endpoints and PINGs them, within `ConnectTimeout`; in quorum
    /// mode a majority must answer (the others are retried as they are used).
    ///
    /// # Errors
    /// [`Error::Connection`], [`Error::Auth`] or [`Error::Timeout`] naming the endpoint;
    /// [`Error::NoQuorum`] in quorum mode; [`Error::Settings`] for an unreadable CA file.
    pub async fn connect(settings: Settings) -> Result<LeaseClient> {
        Ok(LeaseClient::over(Backend::connect(settings, None).await?))
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
        Ok(LeaseClient::over(
            Backend::connect(settings, Some(credentials)).await?,
        ))
    }

    /// Waits for the clean-up that dropped waits left to do in the background (giving up
    /// their places in the queue), and in quorum mode for the calls an operation did not wait
    /// for (the instances that answered after its majority), so that they are done before
    /// the process exits. Each call in it is bounded by `SyncTimeout` and its retries.
    pub async fn flush(&self) {
        self.background.finish().await;
        self.backend.finish().await;
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &Settings {
        &self.backend.settings
    }

    /// `host:port` of each instance, for messages.
    pub fn endpoints(&self) -> Vec<&str> {
        self.backend
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
        let taken = attempt(&self.backend, &names, options, "", SPLIT_RETRIES);
        Ok(Acquire::from(
            measured(&names, false, &AtomicBool::new(false), taken).await?,
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
        let contended = AtomicBool::new(false);
        let taken = self.wait_for(&names, options, wait, |_, holder| {
            contended.store(true, Ordering::Relaxed);
            observe(holder)
        });
        let taken = measured(&names, !wait.is_zero(), &contended, taken).await?;
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
        check_one_slot(&self.backend, &names)?;
        let taken = attempt(&self.backend, &names, options, "", SPLIT_RETRIES);
        let taken = measured(&names, false, &AtomicBool::new(false), taken).await?;
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
        mut observe: impl FnMut(&str, &Holder),
    ) -> Result<AcquireSet> {
        let names = set_names(names)?;
        check_one_slot(&self.backend, &names)?;
        let contended = AtomicBool::new(false);
        let taken = self.wait_for(&names, options, wait, |name, holder| {
            contended.store(true, Ordering::Relaxed);
            observe(name, holder)
        });
        let taken = measured(&names, !wait.is_zero(), &contended, taken).await?;
        Ok(AcquireSet::of(taken, &names))
    }

    /// Tries to take `names` (checked) until it does or `wait` runs out.
    async fn wait_for(
        &self,
        names: &[String],
        options: &LeaseOptions,
        wait: Duration,
        observe: impl FnMut(&str, &Holder),
    ) -> Result<Taken> {
        wait_for(
            &self.backend,
            &self.background,
            names,
            options,
            wait,
            observe,
        )
        .await
    }

    /// Waits up to `wait` until `name` is free, woken by its release like a waiting acquire.
    /// Answers `None` once it is free, or the holder when the wait ran out. In quorum mode it
    /// is free once no majority agrees on a holder and enough instances are free for an
    /// acquire to get a majority (a lease left on a minority, its other instances down, is not).
    ///
    /// # Errors
    /// As [`LeaseClient::inspect`].
    pub async fn wait_until_free(&self, name: &str, wait: Duration) -> Result<Option<Holder>> {
        wait_until_free(&self.backend, name, wait).await
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
        fenced_set(&self.backend, key, value, token).await
    }

    /// Reads who holds `name`, in any of the formats of SPEC 2 (in quorum mode: the holder a
    /// majority agrees on, and each instance's view).
    ///
    /// # Errors
    /// [`Error::Settings`] for an empty or huge name; connection errors;
    /// [`Error::NoQuorum`] when too few instances answered.
    pub async fn inspect(&self, name: &str) -> Result<LeaseInfo> {
        inspect::inspect(&self.backend, name).await
    }

    /// Every lease under the key prefix (SCAN on every instance), sorted by name.
    ///
    /// # Errors
    /// Connection errors; [`Error::NoQuorum`] when too few instances answered.
    pub async fn inspect_all(&self) -> Result<Vec<LeaseInfo>> {
        inspect::inspect_all(&self.backend).await
    }

    /// Releases `name` if its current lease id is `lease_id`. Answers whether it did (on any
    /// instance).
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        check_name(name)?;
        let key = self.backend.settings.key_for(name);
        Ok(self.backend.release(&[key], lease_id).await? > 0)
    }

    /// Sets the time to live of `name` to `ttl` from now if its current lease id is
    /// `lease_id`: for a lease held elsewhere, such as one another process took and kept
    /// ([`Lease::keep`]). In quorum mode it must be extended on a majority within the
    /// validity `ttl` gives.
    ///
    /// # Errors
    /// [`Error::Lost`] when the lease is gone or held under another id, or the majority
    /// answered too late; [`Error::Settings`] for a bad name or TTL; connection errors;
    /// [`Error::NoQuorum`] when too few instances answered.
    pub async fn extend(&self, name: &str, lease_id: &str, ttl: Duration) -> Result<()> {
        check_name(name)?;
        let key = self.backend.settings.key_for(name);
        let sent_at = tokio::time::Instant::now();
        let lost = |reason| Error::Lost {
            name: name.to_string(),
            reason,
        };
        if !self.backend.extend(&key, lease_id, ttl).await? {
            return Err(lost(LostReason::NotOwner));
        }
        if tokio::time::Instant::now() >= validity_end(sent_at, ttl) {
            return Err(lost(LostReason::Expired));
        }
        Ok(())
    }

    /// Deletes `name`'s key whoever holds it (an operator's action), on every instance.
    /// Answers whether a key was there.
    ///
    /// # Errors
    /// [`Error::Settings`] for a bad name; connection errors.
    pub async fn force_release(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let key = self.backend.settings.key_for(name);
        self.backend.force_release(&key, None).await
    }

    /// How long a round trip to Redis takes: the median of three PINGs, each timed until a
    /// majority of the instances answered (what a renewal waits for). For judging whether a
    /// TTL leaves time to renew.
    ///
    /// # Errors
    /// Connection errors, when too few instances answered.
    pub async fn round_trip(&self) -> Result<Duration> {
        self.backend.round_trip().await
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
        let compared: Vec<&str> = match &shown.format {
            KeyFormat::Hash => shown
                .fields
                .iter()
                .flat_map(|(field, value)| [field.as_str(), value.as_str()])
                .collect(),
            KeyFormat::Json | KeyFormat::Token => {
                vec![shown.value.as_deref().unwrap_or_default()]
            }
            _ => Vec::new(),
        };
        let key = self.backend.settings.key_for(name);
        self.backend
            .force_release(&key, Some((kind, &compared)))
            .await
    }
}

//! A held lease: its id, fencing token and validity, with extend, release and the lost signal.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::error::{Error, LostReason, Result};
use crate::renew::{validity_end, LeaseState, Registration, Schedule};

/// A lease we hold. Dropping it stops renewal and releases it in the background.
///
/// The lease may be lost while held (deleted, taken over, or renewal not confirmed in time):
/// [`Lease::lost`] resolves then, always before the TTL can have run out on the server.
pub struct Lease {
    backend: Arc<Backend>,
    state: Arc<LeaseState>,
    fencing_token: u64,
    acquired_at: String,
    ttl: Duration,
    /// When the acquire that took it was sent (for the hold time in metrics).
    held_since: Instant,
    /// Its place in the client's watchdog, which renews it and watches its cap; `None` when
    /// it does neither.
    watchdog: Option<Registration>,
    /// A lease handed over by a release with a short TTL: becomes true once the extension
    /// to its own TTL is decided (see [`Lease::handed_over`]).
    settling: Option<watch::Receiver<bool>>,
}

impl Lease {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        backend: Arc<Backend>,
        name: &str,
        key: String,
        id: String,
        fencing_token: u64,
        acquired_at: String,
        sent_at: Instant,
        schedule: Schedule,
    ) -> Lease {
        let ttl = schedule.ttl;
        let state = Arc::new(LeaseState::new(name, key, id, sent_at, ttl));
        let watched = schedule.watched();
        let watchdog = watched.then(|| Registration::new(&backend, &state, schedule));
        Lease {
            backend,
            state,
            fencing_token,
            acquired_at,
            ttl,
            held_since: sent_at,
            watchdog,
            settling: None,
        }
    }

    /// This lease, made with [`Lease::new`] from the start of the waiter's last call whose
    /// answer found it still queued (that call reached the server before the release, so the
    /// validity counted from it is never too long), as a release handed it to this client's
    /// queued waiter (`handoff.lua`): with the TTL `granted`. When that is shorter than the
    /// lease's own TTL, it is extended to it at once, in the background (see
    /// [`Lease::settled`]).
    pub(crate) fn handed_over(mut self, granted: Duration) -> Lease {
        if granted < self.ttl {
            self.state.extended(self.held_since, granted);
            if let Some(watchdog) = &self.watchdog {
                watchdog.validity_changed(&self.state);
            }
            let (settled, settling) = watch::channel(false);
            self.settling = Some(settling);
            let (backend, state) = (self.backend.clone(), self.state.clone());
            self.backend
                .in_background(extend_granted(backend, state, self.ttl, settled));
        }
        self
    }

    fn stop_watchdog(&self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.stop(&self.state);
        }
    }

    /// Stops renewal and marks the lease released, for a caller that releases it on the
    /// server itself (a set releases all its leases in one script).
    pub(crate) fn disarm(&self) {
        self.stop_watchdog();
        self.state.released.store(true, Ordering::Relaxed);
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// How long since the acquire that took it was sent.
    pub(crate) fn held_for(&self) -> Duration {
        self.held_since.elapsed()
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The Redis key that holds it.
    pub fn key(&self) -> &str {
        &self.state.key
    }

    /// This acquisition's id (a UUID v4).
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Strictly greater than the token of every earlier acquisition of this name.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// When it was acquired, RFC 3339 UTC with milliseconds.
    pub fn acquired_at(&self) -> &str {
        &self.acquired_at
    }

    /// The time to live set on each acquisition and renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The monotonic instant before which the lease is surely still ours on the server.
    pub fn valid_until(&self) -> Instant {
        self.state.valid_until()
    }

    /// How many automatic renewals succeeded.
    pub fn renewals(&self) -> u64 {
        self.state.renewals.load(Ordering::Relaxed)
    }

    /// The loss, if the lease was lost.
    pub fn lost_error(&self) -> Option<Error> {
        if self.watchdog.is_none() && Instant::now() >= self.state.valid_until() {
            return Some(self.state.mark_lost(LostReason::Expired));
        }
        self.state.lost_error()
    }

    /// Resolves with [`Error::Lost`] when the lease is lost; never resolves while it is held.
    ///
    /// The future owns what it needs, so it can be moved into another task.
    pub fn lost(&self) -> impl Future<Output = Error> + Send + 'static {
        let (state, watched) = (self.state.clone(), self.watchdog.is_some());
        async move { state.until_lost(!watched).await }
    }

    /// Extends the lease by its TTL, now.
    ///
    /// # Errors
    /// As [`Lease::extend_by`].
    pub async fn extend(&self) -> Result<()> {
        self.extend_by(self.ttl).await
    }

    /// Sets the lease's time to live to `ttl` from now (shorter or longer than before), if it
    /// is still ours: in quorum mode on a majority, within the validity `ttl` gives. Automatic
    /// renewals, if any, keep using the TTL the lease was taken with.
    ///
    /// # Errors
    /// [`Error::Lost`] when it is no longer ours (and the lost signal fires), or a
    /// connection error; an already lost lease is never extended. [`Error::Settings`] for a
    /// too short or huge `ttl`.
    pub async fn extend_by(&self, ttl: Duration) -> Result<()> {
        if let Some(lost) = self.state.lost_error() {
            return Err(lost);
        }
        let sent_at = Instant::now();
        // Past its validity the key may already belong to someone else: never extend then.
        if sent_at >= self.state.valid_until() {
            return Err(self.state.mark_lost(LostReason::Expired));
        }
        if !self
            .backend
            .extend(&self.state.key, &self.state.id, ttl)
            .await?
        {
            return Err(self.state.mark_lost(LostReason::NotOwner));
        }
        // A majority that answered after the new validity ended holds nothing we may count on.
        if Instant::now() >= validity_end(sent_at, ttl) {
            return Err(self.state.mark_lost(LostReason::Expired));
        }
        self.state.extended(sent_at, ttl);
        if let Some(watchdog) = &self.watchdog {
            watchdog.validity_changed(&self.state);
        }
        Ok(())
    }

    /// Waits until the lease holds its own TTL on the server: a lease handed over by the
    /// release of the one before (to the first of the queued waiters, in single mode) starts
    /// with a TTL of at most 1.5 s, and extends it to its own at once in the background; any
    /// other lease at once. Worth awaiting before [`Lease::keep`].
    ///
    /// # Errors
    /// [`Error::Lost`] when the lease was lost (the extension found it gone, or could not be
    /// made before the short TTL ran out).
    pub async fn settled(&self) -> Result<()> {
        if let Some(settling) = &self.settling {
            let _ = settling.clone().wait_for(|settled| *settled).await;
            if Instant::now() >= self.state.valid_until() {
                return Err(self.state.mark_lost(LostReason::Expired));
            }
        }
        self.state.lost_error().map_or(Ok(()), Err)
    }

    /// Keeps the lease held after this value (and the program) is gone: stops renewal, and
    /// neither releases it nor reports it lost (await [`Lease::settled`] first, so that its
    /// TTL on the server is its own); it ends when its TTL runs out, unless someone
    /// extends or releases it by its id ([`LeaseClient::extend`](crate::LeaseClient::extend),
    /// [`LeaseClient::release`](crate::LeaseClient::release)). Answers what is needed for that.
    pub fn keep(self) -> KeptLease {
        self.disarm();
        KeptLease {
            name: self.state.name.clone(),
            key: self.state.key.clone(),
            id: self.state.id.clone(),
            fencing_token: self.fencing_token,
            acquired_at: self.acquired_at.clone(),
            ttl: self.ttl,
            valid_until: self.state.valid_until(),
        }
    }

    /// Stops renewal, then releases the lease if it is still ours.
    ///
    /// Answers `false` when the key was already gone or held by someone else.
    ///
    /// # Errors
    /// A connection error; the lease then ends when its TTL runs out.
    pub async fn release(self) -> Result<bool> {
        self.disarm();
        tracing::info!(
            lease = %self.state.name,
            held_ms = self.held_for().as_millis() as u64,
            renewals = self.renewals(),
            "releasing"
        );
        let keys = [self.state.key.clone()];
        let span = tracing::info_span!(
            "lease.release",
            lease.name = %self.state.name,
            lease.id = %self.state.id,
            lease.fencing_token = self.fencing_token
        );
        let released = self.backend.release(&keys, &self.state.id);
        Ok(tracing::Instrument::instrument(released, span).await? > 0)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_watchdog();
        self.state.held.end(None);
        if self.state.released.load(Ordering::Relaxed) {
            return;
        }
        // Never block in drop: release in the background when a runtime is still there.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (backend, keys) = (self.backend.clone(), [self.state.key.clone()]);
            let id = self.state.id.clone();
            runtime.spawn(async move {
                let _ = backend.release(&keys, &id).await;
            });
        }
    }
}

/// Extends a lease handed over with a short TTL to its own `ttl`, trying again after a
/// connection error while its validity lasts; a lease released or dropped meanwhile is left
/// alone (its release may have reached the server first).
async fn extend_granted(
    backend: Arc<Backend>,
    state: Arc<LeaseState>,
    ttl: Duration,
    settled: watch::Sender<bool>,
) {
    let gone = |state: &LeaseState| state.released.load(Ordering::Relaxed) || settled.is_closed();
    loop {
        let sent_at = Instant::now();
        if sent_at >= state.valid_until() || state.lost_error().is_some() || gone(&state) {
            break;
        }
        match backend.extend(&state.key, &state.id, ttl).await {
            Ok(true) => {
                if Instant::now() < validity_end(sent_at, ttl) {
                    state.confirm(sent_at, ttl, false);
                }
                break;
            }
            Ok(false) => {
                if !gone(&state) {
                    state.mark_lost(LostReason::NotOwner);
                }
                break;
            }
            Err(error) if error.is_transient() => {
                tracing::debug!(%error, lease = %state.name, "extending a lease handed over failed; trying again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                tracing::debug!(%error, lease = %state.name, "extending a lease handed over failed");
                break;
            }
        }
    }
    let _ = settled.send(true);
}

/// A lease left held by [`Lease::keep`]: nobody renews or releases it; it ends at its TTL
/// unless extended or released by its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptLease {
    pub name: String,
    pub key: String,
    /// The lease id, for [`LeaseClient::extend`](crate::LeaseClient::extend) and
    /// [`LeaseClient::release`](crate::LeaseClient::release).
    pub id: String,
    pub fencing_token: u64,
    /// RFC 3339 UTC with milliseconds.
    pub acquired_at: String,
    /// The time to live it was taken with.
    pub ttl: Duration,
    /// The monotonic instant before which it is surely still held on the server.
    pub valid_until: Instant,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.state.name)
            .field("id", &self.state.id)
            .field("fencing_token", &self.fencing_token)
            .field("ttl", &self.ttl)
            .finish()
    }
}

//! The watchdog behind every renewed or capped lease: renews it at its interval and fires the
//! lost signal as soon as the lease is gone on the server or its validity runs out unconfirmed
//! (or its hold cap is reached). One watchdog per client watches all of its leases
//! (`watchdog.rs`: one task, the leases' next instants in order) and renews those due
//! together, in one pipeline per instance (`backend/batch.rs`); a lease leaves it on release,
//! keep or drop, or once lost. Also the state a lease shares with it (validity, renewals, the
//! lost signal) and its [`Schedule`].

mod watchdog;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, LostReason};

pub(crate) use watchdog::Registration;

/// What a lease shares with its watchdog: names, validity, renewals, the lost signal.
pub(crate) struct LeaseState {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) id: String,
    /// The instant (monotonic) before which the server cannot have expired the key.
    valid_until: Mutex<Instant>,
    pub(crate) renewals: AtomicU64,
    /// Why it was lost, once it is (set once).
    lost: OnceLock<LostReason>,
    /// Wakes the `lost()` futures when it is lost.
    lost_signal: Notify,
    /// Set by `release`: a released lease is never reported lost.
    pub(crate) released: AtomicBool,
    /// The hold, for the metrics: ended by the loss, or by the lease's drop.
    pub(crate) held: crate::telemetry::Held,
}

impl LeaseState {
    pub(crate) fn new(
        name: &str,
        key: String,
        id: String,
        sent_at: Instant,
        ttl: Duration,
    ) -> Self {
        LeaseState {
            name: name.to_string(),
            key,
            id,
            valid_until: Mutex::new(validity_end(sent_at, ttl)),
            renewals: AtomicU64::new(0),
            lost: OnceLock::new(),
            lost_signal: Notify::new(),
            released: AtomicBool::new(false),
            held: crate::telemetry::Held::start(name, sent_at),
        }
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *self.valid_until.lock().expect("lease state lock")
    }

    /// Records a confirmed extension sent at `sent_at`.
    pub(crate) fn confirm(&self, sent_at: Instant, ttl: Duration, renewal: bool) {
        let mut until = self.valid_until.lock().expect("lease state lock");
        *until = (*until).max(validity_end(sent_at, ttl));
        if renewal {
            self.renewals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a confirmed extension to `ttl` sent at `sent_at`, which may shorten the
    /// validity (a shorter TTL than before).
    pub(crate) fn extended(&self, sent_at: Instant, ttl: Duration) {
        *self.valid_until.lock().expect("lease state lock") = validity_end(sent_at, ttl);
    }

    /// Fires the lost signal once; later calls keep the first reason.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> Error {
        if self.lost.set(reason.clone()).is_ok() {
            let error = self.lost_error().expect("just set");
            tracing::info!(lease = %self.name, %error, "lease lost");
            self.held.end(Some(reason));
            self.lost_signal.notify_waiters();
        }
        self.lost_error().expect("set")
    }

    pub(crate) fn lost_error(&self) -> Option<Error> {
        self.lost.get().map(|reason| Error::Lost {
            name: self.name.clone(),
            reason: reason.clone(),
        })
    }

    /// Resolves when it is lost, or at once if it was; with `expiry` (a lease nothing
    /// watches), also when its validity runs out, unless it was released.
    pub(crate) async fn until_lost(&self, expiry: bool) -> Error {
        loop {
            let signal = self.lost_signal.notified();
            tokio::pin!(signal);
            // Registered before the check, so that a loss right after it still wakes us.
            signal.as_mut().enable();
            if let Some(error) = self.lost_error() {
                return error;
            }
            // Without a watchdog, the validity's end is watched here (it only moves later,
            // when `extend` succeeds).
            let expired = async {
                match expiry {
                    true => tokio::time::sleep_until(self.valid_until()).await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signal => {}
                _ = expired => {
                    if self.released.load(Ordering::Relaxed) {
                        return std::future::pending().await;
                    }
                    if Instant::now() >= self.valid_until() {
                        return self.mark_lost(LostReason::Expired);
                    }
                }
            }
        }
    }
}

/// The end of a lease's validity when the request that set its TTL left at `sent_at`:
/// TTL minus the clock drift allowance (1% of the TTL + 2 ms), on the monotonic clock.
pub(crate) fn validity_end(sent_at: Instant, ttl: Duration) -> Instant {
    let drift = ttl / 100 + Duration::from_millis(2);
    sent_at + ttl.saturating_sub(drift)
}

/// When a lease's watchdog renews it, and when it stops for good.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// When the acquire that took the lease was sent: renewals are timed from it.
    pub(crate) sent_at: Instant,
    /// The TTL set on every renewal.
    pub(crate) ttl: Duration,
    /// Renew at this interval; `None` = never (the lease then ends at its TTL).
    pub(crate) renew_every: Option<Duration>,
    /// The hold-time cap: no renewal after it, and the lost signal fires then.
    pub(crate) hold_until: Option<Instant>,
    /// Renew at once when the key's release channel announces a release (a forced one).
    pub(crate) watch_releases: bool,
}

impl Schedule {
    /// Whether a watchdog must watch the lease: it is renewed or capped. A lease that is
    /// neither needs none: its lost signal is a timer in `lost()` (or a check in
    /// `lost_error()`), which keeps a plain acquire cheap.
    pub(crate) fn watched(&self) -> bool {
        self.renew_every.is_some() || self.hold_until.is_some()
    }
}

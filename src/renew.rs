//! The watchdog behind every lease: renews it at its interval (when asked to) and fires the
//! lost signal as soon as the lease is gone on the server or its validity runs out unconfirmed.
//! It ends on release or drop (the lease aborts it), or once it has fired. Also the state it
//! shares with its [`Lease`](crate::Lease) (validity, renewals, the lost signal) and its
//! [`Schedule`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use crate::backend::Backend;
use crate::error::{Error, LostReason};

/// The part of a lease that its renewal task shares: validity, renewals, the lost signal.
pub(crate) struct LeaseState {
    pub(crate) name: String,
    /// The instant (monotonic) before which the server cannot have expired the key.
    pub(crate) valid_until: Mutex<Instant>,
    pub(crate) renewals: AtomicU64,
    pub(crate) lost: tokio::sync::watch::Sender<Option<Error>>,
    /// Set by `release`: a released lease is never reported lost.
    pub(crate) released: AtomicBool,
    /// The hold, for the metrics: ended by the loss, or by the lease's drop.
    pub(crate) held: crate::telemetry::Held,
}

impl LeaseState {
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
        let error = Error::Lost {
            name: self.name.clone(),
            reason: reason.clone(),
        };
        self.lost.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            tracing::info!(lease = %self.name, %error, "lease lost");
            self.held.end(Some(reason.clone()));
            *current = Some(error.clone());
            true
        });
        self.lost.borrow().clone().unwrap_or(error)
    }

    pub(crate) fn lost_error(&self) -> Option<Error> {
        self.lost.borrow().clone()
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

/// A lease's release announcements.
type Releases = BoxStream<'static, redis::Msg>;

/// The longest wait before retrying a renewal that failed on a connection error.
const RETRY_AT_MOST: Duration = Duration::from_millis(500);

pub(crate) fn spawn(
    backend: Arc<Backend>,
    state: Arc<LeaseState>,
    key: String,
    id: String,
    schedule: Schedule,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let reason = watch(&backend, &state, &key, &id, schedule).await;
        state.mark_lost(reason);
    })
}

/// Runs until the lease is lost (or its hold cap is reached), and answers why.
async fn watch(
    backend: &Backend,
    state: &LeaseState,
    key: &str,
    id: &str,
    schedule: Schedule,
) -> LostReason {
    let Schedule {
        sent_at,
        ttl,
        renew_every,
        hold_until,
        watch_releases,
    } = schedule;
    // Renewals are timed from the acquire, not from now: the lease's validity began then.
    let mut next_renewal = renew_every.map(|every| sent_at + every);
    // A release of this key that is not ours (a forced release) is announced on its channel:
    // renew at once then, which finds the lease gone, instead of at the next interval. The
    // subscription is set up beside the renewals and never delays them (an instance that does
    // not answer would hold it up for `ConnectTimeout`).
    let mut subscribing: Option<BoxFuture<'_, Option<Releases>>> =
        match (watch_releases, renew_every) {
            (true, Some(_)) => Some(Box::pin(backend.subscribe_releases(key))),
            _ => None,
        };
    let mut releases: Option<Releases> = None;
    loop {
        let valid_until = state.valid_until();
        let mut wake = next_renewal.map_or(valid_until, |at| at.min(valid_until));
        if let Some(cap) = hold_until {
            wake = wake.min(cap);
        }
        let announced = async {
            match releases.as_mut() {
                Some(stream) => stream.next().await.is_some(),
                None => std::future::pending().await,
            }
        };
        let subscribed = async {
            match subscribing.as_mut() {
                Some(subscription) => subscription.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep_until(wake) => {}
            open = announced => {
                if open {
                    next_renewal = Some(Instant::now());
                } else {
                    releases = None;
                }
            }
            stream = subscribed => {
                subscribing = None;
                releases = stream;
                continue;
            }
        }
        let now = Instant::now();
        if hold_until.is_some_and(|cap| now >= cap) {
            return LostReason::MaxHold;
        }
        let valid_until = state.valid_until();
        if now >= valid_until {
            return LostReason::Expired;
        }
        let (Some(at), Some(every)) = (next_renewal, renew_every) else {
            continue;
        };
        if now < at {
            continue;
        }
        // Boxed: the renewal call exists only while it runs, so that a sleeping watchdog (one per
        // held lease) stays small.
        let span = tracing::info_span!("lease.renew", lease.name = %state.name, lease.id = %id);
        let renewal = tracing::Instrument::instrument(backend.extend(key, id, ttl), span);
        let answer = timeout(valid_until - now, Box::pin(renewal)).await;
        crate::telemetry::renewal(&state.name, matches!(answer, Ok(Ok(true))), now.elapsed());
        match answer {
            Ok(Ok(true)) => {
                state.confirm(now, ttl, true);
                next_renewal = Some(now + every);
                tracing::debug!(lease = %state.name, "renewed");
            }
            Ok(Ok(false)) => return LostReason::NotOwner,
            Ok(Err(error)) => {
                let retry = ((valid_until - now) / 4).min(RETRY_AT_MOST);
                tracing::warn!(lease = %state.name, %error, "renewal failed; retrying in {retry:?}");
                next_renewal = Some(now + retry);
            }
            Err(_) => return LostReason::Expired,
        }
    }
}

//! The watchdog behind every lease: renews it at its interval (when asked to) and fires the
//! lost signal as soon as the lease is gone on the server or its validity runs out unconfirmed.
//! It ends on release or drop (the lease aborts it), or once it has fired.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use crate::client::Shared;
use crate::error::LostReason;
use crate::lease::{LeaseState, Schedule};

/// A lease's release announcements.
type Releases = BoxStream<'static, redis::Msg>;

/// The longest wait before retrying a renewal that failed on a connection error.
const RETRY_AT_MOST: Duration = Duration::from_millis(500);

pub(crate) fn spawn(
    shared: Arc<Shared>,
    state: Arc<LeaseState>,
    key: String,
    id: String,
    schedule: Schedule,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let reason = watch(&shared, &state, &key, &id, schedule).await;
        state.mark_lost(reason);
    })
}

/// Runs until the lease is lost (or its hold cap is reached), and answers why.
async fn watch(
    shared: &Shared,
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
            (true, Some(_)) => Some(Box::pin(shared.subscribe_releases(key))),
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
        match timeout(valid_until - now, Box::pin(shared.extend(key, id, ttl))).await {
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

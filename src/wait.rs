//! Waiting for a held lease: between tries a waiter sleeps until the release notification
//! (which names the first queued waiter) or a jittered fallback poll, never past the holder's
//! remaining TTL; and how long a queued waiter keeps its place.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::client::LeaseOptions;
use crate::holder::Holder;
use crate::hub::wakes;
use crate::nodes::Nodes;

/// Waits between tries for a held lease: woken by the release notification (subscribed
/// after the first failed try), else polling with jitter, never past the holder's TTL.
pub(crate) struct Waiter {
    channel: String,
    /// Our place in the lease's queue: a release that names another waiter is not for us.
    place: Option<String>,
    deadline: Instant,
    fallback_poll: Duration,
    subscribed: bool,
    notifications: Option<futures_util::stream::BoxStream<'static, redis::Msg>>,
}

impl Waiter {
    /// A waiter woken by notifications on `channel` (the lease's release channel).
    pub(crate) fn new(
        channel: String,
        deadline: Instant,
        fallback_poll: Duration,
        place: Option<String>,
    ) -> Waiter {
        Waiter {
            channel,
            place,
            deadline,
            fallback_poll,
            subscribed: false,
            notifications: None,
        }
    }

    pub(crate) fn is_over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Waits for the next try. The first time it only subscribes, so that the caller tries
    /// again at once and a release between its try and the subscription is not missed.
    pub(crate) async fn pause(&mut self, nodes: &Nodes, holder: &Holder) {
        if !self.subscribed {
            self.subscribed = true;
            self.notifications = nodes.subscribe(&self.channel, self.place.as_deref()).await;
            return;
        }
        let jitter = 0.75 + fastrand::f64() / 2.0;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut pause = self.fallback_poll.mul_f64(jitter).min(left);
        if let Some(ttl) = holder.ttl {
            pause = pause.min(ttl + Duration::from_millis(1));
        }
        let Some(stream) = self.notifications.as_mut() else {
            tokio::time::sleep(pause).await;
            return;
        };
        // A release names the first queued waiter (or no one): only it needs to try now.
        let until = Instant::now() + pause;
        loop {
            match tokio::time::timeout_at(until, stream.next()).await {
                Ok(Some(message)) => {
                    let next: String = message.get_payload().unwrap_or_default();
                    if wakes(self.place.as_deref(), &next) {
                        return;
                    }
                }
                // The subscription's connection died (a restart, a cut, CLIENT KILL): try
                // once now — a release may have been missed — then subscribe anew. Reading
                // the ended stream again would answer at once, every time: a busy loop.
                Ok(None) => {
                    self.notifications = None;
                    self.subscribed = false;
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

/// How long a queued waiter keeps its place without trying again: three of its fallback
/// polls (it tries at least that often), so a waiter that died holds up the others no longer.
pub(crate) fn queue_grace(options: &LeaseOptions) -> Duration {
    (options.fallback_poll * 3).clamp(Duration::from_secs(1), Duration::from_secs(24 * 3600))
}

//! Release notifications from one instance, shared by every waiter of a client: one pub/sub
//! connection (RESP3 pushes over a multiplexed connection), opened at the first wait, instead
//! of one per waiting acquire. A channel is subscribed while someone listens to it; channels
//! nobody listens to any more are unsubscribed in batches. A notification that names the next
//! waiter in line goes to that waiter only (and to listeners outside the queue), so a release
//! wakes one task, not every waiter of the lease. When the connection dies, every listener's
//! stream ends, and waiters subscribe again (see wait.rs) over a new connection.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use futures_util::stream::{self, BoxStream, StreamExt};
use redis::aio::{AsyncPushSender, SendError};
use redis::{Msg, PushInfo, PushKind, RedisResult};
use tokio::sync::{mpsc, Mutex};

use super::cluster_link::Subscriber;

/// Channels nobody listens to that are kept subscribed before they are dropped together.
const IDLE_CHANNELS: usize = 64;

/// One listener: its place in the lease's queue (`None`: not queued, it hears every release).
struct Listener {
    place: Option<String>,
    sender: mpsc::UnboundedSender<Msg>,
}

type Channels = Arc<SyncMutex<HashMap<String, Vec<Listener>>>>;

#[derive(Default)]
pub(crate) struct Hub {
    /// Held while (un)subscribing, so that those commands go out in the order they were decided.
    live: Mutex<Option<Live>>,
}

struct Live {
    connection: Subscriber,
    channels: Channels,
    closed: Arc<AtomicBool>,
}

impl Hub {
    /// The release notifications of `channel` for a listener at `place` in its queue,
    /// subscribed when this returns. `connect` opens a connection that hands its pushes to the
    /// [`Router`] it is given (when none is open).
    pub(crate) async fn listen<F, C>(
        &self,
        channel: &str,
        place: Option<&str>,
        connect: C,
    ) -> RedisResult<BoxStream<'static, Msg>>
    where
        C: FnOnce(Router) -> F,
        F: Future<Output = RedisResult<Subscriber>>,
    {
        let mut live = self.live.lock().await;
        if live
            .as_ref()
            .is_none_or(|l| l.closed.load(Ordering::Acquire))
        {
            let (channels, closed) = (Channels::default(), Arc::new(AtomicBool::new(false)));
            let router = Router {
                channels: channels.clone(),
                closed: closed.clone(),
            };
            let connection = connect(router).await?;
            *live = Some(Live {
                connection,
                channels,
                closed,
            });
        }
        let live = live.as_mut().expect("connected above");
        let (sender, receiver) = mpsc::unbounded_channel();
        let listener = Listener {
            place: place.map(str::to_string),
            sender,
        };
        let (fresh, idle) = {
            let mut channels = live.channels.lock().expect("channels");
            for listeners in channels.values_mut() {
                listeners.retain(|l| !l.sender.is_closed());
            }
            let idle: Vec<String> = channels
                .iter()
                .filter(|(name, listeners)| listeners.is_empty() && *name != channel)
                .map(|(name, _)| name.clone())
                .collect();
            let idle = if idle.len() > IDLE_CHANNELS {
                idle.iter().for_each(|name| drop(channels.remove(name)));
                idle
            } else {
                Vec::new()
            };
            let fresh = !channels.contains_key(channel);
            channels
                .entry(channel.to_string())
                .or_default()
                .push(listener);
            (fresh, idle)
        };
        if !idle.is_empty() {
            live.connection.unsubscribe(&idle).await?;
        }
        if fresh {
            if let Err(error) = live.connection.subscribe(channel).await {
                live.channels.lock().expect("channels").remove(channel);
                return Err(error);
            }
        }
        Ok(messages(receiver))
    }

    /// As [`Hub::listen`], but only when `channel` is subscribed already (no round trip, and
    /// `None` otherwise): every release announced after this returns reaches the listener.
    pub(crate) async fn listen_subscribed(
        &self,
        channel: &str,
        place: Option<&str>,
    ) -> Option<BoxStream<'static, Msg>> {
        // Under the lock that (un)subscribing holds: a channel in the map is subscribed.
        let live = self.live.lock().await;
        let live = live
            .as_ref()
            .filter(|l| !l.closed.load(Ordering::Acquire))?;
        let mut channels = live.channels.lock().expect("channels");
        let (sender, receiver) = mpsc::unbounded_channel();
        channels.get_mut(channel)?.push(Listener {
            place: place.map(str::to_string),
            sender,
        });
        Some(messages(receiver))
    }
}

/// A listener's messages as a stream.
fn messages(receiver: mpsc::UnboundedReceiver<Msg>) -> BoxStream<'static, Msg> {
    let messages = stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        Some((message, receiver))
    });
    messages.boxed()
}

/// Hands each message to its listeners, in the connection's own task (no hop through another
/// task); when the connection ends, ends every listener's stream.
pub(crate) struct Router {
    channels: Channels,
    closed: Arc<AtomicBool>,
}

impl Router {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.channels.lock().expect("channels").clear();
    }
}

impl AsyncPushSender for Router {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        if push.kind == PushKind::Disconnection {
            self.close();
            return Ok(());
        }
        let Some(message) = Msg::from_push_info(push) else {
            return Ok(());
        };
        let next: String = message.get_payload().unwrap_or_default();
        let channels = self.channels.lock().expect("channels");
        let listeners = channels
            .get(message.get_channel_name())
            .into_iter()
            .flatten();
        for listener in listeners.filter(|l| wakes(l.place.as_deref(), &next)) {
            let _ = listener.sender.send(message.clone());
        }
        Ok(())
    }
}

/// Whether a release notification naming `next` (the first waiter in line, or `""` for no
/// one; or `PLACE TOKEN ACQUIREDAT`, the waiter the lease was handed to) is for a listener at
/// `place` in the queue: it is for the named waiter and for those outside the queue; one that
/// names nobody is for everyone.
pub(crate) fn wakes(place: Option<&str>, next: &str) -> bool {
    next.is_empty() || place.is_none_or(|place| next.split(' ').next() == Some(place))
}

/// The lease a release notification `payload` says was handed to the waiter at `place`
/// (`handoff.lua`): its fencing token and acquiredAt.
pub(crate) fn granted<'a>(place: &str, payload: &'a str) -> Option<(u64, &'a str)> {
    let mut parts = payload.split(' ');
    if parts.next() != Some(place) {
        return None;
    }
    let token = parts.next()?.parse().ok()?;
    let acquired_at = parts.next().filter(|at| !at.is_empty())?;
    parts.next().is_none().then_some((token, acquired_at))
}

/// The connection is gone with its task.
impl Drop for Router {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_the_waiter_it_names_and_tells_it_of_a_grant() {
        let grant = "p1 42 2026-11-30T00:00:00.000Z";
        assert!(wakes(Some("p1"), grant) && wakes(Some("p1"), "p1") && wakes(None, grant));
        assert!(!wakes(Some("p2"), grant) && !wakes(Some("p2"), "p1"));
        assert!(wakes(Some("p2"), ""));
        assert_eq!(granted("p1", grant), Some((42, "2026-11-30T00:00:00.000Z")));
        assert_eq!(granted("p2", grant), None);
        assert_eq!(granted("p1", "p1"), None);
        assert_eq!(granted("p1", "p1 x 2026"), None);
    }
}

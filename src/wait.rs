//! Waiting for a held lease: between tries a waiter sleeps until the release notification
//! (which names the first queued waiter) or a jittered fallback poll, never past the holder's
//! remaining TTL; it keeps its place in the queue alive, gives it up on every way out, and
//! rides out a short outage of its Redis by trying again with backoff. In single mode the
//! release may hand the first waiter the lease (`handoff.lua`): the notification says so, and
//! the waiter returns the lease without another try. The waiting loops of a waiting acquire
//! and of `wait_until_free` are here too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::acquire::{attempt, grant_ttl, schedule, Taken, QUEUE_GRACE, SPLIT_RETRIES};
use crate::backend::hub::{granted, wakes};
use crate::backend::keys::{check_name, grants_key, queue_keys, release_channel};
use crate::backend::nodes::{Call, Nodes, Notifications};
use crate::backend::{scripts, Backend};
use crate::error::{Error, Result};
use crate::holder::{Holder, LeaseInfo};
use crate::inspect::inspect;
use crate::lease::Lease;
use crate::options::{LeaseOptions, FALLBACK_POLL};

/// How often a queued waiter confirms its place while it waits (between its tries).
const QUEUE_HEARTBEAT: Duration = Duration::from_millis(250);
/// The first and the longest pause before subscribing again after a subscription failed.
const RESUBSCRIBE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(8));
/// The first and the longest pause before trying again after a connection error.
const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Tries to take `names` until it does or `wait` runs out, woken by the release of the
/// lease that stood in the way (see
/// [`LeaseClient::acquire_set_observed`](crate::LeaseClient::acquire_set_observed)).
pub(crate) async fn wait_for(
    backend: &Arc<Backend>,
    background: &Arc<Background>,
    names: &[String],
    options: &LeaseOptions,
    wait: Duration,
    mut observe: impl FnMut(&str, &Holder),
) -> Result<Taken> {
    let deadline = Instant::now() + wait;
    // Queueing is per instance and per lease, so it is for one lease in single mode: in
    // quorum mode different instances could each promise the lease to a different waiter,
    // and none would win; a set would hold places in several queues at once.
    let place = match (backend.nodes.list.len(), names.len()) {
        (1, 1) => uuid::Uuid::new_v4().to_string(),
        _ => String::new(),
    };
    // Given up on every way out but success (whose script took us out of the queue).
    let queued = match place.is_empty() {
        true => Place::none(background.clone()),
        false => {
            let (backend, place) = (backend.clone(), place.clone());
            let key = backend.settings.key_for(&names[0]);
            let leave = Box::pin(async move { backend.leave_queue(&key, &place).await });
            Place::new(leave, background.clone())
        }
    };
    // The waiter for the lease that stood in the way last time. When this client already
    // listens to the lease's releases (for another waiter), it listens before the first try:
    // a release after that try then reaches it, and it need not try again before it waits.
    let mut waiter: Option<(usize, Waiter)> = None;
    if let [name] = names {
        let key = backend.settings.key_for(name);
        let channel = release_channel(&backend.settings.key_prefix, &key);
        let mine = Some(place.as_str()).filter(|place| !place.is_empty());
        if let Some(streams) = backend.nodes.listen_subscribed(&channel, mine).await {
            let mine = mine.map(str::to_string);
            let prefix = &backend.settings.key_prefix;
            let fresh = Waiter::new(prefix, &key, deadline, options.fallback_poll, mine)
                .granted_for(grant_ttl(options.ttl));
            waiter = Some((0, fresh.listening(streams)));
        }
    }
    let mut backoff = Backoff::until(deadline);
    let (started, mut attempts) = (Instant::now(), 0u64);
    loop {
        attempts += 1;
        let tried_at = Instant::now();
        let tried = attempt(backend, names, options, &place, SPLIT_RETRIES).await;
        let (lease, holder, counter) = match tried {
            Ok(Taken::Held {
                lease,
                holder,
                counter,
            }) => (lease, holder, counter),
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
            return Ok(Taken::Held {
                lease,
                holder,
                counter,
            });
        }
        observe(&names[lease], &holder);
        if waiter
            .as_ref()
            .is_none_or(|(blocking, _)| *blocking != lease)
        {
            let key = backend.settings.key_for(&names[lease]);
            let prefix = &backend.settings.key_prefix;
            let place = Some(place.clone()).filter(|place| !place.is_empty());
            let fresh = Waiter::new(prefix, &key, deadline, options.fallback_poll, place)
                .granted_for(grant_ttl(options.ttl));
            waiter = Some((lease, fresh));
        }
        let Some((_, waiter)) = waiter.as_mut() else {
            continue;
        };
        // A held answer found us queued (acquire.lua queues a waiter on both held paths).
        waiter.tried(tried_at, counter);
        if let Woken::Granted {
            token,
            acquired_at,
            queued_at,
        } = waiter.pause(&backend.nodes, &holder).await
        {
            // A release handed us the lease, after `queued_at`: no try needed.
            let (name, key) = (&names[0], backend.settings.key_for(&names[0]));
            let schedule = schedule(options, queued_at);
            let lease = Lease::new(
                backend.clone(),
                name,
                key,
                place,
                token,
                acquired_at,
                queued_at,
                schedule,
            )
            .handed_over(grant_ttl(options.ttl));
            queued.taken();
            let waited_ms = started.elapsed().as_millis() as u64;
            tracing::info!(lease = %name, attempts, waited_ms, "handed over by the release");
            return Ok(Taken::Acquired(vec![lease]));
        }
    }
}

/// What ended a waiter's pause.
pub(crate) enum Woken {
    /// Time to try again.
    Try,
    /// A release handed the lease to our place, with this token and acquiredAt, after the
    /// call that started at `queued_at` found us queued.
    Granted {
        token: u64,
        acquired_at: String,
        queued_at: Instant,
    },
}

/// Waits up to `wait` until `name` is free; see
/// [`LeaseClient::wait_until_free`](crate::LeaseClient::wait_until_free).
pub(crate) async fn wait_until_free(
    backend: &Backend,
    name: &str,
    wait: Duration,
) -> Result<Option<Holder>> {
    check_name(name)?;
    let deadline = Instant::now() + wait;
    let key = backend.settings.key_for(name);
    let prefix = &backend.settings.key_prefix;
    let mut waiter = Waiter::new(prefix, &key, deadline, FALLBACK_POLL, None);
    let mut backoff = Backoff::until(deadline);
    loop {
        let info = match inspect(backend, name).await {
            Ok(info) => info,
            // A restart, a cut: try again within the wait, backing off.
            Err(error) => {
                backoff.after(error).await?;
                continue;
            }
        };
        backoff.reset();
        let Some(holder) = info.holder.clone().or_else(|| blocking(&info, backend)) else {
            return Ok(None);
        };
        if waiter.is_over() {
            return Ok(Some(holder));
        }
        waiter.pause(&backend.nodes, &holder).await;
    }
}

/// Quorum mode, no holder a majority agrees on: a holder an instance shows when too few
/// instances are free for an acquire to get a majority (the others down, or held there).
fn blocking(info: &LeaseInfo, backend: &Backend) -> Option<Holder> {
    let free = info.instances.iter();
    let free = free
        .filter(|v| v.error.is_none() && v.holder.is_none())
        .count();
    if info.instances.is_empty() || free >= backend.nodes.majority() {
        return None;
    }
    info.holders().first().map(|holder| (*holder).clone())
}

/// Waits between tries for a held lease: woken by the release notification (subscribed
/// after the first failed try), else polling with jitter, never past the holder's TTL.
pub(crate) struct Waiter {
    channel: String,
    /// Our place in the lease's queue, and the call that confirms it (a release that names
    /// another waiter is not for us).
    place: Option<(String, Arc<Call>)>,
    /// The TTL a release hands us the lease with (see `grant_ttl`).
    grant_ttl: Duration,
    /// When the last call started whose answer found us queued: a release that hands us the
    /// lease came after it.
    queued_at: Option<Instant>,
    /// The fencing counter our last try found: a release that handed us the lease after it
    /// took a newer token. An older one is a late notification of a grant to our place from
    /// before that try (the lease since deleted and taken by another, and our place taken
    /// anew), which must not make us a second holder.
    counter: u64,
    deadline: Instant,
    fallback_poll: Duration,
    subscribed: bool,
    /// The release notifications of every instance subscribed to.
    notifications: SelectAll<Notifications>,
    /// The instances to subscribe to (again), and when: at once after a subscription was
    /// lost, later after an instance could not be subscribed to.
    missing: Vec<usize>,
    resubscribe_at: Option<Instant>,
    resubscribe_delay: Duration,
}

impl Waiter {
    /// A waiter for the lease key `key` (under `prefix`), woken by notifications on its
    /// release channel; `place` is its place in the lease's queue, if it keeps one.
    pub(crate) fn new(
        prefix: &str,
        key: &str,
        deadline: Instant,
        fallback_poll: Duration,
        place: Option<String>,
    ) -> Waiter {
        let channel = release_channel(prefix, key);
        let place = place.map(|place| {
            let (queue, deadlines) = queue_keys(prefix, key);
            let confirm = Call::new(&scripts::KEEP_PLACE)
                .key(queue)
                .key(deadlines)
                .key(grants_key(prefix, key))
                .key(key)
                .arg(&place)
                .arg(QUEUE_GRACE.as_millis() as u64);
            (place, Arc::new(confirm))
        });
        Waiter {
            channel,
            place,
            grant_ttl: QUEUE_GRACE,
            queued_at: None,
            counter: 0,
            deadline,
            fallback_poll,
            subscribed: false,
            notifications: SelectAll::new(),
            missing: Vec::new(),
            resubscribe_at: None,
            resubscribe_delay: RESUBSCRIBE.0,
        }
    }

    /// Already subscribed on every instance, to `streams`.
    fn listening(mut self, streams: Vec<Notifications>) -> Waiter {
        self.subscribed = true;
        streams.into_iter().for_each(|s| self.notifications.push(s));
        self
    }

    pub(crate) fn is_over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// A release hands us the lease with `ttl` (at most [`QUEUE_GRACE`]).
    fn granted_for(mut self, ttl: Duration) -> Waiter {
        self.grant_ttl = ttl;
        self
    }

    /// A call that started at `at` found us queued.
    fn queued(&mut self, at: Instant) {
        self.queued_at = Some(at);
    }

    /// A try that started at `at` found us queued, and the fencing counter at `counter`.
    fn tried(&mut self, at: Instant, counter: u64) {
        self.queued(at);
        self.counter = counter;
    }

    /// What a notification `payload` for us says: a lease handed to us, when it does and
    /// enough of its validity is left to hand it on as it is (else a try takes it at once:
    /// acquire.lua answers a waiter the lease held under its place).
    fn grant_in(&self, payload: &str) -> Option<Woken> {
        let (place, _) = self.place.as_ref()?;
        let (token, acquired_at) = granted(place, payload)?;
        // (No counter: a holder of another tool's; the try tells.)
        if token <= self.counter || self.counter == 0 {
            return None;
        }
        let queued_at = self.queued_at?;
        let left = crate::renew::validity_end(queued_at, self.grant_ttl)
            .saturating_duration_since(Instant::now());
        (left > self.grant_ttl / 2).then(|| Woken::Granted {
            token,
            acquired_at: acquired_at.to_string(),
            queued_at,
        })
    }

    /// Waits for the next try. The first time it only subscribes, so that the caller tries
    /// again at once and a release between its try and the subscription is not missed; so
    /// does every time it subscribes again.
    pub(crate) async fn pause(&mut self, nodes: &Nodes, holder: &Holder) -> Woken {
        let now = Instant::now();
        if !self.subscribed {
            self.subscribed = true;
            self.missing = (0..nodes.list.len()).collect();
        }
        if !self.missing.is_empty() && self.resubscribe_at.is_none_or(|at| at <= now) {
            self.subscribe(nodes).await;
            return Woken::Try;
        }
        let jitter = 0.75 + fastrand::f64() / 2.0;
        let left = self.deadline.saturating_duration_since(now);
        let mut pause = self.fallback_poll.mul_f64(jitter).min(left);
        if let Some(ttl) = holder.ttl {
            pause = pause.min(ttl + Duration::from_millis(1));
        }
        let mut until = now + pause;
        if let Some(at) = self.resubscribe_at {
            until = until.min(at);
        }
        loop {
            let beat = match &self.place {
                Some(_) => until.min(Instant::now() + QUEUE_HEARTBEAT),
                None => until,
            };
            let next = async {
                match self.notifications.is_empty() {
                    // An empty set of streams would answer at once, every time: a busy loop.
                    true => std::future::pending().await,
                    false => self.notifications.next().await,
                }
            };
            let got = tokio::time::timeout_at(beat, next).await;
            match got {
                Ok(Some((_, Some(message)))) => {
                    let next: String = message.get_payload().unwrap_or_default();
                    if let Some(granted) = self.grant_in(&next) {
                        return granted;
                    }
                    let place = self.place.as_ref().map(|(place, _)| place.as_str());
                    if wakes(place, &next) {
                        return Woken::Try;
                    }
                }
                // One instance's subscription died (a restart, a cut, CLIENT KILL): try once
                // now — a release may have been missed — then subscribe to it anew.
                Ok(Some((index, None))) => {
                    self.missing.push(index);
                    self.resubscribe_at = None;
                    return Woken::Try;
                }
                Ok(None) => return Woken::Try,
                Err(_) if beat >= until => return Woken::Try,
                Err(_) => {
                    if let Some((_, confirm)) = &self.place {
                        let sent_at = Instant::now();
                        match confirm_place(nodes, confirm.clone()).await {
                            Some(1) => self.queued(sent_at),
                            // A release handed us the lease, and its notification did not
                            // reach us: a try takes it at once.
                            Some(2) => return Woken::Try,
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// Subscribes to the releases on the instances not subscribed to (the others' streams
    /// keep what they receive meanwhile); those that still fail are tried again later,
    /// backing off.
    async fn subscribe(&mut self, nodes: &Nodes) {
        let place = self.place.as_ref().map(|(place, _)| place.as_str());
        let which = std::mem::take(&mut self.missing);
        let (streams, failed) = nodes.listen(&which, &self.channel, place).await;
        streams.into_iter().for_each(|s| self.notifications.push(s));
        self.missing = failed;
        if self.missing.is_empty() {
            self.resubscribe_at = None;
            self.resubscribe_delay = RESUBSCRIBE.0;
        } else {
            self.resubscribe_at = Some(Instant::now() + self.resubscribe_delay);
            self.resubscribe_delay = (self.resubscribe_delay * 2).min(RESUBSCRIBE.1);
        }
    }
}

/// Tells the queue that we still wait, so that our place does not run out; answers as
/// keep_place.lua does (single mode: queues are kept there only), `None` on an error.
async fn confirm_place(nodes: &Nodes, confirm: Arc<Call>) -> Option<i64> {
    let votes = nodes.all(|node| node.script::<i64>(&confirm)).await;
    votes.into_iter().next()?.answer.ok()
}

/// Pauses between tries that failed on a connection error (an instance restarting, a cut),
/// doubling each time; ends the wait with the last error when its budget ends.
pub(crate) struct Backoff {
    delay: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(crate) fn until(deadline: Instant) -> Backoff {
        Backoff {
            delay: RETRY.0,
            deadline,
        }
    }

    /// After a successful try.
    pub(crate) fn reset(&mut self) {
        self.delay = RETRY.0;
    }

    /// After `error`: `Ok` once it is time to try again, or the error itself when it is not
    /// one that passes or the wait's budget has ended.
    pub(crate) async fn after(&mut self, error: Error) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if !error.is_transient() || left.is_zero() {
            return Err(error);
        }
        tracing::debug!(%error, "trying again");
        tokio::time::sleep(self.delay.min(left)).await;
        self.delay = (self.delay * 2).min(RETRY.1);
        Ok(())
    }
}

/// A waiter's place in a lease's queue, given up on every way out: at once when the wait
/// ends (awaited), in the background when the waiting future is dropped (Ctrl-C, a timeout
/// around it, an aborted task). An acquire that succeeds has left the queue in its script.
pub(crate) struct Place {
    leave: Option<BoxFuture<'static, ()>>,
    background: Arc<Background>,
}

impl Place {
    /// `leave` gives the place up; `background` runs it when this is dropped.
    pub(crate) fn new(leave: BoxFuture<'static, ()>, background: Arc<Background>) -> Place {
        Place {
            leave: Some(leave),
            background,
        }
    }

    /// No place to give up (not queued, or the lease was taken).
    pub(crate) fn none(background: Arc<Background>) -> Place {
        Place {
            leave: None,
            background,
        }
    }

    /// Gives the place up now.
    pub(crate) async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            leave.await;
        }
    }

    /// The place is gone already.
    pub(crate) fn taken(mut self) {
        self.leave = None;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(leave) = self.leave.take() {
            self.background.spawn(leave);
        }
    }
}

/// Clean-up work left by dropped waits, which [`Background::finish`] awaits (a process that
/// exits right after dropping a wait would otherwise cancel it).
#[derive(Default)]
pub(crate) struct Background(Mutex<Vec<JoinHandle<()>>>);

impl Background {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        // Outside a runtime there is nothing to run it on: the place then runs out by itself.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut running = self.0.lock().expect("background");
        running.retain(|task| !task.is_finished());
        running.push(runtime.spawn(work));
    }

    /// Waits for the clean-up under way (each call in it is bounded by `SyncTimeout`).
    pub(crate) async fn finish(&self) {
        let running = std::mem::take(&mut *self.0.lock().expect("background"));
        for task in running {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_waiter_confirms_its_place_well_within_its_grace() {
        assert!(QUEUE_HEARTBEAT * 4 <= QUEUE_GRACE);
        assert!(
            QUEUE_GRACE <= Duration::from_millis(1500),
            "a killed waiter blocks briefly"
        );
    }
}

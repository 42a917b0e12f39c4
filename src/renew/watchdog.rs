//! One watchdog per client: a task that keeps every watched lease's next instant (its next
//! renewal, the end of its validity, its hold cap) in order, and wakes at the first. The
//! renewals due then, and those due soon after it (within a hundredth of their interval, see
//! [`window`]), go out together
//! (`Backend::extend_many`: one pipeline per instance), each batch in a task of its own, so a
//! batch that waits on a slow instance holds up no other. Each lease keeps its own answer:
//! confirmed (renewed again `every` after the renewal was sent), not ours (lost), an error
//! (retried soon, within its validity); a lease whose validity runs out before its answer
//! came is lost then, whatever the answer says later.
//!
//! The task runs while the client has watched leases, and starts again with the next one.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use slab::Slab;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::{LeaseState, Schedule};
use crate::backend::batch::Extension;
use crate::backend::Backend;
use crate::error::{LostReason, Result};

/// The most a renewal goes out early, to join a batch.
const WINDOW_AT_MOST: Duration = Duration::from_millis(50);

/// How early a lease renewed `every` may be renewed with others: a hundredth of its interval
/// (so at most 1% more renewals), far inside its renewal margin (a third of its TTL or more).
fn window(every: Duration) -> Duration {
    (every / 100).clamp(Duration::from_millis(1), WINDOW_AT_MOST)
}

/// The most renewals in one pipeline; more due at once go out in several, side by side.
const MOST_IN_A_BATCH: usize = 1000;

/// The longest wait before retrying a renewal that failed on a connection error.
const RETRY_AT_MOST: Duration = Duration::from_millis(500);

/// A client's watchdog, shared by its leases and its task.
struct Watchdog {
    backend: Weak<Backend>,
    registry: Mutex<Registry>,
    /// Wakes the task when a lease is due before the instant it sleeps until.
    wake: Notify,
}

/// The watched leases and their next instants.
#[derive(Default)]
struct Registry {
    leases: Slab<Watched>,
    /// (next instant, slot in `leases`), for every watched lease, in order.
    timers: BTreeSet<(Instant, usize)>,
    /// When the task wakes by itself next (`None`: it is not sleeping on a timer).
    planned: Option<Instant>,
    task: Option<JoinHandle<()>>,
}

/// One watched lease.
struct Watched {
    state: Arc<LeaseState>,
    ttl: Duration,
    every: Option<Duration>,
    hold_until: Option<Instant>,
    /// The next renewal; `None` while one is under way (or never renewed). A release
    /// announced meanwhile sets it to when it was announced.
    next_renewal: Option<Instant>,
    /// When the renewal under way was sent.
    renewing: Option<Instant>,
    /// Its entry in `timers`.
    wake: Instant,
}

impl Watched {
    /// The next instant something is to be done: a renewal, the end of its validity, its cap.
    fn next_instant(&self) -> Instant {
        let mut at = self.state.valid_until();
        if let (None, Some(renewal)) = (self.renewing, self.next_renewal) {
            at = at.min(renewal);
        }
        self.hold_until.map_or(at, |cap| at.min(cap))
    }

    /// Why it is lost at `now`, if it is.
    fn lost_at(&self, now: Instant) -> Option<LostReason> {
        if self.hold_until.is_some_and(|cap| now >= cap) {
            return Some(LostReason::MaxHold);
        }
        (now >= self.state.valid_until()).then_some(LostReason::Expired)
    }
}

/// A renewal sent in a batch.
struct Due {
    slot: usize,
    state: Arc<LeaseState>,
    ttl: Duration,
    sent_at: Instant,
}

/// A lost lease, to be signalled outside the lock: its state, why, and when the renewal
/// under way (if any) was sent.
type Lost = (Arc<LeaseState>, LostReason, Option<Instant>);

/// A lease's place in its client's watchdog; [`Registration::stop`] takes it out.
pub(crate) struct Registration {
    watchdog: Arc<Watchdog>,
    slot: usize,
    /// Listens for release announcements (with `watch_releases`).
    releases: Option<JoinHandle<()>>,
}

impl Registration {
    /// Watches the lease of `state` as `schedule` says (renewed or capped).
    pub(crate) fn new(
        backend: &Arc<Backend>,
        state: &Arc<LeaseState>,
        schedule: Schedule,
    ) -> Registration {
        let watchdog = Watchdog::of(backend);
        let mut watched = Watched {
            state: state.clone(),
            ttl: schedule.ttl,
            every: schedule.renew_every,
            hold_until: schedule.hold_until,
            // Timed from the acquire, not from now: the lease's validity began then.
            next_renewal: schedule.renew_every.map(|every| schedule.sent_at + every),
            renewing: None,
            wake: schedule.sent_at,
        };
        watched.wake = watched.next_instant();
        let wake = watched.wake;
        let slot = {
            let mut registry = watchdog.lock();
            let slot = registry.leases.insert(watched);
            registry.timers.insert((wake, slot));
            if registry.task.as_ref().is_none_or(JoinHandle::is_finished) {
                // None yet, or it went with the runtime it ran on.
                registry.planned = None;
                registry.task = Some(tokio::spawn(watchdog.clone().run()));
            } else {
                watchdog.wake_if_before(&registry, wake);
            }
            slot
        };
        // A release of this key that is not ours (a forced release) is announced on its
        // channel: renew at once then, which finds the lease gone, instead of at the next
        // interval. Set up beside the renewals, so that it never delays them (an instance that
        // does not answer would hold it up for `ConnectTimeout`).
        let releases = (schedule.watch_releases && schedule.renew_every.is_some()).then(|| {
            let (backend, watchdog, state) = (backend.clone(), watchdog.clone(), state.clone());
            tokio::spawn(async move {
                let Some(mut announced) = backend.subscribe_releases(&state.key).await else {
                    return;
                };
                while announced.next().await.is_some() {
                    watchdog.renew_now(slot, &state);
                }
            })
        });
        Registration {
            watchdog,
            slot,
            releases,
        }
    }

    /// Stops watching the lease of `state` (again: no effect).
    pub(crate) fn stop(&self, state: &Arc<LeaseState>) {
        if let Some(releases) = &self.releases {
            releases.abort();
        }
        let mut registry = self.watchdog.lock();
        if registry.holds(self.slot, state) {
            registry.remove(self.slot);
        }
    }

    /// The lease's validity changed (an extend): its next instant may be earlier now.
    pub(crate) fn validity_changed(&self, state: &Arc<LeaseState>) {
        let mut registry = self.watchdog.lock();
        if registry.holds(self.slot, state) {
            let wake = registry.reschedule(self.slot);
            self.watchdog.wake_if_before(&registry, wake);
        }
    }
}

impl Registry {
    /// Whether `slot` is still the lease of `state` (not stopped, lost, or reused).
    fn holds(&self, slot: usize, state: &Arc<LeaseState>) -> bool {
        (self.leases.get(slot)).is_some_and(|w| Arc::ptr_eq(&w.state, state))
    }

    /// Moves the lease at `slot` to its next instant; answers it.
    fn reschedule(&mut self, slot: usize) -> Instant {
        let watched = &mut self.leases[slot];
        let (old, wake) = (watched.wake, watched.next_instant());
        watched.wake = wake;
        self.timers.remove(&(old, slot));
        self.timers.insert((wake, slot));
        wake
    }

    fn remove(&mut self, slot: usize) -> Watched {
        let watched = self.leases.remove(slot);
        self.timers.remove(&(watched.wake, slot));
        watched
    }

    /// Takes out the leases lost by `now`, and marks the renewals due by `now` + their
    /// [`window`] as sent.
    fn due(&mut self, now: Instant) -> (Vec<Due>, Vec<Lost>) {
        let (mut due, mut lost) = (Vec::new(), Vec::new());
        let horizon = now + WINDOW_AT_MOST;
        while let Some(&(wake, slot)) = self.timers.first() {
            if wake > horizon {
                break;
            }
            let watched = &mut self.leases[slot];
            if let Some(reason) = watched.lost_at(now) {
                let watched = self.remove(slot);
                lost.push((watched.state, reason, watched.renewing));
                continue;
            }
            let renewal = watched.next_renewal.filter(|_| watched.renewing.is_none());
            let early = watched.every.map_or(Duration::ZERO, window);
            if renewal.is_some_and(|at| at <= now + early) {
                watched.next_renewal = None;
                watched.renewing = Some(now);
                let (state, ttl) = (watched.state.clone(), watched.ttl);
                due.push(Due {
                    slot,
                    state,
                    ttl,
                    sent_at: now,
                });
            } else if wake > now {
                // Not due yet: wait for it (the renewals after it are due later still).
                break;
            }
            // Renewing now, or its validity moved on since the timer was set.
            self.reschedule(slot);
        }
        (due, lost)
    }
}

impl Watchdog {
    /// The watchdog of `backend`'s client, made on first use. The backend keeps it for the
    /// lease layer without knowing its type (it imports nothing from the layers above).
    fn of(backend: &Arc<Backend>) -> Arc<Watchdog> {
        let made = backend.above.get_or_init(|| {
            let watchdog = Arc::new(Watchdog {
                backend: Arc::downgrade(backend),
                registry: Mutex::default(),
                wake: Notify::new(),
            });
            Box::new(watchdog) as Box<dyn Any + Send + Sync>
        });
        let watchdog = made.downcast_ref::<Arc<Watchdog>>();
        watchdog
            .expect("the backend keeps the lease layer's watchdog")
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("watchdog registry")
    }

    /// Wakes the task if it sleeps past `at`.
    fn wake_if_before(&self, registry: &Registry, at: Instant) {
        if registry.planned.is_none_or(|planned| at < planned) {
            self.wake.notify_one();
        }
    }

    /// A release of the lease was announced: renew it at once (after the renewal under way,
    /// if one is).
    fn renew_now(&self, slot: usize, state: &Arc<LeaseState>) {
        let mut registry = self.lock();
        if registry.holds(slot, state) {
            registry.leases[slot].next_renewal = Some(Instant::now());
            let wake = registry.reschedule(slot);
            self.wake_if_before(&registry, wake);
        }
    }

    /// The task: wakes at the first lease's next instant (or when told), signals the leases
    /// lost by then, and sends the renewals due; ends when no lease is left.
    async fn run(self: Arc<Watchdog>) {
        loop {
            let now = Instant::now();
            let (due, lost, next) = {
                let mut registry = self.lock();
                if registry.leases.is_empty() {
                    registry.task = None;
                    return;
                }
                let (due, lost) = registry.due(now);
                registry.planned = registry.timers.first().map(|(at, _)| *at);
                (due, lost, registry.planned)
            };
            signal(lost, now);
            let mut due = due.into_iter().peekable();
            while due.peek().is_some() {
                let batch: Vec<Due> = due.by_ref().take(MOST_IN_A_BATCH).collect();
                tokio::spawn(self.clone().renew(batch));
            }
            let sleep = async {
                match next {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Sends one batch of renewals and settles each lease's answer.
    async fn renew(self: Arc<Watchdog>, batch: Vec<Due>) {
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        // No answer is of use after the last of their validities.
        let until = batch.iter().map(|d| d.state.valid_until()).max();
        let extensions: Vec<Extension> = (batch.iter())
            .map(|d| Extension {
                key: &d.state.key,
                id: &d.state.id,
                ttl: d.ttl,
            })
            .collect();
        let span = tracing::info_span!(
            "lease.renew",
            leases = batch.len(),
            lease.name = tracing::field::Empty,
            lease.id = tracing::field::Empty
        );
        if let [one] = &batch[..] {
            span.record("lease.name", one.state.name.as_str());
            span.record("lease.id", one.state.id.as_str());
        }
        let until = until.unwrap_or_else(Instant::now);
        let renewal = backend.extend_many(&extensions, until, |answers| {
            self.settle(&batch, answers);
        });
        tracing::Instrument::instrument(renewal, span).await;
    }

    /// Records the answers of the leases of `batch` (by index) and when each is due next.
    fn settle(&self, batch: &[Due], answers: Vec<(usize, Result<bool>)>) {
        let answered = Instant::now();
        let mut lost = Vec::new();
        let mut registry = self.lock();
        let mut earliest: Option<Instant> = None;
        for (index, answer) in answers {
            let due = &batch[index];
            let (slot, state, ttl, sent_at) = (due.slot, &due.state, due.ttl, due.sent_at);
            // Released meanwhile, or lost when its validity ran out before this answer.
            if !registry.holds(slot, state) {
                continue;
            }
            let valid_until = state.valid_until();
            let in_time = answered < valid_until;
            let took = answered - sent_at;
            crate::telemetry::renewal(&state.name, matches!(answer, Ok(true)) && in_time, took);
            let watched = &mut registry.leases[slot];
            watched.renewing = None;
            let announced = watched.next_renewal.take();
            let next = match answer {
                Ok(true) if in_time => {
                    state.confirm(sent_at, ttl, true);
                    tracing::debug!(lease = %state.name, "renewed");
                    watched.every.map(|every| sent_at + every)
                }
                Ok(true) => {
                    lost.push((registry.remove(slot).state, LostReason::Expired, None));
                    continue;
                }
                Ok(false) => {
                    lost.push((registry.remove(slot).state, LostReason::NotOwner, None));
                    continue;
                }
                Err(error) => {
                    let left = valid_until.saturating_duration_since(sent_at);
                    let retry = (left / 4).min(RETRY_AT_MOST);
                    tracing::warn!(lease = %state.name, %error, "renewal failed; retrying in {retry:?}");
                    Some(sent_at + retry)
                }
            };
            // A release announced while the renewal was under way: renew again at once.
            watched.next_renewal = match (announced, next) {
                (Some(announced), Some(next)) => Some(announced.min(next)),
                (announced, next) => announced.or(next),
            };
            let wake = registry.reschedule(slot);
            earliest = Some(earliest.map_or(wake, |e| e.min(wake)));
        }
        if let Some(at) = earliest {
            self.wake_if_before(&registry, at);
        }
        drop(registry);
        signal(lost, answered);
    }
}

/// Fires the lost signal of each lease in `lost` (a renewal under way counts as failed).
fn signal(lost: Vec<Lost>, now: Instant) {
    for (state, reason, renewing) in lost {
        if let Some(sent_at) = renewing {
            crate::telemetry::renewal(&state.name, false, now - sent_at);
        }
        state.mark_lost(reason);
    }
}

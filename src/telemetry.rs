//! Metrics through the `opentelemetry` API, named as the seed .NET package names them (so
//! that its dashboards carry over), plus hold time and contention. They go to the global
//! meter provider: an application that wants them sets its own (`opentelemetry::global::
//! set_meter_provider`) before its first lease operation; with none set, every instrument is
//! a no-op. Spans (acquire, renew, release) are `tracing` spans, which an application bridges
//! with `tracing-opentelemetry`.
//!
//! The lease name is not an attribute unless [`record_lease_names`] asks for it: one series
//! per lease name can be too many for a metrics backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use opentelemetry::KeyValue;

use crate::error::{Error, LostReason};

static LEASE_NAMES: AtomicBool = AtomicBool::new(false);

/// Adds the lease name (`lease.name`) to every metric's attributes from now on. Off by
/// default: each name is a series of its own.
pub fn record_lease_names(on: bool) {
    LEASE_NAMES.store(on, Ordering::Relaxed);
}

/// The instruments, made on first use from the global meter provider.
struct Instruments {
    acquisitions: Counter<u64>,
    acquisition_duration: Histogram<f64>,
    renewals: Counter<u64>,
    renewal_duration: Histogram<f64>,
    renewal_failures: Counter<u64>,
    lost: Counter<u64>,
    active: UpDownCounter<i64>,
    hold: Histogram<f64>,
    contention: Counter<u64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("leasectl");
    Instruments {
        acquisitions: meter
            .u64_counter("leasing.acquisitions.total")
            .with_description(
                "Acquisition attempts, by lease.result (acquired, held, timeout, error)",
            )
            .build(),
        acquisition_duration: meter
            .f64_histogram("leasing.acquisition.duration")
            .with_description("Time to acquire a lease, waiting included")
            .with_unit("s")
            .build(),
        renewals: meter
            .u64_counter("leasing.renewals.total")
            .with_description("Automatic renewals, by lease.result (renewed, failed)")
            .build(),
        renewal_duration: meter
            .f64_histogram("leasing.renewal.duration")
            .with_description("Time one renewal took")
            .with_unit("s")
            .build(),
        renewal_failures: meter
            .u64_counter("leasing.renewal.failures.total")
            .with_description("Renewals that failed (error, not ours, out of time)")
            .build(),
        lost: meter
            .u64_counter("leasing.leases_lost.total")
            .with_description("Leases lost while held, by lease.loss_reason")
            .build(),
        active: meter
            .i64_up_down_counter("leasing.active_leases.current")
            .with_description("Leases held by this process")
            .build(),
        hold: meter
            .f64_histogram("leasing.hold.duration")
            .with_description("How long a lease was held, until released or lost")
            .with_unit("s")
            .build(),
        contention: meter
            .u64_counter("leasing.contention.total")
            .with_description("Acquisitions that found the lease held by someone else")
            .build(),
    }
});

/// The attributes of every metric of `name`: the lease name only when asked for.
fn base(name: &str) -> Vec<KeyValue> {
    if LEASE_NAMES.load(Ordering::Relaxed) {
        vec![KeyValue::new("lease.name", name.to_string())]
    } else {
        Vec::new()
    }
}

fn with(mut attributes: Vec<KeyValue>, key: &'static str, value: &'static str) -> Vec<KeyValue> {
    attributes.push(KeyValue::new(key, value));
    attributes
}

/// How an acquisition ended, for `lease.result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acquired,
    /// Held by someone else, no wait.
    Held,
    /// Held by someone else until the wait ran out.
    Timeout,
    Error,
}

/// One acquisition (of one lease, or a set named by its first lease) and how long it took;
/// `contended`: it found the lease held at least once.
pub(crate) fn acquisition(name: &str, outcome: Outcome, took: Duration, contended: bool) {
    let instruments = &*INSTRUMENTS;
    let result = match outcome {
        Outcome::Acquired => "acquired",
        Outcome::Held => "held",
        Outcome::Timeout => "timeout",
        Outcome::Error => "error",
    };
    let attributes = with(base(name), "lease.result", result);
    instruments.acquisitions.add(1, &attributes);
    instruments
        .acquisition_duration
        .record(took.as_secs_f64(), &attributes);
    if contended || matches!(outcome, Outcome::Held | Outcome::Timeout) {
        instruments.contention.add(1, &base(name));
    }
}

/// The outcome of a result: acquired, held (or timed out waiting), error.
pub(crate) fn outcome<T>(
    result: &Result<T, Error>,
    held: impl Fn(&T) -> bool,
    waited: bool,
) -> Outcome {
    match result {
        Ok(taken) if held(taken) && waited => Outcome::Timeout,
        Ok(taken) if held(taken) => Outcome::Held,
        Ok(_) => Outcome::Acquired,
        Err(_) => Outcome::Error,
    }
}

/// One automatic renewal.
pub(crate) fn renewal(name: &str, renewed: bool, took: Duration) {
    let instruments = &*INSTRUMENTS;
    let result = if renewed { "renewed" } else { "failed" };
    let attributes = with(base(name), "lease.result", result);
    instruments.renewals.add(1, &attributes);
    instruments
        .renewal_duration
        .record(took.as_secs_f64(), &attributes);
    if !renewed {
        instruments.renewal_failures.add(1, &base(name));
    }
}

/// A lease held from now until [`Held::end`] (its release, loss or drop, whichever first).
pub(crate) struct Held {
    name: String,
    since: tokio::time::Instant,
    ended: AtomicBool,
}

impl Held {
    pub(crate) fn start(name: &str, since: tokio::time::Instant) -> Held {
        INSTRUMENTS.active.add(1, &base(name));
        Held {
            name: name.to_string(),
            since,
            ended: AtomicBool::new(false),
        }
    }

    /// Ends the hold (once): the active count goes down and the hold time is recorded; with
    /// `lost`, also a loss.
    pub(crate) fn end(&self, lost: Option<LostReason>) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let instruments = &*INSTRUMENTS;
        let attributes = base(&self.name);
        instruments.active.add(-1, &attributes);
        instruments
            .hold
            .record(self.since.elapsed().as_secs_f64(), &attributes);
        if let Some(reason) = lost {
            let reason = match reason {
                LostReason::NotOwner => "not_owner",
                LostReason::Expired => "expired",
                LostReason::MaxHold => "max_hold",
            };
            instruments
                .lost
                .add(1, &with(attributes, "lease.loss_reason", reason));
        }
    }
}

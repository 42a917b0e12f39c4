//! How long the demo's rounds take: the normal pace, or `--fast`.

use std::time::Duration;

/// The durations of the rounds, at the normal pace or with `--fast`.
pub(super) struct Pace {
    /// The TTL of every instance that is not given one of its own: the longest in the demo
    /// (see `Demo::until_older_than_every_ttl`).
    pub(super) ttl: Duration,
    pub(super) two: &'static str,
    pub(super) three: &'static str,
    pub(super) release_ttl: &'static str,
    pub(super) release_work: &'static str,
    pub(super) taker_work: &'static str,
    pub(super) crash_ttl: Duration,
    pub(super) down_ttl: &'static str,
    pub(super) down_work: &'static str,
    pub(super) pause: Duration,
}

pub(super) const NORMAL: Pace = Pace {
    ttl: Duration::from_secs(10),
    two: "7s",
    three: "4s",
    release_ttl: "3s",
    release_work: "7s",
    taker_work: "3s",
    crash_ttl: Duration::from_secs(5),
    down_ttl: "3s",
    down_work: "5s",
    pause: Duration::from_secs(1),
};

pub(super) const FAST: Pace = Pace {
    ttl: Duration::from_secs(5),
    two: "2s",
    three: "2s",
    release_ttl: "2s",
    release_work: "3s",
    taker_work: "1s",
    crash_ttl: Duration::from_secs(3),
    down_ttl: "2s",
    down_work: "3s",
    pause: Duration::ZERO,
};

//! What to ask for when acquiring a lease: TTL, renewal, metadata, hold cap, polling.

use std::time::Duration;

use crate::settings::Settings;

/// How often a waiter polls by default when no release notification arrives.
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// What to ask for when acquiring a lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// The time to live set on acquisition and on every renewal.
    pub ttl: Duration,
    /// Renew automatically at this interval (clamped to two thirds of the TTL); `None` = never.
    pub auto_renew: Option<Duration>,
    /// Stored as `meta_<key>` hash fields.
    pub metadata: Vec<(String, String)>,
    /// While waiting, how often to try again when no release notification arrives (±25%
    /// jitter). A waiter never sleeps past the holder's remaining TTL, so an expiry is seen
    /// at once anyway; this only bounds the cost of a lost notification.
    pub fallback_poll: Duration,
    /// A cap on the hold time: renewal stops after it and the lost signal fires with
    /// [`LostReason::MaxHold`](crate::LostReason::MaxHold), so a stuck holder cannot renew forever.
    pub max_hold: Option<Duration>,
    /// With auto-renewal: also listen on the lease's release channel, so that a forced
    /// release is noticed at once instead of at the next renewal (one pub/sub connection per
    /// lease, so it is off by default; `run` and `exec` turn it on).
    pub watch_releases: bool,
}

impl LeaseOptions {
    /// The TTL, renewal and `Metadata` of the settings.
    pub fn from_settings(settings: &Settings) -> LeaseOptions {
        LeaseOptions {
            ttl: settings.lease_duration,
            auto_renew: settings.auto_renew.then_some(settings.auto_renew_interval),
            metadata: settings.metadata.clone(),
            fallback_poll: FALLBACK_POLL,
            max_hold: None,
            watch_releases: false,
        }
    }

    /// Adds one metadata field, replacing one of the same name.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> LeaseOptions {
        let (key, value) = (key.into(), value.into());
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(field) => field.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }
}

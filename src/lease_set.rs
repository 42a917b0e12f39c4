//! Several leases taken together by one acquire (all or none), held and released together.

use std::future::Future;

use crate::error::{Error, Result};
use crate::lease::Lease;

/// Leases taken together by [`LeaseClient::try_acquire_set`](crate::LeaseClient::try_acquire_set):
/// one per name, in sorted name order, sharing one lease id. Each is renewed on its own; the
/// set is lost when any of them is. Dropping it releases them in the background.
#[derive(Debug)]
pub struct LeaseSet {
    leases: Vec<Lease>,
}

impl LeaseSet {
    /// `leases` is never empty.
    pub(crate) fn new(leases: Vec<Lease>) -> LeaseSet {
        LeaseSet { leases }
    }

    /// The leases, in sorted name order.
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    /// The lease id that every lease of the set carries.
    pub fn id(&self) -> &str {
        self.leases[0].id()
    }

    /// How many times every lease of the set was renewed (the fewest of any).
    pub fn renewals(&self) -> u64 {
        self.leases.iter().map(Lease::renewals).min().unwrap_or(0)
    }

    /// The first loss among the leases, if one was lost.
    pub fn lost_error(&self) -> Option<Error> {
        self.leases.iter().find_map(Lease::lost_error)
    }

    /// Resolves with [`Error::Lost`] when any lease of the set is lost; never while all are
    /// held. The future owns what it needs, so it can be moved into another task.
    pub fn lost(&self) -> impl Future<Output = Error> + Send + 'static {
        let signals: Vec<_> = self.leases.iter().map(|l| Box::pin(l.lost())).collect();
        async move { futures_util::future::select_all(signals).await.0 }
    }

    /// Stops renewal, then releases every lease of the set that is still ours, in one script
    /// per instance. Answers `false` when some were already gone or held by someone else.
    ///
    /// # Errors
    /// A connection error; the leases then end when their TTLs run out.
    pub async fn release(self) -> Result<bool> {
        let first = &self.leases[0];
        for lease in &self.leases {
            lease.disarm();
        }
        let keys: Vec<String> = self.leases.iter().map(|l| l.key().to_string()).collect();
        tracing::info!(
            leases = %keys.join(","),
            held_ms = first.held_for().as_millis() as u64,
            renewals = self.renewals(),
            "releasing"
        );
        let span = tracing::info_span!(
            "lease.release",
            lease.name = %first.name(),
            lease.id = %first.id(),
            lease.fencing_token = first.fencing_token()
        );
        let released = first.backend().release(&keys, first.id());
        let released = tracing::Instrument::instrument(released, span).await?;
        Ok(released == keys.len() as i64)
    }
}

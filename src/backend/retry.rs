//! Retrying one call to one instance after a transient error (`MaxRetryAttempts`,
//! `RetryDelay`): a timeout, a dropped or refused connection, or a server that answers
//! `LOADING`, `TRYAGAIN`, `BUSY`, `MASTERDOWN` or `CLUSTERDOWN` — never an answer that a retry
//! cannot change (`NOPERM`, `WRONGTYPE`, a failed authentication, a script error). The pause
//! doubles after each retry, and no retry starts when it could not end before the call's
//! deadline (a lease's validity).
//!
//! Repeating a call whose first attempt may have run (a timeout) is safe for every script:
//! acquire answers "granted" again, with the same token, when the key already holds its
//! lease id; extend and release act only on their own lease id; the others only read or
//! write what they wrote before.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::settings::Settings;

/// How often and after what pause a call to one instance is tried again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    /// Retries after the first attempt.
    pub(crate) attempts: u32,
    /// The pause before the first retry; doubled for each next one.
    pub(crate) delay: Duration,
}

impl Retry {
    /// No retries.
    pub(crate) const NONE: Retry = Retry {
        attempts: 0,
        delay: Duration::ZERO,
    };

    pub(crate) fn of(settings: &Settings) -> Retry {
        Retry {
            attempts: settings.max_retry_attempts,
            delay: settings.retry_delay,
        }
    }

    /// The longest a call with these retries can take when each attempt takes up to `each`.
    pub(crate) fn budget(&self, each: Duration) -> Duration {
        let (mut budget, mut delay) = (each, self.delay);
        // Beyond 32 retries the budget is longer than any wait anyway.
        for _ in 0..self.attempts.min(32) {
            budget = budget.saturating_add(each).saturating_add(delay);
            delay = delay.saturating_mul(2);
        }
        budget
    }

    /// Runs `attempt` until it answers something other than a transient error, the retries
    /// are used up, or the next one could not end before `deadline`; an attempt still under
    /// way at `deadline` ends with a timeout.
    pub(crate) async fn run<T, F, A>(
        self,
        deadline: Option<Instant>,
        mut attempt: F,
    ) -> redis::RedisResult<T>
    where
        F: FnMut() -> A,
        A: Future<Output = redis::RedisResult<T>>,
    {
        let (mut delay, mut retries) = (self.delay, 0);
        loop {
            let answer = match deadline {
                None => attempt().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, attempt()).await {
                    Ok(answer) => answer,
                    Err(_) => Err(timed_out()),
                },
            };
            let error = match answer {
                Err(error) if retries < self.attempts && is_transient(&error) => error,
                answer => return answer,
            };
            if deadline.is_some_and(|deadline| Instant::now() + delay >= deadline) {
                return Err(error);
            }
            retries += 1;
            tracing::debug!(%error, retry = retries, "transient error; trying again in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

/// A failure that a later attempt may not meet: the connection (timeout, dropped, refused)
/// or a server that is briefly unable to serve.
pub(crate) fn is_transient(error: &redis::RedisError) -> bool {
    if error.kind() == redis::ErrorKind::AuthenticationFailed {
        return false;
    }
    let server_busy = matches!(
        error.code(),
        Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN")
    );
    server_busy
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || (error.is_io_error() && error.code().is_none())
}

/// The error of an attempt cut at its call's deadline.
fn timed_out() -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the call's deadline passed").into()
}

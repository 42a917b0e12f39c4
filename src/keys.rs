//! The names a lease uses on Redis — its key, fencing counter and release channel — and the
//! checks on a lease's name and TTL.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest a lease name may be, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// The shortest TTL: below it the drift allowance (1% + 2 ms) leaves hardly any validity.
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// The longest TTL in milliseconds: PEXPIRE refuses one whose expiry instant overflows, and
/// by then the acquire script has already written the key, which would then never expire.
const MAX_TTL_MS: u64 = i64::MAX as u64 / 2;

/// Checks a lease name: not empty, at most [`MAX_NAME_LEN`] bytes.
///
/// # Errors
/// [`Error::Settings`] saying what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Settings("the lease name must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::Settings(format!(
            "the lease name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    Ok(())
}

/// The TTL in whole milliseconds, as PEXPIRE takes it.
pub(crate) fn check_ttl(ttl: Duration) -> Result<u64> {
    if ttl < MIN_TTL {
        return Err(Error::Settings(format!(
            "the lease TTL must be at least {}ms, more than its clock-drift allowance",
            MIN_TTL.as_millis()
        )));
    }
    match u64::try_from(ttl.as_millis()) {
        Ok(ms) if ms <= MAX_TTL_MS => Ok(ms),
        _ => Err(Error::Settings(format!(
            "the lease TTL of {} is too long for Redis",
            humantime::format_duration(ttl)
        ))),
    }
}

/// The fencing counter's key: in the same Redis Cluster slot as the lease key, and outside
/// the `KeyPrefix*` pattern when the key has no hash tag of its own.
pub(crate) fn fence_key(key: &str) -> String {
    beside(key, "fence")
}

/// The queue of a lease's waiters (ticket order) and their deadlines: fair handoffs.
pub(crate) fn queue_keys(key: &str) -> (String, String) {
    (beside(key, "queue"), beside(key, "queue-deadlines"))
}

/// Quorum mode: the longest TTL a lease was ever granted with on an instance (never expires,
/// like the counter), against which "restarted recently" is judged.
pub(crate) fn longest_ttl_key(key: &str) -> String {
    beside(key, "longest-ttl")
}

/// Where a protected key remembers the newest fencing token a write to it carried.
pub(crate) fn newest_token_key(key: &str) -> String {
    beside(key, "newest-token")
}

/// `{key}:suffix`, or `key:suffix` when the key has a hash tag: a key in `key`'s Redis
/// Cluster slot.
fn beside(key: &str, suffix: &str) -> String {
    if has_hash_tag(key) {
        format!("{key}:{suffix}")
    } else {
        format!("{{{key}}}:{suffix}")
    }
}

/// True for a key that belongs to some lease key (its counter or waiters' queue), not a lease.
pub(crate) fn is_fence_key(key: &str) -> bool {
    ["fence", "queue", "queue-deadlines", "longest-ttl"]
        .iter()
        .any(|suffix| {
            key.strip_suffix(suffix)
                .and_then(|rest| rest.strip_suffix(':'))
                .is_some_and(|lease_key| beside(lease_key, suffix) == key)
        })
}

/// True when Redis Cluster would hash only a `{...}` part of `key`.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .is_some_and(|open| key[open + 1..].find('}').is_some_and(|len| len > 0))
}

/// The channel on which a release of `key` is announced.
pub(crate) fn release_channel(key: &str) -> String {
    format!("{key}:released")
}

/// `text` with SCAN's glob characters escaped, to match it literally.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_keys_share_the_slot_and_stay_out_of_the_prefix() {
        assert_eq!(fence_key("lease:job"), "{lease:job}:fence");
        assert_eq!(fence_key("lease:{job}"), "lease:{job}:fence");
        assert!(is_fence_key("lease:{job}:fence"));
        assert!(!is_fence_key("lease:my:fence"));
    }

    #[test]
    fn names_and_ttls_are_checked() {
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name("critical-section-lock").is_ok());
        assert!(check_ttl(Duration::from_millis(9)).is_err());
        assert_eq!(check_ttl(Duration::from_secs(30)).unwrap(), 30_000);
        assert!(check_ttl(Duration::MAX).is_err());
    }
}

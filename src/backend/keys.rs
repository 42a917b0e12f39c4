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

/// Checks a lease name: not empty, at most [`MAX_NAME_LEN`] bytes, and not starting with
/// [`INTERNAL_MARK`] (leasectl's own names beside the leases start so).
///
/// # Errors
/// [`Error::Settings`] saying what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Settings("the lease name must not be empty".into()));
    }
    if name.starts_with(INTERNAL_MARK) {
        return Err(Error::Settings(format!(
            "the lease name must not start with '{INTERNAL_MARK}': leasectl keeps its own keys there"
        )));
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

/// The first character of every name leasectl keeps beside its leases, right after the key
/// prefix (`lease:@fence{lease:job}`). No lease name may start with it, so no lease name can
/// produce one of these names, and an ACL user limited to `~{prefix}* &{prefix}*` reaches
/// them all.
pub const INTERNAL_MARK: char = '@';

/// The fencing counter of the lease key `key` (which starts with `prefix`): never expires,
/// never deleted by a release.
pub(crate) fn fence_key(prefix: &str, key: &str) -> String {
    beside(prefix, key, "fence")
}

/// The queue of a lease's waiters (ticket order) and their deadlines: fair handoffs.
pub(crate) fn queue_keys(prefix: &str, key: &str) -> (String, String) {
    (queue_key(prefix, key), beside(prefix, key, "deadlines"))
}

/// The queue alone (see [`queue_keys`]).
pub(crate) fn queue_key(prefix: &str, key: &str) -> String {
    beside(prefix, key, "queue")
}

/// What the queued waiters of a lease left for a release to hand them the lease (hash:
/// waiter -> grant request, see `handoff.lua`).
pub(crate) fn grants_key(prefix: &str, key: &str) -> String {
    beside(prefix, key, "grants")
}

/// The channel on which a release of `key` is announced (in `key`'s slot, for sharded
/// pub/sub).
pub(crate) fn release_channel(prefix: &str, key: &str) -> String {
    beside(prefix, key, "released")
}

/// True for a key under `prefix` that leasectl keeps beside a lease, not a lease.
pub(crate) fn is_internal(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|name| name.starts_with(INTERNAL_MARK))
}

/// Quorum mode: the longest TTL a lease was ever granted with on an instance (never expires,
/// like the counter), against which "restarted recently" is judged.
pub(crate) fn longest_ttl_key(prefix: &str, key: &str) -> String {
    beside(prefix, key, "longest-ttl")
}

/// Where a protected key remembers the newest fencing token a write to it carried.
pub(crate) fn newest_token_key(key: &str) -> String {
    if hashed_part(key).len() < key.len() {
        format!("{key}:newest-token")
    } else {
        format!("{{{key}}}:newest-token")
    }
}

/// The name of `kind` beside the lease key `key` = `prefix` + name: `prefix@kind:name` when
/// that lands in `key`'s Redis Cluster slot (the name has a hash tag), else
/// `prefix@kind{key}`, which hashes `key` itself. The two forms differ in the character after
/// `kind`, so no two leases share one; a name whose key has a `}` but no hash tag cannot
/// share its slot at all, and gets the second form.
fn beside(prefix: &str, key: &str, kind: &str) -> String {
    // Built by hand, not with format!: it runs several times per acquire and release.
    let name = key.strip_prefix(prefix).unwrap_or(key);
    let mut beside = String::with_capacity(prefix.len() + kind.len() + key.len() + 3);
    beside.push_str(prefix);
    beside.push(INTERNAL_MARK);
    beside.push_str(kind);
    let stem = beside.len();
    beside.push(':');
    beside.push_str(name);
    if hashed_part(&beside) != hashed_part(key) {
        beside.truncate(stem);
        beside.push('{');
        beside.push_str(key);
        beside.push('}');
    }
    beside
}

/// What leasectl keeps in `key` when it is one of the names [`beside`] one of `leases` (a
/// call's keys) makes, and the Redis type that has (`TYPE`'s word): for an error that names a
/// key of the wrong type. (Found from the lease key, not from `key` alone: under a prefix that
/// itself holds `@queue:`, say, one name could be read two ways.)
pub(crate) fn kept_in(key: &str, leases: &[String]) -> Option<(&'static str, &'static str)> {
    const KEPT: [(&str, &str, &str); 5] = [
        ("fence", "the lease's fencing counter", "string"),
        ("queue", "the lease's queue of waiters", "zset"),
        ("deadlines", "the lease's waiters' deadlines", "zset"),
        ("grants", "the lease's waiters' grant requests", "hash"),
        (
            "longest-ttl",
            "the longest TTL the lease was asked for",
            "string",
        ),
    ];
    if key.ends_with(":newest-token") {
        return Some((
            "the newest fencing token written to a protected key",
            "string",
        ));
    }
    KEPT.into_iter().find_map(|(kind, what, kept)| {
        let made_so = leases.iter().any(|lease| {
            let prefixes = lease.char_indices().map(|(at, _)| &lease[..at]);
            prefixes
                .chain([lease.as_str()])
                .any(|prefix| key.starts_with(prefix) && beside(prefix, lease, kind) == key)
        });
        made_so.then_some((what, kept))
    })
}

/// The part of `key` that Redis Cluster hashes: the first `{...}` when it is not empty, else
/// the whole key.
fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
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

    /// Redis Cluster's hash slot of `key` (CRC16/XMODEM of its hashed part, mod 16384).
    fn slot(key: &str) -> u16 {
        let mut crc: u16 = 0;
        for byte in hashed_part(key).bytes() {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn internal_names_start_with_the_prefix_and_share_the_lease_slot() {
        assert_eq!(fence_key("lease:", "lease:job"), "lease:@fence{lease:job}");
        assert_eq!(fence_key("lease:", "lease:{job}"), "lease:@fence:{job}");
        assert_eq!(
            release_channel("lease:", "lease:job"),
            "lease:@released{lease:job}"
        );
        for (prefix, name) in [
            ("lease:", "job"),
            ("lease:", "{job}"),
            ("lease:", "{job}:fence"),
            ("lease:", "x{job}y"),
            ("{app}:", "job"),
            ("{app}:", "{job}"),
            ("", "job"),
        ] {
            let key = format!("{prefix}{name}");
            let (queue, deadlines) = queue_keys(prefix, &key);
            let grants = grants_key(prefix, &key);
            for internal in [fence_key(prefix, &key), queue, deadlines, grants] {
                assert!(internal.starts_with(prefix), "{internal}");
                assert!(is_internal(prefix, &internal), "{internal}");
                assert_eq!(slot(&internal), slot(&key), "{internal} beside {key}");
            }
            assert!(!is_internal(prefix, &key));
        }
    }

    #[test]
    fn no_two_leases_share_an_internal_name() {
        // A name whose key's hash tag reads like another key: the forms must still differ.
        let names = [
            "job",
            "{lease:job}",
            "{job}",
            "{job}:fence",
            "job:fence",
            "{lease:job}x",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let key = format!("lease:{name}");
            let (queue, deadlines) = queue_keys("lease:", &key);
            for internal in [fence_key("lease:", &key), queue, deadlines] {
                assert!(seen.insert(internal.clone()), "{internal} twice");
            }
        }
        assert!(check_name("@fence{lease:job}").is_err());
    }

    #[test]
    fn the_names_beside_a_lease_say_what_they_keep() {
        for (prefix, name) in [
            ("lease:", "job"),
            ("lease:", "{job}"),
            ("a@queue:", "b"),
            ("", "x"),
        ] {
            let key = format!("{prefix}{name}");
            let leases = [key.clone()];
            let kept = |beside: &str| kept_in(beside, &leases).map(|(_, kept)| kept);
            let (queue, deadlines) = queue_keys(prefix, &key);
            assert_eq!(kept(&fence_key(prefix, &key)), Some("string"));
            assert_eq!(kept(&queue), Some("zset"), "{queue}");
            assert_eq!(kept(&deadlines), Some("zset"));
            assert_eq!(kept(&grants_key(prefix, &key)), Some("hash"));
            assert_eq!(kept(&longest_ttl_key(prefix, &key)), Some("string"));
            assert_eq!(kept(&key), None, "{key}");
        }
        let leases = ["lease:job".to_string()];
        assert_eq!(kept_in("lease:@queue{other:job}", &leases), None);
        assert_eq!(kept_in("orders:newest-token", &leases).unwrap().1, "string");
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

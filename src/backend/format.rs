//! Which Lua script reads and writes a lease in each [`LeaseFormat`]: seed 002's hash
//! (`acquire_hash.lua` + `acquire.lua`, `extend.lua`, `raise.lua`) or the .NET package's JSON
//! string (`acquire_json.lua` + the same `acquire.lua`, `json_*.lua`). The keys and arguments
//! are the same for both, except the acquire's values (see [`acquire_values`]). Release needs no second script: `release.lua` already matches
//! the lease id in any format (the hash's field, the JSON value's `leaseId`, a plain token),
//! as the operator's `release --lease-id` needs.

use std::sync::LazyLock;

use super::nodes::Call;
use super::scripts::{self, Lua};
use crate::format::{json_value_head, LeaseFormat};

static JSON_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/acquire_json.lua"),
        include_str!("../scripts/token.lua"),
        include_str!("../scripts/acquire.lua")
    ))
});
static JSON_EXTEND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/json_extend.lua")));
static JSON_RAISE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/json_raise.lua")));

/// The scripts that write or check a lease's value, in one format.
pub(crate) struct Scripts {
    /// Take a free lease, or answer its holder.
    pub(crate) acquire: &'static Lua,
    /// Extend our own lease.
    pub(crate) extend: &'static Lua,
    /// Raise the fencing counter to a token a majority agreed on (quorum mode).
    pub(crate) raise: &'static Lua,
}

/// The scripts of `format`.
pub(crate) fn scripts(format: LeaseFormat) -> Scripts {
    match format {
        LeaseFormat::Hash => Scripts {
            acquire: &scripts::ACQUIRE,
            extend: &scripts::EXTEND,
            raise: &scripts::RAISE,
        },
        LeaseFormat::Json => Scripts {
            acquire: &JSON_ACQUIRE,
            extend: &JSON_EXTEND,
            raise: &JSON_RAISE,
        },
    }
}

/// Adds the acquire's last arguments, the lease's values: `meta_*` field/value pairs for the
/// hash, the JSON value up to its fencing token for the JSON string.
pub(crate) fn acquire_values(
    call: Call,
    format: LeaseFormat,
    id: &str,
    acquired_at: &str,
    metadata: &[(String, String)],
) -> Call {
    match format {
        LeaseFormat::Hash => metadata.iter().fold(call, |call, (field, value)| {
            call.arg(format!("meta_{field}")).arg(value)
        }),
        LeaseFormat::Json => call.arg(json_value_head(id, acquired_at, metadata)),
    }
}

/// What a queued waiter leaves beside the queue so that a release can hand it the lease
/// (`handoff.lua`): the TTL to grant it in milliseconds, and its lease's values, as a JSON
/// array: `["h", ttl, field, value, ...]` (the hash's `meta_*` fields) or `["j", ttl, head,
/// tail]` (the JSON string is `head` + acquiredAt + `tail` + token + `}`). `id` is the lease id
/// it will hold: its place in the queue.
pub(crate) fn grant_request(
    format: LeaseFormat,
    id: &str,
    ttl_ms: u64,
    metadata: &[(String, String)],
) -> String {
    let kind = match format {
        LeaseFormat::Hash => "h",
        LeaseFormat::Json => "j",
    };
    let mut request = vec![kind.to_string(), ttl_ms.to_string()];
    match format {
        LeaseFormat::Hash => {
            for (field, value) in metadata {
                request.push(format!("meta_{field}"));
                request.push(value.clone());
            }
        }
        LeaseFormat::Json => {
            // acquiredAt comes before the metadata, and no string value can hold this text
            // (its quotes would be escaped): the first one is the field's.
            let at = "\"acquiredAt\":\"@\"";
            let whole = json_value_head(id, "@", metadata);
            let split = whole.find(at).expect("the JSON value has acquiredAt") + at.len() - 2;
            request.push(whole[..split].to_string());
            request.push(whole[split + 1..].to_string());
        }
    }
    serde_json::to_string(&request).expect("strings encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_grant_request_is_the_value_around_its_acquired_at() {
        let meta = [("instanceId", "w1"), ("acquiredAt", "@")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let request = grant_request(LeaseFormat::Json, "L1", 1500, &meta);
        let parts: Vec<String> = serde_json::from_str(&request).unwrap();
        assert_eq!(parts[..2], ["j", "1500"]);
        let at = "2025-12-25T12:00:00Z";
        let value = format!("{}{at}{}42}}", parts[2], parts[3]);
        let expected = format!("{}42}}", json_value_head("L1", at, &meta));
        assert_eq!(value, expected);
        let hash = grant_request(LeaseFormat::Hash, "L1", 10, &meta);
        assert_eq!(
            hash,
            r#"["h","10","meta_instanceId","w1","meta_acquiredAt","@"]"#
        );
    }
}

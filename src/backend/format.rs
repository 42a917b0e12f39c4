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

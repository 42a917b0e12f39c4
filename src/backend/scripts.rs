//! The Lua scripts, one per operation, each hashed once: run with EVALSHA, and with EVAL on
//! a NOSCRIPT answer (see `Node::script`).

use std::sync::LazyLock;

/// One script: its text and its SHA-1 (redis-rs's `Script` computes it).
pub(crate) struct Lua {
    pub(crate) code: String,
    pub(crate) hash: String,
}

impl Lua {
    pub(crate) fn new(code: &str) -> Lua {
        Lua {
            hash: redis::Script::new(code).get_hash().to_string(),
            code: code.to_string(),
        }
    }
}

/// Take a free lease, or answer its holder. `holder.lua` is prepended for `read_holder`,
/// the hash format's reading and writing of a lease (`acquire_hash.lua`; see format.rs for
/// the JSON one), and `token.lua` for the fencing token.
pub(crate) static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/acquire_hash.lua"),
        include_str!("../scripts/token.lua"),
        include_str!("../scripts/acquire.lua")
    ))
});
/// A waiter gives up its place in the queue.
pub(crate) static LEAVE_QUEUE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/leave_queue.lua")));
/// A queued waiter confirms its place.
pub(crate) static KEEP_PLACE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/owns.lua"),
        include_str!("../scripts/keep_place.lua")
    ))
});
/// Extend our own lease.
pub(crate) static EXTEND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/extend.lua")));
/// Release our own lease (or set) and notify waiters.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/owns.lua"),
        include_str!("../scripts/release.lua")
    ))
});
/// Single mode, one lease: release our own lease and hand it to the first queued waiter.
pub(crate) static HANDOFF: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/owns.lua"),
        include_str!("../scripts/token.lua"),
        include_str!("../scripts/handoff.lua")
    ))
});
/// Delete any lease key and notify waiters.
pub(crate) static FORCE_RELEASE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/force_release.lua")));
/// Raise the fencing counter to a token a majority agreed on (quorum mode).
pub(crate) static RAISE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/raise.lua")));
/// Write to a protected key unless the fencing token is older than the newest it has seen.
pub(crate) static FENCED_SET: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/fenced_set.lua")));
/// Read a lease key of any format.
pub(crate) static INSPECT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/inspect.lua")
    ))
});

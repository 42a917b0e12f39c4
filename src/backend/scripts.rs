//! The Lua scripts, one per operation, each built once (redis-rs `Script` hashes it and runs
//! EVALSHA, loaded with SCRIPT LOAD on NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

/// Take a free lease, or answer its holder. `holder.lua` is prepended for `read_holder`.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/acquire.lua")
    ))
});
/// A waiter gives up its place in the queue.
pub(crate) static LEAVE_QUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/leave_queue.lua")));
/// A queued waiter confirms its place.
pub(crate) static KEEP_PLACE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/keep_place.lua")));
/// Extend our own lease.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/extend.lua")));
/// Release our own lease and notify waiters.
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/release.lua")));
/// Delete any lease key and notify waiters.
pub(crate) static FORCE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/force_release.lua")));
/// Raise the fencing counter to a token a majority agreed on (quorum mode).
pub(crate) static RAISE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/raise.lua")));
/// Write to a protected key unless the fencing token is older than the newest it has seen.
pub(crate) static FENCED_SET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/fenced_set.lua")));
/// Read a lease key of any format.
pub(crate) static INSPECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../scripts/holder.lua"),
        include_str!("../scripts/inspect.lua")
    ))
});

//! The Lua scripts, one per operation, each hashed once: run with EVALSHA, and with EVAL on
//! a NOSCRIPT answer (see `Node::script`).

use std::sync::{LazyLock, OnceLock};

/// One script: its text and its SHA-1 (redis-rs's `Script` computes it).
pub(crate) struct Lua {
    pub(crate) code: String,
    pub(crate) hash: String,
    /// The helper files prepended to the script's own (`code` is both).
    helpers: String,
    /// The script that runs several calls of this one at once (`coalesced.lua`), its
    /// helpers made once for them all.
    coalesced: OnceLock<Box<Lua>>,
}

impl Lua {
    pub(crate) fn new(code: &str) -> Lua {
        Lua::with_helpers(&[], code)
    }

    /// `script` with the helper files `helpers` (each a set of `local function`s) before it.
    pub(crate) fn with_helpers(helpers: &[&str], script: &str) -> Lua {
        let helpers = helpers.concat();
        let code = helpers.clone() + script;
        Lua {
            hash: redis::Script::new(&code).get_hash().to_string(),
            code,
            helpers,
            coalesced: OnceLock::new(),
        }
    }

    /// This script inside `coalesced.lua`, which runs several calls of it in one EVALSHA.
    pub(crate) fn coalesced(&'static self) -> &'static Lua {
        self.coalesced.get_or_init(|| {
            let script = &self.code[self.helpers.len()..];
            let code = include_str!("../scripts/coalesced.lua")
                .replacen(
                    "-- (the script's helpers: made once for every call)\n",
                    &self.helpers,
                    1,
                )
                .replacen("-- (the script's text)\n", script, 1);
            Box::new(Lua::new(&code))
        })
    }
}

/// Take a free lease, or answer its holder. `holder.lua` is prepended for `read_holder`,
/// the hash format's reading and writing of a lease (`acquire_hash.lua`; see format.rs for
/// the JSON one), and `token.lua` for the fencing token.
pub(crate) static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::with_helpers(
        &[
            include_str!("../scripts/holder.lua"),
            include_str!("../scripts/acquire_hash.lua"),
            include_str!("../scripts/token.lua"),
            include_str!("../scripts/clock.lua"),
        ],
        include_str!("../scripts/acquire.lua"),
    )
});
/// A waiter gives up its place in the queue.
pub(crate) static LEAVE_QUEUE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/leave_queue.lua")));
/// A queued waiter confirms its place.
pub(crate) static KEEP_PLACE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::with_helpers(
        &[
            include_str!("../scripts/owns.lua"),
            include_str!("../scripts/clock.lua"),
        ],
        include_str!("../scripts/keep_place.lua"),
    )
});
/// Extend our own lease.
pub(crate) static EXTEND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("../scripts/extend.lua")));
/// Release our own lease (or set) and notify waiters.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::with_helpers(
        &[include_str!("../scripts/owns.lua")],
        include_str!("../scripts/release.lua"),
    )
});
/// Single mode, one lease: release our own lease and hand it to the first queued waiter.
pub(crate) static HANDOFF: LazyLock<Lua> = LazyLock::new(|| {
    Lua::with_helpers(
        &[
            include_str!("../scripts/owns.lua"),
            include_str!("../scripts/token.lua"),
            include_str!("../scripts/clock.lua"),
        ],
        include_str!("../scripts/handoff.lua"),
    )
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
    Lua::with_helpers(
        &[include_str!("../scripts/holder.lua")],
        include_str!("../scripts/inspect.lua"),
    )
});

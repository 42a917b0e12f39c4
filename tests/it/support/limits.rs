//! The one set of time limits every test waits within. Each is a failure bound, reached only
//! when something hangs: far beyond what any step needs, even on a loaded machine.

use std::time::Duration;

/// The longest any `leasectl` process (or a child of `exec`, or a terminal session) may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The longest any awaited library step or polled condition may take.
pub const BOUND: Duration = Duration::from_secs(30);

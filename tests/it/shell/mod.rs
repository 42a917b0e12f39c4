//! Leases from the shell (`acquire`, `extend`, `release` by id, across processes) and the
//! seed settings that shape them: `DefaultWaitTime`, `Metadata`, `AbortOnConnectFail`,
//! `MaxRetryAttempts`/`RetryDelay`.

mod acquire;
mod retries;
mod settings;

use std::process::Command;

use serde::Deserialize;

use crate::process::{complete, Output};
use crate::support::{self, Leasectl, Quorum, RedisServer, BOUND};

/// `acquire --json` when taken: exactly these fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AcquiredJson {
    lease: String,
    key: String,
    lease_id: String,
    fencing_token: u64,
    ttl_ms: u64,
    acquired_at: String,
}

/// `leasectl ARGS` against every server of `quorum` (one server: single mode), run to its end.
fn leasectl(leasectl: &Leasectl, quorum: &Quorum, args: &[&str]) -> Output {
    let mut command: Command = leasectl.against_quorum(quorum);
    command.args(args);
    complete(command)
}

/// `leasectl acquire NAME ARGS --json`, which must take the lease.
fn acquire(tool: &Leasectl, quorum: &Quorum, name: &str, args: &[&str]) -> AcquiredJson {
    let mut all = vec!["acquire", name, "--json"];
    all.extend_from_slice(args);
    let output = leasectl(tool, quorum, &all);
    output.expect(0);
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("not acquire's JSON ({e})\n{output}"))
}

/// The key's PTTL on every server (-2: no key).
fn pttls(quorum: &Quorum, name: &str) -> Vec<i64> {
    let key = support::key(name);
    quorum
        .servers
        .iter()
        .map(|server: &RedisServer| support::pttl(server, &key))
        .collect()
}

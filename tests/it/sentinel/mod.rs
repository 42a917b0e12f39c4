//! Redis Sentinel: every command through `serviceName=`, a held lease and a waiter across a
//! failover (`SENTINEL FAILOVER`, SIGKILL of the primary), `READONLY` from an old primary made
//! a replica, a lease lost in a failover (signalled, fenced), and `WaitReplicas`. Real
//! `redis-server` primaries, replicas and sentinels (support/sentinel.rs), real `leasectl`
//! processes.

mod commands;
mod failover;
mod lost;
mod measure;
mod wait_replicas;

use std::process::Command;

use crate::process::{complete, Output, Running};
use crate::support::sentinel::{Instance, SentinelDeployment};
use crate::support::{fence_key, key, Leasectl};

/// The lease the tests hold.
const JOB: &str = "job";

/// Whether `node` holds lease `name` (any holder).
fn holds(node: &Instance, name: &str) -> bool {
    node.try_query::<i64>(&["EXISTS", &key(name)]) == Ok(1)
}

/// The lease id stored for lease `name` on `node`.
fn lease_id(node: &Instance, name: &str) -> Option<String> {
    node.try_query(&["HGET", &key(name), "leaseId"])
        .ok()
        .flatten()
}

/// The fencing counter of lease `name` on `node` (0 when there is none).
fn counter(node: &Instance, name: &str) -> u64 {
    node.try_query::<Option<u64>>(&["GET", &fence_key(name)])
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// `leasectl --endpoint SENTINELS ARGS`, run to its end.
fn leasectl_done(deployment: &SentinelDeployment, leasectl: &Leasectl, args: &[&str]) -> Output {
    let mut command = deployment.leasectl(leasectl);
    command.args(args);
    complete(command)
}

/// The value of `"field":` in a JSON line.
fn field(line: &str, name: &str) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    value[name].clone()
}

/// `leasectl exec NAME --json FLAGS -- sh -c SCRIPT`, started.
fn exec_json(
    deployment: &SentinelDeployment,
    leasectl: &Leasectl,
    flags: &[&str],
    script: &str,
) -> Running {
    let mut command: Command = deployment.leasectl(leasectl);
    command
        .args(["exec", JOB, "--json"])
        .args(flags)
        .args(["--", "sh", "-c", script]);
    Running::spawn(command)
}

/// The lease holder of the failover tests: `leasectl exec JOB --ttl 10s --json -- sh -c SCRIPT`
/// renewed every 300 ms (so a renewal soon meets what a failover did), started.
fn start_holder(deployment: &SentinelDeployment, leasectl: &Leasectl, script: &str) -> Running {
    let mut command = deployment.leasectl(leasectl);
    command
        .env("RedisLeasing__AutoRenewInterval", "300ms")
        .args([
            "exec", JOB, "--ttl", "10s", "--json", "--", "sh", "-c", script,
        ]);
    Running::spawn(command)
}

/// `leasectl fence set report VALUE --token TOKEN`, run to its end: a fenced write of the
/// protected resource `report` (exit 0 when written, 3 when the token is refused).
fn fence_report(
    deployment: &SentinelDeployment,
    leasectl: &Leasectl,
    value: &str,
    token: u64,
) -> Output {
    leasectl_done(
        deployment,
        leasectl,
        &[
            "fence",
            "set",
            "report",
            value,
            "--token",
            &token.to_string(),
        ],
    )
}

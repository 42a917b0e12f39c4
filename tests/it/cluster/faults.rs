//! The faults of a cluster under a held lease: a manual failover, a SIGKILLed primary, a slot
//! migration. The holder is `leasectl exec --json` renewing every 300 ms; a second `exec`
//! waits for the same lease. The holder keeps its lease or is told it lost it (exit 4), never
//! a silent overlap; the next holder's fencing token is larger.

use std::path::Path;

use super::*;
use crate::process::{Output, Running};
use crate::support::{eventually, key, LIMIT};

/// `exec NAME --json` holding the lease until the file `go` appears; its child writes its
/// fencing token to `NAME.token`.
fn holder(leasectl: &Leasectl, cluster: &RedisCluster, seed: usize, name: &str) -> Running {
    let mut command = via(leasectl, cluster, seed);
    command
        .env("RedisLeasing__AutoRenewInterval", "300ms")
        .args(["exec", name, "--ttl", "30s", "--json", "--", "sh", "-c"])
        .arg("echo $LEASECTL_LEASE_ID > holder.id; echo $LEASECTL_FENCING_TOKEN > holder.token; while [ ! -e go ]; do sleep 0.05; done");
    let mut running = Running::spawn(command);
    running.wait_for("\"acquired\"");
    let started = eventually(LIMIT, || token(leasectl.dir(), "holder.token").is_some());
    assert!(started, "the holder's child started");
    running
}

/// `exec NAME --wait 60s --json` whose child writes its fencing token to `waiter.token`;
/// answers once it waits.
fn waiter(leasectl: &Leasectl, cluster: &RedisCluster, seed: usize, name: &str) -> Running {
    let mut command = via(leasectl, cluster, seed);
    command
        .args(["exec", name, "--wait", "60s", "--json", "--", "sh", "-c"])
        .arg("echo $LEASECTL_FENCING_TOKEN > waiter.token");
    let mut running = Running::spawn(command);
    running.wait_for("\"waiting\"");
    running
}

fn token(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Lets the holder's child end; answers how the holder and then the waiter ended, and checks
/// that the waiter's token is larger than the holder's.
fn hand_over(leasectl: &Leasectl, holder: Running, waiter: Running) -> (Output, Output) {
    std::fs::write(leasectl.dir().join("go"), "").unwrap();
    let held = holder.finish();
    let waited = waiter.finish();
    waited.expect(0);
    let first = token(leasectl.dir(), "holder.token").expect("the holder's token");
    let next = token(leasectl.dir(), "waiter.token").expect("the waiter's token");
    assert!(
        next > first,
        "tokens rise: {first} then {next}\n{held}\n{waited}"
    );
    (held, waited)
}

#[test]
fn a_held_lease_and_its_waiter_live_through_a_manual_failover() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let name = "failover-job";
    let mut holding = holder(&leasectl, &cluster, 0, name);
    let waiting = waiter(&leasectl, &cluster, 1, name);
    let new_primary = cluster.failover(&key(name));
    assert_eq!(cluster.primary_of(&key(name)), new_primary);
    // A manual failover loses no write: the holder renews on the new primary, and the
    // waiter does not get the lease meanwhile.
    for _ in 0..3 {
        holding.wait_for("\"renewed\"");
    }
    assert_eq!(token(leasectl.dir(), "waiter.token"), None, "no overlap");
    let (held, _) = hand_over(&leasectl, holding, waiting);
    held.expect(0);
}

#[test]
fn a_sigkilled_primary_is_replaced_and_the_holder_keeps_its_lease_or_is_told() {
    let mut cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let name = "killed-job";
    let seed = (cluster.primary_of(&key(name)) + 1) % cluster.nodes.len();
    let holding = holder(&leasectl, &cluster, seed, name);
    let mut waiting_seed = (seed + 1) % cluster.nodes.len();
    if waiting_seed == cluster.primary_of(&key(name)) {
        waiting_seed = (waiting_seed + 1) % cluster.nodes.len();
    }
    let waiting = waiter(&leasectl, &cluster, waiting_seed, name);
    let id = std::fs::read_to_string(leasectl.dir().join("holder.id")).unwrap();
    cluster.kill_primary_of(&key(name));
    // The holder renews on the replica that took over, or — had the lease not reached it —
    // learns at its next renewal that it lost it (exit 4) and its child is stopped. While the
    // new primary has the holder's lease, the waiter does not have it.
    let holder_now = cluster.hgetall(&key(name)).get("leaseId").cloned();
    let waiter_token = token(leasectl.dir(), "waiter.token");
    if holder_now.as_deref() == Some(id.trim()) {
        assert_eq!(waiter_token, None, "no overlap");
    }
    let (held, _) = hand_over(&leasectl, holding, waiting);
    assert!(
        [0, 4].contains(&held.code()),
        "kept (0) or told it was lost (4)\n{held}"
    );
    // A new acquire works on the new primary.
    let mut again = via(&leasectl, &cluster, seed);
    again.args(["exec", name, "--", "true"]);
    crate::process::complete(again).expect(0);
}

#[test]
fn renewal_and_release_follow_a_slot_migration_under_a_held_lease() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let name = "migrating-job";
    let mut holding = holder(&leasectl, &cluster, 0, name);
    let from = cluster.primary_of(&key(name));
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != from)
        .expect("another primary");
    let waiting = waiter(&leasectl, &cluster, 2, name);
    // The slot is migrating: the lease's keys are still on the old primary, which answers.
    // (A script whose keys are only partly there would get TRYAGAIN until the keys moved:
    // the waiter queued first, so its queue exists.)
    let migration = cluster.begin_migration(&key(name), to);
    for _ in 0..2 {
        holding.wait_for("\"renewed\"");
    }
    // Keys moved and the slot handed over: renewals follow the MOVED answer.
    cluster.finish_migration(migration);
    assert_eq!(cluster.primary_of(&key(name)), to);
    for _ in 0..3 {
        holding.wait_for("\"renewed\"");
    }
    assert_eq!(token(leasectl.dir(), "waiter.token"), None, "no overlap");
    let (held, _) = hand_over(&leasectl, holding, waiting);
    held.expect(0);
    assert!(!cluster.exists(&key(name)), "released on the new primary");
}

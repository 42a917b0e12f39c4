//! Quorum mode (Redlock) against 3 and 5 real `redis-server`s: one winner, a minority down or
//! paused, a majority down, stale keys, undone partial grants, fencing tokens across majorities
//! and restarts, waking waiters, and the binary's exit codes and `inspect --json`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use leasectl::{Acquire, Error, Lease, LeaseClient, LeaseInfo, LeaseOptions, LostReason, Settings};
use serde::Deserialize;

use crate::leases::{
    acquired, connect_within, hand_over, held, options, renewing, take_turns, within,
};
use crate::process::{complete, parse_json, Output, Running, LIMIT};
use crate::support::{self, fence_key, instance_matrix, key, Leasectl, Quorum, RedisServer, BOUND};
/// `run`'s default lease.
const RUN_LEASE: &str = "critical-section-lock";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A minute-long lease, no renewal.
fn long() -> LeaseOptions {
    options(Duration::from_secs(60))
}

/// A short lease, no renewal: for scenarios with an instance down while another restarted
/// recently, which must wait until the restarted one is older than the lease's TTL (a young
/// instance's grant counts only when every instance answers).
const SHORT: Duration = Duration::from_secs(2);

fn short() -> LeaseOptions {
    options(SHORT)
}

async fn connect(quorum: &Quorum) -> LeaseClient {
    connect_with(quorum.settings()).await
}

async fn connect_with(settings: Settings) -> LeaseClient {
    connect_within(BOUND, settings).await
}

/// `try_acquire` bounded by [`BOUND`].
async fn try_acquire(
    client: &LeaseClient,
    name: &str,
    options: &LeaseOptions,
) -> leasectl::Result<Acquire> {
    within(BOUND, "try_acquire", client.try_acquire(name, options)).await
}

/// `inspect` bounded by [`BOUND`], which must succeed.
async fn inspect(client: &LeaseClient, name: &str) -> LeaseInfo {
    within(BOUND, "inspect", client.inspect(name))
        .await
        .expect("inspect")
}

/// Releases `lease`, which must still be ours.
async fn release(lease: Lease) {
    let released = within(BOUND, "release", lease.release()).await;
    assert!(released.expect("release"), "the lease was still ours");
}

/// The lease id stored on `server` for `name`, if any key is there.
fn lease_id_on(server: &RedisServer, name: &str) -> Option<String> {
    server.query(&["HGET", &key(name), "leaseId"])
}

fn exists_on(server: &RedisServer, name: &str) -> bool {
    support::exists(server, &key(name))
}

/// Whether `name`'s key is gone from `server` within the time limit: a release or an undo
/// returns once a majority answered, and finishes on the other instances in the background.
/// (From a multi-threaded runtime's task: it blocks in place.)
fn gone_soon(server: &RedisServer, name: &str) -> bool {
    let gone = || support::eventually(LIMIT, || !exists_on(server, name));
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(gone),
        Err(_) => gone(),
    }
}

/// The fencing counter on `server` (0 when missing).
fn counter_on(server: &RedisServer, name: &str) -> u64 {
    server
        .query::<Option<u64>>(&["GET", &fence_key(name)])
        .unwrap_or(0)
}

/// Writes a lease hash like leasectl's on `server`, held by `instance` (region `us-east`),
/// with a ten-minute TTL: a holder that is not us.
fn write_holder(server: &RedisServer, name: &str, instance: &str) {
    let ttl = Duration::from_secs(600);
    support::write_lease(server, &key(name), (instance, "us-east"), 1, ttl);
}

/// How many instances may fail while a majority is left: 1 of 3, 2 of 5.
fn minority(n: usize) -> usize {
    n - (n / 2 + 1)
}

/// `count` instances starting at `start`, wrapping around.
fn window(n: usize, start: usize, count: usize) -> Vec<usize> {
    (0..count).map(|k| (start + k) % n).collect()
}

/// Lets `client` notice instances that restarted. The first call over a connection that died
/// with its instance fails, and only then does the connection manager reconnect (see the
/// ignored test `a_restarted_instance_counts_from_the_first_call`).
async fn notice_restarts(client: &LeaseClient) {
    let _ = within(BOUND, "inspect", client.inspect("restarts")).await;
}

/// Checks `inspect`'s view while `lease` is held and the instances `dead` are down: the
/// majority's holder is ours with its token, and each instance says what it holds or why it
/// did not answer; every live one stands at the token.
fn check_views(quorum: &Quorum, info: &LeaseInfo, lease: &Lease, dead: &[usize]) {
    let holder = info.holder.as_ref().expect("the majority's holder");
    assert_eq!(holder.lease_id.as_deref(), Some(lease.id()));
    assert_eq!(holder.fencing_token, Some(lease.fencing_token()));
    let addresses: Vec<&str> = info.instances.iter().map(|v| v.address.as_str()).collect();
    assert_eq!(addresses, quorum.addresses(), "every instance, in order");
    for (i, view) in info.instances.iter().enumerate() {
        if dead.contains(&i) {
            assert!(view.error.is_some(), "instance {i} is down: {view:?}");
            assert!(view.holder.is_none() && view.counter.is_none(), "{view:?}");
        } else {
            assert_eq!(view.error, None, "instance {i} is up");
            let id = view.holder.as_ref().and_then(|h| h.lease_id.as_deref());
            assert_eq!(id, Some(lease.id()), "instance {i} holds our lease");
            let counter = view.counter.expect("a live instance's counter");
            assert!(counter >= lease.fencing_token(), "instance {i}: {view:?}");
        }
    }
}

/// Holds `lease` for `time`, failing if its lost signal fires meanwhile.
async fn keep(lease: &Lease, time: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(time) => {}
        error = lease.lost() => panic!("the lease was lost: {error}"),
    }
}

/// Waits (bounded) until `lease` has been renewed more than `after` times.
async fn renewed_past(lease: &Lease, after: u64) {
    within(BOUND, "a renewal", async {
        while lease.renewals() <= after {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Waits (bounded) until every instance's fencing counter for `name` stands at `token`.
async fn every_counter_reaches(quorum: &Quorum, name: &str, token: u64) {
    let counters = || -> Vec<u64> {
        quorum
            .servers
            .iter()
            .map(|server| counter_on(server, name))
            .collect()
    };
    let raised = tokio::task::block_in_place(|| {
        support::eventually(BOUND, || counters().iter().all(|&c| c >= token))
    });
    assert!(
        raised,
        "counters {:?} never all reached {token}",
        counters()
    );
}

mod cli;
mod contention;
mod down;
mod fencing;
mod paused;
mod stale;
mod waiting;

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
use crate::support::{self, fence_key, key, Leasectl, Quorum, RedisServer};

/// The failure bound of every wait: far beyond what any step needs, even on a loaded machine.
const BOUND: Duration = Duration::from_secs(30);
/// `run`'s default lease.
const RUN_LEASE: &str = "critical-section-lock";

/// Each scenario runs as two tests, `SCENARIO::three` and `SCENARIO::five`: against 3 and 5
/// instances.
macro_rules! with_3_and_5 {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn three() {
                super::$scenario(3).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn five() {
                super::$scenario(5).await
            }
        }
    )+};
}

with_3_and_5!(
    one_winner_among_many_racers,
    critical_sections_never_overlap,
    a_minority_down_changes_nothing,
    a_majority_down_fails_with_no_quorum,
    held_on_the_answering_majority_is_held_not_no_quorum,
    a_stale_key_on_a_minority_blocks_nobody,
    a_failed_acquire_leaves_no_key_behind,
    tokens_increase_across_majorities,
    tokens_increase_across_restarts_with_empty_memory,
    a_paused_minority_does_not_cost_the_lease,
    a_paused_majority_signals_the_lease_expired,
    a_waiter_is_woken_by_a_release,
);

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

// ---------------------------------------------------------------------------------------------
// Contention

/// Every racer tries `name` at once; answers each one's outcome.
async fn race(clients: &[LeaseClient], name: &str) -> Vec<leasectl::Result<Acquire>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let attempts: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let (client, barrier, name) = (client.clone(), barrier.clone(), name.to_string());
            let options = long().meta("instanceId", format!("racer-{i}"));
            tokio::spawn(async move {
                barrier.wait().await;
                client.try_acquire(&name, &options).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(within(BOUND, "a racer", attempt).await.expect("racer task"));
    }
    outcomes
}

async fn one_winner_among_many_racers(n: usize) {
    const RACERS: usize = 8;
    const ROUNDS: usize = 5;
    // A split vote (no racer granted by a majority) is Redlock's legal outcome and happens now
    // and then; every racer must then have undone what it was granted.
    const SPLITS_AT_MOST: usize = 20;
    let quorum = Quorum::start(n);
    let mut clients = Vec::new();
    for _ in 0..RACERS {
        clients.push(connect(&quorum).await);
    }
    let (mut rounds, mut splits, mut last_token) = (0, 0, 0);
    while rounds < ROUNDS {
        let mut winners = Vec::new();
        for outcome in race(&clients, "contended").await {
            match outcome {
                Ok(Acquire::Acquired(lease)) => winners.push(lease),
                Ok(Acquire::Held(holder)) => {
                    let name = holder.display_name();
                    assert!(name.starts_with("racer-"), "held by a racer: {holder:?}");
                }
                Err(error) => panic!("every instance is up, yet: {error}"),
            }
        }
        assert!(winners.len() <= 1, "{} winners in one round", winners.len());
        if let Some(winner) = winners.pop() {
            assert!(winner.fencing_token() > last_token, "tokens increase");
            last_token = winner.fencing_token();
            let holding = quorum
                .servers
                .iter()
                .filter(|s| lease_id_on(s, "contended").as_deref() == Some(winner.id()))
                .count();
            assert!(holding >= quorum.majority(), "held on {holding} of {n}");
            release(winner).await;
            rounds += 1;
        } else {
            splits += 1;
            assert!(splits <= SPLITS_AT_MOST, "{splits} rounds without a winner");
        }
        for (i, server) in quorum.servers.iter().enumerate() {
            assert!(
                !exists_on(server, "contended"),
                "a key left on instance {i}"
            );
        }
    }
}

async fn critical_sections_never_overlap(n: usize) {
    const WORKERS: usize = 5;
    const ROUNDS: usize = 8;
    let quorum = Quorum::start(n);
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        clients.push(connect(&quorum).await);
    }
    let wait = Duration::from_secs(120);
    take_turns(clients, ROUNDS, &long(), wait, Duration::from_secs(180)).await;
}

// ---------------------------------------------------------------------------------------------
// Instances down

async fn a_minority_down_changes_nothing(n: usize) {
    let mut quorum = Quorum::start(n);
    let down = minority(n);
    // Every instance in turn (with its neighbour when two may fail), under a client that
    // connected while all were up. Every live instance older than the TTL: with one down, a
    // young one's grant would not count.
    let client = connect(&quorum).await;
    let mut last_token = 0;
    for start in 0..n {
        tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
        let dead = window(n, start, down);
        for &i in &dead {
            quorum.servers[i].kill();
        }
        let lease = acquired(try_acquire(&client, "minority", &short()).await);
        assert!(lease.fencing_token() > last_token, "tokens increase");
        last_token = lease.fencing_token();
        within(BOUND, "extend", lease.extend())
            .await
            .expect("extend");
        let info = inspect(&client, "minority").await;
        check_views(&quorum, &info, &lease, &dead);
        release(lease).await;
        for (i, server) in quorum.servers.iter().enumerate() {
            if !dead.contains(&i) {
                assert!(!exists_on(server, "minority"), "released on instance {i}");
            }
        }
        for &i in &dead {
            quorum.servers[i].restart();
        }
        notice_restarts(&client).await;
    }

    // Down from the start: a new client connects, and a lease lives past its TTL by renewal.
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    let dead = window(n, 0, down);
    for &i in &dead {
        quorum.servers[i].kill();
    }
    let client = connect(&quorum).await;
    let ttl = Duration::from_secs(2);
    let lease = acquired(
        try_acquire(
            &client,
            "renewed",
            &renewing(ttl, Duration::from_millis(300)),
        )
        .await,
    );
    keep(&lease, ttl * 3).await;
    assert!(lease.renewals() > 0, "renewed");
    check_views(&quorum, &inspect(&client, "renewed").await, &lease, &dead);
    let all = within(BOUND, "inspect_all", client.inspect_all())
        .await
        .expect("inspect_all");
    let names: Vec<&str> = all.iter().map(|info| info.name.as_str()).collect();
    assert_eq!(names, ["renewed"], "the released lease is not listed");
    release(lease).await;
}

async fn a_majority_down_fails_with_no_quorum(n: usize) {
    let mut quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let addresses = quorum.addresses();
    let majority = quorum.majority();
    let dead = window(n, n - majority, majority);
    for &i in &dead {
        quorum.servers[i].kill();
    }
    // The first try meets the broken connections, the second reconnects and is refused.
    for attempt in 0..2 {
        let error = match try_acquire(&client, "majority", &long()).await {
            Err(error) => error,
            Ok(outcome) => panic!("attempt {attempt}: {outcome:?} without a majority"),
        };
        let Error::NoQuorum {
            agreed,
            needed,
            total,
            ..
        } = error.clone()
        else {
            panic!("attempt {attempt}: expected Error::NoQuorum, got {error:?}")
        };
        assert_eq!((needed, total), (majority, n));
        assert!(agreed < majority, "{error}");
        assert!(error.is_transient());
        let message = error.to_string();
        let start = format!("no quorum: {agreed} of {n} granted, {majority} needed (");
        assert!(message.starts_with(&start), "{message}");
        for address in &addresses {
            assert!(message.contains(address.as_str()), "{address}: {message}");
        }
        for &i in &dead {
            let said = match attempt {
                0 => format!("{} granted", addresses[i]),
                _ => format!("{} connection refused", addresses[i]),
            };
            assert_eq!(message.contains(&said), attempt > 0, "{said}: {message}");
        }
        for (i, server) in quorum.servers.iter().enumerate() {
            if !dead.contains(&i) {
                assert!(!exists_on(server, "majority"), "undone on instance {i}");
            }
        }
    }

    // A client started now cannot connect, and says who refused.
    let error = match within(BOUND, "connect", LeaseClient::connect(quorum.settings())).await {
        Err(error @ Error::NoQuorum { .. }) => error.to_string(),
        Err(other) => panic!("expected Error::NoQuorum, got {other:?}"),
        Ok(_) => panic!("connected without a majority"),
    };
    let live = n - majority;
    let start = format!("no quorum: {live} of {n} answered, {majority} needed (");
    assert!(error.starts_with(&start), "{error}");
    for &i in &dead {
        let refused = format!("{} connection refused", addresses[i]);
        assert!(error.contains(&refused), "{refused}: {error}");
    }
}

async fn held_on_the_answering_majority_is_held_not_no_quorum(n: usize) {
    let mut quorum = Quorum::start(n);
    let majority = quorum.majority();
    // A long call timeout: the paused instance below is slow, not failed.
    let settings = Settings {
        sync_timeout: BOUND,
        ..quorum.settings()
    };
    let client = connect_with(settings).await;
    for server in &quorum.servers[..majority] {
        write_holder(server, "busy", "us-east-1");
    }
    for server in &mut quorum.servers[majority..] {
        server.kill();
    }
    // The last holder answers only after the dead instances have failed: its answer, not the
    // failures, must decide between "held" and "no quorum".
    let slow = &quorum.servers[majority - 1];
    slow.pause();
    let options = long();
    let attempt = client.try_acquire("busy", &options);
    let resume = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow.resume();
    };
    let (outcome, ()) = within(BOUND, "try_acquire", async {
        tokio::join!(attempt, resume)
    })
    .await;
    let holder = held(outcome);
    assert_eq!(holder.display_name(), "us-east-1 (us-east)");
    assert_eq!(holder.lease_id.as_deref(), Some("id-of-us-east-1"));

    // One more down: too few instances answer, whoever holds the lease.
    quorum.servers[majority - 1].kill();
    match try_acquire(&client, "busy", &long()).await {
        Err(Error::NoQuorum { agreed: 0, .. }) => {}
        other => panic!("expected Error::NoQuorum, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Stale keys and undone grants

async fn a_stale_key_on_a_minority_blocks_nobody(n: usize) {
    let quorum = Quorum::start(n);
    let stale = window(n, 0, minority(n));
    for &i in &stale {
        write_holder(&quorum.servers[i], "stale", "ghost");
        // Left after the instances started: the others are younger than the TTL, and an older
        // lease would keep their grants from counting (see the restart test below).
        support::acquired_now(&quorum.servers[i], &key("stale"));
    }
    let client = connect(&quorum).await;
    let lease = acquired(try_acquire(&client, "stale", &long()).await);
    let info = inspect(&client, "stale").await;
    let holder = info.holder.as_ref().expect("the majority's holder");
    assert_eq!(holder.lease_id.as_deref(), Some(lease.id()), "ours");
    assert_eq!(info.instances.len(), n);
    for (i, view) in info.instances.iter().enumerate() {
        let holder = view.holder.as_ref().expect("held on every instance");
        let expected = if stale.contains(&i) {
            "id-of-ghost"
        } else {
            lease.id()
        };
        assert_eq!(holder.lease_id.as_deref(), Some(expected), "instance {i}");
    }
    if n == 3 {
        assert_eq!(
            info.instances[0].holder.as_ref().unwrap().display_name(),
            "ghost (us-east)"
        );
    }

    // Another client finds it held. (It may name the stale holder: a failed try decides on
    // the first answers that rule out a grant, which may be the stale one's and ours.)
    let other = connect(&quorum).await;
    let seen = held(try_acquire(&other, "stale", &long()).await);
    let named = seen.lease_id.as_deref();
    assert!(
        named == Some(lease.id()) || named == Some("id-of-ghost"),
        "{seen:?}"
    );

    release(lease).await;
    for (i, server) in quorum.servers.iter().enumerate() {
        let expected = stale.contains(&i).then(|| "id-of-ghost".to_string());
        assert_eq!(lease_id_on(server, "stale"), expected, "instance {i}");
    }
    let again = acquired(try_acquire(&other, "stale", &long()).await);
    release(again).await;
}

async fn a_failed_acquire_leaves_no_key_behind(n: usize) {
    let quorum = Quorum::start(n);
    let majority = quorum.majority();
    for server in &quorum.servers[..majority] {
        write_holder(server, "taken", "us-east-1");
    }
    let client = connect(&quorum).await;
    for attempt in 0..20 {
        let holder = held(try_acquire(&client, "taken", &long()).await);
        assert_eq!(
            holder.display_name(),
            "us-east-1 (us-east)",
            "attempt {attempt}"
        );
        // A grant still under way when the attempt was decided is undone in the background.
        for (i, server) in quorum.servers.iter().enumerate().skip(majority) {
            let undone = tokio::task::block_in_place(|| {
                support::eventually(BOUND, || !exists_on(server, "taken"))
            });
            assert!(undone, "attempt {attempt}: instance {i}");
        }
    }
    for server in &quorum.servers[..majority] {
        assert_eq!(
            lease_id_on(server, "taken").as_deref(),
            Some("id-of-us-east-1"),
            "the holder's keys are untouched"
        );
    }

    // A free instance that is paused during the attempt runs the grant and its undo, in
    // order, once it resumes.
    // Short enough to keep the test quick, long enough that a loaded machine's live
    // instances still answer within it.
    let settings = Settings {
        sync_timeout: Duration::from_secs(3),
        ..quorum.settings()
    };
    let client = connect_with(settings).await;
    let slow = &quorum.servers[n - 1];
    let counted = counter_on(slow, "taken");
    slow.pause();
    let holder = held(try_acquire(&client, "taken", &long()).await);
    assert_eq!(holder.display_name(), "us-east-1 (us-east)");
    slow.resume();
    let granted_late = tokio::task::block_in_place(|| {
        support::eventually(BOUND, || counter_on(slow, "taken") > counted)
    });
    assert!(granted_late, "the paused instance ran the queued grant");
    for (i, server) in quorum.servers.iter().enumerate().skip(majority) {
        assert!(!exists_on(server, "taken"), "instance {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fencing

/// Acquires `name`, checks that its token is above every earlier one and that a majority's
/// counters (per `inspect`) already stand at it, releases it, and answers the token.
///
/// With every instance up, it also waits until all counters stand at the token: they are
/// raised on every instance that can be reached, so that the next restart may take any one.
async fn fenced_acquisition(quorum: &Quorum, client: &LeaseClient, name: &str, last: u64) -> u64 {
    fenced_acquisition_with(quorum, client, name, last, &long()).await
}

async fn fenced_acquisition_with(
    quorum: &Quorum,
    client: &LeaseClient,
    name: &str,
    last: u64,
    options: &LeaseOptions,
) -> u64 {
    let lease = acquired(try_acquire(client, name, options).await);
    let token = lease.fencing_token();
    assert!(token > last, "token {token} after {last}");
    let mut info = inspect(client, name).await;
    let standing = info
        .instances
        .iter()
        .filter(|view| view.counter.is_some_and(|c| c >= token))
        .count();
    assert!(standing >= quorum.majority(), "{:?}", info.instances);
    if info.instances.iter().all(|view| view.error.is_none()) {
        every_counter_reaches(quorum, name, token).await;
        info = inspect(client, name).await;
    }
    assert_eq!(info.holder.and_then(|h| h.fencing_token), Some(token));
    release(lease).await;
    token
}

async fn tokens_increase_across_majorities(n: usize) {
    // The sequence with A, B, C: five leases granted by {B, C} leave A's counter behind
    // B's and C's; the next is granted by {A, C}, the one after by {A, B}; with a naive max of
    // per-instance counts the third would repeat a token. With five instances, two at a time
    // stand in for A, B and C.
    // With an instance down, a restarted one's grant counts only once it is older than the
    // TTL: short leases, and a wait after each restart.
    let mut quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let down = minority(n);
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    let mut dead = window(n, 0, down);
    for &i in &dead {
        quorum.servers[i].kill();
    }
    let mut last = 0;
    for _ in 0..5 {
        last = fenced_acquisition_with(&quorum, &client, "abc", last, &short()).await;
    }
    for step in 1..=n {
        // Back with empty memory, and the next ones down: a different majority each time.
        for &i in &dead {
            quorum.servers[i].restart();
        }
        notice_restarts(&client).await;
        tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
        dead = window(n, step * down, down);
        for &i in &dead {
            quorum.servers[i].kill();
        }
        last = fenced_acquisition_with(&quorum, &client, "abc", last, &short()).await;
    }
}

async fn tokens_increase_across_restarts_with_empty_memory(n: usize) {
    let mut quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let mut last = 0;
    for round in 0..3 * n {
        last = fenced_acquisition(&quorum, &client, "restarted", last).await;
        quorum.servers[round % n].restart();
    }
    let fresh = connect(&quorum).await;
    fenced_acquisition(&quorum, &fresh, "restarted", last).await;
}

/// Acquires `name` (it must be free) for [`SHORT`] and releases it at once; answers its token.
async fn token_of_one_acquisition(client: &LeaseClient, name: &str) -> u64 {
    let lease = acquired(try_acquire(client, name, &short()).await);
    let token = lease.fencing_token();
    release(lease).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_when_single_restarts_follow_each_other() {
    // A restarts empty, and the next acquisition's call to it fails on the connection that died
    // with it, though A is up again; then B restarts empty and C goes down. A must have been
    // raised all the same: else {A, B} would hand out a token no larger than the last.
    let mut quorum = Quorum::start(3);
    let client = connect(&quorum).await;
    let first = token_of_one_acquisition(&client, "sequence").await;
    quorum.servers[0].restart();
    let second = token_of_one_acquisition(&client, "sequence").await;
    assert!(second > first);
    quorum.servers[1].restart();
    // With C down, A and B count only once older than the TTL.
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    quorum.servers[2].kill();
    notice_restarts(&client).await;
    let third = token_of_one_acquisition(&client, "sequence").await;
    assert!(third > second, "token {third} after {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_counts_from_the_first_call() {
    let mut quorum = Quorum::start(3);
    let client = connect(&quorum).await;
    release(acquired(try_acquire(&client, "first-call", &short()).await)).await;
    quorum.servers[0].restart();
    // With B down, A's grant counts only once it is older than the TTL.
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    quorum.servers[1].kill();
    // A and C are up: a majority.
    release(acquired(try_acquire(&client, "first-call", &short()).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_empty_does_not_hand_out_a_held_lease_again() {
    // A holds a lease granted by a bare majority {0, 1} (2 was down). Instance 1 restarts with
    // empty memory and 2 comes back empty: {1, 2} would grant the lease a second time, the hole
    // Redlock closes with "delayed restarts". Their grants must not count while instance 0
    // reports A, who acquired it before they started.
    let mut quorum = Quorum::start(3);
    let first = connect(&quorum).await;
    // A bare majority's grants count only from instances older than the TTL.
    let ttl = Duration::from_secs(10);
    tokio::task::block_in_place(|| quorum.wait_older_than(ttl));
    quorum.servers[2].kill();
    let lease = acquired(try_acquire(&first, "forgotten", &options(ttl)).await);
    quorum.servers[1].restart();
    quorum.servers[2].restart();
    let second = connect(&quorum).await;
    let answer = try_acquire(&second, "forgotten", &long()).await;
    assert_eq!(held(answer).lease_id.as_deref(), Some(lease.id()));
    // Undone at once where it was granted; a grant still under way when the attempt was
    // decided is undone in the background. (A's own acquire may reach instance 2 late: its
    // call was retried on the connection that died with the instance.)
    for i in [1, 2] {
        let undone = tokio::task::block_in_place(|| {
            support::eventually(BOUND, || {
                lease_id_on(&quorum.servers[i], "forgotten").is_none_or(|id| id == lease.id())
            })
        });
        assert!(undone, "undone on {i}");
    }
    // Once A is gone, the young instances' grants count again.
    release(lease).await;
    release(acquired(try_acquire(&second, "forgotten", &long()).await)).await;
}

// ---------------------------------------------------------------------------------------------
// Paused instances

async fn a_paused_minority_does_not_cost_the_lease(n: usize) {
    let quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let ttl = Duration::from_secs(2);
    let options = renewing(ttl, Duration::from_millis(300));
    let lease = acquired(try_acquire(&client, "paused", &options).await);
    renewed_past(&lease, 0).await;
    let paused = window(n, 0, minority(n));
    for &i in &paused {
        quorum.servers[i].pause();
    }
    let before = lease.renewals();
    keep(&lease, ttl * 4).await;
    assert!(lease.renewals() > before, "renewals went on");
    for (i, server) in quorum.servers.iter().enumerate() {
        if !paused.contains(&i) {
            assert_eq!(lease_id_on(server, "paused").as_deref(), Some(lease.id()));
            let pttl: i64 = server.query(&["PTTL", &key("paused")]);
            assert!(pttl > 0, "instance {i}: {pttl}");
        }
    }
    for &i in &paused {
        quorum.servers[i].resume();
    }
    let after = lease.renewals();
    renewed_past(&lease, after).await;
    assert!(lease.lost_error().is_none());
    release(lease).await;
}

async fn a_paused_majority_signals_the_lease_expired(n: usize) {
    let quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let ttl = Duration::from_secs(2);
    let options = renewing(ttl, Duration::from_millis(300));
    let lease = acquired(try_acquire(&client, "expired", &options).await);
    renewed_past(&lease, 0).await;
    let paused = window(n, 0, quorum.majority());
    for &i in &paused {
        quorum.servers[i].pause();
    }
    let error = within(BOUND, "the lost signal", lease.lost()).await;
    for &i in &paused {
        quorum.servers[i].resume();
    }
    match error {
        Error::Lost { name, reason } => {
            assert_eq!(name, "expired");
            assert_eq!(reason, LostReason::Expired);
        }
        other => panic!("expected Error::Lost, got {other:?}"),
    }
    assert!(
        matches!(lease.extend().await, Err(Error::Lost { .. })),
        "a lost lease is never extended"
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting

async fn a_waiter_is_woken_by_a_release(n: usize) {
    let quorum = Quorum::start(n);
    let holder_client = connect(&quorum).await;
    let waiter_client = connect(&quorum).await;
    // Without the notification the waiter would sleep until its wait or the holder's TTL runs
    // out (ten minutes each; its fallback poll is an hour): only the release can wake it.
    let holder = acquired(
        try_acquire(
            &holder_client,
            "handoff",
            &options(Duration::from_secs(600)),
        )
        .await,
    );
    let lease = hand_over(BOUND, holder, waiter_client).await;
    release(lease).await;
}

// ---------------------------------------------------------------------------------------------
// The binary

/// `leasectl inspect --json` in quorum mode: SPEC 4's object and each instance's view; any
/// other field fails to parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LeaseJson {
    lease: String,
    key: String,
    held: bool,
    format: Option<String>,
    lease_id: Option<String>,
    owner_id: Option<String>,
    acquired_at: Option<String>,
    ttl_ms: Option<u64>,
    fencing_token: Option<u64>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    instances: Vec<InstanceJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InstanceJson {
    address: String,
    held: bool,
    lease_id: Option<String>,
    ttl_ms: Option<u64>,
    counter: Option<u64>,
    error: Option<String>,
}

/// `leasectl run --instance ID --region us-east --work WORK` against every instance.
fn run_command(leasectl: &Leasectl, quorum: &Quorum, instance: &str, work: &str) -> Command {
    let mut command = leasectl.against_quorum(quorum);
    command.args(["run", "--instance", instance, "--region", "us-east"]);
    command.args(["--work", work]);
    command
}

fn inspect_json(leasectl: &Leasectl, quorum: &Quorum) -> LeaseJson {
    let mut command = leasectl.against_quorum(quorum);
    command.args(["inspect", RUN_LEASE, "--json"]);
    parse_json(&complete(command))
}

#[test]
fn cli_two_runs_at_once_give_one_winner_and_inspect_shows_each_instance() {
    let quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    for round in 0..3 {
        let runs: Vec<_> = ["us-east-1", "eu-west-1"]
            .iter()
            .map(|who| Running::spawn(run_command(&leasectl, &quorum, who, "2s")))
            .collect();
        let outputs: Vec<Output> = runs.into_iter().map(Running::finish).collect();
        let mut codes: Vec<i32> = outputs.iter().map(Output::code).collect();
        let all: String = outputs.iter().map(Output::to_string).collect();
        let loser = &outputs[if codes[0] == 0 { 1 } else { 0 }];
        codes.sort();
        assert_eq!(codes, [0, 3], "round {round}: one winner\n{all}");
        let stdout = &loser.stdout;
        assert!(stdout.contains("✗ Lock unavailable | Held by: "), "{all}");
        for server in &quorum.servers {
            assert!(!exists_on(server, RUN_LEASE), "released\n{all}");
        }
    }

    // While a run holds the lease, inspect shows the holder and what each instance holds.
    let holder = Running::spawn(run_command(&leasectl, &quorum, "us-east-1", "60s"));
    let held_everywhere = support::eventually(LIMIT, || {
        quorum.servers.iter().all(|s| exists_on(s, RUN_LEASE))
    });
    assert!(held_everywhere, "the holder's run took the lease");
    let json = inspect_json(&leasectl, &quorum);
    assert_eq!(
        (json.lease.as_str(), json.key.as_str()),
        (RUN_LEASE, key(RUN_LEASE).as_str())
    );
    assert!(json.held && json.owner_id.is_none() && json.acquired_at.is_some());
    assert!(json.ttl_ms.is_some_and(|ttl| ttl > 0));
    assert!(json
        .metadata
        .is_some_and(|m| m["instanceId"] == "us-east-1"));
    let token = json.fencing_token.expect("a fencing token");
    let addresses: Vec<&str> = json.instances.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addresses, quorum.addresses());
    for instance in &json.instances {
        assert!(instance.held, "{instance:?}");
        assert_eq!(instance.lease_id, json.lease_id, "{instance:?}");
        assert!(instance.ttl_ms.is_some_and(|ttl| ttl > 0), "{instance:?}");
        assert!(instance.counter.is_some_and(|c| c >= token), "{instance:?}");
        assert_eq!(instance.error, None);
    }
    support::signal(holder.pid(), "INT");
    let output = holder.finish();
    assert_eq!(output.code(), 130, "Ctrl-C releases\n{output}");
}

#[test]
fn cli_one_instance_down_changes_nothing_and_two_give_no_quorum() {
    let mut quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    // With one down, fresh instances' grants count only once older than the TTL.
    quorum.wait_older_than(SHORT);
    quorum.servers[0].kill();
    let mut run = run_command(&leasectl, &quorum, "us-east-1", "1s");
    run.args(["--ttl", "2s"]);
    let output = complete(run);
    assert_eq!(output.code(), 0, "{output}");
    assert!(output.stdout.contains("Lock released"), "{output}");

    // Held on both live instances: exit 3, naming the holder.
    for server in &quorum.servers[1..] {
        write_holder(server, RUN_LEASE, "ap-south-1");
    }
    let json = inspect_json(&leasectl, &quorum);
    assert_eq!(json.lease_id.as_deref(), Some("id-of-ap-south-1"));
    assert_eq!(json.format.as_deref(), Some("hash"));
    let dead = &json.instances[0];
    assert!(
        !dead.held && dead.error.is_some() && dead.counter.is_none(),
        "{dead:?}"
    );
    let output = complete(run_command(&leasectl, &quorum, "us-east-1", "1s"));
    assert_eq!(output.code(), 3, "{output}");
    assert!(
        output
            .stdout
            .contains("✗ Lock unavailable | Held by: ap-south-1 (us-east)"),
        "{output}"
    );

    // Two down: a clear one-line error and exit 1.
    quorum.servers[1].kill();
    let output = complete(run_command(&leasectl, &quorum, "us-east-1", "1s"));
    assert_eq!(output.code(), 1, "{output}");
    let stderr = &output.stderr;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line\n{output}");
    assert!(
        lines[0].starts_with("leasectl: error: no quorum: "),
        "{stderr}"
    );
    assert!(lines[0].contains("2 needed"), "{stderr}");
    let addresses = quorum.addresses();
    for dead in &addresses[..2] {
        assert!(
            lines[0].contains(&format!("{dead} connection refused")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"));
}

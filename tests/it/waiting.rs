//! Waiting and connections under faults (issue 13 items 5, 6, 7, 9; issue 18 item 7): a
//! waiter that outlives a short Redis outage, a waiter that leaves its queue on every way
//! out, a release whose notification is refused, OOM, evicting memory policies, an instance
//! that was down at connect, a waiter that loses one of its subscriptions.

use std::time::Duration;

use leasectl::Acquire;

use crate::leases::{acquired, connect_within, options, within, woken_only};
use crate::process::{complete, Running};
use crate::support::{
    command_calls, deadlines_key, eventually, exists, hgetall, key, query, queue_key,
    release_channel, signal, subscribers, write_lease, Leasectl, Quorum, RedisServer, BOUND,
};

/// Writes a lease held by someone else (`id-of-other`) for a minute.
fn held_by_other(server: &RedisServer, name: &str) {
    write_lease(
        server,
        &key(name),
        ("other", "elsewhere"),
        1,
        Duration::from_secs(60),
    );
}

/// Waits until a waiter of `name` has tried once and subscribed (so it is queued).
fn subscribed(server: &RedisServer, name: &str) {
    let channel = release_channel(name);
    assert!(
        eventually(BOUND, || subscribers(&mut server.connection(), &channel)
            >= 1),
        "the waiter never subscribed to {channel}"
    );
}

/// Kills the server, keeps it down for half a second, and starts it again (empty).
fn outage(server: &mut RedisServer) {
    server.kill();
    // The outage being simulated, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(500));
    server.restart();
}

// ---------------------------------------------------------------------------------------------
// Issue 13 item 5: a waiter survives a short Redis outage

#[test]
fn exec_wait_survives_a_short_restart() {
    waiter_survives_a_short_restart(&["exec", "outage", "--wait", "1m", "--", "true"]);
}

#[test]
fn inspect_wait_free_survives_a_short_restart() {
    waiter_survives_a_short_restart(&["inspect", "outage", "--wait-free", "1m"]);
}

/// `leasectl ARGS` waits for "outage", held by someone else; Redis restarts while it waits;
/// it still ends well once the lease is free.
fn waiter_survives_a_short_restart(args: &[&str]) {
    let mut server = RedisServer::start();
    let leasectl = Leasectl::new();
    held_by_other(&server, "outage");
    let mut waiter = leasectl.against(&server);
    waiter.args(args);
    let waiter = Running::spawn(waiter);
    subscribed(&server, "outage");
    outage(&mut server);
    waiter.finish().expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_acquire_survives_a_short_restart() {
    let mut server = RedisServer::start();
    held_by_other(&server, "outage");
    let client = connect_within(BOUND, server.settings()).await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .acquire("outage", &options(Duration::from_secs(30)), BOUND)
                .await
        })
    };
    tokio::task::block_in_place(|| {
        subscribed(&server, "outage");
        outage(&mut server);
    });
    let lease = acquired(within(BOUND, "acquire", waiting).await.unwrap());
    assert_eq!(
        hgetall(&server, &key("outage")).get("leaseId"),
        Some(&lease.id().to_string())
    );
}

#[test]
fn a_waiter_whose_budget_ends_in_an_outage_names_the_last_error() {
    let mut server = RedisServer::start();
    let leasectl = Leasectl::new();
    held_by_other(&server, "gone");
    let mut waiter = leasectl.against(&server);
    waiter.args(["exec", "gone", "--wait", "3s", "--", "true"]);
    let waiter = Running::spawn(waiter);
    subscribed(&server, "gone");
    server.kill();
    let output = waiter.finish();
    let line = output.failed_with(1);
    assert!(line.contains("connection refused"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// Issue 13 item 6: an interrupted waiter leaves the queue at once

/// A waiter of `name` (`run` or `exec`) that is queued behind another holder.
fn queued_waiter(leasectl: &Leasectl, server: &RedisServer, kind: &str, name: &str) -> Running {
    let mut waiter = leasectl.against(server);
    match kind {
        "run" => waiter
            .args(["run", "--instance", "waiter", "--region", "here"])
            .args(["--lease", name, "--work", "1s", "--wait", "1m"]),
        _ => waiter.args(["exec", name, "--wait", "1m", "--", "true"]),
    };
    let waiter = Running::spawn(waiter);
    subscribed(server, name);
    waiter
}

/// A try-acquire (no wait) of `name` that must get it.
fn try_gets(leasectl: &Leasectl, server: &RedisServer, name: &str) {
    let mut attempt = leasectl.against(server);
    attempt.args(["exec", name, "--", "true"]);
    complete(attempt).expect(0);
}

#[test]
fn an_interrupted_waiter_leaves_the_queue_at_once() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for (kind, sig, code) in [
        ("exec", "INT", 130),
        ("exec", "TERM", 143),
        ("run", "INT", 130),
        ("run", "TERM", 143),
    ] {
        let name = format!("interrupted-{kind}-{sig}");
        held_by_other(&server, &name);
        let waiter = queued_waiter(&leasectl, &server, kind, &name);
        signal(waiter.pid(), sig);
        waiter.finish().expect(code);
        // The holder releases: nobody wants the lease any more, so a try gets it at once.
        let _: i64 = server.query(&["DEL", &key(&name)]);
        try_gets(&leasectl, &server, &name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_acquire_leaves_the_queue() {
    let server = RedisServer::start();
    held_by_other(&server, "dropped");
    let client = connect_within(BOUND, server.settings()).await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("dropped", &woken_only(), BOUND).await })
    };
    tokio::task::block_in_place(|| subscribed(&server, "dropped"));
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    within(BOUND, "the clean-up", client.flush()).await;
    let _: i64 = server.query(&["DEL", &key("dropped")]);
    let other = connect_within(BOUND, server.settings()).await;
    acquired(
        other
            .try_acquire("dropped", &options(Duration::from_secs(30)))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_died_blocks_the_queue_only_briefly() {
    let server = RedisServer::start();
    held_by_other(&server, "died");
    let client = connect_within(BOUND, server.settings()).await;
    // A waiter whose fallback poll is an hour (its place used to last three polls) ...
    let patient = woken_only();
    let mut waiting = Box::pin(client.acquire("died", &patient, BOUND));
    let queued = {
        let url = server.url();
        tokio::task::spawn_blocking(move || {
            let mut redis = redis::Client::open(url).unwrap().get_connection().unwrap();
            eventually(BOUND, || {
                subscribers(&mut redis, &release_channel("died")) >= 1
            })
        })
    };
    tokio::select! {
        _ = &mut waiting => panic!("acquired a held lease"),
        queued = queued => assert!(queued.unwrap(), "the waiter never queued"),
    }
    // ... dies without a word (as under SIGKILL: no clean-up runs, it is never polled again).
    std::mem::forget(waiting);
    let _: i64 = server.query(&["DEL", &key("died")]);
    let other = connect_within(BOUND, server.settings()).await;
    let (mut free, lease) = (false, options(Duration::from_secs(30)));
    for _ in 0..3000 {
        let attempt = other.try_acquire("died", &lease);
        if let Acquire::Acquired(_) = attempt.await.expect("try") {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(free, "the dead waiter's place still blocks the lease");
}

// ---------------------------------------------------------------------------------------------
// Issue 13 item 7: errors in the middle of an operation keep the truth

#[test]
fn exec_keeps_its_exit_code_when_the_release_notification_is_refused() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let url = crate::support::url_without_publish(&server);
    let mut command = leasectl.command();
    command
        .args(["--endpoint", &url])
        .args(["exec", "nopub", "--", "sh", "-c", "exit 7"]);
    let output = complete(command);
    output.expect(7);
    assert!(!exists(&server, &key("nopub")), "released\n{output}");
    assert!(
        output.stderr.contains("PUBLISH") || output.stderr.contains("notif"),
        "warns that the waiters were not told\n{output}"
    );
    // An operator's forced release by that user stands too.
    held_by_other(&server, "nopub");
    let mut command = leasectl.command();
    command
        .args(["--endpoint", &url])
        .args(["release", "nopub", "--force", "--yes"]);
    let output = complete(command);
    output.expect(0);
    assert!(!exists(&server, &key("nopub")), "released\n{output}");
    assert!(output.stderr.contains("PUBLISH"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_under_oom_reports_success_only_with_the_lease_written() {
    let server = RedisServer::start();
    held_by_other(&server, "oom");
    let client = connect_within(BOUND, server.settings()).await;
    let _: () = server.query(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "1"]);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .acquire(
                    "oom",
                    &options(Duration::from_secs(30)),
                    Duration::from_secs(10),
                )
                .await
        })
    };
    let _: i64 = server.query(&["DEL", &key("oom")]);
    match within(BOUND, "acquire", waiting).await.unwrap() {
        Ok(Acquire::Acquired(lease)) => assert_eq!(
            hgetall(&server, &key("oom")).get("leaseId"),
            Some(&lease.id().to_string()),
            "an acquire that succeeded wrote its lease"
        ),
        Ok(Acquire::Held(holder)) => panic!("held by {holder:?} after its release"),
        Err(error) => assert!(error.to_string().contains("OOM"), "{error}"),
    }
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "0"]);
}

// ---------------------------------------------------------------------------------------------
// Issue 13 item 9: an evicting memory policy is warned about

const EVICTION_WARNING: &str = "maxmemory-policy";

fn evicting(server: &RedisServer, policy: &str) {
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let _: () = server.query(&["CONFIG", "SET", "maxmemory-policy", policy]);
}

#[test]
fn an_evicting_policy_is_warned_about_once() {
    let leasectl = Leasectl::new();
    for policy in [
        "allkeys-lru",
        "volatile-lru",
        "allkeys-random",
        "volatile-ttl",
    ] {
        let server = RedisServer::start();
        evicting(&server, policy);
        let mut command = leasectl.against(&server);
        command.args(["exec", "evicted", "--", "true"]);
        let output = complete(command);
        output.expect(0);
        assert_eq!(
            output.stderr.matches(EVICTION_WARNING).count(),
            1,
            "one warning for {policy}\n{output}"
        );
        assert!(output.stderr.contains(policy), "{output}");
        assert!(output.stderr.contains("noeviction"), "{output}");
    }
    // Quorum mode: one warning for every instance together.
    let quorum = Quorum::start(3);
    for server in &quorum.servers {
        evicting(server, "volatile-lru");
    }
    let mut command = leasectl.against_quorum(&quorum);
    command.args(["exec", "evicted", "--", "true"]);
    let output = complete(command);
    output.expect(0);
    assert_eq!(
        output.stderr.matches(EVICTION_WARNING).count(),
        1,
        "{output}"
    );
}

#[test]
fn no_eviction_warning_without_an_evicting_policy() {
    let leasectl = Leasectl::new();
    let server = RedisServer::start();
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let _: () = server.query(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let unlimited = RedisServer::start();
    let _: () = unlimited.query(&["CONFIG", "SET", "maxmemory", "0"]);
    let _: () = unlimited.query(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    for server in [&server, &unlimited] {
        let mut command = leasectl.against(server);
        command.args(["exec", "kept", "--", "true"]);
        let output = complete(command);
        output.expect(0);
        assert!(!output.stderr.contains(EVICTION_WARNING), "{output}");
    }
}

#[test]
fn an_evicting_policy_is_seen_without_config_through_info() {
    let leasectl = Leasectl::new();
    let server = RedisServer::start();
    evicting(&server, "allkeys-lfu");
    let _: () = server.query(&[
        "ACL",
        "SETUSER",
        "noconfig",
        "reset",
        "on",
        ">noconfig-pw",
        "~*",
        "&*",
        "+@all",
        "-config",
    ]);
    let url = format!("redis://noconfig:noconfig-pw@127.0.0.1:{}", server.port);
    let mut command = leasectl.command();
    command
        .args(["--endpoint", &url])
        .args(["exec", "evicted", "--", "true"]);
    let output = complete(command);
    output.expect(0);
    assert!(output.stderr.contains("allkeys-lfu"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// Issue 18 item 7: an instance down at connect, a lost subscription, `inspect --all`

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_down_at_connect_is_used_once_it_is_back() {
    let mut quorum = Quorum::start(3);
    quorum.servers[2].kill();
    let client = connect_within(BOUND, quorum.settings()).await;
    // It fails while down ...
    let info = client.inspect("back").await.expect("a majority answers");
    assert!(info.instances[2].error.is_some(), "{info:?}");
    // (The connection attempts that failure started end, refused, while it stays down: part
    // of the fault, not a wait for a condition.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| quorum.servers[2].restart());
    // ... and answers the first call after it came back (not one failed connection attempt
    // later: with a renewal every few seconds, that was seconds of an instance counted down).
    let info = client.inspect("back").await.expect("a majority answers");
    assert!(info.instances[2].error.is_none(), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_loses_one_subscription_subscribes_again() {
    let quorum = Quorum::start(3);
    for server in &quorum.servers {
        held_by_other(server, "resubscribe");
    }
    let client = connect_within(BOUND, quorum.settings()).await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("resubscribe", &woken_only(), BOUND).await })
    };
    let channel = release_channel("resubscribe");
    tokio::task::block_in_place(|| {
        for server in &quorum.servers {
            subscribed(server, "resubscribe");
        }
        // One instance drops the waiter's subscription (a failover, a proxy's idle cut).
        let _: i64 = query(
            &mut quorum.servers[1].connection(),
            &["CLIENT", "KILL", "TYPE", "pubsub"],
        );
        assert!(
            eventually(BOUND, || subscribers(
                &mut quorum.servers[1].connection(),
                &channel
            ) == 1),
            "the waiter subscribed again on the instance that dropped it"
        );
    });
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_subscribes_to_an_instance_that_was_down_when_it_began() {
    let mut quorum = Quorum::start(3);
    for server in &quorum.servers {
        held_by_other(server, "late");
    }
    quorum.servers[2].kill();
    let client = connect_within(BOUND, quorum.settings()).await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("late", &woken_only(), BOUND).await })
    };
    let channel = release_channel("late");
    tokio::task::block_in_place(|| {
        subscribed(&quorum.servers[0], "late");
        quorum.servers[2].restart();
        assert!(
            eventually(BOUND, || subscribers(
                &mut quorum.servers[2].connection(),
                &channel
            ) == 1),
            "the waiter subscribed to the instance once it was back"
        );
    });
    waiting.abort();
}

#[test]
fn inspect_all_names_the_instances_that_did_not_answer() {
    let mut quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    for server in &quorum.servers {
        held_by_other(server, "listed");
    }
    let down = quorum.addresses()[2].clone();
    quorum.servers[2].kill();
    let mut command = leasectl.against_quorum(&quorum);
    command.args(["inspect", "--all"]);
    let output = complete(command);
    output.expect(0);
    assert!(output.stdout.contains("listed"), "{output}");
    assert!(output.stderr.contains(&down), "names {down}\n{output}");
}

// ---------------------------------------------------------------------------------------------
// Issue 17 (S3): a waiter whose client already listens to the lease's releases tries once

/// When the waiter at `place` in `name`'s queue last confirmed it (its deadline).
fn deadline(server: &RedisServer, name: &str, place: &str) -> Option<f64> {
    server.query(&["ZSCORE", &deadlines_key(name), place])
}

/// A second waiter of a lease this client already listens to (for the first waiter) listens
/// before its first try, so a release after that try reaches it: it tries once and waits,
/// instead of trying a second time after subscribing (a script call more per handoff, in the
/// middle of it). The first waiter, which had to subscribe, still tries twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_waiter_of_a_lease_already_listened_to_tries_once_before_it_waits() {
    let server = RedisServer::start();
    let name = "listened";
    let owner = connect_within(BOUND, server.settings()).await;
    let held = acquired(
        owner
            .try_acquire(name, &options(Duration::from_secs(30)))
            .await,
    );
    let client = connect_within(BOUND, server.settings()).await;
    let wait = |client: &leasectl::LeaseClient| {
        let client = client.clone();
        tokio::spawn(async move { client.acquire(name, &woken_only(), BOUND).await })
    };
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    let first = wait(&client);
    // Each failed try reads the holder (HGETALL): the first waiter tried, subscribed, tried.
    tokio::task::block_in_place(|| {
        subscribed(&server, name);
        assert!(eventually(BOUND, || command_calls(&server, "hgetall") >= 2));
    });
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    let second = wait(&client);
    tokio::task::block_in_place(|| {
        let queued = || server.query::<Vec<String>>(&["ZRANGE", &queue_key(name), "0", "-1"]);
        assert!(eventually(BOUND, || queued().len() == 2), "{:?}", queued());
        // Once the second waiter's deadline moves (a try or a confirmation of its place), it
        // has made every try it makes before it waits.
        let place = queued()[1].clone();
        let at = deadline(&server, name, &place);
        assert!(eventually(BOUND, || deadline(&server, name, &place) != at));
    });
    assert!(within(BOUND, "the release", held.release()).await.unwrap());
    let first = acquired(within(BOUND, "the first waiter", first).await.unwrap());
    assert!(within(BOUND, "its release", first.release()).await.unwrap());
    let second = acquired(within(BOUND, "the second waiter", second).await.unwrap());
    assert_eq!(
        command_calls(&server, "hgetall"),
        1,
        "the second waiter found the lease held once"
    );
    assert!(within(BOUND, "the last release", second.release())
        .await
        .unwrap());
}

//! Quorum mode under one bad instance (issue 18): a fault on one client's path only (its own
//! proxy in front of an instance while other clients reach it directly), an instance of a bare
//! majority restarted empty, competitors with different TTLs, and the fence's instance restarted
//! or down. Each test breaks mutual exclusion (or the fence, or a command's start) on the code
//! before the fix.

use std::path::Path;
use std::time::{Duration, Instant};

use leasectl::{Acquire, Error, FencedWrite, Lease, LeaseClient, LeaseOptions, Settings};

use crate::leases::{acquired, connect_within, held, options, renewing, within};
use crate::process::{complete, Running};
use crate::proxy::Proxy;
use crate::support::{self, key, uptime, Leasectl, Quorum, RedisServer};

/// The failure bound of every wait: far beyond what any step needs, even on a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

/// A proxy in front of every instance of `quorum`: one client's own path to each.
fn paths(quorum: &Quorum) -> Vec<Proxy> {
    quorum
        .servers
        .iter()
        .map(|s| Proxy::start(s.port))
        .collect()
}

fn urls(proxies: &[Proxy]) -> Vec<String> {
    proxies.iter().map(Proxy::url).collect()
}

/// Settings over `urls` with both timeouts set to `timeout`.
fn settings(urls: &[String], timeout: Duration) -> Settings {
    let mut settings = Settings::for_endpoints(urls).expect("valid URLs");
    settings.connect_timeout = timeout;
    settings.sync_timeout = timeout;
    settings
}

/// Three instances, each up longer than `ttl`: a bare majority's grants count only from
/// instances older than the longest TTL.
fn older_quorum(ttl: Duration) -> Quorum {
    let quorum = Quorum::start(3);
    quorum.wait_older_than(ttl);
    quorum
}

/// A client that reaches every instance of `quorum` through its own proxy (returned, to hit
/// that client's path only), with both timeouts set to `timeout`.
async fn client_on_paths(quorum: &Quorum, timeout: Duration) -> (Vec<Proxy>, LeaseClient) {
    let proxies = paths(quorum);
    let client = connect_within(BOUND, settings(&urls(&proxies), timeout)).await;
    (proxies, client)
}

/// Acquires and releases "warm" with `options`, so that `client`'s first real call is not its
/// first (scripts loaded, each instance's uptime learned). Answers the release's outcome.
async fn warm_up(client: &LeaseClient, options: &LeaseOptions) -> leasectl::Result<bool> {
    let warm = within(BOUND, "acquire", client.try_acquire("warm", options)).await;
    within(BOUND, "release", acquired(warm).release()).await
}

/// Wall-clock nanoseconds written by a `date +%s%N` in `file`, once it is there.
fn stamp(file: &Path) -> Option<u128> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Item 1: with one instance blackholed on the holder's path only, `exec` with a 2 s TTL must
/// renew on schedule (its release subscription to that instance waits out `ConnectTimeout`
/// beside the renewals, not before them); a second `exec` that reaches every instance directly
/// gets the lease only after the first child ended.
#[test]
fn exec_renews_while_one_instance_is_blackholed_on_its_path() {
    let quorum = Quorum::start(3);
    // Fresh servers' grants count only when every instance answers.
    quorum.wait_older_than(Duration::from_secs(2));
    let proxies = paths(&quorum);
    proxies[2].set_blackhole(true);
    let leasectl = Leasectl::new();
    let dir = leasectl.dir().to_path_buf();
    let (first_start, first_end, second_start) = (
        dir.join("first.start"),
        dir.join("first.end"),
        dir.join("second.start"),
    );
    let mut first = leasectl.command();
    for url in urls(&proxies) {
        first.arg("--endpoint").arg(url);
    }
    first
        .env("RedisLeasing__AutoRenewInterval", "500ms")
        .args(["exec", "blackholed", "--ttl", "2s", "--"])
        .args(["sh", "-c"])
        .arg(format!(
            "date +%s%N > {0}.tmp && mv {0}.tmp {0}; sleep 6; date +%s%N > {1}",
            first_start.display(),
            first_end.display()
        ));
    let first = Running::spawn(first);
    assert!(
        support::eventually(BOUND, || stamp(&first_start).is_some()),
        "the first child never started"
    );
    let mut second = leasectl.against_quorum(&quorum);
    second
        .args(["exec", "blackholed", "--ttl", "2s", "--wait", "30s", "--"])
        .args(["sh", "-c"])
        .arg(format!("date +%s%N > {}", second_start.display()));
    let second = complete(second);
    second.succeeded();
    let first = first.finish();
    first.succeeded();
    let (ended, started) = (
        stamp(&first_end).expect("the first child ran to its end"),
        stamp(&second_start).expect("the second child ran"),
    );
    assert!(
        started > ended,
        "the second child started {} ms before the first ended",
        (ended - started) / 1_000_000
    );
}

/// Item 6: two of three instances 350 ms away (each way) and a 2 s TTL renewed every second:
/// the first renewal is timed from the acquire, so the lease is never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_are_timed_from_the_acquire_not_the_watchdog() {
    let quorum = Quorum::start(3);
    let (proxies, client) = client_on_paths(&quorum, BOUND).await;
    // Scripts loaded first (a first call of each is three round trips).
    let warm = options(Duration::from_secs(1));
    let warm = within(BOUND, "acquire", client.try_acquire("warm", &warm)).await;
    let warm = acquired(warm);
    within(BOUND, "extend", warm.extend())
        .await
        .expect("extend");
    let _ = warm.release().await;
    for proxy in &proxies[..2] {
        proxy.set_latency(Duration::from_millis(350));
    }
    let ttl = Duration::from_secs(2);
    let lease = acquired(
        within(
            BOUND,
            "acquire",
            client.try_acquire("far", &renewing(ttl, ttl / 2)),
        )
        .await,
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        error = lease.lost() => panic!(
            "the lease was lost after {} renewals: {error}",
            lease.renewals()
        ),
    }
    assert!(lease.renewals() >= 2, "renewed {} times", lease.renewals());
}

/// Holds "bare" for `ttl` on a bare majority {0, 1}: the holder's path to instance 2 is
/// blackholed (others reach it). Answers the holder's client, proxies and lease.
async fn held_on_a_bare_majority(
    quorum: &Quorum,
    ttl: Duration,
) -> (LeaseClient, Vec<Proxy>, leasectl::Lease) {
    let (proxies, client) = client_on_paths(quorum, Duration::from_secs(1)).await;
    proxies[2].set_blackhole(true);
    let lease = acquired(within(BOUND, "acquire", client.try_acquire("bare", &options(ttl))).await);
    assert!(!support::exists(&quorum.servers[2], &key("bare")));
    (client, proxies, lease)
}

/// Item 2: the lease is held on a bare majority {0, 1}; instance 1 restarts empty, and
/// instance 0 does not answer a second client. Instance 1's grant (young) with instance 2's
/// must not make a majority: silence is not an answer that the lease is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_grant_needs_every_other_instance_to_answer() {
    let mut quorum = Quorum::start(3);
    let ttl = Duration::from_secs(8);
    // Instance 2 must not be young itself: its grant would then not count anyway.
    quorum.wait_older_than(ttl);
    let (_holder, _proxies, lease) = held_on_a_bare_majority(&quorum, ttl).await;
    quorum.servers[1].restart();
    // The second client: instance 0 silent on its path, 1 and 2 direct.
    let silent = Proxy::start(quorum.servers[0].port);
    let mut endpoints = vec![silent.url()];
    endpoints.extend(quorum.servers[1..].iter().map(RedisServer::url));
    let second = connect_within(BOUND, settings(&endpoints, Duration::from_secs(1))).await;
    silent.set_blackhole(true);
    no_quorum_for(&second, ttl, &lease).await;
    assert!(
        support::eventually(BOUND, || !support::exists(&quorum.servers[2], &key("bare"))),
        "the refused attempt is undone"
    );
    // Once instance 0 answers again, it reports the holder.
    silent.set_blackhole(false);
    let holder = held(
        within(BOUND, "acquire", async {
            loop {
                match second.try_acquire("bare", &options(ttl)).await {
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    outcome => return outcome,
                }
            }
        })
        .await,
    );
    assert_eq!(holder.lease_id.as_deref(), Some(lease.id()));
}

/// Item 2 for a competitor that was connected before the restart (issue 17: each instance's
/// uptime is learned once per connection, not in every acquire): it had learned instance 1 to
/// be old. Instance 1 restarts empty, and instance 0 goes silent on the competitor's path: the
/// restart cost the competitor its connection, so its next grant from instance 1 is judged
/// anew (young), and with instance 2's does not make a majority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connected_before_a_restart_judges_the_instance_anew() {
    let ttl = Duration::from_secs(8);
    let mut quorum = older_quorum(ttl);
    let (path, second) = client_on_paths(&quorum, Duration::from_secs(1)).await;
    warm_up(&second, &options(ttl)).await.expect("released");
    let (_holder, _proxies, lease) = held_on_a_bare_majority(&quorum, ttl).await;
    quorum.servers[1].restart();
    path[0].set_blackhole(true);
    no_quorum_for(&second, ttl, &lease).await;
}

/// Item 3: a lease held for 20 s on a bare majority {0, 1}; instance 1 restarts empty. A
/// competitor with a 1 s TTL, once the instance is up longer than its own TTL, must still not
/// be granted the lease: "restarted recently" is judged against the longest TTL the name was
/// held with, which instance 0 remembers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_ttl_does_not_make_a_restarted_instance_old() {
    let ttl = Duration::from_secs(20);
    // A bare majority's grants count only from instances older than the TTL.
    let mut quorum = older_quorum(ttl);
    let (_holder, _proxies, lease) = held_on_a_bare_majority(&quorum, ttl).await;
    // The competitor hears instance 2 last: instances 0 (which remembers the 20 s TTL) and 1
    // answer first. (Were 0's answer last, 1 and 2 could decide alone: see the README's quorum
    // section on what differing TTLs do not survive.)
    restart_one_then_compete(&mut quorum, 2, &lease).await;
}

/// Item 3, when the instance that remembers the longer TTL is the slow one: the lease is held
/// for 8 s on a bare majority {0, 1} (the holder's acquire never reached instance 2, but a
/// renewal did); instance 1 restarts empty. A 1 s competitor whose first majority is {1, 2}
/// must not be granted the lease: instance 2 learnt the 8 s TTL from the renewal, so the
/// restarted instance 1 is young, and its grant waits for instance 0, which reports the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_the_holder_reached_remembers_its_ttl() {
    let ttl = Duration::from_secs(8);
    let mut quorum = older_quorum(ttl);
    // The holder's path to instance 2 refuses connections while it acquires.
    let (proxies, holder) = client_on_paths(&quorum, Duration::from_secs(1)).await;
    proxies[2].set_refuse(true);
    proxies[2].cut();
    let lease = acquired(within(BOUND, "acquire", holder.try_acquire("bare", &options(ttl))).await);
    proxies[2].set_refuse(false);
    // The acquire's call to instance 2 may still land late (its connection comes back); make
    // instance 2 one that missed it: without the lease, and without its TTL.
    let second_instance = &quorum.servers[2];
    support::eventually(Duration::from_secs(5), || {
        support::exists(second_instance, &key("bare"))
    });
    let longest = "lease:@longest-ttl{lease:bare}";
    second_instance.query::<i64>(&["DEL", &key("bare"), longest]);
    within(BOUND, "renewal", lease.extend())
        .await
        .expect("renewed on {0, 1}");
    assert!(!support::exists(second_instance, &key("bare")));
    restart_one_then_compete(&mut quorum, 0, &lease).await;
}

/// Instance 1 restarts empty; once it is up 3 s, a competitor with a 1 s TTL that hears
/// instance `last` 300 ms late must be told that `lease` holds "bare".
async fn restart_one_then_compete(quorum: &mut Quorum, last: usize, lease: &Lease) {
    quorum.servers[1].restart();
    assert!(
        support::eventually(BOUND, || uptime(&quorum.servers[1]) >= 3),
        "instance 1 up for 3 s"
    );
    let (path, second) = client_on_paths(quorum, BOUND).await;
    let short = options(Duration::from_secs(1));
    // Scripts loaded first (a first call is three round trips).
    let _ = warm_up(&second, &short).await;
    path[last].set_latency(Duration::from_millis(300));
    refused_while_held(&second, &short, lease).await;
}

/// `competitor` asks for "bare" with `ttl` and must be told there is no quorum (not granted it
/// while `lease` holds it).
async fn no_quorum_for(competitor: &LeaseClient, ttl: Duration, lease: &Lease) {
    let answer = within(
        BOUND,
        "acquire",
        competitor.try_acquire("bare", &options(ttl)),
    )
    .await;
    match answer {
        Err(Error::NoQuorum { .. }) => {}
        Ok(Acquire::Acquired(taken)) => {
            panic!("granted {} while {} still holds it", taken.id(), lease.id())
        }
        other => panic!("expected no quorum, got {other:?}"),
    }
}

/// `competitor` asks for "bare" with `options` and must be told it is held by `lease`.
async fn refused_while_held(competitor: &LeaseClient, options: &LeaseOptions, lease: &Lease) {
    match within(BOUND, "acquire", competitor.try_acquire("bare", options)).await {
        Ok(Acquire::Held(holder)) => assert_eq!(holder.lease_id.as_deref(), Some(lease.id())),
        Ok(Acquire::Acquired(taken)) => panic!(
            "a {:?} competitor got {} while {} still holds it (valid for {:?} more)",
            options.ttl,
            taken.id(),
            lease.id(),
            lease
                .valid_until()
                .saturating_duration_since(tokio::time::Instant::now())
        ),
        Err(error) => panic!("expected held, got {error}"),
    }
}

/// Item 4: in quorum mode the fence keeps the newest token on a majority. The first instance
/// restarted empty must not let a stale write through, and with it down `fence set` still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_survives_the_loss_of_any_minority() {
    let mut quorum = Quorum::start(3);
    let fence = connect_within(BOUND, settings(&quorum.urls(), Duration::from_secs(2))).await;
    let write = |value: &'static str, token: u64| {
        let fence = fence.clone();
        async move {
            within(
                BOUND,
                "fenced write",
                fence.fenced_set("resource", value, token),
            )
            .await
            .expect("fenced write")
        }
    };
    assert_eq!(write("old", 10).await, FencedWrite::Written);
    assert_eq!(write("new", 20).await, FencedWrite::Written);
    quorum.servers[0].restart();
    // The paused holder's late write, through the library and through `fence set`.
    assert_eq!(
        within(BOUND, "stale write", async {
            loop {
                match fence.fenced_set("resource", "old, late", 10).await {
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Ok(outcome) => return outcome,
                }
            }
        })
        .await,
        FencedWrite::Stale { newest: 20 }
    );
    let leasectl = Leasectl::new();
    let mut stale = leasectl.against_quorum(&quorum);
    stale.args([
        "fence",
        "set",
        "resource",
        "old, via the CLI",
        "--token",
        "10",
    ]);
    complete(stale).expect(3);
    // The first instance down: a majority still keeps the record.
    quorum.servers[0].kill();
    let mut newer = leasectl.against_quorum(&quorum);
    newer.args(["fence", "set", "resource", "newer", "--token", "30"]);
    complete(newer).succeeded();
    assert_eq!(
        write("old, with the first down", 20).await,
        FencedWrite::Stale { newest: 30 }
    );
    assert_eq!(
        quorum.servers[1].query::<Option<String>>(&["GET", "resource"]),
        Some("newer".to_string())
    );
}

/// Item 5: one instance blackholed on the CLI's path, with 20 s timeouts: a command's start
/// (the connect PING), the undo of a refused attempt and the release at the end of `exec` are
/// decided at the first majority, not after the silent instance's timeout.
#[test]
fn one_silent_instance_does_not_slow_every_command() {
    let quorum = Quorum::start(3);
    let proxies = paths(&quorum);
    let leasectl = Leasectl::new();
    let command = |args: &[&str]| {
        let mut command = leasectl.command();
        for url in urls(&proxies) {
            command.arg("--endpoint").arg(url);
        }
        command
            .env("RedisLeasing__ConnectTimeout", "20000")
            .env("RedisLeasing__SyncTimeout", "20000")
            .args(args);
        command
    };
    quorum.wait_older_than(Duration::from_secs(1));
    // Held by someone else on every instance, so that an attempt is refused.
    let ttl = Duration::from_secs(600);
    for server in &quorum.servers {
        support::write_lease(server, &key("slow"), ("other", "us-east"), 1, ttl);
    }
    proxies[1].set_blackhole(true);
    let timed = |args: &[&str], code: i32| {
        let started = Instant::now();
        complete(command(args)).expect(code);
        started.elapsed()
    };
    let refused = timed(&["exec", "slow", "--wait", "0s", "--", "true"], 3);
    let ran = timed(&["exec", "free", "--ttl", "1s", "--", "true"], 0);
    // Half the timeout: a wide margin on a loaded machine, and far below what waiting for the
    // silent instance costs (one timeout for the PING, one for the release or undo).
    for (what, took) in [("refused exec", refused), ("exec and release", ran)] {
        assert!(
            took < Duration::from_secs(10),
            "the {what} took {took:?}: it waited for the silent instance"
        );
    }
}

//! Several leases taken together (all or none): the library's sets in single and quorum mode,
//! overlapping sets asked for in opposite orders, and `run` / `exec` with repeated `--lease`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasectl::{AcquireSet, Error, Holder, LeaseClient, LeaseOptions, LeaseSet, Settings};

use crate::leases::{acquired, connect_within, options, renewing, within, woken_only};
use crate::process::{complete, Running};
use crate::support::{
    acquired_now, eventually, exists, fence_key, hgetall, instance_matrix, key, write_lease,
    Leasectl, Quorum, RedisServer, BOUND, LIMIT,
};

instance_matrix!(
    { single = 1, three = 3 };
    a_set_is_taken_whole_with_one_id_and_a_token_each,
    a_set_takes_nothing_while_one_of_its_leases_is_held,
    overlapping_sets_in_opposite_orders_never_deadlock_nor_both_win,
);

async fn connect(settings: Settings) -> LeaseClient {
    connect_within(BOUND, settings).await
}

/// The set of an outcome that must be `Acquired`.
fn taken(outcome: leasectl::Result<AcquireSet>) -> LeaseSet {
    match outcome.expect("acquire a set") {
        AcquireSet::Acquired(set) => set,
        AcquireSet::Held { name, holder } => {
            panic!("expected the set, but {name} is held by {holder:?}")
        }
    }
}

/// The held lease's name and holder of an outcome that must be `Held`.
fn refused(outcome: leasectl::Result<AcquireSet>) -> (String, Holder) {
    match outcome.expect("acquire a set") {
        AcquireSet::Held { name, holder } => (name, holder),
        AcquireSet::Acquired(set) => panic!("expected a held lease, but acquired {set:?}"),
    }
}

fn names(set: &LeaseSet) -> Vec<&str> {
    set.leases().iter().map(|lease| lease.name()).collect()
}

async fn a_set_is_taken_whole_with_one_id_and_a_token_each(instances: usize) {
    let quorum = Quorum::start(instances);
    let client = connect(quorum.settings()).await;
    let ttl = Duration::from_secs(30);
    // `a` was taken once before: its token goes on from there.
    let earlier = acquired(client.try_acquire("a", &options(ttl)).await);
    let earlier_token = earlier.fencing_token();
    assert!(earlier.release().await.unwrap());

    let set = taken(
        client
            .try_acquire_set(&["b", "a", "b"], &options(ttl).meta("instanceId", "w1"))
            .await,
    );
    assert_eq!(names(&set), ["a", "b"], "sorted, each once");
    assert!(
        set.leases()[0].fencing_token() > earlier_token,
        "a's token goes on"
    );
    for server in &quorum.servers {
        for lease in set.leases() {
            let fields = hgetall(server, &key(lease.name()));
            let port = server.port;
            assert_eq!(fields["leaseId"], set.id(), "{} on {port}", lease.name());
            let token = lease.fencing_token().to_string();
            assert_eq!(fields["fencingToken"], token, "{} on {port}", lease.name());
            assert_eq!(fields["meta_instanceId"], "w1");
        }
    }
    assert!(set.release().await.unwrap(), "every lease was still ours");
    // The release returns at a majority; the other instances' calls finish in the background.
    for server in &quorum.servers {
        let gone = || !exists(server, &key("a")) && !exists(server, &key("b"));
        assert!(tokio::task::block_in_place(|| eventually(LIMIT, gone)));
    }
}

async fn a_set_takes_nothing_while_one_of_its_leases_is_held(instances: usize) {
    let quorum = Quorum::start(instances);
    let client = connect(quorum.settings()).await;
    let ttl = Duration::from_secs(30);
    let holder = acquired(client.try_acquire("b", &options(ttl)).await);
    let holder_token = holder.fencing_token();

    let (name, seen) = refused(
        client
            .try_acquire_set(&["a", "b", "c"], &options(ttl))
            .await,
    );
    assert_eq!(name, "b");
    assert_eq!(seen.lease_id.as_deref(), Some(holder.id()));
    for server in &quorum.servers {
        for name in ["a", "c"] {
            assert!(
                !exists(server, &key(name)),
                "{name} taken on port {}",
                server.port
            );
            // In quorum mode a minority may have granted the set before the holder's own
            // acquire reached it (and the grant was undone); its counter moved, harmlessly.
            if instances == 1 {
                assert!(!exists(server, &fence_key(name)), "{name}'s counter moved");
            }
        }
    }

    assert!(holder.release().await.unwrap());
    let set = taken(
        client
            .try_acquire_set(&["a", "b", "c"], &options(ttl))
            .await,
    );
    assert_eq!(names(&set), ["a", "b", "c"]);
    assert!(
        set.leases()[1].fencing_token() > holder_token,
        "b's token goes on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_quorum_mode_a_majority_must_grant_the_whole_set() {
    let quorum = Quorum::start(3);
    let client = connect(quorum.settings()).await;
    let ttl = Duration::from_secs(30);
    // Someone else holds `b` on the first instance only: that instance grants nothing, the
    // other two grant the whole set.
    write_lease(&quorum.servers[0], &key("b"), ("other", "eu"), 7, ttl);
    // Taken after the other instances started (see `support::acquired_now`).
    acquired_now(&quorum.servers[0], &key("b"));
    let set = taken(client.try_acquire_set(&["a", "b"], &options(ttl)).await);
    assert!(
        !exists(&quorum.servers[0], &key("a")),
        "all or none on each instance"
    );
    for server in &quorum.servers[1..] {
        assert_eq!(hgetall(server, &key("a"))["leaseId"], set.id());
        assert_eq!(hgetall(server, &key("b"))["leaseId"], set.id());
    }
    assert!(set.release().await.unwrap());

    // Held on two instances (by different leases of the set): no majority grants it, and
    // what the third instance granted is undone.
    write_lease(&quorum.servers[1], &key("a"), ("other", "eu"), 7, ttl);
    let (name, holder) = refused(client.try_acquire_set(&["a", "b"], &options(ttl)).await);
    assert!(name == "a" || name == "b");
    assert_eq!(holder.lease_id.as_deref(), Some("id-of-other"));
    // A grant still under way when the attempt was decided is undone in the background.
    let undone = tokio::task::block_in_place(|| {
        crate::support::eventually(Duration::from_secs(30), || {
            !exists(&quorum.servers[2], &key("a")) && !exists(&quorum.servers[2], &key("b"))
        })
    });
    assert!(undone, "undone on the third instance");
}

/// Workers that each take their own set of the names `x`, `y`, `z` — overlapping, and in
/// opposite or cyclic orders (the classic deadlock) — `rounds` times, waiting as long as it
/// takes and holding each set a moment. Every worker must finish (no deadlock), no lease may
/// ever have two holders at once, and each lease's tokens must rise.
async fn overlapping_sets_take_turns(settings: Settings, rounds: usize) {
    let sets: [&[&str]; 5] = [
        &["x", "y"],
        &["y", "x"],
        &["y", "z"],
        &["z", "x"],
        &["x", "y", "z"],
    ];
    let inside: Arc<BTreeMap<&str, AtomicBool>> = Arc::new(
        ["x", "y", "z"]
            .into_iter()
            .map(|n| (n, AtomicBool::new(false)))
            .collect(),
    );
    let overlaps = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(BTreeMap::<String, Vec<u64>>::new()));
    let mut workers = Vec::new();
    for (worker, set) in sets.into_iter().enumerate() {
        let client = connect(settings.clone()).await;
        let (inside, overlaps, tokens) = (inside.clone(), overlaps.clone(), tokens.clone());
        let options = options(Duration::from_secs(30)).meta("instanceId", worker.to_string());
        workers.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let held = taken(client.acquire_set(set, &options, BOUND).await);
                for lease in held.leases() {
                    if inside[lease.name()].swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut tokens = tokens.lock().unwrap();
                    tokens
                        .entry(lease.name().to_string())
                        .or_default()
                        .push(lease.fencing_token());
                }
                // Widen the window in which an overlap would be seen.
                tokio::time::sleep(Duration::from_millis(2)).await;
                for lease in held.leases() {
                    inside[lease.name()].store(false, Ordering::SeqCst);
                }
                assert!(held.release().await.unwrap(), "the holder releases its set");
            }
        }));
    }
    for worker in workers {
        within(BOUND * 4, "every worker's rounds (a deadlock?)", worker)
            .await
            .expect("worker");
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two holders of one lease at once"
    );
    for (name, tokens) in tokens.lock().unwrap().iter() {
        assert!(
            tokens.windows(2).all(|pair| pair[0] < pair[1]),
            "{name}'s tokens: {tokens:?}"
        );
    }
}

async fn overlapping_sets_in_opposite_orders_never_deadlock_nor_both_win(instances: usize) {
    let quorum = Quorum::start(instances);
    let rounds = if instances == 1 { 20 } else { 8 };
    overlapping_sets_take_turns(quorum.settings(), rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_set_is_woken_by_the_release_of_the_lease_in_its_way() {
    let quorum = Quorum::start(1);
    let holder_client = connect(quorum.settings()).await;
    let holder = acquired(
        holder_client
            .try_acquire("b", &options(Duration::from_secs(60)))
            .await,
    );
    let waiter_client = connect(quorum.settings()).await;
    // The fallback poll is an hour: only the release notification can wake it in time.
    let waiter_options = woken_only();
    let (seen_sender, mut seen) = tokio::sync::watch::channel(0usize);
    let holder_id = holder.id().to_string();
    let waiter = tokio::spawn(async move {
        let names = ["a", "b"];
        waiter_client
            .acquire_set_observed(
                &names,
                &waiter_options,
                Duration::from_secs(600),
                |name, h| {
                    assert_eq!(
                        (name, h.lease_id.as_deref()),
                        ("b", Some(holder_id.as_str()))
                    );
                    seen_sender.send_modify(|count| *count += 1);
                },
            )
            .await
    });
    // The first failed try subscribes; after the second the waiter is listening.
    within(
        BOUND,
        "two observations",
        seen.wait_for(|count| *count >= 2),
    )
    .await
    .expect("the waiter is running");
    assert!(holder.release().await.unwrap());
    let set = taken(within(BOUND, "the waiter's wake-up", waiter).await.unwrap());
    assert_eq!(names(&set), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_lease_of_a_set_fires_the_sets_lost_signal() {
    let quorum = Quorum::start(1);
    let client = connect(quorum.settings()).await;
    let options = LeaseOptions {
        watch_releases: true,
        ..renewing(Duration::from_secs(3), Duration::from_millis(300))
    };
    let set = taken(client.try_acquire_set(&["a", "b"], &options).await);
    let lost = set.lost();
    let _: i64 = quorum.servers[0].query(&["DEL", &key("b")]);
    match within(BOUND, "the lost signal", lost).await {
        Error::Lost { name, .. } => assert_eq!(name, "b"),
        other => panic!("expected a lost lease, got {other}"),
    }
    assert!(!set.release().await.unwrap(), "b was no longer ours");
    assert!(
        !exists(&quorum.servers[0], &key("a")),
        "a is released all the same"
    );
}

// ---------------------------------------------------------------------------------------------
// The command line

#[test]
fn exec_holds_every_lease_and_tells_the_child_each_token() {
    let (server, leasectl) = (&RedisServer::start(), Leasectl::new());
    let script = "echo \"$LEASECTL_LEASE $LEASECTL_LEASE_ID $LEASECTL_FENCING_TOKEN $LEASECTL_FENCING_TOKENS\" > env; \
                  while [ ! -e go ]; do sleep 0.05; done";
    let mut command = leasectl.against(server);
    command.args(["exec", "b", "--lease", "a", "--", "sh", "-c", script]);
    let running = Running::spawn(command);
    let env_file = leasectl.dir().join("env");
    let recorded = crate::support::eventually(BOUND, || {
        std::fs::read_to_string(&env_file).is_ok_and(|text| text.ends_with('\n'))
    });
    assert!(recorded, "the child did not start");
    let line = std::fs::read_to_string(&env_file).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{line}");
    let tokens: Vec<(&str, &str)> = fields[3]
        .split(',')
        .map(|pair| pair.split_once('=').expect("name=token"))
        .collect();
    assert_eq!(
        tokens.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        ["a", "b"],
        "{line}"
    );
    assert_eq!(
        (fields[0], fields[2]),
        ("b", tokens[1].1),
        "b's token is the main one: {line}"
    );
    for (name, token) in tokens {
        let hash = hgetall(server, &key(name));
        assert_eq!(
            (hash["leaseId"].as_str(), hash["fencingToken"].as_str()),
            (fields[1], token)
        );
    }
    // Another exec wanting one of them is turned away, naming it.
    let mut other = leasectl.against(server);
    other.args(["exec", "c", "--lease", "a", "--", "true"]);
    let output = complete(other);
    assert_eq!(output.code(), 3, "{output}");
    assert!(output.stderr.contains("a is held by"), "{output}");
    assert!(
        !exists(server, &key("c")),
        "nothing of the refused set was taken"
    );

    std::fs::File::create(leasectl.dir().join("go")).unwrap();
    running.finish().succeeded();
    assert!(
        !exists(server, &key("a")) && !exists(server, &key("b")),
        "both released"
    );
}

#[test]
fn execs_wanting_overlapping_sets_in_opposite_orders_run_one_at_a_time() {
    let (server, leasectl) = (&RedisServer::start(), Leasectl::new());
    // A child that finds another inside (its directory already there) records an overlap.
    let script = "mkdir inside 2>/dev/null || echo overlap >> overlaps; sleep 0.1; rmdir inside; echo done >> runs";
    let orders: [&[&str]; 4] = [
        &["x", "--lease", "y"],
        &["y", "--lease", "x"],
        &["x", "--lease", "y"],
        &["y", "--lease", "x"],
    ];
    let running: Vec<Running> = orders
        .iter()
        .map(|order| {
            let mut command = leasectl.against(server);
            command
                .arg("exec")
                .args(*order)
                .args(["--wait", "60s", "--", "sh", "-c", script]);
            Running::spawn(command)
        })
        .collect();
    for process in running {
        process.finish().succeeded();
    }
    let runs = std::fs::read_to_string(leasectl.dir().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 4, "every command ran once");
    assert!(
        !leasectl.dir().join("overlaps").exists(),
        "two commands held a lease at once"
    );
}

#[test]
fn run_with_several_leases_names_the_one_that_is_held() {
    let (server, leasectl) = (&RedisServer::start(), Leasectl::new());
    write_lease(
        server,
        &key("b"),
        ("us-east-1", "us-east"),
        5,
        Duration::from_secs(60),
    );
    let output = complete(run_a_and_b(&leasectl, server, &[]));
    assert_eq!(output.code(), 3, "{output}");
    assert!(
        output
            .stdout
            .contains("Held by: us-east-1 (us-east) | Lease: b"),
        "{output}"
    );
    assert!(!exists(server, &key("a")), "nothing of the set was taken");

    let _: i64 = server.query(&["DEL", &key("b")]);
    let output = complete(run_a_and_b(&leasectl, server, &["--work", "1s"]));
    output.succeeded();
    assert!(output.stdout.contains("Lock released"), "{output}");
}

/// `leasectl run` of instance eu-1 over the leases "a" and "b", with `more` arguments.
fn run_a_and_b(leasectl: &Leasectl, server: &RedisServer, more: &[&str]) -> std::process::Command {
    let mut command = leasectl.against(server);
    command
        .args(["run", "--instance", "eu-1", "--region", "eu"])
        .args(["--lease", "a", "--lease", "b"])
        .args(more);
    command
}

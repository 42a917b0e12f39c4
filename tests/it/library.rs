//! The library against real `redis-server` processes: contention, renewal, loss, fencing,
//! waiting, the key formats of SPEC 2, `inspect_all`, and bad inputs.

use std::sync::Arc;
use std::time::Duration;

use leasectl::{
    Acquire, Error, Holder, KeyFormat, Lease, LeaseClient, LostReason, Settings, MAX_NAME_LEN,
};
use tokio::time::Instant;

use crate::leases::{
    acquired, connect_within, hand_over, held, options, renewing, take_turns, within, woken_only,
};
use crate::support::{
    eventually, fence_key, free_port, key, query, release_channel, subscribers, RedisServer, BOUND,
    SEED_002_FIELDS,
};

async fn connect(server: &RedisServer) -> LeaseClient {
    connect_with(server.settings()).await
}

async fn connect_with(settings: Settings) -> LeaseClient {
    connect_within(BOUND, settings).await
}

/// The drift allowance of SPEC 6: 1% of the TTL + 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_among_many_concurrent_acquirers() {
    let server = RedisServer::start();
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connect(&server).await);
    }
    let mut last_token = 0;
    for round in 0..5 {
        let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let attempts: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let (client, barrier) = (client.clone(), barrier.clone());
                let options = options(Duration::from_secs(30))
                    .meta("instanceId", format!("worker-{i}"))
                    .meta("region", "us-east");
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.try_acquire("contended", &options).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut holders = Vec::new();
        for (i, attempt) in attempts.into_iter().enumerate() {
            match within(BOUND, "try_acquire", attempt).await.unwrap() {
                Ok(Acquire::Acquired(lease)) => winners.push((i, lease)),
                Ok(Acquire::Held(holder)) => holders.push(holder),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        assert_eq!(holders.len(), clients.len() - 1, "round {round}");
        let (winner_index, winner) = winners.pop().unwrap();
        for holder in &holders {
            assert_eq!(holder.lease_id.as_deref(), Some(winner.id()));
            assert_eq!(holder.fencing_token, Some(winner.fencing_token()));
            assert_eq!(
                holder.display_name(),
                format!("worker-{winner_index} (us-east)")
            );
        }
        assert!(winner.fencing_token() > last_token);
        last_token = winner.fencing_token();
        assert!(winner.release().await.unwrap(), "the winner releases");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_sections_never_overlap_and_tokens_increase_in_acquisition_order() {
    const WORKERS: usize = 6;
    const ROUNDS: usize = 10;
    let server = RedisServer::start();
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        clients.push(connect(&server).await);
    }
    let (options, wait) = (options(Duration::from_secs(30)), Duration::from_secs(60));
    take_turns(clients, ROUNDS, &options, wait, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_a_lease_past_its_ttl() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let ttl = Duration::from_secs(2);
    let options = renewing(ttl, Duration::from_millis(250));
    let lease = acquired(client.try_acquire("renewed", &options).await);
    let lost = lease.lost();
    tokio::select! {
        _ = tokio::time::sleep(ttl * 3) => {}
        error = lost => panic!("a renewed lease was lost: {error}"),
    }
    let mut redis = server.connection();
    let id: Option<String> = query(&mut redis, &["HGET", &key("renewed"), "leaseId"]);
    assert_eq!(
        id.as_deref(),
        Some(lease.id()),
        "the key still holds our lease"
    );
    assert!(lease.renewals() > 0);
    assert!(lease.lost_error().is_none());
    assert!(lease.release().await.unwrap());
    let exists: i64 = query(&mut redis, &["EXISTS", &key("renewed")]);
    assert_eq!(exists, 0, "released");
}

/// A server and a lease on it named "watched", renewed often but with a long TTL: within the
/// wait bound, only a renewal that finds the key changed can end it.
async fn watched_lease() -> (RedisServer, LeaseClient, Lease) {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = renewing(Duration::from_secs(60), Duration::from_millis(100));
    let lease = acquired(client.try_acquire("watched", &options).await);
    (server, client, lease)
}

/// Waits for the lease's lost signal and checks that it says the key is no longer ours.
async fn assert_lost_as_not_owner(lease: &Lease) {
    let error = within(BOUND, "the lost signal", lease.lost()).await;
    match &error {
        Error::Lost { name, reason } => {
            assert_eq!(name, "watched");
            assert_eq!(reason, &LostReason::NotOwner);
        }
        other => panic!("expected Error::Lost, got {other:?}"),
    }
    let again = lease.lost_error().map(|e| e.to_string());
    assert_eq!(again, Some(error.to_string()), "lost_error agrees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_signalled_lost() {
    let (server, _client, lease) = watched_lease().await;
    let _: i64 = query(&mut server.connection(), &["DEL", &key("watched")]);
    assert_lost_as_not_owner(&lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_released_lease_is_signalled_lost() {
    let (_server, client, lease) = watched_lease().await;
    assert!(
        client.force_release("watched").await.unwrap(),
        "the key was there"
    );
    assert_lost_as_not_owner(&lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_over_by_another_lease_id_is_signalled_lost() {
    let (server, _client, lease) = watched_lease().await;
    let args = ["HSET", &key("watched"), "leaseId", "someone-else"];
    let _: i64 = query(&mut server.connection(), &args);
    assert_lost_as_not_owner(&lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replaced_by_another_type_is_signalled_lost() {
    let (server, _client, lease) = watched_lease().await;
    let args = ["SET", &key("watched"), "a-redlock-token"];
    let _: () = query(&mut server.connection(), &args);
    assert_lost_as_not_owner(&lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_signals_the_lease_expired() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let ttl = Duration::from_secs(2);
    let options = renewing(ttl, Duration::from_millis(250));
    let t0 = Instant::now();
    let lease = acquired(client.try_acquire("paused", &options).await);
    let first_valid_until = lease.valid_until();
    // Validity counts from the moment the request left, minus the drift allowance.
    assert!(first_valid_until + drift(ttl) >= t0 + ttl);
    assert!(first_valid_until + drift(ttl) <= Instant::now() + ttl);

    within(BOUND, "a renewal", async {
        while lease.renewals() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let renewed_valid_until = lease.valid_until();
    assert!(
        renewed_valid_until > first_valid_until,
        "a renewal moves validity on"
    );
    assert!(renewed_valid_until + drift(ttl) <= Instant::now() + ttl);

    let lost = lease.lost();
    server.pause();
    let error = within(BOUND, "the lost signal", lost).await;
    server.resume();
    match error {
        Error::Lost { reason, .. } => assert_eq!(reason, LostReason::Expired),
        other => panic!("expected Error::Lost, got {other:?}"),
    }
    assert!(
        matches!(lease.extend().await, Err(Error::Lost { .. })),
        "a lost lease is never extended"
    );
    drop(lease);

    // The same client works again once the server answers; the old key runs out meanwhile.
    let wait = Duration::from_secs(60);
    let again = within(
        BOUND,
        "re-acquire",
        client.acquire("paused", &options, wait),
    )
    .await;
    assert!(acquired(again).release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_lease_id_can_neither_extend_nor_release() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let ttl = Duration::from_secs(30);
    let lease = acquired(client.try_acquire("guarded", &options(ttl)).await);

    assert!(!client.release("guarded", "not-the-id").await.unwrap());
    let id: Option<String> = query(&mut redis, &["HGET", &key("guarded"), "leaseId"]);
    assert_eq!(id.as_deref(), Some(lease.id()), "a wrong id leaves the key");

    let foreign_pttl: i64 = 3_600_000;
    let _: i64 = query(&mut redis, &["HSET", &key("guarded"), "leaseId", "foreign"]);
    let _: i64 = query(
        &mut redis,
        &["PEXPIRE", &key("guarded"), &foreign_pttl.to_string()],
    );
    match lease.extend().await {
        Err(Error::Lost { reason, .. }) => assert_eq!(reason, LostReason::NotOwner),
        other => panic!("extending a foreign lease must fail as lost, got {other:?}"),
    }
    let pttl: i64 = query(&mut redis, &["PTTL", &key("guarded")]);
    assert!(
        pttl > ttl.as_millis() as i64 * 10,
        "the foreign key's TTL was reset to ours: {pttl} ms"
    );

    assert!(
        !lease.release().await.unwrap(),
        "nothing of ours to release"
    );
    let id: Option<String> = query(&mut redis, &["HGET", &key("guarded"), "leaseId"]);
    assert_eq!(
        id.as_deref(),
        Some("foreign"),
        "the foreign lease is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase_and_survive_releases() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let options = options(Duration::from_secs(30));
    let mut last = 0;
    for _ in 0..50 {
        let lease = acquired(client.try_acquire("fenced", &options).await);
        assert!(
            lease.fencing_token() > last,
            "{} after {last}",
            lease.fencing_token()
        );
        last = lease.fencing_token();
        let stored: Option<String> = query(&mut redis, &["HGET", &key("fenced"), "fencingToken"]);
        assert_eq!(stored, Some(last.to_string()), "the hash carries the token");
        assert!(lease.release().await.unwrap());
    }
    let counter: Option<String> = query(&mut redis, &["GET", &fence_key("fenced")]);
    assert_eq!(
        counter,
        Some(last.to_string()),
        "the counter survives release"
    );
    let fence_ttl: i64 = query(&mut redis, &["PTTL", &fence_key("fenced")]);
    assert_eq!(fence_ttl, -1, "the counter never expires");

    let lease = acquired(client.try_acquire("fenced", &options).await);
    assert!(lease.fencing_token() > last);
    last = lease.fencing_token();
    assert!(client.force_release("fenced").await.unwrap());
    assert!(!lease.release().await.unwrap(), "already gone");
    let counter: Option<String> = query(&mut redis, &["GET", &fence_key("fenced")]);
    assert_eq!(
        counter,
        Some(last.to_string()),
        "the counter survives force_release"
    );
    let lease = acquired(client.try_acquire("fenced", &options).await);
    assert!(lease.fencing_token() > last, "tokens go on increasing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_a_release() {
    let server = RedisServer::start();
    let holder_client = connect(&server).await;
    let waiter_client = connect(&server).await;
    // Without the notification the waiter would sleep until its wait or the holder's TTL runs
    // out (ten minutes each; its fallback poll is an hour): only the release can wake it.
    let holder = acquired(
        holder_client
            .try_acquire("handoff", &options(Duration::from_secs(600)))
            .await,
    );
    hand_over(BOUND, holder, waiter_client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiters_of_a_client_share_one_pub_sub_connection() {
    let server = RedisServer::start();
    let holder_client = connect(&server).await;
    let waiter_client = connect(&server).await;
    let names = ["shared-a", "shared-b", "shared-c"];
    let mut holders = Vec::new();
    for name in names {
        let outcome = holder_client
            .try_acquire(name, &options(Duration::from_secs(600)))
            .await;
        holders.push(acquired(outcome));
    }
    // Two waiters for each lease, from one client (and its clones).
    let waiter_options = woken_only();
    let mut waiters = Vec::new();
    for name in names.into_iter().chain(names) {
        let (client, options) = (waiter_client.clone(), waiter_options.clone());
        waiters.push(tokio::spawn(async move {
            let lease = acquired(client.acquire(name, &options, BOUND).await);
            lease.release().await
        }));
    }
    let mut redis = server.connection();
    let listening = tokio::task::spawn_blocking(move || {
        let listening = eventually(BOUND, || {
            names
                .iter()
                .all(|name| subscribers(&mut redis, &release_channel(name)) == 1)
        });
        let clients: String = query(&mut redis, &["CLIENT", "LIST", "TYPE", "pubsub"]);
        (listening, clients)
    });
    let (listening, clients) = listening.await.unwrap();
    assert!(listening, "every lease has one subscriber");
    assert_eq!(clients.lines().count(), 1, "{clients}");
    for holder in holders {
        assert!(within(BOUND, "release", holder.release()).await.unwrap());
    }
    for waiter in waiters {
        let released = within(BOUND, "a waiter's turn", waiter).await.unwrap();
        assert!(released.expect("release"), "each waiter got its lease");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_subscription_died_subscribes_again_and_is_woken() {
    let server = RedisServer::start();
    let holder_client = connect(&server).await;
    let waiter_client = connect(&server).await;
    let holder = acquired(
        holder_client
            .try_acquire("resubscribed", &options(Duration::from_secs(600)))
            .await,
    );
    // Its fallback poll is an hour: only a notification can wake it within the bound.
    let waiter_options = woken_only();
    let (seen_sender, mut seen) = tokio::sync::watch::channel(0usize);
    let waiter = tokio::spawn(async move {
        let observe = |_: &Holder| seen_sender.send_modify(|count| *count += 1);
        waiter_client
            .acquire_observed(
                "resubscribed",
                &waiter_options,
                Duration::from_secs(600),
                observe,
            )
            .await
    });
    within(BOUND, "listening", seen.wait_for(|count| *count >= 2))
        .await
        .expect("the waiter is running");
    // Its pub/sub connection dies (as in a failover or a proxy's cut).
    let mut redis = server.connection();
    let killed: i64 = query(&mut redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, 1);
    let resubscribed = tokio::task::spawn_blocking(move || {
        eventually(BOUND, || {
            subscribers(&mut redis, &release_channel("resubscribed")) == 1
        })
    });
    assert!(resubscribed.await.unwrap(), "the waiter subscribed again");
    // One try when the connection died, one after subscribing again: no busy loop on the
    // ended stream.
    assert!(*seen.borrow() <= 4, "{} tries", *seen.borrow());
    let token = holder.fencing_token();
    assert!(within(BOUND, "release", holder.release()).await.unwrap());
    let lease = acquired(within(BOUND, "the waiter's wake-up", waiter).await.unwrap());
    assert!(lease.fencing_token() > token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_wait_runs_out_gets_the_holder() {
    let server = RedisServer::start();
    let holder = acquired(
        connect(&server)
            .await
            .try_acquire(
                "busy",
                &options(Duration::from_secs(60)).meta("instanceId", "first"),
            )
            .await,
    );
    let waiter = connect(&server).await;
    let outcome = within(
        BOUND,
        "a short wait",
        waiter.acquire(
            "busy",
            &options(Duration::from_secs(60)),
            Duration::from_millis(300),
        ),
    )
    .await;
    let seen = held(outcome);
    assert_eq!(seen.lease_id.as_deref(), Some(holder.id()));
    assert_eq!(seen.display_name(), "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_never_sleeps_past_the_holders_ttl() {
    let server = RedisServer::start();
    // A holder that neither renews nor releases: its key simply runs out.
    let holder = acquired(
        connect(&server)
            .await
            .try_acquire("expiring", &options(Duration::from_secs(1)))
            .await,
    );
    let waiter = connect(&server).await;
    let waiter_options = woken_only();
    let outcome = within(
        BOUND,
        "acquiring after the holder's expiry",
        waiter.acquire("expiring", &waiter_options, Duration::from_secs(600)),
    )
    .await;
    let lease = acquired(outcome);
    assert!(lease.fencing_token() > holder.fencing_token());
    match within(BOUND, "the old holder's lost signal", holder.lost()).await {
        Error::Lost { reason, .. } => assert_eq!(reason, LostReason::Expired),
        other => panic!("expected Error::Lost, got {other:?}"),
    }
}

/// Writes a key in another tool's format with `write`, then checks that `inspect` reads it
/// with `check`, that `try_acquire` and `release` answer held / false, and that the key is
/// unchanged (DUMP and TTL) afterwards.
async fn foreign_key(name: &str, write: &[&[&str]], check: impl Fn(&Holder)) {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    for command in write {
        let _: redis::Value = query(&mut redis, command);
    }
    let before: Vec<u8> = query(&mut redis, &["DUMP", &key(name)]);
    let ttl_before: i64 = query(&mut redis, &["PTTL", &key(name)]);

    let info = client.inspect(name).await.expect("inspect");
    assert_eq!(
        (info.name.as_str(), info.key.as_str()),
        (name, key(name).as_str())
    );
    let holder = info.holder.expect("a foreign key is a holder");
    check(&holder);
    assert_eq!(holder.ttl.is_none(), ttl_before == -1);

    let seen = held(
        client
            .try_acquire(name, &options(Duration::from_secs(30)))
            .await,
    );
    assert_eq!(
        (seen.format, seen.lease_id),
        (holder.format, holder.lease_id)
    );
    assert!(!client.release(name, "not-the-id").await.unwrap());

    let after: Vec<u8> = query(&mut redis, &["DUMP", &key(name)]);
    assert_eq!(before, after, "the value is unchanged");
    let ttl_after: i64 = query(&mut redis, &["PTTL", &key(name)]);
    if ttl_before == -1 {
        assert_eq!(ttl_after, -1, "no TTL was added");
    } else {
        assert!(
            ttl_after > 0 && ttl_after <= ttl_before,
            "the TTL was not reset"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_002_hash_without_fencing_token_is_read_and_respected() {
    let k = key("seed");
    let mut hset = vec!["HSET", k.as_str()];
    hset.extend_from_slice(SEED_002_FIELDS);
    let write: &[&[&str]] = &[&hset, &["PEXPIRE", &k, "600000"]];
    foreign_key("seed", write, |holder| {
        assert_eq!(holder.format, KeyFormat::Hash);
        assert_eq!(holder.lease_id.as_deref(), Some("abc123-def456-ghi789"));
        assert_eq!(
            holder.acquired_at.as_deref(),
            Some("2025-12-25T21:00:00.000Z")
        );
        assert_eq!(holder.fencing_token, None);
        let metadata: Vec<_> = holder.metadata.keys().map(String::as_str).collect();
        assert_eq!(metadata, ["hostname", "instanceId", "region", "startTime"]);
        assert_eq!(holder.metadata["hostname"], "MACHINE-NAME");
        assert_eq!(holder.display_name(), "us-east-1 (us-east)");
        let ttl = holder.ttl.expect("a TTL");
        assert!(ttl > Duration::ZERO && ttl <= Duration::from_secs(600));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotnet_json_string_is_read_and_respected() {
    let json = r#"{"leaseId":"L-42","ownerId":"instance-01","acquiredAt":"2025-12-25T12:00:00Z","metadata":{"region":"eu-west","version":"1.0.0"}}"#;
    let k = key("dotnet");
    foreign_key("dotnet", &[&["SET", &k, json]], |holder| {
        assert_eq!(holder.format, KeyFormat::Json);
        assert_eq!(holder.lease_id.as_deref(), Some("L-42"));
        assert_eq!(holder.owner_id.as_deref(), Some("instance-01"));
        assert_eq!(holder.acquired_at.as_deref(), Some("2025-12-25T12:00:00Z"));
        assert_eq!(holder.metadata["version"], "1.0.0");
        assert_eq!(holder.display_name(), "instance-01 (eu-west)");
        assert_eq!(holder.ttl, None, "the key never expires");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_token_string_is_read_and_respected() {
    let k = key("redlock");
    foreign_key(
        "redlock",
        &[&["SET", &k, "9f8e7d6c-token", "PX", "600000"]],
        |holder| {
            assert_eq!(holder.format, KeyFormat::Token);
            assert_eq!(holder.lease_id.as_deref(), Some("9f8e7d6c-token"));
            assert_eq!(holder.display_name(), "9f8e7d6c-token");
            assert!(holder.ttl.is_some());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_read_and_respected() {
    let k = key("list");
    foreign_key("list", &[&["RPUSH", &k, "a", "b"]], |holder| {
        assert_eq!(holder.format, KeyFormat::Other("list".into()));
        assert_eq!(holder.lease_id, None);
        assert_eq!(holder.display_name(), "unknown holder");
        assert_eq!(holder.ttl, None);
    })
    .await;
}

/// The names `inspect_all` lists.
async fn listed(client: &LeaseClient) -> Vec<String> {
    let infos = client.inspect_all().await.expect("inspect_all");
    for info in &infos {
        assert_eq!(info.key, client.settings().key_for(&info.name));
        assert!(info.holder.is_some());
    }
    infos.into_iter().map(|info| info.name).collect()
}

fn settings_with_prefix(server: &RedisServer, prefix: &str) -> Settings {
    Settings {
        key_prefix: prefix.to_string(),
        ..server.settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_lists_only_the_leases_under_the_prefix_sorted() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let mut leases = Vec::new();
    for name in ["gamma", "alpha", "beta"] {
        leases.push(acquired(client.try_acquire(name, &options).await));
    }
    // Released leases leave their fence counters behind, and are not listed.
    acquired(client.try_acquire("released", &options).await)
        .release()
        .await
        .unwrap();
    let mut redis = server.connection();
    let _: () = query(&mut redis, &["SET", &key("delta"), "a-redlock-token"]);
    let _: () = query(&mut redis, &["SET", "other:thing", "x"]);
    let _: () = query(&mut redis, &["SET", "leasefoo", "x"]);
    assert_eq!(listed(&client).await, ["alpha", "beta", "delta", "gamma"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_hides_fence_counters_inside_a_hash_tagged_prefix() {
    let server = RedisServer::start();
    let client = connect_with(settings_with_prefix(&server, "{app}:")).await;
    let options = options(Duration::from_secs(60));
    let _two = acquired(client.try_acquire("two", &options).await);
    let _one = acquired(client.try_acquire("one", &options).await);
    let fence: Option<String> = query(&mut server.connection(), &["GET", "{app}:@fence:one"]);
    assert!(fence.is_some(), "the fence counter is under the prefix");
    assert_eq!(listed(&client).await, ["one", "two"]);
}

/// Lease names that read like leasectl's own keys (a fencing counter, a queue) are leases like
/// any other: each is free until taken, and `inspect_all` lists every lease and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_look_like_internal_keys_are_independent_leases() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let mut held_here = Vec::new();
    let pairs = [
        ("{job}", "{job}:fence"),
        ("job", "job:fence"),
        ("{q}", "{q}:queue"),
    ];
    for (first, second) in pairs {
        held_here.push(acquired(client.try_acquire(first, &options).await));
        // A waiter queues on the first lease, so that its queue exists too.
        let waiting = client.acquire(first, &options, Duration::from_millis(300));
        assert!(matches!(waiting.await.unwrap(), Acquire::Held(_)));
        let info = client.inspect(second).await.unwrap();
        assert!(info.holder.is_none(), "{second} is free: {:?}", info.holder);
        held_here.push(acquired(client.try_acquire(second, &options).await));
    }
    let mut names: Vec<&str> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    names.sort();
    assert_eq!(listed(&client).await, names);
    for lease in held_here {
        lease.release().await.unwrap();
    }
    assert!(listed(&client).await.is_empty());
}

/// Every name leasectl keeps beside a lease starts with `@` after the prefix, so a lease name
/// may not: it is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_the_internal_namespace_is_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let refused = client.try_acquire("@fence{lease:job}", &options).await;
    assert!(matches!(refused, Err(Error::Settings(_))), "{refused:?}");
    let _job = acquired(client.try_acquire("job", &options).await);
    assert!(
        query::<Option<String>>(&mut server.connection(), &["GET", &fence_key("job")]).is_some()
    );
}

/// The fencing counter moved when every internal key came under the prefix; a lease taken after
/// the move still gets a larger token than one an older version handed out (the clock floor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_rising_across_the_move_of_the_fencing_counter() {
    let server = RedisServer::start();
    let mut redis = server.connection();
    let (seconds, micros): (u64, u64) = query(&mut redis, &["TIME"]);
    let older = (seconds * 1_000_000 + micros).to_string();
    let _: () = query(&mut redis, &["SET", "{lease:job}:fence", &older]);
    let client = connect(&server).await;
    let lease = acquired(
        client
            .try_acquire("job", &options(Duration::from_secs(60)))
            .await,
    );
    assert!(
        lease.fencing_token() > older.parse().unwrap(),
        "{} <= {older}",
        lease.fencing_token()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_lists_foreign_keys_whose_names_we_would_refuse() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let _lease = acquired(
        client
            .try_acquire("ours", &options(Duration::from_secs(60)))
            .await,
    );
    let mut redis = server.connection();
    let long = "y".repeat(MAX_NAME_LEN + 1);
    for name in ["", long.as_str()] {
        let _: () = query(&mut redis, &["SET", &key(name), "another-tools-token"]);
    }
    // A key that is not UTF-8 cannot be named through the API: it is skipped, not an error.
    let _: () = redis::cmd("SET")
        .arg(b"lease:\xff\xfe".as_slice())
        .arg("x")
        .query(&mut redis)
        .unwrap();
    assert_eq!(listed(&client).await, ["", "ours", long.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_treats_glob_characters_in_the_prefix_literally() {
    let server = RedisServer::start();
    let client = connect_with(settings_with_prefix(&server, "a*[")).await;
    let options = options(Duration::from_secs(60));
    let _one = acquired(client.try_acquire("one", &options).await);
    let _two = acquired(client.try_acquire("two", &options).await);
    let mut redis = server.connection();
    for other in ["abc[x", "a[", "aX[y", "a*", "a*x[y"] {
        let _: () = query(&mut redis, &["SET", other, "not-ours"]);
    }
    let _default = acquired(connect(&server).await.try_acquire("z", &options).await);
    assert_eq!(listed(&client).await, ["one", "two"]);
}

/// Asserts that `outcome` is an `Error::Settings`.
fn assert_settings_error<T: std::fmt::Debug>(what: &str, outcome: leasectl::Result<T>) {
    match outcome {
        Err(Error::Settings(message)) => assert!(!message.is_empty(), "{what}"),
        other => panic!("{what}: expected Error::Settings, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_huge_lease_names_are_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(30));
    let huge = "x".repeat(MAX_NAME_LEN + 1);
    for name in ["", huge.as_str()] {
        let what = format!("a name of {} bytes", name.len());
        assert_settings_error(&what, client.try_acquire(name, &options).await);
        let wait = Duration::from_secs(1);
        assert_settings_error(&what, client.acquire(name, &options, wait).await);
        assert_settings_error(&what, client.inspect(name).await);
        assert_settings_error(&what, client.release(name, "some-id").await);
        assert_settings_error(&what, client.force_release(name).await);
    }
    let longest = "x".repeat(MAX_NAME_LEN);
    let lease = acquired(client.try_acquire(&longest, &options).await);
    assert!(
        lease.release().await.unwrap(),
        "the longest allowed name works"
    );
    let keys: i64 = query(&mut server.connection(), &["DBSIZE"]);
    assert_eq!(keys, 1, "only the longest name's fence counter was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_ttl_is_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    for ttl in [Duration::ZERO, Duration::from_micros(500)] {
        let what = format!("a TTL of {ttl:?}");
        assert_settings_error(&what, client.try_acquire("zero", &options(ttl)).await);
        let wait = Duration::from_secs(1);
        assert_settings_error(&what, client.acquire("zero", &options(ttl), wait).await);
    }
    let keys: i64 = query(&mut server.connection(), &["DBSIZE"]);
    assert_eq!(keys, 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_too_large_for_redis_is_refused_without_leaving_a_key() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    // Past what PEXPIRE accepts, past what fits in an i64 of ms, and wrapping a u64 of ms.
    let huge = [
        Duration::from_millis(i64::MAX as u64),
        Duration::from_millis(u64::MAX),
        Duration::from_millis(u64::MAX) + Duration::from_millis(5),
        Duration::MAX,
    ];
    for ttl in huge {
        let what = format!("a TTL of {ttl:?}");
        assert_settings_error(&what, client.try_acquire("huge", &options(ttl)).await);
        let exists: i64 = query(&mut redis, &["EXISTS", &key("huge")]);
        assert_eq!(exists, 0, "{what} left a lease key that never expires");
    }
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let lease = acquired(client.try_acquire("huge", &options(century)).await);
    let pttl: i64 = query(&mut redis, &["PTTL", &key("huge")]);
    assert!(pttl > 0, "a long TTL that Redis accepts is set: {pttl}");
    assert!(lease.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_connection_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let settings = Settings::for_endpoints(&[url]).unwrap();
    match within(
        BOUND,
        "the connection error",
        LeaseClient::connect(settings),
    )
    .await
    {
        Err(Error::Connection { endpoint, .. }) => assert!(endpoint.starts_with("127.0.0.1:")),
        Err(other) => panic!("expected Error::Connection, got {other:?}"),
        Ok(_) => panic!("connected to a port with nothing listening"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_password_is_an_auth_error_that_hides_the_password() {
    let server = RedisServer::start();
    let _: () = query(
        &mut server.connection(),
        &["CONFIG", "SET", "requirepass", "secret-pass"],
    );
    let with_password = |password: &str| format!("redis://:{password}@127.0.0.1:{}", server.port);
    let attempts = [
        ("no password", server.url()),
        ("a wrong password", with_password("wrong-pass-1234")),
        (
            "a wrong password in a connection string",
            format!(
                "127.0.0.1:{},password=wrong-pass-1234,ssl=False",
                server.port
            ),
        ),
    ];
    for (what, endpoint) in attempts {
        let settings = Settings::for_endpoints(&[endpoint]).unwrap();
        let error = match within(BOUND, what, LeaseClient::connect(settings)).await {
            Err(error) => error,
            Ok(_) => panic!("{what}: connected to a server that requires a password"),
        };
        assert!(matches!(error, Error::Auth { .. }), "{what}: {error:?}");
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("wrong-pass-1234"), "{what}: {shown}");
            assert!(!shown.contains("secret-pass"), "{what}: {shown}");
        }
    }
    let settings = Settings::for_endpoints(&[with_password("secret-pass")]).unwrap();
    let client = connect_with(settings).await;
    let lease = acquired(
        client
            .try_acquire("guarded", &options(Duration::from_secs(30)))
            .await,
    );
    assert!(lease.release().await.unwrap(), "the right password works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_fence_counter_fails_the_acquire_and_changes_nothing() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let _: () = query(&mut redis, &["SET", &fence_key("corrupt"), "not-a-number"]);
    let outcome = client
        .try_acquire("corrupt", &options(Duration::from_secs(30)))
        .await;
    assert!(matches!(outcome, Err(Error::Redis { .. })), "{outcome:?}");
    let exists: i64 = query(&mut redis, &["EXISTS", &key("corrupt")]);
    assert_eq!(exists, 0, "no lease key was written");
    let fence: Option<String> = query(&mut redis, &["GET", &fence_key("corrupt")]);
    assert_eq!(
        fence.as_deref(),
        Some("not-a-number"),
        "the counter is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_held_lease_releases_it_in_the_background() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let lease = acquired(
        client
            .try_acquire(
                "dropped",
                &renewing(Duration::from_secs(60), Duration::from_secs(1)),
            )
            .await,
    );
    drop(lease);
    let mut redis = server.connection();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(BOUND, || {
            query::<i64>(&mut redis, &["EXISTS", &key("dropped")]) == 0
        })
    });
    assert!(
        gone.await.unwrap(),
        "the dropped lease's key is still there"
    );
}

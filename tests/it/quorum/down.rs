//! Quorum mode: instances down.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    a_minority_down_changes_nothing,
    a_majority_down_fails_with_no_quorum,
    held_on_the_answering_majority_is_held_not_no_quorum,
);

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
                assert!(gone_soon(server, "minority"), "released on instance {i}");
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
                assert!(gone_soon(server, "majority"), "undone on instance {i}");
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

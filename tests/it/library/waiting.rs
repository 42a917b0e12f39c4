//! Waiting

use super::*;

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

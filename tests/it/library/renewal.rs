//! Renewal and loss

use super::*;

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

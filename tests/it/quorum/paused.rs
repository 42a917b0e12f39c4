//! Quorum mode: paused instances.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    a_paused_minority_does_not_cost_the_lease,
    a_paused_majority_signals_the_lease_expired,
);

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

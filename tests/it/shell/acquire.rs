//! `acquire`, `extend` and `release` by id, each in its own process, in single and quorum mode.

use super::*;
use crate::support::instance_matrix;

instance_matrix!({ single = 1, three = 3 };
    acquire_extend_release_across_processes,
    an_acquired_lease_expires_on_its_own,
);

/// One process takes the lease and exits; others see it, are refused, extend it by id (and
/// not by a wrong id), and release it by id.
async fn acquire_extend_release_across_processes(instances: usize) {
    let quorum = Quorum::start(instances);
    let tool = Leasectl::new();
    let taken = acquire(
        &tool,
        &quorum,
        "deploy",
        &["--ttl", "30s", "--meta", "step=migrate"],
    );
    assert_eq!(taken.lease, "deploy");
    assert_eq!(taken.key, support::key("deploy"));
    assert_eq!(taken.ttl_ms, 30_000);
    assert!(taken.fencing_token > 0);
    assert!(taken.acquired_at.ends_with('Z'), "{taken:?}");
    // The process is gone and the lease stays held: on every instance, with its TTL.
    for ttl in pttls(&quorum, "deploy") {
        assert!(ttl > 0 && ttl <= 30_000, "PTTL {ttl}");
    }
    let hash = support::hgetall(&quorum.servers[0], &support::key("deploy"));
    assert_eq!(hash["leaseId"], taken.lease_id);
    assert_eq!(hash["meta_step"], "migrate");

    let shown = leasectl(&tool, &quorum, &["inspect", "deploy", "--json"]);
    shown.expect(0);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["held"], true);
    assert_eq!(shown["leaseId"], taken.lease_id.as_str());
    assert_eq!(shown["fencingToken"], taken.fencing_token);

    // A second acquire is refused with the holder, as `run` shows it, and changes nothing.
    let refused = leasectl(&tool, &quorum, &["acquire", "deploy"]);
    refused.expect(3);
    assert!(
        refused.stdout.contains("Lock unavailable | Held by:"),
        "{refused}"
    );
    assert!(refused.stdout.contains(&taken.lease_id), "{refused}");
    let refused_json = leasectl(&tool, &quorum, &["acquire", "deploy", "--json"]);
    refused_json.expect(3);
    let holder: serde_json::Value = serde_json::from_str(&refused_json.stdout).unwrap();
    assert_eq!(holder["held"], true);
    assert_eq!(holder["leaseId"], taken.lease_id.as_str());

    // Extended by id in another process: the TTL goes up on every instance.
    let id = taken.lease_id.as_str();
    let extended = leasectl(
        &tool,
        &quorum,
        &["extend", "deploy", "--lease-id", id, "--ttl", "5m"],
    );
    extended.expect(0);
    for ttl in pttls(&quorum, "deploy") {
        assert!(ttl > 60_000, "PTTL {ttl} after extending to 5m\n{extended}");
    }
    // A wrong id: exit 4, one error line, the TTL left as it was.
    let wrong = leasectl(
        &tool,
        &quorum,
        &["extend", "deploy", "--lease-id", "not-ours", "--ttl", "1s"],
    );
    let error = wrong.failed_with(4);
    assert!(
        error.contains("no longer held under lease not-ours"),
        "{wrong}"
    );
    for ttl in pttls(&quorum, "deploy") {
        assert!(ttl > 60_000, "PTTL {ttl} after a refused extend\n{wrong}");
    }

    // Released by id in another process: gone everywhere; extending it then exits 4.
    leasectl(&tool, &quorum, &["release", "deploy", "--lease-id", id]).expect(0);
    assert!(pttls(&quorum, "deploy").iter().all(|ttl| *ttl == -2));
    let gone = leasectl(&tool, &quorum, &["extend", "deploy", "--lease-id", id]);
    let error = gone.failed_with(4);
    assert!(error.contains("not held"), "{gone}");
    // And it can be taken again, with a larger fencing token.
    let again = acquire(&tool, &quorum, "deploy", &[]);
    assert!(again.fencing_token > taken.fencing_token);
}

/// Nothing keeps renewing a lease that `acquire` took: it ends at its TTL, and is then free.
async fn an_acquired_lease_expires_on_its_own(instances: usize) {
    let quorum = Quorum::start(instances);
    let tool = Leasectl::new();
    let taken = acquire(&tool, &quorum, "short", &["--ttl", "1s"]);
    let gone = support::eventually(BOUND, || pttls(&quorum, "short").iter().all(|t| *t == -2));
    assert!(gone, "the lease taken by acquire never expired");
    let again = acquire(&tool, &quorum, "short", &["--ttl", "1s"]);
    assert_ne!(again.lease_id, taken.lease_id);
}

/// The library: `extend_by` sets a new TTL (owner-checked); `keep` leaves the lease held
/// when the value is dropped; the client extends a kept lease by name and id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_extend_by_keep_and_extend_by_id() {
    use crate::support::leases::{acquired, connect_within, options};
    use std::time::Duration;
    let server = RedisServer::start();
    let client = connect_within(BOUND, server.settings()).await;
    let lease = acquired(
        client
            .try_acquire("lib", &options(Duration::from_secs(5)))
            .await,
    );
    lease.extend_by(Duration::from_secs(120)).await.unwrap();
    let key = support::key("lib");
    assert!(support::pttl(&server, &key) > 60_000);
    let kept = lease.keep();
    assert_eq!(kept.name, "lib");
    // Dropped (kept): nothing releases it. A release spawned by the drop would have gone out
    // on the same connection before these round trips.
    tokio::task::yield_now().await;
    client.round_trip().await.unwrap();
    assert!(support::exists(&server, &key));
    client
        .extend("lib", &kept.id, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(support::pttl(&server, &key) > 200_000);
    let wrong = client
        .extend("lib", "not-ours", Duration::from_secs(1))
        .await;
    assert!(
        matches!(wrong, Err(leasectl::Error::Lost { .. })),
        "{wrong:?}"
    );
    assert!(client.release("lib", &kept.id).await.unwrap());
    let gone = client.extend("lib", &kept.id, Duration::from_secs(1)).await;
    assert!(
        matches!(gone, Err(leasectl::Error::Lost { .. })),
        "{gone:?}"
    );

    // A lease that is no longer ours is not extended, and its lost signal fires.
    let lease = acquired(
        client
            .try_acquire("lib", &options(Duration::from_secs(30)))
            .await,
    );
    let _: i64 = server.query(&["DEL", &key]);
    let refused = lease.extend_by(Duration::from_secs(60)).await;
    assert!(
        matches!(refused, Err(leasectl::Error::Lost { .. })),
        "{refused:?}"
    );
    assert!(lease.lost_error().is_some());
    assert!(!support::exists(&server, &key));
}

//! A held lease and a waiting acquire across a failover: `SENTINEL FAILOVER`, and SIGKILL of
//! the primary. The holder keeps the lease on the new primary or exits 4 at its next renewal,
//! never goes on without it; the waiter gets the lease in the end, with a higher token than
//! any seen. And `READONLY` from an old primary made a replica moves the connection on.

use std::time::Duration;

use leasectl::Settings;

use super::*;
use crate::leases::{acquired, connect_within, renewing, within};
use crate::support::{eventually, BOUND, LIMIT};

/// The holder's child: records its token, then runs until `go` exists.
const HOLDER: &str =
    "echo $LEASECTL_FENCING_TOKEN > holder.token; while [ ! -e go ]; do sleep 0.05; done";
/// The waiter's child: records its token.
const WAITER: &str = "echo $LEASECTL_FENCING_TOKEN > waiter.token";

fn read_token(leasectl: &Leasectl, file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(leasectl.dir().join(file)).ok()?;
    text.trim().parse().ok()
}

/// Runs a holder (TTL 10 s, renewed every 300 ms) and a waiter through `fail_over` (which
/// answers the old primary's port once it set the failover going).
fn across(fail_over: impl FnOnce(&mut SentinelDeployment) -> u16) {
    let mut deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    let mut holder = start_holder(&deployment, &leasectl, HOLDER);
    let acquired = holder.wait_for("\"acquired\"");
    let holder_token = field(&acquired, "fencingToken").as_u64().expect("a token");
    let holder_id = lease_id(deployment.primary(), JOB).expect("held on the primary");
    let mut waiter = exec_json(&deployment, &leasectl, &["--wait", "120s"], WAITER);
    waiter.wait_for("\"waiting\"");
    assert!(
        eventually(BOUND, || deployment.replicas_in_sync()
            && holds(deployment.replica(), JOB)),
        "the lease reached the replica"
    );

    let old = fail_over(&mut deployment);
    let new = deployment.wait_for_new_primary(old);
    let new_primary = || {
        deployment
            .data
            .iter()
            .find(|n| n.port == new)
            .expect("the new primary")
    };
    // The holder renews on the new primary (its key's TTL goes back up) or has exited 4.
    let first_ttl: i64 = new_primary().query(&["PTTL", &key(JOB)]);
    let mut holder_done = None;
    let settled = eventually(LIMIT, || {
        if let Some(code) = holder.exit_code() {
            holder_done = Some(code);
            return true;
        }
        let ttl: i64 = new_primary().try_query(&["PTTL", &key(JOB)]).unwrap_or(-2);
        ttl > first_ttl && lease_id(new_primary(), JOB).as_deref() == Some(holder_id.as_str())
    });
    assert!(
        settled,
        "the holder neither renewed on the new primary nor stopped"
    );
    match holder_done {
        // Lost in the failover: signalled, exit 4.
        Some(code) => assert_eq!(code, 4, "the holder stopped: only as lost"),
        None => {
            assert!(
                read_token(&leasectl, "waiter.token").is_none(),
                "no overlap"
            );
            std::fs::write(leasectl.dir().join("go"), "").unwrap();
            holder.finish().expect(0);
        }
    }
    let waited = waiter.finish();
    waited.expect(0);
    let waiter_token = read_token(&leasectl, "waiter.token").expect("the waiter ran");
    assert_eq!(read_token(&leasectl, "holder.token"), Some(holder_token));
    assert!(
        waiter_token > holder_token,
        "the waiter's token {waiter_token} is above the holder's {holder_token}"
    );
    let counter_now = counter(new_primary(), JOB);
    assert!(
        counter_now >= waiter_token,
        "the new primary's counter {counter_now}"
    );
}

#[test]
fn a_holder_and_a_waiter_across_sentinel_failover() {
    across(|deployment| deployment.failover());
}

#[test]
fn a_holder_and_a_waiter_across_sigkill_of_the_primary() {
    across(|deployment| deployment.kill_primary());
}

/// The old primary made a replica while our connection to it stays open (a switch Sentinel
/// did not make, so it cut no client): the renewal meets `READONLY`, asks the sentinels again
/// and goes to the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_from_an_old_primary_moves_the_lease_to_the_new_one() {
    let deployment = SentinelDeployment::start();
    let settings = Settings::for_endpoints(&[deployment.connection_string()]).unwrap();
    let client = connect_within(BOUND, settings).await;
    let options = renewing(Duration::from_secs(60), Duration::from_secs(3600));
    let lease = acquired(client.try_acquire(JOB, &options).await);
    let (old, new) = (deployment.primary(), deployment.replica());
    let _: i64 = old.query(&["WAIT", "1", "5000"]);
    assert!(holds(new, JOB), "replicated");

    // The switch, by hand: the replica becomes the primary, the primary its replica, and the
    // sentinels are told.
    let _: () = new.query(&["REPLICAOF", "NO", "ONE"]);
    let _: () = old.query(&["REPLICAOF", "127.0.0.1", &new.port.to_string()]);
    for sentinel in &deployment.sentinels {
        let _: () = sentinel.query(&["SENTINEL", "REMOVE", crate::support::sentinel::SERVICE]);
        let _: () = sentinel.query(&[
            "SENTINEL",
            "MONITOR",
            crate::support::sentinel::SERVICE,
            "127.0.0.1",
            &new.port.to_string(),
            "2",
        ]);
    }
    assert_eq!(deployment.primary_port(), new.port);
    let write: redis::RedisResult<()> = old.try_query(&["SET", "probe", "1"]);
    assert!(write.is_err(), "the old primary refuses writes now");

    within(BOUND, "extend", lease.extend())
        .await
        .expect("the renewal went to the new primary");
    let ttl: i64 = new.query(&["PTTL", &key(JOB)]);
    assert!(ttl > 50_000, "renewed on the new primary: {ttl} ms left");
    assert_eq!(lease_id(new, JOB).as_deref(), Some(lease.id()));
    assert!(lease.lost_error().is_none());
    within(BOUND, "release", lease.release())
        .await
        .expect("released");
    assert!(!holds(new, JOB));
}

/// The sentinels announce a failover (`+switch-master`): the next command goes to the new
/// primary at once, not after the old one — here paused, and it could come back and answer
/// as a primary until the sentinels demote it — times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_the_sentinels_announce_moves_the_next_command_to_the_new_primary() {
    let deployment = SentinelDeployment::start();
    let mut settings = Settings::for_endpoints(&[deployment.connection_string()]).unwrap();
    // Far beyond the test's bound: a command stuck on the paused primary never returns in it.
    settings.sync_timeout = Duration::from_secs(600);
    let client = connect_within(BOUND, settings).await;
    let options = renewing(Duration::from_secs(60), Duration::from_secs(3600));
    let lease = acquired(client.try_acquire(JOB, &options).await);
    let (old, new) = (deployment.primary(), deployment.replica());
    let _: i64 = old.query(&["WAIT", "1", "5000"]);

    old.pause();
    let new_port = deployment.wait_for_new_primary(old.port);
    assert_eq!(new_port, new.port);
    let before: i64 = new.query(&["PTTL", &key(JOB)]);
    let moved = within(BOUND, "a renewal on the new primary", async {
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(1), lease.extend()).await;
            if let Ok(Ok(())) = attempt {
                return;
            }
        }
    });
    moved.await;
    let after: i64 = new.query(&["PTTL", &key(JOB)]);
    assert!(
        after > before,
        "renewed on the new primary: {before} -> {after} ms"
    );
    old.resume();
}

//! `WaitReplicas: 1`: with the replica paused an acquire is refused within about
//! `WaitTimeout` and leaves no lease behind, and a held lease's renewals fail until it is
//! lost; with the replica running the lease is granted and is on the replica at once.

use std::time::{Duration, Instant};

use super::*;

/// `leasectl ARGS` with `WaitReplicas: 1`, this `WaitTimeout` (ms), and a `SyncTimeout` far
/// longer than that.
fn waiting_for_a_replica(
    deployment: &SentinelDeployment,
    leasectl: &Leasectl,
    wait_timeout: &str,
) -> Command {
    let mut command = deployment.leasectl(leasectl);
    command
        .env("RedisLeasing__WaitReplicas", "1")
        .env("RedisLeasing__WaitTimeout", wait_timeout)
        .env("RedisLeasing__SyncTimeout", "30000");
    command
}

#[test]
fn an_acquire_no_replica_acknowledged_is_refused_and_undone() {
    let deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    deployment.replica().pause();
    let started = Instant::now();
    let mut command = waiting_for_a_replica(&deployment, &leasectl, "200");
    command.args(["exec", JOB, "--ttl", "60s", "--", "true"]);
    let done = complete(command);
    let took = started.elapsed();
    let line = done.failed_with(1);
    assert!(
        line.contains("replicas") && line.contains("acknowledged"),
        "{done}"
    );
    // Refused after WaitTimeout, not after SyncTimeout (30 s).
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        !holds(deployment.primary(), JOB),
        "no lease key left behind"
    );

    deployment.replica().resume();
    // Running again (a generous WaitTimeout: it has just woken on a loaded machine).
    let _: String = deployment.replica().query(&["PING"]);
    let mut command = waiting_for_a_replica(&deployment, &leasectl, "5000");
    // The child looks at the replica: acknowledged, the lease is there already.
    let replica = deployment.replica().port;
    let script = format!(
        "redis-cli -p {replica} HGET {} leaseId > on-replica; echo $LEASECTL_LEASE_ID > id",
        key(JOB)
    );
    command.args(["exec", JOB, "--ttl", "60s", "--", "sh", "-c", &script]);
    complete(command).expect(0);
    let read = |name: &str| std::fs::read_to_string(leasectl.dir().join(name)).unwrap();
    assert_eq!(
        read("on-replica"),
        read("id"),
        "on the replica when granted"
    );
}

#[test]
fn renewals_no_replica_acknowledged_fail_until_the_lease_is_lost() {
    let deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    let mut command = waiting_for_a_replica(&deployment, &leasectl, "1000");
    command
        .env("RedisLeasing__AutoRenewInterval", "300ms")
        .args([
            "exec",
            JOB,
            "--ttl",
            "3s",
            "--json",
            "--",
            "sh",
            "-c",
            "while true; do sleep 0.05; done",
        ]);
    let mut holder = Running::spawn(command);
    holder.wait_for("\"acquired\"");
    holder.wait_for("\"renewed\"");
    deployment.replica().pause();
    // Still ours on the primary, but never acknowledged: lost once its validity runs out.
    holder.wait_for("\"lost\"");
    let done = holder.finish();
    done.expect(4);
    assert!(
        done.stderr.contains("acknowledged"),
        "says why the renewals failed\n{done}"
    );
    deployment.replica().resume();
}

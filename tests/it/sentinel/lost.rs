//! A lease the failover lost (granted on a primary whose replica never got it, then the
//! primary killed): the holder learns it at its next renewal (`exec` stops its child, exits
//! 4), the next holder's token is higher, and the fence refuses the old holder's late write.

use super::*;
use crate::support::{eventually, BOUND};

/// Cuts the replica off the primary: paused, and its replication connection killed, so that
/// what the primary writes now never reaches it.
fn cut_replica(deployment: &SentinelDeployment) {
    deployment.replica().pause();
    let _: i64 = deployment
        .primary()
        .query(&["CLIENT", "KILL", "TYPE", "replica"]);
}

#[test]
fn a_lease_lost_in_a_failover_is_signalled_at_the_next_renewal_and_fenced() {
    let mut deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    let replica_port = deployment.replica().port;
    cut_replica(&deployment);
    let script = "echo $LEASECTL_FENCING_TOKEN > old.token; \
                  trap 'echo TERM > old.term; exit 42' TERM; \
                  while true; do sleep 0.05; done";
    let mut holder = start_holder(&deployment, &leasectl, script);
    let acquired = holder.wait_for("\"acquired\"");
    let old_token = field(&acquired, "fencingToken").as_u64().expect("a token");
    assert!(holds(deployment.primary(), JOB));

    // The primary dies with the only copy of the lease; the replica is promoted without it.
    let old = deployment.kill_primary();
    let replica = deployment
        .data
        .iter()
        .find(|n| n.port == replica_port)
        .unwrap();
    replica.resume();
    let new = deployment.wait_for_new_primary(old);
    assert_eq!(new, replica_port);
    let new_primary = deployment.data.iter().find(|n| n.port == new).unwrap();
    assert!(!holds(new_primary, JOB), "the failover lost the lease");

    // The holder learns it at its next renewal.
    holder.wait_for("\"lost\"");
    let done = holder.finish();
    done.expect(4);
    let term = std::fs::read_to_string(leasectl.dir().join("old.term")).unwrap_or_default();
    assert_eq!(term.trim(), "TERM", "the child was stopped\n{done}");

    // The next holder's token is higher, and its fenced write shuts out the old holder's.
    let done = leasectl_done(
        &deployment,
        &leasectl,
        &["exec", JOB, "--json", "--", "true"],
    );
    done.expect(0);
    let new_token = field(
        done.stdout
            .lines()
            .find(|line| line.contains("\"acquired\""))
            .unwrap_or_default(),
        "fencingToken",
    )
    .as_u64()
    .unwrap_or_else(|| panic!("a token\n{done}"));
    assert!(new_token > old_token, "{new_token} after {old_token}");
    let set = |value: &str, token: u64| fence_report(&deployment, &leasectl, value, token);
    set("new", new_token).expect(0);
    let late = set("late", old_token);
    late.expect(3);
    assert!(late.stdout.contains("Refused"), "{late}");
    assert!(eventually(BOUND, || {
        new_primary.try_query::<Option<String>>(&["GET", "report"]) == Ok(Some("new".into()))
    }));
    deployment.restart(old);
}

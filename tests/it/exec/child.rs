//! The child's exit code and environment

use super::*;

#[test]
fn exit_code_is_the_childs_and_the_lease_is_released() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("kill -KILL $$", 128 + 9)] {
        let done = Proc::spawn(exec(&leasectl, &server, &[], script, &[])).finish();
        done.expect(code);
        assert!(!exists(&server, KEY), "`{script}` left the lease\n{done}");
    }
}

#[test]
fn the_child_sees_its_lease_id_and_fencing_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let script = format!(
        "echo \"$LEASECTL_LEASE $LEASECTL_LEASE_ID $LEASECTL_FENCING_TOKEN\" > env; {}",
        until_go("child")
    );
    let mut job = Proc::spawn(exec(&leasectl, &server, &[], &script, &[]));
    let env = job.record(&path(&leasectl, "env"));
    let fields: Vec<&str> = env.split(' ').collect();
    let stored = hgetall(&server, KEY);
    assert_eq!(fields.len(), 3, "LEASECTL_* of the child: {env:?}");
    assert_eq!(fields[0], JOB, "LEASECTL_LEASE");
    assert_eq!(Some(fields[1]), stored.get("leaseId").map(String::as_str));
    assert_eq!(
        Some(fields[2]),
        stored.get("fencingToken").map(String::as_str)
    );
    go(&leasectl, "child");
    job.finish().expect(0);
    assert!(!exists(&server, KEY), "released after the child's exit");
}

//! Signals: Ctrl-C and SIGTERM release the lease.

use super::*;

/// Starts a holder, sends `signal` once it holds the lease, and checks that it released.
fn signal_releases(signal: &str, code: i32) {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut run = spawn_run(&leasectl, &server, ("a", "r"), &["--work", "60s"]);
    run.wait_for("Lock acquired");
    assert!(exists(&server, KEY));
    support::signal(run.pid(), signal);
    let output = run.finish();
    assert_eq!(output.code(), code, "{output}");
    assert!(output.stdout.contains("Lock released"), "{output}");
    assert!(!exists(&server, KEY), "SIG{signal} released the lease");
    assert!(exists(&server, FENCE), "the fencing counter stays");
}

#[test]
fn ctrl_c_releases_the_lease_and_exits_130() {
    signal_releases("INT", 130);
}

#[test]
fn sigterm_releases_the_lease_and_exits_143() {
    signal_releases("TERM", 143);
}

#[test]
fn ctrl_c_while_waiting_exits_130_and_leaves_the_holder_alone() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let _holder = holding(&leasectl, &server, ("a", "r1"), LEASE);
    let before = snapshot(&mut server.connection());
    let mut waiter = spawn_run(&leasectl, &server, ("b", "r2"), &["--wait", "60s"]);
    waiter.wait_for("Waiting up to 1m for the lock");
    support::signal(waiter.pid(), "INT");
    let output = waiter.finish();
    assert_eq!(output.code(), 130, "{output}");
    assert!(output.stdout.contains("[b] Interrupted"), "{output}");
    assert_eq!(
        snapshot(&mut server.connection()),
        before,
        "nothing changed"
    );
    assert_eq!(hgetall(&server, KEY)["meta_instanceId"], "a");
}

//! Takeover: after a crash and after a graceful release.

use super::*;

#[test]
fn after_a_crash_the_lease_stays_held_until_its_ttl_runs_out_then_is_taken_over() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut crashed = spawn_run(
        &leasectl,
        &server,
        ("a", "r1"),
        &["--ttl", "3s", "--work", "60s"],
    );
    crashed.wait_for("Lock acquired");
    support::signal(crashed.pid(), "KILL");
    let killed = crashed.finish();
    assert_eq!(killed.status.code(), None, "ended by SIGKILL\n{killed}");

    let refused = spawn_run(&leasectl, &server, ("b", "r2"), &["--work", "1s"]).finish();
    assert_eq!(
        refused.code(),
        3,
        "the crashed holder's TTL still runs\n{refused}"
    );
    assert!(refused.stdout.contains("Held by: a (r1)"), "{refused}");

    let waiter = spawn_run(
        &leasectl,
        &server,
        ("b", "r2"),
        &["--wait", "20s", "--work", "1s"],
    );
    let output = waiter.finish();
    assert_eq!(output.code(), 0, "{output}");
    assert!(
        output
            .stdout
            .contains("[b] Waiting up to 20s for the lock | Held by: a (r1)"),
        "it waited for the crashed holder\n{output}"
    );
    assert!(output.stdout.contains("[b] Lock released"), "{output}");
    assert!(!exists(&server, KEY));
}

#[test]
fn a_waiting_run_takes_over_after_a_graceful_release() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut first = spawn_run(&leasectl, &server, ("a", "r1"), &["--work", "3s"]);
    first.wait_for("Lock acquired");
    let waiter = spawn_run(
        &leasectl,
        &server,
        ("b", "r2"),
        &["--wait", "30s", "--work", "1s"],
    );
    let first = first.finish();
    let second = waiter.finish();
    assert_eq!(first.code(), 0, "{first}");
    assert!(first.stdout.contains("[a] Lock released"), "{first}");
    assert_eq!(second.code(), 0, "{second}");
    assert!(
        second.stdout.contains("Held by: a (r1)"),
        "it waited for a\n{second}"
    );
    assert!(second.stdout.contains("[b] ✓ Lock acquired"), "{second}");
    assert!(second.stdout.contains("[b] Lock released"), "{second}");
    assert!(!exists(&server, KEY), "released");
}

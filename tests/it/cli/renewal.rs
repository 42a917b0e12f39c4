//! Renewal and loss

use super::*;

#[test]
fn run_renews_its_lease_while_working_past_the_ttl() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = leasectl.against(&server);
    command
        .env("RedisLeasing__AutoRenewInterval", "500ms")
        .args(["run", "--instance", "a", "--region", "r"])
        .args(["--ttl", "2s", "--work", "5s"]);
    let output = complete(command);
    assert_eq!(output.code(), 0, "{output}");
    let renewals: u64 = output
        .stdout
        .lines()
        .find_map(|line| line.split("Renewals: ").nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a Renewals count\n{output}"));
    assert!(renewals > 0, "{output}");
    assert!(output.stdout.contains("[a] Lock released"), "{output}");
}

#[test]
fn without_renewal_the_lease_runs_out_and_run_exits_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = leasectl.against(&server);
    command
        .env("RedisLeasing__AutoRenew", "false")
        .args(["run", "--instance", "a", "--region", "r"])
        .args(["--ttl", "1s", "--work", "30s"]);
    let output = complete(command);
    assert_eq!(output.code(), 4, "{output}");
    assert!(output.stdout.contains("[a] ✗ Lock lost"), "{output}");
    assert!(!output.stdout.contains("Completed"), "{output}");
}

#[test]
fn a_holder_whose_key_is_deleted_stops_with_exit_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = leasectl.against(&server);
    command
        .env("RedisLeasing__AutoRenewInterval", "200ms")
        .args(["run", "--instance", "a", "--region", "r", "--work", "60s"]);
    let mut run = Running::spawn(command);
    run.wait_for("Lock acquired");
    query::<()>(&mut server.connection(), &["DEL", KEY]);
    let output = run.finish();
    assert_eq!(output.code(), 4, "{output}");
    assert!(output.stdout.contains("[a] ✗ Lock lost"), "{output}");
}

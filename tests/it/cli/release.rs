//! `leasectl release`: by lease id, and forced.

use super::*;

#[test]
fn release_with_the_right_lease_id_deletes_the_key() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, KEY, "a");
    let lease_id = hgetall(&server, KEY)["leaseId"].clone();
    let output = leasectl_against(
        &leasectl,
        &server,
        &["release", LEASE, "--lease-id", &lease_id],
    );
    assert_eq!(output.code(), 0, "{output}");
    assert!(!exists(&server, KEY));
}

#[test]
fn release_with_a_wrong_lease_id_exits_3_and_keeps_the_key() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, KEY, "a");
    let before = snapshot(&mut server.connection());
    let output = leasectl_against(
        &leasectl,
        &server,
        &["release", LEASE, "--lease-id", "not-the-id"],
    );
    assert_eq!(output.code(), 3, "{output}");
    assert!(output.stdout.contains("held by a (test)"), "{output}");
    assert_eq!(snapshot(&mut server.connection()), before);
}

#[test]
fn force_release_with_yes_deletes_the_key_but_keeps_the_fencing_counter() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let _holder = holding(&leasectl, &server, ("a", "r"), LEASE);
    let output = leasectl_against(&leasectl, &server, &["release", LEASE, "--force", "--yes"]);
    assert_eq!(output.code(), 0, "{output}");
    assert!(output.stdout.contains("was held by a (r)"), "{output}");
    assert!(!exists(&server, KEY));
    assert!(exists(&server, FENCE));
}

#[test]
fn force_release_without_a_terminal_asks_for_yes_and_keeps_the_key() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, KEY, "a");
    let before = snapshot(&mut server.connection());
    let output = leasectl_against(&leasectl, &server, &["release", LEASE, "--force"]);
    let error = output.failed_with(2);
    assert!(error.contains("--yes"), "{output}");
    assert_eq!(snapshot(&mut server.connection()), before);
}

#[test]
fn release_without_lease_id_or_force_is_a_usage_error() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let free = leasectl_against(&leasectl, &server, &["release", LEASE]);
    free.failed_with(2);
    write_lease(&server, KEY, "a");
    let before = snapshot(&mut server.connection());
    let held = leasectl_against(&leasectl, &server, &["release", LEASE]);
    let error = held.failed_with(2);
    assert!(
        error.contains("--lease-id") && error.contains("--force"),
        "{held}"
    );
    assert_eq!(snapshot(&mut server.connection()), before);
}

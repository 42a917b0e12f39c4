//! Leases written by other tools

use super::*;

/// Checks that `run` on `name` exits 3 naming `holder` and that no key changed.
fn run_respects(server: &RedisServer, name: &str, holder: &str) {
    let leasectl = Leasectl::new();
    let mut connection = server.connection();
    let before = snapshot(&mut connection);
    let key = format!("lease:{name}");
    let ttl_before = pttl(server, &key);
    let output = spawn_run(
        &leasectl,
        server,
        ("b", "r2"),
        &["--lease", name, "--work", "1s"],
    )
    .finish();
    assert_eq!(output.code(), 3, "{output}");
    assert!(
        output
            .stdout
            .contains(&format!("✗ Lock unavailable | Held by: {holder}")),
        "{output}"
    );
    assert_eq!(snapshot(&mut connection), before, "nothing changed");
    let ttl_after = pttl(server, &key);
    assert!(
        0 < ttl_after && ttl_after <= ttl_before,
        "TTL not extended: {ttl_before} → {ttl_after}"
    );
}

#[test]
fn a_seed_002_lease_is_shown_and_respected() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut connection = server.connection();
    let mut hset = vec!["HSET", KEY];
    hset.extend_from_slice(SEED_002_FIELDS);
    query::<()>(&mut connection, &hset);
    query::<()>(&mut connection, &["PEXPIRE", KEY, "60000"]);

    let json = inspect_json(&leasectl, &server, LEASE);
    assert!(json.held);
    assert_eq!(json.lease_id.as_deref(), Some("abc123-def456-ghi789"));
    assert_eq!(
        json.acquired_at.as_deref(),
        Some("2025-12-25T21:00:00.000Z")
    );
    assert_eq!(json.fencing_token, None, "seed 002 stores none");
    assert!(
        json.ttl_ms.is_some_and(|t| t > 0 && t <= 60_000),
        "{json:?}"
    );
    let metadata = json.metadata.expect("metadata");
    assert_eq!(metadata.instance_id.as_deref(), Some("us-east-1"));
    assert_eq!(metadata.region.as_deref(), Some("us-east"));
    assert_eq!(metadata.hostname.as_deref(), Some("MACHINE-NAME"));
    assert_eq!(metadata.start_time.as_deref(), Some("2025-12-25T21:00:00Z"));
    assert!(metadata.other.is_empty());

    run_respects(&server, LEASE, "us-east-1 (us-east)");
    assert!(!exists(&server, FENCE), "no fencing counter was started");
}

#[test]
fn a_json_string_lease_is_shown_and_respected() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let value = r#"{"leaseId":"L1","ownerId":"instance-01","acquiredAt":"2025-12-25T12:00:00Z","metadata":{"version":"1.0.0"}}"#;
    query::<()>(
        &mut server.connection(),
        &["SET", KEY, value, "PX", "60000"],
    );
    let json = inspect_json(&leasectl, &server, LEASE);
    assert!(json.held);
    assert_eq!(json.lease_id.as_deref(), Some("L1"));
    assert_eq!(json.owner_id.as_deref(), Some("instance-01"));
    assert_eq!(json.acquired_at.as_deref(), Some("2025-12-25T12:00:00Z"));
    assert_eq!(json.fencing_token, None);
    assert!(
        json.ttl_ms.is_some_and(|t| t > 0 && t <= 60_000),
        "{json:?}"
    );
    let metadata = json.metadata.expect("metadata");
    assert_eq!(
        metadata.other,
        [("version".to_string(), "1.0.0".to_string())].into()
    );
    run_respects(&server, LEASE, "instance-01");
}

#[test]
fn a_plain_token_lease_is_shown_and_respected() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    query::<()>(
        &mut server.connection(),
        &["SET", KEY, "9f8e-token", "PX", "60000"],
    );
    let json = inspect_json(&leasectl, &server, LEASE);
    assert!(json.held);
    assert_eq!(json.lease_id.as_deref(), Some("9f8e-token"));
    assert_eq!(
        (json.owner_id, json.acquired_at, json.fencing_token),
        (None, None, None)
    );
    assert!(json.ttl_ms.is_some_and(|t| t > 0 && t <= 60_000));
    let text = leasectl_against(&leasectl, &server, &["inspect"]);
    assert!(text.stdout.contains("is held by 9f8e-token"), "{text}");
    run_respects(&server, LEASE, "9f8e-token");
}

//! `leasectl inspect`: the JSON of SPEC 4 and the text tables.

use super::*;

#[test]
fn inspect_json_of_a_held_lease_matches_the_stored_hash() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut holder = spawn_run(
        &leasectl,
        &server,
        ("us-east-1", "us-east"),
        &["--work", "60s", "--meta", "team=blue"],
    );
    holder.wait_for("Lock acquired");
    let hash = hgetall(&server, KEY);
    let json = inspect_json(&leasectl, &server, LEASE);
    assert_eq!(
        (json.lease.as_str(), json.key.as_str(), json.held),
        (LEASE, KEY, true)
    );
    assert_eq!(json.lease_id.as_ref(), Some(&hash["leaseId"]));
    assert_eq!(json.acquired_at.as_ref(), Some(&hash["acquiredAt"]));
    assert_eq!(
        json.fencing_token.map(|t| t.to_string()),
        Some(hash["fencingToken"].clone())
    );
    assert_eq!(json.owner_id, None);
    assert_eq!(json.format.as_deref(), Some("hash"));
    let ttl = json.ttl_ms.expect("ttlMs");
    assert!(ttl > 0 && ttl <= 30_000, "ttlMs {ttl}");
    let metadata = json.metadata.expect("metadata");
    assert_eq!(
        metadata,
        Metadata {
            instance_id: Some("us-east-1".into()),
            region: Some("us-east".into()),
            hostname: Some(hash["meta_hostname"].clone()),
            start_time: Some(hash["meta_startTime"].clone()),
            other: [("team".to_string(), "blue".to_string())].into(),
        }
    );
}

#[test]
fn inspect_json_of_a_free_lease_is_exactly_lease_key_held() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let output = leasectl_against(&leasectl, &server, &["inspect", "nightly-report", "--json"]);
    assert_eq!(output.code(), 0, "{output}");
    assert_eq!(
        output.stdout,
        "{\"lease\":\"nightly-report\",\"key\":\"lease:nightly-report\",\"held\":false}\n"
    );
}

#[test]
fn inspect_all_json_is_an_array_of_held_leases_sorted_by_name() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let none = leasectl_against(&leasectl, &server, &["inspect", "--all", "--json"]);
    assert!(parse_json::<Vec<LeaseJson>>(&none).is_empty(), "{none}");
    let names = ["m-job", "b-job", "z-job", "a-job"];
    for name in names {
        write_lease(
            &server,
            &format!("lease:{name}"),
            &format!("holder-of-{name}"),
        );
    }
    let mut connection = server.connection();
    query::<()>(&mut connection, &["SET", &support::fence_key("a-job"), "7"]);
    query::<()>(&mut connection, &["SET", "other:not-a-lease", "x"]);
    let output = leasectl_against(&leasectl, &server, &["inspect", "--all", "--json"]);
    let leases: Vec<LeaseJson> = parse_json(&output);
    let mut sorted = names.to_vec();
    sorted.sort();
    let listed: Vec<&str> = leases.iter().map(|l| l.lease.as_str()).collect();
    assert_eq!(listed, sorted, "{output}");
    for lease in &leases {
        assert!(lease.held, "{lease:?}");
        assert_eq!(lease.key, format!("lease:{}", lease.lease));
        let instance = lease.metadata.as_ref().and_then(|m| m.instance_id.clone());
        assert_eq!(instance, Some(format!("holder-of-{}", lease.lease)));
        assert_eq!(lease.fencing_token, Some(7));
    }
}

#[test]
fn inspect_names_the_holder_in_text() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let free = leasectl_against(&leasectl, &server, &["inspect"]);
    assert_eq!(free.code(), 0, "{free}");
    assert!(free.stdout.contains(&format!("{LEASE} is free")), "{free}");
    let _holder = holding(&leasectl, &server, ("us-east-1", "us-east"), LEASE);
    let held = leasectl_against(&leasectl, &server, &["inspect"]);
    assert_eq!(held.code(), 0, "{held}");
    assert!(
        held.stdout
            .contains(&format!("{LEASE} is held by us-east-1 (us-east)")),
        "{held}"
    );
    let hash = hgetall(&server, KEY);
    assert_eq!(
        table_value(&held.stdout, "leaseId"),
        Some(hash["leaseId"].as_str())
    );
    assert_eq!(
        table_value(&held.stdout, "fencingToken"),
        Some(hash["fencingToken"].as_str())
    );
    let ttl = ttl_left_seconds(&held.stdout);
    assert!(ttl > 0.0 && ttl <= 30.0, "{held}");
}

#[test]
fn inspect_all_is_an_aligned_table_of_holder_age_ttl_and_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let _holder = holding(&leasectl, &server, ("us-east-1", "us-east"), LEASE);
    let all = leasectl_against(&leasectl, &server, &["inspect", "--all"]);
    assert_eq!(all.code(), 0, "{all}");
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one lease\n{all}");
    let columns = ["LEASE", "HOLDER", "AGE", "TTL LEFT", "TOKEN"];
    let starts: Vec<usize> = columns.iter().map(|c| lines[0].find(c).expect(c)).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{all}");
    let row = lines[1];
    assert!(row.starts_with(LEASE), "{all}");
    assert_eq!(
        &row[starts[1]..starts[1] + "us-east-1 (us-east)".len()],
        "us-east-1 (us-east)",
        "{all}"
    );
    let token: String = server.query(&["GET", FENCE]);
    assert_eq!(
        row[starts[4]..].trim(),
        token,
        "the fencing token, in its column\n{all}"
    );
}

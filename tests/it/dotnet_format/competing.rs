//! leasectl and the .NET package's stand-in on one key, each way round

use super::*;
use crate::process::parse_json;
use crate::support::json::LeaseJson;
use crate::support::{exists, fence_key};

/// `leasectl --format FORMAT run` for NAME, run to its end: it must lose.
fn run_loses(leasectl: &Leasectl, server: &RedisServer, format: &str) -> Output {
    let output = leasectl_done(
        leasectl,
        server,
        &[
            "--format",
            format,
            "run",
            "--instance",
            "us-west-2",
            "--region",
            "us-west",
            "--lease",
            NAME,
            "--work",
            "1s",
        ],
    );
    output.expect(3);
    output
}

#[test]
fn a_dotnet_holder_makes_leasectl_lose_with_exit_3_in_either_format() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let lease = dotnet_service(&server)
        .try_acquire(NAME, DOTNET_TTL)
        .expect("the key is free");
    let (value, lease_id) = (lease.value.clone(), lease.lease_id.clone());
    let renewing = lease.keep_renewing(DOTNET_TTL);
    for format in ["json", "hash"] {
        let output = run_loses(&leasectl, &server, format);
        assert!(
            output
                .stdout
                .contains("✗ Lock unavailable | Held by: dotnet-worker-1"),
            "{format}: the owner is shown\n{output}"
        );
        for shown in [lease_id.as_str(), "server-01", "1.0.0"] {
            assert!(output.stdout.contains(shown), "{format}: {shown}\n{output}");
        }
        assert_eq!(
            get(&server, &key(NAME)).as_deref(),
            Some(value.as_str()),
            "{format}: the .NET lease is untouched"
        );
    }
    assert!(
        !exists(&server, &fence_key(NAME)),
        "a refused acquire starts no fencing counter"
    );
    assert!(
        renewing.stop(),
        "the .NET service renewed and released its own lease throughout"
    );
    assert!(!exists(&server, &key(NAME)));
}

#[test]
fn a_json_exec_keeps_the_dotnet_service_out_and_reads_as_its_lease() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, id, token) = super::holder(&leasectl, &server, "json", &[], "exec");
    let value = get(&server, &key(NAME)).expect("a string value");
    assert!(value.starts_with(r#"{"leaseId":""#), "{value}");
    let service = dotnet_service(&server);
    assert!(
        service.try_acquire(NAME, DOTNET_TTL).is_none(),
        "SET NX refused while leasectl holds the key"
    );
    // The package's scripts compare their own value: leasectl's lease is left as it is.
    let stale = service.stale_lease(NAME);
    assert!(
        !stale.renew(DOTNET_TTL),
        "renewing a value that is not ours"
    );
    assert!(!stale.release(), "releasing a value that is not ours");
    assert_eq!(get(&server, &key(NAME)).as_deref(), Some(value.as_str()));

    // The package reads leasectl's value as a lease record: its four fields, its formats.
    let record = dotnet::read_record(&server.url(), &key(NAME)).expect("a lease record");
    assert_eq!(record.lease_id, id);
    assert!(
        record.owner_id.ends_with(&format!(":{}", holder.pid())),
        "exec's ownerId is HOST:PID: {record:?}"
    );
    assert_eq!(record.metadata.get("instanceId"), Some(&record.owner_id));
    for field in ["hostname", "startTime"] {
        assert!(record.metadata.contains_key(field), "{field}: {record:?}");
    }
    assert!(
        record.acquired_at.ends_with('Z') && record.acquired_at.len() == 20,
        "whole seconds, UTC, as the package writes it: {}",
        record.acquired_at
    );
    assert_eq!(
        stored(&server)["fencingToken"],
        token,
        "our token, as a number"
    );
    assert_eq!(
        get(&server, &fence_key(NAME)),
        Some(token.to_string()),
        "the fencing counter works as with Hash"
    );

    // inspect (in either format) shows it as a JSON lease with its token.
    for format in ["json", "hash"] {
        let json: LeaseJson = parse_json(&leasectl_done(
            &leasectl,
            &server,
            &["--format", format, "inspect", NAME, "--json"],
        ));
        assert!(json.held);
        assert_eq!(json.format.as_deref(), Some("json"));
        assert_eq!(json.fencing_token, Some(token));
        assert_eq!(json.lease_id.as_deref(), Some(id.as_str()));
        assert_eq!(json.owner_id.as_deref(), Some(record.owner_id.as_str()));
    }

    go(&leasectl, "exec");
    holder.finish().expect(0);
    assert!(
        !exists(&server, &key(NAME)),
        "released when the command ended"
    );
    assert!(
        service.try_acquire(NAME, DOTNET_TTL).is_some(),
        "free for the .NET service once leasectl released"
    );
}

#[test]
fn each_format_treats_the_others_lease_as_held() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for (holding, competing) in [("hash", "json"), ("json", "hash")] {
        let (holder, id, _) = super::holder(&leasectl, &server, holding, &[], holding);
        let output = run_loses(&leasectl, &server, competing);
        assert!(
            output.stdout.contains(&id),
            "{competing} shows the {holding} holder\n{output}"
        );
        go(&leasectl, holding);
        holder.finish().expect(0);
        assert!(!exists(&server, &key(NAME)));
    }
}

#[test]
fn release_by_lease_id_acts_only_on_that_json_lease() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, id, _) = super::holder(&leasectl, &server, "json", &[], "exec");
    let value = get(&server, &key(NAME));
    let wrong = leasectl_done(
        &leasectl,
        &server,
        &[
            "--format",
            "json",
            "release",
            NAME,
            "--lease-id",
            "not-the-id",
        ],
    );
    wrong.expect(3);
    assert_eq!(
        get(&server, &key(NAME)),
        value,
        "another id releases nothing"
    );
    let right = leasectl_done(
        &leasectl,
        &server,
        &["--format", "json", "release", NAME, "--lease-id", &id],
    );
    right.expect(0);
    assert!(!exists(&server, &key(NAME)), "released by its id\n{right}");
    holder.finish().expect(4);
}

#[test]
fn release_force_ends_a_json_lease_of_either_side() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let force = ["release", NAME, "--force", "--yes"];
    // leasectl's own: the holder learns of it at once and stops its command (exit 4).
    let (holder, _, _) = super::holder(&leasectl, &server, "json", &[], "exec");
    leasectl_done(&leasectl, &server, &force).expect(0);
    assert!(!exists(&server, &key(NAME)));
    holder.finish().expect(4);
    // The .NET service's: deleted; its next renewal finds it gone.
    let lease = dotnet_service(&server)
        .try_acquire(NAME, DOTNET_TTL)
        .expect("free");
    leasectl_done(&leasectl, &server, &force).expect(0);
    assert!(!exists(&server, &key(NAME)));
    assert!(
        !lease.renew(DOTNET_TTL),
        "the package's renewal sees the loss"
    );
}

#[test]
fn renewal_keeps_the_value_so_a_dotnet_compare_still_matches() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut holder = exec(
        &leasectl,
        &server,
        "json",
        &["--ttl", "2s", "--json"],
        &held_until_go("exec"),
    );
    holder.wait_for("\"acquired\"");
    let value = get(&server, &key(NAME)).expect("a string value");
    while renewals(&holder.wait_for("\"renewed\"")) < 3 {}
    assert_eq!(
        get(&server, &key(NAME)).as_deref(),
        Some(value.as_str()),
        "three renewals left the value as it was"
    );
    let ttl = Duration::from_secs(2);
    assert_eq!(
        dotnet::compare_and(&server.url(), dotnet::RENEW_SCRIPT, &key(NAME), &value, ttl),
        1,
        "the package's compare of the value still matches"
    );
    go(&leasectl, "exec");
    holder.finish().expect(0);
}

/// The count of a `renewed` event's line.
fn renewals(line: &str) -> u64 {
    let event: serde_json::Value = serde_json::from_str(line).expect("an event line");
    event["renewals"].as_u64().expect("a renewal count")
}

//! The competition (seed 002)

use super::*;

/// Starts one `run` per competitor at once on `LEASE`, and answers each one's output.
///
/// The winner works 2s: long enough for every competitor to try while it still holds the
/// lease, even when a loaded machine starts the processes slowly.
fn compete(server: &RedisServer, competitors: &[(&str, &str)]) -> Vec<Output> {
    let leasectl = Leasectl::new();
    let running: Vec<Running> = competitors
        .iter()
        .map(|&who| spawn_run(&leasectl, server, who, &["--work", "2s"]))
        .collect();
    running.into_iter().map(Running::finish).collect()
}

/// Checks one round: exactly one winner (exit 0), every other exits 3 naming it, with the
/// winner's lease id, fencing token and TTL in its holder table; answers the token (the
/// counter's value on `server`: the round's only acquisition).
fn check_round(competitors: &[(&str, &str)], outputs: &[Output], server: &RedisServer) -> u64 {
    let token: u64 = server.query(&["GET", FENCE]);
    let codes: Vec<i32> = outputs.iter().map(Output::code).collect();
    let winners: Vec<usize> = (0..codes.len()).filter(|&i| codes[i] == 0).collect();
    let all: String = outputs.iter().map(|o| format!("{o}\n")).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {codes:?}\n{all}");
    let winner = winners[0];
    let (instance, region) = competitors[winner];
    let acquired = outputs[winner]
        .stdout
        .lines()
        .find(|line| line.contains("✓ Lock acquired | Lease: "))
        .unwrap_or_else(|| panic!("winner's acquired line\n{}", outputs[winner]));
    let short_id = &acquired.split("Lease: ").nth(1).unwrap()[..8];
    for (i, loser) in outputs.iter().enumerate().filter(|&(i, _)| i != winner) {
        assert_eq!(codes[i], 3, "a loser exits 3\n{loser}");
        let tag = competitors[i].0;
        let expected = format!("[{tag}] ✗ Lock unavailable | Held by: {instance} ({region})");
        assert!(loser.stdout.contains(&expected), "{expected}\n{loser}");
        let lease_id = table_value(&loser.stdout, "leaseId").expect("leaseId row");
        assert!(lease_id.starts_with(short_id), "winner's lease id\n{loser}");
        assert_eq!(
            table_value(&loser.stdout, "fencingToken"),
            Some(token.to_string().as_str()),
            "{loser}"
        );
        let ttl = ttl_left_seconds(&loser.stdout);
        assert!(ttl > 0.0 && ttl <= 30.0, "ttl left {ttl}\n{loser}");
    }
    token
}

#[test]
fn two_simultaneous_runs_give_one_winner_and_one_loser_that_names_it() {
    let server = RedisServer::start();
    let competitors = [("us-east-1", "us-east"), ("eu-west-1", "eu-west")];
    let mut last = 0;
    for round in 1..=3 {
        let outputs = compete(&server, &competitors);
        let token = check_round(&competitors, &outputs, &server);
        assert!(token > last, "tokens increase: {token} after {last}");
        last = token;
        assert!(!exists(&server, KEY), "released after round {round}");
    }
}

#[test]
fn three_simultaneous_runs_give_exactly_one_winner() {
    let server = RedisServer::start();
    let competitors = [
        ("us-east-1", "us-east"),
        ("eu-west-1", "eu-west"),
        ("ap-south-1", "ap-south"),
    ];
    let mut last = 0;
    for _ in 1..=2 {
        let outputs = compete(&server, &competitors);
        let token = check_round(&competitors, &outputs, &server);
        assert!(token > last, "tokens increase: {token} after {last}");
        last = token;
    }
}

#[test]
fn the_winner_prints_seed_002s_lines_and_releases_the_lease() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let output = spawn_run(
        &leasectl,
        &server,
        ("us-east-1", "us-east"),
        &["--work", "4s"],
    )
    .finish();
    assert_eq!(output.code(), 0, "{output}");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        11,
        "banner, attempt, acquired, one tick, end\n{output}"
    );
    let rule = "=".repeat(80);
    assert_eq!(
        lines[..7],
        [
            rule.as_str(),
            "DISTRIBUTED LOCK DEMO - REDIS",
            "Instance ID: us-east-1",
            "Region: us-east",
            rule.as_str(),
            "",
            "[us-east-1] Attempting lock | Region: us-east",
        ],
        "{output}"
    );
    let acquired = lines[7]
        .strip_prefix("[us-east-1] ✓ Lock acquired | Lease: ")
        .unwrap_or_else(|| panic!("acquired line\n{output}"));
    let (short_id, duration) = acquired.split_once(" | Duration: ").expect("duration");
    assert!(
        short_id.len() == 8 && short_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{output}"
    );
    assert_eq!(duration, "4s");
    assert_eq!(lines[8], "[us-east-1] Working... [3s]", "{output}");
    let completed = lines[9]
        .strip_prefix("[us-east-1] Completed | Duration: ")
        .unwrap_or_else(|| panic!("completed line\n{output}"));
    let (_, renewals) = completed.split_once(" | Renewals: ").expect("renewals");
    assert!(renewals.parse::<u64>().is_ok(), "{output}");
    assert_eq!(lines[10..], ["[us-east-1] Lock released"], "{output}");
    assert!(!exists(&server, KEY), "the key is gone after exit");
    assert!(exists(&server, FENCE), "the fencing counter stays");
}

#[test]
fn the_lease_hash_holds_seed_002s_fields_and_the_callers_metadata() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut run = spawn_run(
        &leasectl,
        &server,
        ("us-east-1", "us-east"),
        &["--work", "60s", "--meta", "team=blue"],
    );
    let acquired = run.wait_for("Lock acquired");
    let hash = hgetall(&server, KEY);
    let fields: BTreeSet<&str> = hash.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "leaseId",
        "acquiredAt",
        "fencingToken",
        "meta_instanceId",
        "meta_region",
        "meta_hostname",
        "meta_startTime",
        "meta_team",
    ]
    .into();
    assert_eq!(fields, expected, "{hash:?}");
    let lease_id = uuid::Uuid::parse_str(&hash["leaseId"]).expect("leaseId is a UUID");
    assert_eq!(lease_id.get_version_num(), 4);
    let short_id = acquired.split("Lease: ").nth(1).unwrap();
    assert!(short_id.starts_with(&hash["leaseId"][..8]), "{acquired}");
    assert!(is_rfc3339_utc_millis(&hash["acquiredAt"]), "{hash:?}");
    assert!(is_rfc3339_utc_seconds(&hash["meta_startTime"]), "{hash:?}");
    let counter: String = server.query(&["GET", FENCE]);
    assert_eq!(
        hash["fencingToken"], counter,
        "the token is the counter's value"
    );
    assert_eq!(hash["meta_instanceId"], "us-east-1");
    assert_eq!(hash["meta_region"], "us-east");
    let hostname = hostname::get().unwrap().to_string_lossy().into_owned();
    assert_eq!(hash["meta_hostname"], hostname);
    assert_eq!(hash["meta_team"], "blue");
    let ttl = pttl(&server, KEY);
    assert!(ttl > 0 && ttl <= 30_000, "default TTL 30s, got {ttl} ms");
}

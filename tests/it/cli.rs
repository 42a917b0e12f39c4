//! The `leasectl` binary end to end: real `redis-server`s and real `leasectl` processes,
//! checked by what users see (stdout, stderr, the exit codes of SPEC 4) and what is in Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{complete, parse_json, Output, Running};
use crate::support::json::{LeaseJson, Metadata};
use crate::support::{self, exists, hgetall, pttl, query, Leasectl, RedisServer, SEED_002_FIELDS};

/// `run`'s default lease, its key and its fencing counter under the default prefix.
const LEASE: &str = "critical-section-lock";
const KEY: &str = "lease:critical-section-lock";
const FENCE: &str = "lease:@fence{lease:critical-section-lock}";

// ---------------------------------------------------------------------------------------------
// Running leasectl

/// `leasectl ARGS` against `server`, run to its end.
fn leasectl_against(leasectl: &Leasectl, server: &RedisServer, args: &[&str]) -> Output {
    let mut command = leasectl.against(server);
    command.args(args);
    complete(command)
}

/// `leasectl run --instance ID --region R EXTRA...` against `server`, started.
fn spawn_run(
    leasectl: &Leasectl,
    server: &RedisServer,
    (instance, region): (&str, &str),
    extra: &[&str],
) -> Running {
    let mut command = leasectl.against(server);
    command
        .args(["run", "--instance", instance, "--region", region])
        .args(extra);
    Running::spawn(command)
}

/// A `run` that holds `lease` (working a minute) once this returns.
fn holding(leasectl: &Leasectl, server: &RedisServer, who: (&str, &str), lease: &str) -> Running {
    let mut holder = spawn_run(leasectl, server, who, &["--lease", lease, "--work", "60s"]);
    holder.wait_for("Lock acquired");
    holder
}

// ---------------------------------------------------------------------------------------------
// Reading and writing Redis

/// Every key with its type, content and whether it expires: to show that nothing changed.
fn snapshot(connection: &mut redis::Connection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(connection).unwrap();
    let mut all = BTreeMap::new();
    // A waiter's place in a lease's queue is bookkeeping that expires by itself, not data.
    let queue_entry =
        |key: &str| key.starts_with("lease:@queue") || key.starts_with("lease:@deadlines");
    for key in keys.into_iter().filter(|key| !queue_entry(key)) {
        let kind: String = redis::cmd("TYPE").arg(&key).query(connection).unwrap();
        let content = match kind.as_str() {
            "hash" => {
                let map: BTreeMap<String, String> =
                    redis::cmd("HGETALL").arg(&key).query(connection).unwrap();
                format!("{map:?}")
            }
            "string" => redis::cmd("GET").arg(&key).query(connection).unwrap(),
            "list" => {
                let items: Vec<String> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query(connection)
                    .unwrap();
                format!("{items:?}")
            }
            other => panic!("snapshot does not read a {other}"),
        };
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(connection).unwrap();
        let expiry = if ttl >= 0 { "expires" } else { "persistent" };
        all.insert(key, format!("{kind} {content} {expiry}"));
    }
    all
}

/// Writes a lease hash like leasectl's at `key`, held by `instance` (region `test`, fencing
/// token 7), expiring in a minute.
fn write_lease(server: &RedisServer, key: &str, instance: &str) {
    let ttl = Duration::from_secs(60);
    support::write_lease(server, key, (instance, "test"), 7, ttl);
}

// ---------------------------------------------------------------------------------------------
// Reading output

/// The value of `field` in a holder table (rows `    field  value`).
fn table_value<'a>(stdout: &'a str, field: &str) -> Option<&'a str> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("    "))
        .find_map(|row| {
            row.strip_prefix(field)
                .filter(|rest| rest.starts_with("  "))
                .map(str::trim)
        })
}

/// The table's `ttl left` in seconds (`12.3s`); fails on anything else.
fn ttl_left_seconds(stdout: &str) -> f64 {
    let text = table_value(stdout, "ttl left").expect("a ttl left row");
    text.strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("ttl left {text:?} is not like 12.3s"))
}

/// `2025-12-25T21:00:00.000Z`: RFC 3339, UTC, with milliseconds.
fn is_rfc3339_utc_millis(text: &str) -> bool {
    is_timestamp(text, "dddd-dd-ddTdd:dd:dd.dddZ")
}

/// `2025-12-25T21:00:00Z`: RFC 3339, UTC, whole seconds (seed 002's startTime).
fn is_rfc3339_utc_seconds(text: &str) -> bool {
    is_timestamp(text, "dddd-dd-ddTdd:dd:ddZ")
}

/// Matches `text` against `pattern`, where `d` is any digit and anything else itself.
fn is_timestamp(text: &str, pattern: &str) -> bool {
    text.len() == pattern.len()
        && text.chars().zip(pattern.chars()).all(|(c, p)| match p {
            'd' => c.is_ascii_digit(),
            p => c == p,
        })
}

fn inspect_json(leasectl: &Leasectl, server: &RedisServer, name: &str) -> LeaseJson {
    parse_json(&leasectl_against(
        leasectl,
        server,
        &["inspect", name, "--json"],
    ))
}

// ---------------------------------------------------------------------------------------------
// The competition (seed 002)

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

// ---------------------------------------------------------------------------------------------
// Renewal and loss

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

// ---------------------------------------------------------------------------------------------
// Takeover

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

// ---------------------------------------------------------------------------------------------
// Signals

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

// ---------------------------------------------------------------------------------------------
// inspect

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

// ---------------------------------------------------------------------------------------------
// Leases written by other tools

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

// ---------------------------------------------------------------------------------------------
// release

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

// ---------------------------------------------------------------------------------------------
// Settings (SPEC 3)

/// A settings file naming `server` with key prefix `prefix`.
fn write_settings(path: &Path, server: &RedisServer, prefix: &str) {
    let json = serde_json::json!({
        "RedisLeasing": {
            "ConnectionString": format!("127.0.0.1:{},ssl=False", server.port),
            "KeyPrefix": prefix,
        }
    });
    write_file(path, &json.to_string());
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `inspect job --json` with `command`: answers the key used and its holder's instance.
fn inspect_job(mut command: Command) -> (String, Option<String>) {
    command.args(["inspect", "job", "--json"]);
    let json: LeaseJson = parse_json(&complete(command));
    let instance = json.metadata.and_then(|m| m.instance_id);
    (json.key, instance)
}

/// A server with lease `job` held under each of `prefixes`, by `holder-<prefix>`.
fn server_with_jobs(prefixes: &[&str]) -> RedisServer {
    let server = RedisServer::start();
    for prefix in prefixes {
        write_lease(
            &server,
            &format!("{prefix}job"),
            &format!("holder-{prefix}"),
        );
    }
    server
}

#[test]
fn a_settings_file_in_the_working_folder_is_used_by_run() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let mut command = leasectl.command();
    command.args([
        "run",
        "--instance",
        "a",
        "--region",
        "r",
        "--lease",
        "job",
        "--work",
        "60s",
    ]);
    let mut run = Running::spawn(command);
    run.wait_for("Lock acquired");
    assert_eq!(hgetall(&server, "t:job")["meta_instanceId"], "a");
    assert!(!exists(&server, "lease:job"));
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_the_environment() {
    let server = server_with_jobs(&["t:", "env:", "flag:"]);
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let from_file = inspect_job(leasectl.command());
    assert_eq!(from_file, ("t:job".into(), Some("holder-t:".into())));

    let mut command = leasectl.command();
    command.env("RedisLeasing__KeyPrefix", "env:");
    assert_eq!(
        inspect_job(command),
        ("env:job".into(), Some("holder-env:".into()))
    );

    let mut command = leasectl.command();
    command
        .env("RedisLeasing__KeyPrefix", "env:")
        .args(["--key-prefix", "flag:"]);
    assert_eq!(
        inspect_job(command),
        ("flag:job".into(), Some("holder-flag:".into()))
    );
}

#[test]
fn the_user_config_folder_is_searched_after_the_working_folder() {
    let server = server_with_jobs(&["home:", "here:"]);
    let leasectl = Leasectl::new();
    let user_file = leasectl
        .dir()
        .join(".config/leasectl/appsettings.Local.json");
    write_settings(&user_file, &server, "home:");
    let found = inspect_job(leasectl.command());
    assert_eq!(found, ("home:job".into(), Some("holder-home:".into())));

    let project = leasectl.dir().join("project");
    write_settings(&project.join("appsettings.Local.json"), &server, "here:");
    let mut command = leasectl.command();
    command.current_dir(&project);
    assert_eq!(
        inspect_job(command),
        ("here:job".into(), Some("holder-here:".into()))
    );
}

#[test]
fn the_config_flag_reads_the_named_file_instead() {
    let server = server_with_jobs(&["t:", "cfg:"]);
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let named = leasectl.dir().join("elsewhere/custom.json");
    write_settings(&named, &server, "cfg:");
    let mut command = leasectl.command();
    command.arg("--config").arg(&named);
    assert_eq!(
        inspect_job(command),
        ("cfg:job".into(), Some("holder-cfg:".into()))
    );
}

#[test]
fn a_bad_settings_value_names_the_file_the_field_and_what_was_expected() {
    let server = RedisServer::start();
    let connection = format!("127.0.0.1:{},ssl=False", server.port);
    let cases = [
        ("Database", serde_json::json!("abc"), "whole number"),
        (
            "DefaultLeaseDuration",
            serde_json::json!("soon"),
            "duration",
        ),
        ("AutoRenew", serde_json::json!("perhaps"), "true or false"),
        ("ConnectTimeout", serde_json::json!(0), "milliseconds"),
    ];
    for (field, value, expected) in cases {
        let leasectl = Leasectl::new();
        let json = serde_json::json!({
            "RedisLeasing": { "ConnectionString": connection, field: value }
        });
        write_file(
            &leasectl.dir().join("appsettings.Local.json"),
            &json.to_string(),
        );
        let mut command = leasectl.command();
        command.args(["inspect"]);
        let output = complete(command);
        let error = output.failed_with(2);
        for part in [
            "appsettings.Local.json",
            &format!("RedisLeasing.{field}"),
            expected,
        ] {
            assert!(error.contains(part), "{field}: {part:?} missing\n{output}");
        }
    }
    let mut connection = server.connection();
    assert!(snapshot(&mut connection).is_empty(), "nothing was written");
}

#[test]
fn malformed_settings_json_names_the_file() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let text = format!(
        "{{\"RedisLeasing\": {{\"ConnectionString\": \"127.0.0.1:{},ssl=False\",",
        server.port
    );
    write_file(&leasectl.dir().join("appsettings.Local.json"), &text);
    let mut command = leasectl.command();
    command.args(["run", "--instance", "a", "--region", "r", "--work", "1s"]);
    let output = complete(command);
    let error = output.failed_with(2);
    assert!(error.contains("appsettings.Local.json"), "{output}");
    assert!(error.contains("JSON"), "{output}");
    assert!(
        snapshot(&mut server.connection()).is_empty(),
        "nothing was written"
    );
}

#[test]
fn the_config_flag_to_a_missing_file_is_a_usage_error() {
    let leasectl = Leasectl::new();
    let missing = leasectl.dir().join("no-such-settings.json");
    let mut command = leasectl.command();
    command.arg("--config").arg(&missing).arg("inspect");
    let output = complete(command);
    let error = output.failed_with(2);
    assert!(error.contains("no-such-settings.json"), "{output}");
}

#[test]
fn with_no_settings_at_all_the_local_default_endpoint_is_announced() {
    // Only read (inspect): whatever may listen on 6379 here is not ours.
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.arg("inspect");
    let output = complete(command);
    assert!(
        output.stderr.contains("redis://127.0.0.1:6379"),
        "names the endpoint\n{output}"
    );
    assert!(matches!(output.code(), 0 | 1), "{output}");
    assert!(!output.stderr.contains("panicked"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// Bad inputs (SPEC 7)

#[test]
fn bad_arguments_exit_2_with_one_error_line_and_change_nothing() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, "lease:kept", "someone");
    let before = snapshot(&mut server.connection());
    let long_name = "x".repeat(2000);
    let run = ["run", "--instance", "a", "--region", "r"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&run[..], &["--bogus"]].concat(), "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
        ([&run[..], &["--ttl", "0s"]].concat(), "0s"),
        ([&run[..], &["--ttl", "-5s"]].concat(), "-5s"),
        ([&run[..], &["--ttl", "soon"]].concat(), "soon"),
        ([&run[..], &["--work", "0s"]].concat(), "0s"),
        ([&run[..], &["--wait", "soon"]].concat(), "soon"),
        ([&run[..], &["--meta", "novalue"]].concat(), "novalue"),
        ([&run[..], &["--meta", "=value"]].concat(), "=value"),
        ([&run[..], &["--lease", ""]].concat(), "empty"),
        ([&run[..], &["--lease", &long_name]].concat(), "2000"),
        (vec!["inspect", ""], "empty"),
        (vec!["release", &long_name, "--force", "--yes"], "2000"),
    ];
    for (args, mention) in cases {
        let output = leasectl_against(&leasectl, &server, &args);
        let error = output.failed_with(2);
        assert!(
            error.contains(mention),
            "{args:?}: should mention {mention:?}\n{output}"
        );
        assert!(error.len() < 300, "{args:?}: a short line\n{output}");
        assert_eq!(
            snapshot(&mut server.connection()),
            before,
            "{args:?} changed data"
        );
    }
}

#[test]
fn bad_lease_names_are_refused_before_connecting() {
    let leasectl = Leasectl::new();
    let nowhere = format!("redis://127.0.0.1:{}", support::free_port());
    for args in [
        vec!["run", "--instance", "a", "--region", "r", "--lease", ""],
        vec!["inspect", ""],
    ] {
        let mut command = leasectl.command();
        command.args(["--endpoint", &nowhere]).args(&args);
        let output = complete(command);
        let error = output.failed_with(2);
        assert!(error.contains("empty"), "{output}");
        assert!(
            output.stdout.is_empty(),
            "nothing printed before the check\n{output}"
        );
    }
}

#[test]
fn an_endpoint_with_nothing_listening_exits_1() {
    let leasectl = Leasectl::new();
    let port = support::free_port();
    for args in [
        vec!["inspect"],
        vec!["run", "--instance", "a", "--region", "r"],
    ] {
        let mut command = leasectl.command();
        command
            .args(["--endpoint", &format!("redis://127.0.0.1:{port}")])
            .args(&args);
        let output = complete(command);
        let error = output.failed_with(1);
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{output}");
    }
}

#[test]
fn malformed_endpoints_exit_2() {
    let leasectl = Leasectl::new();
    for (endpoint, mention) in [("http://x", "http"), ("host:notaport", "notaport")] {
        let mut command = leasectl.command();
        command.args(["--endpoint", endpoint, "inspect"]);
        let output = complete(command);
        let error = output.failed_with(2);
        assert!(error.contains(mention), "{output}");
    }
}

#[test]
fn a_wrong_password_exits_1_and_is_never_shown() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, KEY, "a");
    let mut admin = server.connection();
    query::<()>(&mut admin, &["CONFIG", "SET", "requirepass", "rightpw"]);
    query::<()>(&mut admin, &["AUTH", "rightpw"]);
    let before = snapshot(&mut admin);
    let wrong = format!("redis://:wrongpw@127.0.0.1:{}", server.port);
    for verbosity in [None, Some("-vvv")] {
        for args in [
            vec!["inspect"],
            vec!["run", "--instance", "b", "--region", "r"],
        ] {
            let mut command = leasectl.command();
            command
                .args(["--endpoint", &wrong])
                .args(verbosity)
                .args(&args);
            let output = complete(command);
            let error = output.failed_with(1);
            assert!(error.contains("authentication failed"), "{output}");
            assert!(
                !output.stderr.contains("wrongpw"),
                "password shown\n{output}"
            );
            assert!(
                !output.stdout.contains("wrongpw"),
                "password shown\n{output}"
            );
        }
    }
    assert_eq!(snapshot(&mut admin), before);
    let right = format!("redis://:rightpw@127.0.0.1:{}", server.port);
    let mut command = leasectl.command();
    command.args(["--endpoint", &right, "inspect"]);
    let output = complete(command);
    assert_eq!(output.code(), 0, "the right password works\n{output}");
}

#[test]
fn a_key_of_another_type_counts_as_held_and_is_left_alone() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    query::<()>(&mut server.connection(), &["RPUSH", KEY, "a", "b", "c"]);
    let before = snapshot(&mut server.connection());
    let output = spawn_run(&leasectl, &server, ("b", "r"), &["--work", "1s"]).finish();
    assert_eq!(output.code(), 3, "{output}");
    assert!(output.stdout.contains("✗ Lock unavailable"), "{output}");
    assert!(output.stdout.contains("a Redis list"), "{output}");
    let text = leasectl_against(&leasectl, &server, &["inspect"]);
    assert_eq!(text.code(), 0, "{text}");
    assert!(
        text.stdout.contains("is held by") && text.stdout.contains("a Redis list"),
        "{text}"
    );
    let json = inspect_json(&leasectl, &server, LEASE);
    assert!(json.held && json.lease_id.is_none(), "{json:?}");
    assert_eq!(
        snapshot(&mut server.connection()),
        before,
        "the list is unchanged"
    );
}

// ---------------------------------------------------------------------------------------------
// Help and completions

#[test]
fn completions_for_bash_are_printed() {
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args(["completions", "bash"]);
    let output = complete(command);
    assert_eq!(output.code(), 0, "{output}");
    assert!(
        output.stdout.contains("complete") && output.stdout.contains("leasectl"),
        "{output}"
    );
}

#[test]
fn help_shows_examples() {
    let leasectl = Leasectl::new();
    for (args, example) in [
        (
            vec!["--help"],
            "leasectl run --instance us-east-1 --region us-east",
        ),
        (
            vec!["run", "--help"],
            "leasectl run --instance us-east-1 --region us-east --work",
        ),
    ] {
        let mut command = leasectl.command();
        command.args(&args);
        let output = complete(command);
        assert_eq!(output.code(), 0, "{output}");
        assert!(output.stdout.contains("Example"), "{output}");
        assert!(output.stdout.contains(example), "{output}");
    }
}

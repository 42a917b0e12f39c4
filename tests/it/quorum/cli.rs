//! Quorum mode: the binary.

use super::*;

/// `leasectl inspect --json` in quorum mode: SPEC 4's object and each instance's view; any
/// other field fails to parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LeaseJson {
    lease: String,
    key: String,
    held: bool,
    format: Option<String>,
    lease_id: Option<String>,
    owner_id: Option<String>,
    acquired_at: Option<String>,
    ttl_ms: Option<u64>,
    fencing_token: Option<u64>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    instances: Vec<InstanceJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InstanceJson {
    address: String,
    held: bool,
    lease_id: Option<String>,
    ttl_ms: Option<u64>,
    counter: Option<u64>,
    error: Option<String>,
}

/// `leasectl run --instance ID --region us-east --work WORK` against every instance.
fn run_command(leasectl: &Leasectl, quorum: &Quorum, instance: &str, work: &str) -> Command {
    let mut command = leasectl.against_quorum(quorum);
    command.args(["run", "--instance", instance, "--region", "us-east"]);
    command.args(["--work", work]);
    command
}

fn inspect_json(leasectl: &Leasectl, quorum: &Quorum) -> LeaseJson {
    let mut command = leasectl.against_quorum(quorum);
    command.args(["inspect", RUN_LEASE, "--json"]);
    parse_json(&complete(command))
}

#[test]
fn cli_two_runs_at_once_give_one_winner_and_inspect_shows_each_instance() {
    let quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    for round in 0..3 {
        let runs: Vec<_> = ["us-east-1", "eu-west-1"]
            .iter()
            .map(|who| Running::spawn(run_command(&leasectl, &quorum, who, "2s")))
            .collect();
        let outputs: Vec<Output> = runs.into_iter().map(Running::finish).collect();
        let mut codes: Vec<i32> = outputs.iter().map(Output::code).collect();
        let all: String = outputs.iter().map(Output::to_string).collect();
        let loser = &outputs[if codes[0] == 0 { 1 } else { 0 }];
        codes.sort();
        assert_eq!(codes, [0, 3], "round {round}: one winner\n{all}");
        let stdout = &loser.stdout;
        assert!(stdout.contains("✗ Lock unavailable | Held by: "), "{all}");
        for server in &quorum.servers {
            assert!(gone_soon(server, RUN_LEASE), "released\n{all}");
        }
    }

    // While a run holds the lease, inspect shows the holder and what each instance holds.
    let holder = Running::spawn(run_command(&leasectl, &quorum, "us-east-1", "60s"));
    let held_everywhere = support::eventually(LIMIT, || {
        quorum.servers.iter().all(|s| exists_on(s, RUN_LEASE))
    });
    assert!(held_everywhere, "the holder's run took the lease");
    let json = inspect_json(&leasectl, &quorum);
    assert_eq!(
        (json.lease.as_str(), json.key.as_str()),
        (RUN_LEASE, key(RUN_LEASE).as_str())
    );
    assert!(json.held && json.owner_id.is_none() && json.acquired_at.is_some());
    assert!(json.ttl_ms.is_some_and(|ttl| ttl > 0));
    assert!(json
        .metadata
        .is_some_and(|m| m["instanceId"] == "us-east-1"));
    let token = json.fencing_token.expect("a fencing token");
    let addresses: Vec<&str> = json.instances.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addresses, quorum.addresses());
    for instance in &json.instances {
        assert!(instance.held, "{instance:?}");
        assert_eq!(instance.lease_id, json.lease_id, "{instance:?}");
        assert!(instance.ttl_ms.is_some_and(|ttl| ttl > 0), "{instance:?}");
        assert!(instance.counter.is_some_and(|c| c >= token), "{instance:?}");
        assert_eq!(instance.error, None);
    }
    support::signal(holder.pid(), "INT");
    let output = holder.finish();
    assert_eq!(output.code(), 130, "Ctrl-C releases\n{output}");
}

#[test]
fn cli_one_instance_down_changes_nothing_and_two_give_no_quorum() {
    let mut quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    // With one down, fresh instances' grants count only once older than the TTL.
    quorum.wait_older_than(SHORT);
    quorum.servers[0].kill();
    let mut run = run_command(&leasectl, &quorum, "us-east-1", "1s");
    run.args(["--ttl", "2s"]);
    let output = complete(run);
    assert_eq!(output.code(), 0, "{output}");
    assert!(output.stdout.contains("Lock released"), "{output}");

    // Held on both live instances: exit 3, naming the holder.
    for server in &quorum.servers[1..] {
        write_holder(server, RUN_LEASE, "ap-south-1");
    }
    let json = inspect_json(&leasectl, &quorum);
    assert_eq!(json.lease_id.as_deref(), Some("id-of-ap-south-1"));
    assert_eq!(json.format.as_deref(), Some("hash"));
    let dead = &json.instances[0];
    assert!(
        !dead.held && dead.error.is_some() && dead.counter.is_none(),
        "{dead:?}"
    );
    let output = complete(run_command(&leasectl, &quorum, "us-east-1", "1s"));
    assert_eq!(output.code(), 3, "{output}");
    assert!(
        output
            .stdout
            .contains("✗ Lock unavailable | Held by: ap-south-1 (us-east)"),
        "{output}"
    );

    // Two down: a clear one-line error and exit 1.
    quorum.servers[1].kill();
    let output = complete(run_command(&leasectl, &quorum, "us-east-1", "1s"));
    assert_eq!(output.code(), 1, "{output}");
    let stderr = &output.stderr;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line\n{output}");
    assert!(
        lines[0].starts_with("leasectl: error: no quorum: "),
        "{stderr}"
    );
    assert!(lines[0].contains("2 needed"), "{stderr}");
    let addresses = quorum.addresses();
    for dead in &addresses[..2] {
        assert!(
            lines[0].contains(&format!("{dead} connection refused")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"));
}

/// A lease left on a minority (its other instances down, or never reached) is not free: an
/// instance that comes back with its memory gives it a majority again. `inspect` says no
/// majority agrees, `inspect --wait-free` waits, and `release --force` (or by its lease id)
/// deletes it where it is, rather than "not held; nothing to release".
#[test]
fn cli_release_deletes_a_lease_left_on_a_minority() {
    let mut quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    let command = |quorum: &Quorum, args: &[&str]| {
        let mut command = leasectl.against_quorum(quorum);
        command.args(args);
        complete(command)
    };
    for server in &quorum.servers[..2] {
        write_holder(server, RUN_LEASE, "ap-south-1");
    }
    quorum.servers[0].kill();
    let shown = command(&quorum, &["inspect", RUN_LEASE]);
    assert!(
        shown.stdout.contains("has no holder a majority agrees on"),
        "{shown}"
    );
    // Not free either: one instance free is no majority.
    let waited = command(&quorum, &["inspect", RUN_LEASE, "--wait-free", "100ms"]);
    assert_eq!(waited.code(), 3, "{waited}");

    let forced = command(&quorum, &["release", RUN_LEASE, "--force", "--yes"]);
    assert_eq!(forced.code(), 0, "{forced}");
    assert!(
        forced.stdout.contains(
            "Force-released critical-section-lock (was held by ap-south-1 (us-east) on 1 of 3 \
             instances)"
        ),
        "{forced}"
    );
    assert!(!exists_on(&quorum.servers[1], RUN_LEASE), "{forced}");

    write_holder(&quorum.servers[1], RUN_LEASE, "ap-south-1");
    let by_id = command(
        &quorum,
        &["release", RUN_LEASE, "--lease-id", "id-of-ap-south-1"],
    );
    assert_eq!(by_id.code(), 0, "{by_id}");
    assert!(by_id.stdout.contains("Released"), "{by_id}");
    assert!(!exists_on(&quorum.servers[1], RUN_LEASE), "{by_id}");
    let free = command(&quorum, &["inspect", RUN_LEASE]);
    assert!(free.stdout.contains("is free"), "{free}");
}

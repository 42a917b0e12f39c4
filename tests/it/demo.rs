//! `run --json` events and `leasectl demo`: the competition played by real `leasectl run`
//! processes, judged from their events.

use std::process::Command;

use serde_json::Value;

use crate::process::{complete, Output, Running};
use crate::support::{Leasectl, Quorum, RedisServer};

/// Every line of a `--json` run: one JSON object with `event` and `time` first.
fn events(output: &Output) -> Vec<Value> {
    output
        .stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{output}"));
            let keys: Vec<&String> = event.as_object().expect("an object").keys().collect();
            assert_eq!(keys[..2], ["event", "time"], "{line}");
            assert!(
                humantime::parse_rfc3339(event["time"].as_str().unwrap()).is_ok(),
                "{line}"
            );
            event
        })
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

/// The events of a holder that acquired, renewed at least once, completed and released.
fn held_renewed_and_released(events: &[Value], output: &Output) {
    let steps: Vec<&str> = names(events)
        .into_iter()
        .filter(|e| *e != "renewed")
        .collect();
    assert_eq!(
        steps,
        ["attempting", "acquired", "completed", "released"],
        "{output}"
    );
    assert!(names(events).contains(&"renewed"), "renewed\n{output}");
}

fn run_json(leasectl: &Leasectl, server: &RedisServer, instance: &str, flags: &[&str]) -> Command {
    let mut command = leasectl.against(server);
    command
        .args(["run", "--json", "--instance", instance, "--region", "r"])
        .args(flags);
    command
}

#[test]
fn run_json_tells_each_step_as_an_event() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut winner = Running::spawn(run_json(
        &leasectl,
        &server,
        "a",
        &["--ttl", "300ms", "--work", "1s"],
    ));
    winner.wait_for("\"acquired\"");
    let loser = complete(run_json(&leasectl, &server, "b", &[]));
    loser.expect(3);
    let lost = events(&loser);
    assert_eq!(names(&lost), ["attempting", "held"], "{loser}");
    assert_eq!(lost[0]["instance"], "b");
    assert_eq!(lost[1]["metadata"]["instanceId"], "a", "{loser}");
    assert_eq!(lost[1]["held"], true);

    let waiter = complete(run_json(
        &leasectl,
        &server,
        "c",
        &["--wait", "30s", "--work", "10ms"],
    ));
    let winner = winner.finish();
    winner.expect(0);
    let won = events(&winner);
    held_renewed_and_released(&won, &winner);
    let acquired = &won[1];
    assert_eq!(acquired["ttlMs"], 300);
    assert!(acquired["fencingToken"].as_u64().is_some() && acquired["leaseId"].is_string());

    waiter.expect(0);
    let waited = events(&waiter);
    assert_eq!(
        names(&waited)[..3],
        ["attempting", "waiting", "acquired"],
        "{waiter}"
    );
    assert_eq!(waited[1]["metadata"]["instanceId"], "a");
    assert_eq!(waited[1]["waitMs"], 30_000);
    assert!(waited[2]["fencingToken"].as_u64() > acquired["fencingToken"].as_u64());
}

#[test]
fn exec_json_tells_events_on_stdout_and_sends_the_commands_output_to_stderr() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let exec = |flags: &[&str], script: &str| {
        let mut command = leasectl.against(&server);
        command
            .args(["exec", "job", "--json", "--ttl", "300ms"])
            .args(flags)
            .args(["--", "sh", "-c", script]);
        command
    };
    let mut holder = Running::spawn(exec(&[], "echo from-the-command; sleep 1; exit 7"));
    holder.wait_for("\"acquired\"");
    let refused = complete(exec(&[], "echo never"));
    refused.expect(3);
    assert_eq!(
        names(&events(&refused)),
        ["attempting", "held"],
        "{refused}"
    );
    let waiter = complete(exec(&["--wait", "30s"], "true"));
    let holder = holder.finish();
    holder.expect(7);
    assert!(holder.stderr.contains("from-the-command"), "{holder}");
    let told = events(&holder);
    held_renewed_and_released(&told, &holder);
    assert_eq!(
        told.iter().find(|e| e["event"] == "completed").unwrap()["exitCode"],
        7
    );
    waiter.expect(0);
    assert_eq!(
        names(&events(&waiter))[..3],
        ["attempting", "waiting", "acquired"],
        "{waiter}"
    );
}

/// The demo's summary lines that start with a ✓ (and that none starts with a ✗).
fn rounds_passed(output: &Output) -> usize {
    assert!(!output.stdout.contains("✗ Round"), "{output}");
    output
        .stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("✓ Round"))
        .count()
}

#[test]
fn the_demo_plays_every_round_with_exactly_one_holder() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut demo = leasectl.against(&server);
    demo.args(["demo", "--fast"]);
    let output = complete(demo);
    output.expect(0);
    assert_eq!(rounds_passed(&output), 4, "{output}");
    for round in [
        "two at once",
        "three at once",
        "release takeover",
        "crash takeover",
    ] {
        assert!(output.stdout.contains(round), "{round}\n{output}");
    }
}

#[test]
fn the_quorum_demo_survives_one_server_shut_down() {
    // Servers just started, as the wrapper starts them: the demo itself waits, before a server
    // goes down, until they are older than the longest TTL it used.
    let quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    let mut demo = leasectl.against_quorum(&quorum);
    demo.args(["demo", "--fast", "--quorum"]);
    let output = complete(demo);
    output.expect(0);
    // The fifth round has two verdicts: its race, and inspect naming the server that is down.
    assert_eq!(rounds_passed(&output), 6, "{output}");
    assert!(
        output
            .stdout
            .contains(&format!("inspect listed {} as down", quorum.addresses()[1])),
        "{output}"
    );
}

#[test]
fn the_quorum_round_refuses_servers_that_are_not_three_local_ones() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut demo = leasectl.against(&server);
    demo.args(["demo", "--quorum"]);
    let output = complete(demo);
    assert!(output.failed_with(2).contains("--quorum"), "{output}");
}

//! What the scripts cost the server (issue 17), counted by Redis itself (`INFO commandstats`)
//! while `leasectl bench` cycles a free lease: the free path calls each command it needs once,
//! and quorum mode asks an instance for its uptime once per connection, not in every acquire.
//! The usual answers are numbers, not tables (a table costs the server about as much to answer
//! as a command): the calls the server logged are run again as they were sent.

use std::collections::BTreeMap;

use crate::process::complete;
use crate::support::{command_stats as calls, Leasectl, Quorum, RedisServer};

/// `leasectl bench --scenario SCENARIO` of `cycles` cycles (no warm-up) against `urls`.
fn bench(urls: &[String], scenario: &str, cycles: u64) {
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    let cycles = cycles.to_string();
    command.args(["bench", "--json", "--redis", &urls.join(",")]);
    command.args(["--scenario", scenario, "--cycles", &cycles, "--warmup", "0"]);
    complete(command).expect(0);
}

/// The commands that `cycles` of bench S4 ran on each instance that served only its quorum
/// cycles (instance 0 also serves S4's interleaved single-instance cycles; 1 and 2 only quorum
/// ones).
fn quorum_cycles(cycles: u64) -> Vec<BTreeMap<String, u64>> {
    let quorum = Quorum::start(3);
    for server in &quorum.servers {
        server.query::<()>(&["CONFIG", "RESETSTAT"]);
    }
    bench(&quorum.urls(), "S4", cycles);
    quorum.servers[1..].iter().map(calls).collect()
}

/// How many times `name` ran (0 when it never did).
fn count(calls: &BTreeMap<String, u64>, name: &str) -> u64 {
    calls.get(name).copied().unwrap_or(0)
}

#[test]
fn the_free_path_calls_each_command_once() {
    let server = RedisServer::start();
    let cycles = 200;
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    bench(&[server.url()], "S1", cycles);
    let calls = calls(&server);
    // Acquire: EXISTS, TIME, SET ... GET (the fencing counter, read and written at once),
    // HSET, PEXPIRE. Release: HGET, DEL, ZRANGE, PUBLISH.
    for name in ["exists", "time", "set", "hset", "pexpire", "hget", "del"] {
        assert_eq!(count(&calls, name), cycles, "{name}: {calls:?}");
    }
    for name in ["get", "type", "zrem", "zscore"] {
        assert_eq!(count(&calls, name), 0, "{name} on the free path: {calls:?}");
    }
    assert!(
        count(&calls, "info") <= 2,
        "INFO memory and INFO cluster at connect only: {calls:?}"
    );
}

#[test]
fn a_quorum_instance_tells_its_uptime_once_per_connection() {
    let cycles = 200;
    for calls in quorum_cycles(cycles) {
        // INFO memory (the eviction check) and INFO server at connect; INFO server again with
        // the first acquire when that went out before the first answer came.
        assert!(count(&calls, "info") <= 3, "INFO per acquire: {calls:?}");
        // The longest TTL asked for, and the fencing counter (SET ... GET), once each.
        assert!(count(&calls, "get") <= cycles + 2, "{calls:?}");
        assert!(count(&calls, "set") <= cycles + 3, "{calls:?}");
        for name in ["zrem", "time"] {
            assert_eq!(count(&calls, name), 0, "{name} on the free path: {calls:?}");
        }
        // A release returns at a majority and finishes here in the background, so the next
        // acquire may now and then still find the last holder here and read it whole (TYPE,
        // HGETALL, PTTL): that is the held path, rare, never the free one.
        let held = count(&calls, "type");
        assert_eq!(count(&calls, "hgetall"), held, "{calls:?}");
        assert!(held <= cycles / 10, "TYPE on the free path: {calls:?}");
    }
}

#[test]
fn a_quorum_acquire_and_release_call_each_command_once() {
    let cycles = 200;
    for calls in quorum_cycles(cycles) {
        // A release that finished here in the background after the next acquire (rare): that
        // acquire found the lease held and wrote nothing, and its release found nothing.
        let held = count(&calls, "type");
        assert!(held <= cycles / 10, "TYPE on the free path: {calls:?}");
        // Acquire: EXISTS (on either path), then GET of the longest TTL, SET ... GET of the
        // counter, HSET, PEXPIRE. Release: HGET, then DEL, ZRANGE and PUBLISH where it held.
        let exists = count(&calls, "exists");
        assert!((cycles..=cycles + 2).contains(&exists), "{calls:?}");
        // The held path reads the holder's id with HGET too.
        let hget = count(&calls, "hget");
        assert!((cycles..=cycles + held + 2).contains(&hget), "{calls:?}");
        let taken = cycles - held..=cycles + 2;
        for name in ["hset", "pexpire", "del", "zrange", "publish"] {
            assert!(taken.contains(&count(&calls, name)), "{name}: {calls:?}");
        }
        for name in ["zrem", "zscore", "zadd", "time"] {
            assert_eq!(count(&calls, name), 0, "{name} on the free path: {calls:?}");
        }
    }
}

/// The last script call with `keys` keys and `args` arguments (a range) the server logged
/// (`EVALSHA sha numkeys key... arg...`), if any.
fn last_logged(
    server: &RedisServer,
    keys: usize,
    args: std::ops::RangeInclusive<usize>,
) -> Option<Vec<String>> {
    type Entry = (i64, i64, i64, Vec<String>, String, String);
    let entries: Vec<Entry> = server.query(&["SLOWLOG", "GET", "-1"]);
    let numkeys = keys.to_string();
    entries
        .into_iter()
        .map(|(_, _, _, call, _, _)| call)
        .find(|call| {
            call[0].eq_ignore_ascii_case("evalsha")
                && call[2] == numkeys
                && args.contains(&(call.len() - 3 - keys))
        })
}

/// Logs every command `server` runs from now on (the slow log at 0 µs).
fn log_every_call(server: &RedisServer) {
    server.query::<()>(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    server.query::<()>(&["CONFIG", "SET", "slowlog-max-len", "10000"]);
    server.query::<()>(&["SLOWLOG", "RESET"]);
}

/// Runs a logged call again, as it was sent.
fn again(server: &RedisServer, call: &[String]) -> redis::Value {
    let args: Vec<&str> = call.iter().map(String::as_str).collect();
    server.query(&args)
}

/// Takes the last cycle's lease again with its own acquire call (`acquire_keys` keys; its key
/// is free now; six arguments and the values), and releases it with the cycle's release
/// (`release_keys` keys and their arguments): each answers a number.
fn answers_are_numbers(
    server: &RedisServer,
    acquire_keys: usize,
    release_keys: usize,
    release_args: usize,
) {
    let acquire = last_logged(server, acquire_keys, 6..=99).expect("an acquire was logged");
    let release = last_logged(server, release_keys, release_args..=release_args)
        .expect("a release was logged");
    let answer = again(server, &acquire);
    assert!(
        matches!(answer, redis::Value::Int(token) if token > 0),
        "the acquire answered {answer:?}"
    );
    let answer = again(server, &release);
    assert_eq!(answer, redis::Value::Int(1), "the release answered");
}

#[test]
fn the_usual_acquire_and_release_answer_a_number() {
    let server = RedisServer::start();
    log_every_call(&server);
    bench(&[server.url()], "S1", 3);
    // One lease in single mode is released by handoff.lua (five keys, four arguments).
    answers_are_numbers(&server, 4, 5, 4);

    let quorum = Quorum::start(3);
    for server in &quorum.servers {
        log_every_call(server);
    }
    bench(&quorum.urls(), "S4", 3);
    // Instance 0 also serves S4's interleaved single-instance cycles.
    answers_are_numbers(&quorum.servers[1], 5, 2, 3);
}

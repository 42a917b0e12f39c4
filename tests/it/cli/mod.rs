//! The `leasectl` binary end to end: real `redis-server`s and real `leasectl` processes,
//! checked by what users see (stdout, stderr, the exit codes of SPEC 4) and what is in Redis.

mod bad_inputs;
mod competition;
mod help;
mod inspect;
mod other_tools;
mod release;
mod renewal;
mod settings;
mod signals;
mod takeover;

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

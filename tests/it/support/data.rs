//! What a test reads and writes on a server: key and channel names (under the default
//! prefix), commands on a fresh connection, command statistics, and leases written by hand.

#![allow(dead_code)]

use std::collections::BTreeMap;

use std::time::Duration;

use super::{eventually, uptime, RedisServer};

/// The release channel of lease `name` (under the default key prefix, with no hash tag).
pub fn release_channel(name: &str) -> String {
    format!("lease:@released{{lease:{name}}}")
}

/// How many connections are subscribed to `channel` (a waiter subscribes after its first try).
pub fn subscribers(connection: &mut redis::Connection, channel: &str) -> i64 {
    let (_, count): (String, i64) = query(connection, &["PUBSUB", "NUMSUB", channel]);
    count
}

/// Runs one command on a synchronous connection: `["HGET", "key", "field"]`.
pub fn query<T: redis::FromRedisValue>(connection: &mut redis::Connection, args: &[&str]) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query(connection)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

impl RedisServer {
    /// Runs one command over a fresh connection: `["HGET", "key", "field"]`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }
}

/// The URL of a user of `server` that may do everything but PUBLISH: its releases notify
/// nobody (they stand all the same).
pub fn url_without_publish(server: &RedisServer) -> String {
    let _: () = server.query(&[
        "ACL",
        "SETUSER",
        "nopub",
        "reset",
        "on",
        ">nopub-pw",
        "~*",
        "&*",
        "+@all",
        "-publish",
    ]);
    format!("redis://nopub:nopub-pw@127.0.0.1:{}", server.port)
}

pub fn hgetall(server: &RedisServer, key: &str) -> BTreeMap<String, String> {
    server.query(&["HGETALL", key])
}

pub fn exists(server: &RedisServer, key: &str) -> bool {
    server.query::<i64>(&["EXISTS", key]) == 1
}

pub fn get(server: &RedisServer, key: &str) -> Option<String> {
    server.query(&["GET", key])
}

pub fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.query(&["PTTL", key])
}

/// The key of lease `name` under the default prefix.
pub fn key(name: &str) -> String {
    format!("lease:{name}")
}

/// The fencing counter of lease `name` under the default prefix (a name with no hash tag).
pub fn fence_key(name: &str) -> String {
    format!("lease:@fence{{lease:{name}}}")
}

/// The waiters' queue of lease `name` under the default prefix (a name with no hash tag).
pub fn queue_key(name: &str) -> String {
    format!("lease:@queue{{lease:{name}}}")
}

/// When each waiter of lease `name` last confirmed its place (under the default prefix).
pub fn deadlines_key(name: &str) -> String {
    format!("lease:@deadlines{{lease:{name}}}")
}

/// What the queued waiters of lease `name` left for a release to hand them the lease (under
/// the default prefix).
pub fn grants_key(name: &str) -> String {
    format!("lease:@grants{{lease:{name}}}")
}

/// How many times each command ran on `server` since its statistics were last reset (`INFO
/// commandstats`), by lower-case name.
pub fn command_stats(server: &RedisServer) -> BTreeMap<String, u64> {
    let text: String = server.query(&["INFO", "commandstats"]);
    text.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split_once(':'))
        .map(|(name, stats)| {
            let count = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (name.to_string(), count)
        })
        .collect()
}

/// How many times Redis ran `command` since its statistics were last reset (0 when it never
/// did).
pub fn command_calls(server: &RedisServer, command: &str) -> u64 {
    command_stats(server).get(command).copied().unwrap_or(0)
}

/// Sets the `acquiredAt` of the lease hash at `key` to now: a lease taken after the instances
/// started. (In quorum mode one taken before a young instance started — like those of
/// [`write_lease`], from 2025 — keeps that instance's grant from counting for a TTL.) First
/// waits until `server` (started with the others) has been up 4 s: INFO's whole-second uptime
/// tells the start only to within a second or two, and a holder that may have acquired before
/// the start counts as before it.
pub fn acquired_now(server: &RedisServer, key: &str) {
    let started = eventually(Duration::from_secs(30), || uptime(server) >= 4);
    assert!(started, "the server was never up for 4 s");
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let _: i64 = server.query(&["HSET", key, "acquiredAt", &now]);
}

/// Writes a lease hash like leasectl's at `key`: lease id `id-of-INSTANCE`, held by `instance`
/// in `region` with fencing token `token`, expiring after `ttl`.
pub fn write_lease(
    server: &RedisServer,
    key: &str,
    (instance, region): (&str, &str),
    token: u64,
    ttl: Duration,
) {
    let _: i64 = server.query(&[
        "HSET",
        key,
        "leaseId",
        &format!("id-of-{instance}"),
        "acquiredAt",
        "2025-12-25T21:00:00.000Z",
        "fencingToken",
        &token.to_string(),
        "meta_instanceId",
        instance,
        "meta_region",
        region,
    ]);
    let _: i64 = server.query(&["PEXPIRE", key, &ttl.as_millis().to_string()]);
}

/// Seed 002's sample lease (its README's "Lease Storage Format"): no fencing token.
pub const SEED_002_FIELDS: &[&str] = &[
    "leaseId",
    "abc123-def456-ghi789",
    "acquiredAt",
    "2025-12-25T21:00:00.000Z",
    "meta_instanceId",
    "us-east-1",
    "meta_region",
    "us-east",
    "meta_hostname",
    "MACHINE-NAME",
    "meta_startTime",
    "2025-12-25T21:00:00Z",
];

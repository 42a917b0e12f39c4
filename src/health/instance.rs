//! The checks of one instance: reachability and latency, TLS, authentication, permissions,
//! server version and features, topology, memory policy, persistence and clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{acl, tls, Check, Status};
use crate::backend::nodes::{Node, Nodes};
use crate::error::Error;
use crate::settings::Settings;

/// A round trip slower than this is worth a warning: every lease operation pays it.
const SLOW: Duration = Duration::from_millis(100);
/// A clock further than this from ours (beyond what the round trip leaves uncertain) is
/// worth a warning: quorum instances disagree on when a TTL runs out.
const SKEW: Duration = Duration::from_millis(500);

/// Every check of instance `index` of `settings`.
pub(super) async fn check(settings: &Settings, index: usize) -> Vec<Check> {
    let endpoint = &settings.endpoints[index];
    let address = endpoint.address();
    let at = Some(address.as_str());
    let quorum = settings.endpoints.len() > 1;
    let mut checks = Vec::new();
    if endpoint.tls {
        checks.push(tls::check(endpoint, settings).await);
    }
    let mut single = settings.clone();
    single.endpoints = vec![endpoint.clone()];
    let nodes = match Nodes::connect(&single, None).await {
        Ok(nodes) => nodes,
        Err(error) => {
            checks.push(unreachable(&address, error, quorum));
            return checks;
        }
    };
    let node = &nodes.list[0];
    match latency(node).await {
        Ok(time) if time > SLOW => checks.push(
            Check::new(
                "reachable",
                at,
                Status::Warn,
                format!("PING {}", millis(time)),
            )
            .fix("every lease operation waits this long: run leasectl near its Redis"),
        ),
        Ok(time) => checks.push(Check::new(
            "reachable",
            at,
            Status::Pass,
            format!("PING {}", millis(time)),
        )),
        Err(error) => {
            checks.push(unreachable(&address, error, quorum));
            return checks;
        }
    }
    let user = node
        .command::<String>(redis::cmd("ACL").arg("WHOAMI").to_owned())
        .await
        .ok();
    let signed_in = match (&user, endpoint.password(), &settings.entra_id) {
        (_, _, Some(_)) => "with a Microsoft Entra ID token".to_string(),
        (Some(user), Some(_), _) => format!("as user {user}, with a password"),
        (Some(user), None, _) => format!("as user {user}, with no password"),
        (None, Some(_), _) => "with a password".to_string(),
        (None, None, _) => "with no password".to_string(),
    };
    checks.push(Check::new(
        "authentication",
        at,
        Status::Pass,
        format!("signed in {signed_in}"),
    ));
    let info = match node
        .command::<String>(redis::cmd("INFO").arg("everything").to_owned())
        .await
    {
        Ok(info) => info,
        // A server that refuses `INFO everything` (an older one, or an ACL) may answer INFO.
        Err(_) => node
            .command::<String>(redis::cmd("INFO"))
            .await
            .unwrap_or_default(),
    };
    let info = Info(info);
    let major = info.major();
    checks.push(server(&info, at));
    checks.push(topology(&info, at, quorum));
    if info.field("redis_mode") == Some("sentinel") {
        // The rest is about a data server.
        return checks;
    }
    checks.push(acl::check(node, user.as_deref(), major, &settings.key_prefix).await);
    checks.push(memory_policy(&info, at));
    if quorum {
        checks.push(persistence(node, &info, at).await);
    }
    checks.push(clock(node, at).await);
    checks
}

/// A connection that failed: an authentication failure, or an instance out of reach.
fn unreachable(address: &str, error: Error, quorum: bool) -> Check {
    let at = Some(address);
    match error {
        Error::Auth { detail, .. } => Check::new("authentication", at, Status::Fail, detail)
            .fix("check the password (and user=) in the connection string, or the Entra ID identity's access"),
        Error::Permission { detail, .. } => Check::new("permissions", at, Status::Fail, detail)
            .fix("allow this user PING and INFO (ACL SETUSER)"),
        other => {
            let fix = if quorum {
                "start the instance or fix its address; the others still decide while a majority answers"
            } else {
                "start Redis or fix the address; check firewalls, and TLS (rediss://, ssl=True) against the port"
            };
            Check::new("reachable", at, Status::Fail, other.to_string()).fix(fix)
        }
    }
}

/// The middle of three PING round trips.
async fn latency(node: &Node) -> Result<Duration, Error> {
    let mut times = Vec::with_capacity(3);
    for _ in 0..3 {
        let started = Instant::now();
        node.command::<String>(redis::cmd("PING")).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[1])
}

/// The server's version, and the features leasectl can use.
fn server(info: &Info, at: Option<&str>) -> Check {
    let Some(version) = info.field("redis_version") else {
        return Check::new("server", at, Status::Warn, "INFO did not say the version")
            .fix("allow this user INFO (ACL SETUSER ... +info)");
    };
    let major = info.major();
    let yes = |on: bool| if on { "yes" } else { "no" };
    let detail = format!(
        "Redis {version}; RESP3 {}, ACL {}, sharded pub/sub {}",
        yes(major >= 6),
        yes(major >= 6),
        yes(major >= 7)
    );
    if major < 6 {
        return Check::new("server", at, Status::Warn, detail)
            .fix("upgrade to Redis 6 or later (ACL users, RESP3)");
    }
    Check::new("server", at, Status::Pass, detail)
}

/// What the server says it is: standalone primary, cluster node, replica, or a Sentinel.
fn topology(info: &Info, at: Option<&str>, quorum: bool) -> Check {
    let role = info.field("role").unwrap_or("master");
    if info.field("redis_mode") == Some("sentinel") {
        return Check::new("topology", at, Status::Fail, "a Sentinel, not a data server")
            .fix("name the monitored primary: the Sentinel hosts with serviceName=NAME in the connection string");
    }
    if role == "slave" {
        let primary = info.field("master_host").unwrap_or("?");
        return Check::new(
            "topology",
            at,
            Status::Fail,
            format!("a read-only replica of {primary}"),
        )
        .fix("connect to the primary: a replica refuses the lease scripts");
    }
    let detail = if info.field("cluster_enabled") == Some("1") {
        "a Redis Cluster node (primary)".to_string()
    } else if quorum {
        "a standalone primary (one quorum member)".to_string()
    } else {
        "a standalone primary".to_string()
    };
    Check::new("topology", at, Status::Pass, detail)
}

/// An evicting `maxmemory-policy` may evict a held lease, which a second holder then takes.
fn memory_policy(info: &Info, at: Option<&str>) -> Check {
    let (Some(policy), Some(limit)) = (info.field("maxmemory_policy"), info.field("maxmemory"))
    else {
        return Check::new(
            "memory policy",
            at,
            Status::Warn,
            "INFO did not say the maxmemory-policy",
        )
        .fix("allow this user INFO, and make sure maxmemory-policy is noeviction");
    };
    let limited = limit.parse::<u64>().unwrap_or(0) > 0;
    let fix =
        "CONFIG SET maxmemory-policy noeviction (on Azure Cache for Redis: Advanced settings)";
    match (policy, limited) {
        ("noeviction", _) => Check::new("memory policy", at, Status::Pass, "noeviction"),
        (policy, true) => Check::new(
            "memory policy",
            at,
            Status::Fail,
            format!("{policy} with maxmemory {limit}: a held lease may be evicted and taken by a second holder"),
        )
        .fix(fix),
        (policy, false) => Check::new(
            "memory policy",
            at,
            Status::Warn,
            format!("{policy}: evicts held leases as soon as a maxmemory is set"),
        )
        .fix(fix),
    }
}

/// Quorum mode: an instance that restarts without its data forgets the leases it granted, and
/// a second holder may then get a majority.
async fn persistence(node: &Node, info: &Info, at: Option<&str>) -> Check {
    let fsync = node
        .command::<Vec<String>>(
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("appendfsync")
                .to_owned(),
        )
        .await
        .ok()
        .and_then(|pair| pair.get(1).cloned());
    let fix = "CONFIG SET appendonly yes and appendfsync always (or keep a restarted instance out for the longest TTL)";
    match (info.field("aof_enabled"), fsync.as_deref()) {
        (Some("1"), Some("always")) => Check::new("persistence", at, Status::Pass, "appendonly yes, appendfsync always"),
        (Some("1"), Some(fsync)) => Check::new(
            "persistence",
            at,
            Status::Warn,
            format!("appendonly yes, appendfsync {fsync}: a crash may forget the last writes, leases among them"),
        )
        .fix(fix),
        (Some("1"), None) => Check::new("persistence", at, Status::Pass, "appendonly yes (appendfsync not readable)"),
        (Some(_), _) => Check::new(
            "persistence",
            at,
            Status::Warn,
            "appendonly no: a restart forgets the leases this instance granted",
        )
        .fix(fix),
        (None, _) => Check::new("persistence", at, Status::Warn, "INFO did not say whether appendonly is on")
            .fix(fix),
    }
}

/// The server's clock against ours: `TIME`, compared with the middle of the request (the
/// answer was made somewhere between sending and receiving), best of three (the shortest
/// round trip leaves the least doubt). A slow instance has a long round trip, not a skew.
async fn clock(node: &Node, at: Option<&str>) -> Check {
    let mut best: Option<(Duration, f64)> = None;
    for _ in 0..3 {
        let sent = SystemTime::now();
        let started = Instant::now();
        let Ok((secs, micros)) = node.command::<(u64, u64)>(redis::cmd("TIME")).await else {
            return Check::new("clock", at, Status::Warn, "TIME was refused")
                .fix("allow this user TIME (ACL SETUSER ... +time)");
        };
        let round_trip = started.elapsed();
        let middle = sent + round_trip / 2;
        let ours = middle
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let theirs = secs as f64 + micros as f64 / 1e6;
        if best.is_none_or(|(trip, _)| round_trip < trip) {
            best = Some((round_trip, theirs - ours));
        }
    }
    let (round_trip, offset) = best.expect("three samples");
    let doubt = round_trip.as_secs_f64() / 2.0;
    let detail = format!(
        "{:+.1} ms from this machine's clock (± {:.1} ms)",
        offset * 1000.0,
        doubt * 1000.0
    );
    if offset.abs() - doubt > SKEW.as_secs_f64() {
        return Check::new("clock", at, Status::Warn, detail)
            .fix("synchronise the clocks (NTP, chrony): Redis ages TTLs by its own clock");
    }
    Check::new("clock", at, Status::Pass, detail)
}

fn millis(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

/// An INFO answer.
struct Info(String);

impl Info {
    fn field(&self, name: &str) -> Option<&str> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    /// The major version (0 when unknown).
    fn major(&self) -> u32 {
        self.field("redis_version")
            .and_then(|v| v.split('.').next()?.parse().ok())
            .unwrap_or(0)
    }
}

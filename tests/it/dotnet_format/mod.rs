//! `LeaseFormat: Json` beside .NET services: leasectl and a stand-in of the
//! DistributedLeasing.Azure.Redis package ([`crate::support::dotnet`]) competing both ways on
//! the same keys, real `redis-server`s and real `leasectl` processes.

mod competing;
mod library;
mod rounds;
mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{complete, Output, Running};
use crate::support::dotnet::{self, DotnetService};
use crate::support::{eventually, get, key, Leasectl, RedisServer, LIMIT};

/// The lease the tests compete for.
const NAME: &str = "orders";

/// A .NET service of the fleet, with metadata as the package's README shows it.
fn dotnet_service(server: &RedisServer) -> DotnetService {
    DotnetService::new(
        server.url(),
        "dotnet-worker-1",
        &[("instance", "server-01"), ("version", "1.0.0")],
    )
}

/// `leasectl --format FORMAT exec NAME FLAGS -- sh -c SCRIPT`, started.
fn exec(
    leasectl: &Leasectl,
    server: &RedisServer,
    format: &str,
    flags: &[&str],
    script: &str,
) -> Running {
    let mut command = leasectl.against(server);
    command
        .args(["--format", format, "exec", NAME])
        .args(flags)
        .args(["--", "sh", "-c", script]);
    Running::spawn(command)
}

/// A child's script that records `$LEASECTL_LEASE_ID $LEASECTL_FENCING_TOKEN` in `TAG.held`,
/// then waits until `TAG.go` exists.
fn held_until_go(tag: &str) -> String {
    format!(
        "echo $LEASECTL_LEASE_ID $LEASECTL_FENCING_TOKEN > {tag}.held; \
         while [ ! -e {tag}.go ]; do sleep 0.05; done"
    )
}

/// An `exec --format FORMAT` holding NAME once this returns (its child waiting for `TAG.go`),
/// with the lease id and fencing token its child was given.
fn holder(
    leasectl: &Leasectl,
    server: &RedisServer,
    format: &str,
    flags: &[&str],
    tag: &str,
) -> (Running, String, u64) {
    let holder = exec(leasectl, server, format, flags, &held_until_go(tag));
    let record = path(leasectl, &format!("{tag}.held"));
    let recorded = eventually(LIMIT, || line_of(&record).is_some());
    assert!(recorded, "the exec's child never ran\n{}", holder.finish());
    let line = line_of(&record).unwrap();
    let (id, token) = line.split_once(' ').expect("id and token");
    (
        holder,
        id.to_string(),
        token.parse().expect("a fencing token"),
    )
}

/// Tells the child of `tag` to finish.
fn go(leasectl: &Leasectl, tag: &str) {
    std::fs::File::create(path(leasectl, &format!("{tag}.go"))).unwrap();
}

fn path(leasectl: &Leasectl, name: &str) -> PathBuf {
    leasectl.dir().join(name)
}

/// The first line of `path` once a whole line is there.
fn line_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.ends_with('\n')
        .then(|| text.lines().next().unwrap_or_default().to_string())
}

/// `leasectl ARGS` against `server` (the default format unless ARGS name one), run to its end.
fn leasectl_done(leasectl: &Leasectl, server: &RedisServer, args: &[&str]) -> Output {
    let mut command = leasectl.against(server);
    command.args(args);
    complete(command)
}

/// The JSON value of NAME's key, parsed.
fn stored(server: &RedisServer) -> serde_json::Value {
    let value = get(server, &key(NAME)).expect("NAME's key holds a string");
    serde_json::from_str(&value).unwrap_or_else(|e| panic!("not JSON ({e}): {value}"))
}

/// A TTL for the .NET side's leases in tests that hold them a while.
const DOTNET_TTL: Duration = Duration::from_secs(10);

//! The command line (clap): global flags, one subcommand each, and the value parsers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::output::UsageError;

const EXAMPLES: &str = "\
Examples:
  leasectl run --instance us-east-1 --region us-east     race for the demo lease and work 15s
  leasectl run --instance eu-west-1 --region eu-west --wait 1m
  leasectl inspect                                      who holds critical-section-lock
  leasectl inspect --all --json                         every lease under the key prefix
  leasectl release critical-section-lock --force --yes  free a stuck lease
  leasectl acquire deploy --ttl 10m --json              take a lease and leave it held
  leasectl extend deploy --lease-id ID --ttl 10m        give it 10 more minutes

Settings: appsettings.json, appsettings.Local.json (here or in ~/.config/leasectl/),
RedisLeasing__<Field> environment variables, then flags. With none, redis://127.0.0.1:6379.
Exit codes: 0 ok, 1 Redis error, 2 usage or settings error, 3 held by someone else, 4 lease lost.";

/// Distributed leases (locks with a time to live) on Redis.
#[derive(Parser, Debug)]
#[command(name = "leasectl", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes (listed after each command's own, under their own heading).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Read this settings file instead of looking up appsettings.json and appsettings.Local.json.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Redis endpoint: redis:// or rediss:// URL, or host:port[,password=...,ssl=True].
    /// Repeat it for quorum mode; each value is one instance, taken whole.
    #[arg(long = "endpoint", global = true, value_name = "URL")]
    pub endpoints: Vec<String>,
    /// Prefix of the lease keys (default `lease:`).
    #[arg(long, global = true, value_name = "P")]
    pub key_prefix: Option<String>,
    /// More detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// How a lease is stored: `hash` (seed 002, the default) or `json` (the .NET
    /// DistributedLeasing.Azure.Redis package's value), overriding the LeaseFormat setting.
    #[arg(long = "format", global = true, value_name = "FORMAT", value_parser = ["hash", "json"], ignore_case = true)]
    pub lease_format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The lock competition (the .NET RedisLeaseSample's): take the lease and work, or show who holds it.
    #[command(
        after_help = "Examples:\n  leasectl run --instance us-east-1 --region us-east --work 15s\n  \
        leasectl run --instance eu-1 --region eu --lease orders --lease invoices  (both or none)"
    )]
    Run(RunArgs),
    /// Show who holds a lease (or every lease), with its TTL left.
    #[command(
        after_help = "Examples:\n  leasectl inspect\n  leasectl inspect my-job --json\n  leasectl inspect --all --watch"
    )]
    Inspect(InspectArgs),
    /// Release a lease by its lease id, or force-release it.
    #[command(
        after_help = "Examples:\n  leasectl release my-job --lease-id 4f1c...\n  leasectl release my-job --force --yes"
    )]
    Release(ReleaseArgs),
    /// Take a lease and leave it held when leasectl exits (no renewal): it ends at its TTL
    /// unless extended or released by its lease id.
    #[command(after_help = "Examples:\n  leasectl acquire deploy --ttl 10m\n  \
        id=$(leasectl acquire deploy --ttl 10m --json | jq -r .leaseId)\n  \
        leasectl acquire deploy --wait 1m --meta step=migrate\n\n\
        Then: leasectl extend deploy --lease-id \"$id\" --ttl 10m; leasectl release deploy --lease-id \"$id\".\n\
        Exit: 0 taken; 3 held by someone else (after any --wait).")]
    Acquire(AcquireArgs),
    /// Give a lease held under a lease id a new time to live, from now (owner-checked).
    #[command(
        after_help = "Examples:\n  leasectl extend deploy --lease-id 4f1c... --ttl 10m\n  \
        leasectl extend deploy --lease-id \"$id\"      (by DefaultLeaseDuration)\n\n\
        Exit: 0 extended; 4 the lease is no longer ours (gone, or held under another id)."
    )]
    Extend(ExtendArgs),
    /// Run a command while holding a lease, renewing it; the command is stopped if the lease is lost.
    #[command(
        after_help = "Examples:\n  leasectl exec nightly-report -- ./report.sh\n  \
        leasectl exec nightly-report --wait 10m --max-hold 2h -- ./report.sh --full\n  \
        leasectl exec db-migration --lease search-reindex -- ./migrate.sh    (both leases or none)\n\n\
        The command gets LEASECTL_LEASE, LEASECTL_LEASE_ID and LEASECTL_FENCING_TOKEN\n\
        (with --lease also LEASECTL_FENCING_TOKENS=name=token,...).\n\
        Exit: the command's own code; 3 when the lease is held elsewhere; 4 when it was lost\n\
        (the command got SIGTERM, then SIGKILL after --kill-after). The command runs in a\n\
        process group of its own, and all of it gets these signals, also when exec dies; what\n\
        it leaves running is stopped before the release (not a process that left the group)."
    )]
    Exec(ExecArgs),
    /// Measure this deployment: lease cycles, parallel and contended acquirers, quorum, renewal at scale.
    #[command(
        after_help = "Examples:\n  leasectl bench --baseline\n  leasectl bench --scenario S1 --scenario S3 --json\n  \
        leasectl bench --redis redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 --scenario S4"
    )]
    Bench(BenchArgs),
    /// Play the lock competition: rounds of `leasectl run --json` instances racing for one lease.
    #[command(after_help = "Examples:\n  leasectl demo --fast\n  \
        leasectl demo --endpoint redis://127.0.0.1:7001 --endpoint redis://127.0.0.1:7002 --endpoint redis://127.0.0.1:7003\n\n\
        The rounds: two instances at once, three at once (exactly one winner, the others name it),\n\
        takeover after a graceful release, takeover after a crash (SIGKILL; the lease is taken once\n\
        its TTL ran out); with --quorum a fifth round with one of three servers shut down.\n\
        The demo's keys live under the key prefix 'leasectl-demo:' unless --key-prefix names one.\n\
        Exit: 0 when every round had exactly one holder at a time, 1 otherwise.")]
    Demo(DemoArgs),
    /// Fenced writes to a protected key (see `leasectl fence set --help`).
    Fence {
        #[command(subcommand)]
        action: FenceAction,
    },
    /// Write appsettings.Local.json through a few questions (or flags, with no terminal).
    #[command(
        after_help = "Examples:\n  leasectl configure\n  leasectl configure --auth local --endpoint 127.0.0.1:6379 --yes\n  \
        leasectl configure --auth connection-string --connection-string 'mycache.redis.cache.windows.net:6380,password=KEY,ssl=True'\n\n\
        The file goes to ./appsettings.Local.json (or --config PATH), mode 0600, and is added to .gitignore in a git work tree."
    )]
    Configure(ConfigureArgs),
    /// Check the configured deployment: reachability, TLS, authentication, ACL permissions,
    /// topology, memory policy, persistence, clocks, and a test lease.
    #[command(
        after_help = "Examples:\n  leasectl doctor\n  leasectl doctor --json\n\n\
        One line per check: ✓ pass, ! warning, ✗ failure, each with what to do about it.\n\
        Exit: 0 when no check failed (warnings allowed), 1 when one did, 2 on a settings error."
    )]
    Doctor(DoctorArgs),
    /// Print shell completions.
    #[command(
        after_help = "Example:\n  leasectl completions bash > /etc/bash_completion.d/leasectl"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// This instance's id, stored as meta_instanceId.
    #[arg(long, value_parser = non_empty)]
    pub instance: String,
    /// This instance's region, stored as meta_region.
    #[arg(long, value_parser = non_empty)]
    pub region: String,
    /// The lease to compete for; repeat to take several together (all or none).
    #[arg(
        long = "lease",
        value_name = "NAME",
        default_value = "critical-section-lock"
    )]
    pub leases: Vec<String>,
    // The durations take values with a leading '-' so that `--ttl -5s` is refused as a
    // negative duration, not as an unknown flag `-5`.
    /// How long the winner works.
    #[arg(
        long,
        default_value = "15s",
        value_parser = positive_duration,
        allow_hyphen_values = true
    )]
    pub work: Duration,
    #[command(flatten)]
    pub taking: Taking,
    /// One JSON object per line for each event (attempting, waiting, held, acquired, renewed,
    /// lost, interrupted, released, completed) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a lease is taken: the options `run` and `acquire` share.
#[derive(Args, Debug)]
pub struct Taking {
    /// The lease's time to live (default: the settings' DefaultLeaseDuration).
    #[arg(long, value_parser = positive_duration, allow_hyphen_values = true)]
    pub ttl: Option<Duration>,
    /// Wait up to this long for the lease instead of failing fast (default: the settings'
    /// DefaultWaitTime, else none).
    #[arg(long, value_parser = duration, allow_hyphen_values = true)]
    pub wait: Option<Duration>,
    /// More metadata, stored as meta_<key>.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value)]
    pub meta: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// One JSON object: `checks` (name, instance, status, detail, fix) and `healthy`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Quorum mode on three throwaway local servers, with a fifth round that shuts the second
    /// one down (SHUTDOWN NOSAVE): never on servers you keep.
    #[arg(long)]
    pub quorum: bool,
    /// Shorter work and TTLs (about 15 seconds of rounds instead of 35).
    #[arg(long)]
    pub fast: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The lease to show.
    #[arg(default_value = "critical-section-lock", conflicts_with = "all")]
    pub name: String,
    /// Every lease under the key prefix.
    #[arg(long)]
    pub all: bool,
    /// JSON: one object per lease (an array with --all).
    #[arg(long)]
    pub json: bool,
    /// Refresh every second until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Wait up to D until the lease is free (exit 0), else exit 3; woken by its release.
    #[arg(long, value_name = "D", value_parser = duration, conflicts_with_all = ["all", "watch"])]
    pub wait_free: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The lease to hold while the command runs.
    pub name: String,
    /// Another lease to hold with it (all or none); repeatable.
    #[arg(long = "lease", value_name = "NAME")]
    pub leases: Vec<String>,
    /// The lease's time to live (default: the settings' DefaultLeaseDuration).
    #[arg(long, value_parser = positive_duration, allow_hyphen_values = true)]
    pub ttl: Option<Duration>,
    /// Wait up to this long for the lease instead of exiting 3 at once.
    #[arg(long, value_parser = duration, allow_hyphen_values = true)]
    pub wait: Option<Duration>,
    /// End the command (as on a lost lease) after this long, so a stuck job cannot hold forever.
    #[arg(long, value_parser = positive_duration, allow_hyphen_values = true)]
    pub max_hold: Option<Duration>,
    /// After SIGTERM (a lost lease, a signal passed on, exec's death), how long the command's
    /// process group has before SIGKILL.
    #[arg(long, default_value = "5s", value_parser = duration, allow_hyphen_values = true)]
    pub kill_after: Duration,
    /// More metadata, stored as meta_<key>.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value)]
    pub meta: Vec<(String, String)>,
    /// One JSON object per line on stdout for each event (attempting, waiting, held, acquired,
    /// renewed, lost, interrupted, completed, released); the command's own stdout then goes to
    /// stderr, so that stdout carries events only.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run: S1 to S5 (default S1-S4; S4 only with 3 or more endpoints).
    #[arg(long = "scenario", value_name = "S", value_parser = ["S1", "S2", "S3", "S4", "S5"])]
    pub scenarios: Vec<String>,
    /// One JSON object per scenario per line.
    #[arg(long)]
    pub json: bool,
    /// Redis endpoints to measure instead of the settings': URLs separated by commas, or a
    /// JSON array of strings; repeatable.
    // Split after parsing, not by clap: clap would repeat a refused value, password and all.
    #[arg(long, value_name = "URL[,URL...]")]
    pub redis: Vec<String>,
    /// S1/S4 timed cycles.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cycles: u64,
    /// S1/S4 untimed cycles first.
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// S2/S3/S5 window.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// S2 acquirers, each on its own key.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,
    /// S3 waiters on one key.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: u64,
    /// S3 hold time.
    #[arg(long, default_value = "1ms", value_parser = duration)]
    pub hold: Duration,
    /// Lease TTL.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub ttl: Duration,
    /// S3 bound on one waiting acquire.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub wait_timeout: Duration,
    /// S5 leases held and auto-renewed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub leases: u64,
    /// Also run redis-benchmark (PING at 1 and 50 clients) and show our figures as a share.
    #[arg(long)]
    pub baseline: bool,
}

#[derive(Subcommand, Debug)]
pub enum FenceAction {
    /// Write VALUE to KEY unless TOKEN is older than the newest token KEY has seen (exit 3).
    #[command(
        after_help = "Example (inside `leasectl exec`):\n  leasectl fence set report:latest \"$(date)\" --token \"$LEASECTL_FENCING_TOKEN\""
    )]
    Set {
        /// The protected key.
        key: String,
        /// The value to write.
        value: String,
        /// The writer's fencing token.
        #[arg(long)]
        token: u64,
    },
}

#[derive(Args, Debug)]
pub struct AcquireArgs {
    /// The lease to take.
    pub name: String,
    #[command(flatten)]
    pub taking: Taking,
    /// One JSON object: lease, key, leaseId, fencingToken, ttlMs, acquiredAt (or, when held,
    /// the holder in `inspect --json`'s shape).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    /// The lease to extend.
    pub name: String,
    /// Its current lease id (as `acquire` printed it).
    #[arg(long, value_name = "ID")]
    pub lease_id: String,
    /// The new time to live, from now (default: the settings' DefaultLeaseDuration).
    #[arg(long, value_parser = positive_duration, allow_hyphen_values = true)]
    pub ttl: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The lease to release.
    pub name: String,
    /// Release only if this is the current lease id.
    #[arg(long, value_name = "ID", conflicts_with = "force")]
    pub lease_id: Option<String>,
    /// Delete the lease whoever holds it (asks first).
    #[arg(long)]
    pub force: bool,
    /// Do not ask before a forced release.
    #[arg(long, short = 'y', requires = "force")]
    pub yes: bool,
}

#[derive(Args, Debug, Default, Clone)]
pub struct ConfigureArgs {
    /// How to authenticate.
    #[arg(long, value_enum)]
    pub auth: Option<AuthMode>,
    /// With --auth connection-string: `host:port,password=...,ssl=True` or a redis(s):// URL.
    #[arg(long, value_name = "STRING")]
    pub connection_string: Option<String>,
    /// More instances for quorum mode: a JSON array of strings, or URLs or connection strings
    /// separated by `;` (refused where a `;` may be part of a password); repeatable. A
    /// repeated --endpoint adds one instance each, never split.
    // Split after parsing, not by clap: clap would repeat a refused value, password and all.
    #[arg(long = "endpoints", value_name = "LIST")]
    pub more_endpoints: Vec<String>,
    /// With --auth entra-id: Default (a chain like .NET's DefaultAzureCredential, the
    /// default), ManagedIdentity, AzureCli or ServicePrincipal.
    #[arg(long, value_name = "NAME")]
    pub credential: Option<String>,
    /// With --auth entra-id and a user-assigned managed identity: its client id.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Database number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub database: Option<i64>,
    /// Replace an existing file without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Save without testing the connection.
    #[arg(long)]
    pub no_test: bool,
    /// What a bare Azure cache name is: managed (Azure Managed Redis,
    /// NAME.REGION.redis.azure.net:10000) or cache (Azure Cache for Redis,
    /// NAME.redis.cache.windows.net:6380).
    #[arg(long, value_enum)]
    pub kind: Option<AzureKind>,
    /// With --kind managed: the Azure region of the cache (e.g. westeurope).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Test the connection, and save even when a check fails.
    #[arg(long, conflicts_with = "no_test")]
    pub save_anyway: bool,
}

/// The wizard's authentication modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// A connection string (or URL) with a password or access key.
    ConnectionString,
    /// Microsoft Entra ID: an endpoint, no password stored.
    EntraId,
    /// A local Redis with no password.
    Local,
}

/// The kinds of Azure Redis a bare cache name can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AzureKind {
    /// Azure Managed Redis: NAME.REGION.redis.azure.net:10000.
    Managed,
    /// Azure Cache for Redis: NAME.redis.cache.windows.net:6380.
    Cache,
}

/// The endpoints of a repeated flag whose values are lists (see [`leasectl::split_list`]);
/// `hint` is added to a refusal.
///
/// # Errors
/// A usage error naming the flag; it never repeats the value.
pub fn endpoint_lists(
    flag: &str,
    values: &[String],
    hint: &str,
) -> Result<Vec<String>, UsageError> {
    let mut endpoints = Vec::new();
    for value in values {
        let list =
            leasectl::split_list(value).map_err(|e| UsageError(format!("{flag}: {e}{hint}")))?;
        endpoints.extend(list);
    }
    Ok(endpoints)
}

fn duration(text: &str) -> Result<Duration, String> {
    leasectl::duration::parse(text)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    leasectl::duration::parse_positive(text)
}

fn non_empty(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("expected a non-empty value".into()),
        trimmed => Ok(trimmed.to_string()),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

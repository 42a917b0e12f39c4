//! One module per subcommand; `dispatch` resolves the settings and hands each its work.

mod bench;
mod configure;
mod demo;
mod exec;
mod fence;
mod inspect;
mod release;
mod run;

use std::process::ExitCode;

use clap::CommandFactory;
use leasectl::{LeaseClient, Overrides, Settings};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::{Cli, Command, Global};
use crate::output::{Printer, UsageError};

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    check(&cli.command)?;
    match cli.command {
        Command::Run(args) => run::run(connect(&cli.global, printer).await?, args, printer).await,
        Command::Inspect(args) => {
            inspect::run(connect(&cli.global, printer).await?, args, printer).await
        }
        Command::Release(args) => {
            release::run(connect(&cli.global, printer).await?, args, printer).await
        }
        Command::Bench(args) => {
            let mut global = cli.global.clone();
            if !args.redis.is_empty() {
                global.endpoints = crate::cli::endpoint_lists("--redis", &args.redis, "")?;
            }
            bench::run(settings(&global, printer).await?, args).await
        }
        Command::Demo(args) => {
            let mut global = cli.global.clone();
            global.key_prefix.get_or_insert_with(|| demo::PREFIX.into());
            demo::run(&global, settings(&global, printer).await?, args).await
        }
        Command::Exec(args) => exec::run(connect(&cli.global, printer).await?, args, printer).await,
        Command::Fence { action } => fence::run(connect(&cli.global, printer).await?, action).await,
        Command::Configure(args) => configure::run(args, &cli.global, printer, true).await,
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "leasectl", &mut script);
            crate::output::write_out(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Usage mistakes that need no Redis to be seen: caught before connecting, so that they exit 2
/// whether Redis is up or not, and before `run` prints its banner.
fn check(command: &Command) -> Result<(), UsageError> {
    match command {
        Command::Run(args) => args.leases.iter().try_for_each(|name| check_name(name)),
        Command::Exec(args) => std::iter::once(&args.name)
            .chain(&args.leases)
            .try_for_each(|name| check_name(name)),
        Command::Inspect(args) if !args.all => check_name(&args.name),
        Command::Release(args) => check_name(&args.name).and_then(|()| release::check(args)),
        _ => Ok(()),
    }
}

/// The library's rule for lease names, as a usage error.
fn check_name(name: &str) -> Result<(), UsageError> {
    leasectl::check_name(name).map_err(|error| UsageError(error.to_string()))
}

/// Resolves the settings layers and connects, saying which endpoint is used when nothing
/// was configured.
async fn connect(global: &Global, printer: &Printer) -> anyhow::Result<LeaseClient> {
    Ok(LeaseClient::connect(settings(global, printer).await?).await?)
}

/// Resolves the settings layers, offering the wizard on a first run, and says which endpoint
/// is used when nothing was configured.
async fn settings(global: &Global, printer: &Printer) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        config_file: global.config.clone(),
        endpoints: global.endpoints.clone(),
        key_prefix: global.key_prefix.clone(),
        lease_format: global.lease_format.clone(),
    };
    let mut settings = Settings::load(&overrides)?;
    if settings.origin.defaulted_endpoint && configure::offer_first_run(global, printer).await? {
        settings = Settings::load(&overrides)?;
    }
    if settings.origin.defaulted_endpoint {
        printer.note(format!(
            "no Redis settings found; using local Redis at {} (run `leasectl configure` to set one)",
            leasectl::settings::LOCAL_DEFAULT
        ));
    }
    tracing::info!(endpoints = ?settings.endpoints, files = ?settings.origin.files, "settings");
    Ok(settings)
}

/// Options for a lease held while working (`run`, `exec`): the settings' TTL (or `ttl`) and
/// renewal, a forced release noticed at once, and metadata: `identity`, the host name and
/// start time, then the user's `--meta` pairs.
pub fn working_options(
    client: &LeaseClient,
    ttl: Option<std::time::Duration>,
    identity: &[(&str, String)],
    extra: &[(String, String)],
) -> leasectl::LeaseOptions {
    let mut options = leasectl::LeaseOptions::from_settings(client.settings());
    if let Some(ttl) = ttl {
        options.ttl = ttl;
    }
    // A forced release ends the work now, not at the next renewal.
    options.watch_releases = true;
    for (key, value) in identity {
        options = options.meta(*key, value);
    }
    let start_time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    options = options
        .meta("hostname", host_name())
        .meta("startTime", start_time);
    for (key, value) in extra {
        options = options.meta(key, value);
    }
    options
}

/// Warns when `ttl` is shorter than a few round trips to Redis (measured now): the lease could
/// run out before a renewal is confirmed.
pub async fn warn_if_ttl_is_short(
    client: &LeaseClient,
    ttl: std::time::Duration,
    printer: &Printer,
) {
    const ROUND_TRIPS: u32 = 4;
    // No answer takes longer than SyncTimeout: a TTL this long needs no measuring.
    if ttl >= client.settings().sync_timeout * ROUND_TRIPS {
        return;
    }
    if let Ok(round_trip) = client.round_trip().await {
        if ttl < round_trip * ROUND_TRIPS {
            printer.note(format!(
                "warning: the TTL ({}) is shorter than {ROUND_TRIPS} round trips to Redis \
                 ({:.1}ms each): the lease may run out before it is renewed",
                leasectl::duration::human(ttl),
                round_trip.as_secs_f64() * 1000.0
            ));
        }
    }
}

/// The fencing tokens of a set: `TOKEN` for one lease, `NAME=TOKEN,...` for several.
pub fn fencing_tokens(set: &leasectl::LeaseSet) -> String {
    match set.leases() {
        [lease] => lease.fencing_token().to_string(),
        leases => leases
            .iter()
            .map(|l| format!("{}={}", l.name(), l.fencing_token()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// This machine's name, for `meta_hostname` (empty when it cannot be read).
pub fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Ctrl-C and SIGTERM, caught from the moment this is made (so that neither can kill us
/// between two polls) until it is dropped.
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    pub fn install() -> anyhow::Result<Interrupts> {
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next signal with the exit code to use after cleaning up (128 + signal).
    pub async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.interrupt.recv() => crate::output::exit::INTERRUPTED,
            _ = self.terminate.recv() => 128 + 15,
        }
    }
}

//! `leasectl run`: seed 002's lock competition. The winner works with ticks, auto-renews and
//! releases; a loser shows who holds the lease. Ctrl-C or SIGTERM releases before exit.

use std::process::ExitCode;
use std::time::Duration;

use colored::Colorize;
use indicatif::{ProgressBar, ProgressStyle};
use leasectl::duration::human;
use leasectl::{AcquireSet, LeaseClient};
use tokio::time::{interval_at, sleep_until, Instant};

use super::Interrupts;
use crate::cli::RunArgs;
use crate::output::{exit, holder_table, out, outln, ttl_text, Printer, StdoutFailed};

/// How often the winner reports that it is working.
const TICK: Duration = Duration::from_secs(3);

pub async fn run(
    client: LeaseClient,
    args: RunArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let mut interrupts = Interrupts::install()?;
    let tag = format!("[{}]", args.instance).bold();
    let rule = "=".repeat(80);
    outln!(
        "{rule}\nDISTRIBUTED LOCK DEMO - REDIS\nInstance ID: {}\nRegion: {}\n{rule}\n",
        args.instance,
        args.region
    )?;
    outln!("{tag} Attempting lock | Region: {}", args.region)?;

    let identity = [
        ("instanceId", args.instance.clone()),
        ("region", args.region.clone()),
    ];
    let options = super::working_options(&client, args.ttl, &identity, &args.meta);
    super::warn_if_ttl_is_short(&client, options.ttl, printer).await;
    let asked_at = Instant::now();
    let outcome = match args.wait {
        None => client.try_acquire_set(&args.leases, &options).await?,
        Some(wait) => {
            let progress = WaitProgress::new(printer, &tag, wait);
            let waiting = client.acquire_set_observed(&args.leases, &options, wait, |_, holder| {
                progress.show(holder)
            });
            tokio::select! {
                outcome = waiting => { progress.finish(); outcome? }
                code = interrupts.recv() => {
                    progress.finish();
                    outln!("{tag} Interrupted while waiting")?;
                    return Ok(ExitCode::from(code));
                }
            }
        }
    };
    let lease = match outcome {
        AcquireSet::Acquired(leases) => leases,
        AcquireSet::Held { name, holder } => {
            // With several leases, say which one stood in the way.
            let which = match args.leases.len() {
                1 => String::new(),
                _ => format!(" | Lease: {name}"),
            };
            outln!(
                "{tag} {} | Held by: {}{which}",
                "✗ Lock unavailable".red().bold(),
                holder.display_name()
            )?;
            out!(
                "{}",
                holder_table(&client.settings().key_for(&name), &holder)
            )?;
            return Ok(ExitCode::from(exit::HELD));
        }
    };
    // From here the lease is held: whatever ends the work (stdout gone included) releases it.
    let held = hold(&lease, &args, &tag, asked_at, &mut interrupts).await;
    let renewals = lease.renewals();
    let tokens = super::fencing_tokens(&lease);
    match held {
        Err(error) => {
            // stdout is gone (a closed pipe): the reader is no longer there to be told, but
            // the lease must not stay held for its TTL.
            if let Err(release) = lease.release().await {
                tracing::warn!(%release, "could not release after stdout failed");
            }
            Err(error.into())
        }
        Ok(Ended::Lost(error)) => {
            outln!("{tag} {} | {error}", "✗ Lock lost".red().bold())?;
            Ok(ExitCode::from(exit::LOST))
        }
        Ok(Ended::Interrupted(code)) => {
            lease.release().await?;
            outln!("{tag} Interrupted | Renewals: {renewals} | Lock released")?;
            Ok(ExitCode::from(code))
        }
        Ok(Ended::Completed(took)) => {
            tracing::info!(
                "lease {}: waited {}, held {}, {renewals} renewals, fencing token {tokens}",
                args.leases.join(","),
                human(took.waited),
                human(took.worked),
            );
            if lease.release().await? {
                outln!("{tag} Lock released")?;
                Ok(ExitCode::SUCCESS)
            } else {
                outln!(
                    "{tag} {} | it was no longer ours when releasing",
                    "✗ Lock lost".red().bold()
                )?;
                Ok(ExitCode::from(exit::LOST))
            }
        }
    }
}

/// How the work under the lease ended.
enum Ended {
    Completed(Took),
    Lost(leasectl::Error),
    /// Ctrl-C or SIGTERM: the exit code to use.
    Interrupted(u8),
}

/// How long the wait for the lease and the work took.
struct Took {
    waited: Duration,
    worked: Duration,
}

/// Works `--work` under the lease with ticks; stops early when it is lost or on a signal.
/// Fails only when stdout cannot be written; the caller then releases.
async fn hold(
    lease: &leasectl::LeaseSet,
    args: &RunArgs,
    tag: &colored::ColoredString,
    asked_at: Instant,
    interrupts: &mut Interrupts,
) -> Result<Ended, StdoutFailed> {
    let short_id: String = lease.id().chars().take(8).collect();
    // With --wait, say how long the wait was (seed 002's line otherwise).
    let waited = match args.wait {
        Some(_) => format!(" | Waited: {}", human(asked_at.elapsed())),
        None => String::new(),
    };
    outln!(
        "{tag} {} | Lease: {short_id} | Duration: {}{waited}",
        "✓ Lock acquired".green().bold(),
        human(args.work)
    )?;
    tracing::info!(token = %super::fencing_tokens(lease), id = lease.id(), "lease acquired");

    let started = Instant::now();
    let lost = lease.lost();
    tokio::pin!(lost);
    let finished = sleep_until(started + args.work);
    tokio::pin!(finished);
    let mut ticks = interval_at(started + TICK, TICK);
    let mut worked = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            _ = &mut finished => break,
            error = &mut lost => return Ok(Ended::Lost(error)),
            code = interrupts.recv() => return Ok(Ended::Interrupted(code)),
            _ = ticks.tick() => {
                worked += TICK;
                outln!("{tag} Working... [{}s]", worked.as_secs())?;
            }
        }
    }
    let took = Duration::from_secs(started.elapsed().as_secs_f64().round() as u64);
    outln!(
        "{tag} Completed | Duration: {} | Renewals: {}",
        human(took),
        lease.renewals()
    )?;
    Ok(Ended::Completed(Took {
        waited: started.duration_since(asked_at),
        worked: took,
    }))
}

/// While waiting: a spinner with the holder and TTL left on a terminal, one line otherwise.
struct WaitProgress {
    spinner: Option<ProgressBar>,
    line: String,
    said: std::cell::Cell<bool>,
}

impl WaitProgress {
    fn new(printer: &Printer, tag: &colored::ColoredString, wait: Duration) -> WaitProgress {
        let line = format!("{tag} Waiting up to {} for the lock", human(wait));
        let spinner = (!printer.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| {
                let spinner = ProgressBar::new_spinner();
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .expect("valid template"),
                );
                spinner.enable_steady_tick(Duration::from_millis(100));
                spinner
            });
        WaitProgress {
            spinner,
            line,
            said: std::cell::Cell::new(false),
        }
    }

    fn show(&self, holder: &leasectl::Holder) {
        let message = format!(
            "{} | Held by: {} | TTL left: {}",
            self.line,
            holder.display_name(),
            ttl_text(holder.ttl)
        );
        match &self.spinner {
            Some(spinner) => spinner.set_message(message),
            // A failure shows at the next line, which `run` checks.
            None if !self.said.replace(true) => {
                let _ = outln!("{message}");
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

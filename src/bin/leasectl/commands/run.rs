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
use crate::output::{exit, holder_table, ttl_text, Printer};

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
    println!(
        "{rule}\nDISTRIBUTED LOCK DEMO - REDIS\nInstance ID: {}\nRegion: {}\n{rule}\n",
        args.instance, args.region
    );
    println!("{tag} Attempting lock | Region: {}", args.region);

    let identity = [
        ("instanceId", args.instance.clone()),
        ("region", args.region.clone()),
    ];
    let options = super::working_options(&client, args.ttl, &identity, &args.meta);
    let asked_at = Instant::now();
    let outcome = match args.wait {
        None => client.try_acquire_set(&args.leases, &options).await?,
        Some(wait) => {
            let progress = WaitProgress::new(printer, &tag, wait);
            let waiting = client.acquire_set_observed(&args.leases, &options, wait, |_, holder| {
                progress.show(holder)
            });
            let outcome = tokio::select! {
                outcome = waiting => Ok(outcome),
                code = interrupts.recv() => Err(code),
            };
            progress.finish();
            match outcome {
                Ok(outcome) => outcome?,
                Err(code) => {
                    // The dropped wait gives up its place in the queue: let it finish.
                    client.flush().await;
                    println!("{tag} Interrupted while waiting");
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
            println!(
                "{tag} {} | Held by: {}{which}",
                "✗ Lock unavailable".red().bold(),
                holder.display_name()
            );
            print!(
                "{}",
                holder_table(&client.settings().key_for(&name), &holder)
            );
            return Ok(ExitCode::from(exit::HELD));
        }
    };
    let short_id: String = lease.id().chars().take(8).collect();
    // With --wait, say how long the wait was (seed 002's line otherwise).
    let waited = match args.wait {
        Some(_) => format!(" | Waited: {}", human(asked_at.elapsed())),
        None => String::new(),
    };
    println!(
        "{tag} {} | Lease: {short_id} | Duration: {}{waited}",
        "✓ Lock acquired".green().bold(),
        human(args.work)
    );
    let tokens = super::fencing_tokens(&lease);
    tracing::info!(token = %tokens, id = lease.id(), "lease acquired");

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
            error = &mut lost => {
                println!("{tag} {} | {error}", "✗ Lock lost".red().bold());
                return Ok(ExitCode::from(exit::LOST));
            }
            code = interrupts.recv() => {
                let renewals = lease.renewals();
                lease.release().await?;
                println!("{tag} Interrupted | Renewals: {renewals} | Lock released");
                return Ok(ExitCode::from(code));
            }
            _ = ticks.tick() => {
                worked += TICK;
                println!("{tag} Working... [{}s]", worked.as_secs());
            }
        }
    }
    let took = Duration::from_secs(started.elapsed().as_secs_f64().round() as u64);
    println!(
        "{tag} Completed | Duration: {} | Renewals: {}",
        human(took),
        lease.renewals()
    );
    tracing::info!(
        "lease {}: waited {}, held {}, {} renewals, fencing token {tokens}",
        args.leases.join(","),
        human(started.duration_since(asked_at)),
        human(took),
        lease.renewals(),
    );
    if lease.release().await? {
        println!("{tag} Lock released");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{tag} {} | it was no longer ours when releasing",
            "✗ Lock lost".red().bold()
        );
        Ok(ExitCode::from(exit::LOST))
    }
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
            None if !self.said.replace(true) => println!("{message}"),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

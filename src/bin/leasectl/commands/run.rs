//! `leasectl run`: the lock competition of the .NET RedisLeaseSample. The winner works with
//! ticks, auto-renews and releases; a loser shows who holds the lease. Ctrl-C or SIGTERM
//! releases before exit. With `--json`, events instead of text (see `events.rs`).

use std::process::ExitCode;
use std::time::Duration;

use colored::Colorize;
use indicatif::{ProgressBar, ProgressStyle};
use leasectl::duration::human;
use leasectl::{AcquireSet, LeaseClient};
use tokio::time::{interval_at, sleep_until, Instant};

use super::Interrupts;
use crate::cli::RunArgs;
use crate::events::{self, Events};
use crate::output::{exit, holder_table, out, outln, ttl_text, Printer, StdoutFailed};

/// How often the winner reports that it is working.
const TICK: Duration = Duration::from_secs(3);

/// A human line on stdout, unless `--json` asked for events instead.
macro_rules! say {
    ($events:expr, $($arg:tt)*) => {
        if $events.on() { Ok(()) } else { outln!($($arg)*) }
    };
}

pub async fn run(
    client: LeaseClient,
    mut args: RunArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    args.taking.wait = super::wait_or_default(args.taking.wait, client.settings());
    let mut interrupts = Interrupts::install()?;
    let events = Events::new(args.json);
    let tag = format!("[{}]", args.instance).bold();
    let rule = "=".repeat(80);
    say!(
        events,
        "{rule}\nDISTRIBUTED LOCK DEMO - REDIS\nInstance ID: {}\nRegion: {}\n{rule}\n",
        args.instance,
        args.region
    )?;
    say!(events, "{tag} Attempting lock | Region: {}", args.region)?;
    let who = serde_json::json!({"instance": args.instance, "region": args.region, "leases": args.leases});
    events.emit("attempting", who)?;

    let identity = [
        ("instanceId", args.instance.clone()),
        ("region", args.region.clone()),
    ];
    let options = super::working_options(&client, args.taking.ttl, &identity, &args.taking.meta);
    super::warn_if_ttl_is_short(&client, options.ttl, printer).await;
    let asked_at = Instant::now();
    let outcome = match args.taking.wait {
        None => client.try_acquire_set(&args.leases, &options).await?,
        Some(wait) => {
            let progress = WaitProgress::new(printer, &tag, wait, &events);
            let waiting =
                client.acquire_set_observed(&args.leases, &options, wait, |name, holder| {
                    progress.show(&client, name, holder)
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
                    say!(events, "{tag} Interrupted while waiting")?;
                    events.emit("interrupted", serde_json::json!({}))?;
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
            let key = client.settings().key_for(&name);
            if events.on() {
                events.emit("held", events::holder(&name, key, &holder))?;
            } else {
                outln!(
                    "{tag} {} | Held by: {}{which}",
                    "✗ Lock unavailable".red().bold(),
                    holder.display_name()
                )?;
                out!("{}", holder_table(&key, &holder))?;
            }
            return Ok(ExitCode::from(exit::HELD));
        }
    };
    // From here the lease is held: whatever ends the work (stdout gone included) releases it.
    let held = hold(&lease, &args, &tag, &events, asked_at, &mut interrupts).await;
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
            say!(events, "{tag} {} | {error}", "✗ Lock lost".red().bold())?;
            events.emit("lost", serde_json::json!({"reason": error.to_string()}))?;
            Ok(ExitCode::from(exit::LOST))
        }
        Ok(Ended::Interrupted(code)) => {
            lease.release().await?;
            say!(
                events,
                "{tag} Interrupted | Renewals: {renewals} | Lock released"
            )?;
            events.emit("interrupted", serde_json::json!({}))?;
            events.emit("released", serde_json::json!({"renewals": renewals}))?;
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
                say!(events, "{tag} Lock released")?;
                events.emit("released", serde_json::json!({"renewals": renewals}))?;
                Ok(ExitCode::SUCCESS)
            } else {
                let reason = "it was no longer ours when releasing";
                say!(events, "{tag} {} | {reason}", "✗ Lock lost".red().bold())?;
                events.emit("lost", serde_json::json!({"reason": reason}))?;
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
    events: &Events,
    asked_at: Instant,
    interrupts: &mut Interrupts,
) -> Result<Ended, StdoutFailed> {
    let short_id: String = lease.id().chars().take(8).collect();
    // With --wait, say how long the wait was (the sample's line otherwise).
    let waited = match args.taking.wait {
        Some(_) => format!(" | Waited: {}", human(asked_at.elapsed())),
        None => String::new(),
    };
    say!(
        events,
        "{tag} {} | Lease: {short_id} | Duration: {}{waited}",
        "✓ Lock acquired".green().bold(),
        human(args.work)
    )?;
    events.emit("acquired", events::acquired(lease))?;
    tracing::info!(token = %super::fencing_tokens(lease), id = lease.id(), "lease acquired");

    let started = Instant::now();
    let lost = lease.lost();
    tokio::pin!(lost);
    let finished = sleep_until(started + args.work);
    tokio::pin!(finished);
    let mut ticks = interval_at(started + TICK, TICK);
    let mut renewal_checks = interval_at(started + events::RENEWAL_CHECK, events::RENEWAL_CHECK);
    let (mut worked, mut renewals_seen) = (Duration::ZERO, 0);
    loop {
        tokio::select! {
            biased;
            _ = &mut finished => break,
            error = &mut lost => return Ok(Ended::Lost(error)),
            code = interrupts.recv() => return Ok(Ended::Interrupted(code)),
            _ = ticks.tick() => {
                worked += TICK;
                say!(events, "{tag} Working... [{}s]", worked.as_secs())?;
            }
            _ = renewal_checks.tick(), if events.on() => {
                let renewals = lease.renewals();
                if renewals > renewals_seen {
                    renewals_seen = renewals;
                    events.emit("renewed", serde_json::json!({"renewals": renewals}))?;
                }
            }
        }
    }
    let held_for = started.elapsed();
    let took = Duration::from_secs(held_for.as_secs_f64().round() as u64);
    say!(
        events,
        "{tag} Completed | Duration: {} | Renewals: {}",
        human(took),
        lease.renewals()
    )?;
    let completed = serde_json::json!({"durationMs": held_for.as_millis() as u64, "renewals": lease.renewals()});
    events.emit("completed", completed)?;
    Ok(Ended::Completed(Took {
        waited: started.duration_since(asked_at),
        worked: took,
    }))
}

/// While waiting: a spinner with the holder and TTL left on a terminal, one line otherwise;
/// with `--json`, one `waiting` event with the holder.
struct WaitProgress<'a> {
    spinner: Option<ProgressBar>,
    line: String,
    said: std::cell::Cell<bool>,
    wait: Duration,
    events: &'a Events,
}

impl<'a> WaitProgress<'a> {
    fn new(
        printer: &Printer,
        tag: &colored::ColoredString,
        wait: Duration,
        events: &'a Events,
    ) -> WaitProgress<'a> {
        let line = format!("{tag} Waiting up to {} for the lock", human(wait));
        let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let spinner = (!printer.quiet && !events.on() && on_terminal).then(|| {
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
            wait,
            events,
        }
    }

    fn show(&self, client: &LeaseClient, name: &str, holder: &leasectl::Holder) {
        if self.events.on() {
            if !self.said.replace(true) {
                let key = client.settings().key_for(name);
                let mut fields = events::holder(name, key, holder);
                fields["waitMs"] = (self.wait.as_millis() as u64).into();
                // A failure shows at the next event, which `run` checks.
                let _ = self.events.emit("waiting", fields);
            }
            return;
        }
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

//! `leasectl exec NAME -- CMD`: runs a command while holding a lease (like `flock` or
//! `consul lock`, on Redis with renewal). The child learns its lease and fencing token from
//! the environment. It runs in a process group of its own, and the whole group — every
//! process the command started — is stopped when the lease is lost or the hold cap is
//! reached, when the command ends and left something running, and when we die (by the
//! group's guard), so that nothing of it works unprotected.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitCode, ExitStatus};

use leasectl::duration::human;
use leasectl::{AcquireSet, LeaseClient, LeaseSet};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::Interrupts;
use crate::cli::ExecArgs;
use crate::events::{self, Events};
use crate::group::Group;
use crate::output::{exit, Printer};
use crate::terminal::Terminal;

pub async fn run(
    client: LeaseClient,
    mut args: ExecArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    args.wait = super::wait_or_default(args.wait, client.settings());
    let mut interrupts = Interrupts::install()?;
    let events = Events::new(args.json);
    let mut options = super::working_options(
        &client,
        args.ttl,
        &[
            (
                "instanceId",
                format!("{}:{}", super::host_name(), std::process::id()),
            ),
            ("command", args.command.join(" ")),
        ],
        &args.meta,
    );
    options.max_hold = args.max_hold;
    super::warn_if_ttl_is_short(&client, options.ttl, printer).await;
    let names: Vec<&str> = std::iter::once(&args.name)
        .chain(&args.leases)
        .map(String::as_str)
        .collect();
    events.emit(
        "attempting",
        serde_json::json!({"leases": names, "command": args.command}),
    )?;
    let asked_at = Instant::now();
    let outcome = match args.wait {
        None => client.try_acquire_set(&names, &options).await?,
        Some(wait) => {
            let mut told = false;
            let waiting = client.acquire_set_observed(&names, &options, wait, |name, holder| {
                if !std::mem::replace(&mut told, true) {
                    let key = client.settings().key_for(name);
                    let mut fields = events::holder(name, key, holder);
                    fields["waitMs"] = (wait.as_millis() as u64).into();
                    // A failure shows at the next event, which is checked.
                    let _ = events.emit("waiting", fields);
                }
            });
            let outcome = tokio::select! {
                outcome = waiting => Ok(outcome),
                code = interrupts.recv() => Err(code),
            };
            match outcome {
                Ok(outcome) => outcome?,
                Err(code) => {
                    // The dropped wait gives up its place in the queue: let it finish.
                    client.flush().await;
                    events.emit("interrupted", serde_json::json!({}))?;
                    return Ok(ExitCode::from(code));
                }
            }
        }
    };
    let lease = match outcome {
        AcquireSet::Acquired(leases) => leases,
        AcquireSet::Held { name, holder } => {
            printer.note(format!(
                "{name} is held by {}; not running {}",
                holder.display_name(),
                args.command[0]
            ));
            let key = client.settings().key_for(&name);
            events.emit("held", events::holder(&name, key, &holder))?;
            return Ok(ExitCode::from(exit::HELD));
        }
    };
    if let Err(error) = events.emit("acquired", events::acquired(&lease)) {
        lease.release().await?;
        return Err(error.into());
    }
    let waited = asked_at.elapsed();
    let group = match Group::start(args.kill_after) {
        Ok(group) => group,
        Err(error) => {
            lease.release().await?;
            return Err(anyhow::Error::new(error).context("cannot start the guard of the command"));
        }
    };
    // Lent before the command runs, so that it never reads the terminal from the background.
    let terminal = Terminal::open(group.id());
    // Ctrl-Z and reads from the background stop the command's group alone: seen here
    // (SIGCHLD), listened to before the command can stop.
    let mut stops = match terminal {
        Some(_) => Some(signal(SignalKind::child())?),
        None => None,
    };
    let mut child = match spawn(&args.command, &args.name, &lease, group.id(), events.on()) {
        Ok(child) => child,
        Err(error) => {
            drop(terminal);
            group.end().await;
            lease.release().await?;
            printer.note(format!("cannot run {}: {error}", args.command[0]));
            let code = if error.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(ExitCode::from(code));
        }
    };
    let pid = child.id().expect("a command just started has a pid");
    let lost = lease.lost();
    tokio::pin!(lost);
    let mut was_lost = false;
    let mut renewals_seen = 0;
    let mut renewal_checks = tokio::time::interval(events::RENEWAL_CHECK);
    // After a signal is passed on, the command has --kill-after to end before SIGKILL.
    let mut kill_at: Option<Instant> = None;
    let code = loop {
        let kill_timer = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let stopped = async {
            match &mut stops {
                Some(stops) => stops.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break exit_code(status?),
            _ = kill_timer => {
                group.signal(Signal::SIGKILL);
                kill_at = None;
            }
            _ = renewal_checks.tick(), if events.on() => {
                let renewals = lease.renewals();
                if renewals > renewals_seen {
                    renewals_seen = renewals;
                    // A closed stdout shows at the end; the command goes on meanwhile.
                    let _ = events.emit("renewed", serde_json::json!({"renewals": renewals}));
                }
            }
            error = &mut lost => {
                printer.note(format!("{error}; stopping {}", args.command[0]));
                let _ = events.emit("lost", serde_json::json!({"reason": error.to_string()}));
                group.stop(args.kill_after).await;
                child.wait().await?;
                was_lost = true;
                break exit::LOST;
            }
            signal = interrupts.recv() => {
                // Pass Ctrl-C or SIGTERM on to the command's group, and release once it has ended.
                let forwarded = if signal == exit::INTERRUPTED { Signal::SIGINT } else { Signal::SIGTERM };
                let _ = events.emit("interrupted", serde_json::json!({}));
                group.signal_awake(forwarded);
                kill_at.get_or_insert(Instant::now() + args.kill_after);
            }
            _ = stopped => {
                if let Some(terminal) = &terminal {
                    terminal.follow_stop(pid);
                }
            }
        }
    };
    // Whatever the command left running (a background worker) would go on without the lease:
    // it is stopped before the lease is released (within what is left of --kill-after when a
    // signal was passed on).
    let grace = kill_at.map_or(args.kill_after, |at| {
        at.saturating_duration_since(Instant::now())
    });
    group.stop(grace).await;
    group.end().await;
    drop(terminal);
    let renewals = lease.renewals();
    let token = super::fencing_tokens(&lease);
    let held = asked_at.elapsed().saturating_sub(waited);
    let completed = serde_json::json!({"exitCode": code, "durationMs": held.as_millis() as u64, "renewals": renewals});
    let told = events.emit("completed", completed);
    match lease.release().await {
        Ok(_) => {
            told?;
            events.emit("released", serde_json::json!({"renewals": renewals}))?;
        }
        // Lost (maybe because Redis stopped answering): still exit 4; the key,
        // if it is still ours, ends with its TTL.
        Err(error) if was_lost => printer.note(format!("could not release {}: {error}", args.name)),
        Err(error) => return Err(error.into()),
    }
    tracing::info!(
        "lease {}: waited {}, held {}, {renewals} renewals, fencing token {token}, exit {code}",
        names.join(","),
        human(waited),
        human(held)
    );
    Ok(ExitCode::from(code))
}

/// Starts the command with the lease in its environment (`name`'s token, and with `--lease`
/// every lease's as `NAME=TOKEN,...`), in process group `group`, which its guard stops if
/// leasectl dies (even by SIGKILL), since nobody would renew.
/// With `json`, the command's stdout goes to our stderr: our stdout carries the events.
fn spawn(
    command: &[String],
    name: &str,
    leases: &LeaseSet,
    group: Pid,
    json: bool,
) -> std::io::Result<Child> {
    let token = leases
        .leases()
        .iter()
        .find(|lease| lease.name() == name)
        .map_or(0, |lease| lease.fencing_token());
    let mut process = std::process::Command::new(&command[0]);
    process
        .args(&command[1..])
        .env("LEASECTL_LEASE", name)
        .env("LEASECTL_LEASE_ID", leases.id())
        .env("LEASECTL_FENCING_TOKEN", token.to_string())
        .process_group(group.as_raw());
    if leases.leases().len() > 1 {
        process.env("LEASECTL_FENCING_TOKENS", super::fencing_tokens(leases));
    }
    if json {
        let stderr = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned()?;
        process.stdout(stderr);
    }
    tokio::process::Command::from(process).spawn()
}

/// The child's exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        _ => 1,
    }
}

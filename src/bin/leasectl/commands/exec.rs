//! `leasectl exec NAME -- CMD`: runs a command while holding a lease (like `flock` or
//! `consul lock`, on Redis with renewal). The child learns its lease and fencing token from
//! the environment; it is stopped when the lease is lost or the hold cap is reached, and it
//! is tied to our death so it never works unprotected.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use leasectl::duration::human;
use leasectl::{AcquireSet, LeaseClient, LeaseSet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::time::Instant;

use super::Interrupts;
use crate::cli::ExecArgs;
use crate::output::{exit, Printer};

pub async fn run(
    client: LeaseClient,
    args: ExecArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let mut interrupts = Interrupts::install()?;
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
    let names: Vec<&str> = std::iter::once(&args.name)
        .chain(&args.leases)
        .map(String::as_str)
        .collect();
    let asked_at = Instant::now();
    let outcome = match args.wait {
        None => client.try_acquire_set(&names, &options).await?,
        Some(wait) => {
            let outcome = tokio::select! {
                outcome = client.acquire_set(&names, &options, wait) => Ok(outcome),
                code = interrupts.recv() => Err(code),
            };
            match outcome {
                Ok(outcome) => outcome?,
                Err(code) => {
                    // The dropped wait gives up its place in the queue: let it finish.
                    client.flush().await;
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
            return Ok(ExitCode::from(exit::HELD));
        }
    };
    let waited = asked_at.elapsed();
    let mut child = match spawn(&args.command, &args.name, &lease) {
        Ok(child) => child,
        Err(error) => {
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
    let lost = lease.lost();
    tokio::pin!(lost);
    let mut was_lost = false;
    // After a signal is passed on, the command has --kill-after to end before SIGKILL.
    let mut kill_at: Option<Instant> = None;
    let code = loop {
        let kill_timer = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break exit_code(status?),
            _ = kill_timer => {
                child.start_kill()?;
                kill_at = None;
            }
            error = &mut lost => {
                printer.note(format!("{error}; stopping {}", args.command[0]));
                stop(&mut child, args.kill_after).await?;
                was_lost = true;
                break exit::LOST;
            }
            signal = interrupts.recv() => {
                // Pass Ctrl-C or SIGTERM on to the command, and release once it has ended.
                let forwarded = if signal == exit::INTERRUPTED { Signal::SIGINT } else { Signal::SIGTERM };
                if let Some(pid) = child.id() {
                    let _ = kill(Pid::from_raw(pid as i32), forwarded);
                }
                kill_at.get_or_insert(Instant::now() + args.kill_after);
            }
        }
    };
    let renewals = lease.renewals();
    let token = super::fencing_tokens(&lease);
    let held = asked_at.elapsed().saturating_sub(waited);
    match lease.release().await {
        Ok(_) => {}
        // Lost (maybe because Redis stopped answering): still exit 4, as SPEC 4 says; the key,
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
/// every lease's as `NAME=TOKEN,...`), tied to our death: if leasectl dies (even by SIGKILL)
/// the kernel sends the command SIGKILL, since nobody would renew.
fn spawn(command: &[String], name: &str, leases: &LeaseSet) -> std::io::Result<Child> {
    let parent = std::process::id();
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
        .env("LEASECTL_FENCING_TOKEN", token.to_string());
    if leases.leases().len() > 1 {
        process.env("LEASECTL_FENCING_TOKENS", super::fencing_tokens(leases));
    }
    // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid, kill.
    unsafe {
        process.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // We may have died before prctl took effect: then no signal would ever come.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                let _ = kill(nix::unistd::getpid(), Signal::SIGKILL);
            }
            Ok(())
        });
    }
    tokio::process::Command::from(process).spawn()
}

/// SIGTERM, then SIGKILL once `grace` has passed.
async fn stop(child: &mut Child, grace: Duration) -> std::io::Result<()> {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        child.kill().await?;
    }
    Ok(())
}

/// The child's exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        _ => 1,
    }
}

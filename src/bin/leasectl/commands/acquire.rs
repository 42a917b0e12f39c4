//! `leasectl acquire` and `leasectl extend`: leases across shell steps. `acquire` takes a
//! lease and leaves it held when it exits (nothing renews it: it ends at its TTL unless
//! extended or released by its id); `extend` gives it a new TTL, owner-checked.

use std::process::ExitCode;

use colored::Colorize;
use leasectl::duration::human;
use leasectl::{Acquire, Error, KeptLease, LeaseClient, LeaseOptions};
use serde_json::json;

use super::Interrupts;
use crate::cli::{AcquireArgs, ExtendArgs};
use crate::events;
use crate::output::{errln, escape, exit, holder_table, out, outln, ttl_text, Printer};

pub async fn run(
    client: LeaseClient,
    args: AcquireArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let settings = client.settings();
    let mut options = LeaseOptions::from_settings(settings);
    // Kept after exit: nothing may renew it.
    options.auto_renew = None;
    if let Some(ttl) = args.taking.ttl {
        options.ttl = ttl;
    }
    let host = super::host_name();
    // Who holds it, as `inspect` and a refused `acquire` name the holder (unless the
    // settings' Metadata or --meta name it).
    if !options.metadata.iter().any(|(key, _)| key == "instanceId") {
        options = options.meta("instanceId", &host);
    }
    options = options.meta("hostname", host);
    for (key, value) in &args.taking.meta {
        options = options.meta(key, value);
    }
    let outcome = if let Some(wait) = super::wait_or_default(args.taking.wait, settings) {
        let mut interrupts = Interrupts::install()?;
        let mut said = false;
        let waiting = client.acquire_observed(&args.name, &options, wait, |holder| {
            if !said && !printer.quiet {
                said = true;
                errln!(
                    "leasectl: waiting up to {} for {} | Held by: {} | TTL left: {}",
                    human(wait),
                    args.name,
                    holder.display_name(),
                    ttl_text(holder.ttl)
                );
            }
        });
        tokio::select! {
            outcome = waiting => outcome?,
            code = interrupts.recv() => {
                // The dropped wait gives up its place in the queue: let it finish.
                client.flush().await;
                return Ok(ExitCode::from(code));
            }
        }
    } else {
        client.try_acquire(&args.name, &options).await?
    };
    let key = settings.key_for(&args.name);
    match outcome {
        Acquire::Acquired(lease) => {
            // Handed over by a release, it may still be extending its short first TTL.
            lease.settled().await?;
            let kept = lease.keep();
            tracing::info!(id = %kept.id, token = kept.fencing_token, "lease acquired and kept");
            if args.json {
                outln!("{}", acquired_json(&kept))?;
            } else {
                show(&kept)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Acquire::Held(holder) => {
            if args.json {
                outln!("{}", events::holder(&args.name, key, &holder))?;
            } else {
                outln!(
                    "{} | Held by: {}",
                    "✗ Lock unavailable".red().bold(),
                    holder.display_name()
                )?;
                out!("{}", holder_table(&key, &holder))?;
            }
            Ok(ExitCode::from(exit::HELD))
        }
    }
}

/// `acquire --json`: the fields of `run --json`'s `acquired` event, and the key.
fn acquired_json(kept: &KeptLease) -> serde_json::Value {
    json!({
        "lease": kept.name,
        "key": kept.key,
        "leaseId": kept.id,
        "fencingToken": kept.fencing_token,
        "ttlMs": kept.ttl.as_millis() as u64,
        "acquiredAt": kept.acquired_at,
    })
}

/// The human block: what was taken, and how to extend and release it.
fn show(kept: &KeptLease) -> anyhow::Result<()> {
    let name = escape(&kept.name);
    outln!(
        "{} {name} | Lease: {} | Fencing token: {}\n    \
         lease id       {}\n    fencing token  {}\n    ttl            {} (not renewed: it ends then unless extended)\n    \
         acquired at    {}\n\
         Extend:  leasectl extend {name} --lease-id {} --ttl {}\n\
         Release: leasectl release {name} --lease-id {}",
        "✓ Lock acquired".green().bold(),
        kept.id.chars().take(8).collect::<String>(),
        kept.fencing_token,
        kept.id,
        kept.fencing_token,
        human(kept.ttl),
        kept.acquired_at,
        kept.id,
        human(kept.ttl),
        kept.id,
    )?;
    Ok(())
}

/// `leasectl extend NAME --lease-id ID [--ttl D]`: exit 4 when the lease is no longer ours.
pub async fn extend(client: LeaseClient, args: ExtendArgs) -> anyhow::Result<ExitCode> {
    let ttl = args.ttl.unwrap_or(client.settings().lease_duration);
    match client.extend(&args.name, &args.lease_id, ttl).await {
        Ok(()) => {
            outln!(
                "Extended {} (lease {}): TTL {} from now",
                escape(&args.name),
                escape(&args.lease_id),
                human(ttl)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Lost { reason, .. }) => {
            // Say who holds it now, when that can be read.
            let now = match client.inspect(&args.name).await.map(|info| info.holder) {
                Ok(Some(holder)) => format!("held by {}", holder.display_name()),
                Ok(None) => "not held".to_string(),
                Err(_) => "holder unknown".to_string(),
            };
            errln!(
                "{} {} is no longer held under lease {} ({reason}; now {now}); not extended",
                "leasectl: error:".red().bold(),
                escape(&args.name),
                escape(&args.lease_id),
            );
            Ok(ExitCode::from(exit::LOST))
        }
        Err(error) => Err(error.into()),
    }
}

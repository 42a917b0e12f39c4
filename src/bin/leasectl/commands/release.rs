//! `leasectl release`: by lease id (acts only on that lease), or `--force` after a
//! confirmation (or `--yes`).

use std::process::ExitCode;

use leasectl::{Holder, LeaseClient, LeaseInfo};

use crate::cli::ReleaseArgs;
use crate::output::{escape, exit, outln, Printer, UsageError};

/// Refuses, before connecting, a release that names neither a lease id nor `--force`.
pub fn check(args: &ReleaseArgs) -> Result<(), UsageError> {
    if args.lease_id.is_none() && !args.force {
        return Err(UsageError(
            "name the lease to release with --lease-id ID, or use --force".into(),
        ));
    }
    Ok(())
}

/// Releases by lease id, or (`--force`, checked by [`check`]) whoever holds it.
pub async fn run(
    client: LeaseClient,
    args: ReleaseArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let info = client.inspect(&args.name).await?;
    let holders = info.holders();
    if holders.is_empty() {
        outln!("{} is not held; nothing to release", args.name)?;
        return Ok(ExitCode::SUCCESS);
    }
    let who = describe(&info, &holders);
    if let Some(lease_id) = &args.lease_id {
        // Matches our hash's leaseId, the .NET package's JSON leaseId, or a plain token.
        if client.release(&args.name, lease_id).await? {
            outln!("Released {} (lease {})", args.name, escape(lease_id))?;
            return Ok(ExitCode::SUCCESS);
        }
        outln!(
            "{} is held by {who} under another lease id; not released",
            args.name
        )?;
        return Ok(ExitCode::from(exit::HELD));
    }
    if !args.yes && !confirm(&args.name, &who, printer)? {
        outln!("Not released")?;
        return Ok(ExitCode::from(exit::HELD));
    }
    // Delete exactly what was shown and confirmed, compared in the same script: never a lease
    // that took its place while the prompt was open.
    let mut released = false;
    for holder in holders {
        released |= client.force_release_shown(&args.name, holder).await?;
    }
    if released {
        outln!("Force-released {} (was held by {who})", args.name)?;
        Ok(ExitCode::SUCCESS)
    } else {
        outln!(
            "{} changed since it was shown (another holder, or freed); nothing was deleted",
            args.name
        )?;
        Ok(ExitCode::from(exit::HELD))
    }
}

/// `us-east-1 (us-east)`; in quorum mode, when no majority agrees on a holder,
/// `us-east-1 (us-east) on 1 of 3 instances`.
fn describe(info: &LeaseInfo, holders: &[&Holder]) -> String {
    let names: Vec<String> = holders.iter().map(|h| h.display_name()).collect();
    let names = names.join(", ");
    if info.holder.is_some() {
        return names;
    }
    let on = info.held_on();
    format!("{names} on {on} of {} instances", info.instances.len())
}

fn confirm(name: &str, holder: &str, _printer: &Printer) -> anyhow::Result<bool> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(UsageError(
            "--force needs a terminal to confirm; add --yes to release without asking".into(),
        )
        .into());
    }
    Ok(dialoguer::Confirm::new()
        .with_prompt(format!("Force-release {name}, held by {holder}?"))
        .default(false)
        .interact()?)
}

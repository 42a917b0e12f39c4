//! `leasectl release`: by lease id (acts only on that lease), or `--force` after a
//! confirmation (or `--yes`).

use std::process::ExitCode;

use leasectl::{KeyFormat, LeaseClient};

use crate::cli::ReleaseArgs;
use crate::output::{exit, Printer, UsageError};

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
    let Some(holder) = info.holder else {
        println!("{} is not held; nothing to release", args.name);
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(lease_id) = &args.lease_id {
        if client.release(&args.name, lease_id).await? {
            println!("Released {} (lease {lease_id})", args.name);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{} is held by {} under another lease id; not released",
            args.name,
            holder.display_name()
        );
        return Ok(ExitCode::from(exit::HELD));
    }
    if !args.yes && !confirm(&args.name, &holder.display_name(), printer)? {
        println!("Not released");
        return Ok(ExitCode::from(exit::HELD));
    }
    // Delete the lease that was shown, not one that took its place meanwhile.
    let released = match (&holder.format, &holder.lease_id) {
        (KeyFormat::Hash, Some(lease_id)) => client.release(&args.name, lease_id).await?,
        _ => client.force_release(&args.name).await?,
    };
    if released {
        println!(
            "Force-released {} (was held by {})",
            args.name,
            holder.display_name()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} changed hands or was freed meanwhile; not released",
            args.name
        );
        Ok(ExitCode::from(exit::HELD))
    }
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

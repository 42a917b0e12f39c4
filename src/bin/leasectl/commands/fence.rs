//! `leasectl fence set KEY VALUE --token T`: the protected resource's side of fencing, from
//! the shell. Exit 0 when written, 3 when a newer token already wrote (the writer is stale).

use std::process::ExitCode;

use leasectl::{FencedWrite, LeaseClient};

use crate::cli::FenceAction;
use crate::output::{exit, outln};

pub async fn run(client: LeaseClient, action: FenceAction) -> anyhow::Result<ExitCode> {
    let FenceAction::Set { key, value, token } = action;
    match client.fenced_set(&key, &value, token).await? {
        FencedWrite::Written => {
            outln!("Wrote {key} with fencing token {token}")?;
            Ok(ExitCode::SUCCESS)
        }
        FencedWrite::Stale { newest } => {
            outln!("Refused: {key} was written with fencing token {newest}, newer than {token}")?;
            Ok(ExitCode::from(exit::HELD))
        }
    }
}

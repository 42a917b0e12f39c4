//! `leasectl inspect`: who holds a lease (or every lease), as text or JSON;
//! `--watch` refreshes every second until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use colored::Colorize;
use leasectl::{LeaseClient, LeaseInfo};

use super::Interrupts;
use crate::cli::InspectArgs;
use crate::output::{
    escape, holder_table, instances_table, out, outln, ttl_text, LeaseJson, Printer,
};

const REFRESH: Duration = Duration::from_secs(1);

pub async fn run(
    client: LeaseClient,
    args: InspectArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if let Some(wait) = args.wait_free {
        return wait_free(&client, &args.name, wait).await;
    }
    if !args.watch {
        out!("{}", render(&client, &args).await?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut interrupts = Interrupts::install()?;
    let mut shown = String::new();
    loop {
        let text = render(&client, &args).await?;
        if printer.stdout_is_terminal && !args.json {
            // Redraw in place: clear the screen, then the current state.
            out!(
                "\x1b[2J\x1b[H{text}{}",
                "\nrefreshing every second; Ctrl-C to stop\n".dimmed()
            )?;
        } else if text != shown {
            out!("{text}")?;
        }
        shown = text;
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = interrupts.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `--wait-free D`: exit 0 once the lease is free, 3 if it is still held after `D`.
async fn wait_free(client: &LeaseClient, name: &str, wait: Duration) -> anyhow::Result<ExitCode> {
    let mut interrupts = Interrupts::install()?;
    tokio::select! {
        outcome = client.wait_until_free(name, wait) => match outcome? {
            None => {
                outln!("{name} is free")?;
                Ok(ExitCode::SUCCESS)
            }
            Some(holder) => {
                outln!("{name} is still held by {} after {}", holder.display_name(), leasectl::duration::human(wait))?;
                Ok(ExitCode::from(crate::output::exit::HELD))
            }
        },
        code = interrupts.recv() => Ok(ExitCode::from(code)),
    }
}

async fn render(client: &LeaseClient, args: &InspectArgs) -> anyhow::Result<String> {
    let infos = if args.all {
        client.inspect_all().await?
    } else {
        vec![client.inspect(&args.name).await?]
    };
    if args.json {
        let json: Vec<LeaseJson> = infos.iter().map(LeaseJson::from).collect();
        let text = if args.all {
            serde_json::to_string(&json)?
        } else {
            serde_json::to_string(&json[0])?
        };
        return Ok(format!("{text}\n"));
    }
    if args.all && infos.is_empty() {
        return Ok(format!(
            "no leases under '{}'\n",
            client.settings().key_prefix
        ));
    }
    if args.all {
        return Ok(overview(&infos));
    }
    Ok(infos.iter().map(describe).collect::<Vec<_>>().join("\n"))
}

/// `--all`: one aligned line per lease — holder, age, TTL left, fencing token.
fn overview(infos: &[LeaseInfo]) -> String {
    let rows: Vec<[String; 5]> = infos
        .iter()
        .map(|info| {
            let holder = info.holder.as_ref();
            let age = holder
                .and_then(|h| h.acquired_at.as_deref())
                .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
                .and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
                .map(|age| ttl_text(Some(age)))
                .unwrap_or_else(|| "-".into());
            [
                escape(&info.name).into_owned(),
                holder.map_or("(free on a majority)".into(), |h| h.display_name()),
                age,
                holder.map_or("-".into(), |h| ttl_text(h.ttl)),
                holder
                    .and_then(|h| h.fencing_token)
                    .map_or("-".into(), |t| t.to_string()),
            ]
        })
        .collect();
    let header = ["LEASE", "HOLDER", "AGE", "TTL LEFT", "TOKEN"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 5]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut text = line(&header).bold().to_string();
    text.extend(rows.iter().map(line));
    text
}

fn describe(info: &LeaseInfo) -> String {
    let instances = if info.instances.is_empty() {
        String::new()
    } else {
        instances_table(&info.instances)
    };
    let summary = match &info.holder {
        // Held on a minority (its other instances down or not reached): not free to take.
        None if !info.holders().is_empty() => format!(
            "{} {} has no holder a majority agrees on\n",
            "◐".yellow(),
            escape(&info.name).bold()
        ),
        None => format!("{} {} is free\n", "○".green(), escape(&info.name).bold()),
        Some(holder) => format!(
            "{} {} is held by {}\n{}",
            "●".red(),
            escape(&info.name).bold(),
            holder.display_name().bold(),
            holder_table(&info.key, holder)
        ),
    };
    summary + &instances
}

//! `leasectl doctor`: the health check of the configured deployment (the library's
//! [`leasectl::health`]), one line per check with what to do about one that is not a pass,
//! or one JSON object. Exit 0 when no check failed (warnings allowed), 1 otherwise.

use std::process::ExitCode;

use colored::Colorize;
use leasectl::health::{Check, Report, Status};
use leasectl::Settings;

use crate::cli::DoctorArgs;
use crate::output::{escape, exit, outln};

pub async fn run(settings: Settings, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = leasectl::health::check(&settings).await;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        for check in &report.checks {
            outln!("{}", line(check))?;
        }
        outln!("{}", summary(&report))?;
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::REDIS)
    })
}

/// `✓ reachable       127.0.0.1:6379  PING 0.3 ms`, with `→ what to do` after a warning or
/// failure.
pub fn line(check: &Check) -> String {
    let mark = match check.status {
        Status::Pass => "✓".green(),
        Status::Warn => "!".yellow().bold(),
        Status::Fail => "✗".red().bold(),
    };
    let mut text = format!("{mark} {:<15}", check.name);
    if let Some(instance) = &check.instance {
        text.push_str(&format!(" {instance}"));
    }
    text.push_str(&format!("  {}", escape(&check.detail)));
    if let (Some(fix), false) = (&check.fix, check.status == Status::Pass) {
        text.push_str(&format!("  {} {}", "→".bold(), escape(fix)));
    }
    text
}

fn summary(report: &Report) -> String {
    let count = |status| report.checks.iter().filter(|c| c.status == status).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    let counts = format!(
        "{} passed, {warned} warning{}, {failed} failed",
        count(Status::Pass),
        if warned == 1 { "" } else { "s" }
    );
    if report.healthy {
        format!("{} ({counts})", "healthy".green().bold())
    } else {
        format!("{} ({counts})", "unhealthy".red().bold())
    }
}

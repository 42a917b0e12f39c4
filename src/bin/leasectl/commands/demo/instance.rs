//! One `leasectl run --json` instance of the demo: the process, its output relayed with its
//! name in front (events shown as the lines a person reads), and stopping it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use colored::{Color, Colorize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

use super::judge::Seen;
use super::{note, show};

/// How long a round may take before its instances are stopped.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// One `leasectl run --json` process and the events it printed.
pub(super) struct Instance {
    pub(super) name: String,
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) events: Arc<Mutex<Vec<Value>>>,
    pub(super) relays: Vec<JoinHandle<()>>,
    pub(super) code: Option<i32>,
}

impl Instance {
    pub(super) fn seen(&self) -> Seen {
        let events = self.events.lock().unwrap().clone();
        Seen {
            name: self.name.clone(),
            code: self.code,
            events,
        }
    }

    /// The first event of this kind, if it came.
    pub(super) fn first(&self, event: &str) -> Option<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["event"] == event)
            .cloned()
    }

    /// Waits until the instance printed `event` (false when it ended first, or after 15 s).
    pub(super) async fn wait_for(&mut self, event: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.first(event).is_some() {
                return true;
            }
            let ended = matches!(self.child.try_wait(), Ok(Some(_)));
            if ended || tokio::time::Instant::now() >= deadline {
                // Its last lines may still be on their way.
                for relay in self.relays.drain(..) {
                    let _ = relay.await;
                }
                return self.first(event).is_some();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for it to end (SIGTERM after the round's limit, then SIGKILL), and for its output.
    pub(super) async fn finish(&mut self) {
        let status = match tokio::time::timeout(ROUND_LIMIT, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                note(
                    &format!(
                        "{} still runs after {}: stopping it",
                        self.name,
                        leasectl::duration::human(ROUND_LIMIT)
                    )
                    .red()
                    .to_string(),
                );
                terminate(self.pid);
                match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        let _ = self.child.kill().await;
                        None
                    }
                }
            }
        };
        self.code = status.and_then(|s| {
            s.code()
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
        });
        for relay in self.relays.drain(..) {
            let _ = relay.await;
        }
    }
}

/// Relays an instance's stdout (its events, shown as lines) and stderr, prefixed with its
/// name in its colour, and keeps the events.
pub(super) fn relay(
    name: &str,
    child: &mut Child,
    events: Arc<Mutex<Vec<Value>>>,
    tables: bool,
) -> Vec<JoinHandle<()>> {
    let prefix = prefix_of(name);
    let mut relays = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let prefix = prefix.clone();
        relays.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => {
                        let text = describe(&prefix, &event, tables);
                        show(text.trim_end_matches('\n'));
                        events.lock().unwrap().push(event);
                    }
                    Err(_) => show(format!("{prefix} {line}")),
                }
            }
        }));
    }
    if let Some(stderr) = child.stderr.take() {
        relays.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                show(format!("{prefix} {}", line.dimmed()));
            }
        }));
    }
    relays
}

/// `us-east-1  │`, in the instance's colour.
pub(super) fn prefix_of(name: &str) -> String {
    let color = match name {
        "us-east-1" => Color::Cyan,
        "eu-west-1" => Color::Magenta,
        "ap-south-1" => Color::Yellow,
        _ => Color::Blue,
    };
    format!(
        "{} {}",
        format!("{name:<10}").color(color).bold(),
        "│".color(color)
    )
}

/// An event as the lines a person reads (a holder table in one piece).
pub(super) fn describe(prefix: &str, event: &Value, tables: bool) -> String {
    let text = |field: &str| event[field].as_str().unwrap_or_default().to_string();
    let number = |field: &str| event[field].as_u64().unwrap_or_default();
    let holder = || {
        let meta = &event["metadata"];
        match (meta["instanceId"].as_str(), meta["region"].as_str()) {
            (Some(id), Some(region)) => format!("{id} ({region})"),
            (Some(id), None) => id.to_string(),
            _ => text("leaseId"),
        }
    };
    let line = match event["event"].as_str().unwrap_or_default() {
        "attempting" => format!("Attempting lock | Region: {}", text("region")),
        "waiting" => format!(
            "Waiting up to {} | Held by: {}",
            leasectl::duration::human(Duration::from_millis(number("waitMs"))),
            holder()
        ),
        "held" => {
            let mut lines = format!(
                "{prefix} {} | Held by: {}\n",
                "✗ Lock unavailable".red(),
                holder()
            );
            if tables {
                for field in ["leaseId", "acquiredAt", "fencingToken", "ttlMs"] {
                    let value = &event[field];
                    if !value.is_null() {
                        lines.push_str(&format!(
                            "{prefix}     {field:<14} {}\n",
                            value.to_string().trim_matches('"')
                        ));
                    }
                }
            }
            return lines;
        }
        "acquired" => {
            let id: String = text("leaseId").chars().take(8).collect();
            format!(
                "{} | Lease: {id} | Token: {} | TTL: {}",
                "✓ Lock acquired".green(),
                number("fencingToken"),
                leasectl::duration::human(Duration::from_millis(number("ttlMs")))
            )
        }
        "renewed" => format!("Renewed (renewal {})", number("renewals")),
        "lost" => format!("{} | {}", "✗ Lock lost".red(), text("reason")),
        "interrupted" => "Interrupted".to_string(),
        "completed" => format!(
            "Completed | Duration: {:.1}s | Renewals: {}",
            number("durationMs") as f64 / 1000.0,
            number("renewals")
        ),
        "released" => "Lock released".to_string(),
        other => other.to_string(),
    };
    format!("{prefix} {line}\n")
}

pub(super) fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Ctrl-C: SIGTERM to every instance still running (each releases its lease), then SIGKILL.
pub(super) async fn stop_all(running: &Arc<Mutex<Vec<u32>>>) {
    let pids = running.lock().unwrap().clone();
    for pid in &pids {
        terminate(*pid);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline && pids.iter().any(|pid| alive(*pid)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids.iter().filter(|pid| alive(**pid)) {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether the process runs (a zombie, ended but not yet reaped, does not).
pub(super) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

//! How the binary speaks: colour policy, notes and errors on stderr, exit codes, the holder
//! table and the JSON shape of `inspect`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use colored::Colorize;
use leasectl::{Error, Holder, InstanceView, LeaseInfo};
use serde::Serialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::Global;

/// The exit codes (the README's table).
pub mod exit {
    pub const REDIS: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const HELD: u8 = 3;
    pub const LOST: u8 = 4;
    /// Ended by Ctrl-C (128 + SIGINT), after cleaning up.
    pub const INTERRUPTED: u8 = 130;
    /// stdout could not be written (its reader went away, or the disk is full): whatever was
    /// held was released first. 128 + SIGPIPE, what a shell reports for a program that a
    /// closed pipe ended.
    pub const OUTPUT: u8 = 141;
}

/// stdout could not be written: the reader of the pipe went away, or the file cannot grow.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutFailed(pub std::io::Error);

/// Writes `text` to stdout and flushes it. Never panics (Rust ignores SIGPIPE, so a closed
/// pipe is an `EPIPE` error here, which the caller handles: release, then exit
/// [`exit::OUTPUT`]).
pub fn write_out(text: &str) -> Result<(), StdoutFailed> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(StdoutFailed)
}

/// Writes `text` to stderr, ignoring failures: there is nowhere left to report them.
pub fn write_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}

/// `println!` to stdout that answers `Err(StdoutFailed)` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout that answers `Err(StdoutFailed)` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(&format!($($arg)*))
    };
}

/// `eprintln!` that never panics (a closed stderr is ignored).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_err(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

/// A usage mistake found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where and how output goes.
pub struct Printer {
    pub quiet: bool,
    pub stdout_is_terminal: bool,
}

impl Printer {
    /// Sets the colour policy (terminal, no `NO_COLOR`, no `--no-color`) and the log level.
    pub fn new(global: &Global, telemetry: Option<&crate::telemetry::Telemetry>) -> Printer {
        let stdout_is_terminal = std::io::stdout().is_terminal();
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        colored::control::set_override(stdout_is_terminal && !no_color_env && !global.no_color);
        let level = match (global.quiet, global.verbose) {
            (true, _) => "error",
            (_, 0) => "warn",
            (_, 1) => "info",
            (_, 2) => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::new(format!(
            "leasectl={level},{}",
            if global.verbose > 2 {
                "redis=debug"
            } else {
                "warn"
            }
        ));
        let ansi = std::io::stderr().is_terminal() && !no_color_env && !global.no_color;
        match telemetry.and_then(|t| t.tracer()) {
            // No export: the plain subscriber, whose filter leaves disabled spans and events
            // costing nothing.
            None => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .without_time()
                .init(),
            // The library's spans (acquire, renew, release) to OTLP, whatever the log level.
            Some(tracer) => {
                let logs = tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi)
                    .with_target(false)
                    .without_time()
                    .with_filter(filter);
                let spans = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(tracing_subscriber::EnvFilter::new("leasectl=info"));
                tracing_subscriber::registry().with(logs).with(spans).init();
            }
        }
        Printer {
            quiet: global.quiet,
            stdout_is_terminal,
        }
    }

    /// A note on stderr (not with `--quiet`).
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            errln!("{} {}", "leasectl:".dimmed(), escape(&message.to_string()));
        }
    }

    /// Prints `error` as one line on stderr and answers its exit code. A closed stdout is
    /// the reader having gone, not news for anyone: no line.
    pub fn fail(&self, error: &anyhow::Error) -> ExitCode {
        let closed_pipe = error
            .downcast_ref::<StdoutFailed>()
            .is_some_and(|e| e.0.kind() == std::io::ErrorKind::BrokenPipe);
        if !closed_pipe {
            errln!("{} {}", "leasectl: error:".red().bold(), one_line(error));
        }
        ExitCode::from(exit_code(error))
    }
}

/// The exit code of an error: by the library's kind, 2 for usage, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        return exit::USAGE;
    }
    if error.downcast_ref::<StdoutFailed>().is_some() {
        return exit::OUTPUT;
    }
    match error.downcast_ref::<Error>() {
        Some(Error::Settings(_)) => exit::USAGE,
        Some(Error::Lost { .. }) => exit::LOST,
        _ => exit::REDIS,
    }
}

fn one_line(error: &anyhow::Error) -> String {
    escape(&format!("{error:#}").replace('\n', " ")).into_owned()
}

/// A value read from Redis (or any text not ours), safe to print: control characters escaped.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    leasectl::escape_for_terminal(text)
}

/// `27.3s`, `1m 5s`, `11mo 3d`, or `no expiry`.
pub fn ttl_text(ttl: Option<Duration>) -> String {
    match ttl {
        None => "no expiry".into(),
        Some(ttl) => compact(ttl),
    }
}

/// `4.2s` under a minute; above, the two largest units (`1m 5s`, `2h 30m`, `11mo 3d`,
/// `1y 2mo`), with humantime's month (30.44 days) and year (365.25 days).
pub fn compact(duration: Duration) -> String {
    if duration < Duration::from_secs(60) {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    const UNITS: [(&str, u64); 6] = [
        ("y", 31_557_600),
        ("mo", 2_630_016),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ];
    let secs = duration.as_secs();
    let first = UNITS
        .iter()
        .position(|(_, size)| secs >= *size)
        .unwrap_or(UNITS.len() - 1);
    let (unit, size) = UNITS[first];
    let mut text = format!("{}{unit}", secs / size);
    if let Some((next, next_size)) = UNITS.get(first + 1) {
        let rest = secs % size / next_size;
        if rest > 0 {
            text.push_str(&format!(" {rest}{next}"));
        }
    }
    text
}

/// The holder's details as an aligned table: the key, TTL left, then every stored field.
pub fn holder_table(key: &str, holder: &Holder) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("key".into(), escape(key).into_owned()),
        ("held by".into(), holder.display_name()),
        ("ttl left".into(), ttl_text(holder.ttl)),
    ];
    if holder.fencing_token.is_none() && holder.format == leasectl::KeyFormat::Hash {
        rows.push((
            "fencingToken".into(),
            "(none: written by another tool)".into(),
        ));
    }
    match &holder.format {
        leasectl::KeyFormat::Hash => {}
        leasectl::KeyFormat::Json => rows.push((
            "format".into(),
            "JSON string (DistributedLeasing package)".into(),
        )),
        leasectl::KeyFormat::Token => {
            rows.push(("format".into(), "plain token (another lock library)".into()))
        }
        leasectl::KeyFormat::Other(kind) => {
            rows.push(("format".into(), format!("a Redis {kind}, not a lease")))
        }
        leasectl::KeyFormat::Queued { waiters } => rows.push((
            "queue".into(),
            format!("free, promised to the first of {waiters} waiter(s) in line"),
        )),
    }
    // Field names and values are data written by anyone: escaped, one row each.
    rows.extend(
        holder
            .fields
            .iter()
            .map(|(k, v)| (escape(k).into_owned(), escape(v).into_owned())),
    );
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("    {}  {v}\n", format!("{k:<width$}").cyan()))
        .collect()
}

/// One lease in `inspect --json` (the README documents it). Only `lease`, `key`, `held` when free.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseJson<'a> {
    lease: &'a str,
    key: &'a str,
    held: bool,
    /// How the key is stored: `hash`, `json`, `string`, or the Redis type of another key.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acquired_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BTreeMap<String, String>>,
    /// Quorum mode only: each instance's view.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    instances: Vec<InstanceJson<'a>>,
}

/// One instance's view in `inspect --json` (quorum mode).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceJson<'a> {
    address: &'a str,
    held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> From<&'a InstanceView> for InstanceJson<'a> {
    fn from(view: &'a InstanceView) -> Self {
        let holder = view.holder.as_ref();
        InstanceJson {
            address: &view.address,
            held: holder.is_some(),
            lease_id: holder.and_then(|h| h.lease_id.as_deref()),
            ttl_ms: holder.and_then(|h| h.ttl).map(|t| t.as_millis() as u64),
            counter: view.counter,
            error: view.error.as_deref(),
        }
    }
}

/// Quorum mode: one line per instance, `127.0.0.1:7001  held by a (r), ttl left 29.7s, counter 3`.
pub fn instances_table(instances: &[InstanceView]) -> String {
    let width = instances.iter().map(|i| i.address.len()).max().unwrap_or(0);
    let mut text = format!("    {}\n", "instances".cyan());
    for view in instances {
        let state = match (&view.error, &view.holder) {
            (Some(error), _) => escape(error).red().to_string(),
            (None, Some(holder)) => format!(
                "held by {}, ttl left {}",
                holder.display_name(),
                ttl_text(holder.ttl)
            ),
            (None, None) => "free".to_string(),
        };
        let counter = view
            .counter
            .map(|c| format!(", counter {c}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "      {:<width$}  {state}{counter}\n",
            view.address
        ));
    }
    text
}

impl<'a> From<&'a LeaseInfo> for LeaseJson<'a> {
    fn from(info: &'a LeaseInfo) -> Self {
        let holder = info.holder.as_ref();
        LeaseJson {
            lease: &info.name,
            key: &info.key,
            held: holder.is_some(),
            format: holder.and_then(|h| format_name(&h.format)),
            lease_id: holder.and_then(|h| h.lease_id.as_deref()),
            owner_id: holder.and_then(|h| h.owner_id.as_deref()),
            acquired_at: holder.and_then(|h| h.acquired_at.as_deref()),
            ttl_ms: holder.and_then(|h| h.ttl).map(|t| t.as_millis() as u64),
            fencing_token: holder.and_then(|h| h.fencing_token),
            metadata: holder.map(|h| &h.metadata),
            instances: info.instances.iter().map(InstanceJson::from).collect(),
        }
    }
}

/// The `format` of a held lease (`None` for a free lease promised to a queued waiter).
fn format_name(format: &leasectl::KeyFormat) -> Option<&str> {
    match format {
        leasectl::KeyFormat::Hash => Some("hash"),
        leasectl::KeyFormat::Json => Some("json"),
        leasectl::KeyFormat::Token => Some("string"),
        leasectl::KeyFormat::Other(kind) => Some(kind),
        leasectl::KeyFormat::Queued { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        let text = |secs: u64| compact(Duration::from_secs(secs));
        assert_eq!(compact(Duration::from_millis(4_200)), "4.2s");
        assert_eq!(text(65), "1m 5s");
        assert_eq!(text(3_600), "1h");
        assert_eq!(text(2 * 3_600 + 30 * 60 + 15), "2h 30m");
        assert_eq!(text(3 * 86_400 + 4 * 3_600 + 1_800), "3d 4h");
        assert_eq!(text(11 * 2_630_016 + 3 * 86_400 + 7), "11mo 3d");
        assert_eq!(text(31_557_600 + 2 * 2_630_016), "1y 2mo");
    }
}

//! `leasectl demo`: the lock competition, played by real `leasectl run --json` processes on
//! this machine, so that the contest stays between processes. Each round is judged from the
//! instances' events: two at once and three at once (exactly one winner, the others name it),
//! takeover after a release, takeover after a crash (SIGKILL, then the TTL), and with
//! `--quorum` a round with one server shut down.

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colored::Colorize;
use leasectl::{LeaseClient, Settings};
use serde_json::Value;
use tokio::process::Command;

mod instance;
mod judge;
mod pace;

use instance::{prefix_of, relay, stop_all, Instance};
use judge::{code_text, judge_race, time_of, Seen};
use pace::{Pace, FAST, NORMAL};

use super::Interrupts;
use crate::cli::{DemoArgs, Global};
use crate::output::{errln, exit, write_out, StdoutFailed};

/// Set when a write to stdout failed (its reader went away): the demo stops at the next round.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout; a failure is noted, never a panic.
fn show(text: impl std::fmt::Display) {
    if write_out(&format!("{text}\n")).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// The demo's lease, under the demo's own key prefix unless `--key-prefix` names one.
const LEASE: &str = "critical-section-lock";
pub const PREFIX: &str = "leasectl-demo:";
/// Split votes (quorum mode) after which a race round is judged as it is.
const SPLIT_RETRIES: usize = 2;

pub async fn run(global: &Global, settings: Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let pace = if args.fast { &FAST } else { &NORMAL };
    let servers = settings.endpoints.len();
    if args.quorum && (servers != 3 || !settings.endpoints.iter().all(is_loopback)) {
        return Err(crate::output::UsageError(
            "--quorum shuts one server down: it needs three throwaway servers on this machine (run-competition-demo.sh --quorum starts them)".into(),
        )
        .into());
    }
    let client = LeaseClient::connect(settings.clone()).await?;
    let mut demo = Demo {
        global: global.clone(),
        prefix: settings.key_prefix.clone(),
        client,
        pace,
        rounds: if args.quorum { 5 } else { 4 },
        round: 0,
        summary: Vec::new(),
        quorum: servers > 1,
        running: Arc::new(Mutex::new(Vec::new())),
    };
    let addresses: Vec<String> = settings.endpoints.iter().map(|e| e.address()).collect();
    show("leasectl lock competition".bold());
    note(&format!(
        "Redis: {}; the demo's keys live under '{}'",
        addresses.join(", "),
        demo.prefix
    ));
    if demo.quorum {
        note(&format!(
            "quorum mode (Redlock): a lease is held when {} of the {servers} servers granted it",
            servers / 2 + 1
        ));
    }
    let mut interrupts = Interrupts::install()?;
    let running = demo.running.clone();
    let outcome = tokio::select! {
        outcome = demo.play(args.quorum, &settings) => outcome,
        code = interrupts.recv() => {
            errln!("\nleasectl demo: interrupted; stopping the instances it started");
            stop_all(&running).await;
            return Ok(ExitCode::from(code));
        }
    };
    stop_all(&running).await;
    outcome?;
    show(format!("\n{}", "Summary".bold().underline()));
    for line in &demo.summary {
        show(line);
    }
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return Err(gone().into());
    }
    if demo.summary.iter().all(|line| line.ok) {
        note("every round had exactly one holder at a time");
        Ok(ExitCode::SUCCESS)
    } else {
        note(
            &"some rounds did not go as they should (✗ above)"
                .red()
                .to_string(),
        );
        Ok(ExitCode::from(exit::REDIS))
    }
}

fn is_loopback(endpoint: &leasectl::Endpoint) -> bool {
    matches!(endpoint.host.as_str(), "localhost" | "::1" | "[::1]")
        || endpoint.host.starts_with("127.")
}

/// A line of the demo's own, dimmed.
fn note(text: &str) {
    show(format!("{} {text}", "  ▸".dimmed()));
}

/// The error of a stdout whose reader went away (exit 141, silently).
fn gone() -> StdoutFailed {
    StdoutFailed(std::io::ErrorKind::BrokenPipe.into())
}

/// One judged round in the summary.
struct Verdict {
    ok: bool,
    text: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "✓".green() } else { "✗".red() };
        write!(f, "  {mark} {}", self.text)
    }
}

struct Demo {
    global: Global,
    prefix: String,
    client: LeaseClient,
    pace: &'static Pace,
    rounds: usize,
    round: usize,
    summary: Vec<Verdict>,
    quorum: bool,
    /// The pids of the instances still running, for Ctrl-C.
    running: Arc<Mutex<Vec<u32>>>,
}

impl Demo {
    async fn play(&mut self, down_round: bool, settings: &Settings) -> anyhow::Result<()> {
        self.wait_until_free().await?;
        let pace = self.pace;
        self.new_round(
            "simultaneous start of two instances",
            "us-east-1 and eu-west-1 start at the same moment: exactly one wins.",
        )
        .await?;
        let racers = [("us-east-1", "us-east"), ("eu-west-1", "eu-west")];
        self.contest("two at once", &racers, &["--work", pace.two], true)
            .await?;

        self.new_round(
            "three regions at once",
            "us-east-1, eu-west-1 and ap-south-1 race for the same lease (the losers' holder tables are left out).",
        )
        .await?;
        let racers = [
            ("us-east-1", "us-east"),
            ("eu-west-1", "eu-west"),
            ("ap-south-1", "ap-south"),
        ];
        self.contest("three at once", &racers, &["--work", pace.three], false)
            .await?;

        self.new_round(
            "takeover after a graceful release",
            &format!("us-east-1 holds the lease with a {} TTL, renewing it while it works {}; eu-west-1 waits and gets it as soon as it is released.", pace.release_ttl, pace.release_work),
        )
        .await?;
        self.release_takeover().await?;

        self.new_round(
            "takeover after a crash",
            &format!("ap-south-1 takes the lease with a {} TTL and is killed (SIGKILL) while working: it cannot release it.", humantime::format_duration(pace.crash_ttl)),
        )
        .await?;
        self.crash_takeover().await?;

        if down_round {
            self.new_round(
                "an instance goes down",
                "the second redis-server is shut down, then us-east-1 and eu-west-1 start at the same moment: the two left are still a majority.",
            )
            .await?;
            self.server_down(settings).await?;
        }
        Ok(())
    }

    /// An earlier run killed before it could release leaves the lease held until its TTL.
    async fn wait_until_free(&self) -> anyhow::Result<()> {
        let Some(holder) = self.client.inspect(LEASE).await?.holder else {
            return Ok(());
        };
        let Some(ttl) = holder.ttl else {
            anyhow::bail!(
                "the demo's lease {}{LEASE} has no TTL (another tool wrote it?); free it with: leasectl --key-prefix {} release {LEASE} --force",
                self.prefix,
                self.prefix
            );
        };
        note(&format!(
            "the demo's lease is held by {} (an earlier run, or one going on now): waiting up to {} for it",
            holder.display_name(),
            leasectl::duration::human(ttl + Duration::from_secs(2))
        ));
        if self
            .client
            .wait_until_free(LEASE, ttl + Duration::from_secs(2))
            .await?
            .is_some()
        {
            anyhow::bail!("the demo's lease is still held after its TTL: someone is running the demo on this Redis now");
        }
        Ok(())
    }

    async fn new_round(&mut self, title: &str, explanation: &str) -> Result<(), StdoutFailed> {
        if STDOUT_GONE.load(Ordering::Relaxed) {
            return Err(gone());
        }
        self.round += 1;
        if self.round > 1 {
            tokio::time::sleep(self.pace.pause).await;
        }
        let header = format!("Round {} of {}: {title}", self.round, self.rounds);
        show(format!("\n{}", header.bold().underline()));
        note(explanation);
        Ok(())
    }

    fn record(&mut self, ok: bool, text: String) {
        let text = format!("Round {}: {text}", self.round);
        self.summary.push(Verdict { ok, text });
    }

    /// Starts `leasectl run --json` as instance `name`.
    fn start(
        &self,
        name: &str,
        region: &str,
        flags: &[&str],
        tables: bool,
    ) -> anyhow::Result<Instance> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(child_flags(&self.global, &self.prefix));
        command
            .args(["run", "--json", "--instance", name, "--region", region])
            .args(flags);
        if !flags.contains(&"--ttl") {
            let ttl = format!("{}ms", self.pace.ttl.as_millis());
            command.args(["--ttl", &ttl]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or_default();
        self.running.lock().unwrap().push(pid);
        let events = Arc::new(Mutex::new(Vec::new()));
        let relays = relay(name, &mut child, events.clone(), tables);
        Ok(Instance {
            name: name.to_string(),
            pid,
            child,
            events,
            relays,
            code: None,
        })
    }

    /// Waits for `instances` to end (stopping them after the round's limit).
    async fn finish(&self, instances: &mut [Instance]) {
        for instance in instances.iter_mut() {
            instance.finish().await;
            self.running
                .lock()
                .unwrap()
                .retain(|pid| *pid != instance.pid);
        }
    }

    /// A race: every instance starts at once; exactly one exits 0 having acquired, the others
    /// exit 3 naming it. A split vote (quorum mode: each got a minority, nobody holds it) is
    /// told and raced again.
    async fn contest(
        &mut self,
        title: &str,
        racers: &[(&str, &str)],
        flags: &[&str],
        tables: bool,
    ) -> anyhow::Result<()> {
        let mut splits = 0;
        loop {
            let mut order = racers.to_vec();
            fastrand::shuffle(&mut order);
            let mut instances = Vec::new();
            for (name, region) in order {
                instances.push(self.start(name, region, flags, tables)?);
            }
            self.finish(&mut instances).await;
            let nobody = instances
                .iter()
                .all(|i| i.code == Some(3) && i.first("acquired").is_none());
            if self.quorum
                && nobody
                && splits < SPLIT_RETRIES
                && self.client.inspect(LEASE).await?.holder.is_none()
            {
                splits += 1;
                note(&"split vote: each instance got the lease on a minority of the servers, so nobody holds it; racing again".yellow().to_string());
                continue;
            }
            let seen: Vec<Seen> = instances.iter().map(Instance::seen).collect();
            let (ok, text) = judge_race(&seen, self.quorum);
            let note = match splits {
                0 => String::new(),
                n => format!(", after {n} split vote(s)"),
            };
            self.record(ok, format!("{title}: {text}{note}"));
            return Ok(());
        }
    }

    /// Waits until the round's first instance acquired; if it ends or times out first, the
    /// round fails (recorded as `round`).
    async fn acquires(&mut self, instance: &mut Instance, round: &str) -> bool {
        if instance.wait_for("acquired").await {
            return true;
        }
        self.finish(std::slice::from_mut(instance)).await;
        let text = format!("{round}: {} did not get the lease", instance.name);
        self.record(false, text);
        false
    }

    async fn release_takeover(&mut self) -> anyhow::Result<()> {
        let pace = self.pace;
        let holder_flags = ["--ttl", pace.release_ttl, "--work", pace.release_work];
        let mut first = self.start("us-east-1", "us-east", &holder_flags, true)?;
        if !self.acquires(&mut first, "release takeover").await {
            return Ok(());
        }
        let second = self.start(
            "eu-west-1",
            "eu-west",
            &["--wait", "30s", "--work", pace.taker_work],
            true,
        )?;
        let mut both = [first, second];
        self.finish(&mut both).await;
        let [first, second] = &both;
        let completed = first.first("completed").and_then(|e| time_of(&e));
        let taken = second.first("acquired").and_then(|e| time_of(&e));
        let codes = (first.code, second.code);
        let text = match (completed, taken) {
            (Some(done), Some(taken)) if codes == (Some(0), Some(0)) && taken >= done => {
                let after = taken.duration_since(done).unwrap_or_default();
                let text = format!(
                    "release takeover: us-east-1, then eu-west-1 {} after it completed",
                    leasectl::duration::human(after)
                );
                self.record(true, text);
                return Ok(());
            }
            (Some(done), Some(taken)) if taken < done => {
                "eu-west-1 got the lease before us-east-1 released it".to_string()
            }
            _ => format!(
                "exit codes {} and {} (expected 0 and 0)",
                code_text(first.code),
                code_text(second.code)
            ),
        };
        self.record(false, format!("release takeover: {text}"));
        Ok(())
    }

    async fn crash_takeover(&mut self) -> anyhow::Result<()> {
        let pace = self.pace;
        let ttl = humantime::format_duration(pace.crash_ttl).to_string();
        let mut crashed = self.start(
            "ap-south-1",
            "ap-south",
            &["--ttl", &ttl, "--work", "60s"],
            true,
        )?;
        if !self.acquires(&mut crashed, "crash takeover").await {
            return Ok(());
        }
        let _ = crashed.child.start_kill();
        note(&format!(
            "killed ap-south-1 (pid {}) with SIGKILL; its lease stays until the TTL runs out:",
            crashed.pid
        ));
        self.show_inspect(&[]).await?;
        let taker = self.start(
            "us-east-1",
            "us-east",
            &["--wait", "20s", "--work", "1s"],
            true,
        )?;
        let mut both = [crashed, taker];
        self.finish(&mut both).await;
        let [crashed, taker] = &both;
        // The lease could be taken only once it expired: its TTL after ap-south-1 asked for it.
        let expiry = crashed
            .first("acquired")
            .and_then(|e| {
                e["acquiredAt"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
            })
            .map(|at| at + pace.crash_ttl);
        let taken = taker.first("acquired").and_then(|e| time_of(&e));
        let killed = crashed.code == Some(128 + 9) || crashed.code.is_none();
        let ok = match (expiry, taken) {
            (Some(expiry), Some(taken)) => {
                killed && taker.code == Some(0) && taken + Duration::from_millis(2) >= expiry
            }
            _ => false,
        };
        let text = match (ok, expiry, taken) {
            (true, Some(expiry), Some(taken)) => {
                let after = taken.duration_since(expiry).unwrap_or_default();
                format!("crash takeover: ap-south-1 (killed), then us-east-1 {} after the TTL ran out ({ttl})", leasectl::duration::human(after))
            }
            (false, Some(expiry), Some(taken)) if taken < expiry => {
                "crash takeover: us-east-1 got the lease before it expired".into()
            }
            _ => format!(
                "crash takeover: exit codes {} and {} (expected 137 and 0)",
                code_text(crashed.code),
                code_text(taker.code)
            ),
        };
        self.record(ok, text);
        self.show_inspect(&[]).await
    }

    /// Quorum mode: shut the second server down (SHUTDOWN NOSAVE), race two instances, and
    /// check that `inspect` lists the server that is down with an error.
    async fn server_down(&mut self, settings: &Settings) -> anyhow::Result<()> {
        self.until_older_than_every_ttl(settings).await;
        let down = &settings.endpoints[1];
        let info = down.connection_info(settings.database)?;
        let mut connection = redis::Client::open(info)?
            .get_multiplexed_async_connection()
            .await?;
        // The server closes the connection instead of answering.
        let _ = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query_async::<()>(&mut connection)
            .await;
        note(&format!("shut down the redis-server at {}", down.address()));
        let pace = self.pace;
        let racers = [("us-east-1", "us-east"), ("eu-west-1", "eu-west")];
        let flags = ["--ttl", pace.down_ttl, "--work", pace.down_work];
        self.contest("one server down, two at once", &racers, &flags, true)
            .await?;
        let json = self.inspect_json().await?;
        let error = json["instances"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["address"] == down.address().as_str()))
            .and_then(|i| i["error"].as_str().map(str::to_string));
        match error {
            Some(error) => self.record(
                true,
                format!("inspect listed {} as down ({error})", down.address()),
            ),
            None => self.record(
                false,
                format!("inspect did not list {} with an error", down.address()),
            ),
        }
        self.show_inspect(&[]).await
    }

    /// Quorum mode counts a grant of an instance that started less than a TTL ago only when
    /// every other instance answered (it may have forgotten a lease it granted): with one
    /// server down, the servers must be older than the longest TTL the demo used. Just started
    /// by the wrapper, they may not be yet: wait.
    async fn until_older_than_every_ttl(&self, settings: &Settings) {
        let mut youngest = None;
        for endpoint in &settings.endpoints {
            let uptime = uptime(endpoint, settings.database)
                .await
                .unwrap_or_default();
            youngest = Some(youngest.map_or(uptime, |y: Duration| y.min(uptime)));
        }
        let needed = self.pace.ttl + Duration::from_secs(2);
        let wait = needed.saturating_sub(youngest.unwrap_or_default());
        if !wait.is_zero() {
            note(&format!(
                "waiting {} until every server is older than the longest TTL the demo used ({}): a server that started since could have forgotten a lease",
                leasectl::duration::human(wait),
                leasectl::duration::human(self.pace.ttl)
            ));
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs `leasectl inspect` and shows its output, prefixed.
    async fn show_inspect(&self, flags: &[&str]) -> anyhow::Result<()> {
        let output = self.inspect_command(flags)?.output().await?;
        let prefix = prefix_of("inspect");
        for line in String::from_utf8_lossy(&output.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&output.stderr).lines())
        {
            show(format!("{prefix} {line}"));
        }
        Ok(())
    }

    async fn inspect_json(&self) -> anyhow::Result<Value> {
        let output = self.inspect_command(&["--json"])?.output().await?;
        Ok(serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
    }

    fn inspect_command(&self, flags: &[&str]) -> anyhow::Result<Command> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(child_flags(&self.global, &self.prefix))
            .args(["inspect", LEASE])
            .args(flags)
            .stdin(Stdio::null());
        Ok(command)
    }
}

/// The global flags every instance gets: the demo's settings, endpoints and key prefix.
fn child_flags(global: &Global, prefix: &str) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(config) = &global.config {
        flags.push("--config".to_string());
        flags.push(config.display().to_string());
    }
    for endpoint in &global.endpoints {
        flags.push("--endpoint".to_string());
        flags.push(endpoint.clone());
    }
    flags.push("--key-prefix".to_string());
    flags.push(prefix.to_string());
    flags
}

/// How long ago the server at `endpoint` started (INFO's whole seconds).
async fn uptime(endpoint: &leasectl::Endpoint, database: i64) -> Option<Duration> {
    let client = redis::Client::open(endpoint.connection_info(database).ok()?).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .ok()?;
    let seconds = info
        .lines()
        .find_map(|line| line.strip_prefix("uptime_in_seconds:"))?;
    Some(Duration::from_secs(seconds.trim().parse().ok()?))
}

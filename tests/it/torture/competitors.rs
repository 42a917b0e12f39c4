//! The competitors: library clients (tasks in the test process, each with its own connections)
//! and `leasectl exec` processes whose child is this test binary run as [`exec_child`]. Each
//! holder writes to the protected resource through the fence at once (its claim), then a few
//! times more while it holds, and stops at its first refused write or at its lease's loss.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasectl::{Acquire, FencedWrite, Lease, LeaseClient, LeaseOptions};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::history::{self, append, mono_of, now, Holder, Outcome, Section, Write};
use super::{Ctx, Held};
use crate::support::{binary, Leasectl};

/// The exact name of the test that runs as an `exec` child.
pub const CHILD_TEST: &str = "torture::exec_child";
/// Where an `exec` child records its section; its presence makes the test act as the child.
pub const RECORD_VAR: &str = "LEASECTL_TORTURE_RECORD";
const RESOURCE_VAR: &str = "LEASECTL_TORTURE_RESOURCE";
/// `HOLD_MS WRITES`: how long the child holds and how many fenced writes it makes.
const PLAN_VAR: &str = "LEASECTL_TORTURE_PLAN";

/// The protected resource of lease `name`.
pub fn resource_key(name: &str) -> String {
    format!("resource:{name}")
}

/// How long a holder of a lease with `ttl` holds, how many fenced writes it makes, and whether
/// the hold is long: mostly short, sometimes past the TTL so that renewals, and faults during
/// them, come into play.
fn plan(ctx: &Ctx, ttl: Duration, rng: &mut fastrand::Rng) -> (Duration, usize, bool) {
    let writes = rng.usize(1..=3);
    if rng.u8(..ctx.config.long_hold_every) == 0 {
        (ttl * rng.u32(100..=200) / 100, writes, true)
    } else {
        let hold = Duration::from_micros(rng.u64(..=ctx.config.hold.as_micros() as u64));
        (hold, writes, false)
    }
}

/// Library competitor `index`: acquires (waiting) a random name, holds it, again and again.
pub async fn library(
    ctx: Arc<Ctx>,
    index: usize,
    client: LeaseClient,
    resource: LeaseClient,
    mut rng: fastrand::Rng,
) {
    // Competitors with different TTLs on one name: every other one holds three times as long.
    let ttl = ctx.config.ttl * (1 + 2 * (index as u32 % 2));
    let options = LeaseOptions {
        ttl,
        auto_renew: Some(ttl / 3),
        fallback_poll: ttl / 2,
        ..LeaseOptions::from_settings(client.settings())
    }
    .meta("instanceId", format!("library-{index}"));
    while !ctx.stopping() {
        let name = &ctx.names[rng.usize(..ctx.names.len())];
        let asked = now();
        match client.acquire(name, &options, ctx.config.ttl * 3).await {
            Ok(Acquire::Acquired(lease)) => {
                let section = hold(&ctx, index, asked, lease, &resource, &mut rng).await;
                ctx.record(section);
            }
            Ok(Acquire::Held(_)) => {}
            Err(_) => {
                ctx.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(rng.u64(5..50))).await;
            }
        }
    }
}

/// Holds `lease` for a planned time, writing through the fence; answers the section.
async fn hold(
    ctx: &Ctx,
    index: usize,
    asked: u64,
    lease: Lease,
    resource: &LeaseClient,
    rng: &mut fastrand::Rng,
) -> Section {
    let start = now();
    // The acquire that got the lease was sent when its validity, less the TTL and the drift
    // allowance (SPEC 6: 1% + 2 ms), began: a tighter bound than when we asked.
    let ttl = lease.ttl().as_nanos() as u64;
    let sent = mono_of(lease.valid_until()).saturating_sub(ttl - ttl / 100 - 2_000_000);
    let asked = sent.clamp(asked, start);
    let (hold, writes, long) = plan(ctx, lease.ttl(), rng);
    *ctx.holding[index].lock().unwrap() = Some(Held {
        name: lease.name().to_string(),
        long,
        ttl: lease.ttl(),
        ends: start + hold.as_nanos() as u64,
    });
    let holder = Holder::Library(index);
    let mut section = Section::new(
        lease.name(),
        holder,
        lease.id(),
        lease.fencing_token(),
        start,
    );
    section.asked = asked;
    section.ttl = Some(ttl);
    let key = resource_key(lease.name());
    let mut lost = Box::pin(lease.lost());
    for i in 0..writes {
        if lease.lost_error().is_some() {
            section.saw_loss(&lease);
            break;
        }
        section
            .validity
            .push((now(), mono_of(lease.valid_until()), lease.renewals()));
        let value = format!("{}:{i}", lease.id());
        let sent = now();
        let outcome = match resource
            .fenced_set(&key, &value, lease.fencing_token())
            .await
        {
            Ok(FencedWrite::Written) => Outcome::Written,
            Ok(FencedWrite::Stale { .. }) => Outcome::Stale,
            Err(_) => Outcome::Failed,
        };
        section.writes.push(Write {
            sent,
            answered: now(),
            outcome,
        });
        if outcome == Outcome::Stale {
            break; // fenced out: a careful holder stops here
        }
        // Sleep until the next write, reading the validity at least every quarter TTL (a
        // renewal that should have failed shows there).
        let next_write = tokio::time::Instant::now() + hold / writes as u32;
        while section.lost.is_none() && tokio::time::Instant::now() < next_write {
            let wake = next_write.min(tokio::time::Instant::now() + lease.ttl() / 4);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => section.validity.push((
                    now(),
                    mono_of(lease.valid_until()),
                    lease.renewals(),
                )),
                _ = &mut lost => section.saw_loss(&lease),
            }
        }
        if section.lost.is_some() {
            break;
        }
    }
    if section.lost.is_none() {
        section
            .validity
            .push((now(), mono_of(lease.valid_until()), lease.renewals()));
        section.end = Some(now());
    }
    *ctx.holding[index].lock().unwrap() = None;
    let _ = lease.release().await;
    section
}

impl Section {
    /// Notes that the holder saw its lease's loss now: the loss took effect when the validity
    /// the library computed ended, or now if the signal came before that (not ours any more).
    fn saw_loss(&mut self, lease: &Lease) {
        let (seen, valid_until) = (now(), mono_of(lease.valid_until()));
        self.validity.push((seen, valid_until, lease.renewals()));
        self.lost_seen = Some(seen);
        self.lost = Some(seen.min(valid_until));
    }
}

/// An `exec` competitor: runs `leasectl exec NAME -- <this test binary as exec_child>` in its
/// own process group, again and again; records each child's section.
pub fn exec(ctx: Arc<Ctx>, index: usize, urls: Vec<String>, dir: PathBuf, mut rng: fastrand::Rng) {
    let leasectl = Leasectl::new();
    let ttl_ms = ctx.config.ttl.as_millis();
    let timeout_ms = ctx.config.timeout().as_millis().to_string();
    let mut run = 0u64;
    while !ctx.stopping() {
        run += 1;
        let record = dir.join(format!("exec-{index}-{run}.record"));
        let name = &ctx.names[rng.usize(..ctx.names.len())];
        let (hold, writes, _) = plan(&ctx, ctx.config.ttl, &mut rng);
        let mut command = leasectl.command();
        for url in &urls {
            command.arg("--endpoint").arg(url);
        }
        // ConnectTimeout stays at its default (5 s, five TTLs): no call may wait for it while
        // the lease's validity runs out (a release subscription to a blackholed instance).
        command
            .env("RedisLeasing__SyncTimeout", &timeout_ms)
            .envs(ctx.leasectl_env.iter().map(|(k, v)| (k, v)))
            .args(["exec", name])
            .args(["--ttl", &format!("{ttl_ms}ms")])
            .args(["--wait", &format!("{}ms", 3 * ttl_ms)])
            .args(["--kill-after", "10s", "--"])
            .arg(std::env::current_exe().expect("the test binary"))
            .args([
                CHILD_TEST,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(RECORD_VAR, &record)
            .env(RESOURCE_VAR, &ctx.resource_url)
            .env(PLAN_VAR, format!("{} {writes}", hold.as_millis()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let asked = now();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => panic!("cannot start leasectl: {error}"),
        };
        let pid = child.id();
        ctx.execs
            .lock()
            .unwrap()
            .insert(pid, super::Running::new(record.clone()));
        let status = child.wait().expect("wait for leasectl exec");
        let running = ctx.execs.lock().unwrap().remove(&pid).expect("registered");
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "unknown".into(),
        };
        *ctx.exec_outcomes.lock().unwrap().entry(code).or_default() += 1;
        if let Some(mut section) = history::read_record(&record, Holder::Exec(pid)) {
            section.hit = running.hit;
            section.asked = asked;
            ctx.record(section);
        }
        let _ = std::fs::remove_file(&record);
    }
}

/// When the child got SIGTERM (its lease lost): 0 until then.
static TERMINATED_AT: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_terminate(_: nix::libc::c_int) {
    // clock_gettime and an atomic store are async-signal-safe.
    TERMINATED_AT.store(now(), Ordering::SeqCst);
}

/// The child of `leasectl exec`: records its section in the file `record` while writing through
/// `leasectl fence set`; on SIGTERM it finishes the write under way, records when the signal
/// came, and exits.
pub fn exec_child(record: &Path) {
    let handler = SigAction::new(
        SigHandler::Handler(on_terminate),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only reads the clock and stores into an atomic.
    unsafe { sigaction(Signal::SIGTERM, &handler) }.expect("install the SIGTERM handler");
    let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let (name, id) = (variable("LEASECTL_LEASE"), variable("LEASECTL_LEASE_ID"));
    let token = variable("LEASECTL_FENCING_TOKEN");
    let resource = variable(RESOURCE_VAR);
    let plan = variable(PLAN_VAR);
    let (hold_ms, writes) = plan.split_once(' ').expect("HOLD_MS WRITES");
    let (hold_ms, writes): (u64, u64) = (hold_ms.parse().unwrap(), writes.parse().unwrap());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record)
        .expect("open the record");
    append(
        &mut file,
        format_args!("start {} {name} {id} {token} {}", now(), std::process::id()),
    );
    let terminated = || TERMINATED_AT.load(Ordering::SeqCst) != 0;
    for i in 0..writes {
        if terminated() {
            break;
        }
        let sent = now();
        let mut fence = Command::new(binary());
        // The resource: one Redis, or in quorum mode the deployment's instances themselves.
        for url in resource.split(' ') {
            fence.arg("--endpoint").arg(url);
        }
        // The resource is a plain Redis (or the quorum's instances): not the cluster settings
        // that `leasectl exec` got, and its children inherit (see `cluster::leasectl_env`).
        let status = fence
            .env_remove("RedisLeasing__Cluster")
            .env_remove("RedisLeasing__WaitReplicas")
            .args(["fence", "set"])
            .args([
                &resource_key(&name),
                &format!("{id}:{i}"),
                "--token",
                &token,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let outcome = match status.ok().and_then(|s| s.code()) {
            Some(0) => Outcome::Written,
            Some(3) => Outcome::Stale,
            _ => Outcome::Failed,
        };
        append(
            &mut file,
            format_args!(
                "write {sent} {} {}",
                now(),
                history::outcome_letter(outcome)
            ),
        );
        if outcome == Outcome::Stale {
            break;
        }
        let until = now() + hold_ms * 1_000_000 / writes;
        while now() < until && !terminated() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    match TERMINATED_AT.load(Ordering::SeqCst) {
        0 => append(&mut file, format_args!("end {}", now())),
        at => append(&mut file, format_args!("term {at}")),
    }
    std::process::exit(0);
}

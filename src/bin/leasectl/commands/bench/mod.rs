//! `leasectl bench`: measures this deployment — S1 one client's acquire + release
//! cycle, S2 parallel acquirers on distinct keys, S3 waiters contending for one key, S4 S1
//! over a quorum, S5 many leases renewed by one process — optionally beside
//! `redis-benchmark`'s PING figures measured in the same run.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use leasectl::{Acquire, LeaseClient, LeaseOptions, Settings};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

mod baseline;
mod renewal;

use baseline::{redis_benchmark, redis_benchmark_once, Baseline};

use crate::cli::BenchArgs;
use crate::output::{outln, StdoutFailed, UsageError};

/// One scenario's figures: the fields every scenario has, then the scenario's own.
#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    n: u64,
    errors: u64,
    lib_version: &'static str,
    mode: String,
    #[serde(flatten)]
    figures: Figures,
}

/// The figures a scenario adds to those every scenario has.
#[derive(Serialize, Default)]
struct Figures {
    /// S1 with `--baseline`: each segment's share of the two-round-trip limit, and their median.
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_limit_pct: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_pct: Option<f64>,
    /// S4: the interleaved single-instance cycles' median, and S4's median over it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    interleaved: Option<Interleaved>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    contention: Option<Contention>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    renewal: Option<Renewal>,
}

#[derive(Serialize)]
struct Interleaved {
    s1_p50_us_interleaved: f64,
    ratio_to_s1: Option<f64>,
}

/// S3: how fair and how quick the handoffs were.
#[derive(Serialize)]
struct Contention {
    same_worker_pct: f64,
    other_p50_us: f64,
    other_p99_us: f64,
    per_worker: Vec<u64>,
    hold_mean_us: f64,
}

/// S5: the cost of renewing many leases.
#[derive(Serialize)]
struct Renewal {
    /// None (null) when the window was too short for any renewal (TTL / 3 or longer).
    cpu_us_per_renewal: Option<f64>,
    rss_bytes_per_lease: u64,
    late_renewals: u64,
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let quorum_possible = settings.endpoints.len() >= 3;
    let scenarios: Vec<String> = match args.scenarios.is_empty() {
        true => ["S1", "S2", "S3"]
            .iter()
            .map(|s| s.to_string())
            .chain(quorum_possible.then(|| "S4".into()))
            .collect(),
        false => args.scenarios.clone(),
    };
    if scenarios.iter().any(|s| s == "S4") && !quorum_possible {
        return Err(UsageError("S4 needs 3 or more endpoints (--redis URL,URL,URL)".into()).into());
    }
    let mut single_settings = settings.clone();
    single_settings.endpoints.truncate(1);
    let single = LeaseClient::connect(single_settings).await?;
    let progress = progress_bar();
    // First, so that S1 runs right after the round-trip figure it is compared with (this kind
    // of machine is noisy: figures minutes apart differ by a factor of two).
    let baseline = if args.baseline {
        progress.set_message("redis-benchmark…");
        Some(redis_benchmark(&settings).await?)
    } else {
        None
    };
    let mut reports = Vec::new();
    for scenario in &scenarios {
        progress.set_message(format!("{scenario}…"));
        let report = match scenario.as_str() {
            "S1" => {
                let limit = args.baseline.then_some(&settings);
                cycles("S1", &single, None, limit, &args, &progress).await?
            }
            "S2" => parallel(&single, &args).await?,
            "S3" => contended(&single, &args).await?,
            "S4" => {
                let quorum = LeaseClient::connect(settings.clone()).await?;
                cycles("S4", &quorum, Some(&single), None, &args, &progress).await?
            }
            _ => {
                // Over every endpoint given: quorum mode with three or more.
                let client = LeaseClient::connect(settings.clone()).await?;
                renewal::renewal_at_scale(&client, &args).await?
            }
        };
        progress.println(format!("{scenario} done"));
        if args.json {
            let line = serde_json::to_string(&report)?;
            progress.suspend(|| outln!("{line}"))?;
        }
        reports.push(report);
    }
    progress.finish_and_clear();
    if args.json {
        if let Some(baseline) = &baseline {
            outln!("{}", serde_json::to_string(baseline)?)?;
        }
    } else {
        print_table(&reports, baseline.as_ref())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar() -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} bench {msg} [{elapsed}]").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn options(args: &BenchArgs, client: &LeaseClient) -> LeaseOptions {
    LeaseOptions {
        ttl: args.ttl,
        auto_renew: None,
        ..LeaseOptions::from_settings(client.settings())
    }
}

fn mode(client: &LeaseClient) -> String {
    match client.endpoints().len() {
        1 => "single".into(),
        n => format!("quorum({n})"),
    }
}

/// S1 and S4: one client, try-acquire + release of one key, one cycle after another. With
/// `beside` (S4), each cycle is followed by one on that single-instance client, so that the
/// ratio of their medians compares them under the same conditions (on a noisy machine,
/// figures taken a minute apart can differ by a factor of two). With `limit` (S1 and
/// `--baseline`), the cycles run in [`SEGMENTS`] segments, each right after a
/// `redis-benchmark -c 1` PING run against `limit`'s first endpoint, and the share of the
/// two-round-trip limit is the median of the segments' shares, for the same reason.
async fn cycles(
    scenario: &'static str,
    client: &LeaseClient,
    beside: Option<&LeaseClient>,
    limit: Option<&Settings>,
    args: &BenchArgs,
    progress: &ProgressBar,
) -> anyhow::Result<Report> {
    let options = options(args, client);
    let name = format!("bench:{scenario}:{}", std::process::id());
    let beside_name = format!("{name}:beside");
    let mut samples = Vec::with_capacity(args.cycles as usize);
    let mut beside_samples = Vec::new();
    let mut errors = 0;
    for _ in 0..args.warmup {
        cycle(client, &name, &options).await?;
    }
    let mut timed = Duration::ZERO;
    let segment = (args.cycles / SEGMENTS).max(1);
    let (mut shares, mut segment_start, mut limit_per_s) = (Vec::new(), Instant::now(), 0.0);
    for i in 0..args.cycles {
        if let Some(settings) = limit.filter(|_| i % segment == 0) {
            let command = ["PING"];
            limit_per_s = redis_benchmark_once(settings, &command, 1, PING_REQUESTS).await? / 2.0;
            segment_start = Instant::now();
        }
        let begun = Instant::now();
        match cycle(client, &name, &options).await {
            Ok(true) => samples.push(begun.elapsed()),
            _ => errors += 1,
        }
        timed += begun.elapsed();
        if let Some(single) = beside {
            let begun = Instant::now();
            if let Ok(true) = cycle(single, &beside_name, &options).await {
                beside_samples.push(begun.elapsed());
            }
        }
        if i % 1000 == 0 {
            progress.set_message(format!("{scenario}: {i} of {} cycles", args.cycles));
        }
        if limit.is_some() && (i + 1) % segment == 0 {
            let rate = segment as f64 / segment_start.elapsed().as_secs_f64();
            shares.push(round(100.0 * rate / limit_per_s));
        }
    }
    let mut figures = Figures::default();
    if !shares.is_empty() {
        figures.segment_limit_pct = Some(shares.clone());
        shares.sort_by(f64::total_cmp);
        figures.limit_pct = Some(shares[shares.len() / 2]);
    }
    if beside.is_some() {
        let s1_p50 = percentile_us(&mut beside_samples, 0.50);
        let p50 = percentile_us(&mut samples, 0.50);
        let ratio = (s1_p50 > 0.0).then(|| (100.0 * p50 / s1_p50).round() / 100.0);
        figures.interleaved = Some(Interleaved {
            s1_p50_us_interleaved: s1_p50,
            ratio_to_s1: ratio,
        });
    }
    // Only the scenario's own cycles count towards its rate.
    Ok(report(
        scenario,
        client,
        &mut samples,
        timed,
        errors,
        figures,
    ))
}

/// One acquire + release; `false` when the lease was held (someone else uses the bench key).
async fn cycle(client: &LeaseClient, name: &str, options: &LeaseOptions) -> anyhow::Result<bool> {
    match client.try_acquire(name, options).await? {
        Acquire::Acquired(lease) => Ok(lease.release().await?),
        Acquire::Held(_) => Ok(false),
    }
}

/// S2: `concurrency` acquirers, each cycling on its own key, for the window.
async fn parallel(client: &LeaseClient, args: &BenchArgs) -> anyhow::Result<Report> {
    let options = options(args, client);
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let workers = (0..args.concurrency).map(|worker| {
        let (client, options) = (client.clone(), options.clone());
        let name = format!("bench:S2:{}:{worker}", std::process::id());
        tokio::spawn(async move {
            let (mut samples, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let begun = Instant::now();
                match cycle(&client, &name, &options).await {
                    Ok(true) => samples.push(begun.elapsed()),
                    _ => errors += 1,
                }
            }
            (samples, errors)
        })
    });
    let mut samples = Vec::new();
    let mut errors = 0;
    for outcome in futures_util::future::join_all(workers).await {
        let (worker_samples, worker_errors) = outcome?;
        samples.extend(worker_samples);
        errors += worker_errors;
    }
    Ok(report(
        "S2",
        client,
        &mut samples,
        started.elapsed(),
        errors,
        Figures::default(),
    ))
}

/// What S3 records: who acquired and released when.
#[derive(Default)]
struct Handoffs {
    /// (acquired at, worker), in acquisition order.
    acquired: Vec<(Instant, u64)>,
    /// (released at, worker), in release order.
    released: Vec<(Instant, u64)>,
    hold_total: Duration,
}

/// S3: `workers` waiters on one key: each acquires (waiting), holds with a blocking sleep
/// (tokio's timer rounds 1 ms up to 2) on the blocking pool, as the peer harness holds
/// rslock-ct's, releases, and comes back. They run on the command's current-thread runtime:
/// a release's grant reaches the next waiter's task without a wake-up of another thread (on
/// a two-thread runtime with the hold in `block_in_place` the handoff's median was 130–188 µs
/// against 103–137 µs here, side by side, at the same rate, since the release hands the lease
/// over). The release is stamped just before it is sent (RESULTS.md's step 5).
async fn contended(client: &LeaseClient, args: &BenchArgs) -> anyhow::Result<Report> {
    let options = options(args, client);
    let name = format!("bench:S3:{}", std::process::id());
    let deadline = Instant::now() + args.duration;
    let log = Arc::new(Mutex::new(Handoffs::default()));
    let started = Instant::now();
    let (hold, wait, shared_log) = (args.hold, args.wait_timeout, log.clone());
    let contend = async move {
        let workers: Vec<_> = (0..args.workers)
            .map(|worker| {
                let (client, options, name, log) = (
                    client.clone(),
                    options.clone(),
                    name.clone(),
                    shared_log.clone(),
                );
                tokio::spawn(async move {
                    let mut errors = 0u64;
                    while Instant::now() < deadline {
                        let Ok(Acquire::Acquired(lease)) =
                            client.acquire(&name, &options, wait).await
                        else {
                            errors += 1;
                            continue;
                        };
                        let acquired = Instant::now();
                        log.lock().expect("log").acquired.push((acquired, worker));
                        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(hold)).await;
                        {
                            // Stamped just before the release is sent, as the peer harness
                            // does: the handoff gap includes the release's round trip.
                            let mut log = log.lock().expect("log");
                            log.hold_total += acquired.elapsed();
                            log.released.push((Instant::now(), worker));
                        }
                        if !matches!(lease.release().await, Ok(true)) {
                            errors += 1;
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut errors = 0;
        for worker in workers {
            errors += worker.await?;
        }
        anyhow::Ok(errors)
    };
    let errors = contend.await?;
    let elapsed = started.elapsed();
    let log = Arc::try_unwrap(log)
        .ok()
        .expect("workers done")
        .into_inner()
        .expect("log");
    // Each acquisition after the first follows a release: the gap between them is a handoff.
    let (mut same, mut gaps_other, mut gaps) = (0u64, Vec::new(), Vec::new());
    for (release, acquire) in log.released.iter().zip(log.acquired.iter().skip(1)) {
        let gap = acquire.0.saturating_duration_since(release.0);
        gaps.push(gap);
        if release.1 == acquire.1 {
            same += 1;
        } else {
            gaps_other.push(gap);
        }
    }
    let mut per_worker = vec![0u64; args.workers as usize];
    for (_, worker) in &log.acquired {
        per_worker[*worker as usize] += 1;
    }
    let n = log.acquired.len() as u64;
    let handoffs = gaps.len().max(1) as f64;
    let figures = Figures {
        contention: Some(Contention {
            same_worker_pct: round(100.0 * same as f64 / handoffs),
            other_p50_us: percentile_us(&mut gaps_other, 0.50),
            other_p99_us: percentile_us(&mut gaps_other, 0.99),
            per_worker,
            hold_mean_us: round(log.hold_total.as_secs_f64() * 1e6 / n.max(1) as f64),
        }),
        ..Figures::default()
    };
    Ok(report("S3", client, &mut gaps, elapsed, errors, figures).with_ops(n, elapsed))
}

impl Report {
    fn with_ops(mut self, n: u64, elapsed: Duration) -> Report {
        self.n = n;
        self.ops_per_s = round(n as f64 / elapsed.as_secs_f64());
        self
    }
}

fn report(
    scenario: &'static str,
    client: &LeaseClient,
    samples: &mut [Duration],
    elapsed: Duration,
    errors: u64,
    figures: Figures,
) -> Report {
    Report {
        scenario,
        ops_per_s: round(samples.len() as f64 / elapsed.as_secs_f64()),
        p50_us: percentile_us(samples, 0.50),
        p99_us: percentile_us(samples, 0.99),
        n: samples.len() as u64,
        errors,
        lib_version: env!("CARGO_PKG_VERSION"),
        mode: mode(client),
        figures,
    }
}

/// Nearest-rank percentile over every sample, in microseconds.
fn percentile_us(samples: &mut [Duration], quantile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    round(samples[rank - 1].as_secs_f64() * 1e6)
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// How many segments S1 runs in when it is compared with the two-round-trip limit.
const SEGMENTS: u64 = 5;
/// The PING requests of each `redis-benchmark -c 1` run before an S1 segment.
const PING_REQUESTS: u32 = 20_000;

fn print_table(reports: &[Report], baseline: Option<&Baseline>) -> Result<(), StdoutFailed> {
    outln!(
        "{:<4} {:>12} {:>10} {:>10} {:>9} {:>7}  notes",
        "",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "n",
        "errors"
    )?;
    let ping_c1 = baseline.map(|b| b.figures.ping_c1_per_s);
    let ping_c50 = baseline.map(|b| b.figures.ping_c50_per_s);
    let evalsha = baseline.map(|b| b.figures.evalsha_pipelined_per_s);
    for r in reports {
        // The scenario's own figures as `name=value`, in their order.
        let own = match serde_json::to_value(&r.figures) {
            Ok(Value::Object(own)) => own,
            _ => Map::new(),
        };
        let mut notes: Vec<String> = own.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match (r.scenario, ping_c1, ping_c50) {
            ("S1", _, _) if r.figures.limit_pct.is_some() => notes.insert(
                0,
                format!(
                    "{}% of the two-round-trip limit (median of {SEGMENTS} segments, each \
                     right after redis-benchmark -c 1 PING)",
                    r.figures.limit_pct.unwrap_or_default()
                ),
            ),
            ("S1", Some(ping), _) => notes.insert(
                0,
                format!(
                    "{:.0}% of the two-round-trip limit",
                    100.0 * r.ops_per_s / (ping / 2.0)
                ),
            ),
            ("S2", _, Some(ping)) => {
                notes.insert(
                    0,
                    format!(
                        "{:.0}% of half redis-benchmark -c 50 PING",
                        100.0 * r.ops_per_s / (ping / 2.0)
                    ),
                );
                if let Some(limit) = evalsha {
                    notes.insert(
                        1,
                        format!(
                            "{:.0}% of the pipelined EVALSHA limit (two scripts a cycle)",
                            100.0 * r.ops_per_s / (limit / 2.0)
                        ),
                    );
                }
            }
            _ => {}
        }
        if r.mode != "single" {
            notes.insert(0, r.mode.clone());
        }
        outln!(
            "{:<4} {:>12.0} {:>10.1} {:>10.1} {:>9} {:>7}  {}",
            r.scenario,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            r.n,
            r.errors,
            notes.join(", ")
        )?;
    }
    if let (Some(c1), Some(c50)) = (ping_c1, ping_c50) {
        outln!(
            "redis-benchmark PING: {c1:.0}/s at 1 client, {c50:.0}/s at 50 clients; \
             pipelined EVALSHA: {:.0}/s (same run)",
            evalsha.unwrap_or(0.0)
        )?;
    }
    Ok(())
}

//! The torture test: library clients and `leasectl exec` processes compete for a few lease
//! names on real `redis-server`s (single, quorum of 3 and 5, and a Redis Cluster) while a
//! seeded fault injector kills and freezes holders, force-releases their leases, slows their
//! renewals, restarts instances and cuts, delays, drops and blackholes their connections
//! through a proxy, and fails cluster primaries over (`cluster.rs`); every holder writes to a
//! protected resource through the fence. Then the checker reads the whole history (see
//! `checker.rs`).
//!
//! The CI-sized runs are ordinary tests (`torture::single`, `torture::quorum_3`,
//! `torture::quorum_5`, `torture::cluster`). The long run is `torture::long`, ignored unless
//! asked for: `scripts/torture.sh` (or `cargo test --release --test it -- --ignored
//! --nocapture torture`), sized by `LEASECTL_TORTURE_ACQUISITIONS`, replayed with
//! `LEASECTL_TORTURE_SEED`, limited to some deployments with `LEASECTL_TORTURE_DEPLOYMENTS`.

mod checker;
mod cluster;
mod competitors;
mod faults;
mod history;
mod holders;
mod report;
mod topology;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasectl::LeaseClient;

use checker::{ms, Findings};
use faults::{Deployment, Fault};
use history::{Hit, Section};
use report::Report;
use topology::{long_deployments, Topology};

/// The size and pace of a run.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub ttl: Duration,
    /// The longest of the usual (short) holds.
    pub hold: Duration,
    /// Keep going until this many critical sections were recorded ...
    pub acquisitions: u64,
    /// ... and every fault kind was injected this many times ...
    pub faults_each: u64,
    /// ... and forced releases hit this many library holders in a long hold (which must
    /// then fail to renew) ...
    pub long_holds_released: u64,
    /// ... or this much time passed.
    pub limit: Duration,
    /// One hold in this many is long (one to two TTLs, renewed).
    pub long_hold_every: u8,
    pub names: usize,
    pub library_clients: usize,
    pub exec_clients: usize,
    /// Single mode: restart its Redis with empty memory too (see [`single_restarts`]).
    pub single_restarts: bool,
}

impl Config {
    /// The CI size: a hundred acquisitions or so, every fault kind at least once, in seconds.
    fn ci(seed: u64) -> Config {
        Config {
            seed,
            ttl: Duration::from_millis(1000),
            hold: Duration::from_millis(10),
            acquisitions: 100,
            faults_each: 1,
            long_holds_released: 2,
            long_hold_every: 10,
            limit: Duration::from_secs(60),
            names: 3,
            library_clients: 3,
            exec_clients: 2,
            single_restarts: single_restarts(),
        }
    }

    fn kinds(&self, topology: Topology) -> Vec<Fault> {
        match topology {
            Topology::Instances(n) => Fault::all(n, self.single_restarts),
            Topology::Cluster => Fault::cluster(),
        }
    }

    /// Per-request timeouts of every client: a blackholed instance fails fast.
    fn timeout(&self) -> Duration {
        self.ttl.max(Duration::from_millis(500))
    }
}

/// The seed of this run: `LEASECTL_TORTURE_SEED`, or a fresh one.
fn seed() -> u64 {
    match std::env::var("LEASECTL_TORTURE_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("LEASECTL_TORTURE_SEED is a number"),
        Err(_) => fastrand::u64(..),
    }
}

/// Whether single mode restarts its Redis with empty memory too: yes, unless
/// `LEASECTL_TORTURE_SINGLE_RESTARTS=0`. The leases on it are lost; their holders must learn it
/// and the fence (whose tokens never go back: see acquire.lua) must refuse their late writes.
fn single_restarts() -> bool {
    std::env::var("LEASECTL_TORTURE_SINGLE_RESTARTS").map_or(true, |v| v != "0")
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .map(|text| {
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name} is a number"))
        })
        .unwrap_or(default)
}

/// What a library competitor holds, for the fault injector.
pub struct Held {
    name: String,
    /// Held past its TTL, so renewed: a target for slowed renewal.
    long: bool,
    /// Its lease's TTL.
    ttl: Duration,
    /// When its hold is planned to end.
    ends: u64,
}

/// A `leasectl exec` that runs now, for the fault injector.
pub struct Running {
    record: PathBuf,
    hit: Option<(u64, Hit)>,
}

impl Running {
    fn new(record: PathBuf) -> Running {
        Running { record, hit: None }
    }

    /// The pid of its child and the lease's name, when the child is in its critical section
    /// (started, not ended).
    fn holding_child(&self) -> Option<(u32, String)> {
        let text = std::fs::read_to_string(&self.record).ok()?;
        if text.contains("\nend ") || text.contains("\nterm ") {
            return None;
        }
        // start TIME NAME LEASE_ID TOKEN PID
        let start: Vec<&str> = text
            .strip_prefix("start ")?
            .lines()
            .next()?
            .split(' ')
            .collect();
        Some((start.get(4)?.parse().ok()?, start.get(1)?.to_string()))
    }
}

/// What the competitors and the injector of one run share.
pub struct Ctx {
    config: Config,
    names: Vec<String>,
    resource_url: String,
    stop: AtomicBool,
    sections: Mutex<Vec<Section>>,
    recorded: AtomicU64,
    errors: AtomicU64,
    /// Forced releases that hit a library holder in a long hold.
    long_holds_released: AtomicU64,
    /// Per library competitor: what it holds now.
    holding: Vec<Mutex<Option<Held>>>,
    execs: Mutex<HashMap<u32, Running>>,
    exec_outcomes: Mutex<BTreeMap<String, u64>>,
    /// Lease keys deleted under their holders: single-mode empty restarts, forced releases.
    deletions: Mutex<Vec<checker::Deletion>>,
    /// Quorum mode: when an instance restarted (from, to).
    restarts: Mutex<Vec<(u64, u64)>>,
    faults: Mutex<faults::Counts>,
    /// Settings every `leasectl` process gets through its environment (cluster mode).
    leasectl_env: Vec<(String, String)>,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn record(&self, section: Section) {
        self.sections.lock().unwrap().push(section);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    fn fault_count(&self, kind: Fault) -> u64 {
        self.faults.lock().unwrap().get(&kind).copied().unwrap_or(0)
    }
}

/// One run against `topology`.
fn run(topology: Topology, config: Config) -> Report {
    let started = Instant::now();
    let label = topology.label();
    eprintln!("torture {label}: seed {}", config.seed);
    let deployment = Arc::new(match topology {
        Topology::Instances(n) => Deployment::start(n, config.library_clients),
        Topology::Cluster => Deployment::start_cluster(config.library_clients),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Arc::new(Ctx {
        names: match &deployment.cluster {
            Some(nodes) => cluster::lease_names(nodes, config.names),
            None => (0..config.names).map(|i| format!("torture-{i}")).collect(),
        },
        leasectl_env: match topology {
            Topology::Cluster => cluster::leasectl_env(),
            Topology::Instances(_) => Vec::new(),
        },
        resource_url: deployment.resource_urls().join(" "),
        stop: AtomicBool::new(false),
        sections: Mutex::new(Vec::new()),
        recorded: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        long_holds_released: AtomicU64::new(0),
        holding: (0..config.library_clients)
            .map(|_| Mutex::new(None))
            .collect(),
        execs: Mutex::new(HashMap::new()),
        exec_outcomes: Mutex::new(BTreeMap::new()),
        deletions: Mutex::new(Vec::new()),
        restarts: Mutex::new(Vec::new()),
        faults: Mutex::new(BTreeMap::new()),
        config: config.clone(),
    });
    let rng = |part: u64| {
        fastrand::Rng::with_seed(config.seed ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let library: Vec<_> = (0..config.library_clients)
        .map(|index| {
            let mut settings =
                leasectl::Settings::for_endpoints(&deployment.urls(index + 1)).expect("URLs");
            settings.connect_timeout = config.timeout();
            settings.sync_timeout = config.timeout();
            if let (Topology::Cluster, Some(replicas)) = (topology, cluster::wait_replicas()) {
                settings.wait_replicas = replicas;
            }
            let mut resource =
                leasectl::Settings::for_endpoints(&deployment.resource_urls()).expect("URLs");
            resource.connect_timeout = config.timeout();
            resource.sync_timeout = config.timeout();
            let (ctx, rng) = (ctx.clone(), rng(100 + index as u64));
            runtime.spawn(async move {
                // Faults may already be under way: try until connected.
                let client = loop {
                    match LeaseClient::connect(settings.clone()).await {
                        Ok(client) => break client,
                        Err(_) if ctx.stopping() => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                let resource = loop {
                    match LeaseClient::connect(resource.clone()).await {
                        Ok(resource) => break resource,
                        Err(_) if ctx.stopping() => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                competitors::library(ctx, index, client, resource, rng).await
            })
        })
        .collect();
    let execs: Vec<_> = (0..config.exec_clients)
        .map(|index| {
            let (ctx, rng) = (ctx.clone(), rng(200 + index as u64));
            let (urls, dir) = (deployment.urls(0), dir.path().to_path_buf());
            std::thread::spawn(move || competitors::exec(ctx, index, urls, dir, rng))
        })
        .collect();
    let injector = {
        let (ctx, deployment, rng) = (ctx.clone(), deployment.clone(), rng(1));
        std::thread::spawn(move || faults::inject(&ctx, &deployment, rng))
    };
    let kinds = config.kinds(topology);
    let mut progress_at = Duration::from_secs(60);
    while started.elapsed() < config.limit {
        if started.elapsed() >= progress_at {
            progress_at += Duration::from_secs(60);
            let faults: u64 = ctx.faults.lock().unwrap().values().sum();
            eprintln!(
                "torture {label}: {} acquisitions, {faults} faults after {} s",
                ctx.recorded.load(Ordering::Relaxed),
                started.elapsed().as_secs()
            );
        }
        let enough = ctx.recorded.load(Ordering::Relaxed) >= config.acquisitions
            && kinds
                .iter()
                .all(|&k| ctx.fault_count(k) >= config.faults_each)
            && ctx.long_holds_released.load(Ordering::Relaxed) >= config.long_holds_released;
        if enough || injector.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ctx.stop.store(true, Ordering::SeqCst);
    injector.join().expect("the fault injector");
    for exec in execs {
        exec.join().expect("an exec competitor");
    }
    runtime.block_on(async {
        for task in library {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("a library competitor stops within a minute")
                .expect("a library competitor");
        }
    });
    runtime.shutdown_background();
    let keys_left = keys_left_after(&deployment, &ctx);
    let sections = std::mem::take(&mut *ctx.sections.lock().unwrap());
    let deletions = ctx.deletions.lock().unwrap().clone();
    let restarts = ctx.restarts.lock().unwrap().clone();
    let findings = checker::check(&sections, &deletions, &restarts, config.ttl);
    let count = |library: bool| {
        sections
            .iter()
            .filter(|s| matches!(s.holder, history::Holder::Library(_)) == library)
            .count() as u64
    };
    let report = Report {
        deployment: label,
        seed: config.seed,
        library: count(true),
        exec: count(false),
        faults: ctx.faults.lock().unwrap().clone(),
        long_holds_released: ctx.long_holds_released.load(Ordering::Relaxed),
        exec_outcomes: ctx.exec_outcomes.lock().unwrap().clone(),
        errors: ctx.errors.load(Ordering::Relaxed),
        keys_left,
        findings,
        wall: started.elapsed(),
    };
    eprintln!("{report}");
    report
}

/// Once every competitor stopped: the lease keys still there after their TTL could have run
/// out (a killed holder's key lives until then), on any instance.
fn keys_left_after(deployment: &Deployment, ctx: &Ctx) -> Vec<String> {
    let bound = ctx.config.ttl * 3 + Duration::from_secs(10);
    if let Some(nodes) = &deployment.cluster {
        crate::support::eventually(bound, || cluster::keys_left(nodes, &ctx.names).is_empty());
        return cluster::keys_left(nodes, &ctx.names);
    }
    let servers = deployment.servers.lock().unwrap();
    let left = || {
        let mut left = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            for name in &ctx.names {
                let key = format!("lease:{name}");
                if crate::support::exists(server, &key) {
                    left.push(format!(
                        "{key} left on instance {i} (PTTL {})",
                        crate::support::pttl(server, &key)
                    ));
                }
            }
        }
        left
    };
    crate::support::eventually(bound, || left().is_empty());
    left()
}

/// Fails the test with the summary unless the run found nothing wrong and injected every kind
/// of fault it was asked to.
fn assert_sound(report: &Report, config: &Config, kinds: &[Fault]) {
    assert_eq!(
        report.failures(),
        0,
        "the torture found violations\n{report}"
    );
    for &kind in kinds {
        let count = report.faults.get(&kind).copied().unwrap_or(0);
        assert!(
            count >= config.faults_each,
            "{} injected {count} times, fewer than {}\n{report}",
            kind.name(),
            config.faults_each
        );
    }
}

fn ci(topology: Topology) {
    let mut config = Config::ci(seed());
    if topology == Topology::Cluster {
        // Each failover takes seconds (a killed primary's replica waits cluster-node-timeout).
        config.limit = Duration::from_secs(180);
    }
    eprintln!("replay with LEASECTL_TORTURE_SEED={}", config.seed);
    let report = run(topology, config.clone());
    assert_sound(&report, &config, &config.kinds(topology));
}

#[test]
fn single() {
    ci(Topology::Instances(1));
}

#[test]
fn quorum_3() {
    ci(Topology::Instances(3));
}

#[test]
fn quorum_5() {
    ci(Topology::Instances(5));
}

/// A Redis Cluster under holder faults and failovers (`LEASECTL_TORTURE_WAIT_REPLICAS` sets
/// `WaitReplicas`).
#[test]
fn cluster() {
    ci(Topology::Cluster);
}

/// The long run: single, quorum of 3, quorum of 5 and a cluster at once (or those
/// `LEASECTL_TORTURE_DEPLOYMENTS` names), until together they made
/// `LEASECTL_TORTURE_ACQUISITIONS` acquisitions (default 100,000) and each injected every
/// fault kind `LEASECTL_TORTURE_FAULTS_EACH` times (default 100).
#[test]
#[ignore = "long: run by scripts/torture.sh"]
fn long() {
    let seed = seed();
    let total = env_number("LEASECTL_TORTURE_ACQUISITIONS", 100_000);
    let deployments = long_deployments();
    let config = Config {
        seed,
        ttl: Duration::from_millis(env_number("LEASECTL_TORTURE_TTL_MS", 1000)),
        hold: Duration::from_millis(env_number("LEASECTL_TORTURE_HOLD_MS", 5)),
        acquisitions: total.div_ceil(deployments.len() as u64),
        faults_each: env_number("LEASECTL_TORTURE_FAULTS_EACH", 100),
        long_holds_released: 0,
        long_hold_every: 20,
        limit: Duration::from_secs(env_number("LEASECTL_TORTURE_LIMIT_S", 3600)),
        names: 6,
        library_clients: 6,
        exec_clients: 2,
        single_restarts: single_restarts(),
    };
    eprintln!(
        "torture long run: seed {seed} (replay with LEASECTL_TORTURE_SEED={seed}), {total} \
         acquisitions, {config:?}"
    );
    let runs: Vec<_> = deployments
        .iter()
        .map(|&topology| {
            let offset = match topology {
                Topology::Instances(n) => n as u64,
                Topology::Cluster => 7,
            };
            let config = Config {
                seed: seed.wrapping_add(offset),
                ..config.clone()
            };
            std::thread::spawn(move || run(topology, config))
        })
        .collect();
    let reports: Vec<Report> = runs.into_iter().map(|r| r.join().expect("a run")).collect();
    let total_report = Report::merge(&reports);
    println!("{total_report}");
    for (report, &topology) in reports.iter().zip(&deployments) {
        assert_sound(report, &config, &config.kinds(topology));
    }
}

/// Not a test of its own: the child that `leasectl exec` runs in the torture (see
/// `competitors::exec_child`); without its environment it does nothing.
#[test]
fn exec_child() {
    if let Some(record) = std::env::var_os(competitors::RECORD_VAR) {
        competitors::exec_child(std::path::Path::new(&record));
    }
}

/// Single mode, a Redis restart with empty memory (as the torture's restart fault does): the
/// holder from before the restart, paused through it, must still be fenced out once a holder
/// from after it wrote. The restart forgets the fencing counter, so the next acquisition gets
/// token 1 again, the same as the old holder's, and the fence (`token < newest` refuses)
/// accepts them both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_holder_from_before_an_empty_restart_is_fenced_out() {
    use crate::leases::{acquired, options, within};
    use leasectl::FencedWrite;

    let bound = Duration::from_secs(30);
    let mut server = crate::support::RedisServer::start();
    let resource = crate::support::RedisServer::start();
    let client = LeaseClient::connect(server.settings())
        .await
        .expect("connect");
    let fence = LeaseClient::connect(resource.settings())
        .await
        .expect("connect");
    let ttl = options(Duration::from_secs(60));
    let old = acquired(client.try_acquire("job", &ttl).await);
    let write = |value: &'static str, token: u64| {
        let fence = fence.clone();
        async move {
            fence
                .fenced_set("resource:job", value, token)
                .await
                .expect("fenced write")
        }
    };
    assert_eq!(
        write("old", old.fencing_token()).await,
        FencedWrite::Written
    );
    server.restart();
    // The first call after the restart may meet the connection that died with the server.
    let new = within(bound, "an acquire after the restart", async {
        loop {
            match client.try_acquire("job", &ttl).await {
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                outcome => return acquired(outcome),
            }
        }
    })
    .await;
    assert_eq!(
        write("new", new.fencing_token()).await,
        FencedWrite::Written
    );
    let stale = write("old, after the new holder", old.fencing_token()).await;
    assert!(
        matches!(stale, FencedWrite::Stale { .. }),
        "the holder from before the restart (token {}) wrote after the holder from after it \
         (token {}): {stale:?}",
        old.fencing_token(),
        new.fencing_token()
    );
}

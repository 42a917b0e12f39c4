//! The deployment under torture — its `redis-server`s, a fault proxy in front of each for every
//! group of clients, and the protected resource's own server — and the fault injector that
//! hits it from a seeded random schedule.
//!
//! Quorum mode stays within Redlock's fault model: at any time the instances hit by a fault
//! (or hit less than two TTLs ago) are a minority. Single mode has one instance: every fault
//! hits it, and a restart forgets its leases. Forced releases and restarts that forget leases
//! are recorded as deletions for the checker.
//!
//! A Redis Cluster deployment has no servers or proxies here: see `cluster.rs` (its nodes, its
//! failover faults and its own injector loop).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::checker::Deletion;
use super::history::now;
use super::holders::hit_holder;
use super::Ctx;
use crate::proxy::Proxy;
use crate::support::RedisServer;

/// Every kind of fault, with the name the summary gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL of a `leasectl exec` holding a lease (its guard then stops the child).
    Kill,
    /// SIGSTOP of a holding `leasectl exec` and its child past the TTL, then SIGCONT.
    Stop,
    /// An instance restarts with empty memory.
    Restart,
    /// Quorum: an instance restarts from a snapshot taken just before.
    RestartWithMemory,
    /// Added latency (2-40 ms each way) on every connection to an instance, for a while.
    Latency,
    /// Every connection to an instance cut at once.
    Cut,
    /// Connections to an instance cut, and new ones dropped, for a while.
    Drop,
    /// An instance blackholed: connections accepted, nothing forwarded, for up to two TTLs.
    Blackhole,
    /// A library holder's connections slowed past its TTL: renewal cannot keep up.
    SlowRenewal,
    /// An operator's `leasectl release NAME --force` while someone holds it.
    ForceRelease,
    /// One client's path to an instance blackholed (its own proxy), while the other clients
    /// reach the instance: it counts as no instance hit.
    PathBlackhole,
    /// 50-300 ms each way on one client's path to an instance.
    PathLatency,
    /// One client's connections to an instance cut, and its new ones dropped, for a while.
    PathCut,
    /// Quorum: one client's paths to a minority blackholed (its leases land on a bare
    /// majority), then an instance of that majority restarted empty, and another client's
    /// paths to the rest of that majority blackholed while the first path fault lasts.
    BareMajorityRestart,
    /// Quorum: a holding `exec` stopped past its TTL, and the fence's first instance restarted
    /// empty shortly before the `exec` wakes (after the next holder wrote, usually).
    FenceRestart,
    /// Cluster: `CLUSTER FAILOVER` on the replica of a primary owning lease names (graceful).
    Failover,
    /// Cluster: SIGKILL of a primary owning lease names; its replica takes over after
    /// `cluster-node-timeout`, then the killed node comes back as the new primary's replica.
    PrimaryKill,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL of a holder",
            Fault::Stop => "SIGSTOP of a holder past its TTL",
            Fault::Restart => "Redis restart, empty",
            Fault::RestartWithMemory => "Redis restart, with memory",
            Fault::Latency => "proxy latency",
            Fault::Cut => "proxy cut of all connections",
            Fault::Drop => "proxy dropping connections",
            Fault::Blackhole => "proxy blackhole",
            Fault::SlowRenewal => "renewal slowed until lost",
            Fault::ForceRelease => "forced release of a held lease",
            Fault::PathBlackhole => "blackhole on one client's path",
            Fault::PathLatency => "latency on one client's path",
            Fault::PathCut => "cut on one client's path",
            Fault::BareMajorityRestart => "restart of a bare majority's instance",
            Fault::FenceRestart => "SIGSTOP and the fence's instance restarted",
            Fault::Failover => "CLUSTER FAILOVER of a lease's primary",
            Fault::PrimaryKill => "SIGKILL of a lease's primary",
        }
    }

    /// The kinds a deployment of `instances` suffers; in single mode, restarts only when
    /// `single_restarts` (see `torture::single_restarts`).
    pub fn all(instances: usize, single_restarts: bool) -> Vec<Fault> {
        let mut kinds = Fault::each(instances, single_restarts);
        // Forced releases are what shows a renewal that succeeds when it must not: more of them.
        kinds.extend([Fault::ForceRelease, Fault::ForceRelease]);
        kinds
    }

    /// The kinds a Redis Cluster suffers (no proxies there: the cluster announces its nodes'
    /// own addresses): holder faults and failovers.
    pub fn cluster() -> Vec<Fault> {
        vec![
            Fault::Kill,
            Fault::Stop,
            Fault::ForceRelease,
            Fault::ForceRelease,
            Fault::ForceRelease,
            Fault::Failover,
            Fault::PrimaryKill,
        ]
    }

    /// Whether it is a cluster failover (it keeps the injector busy until the cluster is ok).
    pub(super) fn fails_over(self) -> bool {
        matches!(self, Fault::Failover | Fault::PrimaryKill)
    }

    /// Every kind once.
    fn each(instances: usize, single_restarts: bool) -> Vec<Fault> {
        let mut kinds = vec![
            Fault::Kill,
            Fault::Stop,
            Fault::Latency,
            Fault::Cut,
            Fault::Drop,
            Fault::Blackhole,
            Fault::SlowRenewal,
            Fault::ForceRelease,
            Fault::PathBlackhole,
            Fault::PathLatency,
            Fault::PathCut,
        ];
        if instances > 1 || single_restarts {
            kinds.push(Fault::Restart);
        }
        if instances > 1 {
            kinds.extend([
                Fault::RestartWithMemory,
                Fault::BareMajorityRestart,
                Fault::FenceRestart,
            ]);
        }
        kinds
    }

    /// Whether it hits an instance for every client (and so counts towards the minority that
    /// may be hit at once).
    fn hits_an_instance(self) -> bool {
        !matches!(
            self,
            Fault::Kill
                | Fault::Stop
                | Fault::SlowRenewal
                | Fault::ForceRelease
                | Fault::FenceRestart
        ) && !self.hits_a_path()
            && !self.fails_over()
    }

    /// Whether it hits one client's path to an instance only.
    fn hits_a_path(self) -> bool {
        matches!(
            self,
            Fault::PathBlackhole | Fault::PathLatency | Fault::PathCut
        )
    }
}

/// The servers and proxies of one deployment.
pub struct Deployment {
    pub servers: Mutex<Vec<RedisServer>>,
    /// `proxies[group][instance]`: group 0 is every `leasectl` process, group 1 + N is
    /// library competitor N (so that one client's connections can be slowed alone).
    pub proxies: Vec<Vec<Proxy>>,
    pub resource: RedisServer,
    /// Cluster mode: the cluster (and no `servers`, no proxies).
    pub cluster: Option<super::cluster::Nodes>,
}

impl Deployment {
    pub fn start(instances: usize, library_clients: usize) -> Deployment {
        let servers: Vec<RedisServer> = (0..instances).map(|_| RedisServer::start()).collect();
        let proxies = (0..=library_clients)
            .map(|_| servers.iter().map(|s| Proxy::start(s.port)).collect())
            .collect();
        Deployment {
            servers: Mutex::new(servers),
            proxies,
            resource: RedisServer::start(),
            cluster: None,
        }
    }

    /// Where the protected resource lives: its own Redis in single and cluster mode (whose
    /// restarts and failovers would otherwise forget the fence); in quorum mode the
    /// deployment's instances, reached directly, so that their restarts hit the fence too.
    pub fn resource_urls(&self) -> Vec<String> {
        let servers = self.servers.lock().unwrap();
        match servers.len() {
            0 | 1 => vec![self.resource.url()],
            _ => servers.iter().map(RedisServer::url).collect(),
        }
    }

    /// The endpoints that reach the lease servers directly, past the proxies (an operator's
    /// `leasectl`): every instance, or every cluster node.
    pub fn direct_urls(&self) -> Vec<String> {
        match &self.cluster {
            Some(cluster) => cluster.urls.clone(),
            None => self
                .servers
                .lock()
                .unwrap()
                .iter()
                .map(RedisServer::url)
                .collect(),
        }
    }

    pub fn instances(&self) -> usize {
        self.proxies[0].len()
    }

    /// The endpoints a client of `group` connects to.
    pub fn urls(&self, group: usize) -> Vec<String> {
        if let Some(cluster) = &self.cluster {
            return cluster.urls_for(group);
        }
        self.proxies[group].iter().map(Proxy::url).collect()
    }

    fn each_proxy_of(&self, instance: usize, act: impl Fn(&Proxy)) {
        for group in &self.proxies {
            act(&group[instance]);
        }
    }

    fn heal(&self) {
        for proxy in self.proxies.iter().flatten() {
            proxy.heal();
        }
    }
}

/// How many faults hit one minority of a quorum before it heals and another is chosen.
const GROUP_FAULTS: u32 = 4;

/// Something to undo when its time comes (or when the run ends).
pub(super) enum Undo {
    /// SIGCONT to one process.
    Continue(u32),
    /// SIGCONT to a process group.
    ContinueGroup(u32),
    Latency(Vec<(usize, usize)>),
    Refuse(usize),
    Blackhole(usize),
    /// One path's proxy `(group, instance)`.
    PathRefuse(usize, usize),
    PathBlackhole(usize, usize),
    /// Restart an instance with empty memory (the second step of a fault).
    Restart(usize),
    /// Blackhole one path (the second step of a fault).
    PathBlackholeOn(usize, usize),
}

/// Injects faults until the run stops, then undoes what is still in force.
pub fn inject(ctx: &Ctx, deployment: &Deployment, mut rng: fastrand::Rng) {
    if let Some(cluster) = &deployment.cluster {
        return super::cluster::inject(ctx, deployment, cluster, rng);
    }
    let ttl = ctx.config.ttl;
    let kinds = Fault::all(deployment.instances(), ctx.config.single_restarts);
    // Per instance: until when it counts as hit (quorum mode keeps those a minority).
    let mut hit_until = vec![0u64; deployment.instances()];
    let mut group_faults = 0;
    inject_cycles(ctx, deployment, kinds, &mut rng, |cycle, at, _, rng| {
        // Quorum mode: after a few faults on the same minority, let it heal for two TTLs so
        // that the next faults pick other instances.
        let hit_now = hit_until.iter().any(|&until| until > at);
        if !hit_now {
            group_faults = 0;
        }
        let draining = deployment.instances() > 1 && group_faults >= GROUP_FAULTS;
        let position = cycle
            .iter()
            .rposition(|kind| !(draining && kind.hits_an_instance()))?;
        let kind = cycle[position];
        let undo = if kind == Fault::BareMajorityRestart {
            let i = target(&hit_until, at, rng);
            let (until, undo) = bare_majority_restart(ctx, deployment, i, rng)?;
            hit_until[i] = hit_until[i].max(until + 2 * ttl.as_nanos() as u64);
            group_faults += 1;
            undo
        } else if kind.hits_an_instance() {
            let i = target(&hit_until, at, rng);
            let (until, undo) = hit_instance(ctx, deployment, kind, i, rng);
            hit_until[i] = hit_until[i].max(until + 2 * ttl.as_nanos() as u64);
            group_faults += 1;
            undo
        } else if kind.hits_a_path() {
            hit_path(ctx, deployment, kind, rng)
        } else if kind == Fault::FenceRestart {
            // Instance 0 (the fence's first) joins the minority hit: only when it may.
            let others = (1..hit_until.len()).filter(|&i| hit_until[i] > at).count();
            if others >= (hit_until.len() - 1) / 2 {
                return None;
            }
            let undo = hit_holder(ctx, deployment, kind, rng)?;
            let until = undo.iter().map(|(due, _)| *due).max().unwrap_or(at);
            hit_until[0] = hit_until[0].max(until + 2 * ttl.as_nanos() as u64);
            undo
        } else {
            hit_holder(ctx, deployment, kind, rng)?
        };
        Some((position, undo))
    });
    deployment.heal();
}

/// The loop every injector runs (the instances' and the cluster's): until the run stops, it
/// undoes the faults whose time has come and, each time a fault is due (30-100% of a TTL after
/// the last), lets `pick` inject one kind from `cycle`, a shuffled copy of `kinds` (each kind
/// once a cycle). `pick` gets the kinds left in the cycle, the time, whether any fault waits to
/// be undone, and the generator; it
/// answers the position in `cycle` of the kind it injected, with when and what to undo, or
/// `None` when it can hit nothing now (then it is asked again 20 ms later). At the end it
/// undoes what is still in force.
pub(super) fn inject_cycles(
    ctx: &Ctx,
    deployment: &Deployment,
    kinds: Vec<Fault>,
    rng: &mut fastrand::Rng,
    mut pick: impl FnMut(&[Fault], u64, bool, &mut fastrand::Rng) -> Option<(usize, Vec<(u64, Undo)>)>,
) {
    let ttl = ctx.config.ttl;
    let mut cycle: Vec<Fault> = Vec::new();
    let mut pending: Vec<(u64, Undo)> = Vec::new();
    let mut next_at = now() + scaled(ttl, rng, 30, 100);
    while !ctx.stopping() {
        let at = now();
        pending.retain(|(due, undo)| {
            let due_now = *due <= at;
            if due_now {
                undo_fault(ctx, deployment, undo);
            }
            !due_now
        });
        if at >= next_at {
            if cycle.is_empty() {
                cycle = kinds.clone();
                rng.shuffle(&mut cycle);
            }
            match pick(&cycle, at, !pending.is_empty(), rng) {
                Some((position, undo)) => {
                    let kind = cycle.remove(position);
                    *ctx.faults.lock().unwrap().entry(kind).or_default() += 1;
                    pending.extend(undo);
                    next_at = now() + scaled(ttl, rng, 30, 100);
                }
                // Nobody to hit right now (no holder, or the instances are healing): soon again.
                None => next_at = now() + 20_000_000,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (_, undo) in pending {
        undo_fault(ctx, deployment, &undo);
    }
}

/// An instance that may be hit now: any while fewer than a minority are hit (or were, less
/// than two TTLs ago), else one of those.
fn target(hit_until: &[u64], at: u64, rng: &mut fastrand::Rng) -> usize {
    let n = hit_until.len();
    let hit: Vec<usize> = (0..n).filter(|&i| hit_until[i] > at).collect();
    // A minority of the instances; in single mode the one instance.
    let minority = ((n - 1) / 2).max(1);
    if hit.len() < minority {
        rng.usize(..n)
    } else {
        hit[rng.usize(..hit.len())]
    }
}

/// Hits instance `i`; answers until when the fault lasts and what to undo when.
fn hit_instance(
    ctx: &Ctx,
    deployment: &Deployment,
    kind: Fault,
    i: usize,
    rng: &mut fastrand::Rng,
) -> (u64, Vec<(u64, Undo)>) {
    let ttl = ctx.config.ttl;
    let at = now();
    match kind {
        Fault::Restart | Fault::RestartWithMemory => {
            let to = restart(ctx, deployment, i, kind == Fault::RestartWithMemory);
            (to, Vec::new())
        }
        Fault::Latency => {
            let latency = Duration::from_millis(rng.u64(2..=40));
            deployment.each_proxy_of(i, |p| p.set_latency(latency));
            let until = at + scaled(ttl, rng, 50, 200);
            let targets = (0..deployment.proxies.len()).map(|g| (g, i)).collect();
            (until, vec![(until, Undo::Latency(targets))])
        }
        Fault::Cut => {
            deployment.each_proxy_of(i, Proxy::cut);
            (at, Vec::new())
        }
        Fault::Drop => {
            deployment.each_proxy_of(i, |p| {
                p.set_refuse(true);
                p.cut();
            });
            let until = at + scaled(ttl, rng, 20, 100);
            (until, vec![(until, Undo::Refuse(i))])
        }
        Fault::Blackhole => {
            deployment.each_proxy_of(i, |p| p.set_blackhole(true));
            let until = at + scaled(ttl, rng, 50, 200);
            (until, vec![(until, Undo::Blackhole(i))])
        }
        _ => unreachable!("{kind:?} hits no instance"),
    }
}

/// A library holder in a long hold loses its lease on a minority (its paths there blackholed
/// until its key expired there), so that the lease lives on a bare majority; then instance `i`
/// of that majority restarts empty, and another client's paths to the rest of it go silent:
/// `i`, young, and the minority would grant that client the lease still held, if silence
/// counted as agreement (or if the holder's longer TTL were not taken into account). `None`
/// when no holder will hold long enough.
fn bare_majority_restart(
    ctx: &Ctx,
    deployment: &Deployment,
    i: usize,
    rng: &mut fastrand::Rng,
) -> Option<(u64, Vec<(u64, Undo)>)> {
    let ttl = ctx.config.ttl;
    let at = now();
    let candidates: Vec<(usize, u64)> = (0..ctx.holding.len())
        .filter_map(|c| {
            let held = ctx.holding[c].lock().unwrap();
            let held = held.as_ref().filter(|h| h.long)?;
            // Its key is gone from the minority once its TTL passed without a renewal there.
            let restart_at = at + held.ttl.as_nanos() as u64 * 105 / 100;
            (held.ends > restart_at + scaled(ttl, rng, 20, 20)).then_some((c, restart_at))
        })
        .collect();
    let &(client, restart_at) = candidates.get(rng.usize(..candidates.len().max(1)))?;
    let n = deployment.instances();
    let mut others: Vec<usize> = (0..n).filter(|&p| p != i).collect();
    rng.shuffle(&mut others);
    let (minority, rest) = others.split_at((n - 1) / 2);
    let groups = deployment.proxies.len();
    let first = client + 1;
    let second = (first + rng.usize(1..groups)) % groups;
    for &p in minority {
        deployment.proxies[first][p].set_blackhole(true);
    }
    let until = restart_at + scaled(ttl, rng, 100, 200);
    let mut undo = vec![(restart_at, Undo::Restart(i))];
    for &p in minority {
        undo.push((until, Undo::PathBlackhole(first, p)));
    }
    for &q in rest {
        undo.push((restart_at, Undo::PathBlackholeOn(second, q)));
        undo.push((until, Undo::PathBlackhole(second, q)));
    }
    Some((until, undo))
}

/// Restarts instance `i`, with empty memory or from a snapshot taken just before; records it
/// (single mode: as a deletion of every lease); answers when it was up again.
fn restart(ctx: &Ctx, deployment: &Deployment, i: usize, with_memory: bool) -> u64 {
    let mut servers = deployment.servers.lock().unwrap();
    let server = &mut servers[i];
    let snapshot = server.dir().join("dump.rdb");
    // With memory, what comes after the snapshot is forgotten: the fault starts here.
    let from = now();
    if with_memory {
        let _: redis::RedisResult<String> = redis::cmd("SAVE").query(&mut server.connection());
    } else {
        let _ = std::fs::remove_file(&snapshot);
    }
    server.restart();
    let to = now();
    if deployment.instances() == 1 {
        ctx.deletions.lock().unwrap().push(Deletion {
            from,
            to,
            name: None,
            what: "its Redis restarted empty",
            certain: true,
        });
    } else {
        ctx.restarts.lock().unwrap().push((from, to));
    }
    to
}

/// Hits one client's path to one instance (its own proxy); the other clients reach it.
fn hit_path(
    ctx: &Ctx,
    deployment: &Deployment,
    kind: Fault,
    rng: &mut fastrand::Rng,
) -> Vec<(u64, Undo)> {
    let ttl = ctx.config.ttl;
    let group = rng.usize(..deployment.proxies.len());
    let i = rng.usize(..deployment.instances());
    let proxy = &deployment.proxies[group][i];
    let at = now();
    match kind {
        Fault::PathBlackhole => {
            proxy.set_blackhole(true);
            let until = at + scaled(ttl, rng, 50, 200);
            vec![(until, Undo::PathBlackhole(group, i))]
        }
        Fault::PathLatency => {
            proxy.set_latency(Duration::from_millis(rng.u64(50..=300)));
            let until = at + scaled(ttl, rng, 50, 200);
            vec![(until, Undo::Latency(vec![(group, i)]))]
        }
        Fault::PathCut => {
            proxy.set_refuse(true);
            proxy.cut();
            let until = at + scaled(ttl, rng, 20, 100);
            vec![(until, Undo::PathRefuse(group, i))]
        }
        _ => unreachable!("{kind:?} hits no path"),
    }
}

pub(super) fn undo_fault(ctx: &Ctx, deployment: &Deployment, undo: &Undo) {
    match undo {
        Undo::PathRefuse(group, i) => deployment.proxies[*group][*i].set_refuse(false),
        Undo::PathBlackhole(group, i) => deployment.proxies[*group][*i].set_blackhole(false),
        Undo::Restart(i) => {
            restart(ctx, deployment, *i, false);
        }
        Undo::PathBlackholeOn(group, i) => deployment.proxies[*group][*i].set_blackhole(true),
        Undo::Continue(pid) => {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
        }
        Undo::ContinueGroup(pid) => {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGCONT);
        }
        Undo::Latency(targets) => {
            for &(group, instance) in targets {
                deployment.proxies[group][instance].set_latency(Duration::ZERO);
            }
        }
        Undo::Refuse(i) => deployment.each_proxy_of(*i, |p| p.set_refuse(false)),
        Undo::Blackhole(i) => deployment.each_proxy_of(*i, |p| p.set_blackhole(false)),
    }
}

/// A random share of `ttl` between `low`% and `high`%, in nanoseconds.
pub(super) fn scaled(ttl: Duration, rng: &mut fastrand::Rng, low: u64, high: u64) -> u64 {
    ttl.as_nanos() as u64 * rng.u64(low..=high) / 100
}

/// The faults injected, by kind.
pub type Counts = BTreeMap<Fault, u64>;

//! The Redis Cluster deployment of the torture: three primaries with one replica each
//! (`support::cluster`), reached directly by the competitors (a proxy does not fit: the cluster
//! announces its nodes' own addresses), with the protected resource on a plain Redis of its
//! own. Besides the holder faults (kill, stop, forced release) it suffers failovers: a graceful
//! `CLUSTER FAILOVER`, and SIGKILL of a primary (its replica takes over; the killed node comes
//! back as the new primary's replica). Replication is asynchronous, so a failover may lose a
//! lease: it is recorded, for each name the primary owned, as an uncertain deletion from the
//! fault's start until the new primary answers (see `checker::Deletion`).

use std::sync::Mutex;

use super::checker::Deletion;
use super::faults::{inject_cycles, Deployment, Fault, Undo};
use super::history::now;
use super::holders::hit_holder;
use super::Ctx;
use crate::support::cluster::RedisCluster;
use crate::support::{key, RedisServer};

/// The cluster of a deployment, and its nodes' URLs (their ports never change: a killed node
/// comes back on its own).
pub struct Nodes {
    pub cluster: Mutex<RedisCluster>,
    pub urls: Vec<String>,
}

impl Nodes {
    /// The seed nodes of a client of `group`: every node for `leasectl` (group 0: a process
    /// started while a node is down still finds the cluster); one node, a different one for
    /// each library competitor, which asks it whether it is a cluster.
    pub fn urls_for(&self, group: usize) -> Vec<String> {
        match group {
            0 => self.urls.clone(),
            n => vec![self.urls[(n - 1) % self.urls.len()].clone()],
        }
    }
}

impl Deployment {
    pub fn start_cluster(library_clients: usize) -> Deployment {
        let cluster = RedisCluster::start();
        let urls = cluster.urls();
        Deployment {
            servers: Mutex::new(Vec::new()),
            proxies: (0..=library_clients).map(|_| Vec::new()).collect(),
            resource: RedisServer::start(),
            cluster: Some(Nodes {
                cluster: Mutex::new(cluster),
                urls,
            }),
        }
    }
}

/// `count` lease names spread evenly over the primaries (names in different slots).
pub fn lease_names(nodes: &Nodes, count: usize) -> Vec<String> {
    let cluster = nodes.cluster.lock().unwrap();
    let primaries = cluster.primaries();
    let mut names: Vec<String> = Vec::new();
    let mut on: Vec<usize> = vec![0; primaries.len()];
    for i in 0.. {
        if names.len() == count {
            break;
        }
        let name = format!("torture-{i}");
        let primary = cluster.primary_of(&key(&name));
        let slot = primaries
            .iter()
            .position(|&p| p == primary)
            .expect("a primary");
        // Round robin: this primary takes a name only when no other has fewer.
        if on[slot] == *on.iter().min().expect("primaries") {
            on[slot] += 1;
            names.push(name);
        }
    }
    names
}

/// `LEASECTL_TORTURE_WAIT_REPLICAS`: the `WaitReplicas` the cluster run applies (acquire and
/// renew wait for that many replicas), if set.
pub fn wait_replicas() -> Option<u32> {
    let text = std::env::var("LEASECTL_TORTURE_WAIT_REPLICAS").ok()?;
    Some(
        text.trim()
            .parse()
            .expect("LEASECTL_TORTURE_WAIT_REPLICAS is a number"),
    )
}

/// The settings `leasectl` processes of the cluster run get through their environment:
/// cluster mode forced (their first seed node may be down), and `WaitReplicas` when asked.
pub fn leasectl_env() -> Vec<(String, String)> {
    let mut env = vec![("RedisLeasing__Cluster".to_string(), "true".to_string())];
    if let Some(replicas) = wait_replicas() {
        env.push(("RedisLeasing__WaitReplicas".into(), replicas.to_string()));
    }
    env
}

/// Injects the cluster's faults until the run stops, then undoes what is still in force.
pub fn inject(ctx: &Ctx, deployment: &Deployment, nodes: &Nodes, mut rng: fastrand::Rng) {
    inject_cycles(
        ctx,
        deployment,
        Fault::cluster(),
        &mut rng,
        |cycle, _, undoing, rng| {
            // A failover keeps the injector busy for seconds: only when nothing waits to be
            // undone (a stopped holder's SIGCONT must come on time).
            let position = cycle
                .iter()
                .rposition(|kind| !undoing || !kind.fails_over())?;
            let kind = cycle[position];
            let undo = match kind.fails_over() {
                true => fail_over(ctx, nodes, kind, rng)?,
                false => hit_holder(ctx, deployment, kind, rng)?,
            };
            Some((position, undo))
        },
    );
}

/// Fails over the primary owning a name a library competitor holds (one in a long hold, which
/// has renewals to come, if any): `CLUSTER FAILOVER` on its replica, or SIGKILL of it and its
/// restart as a replica once the old replica took over. Records an uncertain deletion of every
/// name that primary owned, from the fault's start until the new primary answered. `None` when
/// no library competitor holds a lease.
fn fail_over(
    ctx: &Ctx,
    nodes: &Nodes,
    kind: Fault,
    rng: &mut fastrand::Rng,
) -> Option<Vec<(u64, Undo)>> {
    let held: Vec<(String, bool)> = ctx
        .holding
        .iter()
        .filter_map(|h| {
            let held = h.lock().unwrap();
            held.as_ref().map(|h| (h.name.clone(), h.long))
        })
        .collect();
    let long: Vec<&String> = held.iter().filter(|(_, l)| *l).map(|(n, _)| n).collect();
    let any: Vec<&String> = held.iter().map(|(n, _)| n).collect();
    let candidates = if long.is_empty() { any } else { long };
    let name = (*candidates.get(rng.usize(..candidates.len().max(1)))?).clone();
    let mut cluster = nodes.cluster.lock().unwrap();
    let primary = cluster.primary_of(&key(&name));
    let owned: Vec<String> = ctx
        .names
        .iter()
        .filter(|n| cluster.primary_of(&key(n)) == primary)
        .cloned()
        .collect();
    let from = now();
    let what = match kind {
        Fault::Failover => {
            cluster.failover(&key(&name));
            "a failover (CLUSTER FAILOVER)"
        }
        Fault::PrimaryKill => {
            cluster.kill_primary_of(&key(&name));
            "a failover (SIGKILL of the primary)"
        }
        _ => unreachable!("{kind:?} is no failover"),
    };
    let to = now();
    ctx.deletions
        .lock()
        .unwrap()
        .extend(owned.into_iter().map(|name| Deletion {
            from,
            to,
            name: Some(name),
            what,
            certain: false,
        }));
    if kind == Fault::PrimaryKill {
        cluster.restart_node(primary);
    }
    Some(Vec::new())
}

/// Once every competitor stopped: the lease keys still on their primary.
pub fn keys_left(nodes: &Nodes, names: &[String]) -> Vec<String> {
    let cluster = nodes.cluster.lock().unwrap();
    names
        .iter()
        .map(|name| key(name))
        .filter_map(|key| {
            let primary = &cluster.nodes[cluster.primary_of(&key)];
            let exists = primary.try_query::<i64>(&["EXISTS", &key]).ok()? == 1;
            let pttl: i64 = primary.try_query(&["PTTL", &key]).unwrap_or(-3);
            exists.then(|| format!("{key} left on its primary {} (PTTL {pttl})", primary.port))
        })
        .collect()
}

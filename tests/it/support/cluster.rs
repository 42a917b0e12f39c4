//! Test support: a real Redis Cluster on loopback — three primaries with one replica each, six
//! `redis-server --cluster-enabled yes` processes (killed on drop) — made with
//! `redis-cli --cluster create`, and the faults the cluster tests inject: a manual failover of
//! the primary owning a key, SIGKILL of that primary, and the migration of a key's slot to
//! another primary.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasectl::Settings;

use super::limits::BOUND;
use super::{eventually, free_port, signal};

/// A cluster node's highest port: its bus port (port + 10000) must be a valid port too.
const HIGHEST_PORT: u16 = 55535;

/// One `redis-server` of the cluster.
pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl ClusterNode {
    fn start() -> ClusterNode {
        for _ in 0..50 {
            let port = free_port();
            if port > HIGHEST_PORT || !bus_port_free(port) {
                continue;
            }
            let dir = tempfile::tempdir().expect("temp dir");
            if let Some(child) = spawn(port, dir.path()) {
                return ClusterNode {
                    port,
                    child: Some(child),
                    dir,
                };
            }
        }
        panic!("could not start a cluster redis-server (is redis-server installed?)");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Runs one command here (no redirection: the answer of this node).
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_query(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    pub fn try_query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query(&mut self.connection()?)
    }

    pub fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// This node's cluster id.
    pub fn id(&self) -> String {
        self.query(&["CLUSTER", "MYID"])
    }

    fn info(&self) -> String {
        self.try_query(&["CLUSTER", "INFO"]).unwrap_or_default()
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

fn bus_port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
}

fn spawn(port: u16, dir: &Path) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        // Short, so that a failover after a SIGKILL is over in seconds.
        .args(["--cluster-node-timeout", "2000"])
        // A replica may always take over, however long since it heard from its primary.
        .args(["--cluster-replica-validity-factor", "0"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        let answered = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
        if answered {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Three primaries with one replica each.
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster and waits until every node says it is ok.
    pub fn start() -> RedisCluster {
        let nodes: Vec<ClusterNode> = (0..6).map(|_| ClusterNode::start()).collect();
        let addresses: Vec<String> = nodes.iter().map(ClusterNode::address).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (it comes with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`, knows every slot, and agrees on
    /// who owns each slot.
    pub fn wait_ok(&self) {
        let settled = eventually(BOUND, || {
            let live: Vec<&ClusterNode> = self.nodes.iter().filter(|n| n.is_alive()).collect();
            let all_ok = live.iter().all(|n| {
                let info = n.info();
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if !all_ok {
                return false;
            }
            let views: HashSet<Vec<(i64, i64, u16)>> =
                live.iter().map(|n| slot_owners(n)).collect();
            // Every replica has its primary's data (a replica promoted before its first
            // sync would come up empty).
            let synced = live.iter().all(|n| {
                let info: String = n.try_query(&["INFO", "replication"]).unwrap_or_default();
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            views.len() == 1 && synced
        });
        assert!(settled, "the cluster did not settle within {BOUND:?}");
    }

    /// The first node's URL: the seed node.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Settings for the library with `seed` as the only endpoint.
    pub fn settings_via(&self, seed: usize) -> Settings {
        Settings::for_endpoints(&[self.nodes[seed].url()]).expect("a valid URL")
    }

    /// The index of the node on `port`.
    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    fn any_live(&self) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.is_alive())
            .expect("a live node")
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> i64 {
        self.any_live().query(&["CLUSTER", "KEYSLOT", key])
    }

    /// The index of the primary that owns `key`'s slot (as a live node sees it).
    pub fn primary_of(&self, key: &str) -> usize {
        let slot = self.slot(key);
        let owners = slot_owners(self.any_live());
        let (_, _, port) = owners
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .expect("every slot has an owner");
        self.index_of(port)
    }

    /// The indexes of the current primaries.
    pub fn primaries(&self) -> Vec<usize> {
        let mut ports: Vec<u16> = slot_owners(self.any_live())
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
        ports.sort();
        ports.dedup();
        ports.into_iter().map(|p| self.index_of(p)).collect()
    }

    /// The index of a live replica of the primary `primary`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = self.nodes[primary].id();
        self.nodes
            .iter()
            .position(|n| {
                n.is_alive()
                    && n.try_query::<Vec<redis::Value>>(&["ROLE"])
                        .ok()
                        .is_some_and(|role| {
                            let master_port: Option<i64> = role
                                .get(2)
                                .and_then(|v| redis::from_redis_value(v.clone()).ok());
                            master_port == Some(self.nodes[primary].port as i64)
                        })
            })
            .unwrap_or_else(|| panic!("no replica of {id}"))
    }

    /// Whether node `index` says it is a primary (ROLE).
    pub fn is_primary(&self, index: usize) -> bool {
        self.nodes[index]
            .try_query::<Vec<redis::Value>>(&["ROLE"])
            .ok()
            .and_then(|role| role.first().cloned())
            .and_then(|kind| redis::from_redis_value::<String>(kind).ok())
            .is_some_and(|kind| kind == "master")
    }

    /// A lease name under the default prefix whose key is owned by each primary: one name per
    /// primary, `prefix-N`.
    pub fn name_on_each_primary(&self, prefix: &str) -> Vec<String> {
        let mut names = Vec::new();
        for primary in self.primaries() {
            let name = (0..)
                .map(|i| format!("{prefix}-{i}"))
                .find(|name| self.primary_of(&super::key(name)) == primary)
                .expect("a name");
            names.push(name);
        }
        names
    }

    /// `CLUSTER FAILOVER` on a replica of the primary owning `key`; waits until the replica
    /// is the slot's primary everywhere. Answers the new primary's index.
    pub fn failover(&self, key: &str) -> usize {
        let primary = self.primary_of(key);
        let replica = self.replica_of(primary);
        // A manual failover gives up after a few seconds when the replica cannot catch up
        // (a loaded machine): ask again until it took.
        let deadline = Instant::now() + BOUND;
        let done = loop {
            let _: String = self.nodes[replica].query(&["CLUSTER", "FAILOVER"]);
            if eventually(Duration::from_secs(10), || self.is_primary(replica)) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        assert!(done, "the failover did not finish within {BOUND:?}");
        self.wait_ok();
        assert_eq!(self.primary_of(key), replica);
        replica
    }

    /// SIGKILLs the primary owning `key`; waits until its replica took over everywhere.
    /// Answers the new primary's index.
    pub fn kill_primary_of(&mut self, key: &str) -> usize {
        let primary = self.primary_of(key);
        let replica = self.replica_of(primary);
        self.nodes[primary].kill();
        let done = eventually(BOUND, || self.is_primary(replica));
        assert!(done, "the replica did not take over within {BOUND:?}");
        self.wait_ok();
        replica
    }

    /// Starts moving `key`'s slot to the primary `to`: IMPORTING there, MIGRATING on its
    /// owner, no key moved yet (commands on keys that are not there yet get ASK).
    pub fn begin_migration(&self, key: &str, to: usize) -> Migration {
        let from = self.primary_of(key);
        assert_ne!(from, to, "the slot is already there");
        let slot = self.slot(key).to_string();
        let (from_id, to_id) = (self.nodes[from].id(), self.nodes[to].id());
        let _: String = self.nodes[to].query(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        let _: String = self.nodes[from].query(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        Migration { from, to, slot }
    }

    /// Moves the slot's keys and hands the slot over (SETSLOT NODE on every primary).
    pub fn finish_migration(&self, migration: Migration) {
        let Migration { from, to, slot } = migration;
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let port = target.port.to_string();
        loop {
            let keys: Vec<String> = source.query(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            migrate.extend(keys.iter().map(String::as_str));
            let _: redis::Value = source.query(&migrate);
        }
        let to_id = target.id();
        for node in [target, source] {
            let _: String = node.query(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        for primary in self.primaries() {
            let _: redis::RedisResult<String> =
                self.nodes[primary].try_query(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        self.wait_ok();
    }

    /// A lease key's fields, read on the primary that owns it.
    pub fn hgetall(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        self.nodes[self.primary_of(key)].query(&["HGETALL", key])
    }

    /// A key's string value, read on the primary that owns it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.nodes[self.primary_of(key)].query(&["GET", key])
    }

    pub fn exists(&self, key: &str) -> bool {
        self.nodes[self.primary_of(key)].query::<i64>(&["EXISTS", key]) == 1
    }
}

/// A slot on its way from one primary to another.
pub struct Migration {
    pub from: usize,
    pub to: usize,
    slot: String,
}

/// Every slot range and the port of its primary, as `node` sees them (sorted).
fn slot_owners(node: &ClusterNode) -> Vec<(i64, i64, u16)> {
    let Ok(ranges) = node.try_query::<Vec<Vec<redis::Value>>>(&["CLUSTER", "SLOTS"]) else {
        return Vec::new();
    };
    let mut owners: Vec<(i64, i64, u16)> = ranges
        .into_iter()
        .filter_map(|range| {
            let start: i64 = redis::from_redis_value(range.first()?.clone()).ok()?;
            let end: i64 = redis::from_redis_value(range.get(1)?.clone()).ok()?;
            let redis::Value::Array(primary) = range.get(2)? else {
                return None;
            };
            let port: u16 = redis::from_redis_value(primary.get(1)?.clone()).ok()?;
            Some((start, end, port))
        })
        .collect();
    owners.sort();
    owners
}

impl RedisCluster {
    /// Starts the killed node `index` again, on its port and from its own `nodes.conf` (empty
    /// memory): it learns that its slots went to its replica and rejoins as that node's
    /// replica. Waits until the cluster is ok again (its new replica synced), so that the next
    /// failover has a replica to promote.
    pub fn restart_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "node {index} is still running");
        let deadline = Instant::now() + BOUND;
        // Its port was just freed by the kill: retry while the OS still holds it.
        node.child = loop {
            if let Some(child) = spawn(node.port, node.dir.path()) {
                break Some(child);
            }
            assert!(
                Instant::now() < deadline,
                "node {index} did not start again on port {} within {BOUND:?}",
                node.port
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.wait_ok();
    }

    /// Every node's URL (seed nodes for a client that must survive any one node's death).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClusterNode::url).collect()
    }
}

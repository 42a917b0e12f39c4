//! A Redis Sentinel deployment on loopback free ports: a primary, a replica and three
//! sentinels (`redis-server --sentinel` with a generated config, a short
//! `down-after-milliseconds` and `failover-timeout`), all stopped on drop; with helpers to kill,
//! pause or restart an instance, to run `SENTINEL FAILOVER`, and to wait until the sentinels
//! name a new primary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::servers::{free_port, kill_child, ping, signal, spawn_ready};
use super::{eventually, Leasectl, BOUND, LIMIT};

/// The service (primary) name the sentinels monitor.
pub const SERVICE: &str = "mymaster";
/// How long a sentinel waits before it calls an instance down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// One process of the deployment: a data node or a sentinel.
pub struct Instance {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{}: {e}", self.port))
    }

    /// Runs one command over a fresh connection: `["HGET", "key", "field"]`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_query(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// As [`Instance::query`], answering the error.
    pub fn try_query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        redis::cmd(args[0]).arg(&args[1..]).query(&mut connection)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGSTOP: it stops answering but keeps its connections.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`Instance::pause`].
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `master` or `slave` (ROLE's first item), `None` when it does not answer.
    pub fn role(&self) -> Option<String> {
        let role: redis::Value = self.try_query(&["ROLE"]).ok()?;
        match role {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::BulkString(bytes)) => {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

/// A primary (`data[0]` at the start), a replica (`data[1]`) and three sentinels.
pub struct SentinelDeployment {
    pub data: Vec<Instance>,
    pub sentinels: Vec<Instance>,
}

impl SentinelDeployment {
    /// Starts the deployment and waits until every sentinel sees the replica and the other
    /// sentinels (so that a failover can happen).
    pub fn start() -> SentinelDeployment {
        let primary = start_data(None);
        let replica = start_data(Some(primary.port));
        let sentinels = (0..3).map(|_| start_sentinel(primary.port)).collect();
        let deployment = SentinelDeployment {
            data: vec![primary, replica],
            sentinels,
        };
        deployment.wait_ready();
        deployment
    }

    /// Waits until every sentinel knows one replica and two other sentinels, and the
    /// replica's link to the primary is up.
    pub fn wait_ready(&self) {
        let ready = eventually(BOUND, || {
            self.sentinels.iter().all(|sentinel| {
                let Ok(fields) =
                    sentinel.try_query::<Vec<String>>(&["SENTINEL", "MASTER", SERVICE])
                else {
                    return false;
                };
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|pair| pair[0] == name)
                        .map(|pair| pair[1].clone())
                        .unwrap_or_default()
                };
                field("num-slaves") == "1"
                    && field("num-other-sentinels") == "2"
                    && !field("flags").contains("down")
            }) && self.replicas_in_sync()
        });
        assert!(
            ready,
            "the sentinel deployment did not get ready within {BOUND:?}"
        );
    }

    /// Whether every replica of the current primary has its link up.
    pub fn replicas_in_sync(&self) -> bool {
        let primary = self.primary_port();
        self.data
            .iter()
            .filter(|node| node.port != primary && node.child.is_some())
            .all(|node| {
                node.try_query::<String>(&["INFO", "replication"])
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            })
    }

    /// `127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3,serviceName=mymaster,ssl=False`.
    pub fn connection_string(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("{},serviceName={SERVICE},ssl=False", hosts.join(","))
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// `leasectl --endpoint CONNECTION-STRING ARGS`.
    pub fn leasectl(&self, leasectl: &Leasectl) -> Command {
        let mut command = leasectl.command();
        command.arg("--endpoint").arg(self.connection_string());
        command
    }

    /// The port of the primary the first answering sentinel names.
    pub fn primary_port(&self) -> u16 {
        let named = self.sentinels.iter().find_map(|sentinel| {
            let (_, port): (String, String) = sentinel
                .try_query(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
                .ok()?;
            port.parse().ok()
        });
        named.expect("no sentinel names a primary")
    }

    /// The data node the sentinels name as primary.
    pub fn primary(&self) -> &Instance {
        let port = self.primary_port();
        self.data
            .iter()
            .find(|n| n.port == port)
            .expect("a data node")
    }

    /// The data node that is not the primary.
    pub fn replica(&self) -> &Instance {
        let port = self.primary_port();
        self.data
            .iter()
            .find(|n| n.port != port)
            .expect("a data node")
    }

    fn index_of(&self, port: u16) -> usize {
        self.data
            .iter()
            .position(|n| n.port == port)
            .expect("a data node")
    }

    /// SIGKILLs the primary; answers its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        let index = self.index_of(port);
        self.data[index].kill();
        port
    }

    /// Starts the data node on `port` again, empty, as a primary of its own (as a primary that
    /// was killed comes back: the sentinels then make it a replica).
    pub fn restart(&mut self, port: u16) {
        let index = self.index_of(port);
        self.data[index].kill();
        let child = spawn_data(port, self.data[index].dir(), None);
        assert!(
            child.is_some(),
            "redis-server did not restart on port {port}"
        );
        self.data[index].child = child;
    }

    /// Starts the data node on `port` again, empty, as a replica of the primary the sentinels
    /// name (as an operator restarts a failed primary; the sentinels would demote it too, but
    /// only after a while, and not at all while they are in TILT mode on a loaded machine).
    pub fn restart_as_replica(&mut self, port: u16) {
        let index = self.index_of(port);
        self.data[index].kill();
        let primary = self.primary_port();
        let child = spawn_data(port, self.data[index].dir(), Some(primary));
        assert!(
            child.is_some(),
            "redis-server did not restart on port {port}"
        );
        self.data[index].child = child;
    }

    /// `SENTINEL FAILOVER mymaster`, asked again while a sentinel refuses (a failover already
    /// under way, no replica good enough yet); answers the old primary's port.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let done = eventually(BOUND, || {
            self.sentinels.iter().any(|sentinel| {
                sentinel
                    .try_query::<String>(&["SENTINEL", "FAILOVER", SERVICE])
                    .is_ok()
            })
        });
        assert!(done, "no sentinel started a failover within {BOUND:?}");
        old
    }

    /// Waits until every answering sentinel names a primary other than `old` and that one
    /// answers ROLE as a primary; answers its port.
    pub fn wait_for_new_primary(&self, old: u16) -> u16 {
        let mut new = old;
        let switched = eventually(BOUND, || {
            let named: Vec<u16> = self
                .sentinels
                .iter()
                .filter_map(|sentinel| {
                    let (_, port): (String, String) = sentinel
                        .try_query(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
                        .ok()?;
                    port.parse().ok()
                })
                .collect();
            let Some(first) = named.first().copied() else {
                return false;
            };
            new = first;
            first != old
                && named.iter().all(|p| *p == first)
                && self.data[self.index_of(first)].role().as_deref() == Some("master")
        });
        assert!(
            switched,
            "the sentinels named no new primary within {BOUND:?}"
        );
        new
    }

    /// Waits until the data node on `port` is a replica whose link to the primary is up. (An
    /// old primary that came back is demoted by the sentinels only after it has answered as a
    /// primary for a while, and they look at replicas every 10 s: up to [`LIMIT`].)
    pub fn wait_replica(&self, port: u16) {
        let node = &self.data[self.index_of(port)];
        let ok = eventually(LIMIT, || {
            node.try_query::<String>(&["INFO", "replication"])
                .is_ok_and(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
        });
        assert!(
            ok,
            "127.0.0.1:{port} did not become an in-sync replica within {LIMIT:?}"
        );
    }
}

/// A data node on a free port; a replica of `primary` when given.
fn start_data(primary: Option<u16>) -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let found = (0..20).find_map(|_| {
        let port = free_port();
        spawn_data(port, dir.path(), primary).map(|child| (port, child))
    });
    let (port, child) = found.expect("could not start redis-server");
    Instance {
        port,
        child: Some(child),
        dir,
    }
}

fn spawn_data(port: u16, dir: &Path, primary: Option<u16>) -> Option<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(format!("redis-{port}.log")));
    if let Some(primary) = primary {
        command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    let url = format!("redis://127.0.0.1:{port}");
    spawn_ready(command, || ping(&url))
}

/// A sentinel on a free port monitoring the primary on `primary` (quorum 2).
fn start_sentinel(primary: u16) -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let found = (0..20).find_map(|_| {
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} {down}\n\
             sentinel failover-timeout {SERVICE} 2000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            dir = dir.path().display(),
            down = DOWN_AFTER.as_millis(),
        );
        std::fs::write(&config, text).expect("write sentinel.conf");
        let mut command = Command::new("redis-server");
        command.arg(&config).arg("--sentinel");
        let url = format!("redis://127.0.0.1:{port}");
        spawn_ready(command, || ping(&url)).map(|child| (port, child))
    });
    let (port, child) = found.expect("could not start redis-server --sentinel");
    Instance {
        port,
        child: Some(child),
        dir,
    }
}

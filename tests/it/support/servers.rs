//! Test support: real `redis-server` processes on free loopback ports (killed on drop), a
//! `leasectl` command builder whose environment holds no settings of the developer's.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasectl::Settings;

/// A `redis-server` on a free loopback port, with its files in a temporary folder.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, child) = on_a_free_port(|port| RedisServer::spawn(port, dir.path())).expect(
            "could not start redis-server (is it installed? see the README's test command)",
        );
        RedisServer {
            port,
            child: Some(child),
            dir,
        }
    }

    /// Starts redis-server on `port` with its files in `dir`; answers it once it answers PING.
    fn spawn(port: u16, dir: &Path) -> Option<Child> {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        let url = format!("redis://127.0.0.1:{port}");
        spawn_ready(command, || ping(&url))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Settings for the library: this server, defaults otherwise.
    pub fn settings(&self) -> Settings {
        Settings::for_endpoints(&[self.url()]).expect("a valid URL")
    }

    /// A plain synchronous connection for looking at and changing keys from the test.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("connect to test redis")
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port, with empty memory.
    pub fn restart(&mut self) {
        self.kill();
        self.child = RedisServer::spawn(self.port, self.dir.path());
        assert!(
            self.child.is_some(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// SIGSTOP: the server stops answering but keeps its connections.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

/// Whether the plain server at `url` answers PING.
pub(crate) fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut connection).is_ok()
}

/// Tries `spawn` on free ports until a server comes up on one: answers that port and the server.
fn on_a_free_port(mut spawn: impl FnMut(u16) -> Option<Child>) -> Option<(u16, Child)> {
    (0..20).find_map(|_| {
        let port = free_port();
        spawn(port).map(|child| (port, child))
    })
}

/// Starts `command` (a server, no stdio) and waits until it is `ready`; answers it, or `None`
/// when it exited first (most likely its port was taken meanwhile) or was not ready in 10 s.
pub(crate) fn spawn_ready(mut command: Command, mut ready: impl FnMut() -> bool) -> Option<Child> {
    let mut child = Some(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(Ok(Some(_))) = child.as_mut().map(|c| c.try_wait()) {
            return None;
        }
        if ready() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&mut child);
    None
}

/// Kills a server (SIGKILL), if it runs, and waits for it.
pub(crate) fn kill_child(child: &mut Option<Child>) {
    kill(child)
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `kill -SIG pid`.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// A `leasectl` command that sees no settings but what the test gives it: a fresh HOME and
/// working folder, no `RedisLeasing__*` variables, no colour.
pub struct Leasectl {
    pub home: tempfile::TempDir,
}

impl Leasectl {
    pub fn new() -> Leasectl {
        Leasectl {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The working folder (also HOME) of the commands.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// `leasectl ARGS` in the isolated environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(binary());
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.to_ascii_lowercase().starts_with("redisleasing__")
                || key_text == "XDG_CONFIG_HOME"
            {
                command.env_remove(&key);
            }
        }
        command
            .env("HOME", self.dir())
            .env("NO_COLOR", "1")
            .current_dir(self.dir())
            .stdin(Stdio::null());
        command
    }

    /// `leasectl --endpoint URL ARGS`.
    pub fn against(&self, server: &RedisServer) -> Command {
        let mut command = self.command();
        command.arg("--endpoint").arg(server.url());
        command
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_leasectl"))
}

/// Polls `condition` every 10 ms until it holds or `limit` passes; answers whether it held.
/// For waiting on other processes, never for asserting a duration.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Quorum mode: independent `redis-server`s, one per instance of the deployment.
pub struct Quorum {
    pub servers: Vec<RedisServer>,
}

impl Quorum {
    /// Starts `n` servers.
    pub fn start(n: usize) -> Quorum {
        Quorum {
            servers: (0..n).map(|_| RedisServer::start()).collect(),
        }
    }

    /// Every server's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// `127.0.0.1:PORT` of every server, as messages name them.
    pub fn addresses(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port))
            .collect()
    }

    /// Settings for the library: every server, defaults otherwise.
    pub fn settings(&self) -> Settings {
        Settings::for_endpoints(&self.urls()).expect("valid URLs")
    }

    /// How many servers make a majority.
    pub fn majority(&self) -> usize {
        self.servers.len() / 2 + 1
    }

    /// Waits until every server has been up longer than `ttl` (as INFO counts it, whole seconds
    /// that may be one ahead): until then a grant of theirs counts only when every instance
    /// answers, since a server that started within a TTL may have forgotten a lease.
    pub fn wait_older_than(&self, ttl: Duration) {
        let all: Vec<usize> = (0..self.servers.len()).collect();
        self.wait_older_than_on(&all, ttl);
    }

    /// [`Quorum::wait_older_than`] for the servers `which` only (the others may be down).
    pub fn wait_older_than_on(&self, which: &[usize], ttl: Duration) {
        let old = |i: &usize| uptime(&self.servers[*i]) > ttl.as_secs() + 2;
        let aged = eventually(ttl + Duration::from_secs(30), || which.iter().all(old));
        assert!(aged, "servers {which:?} never got older than {ttl:?}");
    }
}

/// How long `server` has been up, in whole seconds (INFO's `uptime_in_seconds`).
pub fn uptime(server: &RedisServer) -> u64 {
    let info: String = server.query(&["INFO", "server"]);
    info.lines()
        .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("uptime_in_seconds")
}

impl Leasectl {
    /// `leasectl --endpoint URL1 --endpoint URL2 ... ARGS`: quorum mode over every server.
    pub fn against_quorum(&self, quorum: &Quorum) -> Command {
        let mut command = self.command();
        for url in quorum.urls() {
            command.arg("--endpoint").arg(url);
        }
        command
    }
}

/// A `redis-server` that speaks only TLS (`--port 0 --tls-port P`), with a CA and a server
/// certificate for `localhost` made by `openssl` at start; killed on drop.
pub struct TlsRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Makes the certificates, starts the server and waits until it answers PING over TLS.
    pub fn start() -> TlsRedis {
        let dir = tempfile::tempdir().expect("temp dir");
        make_certificates(dir.path(), "localhost");
        let Some((port, child)) = on_a_free_port(|port| TlsRedis::spawn(port, dir.path())) else {
            panic!(
                "could not start redis-server with TLS\n{}",
                std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default()
            );
        };
        TlsRedis {
            port,
            child: Some(child),
            dir,
        }
    }

    /// Starts redis-server with TLS on `port` with its files in `dir`; answers it once it
    /// answers PING.
    fn spawn(port: u16, dir: &Path) -> Option<Child> {
        let file = |name: &str| dir.join(name);
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1 -::1", "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(file("server.crt"))
            .arg("--tls-key-file")
            .arg(file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(file("ca.crt"))
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(file("redis.log"));
        spawn_ready(command, || {
            // Probed again and again until it answers: a short wait each time.
            tls_connection(&tls_url(port), &file("ca.crt"), Duration::from_millis(500)).is_some()
        })
    }

    /// `rediss://localhost:PORT`: the name the certificate is for.
    pub fn url(&self) -> String {
        tls_url(self.port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A synchronous TLS connection as the default user, trusting the test CA.
    pub fn connection(&self) -> redis::Connection {
        // A loaded machine may take seconds over a TLS handshake.
        tls_connection(&self.url(), &self.ca_file(), super::BOUND)
            .expect("connect to the TLS test redis")
    }

    /// A synchronous TLS connection that logs in as `user` with `password`.
    pub fn connection_as(
        &self,
        user: &str,
        password: &str,
    ) -> redis::RedisResult<redis::Connection> {
        let url = format!("rediss://{user}:{password}@localhost:{}", self.port);
        let client = redis::Client::build_with_tls(url, certificates(&self.ca_file()))?;
        client.get_connection_with_timeout(Duration::from_secs(10))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// `rediss://localhost:PORT`: the name the certificate is for.
fn tls_url(port: u16) -> String {
    format!("rediss://localhost:{port}")
}

/// A TLS connection to `url` that answered PING, trusting `ca_file`; `None` when connecting
/// took longer than `limit`.
fn tls_connection(url: &str, ca_file: &Path, limit: Duration) -> Option<redis::Connection> {
    let client = redis::Client::build_with_tls(url, certificates(ca_file)).ok()?;
    let mut connection = client.get_connection_with_timeout(limit).ok()?;
    redis::cmd("PING").query::<String>(&mut connection).ok()?;
    Some(connection)
}

/// Trust in the CA in `ca_file`, and no client certificate.
fn certificates(ca_file: &Path) -> redis::TlsCertificates {
    // rustls needs one process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(ca_file).expect("read the test CA")),
    }
}

/// Writes `ca.crt` (a fresh CA) and `server.crt`/`server.key` (signed by it, valid for the DNS
/// name `host` only) into `dir`, with `openssl`.
pub fn make_certificates(dir: &Path, host: &str) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {key} -keyout ca.key -out ca.crt -days 2 -subj /CN=leasectl-test-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    openssl(
        dir,
        &format!("req {key} -keyout server.key -out server.csr -subj /CN={host}"),
    );
    let extensions = format!(
        "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    );
    std::fs::write(dir.join("server.ext"), extensions).expect("write server.ext");
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 2 -extfile server.ext",
    );
}

/// Runs `openssl ARGS` (split at whitespace) in `dir` for certificates; fails the test if it fails
pub fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    assert!(
        output.status.success(),
        "openssl {args} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

//! The seed settings leasectl used to ignore: `DefaultWaitTime`, `Metadata`,
//! `AbortOnConnectFail`, and bad values of each.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;

use super::*;
use crate::process::{run_job, Running, LIMIT};

/// Writes `appsettings.json` in the commands' working folder with this `RedisLeasing` section.
fn settings_file(tool: &Leasectl, section: serde_json::Value) {
    let file = serde_json::json!({ "RedisLeasing": section });
    std::fs::write(tool.dir().join("appsettings.json"), file.to_string()).unwrap();
}

#[test]
fn default_wait_time_is_the_wait_of_acquire_run_and_exec() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    // Without it (nor --wait) a held lease is refused at once.
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    leasectl(&tool, &quorum, &["acquire", "job"]).expect(3);
    settings_file(&tool, serde_json::json!({ "DefaultWaitTime": "00:01:00" }));
    // With it, each waits for the holder's TTL to run out, then takes the lease.
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    let waited = acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    assert_eq!(waited.lease, "job");
    leasectl(&tool, &quorum, &["exec", "job", "--", "true"]).expect(0);
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    let run = run_job("1s");
    leasectl(&tool, &quorum, &run).expect(0);
    // `--wait 0s` still fails fast.
    acquire(&tool, &quorum, "job", &["--ttl", "1m"]);
    leasectl(&tool, &quorum, &["acquire", "job", "--wait", "0s"]).expect(3);
}

#[test]
fn metadata_from_files_and_environment_is_stored_and_flags_win() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    let metadata = serde_json::json!({ "team": "payments", "tier": "gold", "costCenter": 42 });
    settings_file(&tool, serde_json::json!({ "Metadata": metadata }));
    let mut command = tool.against_quorum(&quorum);
    command
        .env("RedisLeasing__Metadata__onCall", "ops-team")
        .args(["acquire", "job", "--meta", "tier=platinum"]);
    complete(command).expect(0);
    let hash = support::hgetall(&quorum.servers[0], &support::key("job"));
    assert_eq!(
        hash.get("meta_team").map(String::as_str),
        Some("payments"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_costCenter").map(String::as_str),
        Some("42"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_onCall").map(String::as_str),
        Some("ops-team"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_tier").map(String::as_str),
        Some("platinum"),
        "{hash:?}"
    );
    // Every lease gets them: `exec`'s too, beside its own.
    let shown = tool_inspect_while(&tool, &quorum, "other");
    assert_eq!(shown["metadata"]["team"], "payments", "{shown}");
}

/// `inspect NAME --json` while an `exec NAME` holds the lease.
fn tool_inspect_while(tool: &Leasectl, quorum: &Quorum, name: &str) -> serde_json::Value {
    let mut holder = tool.against_quorum(quorum);
    holder.args(["exec", name, "--json", "--", "sleep", "60"]);
    let mut holder = Running::spawn(holder);
    holder.wait_for("\"acquired\"");
    let shown = leasectl(tool, quorum, &["inspect", name, "--json"]);
    shown.expect(0);
    serde_json::from_str(&shown.stdout).unwrap()
}

#[test]
fn bad_values_name_the_file_and_the_field() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    for (field, value) in [
        ("MaxRetryAttempts", serde_json::json!(-1)),
        ("MaxRetryAttempts", serde_json::json!("many")),
        ("RetryDelay", serde_json::json!("soon")),
        ("DefaultWaitTime", serde_json::json!("soon")),
        ("DefaultWaitTime", serde_json::json!(30)),
        ("Metadata", serde_json::json!(5)),
        ("Metadata", serde_json::json!({ "team": { "nested": 1 } })),
        ("AbortOnConnectFail", serde_json::json!("maybe")),
    ] {
        settings_file(&tool, serde_json::json!({ field: value }));
        let output = leasectl(&tool, &quorum, &["acquire", "job"]);
        let error = output.failed_with(2);
        assert!(
            error.contains("appsettings.json"),
            "{field}={value}\n{output}"
        );
        assert!(
            error.contains(&format!("RedisLeasing.{field}")),
            "{field}={value}\n{output}"
        );
    }
    assert!(!support::exists(&quorum.servers[0], &support::key("job")));
}

/// A port where nothing answers Redis yet: a listener that closes each connection, until
/// `leasectl` has connected `times` times (answers then, with the listener gone).
fn refuse_until_tried(listener: TcpListener, times: usize) {
    for _ in 0..times {
        let (connection, _) = listener.accept().expect("leasectl connects");
        drop(connection);
    }
}

/// Runs `command` (whose endpoint is 127.0.0.1:`port`, where nothing listens yet) until it
/// says on stderr that Redis is not reachable yet, then starts the server there; answers the
/// exit status, stderr and the server.
fn server_after_start(mut command: Command, port: u16) -> (ExitStatus, String, LateServer) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, said) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = loop {
        match said.recv_timeout(LIMIT) {
            Ok(line) if line.contains("not reachable yet") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    let server = started.then(|| LateServer::start(port));
    let exited = support::eventually(LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
    let _ = child.kill();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        started && exited,
        "started {started}, exited {exited}: {stderr}"
    );
    (status, stderr, server.unwrap())
}

#[test]
fn abort_on_connect_fail_false_waits_for_a_server_that_comes_up_later() {
    let tool = Leasectl::new();
    settings_file(&tool, serde_json::json!({ "AbortOnConnectFail": false }));
    let port = support::free_port();
    let mut command = tool.command();
    command
        .args(["--endpoint", &format!("redis://127.0.0.1:{port}")])
        .args(["exec", "job", "--wait", "1m", "--", "true"]);
    let (status, stderr, server) = server_after_start(command, port);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(server.exists(&support::fence_key("job")), "{stderr}");

    // `abortConnect=False` in a connection string does the same, for `acquire`.
    let tool = Leasectl::new();
    let port = support::free_port();
    let mut command = tool.command();
    command
        .args([
            "--endpoint",
            &format!("127.0.0.1:{port},ssl=False,abortConnect=False"),
        ])
        .args(["acquire", "job", "--wait", "1m", "--json"]);
    let (status, stderr, server) = server_after_start(command, port);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(server.exists(&support::key("job")), "{stderr}");
}

#[test]
fn abort_on_connect_fail_true_exits_1_at_once_whatever_the_wait() {
    let tool = Leasectl::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = tool.command();
    command
        .args(["--endpoint", &format!("redis://127.0.0.1:{port}")])
        .args(["exec", "job", "--wait", "10m", "--", "true"]);
    let exec = Running::spawn(command);
    refuse_until_tried(listener, 1);
    // Nothing listens any more: the command fails without waiting its 10 minutes (LIMIT).
    let output = exec.finish();
    let error = output.failed_with(1);
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{output}");
}

/// A `redis-server` started on a port a command already uses (killed on drop).
struct LateServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LateServer {
    /// Starts it and waits until it answers.
    fn start(port: u16) -> LateServer {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let server = LateServer {
            child,
            port,
            _dir: dir,
        };
        let up = support::eventually(BOUND, || server.query("PING", "").is_ok());
        assert!(up, "redis-server did not come up on port {port}");
        server
    }

    fn query(&self, command: &str, key: &str) -> redis::RedisResult<redis::Value> {
        let url = format!("redis://127.0.0.1:{}", self.port);
        let mut connection = redis::Client::open(url)?.get_connection()?;
        let mut command = redis::cmd(command);
        if !key.is_empty() {
            command.arg(key);
        }
        command.query(&mut connection)
    }

    fn exists(&self, key: &str) -> bool {
        matches!(self.query("EXISTS", key), Ok(redis::Value::Int(1)))
    }
}

impl Drop for LateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

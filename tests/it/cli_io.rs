//! The binary's input and output under hostile use (issue 13 items 2, 3, 12, 13, 14): a stdout
//! whose reader goes away or that cannot grow, a stderr that is closed, a forced release whose
//! key changes while the prompt is open, release by id of other tools' formats, values that
//! carry control characters, and small things of the command line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::termios::{tcgetattr, LocalFlags};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

use crate::process::{complete, on_a_terminal, Output, LIMIT};
use crate::support::{self, eventually, exists, get, hgetall, Leasectl, RedisServer};

const JOB: &str = "job";

/// The exit code of a command whose stdout could not be written (README "Exit codes").
const STDOUT_FAILED: i32 = 141;

// ---------------------------------------------------------------------------------------------
// Item 3: a closed or full stdout/stderr

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    writer
}

/// Runs `command` to its end with `stdout` and `stderr` as given (`None`: captured); answers
/// how it ended and what was captured.
fn run_with(mut command: Command, stdout: Option<Stdio>, stderr: Option<Stdio>) -> Output {
    let (capture_out, capture_err) = (stdout.is_none(), stderr.is_none());
    command
        .stdout(stdout.unwrap_or_else(Stdio::piped))
        .stderr(stderr.unwrap_or_else(Stdio::piped));
    let mut child = command.spawn().expect("start leasectl");
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(
        capture_out
            .then(|| child.stdout.take())
            .flatten()
            .map(|p| Box::new(p) as _),
    );
    let err = read(
        capture_err
            .then(|| child.stderr.take())
            .flatten()
            .map(|p| Box::new(p) as _),
    );
    let exited = eventually(LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(exited, "leasectl did not exit within {LIMIT:?}\n{output}");
    output
}

#[test]
fn run_whose_reader_goes_away_releases_the_lease_and_exits_141() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = leasectl.against(&server);
    command
        .args(["run", "--instance", "a", "--region", "r", "--lease", JOB])
        .args(["--work", "60s", "--ttl", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start leasectl");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    // Like `leasectl run ... | head`: read until the lease is held, then close the pipe.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let acquired = lines.any(|line| line.is_ok_and(|l| l.contains("Lock acquired")));
    assert!(acquired, "run never acquired");
    assert!(exists(&server, &support::key(JOB)));
    drop(lines);
    // The next "Working..." tick finds the pipe closed.
    let exited = eventually(LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    let stderr = stderr.join().unwrap_or_default();
    assert!(exited, "run kept working with nobody reading\n{stderr}");
    assert_eq!(status.code(), Some(STDOUT_FAILED), "{status}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !exists(&server, &support::key(JOB)),
        "the lease was left held for its TTL"
    );
}

/// A server where holder `a` (region `r`) holds `JOB` for a minute, and a leasectl for it.
fn held_by_a() -> (RedisServer, Leasectl) {
    let server = RedisServer::start();
    let key = support::key(JOB);
    support::write_lease(&server, &key, ("a", "r"), 1, Duration::from_secs(60));
    (server, Leasectl::new())
}

#[test]
fn inspect_to_a_full_disk_says_so_in_one_line_and_exits_141() {
    let (server, leasectl) = held_by_a();
    for args in [&["inspect", JOB][..], &["inspect", "--all", "--json"]] {
        let mut command = leasectl.against(&server);
        command.args(args);
        let full = File::create("/dev/full").expect("/dev/full");
        let output = run_with(command, Some(full.into()), None);
        let error = output.failed_with(STDOUT_FAILED);
        assert!(
            error.contains("cannot write to stdout"),
            "{args:?}\n{output}"
        );
    }
}

#[test]
fn no_command_panics_on_a_closed_stdout() {
    let (server, leasectl) = held_by_a();
    let key = support::key(JOB);
    let commands: [&[&str]; 9] = [
        &["inspect", JOB],
        &["inspect", "--all"],
        &["inspect", JOB, "--json"],
        &["inspect", "--all", "--watch"],
        &["inspect", "free-one", "--wait-free", "1s"],
        &["release", JOB, "--lease-id", "not-the-id"],
        &["fence", "set", "report", "v", "--token", "5"],
        &["run", "--instance", "b", "--region", "r", "--lease", JOB],
        &["completions", "bash"],
    ];
    for args in commands {
        let mut command = leasectl.against(&server);
        command.args(args);
        let output = run_with(command, Some(closed_pipe().into()), None);
        // A closed pipe is the reader having gone: no message, no backtrace.
        assert_eq!(output.code(), STDOUT_FAILED, "{args:?}\n{output}");
        assert_eq!(output.stderr, "", "{args:?}\n{output}");
    }
    assert_eq!(
        hgetall(&server, &key)["leaseId"],
        "id-of-a",
        "the lease was untouched"
    );
}

#[test]
fn a_closed_stderr_changes_no_exit_code() {
    let (server, leasectl) = held_by_a();
    // exec's note that the lease is held elsewhere, and an error line, go to a closed stderr.
    let mut exec = leasectl.against(&server);
    exec.args(["exec", JOB, "--", "true"]);
    let held = run_with(exec, None, Some(closed_pipe().into()));
    assert_eq!(held.code(), 3, "{held}");
    let mut unreachable = leasectl.command();
    let url = format!("redis://127.0.0.1:{}", support::free_port());
    unreachable.args(["--endpoint", &url, "inspect", JOB]);
    let failed = run_with(unreachable, None, Some(closed_pipe().into()));
    assert_eq!(failed.code(), 1, "{failed}");
}

// ---------------------------------------------------------------------------------------------
// Item 2: a forced release deletes only what was shown and confirmed

/// `leasectl ARGS` on a pseudo-terminal.
struct Pty {
    session: PtySession,
    master: File,
}

impl Pty {
    fn spawn(leasectl: &Leasectl, server: &RedisServer, args: &[&str]) -> Pty {
        Pty::spawn_command(leasectl.against(server), args)
    }

    /// `base ARGS` on a pseudo-terminal.
    fn spawn_command(base: Command, args: &[&str]) -> Pty {
        let session = on_a_terminal(&base, args);
        let master = session.process().get_file_handle().expect("pty master");
        Pty { session, master }
    }

    /// Waits for `prompt`, then until the program reads the terminal (echo off), then types.
    fn answer(&mut self, prompt: &str, keys: &str) {
        self.session.exp_string(prompt).expect("the prompt");
        let reading = eventually(LIMIT, || {
            let mode = tcgetattr(&self.master).expect("terminal mode");
            !mode.local_flags.contains(LocalFlags::ECHO)
        });
        assert!(reading, "the prompt never read the terminal");
        self.session.send(keys).expect("type");
        self.session.flush().expect("type");
    }

    /// Waits for the end; answers the exit code and what was printed after the answer.
    fn finish(&mut self) -> (i32, String) {
        let rest = self.session.exp_eof().expect("the end");
        match self.session.process().wait().expect("wait") {
            WaitStatus::Exited(_, code) => (code, rest),
            other => panic!("{other:?}\n{rest}"),
        }
    }
}

/// Redis commands that write a key (`{K}` stands for it).
type Writes = Vec<Vec<&'static str>>;

/// A key in each format inspect reads, as another program writes it: `(name, first holder,
/// the holder that takes its place while the prompt is open)`.
fn formats() -> Vec<(&'static str, Writes, Writes)> {
    let json_a = r#"{"leaseId":"L1","ownerId":"net-a","acquiredAt":"2026-01-01T00:00:00Z"}"#;
    let json_b = r#"{"leaseId":"L2","ownerId":"net-b","acquiredAt":"2026-01-01T00:00:01Z"}"#;
    vec![
        (
            "token",
            vec![vec!["SET", "{K}", "token-of-a", "PX", "60000"]],
            vec![vec!["SET", "{K}", "token-of-b", "PX", "60000"]],
        ),
        (
            "json",
            vec![vec!["SET", "{K}", json_a, "PX", "60000"]],
            vec![vec!["SET", "{K}", json_b, "PX", "60000"]],
        ),
        (
            "hash without leaseId",
            vec![vec!["HSET", "{K}", "owner", "a", "since", "1"]],
            vec![vec!["HSET", "{K}", "owner", "b"]],
        ),
        (
            "hash with leaseId",
            vec![vec![
                "HSET",
                "{K}",
                "leaseId",
                "id-a",
                "meta_instanceId",
                "a",
            ]],
            vec![vec![
                "HSET",
                "{K}",
                "leaseId",
                "id-b",
                "meta_instanceId",
                "b",
            ]],
        ),
        (
            "list",
            vec![vec!["RPUSH", "{K}", "a"]],
            vec![vec!["DEL", "{K}"], vec!["SADD", "{K}", "b"]],
        ),
    ]
}

fn apply(server: &RedisServer, key: &str, commands: &[Vec<&str>]) {
    for command in commands {
        let args: Vec<&str> = command
            .iter()
            .map(|a| if *a == "{K}" { key } else { a })
            .collect();
        let _: redis::Value = server.query(&args);
    }
}

/// Every key's type and content: to show what a command left.
fn dump(server: &RedisServer, key: &str) -> String {
    let kind: String = server.query(&["TYPE", key]);
    let content = match kind.as_str() {
        "string" => format!("{:?}", get(server, key)),
        "hash" => format!("{:?}", hgetall(server, key)),
        "list" => format!(
            "{:?}",
            server.query::<Vec<String>>(&["LRANGE", key, "0", "-1"])
        ),
        "set" => format!("{:?}", server.query::<Vec<String>>(&["SMEMBERS", key])),
        _ => String::new(),
    };
    format!("{kind} {content}")
}

#[test]
fn a_forced_release_deletes_nothing_when_the_key_changed_while_the_prompt_was_open() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    for (format, first, next) in formats() {
        let _: i64 = server.query(&["DEL", &key]);
        apply(&server, &key, &first);
        let mut pty = Pty::spawn(&leasectl, &server, &["release", JOB, "--force"]);
        pty.session.exp_string("Force-release").expect("the prompt");
        // A new holder takes the lease while the operator reads the prompt.
        let _: i64 = server.query(&["DEL", &key]);
        apply(&server, &key, &next);
        let taken_over = dump(&server, &key);
        pty.answer("?", "y");
        let (code, printed) = pty.finish();
        assert_eq!(code, 3, "{format}: {printed}");
        assert!(
            printed.contains("nothing was deleted"),
            "{format}: {printed}"
        );
        assert_eq!(
            dump(&server, &key),
            taken_over,
            "{format}: the new holder was deleted"
        );
    }
}

#[test]
fn in_quorum_mode_a_forced_release_deletes_nothing_that_changed_while_the_prompt_was_open() {
    let quorum = support::Quorum::start(3);
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    for server in &quorum.servers {
        let _: () = server.query(&["SET", &key, "token-of-a", "PX", "60000"]);
    }
    let mut pty = Pty::spawn_command(
        leasectl.against_quorum(&quorum),
        &["release", JOB, "--force"],
    );
    pty.session.exp_string("Force-release").expect("the prompt");
    for server in &quorum.servers {
        let _: () = server.query(&["SET", &key, "token-of-b", "PX", "60000"]);
    }
    pty.answer("?", "y");
    let (code, printed) = pty.finish();
    assert_eq!(code, 3, "{printed}");
    for server in &quorum.servers {
        assert_eq!(
            get(server, &key).as_deref(),
            Some("token-of-b"),
            "{printed}"
        );
    }
}

#[test]
fn a_forced_release_deletes_the_key_it_showed_in_every_format() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    for (format, first, _) in formats() {
        apply(&server, &key, &first);
        let mut pty = Pty::spawn(&leasectl, &server, &["release", JOB, "--force"]);
        pty.answer("Force-release", "y");
        let (code, printed) = pty.finish();
        assert_eq!(code, 0, "{format}: {printed}");
        assert!(!exists(&server, &key), "{format}: {}", dump(&server, &key));
    }
}

// ---------------------------------------------------------------------------------------------
// Item 13: release by id of other tools' formats

#[test]
fn release_by_id_matches_a_json_leases_lease_id_and_a_plain_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    let json = r#"{"leaseId":"L1","ownerId":"net-a","acquiredAt":"2026-01-01T00:00:00Z"}"#;
    for (value, right, wrong) in [(json, "L1", "L2"), ("token-of-a", "token-of-a", "token")] {
        let _: () = server.query(&["SET", &key, value, "PX", "60000"]);
        let mut refused = leasectl.against(&server);
        refused.args(["release", JOB, "--lease-id", wrong]);
        let refused = complete(refused);
        refused.expect(3);
        assert_eq!(get(&server, &key).as_deref(), Some(value), "{refused}");
        let mut released = leasectl.against(&server);
        released.args(["release", JOB, "--lease-id", right]);
        let released = complete(released);
        released.expect(0);
        assert!(!exists(&server, &key), "{value}: {released}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 12: values read from Redis are data, not terminal input

#[test]
fn control_characters_in_a_holders_fields_are_shown_escaped() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    let forged = "evil\nheld by admin\x1b[31m";
    let _: i64 = server.query(&[
        "HSET",
        &key,
        "leaseId",
        "id\r1",
        "meta_instanceId",
        forged,
        "note\x1b]0;title\x07",
        "tab\there",
    ]);
    let _: i64 = server.query(&["PEXPIRE", &key, "60000"]);
    // A key under the prefix whose very name would clear the screen.
    let _: () = server.query(&["SET", &support::key("x\x1b[2Jy"), "t"]);
    let run = |args: &[&str]| {
        let mut command = leasectl.against(&server);
        command.args(args);
        complete(command)
    };
    for args in [
        &["inspect", JOB][..],
        &["inspect", "--all"],
        &["release", JOB, "--lease-id", "other"],
        &["run", "--instance", "b", "--region", "r", "--lease", JOB],
        &["exec", JOB, "--", "true"],
        &["inspect", JOB, "--wait-free", "10ms"],
    ] {
        let output = run(args);
        let printed = format!("{}{}", output.stdout, output.stderr);
        assert!(
            !printed.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: a raw control character\n{output}"
        );
        assert!(
            !printed.lines().any(|l| l.starts_with("held by admin")),
            "{args:?}: a forged line\n{output}"
        );
        assert!(
            printed.contains("evil\\nheld by admin\\x1b[31m"),
            "{args:?}\n{output}"
        );
    }
    let json = run(&["inspect", JOB, "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("valid JSON");
    assert_eq!(value["metadata"]["instanceId"], forged);
    assert_eq!(value["format"], "hash");
}

#[test]
fn inspect_json_names_the_format_of_every_kind_of_key() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    let json = r#"{"leaseId":"L1","ownerId":"net-a"}"#;
    for (setup, format) in [
        (vec!["HSET", &key, "leaseId", "x"], "hash"),
        (vec!["SET", &key, json], "json"),
        (vec!["SET", &key, "token"], "string"),
        (vec!["RPUSH", &key, "a"], "list"),
    ] {
        let _: i64 = server.query(&["DEL", &key]);
        let _: redis::Value = server.query(&setup);
        let mut command = leasectl.against(&server);
        command.args(["inspect", JOB, "--json"]);
        let output = complete(command);
        let value: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
        assert_eq!(value["format"], format, "{output}");
    }
    let _: i64 = server.query(&["DEL", &key]);
    let mut free = leasectl.against(&server);
    free.args(["inspect", JOB, "--json"]);
    let free = complete(free);
    let value: serde_json::Value = serde_json::from_str(&free.stdout).expect("JSON");
    assert!(value.get("format").is_none(), "{free}");
}

// ---------------------------------------------------------------------------------------------
// Item 14: small things

#[test]
fn a_usage_error_ends_with_one_hint() {
    let leasectl = Leasectl::new();
    for args in [&["run", "--ttl", "soon"][..], &["inspect", "--bogus"]] {
        let mut command = leasectl.command();
        command.args(args);
        let output = complete(command);
        let error = output.failed_with(2);
        assert!(error.ends_with("(see --help)"), "{output}");
        assert!(!error.contains("For more information"), "{output}");
        assert_eq!(output.stderr.lines().count(), 1, "{output}");
    }
    // No command at all: an error naming the commands, not the help's first line.
    let output = complete(leasectl.command());
    let error = output.failed_with(2);
    assert!(error.contains("run, inspect, release"), "{output}");
}

#[test]
fn ages_print_as_their_two_largest_units() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let key = support::key(JOB);
    let age = Duration::from_secs(3 * 86_400 + 4 * 3_600 + 1_800);
    let at = std::time::SystemTime::now() - age;
    let at = humantime::format_rfc3339_millis(at).to_string();
    let _: i64 = server.query(&["HSET", &key, "leaseId", "x", "acquiredAt", &at]);
    let mut command = leasectl.against(&server);
    command.args(["inspect", "--all"]);
    let output = complete(command);
    output.expect(0);
    let row = output
        .stdout
        .lines()
        .find(|l| l.starts_with(JOB))
        .expect("a row");
    assert!(row.contains(" 3d 4h "), "{output}");
}

#[test]
fn auth_to_a_server_without_a_password_says_the_server_has_none() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    let url = format!("redis://:secret@127.0.0.1:{}", server.port);
    command.args(["--endpoint", &url, "inspect", JOB]);
    let output = complete(command);
    let error = output.failed_with(1);
    assert!(error.contains("no password"), "{output}");
}

#[test]
fn a_ttl_shorter_than_a_few_round_trips_is_warned_about() {
    let server = RedisServer::start();
    let proxy = crate::proxy::Proxy::start(server.port);
    proxy.set_latency(Duration::from_millis(100));
    let leasectl = Leasectl::new();
    let mut short = leasectl.command();
    short.args([
        "--endpoint",
        &proxy.url(),
        "exec",
        JOB,
        "--ttl",
        "300ms",
        "--",
        "true",
    ]);
    let output = complete(short);
    assert!(output.stderr.contains("round trips"), "{output}");
    proxy.heal();
    // The short lease may be lost at its first renewal and left to run out (300 ms): wait.
    let mut long = leasectl.command();
    long.args([
        "--endpoint",
        &proxy.url(),
        "exec",
        JOB,
        "--ttl",
        "30s",
        "--wait",
        "10s",
        "--",
        "true",
    ]);
    let output = complete(long);
    output.expect(0);
    assert!(!output.stderr.contains("round trips"), "{output}");
}

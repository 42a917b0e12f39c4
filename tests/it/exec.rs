//! `leasectl exec`, `fence set` and `inspect --wait-free` end to end: real `redis-server`s,
//! real `leasectl` processes and real `sh` children, checked by exit codes, what the children
//! record in files, and what is in Redis.

mod tree;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leasectl::{FencedWrite, LeaseClient};

use crate::leases::{acquired, options};
use crate::process::Output;
use crate::support::{
    self, eventually, exists, get, hgetall, subscribers, Leasectl, RedisServer, LIMIT,
};

/// The lease the tests hold, and its key under the default prefix.
const JOB: &str = "job";
const KEY: &str = "lease:job";
/// Where a release of `job` is published (waiters subscribe to it).
const RELEASED: &str = "lease:@released{lease:job}";

// ---------------------------------------------------------------------------------------------
// Processes

/// A started process whose stdout and stderr go to anonymous files; killed on drop. (Not a
/// [`crate::process::Running`]: a child of `exec` that outlived it would hold pipes open.)
struct Proc {
    child: Child,
    stdout: File,
    stderr: File,
}

impl Proc {
    fn spawn(mut command: Command) -> Proc {
        let stdout = tempfile::tempfile().expect("temp file");
        let stderr = tempfile::tempfile().expect("temp file");
        let child = command
            .stdout(Stdio::from(stdout.try_clone().unwrap()))
            .stderr(Stdio::from(stderr.try_clone().unwrap()))
            .spawn()
            .expect("start leasectl");
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to end (killing it past [`LIMIT`]) and answers what it printed.
    fn finish(mut self) -> Output {
        let exited = eventually(LIMIT, || self.has_exited());
        if !exited {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait for leasectl");
        let done = Output {
            status,
            stdout: read_all(&mut self.stdout),
            stderr: read_all(&mut self.stderr),
        };
        assert!(exited, "leasectl did not exit within {LIMIT:?}\n{done}");
        done
    }

    /// Waits until the file `path` holds a whole line (a child's record) and answers its
    /// first line; fails if this process ends first.
    fn record(&mut self, path: &Path) -> String {
        let mut ended = false;
        let found = eventually(LIMIT, || {
            if read_record(path).is_some() {
                return true;
            }
            ended = self.has_exited();
            ended
        });
        match read_record(path) {
            Some(line) if found => line,
            _ => {
                let why = if ended { "ended" } else { "hung" };
                let done = self.take();
                panic!(
                    "leasectl {why} before {} was written\n{done}",
                    path.display()
                )
            }
        }
    }

    /// Kills the process and answers what it printed, for a failure message.
    fn take(&mut self) -> Output {
        let _ = self.child.kill();
        Output {
            status: self.child.wait().expect("wait for leasectl"),
            stdout: read_all(&mut self.stdout),
            stderr: read_all(&mut self.stderr),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all(file: &mut File) -> String {
    let mut text = String::new();
    file.rewind().unwrap();
    let _ = file.read_to_string(&mut text);
    text
}

/// The first line of `path` once a whole line is there (`echo` writes it in one go).
fn read_record(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.ends_with('\n')
        .then(|| text.lines().next().unwrap_or_default().to_string())
}

/// `leasectl exec JOB FLAGS... -- sh -c SCRIPT sh ARGS...` against `server`.
fn exec(
    leasectl: &Leasectl,
    server: &RedisServer,
    flags: &[&str],
    script: &str,
    args: &[&str],
) -> Command {
    let mut command = leasectl.against(server);
    command
        .args(["exec", JOB])
        .args(flags)
        .args(["--", "sh", "-c", script, "sh"])
        .args(args);
    command
}

/// `leasectl ARGS` against `server`, run to its end.
fn leasectl_done(leasectl: &Leasectl, server: &RedisServer, args: &[&str]) -> Output {
    let mut command = leasectl.against(server);
    command.args(args);
    Proc::spawn(command).finish()
}

/// A child's script: records its pid in `TAG.pid`, then waits until `TAG.go` exists.
fn until_go(tag: &str) -> String {
    format!("echo $$ > {tag}.pid; while [ ! -e {tag}.go ]; do sleep 0.05; done")
}

/// As [`until_go`], recording SIGTERM in `TAG.term` (then exit 42) and SIGINT in `TAG.int`
/// (then exit 43).
fn trapping(tag: &str) -> String {
    format!(
        "trap 'echo TERM > {tag}.term; exit 42' TERM; trap 'echo INT > {tag}.int; exit 43' INT; {}",
        until_go(tag)
    )
}

/// Tells the child of `tag` to finish.
fn go(leasectl: &Leasectl, tag: &str) {
    File::create(leasectl.dir().join(format!("{tag}.go"))).unwrap();
}

fn path(leasectl: &Leasectl, name: &str) -> PathBuf {
    leasectl.dir().join(name)
}

/// An `exec` holding JOB (default TTL, renewed) once this returns, its child running until
/// `TAG.go` exists; answers it with its child's pid.
fn holding(leasectl: &Leasectl, server: &RedisServer, tag: &str) -> (Proc, u32) {
    let mut holder = Proc::spawn(exec(leasectl, server, &[], &until_go(tag), &[]));
    let pid = holder.record(&path(leasectl, &format!("{tag}.pid")));
    (holder, pid.parse().unwrap())
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Waits until someone waits on JOB's release, while `waiter` keeps running.
fn wait_for_subscriber(server: &RedisServer, waiter: &mut Proc) {
    let subscribed = eventually(LIMIT, || {
        subscribers(&mut server.connection(), RELEASED) >= 1 || waiter.has_exited()
    });
    assert!(
        subscribed && !waiter.has_exited(),
        "the waiter did not wait on the release channel\n{}",
        waiter.take()
    );
}

// ---------------------------------------------------------------------------------------------
// The child's exit code and environment

#[test]
fn exit_code_is_the_childs_and_the_lease_is_released() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("kill -KILL $$", 128 + 9)] {
        let done = Proc::spawn(exec(&leasectl, &server, &[], script, &[])).finish();
        done.expect(code);
        assert!(!exists(&server, KEY), "`{script}` left the lease\n{done}");
    }
}

#[test]
fn the_child_sees_its_lease_id_and_fencing_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let script = format!(
        "echo \"$LEASECTL_LEASE $LEASECTL_LEASE_ID $LEASECTL_FENCING_TOKEN\" > env; {}",
        until_go("child")
    );
    let mut job = Proc::spawn(exec(&leasectl, &server, &[], &script, &[]));
    let env = job.record(&path(&leasectl, "env"));
    let fields: Vec<&str> = env.split(' ').collect();
    let stored = hgetall(&server, KEY);
    assert_eq!(fields.len(), 3, "LEASECTL_* of the child: {env:?}");
    assert_eq!(fields[0], JOB, "LEASECTL_LEASE");
    assert_eq!(Some(fields[1]), stored.get("leaseId").map(String::as_str));
    assert_eq!(
        Some(fields[2]),
        stored.get("fencingToken").map(String::as_str)
    );
    go(&leasectl, "child");
    job.finish().expect(0);
    assert!(!exists(&server, KEY), "released after the child's exit");
}

// ---------------------------------------------------------------------------------------------
// Contention

#[test]
fn of_ten_at_once_exactly_one_runs_and_nine_exit_3() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    // Each records that its command started, then waits for `all.go`.
    let script = "echo $$ > ran-$1; while [ ! -e all.go ]; do sleep 0.05; done";
    let mut jobs: Vec<Proc> = (0..10)
        .map(|i| Proc::spawn(exec(&leasectl, &server, &[], script, &[&i.to_string()])))
        .collect();
    let ran = |i: usize| path(&leasectl, &format!("ran-{i}")).exists();
    // Wait until each one has either ended or started its command.
    let settled = eventually(LIMIT, || {
        jobs.iter_mut()
            .enumerate()
            .all(|(i, job)| ran(i) || job.has_exited())
    });
    assert!(settled, "not every exec ended or ran within {LIMIT:?}");
    let running: Vec<usize> = (0..10).filter(|&i| ran(i)).collect();
    assert_eq!(
        running.len(),
        1,
        "exactly one runs the command: {running:?}"
    );
    let winner = running[0];
    let winner_pid = jobs[winner].pid();
    assert!(!jobs[winner].has_exited(), "the winner is still running");
    let mut winning = None;
    for (i, job) in jobs.drain(..).enumerate() {
        if i == winner {
            winning = Some(job);
            continue;
        }
        let done = job.finish();
        done.expect(3);
        assert!(
            done.stderr.contains("is held by") && done.stderr.contains(&format!(":{winner_pid}")),
            "a loser names the holder\n{done}"
        );
        assert!(!ran(i), "a loser ran the command\n{done}");
    }
    assert!(exists(&server, KEY), "the winner still holds the lease");
    File::create(path(&leasectl, "all.go")).unwrap();
    winning.unwrap().finish().expect(0);
    assert!(!exists(&server, KEY), "released after the winner's exit");
    assert_eq!((0..10).filter(|&i| ran(i)).count(), 1);
}

#[test]
fn wait_runs_the_command_once_the_holder_releases() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let holder_token: u64 = hgetall(&server, KEY)["fencingToken"].parse().unwrap();
    let mut waiter = Proc::spawn(exec(
        &leasectl,
        &server,
        &["--wait", "20s"],
        "echo $LEASECTL_FENCING_TOKEN > waiter.ran",
        &[],
    ));
    wait_for_subscriber(&server, &mut waiter);
    assert!(!path(&leasectl, "waiter.ran").exists(), "ran while held");
    go(&leasectl, "holder");
    holder.finish().expect(0);
    let done = waiter.finish();
    done.expect(0);
    let token = read_record(&path(&leasectl, "waiter.ran"))
        .unwrap_or_else(|| panic!("the waiter's command did not run\n{done}"));
    let token: u64 = token.parse().expect("a fencing token");
    assert!(
        token > holder_token,
        "the next fencing token: {token} after {holder_token}"
    );
    assert!(!exists(&server, KEY), "released after the waiter's exit");
}

// ---------------------------------------------------------------------------------------------
// Signals

/// Sends `signal` to a running `exec` and checks that its child got it.
fn forwards(signal: &str, record: &str, code: i32) {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut job = Proc::spawn(exec(&leasectl, &server, &[], &trapping("child"), &[]));
    job.record(&path(&leasectl, "child.pid"));
    support::signal(job.pid(), signal);
    let done = job.finish();
    done.expect(code);
    let got = read_record(&path(&leasectl, &format!("child.{record}")));
    assert_eq!(got.as_deref(), Some(signal), "the child's trap\n{done}");
    assert!(!exists(&server, KEY), "released after SIG{signal}\n{done}");
}

#[test]
fn sigterm_is_forwarded_and_the_lease_released() {
    forwards("TERM", "term", 42);
}

#[test]
fn sigint_is_forwarded_and_the_lease_released() {
    forwards("INT", "int", 43);
}

#[test]
fn the_child_dies_with_a_killed_exec() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (mut job, child) = holding(&leasectl, &server, "child");
    assert!(alive(child));
    let _ = job.child.kill();
    let _ = job.child.wait();
    assert!(
        eventually(LIMIT, || !alive(child)),
        "the child {child} outlived its exec"
    );
}

// ---------------------------------------------------------------------------------------------
// A lost lease stops the child

/// `exec` with a 2 s TTL renewed every 300 ms.
fn renewing_exec(leasectl: &Leasectl, server: &RedisServer, flags: &[&str], script: &str) -> Proc {
    let mut command = exec(
        leasectl,
        server,
        &[&["--ttl", "2s"], flags].concat(),
        script,
        &[],
    );
    command.env("RedisLeasing__AutoRenewInterval", "300ms");
    Proc::spawn(command)
}

#[test]
fn deleting_the_key_stops_the_child_and_exits_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut job = renewing_exec(&leasectl, &server, &[], &trapping("child"));
    job.record(&path(&leasectl, "child.pid"));
    let _: i64 = redis::cmd("DEL")
        .arg(KEY)
        .query(&mut server.connection())
        .unwrap();
    let done = job.finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost") && done.stderr.contains("deleted"),
        "says the lease was lost and why\n{done}"
    );
    let got = read_record(&path(&leasectl, "child.term"));
    assert_eq!(
        got.as_deref(),
        Some("TERM"),
        "the child got SIGTERM\n{done}"
    );
}

#[test]
fn a_forced_release_stops_the_child_at_once_not_at_the_next_renewal() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    // Renewal only every 10 minutes: the release announcement alone can stop the child in time.
    let mut command = exec(
        &leasectl,
        &server,
        &["--ttl", "30m"],
        &trapping("child"),
        &[],
    );
    command.env("RedisLeasing__AutoRenewInterval", "10m");
    let mut job = Proc::spawn(command);
    job.record(&path(&leasectl, "child.pid"));
    let released = leasectl_release_force(&leasectl, &server);
    assert_eq!(released, 0, "release --force --yes");
    let done = job.finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    let got = read_record(&path(&leasectl, "child.term"));
    assert_eq!(
        got.as_deref(),
        Some("TERM"),
        "the child got SIGTERM\n{done}"
    );
}

/// `leasectl release job --force --yes`; answers its exit code.
fn leasectl_release_force(leasectl: &Leasectl, server: &RedisServer) -> i32 {
    let status = leasectl
        .against(server)
        .args(["release", JOB, "--force", "--yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run leasectl release");
    status.code().unwrap_or(-1)
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_and_the_new_holder_kept() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let script = format!("trap 'echo TERM > child.term' TERM; {}", until_go("child"));
    let mut job = renewing_exec(&leasectl, &server, &["--kill-after", "1s"], &script);
    let child: u32 = job.record(&path(&leasectl, "child.pid")).parse().unwrap();
    // Someone else takes the lease over.
    let _: () = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(KEY)
        .arg("leaseId")
        .arg("intruder")
        .arg("meta_instanceId")
        .arg("intruder")
        .ignore()
        .cmd("PEXPIRE")
        .arg(KEY)
        .arg(60_000)
        .ignore()
        .query(&mut server.connection())
        .unwrap();
    let done = job.finish();
    done.expect(4);
    assert_eq!(
        read_record(&path(&leasectl, "child.term")).as_deref(),
        Some("TERM"),
        "the child got SIGTERM first\n{done}"
    );
    assert!(!alive(child), "the child was killed\n{done}");
    assert_eq!(
        hgetall(&server, KEY).get("leaseId").map(String::as_str),
        Some("intruder"),
        "the new holder's lease is left alone\n{done}"
    );
}

#[test]
fn renewal_stopping_stops_the_child_and_exits_4() {
    // No renewal at all: the lease ends at its TTL, and the child with it. (The TTL, like
    // the hold cap below, leaves `sh` ample time to set its trap on a loaded machine.)
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = exec(
        &leasectl,
        &server,
        &["--ttl", "3s"],
        &trapping("child"),
        &[],
    );
    command.env("RedisLeasing__AutoRenew", "false");
    let done = Proc::spawn(command).finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    assert!(path(&leasectl, "child.term").exists(), "SIGTERM\n{done}");

    // Redis stops answering: renewal cannot be confirmed in time.
    let mut job = renewing_exec(&leasectl, &server, &[], &trapping("paused"));
    job.record(&path(&leasectl, "paused.pid"));
    server.pause();
    let done = job.finish();
    server.resume();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    assert!(
        done.stderr.contains("could not release"),
        "says the release failed\n{done}"
    );
    assert!(path(&leasectl, "paused.term").exists(), "SIGTERM\n{done}");
}

#[test]
fn max_hold_ends_the_child_and_exits_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let command = exec(
        &leasectl,
        &server,
        &["--max-hold", "2s"],
        &trapping("child"),
        &[],
    );
    let done = Proc::spawn(command).finish();
    done.expect(4);
    assert!(
        done.stderr.contains("hold-time cap"),
        "names the cap\n{done}"
    );
    assert!(path(&leasectl, "child.term").exists(), "SIGTERM\n{done}");
    assert!(!exists(&server, KEY), "released at the cap\n{done}");
}

// ---------------------------------------------------------------------------------------------
// Fencing

#[test]
fn fence_set_refuses_an_older_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let set = |value: &str, token: &str| {
        leasectl_done(
            &leasectl,
            &server,
            &["fence", "set", "report", value, "--token", token],
        )
    };
    let done = set("v1", "5");
    done.expect(0);
    assert!(done.stdout.contains("Wrote report"), "{done}");
    assert_eq!(get(&server, "report").as_deref(), Some("v1"));

    let done = set("v0", "4");
    done.expect(3);
    assert!(done.stdout.contains("Refused"), "{done}");
    assert_eq!(get(&server, "report").as_deref(), Some("v1"), "left alone");

    set("v1-again", "5").expect(0);
    assert_eq!(
        get(&server, "report").as_deref(),
        Some("v1-again"),
        "same token"
    );
    set("v2", "6").expect(0);
    assert_eq!(get(&server, "report").as_deref(), Some("v2"), "newer token");
    set("v1-late", "5").expect(3);
    assert_eq!(get(&server, "report").as_deref(), Some("v2"), "left alone");
}

#[test]
fn a_paused_holders_write_is_refused_after_the_next_holder_wrote() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime
        .block_on(LeaseClient::connect(server.settings()))
        .expect("connect");
    // Holder A takes the lease without renewal, and then "pauses" past its TTL.
    let options = options(Duration::from_secs(1));
    let lease_a = acquired(runtime.block_on(client.try_acquire(JOB, &options)));
    let token_a = lease_a.fencing_token();
    assert!(eventually(LIMIT, || !exists(&server, KEY)), "A expired");

    // Holder B is an `exec` whose job writes with its token from the environment.
    let script =
        "\"$1\" --endpoint \"$2\" fence set report \"B\" --token \"$LEASECTL_FENCING_TOKEN\" \
                  && echo $LEASECTL_FENCING_TOKEN > b.token";
    let binary = support::binary();
    let url = server.url();
    let done = Proc::spawn(exec(
        &leasectl,
        &server,
        &[],
        script,
        &[binary.to_str().unwrap(), &url],
    ))
    .finish();
    done.expect(0);
    let token_b: u64 = read_record(&path(&leasectl, "b.token"))
        .unwrap_or_else(|| panic!("B's job did not write\n{done}"))
        .parse()
        .unwrap();
    assert!(
        token_b > token_a,
        "B's token {token_b} is newer than A's {token_a}"
    );
    assert_eq!(get(&server, "report").as_deref(), Some("B"));

    // A wakes up and writes with its old token: refused, from the library and the shell.
    let write = runtime.block_on(client.fenced_set("report", "A", token_a));
    assert_eq!(write.unwrap(), FencedWrite::Stale { newest: token_b });
    let done = leasectl_done(
        &leasectl,
        &server,
        &[
            "fence",
            "set",
            "report",
            "A",
            "--token",
            &token_a.to_string(),
        ],
    );
    done.expect(3);
    assert_eq!(
        get(&server, "report").as_deref(),
        Some("B"),
        "B's value stays"
    );
    drop(lease_a);
}

// ---------------------------------------------------------------------------------------------
// inspect --wait-free

#[test]
fn wait_free_on_a_free_lease_exits_0() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let done = leasectl_done(&leasectl, &server, &["inspect", JOB, "--wait-free", "20s"]);
    done.expect(0);
    assert!(done.stdout.contains("job is free"), "{done}");
}

#[test]
fn wait_free_wakes_on_a_release() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let mut command = leasectl.against(&server);
    command.args(["inspect", JOB, "--wait-free", "20s"]);
    let mut waiter = Proc::spawn(command);
    wait_for_subscriber(&server, &mut waiter);
    go(&leasectl, "holder");
    holder.finish().expect(0);
    let done = waiter.finish();
    done.expect(0);
    assert!(done.stdout.contains("job is free"), "{done}");
}

#[test]
fn wait_free_runs_out_with_exit_3_and_names_the_holder() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let done = leasectl_done(&leasectl, &server, &["inspect", JOB, "--wait-free", "1s"]);
    done.expect(3);
    let held_by = format!("still held by {}", hgetall(&server, KEY)["meta_instanceId"]);
    assert!(
        done.stdout.contains(&held_by),
        "expected {held_by:?}\n{done}"
    );
    assert!(
        done.stdout.contains(&format!(":{}", holder.pid())),
        "{done}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_input_exits_2_without_running_anything() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for args in [
        &["exec", JOB, "--"][..],
        &["exec", JOB],
        &["exec", "", "--", "sh", "-c", "echo > ran"],
        &["fence", "set", "report", "v"],
        &["fence", "set", "report", "v", "--token", "-1"],
        &["fence", "set", "report", "v", "--token", "x"],
    ] {
        let done = leasectl_done(&leasectl, &server, args);
        done.expect(2);
        assert!(done.stderr.contains("error:"), "{args:?} says why\n{done}");
    }
    assert!(!path(&leasectl, "ran").exists(), "a command ran");
    assert!(!exists(&server, KEY), "no lease taken");
    assert!(get(&server, "report").is_none(), "nothing written");
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126_and_releases() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    std::fs::write(path(&leasectl, "not-executable"), "#!/bin/sh\n").unwrap();
    for (command, code) in [("./no-such-command", 127), ("./not-executable", 126)] {
        let done = leasectl_done(&leasectl, &server, &["exec", JOB, "--", command]);
        done.expect(code);
        assert!(done.stderr.contains("cannot run"), "{done}");
        assert!(!exists(&server, KEY), "`{command}` left the lease\n{done}");
    }
}

//! `leasectl exec`, `fence set` and `inspect --wait-free` end to end: real `redis-server`s,
//! real `leasectl` processes and real `sh` children, checked by exit codes, what the children
//! record in files, and what is in Redis.

mod bad_input;
mod child;
mod contention;
mod fencing;
mod lost_lease;
mod signals;
mod tree;
mod wait_free;

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

/// [`exec`] with no arguments after the script, started.
fn spawn_exec(leasectl: &Leasectl, server: &RedisServer, flags: &[&str], script: &str) -> Proc {
    Proc::spawn(exec(leasectl, server, flags, script, &[]))
}

/// Someone else ends the lease: its key is deleted.
fn delete_lease(server: &RedisServer) {
    let _: i64 = redis::cmd("DEL")
        .arg(KEY)
        .query(&mut server.connection())
        .unwrap();
}

/// Checks that the child recorded a SIGTERM in `file` (see [`trapping`]).
fn assert_got_sigterm(leasectl: &Leasectl, file: &str, done: &Output) {
    assert_eq!(
        read_record(&path(leasectl, file)).as_deref(),
        Some("TERM"),
        "the child got SIGTERM ({file})\n{done}"
    );
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

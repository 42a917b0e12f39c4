//! `exec` stops its command's whole process tree (issue 13 item 1): a shell script that starts
//! a background worker appending to a file, and the worker is gone after a lost lease, the
//! hold cap, SIGTERM to `exec`, SIGKILL of `exec` (then by its guard), and after the script
//! itself ended; on a terminal the command still reads it and gets Ctrl-C and Ctrl-Z, and a
//! job stopped by it stops and continues whole in a shell with job control.

use std::process::Command;

use rexpect::session::PtySession;

use super::{
    alive, assert_got_sigterm, delete_lease, path, read_record, renewing_exec, spawn_exec,
    trapping, Proc, JOB, KEY, LIMIT,
};
use crate::support::{self, eventually, exists, Leasectl, RedisServer};

/// A command whose shell first starts a worker in the background — it appends a line to
/// `TAG.out` every 50 ms, records a SIGTERM in `TAG.worker-term` and goes on — then runs
/// `rest` (which records `TAG.pid`).
/// The usual command of these tests: a background worker, then a shell that traps signals
/// (tag `t`).
fn worker_script() -> String {
    with_worker("t", &trapping("t"))
}

/// `job` (running a [`with_worker`] script tagged `t`) and its process tree, once it is up.
fn worker_tree(mut job: Proc, leasectl: &Leasectl) -> (Proc, Tree) {
    let tree = Tree::of(&mut job, leasectl, "t");
    (job, tree)
}

fn with_worker(tag: &str, rest: &str) -> String {
    format!(
        "(trap 'echo TERM > {tag}.worker-term' TERM; \
          while :; do echo x >> {tag}.out; sleep 0.05; done) & \
         echo $! > {tag}.worker; {rest}"
    )
}

/// The command's processes once it runs: its shell, the worker and their group.
struct Tree {
    shell: u32,
    worker: u32,
    group: u32,
    /// `exec`'s own group (the test's), which the command must not share.
    exec_group: u32,
}

impl Tree {
    /// Waits until the command of `job` runs and its worker writes.
    fn of(job: &mut Proc, leasectl: &Leasectl, tag: &str) -> Tree {
        let shell: u32 = job
            .record(&path(leasectl, &format!("{tag}.pid")))
            .parse()
            .unwrap();
        let worker: u32 = job
            .record(&path(leasectl, &format!("{tag}.worker")))
            .parse()
            .unwrap();
        let out = path(leasectl, &format!("{tag}.out"));
        let writing = eventually(LIMIT, || std::fs::metadata(&out).is_ok_and(|m| m.len() > 0));
        assert!(writing, "the worker never wrote\n{}", job.take());
        Tree {
            shell,
            worker,
            group: group_of(worker).expect("the worker's group"),
            exec_group: group_of(job.pid()).expect("exec's group"),
        }
    }

    /// Whether any process of the tree (its group included) still lives.
    fn alive(&self) -> bool {
        alive(self.shell) || alive(self.worker) || group_alive(self.group)
    }

    /// Checks that nothing of the tree is left, that the worker got SIGTERM first, and that
    /// its file no longer grows.
    fn assert_gone(&self, leasectl: &Leasectl, tag: &str, context: &dyn std::fmt::Display) {
        assert!(
            !alive(self.worker),
            "the worker {} goes on writing\n{context}",
            self.worker
        );
        assert_ne!(
            self.group, self.exec_group,
            "the command runs in a group of its own\n{context}"
        );
        assert!(
            !self.alive(),
            "a process of the command's group {} is left\n{context}",
            self.group
        );
        assert_eq!(
            read_record(&path(leasectl, &format!("{tag}.worker-term"))).as_deref(),
            Some("TERM"),
            "the worker got SIGTERM first\n{context}"
        );
        let out = path(leasectl, &format!("{tag}.out"));
        let size = std::fs::metadata(&out).unwrap().len();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    }
}

/// The process group of `pid`, from `/proc/PID/stat` (after the name: state, parent, group).
fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a live process (not a zombie) is in group `group`.
fn group_alive(group: u32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| alive(pid) && group_of(pid) == Some(group))
}

/// `exec` (with `flags`) of [`worker_script`], renewing as [`renewing_exec`] does when
/// `renewing`, and its tree once it runs.
fn exec_tree(
    leasectl: &Leasectl,
    server: &RedisServer,
    flags: &[&str],
    renewing: bool,
) -> (Proc, Tree) {
    let script = worker_script();
    let job = if renewing {
        renewing_exec(leasectl, server, flags, &script)
    } else {
        spawn_exec(leasectl, server, flags, &script)
    };
    worker_tree(job, leasectl)
}

#[test]
fn a_lost_lease_stops_the_commands_whole_tree() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (job, tree) = exec_tree(&leasectl, &server, &["--kill-after", "1s"], true);
    delete_lease(&server);
    let done = job.finish();
    done.expect(4);
    tree.assert_gone(&leasectl, "t", &done);
}

#[test]
fn a_stopped_command_still_gets_sigterm_first_when_the_lease_is_lost() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (job, tree) = exec_tree(&leasectl, &server, &["--kill-after", "3s"], true);
    let group = nix::unistd::Pid::from_raw(tree.group as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGSTOP).unwrap();
    delete_lease(&server);
    let done = job.finish();
    done.expect(4);
    assert_got_sigterm(&leasectl, "t.term", &done);
    tree.assert_gone(&leasectl, "t", &done);
}

#[test]
fn max_hold_stops_the_commands_whole_tree() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let flags = ["--max-hold", "3s", "--kill-after", "1s"];
    let (job, tree) = exec_tree(&leasectl, &server, &flags, false);
    let done = job.finish();
    done.expect(4);
    assert!(done.stderr.contains("hold-time cap"), "{done}");
    tree.assert_gone(&leasectl, "t", &done);
}

#[test]
fn sigterm_to_exec_stops_the_commands_whole_tree_before_the_release() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (job, tree) = exec_tree(&leasectl, &server, &["--kill-after", "1s"], false);
    support::signal(job.pid(), "TERM");
    let done = job.finish();
    done.expect(42);
    tree.assert_gone(&leasectl, "t", &done);
    assert!(!exists(&server, KEY), "released\n{done}");
}

#[test]
fn a_killed_exec_takes_the_commands_whole_tree_with_it() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    // The shell ignores SIGTERM too: SIGKILL after --kill-after ends it.
    let script = with_worker("t", &format!("trap '' TERM; {}", super::until_go("t")));
    let job = spawn_exec(&leasectl, &server, &["--kill-after", "1s"], &script);
    let (mut job, tree) = worker_tree(job, &leasectl);
    let _ = job.child.kill();
    let _ = job.child.wait();
    let gone = eventually(LIMIT, || !alive(tree.worker) && !tree.alive());
    assert!(gone, "the command's tree outlived its killed exec");
    tree.assert_gone(&leasectl, "t", &"after SIGKILL of exec");
}

#[test]
fn what_the_command_leaves_running_is_stopped_before_the_release() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let script = with_worker("t", &format!("{}; exit 7", super::until_go("t")));
    let (job, tree) = worker_tree(spawn_exec(&leasectl, &server, &[], &script), &leasectl);
    super::go(&leasectl, "t");
    let done = job.finish();
    done.expect(7);
    tree.assert_gone(&leasectl, "t", &done);
    assert!(!exists(&server, KEY), "released\n{done}");
}

// ---------------------------------------------------------------------------------------------
// On a terminal

/// `bash -m -c SCRIPT` on a pseudo-terminal: a shell with job control, as at a person's
/// terminal, that runs `leasectl exec` in `SCRIPT` as `$L`.
fn on_terminal(leasectl: &Leasectl, server: &RedisServer, script: &str) -> PtySession {
    let base = leasectl.against(server);
    let mut command = Command::new("bash");
    command
        .args(["--norc", "--noprofile", "-m", "-c", script, "bash"])
        .arg(base.get_program())
        .current_dir(base.get_current_dir().expect("a working folder"))
        .env("L", base.get_program())
        .env("U", server.url())
        .env("TERM", "dumb");
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    rexpect::session::spawn_command(command, Some(LIMIT.as_millis() as u64))
        .expect("start bash on a pseudo-terminal")
}

/// Waits until `text` appears on the terminal.
fn expect(session: &mut PtySession, text: &str) {
    if let Err(error) = session.exp_string(text) {
        panic!("waiting for {text:?} on the terminal: {error}");
    }
}

#[test]
fn on_a_terminal_the_command_reads_it_and_gets_ctrl_c() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let child = "trap 'echo INT > t.int; exit 43' INT; echo ready; read line; \
                 echo \"got $line\" > t.line; echo asked; while :; do sleep 0.05; done";
    let script = format!(
        "$L --endpoint $U exec {JOB} -- sh -c {}; echo \"exec exited $?\"",
        shell_quote(&with_worker("t", &format!("echo $$ > t.pid; {child}")))
    );
    let mut session = on_terminal(&leasectl, &server, &script);
    expect(&mut session, "ready");
    session.send_line("hello").unwrap();
    expect(&mut session, "asked");
    assert_eq!(
        read_record(&path(&leasectl, "t.line")).as_deref(),
        Some("got hello"),
        "the command read the terminal"
    );
    let worker: u32 = read_record(&path(&leasectl, "t.worker"))
        .unwrap()
        .parse()
        .unwrap();
    session.send_control('c').unwrap();
    expect(&mut session, "exec exited 43");
    assert_eq!(
        read_record(&path(&leasectl, "t.int")).as_deref(),
        Some("INT")
    );
    assert!(!alive(worker), "the worker was stopped");
    assert!(!exists(&server, KEY), "released");
}

#[test]
fn on_a_terminal_ctrl_z_stops_the_job_and_fg_continues_it() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let child = "echo ready; read line; echo \"got $line\" > t.line; echo asked; read again; \
                 echo \"got $again\" > t.again; exit 5";
    let script = format!(
        "$L --endpoint $U exec {JOB} -- sh -c {}; echo \"exec stopped $?\"; fg; \
         echo \"exec exited $?\"",
        shell_quote(child)
    );
    let mut session = on_terminal(&leasectl, &server, &script);
    expect(&mut session, "ready");
    session.send_line("one").unwrap();
    expect(&mut session, "asked");
    session.send_control('z').unwrap();
    expect(&mut session, "exec stopped 148");
    session.send_line("two").unwrap();
    expect(&mut session, "exec exited 5");
    assert_eq!(
        read_record(&path(&leasectl, "t.line")).as_deref(),
        Some("got one")
    );
    assert_eq!(
        read_record(&path(&leasectl, "t.again")).as_deref(),
        Some("got two")
    );
    assert!(!exists(&server, KEY), "released");
}

#[test]
fn in_the_background_a_command_reading_the_terminal_stops_the_job_until_fg() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let child = "read line; echo \"got $line\" > t.line; exit 5";
    let script = format!(
        "$L --endpoint $U exec {JOB} -- sh -c {} & \
         until jobs -l | grep -q Stopped; do sleep 0.1; done; echo \"job stopped\"; fg; \
         echo \"exec exited $?\"",
        shell_quote(child)
    );
    let mut session = on_terminal(&leasectl, &server, &script);
    expect(&mut session, "job stopped");
    session.send_line("hello").unwrap();
    expect(&mut session, "exec exited 5");
    assert_eq!(
        read_record(&path(&leasectl, "t.line")).as_deref(),
        Some("got hello")
    );
    assert!(!exists(&server, KEY), "released");
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

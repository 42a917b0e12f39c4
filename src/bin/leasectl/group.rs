//! The process group `exec` runs its command in, so that the whole tree the command starts
//! (shells, their background workers) can be stopped at once, and the guard that stops it
//! when `exec` dies.
//!
//! The group is made by the guard (a second `leasectl` process, see [`crate::guard`]): it
//! leads the group and the command joins it, so the group exists before the command runs and
//! keeps its id while the guard lives. The guard holds the read end of a pipe whose only
//! write end `exec` holds; when `exec` dies in any way (SIGKILL too) the kernel closes it, the
//! guard reads end of file, and it stops the group: SIGTERM, then SIGKILL after the grace.
//! While `exec` lives it stops the group itself ([`Group::stop`]) and the guard only follows.

use std::io::PipeWriter;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How often a group is looked at while waiting for it to end.
const POLL: Duration = Duration::from_millis(10);

/// The command's process group, led by its guard.
pub struct Group {
    guard: tokio::process::Child,
    /// The write end of the guard's pipe: dropping it tells the guard that we are gone.
    alive: Option<PipeWriter>,
    pgid: Pid,
}

impl Group {
    /// Starts the guard, which makes the group; `grace` is how long the group has between
    /// SIGTERM and SIGKILL when we die.
    pub fn start(grace: Duration) -> std::io::Result<Group> {
        // Both ends are close-on-exec: neither the guard nor the command inherits the write
        // end (the guard gets the read end as its stdin, which dup2 keeps open).
        let (read, write) = std::io::pipe()?;
        let mut guard = std::process::Command::new("/proc/self/exe");
        guard
            .arg0("leasectl")
            .arg(crate::guard::ARG)
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0);
        // SAFETY: between fork and exec only sigaction, which is async-signal-safe.
        unsafe {
            guard.pre_exec(|| {
                // Ignored from before it runs: a signal for the group or the terminal
                // (Ctrl-C, Ctrl-Z, a hangup, our own SIGTERM to the group) must not end or
                // stop the guard; SIG_IGN survives exec.
                for signal in crate::guard::IGNORED {
                    nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn)?;
                }
                Ok(())
            });
        }
        let guard = tokio::process::Command::from(guard).spawn()?;
        let pgid = Pid::from_raw(guard.id().expect("a running guard has a pid") as i32);
        Ok(Group {
            guard,
            alive: Some(write),
            pgid,
        })
    }

    /// The group's id, for the command to join (`process_group`).
    pub fn id(&self) -> Pid {
        self.pgid
    }

    /// Sends `signal` to every process of the group (the guard ignores the catchable ones).
    pub fn signal(&self, signal: Signal) {
        let _ = killpg(self.pgid, signal);
    }

    /// Sends `signal`, then SIGCONT: a stopped process acts on it now, not once continued.
    pub fn signal_awake(&self, signal: Signal) {
        self.signal(signal);
        self.signal(Signal::SIGCONT);
    }

    /// Stops every process of the group but the guard: SIGTERM (and SIGCONT), and SIGKILL for whatever is
    /// left after `grace`; returns once none is left. Nothing is signalled when nothing but
    /// the guard is left.
    pub async fn stop(&self, grace: Duration) {
        let guard = self.guard.id();
        if !alive(self.pgid, guard) {
            return;
        }
        self.signal_awake(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while alive(self.pgid, guard) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        if alive(self.pgid, guard) {
            self.signal(Signal::SIGKILL);
        }
        while alive(self.pgid, guard) {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lets the guard go once the group is stopped ([`Group::stop`]), and waits for it: when
    /// this returns, no process of the group is left.
    pub async fn end(mut self) {
        self.alive = None;
        let _ = self.guard.wait().await;
        // Only a process that joined the group behind our back could be left: the group's id
        // stays taken while it lives.
        while alive(self.pgid, None) {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether group `pgid` has a live process (zombies are dead) other than `except`, from
/// `/proc` (which starting the guard needed too); when it cannot be read, as if it had one.
pub fn alive(pgid: Pid, except: Option<u32>) -> bool {
    // The kernel knows no process of the group, not even a zombie.
    if killpg(pgid, None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| Some(pid) != except)
        .any(|pid| live_member(pid, pgid))
}

/// Whether process `pid` is alive and in group `pgid`, from `/proc/PID/stat`: after the
/// command name in parentheses come the state, the parent's pid and the group.
fn live_member(pid: u32, pgid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
    !matches!(state, "Z" | "X" | "x") && group == Some(pgid.as_raw())
}

//! The controlling terminal of `exec`, whose command runs in a process group of its own.
//! When `exec` is the foreground job, the command's group becomes the foreground group
//! instead, so that the command reads the terminal and gets Ctrl-C and Ctrl-Z straight from
//! it, as it would without `exec`; `exec` takes the terminal back when the command ends. When
//! the command is stopped (Ctrl-Z, or reading the terminal from the background), `exec` stops
//! its own job too, so that the shell sees the job stopped; once `fg` or `bg` continue it,
//! `exec` lends the terminal again if the job is in the foreground and continues the command.

use std::fs::File;

use nix::sys::signal::{killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// The controlling terminal, shared with the command's group.
pub struct Terminal {
    tty: File,
    /// `exec`'s own group (the shell's job).
    ours: Pid,
    /// The command's group.
    group: Pid,
    /// Our signal mask before SIGTTOU was blocked.
    mask: SigSet,
}

impl Terminal {
    /// Opens the controlling terminal (`None` without one) and, when our group is its
    /// foreground group, makes `group` the foreground group instead.
    pub fn open(group: Pid) -> Option<Terminal> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // From the background, taking the terminal back and writing to it (with `stty
        // tostop`) raise SIGTTOU, which would stop us and leave the command unwatched:
        // blocked, they simply go through. (A command starts with an empty mask.)
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut mask)).ok()?;
        let terminal = Terminal {
            tty,
            ours: getpgrp(),
            group,
            mask,
        };
        terminal.lend();
        Some(terminal)
    }

    /// After the command's process `pid` was stopped: takes the terminal back and stops our
    /// own job the same way (a group that no shell controls is not stopped by it); once
    /// continued, lends the terminal again and continues the command's group. Does nothing
    /// when `pid` is not stopped.
    pub fn follow_stop(&self, pid: u32) {
        // WSTOPPED without WEXITED: an exit is left for the command's own wait.
        let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG;
        let stopped_by = match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::Stopped(_, signal)) => signal,
            _ => return,
        };
        let signal = match stopped_by {
            Signal::SIGTTIN | Signal::SIGTTOU => stopped_by,
            // Not SIGSTOP: nothing might ever continue a group that no shell controls.
            _ => Signal::SIGTSTP,
        };
        self.take_back();
        // Stops us here until SIGCONT.
        let _ = killpg(self.ours, signal);
        self.lend();
        let _ = killpg(self.group, Signal::SIGCONT);
    }

    /// Makes the command's group the foreground group if ours is.
    fn lend(&self) {
        if tcgetpgrp(&self.tty) == Ok(self.ours) {
            let _ = tcsetpgrp(&self.tty, self.group);
        }
    }

    /// Gives the terminal back to our own group, if the command's group has it.
    fn take_back(&self) {
        if tcgetpgrp(&self.tty) == Ok(self.group) {
            let _ = tcsetpgrp(&self.tty, self.ours);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.take_back();
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.mask), None);
    }
}

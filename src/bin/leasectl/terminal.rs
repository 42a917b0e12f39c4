//! The terminal for `exec`'s command, which runs in a process group of its own: when `exec`
//! is the foreground job of its controlling terminal, the command's group becomes the
//! foreground group instead, so that the command can read the terminal and gets Ctrl-C and
//! Ctrl-Z straight from it, as it would without `exec`. `exec` takes the terminal back when
//! the command ends, and when Ctrl-Z stopped the command it stops itself too, so that the
//! shell sees the job stopped; `fg` or `bg` continue both.

use std::fs::File;

use nix::sys::signal::{killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// The controlling terminal, lent to the command's group.
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
    /// Makes `group` the foreground group when our own group is: `None` when there is no
    /// controlling terminal or we run in the background.
    pub fn lend(group: Pid) -> Option<Terminal> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let ours = getpgrp();
        if tcgetpgrp(&tty).ok()? != ours {
            return None;
        }
        // In the background, writing to the terminal (with `stty tostop`) and taking it back
        // raise SIGTTOU, which would stop us and leave the command unwatched: blocked, they
        // simply go through. (A command starts with an empty mask.)
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut mask)).ok()?;
        let terminal = Terminal {
            tty,
            ours,
            group,
            mask,
        };
        tcsetpgrp(&terminal.tty, group).ok()?;
        Some(terminal)
    }

    /// After the command's process `pid` was stopped (Ctrl-Z): takes the terminal back and
    /// stops our own job, as if Ctrl-Z had reached it; once continued (`fg`, `bg`), lends the
    /// terminal again if the job is in the foreground, and continues the command's group.
    /// Does nothing when `pid` is not stopped.
    pub fn follow_stop(&self, pid: u32) {
        // WSTOPPED without WEXITED: an exit is left for the command's own wait.
        let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG;
        let pid = Pid::from_raw(pid as i32);
        if !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::Stopped(..))) {
            return;
        }
        self.take_back();
        // Stops us here until SIGCONT (a group that no shell controls is not stopped).
        let _ = killpg(self.ours, Signal::SIGTSTP);
        if tcgetpgrp(&self.tty) == Ok(self.ours) {
            let _ = tcsetpgrp(&self.tty, self.group);
        }
        let _ = killpg(self.group, Signal::SIGCONT);
    }

    /// Gives the terminal back to our own group, if the command's group still has it.
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

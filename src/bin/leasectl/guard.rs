//! The guard of `exec`'s process group (see [`crate::group`]): `leasectl __exec-guard
//! GRACE_MS`, started by `exec` only, never by hand. It leads the command's process group,
//! ignores the signals meant for the command, and waits for end of file on its stdin — the
//! pipe whose write end only `exec` holds. Then `exec` is gone (it ended, or it was killed,
//! even by SIGKILL): whatever is left of the group gets SIGTERM, and SIGKILL after the grace.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, getpid};

use crate::output::exit;

/// The hidden first argument that makes `leasectl` a guard.
pub const ARG: &str = "__exec-guard";

/// What the guard ignores (set before it runs, by `exec`): what a terminal sends its
/// foreground group (Ctrl-C, Ctrl-\, Ctrl-Z, a hangup, background reads and writes), the
/// SIGTERM that `exec` and the guard send the group, and a closed pipe.
pub const IGNORED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPIPE,
];

/// How often the group is looked at during the grace.
const POLL: Duration = Duration::from_millis(10);

/// Runs the guard when this process was started as one; `None` otherwise.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let grace = args
        .next()
        .and_then(|arg| arg.to_str()?.parse::<u64>().ok())
        .map(Duration::from_millis);
    // Only as the leader of its own group (as `exec` starts it) does it stop anything.
    match grace {
        Some(grace) if getpgrp() == getpid() && args.next().is_none() => {
            guard(grace);
            Some(ExitCode::SUCCESS)
        }
        _ => {
            crate::output::errln!("leasectl: {ARG} is internal to `leasectl exec`");
            Some(ExitCode::from(exit::USAGE))
        }
    }
}

fn guard(grace: Duration) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 64];
    loop {
        match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let group = getpgrp();
    let me = getpid().as_raw() as u32;
    let others = || crate::group::alive(group, Some(me));
    if !others() {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    // A stopped process acts on it now.
    let _ = killpg(group, Signal::SIGCONT);
    let deadline = Instant::now() + grace;
    while others() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    if others() {
        // Ends the guard too, last.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

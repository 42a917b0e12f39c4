//! Running `leasectl` processes: stdout read line by line as it comes, stderr kept whole, a
//! time limit on every wait, and what a finished process printed and how it ended.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;

use crate::support;

pub use super::json::parse_json;
pub use super::limits::LIMIT;

/// A `leasectl` process whose stdout is read line by line as it comes; killed on drop.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout: String,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leasectl");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        Running {
            child,
            lines,
            stdout: String::new(),
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit code once it has ended (`None` while it runs).
    pub fn exit_code(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// Reads stdout until a line contains `needle`, and answers that line.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let output = self.finish_in_place();
                    panic!("no {needle:?} within {LIMIT:?}\n{output}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let output = self.finish_in_place();
                    panic!("leasectl ended before printing {needle:?}\n{output}")
                }
            }
        }
    }

    /// Waits for the process to end (killing it after [`LIMIT`]) and answers everything it
    /// printed.
    pub fn finish(mut self) -> Output {
        self.finish_in_place()
    }

    fn finish_in_place(&mut self) -> Output {
        let child = &mut self.child;
        let exited = support::eventually(LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait for leasectl");
        // The reader sees the end of the pipe once the process is gone.
        while let Ok(line) = self.lines.recv_timeout(LIMIT) {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        let output = Output {
            status,
            stdout: self.stdout.clone(),
            stderr: stderr.unwrap_or_default(),
        };
        assert!(exited, "leasectl did not exit within {LIMIT:?}\n{output}");
        output
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end (killed past [`LIMIT`]).
/// `leasectl run` as one worker (instance `a`, region `r`) on lease `job`, working `work`: the
/// arguments after the program.
pub fn run_job(work: &str) -> [&str; 9] {
    [
        "run",
        "--instance",
        "a",
        "--region",
        "r",
        "--lease",
        "job",
        "--work",
        work,
    ]
}

/// `leasectl run`'s winner as the competition demo runs it, working one second.
pub const SHORT_RUN: &[&str] = &[
    "run",
    "--instance",
    "us-east-1",
    "--region",
    "us-east",
    "--work",
    "1s",
];

/// `base ARGS` on a pseudo-terminal of 40 rows and 100 columns with echo on (`TERM=xterm`), in
/// `base`'s working folder and environment; every expectation fails after [`LIMIT`].
pub fn on_a_terminal(base: &Command, args: &[&str]) -> rexpect::session::PtySession {
    let mut command = Command::new("sh");
    command
        .args(["-c", "stty echo rows 40 cols 100; exec \"$0\" \"$@\""])
        .arg(base.get_program())
        .args(base.get_args())
        .args(args)
        .current_dir(base.get_current_dir().expect("a working folder"))
        .env("TERM", "xterm");
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    rexpect::session::spawn_command(command, Some(LIMIT.as_millis() as u64))
        .expect("start leasectl on a pseudo-terminal")
}

pub fn complete(command: Command) -> Output {
    Running::spawn(command).finish()
}

/// What a finished `leasectl` printed, and how it ended.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code (a test fails when a signal ended the process instead).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("leasectl was ended by a signal\n{self}"))
    }

    /// Asserts the exit code, and that nothing panicked.
    pub fn expect(&self, code: i32) -> &Output {
        assert_eq!(self.code(), code, "exit code\n{self}");
        assert!(!self.stderr.contains("panicked"), "a panic\n{self}");
        self
    }

    /// Asserts exit code 0.
    pub fn succeeded(&self) {
        assert_eq!(self.code(), 0, "{self}");
    }

    /// Asserts the exit code and that stderr states one error (a line containing `error:`;
    /// clap adds a usage hint below its own), and answers that line; fails on a panic.
    pub fn failed_with(&self, code: i32) -> &str {
        self.one_error_line(code, |line| line.contains("error:"))
    }

    /// As [`Output::failed_with`] for a `-vvv` run, whose other lines on stderr are logs: the
    /// error is the one line that starts with `leasectl: error:`.
    pub fn failed_verbosely_with(&self, code: i32) -> &str {
        self.one_error_line(code, |line| line.starts_with("leasectl: error:"))
    }

    /// Asserts that no secret is anywhere in stdout or stderr (a failure shows them masked).
    pub fn shows_none_of(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(!secret.is_empty());
            if self.stdout.contains(secret) || self.stderr.contains(secret) {
                let mask = |text: &str| {
                    secrets
                        .iter()
                        .fold(text.to_string(), |t, s| t.replace(s, "<SECRET>"))
                };
                panic!(
                    "a secret is in the output\n--- stdout\n{}--- stderr\n{}",
                    mask(&self.stdout),
                    mask(&self.stderr)
                );
            }
        }
    }

    /// Asserts the exit code and answers the one line of stderr that `is_error` picks out;
    /// fails on a panic.
    fn one_error_line(&self, code: i32, is_error: impl Fn(&str) -> bool) -> &str {
        assert_eq!(self.code(), code, "exit code\n{self}");
        assert!(!self.stderr.contains("panicked"), "a panic\n{self}");
        let lines: Vec<&str> = self.stderr.lines().filter(|line| is_error(line)).collect();
        assert_eq!(lines.len(), 1, "exactly one error line expected\n{self}");
        lines[0]
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout\n{}--- stderr\n{}---",
            self.status, self.stdout, self.stderr
        )
    }
}

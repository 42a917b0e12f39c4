//! `leasectl configure` (issue 3): the wizard through a real pseudo-terminal (rexpect) against
//! real `redis-server` processes, its flag-only form, the first-run offer of `run`, and
//! `scripts/setup-resources.sh` (local servers, and its Azure path with a fake `az`).

mod azure_names;
mod flags;
mod setup_azure;
mod setup_local;
mod wizard;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sys::termios::{tcgetattr, LocalFlags};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use serde_json::{json, Value};

use crate::process::{on_a_terminal, SHORT_RUN};
use crate::support::{eventually, free_port, Leasectl, RedisServer, LIMIT};

const ENTER: &str = "\r";
const DOWN: &str = "\x1b[B";
const CTRL_C: &str = "\x03";
const FILE: &str = "appsettings.Local.json";

// The wizard's prompts, as the user reads them.
const MODE: &str = "How does leasectl authenticate to Redis?";
const HOST_PORT: &str = "Redis host:port";
const ADDRESS: &str = "Azure cache name, host:port, or a full connection string";
const PASSWORD: &str = "Password or access key";
const ACL_USER: &str = "ACL user";
const TLS: &str = "Use TLS?";
const PREFIX: &str = "Key prefix";
const DATABASE: &str = "Database number";
const QUORUM: &str = "Add more Redis instances for quorum mode";
const REPLACE: &str = "Replace it?";
const WHAT_NOW: &str = "What now?";

/// `leasectl ARGS` on a pseudo-terminal, as at a person's terminal: echo on, a real size.
struct Pty {
    session: PtySession,
    /// The master side, to read the terminal's mode.
    master: fs::File,
    /// Everything the program wrote that was matched so far (bytes as Latin-1 chars, the way
    /// rexpect reads them).
    seen: String,
}

impl Pty {
    fn spawn(leasectl: &Leasectl, args: &[&str]) -> Pty {
        let session = on_a_terminal(&leasectl.command(), args);
        let master = session.process().get_file_handle().expect("pty master");
        Pty {
            session,
            master,
            seen: String::new(),
        }
    }

    /// Waits until `text` appears.
    fn expect(&mut self, text: &str) {
        match self.session.exp_string(&latin1(text)) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(&latin1(text));
            }
            Err(error) => panic!(
                "waiting for {text:?}: {error}\n--- screen so far ---\n{}",
                self.screen()
            ),
        }
    }

    /// Waits for the prompt, then until the program reads the terminal (dialoguer turns echo
    /// off for every prompt: typing earlier would be echoed, or dropped by a password prompt),
    /// then types `keys`.
    fn answer(&mut self, prompt: &str, keys: &str) {
        self.expect(prompt);
        self.type_keys(prompt, keys);
    }

    /// Types `keys` once the program reads the terminal (after `prompt` was seen).
    fn type_keys(&mut self, prompt: &str, keys: &str) {
        let reading = eventually(LIMIT, || {
            let mode = tcgetattr(&self.master).expect("terminal mode");
            !mode.local_flags.contains(LocalFlags::ECHO)
        });
        assert!(reading, "the prompt {prompt:?} never read the terminal");
        self.session.send(keys).expect("type");
        self.session.flush().expect("type");
    }

    /// Local mode with these answers: the host:port, then the defaults, no quorum.
    fn answer_local(&mut self, address: &str) {
        self.answer(MODE, &format!("{DOWN}{DOWN}{ENTER}"));
        self.answer(HOST_PORT, &format!("{address}{ENTER}"));
        self.answer_defaults();
    }

    /// Connection-string mode: host:port, password, ACL user, no TLS, then the defaults.
    fn answer_password(&mut self, address: &str, password: &str, user: &str) {
        self.answer(MODE, ENTER);
        self.answer(ADDRESS, &format!("{address}{ENTER}"));
        self.answer(PASSWORD, &format!("{password}{ENTER}"));
        self.answer(ACL_USER, &format!("{user}{ENTER}"));
        self.answer(TLS, "n");
        self.answer_defaults();
    }

    /// Default key prefix and database, no quorum.
    fn answer_defaults(&mut self) {
        self.answer(PREFIX, ENTER);
        self.answer(DATABASE, ENTER);
        self.answer(QUORUM, "n");
    }

    /// Waits for the end; answers how it ended.
    fn finish(&mut self) -> WaitStatus {
        match self.session.exp_eof() {
            Ok(rest) => self.seen.push_str(&rest),
            Err(error) => panic!(
                "waiting for the end: {error}\n--- screen so far ---\n{}",
                self.screen()
            ),
        }
        self.session.process().wait().expect("wait for leasectl")
    }

    /// Waits for the end and checks it exited 0.
    fn succeeds(&mut self) {
        let status = self.finish();
        assert!(
            matches!(status, WaitStatus::Exited(_, 0)),
            "{status:?}\n--- screen ---\n{}",
            self.screen()
        );
    }

    /// Waits for the end and checks Ctrl-C ended it (exit 130, or killed by SIGINT).
    fn interrupted(&mut self) {
        let status = self.finish();
        assert!(
            matches!(
                status,
                WaitStatus::Exited(_, 130) | WaitStatus::Signaled(_, nix::sys::signal::SIGINT, _)
            ),
            "{status:?}\n--- screen ---\n{}",
            self.screen()
        );
    }

    /// What the program wrote so far, as text (escape sequences included).
    fn screen(&self) -> String {
        let bytes: Vec<u8> = self.seen.chars().map(|c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Text as rexpect sees it: one char per byte.
fn latin1(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

fn settings_path(leasectl: &Leasectl) -> PathBuf {
    leasectl.dir().join(FILE)
}

/// The settings file: mode 0600 and valid JSON.
fn read_settings(path: &Path) -> Value {
    let mode = fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} has mode {:o}",
        path.display(),
        mode
    );
    let text = fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn connection_string(settings: &Value) -> &str {
    settings["RedisLeasing"]["ConnectionString"]
        .as_str()
        .unwrap_or_else(|| panic!("no ConnectionString in {settings}"))
}

/// The names in a folder (to see that nothing, not even a temporary file, was left).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run the command")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `leasectl configure FLAGS` with no terminal, in `leasectl`'s folder.
fn configure_with_flags(leasectl: &Leasectl, flags: &[&str]) -> Output {
    run(leasectl.command().arg("configure").args(flags))
}

/// `leasectl inspect` with the settings in its folder.
fn inspect(leasectl: &Leasectl) -> Output {
    run(leasectl.command().arg("inspect"))
}

/// A server whose default user needs a password, with an ACL user `app` / `apppass`: only the
/// right user and password get in.
fn server_with_acl_user() -> RedisServer {
    let server = RedisServer::start();
    let mut connection = server.connection();
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">apppass", "~*", "&*", "+@all"][..])
        .query::<()>(&mut connection)
        .expect("ACL SETUSER app");
    redis::cmd("ACL")
        .arg(&["SETUSER", "default", "on", "resetpass", ">default-secret"][..])
        .query::<()>(&mut connection)
        .expect("ACL SETUSER default");
    server
}

fn address(server: &RedisServer) -> String {
    format!("127.0.0.1:{}", server.port)
}

// ---------------------------------------------------------------------------------------------
// scripts/setup-resources.sh

/// The script under test.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-resources.sh")
}

/// A folder for one script test: the settings file, the servers' state, HOME.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("out").join(FILE)
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `bash scripts/setup-resources.sh ARGS` writing into this folder.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(script())
            .arg("--output")
            .arg(self.output())
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("LEASECTL_STATE_DIR")
            .current_dir(self.dir.path());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// The pid of local server `n` (1-based), from its pid file.
    fn pid(&self, n: usize) -> u32 {
        let path = self.state().join(format!("redis-{n}")).join("redis.pid");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// `leasectl --config FILE inspect`.
    fn inspect(&self) -> Output {
        let leasectl = Leasectl::new();
        let mut command = leasectl.command();
        command.arg("--config").arg(self.output()).arg("inspect");
        run(&mut command)
    }
}

impl Drop for Setup {
    /// Never leaves a server behind, even when a test fails halfway.
    fn drop(&mut self) {
        if self.state().exists() {
            let _ = self.run(&["--project", "redis", "--stop"]);
        }
    }
}

/// Whether process `pid` is gone (a zombie waiting for its reaper counts as gone).
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

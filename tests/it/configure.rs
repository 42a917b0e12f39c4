//! `leasectl configure` (issue 3): the wizard through a real pseudo-terminal (rexpect) against
//! real `redis-server` processes, its flag-only form, the first-run offer of `run`, and
//! `scripts/setup-resources.sh` (local servers, and its Azure path with a fake `az`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sys::termios::{tcgetattr, LocalFlags};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use serde_json::{json, Value};

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
        let base = leasectl.command();
        let mut command = Command::new("sh");
        command
            .args(["-c", "stty echo rows 40 cols 100; exec \"$0\" \"$@\""])
            .arg(base.get_program())
            .args(args)
            .current_dir(base.get_current_dir().expect("a working folder"))
            .env("TERM", "xterm");
        for (key, value) in base.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let session = rexpect::session::spawn_command(command, Some(LIMIT.as_millis() as u64))
            .expect("start leasectl on a pseudo-terminal");
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

// ----- the wizard on a terminal -----

#[test]
fn local_answers_write_a_private_git_ignored_file_equal_to_the_flags() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(leasectl.dir())
            .args(args)
            .env("HOME", leasectl.dir())
            .output()
            .expect("git")
    };
    assert!(git(&["init", "-q"]).status.success());

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_local(&address(&server));
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        written,
        json!({"RedisLeasing": {
            "ConnectionString": server.url(),
            "KeyPrefix": "lease:",
            "Database": 0
        }})
    );
    assert!(
        git(&["check-ignore", "-q", FILE]).status.success(),
        "{FILE} is not git-ignored; .gitignore: {:?}",
        fs::read_to_string(leasectl.dir().join(".gitignore"))
    );
    assert_exit(&inspect(&leasectl), 0);

    flags_write_the_same(
        &["--auth", "local", "--endpoint", &address(&server)],
        &written,
    );
}

/// `configure` with these flags (no terminal) in a fresh folder: it succeeds and writes
/// exactly `written`, the file the prompts wrote.
fn flags_write_the_same(flags: &[&str], written: &Value) -> Output {
    let by_flags = Leasectl::new();
    let output = configure_with_flags(&by_flags, flags);
    assert_exit(&output, 0);
    assert_eq!(&read_settings(&settings_path(&by_flags)), written);
    output
}

#[test]
fn password_and_acl_user_are_saved_hidden_and_work() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "apppass", "app");
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    let saved = connection_string(&written);
    assert_eq!(
        saved,
        format!(
            "{},password=apppass,ssl=False,user=app,abortConnect=False",
            address(&server)
        )
    );
    let screen = pty.screen();
    assert!(
        !screen.contains("apppass"),
        "the password was shown:\n{screen}"
    );
    assert!(
        screen.contains("password=***"),
        "no masked summary:\n{screen}"
    );
    assert_exit(&inspect(&leasectl), 0);

    let output = flags_write_the_same(
        &["--auth", "connection-string", "--connection-string", saved],
        &written,
    );
    assert!(!text(&output).contains("apppass"), "{}", text(&output));
}

#[test]
fn a_full_connection_string_typed_in_the_wizard_is_repeated_masked() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();
    let typed = format!("{},password=apppass,ssl=False,user=app", address(&server));

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(MODE, ENTER);
    pty.answer(ADDRESS, &format!("{typed}{ENTER}"));
    // The answer is shown back masked before the next question (issue 13, item 10).
    pty.expect(&format!(
        "{},password=***,ssl=False,user=app",
        address(&server)
    ));
    pty.answer_defaults();
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();
    assert_eq!(
        connection_string(&read_settings(&settings_path(&leasectl))),
        typed
    );
}

#[test]
fn a_wrong_password_is_reported_and_asked_again() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "wrongpass", "app");
    pty.expect("The connection test failed");
    pty.expect("authentication failed");
    pty.expect(WHAT_NOW);
    assert!(
        !settings_path(&leasectl).exists(),
        "written before the test passed"
    );
    pty.type_keys(WHAT_NOW, ENTER); // Edit the answers
    pty.answer_password(&address(&server), "apppass", "app");
    pty.expect("PING and a test lease worked");
    pty.expect("Saved");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert!(connection_string(&written).contains(",password=apppass,"));
    let screen = pty.screen();
    for password in ["wrongpass", "apppass"] {
        assert!(
            !screen.contains(password),
            "{password} was shown:\n{screen}"
        );
    }
}

#[test]
fn quitting_after_a_failed_test_writes_nothing() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer_password(&address(&server), "wrongpass", "app");
    pty.expect("authentication failed");
    pty.answer(WHAT_NOW, &format!("{DOWN}{DOWN}{ENTER}")); // Quit without saving
    pty.expect("nothing was written");
    pty.succeeds();

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn ctrl_c_halfway_writes_nothing() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(MODE, &format!("{DOWN}{DOWN}{ENTER}"));
    pty.answer(HOST_PORT, &format!("{}{ENTER}", address(&server)));
    pty.answer(PREFIX, CTRL_C);
    pty.interrupted();

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn ctrl_c_after_agreeing_to_replace_keeps_the_old_file() {
    let server = server_with_acl_user();
    let leasectl = Leasectl::new();
    let old = "{\n  \"RedisLeasing\": {\n    \"ConnectionString\": \"127.0.0.1:1,password=old-secret,ssl=False\"\n  }\n}\n";
    fs::write(settings_path(&leasectl), old).unwrap();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.answer(REPLACE, "y");
    pty.answer(MODE, ENTER);
    pty.answer(ADDRESS, &format!("{}{ENTER}", address(&server)));
    pty.answer(PASSWORD, CTRL_C);
    pty.interrupted();

    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);
    assert_eq!(entries(leasectl.dir()), vec![FILE.to_string()]);
    assert!(!pty.screen().contains("old-secret"), "{}", pty.screen());
}

#[test]
fn declining_to_replace_keeps_the_file_and_shows_it_masked() {
    let leasectl = Leasectl::new();
    let old = "{\n  \"RedisLeasing\": {\n    \"ConnectionString\": \"cache.example:6380,password=old-secret,ssl=True\",\n    \"KeyPrefix\": \"mine:\"\n  }\n}\n";
    fs::write(settings_path(&leasectl), old).unwrap();

    let mut pty = Pty::spawn(&leasectl, &["configure"]);
    pty.expect("already exists");
    pty.expect("cache.example:6380,password=***,ssl=True");
    pty.answer(REPLACE, "n");
    pty.expect("nothing was written");
    pty.succeeds();

    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);
    assert!(!pty.screen().contains("old-secret"), "{}", pty.screen());
}

#[test]
fn first_run_offers_the_wizard_then_wins_the_lease() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();

    let mut pty = Pty::spawn(
        &leasectl,
        &[
            "run",
            "--instance",
            "us-east-1",
            "--region",
            "us-east",
            "--work",
            "1s",
        ],
    );
    pty.expect("No Redis settings found");
    pty.answer("Set up a connection now?", "y");
    pty.answer_local(&address(&server));
    pty.expect("Saved");
    pty.expect("[us-east-1] Attempting lock");
    pty.expect("✓ Lock acquired");
    pty.expect("Lock released");
    pty.succeeds();

    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(connection_string(&written), server.url());
}

// ----- the flags alone, with no terminal -----

#[test]
fn flags_alone_name_what_is_missing() {
    let leasectl = Leasectl::new();

    let output = configure_with_flags(&leasectl, &[]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--auth"), "{}", text(&output));

    let output = configure_with_flags(&leasectl, &["--auth", "connection-string"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--connection-string"),
        "{}",
        text(&output)
    );

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn flags_alone_keep_an_existing_file_without_yes() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let old = "{\"RedisLeasing\": {\"ConnectionString\": \"redis://127.0.0.1:1\"}}\n";
    fs::write(settings_path(&leasectl), old).unwrap();
    let flags = ["--auth", "local", "--endpoint", &address(&server)];

    let output = configure_with_flags(&leasectl, &flags);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--yes"), "{}", text(&output));
    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);

    let output = configure_with_flags(&leasectl, &[&flags[..], &["--yes"]].concat());
    assert_exit(&output, 0);
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(connection_string(&written), server.url());
}

#[test]
fn flags_alone_test_the_connection_unless_told_not_to() {
    let unreachable = format!("127.0.0.1:{}", free_port()); // nothing listens there
    let leasectl = Leasectl::new();

    let output = configure_with_flags(&leasectl, &["--auth", "local", "--endpoint", &unreachable]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("nothing was written"),
        "{}",
        text(&output)
    );
    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());

    let output = configure_with_flags(
        &leasectl,
        &["--auth", "local", "--endpoint", &unreachable, "--no-test"],
    );
    assert_exit(&output, 0);
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        connection_string(&written),
        format!("redis://{unreachable}")
    );
}

// ----- scripts/setup-resources.sh -----

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

#[test]
fn setup_local_writes_settings_reuses_the_server_and_stops_it() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let url = connection_string(&written).to_string();
    let port = url
        .strip_prefix("redis://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a local URL: {url}"))
        .to_string();
    assert_exit(&setup.inspect(), 0);

    let output = setup.run(&["--project", "redis", "--local"]);
    assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("already runs on 127.0.0.1:{port}")),
        "{}",
        text(&output)
    );
    assert_eq!(read_settings(&setup.output()), written);

    let pid = setup.pid(1);
    let output = setup.run(&["--project", "redis", "--stop"]);
    assert_exit(&output, 0);
    assert!(
        eventually(LIMIT, || process_gone(pid)),
        "redis-server {pid} still runs after --stop"
    );
    assert!(
        !setup.state().exists(),
        "--stop left {}",
        setup.state().display()
    );
}

#[test]
fn setup_local_quorum_writes_three_endpoints() {
    let setup = Setup::new();

    let output = setup.run(&["--project", "redis", "--local", "--quorum"]);
    assert_exit(&output, 0);
    let written = read_settings(&setup.output());
    let endpoints: Vec<&str> = written["RedisLeasing"]["Endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no Endpoints in {written}"))
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(endpoints.len(), 3, "{written}");
    assert!(endpoints
        .iter()
        .all(|e| e.starts_with("redis://127.0.0.1:")));
    let mut distinct = endpoints.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{written}");
    for endpoint in &endpoints {
        let leasectl = Leasectl::new();
        assert_exit(
            &run(leasectl.command().args(["--endpoint", endpoint, "inspect"])),
            0,
        );
    }

    let pids: Vec<u32> = (1..=3).map(|n| setup.pid(n)).collect();
    assert_exit(&setup.run(&["--project", "redis", "--stop"]), 0);
    for pid in pids {
        assert!(
            eventually(LIMIT, || process_gone(pid)),
            "redis-server {pid} still runs"
        );
    }
}

#[test]
fn setup_rejects_bad_options() {
    let setup = Setup::new();
    for args in [
        "--project redis --bogus",
        "--local",
        "--project nosql --local",
        "--project redis --local --port http",
        "--project redis --local --quorum --port 1 --port 2 --port 3 --port 4",
        "--project redis --name",
    ] {
        let output = setup.run(&args.split(' ').collect::<Vec<_>>());
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("setup-resources: error:"),
            "{args}: {}",
            text(&output)
        );
    }
    assert!(!setup.output().exists());
    assert!(!setup.state().exists());

    let output = setup.run(&["--help"]);
    assert_exit(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("--state-dir DIR"),
        "{}",
        text(&output)
    );
}

/// A fake Azure CLI: records every call, answers like `az` from files in its folder (the cache
/// and the group exist once created), never touches a network.
const FAKE_AZ: &str = r#"#!/bin/sh
printf '%s\n' "$*" >>"$FAKE_AZ_DIR/calls.log"
query="" output="json" prev=""
for arg in "$@"; do
  [ "$prev" = --query ] && query=$arg
  [ "$prev" = --output ] && output=$arg
  prev=$arg
done
say() { [ "$output" = none ] || printf '%s\n' "$1"; }
case "$1 $2" in
  "account show")
    [ -f "$FAKE_AZ_DIR/logged-out" ] && { echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; }
    say '{"id": "00000000-0000-0000-0000-000000000000", "name": "Test", "user": {"name": "test@example.com"}}' ;;
  "group show")
    [ -f "$FAKE_AZ_DIR/group" ] || { echo "ERROR: (ResourceGroupNotFound)" >&2; exit 3; }
    say '{"name": "my-rg", "location": "westeurope"}' ;;
  "group create")
    touch "$FAKE_AZ_DIR/group"; say '{"name": "my-rg"}' ;;
  "redis show")
    [ -f "$FAKE_AZ_DIR/cache" ] || { echo "ERROR: (ResourceNotFound)" >&2; exit 3; }
    case $query in
      hostName) say mycache.redis.cache.windows.net ;;
      sslPort) say 6380 ;;
      *) say '{"name": "mycache", "hostName": "mycache.redis.cache.windows.net", "sslPort": 6380}' ;;
    esac ;;
  "redis create")
    touch "$FAKE_AZ_DIR/cache"; say '{"name": "mycache", "provisioningState": "Succeeded"}' ;;
  "redis list-keys")
    case $query in
      primaryKey) say "$FAKE_AZ_KEY" ;;
      *) say "{\"primaryKey\": \"$FAKE_AZ_KEY\", \"secondaryKey\": \"other\"}" ;;
    esac ;;
  *) echo "fake az: unexpected call: $*" >&2; exit 2 ;;
esac
"#;

const FAKE_KEY: &str = "FakeKey+0123456789/abcdefABCDEF=";
const AZURE_ARGS: &[&str] = &[
    "--project",
    "redis",
    "--name",
    "mycache",
    "--resource-group",
    "my-rg",
    "--location",
    "westeurope",
    "--sku",
    "Standard",
    "--vm-size",
    "C1",
];

/// A folder holding the fake `az`, its state and its call log.
struct FakeAz {
    dir: tempfile::TempDir,
}

impl FakeAz {
    fn new() -> FakeAz {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("az"), FAKE_AZ).unwrap();
        fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
        FakeAz { dir }
    }

    /// `command` with the fake `az` first on PATH.
    fn install(&self, command: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.dir.path().join("bin")];
        dirs.extend(std::env::split_paths(&path));
        command
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .env("FAKE_AZ_DIR", self.dir.path())
            .env("FAKE_AZ_KEY", FAKE_KEY);
    }

    /// The calls so far, one line each; clears the log.
    fn take_calls(&self) -> Vec<String> {
        let log = self.dir.path().join("calls.log");
        let calls = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        calls.lines().map(str::to_string).collect()
    }
}

#[test]
fn setup_azure_creates_the_cache_once_and_never_prints_its_key() {
    let setup = Setup::new();
    let az = FakeAz::new();
    let azure = |az: &FakeAz| {
        let mut command = setup.command(AZURE_ARGS);
        az.install(&mut command);
        run(&mut command)
    };

    let output = azure(&az);
    assert_exit(&output, 0);
    assert!(
        !text(&output).contains(FAKE_KEY),
        "the key was printed:\n{}",
        text(&output)
    );
    let written = read_settings(&setup.output());
    assert_eq!(
        connection_string(&written),
        format!(
            "mycache.redis.cache.windows.net:6380,password={FAKE_KEY},ssl=True,abortConnect=False"
        )
    );
    let calls = az.take_calls();
    let called = |prefix: &str| calls.iter().any(|c| c.starts_with(prefix));
    assert!(
        called("group create --name my-rg --location westeurope"),
        "{calls:#?}"
    );
    assert!(
        called("redis create --name mycache --resource-group my-rg --location westeurope --sku Standard --vm-size C1"),
        "{calls:#?}"
    );

    let output = azure(&az);
    assert_exit(&output, 0);
    assert!(
        !text(&output).contains(FAKE_KEY),
        "the key was printed:\n{}",
        text(&output)
    );
    assert_eq!(read_settings(&setup.output()), written);
    let calls = az.take_calls();
    assert!(
        calls.iter().any(|c| c.starts_with("redis show")),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains(" create ")),
        "created again: {calls:#?}"
    );
}

#[test]
fn setup_azure_says_what_is_missing() {
    let setup = Setup::new();

    // No `az` anywhere: PATH holds only what the script needs before it looks for az.
    let bin = setup.dir.path().join("bin-without-az");
    fs::create_dir(&bin).unwrap();
    for tool in ["bash", "dirname"] {
        std::os::unix::fs::symlink(find_on_path(tool), bin.join(tool)).unwrap();
    }
    let output = run(setup.command(AZURE_ARGS).env("PATH", &bin));
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        stderr(&output).contains("Azure CLI (az) is not installed"),
        "{}",
        text(&output)
    );

    // Logged out: says to run `az login`, asks nothing else of az.
    let az = FakeAz::new();
    fs::write(az.dir.path().join("logged-out"), "").unwrap();
    let mut command = setup.command(AZURE_ARGS);
    az.install(&mut command);
    let output = run(&mut command);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(stderr(&output).contains("az login"), "{}", text(&output));
    assert_eq!(
        az.take_calls(),
        vec!["account show --output none".to_string()]
    );
    assert!(!setup.output().exists());
}

fn find_on_path(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

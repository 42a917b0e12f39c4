//! scripts/setup-resources.sh --azure, against a fake `az`

use super::*;

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

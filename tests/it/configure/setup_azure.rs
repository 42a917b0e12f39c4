//! scripts/setup-resources.sh against a fake `az`: Azure Managed Redis (the default), the
//! legacy Azure Cache for Redis (`--legacy`), and `--delete`. Nothing contacts Azure.

use super::*;

/// A fake Azure CLI: records every call, answers like `az` from files in its folder (what was
/// created exists from then on; a new cluster reports `Creating` for two polls), never
/// touches a network. `sp-login` makes it signed in as a service principal, `logged-out` not
/// at all.
const FAKE_AZ: &str = r#"#!/bin/sh
printf '%s\n' "$*" >>"$FAKE_AZ_DIR/calls.log"
d=$FAKE_AZ_DIR
query="" output="json" prev="" verb=""
for arg in "$@"; do
  [ "$prev" = --query ] && query=$arg
  [ "$prev" = --output ] && output=$arg
  case $arg in --*) [ -n "$verb" ] || verb=$words ;; esac
  words="${words:+$words }$arg"
  prev=$arg
done
[ -n "$verb" ] || verb=$words
say() { [ "$output" = none ] || printf '%s\n' "$1"; }
missing() { echo "ERROR: (ResourceNotFound) $1" >&2; exit 3; }
case "$verb" in
  "account show")
    [ -f "$d/logged-out" ] && { echo "ERROR: Please run 'az login' to setup account." >&2; exit 1; }
    case $query in
      user.name) if [ -f "$d/sp-login" ]; then say 11111111-aaaa-bbbb-cccc-000000000001; else say test@example.com; fi ;;
      *) say '{"id": "00000000-0000-0000-0000-000000000000", "user": {"name": "test@example.com"}}' ;;
    esac ;;
  "ad signed-in-user show")
    [ -f "$d/sp-login" ] && { echo "ERROR: /me request is only valid with delegated authentication flow." >&2; exit 1; }
    say 22222222-user-0000-0000-000000000002 ;;
  "ad sp show") say 33333333-spnn-0000-0000-000000000003 ;;
  "group show") [ -f "$d/group" ] || missing group; say '{"name": "my-rg"}' ;;
  "group create") touch "$d/group"; say '{"name": "my-rg"}' ;;
  "group delete") rm -f "$d/group" ;;
  "redisenterprise show")
    [ -f "$d/cluster" ] || missing cluster
    case $query in
      hostName) say mycache.westeurope.redis.azure.net ;;
      *provisioningState*)
        n=$(cat "$d/polls" 2>/dev/null || echo 0); echo $((n + 1)) >"$d/polls"
        if [ "$n" -lt 2 ]; then printf 'Creating\nCreating\n'; else printf 'Succeeded\nRunning\n'; fi ;;
      *) say '{"name": "mycache"}' ;;
    esac ;;
  "redisenterprise create") touch "$d/cluster"; rm -f "$d/polls"
    case "$*" in *"--access-keys-auth Enabled"*) touch "$d/keys-enabled" ;; esac ;;
  "redisenterprise delete") rm -f "$d/cluster" "$d/keys-enabled" "$d/assignment" ;;
  "redisenterprise database show")
    [ -f "$d/cluster" ] || missing database
    case $query in
      *provisioningState*) printf 'Succeeded\nRunning\n' ;;
      port) say 10000 ;;
      accessKeysAuthentication) if [ -f "$d/keys-enabled" ]; then say Enabled; else say Disabled; fi ;;
      *) say '{"name": "default", "port": 10000}' ;;
    esac ;;
  "redisenterprise database update")
    case "$*" in *"--access-keys-auth Enabled"*) touch "$d/keys-enabled" ;; esac ;;
  "redisenterprise database list-keys")
    [ -f "$d/keys-enabled" ] || { echo "ERROR: access keys authentication is disabled" >&2; exit 1; }
    say "$FAKE_AZ_KEY" ;;
  "redisenterprise database access-policy-assignment show") [ -f "$d/assignment" ] || missing assignment ;;
  "redisenterprise database access-policy-assignment create") touch "$d/assignment" ;;
  "redis show")
    [ -f "$d/cache" ] || missing cache
    case $query in
      hostName) say mycache.redis.cache.windows.net ;;
      sslPort) say 6380 ;;
      *) say '{"name": "mycache"}' ;;
    esac ;;
  "redis create") touch "$d/cache" ;;
  "redis delete") rm -f "$d/cache" ;;
  "redis list-keys") say "$FAKE_AZ_KEY" ;;
  *) echo "fake az: unexpected call: $*" >&2; exit 2 ;;
esac
"#;

const FAKE_KEY: &str = "FakeKey+0123456789/abcdefABCDEF=";
const HOST: &str = "mycache.westeurope.redis.azure.net";
const MANAGED_ARGS: &[&str] = &[
    "--project",
    "redis",
    "--name",
    "mycache",
    "--resource-group",
    "my-rg",
    "--location",
    "westeurope",
];
const LEGACY_ARGS: &[&str] = &[
    "--project",
    "redis",
    "--legacy",
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

    /// `command` with the fake `az` first on PATH, polling without pauses.
    fn install(&self, command: &mut Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.dir.path().join("bin")];
        dirs.extend(std::env::split_paths(&path));
        command
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .env("FAKE_AZ_DIR", self.dir.path())
            .env("FAKE_AZ_KEY", FAKE_KEY)
            .env("SETUP_POLL_SECONDS", "0");
    }

    /// Marks a state of the fake Azure (`group` exists, `sp-login`, ...).
    fn given(&self, what: &str) {
        fs::write(self.dir.path().join(what), "").unwrap();
    }

    /// The calls so far, one line each; clears the log.
    fn take_calls(&self) -> Vec<String> {
        let log = self.dir.path().join("calls.log");
        let calls = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        calls.lines().map(str::to_string).collect()
    }
}

/// The script with `args` and the fake `az`, in `setup`'s folder.
fn with_az(setup: &Setup, az: &FakeAz, args: &[&str]) -> Output {
    let mut command = setup.command(args);
    az.install(&mut command);
    run(&mut command)
}

fn called(calls: &[String], prefix: &str) -> bool {
    calls.iter().any(|c| c.starts_with(prefix))
}

fn entra_settings() -> Value {
    json!({"RedisLeasing": {
        "Endpoint": format!("{HOST}:10000"),
        "EntraId": "Default",
        "UseSsl": true,
        "KeyPrefix": "lease:",
        "Database": 0
    }})
}

#[test]
fn setup_creates_an_azure_managed_redis_waits_for_it_and_gives_the_signed_in_user_entra_access() {
    let setup = Setup::new();
    let az = FakeAz::new();

    let output = with_az(&setup, &az, MANAGED_ARGS);
    assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains("Creating/Creating"),
        "progress is shown\n{}",
        text(&output)
    );
    assert_eq!(read_settings(&setup.output()), entra_settings());
    let calls = az.take_calls();
    assert!(
        called(&calls, "group create --name my-rg --location westeurope"),
        "{calls:#?}"
    );
    assert!(
        called(
            &calls,
            "redisenterprise create --cluster-name mycache --resource-group my-rg --location westeurope \
             --sku Balanced_B0 --clustering-policy OSSCluster --client-protocol Encrypted --port 10000 \
             --access-keys-auth Disabled"
        ),
        "{calls:#?}"
    );
    assert!(called(&calls, "ad signed-in-user show"), "{calls:#?}");
    let assignment = calls
        .iter()
        .find(|c| c.starts_with("redisenterprise database access-policy-assignment create"))
        .unwrap_or_else(|| panic!("no access policy assignment: {calls:#?}"));
    assert!(
        assignment.contains("--database-name default")
            && assignment.contains("--access-policy-name default")
            && assignment.contains("--object-id 22222222-user-0000-0000-000000000002"),
        "{assignment}"
    );
    assert!(!calls.iter().any(|c| c.contains("list-keys")), "{calls:#?}");

    // Again: everything is reused, nothing created or assigned twice, the file unchanged.
    let output = with_az(&setup, &az, MANAGED_ARGS);
    assert_exit(&output, 0);
    assert_eq!(read_settings(&setup.output()), entra_settings());
    let calls = az.take_calls();
    assert!(
        !calls.iter().any(|c| c.contains(" create ")),
        "created again: {calls:#?}"
    );
}

#[test]
fn setup_with_access_keys_enables_them_and_writes_the_key_unprinted() {
    let setup = Setup::new();
    let az = FakeAz::new();
    az.given("sp-login");

    // Signed in as a service principal: its object id gets the data access.
    let output = with_az(
        &setup,
        &az,
        &[
            MANAGED_ARGS,
            &[
                "--sku",
                "Balanced_B1",
                "--clustering-policy",
                "EnterpriseCluster",
            ],
        ]
        .concat(),
    );
    assert_exit(&output, 0);
    let calls = az.take_calls();
    assert!(
        called(&calls, "redisenterprise create")
            && calls
                .iter()
                .any(|c| c.contains("--sku Balanced_B1 --clustering-policy EnterpriseCluster")),
        "{calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c
            .starts_with("redisenterprise database access-policy-assignment create")
            && c.contains("--object-id 33333333-spnn-0000-0000-000000000003")),
        "{calls:#?}"
    );

    // The same cluster with --access-keys: keys are enabled on it, then read.
    let output = with_az(&setup, &az, &[MANAGED_ARGS, &["--access-keys"]].concat());
    assert_exit(&output, 0);
    assert!(
        !text(&output).contains(FAKE_KEY),
        "the key was printed:\n{}",
        text(&output)
    );
    let written = read_settings(&setup.output());
    assert_eq!(
        connection_string(&written),
        format!("{HOST}:10000,password={FAKE_KEY},ssl=True,abortConnect=False")
    );
    let calls = az.take_calls();
    assert!(
        called(
            &calls,
            "redisenterprise database update --cluster-name mycache --resource-group my-rg --access-keys-auth Enabled"
        ),
        "{calls:#?}"
    );
    assert!(
        called(&calls, "redisenterprise database list-keys"),
        "{calls:#?}"
    );
    assert!(!called(&calls, "redisenterprise create"), "{calls:#?}");
}

#[test]
fn setup_legacy_creates_the_cache_once_and_never_prints_its_key() {
    let setup = Setup::new();
    let az = FakeAz::new();

    let output = with_az(&setup, &az, LEGACY_ARGS);
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
    assert!(
        called(&calls, "redis create --name mycache --resource-group my-rg --location westeurope --sku Standard --vm-size C1"),
        "{calls:#?}"
    );
    assert!(!called(&calls, "redisenterprise"), "{calls:#?}");

    let output = with_az(&setup, &az, LEGACY_ARGS);
    assert_exit(&output, 0);
    assert_eq!(read_settings(&setup.output()), written);
    let calls = az.take_calls();
    assert!(called(&calls, "redis show"), "{calls:#?}");
    assert!(
        !calls.iter().any(|c| c.contains(" create ")),
        "created again: {calls:#?}"
    );
}

#[test]
fn setup_delete_removes_only_what_it_created_and_asks_first() {
    let setup = Setup::new();
    let az = FakeAz::new();
    az.given("group"); // the group was there before: it stays
    assert_exit(&with_az(&setup, &az, MANAGED_ARGS), 0);
    az.take_calls();

    // No terminal to ask on and no --yes: nothing is deleted.
    let output = with_az(&setup, &az, &["--project", "redis", "--delete"]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--yes"), "{}", text(&output));
    assert_eq!(az.take_calls(), Vec::<String>::new());

    let output = with_az(&setup, &az, &["--project", "redis", "--delete", "--yes"]);
    assert_exit(&output, 0);
    let calls = az.take_calls();
    assert_eq!(
        calls,
        vec!["redisenterprise delete --cluster-name mycache --resource-group my-rg --yes --output none".to_string()]
    );

    // Nothing left to delete; a group the script created goes too, after what is in it.
    let output = with_az(&setup, &az, &["--project", "redis", "--delete", "--yes"]);
    assert_exit(&output, 0);
    assert_eq!(az.take_calls(), Vec::<String>::new());
    fs::remove_file(az.dir.path().join("group")).unwrap();
    assert_exit(&with_az(&setup, &az, MANAGED_ARGS), 0);
    az.take_calls();
    assert_exit(
        &with_az(&setup, &az, &["--project", "redis", "--delete", "--yes"]),
        0,
    );
    let calls = az.take_calls();
    assert_eq!(
        calls,
        vec![
            "redisenterprise delete --cluster-name mycache --resource-group my-rg --yes --output none".to_string(),
            "group delete --name my-rg --yes --output none".to_string(),
        ]
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
    let output = run(setup.command(MANAGED_ARGS).env("PATH", &bin));
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        stderr(&output).contains("Azure CLI (az) is not installed"),
        "{}",
        text(&output)
    );

    // Logged out: says to run `az login`, asks nothing else of az.
    let az = FakeAz::new();
    az.given("logged-out");
    let output = with_az(&setup, &az, MANAGED_ARGS);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(stderr(&output).contains("az login"), "{}", text(&output));
    assert_eq!(
        az.take_calls(),
        vec!["account show --output none".to_string()]
    );
    assert!(!setup.output().exists());

    let output = with_az(
        &setup,
        &az,
        &[MANAGED_ARGS, &["--clustering-policy", "NoCluster"]].concat(),
    );
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("OSSCluster"), "{}", text(&output));
}

fn find_on_path(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

//! Security end to end: TLS against a real `redis-server` whose CA and certificate are made at
//! test time, an Azure-portal connection string with an ACL user confined to the lease keys,
//! Microsoft Entra ID tokens rotated under a held lease (a test credential; nothing but
//! loopback is ever contacted), Entra ID settings errors, and no secret in any output at `-vvv`.

mod entra_default;
mod entra_rotation;
mod entra_service_principal;
mod entra_settings;
mod portal;
mod secrets;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use leasectl::{Endpoint, EntraIdCredentialsProvider, LeaseClient, Settings};
use serde_json::{json, Value};

use crate::leases::{acquired, renewing, within};
use crate::process::{complete, Output, Running, SHORT_RUN};
use crate::support::{self, query, subscribers, Leasectl, RedisServer, TlsRedis, LIMIT};

/// `run`'s default lease key.
const KEY: &str = "lease:critical-section-lock";

/// The ACL rules of a user that may only work with leases under the default prefix `lease:`:
/// the lease keys and their fencing counters, the release channels, and exactly the commands
/// leasectl sends (PING, the scripts by EVALSHA with EVAL on NOSCRIPT, SCAN for
/// `inspect --all`, SUBSCRIBE for `run --wait`, INFO for the memory policy) and those its
/// scripts call.
const LEASE_USER_RULES: &[&str] = &[
    "resetkeys",
    "~lease:*",
    "resetchannels",
    "&lease:*",
    "-@all",
    "+ping",
    "+evalsha",
    "+eval",
    "+scan",
    "+subscribe",
    "+exists",
    "+type",
    "+get",
    "+hget",
    "+hgetall",
    "+hset",
    "+set",
    "+pexpire",
    "+pttl",
    "+del",
    "+publish",
    // The waiters' queue (fair handoffs): a zset of places and one of deadlines.
    "+time",
    "+zadd",
    "+zcard",
    "+zrange",
    "+zrangebyscore",
    "+zrem",
    "+zscore",
    // The memory policy, read at connect: an evicting one is warned about.
    "+info",
];

// ---------------------------------------------------------------------------------------------
// Running leasectl

/// `leasectl -vvv` in the test's isolated environment, with no Azure credential variables.
fn verbose(leasectl: &Leasectl) -> Command {
    let mut command = leasectl.command();
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy().to_ascii_uppercase();
        if ["AZURE_", "MSI_", "IDENTITY_", "IMDS_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(&key);
        }
    }
    command.arg("-vvv");
    command
}

/// `leasectl -vvv --endpoint URL ARGS`.
fn at(leasectl: &Leasectl, url: &str, args: &[&str]) -> Command {
    let mut command = verbose(leasectl);
    command.arg("--endpoint").arg(url).args(args);
    command
}

/// Writes `{"RedisLeasing": section}` to `file` in the command's folder, mode 0600.
fn write_settings(leasectl: &Leasectl, file: &str, section: Value) -> PathBuf {
    let path = leasectl.dir().join(file);
    fs::write(&path, json!({ "RedisLeasing": section }).to_string()).expect("write settings");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod settings");
    path
}

/// Trusts the server's CA through `appsettings.json` in the command's folder.
fn trust(leasectl: &Leasectl, server: &TlsRedis) {
    write_settings(
        leasectl,
        "appsettings.json",
        json!({ "TlsCaCertificate": server.ca_file() }),
    );
}

/// A secret no output could contain by chance.
fn secret(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// `leasectl inspect`, verbose.
fn inspect(leasectl: &Leasectl) -> Output {
    let mut command = verbose(leasectl);
    command.arg("inspect");
    complete(command)
}

// ---------------------------------------------------------------------------------------------
// Redis as the administrator sees it

/// Creates (or replaces) the ACL user `user` with `password` and [`LEASE_USER_RULES`].
fn add_lease_user(admin: &mut redis::Connection, user: &str, password: &str) {
    let password = format!(">{password}");
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", password.as_str()];
    args.extend_from_slice(LEASE_USER_RULES);
    query::<()>(admin, &args);
}

/// The entries of `ACL LOG`: every command, key, channel or login refused since the start.
fn acl_log(admin: &mut redis::Connection) -> Vec<HashMap<String, redis::Value>> {
    query(admin, &["ACL", "LOG"])
}

/// Asserts that `result` is Redis's NOPERM refusal.
fn refused<T: fmt::Debug>(result: redis::RedisResult<T>, what: &str) {
    match result {
        Err(error) => assert_eq!(error.code(), Some("NOPERM"), "{what}: {error}"),
        Ok(value) => panic!("{what} was allowed: {value:?}"),
    }
}

//! Security end to end: TLS against a real `redis-server` whose CA and certificate are made at
//! test time, an Azure-portal connection string with an ACL user confined to the lease keys,
//! Microsoft Entra ID tokens rotated under a held lease (a test credential; nothing but
//! loopback is ever contacted), Entra ID settings errors, and no secret in any output at `-vvv`.

mod acl_renewals;
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
    // The waiters' grant requests (a release hands the lease to the first waiter).
    "+hdel",
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

// ---------------------------------------------------------------------------------------------
// Entra ID sign-in, as the tests stage it

/// A JWT-shaped token whose `oid` claim is `user`, with a random signature: what a (fake)
/// Entra ID credential hands out, and the password of `user` on a server that accepts it.
fn entra_token(user: &str) -> String {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(json!({ "oid": user }).to_string().as_bytes());
    format!(
        "{header}.{payload}.{}",
        encode(uuid::Uuid::new_v4().as_bytes())
    )
}

/// Adds the ACL user `user` with `token` as its password and switches the default user off:
/// whatever signs in to `server` from then on signed in with the token.
fn accept_token(server: &RedisServer, user: &str, token: &str) {
    let mut connection = server.connection();
    let password = format!(">{token}");
    query::<()>(
        &mut connection,
        &["ACL", "SETUSER", user, "on", &password, "~*", "&*", "+@all"],
    );
    query::<()>(&mut connection, &["ACL", "SETUSER", "default", "off"]);
}

/// `appsettings.json` in the command's folder: `server` by `Endpoint`, without TLS, signed in
/// to with `EntraId: entra_id`.
fn entra_endpoint_settings(leasectl: &Leasectl, server: &RedisServer, entra_id: &str) {
    write_settings(
        leasectl,
        "appsettings.json",
        json!({ "Endpoint": format!("127.0.0.1:{}", server.port), "UseSsl": false,
                "EntraId": entra_id }),
    );
}

/// A fake `az` in `bin/` of the command's folder: appends its arguments to `az-called`, then
/// runs the shell line `answer`. Answers the PATH to use (that `bin/`, then only the system's
/// folders: no real az or azd is found) and the record's path (missing while az was never run).
fn recording_az(leasectl: &Leasectl, answer: &str) -> (String, PathBuf) {
    let bin = leasectl.dir().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let called = leasectl.dir().join("az-called");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\n{answer}\n",
        called.display()
    );
    fs::write(bin.join("az"), script).unwrap();
    fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
    (format!("{}:/usr/bin:/bin", bin.display()), called)
}

//! Security end to end: TLS against a real `redis-server` whose CA and certificate are made at
//! test time, an Azure-portal connection string with an ACL user confined to the lease keys,
//! Microsoft Entra ID tokens rotated under a held lease (a test credential; nothing but
//! loopback is ever contacted), Entra ID settings errors, and no secret in any output at `-vvv`.

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
use crate::process::{complete, Output, Running};
use crate::support::{self, query, subscribers, Leasectl, RedisServer, TlsRedis, LIMIT};

/// `run`'s default lease key.
const KEY: &str = "lease:critical-section-lock";

/// The ACL rules of a user that may only work with leases under the default prefix `lease:`:
/// the lease keys and their fencing counters, the release channels, and exactly the commands
/// leasectl sends (PING, the scripts by EVALSHA with SCRIPT LOAD on NOSCRIPT, SCAN for
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
    "+script|load",
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
// TLS

/// The competition demo's winner, working one second.
const SHORT_RUN: &[&str] = &[
    "run",
    "--instance",
    "us-east-1",
    "--region",
    "us-east",
    "--work",
    "1s",
];

/// A TLS server with the ACL user `app` (answered with its password), and a `leasectl` that
/// trusts the server's CA.
fn trusted_tls_app() -> (TlsRedis, String, Leasectl) {
    let server = TlsRedis::start();
    let password = secret("tls-pw");
    add_lease_user(&mut server.connection(), "app", &password);
    let leasectl = Leasectl::new();
    trust(&leasectl, &server);
    (server, password, leasectl)
}

#[test]
fn tls_with_the_test_ca_trusted_verifies_the_server_and_runs_the_demo() {
    let (server, password, leasectl) = trusted_tls_app();
    let url = format!("rediss://app:{password}@localhost:{}", server.port);

    let inspect = complete(at(&leasectl, &url, &["inspect"]));
    inspect.succeeded();
    assert!(
        inspect.stdout.contains("critical-section-lock is free"),
        "{inspect}"
    );
    let run = complete(at(&leasectl, &url, SHORT_RUN));
    run.succeeded();
    assert!(
        run.stdout.contains("Lock acquired") && run.stdout.contains("Lock released"),
        "{run}"
    );
    for output in [&inspect, &run] {
        output.shows_none_of(&[&password]);
    }
    assert_eq!(
        query::<i64>(&mut server.connection(), &["EXISTS", KEY]),
        0,
        "released"
    );
    assert!(
        acl_log(&mut server.connection()).is_empty(),
        "the lease user's rules sufficed"
    );
}

#[test]
fn tls_without_the_ca_is_refused_as_an_unknown_authority() {
    let server = TlsRedis::start();
    let password = secret("tls-pw");
    add_lease_user(&mut server.connection(), "app", &password);
    let leasectl = Leasectl::new();
    let url = format!("rediss://app:{password}@localhost:{}", server.port);
    for args in [
        &["inspect"][..],
        &["run", "--instance", "a", "--region", "r"],
    ] {
        let output = complete(at(&leasectl, &url, args));
        let line = output.failed_verbosely_with(1);
        assert!(
            line.contains("unknown authority") && line.contains("TlsCaCertificate"),
            "{output}"
        );
        output.shows_none_of(&[&password]);
    }
    assert_eq!(
        query::<i64>(&mut server.connection(), &["EXISTS", KEY]),
        0,
        "nothing was written"
    );
}

#[test]
fn tls_to_a_host_name_the_certificate_does_not_cover_is_refused() {
    let (server, password, leasectl) = trusted_tls_app();
    // The certificate names DNS:localhost only; the server listens on 127.0.0.1 too.
    let url = format!("rediss://app:{password}@127.0.0.1:{}", server.port);
    let output = complete(at(&leasectl, &url, &["inspect"]));
    let line = output.failed_verbosely_with(1);
    assert!(line.contains("not valid for this host name"), "{output}");
    output.shows_none_of(&[&password]);
}

/// The server's address with `sslHost=NAME`: connect to 127.0.0.1 (not in the certificate),
/// check the certificate against NAME.
fn ssl_host(server: &TlsRedis, password: &str, name: &str) -> String {
    format!(
        "127.0.0.1:{},user=app,password={password},ssl=True,sslHost={name}",
        server.port
    )
}

#[test]
fn ssl_host_names_the_certificate_checked_while_connecting_to_the_address() {
    let (server, password, leasectl) = trusted_tls_app();
    let output = complete(at(
        &leasectl,
        &ssl_host(&server, &password, "localhost"),
        SHORT_RUN,
    ));
    output.expect(0);
    assert!(output.stdout.contains("Lock released"), "{output}");
    output.shows_none_of(&[&password]);

    // The name is checked: a certificate for localhost is not one for another name.
    let wrong = ssl_host(&server, &password, "cache.example.net");
    let output = complete(at(&leasectl, &wrong, &["inspect"]));
    let line = output.failed_verbosely_with(1);
    assert!(line.contains("not valid for this host name"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ssl_host_waiters_are_woken_and_dropped_connections_come_back() {
    let server = TlsRedis::start();
    let password = secret("tls-pw");
    add_lease_user(&mut server.connection(), "app", &password);
    let mut settings = Settings::for_endpoints(&[ssl_host(&server, &password, "localhost")])
        .expect("a connection string");
    settings.tls_ca_certificate = Some(server.ca_file());
    let bound = Duration::from_secs(30);
    let holder_client = within(bound, "connect", LeaseClient::connect(settings.clone()))
        .await
        .expect("connect with sslHost");
    let waiter_client = within(bound, "connect", LeaseClient::connect(settings))
        .await
        .expect("connect with sslHost");
    let options = renewing(Duration::from_secs(30), Duration::from_secs(10));
    let holder = acquired(holder_client.try_acquire("job", &options).await);
    // A waiter whose fallback poll is an hour can only be woken by the release notification,
    // which comes over its own (RESP3) subscription to 127.0.0.1, checked as localhost.
    let lease = crate::leases::hand_over(bound, holder, waiter_client.clone()).await;
    // Cut every client connection: the next calls connect anew.
    query::<()>(&mut server.connection(), &["CLIENT", "KILL", "USER", "app"]);
    assert!(within(bound, "release after a cut", lease.release())
        .await
        .expect("release"));
    let again = acquired(waiter_client.try_acquire("job", &options).await);
    assert!(again.release().await.unwrap());
}

#[test]
fn plain_redis_to_a_tls_port_fails_with_a_hint_to_use_tls() {
    let (server, password, leasectl) = trusted_tls_app();
    let url = format!("redis://app:{password}@localhost:{}", server.port);
    let output = complete(at(&leasectl, &url, &["inspect"]));
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("TLS port") && line.contains("rediss://"),
        "{output}"
    );
    output.shows_none_of(&[&password]);
}

#[test]
fn tls_to_a_plain_port_fails_within_the_connect_timeout_naming_tls() {
    let server = RedisServer::start();
    let password = secret("plain-pw");
    let leasectl = Leasectl::new();
    let url = format!("rediss://app:{password}@127.0.0.1:{}", server.port);
    let mut command = at(&leasectl, &url, &["inspect"]);
    command.env("RedisLeasing__ConnectTimeout", "2000");
    let output = complete(command);
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("TLS") && line.contains("redis://"),
        "{output}"
    );
    output.shows_none_of(&[&password]);
}

#[test]
fn a_tls_ca_certificate_that_is_missing_or_not_pem_is_a_settings_error() {
    let server = TlsRedis::start();
    let leasectl = Leasectl::new();
    let missing = leasectl.dir().join("no-such-ca.pem");
    write_settings(
        &leasectl,
        "appsettings.json",
        json!({ "TlsCaCertificate": missing }),
    );
    let output = complete(at(&leasectl, &server.url(), &["inspect"]));
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("TlsCaCertificate") && line.contains("no-such-ca.pem"),
        "{output}"
    );

    let not_pem = leasectl.dir().join("ca.txt");
    fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let config = write_settings(
        &leasectl,
        "other.json",
        json!({ "TlsCaCertificate": not_pem }),
    );
    let mut command = at(&leasectl, &server.url(), &["inspect"]);
    command.arg("--config").arg(config);
    let output = complete(command);
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("TlsCaCertificate") && line.contains("PEM"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// An Azure-portal connection string with an ACL user

/// `localhost:PORT,user=app,password=…,ssl=True,abortConnect=False`, as copied from the portal
/// (plus the ACL user), in `appsettings.Local.json` with the test CA.
fn portal_settings(leasectl: &Leasectl, server: &TlsRedis, password: &str) {
    let connection_string = format!(
        "localhost:{},user=app,password={password},ssl=True,abortConnect=False",
        server.port
    );
    let section =
        json!({ "ConnectionString": connection_string, "TlsCaCertificate": server.ca_file() });
    write_settings(leasectl, "appsettings.Local.json", section);
}

/// `leasectl -vvv run --instance ID --region R ARGS`.
fn run(leasectl: &Leasectl, instance: &str, region: &str, args: &[&str]) -> Command {
    let mut command = verbose(leasectl);
    command
        .args(["run", "--instance", instance, "--region", region])
        .args(args);
    command
}

#[test]
fn an_azure_portal_connection_string_with_an_acl_user_runs_the_competition() {
    let server = TlsRedis::start();
    let mut admin = server.connection();
    let password = secret("portal-pw");
    add_lease_user(&mut admin, "app", &password);
    let leasectl = Leasectl::new();
    portal_settings(&leasectl, &server, &password);

    let mut holder = Running::spawn(run(&leasectl, "us-east-1", "us-east", &["--work", "60s"]));
    holder.wait_for("Lock acquired");
    let loser = complete(run(&leasectl, "eu-west-1", "eu-west", &[]));
    assert_eq!(loser.code(), 3, "{loser}");
    assert!(
        loser.stdout.contains("Held by: us-east-1 (us-east)"),
        "{loser}"
    );
    let inspect = {
        let mut command = verbose(&leasectl);
        command.args(["inspect", "--all"]);
        complete(command)
    };
    inspect.succeeded();
    assert!(inspect.stdout.contains("us-east-1"), "{inspect}");

    let mut waiter = Running::spawn(run(
        &leasectl,
        "eu-west-2",
        "eu-west",
        &["--wait", "60s", "--work", "1s"],
    ));
    waiter.wait_for("Waiting up to");
    support::signal(holder.pid(), "TERM");
    let holder = holder.finish();
    assert_eq!(holder.code(), 143, "{holder}");
    assert!(holder.stdout.contains("Lock released"), "{holder}");
    let waiter = waiter.finish();
    waiter.succeeded();
    assert!(
        waiter.stdout.contains("Lock acquired") && waiter.stdout.contains("Lock released"),
        "{waiter}"
    );

    for output in [&holder, &loser, &inspect, &waiter] {
        output.shows_none_of(&[&password]);
    }
    assert_eq!(query::<i64>(&mut admin, &["EXISTS", KEY]), 0, "released");
    let log = acl_log(&mut admin);
    assert!(
        log.is_empty(),
        "the lease user's rules refused something: {log:?}"
    );
}

/// An ACL refusal names what was refused, and is not called an authentication failure.
#[test]
fn a_refused_command_is_named_and_not_called_an_authentication_failure() {
    let server = TlsRedis::start();
    let mut admin = server.connection();
    let password = secret("portal-pw");
    add_lease_user(&mut admin, "app", &password);
    let leasectl = Leasectl::new();
    portal_settings(&leasectl, &server, &password);

    query::<()>(&mut admin, &["ACL", "SETUSER", "app", "-evalsha"]);
    let refused = complete(run(&leasectl, "us-east-1", "us-east", &["--work", "1s"]));
    let stderr = refused.failed_with(1);
    assert!(stderr.contains("may not run EVALSHA"), "{refused}");
    assert!(!stderr.contains("authentication"), "{refused}");

    // A command a script calls: the script's own refusal is named as such.
    query::<()>(&mut admin, &["ACL", "SETUSER", "app", "+evalsha", "-hset"]);
    let refused = complete(run(&leasectl, "us-east-1", "us-east", &["--work", "1s"]));
    let stderr = refused.failed_with(1);
    assert!(
        stderr.contains("a command that leasectl's scripts call"),
        "{refused}"
    );
    refused.shows_none_of(&[&password]);
}

#[test]
fn the_acl_user_is_confined_to_the_lease_keys_and_channels() {
    let server = TlsRedis::start();
    let password = secret("portal-pw");
    add_lease_user(&mut server.connection(), "app", &password);
    let mut app = server
        .connection_as("app", &password)
        .expect("log in as app");

    query::<()>(&mut app, &["HSET", "lease:mine", "leaseId", "x"]);
    query::<()>(&mut app, &["SET", &support::fence_key("mine"), "1"]);
    query::<i64>(
        &mut app,
        &["PUBLISH", &support::release_channel("mine"), "x"],
    );
    let call = |cmd: &[&str], app: &mut redis::Connection| {
        redis::cmd(cmd[0]).arg(&cmd[1..]).query::<redis::Value>(app)
    };
    refused(
        call(&["HSET", "other", "f", "v"], &mut app),
        "HSET outside the prefix",
    );
    refused(
        call(&["GET", "session:1"], &mut app),
        "GET outside the prefix",
    );
    refused(
        call(&["PUBLISH", "news", "x"], &mut app),
        "PUBLISH outside the channels",
    );
    refused(
        call(&["SUBSCRIBE", "news"], &mut app),
        "SUBSCRIBE outside the channels",
    );
    for command in [
        &["FLUSHALL"][..],
        &["KEYS", "*"],
        &["CONFIG", "GET", "*"],
        &["APPEND", "lease:mine2", "x"],
    ] {
        refused(call(command, &mut app), &format!("{command:?}"));
    }
    let script = redis::Script::new("return redis.call('GET', KEYS[1])");
    refused(
        script.key("other").invoke::<redis::Value>(&mut app),
        "a script reaching outside the prefix",
    );
}

#[test]
fn a_wrong_password_fails_cleanly_without_showing_any_password() {
    let server = TlsRedis::start();
    let password = secret("portal-pw");
    add_lease_user(&mut server.connection(), "app", &password);
    let leasectl = Leasectl::new();
    let wrong = secret("wrong-pw");
    portal_settings(&leasectl, &server, &wrong);
    let inspect = {
        let mut command = verbose(&leasectl);
        command.arg("inspect");
        complete(command)
    };
    let run = complete(run(&leasectl, "us-east-1", "us-east", &[]));
    for output in [&inspect, &run] {
        let line = output.failed_verbosely_with(1);
        assert!(
            line.contains("authentication failed") && line.contains("localhost"),
            "{output}"
        );
        output.shows_none_of(&[&password, &wrong]);
    }
    assert_eq!(
        query::<i64>(&mut server.connection(), &["EXISTS", KEY]),
        0,
        "nothing was written"
    );
}

// ---------------------------------------------------------------------------------------------
// Entra ID: tokens rotated under a held lease

/// redis-rs's `TOKEN_REFRESH_BUFFER_SECS`: it fetches a new token this long before expiry.
const REDIS_RS_REFRESH_BUFFER: Duration = Duration::from_secs(240);
/// How often the test credential's tokens are replaced.
const ROTATION: Duration = Duration::from_secs(2);
/// The object id in the tokens, which redis-rs uses as the ACL user name.
const ENTRA_USER: &str = "0c9a3f9e-test-entra-user";

/// A `TokenCredential` whose JWT-shaped tokens (`oid` claim: [`ENTRA_USER`]) are the ACL
/// user's password on the test server: each call sets a fresh token as the password, keeping
/// only the one before it valid besides (tokens overlap as Entra ID's do), then hands it out
/// with an expiry that makes redis-rs refresh it after [`ROTATION`].
struct RotatingCredential {
    admin: redis::aio::MultiplexedConnection,
    issued: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for RotatingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotatingCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for RotatingCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let (token, previous) = {
            let issued = self.issued.lock().unwrap();
            (jwt(ENTRA_USER, issued.len() + 1), issued.last().cloned())
        };
        let mut command = redis::cmd("ACL");
        command
            .arg(&["SETUSER", ENTRA_USER, "on", "resetpass"])
            .arg(format!(">{token}"));
        if let Some(previous) = previous {
            command.arg(format!(">{previous}"));
        }
        command.arg(&["~*", "&*", "+@all"]);
        command
            .query_async::<()>(&mut self.admin.clone())
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    e.to_string(),
                )
            })?;
        self.issued.lock().unwrap().push(token.clone());
        let expires_on = OffsetDateTime::now_utc() + REDIS_RS_REFRESH_BUFFER + ROTATION;
        Ok(AccessToken::new(token, expires_on))
    }
}

/// `header.payload.signature`, base64url, with `{"oid":user,"n":n}` and a random signature.
fn jwt(user: &str, n: usize) -> String {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(json!({ "oid": user, "n": n }).to_string().as_bytes());
    format!(
        "{header}.{payload}.{}",
        encode(uuid::Uuid::new_v4().as_bytes())
    )
}

/// Everything written to it, shared: the test's log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Awaits `condition` (checked every 10 ms without blocking the runtime), failing the test
/// after [`LIMIT`] (a failure bound only).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Turns the default user off and adds `admin` with `password`; answers its URL.
fn lock_down(server: &RedisServer, password: &str) -> String {
    let mut connection = server.connection();
    query::<()>(
        &mut connection,
        &[
            "ACL",
            "SETUSER",
            "admin",
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    query::<()>(&mut connection, &["ACL", "SETUSER", "default", "off"]);
    format!("redis://admin:{password}@127.0.0.1:{}", server.port)
}

#[tokio::test]
async fn an_entra_id_token_rotation_during_a_held_lease_loses_nothing() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    // The runtime of this test has one thread, so every task logs to this subscriber.
    let _logging = tracing::subscriber::set_default(subscriber);
    let server = RedisServer::start();
    let admin_url = lock_down(&server, &secret("admin-pw"));
    let admin_client = redis::Client::open(admin_url.as_str()).unwrap();
    let mut admin = admin_client.get_connection().expect("connect as admin");
    let issued = Arc::new(Mutex::new(Vec::new()));
    let credential = RotatingCredential {
        admin: admin_client
            .get_multiplexed_async_connection()
            .await
            .expect("connect as admin"),
        issued: issued.clone(),
    };
    // Not started here: connect_with_credentials starts it.
    let provider = EntraIdCredentialsProvider::new_with_credential(
        Arc::new(credential),
        vec![redis::REDIS_SCOPE_DEFAULT.to_string()],
    )
    .expect("a provider");
    let settings = Settings::for_endpoints(&[server.url()]).unwrap();
    let connecting = LeaseClient::connect_with_credentials(settings.clone(), provider);
    let client = within(LIMIT, "connect_with_credentials", connecting)
        .await
        .expect("connect with Entra ID tokens");
    let options = renewing(Duration::from_secs(2), Duration::from_millis(300));
    let lease = acquired(client.try_acquire("rotation", &options).await);
    let lost = tokio::spawn(lease.lost());

    let count = || issued.lock().unwrap().len();
    for _ in 0..3 {
        let before = count();
        until("a token rotation", || count() > before).await;
        // The client must now log in again, with a current token.
        let killed: i64 = query(&mut admin, &["CLIENT", "KILL", "USER", ENTRA_USER]);
        assert!(killed >= 1, "the client was connected as {ENTRA_USER}");
        let renewals = lease.renewals();
        until("two renewals after the reconnection", || {
            lease.renewals() >= renewals + 2
        })
        .await;
        let clients: String = query(&mut admin, &["CLIENT", "LIST"]);
        let user = format!(" user={ENTRA_USER} ");
        assert!(
            clients.lines().any(|c| c.contains(&user)),
            "reconnected as {ENTRA_USER}: {clients}"
        );
    }

    assert!(
        lease.lost_error().is_none() && !lost.is_finished(),
        "the lease was lost: {:?}",
        lease.lost_error()
    );
    let holder: String = query(&mut admin, &["HGET", "lease:rotation", "leaseId"]);
    assert_eq!(holder, lease.id());
    let log = acl_log(&mut admin);
    assert!(log.is_empty(), "a login or command was refused: {log:?}");
    let tokens = issued.lock().unwrap().clone();
    let stale = redis::cmd("AUTH")
        .arg(ENTRA_USER)
        .arg(&tokens[0])
        .query::<()>(&mut admin);
    assert!(
        stale.is_err(),
        "the first token no longer logs in after {} rotations",
        tokens.len() - 1
    );
    // A waiter's pub/sub connection signs in with a current token too (the default user is
    // off), so it subscribes and the release wakes it (its fallback poll is an hour).
    let waiter = client.clone();
    let waiting = tokio::spawn(async move {
        let mut patient = renewing(Duration::from_secs(2), Duration::from_millis(300));
        patient.fallback_poll = Duration::from_secs(3600);
        waiter.acquire("rotation", &patient, LIMIT).await
    });
    until("the waiter subscribed to the release channel", || {
        subscribers(&mut admin, &support::release_channel("rotation")) >= 1
    })
    .await;

    let debug = format!("{lease:?} {settings:?}");
    assert!(
        lease.release().await.expect("release"),
        "released our own lease"
    );
    lost.abort();
    let taken = within(LIMIT, "the woken waiter", waiting)
        .await
        .expect("the waiter task");
    assert!(
        acquired(taken).release().await.expect("release"),
        "the waiter took the lease after the release"
    );

    let logs = logs.text();
    assert!(!logs.is_empty(), "the library's logs were captured");
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a token is in the logs:\n{}",
            logs.replace(signature, "<TOKEN>")
        );
    }
    assert!(tokens
        .iter()
        .all(|t| !debug.contains(t.rsplit('.').next().unwrap())));
}

// ---------------------------------------------------------------------------------------------
// Entra ID settings errors (no network: the credentials fail before any request)

/// Settings with `Endpoint` (a plain loopback server) and `EntraId`.
fn entra_settings(leasectl: &Leasectl, server: &RedisServer, entra_id: &str) {
    let endpoint = format!("127.0.0.1:{}", server.port);
    write_settings(
        leasectl,
        "appsettings.json",
        json!({ "Endpoint": endpoint, "UseSsl": false, "EntraId": entra_id }),
    );
}

fn inspect(leasectl: &Leasectl) -> Output {
    let mut command = verbose(leasectl);
    command.arg("inspect");
    complete(command)
}

#[test]
fn entra_id_service_principal_without_its_variables_names_the_missing_one() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "ServicePrincipal");
    let output = inspect(&leasectl);
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("ServicePrincipal") && line.contains("AZURE_TENANT_ID"),
        "{output}"
    );
}

#[test]
fn entra_id_azure_cli_that_cannot_sign_in_names_the_credential() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "AzureCli");
    let bin = leasectl.dir().join("bin");
    fs::create_dir(&bin).unwrap();
    let called = leasectl.dir().join("az-called");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
        called.display()
    );
    fs::write(bin.join("az"), script).unwrap();
    fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = verbose(&leasectl);
    command.env("PATH", path).arg("inspect");
    let output = complete(command);
    let line = output.failed_verbosely_with(1);
    assert!(
        line.contains("AzureCli") && line.contains("az login"),
        "{output}"
    );
    assert!(
        called.exists(),
        "the fake az was asked for a token\n{output}"
    );
}

#[test]
fn an_unknown_entra_id_credential_is_a_settings_error() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    entra_settings(&leasectl, &server, "Kerberos");
    let output = inspect(&leasectl);
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("EntraId") && line.contains("Kerberos"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never shown

#[test]
fn debug_and_display_of_settings_and_endpoints_hide_the_password() {
    let password = secret("debug-pw");
    let texts = [
        format!("cache.example:6380,user=app,password={password},ssl=True,abortConnect=False"),
        format!("rediss://app:{password}@cache.example:6380/1"),
    ];
    for text in &texts {
        let settings = Settings::for_endpoints(&[text]).expect("a valid endpoint");
        let endpoint: &Endpoint = &settings.endpoints[0];
        assert_eq!(endpoint.password(), Some(password.as_str()));
        for shown in [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{endpoint:?}"),
            endpoint.to_string(),
        ] {
            assert!(!shown.contains(&password), "the password is shown: {text}");
            assert!(shown.contains("app:***@cache.example:6380"), "{shown}");
        }
        assert!(!leasectl::mask_password(text).contains(&password));
    }
}

#[test]
fn configure_masks_the_password_in_its_summary_and_saves_the_real_one() {
    let leasectl = Leasectl::new();
    let password = secret("configure-pw");
    let connection_string =
        format!("localhost:6380,user=app,password={password},ssl=True,abortConnect=False");
    let mut command = verbose(&leasectl);
    command.args([
        "configure",
        "--auth",
        "connection-string",
        "--connection-string",
        &connection_string,
    ]);
    command.args(["--no-test", "--yes"]);
    let output = complete(command);
    output.succeeded();
    output.shows_none_of(&[&password]);
    assert!(output.stdout.contains("password=***"), "{output}");
    let file = leasectl.dir().join("appsettings.Local.json");
    let saved: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        saved["RedisLeasing"]["ConnectionString"],
        json!(connection_string)
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_settings_file_with_a_password_that_others_can_read_is_warned_about() {
    let server = RedisServer::start();
    let password = secret("file-pw");
    query::<()>(
        &mut server.connection(),
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{password}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    let leasectl = Leasectl::new();
    let connection_string = format!(
        "127.0.0.1:{},user=app,password={password},ssl=False",
        server.port
    );
    let file = write_settings(
        &leasectl,
        "appsettings.Local.json",
        json!({ "ConnectionString": connection_string }),
    );

    let private = inspect(&leasectl);
    private.succeeded();
    assert!(
        !private.stderr.contains("chmod"),
        "no warning for mode 600\n{private}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let exposed = inspect(&leasectl);
    exposed.succeeded();
    let warning = exposed.stderr.lines().find(|l| l.contains("chmod 600"));
    let warning = warning.unwrap_or_else(|| panic!("no chmod 600 warning\n{exposed}"));
    assert!(
        warning.contains("appsettings.Local.json") && warning.contains("password"),
        "{warning}"
    );
    for output in [&private, &exposed] {
        output.shows_none_of(&[&password]);
    }
}

//! `EntraId: Default`: the credential chain signs in with a fake Azure CLI (`dev`), with a
//! loopback App Service managed identity endpoint (`prod`, the CLI never asked), lists why
//! each credential failed without a secret, and signs in to every instance of a quorum with
//! one credential. Nothing but loopback is contacted.

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::support::Quorum;

/// The object id in the tokens: the ACL user redis-rs signs in as.
const ENTRA_USER: &str = "5d1f0c2a-default-chain-user";

/// `exec NAME -- true`: takes the lease, runs the command, releases. Succeeds only when
/// leasectl signed in with the token (the default user is off) and could use the lease.
const EXEC: &[&str] = &["exec", "entra-chain", "--", "true"];

/// A JWT-shaped token whose `oid` is [`ENTRA_USER`].
fn token() -> String {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(json!({ "oid": ENTRA_USER }).to_string().as_bytes());
    format!(
        "{header}.{payload}.{}",
        encode(uuid::Uuid::new_v4().as_bytes())
    )
}

/// Adds the ACL user [`ENTRA_USER`] with `token` as its password and switches the default
/// user off: whatever signs in from then on signed in with the token.
fn accept(server: &RedisServer, token: &str) {
    let mut connection = server.connection();
    let password = format!(">{token}");
    query::<()>(
        &mut connection,
        &[
            "ACL", "SETUSER", ENTRA_USER, "on", &password, "~*", "&*", "+@all",
        ],
    );
    query::<()>(&mut connection, &["ACL", "SETUSER", "default", "off"]);
}

/// A connection as [`ENTRA_USER`] (the default user is off).
fn as_entra_user(server: &RedisServer, token: &str) -> redis::Connection {
    let url = format!("redis://{ENTRA_USER}:{token}@127.0.0.1:{}", server.port);
    redis::Client::open(url)
        .unwrap()
        .get_connection()
        .expect("connect with the token")
}

/// The fencing counter of the lease [`EXEC`] takes: raised by every acquisition.
fn acquisitions(server: &RedisServer, token: &str) -> i64 {
    let key = crate::support::fence_key("entra-chain");
    let value: Option<i64> = query(&mut as_entra_user(server, token), &["GET", &key]);
    value.unwrap_or(0)
}

/// An hour from now, in Unix seconds.
fn in_an_hour() -> i64 {
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let since = later.duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// A fake `az` in `bin/` of the command's folder: records its arguments in `az-called`, and
/// prints `token` as `az account get-access-token` does (or fails as a signed-out CLI when
/// `None`). Answers the PATH to use and the record's path.
fn fake_az(leasectl: &Leasectl, token: Option<&str>) -> (String, PathBuf) {
    let bin = leasectl.dir().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let called = leasectl.dir().join("az-called");
    let answer = match token {
        Some(token) => format!(
            "echo '{}'",
            json!({ "accessToken": token, "expiresOn": "2099-01-01 00:00:00.000000",
                    "expires_on": in_an_hour(), "tokenType": "Bearer" })
        ),
        None => "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1".into(),
    };
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\n{answer}\n",
        called.display()
    );
    fs::write(bin.join("az"), script).unwrap();
    fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
    // Only the system's folders besides: no real az or azd is found.
    (format!("{}:/usr/bin:/bin", bin.display()), called)
}

/// `leasectl -vvv ARGS` with the chain narrowed by `selection` and `PATH`.
fn chained(leasectl: &Leasectl, selection: &str, path: &str, args: &[&str]) -> Command {
    let mut command = verbose(leasectl);
    command
        .env("AZURE_TOKEN_CREDENTIALS", selection)
        .env("PATH", path)
        .args(args);
    command
}

fn endpoint_settings(leasectl: &Leasectl, server: &RedisServer) {
    let endpoint = format!("127.0.0.1:{}", server.port);
    write_settings(
        leasectl,
        "appsettings.json",
        json!({ "Endpoint": endpoint, "UseSsl": false, "EntraId": "Default" }),
    );
}

/// A loopback App Service managed identity endpoint that hands out `token` (or, `None`,
/// answers that there is no identity); counts requests.
fn managed_identity_endpoint(token: Option<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // The request's head, up to its empty line (a GET has no body).
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = match &token {
                Some(token) => (
                    "200 OK",
                    json!({ "access_token": token, "expires_on": in_an_hour().to_string(),
                            "token_type": "Bearer", "resource": "https://redis.azure.com" }),
                ),
                None => (
                    "400 Bad Request",
                    json!({ "error": "invalid_request", "error_description": "Identity not found" }),
                ),
            };
            let body = body.to_string();
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, served)
}

#[test]
fn entra_id_default_signs_in_with_the_azure_cli_when_dev_is_selected() {
    let server = RedisServer::start();
    let token = token();
    accept(&server, &token);
    let leasectl = Leasectl::new();
    endpoint_settings(&leasectl, &server);
    let (path, called) = fake_az(&leasectl, Some(&token));
    let output = complete(chained(&leasectl, "dev", &path, EXEC));
    output.expect(0);
    output.shows_none_of(&[&token]);
    assert!(acquisitions(&server, &token) >= 1, "{output}");
    let calls = fs::read_to_string(&called).unwrap_or_default();
    assert!(
        calls.contains("get-access-token"),
        "az was asked for a token: {calls}\n{output}"
    );
}

#[test]
fn entra_id_default_lists_why_each_credential_failed_without_a_secret() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    endpoint_settings(&leasectl, &server);
    let (path, _) = fake_az(&leasectl, None);
    let client_secret = secret("client-secret");
    // Not a whole service principal, and a managed identity endpoint on loopback that has no
    // identity (so the chain never reaches 169.254.169.254).
    let (url, served) = managed_identity_endpoint(None);
    let mut command = chained(&leasectl, "", &path, &["inspect"]);
    command
        .env("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
        .env("AZURE_CLIENT_SECRET", &client_secret)
        .env("IDENTITY_ENDPOINT", url)
        .env("IDENTITY_HEADER", "header");
    let output = complete(command);
    let line = output.failed_verbosely_with(1);
    for name in [
        "EnvironmentCredential: AZURE_CLIENT_ID not set",
        "WorkloadIdentityCredential: AZURE_FEDERATED_TOKEN_FILE not set",
        "ManagedIdentityCredential",
        "AzureCliCredential",
        "AzureDeveloperCliCredential",
    ] {
        assert!(line.contains(name), "{name} in {line}\n{output}");
    }
    output.shows_none_of(&[&client_secret]);
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the managed identity endpoint was asked"
    );
}

#[test]
fn an_unknown_azure_token_credentials_value_is_a_settings_error() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    endpoint_settings(&leasectl, &server);
    let (path, called) = fake_az(&leasectl, None);
    let output = complete(chained(&leasectl, "everything", &path, &["inspect"]));
    let line = output.failed_verbosely_with(2);
    assert!(
        line.contains("AZURE_TOKEN_CREDENTIALS") && line.contains("everything"),
        "{output}"
    );
    assert!(!called.exists(), "no credential was tried\n{output}");
}

#[test]
fn entra_id_default_under_prod_uses_the_managed_identity_and_never_the_cli() {
    let server = RedisServer::start();
    let token = token();
    accept(&server, &token);
    let leasectl = Leasectl::new();
    endpoint_settings(&leasectl, &server);
    let (path, called) = fake_az(&leasectl, Some(&token));
    let (url, served) = managed_identity_endpoint(Some(token.clone()));
    let mut command = chained(&leasectl, "prod", &path, EXEC);
    command
        .env("IDENTITY_ENDPOINT", url)
        .env("IDENTITY_HEADER", "header");
    let output = complete(command);
    output.expect(0);
    assert!(acquisitions(&server, &token) >= 1, "{output}");
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the managed identity endpoint was asked\n{output}"
    );
    assert!(!called.exists(), "prod never asks the Azure CLI\n{output}");
}

#[test]
fn entra_id_signs_in_to_every_instance_of_a_quorum_with_one_credential() {
    let quorum = Quorum::start(3);
    let token = token();
    for server in &quorum.servers {
        accept(server, &token);
    }
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl,
        "appsettings.json",
        json!({ "Endpoints": quorum.urls(), "EntraId": "Default" }),
    );
    let (path, called) = fake_az(&leasectl, Some(&token));
    let output = complete(chained(&leasectl, "dev", &path, EXEC));
    output.expect(0);
    for server in &quorum.servers {
        assert!(
            acquisitions(server, &token) >= 1,
            "{}: {output}",
            server.port
        );
        let log = acl_log(&mut as_entra_user(server, &token));
        assert!(log.is_empty(), "a login or command was refused: {log:?}");
    }
    // One credential signs in everywhere: the first token (the check at connect) and the
    // provider's own, not one per instance.
    let calls = fs::read_to_string(&called).unwrap_or_default();
    let asked = calls.lines().count();
    assert!(
        (1..=2).contains(&asked),
        "one credential for all instances: {calls}\n{output}"
    );
}

#[test]
fn an_entra_id_left_in_a_lower_layer_does_not_sign_in_the_endpoints_above_it() {
    let quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    // The file's single Entra ID endpoint is overridden by the environment's quorum, which
    // names no credential: its instances are reached with their URLs as they are.
    write_settings(
        &leasectl,
        "appsettings.json",
        json!({ "Endpoint": "mycache.redis.cache.windows.net:6380", "EntraId": "AzureCli" }),
    );
    let (path, called) = fake_az(&leasectl, None);
    let mut command = chained(&leasectl, "dev", &path, EXEC);
    command.env("RedisLeasing__Endpoints", quorum.urls().join(";"));
    let output = complete(command);
    output.expect(0);
    assert!(
        !called.exists(),
        "no Entra ID credential was used\n{output}"
    );
}

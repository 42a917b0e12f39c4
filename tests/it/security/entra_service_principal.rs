//! Entra ID with a service principal from the environment, against a loopback HTTPS token
//! endpoint (`AZURE_AUTHORITY_HOST`; its CA trusted through `SSL_CERT_FILE`): as
//! `EntraId: ServicePrincipal`, and as the first credential of `EntraId: Default`.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpListener;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

const ENTRA_USER: &str = "7a3e9b10-service-principal-user";
const TENANT: &str = "00000000-0000-0000-0000-00000000feed";
const CLIENT: &str = "11111111-0000-0000-0000-00000000c1e7";

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

/// A loopback HTTPS token endpoint (certificate for `localhost`, from a CA made here) that
/// answers every request with `token`. Answers its authority URL, the CA file, and the
/// requests' bodies as they come.
struct TokenEndpoint {
    authority: String,
    ca_file: PathBuf,
    bodies: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl TokenEndpoint {
    fn start(token: String) -> TokenEndpoint {
        let dir = tempfile::tempdir().unwrap();
        support::make_certificates(dir.path(), "localhost");
        let chain = CertificateDer::pem_file_iter(dir.path().join("server.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.path().join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                if let Some(body) = read_request(&mut stream) {
                    seen.lock().unwrap().push(body);
                    let answer = json!({ "token_type": "Bearer", "expires_in": 3600,
                                         "ext_expires_in": 3600, "access_token": token })
                    .to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.flush();
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
            }
        });
        TokenEndpoint {
            authority,
            ca_file: dir.path().join("ca.crt"),
            bodies,
            _dir: dir,
        }
    }

    /// Points `command`'s service principal at this endpoint.
    fn install(&self, command: &mut Command, secret: &str) {
        command
            .env("AZURE_AUTHORITY_HOST", &self.authority)
            .env("SSL_CERT_FILE", &self.ca_file)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT)
            .env("AZURE_CLIENT_SECRET", secret);
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// An HTTP request's body (by its Content-Length), or `None` when the connection failed.
fn read_request(stream: &mut impl Read) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A server that accepts only [`ENTRA_USER`] with `token` (the default user is off).
fn server_for(token: &str) -> RedisServer {
    let server = RedisServer::start();
    let mut connection = server.connection();
    let password = format!(">{token}");
    query::<()>(
        &mut connection,
        &[
            "ACL", "SETUSER", ENTRA_USER, "on", &password, "~*", "&*", "+@all",
        ],
    );
    query::<()>(&mut connection, &["ACL", "SETUSER", "default", "off"]);
    server
}

/// `leasectl -vvv exec entra-sp -- true` with `EntraId: entra_id`, the service principal
/// pointed at `endpoint`, and an `az` that must not be asked.
fn exec_with(entra_id: &str, token: &str, secret: &str) -> (Output, TokenEndpoint, PathBuf) {
    let server = server_for(token);
    let endpoint = TokenEndpoint::start(token.to_string());
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl,
        "appsettings.json",
        json!({ "Endpoint": format!("127.0.0.1:{}", server.port), "UseSsl": false,
                "EntraId": entra_id }),
    );
    let bin = leasectl.dir().join("bin");
    fs::create_dir(&bin).unwrap();
    let called = leasectl.dir().join("az-called");
    let az = format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", called.display());
    fs::write(bin.join("az"), az).unwrap();
    fs::set_permissions(bin.join("az"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = verbose(&leasectl);
    endpoint.install(&mut command, secret);
    command
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .args(["exec", "entra-sp", "--", "true"]);
    let output = complete(command);
    drop(server);
    (output, endpoint, called)
}

fn asked_as_the_service_principal(endpoint: &TokenEndpoint, secret: &str, output: &Output) {
    let bodies = endpoint.bodies();
    assert!(!bodies.is_empty(), "the token endpoint was asked\n{output}");
    for body in &bodies {
        assert!(
            body.contains("grant_type=client_credentials")
                && body.contains(&format!("client_id={CLIENT}"))
                && body.contains(&format!("client_secret={secret}")),
            "{body}"
        );
    }
}

#[test]
fn entra_id_service_principal_signs_in_with_the_environments_secret() {
    let (token, secret) = (token(), secret("sp-secret"));
    let (output, endpoint, _) = exec_with("ServicePrincipal", &token, &secret);
    output.expect(0);
    output.shows_none_of(&[&token, &secret]);
    asked_as_the_service_principal(&endpoint, &secret, &output);
}

#[test]
fn entra_id_default_takes_the_environments_service_principal_first() {
    let (token, secret) = (token(), secret("sp-secret"));
    let (output, endpoint, called) = exec_with("Default", &token, &secret);
    output.expect(0);
    output.shows_none_of(&[&token, &secret]);
    asked_as_the_service_principal(&endpoint, &secret, &output);
    assert!(
        !called.exists(),
        "the chain stopped at the service principal\n{output}"
    );
}

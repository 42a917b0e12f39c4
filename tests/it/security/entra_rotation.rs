//! Entra ID: tokens rotated under a held lease

use super::*;

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

//! Refusals and failures

use super::*;

/// Asserts that `outcome` is an `Error::Settings`.
fn assert_settings_error<T: std::fmt::Debug>(what: &str, outcome: leasectl::Result<T>) {
    match outcome {
        Err(Error::Settings(message)) => assert!(!message.is_empty(), "{what}"),
        other => panic!("{what}: expected Error::Settings, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_huge_lease_names_are_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(30));
    let huge = "x".repeat(MAX_NAME_LEN + 1);
    for name in ["", huge.as_str()] {
        let what = format!("a name of {} bytes", name.len());
        assert_settings_error(&what, client.try_acquire(name, &options).await);
        let wait = Duration::from_secs(1);
        assert_settings_error(&what, client.acquire(name, &options, wait).await);
        assert_settings_error(&what, client.inspect(name).await);
        assert_settings_error(&what, client.release(name, "some-id").await);
        assert_settings_error(&what, client.force_release(name).await);
    }
    let longest = "x".repeat(MAX_NAME_LEN);
    let lease = acquired(client.try_acquire(&longest, &options).await);
    assert!(
        lease.release().await.unwrap(),
        "the longest allowed name works"
    );
    let keys: i64 = query(&mut server.connection(), &["DBSIZE"]);
    assert_eq!(keys, 1, "only the longest name's fence counter was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_ttl_is_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    for ttl in [Duration::ZERO, Duration::from_micros(500)] {
        let what = format!("a TTL of {ttl:?}");
        assert_settings_error(&what, client.try_acquire("zero", &options(ttl)).await);
        let wait = Duration::from_secs(1);
        assert_settings_error(&what, client.acquire("zero", &options(ttl), wait).await);
    }
    let keys: i64 = query(&mut server.connection(), &["DBSIZE"]);
    assert_eq!(keys, 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_too_large_for_redis_is_refused_without_leaving_a_key() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    // Past what PEXPIRE accepts, past what fits in an i64 of ms, and wrapping a u64 of ms.
    let huge = [
        Duration::from_millis(i64::MAX as u64),
        Duration::from_millis(u64::MAX),
        Duration::from_millis(u64::MAX) + Duration::from_millis(5),
        Duration::MAX,
    ];
    for ttl in huge {
        let what = format!("a TTL of {ttl:?}");
        assert_settings_error(&what, client.try_acquire("huge", &options(ttl)).await);
        let exists: i64 = query(&mut redis, &["EXISTS", &key("huge")]);
        assert_eq!(exists, 0, "{what} left a lease key that never expires");
    }
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let lease = acquired(client.try_acquire("huge", &options(century)).await);
    let pttl: i64 = query(&mut redis, &["PTTL", &key("huge")]);
    assert!(pttl > 0, "a long TTL that Redis accepts is set: {pttl}");
    assert!(lease.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_connection_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let settings = Settings::for_endpoints(&[url]).unwrap();
    match within(
        BOUND,
        "the connection error",
        LeaseClient::connect(settings),
    )
    .await
    {
        Err(Error::Connection { endpoint, .. }) => assert!(endpoint.starts_with("127.0.0.1:")),
        Err(other) => panic!("expected Error::Connection, got {other:?}"),
        Ok(_) => panic!("connected to a port with nothing listening"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_password_is_an_auth_error_that_hides_the_password() {
    let server = RedisServer::start();
    let _: () = query(
        &mut server.connection(),
        &["CONFIG", "SET", "requirepass", "secret-pass"],
    );
    let with_password = |password: &str| format!("redis://:{password}@127.0.0.1:{}", server.port);
    let attempts = [
        ("no password", server.url()),
        ("a wrong password", with_password("wrong-pass-1234")),
        (
            "a wrong password in a connection string",
            format!(
                "127.0.0.1:{},password=wrong-pass-1234,ssl=False",
                server.port
            ),
        ),
    ];
    for (what, endpoint) in attempts {
        let settings = Settings::for_endpoints(&[endpoint]).unwrap();
        let error = match within(BOUND, what, LeaseClient::connect(settings)).await {
            Err(error) => error,
            Ok(_) => panic!("{what}: connected to a server that requires a password"),
        };
        assert!(matches!(error, Error::Auth { .. }), "{what}: {error:?}");
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("wrong-pass-1234"), "{what}: {shown}");
            assert!(!shown.contains("secret-pass"), "{what}: {shown}");
        }
    }
    let settings = Settings::for_endpoints(&[with_password("secret-pass")]).unwrap();
    let client = connect_with(settings).await;
    let lease = acquired(
        client
            .try_acquire("guarded", &options(Duration::from_secs(30)))
            .await,
    );
    assert!(lease.release().await.unwrap(), "the right password works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_fence_counter_fails_the_acquire_and_changes_nothing() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let _: () = query(&mut redis, &["SET", &fence_key("corrupt"), "not-a-number"]);
    let outcome = client
        .try_acquire("corrupt", &options(Duration::from_secs(30)))
        .await;
    assert!(matches!(outcome, Err(Error::Redis { .. })), "{outcome:?}");
    let exists: i64 = query(&mut redis, &["EXISTS", &key("corrupt")]);
    assert_eq!(exists, 0, "no lease key was written");
    let fence: Option<String> = query(&mut redis, &["GET", &fence_key("corrupt")]);
    assert_eq!(
        fence.as_deref(),
        Some("not-a-number"),
        "the counter is unchanged"
    );
}

/// The waiters' keys beside a lease holding something else (another program wrote them): a
/// release, a handoff to a queued waiter and a forced release still delete the lease and say
/// so, rather than failing after the delete (the release stands either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_stands_and_says_so_when_the_waiters_keys_hold_something_else() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let options = options(Duration::from_secs(30));
    let queue = crate::support::queue_key("odd");
    let deadlines = crate::support::deadlines_key("odd");

    // A queue that is a string: no waiter in it.
    let lease = acquired(client.try_acquire("odd", &options).await);
    let _: () = query(&mut redis, &["SET", &queue, "not-a-queue"]);
    assert_eq!(lease.release().await.ok(), Some(true), "released");
    assert!(!crate::support::exists(&server, &key("odd")));

    // A waiter queued, its deadlines key a string: the handoff fails, the release stands.
    let _: () = query(&mut redis, &["DEL", &queue]);
    let lease = acquired(client.try_acquire("odd", &options).await);
    let _: () = query(&mut redis, &["ZADD", &queue, "1", "a-waiter"]);
    let _: () = query(&mut redis, &["SET", &deadlines, "not-a-zset"]);
    assert_eq!(lease.release().await.ok(), Some(true), "released");
    assert!(!crate::support::exists(&server, &key("odd")));

    // A forced release with a queue that is a string.
    let _: () = query(&mut redis, &["DEL", &queue, &deadlines]);
    let _lease = acquired(client.try_acquire("odd", &options).await);
    let _: () = query(&mut redis, &["SET", &queue, "not-a-queue"]);
    assert_eq!(client.force_release("odd").await.ok(), Some(true));
    assert!(!crate::support::exists(&server, &key("odd")));
}

/// A key beside a lease holding another type than leasectl keeps there (another program wrote
/// it): the acquire's error names that key and what belongs in it, instead of Redis's bare
/// WRONGTYPE from inside a script, and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_names_the_key_beside_the_lease_that_holds_something_else() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let options = options(Duration::from_secs(30));
    let says = |outcome: leasectl::Result<Acquire>, key: &str, what: &str| match outcome {
        Err(error @ Error::Redis { .. }) => {
            let text = error.to_string();
            assert!(text.contains(key) && text.contains(what), "{text}");
            assert!(!text.contains("WRONGTYPE"), "{text}");
            assert!(!error.is_transient(), "{text}");
        }
        other => panic!("expected an error naming {key}, got {other:?}"),
    };

    let queue = crate::support::queue_key("odd");
    let _: () = query(&mut redis, &["SET", &queue, "not-a-queue"]);
    says(
        client.try_acquire("odd", &options).await,
        &queue,
        "a sorted set",
    );
    let _: () = query(&mut redis, &["DEL", &queue]);

    let fence = fence_key("odd");
    let _: () = query(&mut redis, &["HSET", &fence, "not", "a-counter"]);
    says(
        client.try_acquire("odd", &options).await,
        &fence,
        "fencing counter",
    );
    let _: () = query(&mut redis, &["DEL", &fence]);

    // A waiter joining the queue of a held lease whose deadlines key is a string.
    let _holder = acquired(client.try_acquire("odd", &options).await);
    let deadlines = crate::support::deadlines_key("odd");
    let _: () = query(&mut redis, &["SET", &deadlines, "not-a-zset"]);
    let waited = client
        .acquire("odd", &options, Duration::from_secs(1))
        .await;
    says(waited, &deadlines, "a sorted set");
}

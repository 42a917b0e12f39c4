//! TLS

use super::*;

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

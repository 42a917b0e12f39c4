//! An Azure-portal connection string with an ACL user

use super::*;

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

/// A TLS server with the lease user "app" (a fresh password), an admin connection to it, and
/// a `leasectl` whose settings are the portal's connection string for that user.
fn portal_user() -> (TlsRedis, redis::Connection, String, Leasectl) {
    let server = TlsRedis::start();
    let mut admin = server.connection();
    let password = secret("portal-pw");
    add_lease_user(&mut admin, "app", &password);
    let leasectl = Leasectl::new();
    portal_settings(&leasectl, &server, &password);
    (server, admin, password, leasectl)
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
    let (_server, mut admin, password, leasectl) = portal_user();

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
    let (_server, mut admin, password, leasectl) = portal_user();

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

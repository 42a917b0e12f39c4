//! Bad inputs (SPEC 7)

use super::*;

#[test]
fn bad_arguments_exit_2_with_one_error_line_and_change_nothing() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, "lease:kept", "someone");
    let before = snapshot(&mut server.connection());
    let long_name = "x".repeat(2000);
    let run = ["run", "--instance", "a", "--region", "r"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&run[..], &["--bogus"]].concat(), "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
        ([&run[..], &["--ttl", "0s"]].concat(), "0s"),
        ([&run[..], &["--ttl", "-5s"]].concat(), "-5s"),
        ([&run[..], &["--ttl", "soon"]].concat(), "soon"),
        ([&run[..], &["--work", "0s"]].concat(), "0s"),
        ([&run[..], &["--wait", "soon"]].concat(), "soon"),
        ([&run[..], &["--meta", "novalue"]].concat(), "novalue"),
        ([&run[..], &["--meta", "=value"]].concat(), "=value"),
        ([&run[..], &["--lease", ""]].concat(), "empty"),
        ([&run[..], &["--lease", &long_name]].concat(), "2000"),
        (vec!["inspect", ""], "empty"),
        (vec!["release", &long_name, "--force", "--yes"], "2000"),
    ];
    for (args, mention) in cases {
        let output = leasectl_against(&leasectl, &server, &args);
        let error = output.failed_with(2);
        assert!(
            error.contains(mention),
            "{args:?}: should mention {mention:?}\n{output}"
        );
        assert!(error.len() < 300, "{args:?}: a short line\n{output}");
        assert_eq!(
            snapshot(&mut server.connection()),
            before,
            "{args:?} changed data"
        );
    }
}

#[test]
fn bad_lease_names_are_refused_before_connecting() {
    let leasectl = Leasectl::new();
    let nowhere = format!("redis://127.0.0.1:{}", support::free_port());
    for args in [
        vec!["run", "--instance", "a", "--region", "r", "--lease", ""],
        vec!["inspect", ""],
    ] {
        let mut command = leasectl.command();
        command.args(["--endpoint", &nowhere]).args(&args);
        let output = complete(command);
        let error = output.failed_with(2);
        assert!(error.contains("empty"), "{output}");
        assert!(
            output.stdout.is_empty(),
            "nothing printed before the check\n{output}"
        );
    }
}

#[test]
fn an_endpoint_with_nothing_listening_exits_1() {
    let leasectl = Leasectl::new();
    let port = support::free_port();
    for args in [
        vec!["inspect"],
        vec!["run", "--instance", "a", "--region", "r"],
    ] {
        let mut command = leasectl.command();
        command
            .args(["--endpoint", &format!("redis://127.0.0.1:{port}")])
            .args(&args);
        let output = complete(command);
        let error = output.failed_with(1);
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{output}");
    }
}

#[test]
fn malformed_endpoints_exit_2() {
    let leasectl = Leasectl::new();
    for (endpoint, mention) in [("http://x", "http"), ("host:notaport", "notaport")] {
        let mut command = leasectl.command();
        command.args(["--endpoint", endpoint, "inspect"]);
        let output = complete(command);
        let error = output.failed_with(2);
        assert!(error.contains(mention), "{output}");
    }
}

#[test]
fn a_wrong_password_exits_1_and_is_never_shown() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_lease(&server, KEY, "a");
    let mut admin = server.connection();
    query::<()>(&mut admin, &["CONFIG", "SET", "requirepass", "rightpw"]);
    query::<()>(&mut admin, &["AUTH", "rightpw"]);
    let before = snapshot(&mut admin);
    let wrong = format!("redis://:wrongpw@127.0.0.1:{}", server.port);
    for verbosity in [None, Some("-vvv")] {
        for args in [
            vec!["inspect"],
            vec!["run", "--instance", "b", "--region", "r"],
        ] {
            let mut command = leasectl.command();
            command
                .args(["--endpoint", &wrong])
                .args(verbosity)
                .args(&args);
            let output = complete(command);
            let error = output.failed_with(1);
            assert!(error.contains("authentication failed"), "{output}");
            assert!(
                !output.stderr.contains("wrongpw"),
                "password shown\n{output}"
            );
            assert!(
                !output.stdout.contains("wrongpw"),
                "password shown\n{output}"
            );
        }
    }
    assert_eq!(snapshot(&mut admin), before);
    let right = format!("redis://:rightpw@127.0.0.1:{}", server.port);
    let mut command = leasectl.command();
    command.args(["--endpoint", &right, "inspect"]);
    let output = complete(command);
    assert_eq!(output.code(), 0, "the right password works\n{output}");
}

#[test]
fn a_key_of_another_type_counts_as_held_and_is_left_alone() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    query::<()>(&mut server.connection(), &["RPUSH", KEY, "a", "b", "c"]);
    let before = snapshot(&mut server.connection());
    let output = spawn_run(&leasectl, &server, ("b", "r"), &["--work", "1s"]).finish();
    assert_eq!(output.code(), 3, "{output}");
    assert!(output.stdout.contains("✗ Lock unavailable"), "{output}");
    assert!(output.stdout.contains("a Redis list"), "{output}");
    let text = leasectl_against(&leasectl, &server, &["inspect"]);
    assert_eq!(text.code(), 0, "{text}");
    assert!(
        text.stdout.contains("is held by") && text.stdout.contains("a Redis list"),
        "{text}"
    );
    let json = inspect_json(&leasectl, &server, LEASE);
    assert!(json.held && json.lease_id.is_none(), "{json:?}");
    assert_eq!(
        snapshot(&mut server.connection()),
        before,
        "the list is unchanged"
    );
}

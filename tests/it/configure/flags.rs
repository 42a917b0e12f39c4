//! The flags alone, with no terminal

use super::*;

#[test]
fn flags_alone_name_what_is_missing() {
    let leasectl = Leasectl::new();

    let output = configure_with_flags(&leasectl, &[]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--auth"), "{}", text(&output));

    let output = configure_with_flags(&leasectl, &["--auth", "connection-string"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--connection-string"),
        "{}",
        text(&output)
    );

    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());
}

#[test]
fn flags_alone_keep_an_existing_file_without_yes() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let old = "{\"RedisLeasing\": {\"ConnectionString\": \"redis://127.0.0.1:1\"}}\n";
    fs::write(settings_path(&leasectl), old).unwrap();
    let flags = ["--auth", "local", "--endpoint", &address(&server)];

    let output = configure_with_flags(&leasectl, &flags);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("--yes"), "{}", text(&output));
    assert_eq!(fs::read_to_string(settings_path(&leasectl)).unwrap(), old);

    let output = configure_with_flags(&leasectl, &[&flags[..], &["--yes"]].concat());
    assert_exit(&output, 0);
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(connection_string(&written), server.url());
}

#[test]
fn flags_alone_test_the_connection_unless_told_not_to() {
    let unreachable = format!("127.0.0.1:{}", free_port()); // nothing listens there
    let leasectl = Leasectl::new();

    let output = configure_with_flags(&leasectl, &["--auth", "local", "--endpoint", &unreachable]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("nothing was written"),
        "{}",
        text(&output)
    );
    assert_eq!(entries(leasectl.dir()), Vec::<String>::new());

    let output = configure_with_flags(
        &leasectl,
        &["--auth", "local", "--endpoint", &unreachable, "--no-test"],
    );
    assert_exit(&output, 0);
    let written = read_settings(&settings_path(&leasectl));
    assert_eq!(
        connection_string(&written),
        format!("redis://{unreachable}")
    );
}

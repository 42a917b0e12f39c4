//! The `LeaseFormat` setting and the `--format` flag

use super::*;

const FILE: &str = "appsettings.Local.json";

/// A `leasectl` whose settings file has this server and `LeaseFormat: value`.
fn with_format(server: &RedisServer, value: serde_json::Value) -> Leasectl {
    let leasectl = Leasectl::new();
    let section = serde_json::json!({
        "RedisLeasing": {"ConnectionString": format!("127.0.0.1:{},ssl=False", server.port),
                         "LeaseFormat": value}
    });
    std::fs::write(leasectl.dir().join(FILE), section.to_string()).unwrap();
    leasectl
}

/// Takes NAME with `exec` (`command` with the exec arguments added) and answers what Redis
/// held meanwhile: `string` for the JSON value, `hash` for the hash.
fn stored_type(server: &RedisServer, mut command: std::process::Command) -> String {
    command.args([
        "exec",
        NAME,
        "--",
        "sh",
        "-c",
        "redis-cli -p \"$0\" TYPE \"$1\" > type",
    ]);
    command.args([server.port.to_string(), key(NAME)]);
    let dir = command.get_current_dir().expect("a folder").to_path_buf();
    complete(command).expect(0);
    std::fs::read_to_string(dir.join("type"))
        .expect("the child ran")
        .trim()
        .to_string()
}

#[test]
fn the_setting_in_any_case_the_environment_and_the_flag_choose_the_format() {
    let server = RedisServer::start();
    let from_file = with_format(&server, "JSON".into());
    assert_eq!(stored_type(&server, from_file.command()), "string");
    let mut flag_over_file = from_file.command();
    flag_over_file.args(["--format", "Hash"]);
    assert_eq!(stored_type(&server, flag_over_file), "hash");
    let plain = Leasectl::new();
    assert_eq!(
        stored_type(&server, plain.against(&server)),
        "hash",
        "Hash by default"
    );
    let mut from_environment = plain.against(&server);
    from_environment.env("RedisLeasing__LeaseFormat", "json");
    assert_eq!(stored_type(&server, from_environment), "string");
}

#[test]
fn a_bad_format_exits_2_naming_the_file_and_the_field() {
    let server = RedisServer::start();
    for value in [
        serde_json::json!("Xml"),
        serde_json::json!(2),
        serde_json::json!(["Json"]),
    ] {
        let leasectl = with_format(&server, value.clone());
        let mut command = leasectl.command();
        command.args(["inspect", NAME]);
        let output = complete(command);
        let error = output.failed_with(2);
        for part in [FILE, "RedisLeasing.LeaseFormat", "expected Hash or Json"] {
            assert!(error.contains(part), "{value}: {part:?} missing\n{output}");
        }
    }
    let leasectl = Leasectl::new();
    let output = leasectl_done(&leasectl, &server, &["--format", "xml", "inspect", NAME]);
    let error = output.failed_with(2);
    assert!(error.contains("--format"), "{output}");
}

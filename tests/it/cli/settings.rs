//! Settings (SPEC 3)

use super::*;
use crate::process::run_job;

/// A settings file naming `server` with key prefix `prefix`.
fn write_settings(path: &Path, server: &RedisServer, prefix: &str) {
    let json = serde_json::json!({
        "RedisLeasing": {
            "ConnectionString": format!("127.0.0.1:{},ssl=False", server.port),
            "KeyPrefix": prefix,
        }
    });
    write_file(path, &json.to_string());
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `inspect job --json` with `command`: answers the key used and its holder's instance.
fn inspect_job(mut command: Command) -> (String, Option<String>) {
    command.args(["inspect", "job", "--json"]);
    let json: LeaseJson = parse_json(&complete(command));
    let instance = json.metadata.and_then(|m| m.instance_id);
    (json.key, instance)
}

/// A server with lease `job` held under each of `prefixes`, by `holder-<prefix>`.
fn server_with_jobs(prefixes: &[&str]) -> RedisServer {
    let server = RedisServer::start();
    for prefix in prefixes {
        write_lease(
            &server,
            &format!("{prefix}job"),
            &format!("holder-{prefix}"),
        );
    }
    server
}

#[test]
fn a_settings_file_in_the_working_folder_is_used_by_run() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let mut command = leasectl.command();
    command.args(run_job("60s"));
    let mut run = Running::spawn(command);
    run.wait_for("Lock acquired");
    assert_eq!(hgetall(&server, "t:job")["meta_instanceId"], "a");
    assert!(!exists(&server, "lease:job"));
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_the_environment() {
    let server = server_with_jobs(&["t:", "env:", "flag:"]);
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let from_file = inspect_job(leasectl.command());
    assert_eq!(from_file, ("t:job".into(), Some("holder-t:".into())));

    let mut command = leasectl.command();
    command.env("RedisLeasing__KeyPrefix", "env:");
    assert_eq!(
        inspect_job(command),
        ("env:job".into(), Some("holder-env:".into()))
    );

    let mut command = leasectl.command();
    command
        .env("RedisLeasing__KeyPrefix", "env:")
        .args(["--key-prefix", "flag:"]);
    assert_eq!(
        inspect_job(command),
        ("flag:job".into(), Some("holder-flag:".into()))
    );
}

#[test]
fn the_user_config_folder_is_searched_after_the_working_folder() {
    let server = server_with_jobs(&["home:", "here:"]);
    let leasectl = Leasectl::new();
    let user_file = leasectl
        .dir()
        .join(".config/leasectl/appsettings.Local.json");
    write_settings(&user_file, &server, "home:");
    let found = inspect_job(leasectl.command());
    assert_eq!(found, ("home:job".into(), Some("holder-home:".into())));

    let project = leasectl.dir().join("project");
    write_settings(&project.join("appsettings.Local.json"), &server, "here:");
    let mut command = leasectl.command();
    command.current_dir(&project);
    assert_eq!(
        inspect_job(command),
        ("here:job".into(), Some("holder-here:".into()))
    );
}

#[test]
fn the_config_flag_reads_the_named_file_instead() {
    let server = server_with_jobs(&["t:", "cfg:"]);
    let leasectl = Leasectl::new();
    write_settings(
        &leasectl.dir().join("appsettings.Local.json"),
        &server,
        "t:",
    );
    let named = leasectl.dir().join("elsewhere/custom.json");
    write_settings(&named, &server, "cfg:");
    let mut command = leasectl.command();
    command.arg("--config").arg(&named);
    assert_eq!(
        inspect_job(command),
        ("cfg:job".into(), Some("holder-cfg:".into()))
    );
}

#[test]
fn a_bad_settings_value_names_the_file_the_field_and_what_was_expected() {
    let server = RedisServer::start();
    let connection = format!("127.0.0.1:{},ssl=False", server.port);
    let cases = [
        ("Database", serde_json::json!("abc"), "whole number"),
        (
            "DefaultLeaseDuration",
            serde_json::json!("soon"),
            "duration",
        ),
        ("AutoRenew", serde_json::json!("perhaps"), "true or false"),
        ("ConnectTimeout", serde_json::json!(0), "milliseconds"),
    ];
    for (field, value, expected) in cases {
        let leasectl = Leasectl::new();
        let json = serde_json::json!({
            "RedisLeasing": { "ConnectionString": connection, field: value }
        });
        write_file(
            &leasectl.dir().join("appsettings.Local.json"),
            &json.to_string(),
        );
        let mut command = leasectl.command();
        command.args(["inspect"]);
        let output = complete(command);
        let error = output.failed_with(2);
        for part in [
            "appsettings.Local.json",
            &format!("RedisLeasing.{field}"),
            expected,
        ] {
            assert!(error.contains(part), "{field}: {part:?} missing\n{output}");
        }
    }
    let mut connection = server.connection();
    assert!(snapshot(&mut connection).is_empty(), "nothing was written");
}

#[test]
fn malformed_settings_json_names_the_file() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let text = format!(
        "{{\"RedisLeasing\": {{\"ConnectionString\": \"127.0.0.1:{},ssl=False\",",
        server.port
    );
    write_file(&leasectl.dir().join("appsettings.Local.json"), &text);
    let mut command = leasectl.command();
    command.args(["run", "--instance", "a", "--region", "r", "--work", "1s"]);
    let output = complete(command);
    let error = output.failed_with(2);
    assert!(error.contains("appsettings.Local.json"), "{output}");
    assert!(error.contains("JSON"), "{output}");
    assert!(
        snapshot(&mut server.connection()).is_empty(),
        "nothing was written"
    );
}

#[test]
fn the_config_flag_to_a_missing_file_is_a_usage_error() {
    let leasectl = Leasectl::new();
    let missing = leasectl.dir().join("no-such-settings.json");
    let mut command = leasectl.command();
    command.arg("--config").arg(&missing).arg("inspect");
    let output = complete(command);
    let error = output.failed_with(2);
    assert!(error.contains("no-such-settings.json"), "{output}");
}

#[test]
fn with_no_settings_at_all_the_local_default_endpoint_is_announced() {
    // Only read (inspect): whatever may listen on 6379 here is not ours.
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.arg("inspect");
    let output = complete(command);
    assert!(
        output.stderr.contains("redis://127.0.0.1:6379"),
        "names the endpoint\n{output}"
    );
    assert!(matches!(output.code(), 0 | 1), "{output}");
    assert!(!output.stderr.contains("panicked"), "{output}");
}

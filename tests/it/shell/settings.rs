//! The seed settings leasectl used to ignore: `DefaultWaitTime`, `Metadata`,
//! and bad values of each.

use super::*;
use crate::process::Running;

/// Writes `appsettings.json` in the commands' working folder with this `RedisLeasing` section.
fn settings_file(tool: &Leasectl, section: serde_json::Value) {
    let file = serde_json::json!({ "RedisLeasing": section });
    std::fs::write(tool.dir().join("appsettings.json"), file.to_string()).unwrap();
}

#[test]
fn default_wait_time_is_the_wait_of_acquire_run_and_exec() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    // Without it (nor --wait) a held lease is refused at once.
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    leasectl(&tool, &quorum, &["acquire", "job"]).expect(3);
    settings_file(&tool, serde_json::json!({ "DefaultWaitTime": "00:01:00" }));
    // With it, each waits for the holder's TTL to run out, then takes the lease.
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    let waited = acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    assert_eq!(waited.lease, "job");
    leasectl(&tool, &quorum, &["exec", "job", "--", "true"]).expect(0);
    acquire(&tool, &quorum, "job", &["--ttl", "1s"]);
    let run = [
        "run",
        "--instance",
        "a",
        "--region",
        "r",
        "--lease",
        "job",
        "--work",
        "1s",
    ];
    leasectl(&tool, &quorum, &run).expect(0);
    // `--wait 0s` still fails fast.
    acquire(&tool, &quorum, "job", &["--ttl", "1m"]);
    leasectl(&tool, &quorum, &["acquire", "job", "--wait", "0s"]).expect(3);
}

#[test]
fn metadata_from_files_and_environment_is_stored_and_flags_win() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    let metadata = serde_json::json!({ "team": "payments", "tier": "gold", "costCenter": 42 });
    settings_file(&tool, serde_json::json!({ "Metadata": metadata }));
    let mut command = tool.against_quorum(&quorum);
    command
        .env("RedisLeasing__Metadata__onCall", "ops-team")
        .args(["acquire", "job", "--meta", "tier=platinum"]);
    complete(command).expect(0);
    let hash = support::hgetall(&quorum.servers[0], &support::key("job"));
    assert_eq!(
        hash.get("meta_team").map(String::as_str),
        Some("payments"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_costCenter").map(String::as_str),
        Some("42"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_onCall").map(String::as_str),
        Some("ops-team"),
        "{hash:?}"
    );
    assert_eq!(
        hash.get("meta_tier").map(String::as_str),
        Some("platinum"),
        "{hash:?}"
    );
    // Every lease gets them: `exec`'s too, beside its own.
    let shown = tool_inspect_while(&tool, &quorum, "other");
    assert_eq!(shown["metadata"]["team"], "payments", "{shown}");
}

/// `inspect NAME --json` while an `exec NAME` holds the lease.
fn tool_inspect_while(tool: &Leasectl, quorum: &Quorum, name: &str) -> serde_json::Value {
    let mut holder = tool.against_quorum(quorum);
    holder.args(["exec", name, "--json", "--", "sleep", "60"]);
    let mut holder = Running::spawn(holder);
    holder.wait_for("\"acquired\"");
    let shown = leasectl(tool, quorum, &["inspect", name, "--json"]);
    shown.expect(0);
    serde_json::from_str(&shown.stdout).unwrap()
}

#[test]
fn bad_values_name_the_file_and_the_field() {
    let quorum = Quorum::start(1);
    let tool = Leasectl::new();
    for (field, value) in [
        ("DefaultWaitTime", serde_json::json!("soon")),
        ("DefaultWaitTime", serde_json::json!(30)),
        ("Metadata", serde_json::json!(5)),
        ("Metadata", serde_json::json!({ "team": { "nested": 1 } })),
    ] {
        settings_file(&tool, serde_json::json!({ field: value }));
        let output = leasectl(&tool, &quorum, &["acquire", "job"]);
        let error = output.failed_with(2);
        assert!(
            error.contains("appsettings.json"),
            "{field}={value}\n{output}"
        );
        assert!(
            error.contains(&format!("RedisLeasing.{field}")),
            "{field}={value}\n{output}"
        );
    }
    assert!(!support::exists(&quorum.servers[0], &support::key("job")));
}

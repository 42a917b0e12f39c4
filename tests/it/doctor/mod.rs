//! `leasectl doctor`: each problem it checks for, planted on real servers, and found; and a
//! healthy deployment that passes.

mod planted;
mod tls;

use std::process::Command;

use serde::Deserialize;

use crate::process::{complete, Output};
use crate::support::{self, Leasectl};

/// `doctor --json`, exactly as the README has it: any other field fails to parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    checks: Vec<Check>,
    healthy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    name: String,
    instance: Option<String>,
    status: String,
    detail: String,
    fix: Option<String>,
}

impl Report {
    /// The checks named `name` (one per instance, or one for the deployment).
    fn named(&self, name: &str) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.name == name).collect()
    }

    /// The one check `name` of `instance` (`host:port`).
    fn of(&self, name: &str, instance: &str) -> &Check {
        self.checks
            .iter()
            .find(|c| c.name == name && c.instance.as_deref() == Some(instance))
            .unwrap_or_else(|| panic!("no {name} check of {instance}: {self:#?}"))
    }
}

/// Runs `doctor --json` (with `command`'s endpoints and settings), checks the exit code
/// agrees with `healthy`, and answers the report and the run.
fn doctor(mut command: Command) -> (Report, Output) {
    command.args(["doctor", "--json"]);
    let output = complete(command);
    let report: Report = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("not doctor's JSON ({e})\n{output}"));
    output.expect(if report.healthy { 0 } else { 1 });
    for check in &report.checks {
        assert!(
            ["pass", "warn", "fail"].contains(&check.status.as_str()),
            "{check:?}"
        );
        assert!(
            check.status == "pass" || check.fix.is_some(),
            "a check that is not a pass says what to do: {check:?}"
        );
    }
    (report, output)
}

/// `leasectl --endpoint URL ...` for each of `urls`.
fn against(leasectl: &Leasectl, urls: &[String]) -> Command {
    let mut command = leasectl.command();
    for url in urls {
        command.arg("--endpoint").arg(url);
    }
    command
}

#[test]
fn a_healthy_server_passes_every_check_and_leaves_no_key() {
    let server = support::RedisServer::start();
    let leasectl = Leasectl::new();
    let (report, _) = doctor(leasectl.against(&server));
    assert!(report.healthy, "{report:#?}");
    let address = format!("127.0.0.1:{}", server.port);
    for name in [
        "reachable",
        "authentication",
        "permissions",
        "server",
        "topology",
        "memory policy",
        "clock",
    ] {
        let check = report.of(name, &address);
        assert_eq!(check.status, "pass", "{check:?}");
    }
    let lease = &report.named("test lease")[0];
    assert_eq!(lease.status, "pass", "{lease:?}");
    let keys: Vec<String> = server.query(&["KEYS", "*"]);
    assert!(keys.is_empty(), "the test lease left {keys:?}");

    // The same as text: one line per check, and the verdict.
    let mut command = leasectl.against(&server);
    command.arg("doctor");
    let text = complete(command);
    text.succeeded();
    assert_eq!(
        text.stdout.lines().count(),
        report.checks.len() + 1,
        "{text}"
    );
    assert!(text.stdout.contains("✓ test lease"), "{text}");
    assert!(
        text.stdout.lines().last().unwrap().starts_with("healthy"),
        "{text}"
    );
}

#[test]
fn a_settings_error_exits_2() {
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args(["--endpoint", "redis://127.0.0.1:notaport", "doctor"]);
    complete(command).failed_with(2);
}

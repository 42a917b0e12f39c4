//! `leasectl bench` end to end, small: every scenario against real servers, its JSON line's
//! fields and counts (never its speed: speed is what the command reports, not what a test on
//! a loaded machine can assert), the readable table, and the `redis-benchmark` baseline.

use serde_json::Value;

use crate::process::complete;
use crate::support::{exists, Leasectl, Quorum};

/// `leasectl bench --json ARGS` against `quorum`'s servers: the JSON objects it printed.
fn bench_json(quorum: &Quorum, args: &[&str]) -> Vec<Value> {
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command
        .args(["bench", "--json", "--redis", &quorum.urls().join(",")])
        .args(args);
    let output = complete(command);
    output.expect(0);
    output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{output}")))
        .collect()
}

/// The common fields of SPEC's bench object, with `n` work done and no errors.
fn check_common(report: &Value, scenario: &str, mode: &str) {
    assert_eq!(report["scenario"], scenario, "{report}");
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["n"].as_u64().unwrap() > 0, "{report}");
    for field in ["ops_per_s", "p50_us", "p99_us"] {
        assert!(report[field].as_f64().is_some(), "{field} in {report}");
    }
    assert!(report["lib_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
}

#[test]
fn every_scenario_reports_its_fields_and_leaves_no_lease_behind() {
    let quorum = Quorum::start(3);
    let reports = bench_json(
        &quorum,
        &[
            "--scenario",
            "S1",
            "--scenario",
            "S2",
            "--scenario",
            "S3",
            "--scenario",
            "S4",
            "--scenario",
            "S5",
            "--cycles",
            "200",
            "--warmup",
            "20",
            "--duration",
            "1s",
            "--concurrency",
            "4",
            "--workers",
            "3",
            "--leases",
            "50",
            "--ttl",
            "900ms",
        ],
    );
    let scenarios: Vec<&str> = reports
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios, ["S1", "S2", "S3", "S4", "S5"]);
    check_common(&reports[0], "S1", "single");
    assert_eq!(reports[0]["n"], 200, "every timed cycle counted");
    check_common(&reports[1], "S2", "single");
    check_common(&reports[2], "S3", "single");
    let per_worker = reports[2]["per_worker"].as_array().unwrap();
    assert_eq!(per_worker.len(), 3);
    let total: u64 = per_worker.iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(total, reports[2]["n"].as_u64().unwrap());
    for field in [
        "same_worker_pct",
        "other_p50_us",
        "other_p99_us",
        "hold_mean_us",
    ] {
        assert!(reports[2][field].as_f64().is_some(), "{field}");
    }
    check_common(&reports[3], "S4", "quorum(3)");
    assert_eq!(reports[3]["n"], 200);
    // S5 runs over every endpoint given: a quorum here.
    check_common(&reports[4], "S5", "quorum(3)");
    assert_eq!(reports[4]["late_renewals"], 0, "{}", reports[4]);
    assert!(reports[4]["cpu_us_per_renewal"].as_f64().is_some());
    assert!(reports[4]["rss_bytes_per_lease"].as_f64().is_some());
    // What the scenarios took, they gave back.
    for server in &quorum.servers {
        let keys: Vec<String> = server.query(&["KEYS", "lease:bench:*"]);
        let held: Vec<&String> = keys
            .iter()
            .filter(|k| exists(server, k) && !k.contains('{'))
            .collect();
        assert!(
            held.is_empty(),
            "leases left on port {}: {held:?}",
            server.port
        );
    }
}

#[test]
fn the_table_shows_the_baseline_beside_the_figures() {
    let quorum = Quorum::start(1);
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args([
        "bench",
        "--redis",
        &quorum.urls()[0],
        "--scenario",
        "S1",
        "--scenario",
        "S2",
        "--cycles",
        "100",
        "--warmup",
        "10",
        "--duration",
        "1s",
        "--baseline",
    ]);
    let output = complete(command);
    output.expect(0);
    let s1 = output
        .stdout
        .lines()
        .find(|l| l.starts_with("S1"))
        .expect("an S1 row");
    assert!(s1.contains("% of the two-round-trip limit"), "{output}");
    // Five segments, each compared with a redis-benchmark run just before it.
    assert!(s1.contains("median of 5 segments"), "{output}");
    let segments = s1
        .split("segment_limit_pct=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the segments' shares");
    assert_eq!(segments.split(',').count(), 5, "{output}");
    let s2 = output
        .stdout
        .lines()
        .find(|l| l.starts_with("S2"))
        .expect("an S2 row");
    assert!(s2.contains("% of the pipelined EVALSHA limit"), "{output}");
    assert!(output.stdout.contains("redis-benchmark PING:"), "{output}");
}

#[test]
fn s4_without_three_endpoints_is_a_usage_error() {
    let quorum = Quorum::start(1);
    let leasectl = Leasectl::new();
    let mut command = leasectl.command();
    command.args(["bench", "--redis", &quorum.urls()[0], "--scenario", "S4"]);
    let output = complete(command);
    assert!(
        output
            .failed_with(2)
            .contains("S4 needs 3 or more endpoints"),
        "{output}"
    );
}

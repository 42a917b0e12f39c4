//! Every command through a Sentinel connection string (and the URL form), and bad sentinel
//! strings.

use super::*;
use crate::support::RedisServer;

#[test]
fn every_command_works_through_service_name() {
    let deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    let primary = deployment.primary();

    let done = leasectl_done(
        &deployment,
        &leasectl,
        &[
            "run",
            "--instance",
            "a",
            "--region",
            "r",
            "--work",
            "1s",
            "--lease",
            "demo",
        ],
    );
    done.expect(0);
    assert!(done.stdout.contains("Lock released"), "{done}");
    assert!(
        counter(primary, "demo") > 0,
        "the run's lease was on the primary"
    );

    // A holder: `exec` running until its lease is released under it.
    let mut holder = exec_json(
        &deployment,
        &leasectl,
        &["--ttl", "60s"],
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    );
    let acquired = holder.wait_for("\"acquired\"");
    let id = field(&acquired, "leaseId");
    let token = field(&acquired, "fencingToken").as_u64().expect("a token");
    assert_eq!(lease_id(primary, JOB).as_deref(), id.as_str());

    let done = leasectl_done(&deployment, &leasectl, &["inspect", JOB, "--json"]);
    done.expect(0);
    assert_eq!(field(done.stdout.trim(), "held"), true, "{done}");
    assert_eq!(field(done.stdout.trim(), "fencingToken"), token, "{done}");

    // The URL form too.
    let mut command = leasectl.command();
    command
        .args(["--endpoint", &deployment.url()])
        .args(["inspect", "--all", "--json"]);
    let done = complete(command);
    done.expect(0);
    let all: serde_json::Value = serde_json::from_str(done.stdout.trim()).expect("JSON");
    let names: Vec<&str> = all
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|lease| lease["lease"].as_str())
        .collect();
    assert_eq!(names, [JOB], "{done}");

    let done = leasectl_done(
        &deployment,
        &leasectl,
        &["release", JOB, "--lease-id", id.as_str().unwrap()],
    );
    done.expect(0);
    assert!(!holds(primary, JOB), "released on the primary\n{done}");
    // The holder learns it (announced on the primary, or at its next renewal).
    holder.finish().expect(4);

    let done = leasectl_done(
        &deployment,
        &leasectl,
        &[
            "exec",
            JOB,
            "--",
            "sh",
            "-c",
            "echo $LEASECTL_FENCING_TOKEN > token; exit 7",
        ],
    );
    done.expect(7);
    let exec_token: u64 = std::fs::read_to_string(leasectl.dir().join("token"))
        .expect("the child ran")
        .trim()
        .parse()
        .unwrap();
    assert!(
        exec_token > token,
        "tokens rise: {exec_token} after {token}"
    );

    let set = |value: &str, token: u64| fence_report(&deployment, &leasectl, value, token);
    set("new", exec_token).expect(0);
    set("old", token).expect(3);
    let report: Option<String> = primary.query(&["GET", "report"]);
    assert_eq!(report.as_deref(), Some("new"));
}

#[test]
fn bad_sentinel_strings_exit_2_with_one_line_and_no_password() {
    let leasectl = Leasectl::new();
    for bad in [
        "serviceName=mymaster,password=topsecret",
        "127.0.0.1:26379,serviceName=,password=topsecret",
        "127.0.0.1:x,serviceName=mymaster,password=topsecret",
        "redis+sentinel://:topsecret@127.0.0.1:26379",
        "redis+sentinel://:topsecret@127.0.0.1:26379/mymaster/notadb",
    ] {
        let mut command = leasectl.command();
        command.args(["--endpoint", bad, "inspect", JOB]);
        let done = complete(command);
        let line = done.failed_with(2);
        assert!(!line.is_empty(), "{bad}: {done}");
        done.shows_none_of(&["topsecret"]);
    }
}

#[test]
fn an_unknown_service_or_no_sentinel_is_a_redis_error_in_one_line() {
    let deployment = SentinelDeployment::start();
    let leasectl = Leasectl::new();
    let port = deployment.sentinels[0].port;
    let mut command = leasectl.command();
    let unknown = format!("127.0.0.1:{port},serviceName=nosuch,ssl=False,password=topsecret");
    command.args(["--endpoint", &unknown, "inspect", JOB]);
    let done = complete(command);
    let line = done.failed_with(1);
    assert!(line.contains("nosuch"), "names the service\n{done}");
    done.shows_none_of(&["topsecret"]);
}

#[test]
fn wait_replicas_and_wait_timeout_are_validated() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    for (field, value) in [
        ("WaitReplicas", "-1"),
        ("WaitReplicas", "one"),
        ("WaitTimeout", "0"),
        ("WaitTimeout", "-5"),
    ] {
        let mut command = leasectl.against(&server);
        command
            .env(format!("RedisLeasing__{field}"), value)
            .args(["inspect", JOB]);
        let done = complete(command);
        let line = done.failed_with(2);
        assert!(line.contains(field), "{field}={value}: {done}");
    }
}

//! OpenTelemetry: `leasectl exec` with `OTEL_EXPORTER_OTLP_ENDPOINT` set delivers the
//! metrics and spans to a real OTLP/HTTP receiver (and a gRPC one), before it exits (also on
//! a loss and on Ctrl-C).

mod receiver;

use std::process::Command;

use receiver::Receiver;

use crate::process::{complete, Running};
use crate::support::{self, Leasectl, RedisServer};

/// `leasectl exec --json NAME --ttl 1s -- CMD...`, exporting to `receiver`.
fn exec(
    leasectl: &Leasectl,
    server: &RedisServer,
    receiver: &Receiver,
    name: &str,
    command: &[&str],
) -> Command {
    let mut exec = leasectl.against(server);
    exec.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .args(["exec", "--json", name, "--ttl", "1s", "--"])
        .args(command);
    exec
}

/// Fails the test unless `receiver` got a point of metric `name` that `wanted` accepts (the
/// message shows every point of that metric).
fn assert_any_point(receiver: &Receiver, name: &str, wanted: impl Fn(&receiver::Point) -> bool) {
    let points = receiver.points(name);
    assert!(points.iter().any(wanted), "{points:?}");
}

#[test]
fn exec_delivers_the_acquisition_renewal_and_hold_metrics_and_spans() {
    let server = RedisServer::start();
    let receiver = Receiver::start();
    let leasectl = Leasectl::new();
    // The command ends once the test saw a renewal (and created `go`).
    let wait = "while [ ! -e go ]; do sleep 0.05; done";
    let mut running = Running::spawn(exec(
        &leasectl,
        &server,
        &receiver,
        "otel-job",
        &["sh", "-c", wait],
    ));
    running.wait_for("\"renewed\"");
    std::fs::write(leasectl.dir().join("go"), "").expect("write go");
    running.finish().expect(0);

    assert_any_point(&receiver, "leasing.acquisitions.total", |p| {
        p.attribute("lease.result") == Some("acquired") && p.value >= 1.0
    });
    for name in [
        "leasing.acquisition.duration",
        "leasing.renewals.total",
        "leasing.renewal.duration",
        "leasing.active_leases.current",
        "leasing.hold.duration",
    ] {
        let points = receiver.points(name);
        assert!(!points.is_empty(), "no {name}");
        for point in &points {
            assert_eq!(
                point.attribute("lease.name"),
                None,
                "no lease name unless asked: {point:?}"
            );
        }
    }
    assert_any_point(&receiver, "leasing.renewals.total", |p| {
        p.attribute("lease.result") == Some("renewed") && p.value >= 1.0
    });
    let holds = receiver.points("leasing.hold.duration");
    assert!(
        holds.iter().any(|p| p.value >= 1.0),
        "one hold recorded: {holds:?}"
    );
    let active = receiver.points("leasing.active_leases.current");
    assert!(
        active.iter().all(|p| p.value == 0.0),
        "none left active at exit: {active:?}"
    );

    let spans = receiver.spans();
    let named = |name: &str| spans.iter().find(|s| s.name == name).cloned();
    let acquire = named("lease.acquire").unwrap_or_else(|| panic!("no acquire span: {spans:?}"));
    let attribute = |span: &receiver::Span, key: &str| {
        span.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert!(attribute(&acquire, "lease.id").is_some(), "{acquire:?}");
    assert!(
        attribute(&acquire, "lease.fencing_token").is_some(),
        "{acquire:?}"
    );
    assert!(named("lease.renew").is_some(), "no renew span: {spans:?}");
    let release = named("lease.release").unwrap_or_else(|| panic!("no release span: {spans:?}"));
    assert_eq!(
        attribute(&release, "lease.id"),
        attribute(&acquire, "lease.id")
    );
}

#[test]
fn a_lost_lease_delivers_leases_lost_with_its_reason_before_exit_4() {
    let server = RedisServer::start();
    let receiver = Receiver::start();
    let leasectl = Leasectl::new();
    let mut running = Running::spawn(exec(
        &leasectl,
        &server,
        &receiver,
        "otel-lost",
        &["sleep", "60"],
    ));
    running.wait_for("\"acquired\"");
    let _: i64 = server.query(&["DEL", &support::key("otel-lost")]);
    running.finish().expect(4);
    assert_any_point(&receiver, "leasing.leases_lost.total", |p| {
        p.attribute("lease.loss_reason") == Some("not_owner") && p.value >= 1.0
    });
}

#[test]
fn a_held_lease_counts_as_contention_with_the_lease_name_when_asked() {
    let server = RedisServer::start();
    let receiver = Receiver::start();
    let leasectl = Leasectl::new();
    let _: () = server.query(&[
        "HSET",
        &support::key("otel-held"),
        "leaseId",
        "someone-else",
    ]);
    let _: i64 = server.query(&["PEXPIRE", &support::key("otel-held"), "60000"]);
    let mut held = exec(&leasectl, &server, &receiver, "otel-held", &["true"]);
    held.env("LEASECTL_METRICS_LEASE_NAME", "1");
    complete(held).expect(3);
    assert_any_point(&receiver, "leasing.acquisitions.total", |p| {
        p.attribute("lease.result") == Some("held")
            && p.attribute("lease.name") == Some("otel-held")
    });
    assert!(!receiver.points("leasing.contention.total").is_empty());
}

#[test]
fn ctrl_c_flushes_what_was_recorded_before_exit() {
    let server = RedisServer::start();
    let receiver = Receiver::start();
    let leasectl = Leasectl::new();
    let command = exec(&leasectl, &server, &receiver, "otel-int", &["sleep", "60"]);
    let mut running = Running::spawn(command);
    running.wait_for("\"acquired\"");
    support::signal(running.pid(), "INT");
    running.finish().expect(130);
    assert_any_point(&receiver, "leasing.acquisitions.total", |p| {
        p.attribute("lease.result") == Some("acquired")
    });
    assert!(!receiver.points("leasing.hold.duration").is_empty());
}

#[test]
fn grpc_delivers_the_metrics_and_spans_when_the_protocol_says_so() {
    let server = RedisServer::start();
    let receiver = Receiver::start_grpc();
    let leasectl = Leasectl::new();
    let mut command = exec(&leasectl, &server, &receiver, "otel-grpc", &["true"]);
    command.env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    complete(command).expect(0);
    assert_any_point(&receiver, "leasing.acquisitions.total", |p| {
        p.attribute("lease.result") == Some("acquired")
    });
    let spans = receiver.spans();
    assert!(spans.iter().any(|s| s.name == "lease.acquire"), "{spans:?}");
    assert!(spans.iter().any(|s| s.name == "lease.release"), "{spans:?}");
}

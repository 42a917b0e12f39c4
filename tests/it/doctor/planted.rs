//! Problems planted on plain servers: an evicting memory policy, an ACL user without EVALSHA,
//! an unreachable quorum instance, a slow instance whose clock must not look skewed; and
//! `configure`, which runs the same checks before it saves.

use std::time::Duration;

use super::{against, doctor};
use crate::process::complete;
use crate::proxy::Proxy;
use crate::support::{Leasectl, Quorum, RedisServer};

#[test]
fn an_evicting_memory_policy_is_found() {
    let server = RedisServer::start();
    let address = format!("127.0.0.1:{}", server.port);
    let leasectl = Leasectl::new();
    let _: () = server.query(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);

    // No memory limit yet: it would evict once one is set.
    let (report, _) = doctor(leasectl.against(&server));
    let check = report.of("memory policy", &address);
    assert_eq!(check.status, "warn", "{check:?}");
    assert!(report.healthy, "{report:#?}");

    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let (report, _) = doctor(leasectl.against(&server));
    let check = report.of("memory policy", &address);
    assert_eq!(check.status, "fail", "{check:?}");
    assert!(check.detail.contains("allkeys-lru"), "{check:?}");
    assert!(
        check.fix.as_deref().unwrap().contains("noeviction"),
        "{check:?}"
    );
    assert!(!report.healthy);
}

#[test]
fn an_acl_user_without_evalsha_is_found_with_the_grant_it_needs() {
    let server = RedisServer::start();
    let address = format!("127.0.0.1:{}", server.port);
    let _: () = server.query(&[
        "ACL", "SETUSER", "doc", "on", ">doc-pw", "~*", "&*", "+@all", "-evalsha",
    ]);
    let leasectl = Leasectl::new();
    let url = format!("redis://doc:doc-pw@127.0.0.1:{}", server.port);
    let (report, output) = doctor(against(&leasectl, &[url]));
    assert!(!report.healthy);
    let check = report.of("permissions", &address);
    assert_eq!(check.status, "fail", "{check:?}");
    assert!(check.detail.contains("EVALSHA"), "{check:?}");
    assert_eq!(
        check.fix.as_deref(),
        Some("ACL SETUSER doc +evalsha"),
        "{check:?}"
    );
    assert_eq!(report.named("test lease")[0].status, "fail", "{report:#?}");
    output.shows_none_of(&["doc-pw"]);
}

#[test]
fn an_unreachable_quorum_instance_is_found_and_the_majority_still_works() {
    let mut quorum = Quorum::start(3);
    let leasectl = Leasectl::new();
    let down = quorum.addresses()[1].clone();
    // A server that started within the test lease's TTL (10 s) may have forgotten a lease:
    // its grant counts only when every instance answers.
    quorum.wait_older_than(Duration::from_secs(10));
    quorum.servers[1].kill();
    let (report, _) = doctor(against(&leasectl, &quorum.urls()));
    assert!(!report.healthy);
    let check = report.of("reachable", &down);
    assert_eq!(check.status, "fail", "{check:?}");
    for up in [&quorum.addresses()[0], &quorum.addresses()[2]] {
        assert_eq!(report.of("reachable", up).status, "pass", "{report:#?}");
    }
    let lease = &report.named("test lease")[0];
    assert_eq!(
        lease.status, "pass",
        "a majority still takes a lease: {lease:?}"
    );
}

#[test]
fn a_slow_instance_behind_a_delaying_proxy_does_not_look_skewed() {
    let quorum = Quorum::start(3);
    let proxy = Proxy::start(quorum.servers[2].port);
    // Each way: a clock read at the start of the request would look this far ahead.
    proxy.set_latency(Duration::from_millis(600));
    let slow = format!("127.0.0.1:{}", proxy.port);
    let mut urls = quorum.urls();
    urls[2] = proxy.url();
    let leasectl = Leasectl::new();
    let (report, _) = doctor(against(&leasectl, &urls));
    let clock = report.of("clock", &slow);
    assert_eq!(clock.status, "pass", "{clock:?}");
    let reachable = report.of("reachable", &slow);
    assert_eq!(reachable.status, "warn", "slow, and said so: {reachable:?}");
    for check in report.named("clock") {
        assert_eq!(check.status, "pass", "{check:?}");
    }
    assert!(report.healthy, "{report:#?}");
}

#[test]
fn configure_runs_the_checks_and_saves_a_failing_deployment_only_when_told() {
    let server = RedisServer::start();
    let _: () = server.query(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let _: () = server.query(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let leasectl = Leasectl::new();
    let configure = |more: &[&str]| {
        let mut command = leasectl.command();
        command.args([
            "configure",
            "--auth",
            "local",
            "--endpoint",
            &server.url(),
            "--yes",
        ]);
        command.args(more);
        complete(command)
    };
    let settings = leasectl.dir().join("appsettings.Local.json");

    let refused = configure(&[]);
    let line = refused.failed_with(1);
    assert!(line.contains("memory policy"), "{refused}");
    assert!(refused.stderr.contains("✗ memory policy"), "{refused}");
    assert!(!settings.exists(), "nothing is written");

    let saved = configure(&["--save-anyway"]);
    saved.succeeded();
    assert!(saved.stderr.contains("✗ memory policy"), "{saved}");
    assert!(settings.exists(), "{saved}");
}

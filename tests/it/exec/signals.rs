//! Signals

use super::*;

/// Sends `signal` to a running `exec` and checks that its child got it.
fn forwards(signal: &str, record: &str, code: i32) {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut job = Proc::spawn(exec(&leasectl, &server, &[], &trapping("child"), &[]));
    job.record(&path(&leasectl, "child.pid"));
    support::signal(job.pid(), signal);
    let done = job.finish();
    done.expect(code);
    let got = read_record(&path(&leasectl, &format!("child.{record}")));
    assert_eq!(got.as_deref(), Some(signal), "the child's trap\n{done}");
    assert!(!exists(&server, KEY), "released after SIG{signal}\n{done}");
}

#[test]
fn sigterm_is_forwarded_and_the_lease_released() {
    forwards("TERM", "term", 42);
}

#[test]
fn sigint_is_forwarded_and_the_lease_released() {
    forwards("INT", "int", 43);
}

#[test]
fn the_child_dies_with_a_killed_exec() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (mut job, child) = holding(&leasectl, &server, "child");
    assert!(alive(child));
    let _ = job.child.kill();
    let _ = job.child.wait();
    assert!(
        eventually(LIMIT, || !alive(child)),
        "the child {child} outlived its exec"
    );
}

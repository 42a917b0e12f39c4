//! A lost lease stops the child

use super::*;

#[test]
fn deleting_the_key_stops_the_child_and_exits_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut job = renewing_exec(&leasectl, &server, &[], &trapping("child"));
    job.record(&path(&leasectl, "child.pid"));
    delete_lease(&server);
    let done = job.finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost") && done.stderr.contains("deleted"),
        "says the lease was lost and why\n{done}"
    );
    assert_got_sigterm(&leasectl, "child.term", &done);
}

#[test]
fn a_forced_release_stops_the_child_at_once_not_at_the_next_renewal() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    // Renewal only every 10 minutes: the release announcement alone can stop the child in time.
    let mut command = exec(
        &leasectl,
        &server,
        &["--ttl", "30m"],
        &trapping("child"),
        &[],
    );
    command.env("RedisLeasing__AutoRenewInterval", "10m");
    let mut job = Proc::spawn(command);
    job.record(&path(&leasectl, "child.pid"));
    let released = leasectl_release_force(&leasectl, &server);
    assert_eq!(released, 0, "release --force --yes");
    let done = job.finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    assert_got_sigterm(&leasectl, "child.term", &done);
}

/// `leasectl release job --force --yes`; answers its exit code.
fn leasectl_release_force(leasectl: &Leasectl, server: &RedisServer) -> i32 {
    let status = leasectl
        .against(server)
        .args(["release", JOB, "--force", "--yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run leasectl release");
    status.code().unwrap_or(-1)
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_and_the_new_holder_kept() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let script = format!("trap 'echo TERM > child.term' TERM; {}", until_go("child"));
    let mut job = renewing_exec(&leasectl, &server, &["--kill-after", "1s"], &script);
    let child: u32 = job.record(&path(&leasectl, "child.pid")).parse().unwrap();
    // Someone else takes the lease over.
    let _: () = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(KEY)
        .arg("leaseId")
        .arg("intruder")
        .arg("meta_instanceId")
        .arg("intruder")
        .ignore()
        .cmd("PEXPIRE")
        .arg(KEY)
        .arg(60_000)
        .ignore()
        .query(&mut server.connection())
        .unwrap();
    let done = job.finish();
    done.expect(4);
    assert_got_sigterm(&leasectl, "child.term", &done);
    assert!(!alive(child), "the child was killed\n{done}");
    assert_eq!(
        hgetall(&server, KEY).get("leaseId").map(String::as_str),
        Some("intruder"),
        "the new holder's lease is left alone\n{done}"
    );
}

#[test]
fn renewal_stopping_stops_the_child_and_exits_4() {
    // No renewal at all: the lease ends at its TTL, and the child with it. (The TTL, like
    // the hold cap below, leaves `sh` ample time to set its trap on a loaded machine.)
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let mut command = exec(
        &leasectl,
        &server,
        &["--ttl", "3s"],
        &trapping("child"),
        &[],
    );
    command.env("RedisLeasing__AutoRenew", "false");
    let done = Proc::spawn(command).finish();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    assert!(path(&leasectl, "child.term").exists(), "SIGTERM\n{done}");

    // Redis stops answering: renewal cannot be confirmed in time.
    let mut job = renewing_exec(&leasectl, &server, &[], &trapping("paused"));
    job.record(&path(&leasectl, "paused.pid"));
    server.pause();
    let done = job.finish();
    server.resume();
    done.expect(4);
    assert!(
        done.stderr.contains("lost"),
        "says the lease was lost\n{done}"
    );
    assert!(
        done.stderr.contains("could not release"),
        "says the release failed\n{done}"
    );
    assert!(path(&leasectl, "paused.term").exists(), "SIGTERM\n{done}");
}

#[test]
fn max_hold_ends_the_child_and_exits_4() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let command = exec(
        &leasectl,
        &server,
        &["--max-hold", "2s"],
        &trapping("child"),
        &[],
    );
    let done = Proc::spawn(command).finish();
    done.expect(4);
    assert!(
        done.stderr.contains("hold-time cap"),
        "names the cap\n{done}"
    );
    assert!(path(&leasectl, "child.term").exists(), "SIGTERM\n{done}");
    assert!(!exists(&server, KEY), "released at the cap\n{done}");
}

//! Contention

use super::*;

#[test]
fn of_ten_at_once_exactly_one_runs_and_nine_exit_3() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    // Each records that its command started, then waits for `all.go`.
    let script = "echo $$ > ran-$1; while [ ! -e all.go ]; do sleep 0.05; done";
    let mut jobs: Vec<Proc> = (0..10)
        .map(|i| Proc::spawn(exec(&leasectl, &server, &[], script, &[&i.to_string()])))
        .collect();
    let ran = |i: usize| path(&leasectl, &format!("ran-{i}")).exists();
    // Wait until each one has either ended or started its command.
    let settled = eventually(LIMIT, || {
        jobs.iter_mut()
            .enumerate()
            .all(|(i, job)| ran(i) || job.has_exited())
    });
    assert!(settled, "not every exec ended or ran within {LIMIT:?}");
    let running: Vec<usize> = (0..10).filter(|&i| ran(i)).collect();
    assert_eq!(
        running.len(),
        1,
        "exactly one runs the command: {running:?}"
    );
    let winner = running[0];
    let winner_pid = jobs[winner].pid();
    assert!(!jobs[winner].has_exited(), "the winner is still running");
    let mut winning = None;
    for (i, job) in jobs.drain(..).enumerate() {
        if i == winner {
            winning = Some(job);
            continue;
        }
        let done = job.finish();
        done.expect(3);
        assert!(
            done.stderr.contains("is held by") && done.stderr.contains(&format!(":{winner_pid}")),
            "a loser names the holder\n{done}"
        );
        assert!(!ran(i), "a loser ran the command\n{done}");
    }
    assert!(exists(&server, KEY), "the winner still holds the lease");
    File::create(path(&leasectl, "all.go")).unwrap();
    winning.unwrap().finish().expect(0);
    assert!(!exists(&server, KEY), "released after the winner's exit");
    assert_eq!((0..10).filter(|&i| ran(i)).count(), 1);
}

#[test]
fn wait_runs_the_command_once_the_holder_releases() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let holder_token: u64 = hgetall(&server, KEY)["fencingToken"].parse().unwrap();
    let mut waiter = Proc::spawn(exec(
        &leasectl,
        &server,
        &["--wait", "20s"],
        "echo $LEASECTL_FENCING_TOKEN > waiter.ran",
        &[],
    ));
    wait_for_subscriber(&server, &mut waiter);
    assert!(!path(&leasectl, "waiter.ran").exists(), "ran while held");
    go(&leasectl, "holder");
    holder.finish().expect(0);
    let done = waiter.finish();
    done.expect(0);
    let token = read_record(&path(&leasectl, "waiter.ran"))
        .unwrap_or_else(|| panic!("the waiter's command did not run\n{done}"));
    let token: u64 = token.parse().expect("a fencing token");
    assert!(
        token > holder_token,
        "the next fencing token: {token} after {holder_token}"
    );
    assert!(!exists(&server, KEY), "released after the waiter's exit");
}

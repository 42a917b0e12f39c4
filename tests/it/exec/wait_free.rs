//! inspect --wait-free

use super::*;

#[test]
fn wait_free_on_a_free_lease_exits_0() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let done = leasectl_done(&leasectl, &server, &["inspect", JOB, "--wait-free", "20s"]);
    done.expect(0);
    assert!(done.stdout.contains("job is free"), "{done}");
}

#[test]
fn wait_free_wakes_on_a_release() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let mut command = leasectl.against(&server);
    command.args(["inspect", JOB, "--wait-free", "20s"]);
    let mut waiter = Proc::spawn(command);
    wait_for_subscriber(&server, &mut waiter);
    go(&leasectl, "holder");
    holder.finish().expect(0);
    let done = waiter.finish();
    done.expect(0);
    assert!(done.stdout.contains("job is free"), "{done}");
}

#[test]
fn wait_free_runs_out_with_exit_3_and_names_the_holder() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let (holder, _) = holding(&leasectl, &server, "holder");
    let done = leasectl_done(&leasectl, &server, &["inspect", JOB, "--wait-free", "1s"]);
    done.expect(3);
    let held_by = format!("still held by {}", hgetall(&server, KEY)["meta_instanceId"]);
    assert!(
        done.stdout.contains(&held_by),
        "expected {held_by:?}\n{done}"
    );
    assert!(
        done.stdout.contains(&format!(":{}", holder.pid())),
        "{done}"
    );
}

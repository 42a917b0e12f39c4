//! Quorum mode: fencing.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    tokens_increase_across_majorities,
    tokens_increase_across_restarts_with_empty_memory,
);

/// Acquires `name`, checks that its token is above every earlier one and that a majority's
/// counters (per `inspect`) already stand at it, releases it, and answers the token.
///
/// With every instance up, it also waits until all counters stand at the token: they are
/// raised on every instance that can be reached, so that the next restart may take any one.
async fn fenced_acquisition(quorum: &Quorum, client: &LeaseClient, name: &str, last: u64) -> u64 {
    fenced_acquisition_with(quorum, client, name, last, &long()).await
}

async fn fenced_acquisition_with(
    quorum: &Quorum,
    client: &LeaseClient,
    name: &str,
    last: u64,
    options: &LeaseOptions,
) -> u64 {
    let lease = acquired(try_acquire(client, name, options).await);
    let token = lease.fencing_token();
    assert!(token > last, "token {token} after {last}");
    let mut info = inspect(client, name).await;
    let standing = info
        .instances
        .iter()
        .filter(|view| view.counter.is_some_and(|c| c >= token))
        .count();
    assert!(standing >= quorum.majority(), "{:?}", info.instances);
    if info.instances.iter().all(|view| view.error.is_none()) {
        every_counter_reaches(quorum, name, token).await;
        info = inspect(client, name).await;
    }
    assert_eq!(info.holder.and_then(|h| h.fencing_token), Some(token));
    release(lease).await;
    token
}

async fn tokens_increase_across_majorities(n: usize) {
    // The sequence with A, B, C: five leases granted by {B, C} leave A's counter behind
    // B's and C's; the next is granted by {A, C}, the one after by {A, B}; with a naive max of
    // per-instance counts the third would repeat a token. With five instances, two at a time
    // stand in for A, B and C.
    // With an instance down, a restarted one's grant counts only once it is older than the
    // TTL: short leases, and a wait after each restart.
    let mut quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let down = minority(n);
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    let mut dead = window(n, 0, down);
    for &i in &dead {
        quorum.servers[i].kill();
    }
    let mut last = 0;
    for _ in 0..5 {
        last = fenced_acquisition_with(&quorum, &client, "abc", last, &short()).await;
    }
    for step in 1..=n {
        // Back with empty memory, and the next ones down: a different majority each time.
        for &i in &dead {
            quorum.servers[i].restart();
        }
        notice_restarts(&client).await;
        tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
        dead = window(n, step * down, down);
        for &i in &dead {
            quorum.servers[i].kill();
        }
        last = fenced_acquisition_with(&quorum, &client, "abc", last, &short()).await;
    }
}

async fn tokens_increase_across_restarts_with_empty_memory(n: usize) {
    let mut quorum = Quorum::start(n);
    let client = connect(&quorum).await;
    let mut last = 0;
    for round in 0..3 * n {
        last = fenced_acquisition(&quorum, &client, "restarted", last).await;
        quorum.servers[round % n].restart();
    }
    let fresh = connect(&quorum).await;
    fenced_acquisition(&quorum, &fresh, "restarted", last).await;
}

/// Acquires `name` (it must be free) for [`SHORT`] and releases it at once; answers its token.
async fn token_of_one_acquisition(client: &LeaseClient, name: &str) -> u64 {
    let lease = acquired(try_acquire(client, name, &short()).await);
    let token = lease.fencing_token();
    release(lease).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_when_single_restarts_follow_each_other() {
    // A restarts empty, and the next acquisition's call to it fails on the connection that died
    // with it, though A is up again; then B restarts empty and C goes down. A must have been
    // raised all the same: else {A, B} would hand out a token no larger than the last.
    let mut quorum = Quorum::start(3);
    let client = connect(&quorum).await;
    let first = token_of_one_acquisition(&client, "sequence").await;
    quorum.servers[0].restart();
    let second = token_of_one_acquisition(&client, "sequence").await;
    assert!(second > first);
    quorum.servers[1].restart();
    // With C down, A and B count only once older than the TTL.
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    quorum.servers[2].kill();
    notice_restarts(&client).await;
    let third = token_of_one_acquisition(&client, "sequence").await;
    assert!(third > second, "token {third} after {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_counts_from_the_first_call() {
    let mut quorum = Quorum::start(3);
    let client = connect(&quorum).await;
    release(acquired(try_acquire(&client, "first-call", &short()).await)).await;
    quorum.servers[0].restart();
    // With B down, A's grant counts only once it is older than the TTL.
    tokio::task::block_in_place(|| quorum.wait_older_than(SHORT));
    quorum.servers[1].kill();
    // A and C are up: a majority.
    release(acquired(try_acquire(&client, "first-call", &short()).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_empty_does_not_hand_out_a_held_lease_again() {
    // A holds a lease granted by a bare majority {0, 1} (2 was down). Instance 1 restarts with
    // empty memory and 2 comes back empty: {1, 2} would grant the lease a second time, the hole
    // Redlock closes with "delayed restarts". Their grants must not count while instance 0
    // reports A, who acquired it before they started.
    let mut quorum = Quorum::start(3);
    let first = connect(&quorum).await;
    // A bare majority's grants count only from instances older than the TTL.
    let ttl = Duration::from_secs(10);
    tokio::task::block_in_place(|| quorum.wait_older_than(ttl));
    quorum.servers[2].kill();
    let lease = acquired(try_acquire(&first, "forgotten", &options(ttl)).await);
    quorum.servers[1].restart();
    quorum.servers[2].restart();
    let second = connect(&quorum).await;
    let answer = try_acquire(&second, "forgotten", &long()).await;
    assert_eq!(held(answer).lease_id.as_deref(), Some(lease.id()));
    // Undone at once where it was granted; a grant still under way when the attempt was
    // decided is undone in the background. (A's own acquire may reach instance 2 late: its
    // call was retried on the connection that died with the instance.)
    for i in [1, 2] {
        let undone = tokio::task::block_in_place(|| {
            support::eventually(BOUND, || {
                lease_id_on(&quorum.servers[i], "forgotten").is_none_or(|id| id == lease.id())
            })
        });
        assert!(undone, "undone on {i}");
    }
    // Once A is gone, the young instances' grants count again. (Its release returns at a
    // majority and finishes on the last instance in the background: until then that instance
    // still answers A, and a young grant needs every other instance's answer.)
    release(lease).await;
    for (i, server) in quorum.servers.iter().enumerate() {
        assert!(gone_soon(server, "forgotten"), "released on instance {i}");
    }
    release(acquired(try_acquire(&second, "forgotten", &long()).await)).await;
}

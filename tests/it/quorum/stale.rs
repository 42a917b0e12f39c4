//! Quorum mode: stale keys and undone grants.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    a_stale_key_on_a_minority_blocks_nobody,
    a_failed_acquire_leaves_no_key_behind,
);

async fn a_stale_key_on_a_minority_blocks_nobody(n: usize) {
    let quorum = Quorum::start(n);
    let stale = window(n, 0, minority(n));
    for &i in &stale {
        write_holder(&quorum.servers[i], "stale", "ghost");
        // Left after the instances started: the others are younger than the TTL, and an older
        // lease would keep their grants from counting (see the restart test below).
        support::acquired_now(&quorum.servers[i], &key("stale"));
    }
    let client = connect(&quorum).await;
    let lease = acquired(try_acquire(&client, "stale", &long()).await);
    let info = inspect(&client, "stale").await;
    let holder = info.holder.as_ref().expect("the majority's holder");
    assert_eq!(holder.lease_id.as_deref(), Some(lease.id()), "ours");
    assert_eq!(info.instances.len(), n);
    for (i, view) in info.instances.iter().enumerate() {
        let holder = view.holder.as_ref().expect("held on every instance");
        let expected = if stale.contains(&i) {
            "id-of-ghost"
        } else {
            lease.id()
        };
        assert_eq!(holder.lease_id.as_deref(), Some(expected), "instance {i}");
    }
    if n == 3 {
        assert_eq!(
            info.instances[0].holder.as_ref().unwrap().display_name(),
            "ghost (us-east)"
        );
    }

    // Another client finds it held. (It may name the stale holder: a failed try decides on
    // the first answers that rule out a grant, which may be the stale one's and ours.)
    let other = connect(&quorum).await;
    let seen = held(try_acquire(&other, "stale", &long()).await);
    let named = seen.lease_id.as_deref();
    assert!(
        named == Some(lease.id()) || named == Some("id-of-ghost"),
        "{seen:?}"
    );

    release(lease).await;
    for (i, server) in quorum.servers.iter().enumerate() {
        let expected = stale.contains(&i).then(|| "id-of-ghost".to_string());
        assert_eq!(lease_id_on(server, "stale"), expected, "instance {i}");
    }
    let again = acquired(try_acquire(&other, "stale", &long()).await);
    release(again).await;
}

async fn a_failed_acquire_leaves_no_key_behind(n: usize) {
    let quorum = Quorum::start(n);
    let majority = quorum.majority();
    for server in &quorum.servers[..majority] {
        write_holder(server, "taken", "us-east-1");
    }
    let client = connect(&quorum).await;
    for attempt in 0..20 {
        let holder = held(try_acquire(&client, "taken", &long()).await);
        assert_eq!(
            holder.display_name(),
            "us-east-1 (us-east)",
            "attempt {attempt}"
        );
        // A grant still under way when the attempt was decided is undone in the background.
        for (i, server) in quorum.servers.iter().enumerate().skip(majority) {
            let undone = tokio::task::block_in_place(|| {
                support::eventually(BOUND, || !exists_on(server, "taken"))
            });
            assert!(undone, "attempt {attempt}: instance {i}");
        }
    }
    for server in &quorum.servers[..majority] {
        assert_eq!(
            lease_id_on(server, "taken").as_deref(),
            Some("id-of-us-east-1"),
            "the holder's keys are untouched"
        );
    }

    // A free instance that is paused during the attempt runs the grant and its undo, in
    // order, once it resumes.
    // Short enough to keep the test quick, long enough that a loaded machine's live
    // instances still answer within it.
    let settings = Settings {
        sync_timeout: Duration::from_secs(3),
        ..quorum.settings()
    };
    let client = connect_with(settings).await;
    let slow = &quorum.servers[n - 1];
    let counted = counter_on(slow, "taken");
    slow.pause();
    let holder = held(try_acquire(&client, "taken", &long()).await);
    assert_eq!(holder.display_name(), "us-east-1 (us-east)");
    slow.resume();
    let granted_late = tokio::task::block_in_place(|| {
        support::eventually(BOUND, || counter_on(slow, "taken") > counted)
    });
    assert!(granted_late, "the paused instance ran the queued grant");
    for (i, server) in quorum.servers.iter().enumerate().skip(majority) {
        assert!(gone_soon(server, "taken"), "instance {i}");
    }
}

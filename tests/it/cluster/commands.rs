//! Every command on names in every primary's slots, through any node's address; sets across
//! slots refused; release notifications reach a waiter.

use super::*;
use crate::leases::{acquired, hand_over, options};
use crate::process::{complete, parse_json, SHORT_RUN};
use crate::support::json::LeaseJson;
use crate::support::key;

#[test]
fn every_command_works_on_every_primarys_names_through_any_node() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let names = cluster.name_on_each_primary("cmd");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (i, name) in names.iter().enumerate() {
        // The seed node is never the lease's own primary in one round, and a replica in another.
        let seed = (cluster.primary_of(&key(name)) + 1 + i) % cluster.nodes.len();
        // run: the winner works a second and releases.
        let mut run = via(&leasectl, &cluster, seed);
        run.args(SHORT_RUN).args(["--lease", name]);
        let ran = complete(run);
        ran.expect(0);
        assert!(ran.stdout.contains("Lock released"), "{ran}");
        // exec: the child sees its fencing token.
        let mut exec = via(&leasectl, &cluster, seed);
        exec.args([
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "echo token=$LEASECTL_FENCING_TOKEN",
        ]);
        let execed = complete(exec);
        execed.expect(0);
        assert!(execed.stdout.contains("token="), "{execed}");
        // A lease held by the library: inspect shows it, release by id frees it.
        let client = runtime.block_on(connect(&cluster, seed));
        let lease = acquired(runtime.block_on(client.try_acquire(name, &options(LONG))));
        assert!(cluster.exists(&key(name)), "on its slot's primary");
        let mut inspect = via(&leasectl, &cluster, seed);
        inspect.args(["inspect", name, "--json"]);
        let shown: LeaseJson = parse_json(&complete(inspect));
        assert!(shown.held);
        assert_eq!(shown.lease_id.as_deref(), Some(lease.id()));
        assert_eq!(shown.fencing_token, Some(lease.fencing_token()));
        let mut release = via(&leasectl, &cluster, seed);
        release.args(["release", name, "--lease-id", lease.id()]);
        complete(release).expect(0);
        assert!(!cluster.exists(&key(name)), "released");
        // release --force deletes whoever holds it.
        let again = acquired(runtime.block_on(client.try_acquire(name, &options(LONG))));
        let mut force = via(&leasectl, &cluster, seed);
        force.args(["release", name, "--force", "--yes"]);
        complete(force).expect(0);
        assert!(!cluster.exists(&key(name)), "force-released");
        // fence: a write with the newer token, then a stale one refused (exit 3).
        let protected = format!("report:{name}");
        let newer = again.fencing_token().to_string();
        let mut fence = via(&leasectl, &cluster, seed);
        fence.args(["fence", "set", &protected, "new", "--token", &newer]);
        complete(fence).expect(0);
        let mut stale = via(&leasectl, &cluster, seed);
        stale.args(["fence", "set", &protected, "old", "--token", "1"]);
        complete(stale).expect(3);
        assert_eq!(cluster.get(&protected).as_deref(), Some("new"));
    }
    // inspect --all lists the leases of all three primaries.
    let client = runtime.block_on(connect(&cluster, 0));
    let mut held = Vec::new();
    for name in &names {
        held.push(acquired(
            runtime.block_on(client.try_acquire(name, &options(LONG))),
        ));
    }
    let mut all = via(&leasectl, &cluster, 1);
    all.args(["inspect", "--all", "--json"]);
    let listed: Vec<LeaseJson> = parse_json(&complete(all));
    let mut listed: Vec<String> = listed.into_iter().map(|l| l.lease).collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected, "one lease on each primary");
}

#[test]
fn a_set_across_slots_is_refused_before_anything_is_written_and_a_hash_tag_is_suggested() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let names = cluster.name_on_each_primary("set");
    let mut exec = via(&leasectl, &cluster, 0);
    exec.args(["exec", &names[0], "--lease", &names[1], "--", "true"]);
    let refused = complete(exec);
    let error = refused.failed_with(2);
    assert!(
        error.contains("hash tag") && error.contains("{job}"),
        "{refused}"
    );
    for name in &names[..2] {
        assert!(!cluster.exists(&key(name)), "nothing written for {name}");
    }
    // With a common hash tag the set is taken.
    let mut tagged = via(&leasectl, &cluster, 0);
    tagged.args(["exec", "{job}:a", "--lease", "{job}:b", "--", "true"]);
    complete(tagged).expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_over_sharded_pub_sub() {
    let cluster = RedisCluster::start();
    for name in cluster.name_on_each_primary("woken") {
        let holder_client = connect(&cluster, 0).await;
        let waiter_client = connect(&cluster, 3).await;
        // A ten-minute lease, and a waiter whose fallback poll is an hour: only the release
        // notification can wake it within the bound.
        let holder = acquired(holder_client.try_acquire(&name, &options(LONG)).await);
        let lease = hand_over(BOUND, holder, waiter_client).await;
        lease.release().await.expect("release");
    }
}

#[test]
fn a_script_is_cached_only_on_the_primary_whose_slot_needed_it() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let name = &cluster.name_on_each_primary("cached")[0];
    let owner = cluster.primary_of(&key(name));
    let mut exec = via(&leasectl, &cluster, 0);
    exec.args(["exec", name, "--", "true"]);
    complete(exec).expect(0);
    // The NOSCRIPT was answered with EVAL on the lease's primary, not SCRIPT LOAD everywhere.
    for primary in cluster.primaries() {
        let info: String = cluster.nodes[primary].query(&["INFO", "memory"]);
        let cached: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO memory shows the cached scripts");
        if primary == owner {
            assert!(cached > 0, "the lease's primary ran the scripts");
        } else {
            assert_eq!(cached, 0, "primary {primary} never needed a script");
        }
    }
}

#[test]
fn the_cluster_setting_forces_the_mode_either_way() {
    let cluster = RedisCluster::start();
    let leasectl = Leasectl::new();
    let names = cluster.name_on_each_primary("forced");
    // Cluster: false on a cluster node: a standalone connection, refused by the other slots.
    let elsewhere = names
        .iter()
        .find(|name| cluster.primary_of(&key(name)) != 0)
        .expect("a name on another primary");
    let mut standalone = via(&leasectl, &cluster, 0);
    standalone
        .env("RedisLeasing__Cluster", "false")
        .args(["exec", elsewhere, "--", "true"]);
    let moved = complete(standalone);
    assert!(moved.failed_with(1).contains("Moved"), "{moved}");
    // Cluster: true on a standalone server: a settings error (exit 2) that says so.
    let server = crate::support::RedisServer::start();
    let mut forced = leasectl.against(&server);
    forced
        .env("RedisLeasing__Cluster", "true")
        .args(["inspect", "job"]);
    let refused = complete(forced);
    assert!(
        refused.failed_with(2).contains("not a Redis Cluster node"),
        "{refused}"
    );
    let mut bad = leasectl.against(&server);
    bad.env("RedisLeasing__Cluster", "maybe")
        .args(["inspect", "job"]);
    let bad = complete(bad);
    assert!(bad.failed_with(2).contains("RedisLeasing.Cluster"), "{bad}");
}

#[test]
fn an_acl_user_with_a_password_works_on_every_node() {
    let cluster = RedisCluster::start();
    for node in &cluster.nodes {
        let rules = [
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">s3cret-pass",
            "resetkeys",
            "~lease:*",
            "~report:*",
            "resetchannels",
            "&lease:*",
            "+@all",
        ];
        let _: String = node.query(&rules);
    }
    let leasectl = Leasectl::new();
    let seed = cluster.nodes[2].port;
    for name in cluster.name_on_each_primary("acl") {
        let mut exec = leasectl.command();
        exec.arg("--endpoint")
            .arg(format!("redis://app:s3cret-pass@127.0.0.1:{seed}"))
            .args(["exec", &name, "--", "true"]);
        let done = complete(exec);
        done.expect(0);
        done.shows_none_of(&["s3cret-pass"]);
    }
    // A wrong password is an authentication error (exit 1), not a cluster error.
    let mut wrong = leasectl.command();
    wrong
        .arg("--endpoint")
        .arg(format!("redis://app:wrong@127.0.0.1:{seed}"))
        .args(["inspect", "job"]);
    let refused = complete(wrong);
    refused.failed_with(1);
    refused.shows_none_of(&["wrong@"]);
}

#[test]
fn an_evicting_policy_on_any_primary_is_warned_about() {
    let cluster = RedisCluster::start();
    // Not the seed's own policy: another primary's, which only the cluster's view shows.
    let other = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != 0)
        .expect("another primary");
    let evicting = &cluster.nodes[other];
    let _: () = evicting.query(&["CONFIG", "SET", "maxmemory", "100mb"]);
    let _: () = evicting.query(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let leasectl = Leasectl::new();
    let mut exec = via(&leasectl, &cluster, 0);
    exec.args(["exec", "evicted", "--", "true"]);
    let output = complete(exec);
    output.expect(0);
    assert_eq!(
        output.stderr.matches("maxmemory-policy").count(),
        1,
        "{output}"
    );
    assert!(output.stderr.contains(&evicting.address()), "{output}");
}

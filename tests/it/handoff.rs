//! Issue 17 (S3): in single mode a release hands the lease straight to the first queued waiter
//! (`handoff.lua`), which learns it from the release notification without a round trip of its
//! own; a lost notification, a waiter that died and one that gave up leave nothing behind.

use std::time::Duration;

use leasectl::{Acquire, Lease, LeaseClient, LeaseFormat, LeaseOptions, Settings};
use tokio::task::JoinHandle;

use crate::leases::{acquired, connect_within, options, within, woken_only};
use crate::process::Running;
use crate::support::{
    command_calls, eventually, exists, fence_key, get, grants_key, hgetall, key, pttl, query,
    queue_key, release_channel, signal, subscribers, url_without_publish, Leasectl, RedisServer,
    BOUND,
};

/// How long a queued waiter keeps its place without confirming it (QUEUE_GRACE): the longest
/// a lease is handed to a waiter for before that waiter extends it.
const GRACE_MS: i64 = 1500;

/// A waiter that only a notification (or its place's heartbeat) moves: a fallback poll of an
/// hour, a 30 s lease, and the metadata that says who it is.
fn waiter_options(who: &str) -> LeaseOptions {
    woken_only().meta("instanceId", who)
}

/// The places queued for `name`, first first.
fn queued(server: &RedisServer, name: &str) -> Vec<String> {
    server.query(&["ZRANGE", &queue_key(name), "0", "-1"])
}

/// A client whose user may not PUBLISH: its releases notify nobody (they stand all the same).
fn without_publish(server: &RedisServer) -> Settings {
    Settings::for_endpoints(&[url_without_publish(server)]).expect("a valid URL")
}

/// A holder of `name` for five minutes (through `holder`: only a grant can end a wait within
/// BOUND), and a waiter queued behind it (through `waiter`, with `who` as its instanceId) once it
/// has made every try it makes before it waits (`tried` says when, on the server's command
/// counts, reset first): the holder's lease, the waiter's client and task, and its place.
async fn held_and_queued(
    server: &RedisServer,
    name: &'static str,
    (holder, waiter): (Settings, Settings),
    who: &'static str,
    tried: impl Fn() -> bool,
) -> (
    Lease,
    LeaseClient,
    JoinHandle<leasectl::Result<Acquire>>,
    String,
) {
    let owner = connect_within(BOUND, holder).await;
    let held = acquired(
        owner
            .try_acquire(name, &options(Duration::from_secs(300)))
            .await,
    );
    let client = connect_within(BOUND, waiter).await;
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    let task = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire(name, &waiter_options(who), BOUND).await })
    };
    assert!(tokio::task::block_in_place(|| eventually(BOUND, &tried)));
    let place = queued(server, name).pop().expect("the waiter is queued");
    (held, client, task, place)
}

/// Each held try reads the holder with HGETALL: one before the waiter subscribes, one after.
fn tried_twice(server: &RedisServer) -> impl Fn() -> bool + '_ {
    || command_calls(server, "hgetall") >= 2
}

/// A waiter queued behind a holder gets the lease in the release's own script: the lease is in
/// Redis under the waiter's place as lease id, with its metadata and the next fencing token,
/// and its acquire returns without running the acquire script again (which always calls
/// EXISTS first: no other script does). It then extends its short first TTL to its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_waiter_is_handed_the_lease_by_the_release() {
    let server = RedisServer::start();
    let name = "handed";
    let both = (server.settings(), server.settings());
    let (held, _client, waiter, place) =
        held_and_queued(&server, name, both, "w-1", tried_twice(&server)).await;
    let request: Option<String> = server.query(&["HGET", &grants_key(name), &place]);
    assert!(request.is_some(), "the waiter left a grant request");
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    let before = held.fencing_token();
    assert!(within(BOUND, "the release", held.release()).await.unwrap());
    let lease = acquired(within(BOUND, "the waiter", waiter).await.unwrap());
    assert_eq!(lease.id(), place, "the waiter's place is its lease id");
    let fields = hgetall(&server, &key(name));
    assert_eq!(fields.get("leaseId"), Some(&place), "{fields:?}");
    assert_eq!(
        fields.get("meta_instanceId").map(String::as_str),
        Some("w-1")
    );
    assert_eq!(
        fields.get("acquiredAt").map(String::as_str),
        Some(lease.acquired_at())
    );
    let token = lease.fencing_token();
    assert!(token > before, "{token} after {before}");
    assert_eq!(fields.get("fencingToken"), Some(&token.to_string()));
    assert_eq!(
        get(&server, &fence_key(name)),
        Some(token.to_string()),
        "the counter"
    );
    assert_eq!(
        command_calls(&server, "exists"),
        0,
        "no acquire script ran after the release"
    );
    assert!(
        queued(&server, name).is_empty(),
        "the waiter left the queue"
    );
    let request: Option<String> = server.query(&["HGET", &grants_key(name), &place]);
    assert_eq!(request, None, "its grant request is gone");
    // Handed over with at most the queue's grace, then extended to its own 30 s.
    within(BOUND, "the extension", lease.settled())
        .await
        .expect("settled");
    assert!(pttl(&server, &key(name)) > GRACE_MS, "extended to its TTL");
    assert!(within(BOUND, "its release", lease.release()).await.unwrap());
}

/// A grant whose notification never reaches the waiter still ends its wait: when the
/// notification was refused (an ACL user without PUBLISH releases), the waiter's next
/// confirmation of its place learns that the lease is its own and it takes it at once; when its
/// pub/sub connection is cut right before the release, its next try finds the lease held under
/// its place. Either way the lease is the one the release handed it (its place as lease id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_waiter_whose_notification_is_lost_still_gets_the_lease() {
    let server = RedisServer::start();
    for (name, cut) in [("refused", false), ("cut", true)] {
        let settings = match cut {
            true => server.settings(),
            false => without_publish(&server),
        };
        let both = (settings, server.settings());
        let (held, _client, waiter, place) =
            held_and_queued(&server, name, both, name, tried_twice(&server)).await;
        if cut {
            let killed: i64 = tokio::task::block_in_place(|| {
                query(
                    &mut server.connection(),
                    &["CLIENT", "KILL", "TYPE", "pubsub"],
                )
            });
            assert_eq!(killed, 1, "the waiter's pub/sub connection");
        }
        assert!(within(BOUND, "the release", held.release()).await.unwrap());
        let lease = acquired(within(BOUND, "the waiter", waiter).await.unwrap());
        assert_eq!(lease.id(), place, "{name}: the lease the release handed it");
        assert_eq!(
            hgetall(&server, &key(name)).get("leaseId"),
            Some(&place),
            "{name}"
        );
        assert!(within(BOUND, "its release", lease.release()).await.unwrap());
    }
}

/// A waiter killed (SIGKILL) right before the release hands it the lease holds it no longer
/// than its place in the queue would have held the lease up: it is handed over with at most
/// the queue's grace as TTL, not the waiter's own (five minutes here), and is free after it.
#[test]
fn a_waiter_killed_before_its_grant_blocks_the_lease_only_briefly() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let name = "killed";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let owner = runtime.block_on(connect_within(BOUND, server.settings()));
    let held =
        acquired(runtime.block_on(owner.try_acquire(name, &options(Duration::from_secs(300)))));
    let mut command = leasectl.against(&server);
    command.args(["acquire", name, "--wait", "1m", "--ttl", "5m"]);
    let waiter = Running::spawn(command);
    assert!(
        eventually(BOUND, || subscribers(
            &mut server.connection(),
            &release_channel(name)
        ) >= 1),
        "the waiter never subscribed"
    );
    let place = queued(&server, name).pop().expect("the waiter is queued");
    signal(waiter.pid(), "KILL");
    drop(waiter.finish());
    assert!(runtime.block_on(held.release()).unwrap());
    let fields = hgetall(&server, &key(name));
    assert_eq!(
        fields.get("leaseId"),
        Some(&place),
        "handed to the dead waiter"
    );
    let left = pttl(&server, &key(name));
    assert!(
        left > 0 && left <= GRACE_MS,
        "held for {left} ms, not the waiter's TTL"
    );
    // Nobody extends it: it runs out, and a try then takes it.
    let other = runtime.block_on(connect_within(BOUND, server.settings()));
    let free = eventually(BOUND, || {
        let attempt = runtime.block_on(other.try_acquire(name, &options(Duration::from_secs(30))));
        matches!(attempt, Ok(Acquire::Acquired(_)))
    });
    assert!(free, "the dead waiter's grant still blocks the lease");
}

/// A waiter that gives up (here its task is aborted, as a timeout around it or Ctrl-C drops
/// it) after the release handed it the lease, before it noticed, releases that lease as it
/// leaves the queue: once its clean-up is done (flush), nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_as_it_is_granted_leaves_nothing_held() {
    let server = RedisServer::start();
    let name = "given-up";
    // Releases that notify nobody: the waiter cannot learn of the grant before it is dropped.
    let both = (without_publish(&server), server.settings());
    let (held, client, waiter, place) =
        held_and_queued(&server, name, both, name, tried_twice(&server)).await;
    assert!(within(BOUND, "the release", held.release()).await.unwrap());
    assert_eq!(
        hgetall(&server, &key(name)).get("leaseId"),
        Some(&place),
        "handed over"
    );
    waiter.abort();
    match waiter.await {
        // It noticed first after all (its place's heartbeat): its lease goes with its drop.
        Ok(outcome) => assert!(within(BOUND, "its release", acquired(outcome).release())
            .await
            .unwrap()),
        Err(error) => {
            assert!(error.is_cancelled());
            within(BOUND, "the clean-up", client.flush()).await;
        }
    }
    assert!(!exists(&server, &key(name)), "nothing is held");
    assert!(queued(&server, name).is_empty());
}

/// With `LeaseFormat: Json` the release hands the waiter the package's JSON value: its place
/// as leaseId, its owner and metadata, acquiredAt in whole seconds, the next fencing token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_lease_is_handed_over_as_its_json_value() {
    let server = RedisServer::start();
    let name = "handed-json";
    let settings = Settings {
        lease_format: LeaseFormat::Json,
        ..server.settings()
    };
    // A held JSON lease is read with TYPE and GET (not HGETALL): once per try.
    let tried = || command_calls(&server, "type") >= 2 && !queued(&server, name).is_empty();
    let both = (settings.clone(), settings);
    let (held, _client, waiter, place) =
        held_and_queued(&server, name, both, "json-1", tried).await;
    server.query::<()>(&["CONFIG", "RESETSTAT"]);
    let before = held.fencing_token();
    assert!(within(BOUND, "the release", held.release()).await.unwrap());
    let lease = acquired(within(BOUND, "the waiter", waiter).await.unwrap());
    let value: serde_json::Value =
        serde_json::from_str(&get(&server, &key(name)).unwrap()).unwrap();
    assert_eq!(value["leaseId"], place.as_str(), "{value}");
    assert_eq!(value["ownerId"], "json-1", "{value}");
    assert_eq!(value["metadata"]["instanceId"], "json-1", "{value}");
    assert_eq!(value["fencingToken"], lease.fencing_token(), "{value}");
    assert!(lease.fencing_token() > before);
    let at = value["acquiredAt"].as_str().unwrap();
    assert_eq!(at, lease.acquired_at());
    assert!(at.len() == 20 && at.ends_with('Z'), "whole seconds: {at}");
    assert_eq!(
        command_calls(&server, "exists"),
        0,
        "no acquire script ran after the release"
    );
    assert!(within(BOUND, "its release", lease.release()).await.unwrap());
}

/// A caller that does not wait, finding the lease free but promised to the first queued
/// waiter, is refused without taking a place in the queue: a place named '' (no waiter) would
/// stand first in line before later waiters, never confirmed, and no release could hand the
/// lease over past it until it ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_that_does_not_wait_takes_no_place_in_the_queue() {
    let server = RedisServer::start();
    let name = "promised";
    let both = (server.settings(), server.settings());
    let (held, _client, waiter, place) =
        held_and_queued(&server, name, both, name, tried_twice(&server)).await;
    // The key goes without a release (nobody is told): free, and promised to the waiter.
    let _: i64 = server.query(&["DEL", &key(name)]);
    let other = connect_within(BOUND, server.settings()).await;
    let refused = other
        .try_acquire(name, &options(Duration::from_secs(30)))
        .await;
    assert!(matches!(refused, Ok(Acquire::Held(_))), "{refused:?}");
    assert_eq!(queued(&server, name), [place], "only the waiter is queued");
    waiter.abort();
    drop(held);
}

/// A grant notification from before the waiter's last try is not trusted: a release handed
/// the waiter's place the lease, the lease was deleted before the waiter heard of it (a forced
/// release, a restart), another client took it, and the waiter queued again under the same
/// place; the late notification must not make it a second holder. Its token is no newer than
/// the counter the waiter's last try saw, so the waiter tries instead (and finds it held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_older_than_the_waiters_last_try_is_not_trusted() {
    let server = RedisServer::start();
    let name = "stale-grant";
    let both = (server.settings(), server.settings());
    let (held, _client, waiter, place) =
        held_and_queued(&server, name, both, "w-1", tried_twice(&server)).await;
    let stale = held.fencing_token();
    let payload = format!("{place} {stale} 2026-11-30T00:00:00.000Z");
    server.query::<()>(&["PUBLISH", &release_channel(name), &payload]);
    let tried_again = || command_calls(&server, "hgetall") >= 3 || waiter.is_finished();
    assert!(tokio::task::block_in_place(|| eventually(
        BOUND,
        tried_again
    )));
    assert!(!waiter.is_finished(), "the waiter took a stale grant");
    // A real grant still reaches it.
    assert!(within(BOUND, "the release", held.release()).await.unwrap());
    let lease = acquired(within(BOUND, "the waiter", waiter).await.unwrap());
    assert_eq!(lease.id(), place);
    assert!(lease.fencing_token() > stale);
    assert!(within(BOUND, "its release", lease.release()).await.unwrap());
}

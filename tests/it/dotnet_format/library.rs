//! The library in `LeaseFormat: Json`, single and quorum mode: the value on each instance,
//! renewal and release that check the lease id inside it

use leasectl::{
    Acquire, AcquireSet, Error, KeyFormat, LeaseClient, LeaseFormat, LostReason, Settings,
};

use super::*;
use crate::leases::{acquired, connect_within, held, options, renewing, within};
use crate::support::{fence_key, instance_matrix, Quorum, BOUND};

fn json_settings(settings: Settings) -> Settings {
    Settings {
        lease_format: LeaseFormat::Json,
        ..settings
    }
}

async fn json_client(quorum: &Quorum) -> LeaseClient {
    connect_within(BOUND, json_settings(quorum.settings())).await
}

instance_matrix!({ single = 1, three = 3 }; a_json_lease_holds_on_every_instance);

async fn a_json_lease_holds_on_every_instance(count: usize) {
    let quorum = Quorum::start(count);
    let client = json_client(&quorum).await;
    // Three instances: one counter far ahead, so that the instances first count different
    // tokens and the agreed one is written into every instance's value.
    let ahead = 9_000_000_000_000_000u64;
    if count > 1 {
        let _: () = quorum.servers[0].query(&["SET", &fence_key(NAME), &ahead.to_string()]);
    }
    let lease_options = options(Duration::from_secs(300)).meta("instanceId", "lib-1");
    let lease = acquired(client.try_acquire(NAME, &lease_options).await);
    let token = lease.fencing_token();
    if count > 1 {
        assert_eq!(token, ahead + 1, "the largest counted token");
    }
    let values = || -> Vec<Option<String>> {
        let servers = quorum.servers.iter();
        servers.map(|server| get(server, &key(NAME))).collect()
    };
    let settled = eventually(BOUND, || {
        values().iter().all(|value| {
            let value = value.as_deref().and_then(|v| serde_json::from_str(v).ok());
            value.is_some_and(|v: serde_json::Value| v["fencingToken"] == token)
        })
    });
    assert!(
        settled,
        "every instance's value carries token {token}: {:?}",
        values()
    );
    for server in &quorum.servers {
        let value = stored(server);
        assert_eq!(value["leaseId"], lease.id());
        assert_eq!(value["ownerId"], "lib-1");
        assert_eq!(value["acquiredAt"], lease.acquired_at());
        assert_eq!(get(server, &fence_key(NAME)), Some(token.to_string()));
        let service = dotnet_service(server);
        assert!(
            service.try_acquire(NAME, DOTNET_TTL).is_none(),
            "SET NX refused"
        );
    }

    // A Hash client and a Json one each see it held, with its token, in the same round trip.
    let hash_client = connect_within(BOUND, quorum.settings()).await;
    for competitor in [&hash_client, &client] {
        let holder = held(
            competitor
                .try_acquire(NAME, &options(Duration::from_secs(5)))
                .await,
        );
        assert_eq!(holder.format, KeyFormat::Json);
        assert_eq!(holder.lease_id.as_deref(), Some(lease.id()));
        assert_eq!(holder.fencing_token, Some(token));
        assert_eq!(holder.display_name(), "lib-1");
    }

    let before = values();
    lease.extend().await.expect("extended");
    assert_eq!(values(), before, "an extension leaves the value as it is");
    assert!(lease.release().await.expect("released"), "released");
    for server in &quorum.servers {
        assert_eq!(get(server, &key(NAME)), None);
        assert_eq!(get(server, &fence_key(NAME)), Some(token.to_string()));
    }
    let next = acquired(client.try_acquire(NAME, &lease_options).await);
    assert!(next.fencing_token() > token, "tokens keep increasing");
}

/// Puts `value` at NAME's key in place of what is there (as another holder would after the
/// lease expired), with a minute's TTL.
fn replace(server: &RedisServer, value: &str) {
    let _: () = server.query(&["SET", &key(NAME), value, "PX", "60000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_release_look_at_the_lease_id_inside_the_value() {
    let server = RedisServer::start();
    let client = connect_within(BOUND, json_settings(server.settings())).await;
    let service = dotnet_service(&server);
    let others = [
        service.stale_lease(NAME).value,
        "not json".to_string(),
        r#"{"ownerId":"no lease id"}"#.to_string(),
    ];
    for other in others {
        // Renewed in the background: the watchdog finds the value is not ours, and says so.
        let every = Duration::from_millis(100);
        let outcome = client
            .try_acquire(NAME, &renewing(Duration::from_secs(5), every))
            .await;
        let lease = acquired(outcome);
        replace(&server, &other);
        let lost = within(BOUND, "the lost signal", lease.lost()).await;
        assert!(
            matches!(
                lost,
                Error::Lost {
                    reason: LostReason::NotOwner,
                    ..
                }
            ),
            "{other}: {lost}"
        );
        assert!(lease.extend().await.is_err(), "{other}: not extended");
        assert!(
            !lease.release().await.expect("release"),
            "{other}: not ours"
        );
        assert_eq!(get(&server, &key(NAME)), Some(other.clone()), "left alone");
        let outcome = client
            .try_acquire(NAME, &options(Duration::from_secs(5)))
            .await;
        assert!(matches!(outcome, Ok(Acquire::Held(_))), "{other}: held");
        let _: i64 = server.query(&["DEL", &key(NAME)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_of_json_leases_is_taken_whole_or_not_at_all() {
    let server = RedisServer::start();
    let client = connect_within(BOUND, json_settings(server.settings())).await;
    let names = ["invoices", NAME];
    let lease_options = options(Duration::from_secs(30));
    // One of them held by a .NET service: none is taken.
    let dotnet = dotnet_service(&server)
        .try_acquire(NAME, DOTNET_TTL)
        .expect("free");
    let outcome = client.try_acquire_set(&names, &lease_options).await;
    assert!(
        matches!(outcome, Ok(AcquireSet::Held { .. })),
        "held: {outcome:?}"
    );
    assert_eq!(get(&server, &key("invoices")), None, "nothing written");
    assert!(dotnet.release());
    let set = match client.try_acquire_set(&names, &lease_options).await {
        Ok(AcquireSet::Acquired(set)) => set,
        other => panic!("expected the set: {other:?}"),
    };
    for lease in set.leases() {
        let value: serde_json::Value =
            serde_json::from_str(&get(&server, lease.key()).expect("a value")).unwrap();
        assert_eq!(value["leaseId"], lease.id());
        assert_eq!(value["fencingToken"], lease.fencing_token());
    }
    assert!(set.release().await.expect("released"));
    for name in names {
        assert_eq!(get(&server, &key(name)), None);
    }
}

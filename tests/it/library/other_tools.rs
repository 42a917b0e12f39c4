//! Leases written by other tools

use super::*;

/// Writes a key in another tool's format with `write`, then checks that `inspect` reads it
/// with `check`, that `try_acquire` and `release` answer held / false, and that the key is
/// unchanged (DUMP and TTL) afterwards.
async fn foreign_key(name: &str, write: &[&[&str]], check: impl Fn(&Holder)) {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    for command in write {
        let _: redis::Value = query(&mut redis, command);
    }
    let before: Vec<u8> = query(&mut redis, &["DUMP", &key(name)]);
    let ttl_before: i64 = query(&mut redis, &["PTTL", &key(name)]);

    let info = client.inspect(name).await.expect("inspect");
    assert_eq!(
        (info.name.as_str(), info.key.as_str()),
        (name, key(name).as_str())
    );
    let holder = info.holder.expect("a foreign key is a holder");
    check(&holder);
    assert_eq!(holder.ttl.is_none(), ttl_before == -1);

    let seen = held(
        client
            .try_acquire(name, &options(Duration::from_secs(30)))
            .await,
    );
    assert_eq!(
        (seen.format, seen.lease_id),
        (holder.format, holder.lease_id)
    );
    assert!(!client.release(name, "not-the-id").await.unwrap());

    let after: Vec<u8> = query(&mut redis, &["DUMP", &key(name)]);
    assert_eq!(before, after, "the value is unchanged");
    let ttl_after: i64 = query(&mut redis, &["PTTL", &key(name)]);
    if ttl_before == -1 {
        assert_eq!(ttl_after, -1, "no TTL was added");
    } else {
        assert!(
            ttl_after > 0 && ttl_after <= ttl_before,
            "the TTL was not reset"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_002_hash_without_fencing_token_is_read_and_respected() {
    let k = key("seed");
    let mut hset = vec!["HSET", k.as_str()];
    hset.extend_from_slice(SEED_002_FIELDS);
    let write: &[&[&str]] = &[&hset, &["PEXPIRE", &k, "600000"]];
    foreign_key("seed", write, |holder| {
        assert_eq!(holder.format, KeyFormat::Hash);
        assert_eq!(holder.lease_id.as_deref(), Some("abc123-def456-ghi789"));
        assert_eq!(
            holder.acquired_at.as_deref(),
            Some("2025-12-25T21:00:00.000Z")
        );
        assert_eq!(holder.fencing_token, None);
        let metadata: Vec<_> = holder.metadata.keys().map(String::as_str).collect();
        assert_eq!(metadata, ["hostname", "instanceId", "region", "startTime"]);
        assert_eq!(holder.metadata["hostname"], "MACHINE-NAME");
        assert_eq!(holder.display_name(), "us-east-1 (us-east)");
        let ttl = holder.ttl.expect("a TTL");
        assert!(ttl > Duration::ZERO && ttl <= Duration::from_secs(600));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotnet_json_string_is_read_and_respected() {
    let json = r#"{"leaseId":"L-42","ownerId":"instance-01","acquiredAt":"2025-12-25T12:00:00Z","metadata":{"region":"eu-west","version":"1.0.0"}}"#;
    let k = key("dotnet");
    foreign_key("dotnet", &[&["SET", &k, json]], |holder| {
        assert_eq!(holder.format, KeyFormat::Json);
        assert_eq!(holder.lease_id.as_deref(), Some("L-42"));
        assert_eq!(holder.owner_id.as_deref(), Some("instance-01"));
        assert_eq!(holder.acquired_at.as_deref(), Some("2025-12-25T12:00:00Z"));
        assert_eq!(holder.metadata["version"], "1.0.0");
        assert_eq!(holder.display_name(), "instance-01 (eu-west)");
        assert_eq!(holder.ttl, None, "the key never expires");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_token_string_is_read_and_respected() {
    let k = key("redlock");
    foreign_key(
        "redlock",
        &[&["SET", &k, "9f8e7d6c-token", "PX", "600000"]],
        |holder| {
            assert_eq!(holder.format, KeyFormat::Token);
            assert_eq!(holder.lease_id.as_deref(), Some("9f8e7d6c-token"));
            assert_eq!(holder.display_name(), "9f8e7d6c-token");
            assert!(holder.ttl.is_some());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_read_and_respected() {
    let k = key("list");
    foreign_key("list", &[&["RPUSH", &k, "a", "b"]], |holder| {
        assert_eq!(holder.format, KeyFormat::Other("list".into()));
        assert_eq!(holder.lease_id, None);
        assert_eq!(holder.display_name(), "unknown holder");
        assert_eq!(holder.ttl, None);
    })
    .await;
}

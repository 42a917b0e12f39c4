//! Ownership and fencing tokens

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_lease_id_can_neither_extend_nor_release() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let ttl = Duration::from_secs(30);
    let lease = acquired(client.try_acquire("guarded", &options(ttl)).await);

    assert!(!client.release("guarded", "not-the-id").await.unwrap());
    let id: Option<String> = query(&mut redis, &["HGET", &key("guarded"), "leaseId"]);
    assert_eq!(id.as_deref(), Some(lease.id()), "a wrong id leaves the key");

    let foreign_pttl: i64 = 3_600_000;
    let _: i64 = query(&mut redis, &["HSET", &key("guarded"), "leaseId", "foreign"]);
    let _: i64 = query(
        &mut redis,
        &["PEXPIRE", &key("guarded"), &foreign_pttl.to_string()],
    );
    match lease.extend().await {
        Err(Error::Lost { reason, .. }) => assert_eq!(reason, LostReason::NotOwner),
        other => panic!("extending a foreign lease must fail as lost, got {other:?}"),
    }
    let pttl: i64 = query(&mut redis, &["PTTL", &key("guarded")]);
    assert!(
        pttl > ttl.as_millis() as i64 * 10,
        "the foreign key's TTL was reset to ours: {pttl} ms"
    );

    assert!(
        !lease.release().await.unwrap(),
        "nothing of ours to release"
    );
    let id: Option<String> = query(&mut redis, &["HGET", &key("guarded"), "leaseId"]);
    assert_eq!(
        id.as_deref(),
        Some("foreign"),
        "the foreign lease is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_strictly_increase_and_survive_releases() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let mut redis = server.connection();
    let options = options(Duration::from_secs(30));
    let mut last = 0;
    for _ in 0..50 {
        let lease = acquired(client.try_acquire("fenced", &options).await);
        assert!(
            lease.fencing_token() > last,
            "{} after {last}",
            lease.fencing_token()
        );
        last = lease.fencing_token();
        let stored: Option<String> = query(&mut redis, &["HGET", &key("fenced"), "fencingToken"]);
        assert_eq!(stored, Some(last.to_string()), "the hash carries the token");
        assert!(lease.release().await.unwrap());
    }
    let counter: Option<String> = query(&mut redis, &["GET", &fence_key("fenced")]);
    assert_eq!(
        counter,
        Some(last.to_string()),
        "the counter survives release"
    );
    let fence_ttl: i64 = query(&mut redis, &["PTTL", &fence_key("fenced")]);
    assert_eq!(fence_ttl, -1, "the counter never expires");

    let lease = acquired(client.try_acquire("fenced", &options).await);
    assert!(lease.fencing_token() > last);
    last = lease.fencing_token();
    assert!(client.force_release("fenced").await.unwrap());
    assert!(!lease.release().await.unwrap(), "already gone");
    let counter: Option<String> = query(&mut redis, &["GET", &fence_key("fenced")]);
    assert_eq!(
        counter,
        Some(last.to_string()),
        "the counter survives force_release"
    );
    let lease = acquired(client.try_acquire("fenced", &options).await);
    assert!(lease.fencing_token() > last, "tokens go on increasing");
}

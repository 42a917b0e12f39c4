//! Dropping a lease

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_held_lease_releases_it_in_the_background() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let lease = acquired(
        client
            .try_acquire(
                "dropped",
                &renewing(Duration::from_secs(60), Duration::from_secs(1)),
            )
            .await,
    );
    drop(lease);
    let mut redis = server.connection();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(BOUND, || {
            query::<i64>(&mut redis, &["EXISTS", &key("dropped")]) == 0
        })
    });
    assert!(
        gone.await.unwrap(),
        "the dropped lease's key is still there"
    );
}

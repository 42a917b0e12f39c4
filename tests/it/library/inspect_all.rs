//! inspect_all and lease names

use super::*;

/// The names `inspect_all` lists.
async fn listed(client: &LeaseClient) -> Vec<String> {
    let infos = client.inspect_all().await.expect("inspect_all");
    for info in &infos {
        assert_eq!(info.key, client.settings().key_for(&info.name));
        assert!(info.holder.is_some());
    }
    infos.into_iter().map(|info| info.name).collect()
}

fn settings_with_prefix(server: &RedisServer, prefix: &str) -> Settings {
    Settings {
        key_prefix: prefix.to_string(),
        ..server.settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_lists_only_the_leases_under_the_prefix_sorted() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let mut leases = Vec::new();
    for name in ["gamma", "alpha", "beta"] {
        leases.push(acquired(client.try_acquire(name, &options).await));
    }
    // Released leases leave their fence counters behind, and are not listed.
    acquired(client.try_acquire("released", &options).await)
        .release()
        .await
        .unwrap();
    let mut redis = server.connection();
    let _: () = query(&mut redis, &["SET", &key("delta"), "a-redlock-token"]);
    let _: () = query(&mut redis, &["SET", "other:thing", "x"]);
    let _: () = query(&mut redis, &["SET", "leasefoo", "x"]);
    assert_eq!(listed(&client).await, ["alpha", "beta", "delta", "gamma"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_hides_fence_counters_inside_a_hash_tagged_prefix() {
    let server = RedisServer::start();
    let client = connect_with(settings_with_prefix(&server, "{app}:")).await;
    let options = options(Duration::from_secs(60));
    let _two = acquired(client.try_acquire("two", &options).await);
    let _one = acquired(client.try_acquire("one", &options).await);
    let fence: Option<String> = query(&mut server.connection(), &["GET", "{app}:@fence:one"]);
    assert!(fence.is_some(), "the fence counter is under the prefix");
    assert_eq!(listed(&client).await, ["one", "two"]);
}

/// Lease names that read like leasectl's own keys (a fencing counter, a queue) are leases like
/// any other: each is free until taken, and `inspect_all` lists every lease and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_look_like_internal_keys_are_independent_leases() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let mut held_here = Vec::new();
    let pairs = [
        ("{job}", "{job}:fence"),
        ("job", "job:fence"),
        ("{q}", "{q}:queue"),
    ];
    for (first, second) in pairs {
        held_here.push(acquired(client.try_acquire(first, &options).await));
        // A waiter queues on the first lease, so that its queue exists too.
        let waiting = client.acquire(first, &options, Duration::from_millis(300));
        assert!(matches!(waiting.await.unwrap(), Acquire::Held(_)));
        let info = client.inspect(second).await.unwrap();
        assert!(info.holder.is_none(), "{second} is free: {:?}", info.holder);
        held_here.push(acquired(client.try_acquire(second, &options).await));
    }
    let mut names: Vec<&str> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    names.sort();
    assert_eq!(listed(&client).await, names);
    for lease in held_here {
        lease.release().await.unwrap();
    }
    assert!(listed(&client).await.is_empty());
}

/// Every name leasectl keeps beside a lease starts with `@` after the prefix, so a lease name
/// may not: it is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_the_internal_namespace_is_refused() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let options = options(Duration::from_secs(60));
    let refused = client.try_acquire("@fence{lease:job}", &options).await;
    assert!(matches!(refused, Err(Error::Settings(_))), "{refused:?}");
    let _job = acquired(client.try_acquire("job", &options).await);
    assert!(
        query::<Option<String>>(&mut server.connection(), &["GET", &fence_key("job")]).is_some()
    );
}

/// The fencing counter moved when every internal key came under the prefix; a lease taken after
/// the move still gets a larger token than one an older version handed out (the clock floor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_rising_across_the_move_of_the_fencing_counter() {
    let server = RedisServer::start();
    let mut redis = server.connection();
    let (seconds, micros): (u64, u64) = query(&mut redis, &["TIME"]);
    let older = (seconds * 1_000_000 + micros).to_string();
    let _: () = query(&mut redis, &["SET", "{lease:job}:fence", &older]);
    let client = connect(&server).await;
    let lease = acquired(
        client
            .try_acquire("job", &options(Duration::from_secs(60)))
            .await,
    );
    assert!(
        lease.fencing_token() > older.parse().unwrap(),
        "{} <= {older}",
        lease.fencing_token()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_lists_foreign_keys_whose_names_we_would_refuse() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    let _lease = acquired(
        client
            .try_acquire("ours", &options(Duration::from_secs(60)))
            .await,
    );
    let mut redis = server.connection();
    let long = "y".repeat(MAX_NAME_LEN + 1);
    for name in ["", long.as_str()] {
        let _: () = query(&mut redis, &["SET", &key(name), "another-tools-token"]);
    }
    // A key that is not UTF-8 cannot be named through the API: it is skipped, not an error.
    let _: () = redis::cmd("SET")
        .arg(b"lease:\xff\xfe".as_slice())
        .arg("x")
        .query(&mut redis)
        .unwrap();
    assert_eq!(listed(&client).await, ["", "ours", long.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_all_treats_glob_characters_in_the_prefix_literally() {
    let server = RedisServer::start();
    let client = connect_with(settings_with_prefix(&server, "a*[")).await;
    let options = options(Duration::from_secs(60));
    let _one = acquired(client.try_acquire("one", &options).await);
    let _two = acquired(client.try_acquire("two", &options).await);
    let mut redis = server.connection();
    for other in ["abc[x", "a[", "aX[y", "a*", "a*x[y"] {
        let _: () = query(&mut redis, &["SET", other, "not-ours"]);
    }
    let _default = acquired(connect(&server).await.try_acquire("z", &options).await);
    assert_eq!(listed(&client).await, ["one", "two"]);
}

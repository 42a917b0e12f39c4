//! Fencing

use super::*;

#[test]
fn fence_set_refuses_an_older_token() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let set = |value: &str, token: &str| {
        leasectl_done(
            &leasectl,
            &server,
            &["fence", "set", "report", value, "--token", token],
        )
    };
    let done = set("v1", "5");
    done.expect(0);
    assert!(done.stdout.contains("Wrote report"), "{done}");
    assert_eq!(get(&server, "report").as_deref(), Some("v1"));

    let done = set("v0", "4");
    done.expect(3);
    assert!(done.stdout.contains("Refused"), "{done}");
    assert_eq!(get(&server, "report").as_deref(), Some("v1"), "left alone");

    set("v1-again", "5").expect(0);
    assert_eq!(
        get(&server, "report").as_deref(),
        Some("v1-again"),
        "same token"
    );
    set("v2", "6").expect(0);
    assert_eq!(get(&server, "report").as_deref(), Some("v2"), "newer token");
    set("v1-late", "5").expect(3);
    assert_eq!(get(&server, "report").as_deref(), Some("v2"), "left alone");
}

#[test]
fn a_paused_holders_write_is_refused_after_the_next_holder_wrote() {
    let server = RedisServer::start();
    let leasectl = Leasectl::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime
        .block_on(LeaseClient::connect(server.settings()))
        .expect("connect");
    // Holder A takes the lease without renewal, and then "pauses" past its TTL.
    let options = options(Duration::from_secs(1));
    let lease_a = acquired(runtime.block_on(client.try_acquire(JOB, &options)));
    let token_a = lease_a.fencing_token();
    assert!(eventually(LIMIT, || !exists(&server, KEY)), "A expired");

    // Holder B is an `exec` whose job writes with its token from the environment.
    let script =
        "\"$1\" --endpoint \"$2\" fence set report \"B\" --token \"$LEASECTL_FENCING_TOKEN\" \
                  && echo $LEASECTL_FENCING_TOKEN > b.token";
    let binary = support::binary();
    let url = server.url();
    let done = Proc::spawn(exec(
        &leasectl,
        &server,
        &[],
        script,
        &[binary.to_str().unwrap(), &url],
    ))
    .finish();
    done.expect(0);
    let token_b: u64 = read_record(&path(&leasectl, "b.token"))
        .unwrap_or_else(|| panic!("B's job did not write\n{done}"))
        .parse()
        .unwrap();
    assert!(
        token_b > token_a,
        "B's token {token_b} is newer than A's {token_a}"
    );
    assert_eq!(get(&server, "report").as_deref(), Some("B"));

    // A wakes up and writes with its old token: refused, from the library and the shell.
    let write = runtime.block_on(client.fenced_set("report", "A", token_a));
    assert_eq!(write.unwrap(), FencedWrite::Stale { newest: token_b });
    let done = leasectl_done(
        &leasectl,
        &server,
        &[
            "fence",
            "set",
            "report",
            "A",
            "--token",
            &token_a.to_string(),
        ],
    );
    done.expect(3);
    assert_eq!(
        get(&server, "report").as_deref(),
        Some("B"),
        "B's value stays"
    );
    drop(lease_a);
}

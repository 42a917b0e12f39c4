//! Single mode: the script calls a client's tasks make while earlier ones are unanswered go
//! out together, one EVALSHA for several (`coalesce.rs`); each is still answered as its own,
//! an error in one (a Redis error reply, or one raised by a command) stays its own, and an
//! emptied script cache is answered with EVAL as for a call alone.

use futures_util::future::join_all;

use super::*;
use crate::support::{command_calls, queue_key};

/// Cycles (try-acquire, release) per acquirer and round.
const CYCLES: usize = 25;
const ACQUIRERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_together_are_each_answered_as_their_own() {
    let server = RedisServer::start();
    let client = connect(&server).await;
    // Two leases whose acquire fails on the server: a fencing counter that is no number
    // (an error reply the script returns), and a queue that is a string (WRONGTYPE, raised by
    // the command inside the script).
    query::<()>(
        &mut server.connection(),
        &["SET", &fence_key("bad-counter"), "abc"],
    );
    query::<()>(
        &mut server.connection(),
        &["SET", &queue_key("bad-queue"), "x"],
    );
    for round in 0..2 {
        if round == 1 {
            // The coalesced script is then unknown too: EVAL, as for a call alone.
            query::<()>(&mut server.connection(), &["SCRIPT", "FLUSH"]);
        }
        query::<()>(&mut server.connection(), &["CONFIG", "RESETSTAT"]);
        let good = (0..ACQUIRERS).map(|i| cycles(&client, format!("good-{i}")));
        let bad = ["bad-counter", "bad-queue"].map(|name| cycles(&client, name.to_string()));
        let outcomes = within(BOUND, "cycles", join_all(good.chain(bad))).await;
        let (good, bad) = outcomes.split_at(ACQUIRERS);
        for (i, outcome) in good.iter().enumerate() {
            assert_eq!(outcome, &Ok(CYCLES), "round {round}: good-{i}");
        }
        let detail = |outcome: &Result<usize, String>| outcome.clone().unwrap_err();
        assert!(
            detail(&bad[0]).contains("is not an integer"),
            "round {round}: {:?}",
            bad[0]
        );
        assert!(
            detail(&bad[1]).contains("WRONGTYPE"),
            "round {round}: {:?}",
            bad[1]
        );
        // Each good cycle made two script calls (acquire, release), each bad acquirer one.
        let calls = (2 * ACQUIRERS * CYCLES + 2 * CYCLES) as u64;
        let sent = command_calls(&server, "evalsha") + command_calls(&server, "eval");
        assert!(
            sent < calls,
            "round {round}: {sent} script commands for {calls} calls: none went together"
        );
    }
    for i in 0..ACQUIRERS {
        let name = format!("good-{i}");
        assert!(!crate::support::exists(&server, &key(&name)), "{name} left");
    }
}

/// `CYCLES` of try-acquire and release of `name`: how many went through, or the first error.
async fn cycles(client: &LeaseClient, name: String) -> Result<usize, String> {
    let options = options(Duration::from_secs(10));
    let mut done = 0;
    for _ in 0..CYCLES {
        match client.try_acquire(&name, &options).await {
            Ok(Acquire::Acquired(lease)) => {
                let released = lease.release().await.map_err(|e| e.to_string())?;
                assert!(released, "{name}: released by its holder");
                done += 1;
            }
            Ok(Acquire::Held(holder)) => panic!("{name} held by {holder:?}"),
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(done)
}

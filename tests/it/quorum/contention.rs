//! Quorum mode: contention.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    one_winner_among_many_racers,
    critical_sections_never_overlap,
);

/// Every racer tries `name` at once; answers each one's outcome.
async fn race(clients: &[LeaseClient], name: &str) -> Vec<leasectl::Result<Acquire>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let attempts: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let (client, barrier, name) = (client.clone(), barrier.clone(), name.to_string());
            let options = long().meta("instanceId", format!("racer-{i}"));
            tokio::spawn(async move {
                barrier.wait().await;
                client.try_acquire(&name, &options).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(within(BOUND, "a racer", attempt).await.expect("racer task"));
    }
    outcomes
}

async fn one_winner_among_many_racers(n: usize) {
    const RACERS: usize = 8;
    const ROUNDS: usize = 5;
    // A split vote (no racer granted by a majority) is Redlock's legal outcome and happens now
    // and then; every racer must then have undone what it was granted.
    const SPLITS_AT_MOST: usize = 20;
    let quorum = Quorum::start(n);
    let mut clients = Vec::new();
    for _ in 0..RACERS {
        clients.push(connect(&quorum).await);
    }
    let (mut rounds, mut splits, mut last_token) = (0, 0, 0);
    while rounds < ROUNDS {
        let mut winners = Vec::new();
        for outcome in race(&clients, "contended").await {
            match outcome {
                Ok(Acquire::Acquired(lease)) => winners.push(lease),
                Ok(Acquire::Held(holder)) => {
                    let name = holder.display_name();
                    assert!(name.starts_with("racer-"), "held by a racer: {holder:?}");
                }
                Err(error) => panic!("every instance is up, yet: {error}"),
            }
        }
        assert!(winners.len() <= 1, "{} winners in one round", winners.len());
        if let Some(winner) = winners.pop() {
            assert!(winner.fencing_token() > last_token, "tokens increase");
            last_token = winner.fencing_token();
            let holding = quorum
                .servers
                .iter()
                .filter(|s| lease_id_on(s, "contended").as_deref() == Some(winner.id()))
                .count();
            assert!(holding >= quorum.majority(), "held on {holding} of {n}");
            release(winner).await;
            rounds += 1;
        } else {
            splits += 1;
            assert!(splits <= SPLITS_AT_MOST, "{splits} rounds without a winner");
        }
        for (i, server) in quorum.servers.iter().enumerate() {
            assert!(gone_soon(server, "contended"), "a key left on instance {i}");
        }
    }
}

async fn critical_sections_never_overlap(n: usize) {
    const WORKERS: usize = 5;
    const ROUNDS: usize = 8;
    let quorum = Quorum::start(n);
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        clients.push(connect(&quorum).await);
    }
    let wait = Duration::from_secs(120);
    take_turns(clients, ROUNDS, &long(), wait, Duration::from_secs(180)).await;
}

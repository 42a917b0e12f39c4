//! Contention

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_among_many_concurrent_acquirers() {
    let server = RedisServer::start();
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connect(&server).await);
    }
    let mut last_token = 0;
    for round in 0..5 {
        let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let attempts: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let (client, barrier) = (client.clone(), barrier.clone());
                let options = options(Duration::from_secs(30))
                    .meta("instanceId", format!("worker-{i}"))
                    .meta("region", "us-east");
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.try_acquire("contended", &options).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut holders = Vec::new();
        for (i, attempt) in attempts.into_iter().enumerate() {
            match within(BOUND, "try_acquire", attempt).await.unwrap() {
                Ok(Acquire::Acquired(lease)) => winners.push((i, lease)),
                Ok(Acquire::Held(holder)) => holders.push(holder),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        assert_eq!(holders.len(), clients.len() - 1, "round {round}");
        let (winner_index, winner) = winners.pop().unwrap();
        for holder in &holders {
            assert_eq!(holder.lease_id.as_deref(), Some(winner.id()));
            assert_eq!(holder.fencing_token, Some(winner.fencing_token()));
            assert_eq!(
                holder.display_name(),
                format!("worker-{winner_index} (us-east)")
            );
        }
        assert!(winner.fencing_token() > last_token);
        last_token = winner.fencing_token();
        assert!(winner.release().await.unwrap(), "the winner releases");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_sections_never_overlap_and_tokens_increase_in_acquisition_order() {
    const WORKERS: usize = 6;
    const ROUNDS: usize = 10;
    let server = RedisServer::start();
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        clients.push(connect(&server).await);
    }
    let (options, wait) = (options(Duration::from_secs(30)), Duration::from_secs(60));
    take_turns(clients, ROUNDS, &options, wait, Duration::from_secs(120)).await;
}

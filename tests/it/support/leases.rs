//! Calling the library from a test: lease options, awaits with a failure bound, and the
//! outcomes a test expects.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasectl::{Acquire, Holder, Lease, LeaseClient, LeaseOptions, Settings};

/// Options with this TTL, no renewal, no metadata.
pub fn options(ttl: Duration) -> LeaseOptions {
    LeaseOptions {
        ttl,
        auto_renew: None,
        ..LeaseOptions::from_settings(&Settings::default())
    }
}

/// A waiter's options: a 30 s lease, and a fallback poll of an hour, so that within any test's
/// bound only a release notification can wake it.
pub fn woken_only() -> LeaseOptions {
    LeaseOptions {
        fallback_poll: Duration::from_secs(3600),
        ..options(Duration::from_secs(30))
    }
}

/// Options with this TTL, renewed every `every`.
pub fn renewing(ttl: Duration, every: Duration) -> LeaseOptions {
    LeaseOptions {
        auto_renew: Some(every),
        ..options(ttl)
    }
}

/// Connects with `settings`, failing the test if that takes longer than `limit`.
pub async fn connect_within(limit: Duration, settings: Settings) -> LeaseClient {
    within(limit, "connect", LeaseClient::connect(settings))
        .await
        .expect("connect to the test servers")
}

/// Awaits `future`, failing the test if it takes longer than `limit` (a failure bound only).
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}

/// The lease of an outcome that must be `Acquired`.
pub fn acquired(outcome: leasectl::Result<Acquire>) -> Lease {
    match outcome.expect("acquire") {
        Acquire::Acquired(lease) => lease,
        Acquire::Held(holder) => panic!("expected to acquire, but it is held by {holder:?}"),
    }
}

/// The holder of an outcome that must be `Held`.
pub fn held(outcome: leasectl::Result<Acquire>) -> Holder {
    match outcome.expect("acquire") {
        Acquire::Held(holder) => holder,
        Acquire::Acquired(lease) => panic!("expected a held lease, but acquired {lease:?}"),
    }
}

/// Hands `holder`'s lease over to a waiter on `waiter_client` (waiting ten minutes, its
/// fallback poll an hour) once the waiter listens, and answers the waiter's lease, whose fencing
/// token must be the larger; `bound` limits every step.
pub async fn hand_over(bound: Duration, holder: Lease, waiter_client: LeaseClient) -> Lease {
    let name = holder.name().to_string();
    let waiter_options = woken_only();
    let (seen_sender, mut seen) = tokio::sync::watch::channel(0usize);
    let holder_id = holder.id().to_string();
    let waiter = tokio::spawn(async move {
        waiter_client
            .acquire_observed(&name, &waiter_options, Duration::from_secs(600), |h| {
                assert_eq!(h.lease_id.as_deref(), Some(holder_id.as_str()));
                seen_sender.send_modify(|count| *count += 1);
            })
            .await
    });
    // The first failed try subscribes; after the second the waiter is listening.
    within(
        bound,
        "two observations",
        seen.wait_for(|count| *count >= 2),
    )
    .await
    .expect("the waiter is running");
    let holder_token = holder.fencing_token();
    let released = within(bound, "release", holder.release()).await;
    assert!(released.expect("release"), "the lease was still ours");
    let lease = acquired(within(bound, "the waiter's wake-up", waiter).await.unwrap());
    assert!(lease.fencing_token() > holder_token);
    lease
}

/// Every client takes the lease `exclusive` `rounds` times (with `options` and its own
/// `instanceId`, waiting up to `wait`), all at once, and holds it a moment each time; checks
/// that no two critical sections overlapped and that the fencing tokens rose in acquisition
/// order. `limit` bounds the whole.
pub async fn take_turns(
    clients: Vec<LeaseClient>,
    rounds: usize,
    options: &LeaseOptions,
    wait: Duration,
    limit: Duration,
) {
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(worker, client)| {
            let (inside, overlaps, tokens) = (inside.clone(), overlaps.clone(), tokens.clone());
            let options = options.clone().meta("instanceId", worker.to_string());
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let lease = acquired(client.acquire("exclusive", &options, wait).await);
                    if inside.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokens.lock().unwrap().push(lease.fencing_token());
                    // Widen the window in which an overlap would be seen.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    inside.store(false, Ordering::SeqCst);
                    assert!(lease.release().await.unwrap(), "the holder releases");
                }
            })
        })
        .collect();
    let count = workers.len();
    for worker in workers {
        within(limit, "all acquisitions", worker)
            .await
            .expect("worker task");
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "overlapping critical sections"
    );
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), count * rounds);
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens in acquisition order: {tokens:?}"
    );
}

//! Quorum mode: waiting.

use super::*;

instance_matrix!({ three = 3, five = 5 };
    a_waiter_is_woken_by_a_release,
);

async fn a_waiter_is_woken_by_a_release(n: usize) {
    let quorum = Quorum::start(n);
    let holder_client = connect(&quorum).await;
    let waiter_client = connect(&quorum).await;
    // Without the notification the waiter would sleep until its wait or the holder's TTL runs
    // out (ten minutes each; its fallback poll is an hour): only the release can wake it.
    let holder = acquired(
        try_acquire(
            &holder_client,
            "handoff",
            &options(Duration::from_secs(600)),
        )
        .await,
    );
    let lease = hand_over(BOUND, holder, waiter_client).await;
    release(lease).await;
}

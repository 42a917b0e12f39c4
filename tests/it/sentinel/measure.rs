//! The measurement of how often a failover loses a lease, with and without `WaitReplicas: 1`
//! (ignored in the normal run; the README's figures come from it):
//!
//!     cargo test --test it sentinel::measure -- --ignored --nocapture
//!
//! `FAILOVER_HOLDERS` (default 40) holders take a lease each (TTL 10 s, renewed every 300 ms),
//! hold it 1–4 s, release it and take it again, continuously, while `FAILOVER_COUNT`
//! (default 4) failovers happen: the primary is paused (SIGSTOP, as a stalled or partitioned
//! primary is) until the sentinels have promoted the replica, then resumed, and the
//! sentinels make it a replica again. `FAILOVER_FAULT=kill` kills it (SIGKILL) and starts it
//! again empty instead; `FAILOVER_FAULT=lag` first cuts the replica off for a second (paused,
//! its replication connection killed) and then kills the primary, so that the replica promoted
//! missed that second's writes. A lease that the failover lost is one whose holder got the lost
//! signal (at its next renewal); the others were released as held. Prints one line per setting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasectl::{Acquire, Error, LeaseClient, LostReason, Settings};

use super::*;
use crate::leases::{connect_within, renewing};
use crate::support::BOUND;

#[derive(Default)]
struct Counts {
    granted: AtomicU64,
    kept: AtomicU64,
    lost_not_owner: AtomicU64,
    lost_expired: AtomicU64,
    refused: AtomicU64,
    /// Released at the end of its hold, but the key was gone already: lost, not signalled.
    unsignalled: AtomicU64,
    /// The release at the end of its hold failed (the failover was under way): unknown.
    release_failed: AtomicU64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of about 2-4 minutes: run it with --ignored --nocapture"]
async fn failover_loss_with_and_without_wait_replicas() {
    let holders = env_number("FAILOVER_HOLDERS", 40);
    let failovers = env_number("FAILOVER_COUNT", 4);
    let fault = std::env::var("FAILOVER_FAULT").unwrap_or_else(|_| "pause".into());
    for wait_replicas in [0, 1] {
        let started = Instant::now();
        let counts = measure(wait_replicas, holders, failovers, &fault).await;
        let lost = counts.lost_not_owner.load(Ordering::Relaxed)
            + counts.lost_expired.load(Ordering::Relaxed)
            + counts.unsignalled.load(Ordering::Relaxed);
        let granted = counts.granted.load(Ordering::Relaxed);
        println!(
            "WaitReplicas={wait_replicas} fault={fault} holders={holders} failovers={failovers}: \
             granted={granted} kept={} lost={lost} (not-owner={} expired={}) \
             lost-unsignalled={} release-failed={} refused-or-failed-attempts={} \
             loss-rate={:.2}% in {:.0?}",
            counts.kept.load(Ordering::Relaxed),
            counts.lost_not_owner.load(Ordering::Relaxed),
            counts.lost_expired.load(Ordering::Relaxed),
            counts.unsignalled.load(Ordering::Relaxed),
            counts.release_failed.load(Ordering::Relaxed),
            counts.refused.load(Ordering::Relaxed),
            100.0 * lost as f64 / granted.max(1) as f64,
            started.elapsed(),
        );
    }
}

async fn measure(wait_replicas: u32, holders: u64, failovers: u64, fault: &str) -> Arc<Counts> {
    let mut deployment = SentinelDeployment::start();
    let mut settings = Settings::for_endpoints(&[deployment.connection_string()]).unwrap();
    settings.wait_replicas = wait_replicas;
    let client = Arc::new(connect_within(BOUND, settings).await);
    let (counts, stop) = (
        Arc::new(Counts::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let tasks: Vec<_> = (0..holders)
        .map(|i| {
            let (client, counts, stop) = (client.clone(), counts.clone(), stop.clone());
            tokio::spawn(hold_again_and_again(client, format!("m{i}"), counts, stop))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..failovers {
        fail_over(&mut deployment, fault).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    counts
}

/// One failover, in a blocking task (the support's helpers block).
async fn fail_over(deployment: &mut SentinelDeployment, fault: &str) {
    tokio::task::block_in_place(|| {
        let old = deployment.primary_port();
        let index = deployment.data.iter().position(|n| n.port == old).unwrap();
        let replica = 1 - index;
        match fault {
            "kill" => {
                deployment.kill_primary();
                deployment.wait_for_new_primary(old);
                deployment.restart_as_replica(old);
            }
            "lag" => {
                deployment.data[replica].pause();
                let _: i64 = deployment.data[index].query(&["CLIENT", "KILL", "TYPE", "replica"]);
                // The holders go on for a second that the replica never sees.
                std::thread::sleep(Duration::from_secs(1));
                deployment.kill_primary();
                deployment.data[replica].resume();
                deployment.wait_for_new_primary(old);
                deployment.restart_as_replica(old);
            }
            _ => {
                deployment.data[index].pause();
                deployment.wait_for_new_primary(old);
                deployment.data[index].resume();
            }
        }
        deployment.wait_replica(old);
        assert!(
            crate::support::eventually(BOUND, || deployment.replicas_in_sync()),
            "in sync again"
        );
    });
}

async fn hold_again_and_again(
    client: Arc<LeaseClient>,
    name: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let options = renewing(Duration::from_secs(10), Duration::from_millis(300));
    while !stop.load(Ordering::Relaxed) {
        let lease = match client.try_acquire(&name, &options).await {
            Ok(Acquire::Acquired(lease)) => lease,
            Ok(Acquire::Held(_)) | Err(_) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        counts.granted.fetch_add(1, Ordering::Relaxed);
        let hold = Duration::from_millis(fastrand::u64(1000..4000));
        tokio::select! {
            _ = tokio::time::sleep(hold) => {
                match lease.release().await {
                    Ok(true) => counts.kept.fetch_add(1, Ordering::Relaxed),
                    Ok(false) => counts.unsignalled.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counts.release_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            error = lease.lost() => {
                let counter = match error {
                    Error::Lost { reason: LostReason::NotOwner, .. } => &counts.lost_not_owner,
                    _ => &counts.lost_expired,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

//! The library against real `redis-server` processes: contention, renewal, loss, fencing,
//! waiting, the key formats of SPEC 2, `inspect_all`, and bad inputs.

mod connections;
mod contention;
mod dropping;
mod fencing;
mod inspect_all;
mod many;
mod other_tools;
mod refusals;
mod renewal;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use leasectl::{
    Acquire, Error, Holder, KeyFormat, Lease, LeaseClient, LostReason, Settings, MAX_NAME_LEN,
};
use tokio::time::Instant;

use crate::leases::{
    acquired, connect_within, hand_over, held, options, renewing, take_turns, within, woken_only,
};
use crate::support::{
    eventually, fence_key, free_port, key, query, release_channel, subscribers, RedisServer, BOUND,
    SEED_002_FIELDS,
};

async fn connect(server: &RedisServer) -> LeaseClient {
    connect_with(server.settings()).await
}

async fn connect_with(settings: Settings) -> LeaseClient {
    connect_within(BOUND, settings).await
}

/// The drift allowance of SPEC 6: 1% of the TTL + 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

//! Redis Cluster: a real cluster of three primaries with one replica each (support's
//! `RedisCluster`), reached through any node's address. Every command on names in every
//! primary's slots; a set across slots refused; release notifications over sharded pub/sub;
//! and the faults a cluster brings: a manual failover, a SIGKILLed primary, a slot migration
//! under a held lease.

mod commands;
mod entra;
mod faults;

use std::process::Command;
use std::time::Duration;

use leasectl::LeaseClient;

use crate::leases::connect_within;
use crate::support::cluster::RedisCluster;
use crate::support::{Leasectl, BOUND};

/// `leasectl --endpoint SEED ARGS`, with node `seed` of the cluster as the only endpoint.
fn via(leasectl: &Leasectl, cluster: &RedisCluster, seed: usize) -> Command {
    let mut command = leasectl.command();
    command.arg("--endpoint").arg(cluster.nodes[seed].url());
    command
}

async fn connect(cluster: &RedisCluster, seed: usize) -> LeaseClient {
    connect_within(BOUND, cluster.settings_via(seed)).await
}

/// A lease that outlives any test unless released.
const LONG: Duration = Duration::from_secs(600);

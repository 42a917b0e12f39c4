//! Redis Cluster: one deployment in single mode — one node whose connection (cluster_link.rs)
//! routes each call to the primary owning its slot. Every key of one lease is in one slot
//! (keys.rs), and each script carries its keys, so a script runs on the lease's own primary.
//!
//! Cluster mode is `Cluster: true`, or detected from the first endpoint (`INFO cluster` says
//! `cluster_enabled:1`) unless `Cluster: false`; the endpoints are then the seed nodes.
//! Release notifications use sharded pub/sub (`SPUBLISH` in the scripts, `SSUBSCRIBE` on the
//! primary of the channel's slot) on Redis 7 and later, plain pub/sub (which a cluster
//! broadcasts to every node) before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use redis::cluster_routing::Slot;
use redis::{Client, EntraIdCredentialsProvider};

use super::cluster_link::{Cluster, Recipe};
use super::link::Link;
use super::nodes::{Node, Nodes};
use crate::error::{Error, Result};
use crate::settings::Settings;

/// Sets `cluster` when `node` (a standalone connection to the first endpoint, asked alongside
/// the first PING) is a Redis Cluster node: `INFO cluster` says `cluster_enabled:1`. An
/// instance that refuses INFO is taken as standalone (`Cluster: true` forces the mode).
pub(super) fn probe(node: &Node, cluster: Arc<AtomicBool>) -> BoxFuture<'static, ()> {
    let mut info = redis::cmd("INFO");
    info.arg("cluster");
    let info = node.command::<String>(info);
    Box::pin(async move {
        match info.await {
            Ok(text) if text.lines().any(|l| l.trim() == "cluster_enabled:1") => {
                cluster.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "INFO cluster refused; taken as standalone"),
        }
    })
}

impl Nodes {
    /// Connects to the cluster whose seed nodes are the settings' endpoints: one node whose
    /// connection routes each call to the primary owning its slot. `client` is the first
    /// endpoint's (for messages), `roots` the TLS roots to trust; answers the primaries'
    /// memory policies too, for the eviction check.
    pub(crate) async fn connect_cluster(
        settings: &Settings,
        credentials: Option<EntraIdCredentialsProvider>,
        client: Client,
        roots: Option<Vec<u8>>,
    ) -> Result<(Nodes, Vec<(String, u64, String)>)> {
        let first = &settings.endpoints[0];
        let address = first.address();
        let mut seeds = Vec::with_capacity(settings.endpoints.len());
        for endpoint in &settings.endpoints {
            if endpoint.tls_host.is_some() {
                tracing::warn!(
                    "sslHost= is not supported in Redis Cluster mode ({}): the certificate is checked against each node's own address",
                    endpoint.address()
                );
            }
            seeds.push(
                endpoint
                    .connection_info(settings.database)
                    .map_err(|e| Error::Settings(e.to_string()))?,
            );
        }
        let recipe = Recipe {
            seeds,
            connect_timeout: settings.connect_timeout,
            sync_timeout: settings.sync_timeout,
            roots,
            credentials: credentials.clone(),
        };
        let failed = |e: redis::RedisError| {
            if e.to_string().contains("cluster support disabled") {
                return Error::Settings(format!(
                    "Cluster is true, but {address} is not a Redis Cluster node: remove the setting or set it to false"
                ));
            }
            if e.kind() == redis::ErrorKind::InvalidClientConfig {
                return Error::Settings(format!("{address}: {e}"));
            }
            Error::from_redis(&address, &e, settings.connect_timeout)
        };
        let (cluster, policies) =
            tokio::time::timeout(settings.connect_timeout, Cluster::connect(recipe))
                .await
                .map_err(|_| Error::Timeout {
                    endpoint: address.clone(),
                    after: settings.connect_timeout,
                })?
                .map_err(failed)?;
        tracing::debug!(
            sharded = cluster.sharded,
            "connected to a Redis Cluster through {address}"
        );
        let node = Node {
            address,
            connection: Link::Cluster(Arc::new(cluster)),
            client,
            response_timeout: settings.sync_timeout,
            tls: first.tls,
            hub: Arc::default(),
            // Set by connect.rs once connected.
            retry: super::retry::Retry::NONE,
            start: Arc::default(),
        };
        let nodes = Nodes {
            list: vec![node],
            call_timeout: settings.sync_timeout,
            connect_timeout: settings.connect_timeout,
            credentials,
        };
        Ok((nodes, policies))
    }

    /// The cluster, when this deployment is one.
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        match &self.list.first()?.connection {
            Link::Cluster(cluster) => Some(cluster.as_ref()),
            _ => None,
        }
    }

    /// The command that announces a release in the scripts: `SPUBLISH` (sharded pub/sub, in
    /// the lease's slot) on a Redis 7+ cluster, else `PUBLISH`.
    pub(crate) fn publish_command(&self) -> &'static str {
        match self.cluster() {
            Some(cluster) if cluster.sharded => "SPUBLISH",
            _ => "PUBLISH",
        }
    }

    /// Refuses a set of leases (`names`, their keys `keys`) whose keys are not all in one
    /// cluster slot (a script, and so a set taken together, stays in one slot), before
    /// anything is written. Standalone and quorum deployments take any names.
    pub(crate) fn check_one_slot(&self, names: &[String], keys: &[String]) -> Result<()> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        if self.cluster().is_none() {
            return Ok(());
        }
        let slot = Slot::for_key(first);
        if keys.iter().all(|key| Slot::for_key(key) == slot) {
            return Ok(());
        }
        Err(Error::Settings(format!(
            "the leases {} are in different Redis Cluster slots, and a set is taken in one: give their names a common hash tag, e.g. {{job}}:a and {{job}}:b",
            names.join(", ")
        )))
    }
}

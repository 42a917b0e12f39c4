//! Health checks of a deployment (`leasectl doctor`, and `configure` before it saves): for
//! each instance its reachability and latency, TLS certificate, authentication, the ACL
//! permissions leasectl needs, version and features, topology, memory policy, persistence and
//! clock (`instance.rs`, `tls.rs`, `acl.rs`); then a test lease taken and released.
//!
//! Every check is one [`Check`]: a name, the instance it is about, pass/warn/fail, what was
//! seen, and what to do about it when it is not a pass. A failing check never stops the
//! others: the report says everything that can be seen.

mod acl;
mod instance;
mod tls;

use std::time::Duration;

use serde::Serialize;

use crate::backend::keys::{fence_key, longest_ttl_key};
use crate::client::{Acquire, LeaseClient};
use crate::options::LeaseOptions;
use crate::settings::Settings;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but something deserves attention (the report is still healthy).
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked: `reachable`, `tls`, `authentication`, `permissions`, `server`,
    /// `topology`, `memory policy`, `persistence`, `clock`, `test lease`.
    pub name: &'static str,
    /// The instance's `host:port`; absent for a check of the whole deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// What to do about it (for a warning or a failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn new(
        name: &'static str,
        instance: Option<&str>,
        status: Status,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name,
            instance: instance.map(str::to_string),
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Every check of a deployment; healthy when none failed (warnings allowed).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub healthy: bool,
}

/// Checks every instance of `settings` (at once), then takes and releases a test lease.
/// Never fails: what cannot be checked is a failed check.
pub async fn check(settings: &Settings) -> Report {
    let total = settings.endpoints.len();
    let per_instance =
        futures_util::future::join_all((0..total).map(|index| instance::check(settings, index)))
            .await;
    let mut checks = vec![topology(settings)];
    checks.extend(per_instance.into_iter().flatten());
    checks.push(test_lease(settings).await);
    let healthy = checks.iter().all(|c| c.status != Status::Fail);
    Report { checks, healthy }
}

/// What the settings describe: one deployment, or a quorum of N.
fn topology(settings: &Settings) -> Check {
    let total = settings.endpoints.len();
    let detail = match total {
        0 => {
            return Check::new(
                "deployment",
                None,
                Status::Fail,
                "no Redis endpoint is configured",
            )
            .fix("set ConnectionString or Endpoints (leasectl configure)")
        }
        1 => "single mode: one Redis deployment".to_string(),
        n => format!(
            "quorum mode (Redlock): {n} instances, {} must agree",
            n / 2 + 1
        ),
    };
    let check = Check::new("deployment", None, Status::Pass, detail);
    if total == 2 {
        return Check {
            status: Status::Warn,
            ..check
        }
        .fix("use 3 or 5 instances: with 2, losing either one stops every lease");
    }
    check
}

/// Deletes what a lease leaves behind on purpose (its fencing counter, and in quorum mode the
/// longest TTL it was granted with): nobody else will ever use the test lease's name.
async fn forget(client: &LeaseClient, key: &str) {
    let prefix = &client.settings().key_prefix;
    let mut command = redis::cmd("DEL");
    command
        .arg(fence_key(prefix, key))
        .arg(longest_ttl_key(prefix, key));
    let nodes = &client.backend.nodes.list;
    futures_util::future::join_all(
        nodes
            .iter()
            .map(|node| node.command::<i64>(command.clone())),
    )
    .await;
}

/// Takes a lease under a name no one else uses (`doctor-<uuid>`) and releases it: every script
/// and permission a holder needs, end to end.
async fn test_lease(settings: &Settings) -> Check {
    let name = format!("doctor-{}", uuid::Uuid::new_v4());
    let attempt = async {
        let client = LeaseClient::connect(settings.clone()).await?;
        let options = LeaseOptions {
            ttl: Duration::from_secs(10),
            auto_renew: None,
            ..LeaseOptions::from_settings(client.settings())
        };
        match client.try_acquire(&name, &options).await? {
            Acquire::Acquired(lease) => {
                let token = lease.fencing_token();
                lease.release().await?;
                forget(&client, &format!("{}{name}", settings.key_prefix)).await;
                Ok(format!(
                    "took and released {}{name} (fencing token {token})",
                    settings.key_prefix
                ))
            }
            Acquire::Held(_) => {
                Ok::<_, crate::Error>(format!("{name} was held by someone else (unexpected)"))
            }
        }
    };
    match attempt.await {
        Ok(detail) => Check::new("test lease", None, Status::Pass, detail),
        Err(error) => Check::new("test lease", None, Status::Fail, error.to_string())
            .fix("see the failing checks above"),
    }
}

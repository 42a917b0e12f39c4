//! Reading who holds a lease: one lease (the holder a majority agrees on, and each instance's
//! view) or every lease under the key prefix.

use std::sync::Arc;

use redis::Value;

use crate::backend::keys::{check_name, escape_glob, fence_key, is_internal};
use crate::backend::nodes::{Call, Node, Vote};
use crate::backend::{quorum, scripts, Backend};
use crate::error::{Error, Result};
use crate::holder::{Holder, InstanceView, LeaseInfo};

/// Reads who holds `name`; see [`LeaseClient::inspect`](crate::LeaseClient::inspect).
pub(crate) async fn inspect(backend: &Backend, name: &str) -> Result<LeaseInfo> {
    check_name(name)?;
    inspect_key(backend, name, backend.settings.key_for(name)).await
}

/// Reads who holds `key`, the lease `name`. The name is not checked: `inspect_all` also
/// lists keys that other tools wrote under the prefix with names we would refuse.
async fn inspect_key(backend: &Backend, name: &str, key: String) -> Result<LeaseInfo> {
    let fence = fence_key(&backend.settings.key_prefix, &key);
    let call = Arc::new(Call::new(&scripts::INSPECT).key(&key).key(fence));
    let nodes = &backend.nodes;
    let votes = nodes.all(|node| node.script::<Value>(&call)).await;
    let views: Vec<InstanceView> = votes
        .iter()
        .map(|vote| view_of(&nodes.list[vote.node], &vote.answer))
        .collect();
    let answered = views.iter().filter(|v| v.error.is_none()).count();
    let majority = nodes.majority();
    if answered < majority {
        let first = votes.into_iter().find_map(|v| v.answer.err());
        return Err(match first {
            Some(error) if nodes.list.len() == 1 => error,
            _ => no_quorum_of(backend, &views, answered),
        });
    }
    let holder =
        quorum::agreed_holder(views.iter().filter_map(|v| v.holder.as_ref()), majority).cloned();
    let mut instances = views;
    instances.sort_by_key(|v| nodes.list.iter().position(|n| n.address == v.address));
    if nodes.list.len() == 1 {
        instances.clear();
    }
    Ok(LeaseInfo {
        name: name.to_string(),
        key,
        holder,
        instances,
    })
}

/// Every lease under the key prefix; see
/// [`LeaseClient::inspect_all`](crate::LeaseClient::inspect_all).
pub(crate) async fn inspect_all(backend: &Backend) -> Result<Vec<LeaseInfo>> {
    let prefix = &backend.settings.key_prefix;
    let pattern = format!("{}*", escape_glob(prefix));
    let nodes = &backend.nodes;
    let votes = match nodes.cluster() {
        // A cluster is one deployment: every primary is scanned, or the listing fails.
        Some(cluster) => vec![Vote {
            node: 0,
            answer: cluster.scan(&pattern).await.map_err(|e| {
                Error::from_redis(&nodes.list[0].address, &e, backend.settings.sync_timeout)
            }),
        }],
        None => nodes.all(|node| node.scan(&pattern)).await,
    };
    let answered = votes.iter().filter(|v| v.answer.is_ok()).count();
    if answered < nodes.majority() {
        let mut errors = votes.into_iter().filter_map(|v| v.answer.err());
        return Err(errors.next().expect("some instance failed"));
    }
    for vote in votes.iter().filter(|v| v.answer.is_err()) {
        let failed = nodes.describe(vote, |_| String::new());
        tracing::warn!("{failed}: leases held only there are not listed");
    }
    let mut keys: Vec<String> = votes
        .into_iter()
        .filter_map(|v| v.answer.ok())
        .flatten()
        .filter(|key| !is_internal(prefix, key))
        .collect();
    keys.sort();
    keys.dedup();
    let reads = keys
        .iter()
        .map(|key| inspect_key(backend, &key[prefix.len()..], key.clone()));
    let infos = futures_util::future::try_join_all(reads).await?;
    Ok(infos
        .into_iter()
        .filter(|info| info.holder.is_some() || info.instances.iter().any(|i| i.holder.is_some()))
        .collect())
}

/// Why an inspect failed, with every instance's view.
fn no_quorum_of(backend: &Backend, views: &[InstanceView], answered: usize) -> Error {
    let votes = views
        .iter()
        .map(|v| match &v.error {
            Some(error) => format!("{} {error}", v.address),
            None => format!("{} answered", v.address),
        })
        .collect();
    backend.nodes.no_quorum(answered, "answered", votes)
}

/// One instance's answer to the inspect script, as a view.
fn view_of(node: &Node, answer: &Result<Value>) -> InstanceView {
    let mut view = InstanceView {
        address: node.address.clone(),
        holder: None,
        counter: None,
        error: None,
    };
    match answer {
        Ok(Value::Array(parts)) => {
            view.holder = parts.first().and_then(Holder::from_reply);
            view.counter = match parts.get(1) {
                Some(Value::Int(counter)) => Some(*counter as u64),
                _ => None,
            };
        }
        Ok(_) => view.error = Some("unexpected answer to the inspect script".into()),
        Err(error) => view.error = Some(error.short()),
    }
    view
}

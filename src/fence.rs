//! Fenced writes, the protected resource's side of fencing: a write to a key carries a
//! fencing token and is refused when a newer one came first.

use std::sync::Arc;

use crate::backend::keys::newest_token_key;
use crate::backend::nodes::{Call, Vote};
use crate::backend::{scripts, Backend};
use crate::error::Result;

/// The outcome of [`LeaseClient::fenced_set`](crate::LeaseClient::fenced_set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FencedWrite {
    /// The value was written; the key now remembers this token.
    Written,
    /// Refused: a write with this newer token came first.
    Stale { newest: u64 },
}

/// Writes `value` to `key` unless `token` is older than the newest it has seen; see
/// [`LeaseClient::fenced_set`](crate::LeaseClient::fenced_set).
pub(crate) async fn fenced_set(
    backend: &Backend,
    key: &str,
    value: &str,
    token: u64,
) -> Result<FencedWrite> {
    let call = Arc::new(
        Call::new(&scripts::FENCED_SET)
            .key(key)
            .key(newest_token_key(key))
            .arg(value)
            .arg(token),
    );
    let nodes = &backend.nodes;
    let (total, majority) = (nodes.list.len(), nodes.majority());
    let newest = |votes: &[Vote<(i64, i64)>]| {
        votes
            .iter()
            .filter_map(|v| match v.answer {
                Ok((0, newest)) => Some(newest as u64),
                _ => None,
            })
            .max()
    };
    let written = |votes: &[Vote<(i64, i64)>]| {
        votes
            .iter()
            .filter(|v| matches!(v.answer, Ok((1, _))))
            .count()
    };
    let (votes, pending) = nodes
        .gather(
            |node| node.script::<(i64, i64)>(&call),
            |votes| {
                let failed = votes.iter().filter(|v| v.answer.is_err()).count();
                newest(votes).is_some() || written(votes) >= majority || failed > total - majority
            },
        )
        .await;
    backend.finish_in_background(pending);
    if let Some(newest) = newest(&votes) {
        return Ok(FencedWrite::Stale { newest });
    }
    let accepted = written(&votes);
    if accepted >= majority {
        return Ok(FencedWrite::Written);
    }
    if total == 1 {
        return Err(votes
            .into_iter()
            .find_map(|v| v.answer.err())
            .unwrap_or_else(|| backend.unexpected("fenced set")));
    }
    let described = votes
        .iter()
        .map(|v| nodes.describe(v, |_| "accepted".into()))
        .collect();
    Err(nodes.no_quorum(accepted, "accepted", described))
}

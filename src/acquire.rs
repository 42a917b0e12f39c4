//! One acquire attempt for a set of lease names (one, usually): the acquire script on every
//! instance, the fencing tokens settled on a majority, what a refused attempt was granted
//! undone, and a split vote tried again after a random pause.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::{BoxFuture, Either};
use futures_util::{StreamExt, TryFutureExt};
use redis::Value;
use tokio::time::Instant;

use crate::backend::keys::{check_ttl, fence_key, grants_key, longest_ttl_key, queue_keys};
use crate::backend::nodes::{Call, Node, Pending, Vote};
use crate::backend::quorum::{self, Grant, Tally};
use crate::backend::{self, Backend};
use crate::error::{Error, Result};
use crate::holder::Holder;
use crate::lease::Lease;
use crate::options::LeaseOptions;
use crate::renew::{validity_end, Schedule};
use crate::settings::Settings;

/// How many times a quorum attempt that ended in a split vote is tried again.
pub(crate) const SPLIT_RETRIES: u32 = 3;
/// How long a queued waiter keeps its place without confirming it: a waiter killed by
/// SIGKILL holds up the ones behind it no longer than this.
pub(crate) const QUEUE_GRACE: Duration = Duration::from_millis(1500);

/// What an attempt at a set of names (one, usually) came to.
pub(crate) enum Taken {
    /// One lease per name, in the order of the names.
    Acquired(Vec<Lease>),
    /// The lease at this index is held; `counter`: its fencing counter as the attempt found it
    /// (single mode; 0 in quorum mode, which keeps no queue).
    Held {
        lease: usize,
        holder: Holder,
        counter: u64,
    },
}

/// One acquire attempt for a set of checked names (one, usually); `waiter` (single mode
/// and one lease, `""` for none) keeps a place in the lease's queue, so that waiters get
/// the lease in the order they came, and is the id of the lease it takes: a release that
/// hands it the lease (`handoff.lua`) writes it under that id, with what the attempt left
/// beside the queue for it.
pub(crate) async fn attempt(
    backend: &Arc<Backend>,
    names: &[String],
    options: &LeaseOptions,
    waiter: &str,
    splits_left: u32,
) -> Result<Taken> {
    let ttl_ms = check_ttl(options.ttl)?;
    let keys: Vec<String> = names.iter().map(|n| backend.settings.key_for(n)).collect();
    let id = match waiter {
        "" => uuid::Uuid::new_v4().to_string(),
        place => place.to_string(),
    };
    let format = backend.settings.lease_format;
    let acquired_at = format.acquired_at(SystemTime::now());
    let mut call = Call::new(backend::format::scripts(format).acquire);
    let prefix = &backend.settings.key_prefix;
    let total = backend.nodes.list.len();
    for key in &keys {
        let (queue, deadlines) = queue_keys(prefix, key);
        call = call
            .key(key)
            .key(fence_key(prefix, key))
            .key(queue)
            .key(deadlines);
        if total > 1 {
            call = call.key(longest_ttl_key(prefix, key));
        } else if !waiter.is_empty() {
            call = call.key(grants_key(prefix, key));
        }
    }
    // Quorum mode: one clock for every instance's token floor (see acquire.lua), so that
    // they agree; in single mode the server's own clock is the floor.
    let floor = match total {
        1 => String::new(),
        _ => unix_micros(SystemTime::now()).to_string(),
    };
    // A waiter queues under its lease id, leaving its grant request. A grant is written on
    // the primary alone: with `WaitReplicas` the waiter takes the lease with its own acquire,
    // acknowledged by the replicas, as before ('-': queued, no request).
    let queueing = if waiter.is_empty() {
        String::new()
    } else if backend.settings.wait_replicas > 0 {
        "-".to_string()
    } else {
        let ttl_ms = check_ttl(grant_ttl(options.ttl))?;
        backend::format::grant_request(format, &id, ttl_ms, &options.metadata)
    };
    call = call
        .arg(&id)
        .arg(ttl_ms)
        .arg(&acquired_at)
        .arg(queueing)
        .arg(QUEUE_GRACE.as_millis() as u64)
        .arg(floor);
    call = backend::format::acquire_values(call, format, &id, &acquired_at, &options.metadata);
    // Retries of a transient error stop where the lease could no longer be valid.
    let sent_at = Instant::now();
    // WaitReplicas: one deployment with replicas (quorum instances are independent).
    if total == 1 {
        call = call.acknowledged(&backend.settings);
    }
    let call = Arc::new(call.until(validity_end(sent_at, options.ttl)));
    let (votes, pending) = backend
        .nodes
        .gather(
            |node| grant(node, &call, total > 1),
            |votes| Tally::of(votes, options.ttl).decides(total),
        )
        .await;
    let tally = Tally::of(&votes, options.ttl);
    if tally.counted() >= quorum::majority(total) {
        let tokens = settle_tokens(backend, &keys, &id, &votes, pending, options.ttl).await;
        let in_time = Instant::now() < validity_end(sent_at, options.ttl);
        return match tokens {
            Ok(tokens) if in_time => {
                let schedule = schedule(options, sent_at);
                let leases = names.iter().zip(keys).zip(tokens);
                let leases = leases.map(|((name, key), token)| {
                    let (id, at) = (id.clone(), acquired_at.clone());
                    Lease::new(backend.clone(), name, key, id, token, at, sent_at, schedule)
                });
                Ok(Taken::Acquired(leases.collect()))
            }
            outcome => {
                backend.undo(&keys, &id, &votes).await;
                Err(outcome.err().unwrap_or_else(|| {
                    no_quorum(
                        backend,
                        &votes,
                        options.ttl,
                        tally.counted(),
                        "the lease's validity ran out while acquiring",
                    )
                }))
            }
        };
    }
    if total == 1 {
        return match votes.into_iter().next().map(|vote| vote.answer) {
            Some(Ok(Grant::Held {
                holder: Some(holder),
                lease,
                counter,
                ..
            })) => Ok(Taken::Held {
                lease,
                holder,
                counter,
            }),
            // Held, but the key vanished between the check and the read: it is free now.
            Some(Ok(Grant::Held { holder: None, .. })) => {
                Box::pin(attempt(backend, names, options, waiter, splits_left)).await
            }
            Some(Err(error)) => {
                if let Error::NotAcknowledged { .. } = error {
                    // WaitReplicas: granted on the primary, but a failover could lose it.
                    backend.undo(&keys, &id, &[]).await;
                }
                Err(error)
            }
            _ => Err(backend.unexpected("acquire")),
        };
    }
    // Quorum mode: undo what may have been granted, here or by calls still under way.
    if tally.any_written() || tally.failed > 0 || !pending.is_empty() {
        backend.undo(&keys, &id, &votes).await;
    }
    let holders: Vec<(usize, &Holder)> = votes
        .iter()
        .filter_map(|v| match &v.answer {
            Ok(Grant::Held {
                holder: Some(holder),
                lease,
                ..
            }) => Some((*lease, holder)),
            _ => None,
        })
        .collect();
    let majority = quorum::majority(total);
    let agreed = quorum::agreed_holder(holders.iter().map(|(_, holder)| *holder), majority)
        .and_then(|agreed| holders.iter().find(|(_, h)| std::ptr::eq(*h, agreed)));
    match holders.first() {
        // A split vote: contenders each won a minority and undid it (or voided each other's
        // grants from young instances). Try again after a random pause (Redlock's remedy),
        // so that one of them wins.
        Some(_) if agreed.is_none() && tally.counted() + tally.voided > 0 && splits_left > 0 => {
            tokio::time::sleep(Duration::from_micros(fastrand::u64(1_000..20_000))).await;
            Box::pin(attempt(backend, names, options, waiter, splits_left - 1)).await
        }
        Some(first) if tally.counted() + tally.held + tally.voided >= majority => {
            let (lease, holder) = agreed.unwrap_or(first);
            Ok(Taken::Held {
                lease: *lease,
                holder: (*holder).clone(),
                counter: 0,
            })
        }
        _ => Err(no_quorum(backend, &votes, options.ttl, tally.counted(), "")),
    }
}

/// When a lease taken with `options`, whose validity began at `sent_at`, is renewed, and when
/// it stops for good.
pub(crate) fn schedule(options: &LeaseOptions, sent_at: Instant) -> Schedule {
    Schedule {
        sent_at,
        ttl: options.ttl,
        renew_every: options
            .auto_renew
            .map(|every| every.min(options.ttl * 2 / 3)),
        hold_until: options.max_hold.map(|cap| sent_at + cap),
        watch_releases: options.watch_releases,
    }
}

/// The TTL a release hands a queued waiter the lease with (`handoff.lua`): its own, but at
/// most [`QUEUE_GRACE`], so that a waiter that died just before blocks the lease no longer
/// than its place in the queue would have; the waiter extends it to its own at once.
pub(crate) fn grant_ttl(ttl: Duration) -> Duration {
    ttl.min(QUEUE_GRACE)
}

/// Makes sure that a majority's fencing counters stand at each lease's token before it is
/// handed out, so that no later acquisition — by any majority — can get a smaller one.
/// When the granting instances agree (the usual case) this costs nothing; otherwise the
/// instances behind are raised first. Instances still answering, or that answered behind,
/// are raised in the background.
async fn settle_tokens(
    backend: &Arc<Backend>,
    keys: &[String],
    id: &str,
    votes: &[Vote<Grant>],
    pending: Pending<Grant>,
    ttl: Duration,
) -> Result<Vec<u64>> {
    let majority = backend.nodes.majority();
    let mut tokens = Vec::with_capacity(keys.len());
    let mut stragglers = Vec::new();
    for (lease, key) in keys.iter().enumerate() {
        let (token, agreeing) = quorum::token_of(votes, lease);
        let mut behind = quorum::behind(votes, token, lease);
        if agreeing < majority {
            let granting_behind: Vec<usize> = behind
                .iter()
                .copied()
                .filter(|i| {
                    votes
                        .iter()
                        .any(|v| v.node == *i && matches!(v.answer, Ok(Grant::Granted { .. })))
                })
                .collect();
            let raise = raise_call(&backend.settings, key, token, id);
            let raised = backend
                .nodes
                .on(&granting_behind, |node| node.script::<i64>(&raise))
                .await;
            let standing = agreeing
                + raised
                    .iter()
                    .filter(|v| v.answer.as_ref().is_ok_and(|c| *c as u64 >= token))
                    .count();
            if standing < majority {
                return Err(no_quorum(
                    backend,
                    votes,
                    ttl,
                    standing,
                    "the instances could not agree on a fencing token",
                ));
            }
            behind.retain(|i| !granting_behind.contains(i));
        }
        stragglers.push(behind);
        tokens.push(token);
    }
    let all_settled = stragglers.iter().all(Vec::is_empty);
    if !all_settled || !pending.is_empty() {
        let raise = raise_stragglers(
            backend.clone(),
            keys.to_vec(),
            id.to_string(),
            stragglers,
            pending,
            tokens.clone(),
        );
        backend.in_background(raise);
    }
    Ok(tokens)
}

/// Why an acquire with `ttl` failed, with every instance's answer.
fn no_quorum(
    backend: &Backend,
    votes: &[Vote<Grant>],
    ttl: Duration,
    granted: usize,
    why: &str,
) -> Error {
    let longest = quorum::longest_ttl(votes, ttl);
    let mut described: Vec<String> = votes
        .iter()
        .map(|vote| {
            backend.nodes.describe(vote, |grant| match grant {
                Grant::Granted {
                    uptime: Some(uptime),
                    ..
                } if quorum::is_young(Some(*uptime), longest) => {
                    format!("granted, but started {uptime} s ago")
                }
                Grant::Granted { .. } => "granted".into(),
                Grant::Held {
                    holder: Some(holder),
                    ..
                } => format!("held by {}", holder.display_name()),
                Grant::Held { holder: None, .. } => "held".into(),
            })
        })
        .collect();
    let answered: Vec<usize> = votes.iter().map(|v| v.node).collect();
    for (_, node) in backend
        .nodes
        .list
        .iter()
        .enumerate()
        .filter(|(i, _)| !answered.contains(i))
    {
        described.push(format!("{} undecided", node.address));
    }
    if !why.is_empty() {
        described.push(why.to_string());
    }
    backend.nodes.no_quorum(granted, "granted", described)
}

/// Microseconds since the Unix epoch (0 before it).
fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// Runs the acquire script on one instance and reads its answer; in quorum mode with how
/// long the instance has been up, learned on the connection the call goes out on (start.rs).
fn grant(node: &Node, call: &Arc<Call>, quorum: bool) -> BoxFuture<'static, Result<Grant>> {
    let wrote = |reply: &Value| matches!(Grant::parse(reply), Some(Grant::Granted { .. }));
    let address = node.address.clone();
    let request = match quorum {
        true => Either::Left(node.script_with_uptime(call).map_ok(|(v, u)| (v, Some(u)))),
        false => Either::Right(
            node.script_acknowledged::<Value>(call, wrote)
                .map_ok(|v| (v, None)),
        ),
    };
    Box::pin(async move {
        let (reply, uptime) = request.await?;
        let mut grant = Grant::parse(&reply).ok_or_else(|| Error::Redis {
            endpoint: address,
            detail: "unexpected answer to the acquire script".into(),
        })?;
        if let (Grant::Granted { uptime: at, .. }, Some(uptime)) = (&mut grant, uptime) {
            *at = uptime.now();
        }
        Ok(grant)
    })
}

/// The call that raises `key`'s fencing counter to `token` (and records it in our lease).
fn raise_call(settings: &Settings, key: &str, token: u64, id: &str) -> Arc<Call> {
    Arc::new(
        Call::new(backend::format::scripts(settings.lease_format).raise)
            .key(key)
            .key(fence_key(&settings.key_prefix, key))
            .arg(token)
            .arg(id),
    )
}

/// Raises the instances that answered behind each lease's token, and those whose answers
/// were still under way when the acquire was decided.
async fn raise_stragglers(
    backend: Arc<Backend>,
    keys: Vec<String>,
    id: String,
    mut behind: Vec<Vec<usize>>,
    mut pending: Pending<Grant>,
    tokens: Vec<u64>,
) {
    while let Some(late) = pending.next().await {
        for (lease, behind) in behind.iter_mut().enumerate() {
            behind.extend(quorum::behind(
                std::slice::from_ref(&late),
                tokens[lease],
                lease,
            ));
        }
    }
    for (lease, behind) in behind.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        let raise = raise_call(&backend.settings, &keys[lease], tokens[lease], &id);
        let raised = backend
            .nodes
            .on(behind, |node| node.script::<i64>(&raise))
            .await;
        for vote in raised.iter().filter(|v| v.answer.is_err()) {
            tracing::debug!(node = %backend.nodes.list[vote.node].address, "raising the fencing counter failed");
        }
    }
}

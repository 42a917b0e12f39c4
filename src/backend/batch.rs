//! Extensions of many leases at once (the renewals a client's watchdog sends together, see
//! renew/): one pipeline of `extend` script calls per instance, sent to every instance at once
//! under the same per-instance timeout and retries as any call (nodes.rs), with one `WAIT`
//! after them for `WaitReplicas`. Each lease keeps its own answer, its own token check (the
//! script's) and its own majority. A Redis Cluster gets one call per lease instead (a
//! pipeline there must stay within one slot).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::{Cmd, Pipeline, Value};
use tokio::time::Instant;

use super::keys::check_ttl;
use super::link::Link;
use super::nodes::{was_dropped, Call, Node, Vote, NO_SCRIPT};
use super::replicas::Wait;
use super::{quorum, Backend};
use crate::error::{Error, Result};

/// One lease to extend.
pub(crate) struct Extension<'a> {
    pub(crate) key: &'a str,
    pub(crate) id: &'a str,
    /// The TTL to set.
    pub(crate) ttl: Duration,
}

/// The pipeline sent alike to every instance, and how to read its answers.
struct Batch {
    /// Each lease's extend call, from which the pipeline is made (with EVAL after a NOSCRIPT).
    calls: Vec<Call>,
    pipeline: Pipeline,
    /// How many extend calls it holds (a `WAIT` may follow them).
    count: usize,
    wait: Option<Wait>,
    /// No retry starts that could not end before this.
    until: Instant,
}

/// Each instance's answers: one per lease, or an error for all of them.
type Answers = Vec<Result<i64>>;

impl Backend {
    /// Extends each of `leases` as [`Backend::extend`] does, all in one pipeline per instance,
    /// and hands each lease's result to `answered` (by its index in `leases`) as soon as it is
    /// decided: a lease that waits for a slow instance holds up none of the others. Retries
    /// after a transient error stop at `until`.
    pub(crate) async fn extend_many(
        &self,
        leases: &[Extension<'_>],
        until: Instant,
        mut answered: impl FnMut(Vec<(usize, Result<bool>)>),
    ) {
        let clustered = (self.nodes.list.iter()).any(|n| matches!(n.connection, Link::Cluster(_)));
        let ttls: Result<Vec<u64>> = leases.iter().map(|l| check_ttl(l.ttl)).collect();
        let ttls = match ttls {
            Ok(ttls) if !clustered && leases.len() > 1 => ttls,
            // One lease, a cluster, or a TTL out of range (which `extend` answers): one call each.
            _ => {
                let each = leases.iter().enumerate().map(|(i, lease)| async move {
                    (i, self.extend(lease.key, lease.id, lease.ttl).await)
                });
                let mut each: FuturesUnordered<_> = each.collect();
                while let Some(answer) = each.next().await {
                    answered(vec![answer]);
                }
                return;
            }
        };
        let total = self.nodes.list.len();
        let calls: Vec<Call> = (leases.iter().zip(ttls))
            .map(|(lease, ttl_ms)| self.extend_call(lease.key, lease.id, ttl_ms))
            .collect();
        // WaitReplicas: one deployment with replicas (quorum instances are independent).
        let wait = (total == 1).then(|| Wait::of(&self.settings)).flatten();
        let pipeline = pipeline(&calls, wait.as_ref(), Call::evalsha);
        let batch = Arc::new(Batch {
            count: calls.len(),
            calls,
            pipeline,
            wait,
            until,
        });
        let mut open = vec![true; batch.count];
        let (votes, pending) = self
            .nodes
            .gather(
                |node| run(node, &batch),
                |votes| {
                    let mut decided = Vec::new();
                    for (i, open) in open.iter_mut().enumerate().filter(|(_, open)| **open) {
                        let lease = of(votes, i);
                        if quorum::extension(&lease, total).is_some() {
                            *open = false;
                            decided.push((i, self.extension_outcome(lease)));
                        }
                    }
                    if !decided.is_empty() {
                        answered(decided);
                    }
                    open.iter().all(|open| !open)
                },
            )
            .await;
        // The instances still answering are extended all the same: let their calls finish.
        self.finish_in_background(pending);
        let rest: Vec<_> = (0..batch.count)
            .filter(|i| open[*i])
            .map(|i| (i, self.extension_outcome(of(&votes, i))))
            .collect();
        if !rest.is_empty() {
            answered(rest);
        }
    }
}

/// The calls as one pipeline (`command` makes each call's command), `WAIT` last when asked
/// for; each answer is read on its own, an error included.
fn pipeline(calls: &[Call], wait: Option<&Wait>, command: impl Fn(&Call) -> Cmd) -> Pipeline {
    let mut pipeline = redis::pipe();
    for call in calls {
        pipeline.add_command(command(call));
    }
    if let Some(wait) = wait {
        wait.append(&mut pipeline);
    }
    pipeline.ignore_errors();
    pipeline
}

/// The instances' votes on lease `i` of a batch.
fn of(votes: &[Vote<Answers>], i: usize) -> Vec<Vote<i64>> {
    let answer = |vote: &Vote<Answers>| match &vote.answer {
        Ok(answers) => answers[i].clone(),
        Err(error) => Err(error.clone()),
    };
    let each = votes.iter().map(|vote| Vote {
        node: vote.node,
        answer: answer(vote),
    });
    each.collect()
}

/// Sends `batch` to `node` (retried after a transient error until its deadline) and reads
/// each lease's answer.
fn run(node: &Node, batch: &Arc<Batch>) -> BoxFuture<'static, Result<Answers>> {
    let (node, batch) = (node.clone(), batch.clone());
    Box::pin(async move {
        let connection = &node.connection;
        let values = (node.retry)
            .run(Some(batch.until), || send(&batch, connection.clone()))
            .await;
        let error =
            |e: &redis::RedisError| Error::from_redis(&node.address, e, node.response_timeout);
        let mut values = values.map_err(|e| error(&e))?;
        if values.len() != batch.count + usize::from(batch.wait.is_some()) {
            let unexpected = redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline answered with a different number of answers",
            ));
            return Err(error(&unexpected));
        }
        let acknowledged = match batch.wait {
            Some(_) => Some(number(values.pop().expect("counted"), &error)?),
            None => None,
        };
        let answers = values.into_iter().map(|value| {
            let extended = number(value, &error)?;
            if let (Some(wait), Some(acknowledged), 1) = (&batch.wait, acknowledged, extended) {
                wait.check(acknowledged, &node.address)?;
            }
            Ok(extended)
        });
        Ok(answers.collect())
    })
}

/// An integer answer, or the server's error.
fn number(value: Value, error: &dyn Fn(&redis::RedisError) -> Error) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(n),
        Value::ServerError(refused) => Err(error(&refused.into())),
        _ => Err(error(
            &(redis::ErrorKind::UnexpectedReturnType, "not a number").into(),
        )),
    }
}

/// One attempt: the pipeline; once more at once when the connection had died; after a
/// NOSCRIPT (the script's first use here, or the instance restarted), sent again with EVAL,
/// as any call is (nodes.rs): it needs no `SCRIPT LOAD` right, only the `EVAL` the README's
/// ACL grants, and leaves the script cached for the next batch.
async fn send(batch: &Batch, mut connection: Link) -> redis::RedisResult<Vec<Value>> {
    let mut answers = batch.pipeline.query_async(&mut connection).await;
    if answers.as_ref().is_err_and(was_dropped) {
        answers = batch.pipeline.query_async(&mut connection).await;
    }
    let no_script = |value: &Value| match value {
        Value::ServerError(error) => redis::RedisError::from(error.clone()).kind() == NO_SCRIPT,
        _ => false,
    };
    if answers
        .as_ref()
        .is_ok_and(|values: &Vec<Value>| values.iter().any(no_script))
    {
        let eval = pipeline(&batch.calls, batch.wait.as_ref(), Call::eval);
        answers = eval.query_async(&mut connection).await;
    }
    answers
}

//! Coalescing: the script calls that a client's tasks make to one instance while earlier ones
//! are still unanswered go out together, as one EVALSHA of `coalesced.lua` per script (S2's 50
//! acquirers on one connection), so that the server pays EVALSHA's own cost once for them all.
//! A call made while nothing else is under way goes out at once, alone, as before (S1).
//! Single mode only: one instance that is not a Cluster (whose keys live on many nodes), where
//! calls of different tasks have no order between them. A call with `WaitReplicas` goes alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::{RedisResult, Value};
use tokio::sync::{oneshot, Notify};

use super::link::Link;
use super::nodes::{run_script, Call};

/// At most this many calls in one EVALSHA.
const MOST: usize = 16;

/// One instance's calls under way, and those waiting to go out together.
#[derive(Default)]
pub(crate) struct Coalescer {
    /// Calls made and not yet answered, sent or waiting here.
    under_way: AtomicUsize,
    queue: Mutex<Queue>,
    /// Wakes the sending task when a call joins the queue.
    more: Notify,
}

#[derive(Default)]
struct Queue {
    calls: Vec<Waiting>,
    /// Whether a task is sending what joins the queue.
    sending: bool,
}

struct Waiting {
    call: Arc<Call>,
    answer: oneshot::Sender<RedisResult<Value>>,
}

impl Coalescer {
    /// Runs `call` over `connection`: at once when nothing else is under way here, else with
    /// the calls made meanwhile.
    pub(super) async fn run(
        self: &Arc<Self>,
        call: &Arc<Call>,
        connection: &Link,
    ) -> RedisResult<Value> {
        let under_way = UnderWay::enter(&self.under_way);
        if under_way.alone || call.wait.is_some() {
            return run_script(call, connection.clone()).await;
        }
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().expect("coalesced calls");
            queue.calls.push(Waiting {
                call: call.clone(),
                answer,
            });
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            tokio::spawn(self.clone().send(connection.clone()));
        } else {
            self.more.notify_one();
        }
        answered
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "the call's sending task ended").into()))
    }

    /// Sends what is queued, as it joins, until nothing is queued or unanswered. It runs after
    /// the tasks already woken, so the calls they make join the same EVALSHA.
    async fn send(self: Arc<Self>, connection: Link) {
        let mut ended = Ended {
            coalescer: &self,
            early: true,
        };
        let mut sent = FuturesUnordered::new();
        loop {
            let mut calls = {
                let mut queue = self.queue.lock().expect("coalesced calls");
                if queue.calls.is_empty() && sent.is_empty() {
                    queue.sending = false;
                    ended.early = false;
                    return;
                }
                std::mem::take(&mut queue.calls)
            };
            // A caller that stopped waiting (its deadline, a cancelled task) is not sent.
            calls.retain(|waiting| !waiting.answer.is_closed());
            for together in by_script(calls) {
                sent.push(send_together(together, connection.clone()));
            }
            tokio::select! {
                _ = self.more.notified() => {}
                Some(()) = sent.next(), if !sent.is_empty() => {}
            }
        }
    }
}

/// Should the sending task end early (its runtime shut down), the calls it held fail (their
/// callers may try again) and the next call starts another.
struct Ended<'a> {
    coalescer: &'a Coalescer,
    early: bool,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        if self.early {
            let mut queue = self.coalescer.queue.lock().expect("coalesced calls");
            queue.calls.clear();
            queue.sending = false;
        }
    }
}

/// The calls in the order made, each run of calls of the same script in one group (at most
/// [`MOST`]): the groups go out in that order, so no call overtakes one made before it (a
/// lease's extension in the background, then its release).
fn by_script(calls: Vec<Waiting>) -> Vec<Vec<Waiting>> {
    let mut groups: Vec<Vec<Waiting>> = Vec::new();
    for waiting in calls {
        match groups.last_mut() {
            Some(group) if group.len() < MOST && group[0].call.same_script(&waiting.call) => {
                group.push(waiting)
            }
            _ => groups.push(vec![waiting]),
        }
    }
    groups
}

/// Sends calls of one script in one EVALSHA (one alone as itself) and hands out the answers.
async fn send_together(mut calls: Vec<Waiting>, connection: Link) {
    if calls.len() == 1 {
        let waiting = calls.pop().expect("one call");
        let _ = waiting
            .answer
            .send(run_script(&waiting.call, connection).await);
        return;
    }
    let together = Call::coalescing(calls.iter().map(|waiting| &*waiting.call));
    let answers = run_script::<Value>(&together, connection)
        .await
        .and_then(|answer| answers(answer, calls.len()));
    match answers {
        Ok(answers) => {
            for (waiting, answer) in calls.into_iter().zip(answers) {
                let _ = waiting.answer.send(answer);
            }
        }
        Err(error) => {
            for waiting in calls {
                let _ = waiting.answer.send(Err(error.clone()));
            }
        }
    }
}

/// Each call's answer from `coalesced.lua`'s `{answers, errors}`.
fn answers(answer: Value, calls: usize) -> RedisResult<Vec<RedisResult<Value>>> {
    let unexpected = || {
        let what = "coalesced calls: not one answer each";
        redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, what))
    };
    let Value::Array(mut parts) = answer else {
        return Err(unexpected());
    };
    let (Some(Value::Array(errors)), Some(Value::Array(answers))) = (parts.pop(), parts.pop())
    else {
        return Err(unexpected());
    };
    if answers.len() != calls {
        return Err(unexpected());
    }
    let mut answers: Vec<RedisResult<Value>> = answers.into_iter().map(Ok).collect();
    for failed in errors.chunks_exact(2) {
        let (Value::Int(i), Value::BulkString(text)) = (&failed[0], &failed[1]) else {
            return Err(unexpected());
        };
        let slot = usize::try_from(*i).ok().and_then(|i| i.checked_sub(1));
        let slot = slot
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(unexpected)?;
        *slot = Err(error_from(text));
    }
    Ok(answers)
}

/// The error a call alone would have been answered with, from its text (`WRONGTYPE …`):
/// redis-rs reads its kind from its code, as from any error reply.
fn error_from(text: &[u8]) -> redis::RedisError {
    let text = String::from_utf8_lossy(text).replace(['\r', '\n'], " ");
    match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
        Ok(Value::ServerError(error)) => error.into(),
        _ => (
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "script error",
        )
            .into(),
    }
}

/// Counts a call as under way until it is answered (or its caller stops waiting).
struct UnderWay<'a> {
    count: &'a AtomicUsize,
    /// Nothing else was under way when it was made.
    alone: bool,
}

impl<'a> UnderWay<'a> {
    fn enter(count: &'a AtomicUsize) -> UnderWay<'a> {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        UnderWay { count, alone }
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

//! How long each instance has been up, for quorum mode's restart check (see quorum.rs): learned
//! with `INFO server` once per connection instead of in every acquire script. An instance that
//! restarted has dropped every connection to it, and a call that goes out on a new connection
//! finds the link's epoch moved on (link.rs): what was learned on the old connection is then
//! void, and the instance is asked again, after the call, on a connection at least as new as
//! the one that granted (so about an instance that started no earlier). When even that cannot
//! be told, the grant counts as one from an instance that just started.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use redis::Value;
use tokio::time::Instant;

use super::nodes::{Call, Node};
use crate::error::Result;

/// What a client learned of an instance's start, shared by its calls.
#[derive(Default)]
pub(crate) struct Start {
    known: Mutex<Option<Uptime>>,
}

/// An instance's uptime as INFO gave it on the connection of one epoch.
#[derive(Clone)]
pub(crate) struct Uptime {
    epoch: u64,
    /// Whole seconds (maybe one ahead, as INFO counts them); `None`: INFO is not allowed,
    /// and the instance counts as old, as it always has.
    seconds: Option<u64>,
    /// When INFO answered.
    at: Instant,
    link: Arc<AtomicU64>,
}

impl Uptime {
    /// The instance's uptime now, for a grant whose call went out after this was learned and
    /// has answered: `Some(0)` (it just started) when the connection may have changed since.
    pub(crate) fn now(&self) -> Option<u64> {
        if self.link.load(Ordering::SeqCst) != self.epoch {
            return Some(0);
        }
        self.seconds.map(|s| s + self.at.elapsed().as_secs())
    }
}

impl Node {
    /// Runs the acquire `call` here, and answers how long the instance has been up: what this
    /// connection already told, or (its first call) `INFO server` sent in the same write just
    /// ahead of the call, so as never to delay it (a release sent after the call must reach
    /// the instance after it). When the connection changed meanwhile (the call failed on a
    /// dead one and went out again on a new one), INFO is asked again once the call answered:
    /// on a connection at least as new as the grant's, so of an instance that started no
    /// earlier than the one that granted — never an older start than the grant's.
    pub(crate) fn script_with_uptime(
        &self,
        call: &Arc<Call>,
    ) -> BoxFuture<'static, Result<(Value, Uptime)>> {
        let link = self.connection.epoch().clone();
        let epoch = link.load(Ordering::SeqCst);
        let known = self.start.known.lock().expect("start").clone();
        let known = known.filter(|known| known.epoch == epoch);
        let (node, call) = (self.clone(), call.clone());
        Box::pin(async move {
            let (answer, uptime) = match known {
                Some(known) => (node.script::<Value>(&call).await?, known),
                None => node.info_and_script(&call, epoch).await?,
            };
            if link.load(Ordering::SeqCst) == uptime.epoch {
                return Ok((answer, uptime));
            }
            Ok((answer, node.uptime().await))
        })
    }

    /// `INFO server` and the call in one write; what INFO told is kept for this connection.
    async fn info_and_script(&self, call: &Arc<Call>, epoch: u64) -> Result<(Value, Uptime)> {
        let link = self.connection.epoch();
        let mut both = redis::pipe();
        both.add_command(info())
            .add_command(call.command().clone())
            .ignore_errors();
        let mut connection = self.connection.clone();
        let answers = both
            .query_async::<Vec<redis::RedisResult<Value>>>(&mut connection)
            .await;
        let (info, answer) = match answers {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                match (answers.next(), answers.next()) {
                    (Some(info), Some(answer)) => (Some(info), answer),
                    _ => (None, Ok(Value::Nil)),
                }
            }
            Err(error) => (None, Err(error)),
        };
        let (seconds, lasting) = match info {
            Some(Ok(Value::BulkString(text))) => (parse(&String::from_utf8_lossy(&text)), true),
            Some(Ok(Value::VerbatimString { text, .. })) => (parse(&text), true),
            // Not allowed (an ACL user without +info): counts as old, as it always has.
            Some(Err(error)) if error.kind() != redis::ErrorKind::Io => (None, true),
            // Unknown: counts as just started, and is asked again next time.
            _ => (Some(0), false),
        };
        let uptime = Uptime {
            epoch,
            seconds,
            at: Instant::now(),
            link: link.clone(),
        };
        if lasting && link.load(Ordering::SeqCst) == epoch {
            *self.start.known.lock().expect("start") = Some(uptime.clone());
        }
        let answer = match answer {
            Ok(answer) => answer,
            // The script is not loaded here, or the connection failed: as every script call
            // does (load it, try again once on a new connection).
            Err(_) => self.script::<Value>(call).await?,
        };
        Ok((answer, uptime))
    }

    /// This instance's uptime from `INFO server` (at connect, ahead of the first acquire; and
    /// after a call that went out on a new connection).
    pub(crate) fn uptime(&self) -> BoxFuture<'static, Uptime> {
        let link = self.connection.epoch().clone();
        let node = self.clone();
        Box::pin(async move {
            // Twice at most: the first INFO may itself open the connection.
            let mut uptime = None;
            for _ in 0..2 {
                let epoch = link.load(Ordering::SeqCst);
                let (seconds, lasting) = match node.command::<String>(info()).await {
                    Ok(text) => (parse(&text), true),
                    Err(error) if !error.is_transient() => (None, true),
                    Err(_) => (Some(0), false),
                };
                let learned = Uptime {
                    epoch,
                    seconds,
                    at: Instant::now(),
                    link: link.clone(),
                };
                if link.load(Ordering::SeqCst) == epoch {
                    if lasting {
                        *node.start.known.lock().expect("start") = Some(learned.clone());
                    }
                    return learned;
                }
                uptime = Some(learned);
            }
            uptime.expect("asked")
        })
    }
}

fn info() -> redis::Cmd {
    let mut info = redis::cmd("INFO");
    info.arg("server");
    info
}

/// `uptime_in_seconds` of INFO's text.
fn parse(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
        .and_then(|value| value.trim().parse().ok())
}

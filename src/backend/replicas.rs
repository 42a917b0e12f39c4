//! `WaitReplicas`: an acquire or a renewal that must reach replicas before it counts.
//! Replication is asynchronous, so a failover may promote a replica that never saw a grant
//! (or a renewal); `WAIT n timeout`, sent right after the script in the same pipeline (so it
//! goes to the same primary — the pipeline is routed by the script's key), answers how many
//! replicas acknowledged everything written so far. A grant that too few acknowledged in time
//! is undone by the acquire and not counted; such a renewal counts as failed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::{FromRedisValue, RedisResult, Value};

use super::link::Link;
use super::nodes::{Call, Node};
use crate::error::{Error, Result};
use crate::settings::Settings;

/// How many replicas must acknowledge, and within how many milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    replicas: u32,
    ms: u64,
}

impl Wait {
    /// What `WaitReplicas` asks for; `None` when it asks for no replica.
    pub(super) fn of(settings: &Settings) -> Option<Wait> {
        (settings.wait_replicas > 0).then(|| Wait {
            replicas: settings.wait_replicas,
            // WAIT with 0 blocks for ever: the settings refuse 0, and so does this.
            ms: (settings.wait_timeout.as_millis() as u64).max(1),
        })
    }

    /// Appends the `WAIT` to a pipeline, after the writes it waits for.
    pub(super) fn append(&self, pipeline: &mut redis::Pipeline) {
        pipeline.cmd("WAIT").arg(self.replicas).arg(self.ms);
    }

    /// Fails a write that fewer replicas than asked for acknowledged in time.
    pub(super) fn check(&self, acknowledged: i64, address: &str) -> Result<()> {
        if acknowledged < i64::from(self.replicas) {
            return Err(Error::NotAcknowledged {
                endpoint: address.to_string(),
                acknowledged,
                needed: self.replicas,
                within: Duration::from_millis(self.ms),
            });
        }
        Ok(())
    }
}

impl Call {
    /// Makes this script call wait for the replicas `WaitReplicas` asks for (none: as is).
    pub(crate) fn acknowledged(mut self, settings: &Settings) -> Call {
        self.wait = Wait::of(settings);
        self
    }

    /// Sends the script (`EVALSHA`), followed by `WAIT` when it waits for replicas: then the
    /// answer is the pair (the script's answer, how many replicas acknowledged).
    pub(super) async fn query<T: FromRedisValue>(&self, connection: &mut Link) -> RedisResult<T> {
        self.send(self.command(), connection).await
    }

    /// As [`Call::query`], with `command` (the script by its hash, or its text) for the script.
    pub(super) async fn send<T: FromRedisValue>(
        &self,
        command: &redis::Cmd,
        connection: &mut Link,
    ) -> RedisResult<T> {
        let Some(wait) = self.wait else {
            return command.query_async(connection).await;
        };
        let mut pipeline = redis::pipe();
        pipeline.add_command(command.clone());
        wait.append(&mut pipeline);
        // The script's own error (NOSCRIPT, READONLY) is answered as the script's, not as a
        // pipeline's.
        let answers: Vec<Value> = pipeline.ignore_errors().query_async(connection).await?;
        let mut answers = answers.into_iter();
        let (Some(answer), Some(acknowledged)) = (answers.next(), answers.next()) else {
            return Err((redis::ErrorKind::UnexpectedReturnType, "no answer to WAIT").into());
        };
        for value in [&answer, &acknowledged] {
            if let Value::ServerError(error) = value {
                return Err(error.clone().into());
            }
        }
        Ok(T::from_redis_value(Value::Array(vec![
            answer,
            acknowledged,
        ]))?)
    }
}

impl Node {
    /// Runs `call` here; when it waits for replicas and `wrote` says that its answer is a
    /// write (a grant, a renewal), fails unless enough replicas acknowledged it in time.
    pub(crate) fn script_acknowledged<T: FromRedisValue + Send + 'static>(
        &self,
        call: &Arc<Call>,
        wrote: fn(&T) -> bool,
    ) -> BoxFuture<'static, Result<T>> {
        let Some(wait) = call.wait else {
            return self.script::<T>(call);
        };
        let (answer, address) = (self.script::<(T, i64)>(call), self.address.clone());
        Box::pin(async move {
            let (answer, acknowledged) = answer.await?;
            if wrote(&answer) {
                wait.check(acknowledged, &address)?;
            }
            Ok(answer)
        })
    }
}

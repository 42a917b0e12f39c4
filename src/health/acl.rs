//! The permissions leasectl needs, asked of the server with `ACL DRYRUN` (Redis 7+): every
//! command it sends, every command its scripts call, on the keys and channel a lease uses.

use super::{Check, Status};
use crate::backend::keys::{fence_key, grants_key, queue_key, release_channel};
use crate::backend::nodes::Node;
use crate::backend::scripts;

/// The commands leasectl sends and its scripts call, each with arguments of the shape Redis
/// checks keys and channels in: a lease key, its fencing counter and queue, its channel.
fn probes(prefix: &str) -> Vec<Vec<String>> {
    let lease = format!("{prefix}doctor-probe");
    let fence = fence_key(prefix, &lease);
    let queue = queue_key(prefix, &lease);
    let channel = release_channel(prefix, &lease);
    let grants = grants_key(prefix, &lease);
    let sha = scripts::ACQUIRE.hash.clone();
    let probes: [&[&str]; 25] = [
        // Sent by leasectl.
        &["EVALSHA", &sha, "2", &lease, &fence],
        &["EVAL", "return 1", "1", &lease],
        &["PING"],
        &["INFO", "memory"],
        &["SCAN", "0", "MATCH", &format!("{prefix}*")],
        &["SUBSCRIBE", &channel],
        // Called by the scripts (src/scripts/*.lua).
        &["DEL", &lease],
        &["EXISTS", &lease],
        &["GET", &fence],
        &["SET", &fence, "1"],
        &["HGET", &lease, "leaseId"],
        &["HGETALL", &lease],
        &["HDEL", &grants, "x"],
        &["HSET", &lease, "leaseId", "x"],
        &["PEXPIRE", &lease, "1000"],
        &["PTTL", &lease],
        &["TYPE", &lease],
        &["TIME"],
        &["ZADD", &queue, "1", "x"],
        &["ZCARD", &queue],
        &["ZRANGE", &queue, "0", "-1"],
        &["ZRANGEBYSCORE", &queue, "0", "1"],
        &["ZREM", &queue, "x"],
        &["ZSCORE", &queue, "x"],
        &["PUBLISH", &channel, "x"],
    ];
    probes
        .iter()
        .map(|probe| probe.iter().map(|arg| arg.to_string()).collect())
        .collect()
}

/// Asks `ACL DRYRUN` for each probe as `user`; a refusal names what to grant.
pub(super) async fn check(node: &Node, user: Option<&str>, major: u32, prefix: &str) -> Check {
    let at = Some(node.address.as_str());
    let Some(user) = user else {
        return Check::new(
            "permissions",
            at,
            Status::Warn,
            "not checked: ACL WHOAMI was refused (the test lease below tries them)",
        )
        .fix("allow this user ACL WHOAMI and ACL DRYRUN to have them checked");
    };
    if major < 7 {
        return Check::new(
            "permissions",
            at,
            Status::Pass,
            format!("not checked for user {user}: ACL DRYRUN needs Redis 7 (the test lease below tries them)"),
        );
    }
    // All at once: on one connection they go out together, so a slow instance costs one
    // round trip, not one per probe.
    let probes = probes(prefix);
    let answers = futures_util::future::join_all(probes.iter().map(|probe| {
        let mut command = redis::cmd("ACL");
        command.arg("DRYRUN").arg(user).arg(probe);
        node.command::<redis::Value>(command)
    }))
    .await;
    let mut refused = Vec::new();
    let mut grants: Vec<String> = Vec::new();
    for (probe, answer) in probes.iter().zip(answers) {
        match answer {
            Ok(redis::Value::Okay) => {}
            Ok(redis::Value::SimpleString(s)) if s == "OK" => {}
            Ok(answer) => {
                let reason =
                    redis::from_redis_value::<String>(answer).unwrap_or_else(|_| "refused".into());
                let grant = grant_for(&reason, probe, prefix);
                if !grants.contains(&grant) {
                    grants.push(grant);
                }
                refused.push(format!("{} ({reason})", probe[0]));
            }
            // ACL DRYRUN itself refused: nothing can be checked.
            Err(crate::Error::Permission { .. }) => {
                return Check::new(
                    "permissions",
                    at,
                    Status::Warn,
                    format!("not checked for user {user}: ACL DRYRUN was refused (the test lease below tries them)"),
                )
                .fix("allow this user ACL DRYRUN to have its permissions checked");
            }
            Err(error) => refused.push(format!("{} (cannot check: {})", probe[0], error.short())),
        }
    }
    if refused.is_empty() {
        return Check::new(
            "permissions",
            at,
            Status::Pass,
            format!("user {user} may run every command, key and channel leasectl uses"),
        );
    }
    Check::new(
        "permissions",
        at,
        Status::Fail,
        format!("user {user} may not run: {}", refused.join("; ")),
    )
    .fix(format!("ACL SETUSER {user} {}", grants.join(" ")))
}

/// What `ACL SETUSER` needs to allow what `reason` refused.
fn grant_for(reason: &str, probe: &[String], prefix: &str) -> String {
    if reason.contains(" key") {
        format!("~{prefix}*")
    } else if reason.contains("channel") {
        format!("&{prefix}*")
    } else {
        format!("+{}", probe[0].to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    /// A command a script calls that no probe asks about would go unchecked: every one named
    /// in `src/scripts/*.lua` has a probe.
    #[test]
    fn every_command_the_scripts_call_is_probed() {
        let probed: Vec<String> = super::probes("lease:")
            .into_iter()
            .map(|probe| probe[0].clone())
            .collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts");
        for entry in std::fs::read_dir(dir).expect("scripts folder") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("script");
            for piece in text.split("call(").skip(1) {
                let Some(quoted) = piece.strip_prefix('\'').or(piece.strip_prefix('"')) else {
                    continue;
                };
                let name: String = quoted
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                let name = name.to_uppercase();
                if probed.contains(&name) {
                    continue;
                }
                panic!("a script calls {name}, which src/health/acl.rs does not probe");
            }
        }
    }
}

//! The library's error type: one variant per way a lease operation can fail.
//!
//! A lease held by someone else is *not* an error: `try_acquire` answers
//! [`crate::Acquire::Held`]. Everything here is a failure the caller may want to
//! tell apart (the binary maps each to its own exit code).

use std::time::Duration;

/// Why a held lease stopped being ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The key is gone or now carries another lease id (deleted, force-released, taken over).
    NotOwner,
    /// Renewal could not be confirmed before the lease's validity ran out.
    Expired,
    /// The hold-time cap (`max_hold`) was reached, so renewal stopped on purpose.
    MaxHold,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LostReason::NotOwner => "the key was deleted or taken over by another holder",
            LostReason::Expired => "renewal was not confirmed before the lease's validity ran out",
            LostReason::MaxHold => "the hold-time cap was reached",
        })
    }
}

/// Every failure of a lease operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The lease we held is no longer ours.
    #[error("lease '{name}' lost: {reason}")]
    Lost { name: String, reason: LostReason },
    /// Redis could not be reached or the connection broke.
    #[error("cannot reach Redis at {endpoint}: {detail}")]
    Connection { endpoint: String, detail: String },
    /// Redis refused our credentials.
    #[error("authentication failed at {endpoint}: {detail}")]
    Auth { endpoint: String, detail: String },
    /// Redis refused a command, key or channel to this ACL user (NOPERM).
    #[error("Redis at {endpoint} refused: {detail}")]
    Permission { endpoint: String, detail: String },
    /// Redis did not answer in time.
    #[error("Redis at {endpoint} did not answer within {}", humantime::format_duration(*after))]
    Timeout { endpoint: String, after: Duration },
    /// Redis answered with an error (wrong type on a key, a script error, ...).
    #[error("Redis at {endpoint} answered with an error: {detail}")]
    Redis { endpoint: String, detail: String },
    /// Quorum mode: too few instances answered for a majority to decide. `votes` says what
    /// each instance answered.
    #[error("no quorum: {agreed} of {total} {outcome}, {needed} needed ({})", votes.join(", "))]
    NoQuorum {
        /// How many instances answered as needed.
        agreed: usize,
        needed: usize,
        total: usize,
        /// What the `agreed` ones did: `granted`, `confirmed`, `answered`.
        outcome: &'static str,
        votes: Vec<String>,
    },
    /// The settings, or an argument, are not usable.
    #[error("{0}")]
    Settings(String),
    /// `WaitReplicas`: fewer replicas than it asks acknowledged a grant or renewal within
    /// `WaitTimeout`; the grant was undone (a renewal counts as failed).
    #[error("Redis at {endpoint}: only {acknowledged} of the {needed} replicas WaitReplicas asks for acknowledged the write within {} (not counted)", humantime::format_duration(*within))]
    NotAcknowledged {
        endpoint: String,
        acknowledged: i64,
        needed: u32,
        within: Duration,
    },
}

/// Names a TLS failure from rustls's wording, in terms a user can act on.
fn tls_problem(text: &str) -> Option<String> {
    let detail = if text.contains("UnknownIssuer") {
        "TLS: the server's certificate is signed by an unknown authority (set TlsCaCertificate to its CA)"
    } else if text.contains("NotValidForName") || text.contains("certificate not valid for name") {
        "TLS: the server's certificate is not valid for this host name"
    } else if text.contains("certificate expired") || text.contains("Expired") {
        "TLS: the server's certificate has expired"
    } else if text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("WrongVersion")
    {
        "TLS: the server did not answer with TLS (a plain port? use redis:// or ssl=False)"
    } else if text.contains("invalid peer certificate") {
        "TLS: the server's certificate was refused"
    } else {
        return None;
    };
    Some(detail.to_string())
}

/// Names what an ACL refused, from Redis's wording: a command (`NOPERM this user has no
/// permissions to run the 'evalsha' command`), a key or a channel, also when a script met the
/// refusal (`The user executing the script can't ...`).
fn permission_problem(text: &str) -> Option<String> {
    const ACL: &str = "see the README's ACL line";
    if let Some(rest) = text.split("permissions to run the '").nth(1) {
        let command = rest.split('\'').next().unwrap_or_default();
        return Some(format!(
            "the user may not run {} ({ACL})",
            command.to_ascii_uppercase()
        ));
    }
    let detail = if text.contains("permissions to access one of the keys")
        || text.contains("can't access at least one of the keys")
    {
        "the user may not access a key leasectl uses (every one starts with KeyPrefix)"
    } else if text.contains("permissions to access one of the channels")
        || text.contains("can't publish to the channel")
    {
        "the user may not use a release channel (every one starts with KeyPrefix)"
    } else if text.contains("The user executing the script can't run this command") {
        "the user may not run a command that leasectl's scripts call"
    } else if text.contains("NOPERM") {
        "the user lacks a permission this operation needs"
    } else {
        return None;
    };
    Some(format!("{detail} ({ACL})"))
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies a redis-rs error met while talking to `endpoint`.
    ///
    /// redis-rs does not put passwords into its errors; we still build our own text so that no
    /// connection detail beyond `host:port` can leak.
    pub(crate) fn from_redis(endpoint: &str, err: &redis::RedisError, timeout: Duration) -> Error {
        let endpoint = endpoint.to_string();
        let code = err.code().unwrap_or_default();
        if let Some(detail) = permission_problem(&err.to_string()) {
            return Error::Permission { endpoint, detail };
        }
        if err.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(code, "WRONGPASS" | "NOAUTH")
        {
            let detail = match code {
                "NOAUTH" => "the server requires a password and none was given".to_string(),
                _ => "invalid username-password pair or user is disabled".to_string(),
            };
            return Error::Auth { endpoint, detail };
        }
        if let Some(detail) = tls_problem(&err.to_string()) {
            return Error::Connection { endpoint, detail };
        }
        if err.is_timeout() {
            return Error::Timeout {
                endpoint,
                after: timeout,
            };
        }
        if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
            let detail = if err.is_connection_refusal() {
                "connection refused".to_string()
            } else {
                err.detail()
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string())
            };
            return Error::Connection { endpoint, detail };
        }
        if err.kind() == redis::ErrorKind::Parse {
            let detail = "the answer is not Redis protocol (a TLS port reached without TLS? use rediss:// or ssl=True)";
            return Error::Connection {
                endpoint,
                detail: detail.into(),
            };
        }
        if matches!(
            code,
            "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" | "MOVED" | "ASK"
        ) {
            // A cluster between states (a slot migrating, a failover) that outlasted the
            // cluster client's own retries: a later try may succeed.
            let detail = err.to_string();
            return Error::Connection { endpoint, detail };
        }
        // A plain `ERR` (our scripts' own refusals among them) says only its text.
        let detail = match (code, err.detail()) {
            ("ERR", Some(detail)) => detail.to_string(),
            _ => err.to_string(),
        };
        Error::Redis { endpoint, detail }
    }

    /// A few words for a list of instances' answers: `connection refused`, `timed out`, ...
    pub(crate) fn short(&self) -> String {
        match self {
            Error::Connection { detail, .. } => detail.clone(),
            Error::Auth { .. } => "authentication failed".into(),
            Error::Permission { detail, .. } => detail.clone(),
            Error::Timeout { .. } => "timed out".into(),
            Error::Redis { detail, .. } => detail.clone(),
            Error::NotAcknowledged { acknowledged, .. } => {
                format!("granted, but {acknowledged} replicas acknowledged (too few)")
            }
            other => other.to_string(),
        }
    }

    /// True for failures that a retry may cure (connection, timeout), false for answers.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connection { .. }
                | Error::Timeout { .. }
                | Error::NoQuorum { .. }
                | Error::NotAcknowledged { .. }
        )
    }
}

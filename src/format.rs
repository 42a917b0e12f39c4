//! How a lease is stored (setting `LeaseFormat`): seed 002's hash, or the seed 000 package's
//! JSON string, so that leasectl and .NET services on DistributedLeasing.Azure.Redis exclude
//! each other on the same keys. The JSON value is written here; which script reads and
//! writes each format is the backend's (`backend/format.rs`).

use std::time::SystemTime;

/// The value a lease key holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaseFormat {
    /// A hash: `leaseId`, `acquiredAt`, `fencingToken`, `meta_*` (seed 002; the default).
    #[default]
    Hash,
    /// A JSON string `{"leaseId","ownerId","acquiredAt","metadata","fencingToken"}` set with
    /// `SET NX PX` (the DistributedLeasing.Azure.Redis package's value, and our token).
    Json,
}

impl LeaseFormat {
    /// Reads the setting's or flag's value, in any case (`Hash`, `json`, ...).
    ///
    /// # Errors
    /// What was expected, for the caller to put behind the field name.
    pub fn parse(text: &str) -> Result<LeaseFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hash" => Ok(LeaseFormat::Hash),
            "json" => Ok(LeaseFormat::Json),
            _ => Err(format!("expected Hash or Json, got '{text}'")),
        }
    }

    /// `hash` or `json`, as `inspect --json` names a lease's format.
    pub fn name(self) -> &'static str {
        match self {
            LeaseFormat::Hash => "hash",
            LeaseFormat::Json => "json",
        }
    }

    /// `acquiredAt` for an acquisition now: RFC 3339 UTC with milliseconds in the hash (SPEC
    /// 2), whole seconds in the JSON value (`2025-12-25T12:00:00Z`, as the package's README
    /// shows it).
    pub(crate) fn acquired_at(self, now: SystemTime) -> String {
        match self {
            LeaseFormat::Hash => humantime::format_rfc3339_millis(now).to_string(),
            LeaseFormat::Json => humantime::format_rfc3339_seconds(now).to_string(),
        }
    }
}

/// The JSON value of a lease up to its fencing token, which the acquire script appends (the
/// token is settled on the server): `{"leaseId":…,"ownerId":…,"acquiredAt":…,"metadata":{…},
/// "fencingToken":`. `ownerId` is who holds it: the `instanceId` metadata (`run --instance`;
/// `exec` sets `HOST:PID`), else the `hostname` metadata, else this machine's host name.
pub(crate) fn json_value_head(
    id: &str,
    acquired_at: &str,
    metadata: &[(String, String)],
) -> String {
    let find = |key: &str| {
        metadata
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let owner = find("instanceId")
        .or_else(|| find("hostname"))
        .unwrap_or_else(|| {
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let metadata: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    let value = serde_json::json!({
        "leaseId": id,
        "ownerId": owner,
        "acquiredAt": acquired_at,
        "metadata": metadata,
    });
    let mut head = value.to_string();
    head.pop(); // the closing brace: the token comes last
    head.push_str(",\"fencingToken\":");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_in_any_case() {
        assert_eq!(LeaseFormat::parse("Json"), Ok(LeaseFormat::Json));
        assert_eq!(LeaseFormat::parse("HASH"), Ok(LeaseFormat::Hash));
        assert!(LeaseFormat::parse("xml")
            .unwrap_err()
            .contains("Hash or Json"));
    }

    #[test]
    fn the_json_value_is_the_packages_with_our_token_last() {
        let meta = [("instanceId", "us-east-1"), ("region", "us \"east\"")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let head = json_value_head("L1", "2025-12-25T12:00:00Z", &meta);
        let value: serde_json::Value = serde_json::from_str(&format!("{head}42}}")).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"leaseId": "L1", "ownerId": "us-east-1",
                "acquiredAt": "2025-12-25T12:00:00Z",
                "metadata": {"instanceId": "us-east-1", "region": "us \"east\""},
                "fencingToken": 42})
        );
        assert!(head.starts_with(r#"{"leaseId":"L1","ownerId":"#), "{head}");
        let at = LeaseFormat::Json.acquired_at(SystemTime::UNIX_EPOCH);
        assert_eq!(at, "1970-01-01T00:00:00Z");
    }
}

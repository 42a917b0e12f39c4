//! Who holds a lease, read from whatever the key holds: our hash (and the .NET RedisLeaseSample's), the .NET
//! package's JSON string, or a plain token written by another lock library.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

/// How the holder's key is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// A hash with `leaseId`, `acquiredAt`, `meta_*` (leasectl and the .NET RedisLeaseSample).
    Hash,
    /// A JSON string `{"leaseId","ownerId","acquiredAt","metadata"}` (the DistributedLeasing package).
    Json,
    /// A plain string: the token of redis-py, Redlock and other locks.
    Token,
    /// Any other Redis type (list, set, ...): someone else's key, treated as held.
    Other(String),
    /// No key: the lease is free but promised to the first of this many queued waiters.
    Queued { waiters: u64 },
}

/// The current holder of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub lease_id: Option<String>,
    /// The owner named by the JSON format (`ownerId`).
    pub owner_id: Option<String>,
    pub acquired_at: Option<String>,
    pub fencing_token: Option<u64>,
    /// `meta_*` fields without their prefix (or the JSON format's `metadata`).
    pub metadata: BTreeMap<String, String>,
    /// Time left; `None` when the key never expires.
    pub ttl: Option<Duration>,
    pub format: KeyFormat,
    /// Every field as stored, in order, for display.
    pub fields: Vec<(String, String)>,
    /// The string as stored (JSON and token formats): what a forced release compares.
    pub(crate) value: Option<String>,
}

/// One lease as `inspect` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's name (the key without the prefix).
    pub name: String,
    /// The Redis key.
    pub key: String,
    /// `None` when the lease is free (in quorum mode: when no majority agrees on a holder).
    pub holder: Option<Holder>,
    /// Quorum mode: what each instance says, in the settings' order. Empty in single mode.
    pub instances: Vec<InstanceView>,
}

/// Quorum mode: one instance's view of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    /// `host:port`.
    pub address: String,
    /// Who holds the lease there (`None`: free there, or no answer).
    pub holder: Option<Holder>,
    /// The fencing counter there (`None`: no answer).
    pub counter: Option<u64>,
    /// Why it did not answer.
    pub error: Option<String>,
}

impl LeaseInfo {
    /// What a forced release deletes: the holder a majority agrees on; else (quorum mode)
    /// every different holder an instance shows. A lease left on a minority — its other
    /// instances down, restarted or not yet reached — is not free: it comes back to a
    /// majority when a stopped instance returns with its memory. Queued waiters are no holder.
    pub fn holders(&self) -> Vec<&Holder> {
        let shown: Vec<&Holder> = match &self.holder {
            Some(holder) if !holder.is_queued() => vec![holder],
            Some(_) => Vec::new(),
            None => self.held_here().collect(),
        };
        let mut holders: Vec<&Holder> = Vec::new();
        for holder in shown {
            if !holders.iter().any(|seen| seen.same_lease(holder)) {
                holders.push(holder);
            }
        }
        holders
    }

    /// Quorum mode: on how many instances someone holds the lease.
    pub fn held_on(&self) -> usize {
        self.held_here().count()
    }

    /// Each instance's holder, where one holds it (queued waiters hold nothing).
    fn held_here(&self) -> impl Iterator<Item = &Holder> {
        let holders = self.instances.iter().filter_map(|v| v.holder.as_ref());
        holders.filter(|holder| !holder.is_queued())
    }
}

impl Holder {
    /// The stand-in holder of a free lease that queued waiters are next in line for.
    pub(crate) fn queued(waiters: u64) -> Holder {
        Holder {
            lease_id: None,
            owner_id: None,
            acquired_at: None,
            fencing_token: None,
            metadata: BTreeMap::new(),
            ttl: None,
            format: KeyFormat::Queued { waiters },
            fields: Vec::new(),
            value: None,
        }
    }

    /// The stand-in for queued waiters of a free lease (see [`Holder::queued`]).
    fn is_queued(&self) -> bool {
        matches!(self.format, KeyFormat::Queued { .. })
    }

    /// Whether `other` is the same lease (as instances show it, their TTLs and raised
    /// tokens aside): our hash by its lease id, any other key by what it stores.
    fn same_lease(&self, other: &Holder) -> bool {
        self.format == other.format
            && match (&self.format, &self.lease_id, &other.lease_id) {
                (KeyFormat::Hash, Some(a), Some(b)) => a == b,
                _ => self.value == other.value && self.fields == other.fields,
            }
    }

    /// `us-east-1 (us-east)`: the instance and region when known, else the owner or lease id.
    pub fn display_name(&self) -> String {
        if let KeyFormat::Queued { waiters } = self.format {
            return format!("the first of {waiters} queued waiter(s)");
        }
        let who = self
            .metadata
            .get("instanceId")
            .or(self.owner_id.as_ref())
            .or(self.lease_id.as_ref())
            .map(String::as_str)
            .unwrap_or("unknown holder");
        // Values written by other programs are data: never terminal input.
        match self.metadata.get("region") {
            Some(region) => format!(
                "{} ({})",
                escape_for_terminal(who),
                escape_for_terminal(region)
            ),
            None => escape_for_terminal(who).into_owned(),
        }
    }

    /// Builds a holder from a script's `{type, pttl, fields}` answer; `None` when the key is free.
    pub(crate) fn from_reply(reply: &Value) -> Option<Holder> {
        let Value::Array(parts) = reply else {
            return None;
        };
        let kind = text(parts.first()?);
        let pttl = match parts.get(1)? {
            Value::Int(ms) => *ms,
            _ => -2,
        };
        let values: Vec<String> = match parts.get(2)? {
            Value::Array(items) => items.iter().map(text).collect(),
            _ => Vec::new(),
        };
        let ttl = match pttl {
            -2 => return None,
            ms if ms < 0 => None,
            ms => Some(Duration::from_millis(ms as u64)),
        };
        let mut holder = Holder {
            lease_id: None,
            owner_id: None,
            acquired_at: None,
            fencing_token: None,
            metadata: BTreeMap::new(),
            ttl,
            format: KeyFormat::Hash,
            fields: Vec::new(),
            value: None,
        };
        match kind.as_str() {
            "none" => return None,
            "hash" => {
                let fields = values.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone()));
                holder.fields = fields.collect();
                holder.fill_from_hash();
            }
            "string" => holder.fill_from_string(values.into_iter().next().unwrap_or_default()),
            other => holder.format = KeyFormat::Other(other.to_string()),
        }
        Some(holder)
    }

    fn fill_from_hash(&mut self) {
        for (field, value) in &self.fields {
            match field.as_str() {
                "leaseId" => self.lease_id = Some(value.clone()),
                "acquiredAt" => self.acquired_at = Some(value.clone()),
                "fencingToken" => self.fencing_token = value.parse().ok(),
                "ownerId" => self.owner_id = Some(value.clone()),
                _ => {
                    if let Some(key) = field.strip_prefix("meta_") {
                        self.metadata.insert(key.to_string(), value.clone());
                    }
                }
            }
        }
    }

    fn fill_from_string(&mut self, value: String) {
        self.value = Some(value.clone());
        let json = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&value).ok();
        let Some(object) = json.filter(|o| o.contains_key("leaseId") || o.contains_key("ownerId"))
        else {
            self.format = KeyFormat::Token;
            self.lease_id = Some(value.clone());
            self.fields = vec![("value".into(), value)];
            return;
        };
        self.format = KeyFormat::Json;
        let as_text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for (field, v) in &object {
            match field.as_str() {
                "leaseId" => self.lease_id = Some(as_text(v)),
                "ownerId" => self.owner_id = Some(as_text(v)),
                "acquiredAt" => self.acquired_at = Some(as_text(v)),
                "fencingToken" => self.fencing_token = as_text(v).parse().ok(),
                "metadata" => {
                    if let serde_json::Value::Object(meta) = v {
                        self.metadata
                            .extend(meta.iter().map(|(k, v)| (k.clone(), as_text(v))));
                    }
                }
                _ => {}
            }
            self.fields.push((field.clone(), as_text(v)));
        }
    }
}

/// `text` safe to print on a terminal: control characters (newlines, ESC, DEL, C1) and the
/// bidirectional overrides are shown escaped (`\n`, `\x1b`, `\u{202e}`), so that a value read
/// from Redis can neither forge a line of output nor move the cursor or colour the screen.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x100 => {
                escaped.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if unsafe_char(c) => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn reply(kind: &str, pttl: i64, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(kind),
            Value::Int(pttl),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn seed_002_hash() {
        let h = Holder::from_reply(&reply(
            "hash",
            12_000,
            &["leaseId", "abc", "acquiredAt", "2025-12-25T21:00:00.000Z"]
                .into_iter()
                .chain(["meta_instanceId", "us-east-1", "meta_region", "us-east"])
                .collect::<Vec<_>>(),
        ))
        .unwrap();
        assert_eq!(h.display_name(), "us-east-1 (us-east)");
        assert_eq!(
            (h.fencing_token, h.ttl),
            (None, Some(Duration::from_secs(12)))
        );
    }

    #[test]
    fn json_and_token_strings() {
        let json = r#"{"leaseId":"L1","ownerId":"instance-01","acquiredAt":"2025-12-25T12:00:00Z","metadata":{"version":"1.0.0"}}"#;
        let h = Holder::from_reply(&reply("string", -1, &[json])).unwrap();
        assert_eq!(
            (h.format.clone(), h.display_name(), h.ttl),
            (KeyFormat::Json, "instance-01".into(), None)
        );
        assert_eq!(h.metadata.get("version").map(String::as_str), Some("1.0.0"));
        let t = Holder::from_reply(&reply("string", 500, &["9f8e-token"])).unwrap();
        assert_eq!(
            (t.format, t.lease_id.as_deref()),
            (KeyFormat::Token, Some("9f8e-token"))
        );
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(escape_for_terminal("us-east-1 (é)"), "us-east-1 (é)");
        assert_eq!(
            escape_for_terminal("a\nheld by x\x1b[31m\r\t\u{7f}\u{9b}\u{202e}"),
            "a\\nheld by x\\x1b[31m\\r\\t\\x7f\\x9b\\u{202e}"
        );
    }

    #[test]
    fn free_and_foreign_types() {
        assert_eq!(Holder::from_reply(&reply("none", -2, &[])), None);
        let list = Holder::from_reply(&reply("list", -1, &[])).unwrap();
        assert_eq!(list.format, KeyFormat::Other("list".into()));
    }
}

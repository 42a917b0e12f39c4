//! `--json` for `run` and `exec`: one JSON object per line for each event, each with `event`
//! and `time` (RFC 3339, milliseconds) first, so that scripts and monitors read events, not
//! text. The events: `attempting`, `waiting`, `held`, `acquired`, `renewed`, `lost`,
//! `interrupted`, `released`, `completed`.

use std::time::SystemTime;

use leasectl::{Holder, LeaseInfo, LeaseSet};
use serde_json::{json, Map, Value};

use crate::output::{write_out, LeaseJson, StdoutFailed};

/// How often a holder looks at its lease's renewal count, for `renewed` events.
pub const RENEWAL_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes events to stdout when `--json` was given; does nothing otherwise.
pub struct Events {
    on: bool,
}

impl Events {
    pub fn new(on: bool) -> Events {
        Events { on }
    }

    /// True with `--json`: the human lines are left out.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Writes `{"event": event, "time": now, ...fields}` as one line (fields: a JSON object).
    pub fn emit(&self, event: &str, fields: Value) -> Result<(), StdoutFailed> {
        if !self.on {
            return Ok(());
        }
        let mut line = Map::new();
        line.insert("event".into(), event.into());
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        line.insert("time".into(), time.into());
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        write_out(&format!("{}\n", Value::Object(line)))
    }
}

/// The fields of `acquired`: the lease (the first of a set) and, for every lease of the set,
/// its name, lease id and fencing token.
pub fn acquired(set: &LeaseSet) -> Value {
    let first = &set.leases()[0];
    let leases: Vec<Value> = set
        .leases()
        .iter()
        .map(|l| json!({"lease": l.name(), "fencingToken": l.fencing_token()}))
        .collect();
    json!({
        "lease": first.name(),
        "leaseId": set.id(),
        "fencingToken": first.fencing_token(),
        "ttlMs": first.ttl().as_millis() as u64,
        "acquiredAt": first.acquired_at(),
        "leases": leases,
    })
}

/// The fields of `held` and `waiting`: the lease and its holder, in `inspect --json`'s shape.
pub fn holder(name: &str, key: String, holder: &Holder) -> Value {
    let info = LeaseInfo {
        name: name.to_string(),
        key,
        holder: Some(holder.clone()),
        instances: Vec::new(),
    };
    serde_json::to_value(LeaseJson::from(&info)).unwrap_or(Value::Null)
}

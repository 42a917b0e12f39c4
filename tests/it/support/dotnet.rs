//! A stand-in of the .NET DistributedLeasing.Azure.Redis package (seed 000), written from what
//! its README documents: the lease is the JSON string `{"leaseId","ownerId","acquiredAt",
//! "metadata"}` at `{KeyPrefix}{name}`, acquired with `SET key value NX PX ttl`, renewed and
//! released by its two Lua scripts that compare the stored value with its own. It knows
//! nothing of leasectl: no fencing counter, no waiters' queue, no release notification.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

/// The package's renewal script, as its README shows it.
pub const RENEW_SCRIPT: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
else
    return 0
end"#;

/// The package's release script, as its README shows it.
pub const RELEASE_SCRIPT: &str = r#"if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end"#;

/// One .NET service's lease manager: its Redis, owner id and metadata.
#[derive(Clone)]
pub struct DotnetService {
    pub url: String,
    pub owner_id: String,
    pub metadata: BTreeMap<String, String>,
}

/// A lease the service holds: the value it set, which its scripts compare.
pub struct DotnetLease {
    pub url: String,
    pub key: String,
    pub lease_id: String,
    pub value: String,
}

/// The package's lease record as it reads a value back (System.Text.Json: fields it does not
/// know, such as leasectl's `fencingToken`, are ignored; the four it knows must be there).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DotnetRecord {
    pub lease_id: String,
    pub owner_id: String,
    pub acquired_at: String,
    pub metadata: BTreeMap<String, String>,
}

impl DotnetService {
    pub fn new(url: String, owner_id: &str, metadata: &[(&str, &str)]) -> DotnetService {
        DotnetService {
            url,
            owner_id: owner_id.to_string(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `TryAcquireAsync`: one `SET key value NX PX ttl`.
    pub fn try_acquire(&self, name: &str, ttl: Duration) -> Option<DotnetLease> {
        let key = format!("lease:{name}");
        let lease_id = uuid::Uuid::new_v4().to_string();
        let value = self.value(&lease_id);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query(&mut connect(&self.url))
            .expect("SET NX PX");
        set.map(|_| DotnetLease {
            url: self.url.clone(),
            key,
            lease_id,
            value,
        })
    }

    /// A lease this service held on `name` once — its value — as after it expired and
    /// someone else took the key: what its renewal and release then compare.
    pub fn stale_lease(&self, name: &str) -> DotnetLease {
        let lease_id = uuid::Uuid::new_v4().to_string();
        DotnetLease {
            url: self.url.clone(),
            key: format!("lease:{name}"),
            value: self.value(&lease_id),
            lease_id,
        }
    }

    /// The JSON value the package sets for `lease_id`, acquired now.
    fn value(&self, lease_id: &str) -> String {
        let acquired_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        serde_json::json!({
            "leaseId": lease_id,
            "ownerId": self.owner_id,
            "acquiredAt": acquired_at,
            "metadata": self.metadata,
        })
        .to_string()
    }

    /// `AcquireAsync` with a wait: tries again every 20 ms until `wait` has passed (the
    /// package knows no release notification).
    pub fn acquire(&self, name: &str, ttl: Duration, wait: Duration) -> Option<DotnetLease> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lease) = self.try_acquire(name, ttl) {
                return Some(lease);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl DotnetLease {
    /// The renewal script with this lease's value: true when the stored value still matches.
    pub fn renew(&self, ttl: Duration) -> bool {
        compare_and(&self.url, RENEW_SCRIPT, &self.key, &self.value, ttl) == 1
    }

    /// The release script with this lease's value: true when it deleted the key.
    pub fn release(&self) -> bool {
        compare_and(
            &self.url,
            RELEASE_SCRIPT,
            &self.key,
            &self.value,
            Duration::ZERO,
        ) == 1
    }

    /// Holds the lease in a thread that renews it every `ttl / 3` (the package's AutoRenew)
    /// until [`Renewing::stop`], which releases it.
    pub fn keep_renewing(self, ttl: Duration) -> Renewing {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(ttl / 3);
                if !self.renew(ttl) {
                    return (self, false);
                }
            }
            (self, true)
        });
        Renewing {
            stop,
            thread: Some(thread),
        }
    }
}

/// A .NET service holding its lease in a renewing thread.
pub struct Renewing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(DotnetLease, bool)>>,
}

impl Renewing {
    /// Stops renewing and releases; answers whether every renewal matched and the release
    /// deleted the key.
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let (lease, renewed) = self.thread.take().unwrap().join().expect("renewing thread");
        renewed && lease.release()
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs one of the package's compare scripts on `key` with `value` (and a TTL in ms).
pub fn compare_and(url: &str, script: &str, key: &str, value: &str, ttl: Duration) -> i64 {
    redis::Script::new(script)
        .key(key)
        .arg(value)
        .arg(ttl.as_millis() as u64)
        .invoke(&mut connect(url))
        .expect("the package's script")
}

/// The value at `key` read as the package reads a lease record; `None` when there is none,
/// panics when it is not one (a field missing or of the wrong type, an `acquiredAt` that is
/// not an RFC 3339 time).
pub fn read_record(url: &str, key: &str) -> Option<DotnetRecord> {
    let value: Option<String> = redis::cmd("GET")
        .arg(key)
        .query(&mut connect(url))
        .expect("GET");
    let value = value?;
    let record: DotnetRecord = serde_json::from_str(&value)
        .unwrap_or_else(|e| panic!("not a lease record the package reads ({e}): {value}"));
    humantime::parse_rfc3339(&record.acquired_at)
        .unwrap_or_else(|e| panic!("acquiredAt is not RFC 3339 ({e}): {value}"));
    Some(record)
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_connection()
        .expect("connect to test redis")
}

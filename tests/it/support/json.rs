//! `leasectl`'s JSON output as a test reads it: any run's stdout, and one lease of
//! `inspect --json` exactly as SPEC 4 has it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::process::Output;

/// The JSON on stdout of a run that must have exited 0 (`inspect --json`).
pub fn parse_json<T: serde::de::DeserializeOwned>(output: &Output) -> T {
    assert_eq!(output.code(), 0, "inspect --json\n{output}");
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("not the expected JSON ({e})\n{output}"))
}

/// One lease in `inspect --json`, exactly as SPEC 4 has it: any other field fails to parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaseJson {
    pub lease: String,
    pub key: String,
    pub held: bool,
    pub format: Option<String>,
    pub lease_id: Option<String>,
    pub owner_id: Option<String>,
    pub acquired_at: Option<String>,
    pub ttl_ms: Option<u64>,
    pub fencing_token: Option<u64>,
    pub metadata: Option<Metadata>,
}

/// The holder's metadata: seed 002's four fields, and any other as strings.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub hostname: Option<String>,
    pub start_time: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, String>,
}

//! The settings: `appsettings.json`, `appsettings.Local.json`, environment
//! variables `RedisLeasing__<Field>` and command-line flags, each layer overriding the one
//! before. The `config` crate reads each layer; we then take every field from the highest
//! layer that sets it, so that a bad value can name the file (or variable) it came from.

use std::path::PathBuf;
use std::time::Duration;

use config::Value;

mod layers;
mod values;

use layers::{command_line_layer, find_file, present, read_environment, read_file, Layer};
pub use layers::{settings_json, user_config_dir};
use values::{
    any_duration, boolean, lease_format, milliseconds, non_negative, pick_metadata, port,
    positive_duration, string, string_list,
};

use crate::endpoint::{Defaults, Endpoint};
use crate::entra::EntraId;
use crate::error::{Error, Result};
use crate::format::LeaseFormat;

/// The settings section's name in the JSON files and the environment variables' prefix.
pub const SECTION: &str = "RedisLeasing";
/// The template file, committed with defaults.
pub const TEMPLATE_FILE: &str = "appsettings.json";
/// The file with credentials, written by `configure`, never committed.
pub const LOCAL_FILE: &str = "appsettings.Local.json";
/// The endpoint used when nothing is configured anywhere.
pub const LOCAL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// Resolved settings: every field has its value, every endpoint is parsed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One endpoint (single mode) or several (quorum mode).
    pub endpoints: Vec<Endpoint>,
    pub key_prefix: String,
    pub database: i64,
    pub lease_duration: Duration,
    pub auto_renew: bool,
    pub auto_renew_interval: Duration,
    pub connect_timeout: Duration,
    pub sync_timeout: Duration,
    /// A PEM bundle trusted besides the system's roots for TLS endpoints.
    pub tls_ca_certificate: Option<PathBuf>,
    /// Microsoft Entra ID instead of a password (with `Endpoint`).
    pub entra_id: Option<EntraId>,
    /// Where the values came from, for messages.
    pub origin: Origin,
    /// How a lease is stored: seed 002's hash, or the .NET package's JSON string.
    pub lease_format: LeaseFormat,
    /// How many replicas must acknowledge an acquire or a renewal (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// How long an acquire or a renewal waits for those replicas (`WAIT`'s timeout).
    pub wait_timeout: Duration,
    /// `Cluster`: Redis Cluster mode forced on or off; `None`: asked of the server.
    pub cluster: Option<bool>,
    /// How many times a transient error (timeout, dropped connection, `LOADING`,
    /// `TRYAGAIN`, `BUSY`, `MASTERDOWN`) is retried within one call to one instance.
    pub max_retry_attempts: u32,
    /// The pause before the first retry; it doubles for each next one.
    pub retry_delay: Duration,
    /// How long `run`, `exec` and `acquire` wait for a held lease when no `--wait` is given.
    pub default_wait_time: Duration,
    /// Extra `meta_*` fields for every lease (`Metadata: {"team": "payments"}`).
    pub metadata: Vec<(String, String)>,
    /// `false`: when an instance cannot be reached at start, start anyway and keep
    /// retrying the connection in the background (`abortConnect=False` in a connection string
    /// sets it too).
    pub abort_on_connect_fail: bool,
}

/// Which layers gave the settings.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// True when no layer named an endpoint and the local default is used.
    pub defaulted_endpoint: bool,
}

/// What the command line adds on top of the files and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config PATH`: read this file instead of looking up the two standard ones.
    pub config_file: Option<PathBuf>,
    /// `--endpoint URL` (repeatable).
    pub endpoints: Vec<String>,
    /// `--key-prefix P`.
    pub key_prefix: Option<String>,
    /// `--format hash|json`.
    pub lease_format: Option<String>,
}

impl Default for Settings {
    /// The template's values (`appsettings.json`) with the local default endpoint.
    fn default() -> Self {
        Settings {
            endpoints: vec![
                Endpoint::parse(LOCAL_DEFAULT, DEFAULT_ENDPOINT).expect("valid default")
            ],
            key_prefix: "lease:".into(),
            database: 0,
            lease_duration: Duration::from_secs(30),
            auto_renew: true,
            auto_renew_interval: Duration::from_secs(20),
            connect_timeout: Duration::from_millis(5000),
            sync_timeout: Duration::from_millis(5000),
            tls_ca_certificate: None,
            entra_id: None,
            origin: Origin {
                files: Vec::new(),
                defaulted_endpoint: true,
            },
            lease_format: LeaseFormat::Hash,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(100),
            cluster: None,
            max_retry_attempts: 3,
            retry_delay: Duration::from_millis(100),
            default_wait_time: Duration::ZERO,
            metadata: Vec::new(),
            abort_on_connect_fail: true,
        }
    }
}

/// `UseSsl` and `Port` when no setting names them.
pub const DEFAULT_ENDPOINT: Defaults = Defaults {
    use_ssl: true,
    port: 6380,
};

/// A `RedisLeasing` section as a file holds it: what `configure` writes, with the names the
/// reader knows (its field list, [`FIELDS`], includes every one; a test keeps them in step).
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Section {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entra_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<i64>,
}

impl Section {
    /// The file's whole JSON: `{"RedisLeasing": {...}}`.
    pub fn to_file_json(&self) -> serde_json::Value {
        serde_json::json!({ SECTION: self })
    }
}

/// The fields of the section, as spelled in the files (matched without regard to case).
const FIELDS: &[&str] = &[
    "ConnectionString",
    "Endpoint",
    "Endpoints",
    "KeyPrefix",
    "Database",
    "UseSsl",
    "Port",
    "TlsCaCertificate",
    "EntraId",
    "ClientId",
    "DefaultLeaseDuration",
    "AutoRenew",
    "AutoRenewInterval",
    "ConnectTimeout",
    "SyncTimeout",
    "LeaseFormat",
    "WaitReplicas",
    "WaitTimeout",
    "Cluster",
    "MaxRetryAttempts",
    "RetryDelay",
    "DefaultWaitTime",
    "Metadata",
    "AbortOnConnectFail",
];

impl Settings {
    /// Reads every layer: files (from `--config`, or looked up in the current directory and
    /// then `~/.config/leasectl/`), the environment, then `overrides`.
    ///
    /// # Errors
    /// [`Error::Settings`] naming the file or variable, the field and what was expected.
    pub fn load(overrides: &Overrides) -> Result<Settings> {
        let files = match &overrides.config_file {
            Some(path) => match present(path)? {
                Some(path) => vec![path],
                None => {
                    return Err(Error::Settings(format!(
                        "{}: no such settings file",
                        path.display()
                    )))
                }
            },
            None => {
                let mut files = Vec::new();
                for name in [TEMPLATE_FILE, LOCAL_FILE] {
                    files.extend(find_file(name)?);
                }
                files
            }
        };
        let mut layers = Vec::new();
        for file in &files {
            layers.push(read_file(file)?);
        }
        layers.push(read_environment()?);
        layers.push(command_line_layer(overrides));
        let mut settings = Self::from_layers(&layers)?;
        settings.origin.files = files;
        Ok(settings)
    }

    fn from_layers(layers: &[Layer]) -> Result<Settings> {
        for layer in layers {
            for key in layer.values.keys() {
                if !FIELDS.iter().any(|f| f.eq_ignore_ascii_case(key)) {
                    tracing::warn!("{}: unknown setting {SECTION}.{key} ignored", layer.name);
                }
            }
        }
        let mut s = Settings::default();
        if let Some(prefix) = pick(layers, "KeyPrefix", string)? {
            s.key_prefix = prefix;
        }
        if let Some(db) = pick(layers, "Database", non_negative)? {
            s.database = db;
        }
        if let Some(d) = pick(layers, "DefaultLeaseDuration", positive_duration)? {
            s.lease_duration = d;
        }
        if let Some(renew) = pick(layers, "AutoRenew", boolean)? {
            s.auto_renew = renew;
        }
        if let Some(d) = pick(layers, "AutoRenewInterval", positive_duration)? {
            s.auto_renew_interval = d;
        }
        if let Some(ms) = pick(layers, "ConnectTimeout", milliseconds)? {
            s.connect_timeout = ms;
        }
        if let Some(ms) = pick(layers, "SyncTimeout", milliseconds)? {
            s.sync_timeout = ms;
        }
        s.tls_ca_certificate = pick(layers, "TlsCaCertificate", string)?.map(PathBuf::from);
        if let Some(n) = pick(layers, "WaitReplicas", non_negative)? {
            s.wait_replicas = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(ms) = pick(layers, "WaitTimeout", milliseconds)? {
            s.wait_timeout = ms;
        }
        let defaults = Defaults {
            use_ssl: pick(layers, "UseSsl", boolean)?.unwrap_or(DEFAULT_ENDPOINT.use_ssl),
            port: pick(layers, "Port", port)?.unwrap_or(DEFAULT_ENDPOINT.port),
        };
        s.cluster = pick(layers, "Cluster", boolean)?;
        if let Some(endpoints) = pick_endpoints(layers, defaults)? {
            s.endpoints = endpoints;
            s.origin.defaulted_endpoint = false;
            s.entra_id = pick_entra_id(layers)?;
        }
        if let Some(format) = pick(layers, "LeaseFormat", lease_format)? {
            s.lease_format = format;
        }
        if let Some(n) = pick(layers, "MaxRetryAttempts", non_negative)? {
            s.max_retry_attempts = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(ms) = pick(layers, "RetryDelay", milliseconds)? {
            s.retry_delay = ms;
        }
        if let Some(d) = pick(layers, "DefaultWaitTime", any_duration)? {
            s.default_wait_time = d;
        }
        s.metadata = pick_metadata(layers)?;
        // `abortConnect=False` in a connection string, unless the setting says otherwise.
        s.abort_on_connect_fail = match pick(layers, "AbortOnConnectFail", boolean)? {
            Some(abort) => abort,
            None => !s.endpoints.iter().any(|e| e.abort_connect() == Some(false)),
        };
        Ok(s)
    }

    /// The defaults with these endpoints (URLs or connection strings): one for single mode.
    ///
    /// # Errors
    /// [`Error::Settings`] when one does not parse.
    pub fn for_endpoints(endpoints: &[impl AsRef<str>]) -> Result<Settings> {
        let endpoints = endpoints
            .iter()
            .map(|text| Endpoint::parse(text.as_ref(), DEFAULT_ENDPOINT).map_err(Error::Settings))
            .collect::<Result<Vec<_>>>()?;
        let origin = Origin {
            files: Vec::new(),
            defaulted_endpoint: false,
        };
        Ok(Settings {
            endpoints,
            origin,
            ..Settings::default()
        })
    }

    /// The name of one lease's key: the prefix and the name.
    pub fn key_for(&self, name: &str) -> String {
        [self.key_prefix.as_str(), name].concat()
    }
}

/// The endpoints from the highest layer that names any: `Endpoints` (quorum) before
/// `ConnectionString` before `Endpoint` within one layer.
fn pick_endpoints(layers: &[Layer], defaults: Defaults) -> Result<Option<Vec<Endpoint>>> {
    for layer in layers.iter().rev() {
        let parse = |field: &str, text: &str| {
            Endpoint::parse(text, defaults).map_err(|e| layer.error(field, e))
        };
        if let Some(value) = layer.get("Endpoints") {
            let list = string_list(value).map_err(|e| layer.error("Endpoints", e))?;
            if !list.is_empty() {
                return list
                    .iter()
                    .map(|text| parse("Endpoints", text))
                    .collect::<Result<_>>()
                    .map(Some);
            }
        }
        if let Some(value) = layer.get("ConnectionString") {
            let text = string(value).map_err(|e| layer.error("ConnectionString", e))?;
            if !text.trim().is_empty() {
                return Ok(Some(vec![parse("ConnectionString", &text)?]));
            }
        }
        if let Some(value) = layer.get("Endpoint") {
            let text = string(value).map_err(|e| layer.error("Endpoint", e))?;
            if !text.trim().is_empty() {
                let endpoint = parse("Endpoint", &text)?;
                if endpoint.password().is_some() {
                    return Err(layer.error("Endpoint", "takes host:port only: Entra ID needs no password (use ConnectionString for one)"));
                }
                return Ok(Some(vec![endpoint]));
            }
        }
    }
    Ok(None)
}

/// The Entra ID credential, when the endpoint came from `Endpoint` (highest layer naming one):
/// `EntraId` (default `ManagedIdentity`) and `ClientId`; with `Endpoints`, only when `EntraId`
/// is set.
fn pick_entra_id(layers: &[Layer]) -> Result<Option<EntraId>> {
    let named_by = |layer: &Layer, field| {
        layer.get(field).is_some_and(|v| match field {
            "Endpoints" => string_list(v).is_ok_and(|list| !list.is_empty()),
            _ => string(v).is_ok_and(|t| !t.trim().is_empty()),
        })
    };
    let Some(at) = layers.iter().rposition(|l| {
        ["Endpoints", "ConnectionString", "Endpoint"]
            .iter()
            .any(|f| named_by(l, *f))
    }) else {
        return Ok(None);
    };
    let source = &layers[at];
    let by_endpoint = named_by(source, "Endpoint")
        && !named_by(source, "ConnectionString")
        && !named_by(source, "Endpoints");
    // Quorum mode signs in to every instance with one credential when `EntraId` is given
    // with the `Endpoints` or above them (not left over from a lower layer's `Endpoint`).
    let by_endpoints =
        named_by(source, "Endpoints") && layers[at..].iter().any(|l| l.get("EntraId").is_some());
    if !by_endpoint && !by_endpoints {
        return Ok(None);
    }
    let client_id = pick(layers, "ClientId", string)?.filter(|c| !c.trim().is_empty());
    for layer in layers.iter().rev() {
        if let Some(value) = layer.get("EntraId") {
            let text = string(value).map_err(|e| layer.error("EntraId", e))?;
            return EntraId::parse(text.trim(), client_id)
                .map(Some)
                .map_err(|e| layer.error("EntraId", e));
        }
    }
    Ok(Some(EntraId::ManagedIdentity { client_id }))
}

/// The value of `field` from the highest layer that sets it, parsed by `parse`.
fn pick<T>(
    layers: &[Layer],
    field: &str,
    parse: fn(&Value) -> Result<T, String>,
) -> Result<Option<T>> {
    for layer in layers.iter().rev() {
        if let Some(value) = layer.get(field) {
            return parse(value).map(Some).map_err(|e| layer.error(field, e));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_configure_writes_is_one_the_reader_knows() {
        let full = Section {
            connection_string: Some("h:1".into()),
            endpoint: Some("h:1".into()),
            endpoints: vec!["h:1".into()],
            entra_id: Some("AzureCli".into()),
            client_id: Some("id".into()),
            key_prefix: Some("p:".into()),
            database: Some(1),
        };
        let json = full.to_file_json();
        let written = json[SECTION].as_object().unwrap();
        assert_eq!(written.len(), 7);
        for field in written.keys() {
            assert!(FIELDS.contains(&field.as_str()), "{field} is not read");
        }
    }

    use super::layers::{decode, parse_jsonc};
    use super::values::whole_number;
    use super::*;

    #[test]
    fn comments_and_trailing_commas_go_and_comment_markers_in_strings_stay() {
        let text = "// top\n{ /* a */ \"RedisLeasing\": { \"KeyPrefix\": \"a//b/*c*/\", }, }";
        assert_eq!(
            parse_jsonc(text).unwrap().to_string(),
            r#"{"RedisLeasing":{"KeyPrefix":"a//b/*c*/"}}"#
        );
    }

    #[test]
    fn only_what_the_dotnet_reader_takes_beyond_json() {
        for text in [
            "{'a': 1}",
            "{a: 1}",
            "{\"a\": 0x10}",
            "{\"a\": +1}",
            "{\"a\": .5}",
            "{\"a\": NaN}",
            "{\"a\": 1 \"b\": 2}",
            "[]",
            "",
        ] {
            assert!(parse_jsonc(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_read() {
        let text = "{\"a\": \"é\"}";
        let utf8 = [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
        assert_eq!(decode(&utf8).unwrap(), text);
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&le).unwrap(), text);
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode(&be).unwrap(), text);
        assert!(decode(&[0x7B, 0xFF, 0x7D]).is_err());
    }

    #[test]
    fn a_fraction_is_not_a_whole_number() {
        assert_eq!(whole_number(&Value::from(3)), Some(3));
        assert_eq!(whole_number(&Value::from("4")), Some(4));
        assert_eq!(whole_number(&Value::from(1.5)), None);
        assert_eq!(whole_number(&Value::from("1.5")), None);
        assert_eq!(whole_number(&Value::from(true)), None);
        assert!(string(&Value::from(42)).is_err());
        assert!(boolean(&Value::from(1)).is_err());
        assert_eq!(boolean(&Value::from("True")), Ok(true));
    }
}

//! Where the settings' values come from: the files (found here or in the user's config
//! directory, read as .NET writes them), the environment and the command line — one
//! [`Layer`] each.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Map, Value};

use super::{Overrides, SECTION};
use crate::error::{Error, Result};

/// One source of values: a file, the environment or the command line.
pub(super) struct Layer {
    pub(super) name: String,
    pub(super) values: Map<String, Value>,
}

impl Layer {
    pub(super) fn get(&self, field: &str) -> Option<&Value> {
        self.values.get(&field.to_ascii_lowercase())
    }

    pub(super) fn error(&self, field: &str, message: impl std::fmt::Display) -> Error {
        Error::Settings(format!("{}: {SECTION}.{field}: {message}", self.name))
    }
}

/// The first of `./NAME` and `<config dir>/leasectl/NAME` that exists.
///
/// # Errors
/// When the first that exists is not a readable file (a directory, a broken link, ...):
/// skipping it would silently use other settings.
pub(super) fn find_file(name: &str) -> Result<Option<PathBuf>> {
    if let Some(here) = present(Path::new(name))? {
        return Ok(Some(here));
    }
    match user_config_dir() {
        Some(dir) => present(&dir.join(name)),
        None => Ok(None),
    }
}

/// `Some(path)` when a settings file is there, `None` when nothing is.
///
/// # Errors
/// When something is there that is not a file that can be read.
pub(super) fn present(path: &Path) -> Result<Option<PathBuf>> {
    let refuse = |what: String| Err(Error::Settings(format!("{}: {what}", path.display())));
    match std::fs::symlink_metadata(path) {
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None)
        }
        Err(e) => return refuse(format!("cannot read: {e}")),
        Ok(_) => {}
    }
    match std::fs::metadata(path) {
        Err(e) => refuse(format!("cannot read: {e}")),
        Ok(m) if m.is_dir() => refuse("is a directory, not a settings file".into()),
        Ok(m) if !m.is_file() => refuse("is not a regular file".into()),
        Ok(_) => Ok(Some(path.to_path_buf())),
    }
}

/// `$XDG_CONFIG_HOME/leasectl` or `~/.config/leasectl`.
pub fn user_config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("leasectl"))
}

pub(super) fn read_file(path: &Path) -> Result<Layer> {
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Error::Settings(format!("{name}: cannot read: {e}")))?;
    let json = settings_json(&bytes).map_err(|e| Error::Settings(format!("{name}: {e}")))?;
    let json = json.to_string();
    let config = Config::builder()
        .add_source(File::from_str(&json, FileFormat::Json))
        .build()
        .map_err(|e| Error::Settings(format!("{name}: {e}")))?;
    let top: Map<String, Value> = config
        .try_deserialize()
        .map_err(|e| Error::Settings(format!("{name}: {e}")))?;
    let section = top
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(SECTION))
        .map(|(_, v)| v);
    let values = match section {
        None => Map::new(),
        Some(v) => v
            .into_table()
            .map_err(|_| Error::Settings(format!("{name}: {SECTION}: expected an object")))?,
    };
    let layer = Layer {
        name,
        values: lowercase_keys(values),
    };
    warn_if_exposed(path, &layer);
    Ok(layer)
}

/// A settings file's text: UTF-8, with or without a byte-order mark, or UTF-16 with one (as
/// .NET tools may write it).
pub(super) fn decode(bytes: &[u8]) -> std::result::Result<String, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = rest
            .chunks(2)
            .map(|pair| unit([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16(&units).map_err(|_| "not valid UTF-16 text".to_string())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest).map(str::to_string),
        [0xFF, 0xFE, rest @ ..] => return utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => return utf16(rest, u16::from_be_bytes),
        _ => std::str::from_utf8(bytes).map(str::to_string),
    }
    .map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })
}

/// A settings file's bytes as the .NET configuration reader takes them (a byte-order mark,
/// comments, trailing commas), as plain JSON: an object.
///
/// # Errors
/// What is wrong, with a line and column; never the file's text.
pub fn settings_json(bytes: &[u8]) -> std::result::Result<serde_json::Value, String> {
    parse_jsonc(&decode(bytes)?)
}

/// JSON as .NET's configuration reader takes it: comments and trailing commas. The top level
/// must be an object. Errors give a line and column, never the text.
pub(super) fn parse_jsonc(text: &str) -> std::result::Result<serde_json::Value, String> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let value: serde_json::Value = jsonc_parser::parse_to_serde_value(text, &options)
        .map_err(|e| format!("not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("not valid JSON settings: expected an object at the top".into());
    }
    Ok(value)
}

/// Warns when a file that holds a password can be read by other users.
pub(super) fn warn_if_exposed(path: &Path, layer: &Layer) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    let holds_password = ["ConnectionString", "Endpoints"].iter().any(|field| {
        layer.get(field).is_some_and(|value| {
            let text = value.to_string();
            text.to_ascii_lowercase().contains("password=")
                || (text.contains("://") && text.contains('@'))
        })
    });
    if holds_password && mode & 0o077 != 0 {
        tracing::warn!(
            "{} holds a password and can be read by other users (mode {mode:o}); run: chmod 600 {}",
            layer.name,
            layer.name
        );
    }
}

pub(super) fn read_environment() -> Result<Layer> {
    let config = Config::builder()
        .add_source(
            Environment::with_prefix(SECTION)
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .map_err(|e| Error::Settings(format!("environment: {e}")))?;
    let values: Map<String, Value> = config
        .try_deserialize()
        .map_err(|e| Error::Settings(format!("environment: {e}")))?;
    Ok(Layer {
        name: format!("environment ({SECTION}__*)"),
        values: lowercase_keys(values),
    })
}

pub(super) fn command_line_layer(overrides: &Overrides) -> Layer {
    let mut values = Map::new();
    if !overrides.endpoints.is_empty() {
        let list: Vec<Value> = overrides
            .endpoints
            .iter()
            .map(|e| Value::from(e.as_str()))
            .collect();
        values.insert("endpoints".into(), Value::from(list));
    }
    if let Some(prefix) = &overrides.key_prefix {
        values.insert("keyprefix".into(), Value::from(prefix.as_str()));
    }
    if let Some(format) = &overrides.lease_format {
        values.insert("leaseformat".into(), Value::from(format.as_str()));
    }
    Layer {
        name: "command line".into(),
        values,
    }
}

/// The fields by lower-case name; a `null` field counts as not set.
pub(super) fn lowercase_keys(values: Map<String, Value>) -> Map<String, Value> {
    values
        .into_iter()
        .filter(|(_, v)| !matches!(v.kind, config::ValueKind::Nil))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

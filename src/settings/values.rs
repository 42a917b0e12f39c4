//! Reading one settings value: what each field's type accepts, and how a refused value is
//! named in the message (never repeating a value that may be a secret).

use std::time::Duration;

use config::Value;

use super::layers::Layer;
use crate::duration;
use crate::error::Result;
use crate::format::LeaseFormat;

/// A string. Only a JSON string (or an environment variable) is one: `42` is not a connection
/// string. The value itself is never repeated: it may be a secret.
pub(super) fn string(value: &Value) -> Result<String, String> {
    match &value.kind {
        config::ValueKind::String(text) => Ok(text.clone()),
        _ => Err(format!("expected a string, got {}", kind_name(value))),
    }
}

/// What kind of value this is, for messages.
pub(super) fn kind_name(value: &Value) -> &'static str {
    match &value.kind {
        config::ValueKind::Nil => "null",
        config::ValueKind::Boolean(_) => "true or false",
        config::ValueKind::Float(_) => "a fraction",
        config::ValueKind::String(_) => "a string",
        config::ValueKind::Table(_) => "an object",
        config::ValueKind::Array(_) => "a list",
        _ => "a number",
    }
}

/// A whole number: a JSON integer, or a string of one (environment variables are strings).
/// A fraction (`1.5`) is refused, not rounded.
pub(super) fn whole_number(value: &Value) -> Option<i64> {
    match &value.kind {
        config::ValueKind::I64(n) => Some(*n),
        config::ValueKind::U64(n) => i64::try_from(*n).ok(),
        config::ValueKind::I128(n) => i64::try_from(*n).ok(),
        config::ValueKind::U128(n) => i64::try_from(*n).ok(),
        config::ValueKind::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn string_list(value: &Value) -> Result<Vec<String>, String> {
    match &value.kind {
        config::ValueKind::Array(items) => items.iter().map(string).collect(),
        // `RedisLeasing__Endpoints__0=...` arrives as a table keyed by index.
        config::ValueKind::Table(table) => {
            let mut entries: Vec<(u32, &Value)> = table
                .iter()
                .map(|(k, v)| {
                    k.parse()
                        .map(|i| (i, v))
                        .map_err(|_| format!("unexpected key '{k}' in a list"))
                })
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(|(i, _)| *i);
            entries.into_iter().map(|(_, v)| string(v)).collect()
        }
        // One string (an environment variable): a JSON array, URLs separated by commas, or
        // any form separated by semicolons.
        config::ValueKind::String(text) => crate::endpoint::split_list(text),
        _ => Err(format!(
            "expected a list of connection strings or URLs, got {}",
            kind_name(value)
        )),
    }
}

/// `true` or `false`: a JSON boolean, or a string of one in any case (as .NET reads it).
pub(super) fn boolean(value: &Value) -> Result<bool, String> {
    let parsed = match &value.kind {
        config::ValueKind::Boolean(b) => Some(*b),
        config::ValueKind::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| format!("expected true or false, got {}", shown(value)))
}

pub(super) fn non_negative(value: &Value) -> Result<i64, String> {
    match whole_number(value) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(format!(
            "expected a whole number of 0 or more, got {}",
            shown(value)
        )),
    }
}

pub(super) fn port(value: &Value) -> Result<u16, String> {
    match whole_number(value) {
        Some(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!(
            "expected a port number from 1 to 65535, got {}",
            shown(value)
        )),
    }
}

pub(super) fn milliseconds(value: &Value) -> Result<Duration, String> {
    match whole_number(value) {
        Some(n) if n > 0 => Ok(Duration::from_millis(n as u64)),
        _ => Err(format!(
            "expected a whole number of milliseconds greater than 0, got {}",
            shown(value)
        )),
    }
}

pub(super) fn positive_duration(value: &Value) -> Result<Duration, String> {
    match &value.kind {
        config::ValueKind::String(text) => duration::parse_positive(text),
        _ => Err(format!(
            "expected a duration like 00:00:30 or 30s, got {}",
            shown(value)
        )),
    }
}

/// A duration, zero allowed.
pub(super) fn any_duration(value: &Value) -> Result<Duration, String> {
    match &value.kind {
        config::ValueKind::String(text) => duration::parse(text),
        _ => Err(format!(
            "expected a duration like 00:00:30 or 30s, got {}",
            shown(value)
        )),
    }
}

/// `Metadata`: every layer's fields, a higher layer's value winning for the same key
/// (compared without regard to case, as the .NET reader does), in the order first seen.
pub(super) fn pick_metadata(layers: &[Layer]) -> Result<Vec<(String, String)>> {
    let mut metadata: Vec<(String, String)> = Vec::new();
    for layer in layers {
        let Some(value) = layer.get("Metadata") else {
            continue;
        };
        let config::ValueKind::Table(table) = &value.kind else {
            let got = kind_name(value);
            let message = format!("expected an object of names and strings, got {got}");
            return Err(layer.error("Metadata", message));
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            let text = match &value.kind {
                config::ValueKind::String(text) => text.clone(),
                config::ValueKind::Table(_)
                | config::ValueKind::Array(_)
                | config::ValueKind::Nil => {
                    let message = format!("{key}: expected a string, got {}", kind_name(value));
                    return Err(layer.error("Metadata", message));
                }
                _ => value.to_string(),
            };
            if key.trim().is_empty() {
                return Err(layer.error("Metadata", "a field needs a non-empty name"));
            }
            match metadata
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                Some(entry) => *entry = (key.clone(), text),
                None => metadata.push((key.clone(), text)),
            }
        }
    }
    Ok(metadata)
}

/// A value of a field that holds no secret, for messages.
pub(super) fn shown(value: &Value) -> String {
    match &value.kind {
        config::ValueKind::String(s) => format!("'{s}'"),
        config::ValueKind::Table(_) | config::ValueKind::Array(_) | config::ValueKind::Nil => {
            kind_name(value).into()
        }
        _ => value.to_string(),
    }
}

/// `Hash` or `Json`, in any case.
pub(super) fn lease_format(value: &Value) -> Result<LeaseFormat, String> {
    match &value.kind {
        config::ValueKind::String(text) => LeaseFormat::parse(text),
        _ => Err(format!("expected Hash or Json, got {}", shown(value))),
    }
}

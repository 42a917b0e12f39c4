//! Azure names in the wizard: a bare cache name becomes the host of its kind — Azure Managed
//! Redis (`NAME.REGION.redis.azure.net:10000`) or Azure Cache for Redis
//! (`NAME.redis.cache.windows.net:6380`) — asked for at a terminal, or given by `--kind` and
//! `--region`; an Azure Managed Redis host without a port gets its port 10000.

use dialoguer::theme::ColorfulTheme;
use dialoguer::Select;

use crate::cli::AzureKind;
use crate::output::UsageError;

/// The domain of Azure Managed Redis hosts.
const MANAGED_DOMAIN: &str = ".redis.azure.net";
/// The port of an Azure Managed Redis database (TLS).
const MANAGED_PORT: u16 = 10000;

/// What is known of the kind before asking: the flags.
#[derive(Clone, Debug, Default)]
pub(super) struct Given {
    pub kind: Option<AzureKind>,
    pub region: Option<String>,
}

/// `true` when `given` is a bare name (no dot, no port, no scheme): a cache's name.
fn is_bare(given: &str) -> bool {
    !given.contains('.') && !given.contains(':')
}

/// The host:port for what the user typed, with no terminal: a bare name needs `--kind` (and
/// for Azure Managed Redis `--region`).
///
/// # Errors
/// A bare name without `--kind`, or a managed one without `--region`.
pub(super) fn expand(given: &str, flags: &Given) -> Result<String, UsageError> {
    let given = given.trim();
    if !is_bare(given) {
        return Ok(with_managed_port(given));
    }
    match (flags.kind, flags.region.as_deref()) {
        (Some(AzureKind::Cache), _) => Ok(cache_host(given)),
        (Some(AzureKind::Managed), Some(region)) if !region.trim().is_empty() => {
            Ok(managed_host(given, region))
        }
        (Some(AzureKind::Managed), _) => Err(UsageError(format!(
            "'{given}' is an Azure Managed Redis name: pass --region (its Azure region, e.g. westeurope)"
        ))),
        (None, _) => Err(UsageError(format!(
            "'{given}' is a bare cache name: pass --kind managed (Azure Managed Redis, with --region) or --kind cache (Azure Cache for Redis)"
        ))),
    }
}

/// As [`expand`], asking at the terminal for what the flags do not say.
pub(super) fn expand_asking(
    theme: &ColorfulTheme,
    given: &str,
    flags: &Given,
) -> anyhow::Result<String> {
    let given = given.trim();
    if !is_bare(given) {
        return Ok(with_managed_port(given));
    }
    let kind = match flags.kind {
        Some(kind) => kind,
        None => {
            let kinds = [AzureKind::Managed, AzureKind::Cache];
            let labels = [
                "Azure Managed Redis (NAME.REGION.redis.azure.net:10000)",
                "Azure Cache for Redis (NAME.redis.cache.windows.net:6380)",
            ];
            kinds[Select::with_theme(theme)
                .with_prompt("Which kind of Azure Redis is it?")
                .items(labels)
                .default(0)
                .interact()?]
        }
    };
    let mut flags = Given {
        kind: Some(kind),
        region: flags.region.clone(),
    };
    if kind == AzureKind::Managed && flags.region.as_deref().is_none_or(|r| r.trim().is_empty()) {
        let region = super::text(theme, "Azure region (e.g. westeurope)", None, false)?;
        flags.region = Some(region);
    }
    Ok(expand(given, &flags)?)
}

fn managed_host(name: &str, region: &str) -> String {
    let region = region.trim().to_ascii_lowercase().replace(' ', "");
    format!("{name}.{region}{MANAGED_DOMAIN}:{MANAGED_PORT}")
}

fn cache_host(name: &str) -> String {
    format!("{name}.redis.cache.windows.net:6380")
}

/// An Azure Managed Redis host without a port gets port 10000; anything else is kept.
fn with_managed_port(given: &str) -> String {
    let host = given.trim_end_matches('.').to_ascii_lowercase();
    if !given.contains(':') && host.ends_with(MANAGED_DOMAIN) {
        format!("{given}:{MANAGED_PORT}")
    } else {
        given.to_string()
    }
}

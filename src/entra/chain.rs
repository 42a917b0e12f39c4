//! `EntraId: Default`: a chain of credentials like .NET's DefaultAzureCredential — the
//! environment's service principal, workload identity, managed identity, the Azure CLI and the
//! Azure Developer CLI, tried in that order; the first that yields a token is used from then on.
//! `AZURE_TOKEN_CREDENTIALS` narrows the chain as in .NET: `dev` (the CLIs), `prod` (the rest)
//! or one credential's name.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_identity::{
    AzureCliCredential, AzureDeveloperCliCredential, ClientSecretCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential,
};

/// How long the chain waits for the instance metadata service (IMDS) before it goes on to the
/// next credential, as .NET's DefaultAzureCredential does (a machine outside Azure has none,
/// and a request to it would hang until its own timeout).
const IMDS_PROBE: Duration = Duration::from_secs(1);

/// The links in order, by .NET's names, and which of `AZURE_TOKEN_CREDENTIALS`'s groups each
/// belongs to (`true`: `dev`).
const LINKS: [(&str, bool); 5] = [
    ("EnvironmentCredential", false),
    ("WorkloadIdentityCredential", false),
    ("ManagedIdentityCredential", false),
    ("AzureCliCredential", true),
    ("AzureDeveloperCliCredential", true),
];

/// One credential of the chain, or why it cannot be used here (a variable it needs is unset).
struct Link {
    name: &'static str,
    credential: Result<Arc<dyn TokenCredential>, String>,
    /// A limit for its first token while the chain has not settled.
    probe: Option<Duration>,
}

/// The chain: a `TokenCredential` for redis-rs's provider.
pub(crate) struct DefaultChain {
    links: Vec<Link>,
    /// The index of the link that gave the first token.
    chosen: OnceLock<usize>,
}

impl std::fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.links.iter().map(|l| l.name).collect();
        f.debug_struct("DefaultChain")
            .field("links", &names)
            .finish()
    }
}

impl DefaultChain {
    /// The chain `AZURE_TOKEN_CREDENTIALS` selects; `client_id` is a user-assigned managed
    /// identity's (setting `ClientId`, else `AZURE_CLIENT_ID` as in .NET).
    ///
    /// # Errors
    /// `AZURE_TOKEN_CREDENTIALS` holds something else than `dev`, `prod` or a link's name.
    pub(crate) fn new(client_id: Option<String>) -> Result<DefaultChain, String> {
        let selected = Selection::parse(&variable("AZURE_TOKEN_CREDENTIALS").unwrap_or_default())?;
        let links = LINKS
            .iter()
            .filter(|(name, dev)| selected.keeps(name, *dev))
            .map(|(name, _)| link(name, client_id.clone()))
            .collect();
        Ok(DefaultChain {
            links,
            chosen: OnceLock::new(),
        })
    }
}

/// Which links `AZURE_TOKEN_CREDENTIALS` keeps.
#[derive(Clone, Copy)]
enum Selection {
    All,
    Dev,
    Prod,
    One(&'static str),
}

impl Selection {
    /// Reads the variable's value (in any case).
    fn parse(value: &str) -> Result<Selection, String> {
        let value = value.trim();
        if let Some((one, _)) = LINKS.iter().find(|(n, _)| n.eq_ignore_ascii_case(value)) {
            return Ok(Selection::One(one));
        }
        match value.to_ascii_lowercase().as_str() {
            "" => Ok(Selection::All),
            "dev" => Ok(Selection::Dev),
            "prod" => Ok(Selection::Prod),
            _ => {
                let names: Vec<_> = LINKS.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "AZURE_TOKEN_CREDENTIALS: expected dev, prod or one of {}, got '{value}'",
                    names.join(", ")
                ))
            }
        }
    }

    fn keeps(self, name: &str, dev: bool) -> bool {
        match self {
            Selection::All => true,
            Selection::Dev => dev,
            Selection::Prod => !dev,
            Selection::One(one) => one == name,
        }
    }
}

/// A non-empty environment variable.
fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn link(name: &'static str, client_id: Option<String>) -> Link {
    let mut probe = None;
    let credential: Result<Arc<dyn TokenCredential>, String> = match name {
        "EnvironmentCredential" => {
            let missing: Vec<_> = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]
                .into_iter()
                .filter(|v| variable(v).is_none())
                .collect();
            if missing.is_empty() {
                let get = |v| variable(v).unwrap_or_default();
                ClientSecretCredential::new(
                    &get("AZURE_TENANT_ID"),
                    get("AZURE_CLIENT_ID"),
                    get("AZURE_CLIENT_SECRET").into(),
                    None,
                )
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| first_line(&e.to_string()))
            } else {
                Err(format!("{} not set", missing.join(", ")))
            }
        }
        "WorkloadIdentityCredential" => match variable("AZURE_FEDERATED_TOKEN_FILE") {
            None => Err("AZURE_FEDERATED_TOKEN_FILE not set".into()),
            Some(_) => WorkloadIdentityCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| first_line(&e.to_string())),
        },
        "ManagedIdentityCredential" => {
            let on_imds = ["IDENTITY_ENDPOINT", "MSI_ENDPOINT"]
                .iter()
                .all(|v| variable(v).is_none());
            probe = on_imds.then_some(IMDS_PROBE);
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id
                    .or_else(|| variable("AZURE_CLIENT_ID"))
                    .map(UserAssignedId::ClientId),
                ..Default::default()
            };
            ManagedIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| first_line(&e.to_string()))
        }
        "AzureCliCredential" => AzureCliCredential::new(None)
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| first_line(&e.to_string())),
        _ => AzureDeveloperCliCredential::new(None)
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| first_line(&e.to_string())),
    };
    Link {
        name,
        credential,
        probe,
    }
}

#[async_trait::async_trait]
impl TokenCredential for DefaultChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(&index) = self.chosen.get() {
            if let Ok(credential) = &self.links[index].credential {
                return credential.get_token(scopes, options).await;
            }
        }
        let mut failures = Vec::new();
        for (index, link) in self.links.iter().enumerate() {
            let credential = match &link.credential {
                Ok(credential) => credential,
                Err(why) => {
                    failures.push(format!("{}: {why}", link.name));
                    continue;
                }
            };
            let attempt = credential.get_token(scopes, options.clone());
            let result = match link.probe {
                Some(limit) => match tokio::time::timeout(limit, attempt).await {
                    Ok(result) => result,
                    Err(_) => {
                        failures.push(format!("{}: no answer within {limit:?}", link.name));
                        continue;
                    }
                },
                None => attempt.await,
            };
            match result {
                Ok(token) => {
                    tracing::debug!("Entra ID: {} gave a token", link.name);
                    let _ = self.chosen.set(index);
                    return Ok(token);
                }
                Err(error) => {
                    failures.push(format!("{}: {}", link.name, first_line(&error.to_string())))
                }
            }
        }
        if failures.is_empty() {
            failures.push("AZURE_TOKEN_CREDENTIALS selected none".into());
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no credential of the chain gave a token ({})",
                failures.join("; ")
            ),
        ))
    }
}

/// The first non-empty line of an error (azure_identity's end with a troubleshooting link).
pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no detail")
        .to_string()
}

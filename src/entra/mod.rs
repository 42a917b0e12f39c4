//! Microsoft Entra ID authentication: builds redis-rs's credentials provider, which fetches
//! tokens with azure_identity, refreshes them before they expire and re-authenticates live
//! connections with the new token (the DistributedLeasing package fetched one token and let
//! its connections die when it expired). `chain.rs`: `EntraId: Default`, a chain of
//! credentials like .NET's DefaultAzureCredential.

mod chain;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use std::time::Duration;

use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId,
};
use redis::{EntraIdCredentialsProvider, RetryConfig, REDIS_SCOPE_DEFAULT};

use crate::error::{Error, Result};
use chain::first_line;

/// Which Entra ID credential obtains the tokens (setting `EntraId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntraId {
    /// The machine's managed identity: system-assigned, or user-assigned with its client id.
    ManagedIdentity { client_id: Option<String> },
    /// The Azure CLI's signed-in account (`az login`).
    AzureCli,
    /// A service principal: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    ServicePrincipal,
    /// A chain like .NET's DefaultAzureCredential (environment service principal, workload
    /// identity, managed identity, Azure CLI, Azure Developer CLI), narrowed by
    /// `AZURE_TOKEN_CREDENTIALS`; `client_id` is a user-assigned managed identity's.
    Default { client_id: Option<String> },
}

impl EntraId {
    /// Reads the setting's value (`Default`, `ManagedIdentity`, `AzureCli`, `ServicePrincipal`).
    ///
    /// # Errors
    /// What was expected, for the caller to put behind the field name.
    pub fn parse(text: &str, client_id: Option<String>) -> Result<EntraId, String> {
        match text.to_ascii_lowercase().as_str() {
            "managedidentity" | "" => Ok(EntraId::ManagedIdentity { client_id }),
            "azurecli" => Ok(EntraId::AzureCli),
            "serviceprincipal" => Ok(EntraId::ServicePrincipal),
            "default" => Ok(EntraId::Default { client_id }),
            _ => Err(format!(
                "expected Default, ManagedIdentity, AzureCli or ServicePrincipal, got '{text}'"
            )),
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            EntraId::ManagedIdentity { client_id: None } => "ManagedIdentity (system-assigned)",
            EntraId::ManagedIdentity { client_id: Some(_) } => "ManagedIdentity (user-assigned)",
            EntraId::AzureCli => "AzureCli",
            EntraId::ServicePrincipal => "ServicePrincipal",
            EntraId::Default { .. } => "Default",
        }
    }

    /// A started provider for this credential, after one token was fetched with it (so that
    /// a credential that cannot sign in fails here, by name, within `limit`).
    ///
    /// # Errors
    /// [`Error::Auth`] naming the credential (for a service principal, also a missing
    /// environment variable); [`Error::Timeout`] when no token came within `limit`.
    pub(crate) async fn provider(&self, limit: Duration) -> Result<EntraIdCredentialsProvider> {
        let failed = |detail: String| Error::Auth {
            endpoint: "Microsoft Entra ID".into(),
            detail: format!("{} could not sign in: {detail}", self.name()),
        };
        let credential: Arc<dyn TokenCredential + Send + Sync> = match self {
            EntraId::ManagedIdentity { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                ManagedIdentityCredential::new(Some(options)).map_err(|e| failed(e.to_string()))?
            }
            EntraId::AzureCli => {
                AzureCliCredential::new(None).map_err(|e| failed(e.to_string()))?
            }
            EntraId::ServicePrincipal => {
                let variable = |name: &str| {
                    std::env::var(name)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            failed(format!("the environment variable {name} is not set"))
                        })
                };
                let (tenant, client) = (variable("AZURE_TENANT_ID")?, variable("AZURE_CLIENT_ID")?);
                let secret = variable("AZURE_CLIENT_SECRET")?;
                ClientSecretCredential::new(&tenant, client, secret.into(), None)
                    .map_err(|e| failed(e.to_string()))?
            }
            EntraId::Default { client_id } => {
                let chain = chain::DefaultChain::new(client_id.clone()).map_err(Error::Settings)?;
                Arc::new(chain)
            }
        };
        match tokio::time::timeout(limit, credential.get_token(&[REDIS_SCOPE_DEFAULT], None)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(failed(first_line(&error.to_string()))),
            Err(_) => {
                return Err(Error::Timeout {
                    endpoint: format!("Microsoft Entra ID ({})", self.name()),
                    after: limit,
                })
            }
        }
        let mut provider = EntraIdCredentialsProvider::new_with_credential(
            credential,
            vec![REDIS_SCOPE_DEFAULT.to_string()],
        )
        .map_err(|e| failed(e.to_string()))?;
        provider.start(RetryConfig::default());
        Ok(provider)
    }
}

//! Entra ID in cluster mode: the cluster client signs in to every node with the credential's
//! token, its release notifications' connection too (a test credential; nothing but loopback
//! is contacted).

use std::fmt;
use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use leasectl::EntraIdCredentialsProvider;

use super::*;
use crate::leases::{acquired, hand_over, options, within};
use crate::support::key;

/// The object id in the token, which redis-rs uses as the ACL user name.
const ENTRA_USER: &str = "5e1d0c2b-cluster-entra-user";

/// Hands out one JWT-shaped token (`oid`: [`ENTRA_USER`]) that every node takes as the ACL
/// user's password, valid for an hour.
struct ClusterCredential {
    token: String,
    asked: Arc<Mutex<usize>>,
}

impl fmt::Debug for ClusterCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for ClusterCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        *self.asked.lock().unwrap() += 1;
        let expires_on = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        Ok(AccessToken::new(self.token.clone(), expires_on))
    }
}

fn jwt(user: &str) -> String {
    use base64::Engine;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(format!(r#"{{"oid":"{user}"}}"#).as_bytes());
    format!(
        "{header}.{payload}.{}",
        encode(uuid::Uuid::new_v4().as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_tokens_sign_in_to_every_primary() {
    let cluster = RedisCluster::start();
    let token = jwt(ENTRA_USER);
    for node in &cluster.nodes {
        let password = format!(">{token}");
        let rules = [
            "ACL", "SETUSER", ENTRA_USER, "on", &password, "~*", "&*", "+@all",
        ];
        let _: String = node.query(&rules);
    }
    let asked = Arc::new(Mutex::new(0));
    let credential = ClusterCredential {
        token,
        asked: asked.clone(),
    };
    let provider = EntraIdCredentialsProvider::new_with_credential(
        Arc::new(credential),
        vec![redis::REDIS_SCOPE_DEFAULT.to_string()],
    )
    .expect("a provider");
    let connecting = LeaseClient::connect_with_credentials(cluster.settings_via(1), provider);
    let client = within(BOUND, "connect_with_credentials", connecting)
        .await
        .expect("connect to the cluster with Entra ID tokens");
    for name in cluster.name_on_each_primary("entra") {
        let lease = acquired(client.try_acquire(&name, &options(LONG)).await);
        let primary = &cluster.nodes[cluster.primary_of(&key(&name))];
        let holder: String = primary.query(&["HGET", &key(&name), "leaseId"]);
        assert_eq!(holder, lease.id());
        let clients: String = primary.query(&["CLIENT", "LIST"]);
        let user = format!(" user={ENTRA_USER} ");
        assert!(
            clients.lines().any(|c| c.contains(&user)),
            "signed in as {ENTRA_USER}: {clients}"
        );
        assert!(lease.release().await.expect("release"));
    }
    // The notifications' connection signs in with the token too: a waiter whose fallback
    // poll is an hour is woken by the release.
    let name = &cluster.name_on_each_primary("entra-woken")[0];
    let holder = acquired(client.try_acquire(name, &options(LONG)).await);
    let lease = hand_over(BOUND, holder, client.clone()).await;
    let primary = &cluster.nodes[cluster.primary_of(&key(name))];
    let clients: String = primary.query(&["CLIENT", "LIST"]);
    let subscribed = format!(" user={ENTRA_USER} ");
    assert!(
        clients
            .lines()
            .any(|c| c.contains(&subscribed) && c.contains(" ssub=1 ")),
        "the shard subscription signed in as {ENTRA_USER}: {clients}"
    );
    assert!(lease.release().await.expect("release"));
    assert!(*asked.lock().unwrap() >= 1, "the credential was asked");
}

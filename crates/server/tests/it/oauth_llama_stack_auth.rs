//! Llama Stack's own `server.auth` section (`provider_config.type: oauth2_token`) starts llamagate as it
//! is: read as `oauth_config` against a REAL authorization server (node `oidc-provider`, as in
//! `oauth_e2e.rs`), with a start-up notice for each thing that changes. Its tokens are accepted; a
//! request without one is refused.

use serde_json::Value;

use crate::support::oauth::{AuthServer, SMOLLM_SCOPE, free_port};
use crate::support::remote::Gate;
use crate::support::{MODEL_ID, default_model};

#[tokio::test]
async fn a_llama_stack_oauth2_token_section_is_read_as_oauth_config_with_notices() {
    // The tokens' audience: what the AS issues them for, named in Llama Stack's `audience`.
    let resource = format!("http://127.0.0.1:{}", free_port());
    let auth = AuthServer::start(&resource).await;
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\n  auth:\n    provider_config:\n      type: oauth2_token\n      \
         issuer: {}\n      audience: {resource}\n      jwks:\n        key_recheck_period: 600\n      \
         claims_mapping:\n        sub: roles\n    access_policy: []\n\
         models:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n",
        auth.issuer,
        default_model().display()
    );
    let gate = Gate::start_without_dev(&yaml);
    let log = gate.log();
    for notice in [
        "server.auth: read as oauth_config",
        "jwks.key_recheck_period is jwks_cache_ttl (600 s)",
        "server.auth.provider_config.claims_mapping: not read",
        "server.auth.access_policy: not read",
    ] {
        assert!(log.contains(notice), "no notice `{notice}`:\n{log}");
    }
    assert!(log.contains("OAuth resource server enabled"), "{log}");
    let client = reqwest::Client::new();
    let refused = client.get(gate.url("/v1/models")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let token = auth.access_token("smollm-client", "smollm-secret", "", SMOLLM_SCOPE).await;
    let models = client.get(gate.url("/v1/models")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(models.status(), 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], MODEL_ID, "{models}");
}

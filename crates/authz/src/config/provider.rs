//! `oauth_config.provider`: named presets of the claim rules, one per identity provider whose access
//! tokens differ from RFC 9068.
//!
//! A preset only fills in what `oauth_config.claims` leaves unset ([`super::claims::ClaimsConfig`]),
//! so every rule stays individually overridable. `generic`, the default, is RFC 9068 exactly —
//! `typ: at+jwt`, `sub`, `iat`, `jti` and `client_id` required, scopes from the `scope` string — so a
//! configuration that names no provider behaves as it always did. The token shapes each preset is
//! built for are in `docs/reference/idp-token-shapes.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::claims::ClaimRules;

/// The identity provider whose token shape the claim rules start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// RFC 9068 JWT access tokens (oidc-provider, Auth0's RFC 9068 profile, any compliant AS).
    #[default]
    Generic,
    /// Keycloak: `typ: JWT`, client in `azp`, roles in `realm_access.roles`, `typ: Bearer` claim.
    Keycloak,
    /// Auth0's default token profile: `typ: JWT`, client in `azp`, `permissions` array.
    Auth0,
    /// Okta: no `typ`, client in `cid`, scopes in the `scp` array.
    Okta,
    /// Microsoft Entra ID (v1 and v2): client in `appid`/`azp`, `scp` string, app `roles` array.
    Entra,
    /// Amazon Cognito: no `typ`, no `aud` (allowed clients instead), `token_use: access`.
    Cognito,
    /// Google: its access tokens are opaque, so this accepts Google-signed ID tokens (`aud` = this
    /// server), as service-to-service calls on Google Cloud use; they carry no scopes.
    Google,
}

/// Every preset but `generic` looks for the client in these claims, first present wins: RFC 9068,
/// OIDC's authorized party, Okta, Entra v1.
const CLIENT_ID_CLAIMS: [&str; 4] = ["client_id", "azp", "cid", "appid"];

/// ID-token-only claims (OIDC Core §2, §3.1.3.6): a token carrying one is not an access token. Checked
/// by the presets that accept `typ: JWT`, where the header no longer tells the two apart.
const ID_TOKEN_CLAIMS: [&str; 3] = ["nonce", "at_hash", "c_hash"];

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.into_iter().map(String::from).collect()
}

impl Provider {
    /// The claim rules this provider's access tokens need; `expected_typ` is the `generic` preset's
    /// one accepted `typ` (the `expected_typ` key).
    pub fn preset(self, expected_typ: &str) -> ClaimRules {
        if self == Self::Generic {
            return ClaimRules {
                accepted_typ: vec![expected_typ.to_string()],
                allow_missing_typ: false,
                required: strings(["iss", "aud", "exp", "iat", "sub", "client_id", "jti"]),
                subject: "sub".into(),
                client_id: strings(["client_id"]),
                scopes: strings(["scope"]),
                required_values: BTreeMap::new(),
                forbidden: Vec::new(),
                require_audience: true,
                allowed_client_ids: Vec::new(),
                issuers: Vec::new(),
                audiences: Vec::new(),
            };
        }
        let mut rules = ClaimRules {
            accepted_typ: strings(["at+jwt", "JWT"]),
            allow_missing_typ: false,
            required: strings(["iss", "aud", "exp", "sub"]),
            subject: "sub".into(),
            client_id: strings(CLIENT_ID_CLAIMS),
            scopes: strings(["scope"]),
            required_values: BTreeMap::new(),
            forbidden: strings(ID_TOKEN_CLAIMS),
            require_audience: true,
            allowed_client_ids: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
        };
        match self {
            Self::Generic => {}
            Self::Keycloak => {
                rules.scopes = strings(["scope", "realm_access.roles"]);
                // Keycloak marks its access tokens `typ: Bearer` (ID tokens `ID`), and copies the
                // authentication request's `nonce` into access tokens, so only the hashes are forbidden.
                rules.required_values.insert("typ".into(), "Bearer".into());
                rules.forbidden = strings(["at_hash", "c_hash"]);
            }
            Self::Auth0 => rules.scopes = strings(["scope", "permissions"]),
            Self::Okta => {
                rules.allow_missing_typ = true;
                rules.scopes = strings(["scp"]);
            }
            Self::Entra => rules.scopes = strings(["scp", "roles"]),
            Self::Cognito => {
                rules.allow_missing_typ = true;
                rules.required = strings(["iss", "exp", "sub", "client_id", "token_use"]);
                rules.required_values.insert("token_use".into(), "access".into());
                rules.require_audience = false;
            }
            Self::Google => {
                rules.scopes = Vec::new();
                rules.forbidden = Vec::new();
                rules.issuers = strings(["https://accounts.google.com", "accounts.google.com"]);
            }
        }
        rules
    }
}

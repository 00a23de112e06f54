//! The `oauth_config.claims` section: which JWT claims make an access token acceptable and where the
//! caller's subject, client and scopes are read from.
//!
//! Every key is optional; an unset key takes the value of the `provider` preset
//! ([`super::provider::Provider::preset`]), so a deployment names its identity provider and overrides
//! only what differs. [`ClaimsConfig::resolve`] turns the section into the [`ClaimRules`] the JWT
//! validator applies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

/// The `claims` section as written: `None` keeps the provider preset's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// Accepted JWS header `typ` values (compared case-insensitively, `application/` optional).
    pub accepted_typ: Option<Vec<String>>,
    /// Accept a token whose header has no `typ` (Okta, Cognito).
    pub allow_missing_typ: Option<bool>,
    /// Claims that must be present and non-empty. `iss` and `exp` are required whatever this says.
    pub required: Option<Vec<String>>,
    /// The claim naming the caller (default `sub`).
    pub subject: Option<String>,
    /// Claims naming the OAuth client, first present wins.
    pub client_id: Option<Vec<String>>,
    /// Claims the scopes are read from, all of them together: a string is split on spaces, an array
    /// taken as it is; a dotted name (`realm_access.roles`) walks into objects. `scope` itself must
    /// be a string (RFC 8693 §4.2).
    pub scopes: Option<Vec<String>>,
    /// Claim → the exact string it must hold (e.g. `token_use: access`).
    pub required_values: Option<BTreeMap<String, String>>,
    /// Claims a token must not carry (ID-token claims such as `nonce` when `typ: JWT` is accepted).
    pub forbidden: Option<Vec<String>>,
    /// Refuse tokens without `aud`. Off only for issuers that never set it (Cognito), and then
    /// `allowed_client_ids` must name the clients instead.
    pub require_audience: Option<bool>,
    /// When non-empty, only tokens issued to these clients are accepted.
    pub allowed_client_ids: Vec<String>,
}

/// The claim rules in force: the preset with the section's keys laid over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRules {
    /// Accepted header `typ` values.
    pub accepted_typ: Vec<String>,
    /// Whether a header without `typ` passes.
    pub allow_missing_typ: bool,
    /// Claims that must be present and non-empty.
    pub required: Vec<String>,
    /// The claim naming the caller.
    pub subject: String,
    /// Claims naming the client, first present wins.
    pub client_id: Vec<String>,
    /// Claims the scopes are gathered from.
    pub scopes: Vec<String>,
    /// Claim → required exact value.
    pub required_values: BTreeMap<String, String>,
    /// Claims that make a token unacceptable.
    pub forbidden: Vec<String>,
    /// Whether `aud` must be present (when present it must always match).
    pub require_audience: bool,
    /// Clients whose tokens are accepted; empty accepts any client.
    pub allowed_client_ids: Vec<String>,
    /// Issuers accepted besides `auth_server_uri` (exact match).
    pub issuers: Vec<String>,
    /// Audiences accepted besides the configured audience (any one suffices).
    pub audiences: Vec<String>,
}

impl ClaimsConfig {
    /// The rules in force: this section laid over a provider's `preset`; `issuers` and `audiences`
    /// are the top-level keys, added to the preset's.
    pub fn resolve(&self, preset: ClaimRules, issuers: &[String], audiences: &[String]) -> ClaimRules {
        let mut rules = preset;
        let overlay = |target: &mut Vec<String>, value: &Option<Vec<String>>| {
            if let Some(v) = value {
                target.clone_from(v);
            }
        };
        overlay(&mut rules.accepted_typ, &self.accepted_typ);
        overlay(&mut rules.required, &self.required);
        overlay(&mut rules.client_id, &self.client_id);
        overlay(&mut rules.scopes, &self.scopes);
        overlay(&mut rules.forbidden, &self.forbidden);
        if let Some(v) = self.allow_missing_typ {
            rules.allow_missing_typ = v;
        }
        if let Some(v) = &self.subject {
            rules.subject.clone_from(v);
        }
        if let Some(v) = &self.required_values {
            rules.required_values.clone_from(v);
        }
        if let Some(v) = self.require_audience {
            rules.require_audience = v;
        }
        rules.allowed_client_ids.extend(self.allowed_client_ids.iter().cloned());
        rules.issuers.extend(issuers.iter().cloned());
        rules.audiences.extend(audiences.iter().cloned());
        rules
    }
}

impl ClaimRules {
    /// Checks the resolved rules; errors name the `oauth_config` key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let names = |key: &'static str, list: &[String]| {
            if list.iter().any(|n| n.trim().is_empty()) {
                return Err(ConfigError::invalid(key, "contains an empty name", "remove the empty entry"));
            }
            Ok(())
        };
        names("claims.accepted_typ", &self.accepted_typ)?;
        names("claims.required", &self.required)?;
        names("claims.client_id", &self.client_id)?;
        names("claims.scopes", &self.scopes)?;
        names("claims.forbidden", &self.forbidden)?;
        names("claims.allowed_client_ids", &self.allowed_client_ids)?;
        names("issuers", &self.issuers)?;
        names("audiences", &self.audiences)?;
        if self.accepted_typ.is_empty() && !self.allow_missing_typ {
            return Err(ConfigError::invalid(
                "claims.accepted_typ",
                "is empty and claims.allow_missing_typ is false, so no token could pass",
                "list e.g. [at+jwt, JWT]",
            ));
        }
        if self.client_id.is_empty() {
            return Err(ConfigError::invalid("claims.client_id", "is empty", "list e.g. [client_id, azp]"));
        }
        if self.subject.trim().is_empty() {
            return Err(ConfigError::invalid("claims.subject", "is empty", "use sub"));
        }
        if self.required_values.iter().any(|(k, v)| k.trim().is_empty() || v.is_empty()) {
            return Err(ConfigError::invalid(
                "claims.required_values",
                "has an empty claim name or value",
                "write claim: value, e.g. token_use: access",
            ));
        }
        if let Some(both) =
            self.forbidden.iter().find(|f| self.required.contains(f) || self.required_values.contains_key(*f))
        {
            return Err(ConfigError::invalid(
                "claims.forbidden",
                format!("`{both}` is also required, so no token could pass"),
                "remove it from one of the two lists",
            ));
        }
        if !self.require_audience {
            if self.required.iter().any(|r| r == "aud") {
                return Err(ConfigError::invalid(
                    "claims.required",
                    "lists aud while claims.require_audience is false",
                    "remove aud from claims.required, or require the audience",
                ));
            }
            if self.allowed_client_ids.is_empty() {
                return Err(ConfigError::invalid(
                    "claims.allowed_client_ids",
                    "is empty while claims.require_audience is false, so tokens for any client of the issuer would pass",
                    "list the app clients allowed to call this server",
                ));
            }
        }
        Ok(())
    }
}

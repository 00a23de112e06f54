//! Which tier a caller is in, and the key its rate-limit buckets are kept under.
//!
//! The tier comes, in this order, from the configured claim (`rate_limits.tier_claim`, off by
//! default: only an authorization server the operator trusts to set it should be believed), from the
//! token's scopes through `rate_limits.scope_tiers` (several mapped scopes: the largest tier wins),
//! and otherwise from `default_user_tier`. A claim naming an unknown tier is ignored rather than
//! trusted, so a typo at the AS cannot create an unlimited tier.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::principal::Principal;
use crate::ratelimit::config::{BudgetKey, RateLimitConfig, TierLimits};

/// A tier: its name, its limits and its queue priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// The configured name (`free`, `premium`, …).
    pub name: String,
    /// Its budget.
    pub limits: TierLimits,
}

/// The tier table and the rules that pick a caller's tier; built once from the config.
#[derive(Clone, Debug)]
pub struct Tiers {
    tiers: BTreeMap<String, TierLimits>,
    scope_tiers: BTreeMap<String, String>,
    tier_claim: Option<String>,
    default_tier: String,
}

impl Tiers {
    /// From a validated config; `default_tier` is `oauth_config.default_user_tier`.
    pub fn from_config(cfg: &RateLimitConfig, default_tier: &str) -> Self {
        Self {
            tiers: cfg.tiers.clone(),
            scope_tiers: cfg.scope_tiers.clone(),
            tier_claim: cfg.tier_claim.clone(),
            default_tier: default_tier.to_string(),
        }
    }

    /// The tier named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<Tier> {
        self.tiers.get(name).map(|limits| Tier { name: name.to_string(), limits: *limits })
    }

    /// The caller's tier (see the module docs for the order).
    pub fn resolve(&self, principal: &Principal) -> Tier {
        let from_claim = self
            .tier_claim
            .as_deref()
            .and_then(|claim| principal.claims.get(claim))
            .and_then(|value| value.as_str())
            .and_then(|name| self.get(name));
        let from_scopes = || {
            principal
                .scopes
                .iter()
                .filter_map(|scope| self.scope_tiers.get(scope))
                .filter_map(|name| self.get(name))
                .max_by_key(|tier| (tier.limits.tokens, tier.limits.requests))
        };
        from_claim.or_else(from_scopes).or_else(|| self.get(&self.default_tier)).unwrap_or_else(|| Tier {
            // Validation guarantees the default tier exists; if it did not, the smallest budget is
            // the safe answer.
            name: self.default_tier.clone(),
            limits: TierLimits::per_minute(1, 1),
        })
    }
}

/// Whose buckets: the token's subject, with its client when `budget_key: subject_and_client`, hashed.
///
/// Never the token (a refreshed token is the same caller). Hashing keeps keys short, fixed-length
/// and free of user-controlled characters (they become Redis key names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateKey(String);

impl RateKey {
    /// The key of `subject` using `client_id`.
    pub fn new(subject: &str, client_id: &str) -> Self {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        let digest = Sha256::new()
            .chain_update((subject.len() as u64).to_be_bytes())
            .chain_update(subject.as_bytes())
            .chain_update(client_id.as_bytes())
            .finalize();
        Self(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
    }

    /// The key of this principal: its subject and client.
    pub fn of(principal: &Principal) -> Self {
        Self::new(&principal.subject, &principal.client_id)
    }

    /// The key this principal's requests are charged to under `budget_key`.
    pub fn charged(principal: &Principal, budget_key: BudgetKey) -> Self {
        match budget_key {
            // The empty client cannot collide with a real one: keys are length-prefixed.
            BudgetKey::Subject => Self::new(&principal.subject, ""),
            BudgetKey::SubjectAndClient => Self::of(principal),
        }
    }

    /// The hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::principal::{Scopes, TokenSource};

    fn principal(scopes: &str, claims: serde_json::Value) -> Principal {
        Principal {
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Principal::new("alice", "app", Scopes::parse(scopes), "https://as.example", TokenSource::Jwt)
        }
    }

    #[test]
    fn scopes_pick_the_largest_tier_and_the_default_covers_the_rest() {
        let tiers = Tiers::from_config(&RateLimitConfig::default(), "free");
        assert_eq!(tiers.resolve(&principal("model_x", json!({}))).name, "free");
        assert_eq!(tiers.resolve(&principal("basic_access", json!({}))).name, "basic");
        assert_eq!(
            tiers.resolve(&principal("basic_access enterprise_access premium_access", json!({}))).name,
            "enterprise"
        );
        assert_eq!(tiers.resolve(&principal("premium_access", json!({}))).limits.priority, 2);
        let free = tiers.resolve(&principal("", json!({})));
        assert_eq!((free.limits.requests, free.limits.tokens, free.limits.window_seconds), (10, 1_000, 60));
        assert_eq!(free.limits.priority, 0);
    }

    #[test]
    fn the_claim_counts_only_when_configured_and_known() {
        let off = Tiers::from_config(&RateLimitConfig::default(), "free");
        assert_eq!(off.resolve(&principal("", json!({"tier": "premium"}))).name, "free");
        let cfg = RateLimitConfig { tier_claim: Some("tier".into()), ..RateLimitConfig::default() };
        let on = Tiers::from_config(&cfg, "free");
        assert_eq!(on.resolve(&principal("basic_access", json!({"tier": "premium"}))).name, "premium");
        assert_eq!(on.resolve(&principal("basic_access", json!({"tier": "unlimited"}))).name, "basic");
        assert_eq!(on.resolve(&principal("", json!({"tier": 7}))).name, "free");
    }

    #[test]
    fn keys_depend_on_subject_and_client_only() {
        assert_eq!(RateKey::new("alice", "app"), RateKey::new("alice", "app"));
        assert_ne!(RateKey::new("alice", "app"), RateKey::new("alice", "other"));
        assert_ne!(RateKey::new("ab", "c"), RateKey::new("a", "bc"));
        assert_eq!(RateKey::new("alice", "app").as_str().len(), 32);
    }

    #[test]
    fn a_budget_is_the_users_unless_configured_per_client() {
        let alice = |client: &str| Principal { client_id: client.into(), ..principal("", json!({})) };
        assert_eq!(
            RateKey::charged(&alice("app"), BudgetKey::Subject),
            RateKey::charged(&alice("script"), BudgetKey::Subject)
        );
        assert_ne!(
            RateKey::charged(&alice("app"), BudgetKey::SubjectAndClient),
            RateKey::charged(&alice("script"), BudgetKey::SubjectAndClient)
        );
        assert_eq!(RateKey::charged(&alice("app"), BudgetKey::SubjectAndClient), RateKey::of(&alice("app")));
    }
}

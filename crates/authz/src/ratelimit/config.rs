//! The `oauth_config.rate_limits` section: tiers and their limits, how scopes and claims pick a tier,
//! and where the buckets live.
//!
//! Defaults live in [`RateLimitConfig::default`] and nowhere else. `tiers` and `scope_tiers` from the
//! file are merged over the defaults (an entry replaces the default of the same name), so adding one
//! tier does not silently drop the four standard ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::env::overlay_env;
use crate::config::error::ConfigError;
use crate::principal::is_scope_char;

/// Where the rate-limit buckets live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In this process: limits hold per replica.
    #[default]
    Memory,
    /// In Redis: one limit shared by every replica pointed at the same Redis.
    Redis,
}

/// What happens to requests while the Redis backend cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Refuse inference with 503 until Redis answers again: limits are never exceeded.
    #[default]
    Closed,
    /// Admit requests unmetered (logged): availability over enforcement.
    Open,
}

/// One tier's budget: `requests` and `tokens` per `window_seconds`, refilled continuously (GCRA).
/// The whole budget is also the burst: a fresh caller may spend it at once. `priority` is not a limit
/// but the tier's place in the engine's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Requests per window.
    pub requests: u64,
    /// Tokens (prompt + completion) per window.
    pub tokens: u64,
    /// The window, in seconds (60: limits per minute).
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// Scheduling priority of this tier's generations (default 0, the lowest): when the engine's
    /// queue is contended, waiting requests of a higher priority are admitted first. It orders the
    /// queue only; it neither preempts running generations nor bypasses the budget above.
    #[serde(default)]
    pub priority: u8,
    /// `max_tokens` for a request that names none. Without it such a request reserves the whole rest
    /// of the context, which a small tier's token budget cannot hold: its first call, from an SDK that
    /// leaves `max_tokens` unset, would always be refused. `None`: the rest of the context.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
}

fn default_window() -> u64 {
    60
}

impl TierLimits {
    /// Limits per minute, at priority 0.
    pub const fn per_minute(requests: u64, tokens: u64) -> Self {
        Self { requests, tokens, window_seconds: 60, priority: 0, default_max_tokens: None }
    }

    /// The same limits with `max_tokens` defaulting to `tokens` for requests that name none.
    pub const fn with_default_max_tokens(self, tokens: u32) -> Self {
        Self { default_max_tokens: Some(tokens), ..self }
    }

    /// The same limits at `priority`.
    pub const fn with_priority(self, priority: u8) -> Self {
        Self { priority, ..self }
    }
}

/// The `rate_limits` section of `oauth_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `memory` (per process) or `redis` (shared by replicas).
    pub backend: Backend,
    /// Redis URL for the `redis` backend (`redis://host:port/db`).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_key_prefix: String,
    /// Milliseconds one Redis round trip may take before the backend counts as unreachable.
    pub redis_timeout_ms: u64,
    /// What to do while Redis is unreachable.
    pub on_backend_failure: FailureMode,
    /// A claim whose string value names the tier (e.g. `tier`); checked before scopes. Off when unset.
    pub tier_claim: Option<String>,
    /// Scope → tier; a token with several mapped scopes gets the largest of their tiers.
    #[serde(deserialize_with = "merged_over_default_scopes")]
    pub scope_tiers: BTreeMap<String, String>,
    /// Tier name → limits.
    #[serde(deserialize_with = "merged_over_default_tiers")]
    pub tiers: BTreeMap<String, TierLimits>,
    /// Whose budget a request is charged to.
    pub budget_key: BudgetKey,
}

/// Whose budget a request is charged to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKey {
    /// One budget per user (the token's `sub`), whichever client asks: a user cannot multiply the
    /// tier's limits by registering more clients.
    #[default]
    Subject,
    /// One budget per user and client: one client's runaway script does not starve the user's
    /// others, at the price of a budget per client.
    SubjectAndClient,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            redis_url: None,
            redis_key_prefix: "llamagate".into(),
            redis_timeout_ms: 1000,
            on_backend_failure: FailureMode::Closed,
            tier_claim: None,
            scope_tiers: default_scope_tiers(),
            tiers: default_tiers(),
            budget_key: BudgetKey::default(),
        }
    }
}

fn default_scope_tiers() -> BTreeMap<String, String> {
    [("enterprise_access", "enterprise"), ("premium_access", "premium"), ("basic_access", "basic")]
        .into_iter()
        .map(|(s, t)| (s.to_string(), t.to_string()))
        .collect()
}

/// Paying tiers also go ahead of cheaper ones in a contended engine queue.
fn default_tiers() -> BTreeMap<String, TierLimits> {
    [
        ("free", TierLimits::per_minute(10, 1_000).with_default_max_tokens(256)),
        ("basic", TierLimits::per_minute(50, 10_000).with_priority(1).with_default_max_tokens(1_024)),
        ("premium", TierLimits::per_minute(200, 50_000).with_priority(2).with_default_max_tokens(4_096)),
        ("enterprise", TierLimits::per_minute(1_000, 500_000).with_priority(3)),
    ]
    .into_iter()
    .map(|(name, limits)| (name.to_string(), limits))
    .collect()
}

fn merged_over_default_scopes<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let mut merged = default_scope_tiers();
    merged.extend(BTreeMap::<String, String>::deserialize(d)?);
    Ok(merged)
}

fn merged_over_default_tiers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, TierLimits>, D::Error> {
    let mut merged = default_tiers();
    merged.extend(BTreeMap::<String, TierLimits>::deserialize(d)?);
    Ok(merged)
}

impl RateLimitConfig {
    /// Checks every rule; `default_tier` is `oauth_config.default_user_tier`, which must name a tier.
    pub fn validate(&self, default_tier: &str) -> Result<(), ConfigError> {
        for (name, limits) in &self.tiers {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(ConfigError::invalid(
                    "rate_limits.tiers",
                    format!("tier name `{name}` is not a plain word"),
                    "use e.g. gold",
                ));
            }
            if limits.requests == 0 || limits.tokens == 0 {
                return Err(ConfigError::invalid(
                    "rate_limits.tiers",
                    format!("tier `{name}` allows no requests or no tokens"),
                    "give every tier requests >= 1 and tokens >= 1",
                ));
            }
            if limits.window_seconds == 0 || limits.window_seconds > 86_400 {
                return Err(ConfigError::invalid(
                    "rate_limits.tiers",
                    format!("tier `{name}`: window_seconds must be 1..=86400"),
                    "use 60 for limits per minute",
                ));
            }
        }
        if !self.tiers.contains_key(default_tier) {
            return Err(ConfigError::invalid(
                "default_user_tier",
                format!("`{default_tier}` is not a configured tier"),
                format!("use one of {}", self.tiers.keys().cloned().collect::<Vec<_>>().join(", ")),
            ));
        }
        for (scope, tier) in &self.scope_tiers {
            if scope.is_empty() || !scope.chars().all(is_scope_char) {
                return Err(ConfigError::invalid(
                    "rate_limits.scope_tiers",
                    format!("`{scope}` is not a scope token"),
                    "use one word",
                ));
            }
            if !self.tiers.contains_key(tier) {
                return Err(ConfigError::invalid(
                    "rate_limits.scope_tiers",
                    format!("scope `{scope}` maps to unknown tier `{tier}`"),
                    "define the tier under rate_limits.tiers",
                ));
            }
        }
        if self.tier_claim.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "rate_limits.tier_claim",
                "is empty",
                "name a claim such as tier, or remove the key",
            ));
        }
        if self.redis_timeout_ms == 0 || self.redis_timeout_ms > 10_000 {
            return Err(ConfigError::invalid("rate_limits.redis_timeout_ms", "must be 1..=10000", "use 1000"));
        }
        if self.backend == Backend::Redis {
            let url = self.redis_url.as_deref().unwrap_or("");
            if !url.starts_with("redis://") {
                return Err(ConfigError::invalid(
                    "rate_limits.redis_url",
                    format!("`{url}` is not a redis:// URL (required by backend: redis)"),
                    "set e.g. redis://127.0.0.1:6379/0",
                ));
            }
            if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(['{', '}', ' ']) {
                return Err(ConfigError::invalid(
                    "rate_limits.redis_key_prefix",
                    "is empty or has braces/spaces",
                    "use llamagate",
                ));
            }
        }
        Ok(())
    }

    /// Applies `LLAMA_STACK_OAUTH_RATE_LIMITS__<KEY>` (or the older `…_RATE_LIMITS_<KEY>`) for every
    /// key of the section; `tiers` and `scope_tiers` take JSON objects. The whole `oauth_config`
    /// reads these too ([`crate::OAuthConfig::apply_env_overrides`]); this is the section alone.
    pub fn apply_env_overrides(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        *self = overlay_env(self, &["rate_limits"], &[], env)?.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_merge_over_the_default_tiers() {
        let cfg: RateLimitConfig = yaml_serde::from_str(
            "tiers:\n  burst: {requests: 50, tokens: 100000, window_seconds: 3600, priority: 7}\n  free: {requests: 5, tokens: 500}\n\
             scope_tiers:\n  team_access: burst\n",
        )
        .expect("parse");
        let burst =
            TierLimits { requests: 50, tokens: 100_000, window_seconds: 3600, priority: 7, default_max_tokens: None };
        assert_eq!(cfg.tiers["burst"], burst);
        assert_eq!(cfg.tiers["free"], TierLimits::per_minute(5, 500));
        assert_eq!(cfg.tiers["enterprise"], TierLimits::per_minute(1_000, 500_000).with_priority(3));
        assert_eq!(cfg.scope_tiers["team_access"], "burst");
        assert_eq!(cfg.scope_tiers["premium_access"], "premium");
        assert!(cfg.validate("free").is_ok());
        assert!(yaml_serde::from_str::<RateLimitConfig>("backnd: redis\n").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let key_of = |cfg: &RateLimitConfig, default: &str| match cfg.validate(default) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an error, got {other:?}"),
        };
        let base = RateLimitConfig::default();
        assert_eq!(key_of(&base, "gold"), "default_user_tier");
        let mut c = base.clone();
        c.tiers.insert("zero".into(), TierLimits::per_minute(0, 10));
        assert_eq!(key_of(&c, "free"), "rate_limits.tiers");
        let mut c = base.clone();
        c.scope_tiers.insert("x".into(), "nope".into());
        assert_eq!(key_of(&c, "free"), "rate_limits.scope_tiers");
        let c = RateLimitConfig { backend: Backend::Redis, ..base.clone() };
        assert_eq!(key_of(&c, "free"), "rate_limits.redis_url");
        let c = RateLimitConfig { tier_claim: Some(String::new()), ..base };
        assert_eq!(key_of(&c, "free"), "rate_limits.tier_claim");
    }

    #[test]
    fn env_overrides_set_the_backend() {
        let env = |k: &str| match k {
            "LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND" => Some("redis".to_string()),
            "LLAMA_STACK_OAUTH_RATE_LIMITS_REDIS_URL" => Some("redis://127.0.0.1:6390".to_string()),
            "LLAMA_STACK_OAUTH_RATE_LIMITS_ON_BACKEND_FAILURE" => Some("open".to_string()),
            _ => None,
        };
        let mut cfg = RateLimitConfig::default();
        cfg.apply_env_overrides(&env).expect("overrides");
        assert_eq!((cfg.backend, cfg.on_backend_failure), (Backend::Redis, FailureMode::Open));
        assert!(cfg.validate("free").is_ok());
        let bad = |k: &str| (k == "LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND").then(|| "mysql".to_string());
        let err = cfg.apply_env_overrides(&bad).expect_err("bad backend");
        assert!(err.to_string().starts_with("LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND"), "{err}");
    }
}

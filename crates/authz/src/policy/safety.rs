//! Safety levels: which classifier scores a caller may receive content with.
//!
//! A Llama Guard shield scores content per hazard code (`S1` … `S14`): the probability that the content
//! is unsafe because of that category. A safety level does not speak in codes but in a few named
//! [`ContentCategory`]s — violence, hate, sexual content, illegal and harmful content — so the config
//! maps every code to one of them ([`SafetyConfig::categories`], defaults in [`default_category_map`]),
//! and a named category's score is the sum of its codes' scores (the codes are alternative answers for
//! the first violated category, so their probabilities add up).
//!
//! A level is a table of thresholds (content whose score is above a category's threshold is refused)
//! plus blocked categories (refused as soon as their score is above the small `blocked_threshold`: a
//! blocked category is refused even when the classifier is unsure). Categories a level neither
//! thresholds nor blocks are held to the level's `unlisted_threshold` (0.5 unless configured, where
//! Llama Guard's own verdict flips): deny by default, so a level that forgets a category does not let
//! it through unchecked. Scopes pick the level: the first entry of
//! [`SafetyConfig::scope_levels`] whose scope the token holds, else `default_safety_level`.
//!
//! Defaults (all configurable under `oauth_config.safety`, `default_safety_level` beside it):
//!
//! | level | violence | hate | sexual | blocked | anything else |
//! |---|---|---|---|---|---|
//! | `basic_user` | 0.3 | 0.2 | 0.2 | illegal, harmful | 0.5 |
//! | `premium_user` | 0.5 | 0.4 | 0.4 | illegal | 0.5 (harmful) |
//! | `research_user` | 0.8 | 0.7 | 0.7 | — | 0.5 (illegal, harmful) |
//!
//! [`SafetyPolicy::decide`] is pure: scores and a level in, a [`SafetyDecision`] out. Where it is applied
//! (input before generation, output after) is the server's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::error::ConfigError;
use crate::principal::Scopes;

/// The named categories safety levels speak about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentCategory {
    /// Violent content (Llama Guard S1).
    Violence,
    /// Hateful content (S10).
    Hate,
    /// Sexual content (S12).
    Sexual,
    /// Help with crimes (S2–S4, S8, S9).
    Illegal,
    /// Other harms (S5–S7, S11, S13, S14).
    Harmful,
}

impl ContentCategory {
    /// The name used in config files and refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Violence => "violence",
            Self::Hate => "hate",
            Self::Sexual => "sexual",
            Self::Illegal => "illegal",
            Self::Harmful => "harmful",
        }
    }
}

/// One safety level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyLevel {
    /// Category → the highest score still allowed.
    #[serde(default)]
    pub thresholds: BTreeMap<ContentCategory, f64>,
    /// Categories refused whenever their score exceeds `blocked_threshold`.
    #[serde(default)]
    pub blocked: Vec<ContentCategory>,
    /// The highest score still allowed for a category the level neither thresholds nor blocks.
    #[serde(default = "default_unlisted_threshold")]
    pub unlisted_threshold: f64,
}

/// Llama Guard's own verdict flips at P(unsafe) = 0.5: an unlisted category is held to that.
pub const DEFAULT_UNLISTED_THRESHOLD: f64 = 0.5;

fn default_unlisted_threshold() -> f64 {
    DEFAULT_UNLISTED_THRESHOLD
}

/// One scope → level rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeLevel {
    /// The scope a token must hold.
    pub scope: String,
    /// The level it selects.
    pub level: String,
}

/// The `oauth_config.safety` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Level name → level. Replaces the defaults when given.
    pub levels: BTreeMap<String, SafetyLevel>,
    /// Scope → level, first match wins. Replaces the defaults when given.
    pub scope_levels: Vec<ScopeLevel>,
    /// Llama Guard code → named category, merged over [`default_category_map`].
    #[serde(deserialize_with = "merged_over_default_categories")]
    pub categories: BTreeMap<String, ContentCategory>,
    /// The score above which a blocked category is refused.
    pub blocked_threshold: f64,
}

/// Level names of the defaults.
pub const BASIC_USER: &str = "basic_user";
/// Level names of the defaults.
pub const PREMIUM_USER: &str = "premium_user";
/// Level names of the defaults.
pub const RESEARCH_USER: &str = "research_user";

/// Low, because "blocked" means refused even when the classifier is unsure; above zero, because soft
/// scores give every category some probability.
pub const DEFAULT_BLOCKED_THRESHOLD: f64 = 0.1;

fn level(violence: f64, hate: f64, sexual: f64, blocked: &[ContentCategory]) -> SafetyLevel {
    use ContentCategory::*;
    SafetyLevel {
        thresholds: BTreeMap::from([(Violence, violence), (Hate, hate), (Sexual, sexual)]),
        blocked: blocked.to_vec(),
        unlisted_threshold: DEFAULT_UNLISTED_THRESHOLD,
    }
}

/// The three standard levels.
pub fn default_levels() -> BTreeMap<String, SafetyLevel> {
    use ContentCategory::*;
    BTreeMap::from([
        (BASIC_USER.to_string(), level(0.3, 0.2, 0.2, &[Illegal, Harmful])),
        (PREMIUM_USER.to_string(), level(0.5, 0.4, 0.4, &[Illegal])),
        (RESEARCH_USER.to_string(), level(0.8, 0.7, 0.7, &[])),
    ])
}

/// `research_access` → research_user, then `premium_access` → premium_user.
pub fn default_scope_levels() -> Vec<ScopeLevel> {
    vec![
        ScopeLevel { scope: "research_access".into(), level: RESEARCH_USER.into() },
        ScopeLevel { scope: "premium_access".into(), level: PREMIUM_USER.into() },
    ]
}

/// Every Llama Guard 3 code to the named category closest to its hazard.
pub fn default_category_map() -> BTreeMap<String, ContentCategory> {
    use ContentCategory::*;
    [
        ("S1", Violence), // Violent Crimes
        ("S2", Illegal),  // Non-Violent Crimes
        ("S3", Illegal),  // Sex Crimes
        ("S4", Illegal),  // Child Exploitation
        ("S5", Harmful),  // Defamation
        ("S6", Harmful),  // Specialized Advice
        ("S7", Harmful),  // Privacy
        ("S8", Illegal),  // Intellectual Property
        ("S9", Illegal),  // Indiscriminate Weapons
        ("S10", Hate),    // Hate
        ("S11", Harmful), // Self-Harm
        ("S12", Sexual),  // Sexual Content
        ("S13", Harmful), // Elections
        ("S14", Harmful), // Code Interpreter Abuse
    ]
    .into_iter()
    .map(|(code, category)| (code.to_string(), category))
    .collect()
}

fn merged_over_default_categories<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ContentCategory>, D::Error> {
    let mut map = default_category_map();
    map.extend(BTreeMap::<String, ContentCategory>::deserialize(d)?);
    Ok(map)
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            levels: default_levels(),
            scope_levels: default_scope_levels(),
            categories: default_category_map(),
            blocked_threshold: DEFAULT_BLOCKED_THRESHOLD,
        }
    }
}

fn is_probability(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

impl SafetyConfig {
    /// Checks the tables and that `default_level` is one of the levels.
    pub fn validate(&self, default_level: &str) -> Result<(), ConfigError> {
        for (name, level) in &self.levels {
            if !is_probability(level.unlisted_threshold) {
                return Err(ConfigError::invalid(
                    "safety.levels",
                    format!("level `{name}`: unlisted_threshold {} is not in [0, 1]", level.unlisted_threshold),
                    "use a probability such as 0.5",
                ));
            }
            if let Some((category, t)) = level.thresholds.iter().find(|(_, t)| !is_probability(**t)) {
                return Err(ConfigError::invalid(
                    "safety.levels",
                    format!("level `{name}`: threshold {t} for {} is not in [0, 1]", category.as_str()),
                    "use a probability such as 0.3",
                ));
            }
        }
        let names = || self.levels.keys().cloned().collect::<Vec<_>>().join(", ");
        if !self.levels.contains_key(default_level) {
            return Err(ConfigError::invalid(
                "default_safety_level",
                format!("`{default_level}` is not a configured safety level"),
                format!("use one of {}", names()),
            ));
        }
        if let Some(rule) = self.scope_levels.iter().find(|r| !self.levels.contains_key(&r.level)) {
            return Err(ConfigError::invalid(
                "safety.scope_levels",
                format!("scope `{}` names unknown level `{}`", rule.scope, rule.level),
                format!("use one of {}", names()),
            ));
        }
        if let Some(code) = self.categories.keys().find(|code| !is_guard_code(code)) {
            return Err(ConfigError::invalid(
                "safety.categories",
                format!("`{code}` is not a Llama Guard category code"),
                "use S1 … S14",
            ));
        }
        if !is_probability(self.blocked_threshold) {
            return Err(ConfigError::invalid(
                "safety.blocked_threshold",
                format!("{} is not in [0, 1]", self.blocked_threshold),
                "use e.g. 0.1",
            ));
        }
        Ok(())
    }
}

fn is_guard_code(code: &str) -> bool {
    (1..=14).any(|n| code == format!("S{n}"))
}

/// Why a category refused the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// The score is above the level's threshold for the category.
    Threshold,
    /// The category is blocked at this level and its score is above `blocked_threshold`.
    Blocked,
    /// The level does not name the category and its score is above the level's `unlisted_threshold`.
    Unlisted,
}

/// One violated category.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SafetyViolation {
    /// The category.
    pub category: ContentCategory,
    /// Its score.
    pub score: f64,
    /// The limit it exceeded.
    pub limit: f64,
    /// Threshold or blocked.
    pub kind: ViolationKind,
}

/// The answer for one piece of content at one level.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetyDecision {
    /// True when nothing is violated.
    pub allowed: bool,
    /// The violated categories, in category order.
    pub violated: Vec<SafetyViolation>,
}

impl SafetyDecision {
    /// The violated categories' names, in category order (what a refusal lists).
    pub fn violated_names(&self) -> Vec<&'static str> {
        self.violated.iter().map(|v| v.category.as_str()).collect()
    }
}

/// The compiled safety configuration: levels, the code map and the default level.
#[derive(Clone, Debug)]
pub struct SafetyPolicy {
    config: SafetyConfig,
    default_level: String,
}

impl SafetyPolicy {
    /// Validates and compiles the configuration.
    pub fn new(config: SafetyConfig, default_level: &str) -> Result<Self, ConfigError> {
        config.validate(default_level)?;
        Ok(Self { config, default_level: default_level.to_string() })
    }

    /// The level for a caller's scopes: the first matching `scope_levels` rule, else the default.
    pub fn level_name(&self, scopes: &Scopes) -> &str {
        self.config.scope_levels.iter().find(|r| scopes.contains(&r.scope)).map_or(&self.default_level, |r| &r.level)
    }

    /// A level by name.
    pub fn level(&self, name: &str) -> Option<&SafetyLevel> {
        self.config.levels.get(name)
    }

    /// The level name for a caller: by its scopes, or the default level when there is no token
    /// (authentication off).
    pub fn level_name_for(&self, scopes: Option<&Scopes>) -> &str {
        scopes.map_or(&self.default_level, |scopes| self.level_name(scopes))
    }

    /// The named category a Llama Guard code (`S1` …) counts towards; `None` for an unmapped code.
    pub fn category_of(&self, code: &str) -> Option<ContentCategory> {
        self.config.categories.get(code).copied()
    }

    /// Named-category scores from per-code scores (`("S1", 0.42)`, …); unmapped codes are ignored.
    pub fn category_scores<'a>(
        &self,
        code_scores: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> BTreeMap<ContentCategory, f64> {
        let mut scores = BTreeMap::new();
        for (code, score) in code_scores {
            if let Some(category) = self.config.categories.get(code) {
                *scores.entry(*category).or_insert(0.0) += score;
            }
        }
        scores
    }

    /// Decides per-code scores at `level`.
    pub fn decide<'a>(
        &self,
        code_scores: impl IntoIterator<Item = (&'a str, f64)>,
        level: &SafetyLevel,
    ) -> SafetyDecision {
        decide(&self.category_scores(code_scores), level, self.config.blocked_threshold)
    }
}

/// Decides named-category scores at `level`: a thresholded category is violated when its score is above
/// its threshold, a blocked one when its score is above `blocked_threshold`; a category with both uses
/// the stricter limit, one with neither the level's `unlisted_threshold`. Scores equal to a limit pass.
pub fn decide(scores: &BTreeMap<ContentCategory, f64>, level: &SafetyLevel, blocked_threshold: f64) -> SafetyDecision {
    let mut violated = Vec::new();
    for (&category, &score) in scores {
        let threshold = level.thresholds.get(&category).map(|&t| (t, ViolationKind::Threshold));
        let blocked = level.blocked.contains(&category).then_some((blocked_threshold, ViolationKind::Blocked));
        let (limit, kind) = match (threshold, blocked) {
            (Some(t), Some(b)) => {
                if b.0 <= t.0 {
                    b
                } else {
                    t
                }
            }
            (Some(t), None) => t,
            (None, Some(b)) => b,
            (None, None) => (level.unlisted_threshold, ViolationKind::Unlisted),
        };
        if score > limit {
            violated.push(SafetyViolation { category, score, limit, kind });
        }
    }
    SafetyDecision { allowed: violated.is_empty(), violated }
}

#[cfg(test)]
#[path = "safety_tests.rs"]
mod tests;

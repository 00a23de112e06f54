//! The model permission matrix: which scope unlocks which model.
//!
//! Every served model is registered once at start with its required scope, chosen in this order:
//! `model_scope_overrides[model]` (the operator's explicit override), then the model's own
//! configured `required_scope`, then the default for its family (recognised from the model id).
//! A model with none of these fails registration, so no model is ever served without a scope.
//! Lookups are deny-by-default: an unregistered model is refused, whatever the token says.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::OAuthConfig;
use crate::principal::Scopes;
use crate::principal::is_scope_char;

/// What kind of model it is (for listings and audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelCategory {
    /// General chat/instruct models.
    General,
    /// Code models.
    Code,
    /// Safety classifiers (Llama Guard, Prompt Guard) used as shields.
    Safety,
    /// Small models for tests and local use.
    Small,
    /// Experimental models.
    Experimental,
}

/// How much harm misuse could do, which the operator may use to pick tiers and safety levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Small or safety models.
    Low,
    /// Mid-size general models.
    Medium,
    /// Large or experimental models.
    High,
}

/// Where a model's required scope came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeSource {
    /// `oauth_config.model_scope_overrides`.
    Override,
    /// The model's own `required_scope`.
    ModelConfig,
    /// The family default.
    FamilyDefault,
}

/// One model's row in the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPolicy {
    /// Model id as served.
    pub model_id: String,
    /// The scope a token needs to use the model.
    pub required_scope: String,
    /// Kind of model.
    pub category: ModelCategory,
    /// Risk level.
    pub risk: RiskLevel,
    /// Where `required_scope` came from.
    pub scope_source: ScopeSource,
}

/// A family's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFamily {
    /// Default required scope.
    pub scope: &'static str,
    /// Category.
    pub category: ModelCategory,
    /// Risk level.
    pub risk: RiskLevel,
}

/// The scope that unlocks safety classifiers: Llama Guard models and the shields that run on them.
pub const SAFETY_SCOPE: &str = "model_safety";

const fn family(scope: &'static str, category: ModelCategory, risk: RiskLevel) -> ModelFamily {
    ModelFamily { scope, category, risk }
}

/// Recognises a model family from an id such as `meta-llama/Llama-3.1-8B-Instruct`,
/// `Llama3.2-1B-Instruct`, `llama3.2:3b`, `Llama-Guard-3-1B` or `SmolLM2-135M-Instruct-Q8_0`.
pub fn family_of(model_id: &str) -> Option<ModelFamily> {
    use ModelCategory::*;
    use RiskLevel::*;
    let lower = model_id.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let tokens: Vec<&str> = name.split(['-', '_', ':', ' ']).filter(|t| !t.is_empty()).collect();
    let has = |t: &str| tokens.contains(&t);
    if name.contains("guard") {
        return Some(family(SAFETY_SCOPE, Safety, Low));
    }
    if name.contains("codellama") || (has("code") && name.contains("llama")) {
        return Some(family("model_code_llama", Code, Medium));
    }
    if name.contains("smollm2") && has("135m") {
        return Some(family("model_smollm2_135m", Small, Low));
    }
    if has("experimental") {
        return Some(family("model_experimental", Experimental, High));
    }
    if !name.contains("llama") {
        return None;
    }
    let version = tokens.iter().map(|t| t.strip_prefix("llama").unwrap_or(t)).find(|t| t.starts_with("3."));
    let sizes = ["8b", "70b", "1b", "3b"];
    let size = tokens.iter().find(|t| sizes.contains(t)).copied();
    match (version?, size?) {
        ("3.1", "8b") => Some(family("model_llama_3_1_8b", General, Medium)),
        ("3.1", "70b") => Some(family("model_llama_3_1_70b", General, High)),
        ("3.2", "1b") => Some(family("model_llama_3_2_1b", General, Low)),
        ("3.2", "3b") => Some(family("model_llama_3_2_3b", General, Low)),
        _ => None,
    }
}

/// Why a model could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// No override, no configured scope and no known family.
    #[error("model `{0}` has no required scope: set its required_scope or oauth_config.model_scope_overrides")]
    NoScope(String),
    /// The scope is not one RFC 6749 scope token.
    #[error("model `{model}`: `{scope}` is not a single scope token")]
    BadScope {
        /// The model.
        model: String,
        /// The offending scope.
        scope: String,
    },
}

/// The answer to "may this caller use this model?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// The model is not registered (deny by default).
    UnknownModel,
    /// The caller lacks `required_scope` (403 `insufficient_scope` with this scope).
    MissingScope {
        /// The scope to put in the challenge.
        required_scope: String,
    },
}

impl Decision {
    /// True only for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// Registered models and their required scopes.
#[derive(Debug, Clone, Default)]
pub struct PermissionMatrix {
    enforce: bool,
    overrides: BTreeMap<String, String>,
    models: BTreeMap<String, ModelPolicy>,
}

impl PermissionMatrix {
    /// An empty matrix; with `enforce` false every registered model is allowed (unknown ones never).
    pub fn new(enforce: bool, overrides: BTreeMap<String, String>) -> Self {
        Self { enforce, overrides, models: BTreeMap::new() }
    }

    /// An empty matrix from `enforce_model_permissions` and `model_scope_overrides`.
    pub fn from_config(cfg: &OAuthConfig) -> Self {
        Self::new(cfg.enforce_model_permissions, cfg.model_scope_overrides.clone())
    }

    /// Registers a served model with its own configured `required_scope`, if any.
    pub fn register(
        &mut self,
        model_id: &str,
        configured_scope: Option<&str>,
    ) -> Result<&ModelPolicy, PermissionError> {
        let fam = family_of(model_id);
        let (scope, source) = if let Some(s) = self.overrides.get(model_id) {
            (s.clone(), ScopeSource::Override)
        } else if let Some(s) = configured_scope {
            (s.to_string(), ScopeSource::ModelConfig)
        } else if let Some(f) = fam {
            (f.scope.to_string(), ScopeSource::FamilyDefault)
        } else {
            return Err(PermissionError::NoScope(model_id.into()));
        };
        if scope.is_empty() || !scope.chars().all(is_scope_char) {
            return Err(PermissionError::BadScope { model: model_id.into(), scope });
        }
        let policy = ModelPolicy {
            model_id: model_id.into(),
            required_scope: scope,
            category: fam.map_or(ModelCategory::General, |f| f.category),
            risk: fam.map_or(RiskLevel::Medium, |f| f.risk),
            scope_source: source,
        };
        self.models.insert(model_id.into(), policy);
        Ok(&self.models[model_id])
    }

    /// May a caller with `scopes` use `model_id`?
    pub fn check(&self, model_id: &str, scopes: &Scopes) -> Decision {
        match self.models.get(model_id) {
            None => Decision::UnknownModel,
            Some(_) if !self.enforce => Decision::Allow,
            Some(p) if scopes.contains(&p.required_scope) => Decision::Allow,
            Some(p) => Decision::MissingScope { required_scope: p.required_scope.clone() },
        }
    }

    /// The models a caller may use, for `GET /v1/models`.
    pub fn visible_models<'a>(&'a self, scopes: &'a Scopes) -> impl Iterator<Item = &'a ModelPolicy> + 'a {
        self.models.values().filter(move |p| self.check(&p.model_id, scopes).is_allowed())
    }

    /// A registered model's row.
    pub fn policy(&self, model_id: &str) -> Option<&ModelPolicy> {
        self.models.get(model_id)
    }

    /// Every required scope, for RFC 9728 `scopes_supported`.
    pub fn scopes(&self) -> BTreeSet<String> {
        self.models.values().map(|p| p.required_scope.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_real_ids() {
        let scope = |id: &str| family_of(id).map(|f| f.scope);
        assert_eq!(scope("meta-llama/Llama-3.1-8B-Instruct"), Some("model_llama_3_1_8b"));
        assert_eq!(scope("Llama3.1-8B-Instruct"), Some("model_llama_3_1_8b"));
        assert_eq!(scope("meta-llama/Meta-Llama-3.1-70B-Instruct"), Some("model_llama_3_1_70b"));
        assert_eq!(scope("Llama-3.2-1B-Instruct-Q4_K_M.gguf"), Some("model_llama_3_2_1b"));
        assert_eq!(scope("llama3.2:3b"), Some("model_llama_3_2_3b"));
        assert_eq!(scope("meta-llama/Llama-Guard-3-1B"), Some("model_safety"));
        assert_eq!(scope("Llama-Prompt-Guard-2-86M"), Some("model_safety"));
        assert_eq!(scope("codellama/CodeLlama-7b-Instruct-hf"), Some("model_code_llama"));
        assert_eq!(scope("HuggingFaceTB/SmolLM2-135M-Instruct"), Some("model_smollm2_135m"));
        assert_eq!(scope("smollm2-135m-instruct-q8_0"), Some("model_smollm2_135m"));
        assert_eq!(scope("llama-4-experimental"), Some("model_experimental"));
        assert_eq!(scope("Llama-3.2-11B-Vision"), None);
        assert_eq!(scope("Llama-3.1-405B"), None);
        assert_eq!(scope("SmolLM2-360M"), None);
        assert_eq!(scope("gpt-4o"), None);
        assert_eq!(family_of("Llama-3.1-70B").map(|f| f.risk), Some(RiskLevel::High));
    }

    #[test]
    fn precedence_and_deny_by_default() {
        let overrides = BTreeMap::from([("Llama3.1-8B-Instruct".to_string(), "premium_8b".to_string())]);
        let mut m = PermissionMatrix::new(true, overrides);
        let p = m.register("Llama3.1-8B-Instruct", Some("ignored")).expect("override");
        assert_eq!((p.required_scope.as_str(), p.scope_source), ("premium_8b", ScopeSource::Override));
        let p = m.register("Llama3.2-1B-Instruct", Some("model_cheap")).expect("configured");
        assert_eq!((p.required_scope.as_str(), p.scope_source), ("model_cheap", ScopeSource::ModelConfig));
        let p = m.register("SmolLM2-135M-Instruct", None).expect("family");
        assert_eq!((p.required_scope.as_str(), p.category), ("model_smollm2_135m", ModelCategory::Small));
        assert_eq!(
            m.register("tiny-llama3", None).expect_err("no scope"),
            PermissionError::NoScope("tiny-llama3".into())
        );
        assert!(matches!(m.register("x", Some("a b")), Err(PermissionError::BadScope { .. })));
        assert!(m.register("tiny-llama3", Some("model_test")).is_ok());

        let caller = Scopes::parse("model_smollm2_135m model_cheap_extra premium");
        assert_eq!(m.check("SmolLM2-135M-Instruct", &caller), Decision::Allow);
        assert_eq!(
            m.check("Llama3.2-1B-Instruct", &caller),
            Decision::MissingScope { required_scope: "model_cheap".into() },
            "model_cheap_extra must not match model_cheap"
        );
        assert_eq!(
            m.check("Llama3.1-8B-Instruct", &Scopes::parse("model_llama_3_1_8b")),
            Decision::MissingScope { required_scope: "premium_8b".into() }
        );
        assert_eq!(m.check("unregistered", &caller), Decision::UnknownModel);
        let visible: Vec<&str> = m.visible_models(&caller).map(|p| p.model_id.as_str()).collect();
        assert_eq!(visible, ["SmolLM2-135M-Instruct"]);
        assert!(m.scopes().contains("premium_8b"));

        let mut open = PermissionMatrix::new(false, BTreeMap::new());
        open.register("SmolLM2-135M-Instruct", None).expect("family");
        assert!(open.check("SmolLM2-135M-Instruct", &Scopes::default()).is_allowed());
        assert_eq!(open.check("other", &Scopes::default()), Decision::UnknownModel);
    }
}

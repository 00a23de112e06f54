//! [`ShieldRegistry`]: the Llama Guard shields this process serves, each on one of the served models.
//!
//! Built once at start from the `shields:` config, after the models are loaded, and never changed: a
//! shield is a [`LlamaGuard`] (its prompt's categories) plus the shared [`ServedModel`] that runs it, so
//! several shields with different exclusions can share one guard model. Scoring is blocking compute
//! and runs on the blocking pool, never on the async workers.
//!
//! [`verdict`] turns scores into a yes/no for `run-shield` and `moderations` (P(unsafe) above 0.5); chat
//! and completions decide the same scores with the caller's safety level (`gate::safety`). A shield with a
//! `scores_file` answers from a TEST-ONLY `GuardDouble` instead of its model; that stand-in exists only
//! in builds with the `test-guard` feature, so a release binary refuses such a config at start.

use std::sync::Arc;

use anyhow::Context;
use llamagate_authz::{SafetyDecision, SafetyPolicy};
use llamagate_engine::{ChatMessage, GuardCategory, GuardScores, LlamaGuard};
use tokio::sync::Semaphore;

#[cfg(feature = "test-guard")]
use crate::backends::guard_double::{self, GuardDouble};
use crate::backends::registry::{ModelRegistry, ServedModel};
use crate::config::ShieldConfig;
use crate::http::error::ApiError;

/// The safety provider's id, as shields report in `provider_id` (Llama Stack's starter distribution
/// uses the same name).
pub const SAFETY_PROVIDER_ID: &str = "llama-guard";

/// The safety provider's type, as `GET /v1/inspect/routes` reports it.
pub const SAFETY_PROVIDER_TYPE: &str = "inline::llama-guard";

/// What a blocked user is told (Llama Stack's wording).
pub const REFUSAL_MESSAGE: &str = "I can't answer that. Can I help with something else?";

/// Scorings that may run at once, over all shields. Each one is a prefill outside the scheduler with
/// its own KV cache, so without a bound a burst of moderation requests would start as many forward
/// passes (and caches) as there are requests; the rest wait here, and a client that gives up while
/// waiting costs nothing.
const MAX_CONCURRENT_SCORINGS: usize = 2;

/// One served shield.
#[derive(Debug)]
pub struct ServedShield {
    /// The id clients send as `shield_id`.
    pub id: String,
    /// The guard model.
    pub model: Arc<ServedModel>,
    /// The prompt's categories.
    pub guard: LlamaGuard,
    /// TEST ONLY: fixed scores instead of the guard model (`shields[].scores_file`).
    #[cfg(feature = "test-guard")]
    double: Option<GuardDouble>,
    /// Shared by every shield: bounds concurrent scorings.
    permits: Arc<Semaphore>,
}

impl ServedShield {
    /// Tokens of the guard prompt for `conversation`: what scoring it reads, and what a caller's budget
    /// is charged for it.
    pub fn prompt_tokens(&self, conversation: &[ChatMessage]) -> Result<u64, ApiError> {
        Ok(self.guard.prompt_ids(self.engine()?, conversation)?.len() as u64)
    }

    /// The guard model's engine (a shield's model is always local: checked when the shield is made).
    fn engine(&self) -> Result<&llamagate_engine::Model, ApiError> {
        self.model.backend.local().ok_or_else(|| ApiError::Internal(format!("shield `{}` has no local model", self.id)))
    }

    /// Scores the last turn of `conversation` on the blocking pool, for the caller of `prefix_scope`
    /// ([`crate::gate::caller::Caller::prefix_scope`]): the conversation part of the guard prompt is
    /// remembered for that caller alone, so its next check of a longer conversation (the next sentence of
    /// a streamed answer) prefills only what is new.
    pub async fn score(
        self: &Arc<Self>,
        conversation: Vec<ChatMessage>,
        prefix_scope: u64,
    ) -> Result<GuardScores, ApiError> {
        #[cfg(feature = "test-guard")]
        if let Some(double) = &self.double {
            return Ok(double.score(self.guard.categories(), &conversation));
        }
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let shield = self.clone();
        let started = std::time::Instant::now();
        let scores = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Ok::<_, ApiError>(shield.guard.score_for(shield.engine()?, &conversation, Some(prefix_scope))?)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("shield scoring task failed: {e}")))??;
        tracing::info!(
            shield = %self.id,
            unsafe_probability = scores.unsafe_probability,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shield scored"
        );
        Ok(scores)
    }
}

/// All served shields, in config order.
#[derive(Debug, Default)]
pub struct ShieldRegistry {
    shields: Vec<Arc<ServedShield>>,
}

impl ShieldRegistry {
    /// Attaches every configured shield to its (already loaded) guard model.
    pub fn new(configs: &[ShieldConfig], models: &ModelRegistry) -> anyhow::Result<Self> {
        let mut shields = Vec::with_capacity(configs.len());
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_SCORINGS));
        for (i, config) in configs.iter().enumerate() {
            let model = models.get(&config.model).map_err(|_| {
                anyhow::anyhow!("shields[{i}].model: `{}` is not the id of a served model", config.model)
            })?;
            anyhow::ensure!(
                model.backend.local().is_some(),
                "shields[{i}].model: `{}` is served by a remote provider; a guard model must run in this process",
                config.model
            );
            let guard = LlamaGuard::new(&config.model, &config.excluded_categories)
                .with_context(|| format!("shields[{i}].excluded_categories"))?;
            #[cfg(feature = "test-guard")]
            let double = match &config.scores_file {
                Some(path) => Some(GuardDouble::load(
                    path,
                    &format!("shields[{i}].scores_file"),
                    std::env::var(guard_double::ALLOW_ENV).ok(),
                )?),
                None => None,
            };
            #[cfg(not(feature = "test-guard"))]
            if config.scores_file.is_some() {
                anyhow::bail!(
                    "shields[{i}].scores_file: this build has no test guard double (it is compiled in only with \
                     the `test-guard` cargo feature, for tests)"
                );
            }
            tracing::info!(shield = %config.id, model = %config.model, categories = guard.categories().len(), "shield");
            let permits = permits.clone();
            shields.push(Arc::new(ServedShield {
                id: config.id.clone(),
                model,
                guard,
                #[cfg(feature = "test-guard")]
                double,
                permits,
            }));
        }
        Ok(Self { shields })
    }

    /// Every shield, in config order.
    pub fn all(&self) -> &[Arc<ServedShield>] {
        &self.shields
    }

    /// The shield with this id.
    pub fn get(&self, id: &str) -> Option<Arc<ServedShield>> {
        self.shields.iter().find(|s| s.id == id).cloned()
    }
}

/// A shield's answer for one caller: the caller's safety level decides the scores, as it does for chat.
#[derive(Debug)]
pub struct Verdict {
    /// The level the scores were decided at.
    pub level: String,
    /// The decision, with each violated named category, its score and the limit it passed.
    pub decision: SafetyDecision,
    /// For each violated named category, the Llama Guard category that contributed most to its score:
    /// what `violation_type` names.
    pub codes: Vec<GuardCategory>,
}

/// Decides `scores` at `level` (a level of `levels`, e.g. the caller's).
pub fn verdict(levels: &SafetyPolicy, level: &str, scores: &GuardScores) -> Result<Verdict, ApiError> {
    let table =
        levels.level(level).ok_or_else(|| ApiError::Internal(format!("safety level `{level}` is not configured")))?;
    let decision = levels.decide(scores.categories.iter().map(|c| (c.category.code, c.probability)), table);
    let codes = decision
        .violated
        .iter()
        .filter_map(|violation| {
            scores
                .categories
                .iter()
                .filter(|c| levels.category_of(c.category.code) == Some(violation.category))
                .max_by(|a, b| a.probability.total_cmp(&b.probability))
                .map(|c| c.category)
        })
        .collect();
    Ok(Verdict { level: level.to_string(), decision, codes })
}

#[cfg(test)]
mod tests {
    use llamagate_engine::{CategoryScore, category_by_code};

    use super::*;

    fn scores(unsafe_probability: f64, given: &[(&str, f64)]) -> GuardScores {
        let categories = given
            .iter()
            .map(|(code, p)| CategoryScore {
                category: *category_by_code(code).unwrap(),
                given_unsafe: *p,
                probability: unsafe_probability * p,
            })
            .collect();
        GuardScores { unsafe_probability, categories }
    }

    fn levels() -> SafetyPolicy {
        SafetyPolicy::new(llamagate_authz::SafetyConfig::default(), "basic_user").unwrap()
    }

    /// The same borderline scores pass at one level and are flagged at another; the code named is the
    /// largest contributor to each violated category.
    #[test]
    fn the_level_decides_and_the_largest_contributor_is_named() {
        let borderline = scores(0.6, &[("S1", 0.6), ("S10", 0.1), ("S2", 0.2), ("S3", 0.1)]);
        let basic = verdict(&levels(), "basic_user", &borderline).unwrap();
        assert!(!basic.decision.allowed);
        assert_eq!(basic.decision.violated_names(), ["violence", "illegal"]);
        assert_eq!(basic.codes.iter().map(|c| c.code).collect::<Vec<_>>(), ["S1", "S2"]);
        let research = verdict(&levels(), "research_user", &borderline).unwrap();
        assert!(research.decision.allowed, "{research:?}");
        assert!(research.codes.is_empty());
        assert!(verdict(&levels(), "no_such_level", &borderline).is_err());
    }
}

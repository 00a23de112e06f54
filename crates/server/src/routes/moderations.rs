//! `POST /v1/moderations` (docs/reference/llama-stack-api.md §a.2 row 13, §e.2, §e.5): OpenAI-compatible moderation through a
//! Llama Guard shield, with real scores.
//!
//! `model` picks the shield by its guard model's id (`provider_resource_id`), as Llama Stack does;
//! without it the first configured shield is used. Unlike Llama Stack, which judges all inputs as one
//! conversation and always returns one result, each input is judged on its own as a single user turn
//! and gets its own result, as OpenAI's API does. `category_scores` are the joint probabilities
//! P(unsafe) × P(category | unsafe) for every Llama Guard category (0 for excluded ones), never the
//! reference's constant 1.0.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use llamagate_engine::{CATEGORIES, ChatMessage, GuardScores};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::backends::shields::{REFUSAL_MESSAGE, ServedShield, Verdict, verdict};
use crate::gate::caller::Caller;
use crate::gate::limits::Admission;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::json_body::JsonBody;
use crate::state::AppState;

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ModerationRequest {
    /// One text or several, each classified separately.
    pub input: ModerationInput,
    /// The guard model's id; absent: the default (first) shield.
    #[serde(default)]
    pub model: Option<String>,
}

/// `input`: a string or a list of strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModerationInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// The response body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModerationObject {
    /// `modr-<uuid4>`.
    pub id: String,
    /// The guard model's id.
    pub model: String,
    /// One per input, in order.
    pub results: Vec<ModerationResult>,
}

/// One input's result, OpenAI's shape plus Llama Stack's `user_message` and `metadata`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModerationResult {
    /// Whether the input is blocked.
    pub flagged: bool,
    /// Every category name → whether it is violated.
    pub categories: BTreeMap<&'static str, bool>,
    /// Every category name → `["text"]` when violated, else `[]`.
    pub category_applied_input_types: BTreeMap<&'static str, Vec<&'static str>>,
    /// Every category name → P(unsafe because of it), in [0, 1].
    pub category_scores: BTreeMap<&'static str, f64>,
    /// The refusal text when flagged, else null.
    #[schema(required = true)]
    pub user_message: Option<&'static str>,
    /// `{"violation_type": [codes]}` when flagged, else `{}`.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl ModerationResult {
    /// The result for `scores` decided at the caller's level (`verdict`): a Llama Guard category is
    /// marked when it is the largest contributor to a violated named category; `metadata` names the
    /// level and the violated categories with their scores and limits.
    fn new(verdict: &Verdict, scores: &GuardScores) -> Self {
        let is_violated = |name: &str| verdict.codes.iter().any(|c| c.name == name);
        let flagged = !verdict.decision.allowed;
        let mut metadata = Map::new();
        if flagged {
            metadata.insert("violation_type".into(), json!(verdict.codes.iter().map(|c| c.code).collect::<Vec<_>>()));
            metadata.insert("safety_level".into(), json!(verdict.level));
            let violated: Vec<Value> = verdict
                .decision
                .violated
                .iter()
                .map(|v| json!({"category": v.category.as_str(), "score": v.score, "limit": v.limit}))
                .collect();
            metadata.insert("violated_categories".into(), json!(violated));
        }
        Self {
            flagged,
            categories: CATEGORIES.iter().map(|c| (c.name, is_violated(c.name))).collect(),
            category_applied_input_types: CATEGORIES
                .iter()
                .map(|c| (c.name, if is_violated(c.name) { vec!["text"] } else { Vec::new() }))
                .collect(),
            category_scores: CATEGORIES.iter().map(|c| (c.name, scores.probability(c.code))).collect(),
            user_message: flagged.then_some(REFUSAL_MESSAGE),
            metadata,
        }
    }
}

/// Classifies each input with the selected shield.
#[utoipa::path(post, path = "/v1/moderations", operation_id = "create_moderation", tag = "safety",
    request_body = ModerationRequest,
    responses(
        (status = 200, description = "One result per input", body = ModerationObject),
        (status = 400, description = "Malformed body, or no shield for `model`", body = ErrorEnvelope),
        (status = 413, description = "Body over `server.max_body_bytes`", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<ModerationRequest>,
) -> Result<Json<ModerationObject>, ApiError> {
    let inputs = match request.input {
        ModerationInput::One(text) => vec![text],
        ModerationInput::Many(texts) if texts.is_empty() => {
            return Err(ApiError::BadRequest("input must hold at least one string".into()));
        }
        ModerationInput::Many(texts) => texts,
    };
    caller.authorize_shields()?;
    let shield = select_shield(state.shields.all(), request.model.as_deref())?;
    // One request from the caller's tier before the inputs are rendered and counted.
    let admission = Admission::open(state.limits.as_deref(), &caller).await?;
    let conversations: Vec<Vec<ChatMessage>> =
        inputs.into_iter().map(|text| vec![ChatMessage::new("user", text)]).collect();
    let mut tokens = 0;
    for conversation in &conversations {
        tokens += shield.prompt_tokens(conversation)?;
    }
    // Decided at the caller's safety level, as chat is.
    let level = caller.safety_level().unwrap_or_else(|| state.safety_levels.level_name_for(None));
    let scoring = async {
        let mut results = Vec::with_capacity(conversations.len());
        for conversation in conversations {
            let scores = shield.score(conversation, caller.prefix_scope()).await?;
            results.push(ModerationResult::new(&verdict(&state.safety_levels, level, &scores)?, &scores));
        }
        Ok(results)
    };
    let results = admission.metered(&caller, tokens, scoring).await?;
    Ok(Json(ModerationObject { id: format!("modr-{}", uuid4()), model: shield.model.id.clone(), results }))
}

/// The shield whose guard model is `model`, or the default one (docs/reference/llama-stack-api.md §e.2 errors).
fn select_shield(
    shields: &[std::sync::Arc<ServedShield>],
    model: Option<&str>,
) -> Result<std::sync::Arc<ServedShield>, ApiError> {
    let Some(model) = model else {
        return shields.first().cloned().ok_or_else(|| {
            ApiError::BadRequest(
                "No moderation model specified and no default_shield_id configured. Configure a shield under \
                 `shields:` in the stack config."
                    .into(),
            )
        });
    };
    let matching: Vec<_> = shields.iter().filter(|s| s.model.id == model).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let mut choices: Vec<String> = Vec::new();
            for shield in shields {
                let choice = format!("'{}'", shield.model.id);
                if !choices.contains(&choice) {
                    choices.push(choice);
                }
            }
            Err(ApiError::BadRequest(format!(
                "No shield associated with provider_resource id {model}: choose from [{}]",
                choices.join(", ")
            )))
        }
        several => {
            let ids: Vec<String> = several.iter().map(|s| format!("'{}'", s.id)).collect();
            Err(ApiError::BadRequest(format!(
                "Multiple shields associated with provider_resource id {model}: [{}]; choose one with run-shield",
                ids.join(", ")
            )))
        }
    }
}

/// A random (version 4) UUID in its usual spelling, for `modr-` ids.
fn uuid4() -> String {
    let bits = (rand::random::<u128>() & !(0xfu128 << 76) | (0x4u128 << 76)) & !(0x3u128 << 62) | (0x2u128 << 62);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use llamagate_engine::{CategoryScore, category_by_code};

    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(uuid4(), id);
    }

    #[test]
    fn results_carry_every_category_with_real_scores() {
        let categories = vec![
            CategoryScore { category: *category_by_code("S1").unwrap(), given_unsafe: 0.75, probability: 0.6 },
            CategoryScore { category: *category_by_code("S10").unwrap(), given_unsafe: 0.25, probability: 0.2 },
        ];
        let levels = llamagate_authz::SafetyPolicy::new(Default::default(), "basic_user").unwrap();
        let scores = GuardScores { unsafe_probability: 0.8, categories };
        // Violence 0.6 is over premium_user's 0.5 and under research_user's 0.8.
        let flagged = ModerationResult::new(&verdict(&levels, "premium_user", &scores).unwrap(), &scores);
        assert!(flagged.flagged);
        assert_eq!(flagged.categories.len(), 14);
        assert!(flagged.categories["Violent Crimes"] && !flagged.categories["Hate"]);
        assert_eq!(flagged.category_scores["Hate"], 0.2);
        assert_eq!(flagged.category_scores["Elections"], 0.0);
        assert_eq!(flagged.category_applied_input_types["Violent Crimes"], ["text"]);
        assert_eq!(flagged.metadata["violation_type"], json!(["S1"]));
        assert_eq!(flagged.metadata["safety_level"], "premium_user");
        assert_eq!(
            flagged.metadata["violated_categories"],
            json!([{"category": "violence", "score": 0.6, "limit": 0.5}])
        );
        assert_eq!(flagged.user_message, Some(REFUSAL_MESSAGE));

        let safe = ModerationResult::new(&verdict(&levels, "research_user", &scores).unwrap(), &scores);
        assert!(!safe.flagged && safe.categories.values().all(|v| !v));
        assert!(safe.category_applied_input_types.values().all(Vec::is_empty));
        assert!((safe.category_scores["Violent Crimes"] - 0.6).abs() < 1e-12, "scores are reported also when safe");
        assert!(safe.metadata.is_empty() && safe.user_message.is_none());
    }
}

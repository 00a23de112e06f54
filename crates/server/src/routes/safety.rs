//! `POST /v1/safety/run-shield` (docs/reference/llama-stack-api.md §a.2 row 12, §e.4–e.5): one conversation through a Llama
//! Guard shield.
//!
//! The conversation is normalised as Llama Stack does (first turn relabelled `user`, a leading double
//! user turn collapsed) and its last turn judged. The answer is `{"violation": null}` or a violation at
//! level `error` with Llama Stack's refusal text and the violated codes as one comma-joined
//! `violation_type`; `metadata` also carries the scores behind the decision, so callers can see how
//! close a pass was.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use llamagate_engine::{GuardScores, normalize_conversation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::chat_types::ChatMessageIn;
use crate::backends::shields::{REFUSAL_MESSAGE, Verdict, verdict};
use crate::gate::caller::Caller;
use crate::gate::limits::Admission;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::json_body::JsonBody;
use crate::state::AppState;

/// The request body; other keys (the old `params`) are ignored, as Llama Stack does.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RunShieldRequest {
    /// The shield to run.
    pub shield_id: String,
    /// The conversation, OpenAI message shapes; its last turn is judged.
    pub messages: Vec<ChatMessageIn>,
}

/// The response body.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunShieldResponse {
    /// `null` when the content passes.
    #[schema(required = true)]
    pub violation: Option<Violation>,
}

/// Llama Stack's `SafetyViolation`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Violation {
    /// Always `error`: the content is blocked.
    pub violation_level: &'static str,
    /// What to show the user.
    #[schema(required = true)]
    pub user_message: Option<&'static str>,
    /// `violation_type` (codes, comma-joined), plus `unsafe_score` and `category_scores` (by code).
    pub metadata: Value,
}

/// Runs a shield over a conversation.
#[utoipa::path(post, path = "/v1/safety/run-shield", operation_id = "run_shield", tag = "safety",
    request_body = RunShieldRequest,
    responses(
        (status = 200, description = "`violation` is null when the last turn passes", body = RunShieldResponse),
        (status = 400, description = "Malformed body, or a shield this server does not serve", body = ErrorEnvelope),
        (status = 413, description = "Body over `server.max_body_bytes`", body = ErrorEnvelope),
    ))]
pub async fn run_shield(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<RunShieldRequest>,
) -> Result<Json<RunShieldResponse>, ApiError> {
    if request.shield_id.is_empty() {
        return Err(ApiError::BadRequest("shield_id must not be empty".into()));
    }
    caller.authorize_shields()?;
    let shield = state.shields.get(&request.shield_id).ok_or(ApiError::ShieldNotServed(request.shield_id))?;
    if request.messages.is_empty() {
        return Err(ApiError::BadRequest("Messages must not be empty".into()));
    }
    // One request from the caller's tier before the conversation is rendered and counted.
    let admission = Admission::open(state.limits.as_deref(), &caller).await?;
    let messages = request.messages.iter().enumerate().map(|(i, m)| m.to_engine(i)).collect::<Result<Vec<_>, _>>()?;
    let conversation = normalize_conversation(messages)?;
    let tokens = shield.prompt_tokens(&conversation)?;
    let scores = admission.metered(&caller, tokens, shield.score(conversation, caller.prefix_scope())).await?;
    // Decided at the caller's safety level, as chat is.
    let level = caller.safety_level().unwrap_or_else(|| state.safety_levels.level_name_for(None));
    let verdict = verdict(&state.safety_levels, level, &scores)?;
    Ok(Json(RunShieldResponse { violation: violation(&verdict, &scores) }))
}

/// The violation in Llama Stack's shape, or `None` when the content passes at the caller's level.
/// `metadata` says why: the level, the violated categories with their scores and limits, and the raw
/// per-code scores.
fn violation(verdict: &Verdict, scores: &GuardScores) -> Option<Violation> {
    if verdict.decision.allowed {
        return None;
    }
    let codes: Vec<&str> = verdict.codes.iter().map(|c| c.code).collect();
    let category_scores: BTreeMap<&str, f64> =
        scores.categories.iter().map(|c| (c.category.code, c.probability)).collect();
    let violated: Vec<Value> = verdict
        .decision
        .violated
        .iter()
        .map(|v| json!({"category": v.category.as_str(), "score": v.score, "limit": v.limit}))
        .collect();
    Some(Violation {
        violation_level: "error",
        user_message: Some(REFUSAL_MESSAGE),
        metadata: json!({
            "violation_type": codes.join(","),
            "safety_level": verdict.level,
            "violated_categories": violated,
            "unsafe_score": scores.unsafe_probability,
            "category_scores": category_scores,
        }),
    })
}

#[cfg(test)]
mod tests {
    use llamagate_engine::{CategoryScore, category_by_code};

    use super::*;

    fn scores(unsafe_probability: f64) -> GuardScores {
        let score = |code: &str, given_unsafe: f64| CategoryScore {
            category: *category_by_code(code).unwrap(),
            given_unsafe,
            probability: unsafe_probability * given_unsafe,
        };
        GuardScores { unsafe_probability, categories: vec![score("S1", 0.25), score("S10", 0.75)] }
    }

    fn levels() -> llamagate_authz::SafetyPolicy {
        llamagate_authz::SafetyPolicy::new(Default::default(), "basic_user").unwrap()
    }

    #[test]
    fn a_violation_has_llama_stacks_shape_with_the_level_and_the_scores() {
        let passing = verdict(&levels(), "basic_user", &scores(0.1)).unwrap();
        assert!(violation(&passing, &scores(0.1)).is_none());
        let flagged = verdict(&levels(), "basic_user", &scores(0.8)).unwrap();
        let body = serde_json::to_value(RunShieldResponse { violation: violation(&flagged, &scores(0.8)) }).unwrap();
        assert_eq!(
            body,
            json!({"violation": {
                "violation_level": "error",
                "user_message": "I can't answer that. Can I help with something else?",
                "metadata": {
                    "violation_type": "S10",
                    "safety_level": "basic_user",
                    "violated_categories": [
                        {"category": "hate", "score": 0.6000000000000001, "limit": 0.2},
                    ],
                    "unsafe_score": 0.8,
                    "category_scores": {"S1": 0.2, "S10": 0.6000000000000001},
                },
            }})
        );
        let passing = serde_json::to_value(RunShieldResponse { violation: None }).unwrap();
        assert_eq!(passing, json!({"violation": null}));
    }
}

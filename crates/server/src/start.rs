//! Starting a generation: the steps every generation route shares once its prompt is tokenized
//! (design, "The path of one chat completion", steps 6–8), in their order — reserve the caller's
//! budget, check the input against its safety level, then submit to the engine with the output
//! guarded. What comes back is handed to [`crate::sse::respond`].

use llamagate_engine::{ChatMessage, GenerationRequest, Model};

use crate::admission::Admission;
use crate::app::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::safety_gate::{GuardedGeneration, SafetyChecks};

/// Admits `prepared` for `caller` on `model_id` and starts it. `conversation` is what content safety
/// judges (a raw completion prompt counts as one user turn).
pub async fn generation(
    state: &AppState,
    caller: &Caller,
    model_id: &str,
    engine: &Model,
    prepared: GenerationRequest,
    conversation: &[ChatMessage],
) -> Result<(GuardedGeneration, Admission), ApiError> {
    let prompt_tokens = prepared.prompt_ids.len();
    let report = caller.usage_report(state.metrics.clone(), model_id, prompt_tokens as u64);
    let mut admission = Admission::reserve(state.limits.as_deref(), caller.principal(), &prepared).await?;
    let safety = SafetyChecks::new(state.safety.as_ref(), caller);
    safety.check_input(conversation, &mut admission).await?;
    let admission = admission.reporting_to(report);
    let generation = safety.guard_output(engine.submit(prepared)?, conversation, prompt_tokens);
    Ok((generation, admission))
}

//! The path of one generation after its body is parsed, in order, in one function: [`generate`].
//!
//! The layers in front ([`crate::http::router`]) have already authenticated the caller and computed
//! its [`Caller`]; chat and completions parse their bodies into an [`Ask`] and a response shape, call
//! [`generate`], and return what it answers. Every step can refuse, and a refusal before the engine
//! starts costs nothing it did not use: a caller over its limit gets its 429 before a guard pass, and
//! input refused by content safety is charged its prompt but no generation.

use axum::response::Response;
use llamagate_engine::{GenerateParams, GenerationOutput, Usage};
use serde::Serialize;

use crate::backends::prompt::Prompt;
use crate::backends::provider_data::ProviderData;
use crate::backends::registry::{Prepared, Submission};
use crate::gate::caller::Caller;
use crate::gate::limits::Admission;
use crate::gate::safety::SafetyChecks;
use crate::gate::settlement::Settlement;
use crate::http::error::ApiError;
use crate::http::sse::{self, Choices, ChunkFormat};
use crate::state::AppState;

/// What a route asks the pipeline for.
#[derive(Debug)]
pub struct Ask {
    /// The model id the client sent.
    pub model: String,
    /// The inputs, as the route received them: one for chat, one or more for a completions batch.
    pub prompts: Vec<Prompt>,
    /// Choices per prompt (`n`, already bounded by the route): they share the prompt's prefill.
    pub n: usize,
    /// Sampling, stop strings, `max_tokens`; `priority` is set here from the caller's tier.
    pub params: GenerateParams,
    /// Whether the answer is a stream of server-sent events.
    pub stream: bool,
    /// `X-LlamaStack-Provider-Data`: a caller's own key for a remote provider that allows it.
    pub provider_data: ProviderData,
}

/// Runs one generation for `caller`: authorize → resolve the model → prepare → reserve → input
/// safety → submit → output safety → answer, then settle (budget, metrics, audit) when it ends.
/// Each prompt is answered with `n` choices, numbered `prompt × n + choice` (OpenAI's order); each
/// choice's output is checked on its own. `format` shapes stream chunks and `plain` the whole answer
/// (the outputs in choice order, and the usage: each prompt once, every choice's tokens).
pub async fn generate<F: ChunkFormat, T: Serialize>(
    state: &AppState,
    caller: Caller,
    ask: Ask,
    format: F,
    plain: impl FnOnce(Vec<GenerationOutput>, Usage) -> T,
) -> Result<Response, ApiError> {
    // Authorize: the caller's scopes must unlock the model (403), and a model it may not see is
    // answered like an unknown one (404).
    caller.note_model(&ask.model);
    caller.note_prompt(|| ask.prompts.iter().map(Prompt::audit_text).collect::<Vec<_>>().join("\n"));
    caller.authorize_model(&ask.model)?;
    // Resolve the model; `n > 1` needs one that forks after a shared prefill.
    let served = state.registry.get(&ask.model)?;
    served.backend.check_choices(ask.n)?;
    // Admit: one request from the caller's tier before any work is done for it (429 when spent).
    let mut admission = Admission::open(state.limits.as_deref(), &caller).await?;
    // Prepare: render and tokenize (off the async workers: a prompt can be a megabyte), cap
    // `max_tokens` to the context; the queue order is the tier's, and the caller reuses only its own
    // remembered prompts unless the model shares them. A prompt too long for the model is charged
    // the tokens it was counted at.
    let prefix_scope = if served.share_prefix_cache { 0 } else { caller.prefix_scope() };
    let max_tokens = ask.params.max_tokens.or_else(|| caller.default_max_tokens());
    let params = GenerateParams { priority: caller.priority(), prefix_scope, max_tokens, ..ask.params };
    let mut prepared = Vec::with_capacity(ask.prompts.len());
    for prompt in ask.prompts {
        match served.prepare_blocking(prompt, params.clone()).await {
            Ok(one) => prepared.push(one),
            Err(refusal) => {
                if let Some(counted) = refusal.prompt_tokens() {
                    admission.charge_refused(&caller, counted).await;
                    // The closing record says what the refusal was counted at, as it does for an answer.
                    if let Some(notes) = caller.notes() {
                        notes.set_refused_usage(counted);
                    }
                }
                return Err(refusal);
            }
        }
    }
    let (mut requests, conversations): (Vec<Submission>, Vec<_>) =
        prepared.into_iter().map(|Prepared { request, conversation }| (request, conversation)).unzip();
    for request in &mut requests {
        request.answer_whole(!ask.stream);
    }
    let prompt_tokens: Vec<usize> = requests.iter().map(Submission::prompt_tokens).collect();
    // Reserve the counted `prompt + n × max_tokens` tokens of every prompt from the caller's tier (429 when spent).
    admission.reserve_generation(&caller, &requests, ask.n).await?;
    // Input safety at the caller's level (400 `content_policy_violation`), each prompt.
    let safety = SafetyChecks::new(state.safety.as_ref(), &caller);
    for conversation in &conversations {
        safety.check_input(conversation, &mut admission).await?;
    }
    // Submit to the backend, each choice's output held back until the output check passes it.
    let mut generations = Vec::with_capacity(requests.len() * ask.n);
    for ((request, conversation), prompt_tokens) in requests.into_iter().zip(&conversations).zip(&prompt_tokens) {
        let streams = served.backend.submit(request, ask.n, caller.notes().cloned(), &ask.provider_data).await?;
        generations.extend(streams.into_iter().map(|s| safety.guard_output(s, conversation, *prompt_tokens)));
    }
    // Settle: the real counts go to the budget, the metrics and the audit record when the answer ends.
    let prompt_total = prompt_tokens.iter().sum::<usize>() as u64;
    let settlement = Settlement::new(admission, &caller, state.metrics.clone(), &ask.model, prompt_total);
    // A failure after the answer started is this server's own (500, its detail not shown) for the
    // engine, and the provider's (502, naming the provider and what happened, never its address) for a
    // remote model.
    let failure = if served.backend.local().is_some() { ApiError::Internal } else { ApiError::BadGateway };
    let choices = Choices { generations, per_prompt: ask.n };
    sse::respond(choices, settlement, ask.stream, format, plain, failure).await
}

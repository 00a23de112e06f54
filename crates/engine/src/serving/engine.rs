//! [`Model`]: a loaded model with its tokenizer, chat template and scheduler — the engine's front door.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{EngineError, Result};
use crate::llama::kv_cache_type::KvCacheType;
use crate::llama::model::{KvCache, LlamaModel, SequenceBatch, logits_rows};
use crate::load::device::DeviceChoice;
use crate::load::quantize::QuantizeOnLoad;
use crate::load::source::ModelSource;
use crate::serving::constraint::{GrammarVocabulary, OutputConstraint, OutputFormat};
use crate::serving::generation::{GenerationRequest, GenerationStream};
use crate::serving::logprobs::MAX_TOP_LOGPROBS;
use crate::serving::prefix_cache::PrefixCache;
use crate::serving::sampling::SamplingParams;
use crate::serving::scheduler::{SchedulerConfig, SchedulerHandle, SchedulerStats};
use crate::serving::scoring::ScoringSession;
use crate::text::caller_text;
use crate::text::chat_template::{ChatMessage, ChatTemplate};
use crate::text::tokenizer::Tokenizer;
use crate::text::tool_calls::ToolCallFormat;
use crate::text::tool_prompt::ChatTools;

/// How to load and run a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Where the weights live and the forward pass runs.
    pub device: DeviceChoice,
    /// Batching, queue and KV-memory limits.
    pub scheduler: SchedulerConfig,
    /// Caps the context window below the model's trained length (saves KV memory).
    pub max_context: Option<usize>,
    /// The KV cache's element type in the CPU pass: f16 (default, llama.cpp's numbers) or q8_0 (0.56×
    /// the memory and faster long contexts, logits a few hundredths off).
    pub kv_cache_type: KvCacheType,
    /// Quantize full-precision (F16, BF16, F32) weight matrices to this format once at load: less memory
    /// and the 8-bit kernels' speed, at llama.cpp's Q8_0 rounding. `None` (default): as stored.
    pub quantize: Option<QuantizeOnLoad>,
    /// How the model writes tool calls; `None` (default): what its chat template asks for
    /// ([`ToolCallFormat::detect`]), the Llama 3.1 JSON format for a template without tools.
    pub tool_call_format: Option<ToolCallFormat>,
}

/// What a caller wants generated, before the engine has checked it against the model.
#[derive(Debug, Clone, Default)]
pub struct GenerateParams {
    /// How each next token is chosen.
    pub sampling: SamplingParams,
    /// `None`: as many as the context allows.
    pub max_tokens: Option<usize>,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// See [`GenerationRequest::priority`]; 0 (the default) is the lowest.
    pub priority: u8,
    /// See [`GenerationRequest::prefix_scope`]; 0 by default.
    pub prefix_scope: u64,
    /// See [`GenerationRequest::logprobs`]; `None` by default.
    pub logprobs: Option<usize>,
    /// The shape the output must have (JSON, or JSON matching a schema), enforced while sampling;
    /// `None` (the default): free text.
    pub output_format: Option<OutputFormat>,
}

/// Facts about a loaded model for listings and limits.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Where it was loaded from, as given.
    pub source: String,
    /// The model's own name (GGUF `general.name`), if it has one.
    pub name: Option<String>,
    /// The context window the engine serves (the trained length, or `max_context` below it).
    pub context_length: usize,
    /// Token ids run from 0 to this (exclusive).
    pub vocab_size: usize,
    /// Weights in the model, counted from its shape (for listings).
    pub parameters: usize,
    /// Bytes the weights take in memory as loaded (each shared tensor once): what the file's format, a
    /// 16-bit checkpoint kept 16-bit, or `quantize` on load costs.
    pub weight_bytes: usize,
}

/// A model ready to serve requests. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Model {
    weights: Arc<LlamaModel>,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    /// The configured tool-call format, over the template's.
    tool_call_format: Option<ToolCallFormat>,
    scheduler: SchedulerHandle,
    info: ModelInfo,
    /// The fixed beginnings of scoring prompts (a guard's instructions and category list), prefilled
    /// once and copied into every later session that starts with them. Only prompts' fixed parts are
    /// kept — never callers' text — so reuse reveals nothing about what anyone else asked.
    fixed_prefixes: Mutex<PrefixCache>,
    /// Scoring-prompt positions copied from `fixed_prefixes` instead of computed, for benchmarks and tests.
    reused_scoring_positions: AtomicU64,
    /// The vocabulary as the grammar engine sees it, built by the first structured-output request.
    grammar: OnceLock<std::result::Result<GrammarVocabulary, String>>,
}

/// A scoring prompt's start that only one caller's later prompts may reuse: see
/// [`Model::scoring_session_reusing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnPrefix {
    /// The caller's scope, as [`crate::GenerationRequest::prefix_scope`]: entries serve only their scope,
    /// so no caller learns from timing what another sent. Scope 0 is shared with the fixed parts.
    pub scope: u64,
    /// How many leading tokens of the prompt to remember (its conversation, not the closing text).
    pub keep: usize,
}

/// Positions of remembered scoring prefixes kept, least recently used evicted first: a guard preamble is a
/// few hundred tokens, a stream's conversation so far up to a few thousand. The memory is the KV cache's
/// per position (about 23 KB for the bundled model, 32 KB for a Llama-Guard-3-1B).
const FIXED_PREFIX_POSITIONS: usize = 4096;

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Model {
    /// Loads a model from a GGUF file, a checkpoint directory or a hub id, and starts its scheduler.
    pub fn load(source: &ModelSource, options: &ModelOptions) -> Result<Self> {
        let device = options.device.open()?;
        let (model, tokenizer, template, name, source_text) = match source {
            ModelSource::Gguf(path) => {
                let g = crate::load::gguf::load(path, &device, options.quantize)?;
                (g.model, g.tokenizer, g.chat_template, g.name, path.display().to_string())
            }
            ModelSource::HfDir(dir) => {
                let h = crate::load::hf::load(dir, &device, options.quantize)?;
                (h.model, h.tokenizer, h.chat_template, None, dir.display().to_string())
            }
            ModelSource::Hub { repo, revision } => {
                let dir = crate::load::source::resolve_hub(repo, revision.as_deref())?;
                let h = crate::load::hf::load(&dir, &device, options.quantize)?;
                (h.model, h.tokenizer, h.chat_template, Some(repo.clone()), repo.clone())
            }
        };
        let mut model = model;
        model.set_kv_cache_type(options.kv_cache_type)?;
        let template =
            template.map(|src| ChatTemplate::new(&src, tokenizer.bos_token(), tokenizer.eos_token())).transpose()?;
        let hp = model.hparams();
        let context_length = options.max_context.map_or(hp.context_length, |m| m.min(hp.context_length));
        let parameters = parameter_count(hp);
        let weight_bytes = model.weight_bytes();
        tracing::info!(source = %source_text, parameters, weight_bytes, "model weights loaded");
        let info = ModelInfo {
            source: source_text,
            name,
            context_length,
            vocab_size: hp.vocab_size,
            parameters,
            weight_bytes,
        };
        let weights = Arc::new(model);
        let tokenizer = Arc::new(tokenizer);
        let scheduler = SchedulerHandle::spawn(weights.clone(), tokenizer.clone(), options.scheduler)?;
        let fixed_prefixes = Mutex::new(PrefixCache::new(FIXED_PREFIX_POSITIONS));
        let reused_scoring_positions = AtomicU64::new(0);
        let grammar = OnceLock::new();
        let tool_call_format = options.tool_call_format;
        Ok(Self {
            weights,
            tokenizer,
            template,
            tool_call_format,
            scheduler,
            info,
            fixed_prefixes,
            reused_scoring_positions,
            grammar,
        })
    }

    /// Scoring-prompt positions copied from a remembered fixed part (a guard preamble) rather than
    /// computed, since the model was loaded: what [`Model::scoring_session_reusing`] saved.
    pub fn reused_scoring_positions(&self) -> u64 {
        self.reused_scoring_positions.load(Ordering::Relaxed)
    }

    /// Live scheduler counters (batch size, tokens generated).
    pub fn stats(&self) -> &SchedulerStats {
        self.scheduler.stats()
    }

    /// The same counters, shared, for a reader that keeps them (the server's metrics).
    pub fn shared_stats(&self) -> Arc<SchedulerStats> {
        self.scheduler.shared_stats()
    }

    /// Bytes of finished sequences' KV pages waiting for the next sequence (kept rather than freed, up
    /// to the scheduler's KV budget plus its prefix cache, so resident memory does not swing with the
    /// load): for memory reports and tests.
    pub fn freed_kv_page_bytes(&self) -> usize {
        self.weights.freed_kv_page_bytes()
    }

    /// Bytes of KV cache one position of one sequence takes: the unit of the scheduler's memory budget
    /// ([`SchedulerConfig::kv_budget_bytes`]).
    pub fn kv_bytes_per_position(&self) -> usize {
        self.weights.kv_bytes_per_position()
    }

    /// Facts for listings.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Renders a conversation with the model's chat template, ready for the assistant's reply.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::InvalidRequest("this model has no chat template; use completions".into()))?;
        template.render(messages, true)
    }

    /// The ids of a conversation rendered with the model's chat template, ready for the assistant's
    /// reply: the template writes the control tokens, and every message's content stays text even
    /// when it spells one (`<|im_end|>` in a message is seven ordinary tokens, not an end of turn).
    /// BOS leads when the model asks for it ([`Tokenizer::with_prompt_bos`]).
    pub fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        super::prompt_tokenizer::chat_ids(self.template.as_ref(), &self.tokenizer, messages, None, None)
    }

    /// [`Model::tokenize_chat`] with tools offered (and a call primed when `tools.primed` names one):
    /// the template shows them when it knows tools, otherwise the conversation is rewritten to show
    /// them in [`Model::tool_call_format`]. With `tools.required`, the function to call is chosen first
    /// ([`super::tool_choice`]), recorded in `required.chosen`, and primed.
    pub fn tokenize_chat_with_tools(&self, messages: &[ChatMessage], tools: &ChatTools) -> Result<Vec<u32>> {
        let format = Some(self.tool_call_format());
        let ids = |tools: &ChatTools| {
            super::prompt_tokenizer::chat_ids(self.template.as_ref(), &self.tokenizer, messages, Some(tools), format)
        };
        let Some(required) = tools.required.as_ref().filter(|_| tools.primed.is_none()) else {
            return ids(tools);
        };
        let prompt = ids(tools)?;
        let format = self.tool_call_format();
        let openings = required
            .names
            .iter()
            .map(|name| Ok((name.clone(), self.tokenizer.encode_text(&format.primer(name))?)))
            .collect::<Result<Vec<_>>>()?;
        let longest = openings.iter().map(|(_, tokens)| tokens.len()).max().unwrap_or(0);
        let mut session = self.scoring_session(&prompt, longest)?;
        let name = super::tool_choice::most_likely_call(&mut session, &openings)?;
        let primed = ChatTools { primed: Some(name.clone()), required: None, ..tools.clone() };
        let _ = required.chosen.set(name);
        ids(&primed)
    }

    /// How this model writes tool calls: the configured format, else its template's
    /// ([`ToolCallFormat::detect`]).
    pub fn tool_call_format(&self) -> ToolCallFormat {
        self.tool_call_format.or_else(|| self.template.as_ref().map(ChatTemplate::tool_call_format)).unwrap_or_default()
    }

    /// The ids of `before` + `text` + `after`, where only the server-written `before` and `after` may
    /// produce control tokens (the guard's own prompt format around a caller's conversation).
    pub fn tokenize_around(&self, before: &str, text: &str, after: &str) -> Result<Vec<u32>> {
        let ids = caller_text::tokenize_around(&self.tokenizer, before, text, after)?;
        Ok(self.tokenizer.with_prompt_bos(ids))
    }

    /// Exact token ids of `text` (special-token strings included), as the prompt will be counted: the
    /// raw-prompt mode of completions, where the caller writes the whole prompt format. BOS leads when
    /// the model asks for it, as llama.cpp adds it ([`Tokenizer::with_prompt_bos`]).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.with_prompt_bos(self.tokenizer.encode(text)?))
    }

    /// Checks a prompt and parameters against the model: the prompt must leave room for at least one
    /// token, and `max_tokens` is capped by what the context has left.
    pub fn prepare(&self, prompt_ids: Vec<u32>, params: GenerateParams) -> Result<GenerationRequest> {
        params.sampling.validate()?;
        if let Some(&(bad, _)) = params.sampling.logit_bias.iter().find(|(id, _)| *id as usize >= self.info.vocab_size)
        {
            return Err(EngineError::InvalidRequest(format!(
                "logit_bias names token id {bad}, outside the vocabulary (size {})",
                self.info.vocab_size
            )));
        }
        if let Some(n) = params.logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
            return Err(EngineError::InvalidRequest(format!(
                "top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}; got {n}"
            )));
        }
        if prompt_ids.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        // Caller-supplied ids (legacy completions accept token prompts) must index the embedding table.
        let vocab = self.info.vocab_size;
        if let Some(bad) = prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let context = self.info.context_length;
        if prompt_ids.len() >= context {
            return Err(EngineError::PromptTooLong { prompt_tokens: prompt_ids.len(), context_length: context });
        }
        let room = context - prompt_ids.len();
        let max_tokens = match params.max_tokens {
            Some(0) => return Err(EngineError::InvalidRequest("max_tokens must be at least 1".into())),
            Some(n) => n.min(room),
            None => room,
        };
        Ok(GenerationRequest {
            prompt_ids,
            sampling: params.sampling,
            max_tokens,
            stop: params.stop,
            priority: params.priority,
            prefix_scope: params.prefix_scope,
            logprobs: params.logprobs,
            constraint: params.output_format.as_ref().map(|format| self.output_constraint(format)).transpose()?,
        })
    }

    /// The grammar state for a structured output (the vocabulary is handed to the grammar engine once).
    fn output_constraint(&self, format: &OutputFormat) -> Result<OutputConstraint> {
        let vocabulary = self
            .grammar
            .get_or_init(|| GrammarVocabulary::new(&self.tokenizer, self.info.vocab_size).map_err(|e| e.to_string()));
        match vocabulary {
            Ok(vocabulary) => vocabulary.constraint(format),
            Err(e) => {
                Err(EngineError::InvalidRequest(format!("structured output is not available for this model: {e}")))
            }
        }
    }

    /// Starts a generation; events arrive on the returned stream as tokens are produced.
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream> {
        self.scheduler.submit(request)
    }

    /// Starts `n` choices of one generation that share one prefill of the prompt (OpenAI's `n`): one
    /// stream per choice, in order, each sampled with its own seed ([`SamplingParams::for_choice`]).
    pub fn submit_choices(&self, request: GenerationRequest, n: usize) -> Result<Vec<GenerationStream>> {
        self.scheduler.submit_choices(request, n)
    }

    /// Logits at every position of `ids` (teacher forcing), outside the scheduler. For scoring and
    /// reference tests; generation goes through [`Model::submit`].
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        if ids.is_empty() || ids.len() > self.info.context_length {
            return Err(EngineError::InvalidRequest(format!(
                "scoring needs 1..={} tokens, got {}",
                self.info.context_length,
                ids.len()
            )));
        }
        let mut cache: KvCache = self.weights.new_cache(ids.len())?;
        let mut rows = Vec::with_capacity(ids.len());
        // Same chunking as prefill, so scoring long inputs stays within bounded memory.
        for chunk in ids.chunks(512) {
            let mut batch = [SequenceBatch { tokens: chunk, cache: &mut cache, all_logits: true }];
            let out = self.weights.forward(&mut batch)?;
            rows.extend(logits_rows(&out[0])?);
        }
        Ok(rows)
    }

    /// Prefills `prompt_ids` outside the scheduler for scoring forced continuations of up to
    /// `max_continuation` tokens (Llama Guard reads probabilities, it does not sample).
    pub fn scoring_session(&self, prompt_ids: &[u32], max_continuation: usize) -> Result<ScoringSession> {
        self.check_scoring_prompt(prompt_ids, max_continuation)?;
        ScoringSession::new(self.weights.clone(), prompt_ids, max_continuation)
    }

    /// What a scoring prompt must satisfy: non-empty, within the vocabulary, room for the continuation.
    fn check_scoring_prompt(&self, prompt_ids: &[u32], max_continuation: usize) -> Result<()> {
        let vocab = self.info.vocab_size;
        if let Some(bad) = prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        if prompt_ids.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        let context = self.info.context_length;
        if prompt_ids.len() + max_continuation > context {
            return Err(EngineError::PromptTooLong { prompt_tokens: prompt_ids.len(), context_length: context });
        }
        Ok(())
    }

    /// [`Model::scoring_session`] for a prompt whose first `fixed_len` tokens are the same for every
    /// call (a guard's instructions and category list): those positions are computed once and copied
    /// into later sessions, so each check prefills only what follows them. With `own`, the prompt's first
    /// `own.keep` tokens (the conversation so far, before the closing instructions) are also remembered
    /// for that caller's scope only, and a later prompt of the same scope that extends them (the next
    /// output check of one streamed answer) copies them too. The logits are the same as without the
    /// copies (a prefill in steps of two or more tokens sums in a fresh prefill's order).
    pub fn scoring_session_reusing(
        &self,
        prompt_ids: &[u32],
        fixed_len: usize,
        max_continuation: usize,
        own: Option<OwnPrefix>,
    ) -> Result<ScoringSession> {
        let fixed = &prompt_ids[..fixed_len.min(prompt_ids.len().saturating_sub(2))];
        if fixed.is_empty() && own.is_none() {
            return self.scoring_session(prompt_ids, max_continuation);
        }
        let capacity = prompt_ids.len() + max_continuation;
        self.check_scoring_prompt(prompt_ids, max_continuation)?;
        let mut prefixes = self.fixed_prefixes.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up with the whole prompt: the lookup leaves the last two tokens to compute. The caller's
        // own earlier prompt first; the fixed part when that covers more.
        let mut found = own.and_then(|o| prefixes.lookup(o.scope, prompt_ids, capacity));
        if !fixed.is_empty() && found.as_ref().is_none_or(|(n, _)| *n < fixed.len()) {
            let shared = prefixes.lookup(0, prompt_ids, capacity).filter(|(n, _)| *n == fixed.len());
            found = shared.or(found);
        }
        drop(prefixes);
        let (cache, done) = match found {
            Some((reused, cache)) => {
                self.reused_scoring_positions.fetch_add(reused as u64, Ordering::Relaxed);
                (cache, reused)
            }
            None if !fixed.is_empty() => {
                let (cache, done) = ScoringSession::prefill_part(&self.weights, fixed, capacity)?;
                self.fixed_prefixes.lock().unwrap_or_else(|e| e.into_inner()).insert(0, fixed, &cache);
                (cache, done)
            }
            None => (self.weights.new_cache(capacity)?, 0),
        };
        let session = ScoringSession::resume(self.weights.clone(), cache, done, prompt_ids)?;
        if let Some(own) = own.filter(|o| o.keep > fixed.len() && o.keep <= prompt_ids.len()) {
            let mut prefixes = self.fixed_prefixes.lock().unwrap_or_else(|e| e.into_inner());
            prefixes.insert(own.scope, &prompt_ids[..own.keep], session.cache());
        }
        Ok(session)
    }
}

fn parameter_count(hp: &crate::llama::hparams::LlamaHparams) -> usize {
    let d = hp.hidden_size;
    let q = hp.num_heads * hp.head_dim;
    let kv = hp.num_kv_heads * hp.head_dim;
    let per_layer = d * q * 2 + d * kv * 2 + 3 * d * hp.intermediate_size + 2 * d;
    let head = if hp.tie_word_embeddings { 0 } else { hp.vocab_size * d };
    hp.vocab_size * d + hp.num_layers * per_layer + d + head
}

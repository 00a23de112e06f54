//! [`ModelRegistry`]: the models this process serves, by the id clients send, each behind a
//! [`Backend`].
//!
//! Built once at start from the config and never changed afterwards, so lookups need no lock; each
//! [`ServedModel`] shares its backend — today the engine [`Model`] in this process, whose scheduler lets
//! concurrent requests run together. The pipeline talks to a backend only through [`Backend::prepare`]
//! and [`Backend::submit`], so another kind (a remote OpenAI-compatible server) is one more variant,
//! not a change to the gate.

use std::sync::Arc;

use anyhow::Context;
use llamagate_engine::{
    ChatMessage, GenerateParams, GenerationRequest, GenerationStream, Model, ModelOptions, ModelSource,
};

use crate::config::providers::InferencePlan;
use crate::http::error::ApiError;

/// The provider name clients see in `custom_metadata.provider_id`: the models run in this process.
pub const PROVIDER_ID: &str = "llamagate";

/// The provider's type, as `GET /v1/providers` and `GET /v1/inspect/routes` report it.
pub const PROVIDER_TYPE: &str = "inline::llamagate";

/// What runs a served model's generations.
#[derive(Debug)]
pub enum Backend {
    /// The llamagate engine, in this process.
    Local(Model),
}

/// A generation's input as the route received it.
#[derive(Debug)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// A raw prompt (legacy completions): no template.
    Text(String),
    /// A raw prompt already tokenized by the caller.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// The prompt as text for the audit trail (`audit.record_prompts`): a conversation as one
    /// `role: content` line per turn, token ids by their count only.
    pub fn audit_text(&self) -> String {
        match self {
            Self::Chat(messages) => {
                messages.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n")
            }
            Self::Text(text) => text.clone(),
            Self::Tokens(ids) => format!("[{} token ids]", ids.len()),
        }
    }
}

/// A generation ready to submit, and the conversation content safety judges (for a raw prompt, the
/// prompt as one user turn).
#[derive(Debug)]
pub struct Prepared {
    /// The engine's request: prompt tokens, capped `max_tokens`, sampling.
    pub request: GenerationRequest,
    /// What the input check judges and the output check judges the reply against.
    pub conversation: Vec<ChatMessage>,
}

impl Backend {
    /// The longest context a request may use.
    pub fn context_length(&self) -> usize {
        match self {
            Self::Local(model) => model.info().context_length,
        }
    }

    /// The engine model, for what only runs in this process (Llama Guard scoring).
    pub fn local(&self) -> &Model {
        match self {
            Self::Local(model) => model,
        }
    }

    /// Renders and tokenizes `prompt` and checks `params` against the model (context, `max_tokens`).
    pub fn prepare(&self, prompt: Prompt, params: GenerateParams) -> Result<Prepared, ApiError> {
        let Self::Local(model) = self;
        let (prompt_ids, conversation) = match prompt {
            Prompt::Chat(messages) => (model.tokenize_chat(&messages)?, messages),
            Prompt::Text(text) => (model.tokenize(&text)?, vec![ChatMessage::new("user", text)]),
            Prompt::Tokens(ids) => {
                let text = model.tokenizer().decode(&ids);
                (ids, vec![ChatMessage::new("user", text)])
            }
        };
        Ok(Prepared { request: model.prepare(prompt_ids, params)?, conversation })
    }

    /// Starts the generation; dropping the stream cancels it.
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream, ApiError> {
        let Self::Local(model) = self;
        Ok(model.submit(request)?)
    }
}

/// One model as served: its backend plus what listings and authorization need to know about it.
#[derive(Debug)]
pub struct ServedModel {
    /// The id clients use (may contain `/`).
    pub id: String,
    /// Where the weights came from, as clients may see it (`provider_resource_id`): a hub id as given,
    /// a local file or directory by its name alone — where the server keeps its files is nobody's
    /// business but the operator's.
    pub source: String,
    /// When the model was loaded, as `created` in listings.
    pub created: u64,
    /// What runs it.
    pub backend: Backend,
    /// Whether callers may reuse each other's remembered prompts (`models[].share_prefix_cache`).
    pub share_prefix_cache: bool,
}

impl ServedModel {
    /// [`Backend::prepare`] on a blocking-pool thread: rendering and tokenizing grow with the prompt
    /// (up to `server.max_body_bytes`), and must not hold up the async workers that serve everyone else.
    pub async fn prepare_blocking(
        self: &Arc<Self>,
        prompt: Prompt,
        params: GenerateParams,
    ) -> Result<Prepared, ApiError> {
        let served = Arc::clone(self);
        tokio::task::spawn_blocking(move || served.backend.prepare(prompt, params))
            .await
            .map_err(|e| ApiError::Internal(format!("preparing the prompt failed: {e}")))?
    }
}

/// All served models, in config order.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: Vec<Arc<ServedModel>>,
}

impl ModelRegistry {
    /// Loads every configured model; a model that fails to load stops the start with its id named.
    pub fn load(plan: &InferencePlan) -> anyhow::Result<Self> {
        let mut models = Vec::with_capacity(plan.local.len() + plan.remote.len());
        for (key, config) in &plan.local {
            let started = std::time::Instant::now();
            let source = ModelSource::parse(&config.source)
                .with_context(|| format!("{key}.source: cannot use {}", config.source))?;
            let options = ModelOptions {
                max_context: config.context_length,
                scheduler: config.scheduler(),
                kv_cache_type: config.kv_cache_type.unwrap_or_default(),
                ..Default::default()
            };
            let engine = Model::load(&source, &options)
                .with_context(|| format!("{key} ({}): cannot load {}", config.id, config.source))?;
            tracing::info!(
                model = %config.id,
                context_length = engine.info().context_length,
                max_batch = options.scheduler.max_batch,
                queue_capacity = options.scheduler.queue_capacity,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "model loaded"
            );
            models.push(Arc::new(ServedModel {
                id: config.id.clone(),
                source: public_source(&source, &config.source),
                created: loaded_at(),
                backend: Backend::Local(engine),
                share_prefix_cache: config.share_prefix_cache,
            }));
        }
        Ok(Self { models })
    }

    /// Every model, in config order.
    pub fn all(&self) -> &[Arc<ServedModel>] {
        &self.models
    }

    /// The model with this id, or the 404 clients expect.
    pub fn get(&self, id: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.models.iter().find(|m| m.id == id).cloned().ok_or_else(|| ApiError::ModelNotFound(id.to_string()))
    }
}

/// Seconds since the Unix epoch, reported as the model's `created`.
fn loaded_at() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What of a model's `source` is shown to clients: a hub id as configured, a path's last component.
fn public_source(source: &ModelSource, configured: &str) -> String {
    match source {
        ModelSource::Hub { .. } => configured.to_string(),
        _ => std::path::Path::new(configured)
            .file_name()
            .map_or_else(|| configured.to_string(), |name| name.to_string_lossy().into_owned()),
    }
}

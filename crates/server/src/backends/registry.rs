//! [`ModelRegistry`]: the models this process serves, by the id clients send, each behind a
//! [`Backend`].
//!
//! Built once at start from the config and never changed afterwards, so lookups need no lock; each
//! [`ServedModel`] shares its backend — the engine [`Model`] in this process, whose scheduler lets
//! concurrent requests run together, or a [`RemoteModel`] on a remote OpenAI-compatible provider. The
//! pipeline talks to a backend only through [`Backend::prepare`] and [`Backend::submit`], and both kinds
//! answer with the engine's [`GenerationStream`], so the gate is the same for both.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use llamagate_engine::{
    ChatMessage, GenerateParams, GenerationRequest, GenerationStream, Model, ModelOptions, ModelSource,
};

use crate::backends::prompt::Prompt;
use crate::backends::provider_data::ProviderData;
use crate::backends::remote::wire::RemoteRequest;
use crate::backends::remote::{ProviderRuntime, RemoteModel};
use crate::config::providers::InferencePlan;
use crate::gate::audit_notes::AuditNotes;
use crate::gate::metrics::Metrics;
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
    /// A remote OpenAI-compatible provider.
    Remote(RemoteModel),
}

/// A generation ready to submit, for its backend's kind.
#[derive(Debug)]
pub enum Submission {
    /// The engine's request: prompt tokens, capped `max_tokens`, sampling.
    Local(GenerationRequest),
    /// A remote provider's request: the input, sampling, `max_tokens` and the prompt's estimate.
    Remote(RemoteRequest),
}

impl Submission {
    /// The prompt's tokens: exact for the engine and for a remote model with a tokenizer, a conservative
    /// estimate for other remote models.
    pub fn prompt_tokens(&self) -> usize {
        match self {
            Self::Local(request) => request.prompt_ids.len(),
            Self::Remote(request) => request.prompt_estimate,
        }
    }

    /// Asks a remote provider for a whole answer instead of a stream when `whole` (the client asked
    /// for no stream); the engine streams either way.
    pub fn answer_whole(&mut self, whole: bool) {
        if let Self::Remote(request) = self {
            request.stream = !whole;
        }
    }

    /// The most tokens the generation may produce.
    pub fn max_tokens(&self) -> usize {
        match self {
            Self::Local(request) => request.max_tokens,
            Self::Remote(request) => request.max_tokens,
        }
    }
}

/// A generation ready to submit, and the conversation content safety judges (for a raw prompt, the
/// prompt as one user turn).
#[derive(Debug)]
pub struct Prepared {
    /// The backend's request.
    pub request: Submission,
    /// What the input check judges and the output check judges the reply against.
    pub conversation: Vec<ChatMessage>,
}

impl Backend {
    /// The longest context a request may use, when known (a remote provider does not say).
    pub fn context_length(&self) -> Option<usize> {
        match self {
            Self::Local(model) => Some(model.info().context_length),
            Self::Remote(_) => None,
        }
    }

    /// The engine model, for what only runs in this process (Llama Guard scoring).
    pub fn local(&self) -> Option<&Model> {
        match self {
            Self::Local(model) => Some(model),
            Self::Remote(_) => None,
        }
    }

    /// The id of the provider that serves the model, as listings report it.
    pub fn provider_id(&self) -> &str {
        match self {
            Self::Local(_) => PROVIDER_ID,
            Self::Remote(remote) => &remote.provider.config.provider_id,
        }
    }

    /// Renders and tokenizes `prompt` (a remote model: estimates its tokens) and checks `params` against
    /// the model (context, `max_tokens`).
    pub fn prepare(&self, prompt: Prompt, params: GenerateParams) -> Result<Prepared, ApiError> {
        let model = match self {
            Self::Local(model) => model,
            Self::Remote(remote) => {
                let (request, conversation) = remote.prepare(prompt, params)?;
                return Ok(Prepared { request: Submission::Remote(request), conversation });
            }
        };
        let (prompt_ids, conversation) = match prompt {
            Prompt::Chat(messages, None) => (model.tokenize_chat(&messages)?, messages),
            Prompt::Chat(messages, Some(tools)) => (model.tokenize_chat_with_tools(&messages, &tools)?, messages),
            Prompt::Text(text) => (model.tokenize(&text)?, vec![ChatMessage::new("user", text)]),
            Prompt::Tokens(ids) => {
                let text = model.tokenizer().decode(&ids);
                (ids, vec![ChatMessage::new("user", text)])
            }
        };
        Ok(Prepared { request: Submission::Local(model.prepare(prompt_ids, params)?), conversation })
    }

    /// Whether `n` choices of one prompt can be served: the engine forks them after one prefill; a
    /// remote provider would be asked `n` times for the same prompt (and bill it `n` times), so there
    /// only one choice is served and more is a 400 naming `n`.
    pub fn check_choices(&self, n: usize) -> Result<(), ApiError> {
        match self {
            Self::Remote(_) if n > 1 => Err(ApiError::BadRequest(
                "n must be 1 for models of remote providers (n > 1 is served for models that run in this server)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Starts the generation's `n` choices (see [`Backend::check_choices`]), one stream each; dropping a
    /// stream cancels its choice. A remote provider's call is made here, so its failure before the first
    /// byte is still an ordinary error answer; `notes` learns the provider, and `provider_data` may carry
    /// the caller's own key for it.
    pub async fn submit(
        &self,
        request: Submission,
        n: usize,
        notes: Option<AuditNotes>,
        provider_data: &ProviderData,
    ) -> Result<Vec<GenerationStream>, ApiError> {
        self.check_choices(n)?;
        match (self, request) {
            (Self::Local(model), Submission::Local(request)) => Ok(model.submit_choices(request, n)?),
            (Self::Remote(remote), Submission::Remote(request)) => {
                Ok(vec![remote.submit(request, notes, provider_data).await?])
            }
            _ => Err(ApiError::Internal("a request prepared for another backend kind".into())),
        }
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
    /// The remote providers the models use.
    providers: Vec<Arc<ProviderRuntime>>,
}

impl ModelRegistry {
    /// Starts the health probes of every remote provider that has them and serves a model (a provider
    /// no model uses gets no request, so it is not probed either: a copied `run.yaml` with hosted
    /// providers and no key does not call them); inside the server's runtime.
    pub fn start_health_checks(&self) {
        for provider in &self.providers {
            let used = self.models.iter().any(|m| m.backend.provider_id() == provider.config.provider_id);
            if used {
                crate::backends::remote::health::spawn(provider.clone());
            }
        }
    }

    /// Loads every configured model and connects the remote ones to their providers' pools (their calls
    /// counted in `metrics`); a model that fails to load stops the start with its key named.
    pub fn load(plan: &InferencePlan, metrics: &Arc<Metrics>) -> anyhow::Result<Self> {
        let mut models = Vec::with_capacity(plan.local.len() + plan.remote.len());
        let mut providers = BTreeMap::new();
        for provider in &plan.providers {
            providers.insert(provider.provider_id.clone(), ProviderRuntime::new(provider.clone(), metrics.clone())?);
        }
        for (key, config) in &plan.local {
            let started = std::time::Instant::now();
            let source = ModelSource::parse(&config.source)
                .with_context(|| format!("{key}.source: cannot use {}", config.source))?;
            let device = config.device().map_err(anyhow::Error::msg).with_context(|| format!("{key}.device"))?;
            let tool_call_format = config
                .tool_call_format()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{key}.tool_call_format"))?;
            let options = ModelOptions {
                device,
                max_context: config.context_length,
                scheduler: config.scheduler(),
                kv_cache_type: config.kv_cache_type.unwrap_or_default(),
                quantize: config.quantize,
                tool_call_format,
            };
            let engine = Model::load(&source, &options)
                .with_context(|| format!("{key} ({}): cannot load {}", config.id, config.source))?;
            tracing::info!(
                model = %config.id,
                context_length = engine.info().context_length,
                device = ?options.device,
                threads = options.scheduler.threads,
                weight_bytes = engine.info().weight_bytes,
                max_batch = options.scheduler.max_batch,
                queue_capacity = options.scheduler.queue_capacity,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "model loaded"
            );
            metrics.watch_engine(&config.id, engine.shared_stats());
            models.push(Arc::new(ServedModel {
                id: config.id.clone(),
                source: public_source(&source, &config.source),
                created: loaded_at(),
                backend: Backend::Local(engine),
                share_prefix_cache: config.share_prefix_cache,
            }));
        }
        for config in &plan.remote {
            let provider = providers
                .get(&config.provider.provider_id)
                .with_context(|| format!("model {}: provider `{}` missing", config.id, config.provider.provider_id))?;
            tracing::info!(
                model = %config.id,
                provider = %config.provider.provider_id,
                provider_type = config.provider.provider_type.as_str(),
                upstreams = config.provider.base_urls.len(),
                "remote model"
            );
            models.push(Arc::new(ServedModel {
                id: config.id.clone(),
                source: config.provider_model_id.clone(),
                created: loaded_at(),
                backend: Backend::Remote(
                    RemoteModel::new(provider.clone(), config)
                        .with_context(|| format!("model {}: cannot load its tokenizer", config.id))?,
                ),
                share_prefix_cache: false,
            }));
        }
        let providers = providers.into_values().collect();
        Ok(Self { models, providers })
    }

    /// The remote providers, by id.
    pub fn providers(&self) -> &[Arc<ProviderRuntime>] {
        &self.providers
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

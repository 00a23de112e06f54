//! Models served by remote OpenAI-compatible servers (vLLM, llama.cpp's `llama-server`, Ollama, TGI,
//! hosted APIs): [`RemoteModel`], the remote kind of [`crate::backends::registry::Backend`].
//!
//! The gate in front is the same as for local models (authentication, scopes, tier reservation, input
//! safety, output safety, settlement, audit: [`crate::pipeline::generate`]); what differs is here:
//!
//! - **prepare** counts the prompt with the model's tokenizer when its config names one (`tokenizer`
//!   or `metadata.tokenizer`: the same count a server running the model makes), otherwise with a
//!   conservative estimate from its bytes ([`wire::estimate_prompt_tokens`]); it is reserved with
//!   `max_tokens` and settled to the upstream's `usage` when the answer ends;
//! - **submit** picks an upstream from the provider's [`pool::Pool`] (fewest outstanding requests,
//!   breaker closed), sends the request with `reqwest`, and retries with jittered exponential backoff
//!   (`backon`) — only before the first byte of an answer, and only on connect errors, timeouts, 429,
//!   502 and 503, each retry on a freshly picked upstream. A failed answer is mapped to the Llama
//!   Stack envelope here (`RemoteModel::upstream_error`), naming the provider but never its URL, headers or key;
//! - the answer is read by a task that translates the upstream's SSE chunks — or, for a client that
//!   asked for no stream, the upstream's whole non-streamed answer — ([`wire::ChunkReader`]) into a
//!   [`GenerationStream`]; when the client goes away the stream is dropped, the task sees its channel
//!   close, and dropping the upstream response closes that connection too;
//! - [`health`] probes every upstream (`GET /models`) so that a dead one leaves the pool before a
//!   request meets it, and comes back when it answers again.

pub mod health;
pub mod pool;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use llamagate_engine::{ChatMessage, GenerateParams, GenerationEvent, GenerationStream, PromptTokenizer};
use reqwest::StatusCode;

use crate::backends::prompt::Prompt;
use crate::backends::provider_data::ProviderData;
use crate::config::providers::{RemoteModelConfig, RemoteProvider};
use crate::config::secret::Secret;
use crate::gate::audit_notes::AuditNotes;
use crate::gate::metrics::Metrics;
use crate::http::error::ApiError;

use pool::{Lease, Pool};
use wire::{ChunkReader, PromptCount, RemoteInput, RemoteRequest};

/// One provider at run time: its settings, its HTTP client and its pool.
#[derive(Debug)]
pub struct ProviderRuntime {
    /// The configured provider.
    pub config: Arc<RemoteProvider>,
    /// Its upstreams.
    pub pool: Arc<Pool>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl ProviderRuntime {
    /// The client and pool of `config`; its calls are counted in `metrics`.
    pub fn new(config: Arc<RemoteProvider>, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        llamagate_authz::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // Upstream redirects would carry the key to wherever they point.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let pool = Pool::new(&config.base_urls, config.breaker_failures, config.breaker_cooldown);
        Ok(Arc::new(Self { config, pool, client, metrics }))
    }
}

/// A model served by a remote provider.
#[derive(Debug)]
pub struct RemoteModel {
    /// Its provider.
    pub provider: Arc<ProviderRuntime>,
    /// The id the upstream knows it by.
    pub upstream_model: String,
    /// The model's tokenizer, when its config names one: the prompt is counted with it.
    tokenizer: Option<PromptTokenizer>,
}

/// How one attempt failed, before any byte of an answer.
#[derive(Debug)]
enum AttemptError {
    /// Every upstream's breaker is open.
    NoUpstream,
    /// The connection failed or timed out (`timeout` says which).
    Transport { timeout: bool },
    /// The upstream answered with an error status; `message` is its `error.message`, if any.
    Status { status: StatusCode, retry_after: Option<u64>, message: Option<String> },
}

impl AttemptError {
    /// Worth another try on another upstream: connect errors, timeouts, 429, 502, 503.
    fn retryable(&self) -> bool {
        match self {
            Self::NoUpstream => false,
            Self::Transport { .. } => true,
            Self::Status { status, .. } => matches!(status.as_u16(), 429 | 502 | 503),
        }
    }
}

impl RemoteModel {
    /// A model of `provider` known upstream as `config.provider_model_id`, its tokenizer loaded when
    /// named (blocking: at start).
    pub fn new(provider: Arc<ProviderRuntime>, config: &RemoteModelConfig) -> anyhow::Result<Self> {
        let tokenizer = config.tokenizer.as_deref().map(PromptTokenizer::load).transpose()?;
        if let Some(spec) = &config.tokenizer {
            tracing::info!(model = %config.id, tokenizer = %spec, "remote model's prompts counted with its tokenizer");
        }
        Ok(Self { provider, upstream_model: config.provider_model_id.clone(), tokenizer })
    }

    /// The prompt's tokens before the call: the model's own tokenizer's count when it has one (what a
    /// server running the model will count), otherwise the conservative estimate.
    fn count_prompt(&self, input: &RemoteInput) -> Result<(usize, PromptCount), ApiError> {
        let Some(tokenizer) = &self.tokenizer else {
            return Ok((wire::estimate_prompt_tokens(input), PromptCount::Estimate));
        };
        let ids = match input {
            RemoteInput::Chat(messages) => tokenizer.tokenize_chat(messages)?,
            RemoteInput::Text(text) => tokenizer.tokenize(text)?,
            RemoteInput::Tokens(ids) => return Ok((ids.len(), PromptCount::Tokenizer)),
        };
        Ok((ids.len(), PromptCount::Tokenizer))
    }

    /// The request and the conversation content safety judges; `max_tokens` defaults to the provider's.
    pub fn prepare(
        &self,
        prompt: Prompt,
        params: GenerateParams,
    ) -> Result<(RemoteRequest, Vec<ChatMessage>), ApiError> {
        if params.logprobs.is_some() {
            return Err(ApiError::BadRequest("logprobs are not available for models of remote providers".into()));
        }
        if params.output_format.is_some() {
            return Err(ApiError::BadRequest(
                "response_format json_object and json_schema are not available for models of remote providers \
                 (they are served for models that run in this server)"
                    .into(),
            ));
        }
        let (input, conversation) = match prompt {
            Prompt::Chat(_, Some(_)) => {
                return Err(ApiError::BadRequest(
                    "tools are not available for models of remote providers (they are served for models that \
                     run in this server)"
                        .into(),
                ));
            }
            Prompt::Chat(messages, None) => {
                // The wire format sends text turns only: a conversation with calls would lose them.
                if let Some(i) = messages.iter().position(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some()) {
                    return Err(ApiError::BadRequest(format!(
                        "messages[{i}]: tool calls and tool messages are not available for models of remote providers"
                    )));
                }
                (RemoteInput::Chat(messages.clone()), messages)
            }
            Prompt::Text(text) => (RemoteInput::Text(text.clone()), vec![ChatMessage::new("user", text)]),
            Prompt::Tokens(ids) => {
                let text = format!("[{} token ids]", ids.len());
                (RemoteInput::Tokens(ids), vec![ChatMessage::new("user", text)])
            }
        };
        let max_tokens = params.max_tokens.unwrap_or(self.provider.config.default_max_tokens);
        if max_tokens == 0 {
            return Err(ApiError::BadRequest("max_tokens must be at least 1".into()));
        }
        let (prompt_estimate, prompt_count) = self.count_prompt(&input)?;
        // Streamed unless the pipeline learns otherwise ([`crate::backends::registry::Submission::answer_whole`]).
        let request = RemoteRequest { input, params, max_tokens, prompt_estimate, prompt_count, stream: true };
        Ok((request, conversation))
    }

    /// Sends the request (retrying before the first byte) and streams the answer as generation events;
    /// dropping the stream closes the upstream connection. `notes` learns the provider and where the
    /// token counts came from.
    pub async fn submit(
        &self,
        request: RemoteRequest,
        notes: Option<AuditNotes>,
        provider_data: &ProviderData,
    ) -> Result<GenerationStream, ApiError> {
        let provider = &self.provider;
        let started = Instant::now();
        if let Some(notes) = &notes {
            notes.set_provider(&provider.config.provider_id);
            notes.set_prompt_count(request.prompt_count.as_str());
        }
        let key = self.key(provider_data);
        let key = key.as_ref();
        let body = request.body(&self.upstream_model);
        let path = request.path();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(provider.config.max_retries)
            .with_jitter();
        let attempt = || self.attempt(path, &body, key);
        let (lease, response) = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(AttemptError::retryable)
            .notify(|error, delay| {
                provider.metrics.count_provider_retry(&provider.config.provider_id);
                tracing::info!(provider = %provider.config.provider_id, ?error, delay_ms = delay.as_millis() as u64, "retrying upstream")
            })
            .await
            .map_err(|error| {
                provider.metrics.observe_provider_call(&provider.config.provider_id, "error", started.elapsed().as_secs_f64());
                self.upstream_error(error)
            })?;
        let (tx, stream) = GenerationStream::channel();
        let reader = ChunkReader::new(request.is_chat(), request.prompt_estimate, started);
        let provider = provider.clone();
        let streamed = request.stream;
        tokio::spawn(async move {
            let provider_id = &provider.config.provider_id;
            let metrics = &provider.metrics;
            let relay = async {
                if streamed { relay(response, reader, &tx).await } else { read_whole(response, reader, &tx).await }
            };
            tokio::select! {
                // The client went away: dropping `relay` drops the response and its connection.
                () = tx.closed() => {
                    metrics.observe_provider_call(provider_id, "cancelled", started.elapsed().as_secs_f64());
                    tracing::info!(provider = %provider_id, "client gone; upstream stream closed");
                }
                outcome = relay => match outcome {
                    Ok((summary, source)) => {
                        lease.succeeded();
                        metrics.observe_provider_call(provider_id, "ok", started.elapsed().as_secs_f64());
                        metrics.count_provider_tokens(provider_id, summary.usage.prompt_tokens, summary.usage.completion_tokens);
                        if let Some(notes) = &notes {
                            notes.set_usage_source(source.as_str());
                        }
                        let _ = tx.send(GenerationEvent::Done(summary));
                    }
                    Err(reason) => {
                        lease.failed();
                        metrics.observe_provider_call(provider_id, "error", started.elapsed().as_secs_f64());
                        tracing::warn!(provider = %provider_id, upstream = lease.index(), reason, "upstream stream failed");
                        if let Some(notes) = &notes {
                            notes.set_usage_source(wire::UsageSource::Estimate.as_str());
                        }
                        let _ = tx.send(GenerationEvent::Failed(format!("provider `{provider_id}`: {reason}")));
                    }
                },
            }
        });
        Ok(stream)
    }

    /// The key to send: the caller's own from `X-LlamaStack-Provider-Data` where the provider allows it
    /// (`allow_provider_data`), otherwise the configured one.
    fn key(&self, provider_data: &ProviderData) -> Option<Secret> {
        let config = &self.provider.config;
        let field = config.provider_type.provider_data_field();
        let own = field.and_then(|field| provider_data.key(field));
        match own {
            Some(key) if config.allow_provider_data => Some(key),
            Some(_) => {
                tracing::info!(provider = %config.provider_id, "a caller's provider key ignored (allow_provider_data is off)");
                config.api_key.clone()
            }
            None => config.api_key.clone(),
        }
    }

    /// One try: an upstream from the pool, the request with `key`, and its status.
    async fn attempt(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: Option<&Secret>,
    ) -> Result<(Lease, reqwest::Response), AttemptError> {
        let provider = &self.provider;
        let lease = provider.pool.acquire().ok_or(AttemptError::NoUpstream)?;
        let mut request = provider.client.post(format!("{}{path}", lease.base_url())).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key.expose());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                lease.failed();
                let timeout = e.is_timeout();
                // `without_url`: the log names the upstream by its index, not its address.
                tracing::warn!(provider = %provider.config.provider_id, upstream = lease.index(), error = %e.without_url(), "upstream unreachable");
                return Err(AttemptError::Transport { timeout });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok((lease, response));
        }
        if status.is_server_error() {
            lease.failed();
        } else {
            lease.succeeded();
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // Blanked at once: the message also goes into the retry log line.
        let message = response.json::<serde_json::Value>().await.ok().and_then(|body| {
            let message = body.pointer("/error/message").or_else(|| body.get("message"))?.as_str()?;
            Some(sanitize(message, &provider.config, key))
        });
        tracing::info!(provider = %provider.config.provider_id, upstream = lease.index(), status = status.as_u16(), "upstream refused");
        Err(AttemptError::Status { status, retry_after, message })
    }

    /// The client's answer to a failed call: the Llama Stack envelope, naming the provider only.
    fn upstream_error(&self, error: AttemptError) -> ApiError {
        let config = &self.provider.config;
        let id = &config.provider_id;
        match error {
            AttemptError::NoUpstream => ApiError::Busy {
                message: format!("provider `{id}` has no healthy upstream (circuit open); retry later"),
                retry_after_secs: self.provider.pool.next_trial_in().as_secs().max(1),
            },
            AttemptError::Transport { timeout: true } => {
                ApiError::GatewayTimeout(format!("provider `{id}` did not answer in time"))
            }
            AttemptError::Transport { timeout: false } => {
                ApiError::BadGateway(format!("provider `{id}` could not be reached"))
            }
            AttemptError::Status { status, retry_after, message } => match status.as_u16() {
                429 | 503 => ApiError::Busy {
                    message: format!("provider `{id}` is busy; retry later"),
                    retry_after_secs: retry_after.unwrap_or(1).clamp(1, 600),
                },
                401 | 403 => ApiError::BadGateway(format!("provider `{id}` refused llamagate's credentials")),
                404 => ApiError::BadGateway(format!("provider `{id}` does not serve `{}`", self.upstream_model)),
                400..=499 => {
                    let detail = message.unwrap_or_default();
                    ApiError::BadRequest(format!("provider `{id}` refused the request: {detail}"))
                }
                code => ApiError::BadGateway(format!("provider `{id}` failed (upstream status {code})")),
            },
        }
    }
}

/// Reads the upstream's events until `[DONE]` or the end of the body, sending text as it comes.
async fn relay(
    response: reqwest::Response,
    mut reader: ChunkReader,
    tx: &tokio::sync::mpsc::UnboundedSender<GenerationEvent>,
) -> Result<(llamagate_engine::GenerationSummary, wire::UsageSource), &'static str> {
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(e) if e.is_timeout() => "the provider stopped sending",
            eventsource_stream::EventStreamError::Transport(_) => "the provider's connection broke off",
            _ => "the provider sent a malformed stream",
        })?;
        if event.data == "[DONE]" {
            break;
        }
        if let Some(text) = reader.read(&event.data)? {
            // A closed channel means the client went away; the caller's select ends this future.
            let _ = tx.send(text);
        }
    }
    Ok(reader.finish())
}

/// Reads a whole (non-streamed) answer and sends its text as one piece.
async fn read_whole(
    response: reqwest::Response,
    mut reader: ChunkReader,
    tx: &tokio::sync::mpsc::UnboundedSender<GenerationEvent>,
) -> Result<(llamagate_engine::GenerationSummary, wire::UsageSource), &'static str> {
    let body = response.bytes().await.map_err(|e| {
        if e.is_timeout() { "the provider stopped sending" } else { "the provider's connection broke off" }
    })?;
    if let Some(text) = reader.read_whole(&body)? {
        let _ = tx.send(text);
    }
    Ok(reader.finish())
}

/// An upstream's error message as a client may see it: bounded, its URLs and the keys (the configured
/// one and `key`, the one sent) blanked out.
fn sanitize(message: &str, config: &RemoteProvider, key: Option<&Secret>) -> String {
    let mut text: String = message
        .split_whitespace()
        .map(|word| if word.contains("://") { "[url]" } else { word })
        .collect::<Vec<_>>()
        .join(" ");
    for key in config.api_key.iter().chain(key).map(Secret::expose).filter(|k| !k.is_empty()) {
        text = text.replace(key, "[redacted]");
    }
    for url in &config.base_urls {
        text = text.replace(url.as_str(), "[url]");
    }
    const MAX: usize = 300;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_lose_urls_and_keys() {
        let config = RemoteProvider {
            provider_id: "p".into(),
            provider_type: crate::config::providers::RemoteType::Vllm,
            base_urls: vec!["http://10.0.0.5:8000/v1".into()],
            api_key: Some(Secret::new("sk-abc")),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_retries: 0,
            breaker_failures: 1,
            breaker_cooldown: Duration::from_secs(1),
            health_check_interval: None,
            default_max_tokens: 16,
            allow_provider_data: false,
        };
        let text = sanitize("bad key sk-abc for http://10.0.0.5:8000/v1/chat (see https://docs)", &config, None);
        assert_eq!(text, "bad key [redacted] for [url] (see [url]");
        assert!(sanitize(&"x".repeat(1000), &config, None).chars().count() <= 301);
        let own = Secret::new("sk-own");
        assert_eq!(sanitize("sk-own sk-abc", &config, Some(&own)), "[redacted] [redacted]");
    }
}

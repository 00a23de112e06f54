//! Llama Stack 0.7's run-config sections for inference: `providers.inference[]` and
//! `registered_resources.models[]`, so the providers and models of a Llama Stack `run.yaml` carry over.
//!
//! ```yaml
//! providers:
//!   inference:
//!     - provider_id: llamagate            # the engine in this process
//!       provider_type: inline::llamagate
//!     - provider_id: gpu-fleet            # any OpenAI-compatible server; a list of URLs is a pool
//!       provider_type: remote::vllm
//!       config:
//!         base_url: [http://10.0.0.5:8000/v1, http://10.0.0.6:8000/v1]
//!         api_key: ${env.VLLM_API_KEY:=}
//! registered_resources:
//!   models:
//!     - model_id: llama-70b
//!       provider_id: gpu-fleet
//!       provider_model_id: meta-llama/Llama-3.3-70B-Instruct
//!       model_type: llm
//!       required_scope: model_llama_70b    # ours: the OAuth scope that unlocks it
//! ```
//!
//! [`StackConfig::inference_plan`](crate::config::StackConfig::inference_plan) resolves these, with the
//! top-level `models:` list, into an [`InferencePlan`]: the models this process loads, the models served
//! by remote providers, and what was skipped (APIs llamagate does not serve, provider types it does not
//! implement, non-LLM models), which start-up lists. Keys come only from the environment
//! (`${env.NAME}`) or a file (`api_key_file`) and are held as [`Secret`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use yaml_serde::Value;

use super::secret::Secret;
use super::{ConfigError, ModelConfig};

/// The provider type of the engine in this process.
pub const INLINE_TYPE: &str = "inline::llamagate";

/// One entry of a `providers.<api>` list, as Llama Stack writes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderEntry {
    /// Its id, as `registered_resources.models[].provider_id` names it; null (an `${env.X:+id}` whose
    /// variable is unset) turns the provider off, as in Llama Stack.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// `inline::llamagate` or a `remote::` type (see [`RemoteType`]).
    pub provider_type: String,
    /// The provider's settings; read per type when the plan is made.
    #[serde(default)]
    pub config: ProviderSettings,
    /// Llama Stack's module of an external provider: not supported, noted and skipped.
    #[serde(default)]
    pub module: Option<String>,
}

/// A provider's raw `config:` mapping. Its `Debug` lists the keys only: values may hold a key read from
/// the environment.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ProviderSettings(pub Value);

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = match &self.0 {
            Value::Mapping(map) => map.keys().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        f.debug_struct("ProviderSettings").field("keys", &keys).finish()
    }
}

/// `registered_resources:` — the models (and, in Llama Stack, other resources) the stack registers.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegisteredResources {
    /// The models, each on one provider.
    #[serde(default)]
    pub models: Vec<RegisteredModel>,
    /// Llama Stack's shield registrations: llamagate configures shields under `shields`; listed and skipped.
    #[serde(default)]
    pub shields: Vec<Value>,
    /// Vector stores, datasets, scoring functions, benchmarks, tool groups: not served; listed and skipped.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One `registered_resources.models[]` entry.
#[derive(Clone, Debug, Deserialize)]
pub struct RegisteredModel {
    /// The id clients send as `model`.
    pub model_id: String,
    /// The provider that serves it; null turns the registration off (an unset `${env.X:+id}`).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The id the provider knows it by (a remote server's model name; for `inline::llamagate`, the
    /// GGUF file, checkpoint directory or hub id to load). Defaults to `model_id`.
    #[serde(default)]
    pub provider_model_id: Option<String>,
    /// `llm` is served; `embedding` and others are listed and skipped.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Llama Stack's free-form metadata; kept for listings, not interpreted.
    #[serde(default)]
    pub metadata: Value,
    /// Ours: the OAuth scope that unlocks the model (`enforce_model_permissions`); when unset, the model
    /// family's default scope.
    #[serde(default)]
    pub required_scope: Option<String>,
    /// Ours, for a remote model: the model's tokenizer (a GGUF file, a `tokenizer.json` or checkpoint
    /// directory, or a hub id), so its prompt is counted exactly before the call. `metadata.tokenizer`
    /// is read too.
    #[serde(default)]
    pub tokenizer: Option<String>,
}

fn default_model_type() -> String {
    "llm".into()
}

/// The remote provider types llamagate implements: every one speaks OpenAI's chat completions and
/// completions under its base URL, so they differ only in their default URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteType {
    /// `remote::vllm`.
    Vllm,
    /// `remote::llama-cpp-server` (llama.cpp's `llama-server`).
    LlamaCppServer,
    /// `remote::ollama` (its OpenAI-compatible `/v1`).
    Ollama,
    /// `remote::openai`.
    OpenAi,
    /// `remote::together`.
    Together,
    /// `remote::fireworks`.
    Fireworks,
    /// `remote::llama-openai-compat` (Meta's Llama API).
    LlamaOpenAiCompat,
    /// `remote::passthrough`: any OpenAI-compatible base URL (TGI, LM Studio, another llamagate, …).
    Passthrough,
}

impl RemoteType {
    /// Every type, for messages that list the choices.
    pub const ALL: [Self; 8] = [
        Self::Vllm,
        Self::LlamaCppServer,
        Self::Ollama,
        Self::OpenAi,
        Self::Together,
        Self::Fireworks,
        Self::LlamaOpenAiCompat,
        Self::Passthrough,
    ];

    /// The type as written in a run config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "remote::vllm",
            Self::LlamaCppServer => "remote::llama-cpp-server",
            Self::Ollama => "remote::ollama",
            Self::OpenAi => "remote::openai",
            Self::Together => "remote::together",
            Self::Fireworks => "remote::fireworks",
            Self::LlamaOpenAiCompat => "remote::llama-openai-compat",
            Self::Passthrough => "remote::passthrough",
        }
    }

    /// The type written as `text`, if llamagate implements it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The field of `X-LlamaStack-Provider-Data` that carries a caller's key for this type, as Llama
    /// Stack 0.7.3's provider-data validators name it; none for types without one.
    pub fn provider_data_field(self) -> Option<&'static str> {
        match self {
            Self::Vllm => Some("vllm_api_token"),
            Self::OpenAi => Some("openai_api_key"),
            Self::Together => Some("together_api_key"),
            Self::Fireworks => Some("fireworks_api_key"),
            Self::LlamaOpenAiCompat => Some("llama_api_key"),
            Self::Passthrough => Some("passthrough_api_key"),
            Self::LlamaCppServer | Self::Ollama => None,
        }
    }

    /// The hosted services' and Ollama's own URL, used when `base_url` is not given; self-hosted servers
    /// have none.
    fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Ollama => Some("http://localhost:11434/v1"),
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Together => Some("https://api.together.xyz/v1"),
            Self::Fireworks => Some("https://api.fireworks.ai/inference/v1"),
            Self::LlamaOpenAiCompat => Some("https://api.llama.com/compat/v1"),
            Self::Vllm | Self::LlamaCppServer | Self::Passthrough => None,
        }
    }
}

/// The `config:` of a remote provider: Llama Stack's keys plus llamagate's resilience settings.
#[derive(Deserialize)]
struct RemoteSettings {
    /// The OpenAI-compatible root (`…/v1`); a list makes a pool. Llama Stack's older `url` is read too.
    #[serde(default, alias = "url")]
    base_url: Option<OneOrMany>,
    /// The key, from `${env.NAME}` only (vLLM's `api_token` is read too).
    #[serde(default, alias = "api_token")]
    api_key: Option<Value>,
    /// A file whose content is the key.
    #[serde(default)]
    api_key_file: Option<PathBuf>,
    #[serde(default)]
    connect_timeout_seconds: Option<f64>,
    #[serde(default)]
    read_timeout_seconds: Option<f64>,
    #[serde(default)]
    max_retries: Option<usize>,
    #[serde(default)]
    breaker_failures: Option<u32>,
    #[serde(default)]
    breaker_cooldown_seconds: Option<f64>,
    /// Seconds between health probes of each upstream; 0 turns them off.
    #[serde(default, alias = "health_check_interval_s")]
    health_check_interval_seconds: Option<f64>,
    /// Llama Stack's vLLM `max_tokens`: the completion length asked for when a request names none.
    #[serde(default)]
    max_tokens: Option<usize>,
    /// Whether a caller's own key in `X-LlamaStack-Provider-Data` is used instead of `api_key`.
    #[serde(default)]
    allow_provider_data: Option<bool>,
    /// Llama Stack keys llamagate does not use (`tls_verify`, `refresh_models`, `allowed_models`, …).
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A remote provider, resolved: where it is, its key, and how hard to try it.
#[derive(Debug)]
pub struct RemoteProvider {
    /// Its id.
    pub provider_id: String,
    /// Its type.
    pub provider_type: RemoteType,
    /// One or more OpenAI-compatible roots, without a trailing `/`; several form a pool.
    pub base_urls: Vec<String>,
    /// Sent as `Authorization: Bearer …`; never printed.
    pub api_key: Option<Secret>,
    /// Time to open a connection to one upstream.
    pub connect_timeout: Duration,
    /// Time to wait for each read from an upstream (the first byte, then every chunk of a stream).
    pub read_timeout: Duration,
    /// Attempts after the first, before any byte of an answer arrived, on connect errors, 429, 502, 503.
    pub max_retries: usize,
    /// Consecutive failures that open one upstream's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker keeps its upstream out before one trial request.
    pub breaker_cooldown: Duration,
    /// How often each upstream is probed (`GET {base_url}/models`); `None`: not probed.
    pub health_check_interval: Option<Duration>,
    /// The completion length asked for (and reserved) when a request names no `max_tokens`.
    pub default_max_tokens: usize,
    /// Whether a caller's key in `X-LlamaStack-Provider-Data` replaces `api_key` (off by default).
    pub allow_provider_data: bool,
}

/// Defaults of the remote settings, in one place.
pub mod defaults {
    /// Seconds to connect.
    pub const CONNECT_TIMEOUT_SECONDS: f64 = 5.0;
    /// Seconds between reads: a long prefill on a loaded server can take a while before the first token.
    pub const READ_TIMEOUT_SECONDS: f64 = 120.0;
    /// Retries before the first byte.
    pub const MAX_RETRIES: usize = 2;
    /// Failures in a row that open a breaker.
    pub const BREAKER_FAILURES: u32 = 3;
    /// Seconds an open breaker waits before a trial.
    pub const BREAKER_COOLDOWN_SECONDS: f64 = 10.0;
    /// Seconds between health probes: a dead upstream is out of the pool within this long, before
    /// a caller's request finds it, at the cost of one small request per upstream per interval.
    pub const HEALTH_CHECK_INTERVAL_SECONDS: f64 = 10.0;
    /// `max_tokens` when a request names none (Llama Stack's vLLM default).
    pub const MAX_TOKENS: usize = 4096;
}

/// A model served by a remote provider.
#[derive(Debug, Clone)]
pub struct RemoteModelConfig {
    /// The id clients send.
    pub id: String,
    /// Its provider.
    pub provider: Arc<RemoteProvider>,
    /// The id the upstream knows it by.
    pub provider_model_id: String,
    /// The scope that unlocks it.
    pub required_scope: Option<String>,
    /// Its tokenizer, when named: the reservation counts the prompt with it instead of estimating.
    pub tokenizer: Option<String>,
}

/// One served model's permission entry: where it is configured (for messages), its id and scope.
#[derive(Debug, Clone)]
pub struct ModelScope {
    /// Its key in the config (`models[0]`, `registered_resources.models[2]`).
    pub key: String,
    /// The id clients send.
    pub id: String,
    /// The configured scope, if any.
    pub required_scope: Option<String>,
}

/// What the config asks this process to serve, resolved.
#[derive(Debug, Default)]
pub struct InferencePlan {
    /// Models the engine loads here: `models[]`, then registrations on `inline::llamagate`.
    pub local: Vec<(String, ModelConfig)>,
    /// Models served by remote providers.
    pub remote: Vec<RemoteModelConfig>,
    /// The remote providers, in config order.
    pub providers: Vec<Arc<RemoteProvider>>,
    /// What was read and not used, one line each, for the start-up log.
    pub skipped: Vec<String>,
}

impl InferencePlan {
    /// Every served model's permission entry, local then remote.
    pub fn scopes(&self) -> Vec<ModelScope> {
        let local = self.local.iter().map(|(key, m)| ModelScope {
            key: key.clone(),
            id: m.id.clone(),
            required_scope: m.required_scope.clone(),
        });
        let remote = self.remote.iter().map(|m| ModelScope {
            key: format!("registered_resources.models[model_id={}]", m.id),
            id: m.id.clone(),
            required_scope: m.required_scope.clone(),
        });
        local.chain(remote).collect()
    }

    /// Whether any model is served.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }
}

/// Resolves `providers` and `registered_resources` with the top-level `models`.
pub fn plan(
    models: &[ModelConfig],
    providers: &BTreeMap<String, Vec<ProviderEntry>>,
    resources: &RegisteredResources,
) -> Result<InferencePlan, ConfigError> {
    let invalid = |key: String, reason: String| ConfigError::Invalid { key, reason };
    let mut plan = InferencePlan {
        local: models.iter().enumerate().map(|(i, m)| (format!("models[{i}]"), m.clone())).collect(),
        ..InferencePlan::default()
    };
    for (api, entries) in providers {
        if api != "inference" {
            let note = match api.as_str() {
                "safety" => "llamagate's Llama Guard shields are configured under `shields`",
                _ => "llamagate does not serve this API",
            };
            plan.skipped.push(format!("providers.{api} ({} providers): {note}; skipped", entries.len()));
        }
    }
    // provider_id → Some(remote) or None (the engine here).
    let mut by_id: BTreeMap<String, Option<Arc<RemoteProvider>>> = BTreeMap::new();
    for (i, entry) in providers.get("inference").into_iter().flatten().enumerate() {
        let key = format!("providers.inference[{i}]");
        let Some(id) = entry.provider_id.clone().filter(|id| !id.is_empty() && id != "__disabled__") else {
            plan.skipped.push(format!("{key} ({}): provider_id is empty, provider turned off", entry.provider_type));
            continue;
        };
        if by_id.contains_key(&id) {
            return Err(invalid(format!("{key}.provider_id"), format!("duplicate provider id `{id}`")));
        }
        if entry.module.is_some() {
            plan.skipped.push(format!("{key} ({id}): external provider modules are not supported; skipped"));
            continue;
        }
        if entry.provider_type == INLINE_TYPE {
            by_id.insert(id, None);
            continue;
        }
        let Some(kind) = RemoteType::parse(&entry.provider_type) else {
            plan.skipped.push(format!(
                "{key} ({id}): provider type `{}` is not implemented (llamagate implements {INLINE_TYPE}, {}); skipped",
                entry.provider_type,
                RemoteType::ALL.map(RemoteType::as_str).join(", ")
            ));
            continue;
        };
        // The engine's and the shields' provider ids, as `/v1/providers` and `/v1/models` report them.
        if matches!(id.as_str(), "llamagate" | "llama-guard") {
            return Err(invalid(format!("{key}.provider_id"), format!("`{id}` is llamagate's own provider id")));
        }
        let provider = Arc::new(remote_provider(&key, id.clone(), kind, &entry.config, &mut plan.skipped)?);
        plan.providers.push(provider.clone());
        by_id.insert(id, Some(provider));
    }
    for (name, value) in &resources.other {
        let count = value.as_sequence().map_or(0, Vec::len);
        plan.skipped.push(format!("registered_resources.{name} ({count}): not served by llamagate; skipped"));
    }
    if !resources.shields.is_empty() {
        plan.skipped.push(format!(
            "registered_resources.shields ({}): llamagate's shields are configured under `shields`; skipped",
            resources.shields.len()
        ));
    }
    for (i, model) in resources.models.iter().enumerate() {
        let key = format!("registered_resources.models[{i}]");
        let Some(provider_id) = model.provider_id.as_deref().filter(|p| !p.is_empty()) else {
            plan.skipped.push(format!("{key} ({}): no provider_id, registration turned off", model.model_id));
            continue;
        };
        if model.model_type != "llm" {
            plan.skipped.push(format!(
                "{key} ({}): model_type `{}` is not served (only `llm`); skipped",
                model.model_id, model.model_type
            ));
            continue;
        }
        let upstream_id = model.provider_model_id.clone().unwrap_or_else(|| model.model_id.clone());
        match by_id.get(provider_id) {
            Some(None) => plan.local.push((
                key,
                ModelConfig {
                    id: model.model_id.clone(),
                    source: upstream_id,
                    required_scope: model.required_scope.clone(),
                    ..ModelConfig::default()
                },
            )),
            Some(Some(provider)) => plan.remote.push(RemoteModelConfig {
                id: model.model_id.clone(),
                provider: provider.clone(),
                provider_model_id: upstream_id,
                required_scope: model.required_scope.clone(),
                tokenizer: model
                    .tokenizer
                    .clone()
                    .or_else(|| model.metadata.get("tokenizer").and_then(Value::as_str).map(str::to_string)),
            }),
            None => {
                let declared = providers
                    .get("inference")
                    .into_iter()
                    .flatten()
                    .any(|entry| entry.provider_id.as_deref() == Some(provider_id));
                if !declared {
                    return Err(invalid(
                        format!("{key}.provider_id"),
                        format!("`{provider_id}` is not the provider_id of an entry under providers.inference"),
                    ));
                }
                plan.skipped.push(format!("{key} ({}): its provider `{provider_id}` was skipped", model.model_id));
            }
        }
    }
    Ok(plan)
}

/// Reads one remote provider's settings; `key` names it in messages.
fn remote_provider(
    key: &str,
    provider_id: String,
    kind: RemoteType,
    settings: &ProviderSettings,
    skipped: &mut Vec<String>,
) -> Result<RemoteProvider, ConfigError> {
    let invalid = |field: &str, reason: String| ConfigError::Invalid { key: format!("{key}.config.{field}"), reason };
    let raw = if settings.0.is_null() { Value::Mapping(Default::default()) } else { settings.0.clone() };
    // The message names the key and the problem, never a value: a value may be a key.
    let settings: RemoteSettings = yaml_serde::from_value(raw).map_err(|e| ConfigError::Invalid {
        key: format!("{key}.config"),
        reason: format!("{}", e).lines().next().unwrap_or_default().to_string(),
    })?;
    for name in settings.other.keys() {
        skipped.push(format!("{key}.config.{name} ({provider_id}): not used by llamagate; ignored"));
    }
    let urls = match settings.base_url {
        Some(OneOrMany::One(url)) => vec![url],
        Some(OneOrMany::Many(urls)) => urls,
        None => kind.default_base_url().map(String::from).into_iter().collect(),
    };
    if urls.is_empty() {
        return Err(invalid("base_url", format!("{} needs the server's OpenAI-compatible URL (…/v1)", kind.as_str())));
    }
    let mut base_urls = Vec::with_capacity(urls.len());
    for (j, url) in urls.iter().enumerate() {
        let trimmed = url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| invalid(&format!("base_url[{j}]"), e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(&format!("base_url[{j}]"), "must be an http:// or https:// URL".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(&format!("base_url[{j}]"), "must not carry credentials (use api_key)".into()));
        }
        base_urls.push(trimmed.to_string());
    }
    // A key of digits came out of the substitution as a number; it is still text.
    let api_key = settings.api_key.and_then(|value| match value {
        Value::String(text) => Some(text),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    });
    let api_key = match (api_key.filter(|k| !k.is_empty()), settings.api_key_file) {
        (Some(_), Some(_)) => return Err(invalid("api_key", "give api_key or api_key_file, not both".into())),
        (Some(key), None) => Some(Secret::new(key)),
        (None, Some(path)) => Some(
            Secret::from_file(&path)
                .map_err(|e| invalid("api_key_file", format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => None,
    };
    let seconds = |field: &str, value: Option<f64>, default: f64| -> Result<Duration, ConfigError> {
        let value = value.unwrap_or(default);
        if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
            return Err(invalid(field, "must be a number of seconds above 0 (at most a day)".into()));
        }
        Ok(Duration::from_secs_f64(value))
    };
    let breaker_failures = settings.breaker_failures.unwrap_or(defaults::BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(invalid("breaker_failures", "must be at least 1".into()));
    }
    let health_check_interval = match settings.health_check_interval_seconds {
        Some(0.0) => None,
        value => Some(seconds("health_check_interval_seconds", value, defaults::HEALTH_CHECK_INTERVAL_SECONDS)?),
    };
    let allow_provider_data = settings.allow_provider_data.unwrap_or(false);
    if allow_provider_data && kind.provider_data_field().is_none() {
        return Err(invalid("allow_provider_data", format!("{} takes no per-request key", kind.as_str())));
    }
    let default_max_tokens = settings.max_tokens.unwrap_or(defaults::MAX_TOKENS);
    if default_max_tokens == 0 {
        return Err(invalid("max_tokens", "must be at least 1".into()));
    }
    Ok(RemoteProvider {
        provider_id,
        provider_type: kind,
        base_urls,
        api_key,
        connect_timeout: seconds(
            "connect_timeout_seconds",
            settings.connect_timeout_seconds,
            defaults::CONNECT_TIMEOUT_SECONDS,
        )?,
        read_timeout: seconds("read_timeout_seconds", settings.read_timeout_seconds, defaults::READ_TIMEOUT_SECONDS)?,
        max_retries: settings.max_retries.unwrap_or(defaults::MAX_RETRIES).min(10),
        breaker_failures,
        breaker_cooldown: seconds(
            "breaker_cooldown_seconds",
            settings.breaker_cooldown_seconds,
            defaults::BREAKER_COOLDOWN_SECONDS,
        )?,
        health_check_interval,
        default_max_tokens,
        allow_provider_data,
    })
}

/// Refuses a key written into the file itself: `providers.<api>[].config.api_key` (or `api_token`)
/// must be an environment substitution, checked on the file as written, before substitution.
pub fn check_keys_are_not_literal(raw: &Value) -> Result<(), ConfigError> {
    let Some(apis) = raw.get("providers").and_then(Value::as_mapping) else { return Ok(()) };
    for (api, entries) in apis {
        let api = api.as_str().unwrap_or_default();
        for (i, entry) in entries.as_sequence().into_iter().flatten().enumerate() {
            for field in ["api_key", "api_token"] {
                let Some(value) = entry.get("config").and_then(|c| c.get(field)) else { continue };
                let from_env =
                    value.as_str().is_some_and(|s| s.trim().starts_with("${env.") && s.trim().ends_with('}'));
                if !value.is_null() && !from_env {
                    return Err(ConfigError::Invalid {
                        key: format!("providers.{api}[{i}].config.{field}"),
                        reason: "keys are not written into the config: use `${env.NAME}` or `api_key_file`".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StackConfig;

    fn env(name: &str) -> Option<String> {
        match name {
            "VLLM_URL" => Some("http://10.0.0.5:8000/v1".into()),
            "VLLM_API_KEY" => Some("sk-vllm-secret".into()),
            _ => None,
        }
    }

    fn load(yaml: &str) -> Result<StackConfig, ConfigError> {
        StackConfig::parse_with_env(yaml, "run.yaml", &env)
    }

    const RUN_YAML: &str = r#"
version: 2
image_name: starter
apis: [inference, safety, vector_io]
providers:
  inference:
    - provider_id: llamagate
      provider_type: inline::llamagate
    - provider_id: ${env.VLLM_URL:+vllm}
      provider_type: remote::vllm
      config:
        url: ${env.VLLM_URL}
        api_token: ${env.VLLM_API_KEY}
        max_tokens: 512
        tls_verify: true
    - provider_id: ${env.OLLAMA_URL:+ollama}
      provider_type: remote::ollama
      config:
        url: ${env.OLLAMA_URL:=http://localhost:11434}
    - provider_id: pool
      provider_type: remote::llama-cpp-server
      config:
        base_url: [http://127.0.0.1:8080/v1/, http://127.0.0.1:8081/v1]
        breaker_failures: 2
    - provider_id: bedrock
      provider_type: remote::bedrock
  vector_io:
    - provider_id: faiss
      provider_type: inline::faiss
registered_resources:
  models:
    - model_id: llama-70b
      provider_id: vllm
      provider_model_id: meta-llama/Llama-3.3-70B-Instruct
      model_type: llm
      required_scope: model_llama_70b
    - model_id: small
      provider_id: pool
    - model_id: local-one
      provider_id: llamagate
      provider_model_id: org/name
    - model_id: embed
      provider_id: pool
      model_type: embedding
    - model_id: on-ollama
      provider_id: ${env.OLLAMA_URL:+ollama}
    - model_id: on-bedrock
      provider_id: bedrock
  shields:
    - shield_id: llama-guard
  vector_stores: []
"#;

    #[test]
    fn a_llama_stack_run_yaml_resolves_to_local_and_remote_models() {
        let config = load(RUN_YAML).unwrap();
        config.validate().unwrap();
        let plan = config.inference_plan().unwrap();
        assert_eq!(plan.local.len(), 1);
        assert_eq!((plan.local[0].1.id.as_str(), plan.local[0].1.source.as_str()), ("local-one", "org/name"));
        let remote: Vec<(&str, &str, &str)> = plan
            .remote
            .iter()
            .map(|m| (m.id.as_str(), m.provider.provider_id.as_str(), m.provider_model_id.as_str()))
            .collect();
        assert_eq!(remote, [("llama-70b", "vllm", "meta-llama/Llama-3.3-70B-Instruct"), ("small", "pool", "small")]);
        let vllm = &plan.remote[0].provider;
        assert_eq!(vllm.provider_type, RemoteType::Vllm);
        assert_eq!(vllm.base_urls, ["http://10.0.0.5:8000/v1"]);
        assert_eq!(vllm.api_key.as_ref().map(Secret::expose), Some("sk-vllm-secret"));
        assert_eq!(vllm.default_max_tokens, 512);
        assert_eq!(plan.remote[0].required_scope.as_deref(), Some("model_llama_70b"));
        let pool = &plan.remote[1].provider;
        assert_eq!(pool.base_urls, ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8081/v1"]);
        assert_eq!((pool.breaker_failures, pool.api_key.is_none()), (2, true));
        assert_eq!(pool.max_retries, defaults::MAX_RETRIES);
        let skipped = plan.skipped.join("\n");
        for expected in [
            "providers.vector_io (1 providers)",
            "providers.inference[2] (remote::ollama): provider_id is empty",
            "providers.inference[4] (bedrock): provider type `remote::bedrock` is not implemented",
            "providers.inference[1].config.tls_verify (vllm): not used",
            "registered_resources.models[3] (embed): model_type `embedding`",
            "registered_resources.models[4] (on-ollama): no provider_id",
            "registered_resources.models[5] (on-bedrock): its provider `bedrock` was skipped",
            "registered_resources.shields (1)",
            "registered_resources.vector_stores (0)",
        ] {
            assert!(skipped.contains(expected), "{expected} not in:\n{skipped}");
        }
        assert!(!format!("{config:?}{plan:?}").contains("sk-vllm-secret"), "a key never prints");
    }

    /// Llama Stack 0.7.3's own `starter` distribution config (from the pinned wheel), as a user would bring
    /// it: it parses, its providers resolve as far as llamagate implements them, and everything else is
    /// named as skipped.
    #[test]
    fn the_starter_distributions_config_reads_and_names_what_it_skips() {
        let text = include_str!("../../tests/fixtures/llama-stack-0.7.3-starter-config.yaml");
        let env = |name: &str| match name {
            "OLLAMA_URL" => Some("http://127.0.0.1:11434/v1".to_string()),
            "TOGETHER_API_KEY" => Some("tg-secret".to_string()),
            _ => None,
        };
        let config = StackConfig::parse_with_env(text, "config.yaml", &env).unwrap();
        assert_eq!(config.server.port, 8321);
        let plan = config.inference_plan().unwrap();
        let providers: Vec<(&str, RemoteType, bool)> =
            plan.providers.iter().map(|p| (p.provider_id.as_str(), p.provider_type, p.api_key.is_some())).collect();
        assert_eq!(
            providers,
            [
                ("ollama", RemoteType::Ollama, false),
                ("fireworks", RemoteType::Fireworks, false),
                ("together", RemoteType::Together, true),
                ("openai", RemoteType::OpenAi, false),
            ]
        );
        assert!(plan.is_empty(), "the starter registers no models");
        let skipped = plan.skipped.join("\n");
        for expected in [
            "provider_id is empty, provider turned off",
            "provider type `remote::bedrock` is not implemented",
            "providers.vector_io (",
            "providers.files (",
            "registered_resources.shields (2)",
            "registered_resources.vector_dbs (0)",
            "storage: Llama Stack section",
            "vector_stores: Llama Stack section",
            "safety: Llama Stack section; llamagate's guarding shield is `safety_shield`",
        ] {
            assert!(skipped.contains(expected), "{expected} not in:\n{skipped}");
        }
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("models: list at least one model"), "{err}");
        // Llama Stack's server keys are accepted and named; a typo is still an error.
        let server =
            "server:\n  port: 8321\n  auth:\n    provider_config: {type: github_token}\n  workers: 2\nmodels: []\n";
        let plan = load(server).unwrap().inference_plan().unwrap();
        assert!(plan.skipped.iter().any(|n| n.starts_with("server.auth: Llama Stack key not read")), "{plan:?}");
        assert!(load("server:\n  prot: 1\nmodels: []\n").is_err());
        assert!(load("models: []\nstorage_typo: {}\n").is_err());
    }

    #[test]
    fn keys_come_only_from_the_environment_or_a_file() {
        let literal = "providers:\n  inference:\n    - provider_id: o\n      provider_type: remote::openai\n      config:\n        api_key: sk-literal\n";
        let err = load(literal).unwrap_err().to_string();
        assert_eq!(
            err,
            "providers.inference[0].config.api_key: keys are not written into the config: use `${env.NAME}` or `api_key_file`"
        );
        assert!(!err.contains("sk-literal"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-file\n").unwrap();
        let from_file = format!(
            "providers:\n  inference:\n    - provider_id: o\n      provider_type: remote::openai\n      config:\n        api_key_file: {}\nregistered_resources:\n  models:\n    - model_id: gpt\n      provider_id: o\n",
            file.display()
        );
        let plan = load(&from_file).unwrap().inference_plan().unwrap();
        let provider = &plan.remote[0].provider;
        assert_eq!(provider.api_key.as_ref().map(Secret::expose), Some("sk-file"));
        assert_eq!(provider.base_urls, ["https://api.openai.com/v1"], "a hosted service's default URL");
    }

    #[test]
    fn bad_remote_settings_name_their_key() {
        let provider = |config: &str| {
            format!(
                "providers:\n  inference:\n    - provider_id: p\n      provider_type: remote::vllm\n      config: {config}\nregistered_resources:\n  models:\n    - model_id: m\n      provider_id: p\n"
            )
        };
        let cases = [
            ("{}", "providers.inference[0].config.base_url: remote::vllm needs"),
            ("{base_url: 'ftp://x/v1'}", "providers.inference[0].config.base_url[0]: must be an http"),
            ("{base_url: 'http://u:p@x/v1'}", "providers.inference[0].config.base_url[0]: must not carry"),
            (
                "{base_url: 'http://x/v1', read_timeout_seconds: 0}",
                "providers.inference[0].config.read_timeout_seconds",
            ),
            ("{base_url: 'http://x/v1', breaker_failures: 0}", "providers.inference[0].config.breaker_failures"),
            (
                "{base_url: 'http://x/v1', health_check_interval_seconds: -1}",
                "providers.inference[0].config.health_check_interval_seconds",
            ),
        ];
        for (config, expected) in cases {
            let err = load(&provider(config)).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{config}: {err}");
        }
        let no_field = "providers:\n  inference:\n    - provider_id: p\n      provider_type: remote::llama-cpp-server\n      config: {base_url: 'http://x/v1', allow_provider_data: true}\n";
        let err = load(no_field).unwrap().inference_plan().unwrap_err().to_string();
        assert!(
            err.starts_with("providers.inference[0].config.allow_provider_data: remote::llama-cpp-server takes no"),
            "{err}"
        );
        let unknown = "registered_resources:\n  models:\n    - model_id: m\n      provider_id: nowhere\n";
        let err = load(unknown).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("registered_resources.models[0].provider_id: `nowhere`"), "{err}");
        let empty = load("providers: {}\n").unwrap().validate().unwrap_err().to_string();
        assert!(empty.starts_with("models: list at least one model"), "{empty}");
    }
}

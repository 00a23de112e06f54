//! The stack config: one YAML file naming the server's address, the models it serves and the shields
//! that run on them.
//!
//! The file is read once at start into [`StackConfig`], defaults are filled in here and nowhere else,
//! and [`StackConfig::validate`] checks every value before any model is loaded, so a typo fails fast
//! with a message that names the key (`models[0].source: file not found …`) instead of surfacing later
//! as a confusing request error.
//!
//! Llama Stack's run-config sections are read too ([`providers`]): `providers.inference[]` and
//! `registered_resources.models[]` add models served here or by remote OpenAI-compatible servers, and
//! values may use Llama Stack's `${env.NAME}` substitutions ([`env_subst`]). Keys are [`secret::Secret`]s.

pub mod env_subst;
pub mod llama_stack_auth;
pub mod providers;
pub mod secret;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use llamagate_engine::{DeviceChoice, EngineError, KvCacheType, QuantizeOnLoad, SchedulerConfig, ToolCallFormat};
use serde::Deserialize;

use crate::http::listener::ConnectionLimits;

/// Llama Stack's default port; the SDKs assume it when no base URL is given.
pub const DEFAULT_PORT: u16 = 8321;

/// Large enough for long conversations, small enough that one client cannot make the server buffer
/// an unbounded body before validation runs.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole stack config, as written in `config/*.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Where and how the HTTP server listens.
    #[serde(default)]
    pub server: ServerConfig,
    /// The models served by the engine in this process, in listing order (more may come from
    /// `registered_resources.models`).
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// The OAuth 2.1 resource server. Required by `serve`: when absent the server refuses to start
    /// (deny by default); `{enable_auth: false}` runs an open development server.
    #[serde(default)]
    pub oauth_config: Option<llamagate_authz::OAuthConfig>,
    /// Llama Guard shields, each running on one of the served models; the first is the default for
    /// `POST /v1/moderations` without a `model`.
    #[serde(default)]
    pub shields: Vec<ShieldConfig>,
    /// The shield that guards chat and completions when `oauth_config.enforce_content_safety` is on
    /// (see `gate::safety`); the first shield when unset. Without shields nothing is checked.
    #[serde(default)]
    pub safety_shield: Option<String>,
    /// Llama Stack's run-config version: accepted so a `run.yaml` reads, not interpreted.
    #[serde(default)]
    pub version: Option<yaml_serde::Value>,
    /// Llama Stack's distribution name: accepted, not interpreted.
    #[serde(default)]
    pub image_name: Option<String>,
    /// Llama Stack's list of APIs: accepted; what llamagate serves is fixed (its routes).
    #[serde(default)]
    pub apis: Vec<String>,
    /// Llama Stack's providers by API; `inference` is read (see [`providers`]), the others are listed
    /// at start-up and skipped.
    #[serde(default)]
    pub providers: BTreeMap<String, Vec<providers::ProviderEntry>>,
    /// Llama Stack's registered resources; `models` is read (see [`providers`]).
    #[serde(default)]
    pub registered_resources: providers::RegisteredResources,
    /// The rest of Llama Stack 0.7's run-config, accepted so a `run.yaml` starts, listed at start-up and
    /// not used (see [`StackConfig::inference_plan`]).
    #[serde(flatten)]
    pub llama_stack: LlamaStackSections,
}

/// Llama Stack run-config sections llamagate reads and does not use: each is named at start-up when
/// present. Unknown keys stay errors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LlamaStackSections {
    /// The distribution's name.
    #[serde(default)]
    pub distro_name: Option<String>,
    /// Its container image.
    #[serde(default)]
    pub container_image: Option<String>,
    /// Storage backends (SQLite, Postgres, …) of Llama Stack's stores.
    #[serde(default)]
    pub storage: Option<yaml_serde::Value>,
    /// Logging categories.
    #[serde(default)]
    pub logging: Option<yaml_serde::Value>,
    /// External provider specs.
    #[serde(default)]
    pub external_providers_dir: Option<yaml_serde::Value>,
    /// External API specs.
    #[serde(default)]
    pub external_apis_dir: Option<yaml_serde::Value>,
    /// Vector store defaults.
    #[serde(default)]
    pub vector_stores: Option<yaml_serde::Value>,
    /// Safety defaults (`default_shield_id`): llamagate's is `safety_shield`.
    #[serde(default)]
    pub safety: Option<yaml_serde::Value>,
    /// MCP connectors.
    #[serde(default)]
    pub connectors: Option<yaml_serde::Value>,
}

impl LlamaStackSections {
    /// One line per section present, for the start-up log.
    fn notes(&self) -> Vec<String> {
        let values = [
            ("storage", &self.storage),
            ("logging", &self.logging),
            ("external_providers_dir", &self.external_providers_dir),
            ("external_apis_dir", &self.external_apis_dir),
            ("vector_stores", &self.vector_stores),
            ("safety", &self.safety),
            ("connectors", &self.connectors),
        ];
        values
            .into_iter()
            .filter(|(_, value)| value.as_ref().is_some_and(|v| !v.is_null()))
            .map(|(name, _)| {
                let why = match name {
                    "safety" => "llamagate's guarding shield is `safety_shield`",
                    _ => "llamagate does not use it",
                };
                format!("{name}: Llama Stack section; {why}; skipped")
            })
            .collect()
    }
}

/// One shield: a served model used as a Llama Guard classifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShieldConfig {
    /// The id clients send as `shield_id` (may contain `/`).
    pub id: String,
    /// The id of the served model (under `models`) that acts as the guard; its id also decides which
    /// categories the prompt lists (Llama-Guard-3-1B: S1–S13; otherwise S1–S14).
    pub model: String,
    /// Category codes (`S1` … `S14`) left out of the prompt and the scores.
    #[serde(default)]
    pub excluded_categories: Vec<String>,
    /// TEST ONLY: fixed scores from this JSON file instead of the guard model (see `guard_double`).
    /// Refused at start unless `LLAMAGATE_ALLOW_TEST_GUARD=1`.
    #[serde(default)]
    pub scores_file: Option<std::path::PathBuf>,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; loopback by default so a fresh install is not exposed before auth is set up.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port to bind (default 8321, as Llama Stack).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Largest accepted request body; bigger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The scope a token needs for the operator routes (`/metrics`, `/v1/providers`,
    /// `/v1/inspect/routes`, `/openapi.json`, `/docs`): they describe the whole deployment — every model,
    /// file and counter — not just what one caller may use.
    #[serde(default = "default_operator_scope")]
    pub operator_scope: String,
    /// Open connections at most, over all peers; more are closed as soon as they are accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections at most from one peer address, so one peer cannot hold every place.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds a connection may take to send a request's headers before it is closed (slow clients
    /// that never finish a request hold no connection for long).
    #[serde(default = "default_header_read_timeout_seconds")]
    pub header_read_timeout_seconds: u64,
    /// Requests from one peer address that authentication may refuse per minute (burst included);
    /// past it the address is answered 429 for a while without its credentials being read.
    #[serde(default = "default_max_auth_failures_per_minute_per_ip")]
    pub max_auth_failures_per_minute_per_ip: u32,
    /// Llama Stack's server keys llamagate does not read (`tls_*`, `auth`, `quota`, `cors`, `workers`):
    /// accepted so a `run.yaml` starts, named at start-up. Authentication is `oauth_config`, always.
    #[serde(flatten, skip_serializing)]
    pub llama_stack: LlamaStackServerKeys,
}

/// See [`ServerConfig::llama_stack`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LlamaStackServerKeys {
    #[serde(default)]
    tls_certfile: Option<yaml_serde::Value>,
    #[serde(default)]
    tls_keyfile: Option<yaml_serde::Value>,
    #[serde(default)]
    tls_cafile: Option<yaml_serde::Value>,
    #[serde(default)]
    auth: Option<yaml_serde::Value>,
    #[serde(default)]
    quota: Option<yaml_serde::Value>,
    #[serde(default)]
    cors: Option<yaml_serde::Value>,
    #[serde(default)]
    workers: Option<yaml_serde::Value>,
}

impl ServerConfig {
    /// One line per Llama Stack server key present, for the start-up log.
    fn llama_stack_notes(&self) -> Vec<String> {
        let keys = &self.llama_stack;
        [
            ("tls_certfile", &keys.tls_certfile, "terminate TLS in front of llamagate"),
            ("tls_keyfile", &keys.tls_keyfile, "terminate TLS in front of llamagate"),
            ("tls_cafile", &keys.tls_cafile, "terminate TLS in front of llamagate"),
            // An `oauth2_token` section is read as `oauth_config` or named by [`StackConfig::take_oauth_config`].
            (
                "auth",
                &keys.auth.as_ref().filter(|auth| !is_oauth2_token(auth)).cloned(),
                "authentication is `oauth_config` (docs/migrating-from-llama-stack-auth.md)",
            ),
            ("quota", &keys.quota, "limits are `oauth_config.rate_limits`"),
            ("cors", &keys.cors, "not supported"),
            ("workers", &keys.workers, "one process serves all requests"),
        ]
        .into_iter()
        .filter(|(_, value, _)| value.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(name, _, why)| format!("server.{name}: Llama Stack key not read ({why}); skipped"))
        .collect()
    }

    /// The listener's bounds.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            max_body_bytes: default_max_body_bytes(),
            operator_scope: default_operator_scope(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            header_read_timeout_seconds: default_header_read_timeout_seconds(),
            max_auth_failures_per_minute_per_ip: default_max_auth_failures_per_minute_per_ip(),
            llama_stack: LlamaStackServerKeys::default(),
        }
    }
}

/// The operator scope unless configured: a name no identity provider hands out by accident.
pub const DEFAULT_OPERATOR_SCOPE: &str = "llamagate_operator";

fn default_operator_scope() -> String {
    DEFAULT_OPERATOR_SCOPE.to_string()
}

/// Well under a common file-descriptor limit of 65,536 (containers often set 1,048,576).
fn default_max_connections() -> usize {
    8192
}

/// Room for a load balancer's or a load test's connections, but not for one peer holding every place.
fn default_max_connections_per_ip() -> usize {
    1024
}

/// Ten a second: far more than an honest client with an expired token produces before it refreshes,
/// far fewer than a guesser wants.
fn default_max_auth_failures_per_minute_per_ip() -> u32 {
    600
}

/// Generous for any client on any network; a request's headers are a few hundred bytes.
fn default_header_read_timeout_seconds() -> u64 {
    10
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// One served model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients send as `model` (may contain `/`).
    pub id: String,
    /// A GGUF file, a Hugging Face checkpoint directory, or a hub id (`org/name[@revision]`).
    pub source: String,
    /// Caps the context window below the model's trained length, to bound KV-cache memory.
    #[serde(default)]
    pub context_length: Option<usize>,
    /// The OAuth scope a caller needs to use this model (`oauth_config.enforce_model_permissions`);
    /// when unset, the model family's default scope.
    #[serde(default)]
    pub required_scope: Option<String>,
    /// Sequences the engine decodes together in one step (more: throughput; fewer: latency).
    #[serde(default)]
    pub max_batch: Option<usize>,
    /// Requests that may wait for a batch slot; beyond it requests are answered 503 with `Retry-After`.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// KV-cache memory, in MiB, the running sequences may reserve; requests that do not fit wait.
    /// Unset: room for `max_batch` sequences of the full context.
    #[serde(default)]
    pub kv_budget_mb: Option<usize>,
    /// Prompt tokens prefilled per step while other sequences are decoding.
    #[serde(default)]
    pub prefill_chunk: Option<usize>,
    /// MiB kept for the keys and values of recent prompts, so a request starting with the same tokens
    /// (a shared system prompt, earlier turns) skips computing them; 0 turns it off. Unset: 32.
    #[serde(default)]
    pub prefix_cache_mb: Option<usize>,
    /// Whether callers may reuse each other's remembered prompts. Off by default: a reused prompt
    /// answers sooner, so a shared cache tells one tenant, by timing, what another asked. Turn it on
    /// for a single-tenant deployment, where every caller's shared system prompt is then computed once.
    #[serde(default)]
    pub share_prefix_cache: bool,
    /// How the CPU pass stores keys and values: `f16` (default: llama.cpp's default, and its logits
    /// exactly) or `q8_0` (0.56× the KV memory, faster decoding deep into long contexts, logits as far
    /// from f16 as llama.cpp's own q8_0 cache puts them).
    #[serde(default)]
    pub kv_cache_type: Option<KvCacheType>,
    /// Where this model runs: `cpu`, `cuda` (`cuda:N` for the N-th GPU), `metal`, or `auto` (the
    /// default: the first accelerator this build and machine have, else the CPU). A device the build or
    /// the machine lacks stops the start with the model named, rather than quietly running on the CPU.
    #[serde(default)]
    pub device: Option<String>,
    /// Threads of this model's CPU pass; unset: the engine's shared threads (`--threads`). Separate
    /// counts keep two models (a chat model and its guard, say) from waiting for each other's turns.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Quantize full-precision (F16, BF16, F32) weights once at load: `q8_0` (about half the memory of
    /// 16-bit weights and the 8-bit kernels' speed, llama.cpp's Q8_0 rounding). Unset: weights as stored.
    #[serde(default)]
    pub quantize: Option<QuantizeOnLoad>,
    /// How the model writes tool calls: `llama3_json` (Llama 3.1/3.3: `{"name": …, "parameters": …}`),
    /// `pythonic` (Llama 3.2: `[f(a=1)]`) or `hermes` (`<tool_call>{…}</tool_call>`). Unset: what the
    /// chat template asks for, and `llama3_json` for a template that knows no tools (then the tools
    /// are described to the model in that format in the system prompt).
    #[serde(default)]
    pub tool_call_format: Option<String>,
}

impl ModelConfig {
    /// The engine's scheduler limits: the keys given here over [`SchedulerConfig::default`], the one
    /// place the defaults live.
    pub fn scheduler(&self) -> SchedulerConfig {
        let defaults = SchedulerConfig::default();
        SchedulerConfig {
            max_batch: self.max_batch.unwrap_or(defaults.max_batch),
            queue_capacity: self.queue_capacity.unwrap_or(defaults.queue_capacity),
            kv_budget_bytes: self.kv_budget_mb.map(|mb| mb.saturating_mul(1024 * 1024)).or(defaults.kv_budget_bytes),
            prefill_chunk: self.prefill_chunk.unwrap_or(defaults.prefill_chunk),
            prefix_cache_bytes: self
                .prefix_cache_mb
                .map_or(defaults.prefix_cache_bytes, |mb| mb.saturating_mul(1024 * 1024)),
            priority_ageing: defaults.priority_ageing,
            threads: self.threads,
        }
    }

    /// The configured tool-call format (`None`: the template's); [`StackConfig::validate`] has checked
    /// the spelling.
    pub fn tool_call_format(&self) -> Result<Option<ToolCallFormat>, String> {
        self.tool_call_format.as_deref().map(str::parse).transpose()
    }

    /// The configured device (`auto` when unset); [`StackConfig::validate`] has checked the spelling.
    pub fn device(&self) -> Result<DeviceChoice, String> {
        self.device
            .as_deref()
            .map_or(Ok(DeviceChoice::Auto), |text| text.parse().map_err(|e: EngineError| e.to_string()))
    }
}

/// A config that could not be read or failed validation; the message names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped keys.
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: yaml_serde::Error,
    },
    /// A value is out of range or inconsistent; `key` is its path in the file.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Whether Llama Stack's `server.auth` is of the type llamagate reads ([`llama_stack_auth`]).
fn is_oauth2_token(auth: &yaml_serde::Value) -> bool {
    auth.get("provider_config").and_then(|p| p.get("type")).and_then(yaml_serde::Value::as_str) == Some("oauth2_token")
}

impl StackConfig {
    /// The `oauth_config` to serve with: the section itself, or else Llama Stack's `server.auth` of type
    /// `oauth2_token` read as one ([`llama_stack_auth`]), what changes logged as a notice each.
    pub fn take_oauth_config(&mut self) -> Result<Option<llamagate_authz::OAuthConfig>, ConfigError> {
        let auth = self.server.llama_stack.auth.as_ref().filter(|auth| is_oauth2_token(auth));
        if let Some(config) = self.oauth_config.take() {
            if auth.is_some() {
                tracing::warn!("server.auth: Llama Stack key not read (oauth_config is set); skipped");
            }
            return Ok(Some(config));
        }
        let Some(auth) = auth else { return Ok(None) };
        let stack_uri = format!("http://{}:{}", self.server.host, self.server.port);
        let Some(mapped) = llama_stack_auth::map_oauth2_token(auth, &stack_uri)? else { return Ok(None) };
        for notice in &mapped.notices {
            tracing::warn!("{notice}");
        }
        Ok(Some(mapped.config))
    }

    /// Reads and validates a config file, with `${env.NAME}` substitutions from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        let config = Self::parse_with_env(&text, &display, &|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text without substitutions or validation.
    pub fn parse(text: &str) -> Result<Self, yaml_serde::Error> {
        yaml_serde::from_str(text)
    }

    /// Parses YAML text, refusing keys written into it and making Llama Stack's `${env.…}` substitutions
    /// with `env`; `path` names the file in messages.
    pub fn parse_with_env(text: &str, path: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let parse_error = |source| ConfigError::Parse { path: path.to_string(), source };
        let mut raw: yaml_serde::Value = yaml_serde::from_str(text).map_err(parse_error)?;
        providers::check_keys_are_not_literal(&raw)?;
        env_subst::substitute(&mut raw, env)
            .map_err(|e| ConfigError::Invalid { key: path.to_string(), reason: e.to_string() })?;
        yaml_serde::from_value(raw).map_err(parse_error)
    }

    /// The models to serve, here and remote, and the providers behind them (see [`providers`]). Reads
    /// `api_key_file`s.
    pub fn inference_plan(&self) -> Result<providers::InferencePlan, ConfigError> {
        let mut plan = providers::plan(&self.models, &self.providers, &self.registered_resources)?;
        plan.skipped.extend(self.llama_stack.notes());
        plan.skipped.extend(self.server.llama_stack_notes());
        Ok(plan)
    }

    /// Checks every value; the first problem is returned with the key that holds it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: &str| ConfigError::Invalid { key, reason: reason.to_string() };
        if self.server.host.parse::<IpAddr>().is_err() && self.server.host != "localhost" {
            return Err(invalid("server.host".into(), "not an IP address (or `localhost`)"));
        }
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes".into(), "must be at least 1"));
        }
        for (key, value) in [
            ("server.max_connections", self.server.max_connections as u64),
            ("server.max_connections_per_ip", self.server.max_connections_per_ip as u64),
            ("server.header_read_timeout_seconds", self.server.header_read_timeout_seconds),
            ("server.max_auth_failures_per_minute_per_ip", u64::from(self.server.max_auth_failures_per_minute_per_ip)),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1"));
            }
        }
        let scope = &self.server.operator_scope;
        if scope.is_empty() || !scope.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return Err(invalid("server.operator_scope".into(), "must be one scope token (RFC 6749 §3.3)"));
        }
        let plan = self.inference_plan()?;
        if plan.is_empty() {
            return Err(invalid(
                "models".into(),
                "list at least one model to serve (under `models` or `registered_resources.models`)",
            ));
        }
        let mut seen = HashSet::new();
        for entry in plan.scopes() {
            if !seen.insert(entry.id.clone()) {
                return Err(invalid(format!("{}.id", entry.key), &format!("duplicate id `{}`", entry.id)));
            }
            if entry.required_scope.as_deref().is_some_and(|s| s.is_empty() || s.contains(' ')) {
                return Err(invalid(format!("{}.required_scope", entry.key), "must be one non-empty scope token"));
            }
        }
        for (prefix, model) in &plan.local {
            let key = |field: &str| format!("{prefix}.{field}");
            if model.id.trim().is_empty() || model.id.starts_with('/') || model.id.ends_with('/') {
                return Err(invalid(key("id"), "must be non-empty and must not start or end with `/`"));
            }
            check_source(&model.source).map_err(|reason| invalid(key("source"), &reason))?;
            if model.context_length == Some(0) {
                return Err(invalid(key("context_length"), "must be at least 1"));
            }
            model.device().map_err(|reason| invalid(key("device"), &reason))?;
            model.tool_call_format().map_err(|reason| invalid(key("tool_call_format"), &reason))?;
            let defaults = SchedulerConfig::default();
            let engine_keys = [
                ("max_batch", model.max_batch, defaults.max_batch.to_string()),
                ("queue_capacity", model.queue_capacity, defaults.queue_capacity.to_string()),
                ("kv_budget_mb", model.kv_budget_mb, "room for max_batch full contexts".to_string()),
                ("prefill_chunk", model.prefill_chunk, defaults.prefill_chunk.to_string()),
                ("threads", model.threads, "the engine's shared threads, --threads".to_string()),
            ];
            for (field, value, default) in engine_keys {
                if value == Some(0) {
                    let reason = format!("must be at least 1 (remove the key for the default: {default})");
                    return Err(invalid(key(field), &reason));
                }
            }
        }
        for model in &plan.remote {
            if model.id.trim().is_empty() || model.id.starts_with('/') || model.id.ends_with('/') {
                return Err(invalid(
                    format!("registered_resources.models[model_id={}].model_id", model.id),
                    "must be non-empty and must not start or end with `/`",
                ));
            }
        }
        self.validate_shields(&plan)
    }

    fn validate_shields(&self, plan: &providers::InferencePlan) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid { key, reason };
        let mut seen = HashSet::new();
        for (i, shield) in self.shields.iter().enumerate() {
            let key = |field: &str| format!("shields[{i}].{field}");
            if shield.id.trim().is_empty() || shield.id.starts_with('/') || shield.id.ends_with('/') {
                return Err(invalid(key("id"), "must be non-empty and must not start or end with `/`".into()));
            }
            if !seen.insert(shield.id.as_str()) {
                return Err(invalid(key("id"), format!("duplicate id `{}`", shield.id)));
            }
            if !plan.local.iter().any(|(_, m)| m.id == shield.model) {
                let reason = if plan.remote.iter().any(|m| m.id == shield.model) {
                    format!("`{}` is served by a remote provider; a guard model must run in this process", shield.model)
                } else {
                    format!("`{}` is not the id of a model under `models`", shield.model)
                };
                return Err(invalid(key("model"), reason));
            }
            for (j, code) in shield.excluded_categories.iter().enumerate() {
                if llamagate_engine::category_by_code(code).is_none() {
                    return Err(invalid(
                        format!("shields[{i}].excluded_categories[{j}]"),
                        format!("unknown category `{code}` (expected S1 … S14)"),
                    ));
                }
            }
            if shield.scores_file.as_deref().is_some_and(|p| !p.is_file()) {
                return Err(invalid(key("scores_file"), "file not found".into()));
            }
        }
        if let Some(id) = &self.safety_shield
            && !self.shields.iter().any(|s| &s.id == id)
        {
            return Err(invalid("safety_shield".into(), format!("`{id}` is not the id of a shield under `shields`")));
        }
        Ok(())
    }
}

/// Paths must exist now; hub ids (`org/name[@rev]`) are resolved when the model loads.
fn check_source(source: &str) -> Result<(), String> {
    let path = Path::new(source);
    if path.exists() {
        return Ok(());
    }
    let looks_like_path = source.starts_with('/') || source.starts_with('.') || source.ends_with(".gguf");
    let repo = source.split_once('@').map_or(source, |(r, _)| r);
    let is_hub_id = repo.split('/').count() == 2 && repo.split('/').all(|p| !p.is_empty());
    if looks_like_path || !is_hub_id {
        return Err(format!("file not found: {source} (expected a GGUF file, a checkpoint directory or a hub id)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_the_server_section() {
        let config = StackConfig::parse("models:\n  - id: a\n    source: org/name\n").unwrap();
        assert_eq!(config.server.port, DEFAULT_PORT);
        assert_eq!(config.server.host, "127.0.0.1");
        config.validate().unwrap();
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let config = StackConfig::parse("models:\n  - id: a\n    source: /no/such.gguf\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("models[0].source: file not found"), "{err}");
    }

    #[test]
    fn engine_keys_fill_the_scheduler_and_zero_is_refused() {
        let base = "models:\n  - id: a\n    source: o/n\n";
        let config = StackConfig::parse(base).unwrap();
        let defaults = SchedulerConfig::default();
        let scheduler = config.models[0].scheduler();
        assert_eq!(
            (scheduler.max_batch, scheduler.queue_capacity, scheduler.kv_budget_bytes, scheduler.prefill_chunk),
            (defaults.max_batch, defaults.queue_capacity, defaults.kv_budget_bytes, defaults.prefill_chunk)
        );
        let tuned = "    max_batch: 4\n    queue_capacity: 16\n    kv_budget_mb: 512\n    prefill_chunk: 128\n";
        let config = StackConfig::parse(&format!("{base}{tuned}")).unwrap();
        config.validate().unwrap();
        let scheduler = config.models[0].scheduler();
        assert_eq!(
            (scheduler.max_batch, scheduler.queue_capacity, scheduler.kv_budget_bytes, scheduler.prefill_chunk),
            (4, 16, Some(512 * 1024 * 1024), 128)
        );
        for field in ["max_batch", "queue_capacity", "kv_budget_mb", "prefill_chunk", "threads"] {
            let err =
                StackConfig::parse(&format!("{base}    {field}: 0\n")).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("models[0].{field}: must be at least 1 (remove the key")), "{err}");
        }
    }

    #[test]
    fn device_and_threads_are_per_model_and_a_misspelt_device_names_the_choices() {
        let base = "models:\n  - id: a\n    source: o/n\n";
        let config = StackConfig::parse(base).unwrap();
        assert_eq!((config.models[0].device(), config.models[0].scheduler().threads), (Ok(DeviceChoice::Auto), None));
        let config = StackConfig::parse(&format!("{base}    device: cuda:1\n    threads: 3\n")).unwrap();
        config.validate().unwrap();
        assert_eq!(
            (config.models[0].device(), config.models[0].scheduler().threads),
            (Ok(DeviceChoice::Cuda(1)), Some(3))
        );
        for (text, want) in
            [("cpu", DeviceChoice::Cpu), ("cuda", DeviceChoice::Cuda(0)), ("metal", DeviceChoice::Metal)]
        {
            let config = StackConfig::parse(&format!("{base}    device: {text}\n")).unwrap();
            assert_eq!(config.models[0].device(), Ok(want));
        }
        let err = StackConfig::parse(&format!("{base}    device: gpu\n")).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("models[0].device:") && err.contains("'gpu'") && err.contains("cuda:N"), "{err}");
    }

    #[test]
    fn quantize_takes_the_engine_names_and_names_the_choices_otherwise() {
        let base = "models:\n  - id: a\n    source: o/n\n";
        assert_eq!(StackConfig::parse(base).unwrap().models[0].quantize, None);
        let config = StackConfig::parse(&format!("{base}    quantize: q8_0\n")).unwrap();
        assert_eq!(config.models[0].quantize, Some(QuantizeOnLoad::Q8_0));
        let err = StackConfig::parse(&format!("{base}    quantize: q4_k\n")).unwrap_err().to_string();
        assert!(err.contains("quantize") && err.contains("q4_k") && err.contains("q8_0"), "{err}");
    }

    #[test]
    fn tool_call_format_takes_the_three_formats_and_names_the_key_otherwise() {
        let base = "models:\n  - id: m\n    source: o/n\n";
        assert_eq!(StackConfig::parse(base).unwrap().models[0].tool_call_format(), Ok(None));
        for (spelling, format) in [
            ("llama3_json", ToolCallFormat::Llama3Json),
            ("pythonic", ToolCallFormat::Pythonic),
            ("hermes", ToolCallFormat::Hermes),
        ] {
            let config = StackConfig::parse(&format!("{base}    tool_call_format: {spelling}\n")).unwrap();
            config.validate().unwrap();
            assert_eq!(config.models[0].tool_call_format(), Ok(Some(format)));
        }
        let config = StackConfig::parse(&format!("{base}    tool_call_format: mistral\n")).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("models[0].tool_call_format:") && err.contains("mistral"), "{err}");
        assert!(err.contains(ToolCallFormat::NAMES), "{err}");
    }

    #[test]
    fn kv_cache_type_takes_the_engine_names_and_names_the_choices_otherwise() {
        let base = "models:\n  - id: a\n    source: o/n\n";
        assert_eq!(StackConfig::parse(base).unwrap().models[0].kv_cache_type, None);
        let config = StackConfig::parse(&format!("{base}    kv_cache_type: q8_0\n")).unwrap();
        assert_eq!(config.models[0].kv_cache_type, Some(KvCacheType::Q8_0));
        let err = StackConfig::parse(&format!("{base}    kv_cache_type: q4_0\n")).unwrap_err().to_string();
        assert!(err.contains("kv_cache_type") && err.contains("q4_0") && err.contains("q8_0"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_unknown_keys_are_rejected() {
        let config = StackConfig::parse("models:\n  - id: a\n    source: o/n\n  - id: a\n    source: o/m\n").unwrap();
        assert!(config.validate().unwrap_err().to_string().starts_with("models[1].id"));
        assert!(StackConfig::parse("models: []\nsurprise: 1\n").is_err());
    }

    #[test]
    fn shields_name_a_served_model_and_known_categories() {
        let base = "models:\n  - id: org/guard\n    source: org/name\n";
        let ok = format!("{base}shields:\n  - id: llama-guard\n    model: org/guard\n    excluded_categories: [S14]\n");
        let config = StackConfig::parse(&ok).unwrap();
        config.validate().unwrap();
        assert_eq!(config.shields[0].excluded_categories, ["S14"]);
        assert!(StackConfig::parse(base).unwrap().shields.is_empty());
        let cases = [
            ("shields:\n  - id: g\n    model: other\n", "shields[0].model: `other` is not the id"),
            (
                "shields:\n  - id: g\n    model: org/guard\n    excluded_categories: [S1, S15]\n",
                "shields[0].excluded_categories[1]: unknown category `S15`",
            ),
            (
                "shields:\n  - id: g\n    model: org/guard\n  - id: g\n    model: org/guard\n",
                "shields[1].id: duplicate",
            ),
            ("shields:\n  - id: ''\n    model: org/guard\n", "shields[0].id:"),
        ];
        for (yaml, expected) in cases {
            let err = StackConfig::parse(&format!("{base}{yaml}")).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
        assert!(
            StackConfig::parse(&format!("{base}shields:\n  - id: g\n    model: org/guard\n    typo: 1\n")).is_err()
        );
        let chosen = format!("{base}shields:\n  - id: g\n    model: org/guard\nsafety_shield: nope\n");
        let err = StackConfig::parse(&chosen).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("safety_shield: `nope` is not the id of a shield"), "{err}");
        let double = format!("{base}shields:\n  - id: g\n    model: org/guard\n    scores_file: /no/such.json\n");
        let err = StackConfig::parse(&double).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("shields[0].scores_file: file not found"), "{err}");
    }

    #[test]
    fn the_oauth_section_is_read_into_the_authz_config() {
        let yaml = "models:\n  - id: a\n    source: o/n\noauth_config:\n  auth_server_uri: http://127.0.0.1:9400\n  stack_uri: http://127.0.0.1:8321\n  jwks_cache_ttl: 120\n";
        let oauth = StackConfig::parse(yaml).unwrap().oauth_config.unwrap();
        assert_eq!((oauth.jwks_cache_ttl, oauth.enable_auth), (120, true));
        oauth.validate().unwrap();
        let off = StackConfig::parse("models: []\noauth_config:\n  enable_auth: false\n").unwrap();
        assert!(!off.oauth_config.unwrap().enable_auth);
        assert!(StackConfig::parse("models: []\noauth_config:\n  typo: 1\n").is_err());
        assert!(StackConfig::parse("models: []\n").unwrap().oauth_config.is_none());
    }
}

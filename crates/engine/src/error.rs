//! The engine's error type: every way loading or generation can fail, as data the server can map to a status.

use std::path::PathBuf;

/// Everything the engine can refuse or fail at. Callers match on the variant: bad input from a user
/// (`PromptTooLong`, `InvalidRequest`) is theirs to report as a 400, model problems are an operator's.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the model needs is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, as the caller named it.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The model files exist but are not a valid model of a supported kind (corrupt, truncated, missing
    /// tensors, inconsistent shapes).
    #[error("invalid model {path}: {reason}")]
    InvalidModel {
        /// The model file or directory.
        path: PathBuf,
        /// What is wrong with it, for the operator.
        reason: String,
    },
    /// The model is valid but of a kind this engine does not run.
    #[error("unsupported model {path}: {reason}")]
    Unsupported {
        /// The model file or directory.
        path: PathBuf,
        /// What it is that we do not run (architecture, tensor type, …).
        reason: String,
    },
    /// A model source could not be resolved (unknown hub id, offline with an empty cache, …).
    #[error("cannot resolve model '{source_spec}': {reason}")]
    Resolve {
        /// The source as given (`org/name`, `org/name@revision`).
        source_spec: String,
        /// Why it could not be resolved, naming the cache when offline.
        reason: String,
    },
    /// The tokenizer could not be built or could not encode the input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The chat template failed to render (syntax error, or the template raised an exception itself).
    #[error("chat template error: {0}")]
    Template(String),
    /// The prompt does not fit into the model's context window.
    #[error("the prompt has {prompt_tokens} tokens but the context window holds {context_length}")]
    PromptTooLong {
        /// Tokens in the prompt as rendered and tokenized.
        prompt_tokens: usize,
        /// The model's context window.
        context_length: usize,
    },
    /// The request parameters are out of range or contradictory.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device unavailable: {0}")]
    Device(String),
    /// The scheduler is gone (the engine is shutting down).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The engine is at capacity (its queue is full): the request was not queued and may be retried
    /// after about `retry_after_secs` seconds.
    #[error("engine busy: {reason}")]
    Busy {
        /// Which limit was reached.
        reason: String,
        /// A hint for the client's `Retry-After`.
        retry_after_secs: u64,
    },
    /// A tensor operation failed during generation; this is a bug or a resource problem, not user error.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EngineError {
    pub(crate) fn invalid_model(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::InvalidModel { path: path.into(), reason: reason.to_string() }
    }

    pub(crate) fn unsupported(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Unsupported { path: path.into(), reason: reason.to_string() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        Self::Inference(e.to_string())
    }
}

/// The engine's result alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

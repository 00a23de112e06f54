//! [`ConfigError`]: what every part of `oauth_config` answers when a value cannot be used.

/// A configuration problem, naming the key (or environment variable) and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value the server cannot run with.
    #[error("oauth_config.{key}: {problem}; {fix}")]
    Invalid {
        /// The `oauth_config` key at fault.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// An environment override could not be parsed.
    #[error("{var}: {problem}")]
    Env {
        /// The environment variable at fault.
        var: String,
        /// What is wrong with its value.
        problem: String,
    },
}

impl ConfigError {
    /// [`ConfigError::Invalid`] for `key`, so validations read as one line per rule.
    pub(crate) fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Invalid { key, problem: problem.into(), fix: fix.into() }
    }
}

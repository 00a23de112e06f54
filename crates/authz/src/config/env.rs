//! Environment overrides: the `LLAMA_STACK_OAUTH_` variable prefix and how their values are read.

use crate::config::error::ConfigError;

/// Prefix of the environment variables that override `oauth_config` keys.
pub const ENV_PREFIX: &str = "LLAMA_STACK_OAUTH_";

/// A boolean variable: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
pub(crate) fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env { var: var.into(), problem: format!("`{v}` is not a boolean (use true or false)") }),
    }
}

/// A whole number of seconds.
pub(crate) fn parse_u64(var: &str, v: &str) -> Result<u64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::Env { var: var.into(), problem: format!("`{v}` is not a whole number of seconds") })
}

/// An enum by its serde name (`introspection`, `warn`, …), so the variable accepts what the file does.
pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(var: &str, v: &str) -> Result<T, ConfigError> {
    serde_json::from_value(serde_json::Value::String(v.trim().to_string()))
        .map_err(|_| ConfigError::Env { var: var.into(), problem: format!("`{v}` is not an accepted value") })
}

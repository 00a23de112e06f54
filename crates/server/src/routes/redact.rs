//! [`redact_secrets`]: hides credentials in a config before it is shown to a client.
//!
//! `GET /v1/providers` returns each provider's config; Llama Stack replaces the value of any key that
//! looks like a credential with `********` (docs/reference/llama-stack-api.md §a.2, below the table), so a token in a
//! provider's config never reaches a caller who may only read it.

use serde_json::Value;

/// What a redacted value is replaced with, as Llama Stack writes it.
pub const REDACTED: &str = "********";

/// Key fragments (matched case-insensitively) that mark a value as a credential.
const SECRET_KEY_PARTS: &[&str] = &["api_key", "api_token", "password", "secret", "token"];

/// Key endings that contain `token` but count tokens, not credentials.
const TOKEN_COUNT_SUFFIXES: &[&str] = &["max_tokens", "chunk_size_tokens"];

/// Whether a config key names a credential.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
        && !TOKEN_COUNT_SUFFIXES.iter().any(|suffix| key.ends_with(suffix))
}

/// Replaces, at any depth (objects and arrays), the value of every secret key with [`REDACTED`].
pub fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    *value = Value::String(REDACTED.into());
                } else {
                    redact_secrets(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_are_hidden_at_any_depth_and_token_counts_are_not() {
        let mut config = json!({
            "url": "http://localhost:11434",
            "API_KEY": "sk-1",
            "hf_token": "hf_x",
            "db": {"password": 5, "client_secret": {"nested": "x"}},
            "models": [{"id": "m", "auth_api_token": "t"}],
            "max_tokens": 4096,
            "default_max_tokens": 512,
            "chunk_size_tokens": 800,
        });
        redact_secrets(&mut config);
        assert_eq!(
            config,
            json!({
                "url": "http://localhost:11434",
                "API_KEY": REDACTED,
                "hf_token": REDACTED,
                "db": {"password": REDACTED, "client_secret": REDACTED},
                "models": [{"id": "m", "auth_api_token": REDACTED}],
                "max_tokens": 4096,
                "default_max_tokens": 512,
                "chunk_size_tokens": 800,
            })
        );
    }
}

//! [`ProviderData`]: Llama Stack's `X-LlamaStack-Provider-Data` request header — a JSON object of
//! per-request provider settings, of which llamagate reads only a caller's own key for a remote provider
//! (`openai_api_key`, `together_api_key`, …), and only for providers configured with
//! `allow_provider_data: true` (off by default: a gate's operator usually pays for the upstream). A leaf
//! module: the routes parse it, the remote backend reads it. Its `Debug` prints the field names only.

use std::fmt;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::secret::Secret;
use crate::http::error::ApiError;

/// The header's name.
pub const HEADER: &str = "x-llamastack-provider-data";

/// The header's fields, or none.
#[derive(Clone, Default)]
pub struct ProviderData(Map<String, Value>);

impl ProviderData {
    /// The header of a request: absent is empty; present, it must be one JSON object (400 otherwise,
    /// without echoing it: it may hold keys).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else { return Ok(Self::default()) };
        let invalid = || ApiError::BadRequest(format!("{HEADER} must be one JSON object"));
        if values.next().is_some() {
            return Err(invalid());
        }
        match serde_json::from_slice::<Value>(value.as_bytes()) {
            Ok(Value::Object(fields)) => Ok(Self(fields)),
            _ => Err(invalid()),
        }
    }

    /// The string field `name` as a key, if present and non-empty.
    pub fn key(&self, name: &str) -> Option<Secret> {
        self.0.get(name).and_then(Value::as_str).filter(|k| !k.is_empty()).map(Secret::new)
    }

    /// Whether the header carried anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ProviderData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderData").field("fields", &self.0.keys().collect::<Vec<_>>()).finish()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_header_is_one_object_and_never_prints_its_values() {
        let mut headers = HeaderMap::new();
        assert!(ProviderData::from_headers(&headers).unwrap().is_empty());
        headers.insert(HEADER, HeaderValue::from_static(r#"{"openai_api_key": "sk-1", "other": 3}"#));
        let data = ProviderData::from_headers(&headers).unwrap();
        assert_eq!(data.key("openai_api_key").map(|k| k.expose().to_string()), Some("sk-1".into()));
        assert!(data.key("other").is_none() && data.key("missing").is_none());
        assert!(!format!("{data:?}").contains("sk-1"));
        headers.insert(HEADER, HeaderValue::from_static("[1]"));
        let Err(ApiError::BadRequest(message)) = ProviderData::from_headers(&headers) else { panic!("a 400") };
        assert!(!message.contains("[1]"));
    }
}

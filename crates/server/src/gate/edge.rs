//! The edge: what is bounded before a request touches any state. A request line is the attacker's to
//! choose — a method can be 60 KB of made-up letters, a path as long as the header limit allows — and
//! whatever of it is kept past the request (a metric label, a log line, an audit record) is memory and
//! disk the attacker spends for us. So only the standard methods get in at all ([`refuse_unknown_methods`],
//! 501 before anything else runs), metric labels come from fixed sets ([`method_label`]), and any
//! request string that is written down is cut to [`MAX_RECORDED_BYTES`] first ([`bounded`]).

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// The methods any route could use; every other is answered 501 before any layer with state runs.
pub const ALLOWED_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

/// The most bytes of a request-supplied string (a path, say) kept in a log line or an audit record.
pub const MAX_RECORDED_BYTES: usize = 256;

/// The outermost layer: a method outside [`ALLOWED_METHODS`] is a 501 in the error envelope.
pub async fn refuse_unknown_methods(request: Request, next: Next) -> Response {
    if ALLOWED_METHODS.contains(request.method()) {
        next.run(request).await
    } else {
        ApiError::MethodNotImplemented.into_response()
    }
}

/// The method as a metric label: one of the allowed names, or `other`.
pub fn method_label(method: &Method) -> &'static str {
    ALLOWED_METHODS.iter().find(|allowed| *allowed == method).map_or("other", Method::as_str)
}

/// `text` cut to at most [`MAX_RECORDED_BYTES`] on a character boundary, marked with `…` when cut.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_RECORDED_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_RECORDED_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("/v1/models"), "/v1/models");
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_RECORDED_BYTES && cut.ends_with('…'), "{}", cut.len());
        assert!(cut.starts_with("éé"));
    }

    #[test]
    fn metric_labels_come_from_a_fixed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(&[b'X'; 60]).unwrap()), "other");
    }
}

//! A trivial OpenAI-compatible endpoint, for measuring the load tool itself
//! (`llamagate-load --self-test-server 127.0.0.1:9000`, hidden from `--help`).
//!
//! It answers both completion routes at once with a canned body (or a canned four-chunk SSE stream
//! when the request asks for one), so whatever rate the tool reaches against it is the tool's own
//! ceiling on this machine, not a server's.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

const CHAT: &str = r#"{"id":"chatcmpl-trivial","object":"chat.completion","created":0,"model":"trivial","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}}"#;

const TEXT: &str = r#"{"id":"cmpl-trivial","object":"text_completion","created":0,"model":"trivial","choices":[{"index":0,"text":"Hello there, friend.","finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}}"#;

const CHAT_STREAM: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\",\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" friend.\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":4,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
);

const TEXT_STREAM: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"text\":\"Hello\"}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"text\":\" there\"}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"text\":\",\"}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"text\":\" friend.\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":4,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
);

#[derive(Deserialize)]
struct StreamFlag {
    #[serde(default)]
    stream: bool,
}

fn answer(body: &Bytes, plain: &'static str, stream: &'static str) -> Response {
    let streamed = serde_json::from_slice::<StreamFlag>(body).is_ok_and(|b| b.stream);
    if streamed {
        ([(CONTENT_TYPE, "text/event-stream")], stream).into_response()
    } else {
        ([(CONTENT_TYPE, "application/json")], plain).into_response()
    }
}

/// The router of the trivial endpoint.
pub fn router() -> Router {
    Router::new()
        .route("/v1/chat/completions", post(|body: Bytes| async move { answer(&body, CHAT, CHAT_STREAM) }))
        .route("/v1/completions", post(|body: Bytes| async move { answer(&body, TEXT, TEXT_STREAM) }))
}

/// Serves the trivial endpoint on `addr` until Ctrl-C.
pub async fn serve(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("trivial endpoint listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

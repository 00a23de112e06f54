//! Generation through the real server: chat completions (plain and streamed), legacy completions,
//! and graceful shutdown with a stream in flight. Greedy decoding and few tokens keep it fast.

use crate::support::{MODEL_ID, Server, keys, sse_events};
use serde_json::{Value, json};

const QUESTION: &str = "Name three primary colors.";

fn chat_body(stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    })
}

#[tokio::test]
async fn chat_completion_plain_and_streamed_agree_and_count_tokens() {
    let server = Server::start();
    let (status, body) = server.post_json("/v1/chat/completions", &chat_body(false, 8)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        ["choices", "created", "id", "model", "object", "service_tier", "system_fingerprint", "usage"]
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL_ID);
    let choice = &body["choices"][0];
    assert_eq!(keys(choice), ["finish_reason", "index", "logprobs", "message"]);
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(text.to_lowercase().contains("primary"), "{text}");
    // Same count as `llamagate generate` reports for this prompt with the model's chat template.
    assert_eq!(body["usage"]["prompt_tokens"], 35);
    assert_eq!(body["usage"]["completion_tokens"], 8);
    assert_eq!(body["usage"]["total_tokens"], 43);
    assert_eq!(choice["finish_reason"], "length");

    let mut streamed = chat_body(true, 8);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = server.client.post(server.url("/v1/chat/completions")).json(&streamed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = &events[..events.len() - 1];
    for chunk in chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    let joined: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(joined, text, "greedy stream must match the plain answer");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 35);
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn legacy_completions_answer_plain_and_streamed() {
    let server = Server::start();
    let body = json!({"model": MODEL_ID, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0});
    let (status, plain) = server.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["object"], "text_completion");
    assert_eq!(keys(&plain["choices"][0]), ["finish_reason", "index", "logprobs", "text"]);
    assert_eq!(plain["usage"]["completion_tokens"], 4);
    let text = plain["choices"][0]["text"].as_str().unwrap();

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = server.client.post(server.url("/v1/completions")).json(&streamed).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let joined: String = events.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(joined, text);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let mut server = Server::start();
    let mut response =
        server.client.post(server.url("/v1/chat/completions")).json(&chat_body(true, 12)).send().await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    let killed = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::from_utf8(first.to_vec()).unwrap();
    while let Some(bytes) = response.chunk().await.unwrap() {
        rest.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    assert_eq!(sse_events(&rest).last().unwrap(), "[DONE]", "the stream was cut short");
    assert!(server.wait(), "the server did not exit cleanly");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_generation() {
    let server = Server::start_with_log_filter(Some("info"));
    // Far more tokens than the test waits for: only cancellation ends this generation early.
    let mut response =
        server.client.post(server.url("/v1/chat/completions")).json(&chat_body(true, 400)).send().await.unwrap();
    response.chunk().await.unwrap().unwrap();
    drop(response);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.log().contains("generation cancelled") {
        assert!(std::time::Instant::now() < deadline, "no cancellation logged:\n{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!server.log().contains(QUESTION), "the prompt must never be logged");
}

/// Each finished generation lands in the latency histograms under its model, from the engine's own
/// timings: its queue wait, first token, whole time and the time between its tokens.
#[tokio::test]
async fn each_generation_is_timed_in_the_metrics() {
    let server = Server::start();
    for _ in 0..2 {
        let (status, body) = server.post_json("/v1/chat/completions", &chat_body(false, 4)).await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for histogram in ["queue", "ttft", "duration", "inter_token"] {
        let count = format!("llamagate_generation_{histogram}_seconds_count{{model=\"{MODEL_ID}\"}} 2");
        assert!(metrics.lines().any(|line| line == count), "{count} in\n{metrics}");
    }
}

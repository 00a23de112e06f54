//! Log-probabilities and `logit_bias` through the real server: chat's `logprobs.content` and legacy
//! completions' parallel lists, plain and streamed, checked against each other and the answer's text.

use crate::support::{MODEL_ID, Server, sse_events};
use serde_json::{Value, json};

fn chat(stream: bool) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Name three primary colors."}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": stream,
        "logprobs": true,
        "top_logprobs": 3,
    })
}

/// Checks one chat `logprobs.content` list against the text it should spell; greedy decoding, so each
/// chosen token is the most likely one.
fn check_chat_entries(entries: &[Value], text: &str) {
    let mut bytes = Vec::new();
    for entry in entries {
        let logprob = entry["logprob"].as_f64().unwrap();
        assert!(logprob <= 0.0, "{entry}");
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{entry}");
        assert_eq!(top[0]["token"], entry["token"], "greedy picks the most likely token: {entry}");
        assert!((top[0]["logprob"].as_f64().unwrap() - logprob).abs() < 1e-6);
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "{lps:?}");
        bytes.extend(entry["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8));
    }
    assert_eq!(String::from_utf8(bytes).unwrap(), text, "the tokens spell the answer");
}

#[tokio::test]
async fn chat_logprobs_plain_and_streamed_spell_the_answer_and_agree() {
    let server = Server::start();
    let (status, plain) = server.post_json("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{plain}");
    let choice = &plain["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap();
    let entries = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(entries.len(), 8, "one entry per generated token: {plain}");
    assert_eq!(choice["logprobs"]["refusal"], Value::Null);
    check_chat_entries(entries, text);

    let response = server.client.post(server.url("/v1/chat/completions")).json(&chat(true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    let chunks = &events[..events.len() - 1];
    let mut streamed = Vec::new();
    let mut joined = String::new();
    for chunk in chunks {
        let choice = &chunk["choices"][0];
        if let Some(content) = choice["delta"]["content"].as_str().filter(|c| !c.is_empty()) {
            joined.push_str(content);
            streamed.extend(choice["logprobs"]["content"].as_array().unwrap().iter().cloned());
        }
    }
    assert_eq!(joined, text);
    check_chat_entries(&streamed, text);
    let tokens = |list: &[Value]| list.iter().map(|e| e["token"].clone()).collect::<Vec<_>>();
    assert_eq!(tokens(&streamed), tokens(entries));
    for (a, b) in streamed.iter().zip(entries) {
        assert!((a["logprob"].as_f64().unwrap() - b["logprob"].as_f64().unwrap()).abs() < 1e-4, "{a} vs {b}");
    }

    // Without the option the field stays null, as before.
    let mut without = chat(false);
    without.as_object_mut().unwrap().retain(|k, _| k != "logprobs" && k != "top_logprobs");
    let (_, body) = server.post_json("/v1/chat/completions", &without).await;
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);
    let mut bad = chat(false);
    bad["top_logprobs"] = json!(21);
    let (status, body) = server.post_json("/v1/chat/completions", &bad).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn completion_logprobs_are_parallel_lists_with_offsets_in_both_spellings() {
    let server = Server::start();
    let body = json!({"model": MODEL_ID, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0});
    for (spelling, alternatives) in [(json!(2), 2), (json!(true), 0)] {
        let mut asked = body.clone();
        asked["logprobs"] = spelling.clone();
        let (status, plain) = server.post_json("/v1/completions", &asked).await;
        assert_eq!(status, 200, "{plain}");
        let choice = &plain["choices"][0];
        let text = choice["text"].as_str().unwrap();
        let lp = &choice["logprobs"];
        let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(tokens.len(), 6, "{spelling}: {plain}");
        assert_eq!(tokens.concat(), text);
        assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 6);
        let offsets: Vec<u64> = lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
        let mut expected = Vec::new();
        let mut at = 0;
        for token in &tokens {
            expected.push(at);
            at += token.chars().count() as u64;
        }
        assert_eq!(offsets, expected);
        for top in lp["top_logprobs"].as_array().unwrap() {
            assert_eq!(top.as_object().unwrap().len(), alternatives, "{spelling}: {top}");
        }

        // Streamed: the chunks' lists join to the plain ones, offsets continuing across chunks.
        asked["stream"] = json!(true);
        let response = server.client.post(server.url("/v1/completions")).json(&asked).send().await.unwrap();
        let events = sse_events(&response.text().await.unwrap());
        let (mut streamed_tokens, mut streamed_offsets) = (Vec::new(), Vec::new());
        for event in &events[..events.len() - 1] {
            let Some(lp) = event["choices"][0]["logprobs"].as_object() else { continue };
            streamed_tokens.extend(lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
            streamed_offsets.extend(lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()));
        }
        assert_eq!(streamed_tokens, tokens);
        assert_eq!(streamed_offsets, offsets);
    }
}

#[tokio::test]
async fn logit_bias_forces_a_token_whatever_the_seed_and_bad_entries_are_refused_with_400() {
    let server = Server::start();
    let body = json!({"model": MODEL_ID, "prompt": "The capital of France is", "max_tokens": 1, "temperature": 1.5});
    let forced = |id: u32, seed: u64| {
        let mut asked = body.clone();
        asked["logit_bias"] = json!({ id.to_string(): 100 });
        asked["seed"] = json!(seed);
        let server = &server;
        async move {
            let (status, answer) = server.post_json("/v1/completions", &asked).await;
            assert_eq!(status, 200, "{answer}");
            answer["choices"][0]["text"].as_str().unwrap().to_string()
        }
    };
    // At a high temperature the seeds would pick different tokens; +100 on one id makes it certain.
    let a = forced(1000, 1).await;
    for seed in [2, 3, 4] {
        assert_eq!(forced(1000, seed).await, a, "seed {seed}");
    }
    assert_ne!(forced(1001, 1).await, a, "another id, another token");
    for bias in [json!({"999999999": 1}), json!({"12": 101}), json!({"twelve": 1}), json!({"12": "x"})] {
        let mut bad = body.clone();
        bad["logit_bias"] = bias.clone();
        let (status, answer) = server.post_json("/v1/completions", &bad).await;
        assert_eq!(status, 400, "{bias}: {answer}");
    }
}

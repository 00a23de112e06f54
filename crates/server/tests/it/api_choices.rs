//! Several choices per request through the real server: `n` on chat and completions (plain and streamed),
//! completions with a list of prompts and `echo`, the bounds' 400s, the budget reserved for every choice
//! and settled and audited at the real counts, and generations cut inside a multi-byte character.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::dev::{self, DevServer};
use crate::support::limits::{Answer, get, post};
use crate::support::{MODEL_ID, Server, default_model, sse_events};
use serde_json::{Value, json};

const QUESTION: &str = "Name three primary colors.";

fn chat(n: u32, stream: bool) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        "temperature": 1,
        "seed": 7,
        "n": n,
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

/// A streamed answer's text per choice index, its finish reasons per index, and its usage chunk.
fn by_choice(events: &[Value], text_of: impl Fn(&Value) -> Option<&str>) -> (Vec<String>, Vec<String>, Value) {
    let mut texts: BTreeMap<u64, String> = BTreeMap::new();
    let mut finishes: BTreeMap<u64, String> = BTreeMap::new();
    let mut usage = Value::Null;
    for event in events.iter().filter(|e| e.is_object()) {
        if !event["usage"].is_null() {
            usage = event["usage"].clone();
        }
        for choice in event["choices"].as_array().unwrap() {
            let index = choice["index"].as_u64().unwrap();
            texts.entry(index).or_default().push_str(text_of(choice).unwrap_or(""));
            if let Some(reason) = choice["finish_reason"].as_str() {
                assert!(finishes.insert(index, reason.to_string()).is_none(), "choice {index} finished twice");
            }
        }
    }
    assert_eq!(texts.keys().copied().collect::<Vec<_>>(), finishes.keys().copied().collect::<Vec<_>>());
    (texts.into_values().collect(), finishes.into_values().collect(), usage)
}

/// `n = 3` on chat: three choices indexed 0..2, sampled apart with the seed (the same seed gives the same
/// three), the prompt counted once in `usage` and every choice's tokens; streamed, each chunk carries its
/// choice's index and the choices' texts are the plain answer's.
#[tokio::test]
async fn chat_answers_n_choices_plain_and_streamed() {
    let server = Server::start();
    let (status, plain) = server.post_json("/v1/chat/completions", &chat(3, false)).await;
    assert_eq!(status, 200, "{plain}");
    let choices = plain["choices"].as_array().unwrap();
    assert_eq!(choices.iter().map(|c| c["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    let texts: Vec<&str> = choices.iter().map(|c| c["message"]["content"].as_str().unwrap()).collect();
    assert!(
        texts[0] != texts[1] || texts[1] != texts[2],
        "three samples at temperature 1 are not all equal: {texts:?}"
    );
    assert_eq!(plain["usage"]["prompt_tokens"], 35, "the prompt counts once");
    let completion = plain["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion > 8 && completion <= 3 * 8, "every choice's tokens count: {}", plain["usage"]);
    assert_eq!(
        plain["usage"]["total_tokens"].as_u64().unwrap(),
        35 + plain["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let (_, again) = server.post_json("/v1/chat/completions", &chat(3, false)).await;
    assert_eq!(again["choices"], plain["choices"], "the same seed gives the same choices");

    let response = server.client.post(server.url("/v1/chat/completions")).json(&chat(3, true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let (streamed, finishes, usage) = by_choice(&events[..events.len() - 1], |c| c["delta"]["content"].as_str());
    assert_eq!(streamed, texts);
    let plain_finishes: Vec<&str> = choices.iter().map(|c| c["finish_reason"].as_str().unwrap()).collect();
    assert_eq!(finishes, plain_finishes);
    assert_eq!(usage["prompt_tokens"], 35);
    assert_eq!(usage["completion_tokens"], plain["usage"]["completion_tokens"]);
    // Each choice announces its role once, in its own chunk.
    let roles = events.iter().filter(|e| e["choices"][0]["delta"]["role"] == "assistant").count();
    assert_eq!(roles, 3);
}

/// The value of the engine's `llamagate_engine_prompt_tokens_prefilled_total` for the served model.
async fn prefilled(server: &Server) -> u64 {
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("llamagate_engine_prompt_tokens_prefilled_total{{model=\"{MODEL_ID}\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    line[series.len()..].parse().unwrap()
}

/// Four choices through the server cost one prefill of the prompt: the engine's counter, read from
/// `/metrics`, grows by the prompt's tokens once, not four times.
#[tokio::test]
async fn n_choices_prefill_their_prompt_once() {
    let server = Server::start();
    let before = prefilled(&server).await;
    let mut body = chat(4, false);
    body["messages"][0]["content"] = json!("Write a haiku about autumn leaves falling on a quiet pond.");
    let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"].as_array().unwrap().len(), 4);
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prefilled(&server).await - before, prompt, "the prompt was computed once for four choices");
}

/// A list of prompts with `n = 2` and `echo`: choices indexed `prompt × n + choice`, each starting with
/// its prompt; the usage counts each prompt once (what each alone is counted at) and every choice;
/// streamed, each choice's first chunk is its prompt and its chunks join to the plain text.
#[tokio::test]
async fn completions_answer_a_prompt_list_with_n_choices_each_and_echo() {
    let server = Server::start();
    let prompts = ["The capital of France is", "One, two, three,"];
    let mut prompt_tokens = 0;
    for prompt in prompts {
        let (status, alone) =
            server.post_json("/v1/completions", &json!({"model": MODEL_ID, "prompt": prompt, "max_tokens": 1})).await;
        assert_eq!(status, 200, "{alone}");
        prompt_tokens += alone["usage"]["prompt_tokens"].as_u64().unwrap();
    }
    let body = json!({"model": MODEL_ID, "prompt": prompts, "n": 2, "echo": true, "max_tokens": 4, "temperature": 0});
    let (status, plain) = server.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    let choices = plain["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        let text = choice["text"].as_str().unwrap();
        let prompt = prompts[i / 2];
        assert!(text.starts_with(prompt) && text.len() > prompt.len(), "choice {i}: {text:?}");
    }
    assert_eq!(plain["usage"]["prompt_tokens"], prompt_tokens, "each prompt once");
    assert_eq!(plain["usage"]["completion_tokens"], 16, "four choices of four tokens");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = server.client.post(server.url("/v1/completions")).json(&streamed).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    for (i, prompt) in [(0, prompts[0]), (3, prompts[1])] {
        let first = events.iter().find(|e| e["choices"][0]["index"] == i).unwrap();
        assert_eq!(first["choices"][0]["text"], prompt, "choice {i} opens with its prompt");
    }
    let (texts, finishes, _) = by_choice(&events[..events.len() - 1], |c| c["text"].as_str());
    let plain_texts: Vec<&str> = choices.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, plain_texts);
    assert_eq!(finishes, ["length"; 4]);
}

/// What is bounded or not served is a 400 naming the field, before any generation.
#[tokio::test]
async fn out_of_bounds_choices_and_unserved_prompt_forms_are_refused_naming_the_field() {
    let server = Server::start();
    for (path, body, field) in [
        ("/v1/chat/completions", chat(9, false), "n must be between 1 and 8"),
        ("/v1/chat/completions", chat(0, false), "n must be between 1 and 8"),
        ("/v1/completions", json!({"model": MODEL_ID, "prompt": [[1, 2], [3]]}), "prompt:"),
        ("/v1/completions", json!({"model": MODEL_ID, "prompt": vec!["a"; 17]}), "prompt must hold 1 to 16"),
        ("/v1/completions", json!({"model": MODEL_ID, "prompt": vec!["a"; 5], "n": 8}), "n:"),
        (
            "/v1/completions",
            json!({"model": MODEL_ID, "prompt": "a", "echo": true, "logprobs": 1}),
            "echo with logprobs",
        ),
    ] {
        let (status, answer) = server.post_json(path, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("{answer}"));
        assert!(message.starts_with(field), "{body}: {message}");
    }
}

/// 1,000 tokens per hour (nothing visibly refills during the test), audited to `audit.log`.
fn write_metered_config(dir: &Path) {
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\nmodels:\n  - id: {MODEL_ID}\n    source: {}\n    context_length: 1024\n\
         oauth_config:\n  rate_limits:\n    backend: memory\n    tiers:\n      \
         metered: {{requests: 100, tokens: 1000, window_seconds: 3600}}\n    scope_tiers:\n      \
         metered_access: metered\n  audit:\n    path: {}\n",
        default_model().display(),
        dir.join("audit.log").display()
    );
    std::fs::write(dir.join("stack.yaml"), yaml).unwrap();
}

/// The audit's `inference_response` records, waiting briefly for `at_least` (written asynchronously).
fn responses(path: &Path, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["event"] == "inference_response")
            .collect();
        if found.len() >= at_least || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stopping_chat(n: u32, max_tokens: u32) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": max_tokens, "temperature": 1, "seed": 3, "n": n, "stop": [" ", "\n", ".", ","],
    })
}

/// The tier's reservation covers `prompt + n × max_tokens` (three choices of 400 do not fit 1,000
/// tokens where one does), the settlement charges the real total, and the audit records it.
#[tokio::test]
async fn every_choice_is_reserved_then_charged_and_audited_at_its_real_count() {
    let dir = tempfile::tempdir().unwrap();
    write_metered_config(dir.path());
    let server: DevServer = dev::start(dir.path(), 0);
    let token = crate::support::limits::token(dir.path(), &server, "choices-user", &["metered_access"]);
    let client = crate::support::limits::client();

    let answer: Answer = post(&client, &server, &token, "/v1/chat/completions", &stopping_chat(3, 250)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let usage = &answer.body["usage"];
    let (prompt, completion) = (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap());
    assert_eq!(answer.body["choices"].as_array().unwrap().len(), 3);
    assert!((3..750).contains(&completion), "each choice stopped early: {usage}");
    assert!(
        answer.number("x-ratelimit-remaining-tokens") <= 1000 - (prompt + 3 * 250),
        "the reservation was prompt + 3 × max_tokens"
    );
    let left = get(&client, &server, Some(&token), "/v1/usage").await.body["tokens"]["remaining"].as_u64().unwrap();
    assert!(left >= 1000 - (prompt + completion), "the unused reservation came back: {left}");
    let audited = responses(&dir.path().join("audit.log"), 1);
    assert_eq!(
        (audited[0]["prompt_tokens"].as_u64(), audited[0]["completion_tokens"].as_u64()),
        (Some(prompt), Some(completion))
    );

    // One choice of 400 fits what is left; three do not, and are refused before any generation.
    let refused = post(&client, &server, &token, "/v1/chat/completions", &stopping_chat(3, 400)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let one = post(&client, &server, &token, "/v1/chat/completions", &stopping_chat(1, 400)).await;
    assert_eq!(one.status, 200, "{}", one.body);
}

/// The length, in tokens, at which the greedy answer to `body` is first cut inside a multi-byte
/// character after a whole one, and the text up to the last whole character there: found from the answer's own token
/// bytes (`logprobs`), so the search is deterministic and needs no guess about the tokenizer.
async fn first_cut_inside_a_character(server: &Server, body: &Value) -> (usize, String) {
    let mut probe = body.clone();
    probe["logprobs"] = json!(true);
    let (status, answer) = server.post_json("/v1/chat/completions", &probe).await;
    assert_eq!(status, 200, "{answer}");
    let mut bytes: Vec<u8> = Vec::new();
    for (i, token) in answer["choices"][0]["logprobs"]["content"].as_array().unwrap().iter().enumerate() {
        bytes.extend(token["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8));
        if let Err(e) = std::str::from_utf8(&bytes) {
            // After at least one whole character, so the answer has something to keep.
            if e.error_len().is_none() && e.valid_up_to() > 0 {
                let whole = String::from_utf8(bytes[..e.valid_up_to()].to_vec()).unwrap();
                return (i + 1, whole);
            }
        }
    }
    panic!("the answer never ends a token inside a character: {answer}");
}

/// A generation cut by `max_tokens` inside a multi-byte character (the default model answers this
/// prompt with emoji, each spread over several byte tokens) ends with the last whole character, plain
/// and streamed: no U+FFFD, and nothing of the unfinished character.
#[tokio::test]
async fn a_generation_cut_inside_a_character_ends_with_the_last_whole_one() {
    let server = Server::start();
    let mut body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Write one emoji that means happy:"}],
        "max_tokens": 16,
        "temperature": 0,
    });
    let (cut, whole) = first_cut_inside_a_character(&server, &body).await;
    body["max_tokens"] = json!(cut);
    let (status, plain) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["choices"][0]["finish_reason"], "length");
    assert_eq!(plain["usage"]["completion_tokens"], cut);
    let text = plain["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.contains(char::REPLACEMENT_CHARACTER), "{text:?}");
    assert_eq!(text, whole);
    assert!(!whole.is_empty() && !whole.is_ascii(), "the kept text ends with a whole multi-byte character: {whole:?}");

    body["stream"] = json!(true);
    let response = server.client.post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let streamed: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, whole, "streamed: {events:?}");

    // The legacy route decodes the same way.
    let prompt = "Write one emoji that means happy:";
    let completion = json!({"model": MODEL_ID, "prompt": prompt, "max_tokens": cut, "temperature": 0});
    let (status, answer) = server.post_json("/v1/completions", &completion).await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer["choices"][0]["text"].as_str().unwrap().contains(char::REPLACEMENT_CHARACTER), "{answer}");
}

/// With `logprobs`, each choice's entries travel with that choice's text: streamed chat entries spell
/// each choice's content, and completions' `text_offset`s count from 0 in every choice.
#[tokio::test]
async fn logprobs_follow_each_choice_in_streams() {
    let server = Server::start();
    let mut body = chat(2, true);
    body["logprobs"] = json!(true);
    let response = server.client.post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let mut spelled: BTreeMap<u64, String> = BTreeMap::new();
    let mut texts: BTreeMap<u64, String> = BTreeMap::new();
    for choice in events.iter().filter(|e| e.is_object()).flat_map(|e| e["choices"].as_array().unwrap().clone()) {
        let index = choice["index"].as_u64().unwrap();
        texts.entry(index).or_default().push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        for token in choice["logprobs"]["content"].as_array().into_iter().flatten() {
            spelled.entry(index).or_default().push_str(token["token"].as_str().unwrap());
        }
    }
    assert_eq!(texts.len(), 2);
    assert_eq!(spelled, texts);

    let completion = json!({"model": MODEL_ID, "prompt": "One, two, three,", "max_tokens": 4, "n": 2,
        "temperature": 1, "seed": 9, "logprobs": 1, "stream": true});
    let response = server.client.post(server.url("/v1/completions")).json(&completion).send().await.unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let mut first_offsets: BTreeMap<u64, u64> = BTreeMap::new();
    for choice in events.iter().filter(|e| e.is_object()).flat_map(|e| e["choices"].as_array().unwrap().clone()) {
        if let Some(offset) = choice["logprobs"]["text_offset"].as_array().and_then(|o| o.first()) {
            first_offsets.entry(choice["index"].as_u64().unwrap()).or_insert(offset.as_u64().unwrap());
        }
    }
    assert_eq!(first_offsets, BTreeMap::from([(0, 0), (1, 0)]));
}

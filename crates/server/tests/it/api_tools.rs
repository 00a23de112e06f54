//! Tool calling through the real server with real (development-issuer) tokens: a whole round trip
//! (tools offered → the model's call parsed into `message.tool_calls` → the tool's answer fed back →
//! a final text answer), streamed calls that reassemble to the plain answer's, a named `tool_choice`
//! that primes the call, the 400s that name each refused field, and the model scope still required.
//!
//! The default model (SmolLM2-135M, whose template knows no tools: they reach it as a system-prompt
//! preamble) does not call tools on its own judgement; at temperature 0 it does follow two earlier
//! calls in the conversation, which makes the auto round trip deterministic. Where the model's output
//! is the subject, the tests assert the shape and the parse, not what it chose.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::dev::{self, DevServer};
use crate::support::limits::{Answer, client, post, token};
use crate::support::remote::{Gate, REMOTE_SCOPE, dead_base_url, run_yaml};
use crate::support::{MODEL_ID, Server, serve_once};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

fn earlier_call(id: &str, city: &str) -> [Value; 2] {
    [
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": json!({"city": city}).to_string()}}]}),
        json!({"role": "tool", "tool_call_id": id, "content": format!("{} C", city.len() * 3)}),
    ]
}

/// Two answered calls and a third question: at temperature 0 the model makes the third call.
fn conversation() -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    messages.extend(earlier_call("call_1", "Paris"));
    messages.push(json!({"role": "assistant", "content": "18 C."}));
    messages.push(json!({"role": "user", "content": "Weather in Rome?"}));
    messages.extend(earlier_call("call_2", "Rome"));
    messages.push(json!({"role": "assistant", "content": "12 C."}));
    messages.push(json!({"role": "user", "content": "Weather in London?"}));
    messages
}

fn chat(messages: &[Value], extra: Value) -> Value {
    let mut body = json!({"model": MODEL_ID, "messages": messages, "tools": [weather_tool()], "temperature": 0,
        "max_tokens": 40});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn start(dir: &Path) -> (DevServer, String) {
    dev::write_default_config(dir);
    let server = dev::start(dir, 0);
    // The model's scope, and the premium tier: the round trip's prompts (the tools make them long)
    // outgrow the free tier's minute.
    let token = token(dir, &server, "tool-user", &["premium_access"]);
    (server, token)
}

/// A streamed answer's events (JSON chunks, without `[DONE]`).
async fn stream(server: &DevServer, token: &str, body: &Value) -> Vec<Value> {
    let response =
        client().post(server.url("/v1/chat/completions")).bearer_auth(token).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = crate::support::sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    events[..events.len() - 1].to_vec()
}

/// The calls a stream's `delta.tool_calls` add up to (arguments joined per index, as the SDKs join
/// them), its content, and its finish reason.
fn reassemble(events: &[Value]) -> (Vec<Value>, String, String) {
    let mut calls: Vec<Value> = Vec::new();
    let mut content = String::new();
    let mut finish = String::new();
    for choice in events.iter().flat_map(|e| e["choices"].as_array().unwrap()) {
        content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = reason.to_string();
        }
        for delta in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let index = delta["index"].as_u64().unwrap() as usize;
            if calls.len() <= index {
                calls.push(json!({"id": "", "type": "", "function": {"name": "", "arguments": ""}}));
            }
            let call = &mut calls[index];
            for key in ["id", "type"] {
                if let Some(piece) = delta[key].as_str() {
                    call[key] = json!(format!("{}{piece}", call[key].as_str().unwrap()));
                }
            }
            for key in ["name", "arguments"] {
                if let Some(piece) = delta["function"][key].as_str() {
                    let joined = format!("{}{piece}", call["function"][key].as_str().unwrap());
                    call["function"][key] = json!(joined);
                }
            }
        }
    }
    (calls, content, finish)
}

/// A call as OpenAI shapes it: a `call_…` id, type `function`, a tool's name and JSON-object arguments.
fn assert_call_shape(call: &Value) -> Value {
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!(call["type"], "function", "{call}");
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments.is_object(), "{call}");
    arguments
}

/// Tools offered → the model's call parsed (`content` null, `finish_reason: tool_calls`) → the
/// assistant message and the tool's answer sent back → a final text answer. Streamed, the same
/// request's `delta.tool_calls` reassemble to the same call (its own id), with no text sent.
#[tokio::test]
async fn a_tool_round_trip_and_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path());
    let client = client();
    let messages = conversation();

    let first: Answer = post(&client, &server, &token, "/v1/chat/completions", &chat(&messages, json!({}))).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let choice = &first.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{}", first.body);
    let message = &choice["message"];
    assert!(message["content"].is_null(), "only calls: content is null: {message}");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{message}");
    let arguments = assert_call_shape(&calls[0]);
    assert!(arguments["city"].is_string(), "{arguments}");

    let events = stream(&server, &token, &chat(&messages, json!({"stream": true}))).await;
    let (streamed, content, finish) = reassemble(&events);
    assert_eq!((content.as_str(), finish.as_str()), ("", "tool_calls"), "{events:?}");
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0]["function"], calls[0]["function"], "the stream's call is the plain answer's");
    assert_call_shape(&streamed[0]);
    assert_ne!(streamed[0]["id"], calls[0]["id"], "every call gets its own id");

    // The tool's answer goes back with the call's id; the model answers in text.
    let mut messages = messages;
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "12 C, light rain"}));
    let last = post(&client, &server, &token, "/v1/chat/completions", &chat(&messages, json!({}))).await;
    assert_eq!(last.status, 200, "{}", last.body);
    let choice = &last.body["choices"][0];
    assert!(choice["message"]["tool_calls"].is_null(), "{}", last.body);
    assert!(!choice["message"]["content"].as_str().unwrap().is_empty(), "{}", last.body);
    assert_ne!(choice["finish_reason"], "tool_calls");

    // A text answer with tools offered streams as the plain answer's text.
    let events = stream(&server, &token, &chat(&messages, json!({"stream": true}))).await;
    let (streamed, content, finish) = reassemble(&events);
    assert!(streamed.is_empty(), "{events:?}");
    assert_eq!(content, choice["message"]["content"].as_str().unwrap());
    assert_eq!(finish, choice["finish_reason"].as_str().unwrap());
}

/// A named `tool_choice` (and `required` with one tool) primes the call: the answer is always a call
/// to that function, whatever the question, streamed or not; `required` with several tools is always a
/// call to one of them; `none` drops the tools and answers text.
#[tokio::test]
async fn a_named_tool_choice_is_always_that_call_and_none_is_text() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path());
    let client = client();
    let question = [json!({"role": "user", "content": "What is the weather like in Paris today?"})];
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_tokens": 24});

    let plain = post(&client, &server, &token, "/v1/chat/completions", &chat(&question, named.clone())).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let choice = &plain.body["choices"][0];
    assert!(choice["message"]["content"].is_null(), "{}", plain.body);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls[0]["function"]["arguments"].is_string());
    // Cut by max_tokens the call says so; finished, it says tool_calls.
    assert!(["tool_calls", "length"].contains(&choice["finish_reason"].as_str().unwrap()), "{}", plain.body);

    let mut streamed_body = chat(&question, named);
    streamed_body["stream"] = json!(true);
    let (streamed, content, finish) = reassemble(&stream(&server, &token, &streamed_body).await);
    assert_eq!(content, "");
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0]["function"], calls[0]["function"]);
    assert_eq!(finish, choice["finish_reason"].as_str().unwrap());

    let required = json!({"tool_choice": "required", "max_tokens": 24});
    let answer = post(&client, &server, &token, "/v1/chat/completions", &chat(&question, required)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["choices"][0]["message"]["tool_calls"][0]["function"], calls[0]["function"]);

    // Two tools: the model's likelier call is primed; either way it is a call to one of them.
    let time_tool = json!({"type": "function", "function": {"name": "get_time", "description": "The time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    let both = json!({"tool_choice": "required", "max_tokens": 24, "tools": [time_tool, weather_tool()]});
    let answer = post(&client, &server, &token, "/v1/chat/completions", &chat(&question, both.clone())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let calls = answer.body["choices"][0]["message"]["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 1, "{}", answer.body);
    assert!(["get_time", "get_weather"].contains(&calls[0]["function"]["name"].as_str().unwrap()), "{calls:?}");
    let mut streamed_body = chat(&question, both);
    streamed_body["stream"] = json!(true);
    let (streamed, _, _) = reassemble(&stream(&server, &token, &streamed_body).await);
    assert_eq!(streamed[0]["function"], calls[0]["function"], "the same choice and arguments, streamed");

    let none = json!({"tool_choice": "none", "max_tokens": 8});
    let answer = post(&client, &server, &token, "/v1/chat/completions", &chat(&question, none)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let message = &answer.body["choices"][0]["message"];
    assert!(message["tool_calls"].is_null() && message["content"].is_string(), "{message}");
}

/// Every refused tool field is a 400 that names it, before any generation; the model scope is still
/// required (403 `insufficient_scope` with tools as without), and no token is a 401.
#[tokio::test]
async fn tool_refusals_name_the_field_and_authorization_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path());
    let client = client();
    let question = [json!({"role": "user", "content": "Hi"})];
    let many: Vec<Value> =
        (0..129).map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}})).collect();
    let cases = [
        (json!({"tools": [{"type": "code_interpreter"}]}), "tools[0].type"),
        (json!({"tools": [{"type": "function", "function": {"name": "get weather"}}]}), "tools[0].function.name"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "strict": true}}]}),
            "tools[0].function.strict",
        ),
        (json!({"tools": many}), "tools"),
        (json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}), "tool_choice.function.name"),
        (json!({"tool_choice": "whenever"}), "tool_choice"),
        (json!({"messages": [{"role": "tool", "content": "18 C"}]}), "messages[0].tool_call_id"),
        (
            json!({"messages": [{"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]}),
            "messages[0].tool_calls",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 3}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
    ];
    for (extra, field) in cases {
        let body = chat(&question, extra);
        let answer = post(&client, &server, &token, "/v1/chat/completions", &body).await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{field}: {}", answer.body);
    }

    let body = chat(&question, json!({"max_tokens": 2}));
    let outsider = token_without_model_scope(dir.path(), &server);
    let response =
        client.post(server.url("/v1/chat/completions")).bearer_auth(&outsider).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    let response = client.post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let answer = post(&client, &server, &token, "/v1/chat/completions", &body).await;
    assert_eq!(answer.status, 200, "the same body with the model's scope: {}", answer.body);
}

/// A token with only another model's scope.
fn token_without_model_scope(dir: &Path, server: &DevServer) -> String {
    llamagate_testkit::dev_token(
        dev::bin(),
        dir,
        &server.base,
        &["--sub", "outsider", "--scope", "model_something_else"],
    )
}

/// `tool_call_format` in a model's config is the format the model is taught and read in: with
/// `pythonic`, the same request's prompt is the pythonic preamble's (another token count than the
/// default JSON one) and a named call is still answered as that call; an unknown format stops the
/// start, naming the key and the choices.
#[tokio::test]
async fn a_configured_tool_call_format_is_taught_and_read() {
    let open = "oauth_config:\n  enable_auth: false\n";
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0, "max_tokens": 12});
    let default = Server::start_with_config(0, open, None);
    let (status, json_answer) = default.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{json_answer}");
    drop(default);
    let pythonic = Server::start_with_config(0, &format!("    tool_call_format: pythonic\n{open}"), None);
    let (status, pythonic_answer) = pythonic.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{pythonic_answer}");
    assert_eq!(pythonic_answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_ne!(
        pythonic_answer["usage"]["prompt_tokens"], json_answer["usage"]["prompt_tokens"],
        "the pythonic preamble and primer, not the JSON ones"
    );

    let (started, log) = serve_once(&format!("    tool_call_format: mistral\n{open}"));
    assert!(!started);
    assert!(log.contains("tool_call_format") && log.contains("mistral") && log.contains("pythonic"), "{log}");
}

/// A model of a remote provider refuses tools, and conversations holding tool calls, with a 400 naming
/// the field, before the upstream is asked (it is not even reachable here: a call would be a 502/503).
#[tokio::test]
async fn remote_models_refuse_tools_before_calling_the_upstream() {
    let gate = Gate::start(&run_yaml(&[&dead_base_url()], &[&dead_base_url()]));
    let token = gate.token("tool-user", &[REMOTE_SCOPE]);
    let question = [json!({"role": "user", "content": "Weather in Paris?"})];
    let mut with_tools = chat(&question, json!({"max_tokens": 4}));
    with_tools["model"] = json!("remote/smollm2");
    let mut with_history = with_tools.clone();
    with_history.as_object_mut().unwrap().remove("tools");
    let mut history = conversation();
    history.truncate(3);
    with_history["messages"] = json!(history);
    for (body, field) in [(with_tools, "tools"), (with_history, "messages[1]")] {
        let response =
            client().post(gate.url("/v1/chat/completions")).bearer_auth(&token).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{field}: {answer}");
    }
}

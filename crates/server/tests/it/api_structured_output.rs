//! Structured output through the real server with real (development-issuer) tokens: `response_format`
//! `json_object` and `json_schema` answers parse as the asked JSON, plain and streamed (the stream's
//! text joins to the same answer), `n` choices each follow the schema, malformed formats are 400s naming
//! the field, a schema the grammar engine cannot enforce is a 400 before anything is charged, and the
//! model scope is still required.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::MODEL_ID;
use crate::support::dev::{self, DevServer};
use crate::support::limits::{Answer, client, get, post, token};
use crate::support::remote::{Gate, REMOTE_SCOPE, dead_base_url, run_yaml};

fn start(dir: &Path) -> (DevServer, String) {
    dev::write_default_config(dir);
    let server = dev::start(dir, 0);
    let token = token(dir, &server, "json-user", &["premium_access"]);
    (server, token)
}

fn city_format() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population_millions": {"type": "number", "minimum": 0, "maximum": 100}
        },
        "required": ["city", "population_millions"],
        "additionalProperties": false
    }}})
}

fn chat(format: Value, extra: Value) -> Value {
    let mut body = json!({"model": MODEL_ID, "temperature": 0, "max_tokens": 64, "response_format": format,
        "messages": [{"role": "user", "content": "Name a large city and its population, as JSON."}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn assert_city(text: &str) {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 2, "{value}");
    assert!(object["city"].as_str().is_some_and(|c| c.chars().count() <= 24), "{value}");
    assert!(object["population_millions"].as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)), "{value}");
}

#[tokio::test]
async fn json_schema_answers_parse_plain_streamed_and_per_choice() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path());
    let client = client();

    let plain: Answer = post(&client, &server, &token, "/v1/chat/completions", &chat(city_format(), json!({}))).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let choice = &plain.body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{}", plain.body);
    let text = choice["message"]["content"].as_str().unwrap();
    assert_city(text);

    let response = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&chat(city_format(), json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = crate::support::sse_events(&response.text().await.unwrap());
    let joined: String = events[..events.len() - 1]
        .iter()
        .flat_map(|e| e["choices"].as_array().unwrap())
        .map(|c| c["delta"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(joined, text, "greedy: the stream is the plain answer");

    let sampled = chat(city_format(), json!({"temperature": 1.0, "seed": 7, "n": 3}));
    let three: Answer = post(&client, &server, &token, "/v1/chat/completions", &sampled).await;
    assert_eq!(three.status, 200, "{}", three.body);
    let choices = three.body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for choice in choices {
        assert_city(choice["message"]["content"].as_str().unwrap());
    }

    let mut object = chat(json!({"type": "json_object"}), json!({}));
    object["messages"][0]["content"] = json!("Reply with a JSON object whose key \"animal\" names a farm animal.");
    let answer: Answer = post(&client, &server, &token, "/v1/chat/completions", &object).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let text = answer.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()), "{text}");
}

/// Each malformed `response_format` is a 400 whose message names the field; a well-formed schema the
/// grammar engine cannot enforce is a 400 too, before the caller is charged; a token without the
/// model's scope is still a 403 and none a 401.
#[tokio::test]
async fn refusals_name_the_field_and_cost_nothing_and_authorization_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, bearer) = start(dir.path());
    let client = client();
    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (format, extra, named) in [
        (json!({"type": "xml"}), json!({}), "response_format"),
        (json!({"type": "json_schema"}), json!({}), "response_format.json_schema"),
        (json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}), json!({}), "json_schema.name"),
        (json!({"type": "json_schema", "json_schema": {"name": "a", "schema": 5}}), json!({}), "json_schema.schema"),
        (json!({"type": "json_object"}), json!({"tools": tool}), "response_format"),
        (
            json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {"$ref": "#/$defs/missing"}}}),
            json!({}),
            "JSON schema",
        ),
    ] {
        let answer: Answer =
            post(&client, &server, &bearer, "/v1/chat/completions", &chat(format.clone(), extra)).await;
        assert_eq!(answer.status, 400, "{format}: {}", answer.body);
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{format}: {message}");
    }
    // Nothing was charged for the refusals: the whole token budget is left.
    let usage: Answer = get(&client, &server, Some(&bearer), "/v1/usage").await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let tokens = &usage.body["tokens"];
    assert_eq!(tokens["remaining"].as_u64(), tokens["limit"].as_u64(), "{}", usage.body);
    assert!(tokens["limit"].as_u64().is_some(), "{}", usage.body);

    let no_scope = llamagate_testkit::dev_token(
        dev::bin(),
        dir.path(),
        &server.base,
        &["--sub", "json-outsider", "--scope", "model_something_else"],
    );
    let refused: Answer =
        post(&client, &server, &no_scope, "/v1/chat/completions", &chat(city_format(), json!({}))).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let anonymous =
        client.post(server.url("/v1/chat/completions")).json(&chat(city_format(), json!({}))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// A model of a remote provider refuses structured output with a 400 naming the field, before the
/// upstream is asked (it is not even reachable here: a call would be a 502/503).
#[tokio::test]
async fn remote_models_refuse_structured_output_before_calling_the_upstream() {
    let gate = Gate::start(&run_yaml(&[&dead_base_url()], &[&dead_base_url()]));
    let token = gate.token("json-user", &[REMOTE_SCOPE]);
    for format in [json!({"type": "json_object"}), city_format()] {
        let mut body = chat(format, json!({"max_tokens": 4}));
        body["model"] = json!("remote/smollm2");
        let response =
            client().post(gate.url("/v1/chat/completions")).bearer_auth(&token).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("response_format"), "{answer}");
    }
}

/// A named `tool_choice`: the call's arguments are held to the function's `parameters` schema by the
/// grammar engine (the default model, left alone, writes arguments that are not even JSON), plain and
/// streamed alike.
#[tokio::test]
async fn a_named_tool_call_has_arguments_matching_the_functions_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = start(dir.path());
    let tool = json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "enum": ["Paris", "Rome", "Lima"]},
            "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": false}}});
    let body = json!({"model": MODEL_ID, "temperature": 0, "max_tokens": 48, "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "What is the weather like in Rome today?"}]});
    let answer: Answer = post(&client(), &server, &token, "/v1/chat/completions", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let call = &answer.body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{}", answer.body);
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(["Paris", "Rome", "Lima"].contains(&arguments["city"].as_str().unwrap()), "{arguments}");
    assert!(["celsius", "fahrenheit"].contains(&arguments["unit"].as_str().unwrap()), "{arguments}");
    assert_eq!(arguments.as_object().unwrap().len(), 2, "{arguments}");
}

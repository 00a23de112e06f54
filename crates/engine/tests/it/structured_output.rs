//! Structured output on the default model: the grammar engine's token mask makes every answer valid
//! JSON of the asked shape — greedy or sampled —, the answer ends where the JSON ends, and a schema the
//! engine cannot enforce is the caller's error before anything runs.

use std::sync::OnceLock;

use crate::support::*;
use llamagate_engine::{
    ChatMessage, EngineError, FinishReason, GenerateParams, GenerationOutput, Model, ModelOptions, ModelSource,
    OutputFormat, SamplingParams,
};
use serde_json::{Value, json};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&ModelSource::Gguf(default_gguf()), &ModelOptions::default()).unwrap())
}

fn generate(user: &str, format: Option<OutputFormat>, sampling: SamplingParams) -> GenerationOutput {
    let m = model();
    let ids = m.tokenize(&m.render_chat(&[ChatMessage::new("user", user)]).unwrap()).unwrap();
    let params = GenerateParams { max_tokens: Some(96), output_format: format, sampling, ..Default::default() };
    m.submit(m.prepare(ids, params).unwrap()).unwrap().collect_blocking().unwrap()
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog", "llama"]}, "maxItems": 3}
        },
        "required": ["name", "age", "pets"],
        "additionalProperties": false
    })
}

#[test]
fn json_object_answers_are_one_json_object() {
    let free = generate("Describe a llama in one sentence.", None, SamplingParams::default());
    assert!(serde_json::from_str::<Value>(&free.text).is_err(), "the free answer is prose: {}", free.text);
    let out = generate(
        "Reply with a JSON object whose key \"animal\" names a farm animal.",
        Some(OutputFormat::JsonObject),
        SamplingParams::default(),
    );
    assert_eq!(out.summary.finish_reason, FinishReason::Stop, "{}", out.text);
    let value: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {}", out.text));
    assert!(value.is_object(), "{value}");
}

#[test]
fn json_schema_answers_match_the_schema_greedy_and_sampled() {
    let question = "Invent a person who keeps animals, as JSON.";
    let mut answers = Vec::new();
    for seed in [None, Some(1), Some(2), Some(3)] {
        let sampling = match seed {
            None => SamplingParams::default(),
            Some(seed) => SamplingParams { temperature: 1.0, seed: Some(seed), ..Default::default() },
        };
        let out = generate(question, Some(OutputFormat::JsonSchema(person_schema())), sampling);
        assert_eq!(out.summary.finish_reason, FinishReason::Stop, "{}", out.text);
        let value: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {}", out.text));
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["age", "name", "pets"], "{value}");
        assert!(object["name"].as_str().is_some_and(|n| n.chars().count() <= 24), "{value}");
        assert!(object["age"].as_u64().is_some_and(|a| a <= 150), "{value}");
        let pets = object["pets"].as_array().unwrap();
        assert!(pets.len() <= 3 && pets.iter().all(|p| ["cat", "dog", "llama"].contains(&p.as_str().unwrap())));
        answers.push(out.text);
    }
    answers.dedup();
    assert!(answers.len() > 1, "sampling still varies within the schema: {answers:?}");
}

#[test]
fn a_schema_the_engine_cannot_enforce_is_refused_before_anything_runs() {
    let m = model();
    let ids = m.tokenize("Hello").unwrap();
    for schema in
        [json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}), json!({"type": "no-such-type"})]
    {
        let params =
            GenerateParams { output_format: Some(OutputFormat::JsonSchema(schema.clone())), ..Default::default() };
        let refused = m.prepare(ids.clone(), params);
        assert!(matches!(refused, Err(EngineError::InvalidRequest(_))), "{schema}: {refused:?}");
    }
    let huge = json!({"type": "object", "description": "x".repeat(llamagate_engine::MAX_SCHEMA_BYTES)});
    let params = GenerateParams { output_format: Some(OutputFormat::JsonSchema(huge)), ..Default::default() };
    assert!(matches!(m.prepare(ids, params), Err(EngineError::InvalidRequest(m)) if m.contains("bytes")));
}

/// The rest of a primed tool call: the model writes only arguments matching the function's schema, then
/// the format's closing text, and stops there — so the primer and the answer together are one call.
#[test]
fn a_primed_call_gets_arguments_matching_its_schema_and_closes() {
    let m = model();
    let primer = r#"{"name": "get_weather", "parameters": "#;
    let chat = m.render_chat(&[ChatMessage::new("user", "What is the weather like in Rome today?")]).unwrap();
    let ids = m.tokenize(&format!("{chat}{primer}")).unwrap();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Lima"]},
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"], "additionalProperties": false});
    let format = OutputFormat::ToolArguments { schema, closing: "}".into() };
    let params = GenerateParams { max_tokens: Some(48), output_format: Some(format), ..Default::default() };
    let out = m.submit(m.prepare(ids, params).unwrap()).unwrap().collect_blocking().unwrap();
    assert_eq!(out.summary.finish_reason, FinishReason::Stop, "{}", out.text);
    let call: Value =
        serde_json::from_str(&format!("{primer}{}", out.text)).unwrap_or_else(|e| panic!("{e}: {}", out.text));
    assert_eq!(call["name"], "get_weather");
    assert!(["Paris", "Rome", "Lima"].contains(&call["parameters"]["city"].as_str().unwrap()), "{call}");
    assert!(["celsius", "fahrenheit"].contains(&call["parameters"]["unit"].as_str().unwrap()), "{call}");
}

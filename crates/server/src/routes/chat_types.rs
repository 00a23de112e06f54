//! Wire types of `POST /v1/chat/completions` (docs/reference/llama-stack-api.md §a.4, §a.6): the OpenAI-compatible body and
//! the `chat.completion` object. Unknown keys are accepted and ignored, as Llama Stack does; keys we
//! understand but cannot honour are refused with a 400 in [`ChatCompletionRequest::validate`].
//!
//! Response fields of type `Option` are marked `required` in the OpenAPI schema: they are always sent,
//! as `null` when empty, and the SDKs' models expect the key.

use llamagate_engine::{ChatMessage, ChatTools, FinishReason, GenerateParams, GenerationOutput, OutputFormat, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::routes::chat_tool_calls::{ReadAnswer, ToolCallBody, ToolCallDelta, ToolReader, finish_reason};
use crate::routes::chat_tools::{ToolDefinition, ToolMode, calls_in_message, check_tools};
use crate::routes::generation_fields::{GenerationFields, UsageBody};
use crate::routes::logprobs_body::ChatLogprobs;

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The served model id.
    pub model: String,
    /// The conversation so far; at least one message.
    pub messages: Vec<ChatMessageIn>,
    /// The newer spelling of `max_tokens`; wins when both are given.
    pub max_completion_tokens: Option<u32>,
    /// Only `{"type":"text"}` is served: there is no constrained decoding.
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call (at most 128, 64 KiB in all). Rendered by the model's chat
    /// template when it knows tools, otherwise as a system-prompt preamble; calls in the output come
    /// back as `message.tool_calls`. Models of remote providers refuse them.
    #[schema(value_type = Option<Vec<ToolDefinition>>)]
    pub tools: Option<Vec<Value>>,
    /// `auto` (the default with tools: the output is read as calls when it is entirely calls to these
    /// tools), `none` (the tools are dropped and the answer is text), a named function `{"type":
    /// "function", "function": {"name": …}}` (the call's opening is primed, so the answer is always that
    /// call), or `required` (the same, for the tool whose call opening the model finds most likely).
    pub tool_choice: Option<Value>,
    /// `false`: at most one call is answered (the first the model wrote). Default: all of them.
    pub parallel_tool_calls: Option<bool>,
    /// Report each generated token's log-probability (`choices[].logprobs.content`).
    pub logprobs: Option<bool>,
    /// With `logprobs`: how many alternatives per position, 0–20.
    pub top_logprobs: Option<u32>,
    /// The legacy spelling of `tools`; refused like them.
    #[schema(value_type = Option<Object>)]
    pub functions: Option<Value>,
    /// The legacy spelling of `tool_choice`; refused like `functions`.
    #[schema(value_type = Option<Object>)]
    pub function_call: Option<Value>,
    /// `minimal`, `low`, `medium` or `high`. The served models have no reasoning phase, so every
    /// effort is the same answer; any other value is refused.
    pub reasoning_effort: Option<String>,
    /// Sampling and delivery fields shared with legacy completions.
    #[serde(flatten)]
    pub fields: GenerationFields,
}

/// One input message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    /// Who said it.
    pub role: Role,
    /// Text or a list of parts; assistant messages may leave it out.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// An assistant message's calls (`{id, type: "function", function: {name, arguments}}`), as an
    /// earlier answer returned them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
    /// A `tool` message's answer to this call id; required there.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// What a validated chat request asks for.
#[derive(Debug)]
pub struct ChatInput {
    /// The conversation as the engine renders it.
    pub messages: Vec<ChatMessage>,
    /// Sampling, stop strings, `max_tokens`, `logprobs`.
    pub params: GenerateParams,
    /// The tools to render (and the call to prime); `None` without tools or with `tool_choice: none`.
    pub tools: Option<ChatTools>,
    /// How the answer is read for calls.
    pub tool_mode: ToolMode,
}

/// The longest `tool_call_id` accepted: ids are opaque, but rendered into the prompt.
const MAX_TOOL_CALL_ID: usize = 256;

/// The roles OpenAI-compatible clients send.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// OpenAI's newer name for system instructions; rendered as `system` for Llama templates.
    Developer,
    /// The end user.
    User,
    /// The model's earlier turns.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A message's content: plain text or typed parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts; only text parts can be rendered for a text-only model.
    Parts(Vec<ContentPart>),
}

/// One typed content part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text itself.
        text: String,
    },
    /// An image; refused, the served models are text-only.
    ImageUrl {},
    /// A file; refused for the same reason.
    File {},
}

/// `response_format`: free text, any JSON object, or JSON matching a schema — the last two enforced
/// while sampling (a token mask from the grammar engine), not by retrying.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `json_schema`: the schema and its name.
    pub json_schema: Option<JsonSchemaFormat>,
}

/// OpenAI's `response_format.json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    /// The schema's name, 1–64 characters of `a-z A-Z 0-9 _ -`.
    pub name: String,
    /// What the schema is for (not used for decoding).
    pub description: Option<String>,
    /// The JSON Schema the output must match.
    #[schema(value_type = Object)]
    pub schema: Option<Value>,
    /// Accepted either way: the schema is always enforced.
    pub strict: Option<bool>,
}

impl ResponseFormat {
    /// The engine's output format; `None` for free text. Refuses what cannot be honoured, naming the field.
    fn to_engine(&self) -> Result<Option<OutputFormat>, ApiError> {
        match self.kind.as_str() {
            "text" => Ok(None),
            "json_object" => Ok(Some(OutputFormat::JsonObject)),
            "json_schema" => {
                let format = self.json_schema.as_ref().ok_or_else(|| {
                    ApiError::BadRequest("response_format.json_schema is required when its type is json_schema".into())
                })?;
                let name_ok = (1..=64).contains(&format.name.len())
                    && format.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !name_ok {
                    return Err(ApiError::BadRequest(
                        "response_format.json_schema.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -".into(),
                    ));
                }
                match &format.schema {
                    Some(schema @ Value::Object(_)) => Ok(Some(OutputFormat::JsonSchema(schema.clone()))),
                    _ => Err(ApiError::BadRequest("response_format.json_schema.schema must be a JSON object".into())),
                }
            }
            other => Err(ApiError::BadRequest(format!(
                "response_format type must be text, json_object or json_schema; got '{}'",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }
}

impl ChatCompletionRequest {
    /// Checks what serde cannot and returns the conversation, engine parameters and tools.
    pub fn validate(&self) -> Result<ChatInput, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::BadRequest("messages must hold at least one message".into()));
        }
        let (tools, tool_mode) =
            check_tools(self.tools.as_deref(), self.tool_choice.as_ref(), self.parallel_tool_calls)?;
        if self.functions.is_some() || self.function_call.is_some() {
            return Err(ApiError::BadRequest("functions and function_call are not supported by this server".into()));
        }
        if let Some(effort) = self.reasoning_effort.as_deref().filter(|e| !REASONING_EFFORTS.contains(e)) {
            return Err(ApiError::BadRequest(format!(
                "reasoning_effort must be one of {}; got '{effort}'",
                REASONING_EFFORTS.join(", ")
            )));
        }
        if self.top_logprobs.is_some() && self.logprobs != Some(true) {
            return Err(ApiError::BadRequest("top_logprobs is only allowed when logprobs is true".into()));
        }
        let output_format = self.response_format.as_ref().map(ResponseFormat::to_engine).transpose()?.flatten();
        if output_format.is_some() && tools.is_some() {
            return Err(ApiError::BadRequest(
                "response_format json_object or json_schema cannot be combined with tools (use tool_choice: none)"
                    .into(),
            ));
        }
        let messages = self.messages.iter().enumerate().map(|(i, m)| m.to_engine(i)).collect::<Result<Vec<_>, _>>()?;
        let mut params = self.fields.to_params(self.max_completion_tokens)?;
        params.logprobs = (self.logprobs == Some(true)).then(|| self.top_logprobs.unwrap_or(0) as usize);
        params.output_format = output_format;
        Ok(ChatInput { messages, params, tools, tool_mode })
    }
}

/// The `reasoning_effort` values OpenAI defines.
const REASONING_EFFORTS: [&str; 4] = ["minimal", "low", "medium", "high"];

impl ChatMessageIn {
    /// The message (number `index`, for errors) as the engine's chat turn: roles mapped for Llama
    /// templates, text parts joined, an assistant's calls and a tool answer's call id kept.
    pub(crate) fn to_engine(&self, index: usize) -> Result<ChatMessage, ApiError> {
        let role = match self.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let content = match &self.content {
            None => String::new(),
            Some(MessageContent::Text(text)) => text.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        ContentPart::Text { text: piece } => text.push_str(piece),
                        ContentPart::ImageUrl {} | ContentPart::File {} => {
                            return Err(ApiError::BadRequest(
                                "only text content parts are supported by this model".into(),
                            ));
                        }
                    }
                }
                text
            }
        };
        let mut message = ChatMessage::new(role, content);
        if let Some(calls) = self.tool_calls.as_deref().filter(|c| !c.is_empty()) {
            if !matches!(self.role, Role::Assistant) {
                return Err(ApiError::BadRequest(format!(
                    "messages[{index}].tool_calls is only allowed on assistant messages"
                )));
            }
            message.tool_calls = calls_in_message(index, calls)?;
        }
        if matches!(self.role, Role::Tool) {
            match self.tool_call_id.as_deref() {
                Some(id) if !id.is_empty() && id.len() <= MAX_TOOL_CALL_ID => {
                    message.tool_call_id = Some(id.to_string())
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "messages[{index}].tool_call_id is required for tool messages (1-{MAX_TOOL_CALL_ID} characters)"
                    )));
                }
            }
        }
        Ok(message)
    }
}

/// The `chat.completion` object. Every key is serialized, nulls included, as the SDKs' models expect.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Exactly one choice.
    pub choices: Vec<ChatChoice>,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The id the client sent.
    pub model: String,
    /// Not applicable; null.
    #[schema(required = true)]
    pub service_tier: Option<String>,
    /// Not applicable; null.
    #[schema(required = true)]
    pub system_fingerprint: Option<String>,
    /// Exact token counts.
    pub usage: UsageBody,
}

/// One choice of a chat completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    /// The assistant's reply.
    pub message: AssistantMessage,
    /// `stop`, `length`, `tool_calls` when the model called tools, or `content_filter` when content
    /// safety refused the output.
    pub finish_reason: &'static str,
    /// The choice's number, 0 to `n - 1`.
    pub index: u32,
    /// The tokens' log-probabilities when `logprobs` asked for them; null otherwise.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs>,
}

/// The assistant message in a choice; the optional OpenAI fields are present as null.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text; null when the answer is only tool calls.
    #[schema(required = true)]
    pub content: Option<String>,
    /// The tools the model called, in order; null when it called none.
    #[schema(required = true)]
    pub tool_calls: Option<Vec<ToolCallBody>>,
    /// Null.
    #[schema(required = true)]
    pub refusal: Option<String>,
    /// Null.
    #[schema(required = true)]
    pub function_call: Option<Value>,
    /// Null.
    #[schema(required = true)]
    pub annotations: Option<Value>,
    /// Null.
    #[schema(required = true)]
    pub audio: Option<Value>,
}

/// One streamed `chat.completion.chunk` (docs/reference/llama-stack-api.md §a.5); every key is serialized, nulls included.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same `chatcmpl-…` id on every chunk of a stream.
    pub id: String,
    /// One choice; empty on the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds, the same on every chunk.
    pub created: u64,
    /// The id the client sent.
    pub model: String,
    /// Not applicable; null.
    #[schema(required = true)]
    pub service_tier: Option<String>,
    /// Not applicable; null.
    #[schema(required = true)]
    pub system_fingerprint: Option<String>,
    /// Exact token counts on the usage chunk (`stream_options.include_usage`); null elsewhere.
    #[schema(required = true)]
    pub usage: Option<UsageBody>,
}

/// The choice of one chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    /// What this chunk adds to the message.
    pub delta: ChunkDelta,
    /// `stop`, `length` or `content_filter` on the last content chunk; null before.
    #[schema(required = true)]
    pub finish_reason: Option<&'static str>,
    /// The choice's number, 0 to `n - 1`.
    pub index: u32,
    /// The log-probabilities of this chunk's tokens when `logprobs` asked for them; null otherwise.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs>,
}

/// A piece of the assistant message; the first chunk carries the role, later ones the text.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ChunkDelta {
    /// The next piece of text.
    #[schema(required = true)]
    pub content: Option<String>,
    /// Null.
    #[schema(required = true)]
    pub refusal: Option<String>,
    /// `assistant` on the first chunk; null after.
    #[schema(required = true)]
    pub role: Option<&'static str>,
    /// The calls, on the chunk that ends a choice that called tools (each call whole, with its
    /// `index`, `id`, `type` and `function`); null on every other chunk.
    #[schema(required = true)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Null: no reasoning traces are separated.
    #[schema(required = true)]
    pub reasoning_content: Option<String>,
}

impl ChatCompletion {
    /// Wraps a request's finished choices (in choice order) and its `usage`; `with_logprobs` when the
    /// request asked for them; each output read for tool calls with `tools` when tools are in play.
    pub fn new(
        id: String,
        created: u64,
        model: String,
        outputs: Vec<GenerationOutput>,
        usage: Usage,
        with_logprobs: bool,
        tools: Option<&ToolReader>,
    ) -> Self {
        let choices = outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| {
                let logprobs = with_logprobs.then(|| ChatLogprobs::new(&output.logprobs));
                let finished = output.summary.finish_reason;
                // A refused output is cut where the check stopped it: never read as calls.
                let ReadAnswer { content, tool_calls } = match tools {
                    Some(reader) if finished != FinishReason::ContentFilter => reader.read(output.text),
                    _ => ReadAnswer { content: Some(output.text), tool_calls: None },
                };
                let finish_reason = finish_reason(finished, tool_calls.is_some());
                let message = AssistantMessage {
                    role: "assistant",
                    content,
                    tool_calls,
                    refusal: None,
                    function_call: None,
                    annotations: None,
                    audio: None,
                };
                ChatChoice { message, finish_reason, index: index as u32, logprobs }
            })
            .collect();
        Self {
            id,
            choices,
            object: "chat.completion",
            created,
            model,
            service_tier: None,
            system_fingerprint: None,
            usage: usage.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatCompletionRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn text_parts_join_and_developer_becomes_system() {
        let req = request(
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"temperature":0}"#,
        );
        let input = req.validate().unwrap();
        assert_eq!(input.messages, [ChatMessage::new("system", "ab")]);
        assert_eq!(input.params.sampling.temperature, 0.0);
    }

    #[test]
    fn response_formats_become_the_engines() {
        let format = |rf: &str| {
            request(&format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"response_format":{rf}}}"#))
                .validate()
                .unwrap()
                .params
                .output_format
        };
        assert_eq!(format(r#"{"type":"text"}"#), None);
        assert_eq!(format(r#"{"type":"json_object"}"#), Some(OutputFormat::JsonObject));
        let schema = r#"{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}"#;
        assert_eq!(
            format(&format!(
                r#"{{"type":"json_schema","json_schema":{{"name":"A_1","strict":true,"schema":{schema}}}}}"#
            )),
            Some(OutputFormat::JsonSchema(serde_json::from_str(schema).unwrap()))
        );
        // With tools in play the output is either calls or JSON; both at once is refused, naming the field.
        let both = request(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
        )
        .validate();
        assert!(matches!(both, Err(ApiError::BadRequest(m)) if m.contains("response_format")));
    }

    #[test]
    fn unsupported_features_are_refused_not_ignored() {
        for body in [
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":[]}}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}],"tool_choice":"auto"}"#,
            r#"{"model":"m","messages":[{"role":"tool","content":"18 C"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}],"tool_choice":"sometimes"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"token":5}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}"#,
        ] {
            assert!(matches!(request(body).validate(), Err(ApiError::BadRequest(_))), "{body}");
        }
    }

    #[test]
    fn logprobs_ask_for_the_chosen_token_and_top_logprobs_alternatives() {
        let asked = |extra: &str| {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
            request(&body).validate().unwrap().params.logprobs
        };
        assert_eq!(asked(""), None);
        assert_eq!(asked(r#","logprobs":false"#), None);
        assert_eq!(asked(r#","logprobs":true"#), Some(0));
        assert_eq!(asked(r#","logprobs":true,"top_logprobs":5"#), Some(5));
    }

    #[test]
    fn tool_choice_none_drops_the_tools_and_known_efforts_are_accepted() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"function","function":{"name":"f"}}],
            "tool_choice":"none","reasoning_effort":"low","logit_bias":{}}"#;
        let input = request(body).validate().unwrap();
        assert_eq!(input.messages, [ChatMessage::new("user", "x")]);
        assert_eq!((input.tools, input.tool_mode), (None, ToolMode::Off));
    }

    #[test]
    fn a_tool_round_trip_keeps_the_calls_and_the_answered_id() {
        let body = r#"{"model":"m","tools":[{"type":"function","function":{"name":"get_weather"}}],"messages":[
            {"role":"user","content":"Weather in Paris?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"18 C"}]}"#;
        let input = request(body).validate().unwrap();
        assert_eq!(input.messages[1].tool_calls[0].function.arguments, serde_json::json!({"city": "Paris"}));
        assert_eq!(input.messages[2].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(input.tool_mode, ToolMode::Auto { names: vec!["get_weather".into()], single: false });
        assert_eq!(input.tools.unwrap().definitions.len(), 1);
    }
}

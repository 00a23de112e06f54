//! What is sent and when: prompts, `max_tokens` ranges, request bodies and Poisson arrivals.
//!
//! Every random choice (tenant, prompt, `max_tokens`, arrival gaps) comes from a seeded
//! [`ChaCha8Rng`], so a scenario with a seed sends the same sequence of requests on every run;
//! only the server's answers and the timing differ.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::scenario::{Api, MaxTokens};

/// The built-in prompts: short, varied chat questions a small model answers.
pub const BUILTIN_PROMPTS: &[&str] = &[
    "Name three primary colors.",
    "Why is the sky blue? Answer in two sentences.",
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Give me a one-line tip for writing clear code.",
    "Explain what a load balancer does in one paragraph.",
    "List four fruits that are red.",
    "Translate 'good morning' into Spanish and German.",
];

/// One prompt: a chat conversation, and the plain text used by `/v1/completions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The `messages` array for chat completions.
    pub messages: Value,
    /// The `prompt` string for text completions (the messages' contents joined by newlines).
    pub text: String,
}

impl Prompt {
    /// A single user message.
    pub fn user(text: &str) -> Self {
        Self { messages: json!([{ "role": "user", "content": text }]), text: text.to_string() }
    }
}

/// One line of a prompts file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptLine {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// The built-in prompt set.
pub fn builtin_prompts() -> Vec<Prompt> {
    BUILTIN_PROMPTS.iter().map(|p| Prompt::user(p)).collect()
}

/// Reads a JSONL prompts file: each non-empty line is `{"prompt": "..."}` or
/// `{"messages": [{"role": "...", "content": "..."}, ...]}`.
pub fn read_prompts(path: &Path) -> anyhow::Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading prompts {}", path.display()))?;
    parse_prompts(&text).with_context(|| format!("in prompts file {}", path.display()))
}

/// Parses JSONL prompts (see [`read_prompts`]).
pub fn parse_prompts(text: &str) -> anyhow::Result<Vec<Prompt>> {
    let mut prompts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: PromptLine = serde_json::from_str(line).with_context(|| format!("line {}", index + 1))?;
        let prompt = match (parsed.prompt, parsed.messages) {
            (Some(text), None) => Prompt::user(&text),
            (None, Some(messages)) if !messages.is_empty() => Prompt {
                text: messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
                messages: Value::Array(
                    messages.iter().map(|m| json!({ "role": m.role, "content": m.content })).collect(),
                ),
            },
            _ => bail!("line {}: give exactly one of \"prompt\" or a non-empty \"messages\"", index + 1),
        };
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        bail!("no prompts");
    }
    Ok(prompts)
}

/// The shape of every request body of a run; [`RequestShape::body`] fills in the per-request choices.
#[derive(Debug, Clone)]
pub struct RequestShape {
    /// Which endpoint.
    pub api: Api,
    /// The `model` field.
    pub model: String,
    /// Whether to ask for SSE.
    pub stream: bool,
    /// The `temperature` field, when set.
    pub temperature: Option<f64>,
    /// The `max_tokens` range.
    pub max_tokens: MaxTokens,
    /// The prompts to draw from.
    pub prompts: Vec<Prompt>,
}

impl RequestShape {
    /// A request body with a prompt and `max_tokens` drawn from `rng`, padded to at least `pad_to`
    /// bytes when given (see [`pad`]; the padding draws nothing, so the sequence stays the seed's).
    pub fn body(&self, rng: &mut ChaCha8Rng, pad_to: Option<usize>) -> Vec<u8> {
        let prompt = &self.prompts[rng.random_range(0..self.prompts.len())];
        let max_tokens = rng.random_range(self.max_tokens.min..=self.max_tokens.max);
        let mut body = match self.api {
            Api::Chat => json!({ "model": self.model, "messages": prompt.messages, "max_tokens": max_tokens }),
            Api::Completions => json!({ "model": self.model, "prompt": prompt.text, "max_tokens": max_tokens }),
        };
        if let Some(temperature) = self.temperature {
            body["temperature"] = json!(temperature);
        }
        if self.stream {
            body["stream"] = json!(true);
            // Ask for the server's own token count in a final chunk (OpenAI `stream_options`).
            body["stream_options"] = json!({ "include_usage": true });
        }
        if let Some(min_bytes) = pad_to {
            pad(&mut body, min_bytes);
        }
        // Serializing a `Value` cannot fail: every key is a string.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Lengthens the prompt of a request `body` (the last message's `content`, or `prompt`) with filler
/// words until the serialized body is at least `min_bytes` long: a valid request, only too big. The
/// filler is plain ASCII that JSON does not escape, so each character adds exactly one byte.
pub fn pad(body: &mut Value, min_bytes: usize) {
    const FILLER: &str = "lorem ipsum dolor sit amet ";
    let len = serde_json::to_vec(body).map_or(0, |b| b.len());
    let Some(missing) = min_bytes.checked_sub(len).filter(|&m| m > 0) else { return };
    let text = match body.get_mut("messages").and_then(Value::as_array_mut) {
        Some(messages) => messages.last_mut().and_then(|m| m.get_mut("content")),
        None => body.get_mut("prompt"),
    };
    if let Some(Value::String(text)) = text {
        text.extend(FILLER.chars().cycle().take(missing));
    }
}

/// Arrival times of a Poisson process with `rate` arrivals per second, as offsets from the start.
///
/// The gaps are exponentially distributed with mean `1 / rate`, drawn by inverse transform
/// (`-ln(U) / rate`, `U` uniform in (0, 1]) from `rng`: the same seed gives the same schedule.
pub struct PoissonArrivals {
    rng: ChaCha8Rng,
    rate: f64,
    now: f64,
}

impl PoissonArrivals {
    /// A schedule for `rate` (> 0) arrivals per second.
    pub fn new(rate: f64, rng: ChaCha8Rng) -> Self {
        Self { rng, rate, now: 0.0 }
    }
}

impl Iterator for PoissonArrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // `random::<f64>()` is in [0, 1); `1 - u` is in (0, 1], so the logarithm is finite.
        let u: f64 = 1.0 - self.rng.random::<f64>();
        self.now += -u.ln() / self.rate;
        Some(Duration::from_secs_f64(self.now))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn prompts_file_forms() {
        let prompts = parse_prompts(
            "{\"prompt\": \"hi\"}\n\n{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"yo\"}]}\n",
        )
        .unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0], Prompt::user("hi"));
        assert_eq!(prompts[1].text, "be brief\nyo");
        assert_eq!(prompts[1].messages[1]["role"], "user");
        assert!(parse_prompts("{\"prompt\": \"a\", \"messages\": []}").is_err());
        assert!(parse_prompts("{\"text\": \"a\"}").is_err());
        assert!(parse_prompts("\n").is_err());
    }

    #[test]
    fn bodies_follow_the_shape() {
        let shape = RequestShape {
            api: Api::Chat,
            model: "m".into(),
            stream: true,
            temperature: Some(0.0),
            max_tokens: MaxTokens { min: 4, max: 6 },
            prompts: builtin_prompts(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let body: Value = serde_json::from_slice(&shape.body(&mut rng, None)).unwrap();
            assert_eq!(body["model"], "m");
            assert!((4..=6).contains(&body["max_tokens"].as_u64().unwrap()));
            assert_eq!(body["stream_options"]["include_usage"], true);
            assert!(body["messages"][0]["content"].is_string());
        }
        let plain = RequestShape { api: Api::Completions, stream: false, temperature: None, ..shape.clone() };
        let body: Value = serde_json::from_slice(&plain.body(&mut rng, None)).unwrap();
        assert!(body["prompt"].is_string());
        assert!(body.get("stream").is_none() && body.get("temperature").is_none());

        // Padded bodies are exactly as long as asked, still valid, and draw what unpadded ones draw.
        for shape in [&shape, &plain] {
            let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
            let padded = shape.body(&mut a, Some(1_500_000));
            let unpadded: Value = serde_json::from_slice(&shape.body(&mut b, None)).unwrap();
            assert_eq!(padded.len(), 1_500_000);
            let body: Value = serde_json::from_slice(&padded).unwrap();
            assert_eq!((&body["model"], &body["max_tokens"]), (&unpadded["model"], &unpadded["max_tokens"]));
            let prompt = body["messages"][0]["content"].as_str().or(body["prompt"].as_str()).unwrap();
            assert!(prompt.len() > 1_400_000 && prompt.contains("lorem ipsum dolor"), "{}", &prompt[..80]);
            // A body already long enough is left as it is.
            assert_eq!(shape.body(&mut a, Some(10)).len(), shape.body(&mut b, None).len());
        }
    }
}

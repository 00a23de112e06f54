//! Output constraints: a generation that must be JSON — any object, or one that matches a JSON Schema —
//! enforced while sampling by masking every token the grammar cannot accept next, never by retrying.
//!
//! The grammar engine is llguidance (the one llama.cpp and vLLM use): [`GrammarVocabulary`] hands it the
//! model's vocabulary once per model, and each constrained sequence carries an [`OutputConstraint`]
//! (llguidance's matcher) that yields the mask before each sample and is advanced by the sampled token.
//! Special tokens are marked as such, so no grammar can produce a control token from text; the
//! end-of-turn token is allowed exactly when the output is complete.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::text::tokenizer::Tokenizer;

/// What shape the generated text must have (OpenAI's `response_format`).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object (`json_object`).
    JsonObject,
    /// A JSON value matching this schema (`json_schema`; with `strict` or without, it is enforced).
    JsonSchema(Value),
    /// The rest of a primed tool call (a named `tool_choice`): arguments matching the function's
    /// `parameters` schema, then `closing`, the text that ends the call in the model's format.
    ToolArguments {
        /// The function's `parameters` JSON Schema.
        schema: Value,
        /// What ends the call after the arguments (`}` for Llama 3.1 JSON).
        closing: String,
    },
}

/// The bound on a schema's serialized size: a schema is compiled into a grammar on the request path, so
/// its size is the caller's lever on that work.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// One model's vocabulary as the grammar engine sees it, built once and shared by every constrained
/// request on the model.
pub(crate) struct GrammarVocabulary {
    factory: ParserFactory,
}

impl GrammarVocabulary {
    /// The vocabulary of `tokenizer`, padded to the `vocab_size` rows of the model's output (ids past the
    /// tokenizer's are never allowed). The first stop token ends a complete output.
    pub(crate) fn new(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Self> {
        let eos = *tokenizer.stop_ids().first().ok_or_else(|| {
            EngineError::InvalidRequest("this model has no end-of-turn token to end a structured output".into())
        })?;
        let words: Vec<Vec<u8>> = (0..vocab_size as u32)
            .map(|id| {
                if (id as usize) >= tokenizer.vocab_size() {
                    format!("\u{ff}<[{id}]>").into_bytes()
                } else if tokenizer.is_special(id) || tokenizer.token_bytes(id).is_empty() {
                    // The marker byte tells llguidance the token is not text.
                    let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    word.extend_from_slice(format!("<[{id}]>").as_bytes());
                    word
                } else {
                    tokenizer.token_bytes(id).to_vec()
                }
            })
            .collect();
        let info = TokRxInfo::new(vocab_size as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(grammar_error)?;
        // Nothing to stderr: refusals reach the caller as errors instead.
        factory.set_stderr_log_level(0);
        Ok(Self { factory })
    }

    /// A fresh constraint for one generation; an invalid or unsupported schema is the caller's error.
    pub(crate) fn constraint(&self, format: &OutputFormat) -> Result<OutputConstraint> {
        let grammar = match format {
            OutputFormat::JsonObject => TopLevelGrammar::from_json_schema(compact(json!({"type": "object"}))),
            OutputFormat::JsonSchema(schema) => TopLevelGrammar::from_json_schema(compact(bounded(schema)?.clone())),
            OutputFormat::ToolArguments { schema, closing } => {
                // The arguments as a JSON value of the schema, then the call's closing text, verbatim.
                let schema = serde_json::to_string(&compact(bounded(schema)?.clone())).map_err(grammar_error)?;
                let closing = serde_json::to_string(closing).map_err(grammar_error)?;
                TopLevelGrammar::from_lark(format!("start: arguments {closing}\narguments: %json {schema}\n"))
            }
        };
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            EngineError::InvalidRequest(format!("the JSON schema cannot be enforced: {}", first_line(&e.to_string())))
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(EngineError::InvalidRequest(format!("the JSON schema cannot be enforced: {}", first_line(&e))));
        }
        Ok(OutputConstraint { matcher: Box::new(matcher) })
    }
}

/// `schema`, when its serialized size is within [`MAX_SCHEMA_BYTES`].
fn bounded(schema: &Value) -> Result<&Value> {
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(EngineError::InvalidRequest(format!(
            "the JSON schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are accepted"
        )));
    }
    Ok(schema)
}

/// Compact JSON (no free whitespace between tokens) unless the schema asks otherwise through
/// llguidance's own `x-guidance` options: free whitespace lets a small model spend its whole budget on
/// spaces and newlines without ever closing the object.
fn compact(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(|| json!({"whitespace_flexible": false}));
    }
    schema
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().chars().take(300).collect()
}

fn grammar_error(e: impl fmt::Display) -> EngineError {
    EngineError::Inference(format!("grammar engine: {e}"))
}

/// One generation's grammar state: which tokens may come next.
pub struct OutputConstraint {
    /// Boxed: the matcher is large, and requests without a constraint should not carry its size.
    matcher: Box<Matcher>,
}

impl OutputConstraint {
    /// Sets every token the grammar cannot take next to −∞, so no sampler can pick it.
    pub(crate) fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.matcher.compute_mask().map_err(grammar_error)?;
        for (id, logit) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(id as u32) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar by the sampled token.
    pub(crate) fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher.consume_token(token).map_err(grammar_error)
    }

    /// Whether the output is complete and nothing more may follow.
    pub(crate) fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

impl Clone for OutputConstraint {
    /// A fork's own copy (each of a request's choices follows the grammar on its own).
    fn clone(&self) -> Self {
        Self { matcher: Box::new(self.matcher.deep_clone()) }
    }
}

impl fmt::Debug for OutputConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputConstraint").field("finished", &self.matcher.is_stopped()).finish()
    }
}

//! Text in and out of token ids: the [`tokenizer`] with its two encoders (byte-level BPE in [`bpe`],
//! SentencePiece in [`spm`], both reading [`token_kind`]), chat templates ([`chat_template`]), caller text
//! kept as text when a prompt is tokenized ([`caller_text`]), streaming
//! UTF-8-correct decoding ([`detokenize`]), stop strings ([`stop`]), tools shown to a template that
//! knows none ([`tool_prompt`]) and tool calls read from an output ([`tool_calls`]).

pub(crate) mod bpe;
pub(crate) mod caller_text;
pub(crate) mod chat_template;
pub(crate) mod detokenize;
pub(crate) mod spm;
pub(crate) mod stop;
pub(crate) mod token_kind;
pub(crate) mod tokenizer;
pub(crate) mod tool_calls;
pub(crate) mod tool_prompt;

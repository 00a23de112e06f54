//! What each id of a GGUF vocabulary is (`tokenizer.ggml.token_type`): both encoders and decoding read it,
//! so it sits beneath them.

/// What a GGUF says a token is (`tokenizer.ggml.token_type`, llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A piece of text (the default when the type is missing or unknown to us).
    Normal,
    /// `<unk>`: what a reference tokenizer without byte fallback emits for unknown text.
    Unknown,
    /// Prompt-format markers (`<s>`, `</s>`, `[INST]` in newer vocabularies), never shown as text.
    Control,
    /// Pieces added by a fine-tune that always match as a whole.
    UserDefined,
    /// Reserved slots that text never maps to.
    Unused,
    /// `<0xXX>`: one raw byte, for text the vocabulary has no piece for.
    Byte,
}

impl TokenKind {
    /// The kind for a GGUF `token_type` value.
    pub(crate) fn from_gguf(value: i32) -> Self {
        match value {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

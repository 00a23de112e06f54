//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) from a GGUF's vocabulary: SmolLM2, Llama 3.
//!
//! The BPE model and pre-tokenizer are assembled for the `tokenizers` crate from `tokenizer.ggml.*`
//! exactly as llama.cpp does for the named `tokenizer.ggml.pre` (candle's built-in GGUF tokenizer adds a
//! prefix space and skips SmolLM's digit split, so it disagrees with llama.cpp). Byte-level BPE writes
//! every byte as a printable character; [`byte_level_to_bytes`] undoes that for decoding.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{EngineError, Result};
use crate::text::token_kind::TokenKind;

/// Llama 3's pre-tokenizer split (also llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizers` BPE tokenizer for a GGUF vocabulary, and the raw bytes of every id.
pub(crate) fn from_gguf(
    md: &HashMap<String, Value>,
    tokens: &[String],
    kinds: &[TokenKind],
    path: &Path,
) -> Result<(tokenizers::Tokenizer, Vec<Vec<u8>>)> {
    let bad = |r: String| EngineError::invalid_model(path, r);
    let merges: Vec<(String, String)> = md
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| bad("tokenizer.ggml.merges is missing".into()))?
        .iter()
        .map(|v| {
            let s = v.to_string().map_err(|e| bad(format!("tokenizer.ggml.merges: {e}")))?;
            s.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("tokenizer.ggml.merges entry '{s}' has no space")))
        })
        .collect::<Result<_>>()?;
    let pre =
        md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_else(|| "default".into());
    let add_space_prefix = md.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(false);

    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let ignore_merges = pre == "llama-bpe" || pre == "llama3";
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| bad(format!("BPE model: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let pre_tokenizer = match pre.as_str() {
        "smollm" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]),
        "llama-bpe" | "llama3" => Sequence::new(vec![
            Split::new(SplitPattern::Regex(LLAMA3_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| bad(format!("pre-tokenizer: {e}")))?
                .into(),
            ByteLevel::new(false, true, false).into(),
        ]),
        "default" | "gpt2" | "gpt-2" => Sequence::new(vec![ByteLevel::new(add_space_prefix, true, true).into()]),
        other => {
            return Err(EngineError::unsupported(
                path,
                format!("tokenizer.ggml.pre '{other}'; supported: smollm, llama-bpe, gpt2, default"),
            ));
        }
    };
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(kinds)
        .filter(|(_, k)| matches!(k, TokenKind::Control | TokenKind::UserDefined))
        .map(|(s, k)| AddedToken::from(s.clone(), *k == TokenKind::Control))
        .collect();
    inner.add_special_tokens(added).map_err(|e| bad(format!("special tokens: {e}")))?;

    let token_bytes = tokens
        .iter()
        .zip(kinds)
        .map(|(t, k)| match k {
            TokenKind::Control | TokenKind::UserDefined => t.as_bytes().to_vec(),
            _ => byte_level_to_bytes(t),
        })
        .collect();
    Ok((inner, token_bytes))
}

/// Inverse of GPT-2's `bytes_to_unicode`: byte-level BPE writes every byte as a printable character
/// (printable ASCII and Latin-1 as themselves, the rest shifted to U+0100…). Characters outside that map
/// (only in malformed vocabularies) keep their UTF-8 bytes.
pub(crate) fn byte_level_to_bytes(token: &str) -> Vec<u8> {
    token
        .chars()
        .flat_map(|c| {
            let mut buf = [0u8; 4];
            match char_to_byte(c) {
                Some(b) => vec![b],
                None => c.encode_utf8(&mut buf).as_bytes().to_vec(),
            }
        })
        .collect()
}

fn char_to_byte(c: char) -> Option<u8> {
    static TABLE: std::sync::OnceLock<HashMap<char, u8>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| {
            let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            // Printable bytes stand for themselves; the rest are numbered 256, 257, … in byte order.
            let mut next = 256u32;
            (0u32..256)
                .filter_map(|b| {
                    let cp = if printable(b) {
                        b
                    } else {
                        next += 1;
                        next - 1
                    };
                    char::from_u32(cp).map(|c| (c, b as u8))
                })
                .collect()
        })
        .get(&c)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips_all_bytes() {
        // Ġ is the space, Ċ the newline; every byte has exactly one character.
        assert_eq!(byte_level_to_bytes("Ġhello"), b" hello");
        assert_eq!(byte_level_to_bytes("Ċ"), b"\n");
        let mut seen = std::collections::HashSet::new();
        for cp in (0u32..512).filter_map(char::from_u32) {
            if let Some(b) = char_to_byte(cp) {
                assert!(seen.insert(b), "byte {b} mapped twice");
            }
        }
        assert_eq!(seen.len(), 256);
    }
}

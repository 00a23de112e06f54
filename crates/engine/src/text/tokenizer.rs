//! The tokenizer: text ↔ token ids, built from a GGUF's own metadata or from a Hugging Face `tokenizer.json`.
//!
//! Encoding goes through the `tokenizers` crate. For GGUF files the BPE model and pre-tokenizer are
//! assembled from `tokenizer.ggml.*` exactly as llama.cpp does for the named `tokenizer.ggml.pre`
//! (candle's built-in GGUF tokenizer adds a prefix space and skips SmolLM's digit split, so it disagrees
//! with llama.cpp). Decoding does not go through the crate: every id maps to its raw bytes, so a stream
//! can be cut anywhere and reassembled into valid UTF-8 (see [`crate::text::detokenize`]).

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

/// Llama 3's pre-tokenizer split (also llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Text ↔ ids for one model, with the special tokens the model's prompt format and stopping rules need.
#[derive(Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token parsing off: control-token spellings stay text
    /// ([`Tokenizer::encode_text`]).
    plain: tokenizers::Tokenizer,
    /// Raw bytes of every id: byte-level BPE pieces decoded, added tokens as written.
    token_bytes: Vec<Vec<u8>>,
    /// Control tokens: never part of the text shown to users.
    special: Vec<bool>,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
    /// Every id that ends a turn (Llama 3 has `<|eot_id|>`, `<|eom_id|>` and `<|end_of_text|>`).
    stop_ids: Vec<u32>,
}

/// `inner` with special-token parsing turned off (added special tokens are matched as text).
fn plain_twin(inner: &tokenizers::Tokenizer) -> tokenizers::Tokenizer {
    let mut plain = inner.clone();
    plain.set_encode_special_tokens(true);
    plain
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF header's `tokenizer.ggml.*` entries.
    pub fn from_gguf(md: &HashMap<String, Value>, path: &Path) -> Result<Self> {
        let bad = |r: String| EngineError::invalid_model(path, r);
        let model = md_string(md, "tokenizer.ggml.model").unwrap_or_default();
        if model != "gpt2" {
            return Err(EngineError::unsupported(
                path,
                format!("tokenizer.ggml.model '{model}'; only byte-level BPE ('gpt2') GGUF tokenizers are supported"),
            ));
        }
        let tokens: Vec<String> = md_array(md, "tokenizer.ggml.tokens")
            .ok_or_else(|| bad("tokenizer.ggml.tokens is missing".into()))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("tokenizer.ggml.tokens: {e}")))?;
        let merges: Vec<(String, String)> = md_array(md, "tokenizer.ggml.merges")
            .ok_or_else(|| bad("tokenizer.ggml.merges is missing".into()))?
            .iter()
            .map(|v| {
                let s = v.to_string().map_err(|e| bad(format!("tokenizer.ggml.merges: {e}")))?;
                s.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("tokenizer.ggml.merges entry '{s}' has no space")))
            })
            .collect::<Result<_>>()?;
        let types: Vec<i32> = match md_array(md, "tokenizer.ggml.token_type") {
            Some(v) => v.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = md_string(md, "tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
        let add_space_prefix =
            md.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(false);

        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
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
            .zip(&types)
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
            .map(|(s, t)| AddedToken::from(s.clone(), *t == TOKEN_TYPE_CONTROL))
            .collect();
        inner.add_special_tokens(added).map_err(|e| bad(format!("special tokens: {e}")))?;

        let special: Vec<bool> = types.iter().map(|t| *t == TOKEN_TYPE_CONTROL).collect();
        let token_bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, ty)| {
                if *ty == TOKEN_TYPE_CONTROL || *ty == TOKEN_TYPE_USER_DEFINED {
                    t.as_bytes().to_vec()
                } else {
                    byte_level_to_bytes(t)
                }
            })
            .collect();
        let id_token = |key: &str| {
            md.get(key).and_then(|v| v.to_u32().ok()).and_then(|id| tokens.get(id as usize).map(|t| (id, t.clone())))
        };
        let bos = id_token("tokenizer.ggml.bos_token_id");
        let eos = id_token("tokenizer.ggml.eos_token_id");
        let mut stop_ids: Vec<u32> = eos.iter().map(|(id, _)| *id).collect();
        // Chat fine-tunes end turns with a control token that is not always the declared EOS
        // (SmolLM2 declares <|im_end|> but can also emit <|endoftext|>; Llama 3 has <|eot_id|>).
        for name in ["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"] {
            if let Some(id) = tokens.iter().position(|t| t == name)
                && special.get(id).copied().unwrap_or(false)
            {
                stop_ids.push(id as u32);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Self { plain: plain_twin(&inner), inner, token_bytes, special, bos, eos, stop_ids })
    }

    /// Loads `tokenizer.json`, with special-token names from `tokenizer_config.json` and the stop ids from
    /// `generation_config.json` / `config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| EngineError::invalid_model(&path, e))?;
        let decoder = json.pointer("/decoder/type").and_then(|t| t.as_str()).unwrap_or("none");
        if decoder != "ByteLevel" {
            return Err(EngineError::unsupported(
                &path,
                format!("decoder '{decoder}'; only byte-level BPE tokenizers are supported"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes())
            .map_err(|e| EngineError::invalid_model(&path, format!("tokenizer.json: {e}")))?;
        let added = inner.get_added_tokens_decoder();
        let vocab = inner.get_vocab(true);
        let size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut token_bytes = vec![Vec::new(); size];
        let mut special = vec![false; size];
        for (tok, id) in &vocab {
            let i = *id as usize;
            match added.get(id) {
                Some(a) => {
                    token_bytes[i] = a.content.as_bytes().to_vec();
                    special[i] = a.special;
                }
                None => token_bytes[i] = byte_level_to_bytes(tok),
            }
        }

        let config = read_json_if_exists(&dir.join("tokenizer_config.json"))?;
        let token_named = |key: &str| -> Option<(u32, String)> {
            let v = config.as_ref()?.get(key)?;
            let name = v.as_str().or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            Some((inner.token_to_id(name)?, name.to_string()))
        };
        let bos = token_named("bos_token");
        let eos = token_named("eos_token");
        let mut stop_ids: Vec<u32> = eos.iter().map(|(id, _)| *id).collect();
        for file in ["generation_config.json", "config.json"] {
            if let Some(v) = read_json_if_exists(&dir.join(file))? {
                match v.get("eos_token_id") {
                    Some(serde_json::Value::Number(n)) => stop_ids.extend(n.as_u64().map(|n| n as u32)),
                    Some(serde_json::Value::Array(a)) => {
                        stop_ids.extend(a.iter().filter_map(|n| n.as_u64()).map(|n| n as u32))
                    }
                    _ => {}
                }
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Self { plain: plain_twin(&inner), inner, token_bytes, special, bos, eos, stop_ids })
    }

    /// Encodes text exactly as the model's reference implementation would after rendering a chat
    /// template: special-token strings in the text become their ids, and no BOS is added (templates
    /// that want one write it themselves).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text that came from a caller (a message's content): special-token spellings such as
    /// `<|eot_id|>` stay text and become ordinary tokens, so a caller can never write the prompt
    /// format's control tokens. No BOS is added.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.plain.encode_fast(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of every control token (`<|im_end|>`, `<|eot_id|>`, …): what a caller's text is
    /// checked for before it is spliced into a rendered prompt.
    pub fn special_spellings(&self) -> impl Iterator<Item = &str> {
        self.special
            .iter()
            .enumerate()
            .filter(|(_, special)| **special)
            .filter_map(|(id, _)| std::str::from_utf8(self.token_bytes(id as u32)).ok())
            .filter(|spelling| !spelling.is_empty())
    }

    /// The raw bytes of one token; empty for ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether a token is a control token that users never see in text.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Decodes ids to text, leaving out control tokens (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|id| !self.is_special(**id))
            .flat_map(|id| self.token_bytes(*id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The beginning-of-sequence token, which chat templates reference as `bos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(_, s)| s.as_str())
    }

    /// The end-of-sequence token, which chat templates reference as `eos_token`.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|(_, s)| s.as_str())
    }

    /// Ids that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Vocabulary size, including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}

fn md_string(md: &HashMap<String, Value>, key: &str) -> Option<String> {
    md.get(key).and_then(|v| v.to_string().ok()).cloned()
}

fn md_array<'a>(md: &'a HashMap<String, Value>, key: &str) -> Option<&'a Vec<Value>> {
    md.get(key).and_then(|v| v.to_vec().ok())
}

fn read_json_if_exists(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| EngineError::invalid_model(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

/// Inverse of GPT-2's `bytes_to_unicode`: byte-level BPE writes every byte as a printable character
/// (printable ASCII and Latin-1 as themselves, the rest shifted to U+0100…). Characters outside that map
/// (only in malformed vocabularies) keep their UTF-8 bytes.
fn byte_level_to_bytes(token: &str) -> Vec<u8> {
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

//! The tokenizer: text ↔ token ids, built from a GGUF's own metadata or from a Hugging Face `tokenizer.json`.
//!
//! Two encoders sit behind one [`Tokenizer`], so chat templates, stop matching, streaming and caller
//! text work the same for both: byte-level BPE (`tokenizer.ggml.model = gpt2`, and every
//! `tokenizer.json`; see [`crate::text::bpe`]) and SentencePiece (`llama`: Llama 2, Mistral, TinyLlama;
//! see [`crate::text::spm`]), each giving llama.cpp's ids for the same text. Decoding does not go through
//! either encoder: every id maps to its raw bytes, so a stream can be cut anywhere and reassembled into
//! valid UTF-8 (see [`crate::text::detokenize`]).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::error::{EngineError, Result};
use crate::text::bpe;
use crate::text::spm::{self, SentencePiece};
use crate::text::token_kind::TokenKind;

/// Text ↔ ids for one model, with the special tokens the model's prompt format and stopping rules need.
#[derive(Debug)]
pub struct Tokenizer {
    encoder: Encoder,
    /// Raw bytes of every id: byte-level BPE pieces decoded, SentencePiece `▁` as a space and `<0xXX>`
    /// as its byte, special tokens as written.
    token_bytes: Vec<Vec<u8>>,
    /// Control tokens (and SentencePiece's `<unk>`): never part of the text shown to users.
    special: Vec<bool>,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
    /// Every id that ends a turn (Llama 3 has `<|eot_id|>`, `<|eom_id|>` and `<|end_of_text|>`).
    stop_ids: Vec<u32>,
    /// `tokenizer.ggml.add_bos_token`: the model expects BOS before every prompt.
    add_bos: bool,
    /// Ids after which SentencePiece gave the following text one leading space that is not the
    /// caller's (special and user-defined tokens, when `add_space_prefix`); decoding drops it again.
    /// Empty for BPE.
    space_after: Vec<bool>,
}

/// The algorithm that turns text into ids.
#[derive(Debug)]
enum Encoder {
    /// Byte-level BPE through the `tokenizers` crate. `plain` is the same tokenizer with special-token
    /// parsing off: control-token spellings stay text ([`Tokenizer::encode_text`]). Boxed: each is a few
    /// KiB, and the enum should not be.
    Bpe { inner: Box<tokenizers::Tokenizer>, plain: Box<tokenizers::Tokenizer> },
    /// SentencePiece's score-driven merge, our own (the `tokenizers` crate cannot read GGUF scores).
    Spm(SentencePiece),
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
        let tokens: Vec<String> = md_array(md, "tokenizer.ggml.tokens")
            .ok_or_else(|| bad("tokenizer.ggml.tokens is missing".into()))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("tokenizer.ggml.tokens: {e}")))?;
        let kinds: Vec<TokenKind> = match md_array(md, "tokenizer.ggml.token_type") {
            Some(v) => v.iter().map(|t| TokenKind::from_gguf(t.to_i32().unwrap_or(1))).collect(),
            None => vec![TokenKind::Normal; tokens.len()],
        };
        if kinds.len() != tokens.len() {
            return Err(bad(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                kinds.len(),
                tokens.len()
            )));
        }
        let flag = |key: &str| md.get(key).and_then(|v| v.to_bool().ok());
        let unknown = md.get("tokenizer.ggml.unknown_token_id").and_then(|v| v.to_u32().ok());
        // What differs between the two: the encoder, each id's bytes, which ids are hidden, whether BOS
        // is expected when the metadata does not say, and after which ids the encoder put a space.
        let (encoder, token_bytes, special, add_bos_default, space_after) = match model.as_str() {
            "gpt2" => {
                let (inner, token_bytes) = bpe::from_gguf(md, &tokens, &kinds, path)?;
                let special = kinds.iter().map(|k| *k == TokenKind::Control).collect();
                (
                    Encoder::Bpe { plain: Box::new(plain_twin(&inner)), inner: Box::new(inner) },
                    token_bytes,
                    special,
                    false,
                    Vec::new(),
                )
            }
            "llama" => {
                let scores: Vec<f32> = match md_array(md, "tokenizer.ggml.scores") {
                    Some(v) => v.iter().map(|s| s.to_f32().unwrap_or(0.0)).collect(),
                    None => vec![0.0; tokens.len()],
                };
                // llama.cpp's default for SentencePiece vocabularies that do not say.
                let add_space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let unknown = unknown.or_else(|| kinds.iter().position(|k| *k == TokenKind::Unknown).map(|i| i as u32));
                let spm = SentencePiece::new(&tokens, &scores, &kinds, unknown, add_space_prefix);
                let special = kinds.iter().map(|k| matches!(k, TokenKind::Control | TokenKind::Unknown)).collect();
                let token_bytes = tokens.iter().zip(&kinds).map(|(t, k)| spm_token_bytes(t, *k)).collect();
                let space_after = kinds
                    .iter()
                    .map(|k| {
                        add_space_prefix
                            && matches!(k, TokenKind::Control | TokenKind::Unknown | TokenKind::UserDefined)
                    })
                    .collect();
                (Encoder::Spm(spm), token_bytes, special, true, space_after)
            }
            other => {
                return Err(EngineError::unsupported(
                    path,
                    format!(
                        "tokenizer.ggml.model '{other}'; supported: byte-level BPE ('gpt2') and SentencePiece ('llama')"
                    ),
                ));
            }
        };
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(add_bos_default);
        Ok(Self::with_special_ids(md, &tokens, encoder, token_bytes, special, add_bos, space_after))
    }

    /// Completes a GGUF tokenizer with what every encoder shares: BOS, EOS and the ids that end a turn.
    fn with_special_ids(
        md: &HashMap<String, Value>,
        tokens: &[String],
        encoder: Encoder,
        token_bytes: Vec<Vec<u8>>,
        special: Vec<bool>,
        add_bos: bool,
        space_after: Vec<bool>,
    ) -> Self {
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
        Self { encoder, token_bytes, special, bos, eos, stop_ids, add_bos, space_after }
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
                None => token_bytes[i] = bpe::byte_level_to_bytes(tok),
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
        Ok(Self {
            encoder: Encoder::Bpe { plain: Box::new(plain_twin(&inner)), inner: Box::new(inner) },
            token_bytes,
            special,
            bos,
            eos,
            stop_ids,
            add_bos: false,
            space_after: Vec::new(),
        })
    }

    /// Encodes text exactly as the model's reference implementation would after rendering a chat
    /// template: special-token strings in the text become their ids, and no BOS is added (templates
    /// that want one write it themselves; see [`Tokenizer::prompt_bos`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_parts(&[(text, true)])
    }

    /// Encodes text that came from a caller (a message's content): special-token spellings such as
    /// `<|eot_id|>` or `<s>` stay text and become ordinary tokens, so a caller can never write the
    /// prompt format's control tokens. No BOS is added.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_parts(&[(text, false)])
    }

    /// Encodes consecutive pieces of one prompt: those marked `true` are the template's (special-token
    /// spellings become their ids), those marked `false` a caller's (they stay text). SentencePiece
    /// segments the pieces as one text, so the result is the whole prompt's tokenization with only the
    /// caller's control spellings kept as text; BPE encodes each piece on its own.
    pub(crate) fn encode_parts(&self, parts: &[(&str, bool)]) -> Result<Vec<u32>> {
        match &self.encoder {
            Encoder::Bpe { inner, plain } => {
                let mut ids = Vec::new();
                for (text, parse_special) in parts {
                    let tokenizer = if *parse_special { inner } else { plain };
                    let enc = tokenizer.encode_fast(*text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
                    ids.extend_from_slice(enc.get_ids());
                }
                Ok(ids)
            }
            Encoder::Spm(spm) => spm.encode(parts),
        }
    }

    /// The BOS id when the model's metadata asks for one before every prompt
    /// (`tokenizer.ggml.add_bos_token`; llama.cpp's default is yes for SentencePiece, no for BPE):
    /// what llama.cpp adds when it tokenizes a prompt with its special tokens.
    pub fn prompt_bos(&self) -> Option<u32> {
        self.bos.as_ref().filter(|_| self.add_bos).map(|(id, _)| *id)
    }

    /// `ids` of a whole prompt with [`Tokenizer::prompt_bos`] in front, unless they already start with
    /// it (a chat template that writes `bos_token` itself gets no second one).
    pub fn with_prompt_bos(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if let Some(bos) = self.prompt_bos()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        ids
    }

    /// The text of every control token (`<|im_end|>`, `<|eot_id|>`, `<s>`, …): what a caller's text is
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

    /// Decodes ids to text, leaving out control tokens (invalid UTF-8 becomes U+FFFD). For
    /// SentencePiece the space the encoder puts after a control or user-defined token (BOS above all)
    /// is dropped, so `decode(BOS + encode_text(s))` is `s`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut after_whole_token = false;
        for id in ids {
            let whole_token = self.space_after.get(*id as usize).copied().unwrap_or(false);
            if !self.is_special(*id) {
                let piece = self.token_bytes(*id);
                let piece = match piece.split_first() {
                    Some((b' ', rest)) if after_whole_token && !whole_token => rest,
                    _ => piece,
                };
                bytes.extend_from_slice(piece);
            }
            after_whole_token = whole_token;
        }
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

/// The raw bytes a SentencePiece token stands for, as llama.cpp renders it: `▁` as a space, a byte
/// token as its byte, special and user-defined tokens as written, unused slots as nothing.
fn spm_token_bytes(token: &str, kind: TokenKind) -> Vec<u8> {
    match kind {
        TokenKind::Normal => spm::unescape(token).into_bytes(),
        TokenKind::Byte => spm::parse_byte_token(token).map_or_else(|| token.as_bytes().to_vec(), |b| vec![b]),
        TokenKind::Control | TokenKind::Unknown | TokenKind::UserDefined => token.as_bytes().to_vec(),
        TokenKind::Unused => Vec::new(),
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

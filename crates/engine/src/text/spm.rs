//! SentencePiece (`tokenizer.ggml.model = llama`) encoding from a GGUF's vocabulary: Llama 2, Mistral,
//! TinyLlama, Code Llama.
//!
//! The GGUF carries no merge list, only every piece with a score; encoding is the greedy bigram merge
//! llama.cpp runs on those scores, so prompts get exactly llama.cpp's ids:
//!
//! 1. Special-token spellings are cut out of the text first ([`SentencePiece::encode`] says which).
//! 2. Each remaining run of text gets one leading space when it starts the input or follows a special
//!    token (`add_space_prefix`), and every space becomes `▁` (U+2581), the vocabulary's space.
//! 3. The run starts as one symbol per character. Every adjacent pair whose joined text is a piece is a
//!    candidate; the candidate with the highest score (leftmost on ties) is merged, its new neighbours
//!    become candidates, and so on until no adjacent pair forms a piece.
//! 4. Each final symbol is its piece's id, or, when the character is not in the vocabulary, the byte
//!    tokens `<0xXX>` of its UTF-8 encoding (byte fallback), so no text is ever lost to `<unk>`.
//!
//! Only normal and user-defined pieces take part in step 3: control, unknown and byte pieces are
//! never produced from text, so a caller who writes `<s>` or `<0x0A>` gets those characters. This is
//! the one place we part from llama.cpp on purpose: its merge looks pieces up whatever their type, so
//! where a control token is spelled by ordinary pieces (a fine-tune's `INST`: `IN` + `ST`), caller
//! text could merge into it there. Llama 2's own `<s>`/`</s>` cannot form that way, so on them (and
//! every vocabulary without such a control token) the ids are llama.cpp's.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{EngineError, Result};
use crate::text::token_kind::TokenKind;

/// The vocabulary's space character.
const SPACE: char = '\u{2581}';

/// A SentencePiece vocabulary ready to encode: pieces, their scores, and the byte tokens.
#[derive(Debug)]
pub(crate) struct SentencePiece {
    /// Piece text → id, for the pieces text may turn into (normal and user-defined).
    pieces: HashMap<String, u32>,
    scores: Vec<f32>,
    /// The id of `<0xXX>` for every byte value.
    byte_ids: Vec<Option<u32>>,
    unknown: Option<u32>,
    add_space_prefix: bool,
    /// Spellings cut out before segmentation, longest first, with whether only the template may use
    /// them (control and unknown tokens) rather than any text (user-defined tokens).
    specials: Vec<(String, u32, bool)>,
}

/// One stretch of input: text to segment, or a token already decided.
enum Fragment {
    Text(String),
    Token(u32),
}

impl SentencePiece {
    /// Builds the encoder from the GGUF's parallel `tokens`, `scores` and `kinds` arrays.
    pub(crate) fn new(
        tokens: &[String],
        scores: &[f32],
        kinds: &[TokenKind],
        unknown: Option<u32>,
        add_space_prefix: bool,
    ) -> Self {
        let mut pieces = HashMap::with_capacity(tokens.len());
        let mut byte_ids = vec![None; 256];
        let mut specials = Vec::new();
        for (id, (token, kind)) in tokens.iter().zip(kinds).enumerate() {
            let id = id as u32;
            match kind {
                TokenKind::Normal | TokenKind::UserDefined => {
                    // A repeated spelling means its last id, as in llama.cpp.
                    pieces.insert(token.clone(), id);
                }
                TokenKind::Byte => {
                    if let Some(b) = parse_byte_token(token) {
                        byte_ids[usize::from(b)].get_or_insert(id);
                    }
                }
                TokenKind::Control | TokenKind::Unknown | TokenKind::Unused => {}
            }
            match kind {
                TokenKind::UserDefined if !token.is_empty() => specials.push((token.clone(), id, false)),
                TokenKind::Control | TokenKind::Unknown if !token.is_empty() => {
                    specials.push((token.clone(), id, true))
                }
                _ => {}
            }
        }
        // Longer spellings first, so `<|end|>` is never split by a shorter spelling inside it.
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Self {
            pieces,
            scores: scores.to_vec(),
            byte_ids,
            unknown: unknown.filter(|id| (*id as usize) < tokens.len()),
            add_space_prefix,
            specials,
        }
    }

    /// Encodes `parts` as one text. A part marked `true` is the template's: its control-token
    /// spellings become those tokens. A part marked `false` is a caller's: only user-defined tokens
    /// match in it, as in llama.cpp with special-token parsing off. Neighbouring text from different
    /// parts is segmented together, exactly as if the whole had been one string.
    pub(crate) fn encode(&self, parts: &[(&str, bool)]) -> Result<Vec<u32>> {
        let mut fragments: Vec<Fragment> = Vec::new();
        for (text, parse_special) in parts {
            for fragment in self.split_specials(text, *parse_special) {
                match (fragments.last_mut(), fragment) {
                    (Some(Fragment::Text(prev)), Fragment::Text(next)) => prev.push_str(&next),
                    (_, fragment) => fragments.push(fragment),
                }
            }
        }
        let mut ids = Vec::new();
        let mut after_special = true;
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Fragment::Text(text) => {
                    let mut escaped = String::with_capacity(text.len() + 3);
                    if self.add_space_prefix && after_special {
                        escaped.push(SPACE);
                    }
                    escaped.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
                    self.segment(&escaped, &mut ids)?;
                    after_special = false;
                }
            }
        }
        Ok(ids)
    }

    /// `text` cut at every special spelling that may match in it, as fragments in order; empty text
    /// between two spellings is left out.
    fn split_specials(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = vec![Fragment::Text(text.to_string())];
        for (spelling, id, template_only) in &self.specials {
            if *template_only && !parse_special {
                continue;
            }
            fragments = fragments
                .into_iter()
                .flat_map(|fragment| match fragment {
                    Fragment::Text(t) if t.contains(spelling.as_str()) => cut(&t, spelling, *id),
                    other => vec![other],
                })
                .collect();
        }
        fragments.retain(|f| !matches!(f, Fragment::Text(t) if t.is_empty()));
        fragments
    }

    /// Appends the ids of one escaped run of text (step 3 and 4 of the module docs).
    fn segment(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: Some(i + 1) })
            .collect();
        if let Some(last) = symbols.last_mut() {
            last.next = None;
        }
        let mut queue = BinaryHeap::new();
        for left in 1..symbols.len() {
            self.push_candidate(text, &symbols, left - 1, left, &mut queue);
        }
        while let Some(Candidate { left, right, len, .. }) = queue.pop() {
            // A candidate is stale once either side has been merged into something else.
            let (l, r) = (&symbols[left], &symbols[right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != len {
                continue;
            }
            let next = r.next;
            symbols[left].len = len;
            symbols[left].next = next;
            symbols[right].len = 0;
            if let Some(n) = next {
                symbols[n].prev = Some(left);
            }
            if let Some(p) = symbols[left].prev {
                self.push_candidate(text, &symbols, p, left, &mut queue);
            }
            if let Some(n) = next {
                self.push_candidate(text, &symbols, left, n, &mut queue);
            }
        }
        let mut at = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = at {
            let s = &symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.pieces.get(piece) {
                Some(id) => ids.push(*id),
                None => self.push_bytes(piece, ids)?,
            }
            at = s.next;
        }
        Ok(())
    }

    /// Queues the merge of `left` and `right` when their joined text is a piece.
    fn push_candidate(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Candidate>,
    ) {
        let (l, r) = (&symbols[left], &symbols[right]);
        let len = l.len + r.len;
        if let Some(id) = self.pieces.get(&text[l.start..l.start + len]) {
            let score = self.scores.get(*id as usize).copied().unwrap_or(0.0);
            queue.push(Candidate { score, left, right, len });
        }
    }

    /// Byte fallback: the `<0xXX>` tokens of `piece`'s UTF-8 bytes (`<unk>` for a byte the vocabulary
    /// lacks).
    fn push_bytes(&self, piece: &str, ids: &mut Vec<u32>) -> Result<()> {
        for b in piece.bytes() {
            let id = self.byte_ids[usize::from(b)].or(self.unknown).ok_or_else(|| {
                EngineError::Tokenizer(format!("byte 0x{b:02X} has no token and the vocabulary has no <unk>"))
            })?;
            ids.push(id);
        }
        Ok(())
    }
}

/// `text` split around every occurrence of `spelling`, which becomes `Token(id)`.
fn cut(text: &str, spelling: &str, id: u32) -> Vec<Fragment> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(spelling) {
        out.push(Fragment::Text(rest[..at].to_string()));
        out.push(Fragment::Token(id));
        rest = &rest[at + spelling.len()..];
    }
    out.push(Fragment::Text(rest.to_string()));
    out
}

/// The byte a `<0xXX>` token stands for.
pub(crate) fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The text a normal piece stands for: `▁` is a space.
pub(crate) fn unescape(piece: &str) -> String {
    piece.replace(SPACE, " ")
}

/// A stretch of the text being segmented: one character at first, then whatever merged into it.
/// Merged-away symbols keep their slot with `len == 0`.
#[derive(Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A possible merge of two neighbouring symbols into a piece of `len` bytes.
#[derive(Debug)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Candidate {
    /// The best candidate is the greatest: higher score, then the one further left.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: `▁ab` scores best, so `▁` + `a` + `b` ends as one piece.
    fn toy() -> SentencePiece {
        let tokens: Vec<String> =
            ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0x63>", "<0xC3>", "<0xA9>"]
                .into_iter()
                .map(String::from)
                .collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -3.0, -4.0, -0.5, 0.0, 0.0, 0.0];
        let kinds: Vec<TokenKind> =
            [2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6, 6].into_iter().map(TokenKind::from_gguf).collect();
        SentencePiece::new(&tokens, &scores, &kinds, Some(0), true)
    }

    #[test]
    fn merges_by_score_and_falls_back_to_bytes() {
        let spm = toy();
        assert_eq!(spm.encode(&[("ab", false)]).unwrap(), vec![8]);
        // `c` and `é` are not pieces: their UTF-8 bytes are.
        assert_eq!(spm.encode(&[("abc", false)]).unwrap(), vec![8, 9]);
        assert_eq!(spm.encode(&[("é", false)]).unwrap(), vec![3, 10, 11]);
        assert_eq!(spm.encode(&[("", false)]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn control_spellings_match_only_in_template_text() {
        let spm = toy();
        assert_eq!(spm.encode(&[("<s>ab", true)]).unwrap(), vec![1, 8]);
        assert!(!spm.encode(&[("<s>ab", false)]).unwrap().contains(&1));
        // Text after a control token gets the prefix space again; joined parts are one text.
        assert_eq!(spm.encode(&[("<s>a", true), ("b", false)]).unwrap(), vec![1, 8]);
    }

    #[test]
    fn byte_tokens_parse_only_in_their_exact_form() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x100>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
    }
}

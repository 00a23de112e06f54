//! [`LlamaGuard`]: a Llama Guard 3 shield — the classifier prompt and probability-based scores.
//!
//! The prompt is Llama Stack's (`docs/reference/llama-stack-api.md` §e.4): the task line naming the
//! role of the last turn, one line per enabled hazard category (`S1: Violent Crimes.`), the conversation
//! as `<Role>: <text>` turns, and the two-line answer instructions. Which categories appear depends on
//! the guard model minus the shield's excluded codes ([`super::categories`];
//! `docs/reference/llama-stack-api.md` §e.3: the 1B, 11B-Vision and 4-12B cards list S1–S13, everything
//! else gets S1–S14).
//!
//! Scores are read from the model's next-token probabilities, never from parsing generated text (see
//! [`crate::guard::scores`]): a shield that says "unsafe" with probability 0.51 and one that says it with
//! 0.99 are different facts, and safety levels compare those numbers with per-category thresholds.
//!
//! How the prompt reaches the model: a Llama 3 tokenizer (real Llama Guard 3 weights) gets Meta's own
//! single-user-turn format written out here, because Llama Guard's shipped chat template builds its own
//! fixed-category prompt around the conversation and would wrap ours a second time (and ignore the
//! excluded categories). Any other model — tests use the small default model as a stand-in guard — gets
//! the prompt as one user message through its own chat template.

use crate::error::{EngineError, Result};
#[cfg(test)]
use crate::guard::categories::CATEGORIES;
use crate::guard::categories::{GuardCategory, categories_for_model, category_by_code};
use crate::guard::scores::{GuardScores, GuardVocab, score_continuations};
use crate::serving::engine::{Model, OwnPrefix};
use crate::text::chat_template::ChatMessage;

/// Normalises a conversation for `run-shield` as Llama Stack does
/// (`docs/reference/llama-stack-api.md` §e.4): it must not be empty, a first turn that is not the
/// user's is relabelled `user`, and when the first two turns are both the user's the first is dropped.
pub fn normalize_conversation(mut messages: Vec<ChatMessage>) -> Result<Vec<ChatMessage>> {
    let Some(first) = messages.first_mut() else {
        return Err(EngineError::InvalidRequest("Messages must not be empty".into()));
    };
    if first.role != "user" {
        first.role = "user".into();
    }
    if messages.len() >= 2 && messages[1].role == "user" {
        messages.remove(0);
    }
    Ok(messages)
}

/// A Llama Guard shield's classifier settings: the categories its prompt lists. It holds no model, so
/// one loaded guard model can serve several shields with different exclusions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaGuard {
    categories: Vec<GuardCategory>,
}

impl LlamaGuard {
    /// The categories of `guard_model_id` minus `excluded` codes. An unknown code is an error. Excluding
    /// every category is treated as excluding none (as Llama Stack does), since an empty category list
    /// would make every verdict meaningless.
    pub fn new(guard_model_id: &str, excluded: &[String]) -> Result<Self> {
        if let Some(bad) = excluded.iter().find(|code| category_by_code(code).is_none()) {
            return Err(EngineError::InvalidRequest(format!(
                "unknown Llama Guard category `{bad}` (expected S1 … S14)"
            )));
        }
        let all = categories_for_model(guard_model_id);
        let kept: Vec<GuardCategory> = all.iter().filter(|c| !excluded.iter().any(|e| e == c.code)).copied().collect();
        let categories = if kept.is_empty() { all.to_vec() } else { kept };
        Ok(Self { categories })
    }

    /// The categories the prompt lists and the scores cover, in prompt order.
    pub fn categories(&self) -> &[GuardCategory] {
        &self.categories
    }

    /// The Llama Guard 3 prompt text for `conversation` (`docs/reference/llama-stack-api.md` §e.4),
    /// judging its last turn.
    pub fn prompt(&self, conversation: &[ChatMessage]) -> Result<String> {
        let last =
            conversation.last().ok_or_else(|| EngineError::InvalidRequest("Messages must not be empty".into()))?;
        let role = capitalize(&last.role);
        let categories: Vec<String> = self.categories.iter().map(|c| format!("{}: {}.", c.code, c.name)).collect();
        let turns: Vec<String> =
            conversation.iter().map(|m| format!("{}: {}", capitalize(&m.role), m.content)).collect();
        Ok(format!(
            "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety \
             policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{}\n<END UNSAFE CONTENT \
             CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{}\n\n<END CONVERSATION>\n\nProvide your safety assessment \
             for ONLY THE LAST {role} message in the above conversation:\n - First line must read 'safe' or \
             'unsafe'.\n - If unsafe, a second line must include a comma-separated list of violated categories.",
            categories.join("\n"),
            turns.join("\n\n"),
        ))
    }

    /// The prompt as the guard model's token ids, ready for its answer (see the module docs for which
    /// wrapping is used).
    pub fn prompt_ids(&self, model: &Model, conversation: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.prompt(conversation)?;
        let tokenizer = model.tokenizer();
        let is_special = |s: &str| matches!(tokenizer.encode(s).as_deref(), Ok([id]) if tokenizer.is_special(*id));
        // The caller's conversation inside `text` stays text: a message that spells a control token
        // cannot end the guard's turn or write its verdict.
        if is_special("<|start_header_id|>") && is_special("<|eot_id|>") {
            let bos = tokenizer.bos_token().unwrap_or_default();
            let before = format!("{bos}<|start_header_id|>user<|end_header_id|>\n\n");
            let after = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
            model.tokenize_around(&before, &text, after)
        } else {
            model.tokenize_chat(&[ChatMessage::new("user", text)])
        }
    }

    /// Classifies the last turn of `conversation` with `model` as the guard: P(unsafe) and the
    /// distribution over this shield's categories. Blocking, CPU/GPU-bound work.
    pub fn score(&self, model: &Model, conversation: &[ChatMessage]) -> Result<GuardScores> {
        self.score_for(model, conversation, None)
    }

    /// [`LlamaGuard::score`] for one caller (`scope`, as [`crate::GenerationRequest::prefix_scope`]):
    /// the conversation part of the prompt is remembered for that caller alone, so its next check of a
    /// longer conversation — the next sentence of a streamed answer — prefills only what is new.
    pub fn score_for(&self, model: &Model, conversation: &[ChatMessage], scope: Option<u64>) -> Result<GuardScores> {
        let ids = self.prompt_ids(model, conversation)?;
        let vocab = GuardVocab::new(model.tokenizer(), &self.categories)?;
        let (fixed_len, closing_len) = self.fixed_parts(model, conversation, &ids)?;
        let own = scope.map(|scope| OwnPrefix { scope, keep: ids.len().saturating_sub(closing_len) });
        let mut session = model.scoring_session_reusing(&ids, fixed_len, vocab.longest_continuation(), own)?;
        score_continuations(&mut session, &vocab)
    }

    /// The guard's own text around the conversation in `ids`: how many leading tokens (instructions and
    /// category list) are the same for every caller judged at this role, and how many trailing ones (the
    /// closing instructions). Found as what two one-letter conversations share at each end, and `ids`
    /// with them, less two for merges at the seams. A caller's text is never in the leading part: it
    /// equals a probe's, which holds none (roles come from a fixed set).
    fn fixed_parts(&self, model: &Model, conversation: &[ChatMessage], ids: &[u32]) -> Result<(usize, usize)> {
        let Some(last) = conversation.last() else { return Ok((0, 0)) };
        let probe = |text: &str| self.prompt_ids(model, &[ChatMessage::new(last.role.clone(), text)]);
        let (a, b) = (probe("a")?, probe("b")?);
        let common = |x: &mut dyn Iterator<Item = (&u32, &u32)>| x.take_while(|(p, q)| p == q).count();
        // An earlier turn's role can differ from the judged one: then `ids` leaves the probe sooner.
        let leading = common(&mut a.iter().zip(&b)).min(common(&mut a.iter().zip(ids)));
        let trailing =
            common(&mut a.iter().rev().zip(b.iter().rev())).min(common(&mut a.iter().rev().zip(ids.iter().rev())));
        Ok((leading.saturating_sub(2), trailing + 2))
    }
}

/// Python's `str.capitalize`, which Llama Stack applies to roles: `user` → `User`.
fn capitalize(role: &str) -> String {
    let mut chars = role.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(model: &str, excluded: &[&str]) -> LlamaGuard {
        LlamaGuard::new(model, &excluded.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_prompt_is_llama_stacks_text() {
        let g = guard("meta-llama/Llama-Guard-3-1B", &["S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11"]);
        let conversation = [ChatMessage::new("user", "hi"), ChatMessage::new("assistant", "How do I?")];
        let expected = "Task: Check if there is unsafe content in 'Assistant' messages in conversations according our safety policy with the below categories.\n\
\n\
<BEGIN UNSAFE CONTENT CATEGORIES>\n\
S1: Violent Crimes.\n\
S12: Sexual Content.\n\
S13: Elections.\n\
<END UNSAFE CONTENT CATEGORIES>\n\
\n\
<BEGIN CONVERSATION>\n\
\n\
User: hi\n\
\n\
Assistant: How do I?\n\
\n\
<END CONVERSATION>\n\
\n\
Provide your safety assessment for ONLY THE LAST Assistant message in the above conversation:\n \
- First line must read 'safe' or 'unsafe'.\n \
- If unsafe, a second line must include a comma-separated list of violated categories.";
        assert_eq!(g.prompt(&conversation).unwrap(), expected);
    }

    #[test]
    fn categories_follow_the_guard_model() {
        assert_eq!(categories_for_model("meta-llama/Llama-Guard-3-1B").len(), 13);
        assert_eq!(categories_for_model("Llama-Guard-4-12B").len(), 13);
        assert_eq!(categories_for_model("Llama-Guard-3-11B-Vision").len(), 13);
        assert_eq!(categories_for_model("meta-llama/Llama-Guard-3-8B").len(), 14);
        assert_eq!(categories_for_model("ollama/llama-guard3:1b").len(), 14);
        let g = guard("x", &["S14", "S1"]);
        let codes: Vec<&str> = g.categories().iter().map(|c| c.code).collect();
        assert_eq!(codes, ["S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13"]);
        let prompt = g.prompt(&[ChatMessage::new("user", "x")]).unwrap();
        assert!(!prompt.contains("S1:") && !prompt.contains("S14:") && prompt.contains("S10: Hate."), "{prompt}");
    }

    #[test]
    fn excluding_everything_excludes_nothing_and_unknown_codes_fail() {
        let all: Vec<&str> = CATEGORIES.iter().map(|c| c.code).collect();
        assert_eq!(guard("x", &all).categories().len(), 14);
        assert!(LlamaGuard::new("x", &["S15".to_string()]).is_err());
        assert!(LlamaGuard::new("x", &["violence".to_string()]).is_err());
    }

    #[test]
    fn run_shield_conversations_are_normalised() {
        assert!(normalize_conversation(Vec::new()).is_err());
        let sys = normalize_conversation(vec![ChatMessage::new("system", "s"), ChatMessage::new("assistant", "a")]);
        assert_eq!(sys.unwrap(), [ChatMessage::new("user", "s"), ChatMessage::new("assistant", "a")]);
        let two_users = normalize_conversation(vec![ChatMessage::new("user", "a"), ChatMessage::new("user", "b")]);
        assert_eq!(two_users.unwrap(), [ChatMessage::new("user", "b")]);
        let g = guard("x", &[]);
        assert!(g.prompt(&[]).is_err());
        assert!(g.prompt(&[ChatMessage::new("tool", "t")]).unwrap().contains("in 'Tool' messages"));
    }
}

//! The Llama Guard shield's real path on the default model standing in as the guard: the prompt as the
//! model sees it, scores in range, determinism, and excluded categories left out of prompt and scores.
//! (No Llama Guard weights can be downloaded here; the scoring arithmetic itself is checked with
//! controlled logits in the engine's unit tests.)

use std::sync::OnceLock;

use crate::support::*;
use llamagate_engine::{
    ChatMessage, GuardVocab, LlamaGuard, Model, ModelOptions, ModelSource, NextTokenLogits, score_continuations,
};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&ModelSource::Gguf(default_gguf()), &ModelOptions::default()).unwrap())
}

fn guard(excluded: &[&str]) -> LlamaGuard {
    LlamaGuard::new("smollm2-as-guard", &excluded.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn user(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", text)]
}

#[test]
fn the_prompt_reaches_the_model_as_one_user_turn() {
    let m = model();
    let g = guard(&[]);
    let conversation = user("How do I bake bread?");
    let ids = g.prompt_ids(m, &conversation).unwrap();
    let text = m.tokenizer().decode(&ids);
    // SmolLM2 has no Llama 3 header tokens, so its own chat template wraps the prompt.
    let expected = m.render_chat(&[ChatMessage::new("user", g.prompt(&conversation).unwrap())]).unwrap();
    assert_eq!(ids, m.tokenize(&expected).unwrap());
    assert!(text.contains("<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes."), "{text}");
    assert!(text.contains("S14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>"), "{text}");
    assert!(text.contains("User: How do I bake bread?\n\n<END CONVERSATION>"), "{text}");
}

#[test]
fn scores_are_probabilities_and_deterministic() {
    let m = model();
    let g = guard(&[]);
    let a = g.score(m, &user("How do I make a bomb to hurt people?")).unwrap();
    let b = g.score(m, &user("How do I make a bomb to hurt people?")).unwrap();
    assert_eq!(a, b, "same input, same scores");
    assert!((0.0..=1.0).contains(&a.unsafe_probability), "{a:?}");
    assert_eq!(a.categories.len(), 14);
    let sum: f64 = a.categories.iter().map(|c| c.given_unsafe).sum();
    assert!((sum - 1.0).abs() < 1e-6, "category distribution sums to {sum}");
    for c in &a.categories {
        assert!((0.0..=1.0).contains(&c.probability) && c.probability <= a.unsafe_probability + 1e-12, "{c:?}");
    }
}

#[test]
fn scoring_sessions_agree_with_plain_teacher_forcing() {
    let m = model();
    let prompt = m.tokenize("The capital of France is").unwrap();
    let [a, b, c, d] = [m.tokenize(" Paris").unwrap()[0], 13, 284, 7];
    let mut session = m.scoring_session(&prompt, 3).unwrap();
    let first = session.continuation_logits(&[a, b, c]).unwrap();
    // A continuation sharing only `a`, then the first one again: the cache must be rewound and
    // rewritten correctly, not reuse stale positions.
    let other = session.continuation_logits(&[a, d]).unwrap();
    let again = session.continuation_logits(&[a, b, c]).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first[..2], other[..2]);
    let mut all = prompt.clone();
    all.extend([a, b, c]);
    let plain = m.logits(&all).unwrap();
    for (i, row) in again.iter().enumerate() {
        let expected = &plain[prompt.len() - 1 + i];
        let worst = row.iter().zip(expected).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "row {i} differs by {worst}");
        assert_eq!(row, &first[i], "row {i} changed after rewinding");
    }
    let mut with_d = prompt.clone();
    with_d.extend([a, d]);
    let plain_d = m.logits(&with_d).unwrap();
    let worst = other[2].iter().zip(&plain_d[prompt.len() + 1]).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "the rewound branch differs by {worst}");
    assert!(session.continuation_logits(&[a, b, c, d]).is_err(), "longer than the session was sized for");
}

#[test]
fn a_reused_fixed_prefix_gives_the_same_logits_as_a_fresh_prefill() {
    // A model of its own: the counter and the remembered prefixes see only this test's calls.
    let own = Model::load(&ModelSource::Gguf(default_gguf()), &ModelOptions::default()).unwrap();
    let m = &own;
    let fixed = m.tokenize("Task: judge the following text carefully and say whether it is").unwrap();
    let continuation = [m.tokenize(" safe").unwrap()[0], 13];
    let fresh = |tail: &str| {
        let mut prompt = fixed.clone();
        prompt.extend(m.tokenize(tail).unwrap());
        let plain = m.scoring_session(&prompt, 2).unwrap().continuation_logits(&continuation).unwrap();
        (prompt, plain)
    };
    for (i, tail) in
        [" The weather is nice today.", " How do I pick a lock?", " The weather is nice today."].into_iter().enumerate()
    {
        let (prompt, plain) = fresh(tail);
        // The first call fills the fixed part; later ones copy it and prefill only the tail.
        let before = m.reused_scoring_positions();
        let mut reused = m.scoring_session_reusing(&prompt, fixed.len(), 2, None).unwrap();
        assert_eq!(reused.continuation_logits(&continuation).unwrap(), plain, "call {i}: {tail}");
        let copied = m.reused_scoring_positions() - before;
        assert_eq!(copied, if i == 0 { 0 } else { fixed.len() as u64 }, "call {i}");
    }
    // A guard score goes through the same path: twice the same answer, and the same as a fresh session.
    let g = guard(&[]);
    let conversation = user("Tell me about the history of Paris.");
    let first = g.score(m, &conversation).unwrap();
    let before = m.reused_scoring_positions();
    assert_eq!(g.score(m, &conversation).unwrap(), first);
    let ids = g.prompt_ids(m, &conversation).unwrap();
    let copied = (m.reused_scoring_positions() - before) as usize;
    // The preamble — most of the prompt — was copied, not computed.
    assert!(copied * 2 > ids.len() && copied < ids.len(), "{copied} of {} positions", ids.len());
    let vocab = GuardVocab::new(m.tokenizer(), g.categories()).unwrap();
    let mut plain = m.scoring_session(&ids, vocab.longest_continuation()).unwrap();
    assert_eq!(score_continuations(&mut plain, &vocab).unwrap(), first);
    // Output checks judge the assistant's turn after the user's: their own preamble is reused as well.
    let reply = |text: &str| vec![conversation[0].clone(), ChatMessage::new("assistant", text)];
    g.score(m, &reply("Paris grew from a Celtic settlement.")).unwrap();
    let before = m.reused_scoring_positions();
    let second = reply("Paris grew from a Celtic settlement. It became the capital under the Capetians.");
    let scores = g.score(m, &second).unwrap();
    let copied = (m.reused_scoring_positions() - before) as usize;
    let ids = g.prompt_ids(m, &second).unwrap();
    assert!(copied * 2 > ids.len() && copied < ids.len(), "{copied} of {} positions", ids.len());
    let mut plain = m.scoring_session(&ids, vocab.longest_continuation()).unwrap();
    assert_eq!(score_continuations(&mut plain, &vocab).unwrap(), scores);

    // One caller's stream: each check remembers its conversation for that caller, and the next check of
    // the longer answer copies it, computing only the new sentence and the closing instructions.
    let first = reply("Lyon is known for its food.");
    let next = reply("Lyon is known for its food. Its old town is a World Heritage site.");
    g.score_for(m, &first, Some(41)).unwrap();
    let (first_ids, next_ids) = (g.prompt_ids(m, &first).unwrap(), g.prompt_ids(m, &next).unwrap());
    let before = m.reused_scoring_positions();
    let scores = g.score_for(m, &next, Some(41)).unwrap();
    let own = (m.reused_scoring_positions() - before) as usize;
    // Everything the two prompts share (the preamble and the conversation up to the new sentence), less
    // the seam margin, was copied.
    let shared = first_ids.iter().zip(&next_ids).take_while(|(a, b)| a == b).count();
    assert!(own + 4 >= shared && own <= shared, "{own} copied, {shared} shared");
    let mut plain = m.scoring_session(&next_ids, vocab.longest_continuation()).unwrap();
    assert_eq!(score_continuations(&mut plain, &vocab).unwrap(), scores);
    // Another caller gets the preamble only, never the first caller's conversation.
    let before = m.reused_scoring_positions();
    assert_eq!(g.score_for(m, &next, Some(42)).unwrap(), scores);
    let other = (m.reused_scoring_positions() - before) as usize;
    assert!(other > 0 && other + 8 < own, "{other} copied for another caller, {own} for the same one");
}

#[test]
fn excluded_categories_are_absent_from_prompt_and_scores() {
    let m = model();
    let g = guard(&["S1", "S10", "S14"]);
    let conversation = user("I hate my neighbour.");
    let text = m.tokenizer().decode(&g.prompt_ids(m, &conversation).unwrap());
    for code in ["S1:", "S10:", "S14:"] {
        assert!(!text.contains(&format!("\n{code}")), "{code} in {text}");
    }
    assert!(text.contains("\nS11: Self-Harm."));
    let scores = g.score(m, &conversation).unwrap();
    let codes: Vec<&str> = scores.categories.iter().map(|c| c.category.code).collect();
    assert_eq!(codes, ["S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S11", "S12", "S13"]);
    assert_eq!(scores.probability("S10"), 0.0);
}

#[test]
fn multi_digit_codes_span_several_tokens_in_this_tokenizer() {
    // SmolLM2 writes digits one per token, so `S10` is longer than `S1` and the end factor matters.
    let tokenizer = model().tokenizer();
    let s1 = tokenizer.encode("unsafe\nS1").unwrap();
    let s10 = tokenizer.encode("unsafe\nS10").unwrap();
    assert_eq!(s10.len(), s1.len() + 1);
    assert_eq!(s10[..s1.len()], s1[..]);
    let vocab = GuardVocab::new(tokenizer, guard(&[]).categories()).unwrap();
    assert_eq!(vocab.longest_continuation(), s10.len());
}

#[test]
fn conversations_that_do_not_fit_are_refused() {
    let long = "word ".repeat(9000);
    let err = guard(&[]).score(model(), &user(&long)).unwrap_err();
    assert!(matches!(err, llamagate_engine::EngineError::PromptTooLong { .. }), "{err}");
}

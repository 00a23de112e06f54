//! Generation behaviour on the default model: streaming UTF-8, stop strings, seeds, cancellation.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::support::*;
use llamagate_engine::{
    ChatMessage, FinishReason, GenerateParams, GenerationEvent, Model, ModelOptions, ModelSource, SamplingParams,
};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&ModelSource::Gguf(default_gguf()), &ModelOptions::default()).unwrap())
}

/// Held by each test here for its whole run. The tests share one model, and two of them measure it
/// alone: the seeded texts come out the same only when no other sequence shares the batch (its tokens
/// change the attention kernel's summation order), and a cancelled stream is checked by watching the
/// model's token counter stand still.
fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn prompt(user: &str) -> Vec<u32> {
    let m = model();
    m.tokenize(&m.render_chat(&[ChatMessage::new("user", user)]).unwrap()).unwrap()
}

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens: Some(max_tokens), ..Default::default() }
}

#[test]
fn factual_question_is_answered() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Name three primary colors.");
    let prompt_tokens = ids.len();
    let req = m.prepare(ids, params(24)).unwrap();
    let out = m.submit(req).unwrap().collect_blocking().unwrap();
    assert!(out.text.to_lowercase().contains("red"), "{}", out.text);
    assert_eq!(out.summary.finish_reason, FinishReason::Stop);
    assert_eq!(out.summary.usage.prompt_tokens, prompt_tokens);
    assert_eq!(out.summary.usage.completion_tokens, out.token_ids.len());
}

#[test]
fn streamed_multibyte_text_joins_to_the_non_streamed_text() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Repeat exactly: 日本語 🙂 ünïcödé 日本語 🙂");
    let req = m.prepare(ids.clone(), params(40)).unwrap();
    let full = m.submit(req).unwrap().collect_blocking().unwrap();
    assert!(full.text.chars().any(|c| c.len_utf8() > 2), "expected multi-byte output: {}", full.text);
    // At least one token ends inside a character, so the incremental path really is exercised.
    let split = full.token_ids.iter().any(|t| std::str::from_utf8(m.tokenizer().token_bytes(*t)).is_err());
    assert!(split, "no token split a character");

    let mut stream = m.submit(m.prepare(ids, params(40)).unwrap()).unwrap();
    let mut pieces = Vec::new();
    while let Some(event) = stream.blocking_next() {
        match event {
            GenerationEvent::Text { text, .. } => pieces.push(text),
            GenerationEvent::Done(_) => break,
            GenerationEvent::Failed(e) => panic!("{e}"),
        }
    }
    assert!(pieces.iter().all(|p| !p.contains(char::REPLACEMENT_CHARACTER)));
    assert_eq!(pieces.concat(), full.text);
    assert_eq!(full.text, m.tokenizer().decode(&full.token_ids));
}

#[test]
fn stop_strings_cut_the_text_and_are_not_emitted() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Explain in a few sentences why the sky is blue.");
    let full = m.submit(m.prepare(ids.clone(), params(30)).unwrap()).unwrap().collect_blocking().unwrap();
    let stop = " Rayleigh scattering";
    let at = full.text.find(stop).expect("the greedy answer mentions Rayleigh scattering");
    let stopped = m
        .submit(m.prepare(ids, GenerateParams { stop: vec![stop.into()], ..params(30) }).unwrap())
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert_eq!(stopped.text, full.text[..at]);
    assert_eq!(stopped.summary.finish_reason, FinishReason::Stop);
    assert!(stopped.summary.usage.completion_tokens < full.summary.usage.completion_tokens);
}

#[test]
fn same_seed_same_text_other_seed_other_text() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Write a short poem about the sea.");
    let run = |seed| {
        let sampling = SamplingParams { temperature: 1.0, top_p: 0.95, seed: Some(seed), ..Default::default() };
        let req = m.prepare(ids.clone(), GenerateParams { sampling, ..params(24) }).unwrap();
        m.submit(req).unwrap().collect_blocking().unwrap().text
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn max_tokens_ends_with_length() {
    let _turn = one_test_at_a_time();
    let m = model();
    let out =
        m.submit(m.prepare(prompt("Tell me a long story."), params(5)).unwrap()).unwrap().collect_blocking().unwrap();
    assert_eq!(out.summary.finish_reason, FinishReason::Length);
    assert_eq!(out.summary.usage.completion_tokens, 5);
}

#[test]
fn dropping_the_stream_stops_generation_within_a_step() {
    let _turn = one_test_at_a_time();
    let m = model();
    let req = m.prepare(prompt("Tell me a very long story about dragons."), params(400)).unwrap();
    let mut stream = m.submit(req).unwrap();
    for _ in 0..3 {
        assert!(matches!(stream.blocking_next(), Some(GenerationEvent::Text { .. })));
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.stats().active_sequences() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(m.stats().active_sequences(), 0, "the cancelled sequence is still running");
    let after = m.stats().generated_tokens();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(m.stats().generated_tokens(), after, "tokens are still being generated");
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let _turn = one_test_at_a_time();
    let m = model();
    let too_long = vec![100u32; m.info().context_length + 1];
    let err = m.prepare(too_long, params(1)).unwrap_err();
    assert!(matches!(err, llamagate_engine::EngineError::PromptTooLong { .. }), "{err}");
    let outside = m.prepare(vec![m.info().vocab_size as u32], params(1)).unwrap_err();
    assert!(outside.to_string().contains("outside the vocabulary"), "{outside}");
    let full = vec![100u32; m.info().context_length - 3];
    let req = m.prepare(full, GenerateParams::default()).unwrap();
    assert_eq!(req.max_tokens, 3, "max_tokens is capped by what the context has left");
}

#[test]
fn logprobs_are_the_models_own_distribution_at_each_generated_token() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Name three primary colors.");
    let request = m.prepare(ids.clone(), GenerateParams { logprobs: Some(5), ..params(12) }).unwrap();
    let out = m.submit(request).unwrap().collect_blocking().unwrap();
    let stop_ids = m.tokenizer().stop_ids();
    let texted: Vec<u32> = out.token_ids.iter().copied().filter(|t| !stop_ids.contains(t)).collect();
    assert_eq!(out.logprobs.iter().map(|l| l.chosen.id).collect::<Vec<_>>(), texted, "one entry per text token");
    // Teacher forcing over prompt + output gives the distributions the generation drew from.
    let mut all = ids.clone();
    all.extend(&out.token_ids);
    let rows = m.logits(&all).unwrap();
    let mut drift = 0.0;
    for (i, entry) in out.logprobs.iter().enumerate() {
        let row = &rows[ids.len() - 1 + i];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_norm = max as f64 + row.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln();
        let expected = (row[entry.chosen.id as usize] as f64 - log_norm) as f32;
        // The first token comes from the prompt's prefill, computed as teacher forcing computes it. Later
        // ones come from decode steps (matrix–vector kernels, activations quantized one row at a time,
        // attention over the cache), which teacher forcing (matrix–matrix kernels) reproduces only
        // approximately: seen up to 0.2 by the tenth token on this 135M Q4_1 model, 0.03 on average.
        let bound = if i == 0 { 1e-5 } else { 0.3 };
        assert!((entry.chosen.logprob - expected).abs() < bound, "token {i}: {} vs {expected}", entry.chosen.logprob);
        drift += (entry.chosen.logprob - expected).abs() / out.logprobs.len() as f32;
        assert_eq!(entry.top.len(), 5);
        // Greedy: the chosen token is the most likely one, and the list is in order.
        assert_eq!(entry.top[0].id, entry.chosen.id, "token {i}");
        assert!(entry.top.windows(2).all(|w| w[0].logprob >= w[1].logprob), "{:?}", entry.top);
        let mass: f32 = entry.top.iter().map(|t| t.logprob.exp()).sum();
        assert!(mass <= 1.0 + 1e-4 && entry.chosen.logprob <= 0.0, "token {i}: mass {mass}");
        assert_eq!(entry.chosen.bytes, m.tokenizer().token_bytes(entry.chosen.id));
    }
    assert!(drift < 0.06, "mean distance from teacher forcing {drift}");
    let joined: Vec<u8> = out.logprobs.iter().flat_map(|l| l.chosen.bytes.clone()).collect();
    assert_eq!(String::from_utf8(joined).unwrap(), out.text, "the entries spell the text");
    // Without the option the work is skipped.
    let plain = m.submit(m.prepare(ids, params(12)).unwrap()).unwrap().collect_blocking().unwrap();
    assert!(plain.logprobs.is_empty());
    assert_eq!(plain.token_ids, out.token_ids);
}

#[test]
fn logit_bias_bans_the_greedy_token_and_unknown_ids_are_refused() {
    let _turn = one_test_at_a_time();
    let m = model();
    let ids = prompt("Name three primary colors.");
    let greedy = m.submit(m.prepare(ids.clone(), params(3)).unwrap()).unwrap().collect_blocking().unwrap();
    let first = greedy.token_ids[0];
    let banned = SamplingParams { logit_bias: vec![(first, -100.0)], ..Default::default() };
    let request = m.prepare(ids.clone(), GenerateParams { sampling: banned, ..params(3) }).unwrap();
    let out = m.submit(request).unwrap().collect_blocking().unwrap();
    assert_ne!(out.token_ids[0], first, "a -100 bias bans the token");
    let vocab = m.info().vocab_size as u32;
    let outside = SamplingParams { logit_bias: vec![(vocab, 1.0)], ..Default::default() };
    assert!(m.prepare(ids, GenerateParams { sampling: outside, ..params(3) }).is_err());
}

//! What a Llama Guard check costs, before and after the guard's fixed preamble is reused (issue 23):
//!
//! - **input check** of one user message of about 100 tokens: a fresh prefill of the whole guard prompt
//!   (how every check ran before), then the same check with the preamble's KV state copied in;
//! - **output checks of a streamed answer** of about 200 tokens: one check per finished sentence over the
//!   text so far (what `enforce_content_safety` does), summed, against the time the model takes to
//!   generate 200 tokens — the added latency as a share of the answer's generation time. Reusing, each
//!   check also copies the caller's previous check (its conversation so far), as the server's do.
//!
//! `cargo run --release -p llamagate-engine --example guard_cost -- <model> [rounds]` (default 3 rounds;
//! medians are printed). The cost of a check depends on the model's shape and the prompt's length, not on
//! its weights' values, so benches/make_guard_shape.py writes a GGUF with Llama-Guard-3-1B's exact shape
//! and random weights for this. Threads come from `RAYON_NUM_THREADS`. Prints one JSON line.

use std::time::Instant;

use llamagate_engine::{
    ChatMessage, GenerateParams, GuardVocab, LlamaGuard, Model, ModelOptions, ModelSource, score_continuations,
};

#[path = "support/bench_env.rs"]
mod bench_env;
use bench_env::{kv_cache_type, peak_rss_mb, threads_json};

/// About 100 tokens of an ordinary user question.
const QUESTION: &str = "I am planning a week-long trip to Lisbon in early spring with my partner and our two children, \
    who are six and nine. We like museums, food markets and easy walks, but we do not want to spend every day in \
    queues. Could you suggest a plan for each day, with one or two main things to see, somewhere good to eat that \
    welcomes children, and a rainy-day alternative? We will not rent a car.";

/// About 200 tokens of an answer, in sentences: the output check runs once per finished sentence.
const ANSWER: &str = "Day one is for getting your bearings in Baixa and Chiado. Walk down Rua Augusta to the river and \
    take the tram up to the castle in the afternoon. Day two suits the Oceanarium, which children love, followed by \
    the riverside park nearby. On day three, visit Belém for the monastery, the tower and the famous custard tarts. \
    Day four can be a slow one at the Gulbenkian museum and its gardens. On day five, take the train to Sintra and \
    pick one palace rather than three. Day six is for the Time Out market and the science museum if it rains. On the \
    last day, revisit whatever the children liked best and leave time for packing. Book the Oceanarium and Sintra \
    tickets online to skip the queues. Eat early, around seven, when restaurants are quiet and happy to see families.";

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The text up to each sentence end of `text`, as the output check sees it grow.
fn sentence_prefixes(text: &str) -> Vec<&str> {
    text.match_indices(". ").map(|(i, _)| &text[..i + 1]).chain([text]).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args.get(1).ok_or("usage: guard_cost <model> [rounds]")?;
    let rounds = args.get(2).map_or(Ok(3), |s| s.parse::<usize>())?.max(1);
    let options = ModelOptions { kv_cache_type: kv_cache_type()?, ..Default::default() };
    let model = Model::load(&ModelSource::parse(model_path)?, &options)?;
    let guard = LlamaGuard::new("meta-llama/Llama-Guard-3-1B", &[])?;
    let vocab = GuardVocab::new(model.tokenizer(), guard.categories())?;
    let user = [ChatMessage::new("user", QUESTION)];
    let prompt_tokens = guard.prompt_ids(&model, &user)?.len();
    let question_tokens = model.tokenizer().encode_text(QUESTION)?.len();

    // A check as every check ran before: the whole guard prompt prefilled afresh.
    let fresh = |conversation: &[ChatMessage]| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let ids = guard.prompt_ids(&model, conversation)?;
        let mut session = model.scoring_session(&ids, vocab.longest_continuation())?;
        score_continuations(&mut session, &vocab)?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    // A check as it runs now: the preamble is filled on the first call and copied afterwards, and with
    // a caller's scope the conversation so far is remembered for that caller's next check.
    let reusing = |conversation: &[ChatMessage], scope: Option<u64>| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        guard.score_for(&model, conversation, scope)?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    reusing(&user, None)?; // fills the preamble cache
    let (mut input_fresh, mut input_reusing) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        input_fresh.push(fresh(&user)?);
        input_reusing.push(reusing(&user, None)?);
    }

    // Output checking of a streamed answer: one check per sentence, over the text so far.
    let prefixes = sentence_prefixes(ANSWER);
    let answer_tokens = model.tokenizer().encode_text(ANSWER)?.len();
    let mut stream_fresh = Vec::new();
    let mut stream_reusing = Vec::new();
    let mut generation = Vec::new();
    let chat_prompt = model.tokenize_chat(&user)?;
    for round in 0..rounds {
        let (mut f, mut r) = (0.0, 0.0);
        for text in &prefixes {
            let conversation = [user[0].clone(), ChatMessage::new("assistant", *text)];
            f += fresh(&conversation)?;
            // Each round is another stream, of another caller: nothing carries over between rounds.
            r += reusing(&conversation, Some(round as u64 + 1))?;
        }
        stream_fresh.push(f);
        stream_reusing.push(r);
        // The answer's own generation time: `answer_tokens` tokens (end-of-turn ignored by asking for
        // exactly that many; random weights rarely stop early, and a stop is reported below).
        let started = Instant::now();
        let params = GenerateParams { max_tokens: Some(answer_tokens), ..Default::default() };
        let out = model.submit(model.prepare(chat_prompt.clone(), params)?)?.collect_blocking()?;
        let per_token = started.elapsed().as_secs_f64() * 1000.0 / out.token_ids.len().max(1) as f64;
        generation.push(per_token * answer_tokens as f64);
    }
    let (gen_ms, f_ms, r_ms) = (median(&mut generation), median(&mut stream_fresh), median(&mut stream_reusing));
    println!(
        "{{\"model\":{:?},\"threads\":{},\"guard_prompt_tokens\":{prompt_tokens},\"question_tokens\":{question_tokens},\
         \"input_check_ms\":{{\"fresh\":{:.1},\"reusing_preamble\":{:.1}}},\
         \"answer_tokens\":{answer_tokens},\"output_checks\":{},\"answer_generation_ms\":{gen_ms:.1},\
         \"output_checks_ms\":{{\"fresh\":{f_ms:.1},\"reusing_preamble\":{r_ms:.1}}},\
         \"output_checks_share_of_generation\":{{\"fresh\":{:.3},\"reusing_preamble\":{:.3}}},\
         \"rounds\":{rounds},\"peak_rss_mb\":{:.0}}}",
        model_path,
        threads_json(),
        median(&mut input_fresh),
        median(&mut input_reusing),
        prefixes.len(),
        f_ms / gen_ms,
        r_ms / gen_ms,
        peak_rss_mb(),
    );
    Ok(())
}

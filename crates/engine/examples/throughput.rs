//! Prefill and decode throughput of one model, plus peak resident memory: the engine's benchmark.
//!
//! `cargo run -p llamagate-engine --example throughput -- <model> <prefill tokens> <decode tokens>`
//! Threads come from `RAYON_NUM_THREADS`. Prints one JSON line; benches/run-engine.sh compares it with
//! llama.cpp on the same file.

use std::time::Instant;

use llamagate_engine::{ChatMessage, GenerateParams, Model, ModelOptions, ModelSource};

#[path = "support/bench_env.rs"]
mod bench_env;
use bench_env::{kv_cache_type, peak_rss_mb, threads_json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args.get(1).ok_or("usage: throughput <model> [prefill tokens] [decode tokens]")?;
    let prefill_len: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let decode_len: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let kv_cache_type = kv_cache_type()?;
    let model = Model::load(&ModelSource::parse(model_path)?, &ModelOptions { kv_cache_type, ..Default::default() })?;

    // Prefill: a synthetic prompt of exactly `prefill_len` tokens, one forward pass (chunked at 512).
    let filler = model.tokenize("The quick brown fox jumps over the lazy dog while the llama watches. ")?;
    let prompt: Vec<u32> = filler.iter().copied().cycle().take(prefill_len).collect();
    let request = model.prepare(prompt, GenerateParams { max_tokens: Some(1), ..Default::default() })?;
    let out = model.submit(request)?.collect_blocking()?;
    let prefill_tps = prefill_len as f64 / out.summary.timings.prefill.as_secs_f64();

    // Decode: greedy continuation of a chat prompt that asks for a long answer.
    let chat =
        model.render_chat(&[ChatMessage::new("user", "Tell me a very long story about a dragon and a knight.")])?;
    let ids = model.tokenize(&chat)?;
    let request = model.prepare(ids, GenerateParams { max_tokens: Some(decode_len), ..Default::default() })?;
    let started = Instant::now();
    let out = model.submit(request)?.collect_blocking()?;
    let decoded = out.summary.usage.completion_tokens.saturating_sub(1);
    let decode_tps = decoded as f64 / out.summary.timings.decode.as_secs_f64();

    println!(
        "{{\"engine\":\"llamagate\",\"kv_cache_type\":\"{kv_cache_type}\",\"threads\":{},\"prefill_tokens\":{prefill_len},\"prefill_tok_s\":{prefill_tps:.1},\"decode_tokens\":{decoded},\"decode_tok_s\":{decode_tps:.1},\"wall_s\":{:.2},\"peak_rss_mb\":{:.0}}}",
        threads_json(),
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    Ok(())
}

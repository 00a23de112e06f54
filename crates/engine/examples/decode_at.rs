//! Decode speed at a given position in the context, plus peak resident memory: "decode at position 1024
//! vs at position 50" (attention over a longer KV cache costs more per token).
//!
//! `cargo run -p llamagate-engine --example decode_at -- <model> <position> <tokens>`
//! Prefills a synthetic prompt of exactly `position` tokens (the filler of `throughput.rs`), then greedily
//! generates `tokens` + 1 tokens: the first comes out of the prefill, the other `tokens` are single-token
//! decode steps at positions `position .. position + tokens`. `decode_tok_s` is measured over those steps
//! only (the engine's own `timings.decode`); `decode_tokens` is how many there were (fewer than asked only
//! if the model ended its turn, then `finish` says "Stop"). Threads come from `RAYON_NUM_THREADS`. Prints
//! one JSON line; `KV_CACHE_TYPE=q8_0` runs the 8-bit KV cache (default f16); benches/llamacpp_decode_at.py measures llama.cpp the same way, benches/run-speed.sh runs both.

use std::time::Instant;

use llamagate_engine::{GenerateParams, Model, ModelOptions, ModelSource};

#[path = "support/bench_env.rs"]
mod bench_env;
use bench_env::{kv_cache_type, peak_rss_mb, threads_json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: decode_at <model> <position> <tokens>";
    let model_path = args.get(1).ok_or(usage)?;
    let position: usize = args.get(2).ok_or(usage)?.parse()?;
    let decode_len: usize = args.get(3).ok_or(usage)?.parse()?;
    if position == 0 {
        return Err("position must be at least 1 (the prompt cannot be empty)".into());
    }
    let kv_cache_type = kv_cache_type()?;
    let model = Model::load(&ModelSource::parse(model_path)?, &ModelOptions { kv_cache_type, ..Default::default() })?;

    let filler = model.tokenize("The quick brown fox jumps over the lazy dog while the llama watches. ")?;
    let prompt: Vec<u32> = filler.iter().copied().cycle().take(position).collect();
    let request = model.prepare(prompt, GenerateParams { max_tokens: Some(decode_len + 1), ..Default::default() })?;
    let started = Instant::now();
    let out = model.submit(request)?.collect_blocking()?;
    let decoded = out.summary.usage.completion_tokens.saturating_sub(1);
    let decode_s = out.summary.timings.decode.as_secs_f64();
    let decode_tps = if decode_s > 0.0 { decoded as f64 / decode_s } else { 0.0 };
    let prefill_s = out.summary.timings.prefill.as_secs_f64();

    println!(
        "{{\"engine\":\"llamagate\",\"bench\":\"decode_at\",\"kv_cache_type\":\"{kv_cache_type}\",\"threads\":{},\"position\":{position},\"prefill_s\":{prefill_s:.2},\"decode_tokens\":{decoded},\"decode_tok_s\":{decode_tps:.1},\"ms_per_token\":{:.1},\"finish\":\"{:?}\",\"wall_s\":{:.2},\"peak_rss_mb\":{:.0}}}",
        threads_json(),
        if decoded > 0 { 1000.0 * decode_s / decoded as f64 } else { 0.0 },
        out.summary.finish_reason,
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    Ok(())
}

//! How much a longer context slows one decode step, measured so that a noisy machine cancels out:
//! two prompts, of `short` and `long` tokens, each prefilled once; then `steps` rounds, each decoding
//! one token after the short prompt and one after the long one, back to back, every step at the same
//! position (the token is replaced each round, so the cache does not grow).
//!
//! `cargo run -p llamagate-engine --example decode_slope -- <model> [short] [long] [steps]`
//! (defaults 50, 1024, 200). Threads come from `RAYON_NUM_THREADS`; `KV_CACHE_TYPE=q8_0` runs the 8-bit
//! cache. Prints one JSON line: the median step time at each position, and the slowdown of the long
//! position over the short one, from the medians and as the median of the rounds' own ratios (each
//! round's two steps ran within milliseconds of each other, so steal time and frequency changes hit
//! both). benches/llamacpp_decode_slope.py measures llama.cpp the same way; benches/run-slope.sh runs both.

use std::time::Instant;

use llamagate_engine::{Model, ModelOptions, ModelSource, NextTokenLogits};

#[path = "support/bench_env.rs"]
mod bench_env;
use bench_env::{kv_cache_type, peak_rss_mb, threads_json};

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: decode_slope <model> [short] [long] [steps]";
    let model_path = args.get(1).ok_or(usage)?;
    let number = |i: usize, default: usize| args.get(i).map_or(Ok(default), |s| s.parse::<usize>());
    let (short, long, steps) = (number(2, 50)?, number(3, 1024)?, number(4, 200)?);
    if short == 0 || long == 0 || steps == 0 {
        return Err("positions and steps must be at least 1".into());
    }
    let kv_cache_type = kv_cache_type()?;
    let model = Model::load(&ModelSource::parse(model_path)?, &ModelOptions { kv_cache_type, ..Default::default() })?;

    let filler = model.tokenize("The quick brown fox jumps over the lazy dog while the llama watches. ")?;
    let prompt = |n: usize| -> Vec<u32> { filler.iter().copied().cycle().take(n).collect() };
    let mut sessions = [model.scoring_session(&prompt(short), 1)?, model.scoring_session(&prompt(long), 1)?];
    let mut times = [Vec::with_capacity(steps), Vec::with_capacity(steps)];
    // Two warm-up rounds, then the measured ones; consecutive rounds force different tokens, so each
    // forwards its token at the prompt's end.
    for round in 0..steps + 2 {
        let token = filler[round % filler.len()];
        for (session, times) in sessions.iter_mut().zip(times.iter_mut()) {
            let started = Instant::now();
            session.continuation_logits(&[token])?;
            if round >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let mut ratios: Vec<f64> = times[0].iter().zip(&times[1]).map(|(a, b)| b / a).collect();
    let (short_ms, long_ms) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "{{\"engine\":\"llamagate\",\"bench\":\"decode_slope\",\"kv_cache_type\":\"{kv_cache_type}\",\"threads\":{},\"short\":{short},\"long\":{long},\"steps\":{steps},\"short_ms\":{short_ms:.2},\"long_ms\":{long_ms:.2},\"slowdown_pct\":{:.1},\"paired_slowdown_pct\":{:.1},\"peak_rss_mb\":{:.0}}}",
        threads_json(),
        100.0 * (long_ms / short_ms - 1.0),
        100.0 * (median(&mut ratios) - 1.0),
        peak_rss_mb()
    );
    Ok(())
}

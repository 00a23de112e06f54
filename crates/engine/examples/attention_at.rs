//! Attention alone: the cost per token of single-token attention over `n` cached positions, for the
//! default model's shape (30 layers, 3 KV heads of 64 dimensions, 3 query heads per KV head).
//!
//! `cargo run --release -p llamagate-engine --example attention_at -- <n> [tokens]`
//! Fills an f16 KV cache of `n` positions per layer in the engine's page layout, then times `tokens`
//! rounds of attention over every layer and KV head (the first 5 are warm-up). Env: `LAYERS` (default
//! 30; 1 keeps the cache in level-2 cache, which separates compute from memory traffic). Prints one
//! JSON line. The difference between two values of `n` is what a longer context adds to each decode step.

use std::time::Instant;

use half::f16;
use llamagate_engine::kernels::attention::{F16Product, KvHead, attend};

const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const GROUP: usize = 3;
const PAGE: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).ok_or("usage: attention_at <n> [tokens]")?.parse()?;
    let tokens: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let layers: usize = std::env::var("LAYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    if n == 0 {
        return Err("n must be at least 1".into());
    }
    let page_len = KV_HEADS * HEAD_DIM * PAGE;
    let value = |i: usize| f16::from_f32((i % 101) as f32 / 101.0 - 0.5).to_bits();
    let caches: Vec<Vec<(Vec<u16>, Vec<u16>)>> = (0..layers)
        .map(|l| {
            (0..n.div_ceil(PAGE))
                .map(|p| {
                    let k = (0..page_len).map(|i| value(i * 7 + p * 13 + l)).collect();
                    let v = (0..page_len).map(|i| value(i * 11 + p * 5 + l)).collect();
                    (k, v)
                })
                .collect()
        })
        .collect();
    let queries: Vec<f32> = (0..GROUP * HEAD_DIM).map(|i| (i as f32 * 0.1).sin()).collect();
    let mut out = vec![0.0f32; GROUP * HEAD_DIM];
    let warm_up = 5;
    let mut measured = 0.0;
    for round in 0..tokens + warm_up {
        let started = Instant::now();
        for pages in &caches {
            for kv in 0..KV_HEADS {
                let cache = KvHead { pages, kv, head_dim: HEAD_DIM, page: PAGE };
                attend(&queries, cache, n, 0.125, F16Product::Vector, &mut out);
            }
        }
        if round >= warm_up {
            measured += started.elapsed().as_secs_f64();
        }
    }
    println!(
        "{{\"bench\":\"attention_at\",\"positions\":{n},\"layers\":{layers},\"ms_per_token\":{:.3},\"check\":{}}}",
        1e3 * measured / tokens as f64,
        out[0]
    );
    Ok(())
}

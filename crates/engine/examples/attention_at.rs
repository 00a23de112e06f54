//! Attention alone: the cost per token of single-token attention over `n` cached positions, for the
//! default model's shape (30 layers, 3 KV heads of 64 dimensions, 3 query heads per KV head).
//!
//! `cargo run --release -p llamagate-engine --example attention_at -- <n> [tokens]`
//! Fills an f16 KV cache of `n` positions per layer in the engine's page layout, then times `tokens`
//! rounds of attention over every layer and KV head (the first 5 are warm-up). Env: `KV_CACHE_TYPE`
//! (`f16` or `q8_0`, default f16), `LAYERS` (default
//! 30; 1 keeps the cache in level-2 cache, which separates compute from memory traffic). Prints one
//! JSON line. The difference between two values of `n` is what a longer context adds to each decode step.

use std::time::Instant;

use half::f16;
use llamagate_engine::KvCacheType;
use llamagate_engine::kernels::attention::{F16Product, KvHead, attend};
use llamagate_engine::kernels::attention_q8::{Q8Head, Q8Page, attend_q8};

#[path = "support/bench_env.rs"]
mod bench_env;
use bench_env::{kv_cache_type, peak_rss_mb, threads_json};

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
    let kind = kv_cache_type()?;
    let q8 = kind == KvCacheType::Q8_0;
    let q8_caches: Vec<Vec<Q8Page>> = (0..if q8 { layers } else { 0 })
        .map(|l| {
            let mut pages = vec![Q8Page::new(KV_HEADS, HEAD_DIM, PAGE); n.div_ceil(PAGE)];
            for p in 0..n {
                for kv in 0..KV_HEADS {
                    let row = |salt: usize| -> Vec<f32> {
                        (0..HEAD_DIM)
                            .map(|i| f16::from_bits(value(i * 7 + p * 13 + kv * 3 + l + salt)).to_f32())
                            .collect()
                    };
                    pages[p / PAGE].store(kv, PAGE, p % PAGE, &row(0), &row(1));
                }
            }
            pages
        })
        .collect();
    let queries: Vec<f32> = (0..GROUP * HEAD_DIM).map(|i| (i as f32 * 0.1).sin()).collect();
    let mut out = vec![0.0f32; GROUP * HEAD_DIM];
    let warm_up = 5;
    let mut measured = 0.0;
    for round in 0..tokens + warm_up {
        let started = Instant::now();
        for pages in &q8_caches {
            for kv in 0..KV_HEADS {
                attend_q8(&queries, Q8Head { pages, kv, head_dim: HEAD_DIM, page: PAGE }, n, 0.125, &mut out);
            }
        }
        for pages in caches.iter().filter(|_| !q8) {
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
        "{{\"bench\":\"attention_at\",\"kv_cache_type\":\"{kind}\",\"threads\":{},\"positions\":{n},\"layers\":{layers},\"ms_per_token\":{:.3},\"check\":{},\"peak_rss_mb\":{:.0}}}",
        threads_json(),
        1e3 * measured / tokens as f64,
        out[0],
        peak_rss_mb()
    );
    Ok(())
}

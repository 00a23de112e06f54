//! Time of one projection by row count: candle's quantized kernel against dequantize + dense matmul, the
//! two paths of the engine's `Linear` (crates/engine/src/llama/linear.rs). The numbers behind its threshold.
//!
//! `cargo run -p llamagate-engine --example prefill_kernels -- <model.gguf>`; threads from `RAYON_NUM_THREADS`.

use std::time::Instant;

use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::{Device, Module, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: prefill_kernels <model.gguf>")?;
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    for name in ["blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "token_embd.weight"] {
        let weight = std::sync::Arc::new(content.tensor(&mut file, name, &Device::Cpu)?);
        let (out, inp) = weight.shape().dims2()?;
        let quantized = QMatMul::from_arc(weight.clone())?;
        println!("{name} [{out} x {inp}] {:?}", weight.dtype());
        for rows in [1usize, 2, 4, 8, 16, 64, 128, 512] {
            // The vocabulary-sized table is 85× the work of a projection: fewer rows and repetitions.
            if out > 10_000 && rows > 128 {
                continue;
            }
            let reps = if out > 10_000 || rows >= 128 { 3 } else { 10 };
            let x = Tensor::randn(0f32, 1.0, (rows, inp), &Device::Cpu)?;
            let started = Instant::now();
            for _ in 0..reps {
                quantized.forward(&x)?;
            }
            let quantized_ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;
            let started = Instant::now();
            for _ in 0..reps {
                x.matmul(&weight.dequantize(&Device::Cpu)?.t()?)?;
            }
            let dense_ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;
            println!("  rows {rows:4}: quantized {quantized_ms:9.2} ms   dequantize + dense {dense_ms:9.2} ms");
        }
    }
    Ok(())
}

use llamagate_engine::kernels::{WeightFormat, quantized_matmul};
use std::time::Instant;
fn main() {
    for (rows, cols, fmt, bytes) in [
        (576usize, 576usize, WeightFormat::Q4_1, 20usize),
        (1536, 576, WeightFormat::Q4_1, 20),
        (576, 1536, WeightFormat::Q4_1, 20),
        (49152, 576, WeightFormat::Q8_0, 34),
    ] {
        let mut w: Vec<u8> = (0..rows * cols / 32 * bytes).map(|i| (i * 7 % 251) as u8).collect();
        for b in w.chunks_exact_mut(bytes) {
            b[0] = 0x1f;
            b[1] = 0x21;
            if bytes == 20 {
                b[2] = 0x1f;
                b[3] = 0xa1;
            }
        }
        let x: Vec<f32> = (0..cols * 64).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        for t in [1usize, 64] {
            let n = if t == 1 { 200 } else { 5 };
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(quantized_matmul(fmt, &w, rows, cols, &x[..t * cols], t));
            }
            let per = start.elapsed().as_secs_f64() / n as f64;
            println!(
                "{rows}x{cols} {fmt:?} t={t}: {:.3} ms, {:.2} ns/block-row",
                per * 1e3,
                per * 1e9 / (rows * cols / 32 * t) as f64
            );
        }
    }
}

//! The default model requantized to Q4_0, Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16 and BF16 by llama.cpp's quantizer
//! (`models/make-variants.sh`) against llama.cpp's own outputs on the same files (`tests/fixtures/smollm2-*-llamacpp.json`):
//! teacher-forced logits, greedy generation, and that the CPU pass (our Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
//! Q8_0, F16 and BF16 kernels) is what runs them; and the F16 file quantized to Q8_0 at load.

use std::path::PathBuf;

use crate::support::*;
use llamagate_engine::{GenerateParams, KvCacheType, Model, ModelOptions, ModelSource, QuantizeOnLoad};

/// How far our logits may be from llama.cpp's, on every logit compared (the top-5 of each teacher-forced
/// step and the first 256 of the last prompt position): not at all. The kernels follow the arithmetic of
/// the kernels llama.cpp's x86 build (AVX-512 VNNI, where the fixtures were made) picks for each format and
/// batch shape — Q5_0, Q8_0, F16 and BF16 through its vector dot products and tinyBLAS, Q4_0 and Q4_K
/// through its repacked gemv/gemm, Q6_K through its vector dot product or its tiled matmul — and every path
/// of ours gives the same bits on any CPU.
const LOGIT_TOLERANCE: f32 = 0.0;

/// A variant made by `models/make-variants.sh`.
fn variant(name: &str) -> PathBuf {
    let path = llamagate_testkit::workspace_root().join(format!("models/cache/SmolLM2-135M-Instruct.{name}.gguf"));
    assert!(path.is_file(), "{} missing: run models/make-variants.sh", path.display());
    path
}

/// Runs every case of `fixture` on `name`, returning the largest logit deviation from llama.cpp.
fn compare(name: &str, fixture: &str) -> f32 {
    compare_loaded(name, fixture, &ModelOptions::default())
}

/// [`compare`] with the variant loaded with `options`.
fn compare_loaded(name: &str, fixture: &str, options: &ModelOptions) -> f32 {
    let reference = read_json(fixtures().join(fixture));
    let path = variant(name);
    // An 8-bit KV cache is refused unless the CPU pass runs the model (every matrix on our kernels).
    let q8 = ModelOptions { kv_cache_type: KvCacheType::Q8_0, ..options.clone() };
    Model::load(&ModelSource::Gguf(path.clone()), &q8).expect("the CPU pass runs every matrix of the variant");

    let model = Model::load(&ModelSource::Gguf(path), options).unwrap();
    let mut worst = 0.0f32;
    for (i, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt_ids = ids(&case["prompt_ids"]);
        let prompt = model.render_chat(&messages(&case["messages"])).unwrap();
        assert_eq!(model.tokenize(&prompt).unwrap(), prompt_ids, "case {i}: tokenization");

        let greedy = ids(&case["greedy_ids"]);
        let mut forced = prompt_ids.clone();
        forced.extend(&greedy);
        let logits = model.logits(&forced).unwrap();
        let last = &logits[prompt_ids.len() - 1];
        let mut case_worst = 0.0f32;
        for (ours, theirs) in last.iter().zip(floats(&case["last_prompt_logits_head"])) {
            case_worst = case_worst.max((ours - theirs).abs());
        }
        for (step, expected) in case["steps"].as_array().unwrap().iter().enumerate() {
            let row = &logits[prompt_ids.len() - 1 + step];
            for (id, value) in ids(&expected["top5_ids"]).iter().zip(floats(&expected["top5_logits"])) {
                case_worst = case_worst.max((row[*id as usize] - value).abs());
            }
        }
        worst = worst.max(case_worst);

        let request =
            model.prepare(prompt_ids, GenerateParams { max_tokens: Some(greedy.len()), ..Default::default() }).unwrap();
        let out = model.submit(request).unwrap().collect_blocking().unwrap();
        eprintln!("{name} case {i}: largest logit deviation from llama.cpp {case_worst:.3e}");
        assert_eq!(out.token_ids, greedy, "{name} case {i}: greedy tokens differ from llama.cpp's");
    }
    worst
}

#[test]
fn q4_0_matches_llamacpp() {
    let worst = compare("Q4_0", "smollm2-q4_0-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn q4_k_m_matches_llamacpp() {
    let worst = compare("Q4_K_M", "smollm2-q4_k_m-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn q5_k_m_matches_llamacpp() {
    let worst = compare("Q5_K_M", "smollm2-q5_k_m-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn q6_k_matches_llamacpp() {
    let worst = compare("Q6_K", "smollm2-q6_k-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn q8_0_matches_llamacpp() {
    let worst = compare("Q8_0", "smollm2-q8_0-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn f16_matches_llamacpp() {
    let worst = compare("F16", "smollm2-f16-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

#[test]
fn bf16_matches_llamacpp() {
    let worst = compare("BF16", "smollm2-bf16-llamacpp.json");
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");
}

/// `quantize: q8_0` on the F16 file gives llama.cpp's logits on the Q8_0 file its quantizer makes from that
/// F16 file (`SmolLM2-135M-Instruct.F16-Q8_0.gguf`): the same rounding, so the same bytes and the same
/// numbers, at about half the F16 weights' memory.
#[test]
fn f16_quantized_on_load_matches_llamacpp_q8_0() {
    let quantized = ModelOptions { quantize: Some(QuantizeOnLoad::Q8_0), ..Default::default() };
    let worst = compare_loaded("F16", "smollm2-f16-q8_0-llamacpp.json", &quantized);
    assert!(worst <= LOGIT_TOLERANCE, "logits off by up to {worst}");

    let source = ModelSource::Gguf(variant("F16"));
    let f16 = Model::load(&source, &ModelOptions::default()).unwrap().info().weight_bytes;
    let q8 = Model::load(&source, &quantized).unwrap().info().weight_bytes;
    eprintln!("F16 weights {f16} bytes, quantized on load {q8} bytes");
    assert!((q8 as f64) < 0.55 * f16 as f64, "{q8} bytes quantized against {f16} in F16");
}

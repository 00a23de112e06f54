//! The tiny Llama 3 checkpoint against HF transformers' reference outputs: chat template, tokenization,
//! logits and greedy decoding, plus the other safetensors layouts (f16, bf16, sharded, old RoPE spelling).

use std::path::Path;

use crate::support::*;
use candle_core::{DType, Device, Tensor};
use llamagate_engine::{GenerateParams, Model, ModelOptions, ModelSource};

fn load(dir: &Path) -> Model {
    Model::load(&ModelSource::HfDir(dir.to_path_buf()), &ModelOptions::default()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn matches_transformers_reference() {
    let reference = read_json(tiny_llama3().join("reference.json"));
    let model = load(&tiny_llama3());
    for (i, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = model.render_chat(&messages(&case["messages"])).unwrap();
        assert_eq!(prompt, case["prompt_text"].as_str().unwrap(), "case {i}: rendered template");
        let prompt_ids = model.tokenize(&prompt).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "case {i}: tokenization");

        let logits = model.logits(&prompt_ids).unwrap();
        let first_head = &logits[0][..16];
        assert!(max_abs_diff(first_head, &floats(&case["first_position_logits_head"])) < 1e-3, "case {i}: position 0");
        let diff = max_abs_diff(logits.last().unwrap(), &floats(&case["last_logits"]));
        eprintln!("case {i}: max |delta| of last logits vs transformers = {diff:.2e}");
        assert!(diff < 1e-3, "case {i}: last logits differ by {diff}");

        // Greedy through the real scheduler; the reference ignores EOS, and these greedy runs emit none.
        let expected = ids(&case["greedy_ids"]);
        let request = model
            .prepare(prompt_ids, GenerateParams { max_tokens: Some(expected.len()), ..Default::default() })
            .unwrap();
        let out = model.submit(request).unwrap().collect_blocking().unwrap();
        assert_eq!(out.token_ids, expected, "case {i}: greedy tokens");
        assert_eq!(out.summary.usage.completion_tokens, expected.len());
    }
}

#[test]
fn concurrent_requests_decode_like_sequential_ones() {
    let reference = read_json(tiny_llama3().join("reference.json"));
    let model = load(&tiny_llama3());
    let cases = reference["cases"].as_array().unwrap();
    let streams: Vec<_> = cases
        .iter()
        .map(|c| {
            let p = ids(&c["prompt_ids"]);
            let req = model.prepare(p, GenerateParams { max_tokens: Some(24), ..Default::default() }).unwrap();
            model.submit(req).unwrap()
        })
        .collect();
    for (i, (stream, case)) in streams.into_iter().zip(cases).enumerate() {
        let out = stream.collect_blocking().unwrap();
        let expected = ids(&case["greedy_ids"]);
        // Case 0 has a 0.0008 near-tie; batching may legitimately round it the other way.
        let n =
            if i == 0 { expected.iter().zip(&out.token_ids).take_while(|(a, b)| a == b).count().max(10) } else { 24 };
        assert_eq!(out.token_ids[..n], expected[..n], "case {i} in a concurrent batch");
    }
}

/// Copies the fixture with its weights converted to `dtype`, optionally split into two shards, with
/// config.json in the older `rope_theta` + `rope_scaling` spelling.
fn converted_copy(dtype: DType, sharded: bool) -> tempfile::TempDir {
    let src = tiny_llama3();
    let dir = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut config = read_json(src.join("config.json"));
    let params = config.as_object_mut().unwrap().remove("rope_parameters").unwrap();
    config["rope_theta"] = params["rope_theta"].clone();
    config["rope_scaling"] = params;
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let convert = |n: &[&String]| -> Vec<(String, Tensor)> {
        n.iter().map(|k| ((*k).clone(), tensors[*k].to_dtype(dtype).unwrap())).collect()
    };
    if sharded {
        let (a, b) = names.split_at(names.len() / 2);
        let mut map = serde_json::Map::new();
        for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
            candle_core::safetensors::save(&convert(part).into_iter().collect(), dir.path().join(file)).unwrap();
            for k in part {
                map.insert((*k).clone(), file.into());
            }
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": map});
        std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    } else {
        let all: std::collections::HashMap<String, Tensor> = convert(&names).into_iter().collect();
        candle_core::safetensors::save(&all, dir.path().join("model.safetensors")).unwrap();
    }
    dir
}

#[test]
fn f16_bf16_sharded_and_old_rope_spelling_load_and_agree() {
    let reference = read_json(tiny_llama3().join("reference.json"));
    let case = &reference["cases"][2];
    let expected = floats(&case["last_logits"]);
    let prompt_ids = ids(&case["prompt_ids"]);
    // f32 sharded is exact; half precision weights round, so the bound loosens with the mantissa.
    for (dtype, sharded, tolerance) in [(DType::F32, true, 1e-3), (DType::F16, false, 0.05), (DType::BF16, true, 0.3)] {
        let dir = converted_copy(dtype, sharded);
        let model = load(dir.path());
        // The template now comes from tokenizer_config.json (no chat_template.jinja in the copy).
        let prompt = model.render_chat(&messages(&case["messages"])).unwrap();
        assert_eq!(prompt, case["prompt_text"].as_str().unwrap());
        let logits = model.logits(&prompt_ids).unwrap();
        let diff = max_abs_diff(logits.last().unwrap(), &expected);
        eprintln!("{dtype:?} sharded={sharded}: max |delta| of last logits = {diff:.2e}");
        assert!(diff < tolerance, "{dtype:?} sharded={sharded}: last logits differ by {diff}");
    }
}

/// Only the CPU pass (quantized GGUF on the CPU) has an 8-bit cache; elsewhere asking for one is a
/// load error that says so, not a silent f32 cache.
#[test]
fn an_8bit_kv_cache_is_refused_where_the_model_cannot_have_one() {
    let options = ModelOptions { kv_cache_type: llamagate_engine::KvCacheType::Q8_0, ..Default::default() };
    let err = Model::load(&ModelSource::HfDir(tiny_llama3()), &options).unwrap_err().to_string();
    assert!(err.contains("kv_cache_type q8_0 needs the CPU pass"), "{err}");
}

/// A 16-bit checkpoint stays 16-bit in memory: its matrices take half the bytes of the f32 checkpoint's
/// (the norms, a few hundred values, stay f32), and it still computes the same model.
#[test]
fn bf16_checkpoint_loads_with_16_bit_weights() {
    let f32_bytes = load(&tiny_llama3()).info().weight_bytes;
    for dtype in [DType::BF16, DType::F16] {
        let dir = converted_copy(dtype, false);
        let model = load(dir.path());
        let bytes = model.info().weight_bytes;
        eprintln!("{dtype:?}: {bytes} weight bytes, f32: {f32_bytes}");
        let ratio = bytes as f64 / f32_bytes as f64;
        assert!((0.5..0.51).contains(&ratio), "{dtype:?}: {bytes} bytes against {f32_bytes} in f32");
    }
}

/// `quantize: q8_0` on a checkpoint: the matrices whose rows are whole 32-value blocks become 8-bit (here
/// all but the down projections, whose 176-value rows stay f32: 0.42× the f32 bytes in all), and the model
/// stays within Q8_0's rounding of the weights and activations (0.45 on these random weights' logits,
/// against 0.17 for bf16).
#[test]
fn a_checkpoint_quantized_on_load_is_smaller_and_close() {
    let reference = read_json(tiny_llama3().join("reference.json"));
    let case = &reference["cases"][2];
    let f32_bytes = load(&tiny_llama3()).info().weight_bytes;
    let options = ModelOptions { quantize: Some(llamagate_engine::QuantizeOnLoad::Q8_0), ..Default::default() };
    let model = Model::load(&ModelSource::HfDir(tiny_llama3()), &options).unwrap();
    let bytes = model.info().weight_bytes;
    let logits = model.logits(&ids(&case["prompt_ids"])).unwrap();
    let diff = max_abs_diff(logits.last().unwrap(), &floats(&case["last_logits"]));
    eprintln!("q8_0 on load: {bytes} weight bytes (f32: {f32_bytes}), max |delta| of last logits = {diff:.2e}");
    assert!((bytes as f64) < 0.45 * f32_bytes as f64, "{bytes} bytes against {f32_bytes} in f32");
    assert!(diff < 0.6, "last logits differ by {diff}");
}

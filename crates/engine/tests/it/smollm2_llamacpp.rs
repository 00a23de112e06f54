//! The default GGUF against llama.cpp's reference outputs on the same file: tokenization, and
//! teacher-forced logits along llama.cpp's greedy sequence.

use crate::support::*;
use llamagate_engine::{GenerateParams, KvCacheType, Model, ModelOptions, ModelSource};

/// Steps whose llama.cpp top-1/top-2 margin is below this are near ties that float rounding may flip.
const CLEAR_MARGIN: f64 = 0.2;
/// How far our logits for llama.cpp's top-5 ids may be from its values (the engine issue's bound).
/// The CPU pass reproduces llama.cpp's arithmetic, so we measure 0 (printed with `--nocapture`); any
/// drift from that shows up here and, sooner, in the greedy comparison below.
const LOGIT_TOLERANCE: f32 = 0.5;
/// The 8-bit KV cache rounds every key and value, so it is held to what llama.cpp's own q8_0 cache does
/// on the same cases (`benches/llamacpp_kv_deviation.py`): top-5 logits 0.185 from the f16 reference on
/// average, 1.06 at most, and 1 of 160 clear top-1 choices changed (its f16 flash attention alone:
/// 0.175 and 0.82). Ours: 0.20 on average and 0.90 at most, with no change. The largest single
/// deviation moves by a few tenths with any change in rounding order (it hangs on which 8-bit
/// activation roundings flip; earlier versions of this kernel measured 1.2–1.6), so the mean carries
/// the tight bound and the largest a loose one.
const Q8_0_MEAN_TOLERANCE: f32 = 0.25;
const Q8_0_LOGIT_TOLERANCE: f32 = 2.0;
const Q8_0_CLEAR_TOP1_CHANGES: usize = 2;

/// What one cache type does on the reference cases.
struct Agreement {
    /// Largest distance of our logits from llama.cpp's for its top-5 ids, over every step.
    worst: f32,
    /// Mean of those distances over every step and id: steadier than the largest, which one flipped
    /// 8-bit activation rounding can move.
    mean: f32,
    /// Steps with a clear llama.cpp top-1 (margin ≥ [`CLEAR_MARGIN`]) where ours differs.
    clear_top1_changes: usize,
}

/// Teacher-forces every reference case through the default GGUF with `kv_cache_type`, asserting the
/// template, the tokenization and (with `greedy_must_match`) that generation follows llama.cpp's
/// greedy tokens; returns how close the logits came.
fn compare_with_reference(kv_cache_type: KvCacheType, greedy_must_match: bool) -> Agreement {
    let reference = read_json(fixtures().join("smollm2-llamacpp.json"));
    let options = ModelOptions { kv_cache_type, ..Default::default() };
    let model = Model::load(&ModelSource::Gguf(default_gguf()), &options).unwrap();
    let mut agreement = Agreement { worst: 0.0, mean: 0.0, clear_top1_changes: 0 };
    let (mut total, mut count) = (0.0f64, 0usize);
    for (i, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = model.render_chat(&messages(&case["messages"])).unwrap();
        assert_eq!(prompt, case["prompt_text"].as_str().unwrap(), "case {i}: rendered template");
        let prompt_ids = model.tokenize(&prompt).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "case {i}: tokenization");

        let greedy = ids(&case["greedy_ids"]);
        let mut forced = prompt_ids.clone();
        forced.extend(&greedy);
        let logits = model.logits(&forced).unwrap();
        let mut case_worst = 0.0f32;
        for (step, expected) in case["steps"].as_array().unwrap().iter().enumerate() {
            let row = &logits[prompt_ids.len() - 1 + step];
            let top5 = ids(&expected["top5_ids"]);
            if expected["margin"].as_f64().unwrap() >= CLEAR_MARGIN && llamagate_engine::model::argmax(row) != top5[0] {
                eprintln!("case {i} step {step}: top-1 differs from llama.cpp");
                agreement.clear_top1_changes += 1;
            }
            for (id, value) in top5.iter().zip(&floats(&expected["top5_logits"])) {
                let deviation = (row[*id as usize] - value).abs();
                case_worst = case_worst.max(deviation);
                (total, count) = (total + f64::from(deviation), count + 1);
            }
        }
        agreement.worst = agreement.worst.max(case_worst);

        let request =
            model.prepare(prompt_ids, GenerateParams { max_tokens: Some(greedy.len()), ..Default::default() }).unwrap();
        let out = model.submit(request).unwrap().collect_blocking().unwrap();
        let matching = out.token_ids.iter().zip(&greedy).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{kv_cache_type} case {i}: largest top-5 logit deviation {case_worst:.3e}; greedy matches llama.cpp for {matching}/{} tokens",
            greedy.len()
        );
        // Generation (one prefill, then single-token decode steps) follows llama.cpp's greedy path token
        // for token, near ties included: its decode arithmetic differs from prefill's, and so does ours.
        if greedy_must_match {
            assert_eq!(out.token_ids, greedy, "case {i}: greedy tokens differ from llama.cpp's");
        }
    }
    agreement.mean = (total / count.max(1) as f64) as f32;
    eprintln!(
        "{kv_cache_type} cache: top-5 logit deviation largest {:.3e}, mean {:.3e}; clear top-1 changes {}",
        agreement.worst, agreement.mean, agreement.clear_top1_changes
    );
    agreement
}

#[test]
fn matches_llamacpp_reference() {
    let agreement = compare_with_reference(KvCacheType::F16, true);
    assert_eq!(agreement.clear_top1_changes, 0, "a clear top-1 differs from llama.cpp");
    assert!(agreement.worst <= LOGIT_TOLERANCE, "top-5 logits off by up to {}", agreement.worst);
}

/// The 8-bit cache gives up bit-for-bit agreement; it stays as close to llama.cpp's f16 reference as
/// llama.cpp's own q8_0 cache does.
#[test]
fn q8_0_cache_stays_as_close_as_llamacpps_own() {
    let agreement = compare_with_reference(KvCacheType::Q8_0, false);
    assert!(agreement.worst > 0.0, "an 8-bit cache cannot reproduce f16 logits exactly; is it in use?");
    assert!(agreement.mean <= Q8_0_MEAN_TOLERANCE, "top-5 logits off by {} on average", agreement.mean);
    assert!(agreement.worst <= Q8_0_LOGIT_TOLERANCE, "top-5 logits off by up to {}", agreement.worst);
    assert!(
        agreement.clear_top1_changes <= Q8_0_CLEAR_TOP1_CHANGES,
        "{} clear top-1 choices changed",
        agreement.clear_top1_changes
    );
}

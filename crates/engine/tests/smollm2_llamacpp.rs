//! The default GGUF against llama.cpp's reference outputs on the same file: tokenization, and
//! teacher-forced logits along llama.cpp's greedy sequence.

mod common;

use common::*;
use llamagate_engine::{GenerateParams, Model, ModelOptions, ModelSource};

/// Steps whose llama.cpp top-1/top-2 margin is below this are near ties that float rounding may flip.
const CLEAR_MARGIN: f64 = 0.2;
/// How far our logits for llama.cpp's top-5 ids may be from its values (the engine issue's bound).
/// The CPU pass reproduces llama.cpp's arithmetic, so we measure 0 (printed with `--nocapture`); any
/// drift from that shows up here and, sooner, in the greedy comparison below.
const LOGIT_TOLERANCE: f32 = 0.5;

#[test]
fn matches_llamacpp_reference() {
    let reference = read_json(fixtures().join("smollm2-llamacpp.json"));
    let model = Model::load(&ModelSource::Gguf(default_gguf()), &ModelOptions::default()).unwrap();
    let mut worst = 0.0f32;
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
            let top5_logits = floats(&expected["top5_logits"]);
            if expected["margin"].as_f64().unwrap() >= CLEAR_MARGIN {
                let ours = llamagate_engine::model::argmax(row);
                assert_eq!(ours, top5[0], "case {i} step {step}: top-1 differs from llama.cpp");
            }
            for (id, value) in top5.iter().zip(&top5_logits) {
                let d = (row[*id as usize] - value).abs();
                case_worst = case_worst.max(d);
                assert!(d <= LOGIT_TOLERANCE, "case {i} step {step}: logit of {id} off by {d}");
            }
        }
        worst = worst.max(case_worst);

        let request =
            model.prepare(prompt_ids, GenerateParams { max_tokens: Some(greedy.len()), ..Default::default() }).unwrap();
        let out = model.submit(request).unwrap().collect_blocking().unwrap();
        let matching = out.token_ids.iter().zip(&greedy).take_while(|(a, b)| a == b).count();
        eprintln!(
            "case {i}: largest top-5 logit deviation {case_worst:.3e}; greedy matches llama.cpp for {matching}/{} tokens",
            greedy.len()
        );
        // Generation (one prefill, then single-token decode steps) follows llama.cpp's greedy path token
        // for token, near ties included: its decode arithmetic differs from prefill's, and so does ours.
        assert_eq!(out.token_ids, greedy, "case {i}: greedy tokens differ from llama.cpp's");
    }
    eprintln!("largest top-5 logit deviation over all cases: {worst:.3e}");
}

//! What the structured-output mask costs a decode step: the same story prompt decoded greedily free and
//! under a JSON Schema (`{"story": "<2,000 to 4,000 characters>"}`, so the constrained answer is a long string
//! too), rounds alternating in one process; prints each round's decode tok/s and the ratio.
//!
//! `cargo run --release -p llamagate-engine --example structured_decode -- <model> [tokens] [rounds]`
//! Threads come from `RAYON_NUM_THREADS`. benches/RESULTS.md records the figures.

use llamagate_engine::{ChatMessage, GenerateParams, Model, ModelOptions, ModelSource, OutputFormat};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args.get(1).ok_or("usage: structured_decode <model> [tokens] [rounds]")?;
    let tokens: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let rounds: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let model = Model::load(&ModelSource::parse(model_path)?, &ModelOptions::default())?;
    let chat = model.render_chat(&[ChatMessage::new(
        "user",
        "Tell me a very long story about a dragon and a knight, as JSON with the story in \"story\".",
    )])?;
    let ids = model.tokenize(&chat)?;
    let schema = json!({"type": "object", "properties": {"story": {"type": "string", "minLength": 2000, "maxLength": 4000}},
        "required": ["story"], "additionalProperties": false});
    let decode = |format: Option<OutputFormat>| -> Result<(f64, usize), Box<dyn std::error::Error>> {
        let params = GenerateParams { max_tokens: Some(tokens), output_format: format, ..Default::default() };
        let out = model.submit(model.prepare(ids.clone(), params)?)?.collect_blocking()?;
        let decoded = out.summary.usage.completion_tokens.saturating_sub(1);
        Ok((decoded as f64 / out.summary.timings.decode.as_secs_f64(), decoded))
    };
    decode(None)?; // warm-up
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (free, free_n) = decode(None)?;
        let (constrained, constrained_n) = decode(Some(OutputFormat::JsonSchema(schema.clone())))?;
        ratios.push(constrained / free);
        println!(
            "round {round}: free {free:.1} tok/s ({free_n} tokens), json_schema {constrained:.1} tok/s \
             ({constrained_n} tokens), ratio {:.3}",
            constrained / free
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.3}", ratios[ratios.len() / 2]);
    Ok(())
}

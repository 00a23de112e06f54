//! `llamagate generate`: one prompt through the real engine, streamed to stdout.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use llamagate_engine::{
    ChatMessage, DeviceChoice, GenerateParams, GenerationEvent, Model, ModelOptions, ModelSource, QuantizeOnLoad,
    SamplingParams,
};

/// The bundled default model, as `models/fetch.sh` lays it out.
pub const DEFAULT_MODEL: &str = "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Args)]
pub struct GenerateArgs {
    /// A GGUF file, a Hugging Face checkpoint directory, or a hub id (`org/name[@revision]`).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// The user message (rendered with the model's chat template unless --raw).
    #[arg(long)]
    prompt: String,
    /// A system message to put first.
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as-is, without the chat template.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// Stop strings (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Quantize full-precision (F16, BF16, F32) weights at load: q8_0.
    #[arg(long)]
    quantize: Option<QuantizeOnLoad>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let source = ModelSource::parse(&args.model)
        .with_context(|| format!("--model {}: not a file, a directory or a hub id", args.model))?;
    let device: DeviceChoice = args.device.parse()?;
    let load_start = Instant::now();
    let model = Model::load(&source, &ModelOptions { device, quantize: args.quantize, ..Default::default() })?;
    eprintln!("loaded {} in {:.2} s", args.model, load_start.elapsed().as_secs_f64());

    // `--raw` is the whole prompt format as written; otherwise the template writes the control tokens
    // and the messages stay text.
    let ids = if args.raw {
        model.tokenize(&args.prompt)?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        model.tokenize_chat(&messages)?
    };
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        ..Default::default()
    };
    let params = GenerateParams { sampling, max_tokens: Some(args.max_tokens), stop: args.stop, ..Default::default() };
    let request = model.prepare(ids, params)?;
    let mut stream = model.submit(request)?;
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = stream.blocking_next() {
        match event {
            GenerationEvent::Text { text, .. } => {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            GenerationEvent::Done(summary) => {
                writeln!(stdout)?;
                let usage = summary.usage;
                let t = summary.timings;
                let decode_tokens = usage.completion_tokens.saturating_sub(1);
                eprintln!(
                    "prompt_tokens={} completion_tokens={} finish_reason={}",
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    summary.finish_reason.as_str()
                );
                eprintln!(
                    "prefill {:.1} tok/s ({:.3} s), decode {:.1} tok/s ({:.3} s)",
                    usage.prompt_tokens as f64 / t.prefill.as_secs_f64().max(1e-9),
                    t.prefill.as_secs_f64(),
                    decode_tokens as f64 / t.decode.as_secs_f64().max(1e-9),
                    t.decode.as_secs_f64()
                );
                return Ok(());
            }
            GenerationEvent::Failed(e) => anyhow::bail!("generation failed: {e}"),
        }
    }
    anyhow::bail!("the engine stopped before finishing")
}

//! `verinfer generate`: one request through the reference interpreter (or the f32 model, for comparison).

use crate::model_ref::ModelRef;
use crate::node::{self, DeviceKind, EngineKind};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use protocol::SamplingParams;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use verinfer_sequencer::worker::InferenceEngine;
use vir::tokenizer::ChatMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The scalar VIR reference interpreter (the specified integer model; commits the trace).
    Reference,
    /// The executor's burn engine (bit-identical to the reference; `--device cpu|cuda`).
    Burn,
    /// The f32 model the integer program was converted from (greedy only; no trace).
    Float,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// `smollm2` (fetched and verified on first use), `tiny` (synthetic test model) or a GGUF path.
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// Prompt text (with --chat: the user message).
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// Maximum number of generated tokens.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Sampling temperature in [0, 2]; 0 is greedy. Resolution 0.001.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1]. Resolution 0.001.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Engine::Reference)]
    pub engine: Engine,
    /// Device of the burn engine.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Print one JSON object (`text`, `token_ids`, `trace_root`, ...) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Converts API-style floats to the integer parameters the program commits to.
pub fn sampling_params(
    temperature: f64,
    top_p: f64,
    max_tokens: u32,
    seed: u64,
) -> Result<SamplingParams> {
    if !(0.0..=2.0).contains(&temperature) {
        bail!("--temperature {temperature} is out of range: use a value in [0, 2]");
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        bail!("--top-p {top_p} is out of range: use a value in (0, 1]");
    }
    if max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let params = SamplingParams {
        max_tokens,
        temperature_milli: (temperature * 1000.0).round() as u32,
        top_p_milli: ((top_p * 1000.0).round() as u32).max(1),
        seed,
        choice_index: 0,
    };
    params.validate()?;
    Ok(params)
}

#[derive(Debug, Serialize)]
struct Output {
    text: String,
    token_ids: Vec<u32>,
    finish_reason: &'static str,
    prompt_tokens: usize,
    trace_root: Option<String>,
    op_count: Option<u64>,
    model_root: String,
    engine: &'static str,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let params = sampling_params(args.temperature, args.top_p, args.max_tokens, args.seed)?;
    let bundle = Arc::new(args.model.open()?);
    let tok = &bundle.tokenizer;
    let prompt = if args.chat {
        tok.encode_chat(&[ChatMessage::new("user", args.prompt.as_str())], true)?
    } else {
        tok.encode(&args.prompt)?
    };
    let stop_ids = bundle.model.stop_ids.clone();
    let (tokens, finish, trace) = match args.engine {
        Engine::Reference | Engine::Burn => {
            let kind = match args.engine {
                Engine::Burn => EngineKind::Burn,
                _ => EngineKind::Reference,
            };
            let engine = node::Engine::load(Arc::clone(&bundle), kind, args.device)?;
            let mut stream = tok.stream_decoder();
            let mut stdout = std::io::stdout();
            let stream_text = !args.json;
            let mut on_token = |id: u32, _| {
                if stream_text
                    && !stop_ids.contains(&id)
                    && let Ok(Some(piece)) = stream.push(id)
                {
                    let _ = write!(stdout, "{piece}");
                    let _ = stdout.flush();
                }
            };
            let execution = engine.run(&prompt, &params, None, &mut on_token)?;
            if stream_text {
                if let Ok(Some(rest)) = stream.finish() {
                    print!("{rest}");
                }
                println!();
            }
            let trace = (execution.trace_root, execution.op_count);
            (execution.tokens, execution.finish_reason, Some(trace))
        }
        Engine::Float => {
            if !params.is_greedy() {
                bail!("--engine float supports greedy decoding only (--temperature 0)");
            }
            let float = bundle.float_model()?;
            vir::interp::validate_request(&bundle.model, &prompt, &params)?;
            let (tokens, _) = float.generate_greedy(&prompt, params.max_tokens as usize, &stop_ids);
            let finish = if tokens.last().is_some_and(|t| stop_ids.contains(t)) {
                protocol::FinishReason::Stop
            } else {
                protocol::FinishReason::Length
            };
            (tokens, finish, None)
        }
    };
    let visible: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|t| !stop_ids.contains(t))
        .collect();
    let text = tok
        .decode(&visible)
        .context("decoding the generated tokens")?;
    let out = Output {
        text,
        token_ids: tokens,
        finish_reason: match finish {
            protocol::FinishReason::Stop => "stop",
            protocol::FinishReason::Length => "length",
        },
        prompt_tokens: prompt.len(),
        trace_root: trace.map(|(root, _)| root.to_string()),
        op_count: trace.map(|(_, ops)| ops),
        model_root: bundle.model.root.to_string(),
        engine: match args.engine {
            Engine::Reference => "reference",
            Engine::Burn => "burn",
            Engine::Float => "float",
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        if args.engine == Engine::Float {
            println!("{}", out.text);
        }
        println!("token ids:   {:?}", out.token_ids);
        println!("finish:      {}", out.finish_reason);
        if let (Some(root), Some(ops)) = (&out.trace_root, out.op_count) {
            println!("trace root:  {root} ({ops} ops)");
        }
        println!("model root:  {}", out.model_root);
    }
    Ok(())
}

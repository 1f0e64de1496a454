//! Timing printout (not a test): tokens/s of the burn engine (CPU, flex) against the reference interpreter on
//! SmolLM2-135M, single stream and 8 requests batched through `forward_batch`, with and without trace hashing.
//!
//! `cargo bench -p verinfer-executor --bench engine` (the GGUF at `$VERINFER_SMOLLM2_GGUF` or the default cache
//! path). `VERINFER_BENCH_TOKENS` sets the decode length (default 24); with `--features cuda`,
//! `VERINFER_BENCH_DEVICE=cuda` runs the burn engine on the GPU.

use burn::tensor::backend::Backend;
use protocol::SamplingParams;
use std::path::PathBuf;
use std::time::Instant;
use verinfer_executor::{BatchItem, BurnEngine, Cpu, RequestState};
use vir::bundle::ModelBundle;
use vir::interp::{NoTrace, Session, TraceCommitter, TraceSink};
use vir::tokenizer::ChatMessage;

const PROMPTS: [&str; 8] = [
    "Write a short story about a dragon who learns to read.",
    "Explain how a bicycle works.",
    "Describe the water cycle in detail.",
    "What are the benefits of regular exercise?",
    "Write a poem about autumn leaves.",
    "Explain what a computer program is to a child.",
    "List some interesting facts about the ocean.",
    "How do plants make their food?",
];

fn gguf_path() -> Result<PathBuf, String> {
    let path = std::env::var_os("VERINFER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "SmolLM2 GGUF not found at {}: run `scripts/fetch-model` or set VERINFER_SMOLLM2_GGUF",
            path.display()
        ))
    }
}

/// Prefill and decode timings of one run.
struct Timing {
    prefill_tokens: usize,
    prefill_s: f64,
    decode_tokens: usize,
    decode_s: f64,
}

impl Timing {
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<44} prefill {:>4} tok {:>7.1} tok/s | decode {:>4} tok {:>7.2} tok/s",
            self.prefill_tokens,
            self.prefill_tokens as f64 / self.prefill_s,
            self.decode_tokens,
            self.decode_tokens as f64 / self.decode_s
        )
    }
}

fn params(max_tokens: u32, i: usize) -> SamplingParams {
    // Sampled, so generations rarely stop at the first end-of-turn token.
    SamplingParams {
        max_tokens,
        temperature_milli: 700,
        top_p_milli: 950,
        seed: 7 + i as u64,
        choice_index: 0,
    }
}

fn reference(
    bundle: &ModelBundle,
    prompt: &[u32],
    params: &SamplingParams,
    sink: &mut (dyn TraceSink + Send),
) -> Timing {
    let model = &bundle.model;
    let t = Instant::now();
    let mut session = Session::new(model, prompt.len(), sink);
    let mut h = Vec::new();
    for &tok in prompt {
        h = session.body(tok);
    }
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let key = params.sampling_key();
    let mut n = 0;
    loop {
        let next = session.head(&h, params, key, n as u64);
        n += 1;
        if model.stop_ids.contains(&next) || n >= params.max_tokens as usize {
            break;
        }
        h = session.body(next);
    }
    Timing {
        prefill_tokens: prompt.len(),
        prefill_s,
        decode_tokens: n,
        decode_s: t.elapsed().as_secs_f64(),
    }
}

/// Runs requests through `forward_batch`: every prompt prefilled in one step, then decode steps with every
/// unfinished request.
fn burn<B: Backend>(
    engine: &BurnEngine<B>,
    prompts: &[Vec<u32>],
    max_tokens: u32,
    sinks: &mut [Box<dyn TraceSink + Send>],
) -> Result<Timing, String> {
    let mut states: Vec<RequestState<B>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| engine.start(p, &params(max_tokens, i)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut items: Vec<BatchItem<'_, B>> = states
        .iter_mut()
        .zip(sinks.iter_mut())
        .map(|(s, sink)| {
            let positions = s.max_step_positions();
            BatchItem {
                request: s,
                positions,
                sink: sink.as_mut(),
            }
        })
        .collect();
    engine
        .forward_batch(&mut items)
        .map_err(|e| e.to_string())?;
    drop(items);
    let prefill_s = t.elapsed().as_secs_f64();
    let first: usize = states.iter().map(|s| s.tokens().len()).sum();
    let t = Instant::now();
    loop {
        let mut items: Vec<BatchItem<'_, B>> = states
            .iter_mut()
            .zip(sinks.iter_mut())
            .filter(|(s, _)| !s.is_finished())
            .map(|(s, sink)| BatchItem {
                request: s,
                positions: 1,
                sink: sink.as_mut(),
            })
            .collect();
        if items.is_empty() {
            break;
        }
        engine
            .forward_batch(&mut items)
            .map_err(|e| e.to_string())?;
    }
    let total: usize = states.iter().map(|s| s.tokens().len()).sum();
    Ok(Timing {
        prefill_tokens: prompts.iter().map(Vec::len).sum(),
        prefill_s,
        decode_tokens: total - first,
        decode_s: t.elapsed().as_secs_f64(),
    })
}

/// The burn engine's runs on one backend; returns single-stream and 8-stream decode timings (no trace).
fn run_burn<B: Backend>(
    engine: &BurnEngine<B>,
    prompts: &[Vec<u32>],
    max_tokens: u32,
    label: &str,
) -> Result<(Timing, Timing), String> {
    let single = burn(engine, &prompts[..1], max_tokens, &mut [Box::new(NoTrace)])?;
    println!(
        "{}",
        single.line(&format!("burn {label}, 1 stream, no trace"))
    );
    let single_traced = burn(
        engine,
        &prompts[..1],
        max_tokens,
        &mut [Box::new(TraceCommitter::default())],
    )?;
    println!(
        "{}",
        single_traced.line(&format!("burn {label}, 1 stream, trace committed"))
    );
    let mut sinks: Vec<Box<dyn TraceSink + Send>> =
        (0..8).map(|_| Box::new(NoTrace) as _).collect();
    let batch = burn(engine, prompts, max_tokens, &mut sinks)?;
    println!(
        "{}",
        batch.line(&format!("burn {label}, 8 streams, no trace"))
    );
    let mut sinks: Vec<Box<dyn TraceSink + Send>> = (0..8)
        .map(|_| Box::new(TraceCommitter::default()) as _)
        .collect();
    let batch_traced = burn(engine, prompts, max_tokens, &mut sinks)?;
    println!(
        "{}",
        batch_traced.line(&format!("burn {label}, 8 streams, trace committed"))
    );
    Ok((single, batch))
}

fn main() -> Result<(), String> {
    let max_tokens: u32 = std::env::var("VERINFER_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let t = Instant::now();
    let bundle = ModelBundle::open(gguf_path()?).map_err(|e| e.to_string())?;
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| {
            bundle
                .tokenizer
                .encode_chat(&[ChatMessage::new("user", *p)], true)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    println!(
        "model loaded in {:.1}s; {} threads; decode up to {max_tokens} tokens per request",
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let p0 = &prompts[0];
    let ref_plain = reference(&bundle, p0, &params(max_tokens, 0), &mut NoTrace);
    let mut committer = TraceCommitter::default();
    let ref_traced = reference(&bundle, p0, &params(max_tokens, 0), &mut committer);
    println!("{}", ref_plain.line("reference, 1 stream, no trace"));
    println!(
        "{}",
        ref_traced.line("reference, 1 stream, trace committed")
    );

    let device = std::env::var("VERINFER_BENCH_DEVICE").unwrap_or_default();
    let (single, batch) = if device == "cuda" {
        #[cfg(feature = "cuda")]
        {
            let t = Instant::now();
            let engine =
                BurnEngine::<verinfer_executor::Cuda>::new(&bundle.model, Default::default())
                    .map_err(|e| e.to_string())?;
            println!(
                "burn engine (cuda) ready in {:.1}s",
                t.elapsed().as_secs_f64()
            );
            run_burn(&engine, &prompts, max_tokens, "cuda")?
        }
        #[cfg(not(feature = "cuda"))]
        return Err("VERINFER_BENCH_DEVICE=cuda needs --features cuda".into());
    } else {
        let t = Instant::now();
        let engine =
            BurnEngine::<Cpu>::new(&bundle.model, Default::default()).map_err(|e| e.to_string())?;
        println!(
            "burn engine (flex) ready in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        run_burn(&engine, &prompts, max_tokens, "flex")?
    };
    let rate = |t: &Timing| t.decode_tokens as f64 / t.decode_s;
    println!(
        "decode throughput burn/reference: 1 stream {:.2}x, 8 streams {:.2}x (no trace); \
         burn 8 streams vs 1 stream: {:.2}x",
        rate(&single) / rate(&ref_plain),
        rate(&batch) / rate(&ref_plain),
        rate(&batch) / rate(&single)
    );
    Ok(())
}

//! `verinfer bench`: measures the reference interpreter, the executor's burn engine (single stream) and the
//! continuous-batching scheduler (several streams) on one model, in one process (`executor::bench`).

use crate::model_ref::ModelRef;
use crate::node::DeviceKind;
use anyhow::{Context, Result, bail};
use clap::Args;
use executor::BurnEngine;
use executor::bench::{BenchConfig, BenchReport, prompt_tokens, run};
use vir::bundle::ModelBundle;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `smollm2` (fetched and verified on first use), `tiny` (synthetic test model) or a GGUF path.
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// Device of the burn engine.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 16)]
    pub tokens: u32,
    /// Concurrent stream counts run through the scheduler, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub streams: Vec<usize>,
    /// Scheduler token budget per step.
    #[arg(long, default_value_t = 256)]
    pub step_tokens: usize,
    /// Skip the reference interpreter (its ratios are then 0).
    #[arg(long)]
    pub no_reference: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn measure<B: executor::Backend>(
    bundle: &ModelBundle,
    device: B::Device,
    prompts: &[Vec<u32>],
    config: &BenchConfig,
) -> Result<BenchReport> {
    let engine = BurnEngine::<B>::new(&bundle.model, device)?;
    Ok(run(&bundle.model, engine, prompts, config)?.0)
}

pub fn run_bench(args: BenchArgs) -> Result<()> {
    if args.tokens == 0 {
        bail!("--tokens must be at least 1");
    }
    if args.streams.contains(&0) {
        bail!("--streams takes counts of at least 1, e.g. --streams 8,32");
    }
    let bundle = args.model.open()?;
    let prompts = prompt_tokens(&bundle.tokenizer).context("tokenizing the benchmark prompts")?;
    let config = BenchConfig {
        tokens: args.tokens,
        streams: args.streams.clone(),
        max_step_tokens: args.step_tokens,
        reference: !args.no_reference,
    };
    let report = match args.device {
        DeviceKind::Cpu => {
            measure::<executor::Cpu>(&bundle, Default::default(), &prompts, &config)?
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            measure::<executor::Cuda>(&bundle, Default::default(), &prompts, &config)?
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!(
            "this binary was built without CUDA: rebuild with `cargo build --release --features cuda`"
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

//! `cargo bench -p verinfer-executor --bench engine`: the measurements of `verinfer bench` ([`run`]: reference
//! interpreter, engine single stream with and without the trace, scheduler batches) on SmolLM2-135M with the CPU
//! backend, printed as text, without building the CLI.
//!
//! The GGUF is read from `$VERINFER_SMOLLM2_GGUF` or the default cache path (`scripts/fetch-model`).
//! `VERINFER_BENCH_TOKENS` sets the tokens per request (default 16), `VERINFER_BENCH_STREAMS` the stream counts
//! (default `8,32`).

use std::path::PathBuf;
use verinfer_executor::bench::{BenchConfig, prompt_tokens, run};
use verinfer_executor::{BurnEngine, Cpu};
use vir::bundle::ModelBundle;

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

fn config() -> Result<BenchConfig, String> {
    let mut config = BenchConfig::default();
    if let Ok(tokens) = std::env::var("VERINFER_BENCH_TOKENS") {
        config.tokens = tokens
            .parse()
            .map_err(|e| format!("VERINFER_BENCH_TOKENS={tokens:?}: {e}"))?;
    }
    if let Ok(streams) = std::env::var("VERINFER_BENCH_STREAMS") {
        config.streams = streams
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("VERINFER_BENCH_STREAMS={streams:?}: {e}"))?;
    }
    Ok(config)
}

fn main() -> Result<(), String> {
    let path = gguf_path()?;
    let bundle = ModelBundle::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prompts = prompt_tokens(&bundle.tokenizer).map_err(|e| e.to_string())?;
    let engine =
        BurnEngine::<Cpu>::new(&bundle.model, Default::default()).map_err(|e| e.to_string())?;
    let (report, _) =
        run(&bundle.model, engine, &prompts, &config()?).map_err(|e| e.to_string())?;
    print!("{}", report.text());
    Ok(())
}

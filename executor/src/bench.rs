//! Throughput measurement in one process ([`run`]): the reference interpreter and the burn engine single
//! stream (prefill and decode tokens/s, trace committed), the engine without the trace hashing, and several
//! concurrent streams through the [`Scheduler`]; plus the trace hashing's share of engine time and the ratios
//! burn/reference and batch/single.
//!
//! Every run commits its trace as production does (except the one "trace discarded" run); the hashing time is the
//! wall time of the engine's emit phase ([`BurnEngine::trace_emit_time`]), where the trace committers hash. Rates
//! count the tokens actually generated (a request may stop early on a stop token). [`PROMPTS`] are the chat
//! prompts `verinfer bench` and `cargo bench` cycle through ([`prompt_tokens`]).

use crate::commit::ParallelCommitter;
use crate::engine::{BatchItem, BurnEngine};
use crate::error::EngineError;
use crate::scheduler::{Event, Scheduler, SchedulerConfig, SchedulerError};
use burn::tensor::backend::Backend;
use protocol::SamplingParams;
use serde::Serialize;
use std::time::{Duration, Instant};
use thiserror::Error;
use vir::IntModel;
use vir::interp::{NoTrace, Session, TraceCommitter, TraceSink};
use vir::tokenizer::{ChatMessage, Tokenizer, TokenizerError};

/// Chat prompts the benchmark cycles through (one per stream, round robin; the first is the single stream's).
pub const PROMPTS: [&str; 8] = [
    "Write a short story about a dragon who learns to read.",
    "Explain how a bicycle works.",
    "Describe the water cycle in detail.",
    "What are the benefits of regular exercise?",
    "Write a poem about autumn leaves.",
    "Explain what a computer program is to a child.",
    "List some interesting facts about the ocean.",
    "How do plants make their food?",
];

/// [`PROMPTS`] as token ids: chat-templated when the tokenizer has a template, plain text otherwise.
pub fn prompt_tokens(tokenizer: &Tokenizer) -> Result<Vec<Vec<u32>>, TokenizerError> {
    PROMPTS
        .iter()
        .map(|p| {
            tokenizer
                .encode_chat(&[ChatMessage::new("user", *p)], true)
                .or_else(|_| tokenizer.encode(p))
        })
        .collect()
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Tokens to generate per request (`max_tokens`).
    pub tokens: u32,
    /// Concurrent stream counts to run through the scheduler.
    pub streams: Vec<usize>,
    /// Scheduler token budget per step (at least the largest stream count is used).
    pub max_step_tokens: usize,
    /// Also run the reference interpreter (single stream).
    pub reference: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            tokens: 16,
            streams: vec![8, 32],
            max_step_tokens: 256,
            reference: true,
        }
    }
}

/// Why a benchmark failed.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("no prompts to run: pass at least one prompt")]
    NoPrompts,
    #[error("`tokens` must be at least 1")]
    NoTokens,
    #[error("a stream count of 0 was asked for; use counts of at least 1")]
    ZeroStreams,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error("reference interpreter: {0}")]
    Reference(#[from] vir::interp::RunError),
}

/// Tokens over seconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Rate {
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

impl Rate {
    pub fn new(tokens: usize, time: Duration) -> Self {
        let seconds = time.as_secs_f64();
        Self {
            tokens,
            seconds,
            tokens_per_s: if seconds > 0.0 {
                tokens as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// One single-stream run: prefill (the whole prompt) and decode.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SingleRun {
    pub prefill: Rate,
    pub decode: Rate,
    /// Generated tokens over the whole request's time.
    pub end_to_end: Rate,
    /// Share of the run's time spent hashing the trace (0 when not traced).
    pub trace_share: f64,
}

/// Several requests at once through the scheduler.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BatchRun {
    pub streams: usize,
    /// Generated tokens over the wall time of the whole batch.
    pub generated: Rate,
    /// Prompt plus generated positions over the wall time.
    pub positions: Rate,
    pub steps: u64,
    /// Share of engine step time spent hashing traces.
    pub trace_share: f64,
    /// `generated` over the engine's single-stream end-to-end rate.
    pub vs_single: f64,
}

/// burn/reference and batch/single ratios.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Ratios {
    /// Engine single-stream decode tok/s over the reference's (0 without the reference run).
    pub burn_vs_reference_decode: f64,
    pub burn_vs_reference_prefill: f64,
    /// Trace hashing share of the engine's single-stream time.
    pub trace_share_single: f64,
    /// Trace hashing share in the largest batch run.
    pub trace_share_batch: f64,
    /// Largest batch run's generated tok/s over the engine's single-stream end-to-end rate.
    pub batch_vs_single: f64,
}

/// Everything [`run`] measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchReport {
    pub threads: usize,
    pub prompt_tokens: usize,
    pub max_tokens: u32,
    pub reference: Option<SingleRun>,
    pub engine: SingleRun,
    /// The engine single stream with the trace discarded (no hashing).
    pub engine_no_trace: SingleRun,
    pub batches: Vec<BatchRun>,
    pub ratios: Ratios,
}

/// Sampled parameters for request `i` (sampled so generations rarely stop at the first end-of-turn token).
pub fn bench_params(max_tokens: u32, i: usize) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature_milli: 700,
        top_p_milli: 950,
        seed: 7 + i as u64,
        choice_index: 0,
    }
}

/// The reference interpreter on one request, trace committed.
pub fn reference_single(
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
) -> Result<SingleRun, BenchError> {
    vir::interp::validate_request(model, prompt, params)?;
    let mut committer = TraceCommitter::default();
    let t = Instant::now();
    let mut session = Session::new(model, prompt.len(), &mut committer);
    let mut h = Vec::new();
    for &tok in prompt {
        h = session.body(tok);
    }
    // The first token belongs to the prefill (as in the engine's prompt step).
    let key = params.sampling_key();
    let mut next = session.head(&h, params, key, 0);
    let mut n = 1usize;
    let prefill = t.elapsed();
    let t = Instant::now();
    while !model.stop_ids.contains(&next) && n < params.max_tokens as usize {
        h = session.body(next);
        next = session.head(&h, params, key, n as u64);
        n += 1;
    }
    let decode = t.elapsed();
    Ok(SingleRun {
        prefill: Rate::new(prompt.len(), prefill),
        decode: Rate::new(n.saturating_sub(1), decode),
        end_to_end: Rate::new(n, prefill + decode),
        trace_share: 0.0,
    })
}

/// The engine on one request: the prompt in one step (its first token counts as prefill), then one decode step
/// per token. `traced`: commit the trace (timed) or discard it.
pub fn engine_single<B: Backend>(
    engine: &BurnEngine<B>,
    prompt: &[u32],
    params: &SamplingParams,
    traced: bool,
) -> Result<SingleRun, BenchError> {
    let mut committer = ParallelCommitter::default();
    let mut none = NoTrace;
    let sink: &mut (dyn TraceSink + Send) = if traced { &mut committer } else { &mut none };
    let emit_before = engine.trace_emit_time();
    let mut request = engine.start(prompt, params)?;
    let t = Instant::now();
    let positions = request.max_step_positions();
    engine.forward_batch(&mut [BatchItem {
        request: &mut request,
        positions,
        sink: &mut *sink,
    }])?;
    let prefill = t.elapsed();
    let t = Instant::now();
    while !request.is_finished() {
        engine.forward_batch(&mut [BatchItem {
            request: &mut request,
            positions: 1,
            sink: &mut *sink,
        }])?;
    }
    let decode = t.elapsed();
    let n = request.tokens().len();
    let total = prefill + decode;
    Ok(SingleRun {
        prefill: Rate::new(prompt.len(), prefill),
        decode: Rate::new(n.saturating_sub(1), decode),
        end_to_end: Rate::new(n, total),
        trace_share: if traced {
            share(engine.trace_emit_time().saturating_sub(emit_before), total)
        } else {
            0.0
        },
    })
}

fn share(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        part.as_secs_f64() / whole.as_secs_f64()
    }
}

/// `streams` requests (prompts reused round robin, distinct seeds) submitted at once to a scheduler that lets
/// them all run; waits for all of them. Gives the engine back.
pub fn batch<B: Backend>(
    engine: BurnEngine<B>,
    prompts: &[Vec<u32>],
    max_tokens: u32,
    streams: usize,
    max_step_tokens: usize,
) -> Result<(BatchRun, BurnEngine<B>), BenchError> {
    if prompts.is_empty() {
        return Err(BenchError::NoPrompts);
    }
    let kv_budget = prompts.iter().map(Vec::len).max().unwrap_or(0) + max_tokens as usize;
    let mut scheduler = Scheduler::new(
        engine,
        SchedulerConfig {
            max_step_tokens: max_step_tokens.max(streams),
            max_running: streams,
            kv_budget: kv_budget * streams,
        },
    )?;
    let mut receivers = Vec::with_capacity(streams);
    let mut prompt_positions = 0;
    for i in 0..streams {
        let prompt = prompts[i % prompts.len()].clone();
        prompt_positions += prompt.len();
        receivers.push(scheduler.submit(prompt, bench_params(max_tokens, i))?.1);
    }
    let t = Instant::now();
    while !scheduler.is_idle() {
        if scheduler.step()?.is_none() {
            break;
        }
    }
    let wall = t.elapsed();
    let mut generated = 0;
    for mut rx in receivers {
        while let Ok(event) = rx.try_recv() {
            match event {
                Event::Token(_) => generated += 1,
                Event::Finished(_) => {}
                Event::Failed(e) => return Err(e.into()),
            }
        }
    }
    let stats = scheduler.stats();
    Ok((
        BatchRun {
            streams,
            generated: Rate::new(generated, wall),
            // Positions run: every prompt position and every generated token but the last of each request.
            positions: Rate::new(prompt_positions + generated - streams.min(generated), wall),
            steps: stats.steps,
            trace_share: share(stats.hashing, stats.busy),
            vs_single: 0.0,
        },
        scheduler.into_engine(),
    ))
}

/// Runs every measurement on `model` with `engine`; `prompts[0]` is the single-stream prompt. Returns the report
/// and the engine.
pub fn run<B: Backend>(
    model: &IntModel,
    engine: BurnEngine<B>,
    prompts: &[Vec<u32>],
    config: &BenchConfig,
) -> Result<(BenchReport, BurnEngine<B>), BenchError> {
    let Some(prompt) = prompts.first() else {
        return Err(BenchError::NoPrompts);
    };
    if config.tokens == 0 {
        return Err(BenchError::NoTokens);
    }
    if config.streams.contains(&0) {
        return Err(BenchError::ZeroStreams);
    }
    let params = bench_params(config.tokens, 0);
    let reference = if config.reference {
        Some(reference_single(model, prompt, &params)?)
    } else {
        None
    };
    // Warm up (first-touch allocations, thread pool start).
    engine_single(
        &engine,
        prompt,
        &bench_params(2.min(config.tokens), 0),
        true,
    )?;
    let single = engine_single(&engine, prompt, &params, true)?;
    let single_no_trace = engine_single(&engine, prompt, &params, false)?;
    let mut engine = engine;
    let mut batches = Vec::with_capacity(config.streams.len());
    for &streams in &config.streams {
        let (mut run, back) = batch(
            engine,
            prompts,
            config.tokens,
            streams,
            config.max_step_tokens,
        )?;
        engine = back;
        run.vs_single = ratio(run.generated.tokens_per_s, single.end_to_end.tokens_per_s);
        batches.push(run);
    }
    let largest = batches.iter().max_by_key(|b| b.streams);
    let ratios = Ratios {
        burn_vs_reference_decode: reference.map_or(0.0, |r| {
            ratio(single.decode.tokens_per_s, r.decode.tokens_per_s)
        }),
        burn_vs_reference_prefill: reference.map_or(0.0, |r| {
            ratio(single.prefill.tokens_per_s, r.prefill.tokens_per_s)
        }),
        trace_share_single: single.trace_share,
        trace_share_batch: largest.map_or(0.0, |b| b.trace_share),
        batch_vs_single: largest.map_or(0.0, |b| b.vs_single),
    };
    Ok((
        BenchReport {
            threads: rayon::current_num_threads(),
            prompt_tokens: prompt.len(),
            max_tokens: config.tokens,
            reference,
            engine: single,
            engine_no_trace: single_no_trace,
            batches,
            ratios,
        },
        engine,
    ))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl BenchReport {
    /// A human-readable summary, one figure per line.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let line = |s: &mut String, name: &str, r: &SingleRun| {
            let _ = writeln!(
                s,
                "{name:<34} prefill {:>5} tok {:>8.1} tok/s | decode {:>4} tok {:>7.2} tok/s | \
                 end-to-end {:>7.2} tok/s | hashing {:>4.1}%",
                r.prefill.tokens,
                r.prefill.tokens_per_s,
                r.decode.tokens,
                r.decode.tokens_per_s,
                r.end_to_end.tokens_per_s,
                100.0 * r.trace_share
            );
        };
        let _ = writeln!(
            s,
            "{} threads; prompt {} tokens; up to {} generated tokens per request",
            self.threads, self.prompt_tokens, self.max_tokens
        );
        if let Some(r) = &self.reference {
            line(&mut s, "reference, 1 stream", r);
        }
        line(&mut s, "engine, 1 stream", &self.engine);
        line(
            &mut s,
            "engine, 1 stream, trace discarded",
            &self.engine_no_trace,
        );
        for b in &self.batches {
            let _ = writeln!(
                s,
                "{:<34} generated {:>5} tok {:>7.2} tok/s | positions {:>8.1} /s | {} steps | \
                 hashing {:>4.1}% | {:.2}x single",
                format!("engine, {} streams (scheduler)", b.streams),
                b.generated.tokens,
                b.generated.tokens_per_s,
                b.positions.tokens_per_s,
                b.steps,
                100.0 * b.trace_share,
                b.vs_single
            );
        }
        let r = &self.ratios;
        let _ = writeln!(
            s,
            "burn/reference: decode {:.2}x, prefill {:.2}x | batch/single: {:.2}x | trace hashing: \
             {:.1}% single, {:.1}% batched",
            r.burn_vs_reference_decode,
            r.burn_vs_reference_prefill,
            r.batch_vs_single,
            100.0 * r.trace_share_single,
            100.0 * r.trace_share_batch
        );
        s
    }
}

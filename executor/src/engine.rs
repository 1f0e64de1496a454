//! The burn engine: runs requests exactly like `vir::interp::generate`, alone ([`BurnEngine::generate`]) or as
//! one step of several independent requests ([`BurnEngine::forward_batch`]).
//!
//! A step runs every row (token position) of every request in the batch through the body together: embedding,
//! norms, projections, RoPE, SwiGLU and residuals are per-row ops on the stacked rows; attention runs per request
//! against that request's own [`KvCache`]. Rows whose position is at or past the request's last prompt position
//! then run the sampling head with the request's own parameters. Integer ops are exact and per row, so a
//! request's op outputs (and therefore its tokens and trace root) are the same alone or batched with anything.
//! On the CPU backend the same step runs on the host ([`crate::host`]); other backends run it as burn ops.

use crate::backend::{Cpu, init_device};
use crate::commit::ParallelCommitter;
use crate::error::EngineError;
use crate::host::{self, HeadParams, HostModel, HostSpan};
use crate::kv_cache::KvCache;
use crate::model::DeviceModel;
use crate::ops::attention::line_prefixes as cut;
use crate::ops::{self, CausalRows};
use crate::trace::{OpOutput, Recorder, emit};
use crate::transfer::{i32_tensor, read_i32, read_i64};
use alloy_primitives::B256;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use protocol::{FinishReason, SamplingParams, TraceCommitment};
use rayon::prelude::*;
use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vir::IntModel;
use vir::config::LlamaConfig;
use vir::interp::{Generation, RunError, TraceSink};
use vir::model::ProgramParams;
use vir::ops::{ACT_FRAC, ATTN_CHUNK, RESIDUAL_FRAC, TOPP_ROUNDS, VOCAB_CHUNK, topp_candidate};
use vir::program::{HeadOp, LayerOp, OpKind, Program};
use vir::sampling;

/// Prompt positions [`BurnEngine::generate`] runs per step (bounds the per-step trace buffer).
pub const DEFAULT_PREFILL_CHUNK: usize = 32;

/// The engine: a model on a device.
#[derive(Debug)]
pub struct BurnEngine<B: Backend> {
    device: B::Device,
    config: LlamaConfig,
    params: ProgramParams,
    stop_ids: Vec<u32>,
    model_root: B256,
    model: DeviceModel<B>,
    prefill_chunk: usize,
    /// Set on the CPU backend: steps run on the host ([`crate::host`]) instead of as burn ops.
    host: Option<HostModel>,
    /// Wall time spent emitting ops to sinks (where committing sinks hash), in nanoseconds.
    emit_nanos: AtomicU64,
}

/// Checks a request against a model config exactly as `vir::interp::validate_request` does (usable without
/// the engine, e.g. by a handle on another thread).
pub fn validate_request(
    config: &LlamaConfig,
    prompt: &[u32],
    params: &SamplingParams,
) -> Result<(), RunError> {
    params.validate()?;
    if prompt.is_empty() {
        return Err(RunError::EmptyPrompt);
    }
    let vocab = config.vocab_size;
    if let Some((index, &id)) = prompt
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(RunError::TokenOutOfRange { index, id, vocab });
    }
    let context = config.context_length;
    if prompt.len() as u64 + u64::from(params.max_tokens) > context as u64 {
        return Err(RunError::ContextExceeded {
            prompt: prompt.len(),
            max_tokens: params.max_tokens,
            context,
        });
    }
    Ok(())
}

/// One request in flight: its program, position, KV cache, trace position and generated tokens.
#[derive(Debug)]
pub struct RequestState<B: Backend> {
    prompt: Vec<u32>,
    params: SamplingParams,
    key: B256,
    program: Program,
    pos: usize,
    next_index: u64,
    kv: KvCache<B>,
    tokens: Vec<u32>,
    finish: Option<FinishReason>,
}

impl<B: Backend> RequestState<B> {
    /// Positions processed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Prompt positions not yet processed.
    pub fn remaining_prompt(&self) -> usize {
        self.prompt.len().saturating_sub(self.pos)
    }

    /// Tokens generated so far (including a final stop token).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Positions the KV cache has room for (it grows by doubling as the request advances).
    pub fn kv_capacity(&self) -> usize {
        self.kv.capacity()
    }

    /// Ops emitted to the trace so far (the op count once finished).
    pub fn ops_emitted(&self) -> u64 {
        self.next_index
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The result, once finished.
    pub fn generation(&self) -> Option<Generation> {
        self.finish.map(|finish_reason| Generation {
            tokens: self.tokens.clone(),
            finish_reason,
        })
    }

    /// Positions this request can run in its next step: the rest of the prompt, or 1 while decoding, or 0 when
    /// finished.
    pub fn max_step_positions(&self) -> usize {
        if self.is_finished() {
            0
        } else {
            self.remaining_prompt().max(1)
        }
    }

    /// The token fed at position `pos`: a prompt token, or the token generated at `pos - 1`.
    fn input_token(&self, pos: usize) -> Option<u32> {
        match pos.checked_sub(self.prompt.len()) {
            None => self.prompt.get(pos).copied(),
            Some(g) => self.tokens.get(g).copied(),
        }
    }
}

/// One request's share of a [`BurnEngine::forward_batch`] step.
pub struct BatchItem<'a, B: Backend> {
    pub request: &'a mut RequestState<B>,
    /// Positions to run: `1..=remaining prompt` while prefilling, exactly 1 while decoding.
    pub positions: usize,
    /// Receives the request's ops of this step, in trace order (sinks of different requests are fed in
    /// parallel).
    pub sink: &'a mut (dyn TraceSink + Send),
}

/// What a step produced for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutput {
    /// The token generated by this step (when it ran the head).
    pub token: Option<u32>,
    /// Set when this step finished the request.
    pub finish_reason: Option<FinishReason>,
}

/// Where a request's rows sit in the step.
struct Span {
    first_row: usize,
    first_pos: usize,
    rows: usize,
}

impl Span {
    fn rows(&self) -> std::ops::Range<usize> {
        self.first_row..self.first_row + self.rows
    }

    fn positions(&self) -> Vec<usize> {
        (self.first_pos..self.first_pos + self.rows).collect()
    }
}

/// Per-row parameters of the rows that run the head.
struct HeadRows {
    /// Trace rows of the step.
    rows: Vec<usize>,
    /// Items they belong to.
    items: Vec<usize>,
    temperature_milli: Vec<u32>,
    top_p_milli: Vec<u32>,
    draws: Vec<u64>,
}

impl<B: Backend> BurnEngine<B> {
    /// Sets up `device` ([`init_device`]) and uploads `model` to it.
    pub fn new(model: &IntModel, device: B::Device) -> Result<Self, EngineError> {
        init_device::<B>(&device)?;
        Ok(Self {
            model: DeviceModel::upload(model, &device)?,
            device,
            config: model.config.clone(),
            params: model.params.clone(),
            stop_ids: model.stop_ids.clone(),
            model_root: model.root,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            host: (TypeId::of::<B>() == TypeId::of::<Cpu>()).then(|| HostModel::new(model)),
            emit_nanos: AtomicU64::new(0),
        })
    }

    /// Runs steps as burn ops even on the CPU backend (where [`BurnEngine::new`] picks the host step), e.g. to
    /// test the device path without a GPU. Requests started before this call cannot run afterwards.
    pub fn with_device_ops(mut self) -> Self {
        self.host = None;
        self
    }

    /// Whether steps run on the host (the CPU backend's default) rather than as burn ops.
    pub fn runs_on_host(&self) -> bool {
        self.host.is_some()
    }

    /// Prompt positions per step in [`BurnEngine::generate`] (at least 1). Results do not depend on it.
    pub fn with_prefill_chunk(mut self, positions: usize) -> Self {
        self.prefill_chunk = positions.max(1);
        self
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Total wall time [`BurnEngine::forward_batch`] has spent emitting ops to the sinks (with committing sinks:
    /// the trace hashing), since the engine was built.
    pub fn trace_emit_time(&self) -> Duration {
        Duration::from_nanos(self.emit_nanos.load(Ordering::Relaxed))
    }

    /// The model root of the model this engine was built from.
    pub fn model_root(&self) -> B256 {
        self.model_root
    }

    /// Checks a request exactly as `vir::interp::validate_request` does.
    pub fn validate(&self, prompt: &[u32], params: &SamplingParams) -> Result<(), RunError> {
        validate_request(&self.config, prompt, params)
    }

    /// Admits a request: validates it and allocates its KV cache.
    pub fn start(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
    ) -> Result<RequestState<B>, EngineError> {
        self.validate(prompt, params)?;
        // Positions that run: the prompt, then every generated token but the last.
        let positions = prompt.len() + params.max_tokens as usize - 1;
        Ok(RequestState {
            prompt: prompt.to_vec(),
            params: *params,
            key: params.sampling_key(),
            program: Program::new(self.config.clone(), prompt.len()),
            pos: 0,
            next_index: 0,
            kv: if self.host.is_some() {
                KvCache::new_host(
                    self.config.n_layers,
                    self.config.kv_dim(),
                    positions.min(256),
                    &self.device,
                )
            } else {
                KvCache::new(
                    self.config.n_layers,
                    self.config.kv_dim(),
                    positions.min(256),
                    &self.device,
                )
            },
            tokens: Vec::new(),
            finish: None,
        })
    }

    /// Runs a request to completion, streaming each token to `on_token` and every op to `sink` (the same ops,
    /// descriptors and values as `vir::interp::generate`).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        sink: &mut (dyn TraceSink + Send),
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation, EngineError> {
        let mut request = self.start(prompt, params)?;
        while !request.is_finished() {
            let positions = request.max_step_positions().min(self.prefill_chunk);
            let out = self.forward_batch(&mut [BatchItem {
                request: &mut request,
                positions,
                sink: &mut *sink,
            }])?;
            if let Some(token) = out.first().and_then(|o| o.token) {
                on_token(token);
            }
        }
        request
            .generation()
            .ok_or_else(|| EngineError::invariant("generate", "request ended unfinished"))
    }

    /// Runs a request and commits its trace: `(generation, trace root and op count)`.
    pub fn generate_committed(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
    ) -> Result<(Generation, TraceCommitment), EngineError> {
        let mut committer = ParallelCommitter::default();
        let generation = self.generate(prompt, params, &mut committer, &mut |_| {})?;
        Ok((generation, committer.finish()))
    }

    /// One step of several independent requests: item `i` runs its next `positions` positions, and the head if
    /// the last of them is at or past its last prompt position. Each request's ops go to its own sink in trace
    /// order (requests in parallel), after the whole step has computed: an error while computing (a bad item, a device failure) leaves
    /// every request and sink untouched, so the step can be retried; only a broken internal invariant found
    /// while emitting can leave a step half-emitted.
    pub fn forward_batch(
        &self,
        items: &mut [BatchItem<'_, B>],
    ) -> Result<Vec<StepOutput>, EngineError> {
        let (spans, tokens) = self.plan(items)?;
        let positions: Vec<usize> = spans.iter().flat_map(Span::positions).collect();
        // A host step with fewer rows than threads hashes its trace while it computes (see
        // `RowTrace::hash_recorded`); larger steps keep every core on the per-row ops and hash when emitting.
        let hash_in_background = self.host.is_some()
            && positions.len() < rayon::current_num_threads()
            && items.iter().all(|item| item.sink.commits_roots());
        let mut rec = Recorder::new(&positions, hash_in_background);
        for (item, span) in items.iter_mut().zip(&spans) {
            item.request.kv.reserve(span.first_pos + span.rows);
        }
        let head = self.head_rows(items, &spans);
        let picked = match &self.host {
            Some(hm) => self.step_host(hm, items, &spans, &tokens, &head, &mut rec)?,
            None => self.step_device(items, &spans, &tokens, &positions, &head, &mut rec)?,
        };

        // Everything is computed: commit and emit in trace order.
        let mut outputs = vec![
            StepOutput {
                token: None,
                finish_reason: None,
            };
            items.len()
        ];
        // Each request's rows go to its own sink; sinks hash, so they run in parallel across requests.
        let mut rows = rec.rows;
        let mut per_item = Vec::with_capacity(spans.len());
        for span in spans.iter().rev() {
            per_item.push(rows.split_off(span.first_row));
        }
        per_item.reverse();
        let started = Instant::now();
        let emitted = items
            .par_iter_mut()
            .zip(per_item.par_iter())
            .try_for_each(|(item, mine)| {
                let req = &mut *item.request;
                emit(&req.program, &mut req.next_index, mine, &mut *item.sink)
            });
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.emit_nanos.fetch_add(nanos, Ordering::Relaxed);
        emitted?;
        for (i, (item, span)) in items.iter_mut().zip(&spans).enumerate() {
            let req = &mut *item.request;
            req.kv.commit(span.rows);
            req.pos += span.rows;
            if let Some(at) = head.items.iter().position(|&it| it == i) {
                let token = picked[at];
                req.tokens.push(token);
                outputs[i].token = Some(token);
                if self.stop_ids.contains(&token) {
                    req.finish = Some(FinishReason::Stop);
                } else if req.tokens.len() >= req.params.max_tokens as usize {
                    req.finish = Some(FinishReason::Length);
                }
                outputs[i].finish_reason = req.finish;
            }
        }
        Ok(outputs)
    }

    /// The body and head of a step as burn ops (the non-CPU backends); returns the tokens of the head rows.
    fn step_device(
        &self,
        items: &mut [BatchItem<'_, B>],
        spans: &[Span],
        tokens: &[u32],
        positions: &[usize],
        head: &HeadRows,
        rec: &mut Recorder,
    ) -> Result<Vec<u32>, EngineError> {
        let c = &self.config;
        let m = &self.model;
        let all: Vec<usize> = (0..positions.len()).collect();
        // Each request's causal layout, shared by every layer.
        let causal = spans
            .iter()
            .map(|span| {
                CausalRows::<B>::new(
                    &span.positions(),
                    c.n_heads,
                    c.n_kv_heads,
                    c.head_dim,
                    &self.device,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut h = ops::embed(&m.token_embd, tokens, RESIDUAL_FRAC)?;
        rec.i32(&all, OpKind::Embed, h.clone())?;
        for (l, w) in m.layers.iter().enumerate() {
            let k = |op| OpKind::Layer(l as u16, op);
            let x = ops::rms_norm(h.clone(), &w.attn_norm, self.params.eps_fx)?;
            rec.q(&all, k(LayerOp::AttnNorm), &x)?;
            let q = ops::matmul(&w.wq, &x, ACT_FRAC)?;
            rec.i32(&all, k(LayerOp::QProj), q.clone())?;
            let kp = ops::matmul(&w.wk, &x, ACT_FRAC)?;
            rec.i32(&all, k(LayerOp::KProj), kp.clone())?;
            let v = ops::matmul(&w.wv, &x, ACT_FRAC)?;
            rec.i32(&all, k(LayerOp::VProj), v.clone())?;
            let qr = ops::rope_quant(q, positions, &m.rope)?;
            rec.q(&all, k(LayerOp::QRope), &qr)?;
            let kr = ops::rope(kp, positions, &m.rope)?;
            rec.i32(&all, k(LayerOp::KRope), kr.clone())?;

            let mut outs = Vec::with_capacity(items.len());
            for ((item, span), ctx) in items.iter_mut().zip(spans).zip(&causal) {
                let r = span.rows();
                let kv = &mut item.request.kv;
                kv.write(
                    l,
                    span.first_pos,
                    kr.clone().slice([r.clone(), 0..c.kv_dim()]),
                    v.clone().slice([r.clone(), 0..c.kv_dim()]),
                )?;
                outs.push(self.attention(rec, l, span, ctx, &qr.slice_rows(r), kv)?);
            }
            let o = Tensor::cat(outs, 0);
            rec.i32(&all, k(LayerOp::AttnOut), o.clone())?;
            let oq = ops::quantize_vec(o, ACT_FRAC)?;
            rec.q(&all, k(LayerOp::AttnOutQuant), &oq)?;
            let op = ops::matmul(&w.wo, &oq, RESIDUAL_FRAC)?;
            rec.i32(&all, k(LayerOp::OProj), op.clone())?;
            h = ops::residual_add(h, op)?;
            rec.i32(&all, k(LayerOp::AttnResidual), h.clone())?;

            let x = ops::rms_norm(h.clone(), &w.ffn_norm, self.params.eps_fx)?;
            rec.q(&all, k(LayerOp::FfnNorm), &x)?;
            let g = ops::matmul(&w.w_gate, &x, ACT_FRAC)?;
            rec.i32(&all, k(LayerOp::GateProj), g.clone())?;
            let u = ops::matmul(&w.w_up, &x, ACT_FRAC)?;
            rec.i32(&all, k(LayerOp::UpProj), u.clone())?;
            let s = ops::swiglu(g, u, &m.sigmoid)?;
            rec.q(&all, k(LayerOp::SwiGlu), &s)?;
            let dn = ops::matmul(&w.w_down, &s, RESIDUAL_FRAC)?;
            rec.i32(&all, k(LayerOp::DownProj), dn.clone())?;
            h = ops::residual_add(h, dn)?;
            rec.i32(&all, k(LayerOp::FfnResidual), h.clone())?;
        }

        if head.rows.is_empty() {
            Ok(Vec::new())
        } else {
            self.head(rec, head, h)
        }
    }

    /// The body and head of a step on the host (CPU backend, [`crate::host`]); returns the tokens of the head
    /// rows.
    fn step_host(
        &self,
        hm: &HostModel,
        items: &mut [BatchItem<'_, B>],
        spans: &[Span],
        tokens: &[u32],
        head: &HeadRows,
        rec: &mut Recorder,
    ) -> Result<Vec<u32>, EngineError> {
        let mut host_spans = items
            .iter_mut()
            .zip(spans)
            .map(|(item, span)| {
                let kv = item.request.kv.host_mut().ok_or_else(|| {
                    EngineError::invariant(
                        "host step",
                        "the request was started with its KV cache on the device",
                    )
                })?;
                Ok(HostSpan {
                    first_row: span.first_row,
                    first_pos: span.first_pos,
                    rows: span.rows,
                    kv,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let h = host::body(hm, &self.model, &mut rec.rows, tokens, &mut host_spans)?;
        if head.rows.is_empty() {
            return Ok(Vec::new());
        }
        host::head(
            hm,
            &self.model,
            &mut rec.rows,
            &HeadParams {
                rows: &head.rows,
                temperature_milli: &head.temperature_milli,
                top_p_milli: &head.top_p_milli,
                draws: &head.draws,
            },
            &h,
        )
    }

    /// Validates the items and lays out their rows; returns the spans and the input token of every row.
    fn plan(&self, items: &[BatchItem<'_, B>]) -> Result<(Vec<Span>, Vec<u32>), EngineError> {
        if items.is_empty() {
            return Err(EngineError::Step {
                index: 0,
                why: "empty batch".into(),
            });
        }
        let mut spans = Vec::with_capacity(items.len());
        let mut tokens = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let req = &*item.request;
            let step = |why: String| EngineError::Step { index, why };
            let allowed = req.max_step_positions();
            if item.positions == 0 || item.positions > allowed {
                return Err(step(if req.is_finished() {
                    "the request is finished".into()
                } else {
                    format!(
                        "{} positions requested, {allowed} can run now (prompt positions left: {})",
                        item.positions,
                        req.remaining_prompt()
                    )
                }));
            }
            spans.push(Span {
                first_row: tokens.len(),
                first_pos: req.pos,
                rows: item.positions,
            });
            for pos in req.pos..req.pos + item.positions {
                tokens.push(
                    req.input_token(pos)
                        .ok_or_else(|| step(format!("no input token for position {pos}")))?,
                );
            }
        }
        Ok((spans, tokens))
    }

    /// The rows that run the head: the last row of each item whose last position is `≥ prompt_len - 1`.
    fn head_rows(&self, items: &[BatchItem<'_, B>], spans: &[Span]) -> HeadRows {
        let mut head = HeadRows {
            rows: Vec::new(),
            items: Vec::new(),
            temperature_milli: Vec::new(),
            top_p_milli: Vec::new(),
            draws: Vec::new(),
        };
        for (i, (item, span)) in items.iter().zip(spans).enumerate() {
            let req = &*item.request;
            let last = span.first_pos + span.rows - 1;
            if last + 1 >= req.prompt.len() {
                head.rows.push(span.first_row + span.rows - 1);
                head.items.push(i);
                head.temperature_milli.push(req.params.temperature_milli);
                head.top_p_milli.push(req.params.top_p_milli);
                head.draws
                    .push(sampling::draw(req.key, req.tokens.len() as u64));
            }
        }
        head
    }

    /// The attention ops of one request's rows at layer `l`; returns AttnOut (`[rows, d_model]`) and records
    /// AttnScores … AttnWeightedSum.
    fn attention(
        &self,
        rec: &mut Recorder,
        l: usize,
        span: &Span,
        ctx: &CausalRows<B>,
        q: &ops::QBatch<B>,
        kv: &KvCache<B>,
    ) -> Result<Tensor<B, 2, Int>, EngineError> {
        let c = &self.config;
        let missing = || EngineError::invariant("attention", format!("no cache for layer {l}"));
        let scores = ops::attn_scores(
            ctx,
            q,
            kv.keys(l).ok_or_else(missing)?,
            self.params.score_scale,
        )?;
        let cmax = ops::chunk_max(scores.clone(), ATTN_CHUNK)?;
        let rmax = ops::row_max(cmax.clone());
        let e = ops::attn_exp(ctx, scores.clone(), rmax.clone(), &self.model.exp)?;
        let csum = ops::chunk_sum(e.clone(), ATTN_CHUNK)?;
        let rsum = ops::row_sum(csum.clone());
        let wsum = ops::attn_weighted_sums(ctx, e.clone(), kv.values(l).ok_or_else(missing)?)?;
        let o = ops::attn_out(ctx, wsum.clone(), rsum.clone())?;

        let k = |op| OpKind::Layer(l as u16, op);
        let (h, hd, width) = (c.n_heads, c.head_dim, ctx.padded());
        let nc = ctx.chunks;
        let scores = read_i32(scores)?;
        let cmax = read_i32(cmax)?;
        let rmax = read_i32(rmax)?;
        let e = read_i32(e)?;
        let csum = read_i64(csum)?;
        let rsum = read_i64(rsum)?;
        let wsum = read_i64(wsum)?;
        for i in 0..span.rows {
            let row = span.first_row + i;
            let (n_pos, nc_i) = (ctx.positions[i] + 1, ctx.row_chunks(i));
            let first = i * h;
            let outs = [
                (
                    LayerOp::AttnScores,
                    OpOutput::I32(cut(&scores, first, h, width, n_pos)),
                ),
                (
                    LayerOp::AttnChunkMax,
                    OpOutput::I32(cut(&cmax, first, h, nc, nc_i)),
                ),
                (
                    LayerOp::AttnMax,
                    OpOutput::I32(rmax[first..first + h].to_vec()),
                ),
                (
                    LayerOp::AttnExp,
                    OpOutput::I32(cut(&e, first, h, width, n_pos)),
                ),
                (
                    LayerOp::AttnChunkSum,
                    OpOutput::I64(cut(&csum, first, h, nc, nc_i)),
                ),
                (
                    LayerOp::AttnSum,
                    OpOutput::I64(rsum[first..first + h].to_vec()),
                ),
                (
                    LayerOp::AttnWeightedSum,
                    OpOutput::I64(cut(&wsum, i * h * hd, h * hd, nc, nc_i)),
                ),
            ];
            for (op, out) in outs {
                rec.push(row, k(op), out);
            }
        }
        Ok(o)
    }

    /// The sampling head on the final residual of the head rows; returns each row's token.
    fn head(
        &self,
        rec: &mut Recorder,
        head: &HeadRows,
        h: Tensor<B, 2, Int>,
    ) -> Result<Vec<u32>, EngineError> {
        let m = &self.model;
        let n = head.rows.len();
        let rows = &head.rows;
        let hk = OpKind::Head;
        let idx = i32_tensor::<B, 1>(rows.iter().map(|&r| r as i32).collect(), [n], &self.device);
        let h = h.select(0, idx);
        let x = ops::rms_norm(h, &m.output_norm, self.params.eps_fx)?;
        rec.q(rows, hk(HeadOp::OutNorm), &x)?;
        let logits = ops::matmul(m.output_matrix(), &x, ACT_FRAC)?;
        rec.i32(rows, hk(HeadOp::Logits), logits.clone())?;
        let cmax = ops::logit_chunk_max(logits.clone(), VOCAB_CHUNK)?;
        rec.i32(rows, hk(HeadOp::LogitChunkMax), cmax.clone())?;
        let max = ops::logit_max(cmax)?;
        rec.i32(rows, hk(HeadOp::LogitMax), max.clone())?;
        let e = ops::sample_exp(logits, max, &head.temperature_milli, &m.exp)?;
        rec.i32(rows, hk(HeadOp::SampleExp), e.clone())?;
        let all = ops::masked_chunk_sum(e.clone(), &vec![0; n], VOCAB_CHUNK)?;
        rec.i64(rows, hk(HeadOp::SampleChunkSum), all.clone())?;
        let sum = rec.i64(
            rows,
            hk(HeadOp::SampleSum),
            ops::sample_sum(all, &head.top_p_milli)?,
        )?;
        let target: Vec<i64> = sum.chunks_exact(2).map(|p| p[1]).collect();
        let mut tau = vec![0i64; n];
        for round in 0..TOPP_ROUNDS {
            let cand: Vec<i64> = tau.iter().map(|&t| topp_candidate(t, round)).collect();
            let sums = ops::masked_chunk_sum(e.clone(), &cand, VOCAB_CHUNK)?;
            rec.i64(rows, hk(HeadOp::TopPChunkSum(round as u8)), sums.clone())?;
            let next = ops::topp_step(sums, &tau, round, &target)?;
            tau = rec.i64(rows, hk(HeadOp::TopPStep(round as u8)), next)?;
        }
        let kept = ops::masked_chunk_sum(e.clone(), &tau, VOCAB_CHUNK)?;
        let kept = rec.i64(rows, hk(HeadOp::KeptChunkSum), kept)?;
        let nv = kept.len() / n;
        let picks: Vec<[i64; 2]> = kept
            .chunks_exact(nv.max(1))
            .zip(&head.draws)
            .map(|(k, &u)| ops::pick_chunk(k, u))
            .collect();
        for (&row, pick) in rows.iter().zip(&picks) {
            rec.push(row, hk(HeadOp::PickChunk), OpOutput::I64(pick.to_vec()));
        }
        let tokens = rec.i32(
            rows,
            hk(HeadOp::PickToken),
            ops::pick_token(e, &tau, &picks, VOCAB_CHUNK)?,
        )?;
        tokens
            .iter()
            .map(|&t| {
                u32::try_from(t)
                    .map_err(|_| EngineError::invariant("pick_token", format!("token {t}")))
            })
            .collect()
    }
}

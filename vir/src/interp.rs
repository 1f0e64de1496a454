//! The scalar reference interpreter: runs the VIR program of a request op by op, emitting every op's output to a
//! [`TraceSink`] in canonical trace order.

use crate::fixed::QVec;
use crate::model::IntModel;
use crate::ops::{self, ACT_FRAC, ATTN_CHUNK, AttnShape, RESIDUAL_FRAC, TOPP_ROUNDS, VOCAB_CHUNK};
use crate::program::{HeadOp, LayerOp, OpDescriptor, OpKind, Program};
use crate::sampling;
use alloy_primitives::B256;
use protocol::{
    FinishReason, ParamsError, SamplingParams, TensorHasher, TraceBuilder, TraceCommitment,
};
use thiserror::Error;

/// A borrowed op output.
#[derive(Debug, Clone, Copy)]
pub enum TensorView<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
    Q(&'a QVec),
}

impl TensorView<'_> {
    /// Canonical little-endian bytes (QVec: exponents as i32, then values as i16).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        match self {
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::Q(q) => {
                let mut out = Vec::new();
                q.write_bytes(&mut out);
                out
            }
        }
    }

    /// Tensor root of the canonical bytes.
    pub fn root(&self) -> B256 {
        let mut hasher = TensorHasher::default();
        hasher.write(&self.canonical_bytes());
        hasher.finish()
    }

    /// Number of values (QVec: int16 values).
    pub fn len(&self) -> usize {
        match self {
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::Q(q) => q.values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of [`TensorView::canonical_bytes`], without building them.
    pub fn byte_len(&self) -> usize {
        match self {
            Self::I32(v) => 4 * v.len(),
            Self::I64(v) => 8 * v.len(),
            Self::Q(q) => 4 * q.exps.len() + 2 * q.values.len(),
        }
    }
}

/// Receives each op's descriptor and output, in trace order.
pub trait TraceSink {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>);

    /// [`TraceSink::record`] of an op whose output root (`out.root()`) the caller has already computed, e.g. in
    /// the background while the engine computed the next ops; committing sinks use `root` instead of hashing
    /// `out` again. `root` must be `out.root()`.
    fn record_hashed(&mut self, desc: &OpDescriptor, out: TensorView<'_>, root: B256) {
        let _ = root;
        self.record(desc, out);
    }

    /// Whether the sink commits output roots, so that computing them ahead ([`TraceSink::record_hashed`]) saves
    /// it work.
    fn commits_roots(&self) -> bool {
        false
    }
}

/// Discards the trace.
#[derive(Debug, Default)]
pub struct NoTrace;

impl TraceSink for NoTrace {
    fn record(&mut self, _: &OpDescriptor, _: TensorView<'_>) {}
}

/// Commits the trace: trace leaf `i = keccak(i ‖ descriptorHash ‖ outputRoot)`, Merkle root over all leaves.
#[derive(Debug, Default)]
pub struct TraceCommitter {
    builder: TraceBuilder,
}

impl TraceSink for TraceCommitter {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        self.builder.push(desc.hash(), out.root());
    }

    fn record_hashed(&mut self, desc: &OpDescriptor, _: TensorView<'_>, root: B256) {
        self.builder.push(desc.hash(), root);
    }

    fn commits_roots(&self) -> bool {
        true
    }
}

impl TraceCommitter {
    pub fn finish(self) -> TraceCommitment {
        self.builder.finish()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RunError {
    #[error("prompt is empty: at least one token is required")]
    EmptyPrompt,
    #[error("prompt token #{index} = {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { index: usize, id: u32, vocab: usize },
    #[error(
        "prompt of {prompt} tokens plus max_tokens {max_tokens} exceeds the context length {context}; \
         shorten the prompt or lower max_tokens"
    )]
    ContextExceeded {
        prompt: usize,
        max_tokens: u32,
        context: usize,
    },
    #[error(transparent)]
    Params(#[from] ParamsError),
}

/// A request's result as the program defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Generated token ids, including the stop token when one ended generation.
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
}

/// Checks a request against the model before running it.
pub fn validate_request(
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
) -> Result<(), RunError> {
    params.validate()?;
    if prompt.is_empty() {
        return Err(RunError::EmptyPrompt);
    }
    let vocab = model.config.vocab_size;
    if let Some((index, &id)) = prompt
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(RunError::TokenOutOfRange { index, id, vocab });
    }
    let context = model.config.context_length;
    if prompt.len() as u64 + u64::from(params.max_tokens) > context as u64 {
        return Err(RunError::ContextExceeded {
            prompt: prompt.len(),
            max_tokens: params.max_tokens,
            context,
        });
    }
    Ok(())
}

/// Runs a request to completion, streaming each token to `on_token`. Generation ends on one of the model's
/// committed stop ids or after `max_tokens`.
pub fn generate(
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
    sink: &mut dyn TraceSink,
    on_token: &mut dyn FnMut(u32),
) -> Result<Generation, RunError> {
    validate_request(model, prompt, params)?;
    let stop_ids = &model.stop_ids;
    let key = params.sampling_key();
    let mut session = Session::new(model, prompt.len(), sink);
    let mut h = Vec::new();
    for &t in prompt {
        h = session.body(t);
    }
    let mut tokens = Vec::new();
    loop {
        let next = session.head(&h, params, key, tokens.len() as u64);
        tokens.push(next);
        on_token(next);
        if stop_ids.contains(&next) {
            return Ok(Generation {
                tokens,
                finish_reason: FinishReason::Stop,
            });
        }
        if tokens.len() >= params.max_tokens as usize {
            return Ok(Generation {
                tokens,
                finish_reason: FinishReason::Length,
            });
        }
        h = session.body(next);
    }
}

/// Runs a request and commits its trace: `(generation, trace root, op count)`.
pub fn generate_committed(
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
) -> Result<(Generation, TraceCommitment), RunError> {
    let mut committer = TraceCommitter::default();
    let generation = generate(model, prompt, params, &mut committer, &mut |_| {})?;
    Ok((generation, committer.finish()))
}

/// One request's state: position, KV cache, and the running trace index.
pub struct Session<'m, 's> {
    model: &'m IntModel,
    program: Program,
    sink: &'s mut dyn TraceSink,
    pos: usize,
    next_index: u64,
    keys: Vec<Vec<Vec<i32>>>,
    values: Vec<Vec<Vec<i32>>>,
}

impl<'m, 's> Session<'m, 's> {
    pub fn new(model: &'m IntModel, prompt_len: usize, sink: &'s mut dyn TraceSink) -> Self {
        let n = model.config.n_layers;
        Self {
            model,
            program: Program::new(model.config.clone(), prompt_len),
            sink,
            pos: 0,
            next_index: 0,
            keys: vec![Vec::new(); n],
            values: vec![Vec::new(); n],
        }
    }

    /// Positions processed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn emit(&mut self, pos: usize, kind: OpKind, out: TensorView<'_>) {
        let desc = self.program.describe(self.next_index, pos as u64, kind);
        debug_assert_eq!(
            self.program.index_of(pos as u64, kind),
            self.next_index,
            "{kind:?} at {pos}"
        );
        debug_assert_eq!(desc.out_len as usize, out.len(), "{kind:?} output length");
        self.sink.record(&desc, out);
        self.next_index += 1;
    }

    /// Runs the body (embedding + all layers) for `token` at the next position; returns the final residual.
    pub fn body(&mut self, token: u32) -> Vec<i32> {
        let m = self.model;
        let c = &m.config;
        let pos = self.pos;
        let eps = m.params.eps_fx;
        let mut h = ops::embed(&m.token_embd, token, RESIDUAL_FRAC);
        self.emit(pos, OpKind::Embed, TensorView::I32(&h));
        for (l, w) in m.layers.iter().enumerate() {
            let k = |op| OpKind::Layer(l as u16, op);
            let x = ops::rms_norm(&h, &w.attn_norm, eps);
            self.emit(pos, k(LayerOp::AttnNorm), TensorView::Q(&x));
            let q = ops::matmul(&w.wq, &x, ACT_FRAC);
            self.emit(pos, k(LayerOp::QProj), TensorView::I32(&q));
            let kp = ops::matmul(&w.wk, &x, ACT_FRAC);
            self.emit(pos, k(LayerOp::KProj), TensorView::I32(&kp));
            let v = ops::matmul(&w.wv, &x, ACT_FRAC);
            self.emit(pos, k(LayerOp::VProj), TensorView::I32(&v));
            let rope_row = m.tables.rope_row(pos, c.head_dim);
            let qr = ops::rope_quant(&q, rope_row, c.head_dim);
            self.emit(pos, k(LayerOp::QRope), TensorView::Q(&qr));
            let kr = ops::rope(&kp, rope_row, c.head_dim);
            self.emit(pos, k(LayerOp::KRope), TensorView::I32(&kr));
            self.keys[l].push(kr);
            self.values[l].push(v);

            let shape = AttnShape {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                n_pos: pos + 1,
            };
            let keys: Vec<&[i32]> = self.keys[l].iter().map(Vec::as_slice).collect();
            let scores = ops::attn_scores(&qr, &keys, shape, m.params.score_scale);
            let cmax = ops::chunk_max(&scores, c.n_heads, ATTN_CHUNK);
            let rmax = ops::row_max(&cmax, c.n_heads);
            let e = ops::attn_exp(&scores, &rmax, &m.tables.exp);
            let csum = ops::chunk_sum(&e, c.n_heads, ATTN_CHUNK);
            let rsum = ops::row_sum(&csum, c.n_heads);
            let values: Vec<&[i32]> = self.values[l].iter().map(Vec::as_slice).collect();
            let wsum = ops::attn_weighted_sums(&e, &values, shape);
            let o = ops::attn_out(&wsum, &rsum, shape);
            let oq = ops::quantize_vec(&o, ACT_FRAC);
            self.emit(pos, k(LayerOp::AttnScores), TensorView::I32(&scores));
            self.emit(pos, k(LayerOp::AttnChunkMax), TensorView::I32(&cmax));
            self.emit(pos, k(LayerOp::AttnMax), TensorView::I32(&rmax));
            self.emit(pos, k(LayerOp::AttnExp), TensorView::I32(&e));
            self.emit(pos, k(LayerOp::AttnChunkSum), TensorView::I64(&csum));
            self.emit(pos, k(LayerOp::AttnSum), TensorView::I64(&rsum));
            self.emit(pos, k(LayerOp::AttnWeightedSum), TensorView::I64(&wsum));
            self.emit(pos, k(LayerOp::AttnOut), TensorView::I32(&o));
            self.emit(pos, k(LayerOp::AttnOutQuant), TensorView::Q(&oq));
            let op = ops::matmul(&w.wo, &oq, RESIDUAL_FRAC);
            self.emit(pos, k(LayerOp::OProj), TensorView::I32(&op));
            h = ops::residual_add(&h, &op);
            self.emit(pos, k(LayerOp::AttnResidual), TensorView::I32(&h));

            let x = ops::rms_norm(&h, &w.ffn_norm, eps);
            self.emit(pos, k(LayerOp::FfnNorm), TensorView::Q(&x));
            let g = ops::matmul(&w.w_gate, &x, ACT_FRAC);
            self.emit(pos, k(LayerOp::GateProj), TensorView::I32(&g));
            let u = ops::matmul(&w.w_up, &x, ACT_FRAC);
            self.emit(pos, k(LayerOp::UpProj), TensorView::I32(&u));
            let s = ops::swiglu(&g, &u, &m.tables.sigmoid);
            self.emit(pos, k(LayerOp::SwiGlu), TensorView::Q(&s));
            let dn = ops::matmul(&w.w_down, &s, RESIDUAL_FRAC);
            self.emit(pos, k(LayerOp::DownProj), TensorView::I32(&dn));
            h = ops::residual_add(&h, &dn);
            self.emit(pos, k(LayerOp::FfnResidual), TensorView::I32(&h));
        }
        self.pos += 1;
        h
    }

    /// Q16 logits of a final residual, outside the trace (for measurements such as teacher-forced agreement).
    pub fn logits_untraced(&self, h: &[i32]) -> Vec<i32> {
        let m = self.model;
        let x = ops::rms_norm(h, &m.output_norm, m.params.eps_fx);
        ops::matmul(m.output_matrix(), &x, ACT_FRAC)
    }

    /// Runs the head on the residual of the last processed position: logits, then the sampling ops; returns the
    /// token for generation step `step`.
    pub fn head(&mut self, h: &[i32], params: &SamplingParams, key: B256, step: u64) -> u32 {
        let m = self.model;
        let pos = self.pos - 1;
        let hk = OpKind::Head;
        let x = ops::rms_norm(h, &m.output_norm, m.params.eps_fx);
        self.emit(pos, hk(HeadOp::OutNorm), TensorView::Q(&x));
        let logits = ops::matmul(m.output_matrix(), &x, ACT_FRAC);
        self.emit(pos, hk(HeadOp::Logits), TensorView::I32(&logits));
        let cmax = ops::logit_chunk_max(&logits, VOCAB_CHUNK);
        self.emit(pos, hk(HeadOp::LogitChunkMax), TensorView::I32(&cmax));
        let max = ops::logit_max(&cmax);
        self.emit(pos, hk(HeadOp::LogitMax), TensorView::I32(&max));
        let e = ops::sample_exp(&logits, max, params.temperature_milli, &m.tables.exp);
        self.emit(pos, hk(HeadOp::SampleExp), TensorView::I32(&e));
        let all = ops::masked_chunk_sum(&e, 0, VOCAB_CHUNK);
        self.emit(pos, hk(HeadOp::SampleChunkSum), TensorView::I64(&all));
        let sum = ops::sample_sum(&all, params.top_p_milli);
        self.emit(pos, hk(HeadOp::SampleSum), TensorView::I64(&sum));
        let mut tau = 0i64;
        for round in 0..TOPP_ROUNDS {
            let sums = ops::masked_chunk_sum(&e, ops::topp_candidate(tau, round), VOCAB_CHUNK);
            self.emit(
                pos,
                hk(HeadOp::TopPChunkSum(round as u8)),
                TensorView::I64(&sums),
            );
            tau = ops::topp_step(&sums, tau, round, sum[1]);
            self.emit(
                pos,
                hk(HeadOp::TopPStep(round as u8)),
                TensorView::I64(&[tau]),
            );
        }
        let kept = ops::masked_chunk_sum(&e, tau, VOCAB_CHUNK);
        self.emit(pos, hk(HeadOp::KeptChunkSum), TensorView::I64(&kept));
        let pick = ops::pick_chunk(&kept, sampling::draw(key, step));
        self.emit(pos, hk(HeadOp::PickChunk), TensorView::I64(&pick));
        let token = ops::pick_token(&e, tau, pick, VOCAB_CHUNK);
        self.emit(pos, hk(HeadOp::PickToken), TensorView::I32(&[token]));
        token as u32
    }
}

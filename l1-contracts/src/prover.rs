//! One-step proof builder: the call data of `DisputeGame.proveOneStep` for element `e` of trace op `i`, from the
//! request's trace and the model (docs/disputes.md §4).
//!
//! The reads mirror `contracts/OneStepProver.sol` exactly: [`plan`] lists, for the op the program layout puts at
//! index `i` ([`vir::program::Program::descriptor`]), which bytes of which earlier op outputs, prompt tokens, weight
//! rows, norm weights and table entries the contract reads; [`one_step_proof`] turns the plan into chunk openings
//! with Merkle proofs under the trace root and the model root. The trace and the model are reached through two small
//! traits, [`TraceData`] and [`ModelData`]: [`RecordedTrace`] (every op output of a run of `vir::interp`, kept in
//! memory) and [`IntModelData`] (an [`IntModel`]'s committed tensors) implement them for real runs; the gas report
//! implements them over synthetic data at SmolLM2's shapes.

use crate::dispute::DisputeGame::{
    Chunks, ModelOpening, OneStepProof, OutputOpening, Request, TraceOpening,
};
use alloy::primitives::{B256, Bytes};
use protocol::MerkleProof;
use protocol::merkle::{MultiProofError, multiproof_nodes};
use protocol::tensor::{CHUNK_BYTES, tensor_root};
use protocol::{MerkleTree, SamplingParams, keccak256, token_ids_root};
use std::borrow::Cow;
use std::sync::LazyLock;
use vir::IntModel;
use vir::interp::{Generation, RunError, TensorView, TraceSink};
use vir::model::matrix_leaf;
use vir::program::{OpDescriptor, OpKind, OutType, Program};
use vir::weights::{QuantKind, QuantMatrix};

const CHUNK: usize = CHUNK_BYTES;
const EXP_LEN: usize = 1 << 14;
const SIGMOID_LEN: usize = 1 << 15;
const HEAD_PICK_TOKEN: u64 = 43;

/// Errors while building a one-step proof.
#[derive(Debug, thiserror::Error)]
pub enum ProverError {
    /// The op index is outside the trace.
    #[error("op {index} is outside the trace ({op_count} ops)")]
    OpOutOfRange {
        /// The index.
        index: u64,
        /// The trace's op count.
        op_count: u64,
    },
    /// The element is outside the op's output.
    #[error("element {element} is outside op {index}'s output ({len} values)")]
    ElementOutOfRange {
        /// The op.
        index: u64,
        /// The element.
        element: u32,
        /// The output length.
        len: u32,
    },
    /// An input value the plan depends on is out of range (a token id, a chunk index, a negative EXP argument).
    #[error("op {index}: input value out of range: {what}")]
    BadInput {
        /// The op.
        index: u64,
        /// What.
        what: &'static str,
    },
    /// The reference interpreter rejected the request.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The trace proofs of the inputs do not form a multiproof (proofs of different depths).
    #[error("input trace proofs: {0}")]
    TraceProofs(#[from] MultiProofError),
}

/// The trace of one request as the proving party holds it.
pub trait TraceData {
    /// The program layout (model config and prompt length).
    fn program(&self) -> &Program;
    /// Number of ops (trace leaves).
    fn op_count(&self) -> u64;
    /// Canonical output bytes of op `index` (docs/vir.md §5.4).
    fn output(&self, index: u64) -> Cow<'_, [u8]>;
    /// Siblings of trace leaf `index` under the trace root, bottom-up.
    fn trace_proof(&self, index: u64) -> Vec<B256>;
    /// The prompt token ids.
    fn prompt(&self) -> &[u32];
}

/// The committed model tensors (docs/vir.md §7) as the proving party holds them.
pub trait ModelData {
    /// Committed bytes of model-root leaf `leaf` and the matrix storage kind (1 = Q4_1, 2 = Q8_0; 0 for vectors
    /// and tables).
    fn tensor(&self, leaf: u64) -> (u8, Cow<'_, [u8]>);
    /// The storage kind of model leaf `leaf` (as [`ModelData::tensor`], without the bytes).
    fn kind(&self, leaf: u64) -> u8;
    /// Siblings of leaf `leaf` under the model root, bottom-up.
    fn model_proof(&self, leaf: u64) -> Vec<B256>;
}

/// Every op output of one run of the reference interpreter, with the trace tree.
#[derive(Debug, Clone)]
pub struct RecordedTrace {
    /// The program layout.
    pub program: Program,
    /// The prompt.
    pub prompt: Vec<u32>,
    /// Each op's descriptor and canonical output bytes, in trace order.
    pub ops: Vec<(OpDescriptor, Vec<u8>)>,
    /// The trace tree (leaf `i = keccak(i ‖ descriptorHash ‖ outputRoot)`).
    pub tree: MerkleTree,
}

#[derive(Default)]
struct Recorder(Vec<(OpDescriptor, Vec<u8>)>);

impl TraceSink for Recorder {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        self.0.push((*desc, out.canonical_bytes()));
    }
}

impl RecordedTrace {
    /// Runs `prompt` with `params` on `model` (`vir::interp::generate`) and keeps every op output.
    pub fn run(
        model: &IntModel,
        prompt: &[u32],
        params: &SamplingParams,
    ) -> Result<(Self, Generation), ProverError> {
        let mut rec = Recorder::default();
        let generation = vir::interp::generate(model, prompt, params, &mut rec, &mut |_| {})?;
        let program = Program::new(model.config.clone(), prompt.len());
        Ok((Self::new(program, prompt.to_vec(), rec.0), generation))
    }

    /// A trace from recorded op outputs (which may be tampered with, to model a lying party).
    pub fn new(program: Program, prompt: Vec<u32>, ops: Vec<(OpDescriptor, Vec<u8>)>) -> Self {
        let leaves = ops
            .iter()
            .enumerate()
            .map(|(i, (d, b))| protocol::trace::trace_leaf(i as u64, d.hash(), tensor_root(b)))
            .collect();
        Self {
            program,
            prompt,
            ops,
            tree: MerkleTree::new(leaves),
        }
    }

    /// The trace root.
    pub fn root(&self) -> B256 {
        self.tree.root()
    }
}

impl TraceData for RecordedTrace {
    fn program(&self) -> &Program {
        &self.program
    }
    fn op_count(&self) -> u64 {
        self.ops.len() as u64
    }
    fn output(&self, index: u64) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.ops[index as usize].1)
    }
    fn trace_proof(&self, index: u64) -> Vec<B256> {
        self.tree
            .proof(index)
            .map(|p| p.siblings)
            .unwrap_or_default()
    }
    fn prompt(&self) -> &[u32] {
        &self.prompt
    }
}

/// An [`IntModel`]'s committed tensors and its model tree.
#[derive(Debug)]
pub struct IntModelData<'a> {
    model: &'a IntModel,
    tree: MerkleTree,
}

impl<'a> IntModelData<'a> {
    /// The model's tensors in model-root order.
    pub fn new(model: &'a IntModel) -> Self {
        let tree = MerkleTree::new(model.tensor_roots.iter().map(|(_, r)| *r).collect());
        Self { model, tree }
    }

    /// The model root.
    pub fn root(&self) -> B256 {
        self.tree.root()
    }
}

/// The matrix kind byte of `matrix_leaf`.
pub fn matrix_kind(m: &QuantMatrix) -> u8 {
    match m.kind {
        QuantKind::Q4_1 => 1,
        QuantKind::Q8_0 => 2,
    }
}

fn i32_le(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(i32::to_le_bytes).collect()
}

impl ModelData for IntModelData<'_> {
    fn tensor(&self, leaf: u64) -> (u8, Cow<'_, [u8]>) {
        let m = self.model;
        let nl = m.config.n_layers as u64;
        let gamma = |g: &[i64]| (0, Cow::Owned(i32_le(g.iter().map(|&v| v as i32))));
        let mat = |q: &'_ QuantMatrix| (matrix_kind(q), Cow::Owned(q.raw.clone()));
        if leaf == 0 {
            return mat(&m.token_embd);
        }
        if leaf <= 9 * nl {
            let l = &m.layers[((leaf - 1) / 9) as usize];
            return match (leaf - 1) % 9 {
                0 => gamma(&l.attn_norm),
                1 => mat(&l.wq),
                2 => mat(&l.wk),
                3 => mat(&l.wv),
                4 => mat(&l.wo),
                5 => gamma(&l.ffn_norm),
                6 => mat(&l.w_gate),
                7 => mat(&l.w_up),
                _ => mat(&l.w_down),
            };
        }
        let mut k = leaf - 9 * nl - 1;
        if k == 0 {
            return gamma(&m.output_norm);
        }
        if let Some(out) = &m.output {
            if k == 1 {
                return mat(out);
            }
            k -= 1;
        }
        let t = &m.tables;
        match k {
            1 => (0, Cow::Owned(i32_le(t.exp.iter().copied()))),
            2 => (0, Cow::Owned(i32_le(t.sigmoid.iter().copied()))),
            _ => (0, Cow::Owned(i32_le(t.rope.iter().copied()))),
        }
    }

    fn kind(&self, leaf: u64) -> u8 {
        let m = self.model;
        let nl = m.config.n_layers as u64;
        match leaf {
            0 => matrix_kind(&m.token_embd),
            l if l <= 9 * nl => {
                let w = &m.layers[((l - 1) / 9) as usize];
                match (l - 1) % 9 {
                    1 => matrix_kind(&w.wq),
                    2 => matrix_kind(&w.wk),
                    3 => matrix_kind(&w.wv),
                    4 => matrix_kind(&w.wo),
                    6 => matrix_kind(&w.w_gate),
                    7 => matrix_kind(&w.w_up),
                    8 => matrix_kind(&w.w_down),
                    _ => 0,
                }
            }
            l if l == 9 * nl + 2 => m.output.as_ref().map_or(0, matrix_kind),
            _ => 0,
        }
    }

    fn model_proof(&self, leaf: u64) -> Vec<B256> {
        self.tree
            .proof(leaf)
            .map(|p| p.siblings)
            .unwrap_or_default()
    }
}

/// Where a trace read comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The prompt token ids (an Embed op at a prompt position).
    Prompt,
    /// The output of trace op `index`.
    Op(u64),
}

/// Bytes `[from, to)` of a trace tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRead {
    /// Which tensor.
    pub source: Source,
    /// First byte.
    pub from: usize,
    /// End byte.
    pub to: usize,
}

/// A read of a model tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRead {
    /// Bytes `[from, to)` of model leaf `leaf`.
    Range {
        /// Model-root leaf.
        leaf: u64,
        /// First byte.
        from: usize,
        /// End byte.
        to: usize,
    },
    /// Whole chunks `chunks` (ascending) of model leaf `leaf` (SwiGlu's SIGMOID lookups).
    Chunks {
        /// Model-root leaf.
        leaf: u64,
        /// Chunk indices.
        chunks: Vec<u64>,
    },
}

/// What a one-step proof of one element reads, in the contract's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The disputed op's descriptor.
    pub op: OpDescriptor,
    /// Bytes of the disputed op's own output (the element, with its exponent for QVec outputs).
    pub out: (usize, usize),
    /// Inputs (`proof.inputs`).
    pub inputs: Vec<TraceRead>,
    /// Weights and tables (`proof.weights`).
    pub weights: Vec<ModelRead>,
}

fn chunks_of(n: usize, k: usize) -> usize {
    if n == 0 { 1 } else { n.div_ceil(k) }
}

fn le_i32(b: &[u8], off: usize) -> i64 {
    i64::from(i32::from_le_bytes(
        b[off..off + 4].try_into().expect("4 bytes"),
    ))
}

fn le_i64(b: &[u8], off: usize) -> i64 {
    i64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Canonical byte length of an op's output.
pub fn byte_len(d: &OpDescriptor) -> usize {
    match d.out_type {
        OutType::I32 => 4 * d.out_len as usize,
        OutType::I64 => 8 * d.out_len as usize,
        OutType::QVec => 4 * d.out_groups as usize + 2 * d.out_len as usize,
    }
}

/// The reads of a one-step proof of element `element` of op `index` (mirrors `OneStepProver.sol`).
pub fn plan<T: TraceData + ?Sized, M: ModelData + ?Sized>(
    trace: &T,
    model: &M,
    temperature_milli: u32,
    index: u64,
    element: u32,
) -> Result<Plan, ProverError> {
    let p = trace.program();
    if index >= trace.op_count() {
        return Err(ProverError::OpOutOfRange {
            index,
            op_count: trace.op_count(),
        });
    }
    let o = p.descriptor(index);
    if element >= o.out_len {
        return Err(ProverError::ElementOutOfRange {
            index,
            element,
            len: o.out_len,
        });
    }
    let c = &p.config;
    let e = element as usize;
    let pos = u64::from(o.pos);
    let (code, layer, round) = o.code();
    let layer = u64::from(layer);
    let nl = c.n_layers as u64;
    let (d, dff, nh, hd) = (c.d_model, c.d_ff, c.n_heads, c.head_dim);
    let group = nh / c.n_kv_heads;
    let n_pos = pos as usize + 1;
    let nc = chunks_of(n_pos, 64);
    let nv = chunks_of(c.vocab_size, 1024);
    let exp_leaf = 9 * nl + if c.tied_output { 2 } else { 3 };
    let rope_leaf = exp_leaf + 2;
    let start = p.position_start(pos);
    let body = p.body_ops();
    let li = |code: u64| start + 1 + 23 * layer + code - 1;
    let li_at = |at: u64, code: u64| p.position_start(at) + 1 + 23 * layer + code - 1;
    let hi = |slot: u64| start + body + slot;
    let h_in = |l: u64| {
        if l == 0 {
            start
        } else {
            start + 1 + 23 * (l - 1) + 22
        }
    };
    let op = |j: u64, from: usize, to: usize| TraceRead {
        source: Source::Op(j),
        from,
        to,
    };
    let range = |leaf: u64, from: usize, to: usize| ModelRead::Range { leaf, from, to };
    let out = match o.out_type {
        OutType::I32 => (4 * e, 4 * e + 4),
        OutType::I64 => (8 * e, 8 * e + 8),
        OutType::QVec => {
            let g = e / (o.out_len / o.out_groups) as usize;
            (4 * g, 4 * o.out_groups as usize + 2 * e + 2)
        }
    };
    let bad = |what| ProverError::BadInput { index, what };
    let val32 = |j: u64, off: usize| le_i32(&trace.output(j), off);
    let val64 = |j: u64, off: usize| le_i64(&trace.output(j), off);
    let vocab = |ch: usize| (1024 * ch, (1024 * ch + 1024).min(c.vocab_size));
    let mut inputs = Vec::new();
    let mut weights = Vec::new();
    let block = |kind: u8| if kind == 2 { 34 } else { 20 };
    match (o.kind, code) {
        (OpKind::Embed, _) => {
            let token = if pos < p.prompt_len as u64 {
                inputs.push(TraceRead {
                    source: Source::Prompt,
                    from: 4 * pos as usize,
                    to: 4 * pos as usize + 4,
                });
                trace.prompt()[pos as usize] as usize
            } else {
                let j = p.position_start(pos - 1) + body + HEAD_PICK_TOKEN;
                inputs.push(op(j, 0, 4));
                usize::try_from(val32(j, 0)).map_err(|_| bad("token"))?
            };
            if token >= c.vocab_size {
                return Err(bad("token"));
            }
            let bb = block(model.kind(0));
            let from = (token * (d / 32) + e / 32) * bb;
            weights.push(range(0, from, from + bb));
        }
        (_, 1 | 18 | 64) => {
            let (h, g) = match code {
                1 => (h_in(layer), 1 + 9 * layer),
                18 => (li(17), 1 + 9 * layer + 5),
                _ => (start + 1 + 23 * (nl - 1) + 22, 9 * nl + 1),
            };
            inputs.push(op(h, 0, 4 * d));
            weights.push(range(g, 0, 4 * d));
        }
        (_, 2 | 3 | 4 | 16 | 19 | 20 | 22 | 65) => {
            let (x, leaf, cols) = match code {
                2..=4 => (li(1), 1 + 9 * layer + u64::from(code) - 1, d),
                16 => (li(15), 1 + 9 * layer + 4, d),
                19 | 20 => (li(18), 1 + 9 * layer + u64::from(code) - 13, d),
                22 => (li(21), 1 + 9 * layer + 8, dff),
                _ => (hi(0), if c.tied_output { 0 } else { 9 * nl + 2 }, d),
            };
            inputs.push(op(x, 0, 4 + 2 * cols));
            let row = cols / 32 * block(model.kind(leaf));
            weights.push(range(leaf, e * row, (e + 1) * row));
        }
        (_, 5) => {
            let h = e / hd;
            inputs.push(op(li(2), 4 * h * hd, 4 * (h + 1) * hd));
            let pu = pos as usize;
            weights.push(range(rope_leaf, 4 * pu * hd, 4 * (pu + 1) * hd));
        }
        (_, 6) => {
            let pe = e & !1;
            inputs.push(op(li(3), 4 * pe, 4 * pe + 8));
            let t = pos as usize * hd + ((e % hd) & !1);
            weights.push(range(rope_leaf, 4 * t, 4 * t + 8));
        }
        (_, 7) => {
            let (h, j) = (e / n_pos, e % n_pos);
            let kv = h / group;
            inputs.push(op(li(5), 4 * h, 4 * nh + 2 * (h + 1) * hd));
            inputs.push(op(li_at(j as u64, 6), 4 * kv * hd, 4 * (kv + 1) * hd));
        }
        (_, 8 | 11) => {
            let (h, a) = (e / nc, 64 * (e % nc));
            let b = (a + 64).min(n_pos);
            let src = if code == 8 { 7 } else { 10 };
            inputs.push(op(li(src), 4 * (h * n_pos + a), 4 * (h * n_pos + b)));
        }
        (_, 9 | 12) => {
            let (src, w) = if code == 9 { (8, 4) } else { (11, 8) };
            inputs.push(op(li(src), w * e * nc, w * (e + 1) * nc));
        }
        (_, 10) => {
            let h = e / n_pos;
            inputs.push(op(li(7), 4 * e, 4 * e + 4));
            inputs.push(op(li(9), 4 * h, 4 * h + 4));
            let diff = val32(li(9), 4 * h) - val32(li(7), 4 * e);
            if diff < 0 {
                return Err(bad("negative EXP argument"));
            }
            let idx = (diff >> 6) as usize;
            if idx < EXP_LEN {
                weights.push(range(exp_leaf, 4 * idx, 4 * idx + 4));
            }
        }
        (_, 13) => {
            let hdi = e / nc;
            let (h, dd) = (hdi / hd, hdi % hd);
            let col = (h / group) * hd + dd;
            let a = 64 * (e % nc);
            let b = (a + 64).min(n_pos);
            inputs.push(op(li(10), 4 * (h * n_pos + a), 4 * (h * n_pos + b)));
            for j in a..b {
                inputs.push(op(li_at(j as u64, 4), 4 * col, 4 * col + 4));
            }
        }
        (_, 14) => {
            let h = e / hd;
            inputs.push(op(li(13), 8 * e * nc, 8 * (e + 1) * nc));
            inputs.push(op(li(12), 8 * h, 8 * h + 8));
        }
        (_, 15) => inputs.push(op(li(14), 0, 4 * d)),
        (_, 17 | 23) => {
            let (a, b) = if code == 17 {
                (h_in(layer), li(16))
            } else {
                (li(17), li(22))
            };
            inputs.push(op(a, 4 * e, 4 * e + 4));
            inputs.push(op(b, 4 * e, 4 * e + 4));
        }
        (_, 21) => {
            inputs.push(op(li(19), 0, 4 * dff));
            inputs.push(op(li(20), 0, 4 * dff));
            let gate = trace.output(li(19));
            let mut chunks: Vec<u64> = (0..dff)
                .map(|i| {
                    let idx = ((le_i32(&gate, 4 * i) >> 6) + (SIGMOID_LEN as i64 >> 1))
                        .clamp(0, SIGMOID_LEN as i64 - 1);
                    (idx as u64) >> 8
                })
                .collect();
            chunks.sort_unstable();
            chunks.dedup();
            weights.push(ModelRead::Chunks {
                leaf: exp_leaf + 1,
                chunks,
            });
        }
        (_, 66) => {
            let (a, b) = vocab(e / 2);
            inputs.push(op(hi(1), 4 * a, 4 * b));
        }
        (_, 67) => inputs.push(op(hi(2), 0, 8 * nv)),
        (_, 68) => {
            inputs.push(op(hi(1), 4 * e, 4 * e + 4));
            inputs.push(op(hi(3), 0, 8));
            if let Some(idx) = sample_exp_index(
                val32(hi(1), 4 * e),
                val32(hi(3), 0),
                Some(temperature_milli),
            ) {
                weights.push(range(exp_leaf, 4 * idx, 4 * idx + 4));
            }
        }
        (_, 70) => inputs.push(op(hi(5), 0, 8 * nv)),
        (_, 69 | 105) | (_, 71..=103) if code == 69 || code == 105 || (code - 71) % 2 == 0 => {
            let (a, b) = vocab(e);
            inputs.push(op(hi(4), 4 * a, 4 * b));
            if code == 105 {
                inputs.push(op(hi(40), 0, 8));
            } else if code != 69 && round > 0 {
                inputs.push(op(hi(6 + 2 * u64::from(round)), 0, 8));
            }
        }
        (_, 72..=104) => {
            let r = u64::from(round);
            inputs.push(op(hi(7 + 2 * r), 0, 8 * nv));
            inputs.push(op(hi(6), 8, 16));
            if r > 0 {
                inputs.push(op(hi(6 + 2 * r), 0, 8));
            }
        }
        (_, 106) => inputs.push(op(hi(41), 0, 8 * nv)),
        _ => {
            // 107 PickToken
            inputs.push(op(hi(42), 0, 16));
            inputs.push(op(hi(40), 0, 8));
            let ch = val64(hi(42), 0);
            if ch < 0 || ch as usize >= nv {
                return Err(bad("chunk"));
            }
            let (a, b) = vocab(ch as usize);
            inputs.push(op(hi(4), 4 * a, 4 * b));
        }
    }
    Ok(Plan {
        op: o,
        out,
        inputs,
        weights,
    })
}

/// SampleExp's EXP index (`OneStepVerifier.sampleExpIndex`), `None` when no entry is read.
fn sample_exp_index(logit: i64, lmax: i64, temperature_milli: Option<u32>) -> Option<usize> {
    let t = i64::from(temperature_milli?);
    if t == 0 {
        return None;
    }
    let diff = (lmax - logit) * 1000 / t;
    let idx = diff >> 6;
    (0..EXP_LEN as i64).contains(&idx).then_some(idx as usize)
}

/// Chunks `[from / 1024, (to - 1) / 1024]` of `bytes`, trimmed to the tensor length, with proofs.
fn chunks(bytes: &[u8], from: usize, to: usize) -> Chunks {
    let first = from / CHUNK;
    let last = (to - 1) / CHUNK;
    chunk_set(bytes, (first..=last).map(|c| c as u64))
}

fn chunk_set(bytes: &[u8], indices: impl IntoIterator<Item = u64>) -> Chunks {
    let leaves = protocol::tensor::chunk_leaves(bytes);
    let tree = MerkleTree::new(leaves);
    let mut out = Chunks {
        index: Vec::new(),
        data: Vec::new(),
        proofs: Vec::new(),
    };
    for c in indices {
        let a = c as usize * CHUNK;
        let b = (a + CHUNK).min(bytes.len());
        out.index.push(c);
        out.data.push(Bytes::copy_from_slice(&bytes[a.min(b)..b]));
        out.proofs
            .push(tree.proof(c).map(|p| p.siblings).unwrap_or_default());
    }
    out
}

/// The request fields `DisputeGame.open` checks against a leaf.
pub fn request(
    model_root: B256,
    prompt: &[u32],
    output: &[u32],
    params: &SamplingParams,
) -> Request {
    let inner = |ids: &[u32]| {
        tensor_root(
            &ids.iter()
                .flat_map(|t| t.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    };
    debug_assert_eq!(
        keccak256(
            [
                (prompt.len() as u64).to_be_bytes().as_slice(),
                inner(prompt).as_slice()
            ]
            .concat()
        ),
        token_ids_root(prompt)
    );
    Request {
        modelRoot: model_root,
        promptLen: prompt.len() as u32,
        promptTensorRoot: inner(prompt),
        outputLen: output.len() as u32,
        outputTensorRoot: inner(output),
        maxTokens: params.max_tokens,
        temperatureMilli: params.temperature_milli,
        topPMilli: params.top_p_milli,
        seed: params.seed,
        choiceIndex: params.choice_index,
    }
}

/// Tensor root of the VIR SIGMOID table, the table `dispute::deploy_prover` gives `OneStepProver` (`sigmoidRoot`).
pub fn held_sigmoid_root() -> B256 {
    static ROOT: LazyLock<B256> =
        LazyLock::new(|| tensor_root(&i32_le(vir::tables::sigmoid_table())));
    *ROOT
}

/// The one-step proof of element `element` of op `index`: `exec` is the executor's trace (its output opening and
/// the inputs, which the challenger agreed to), `model` the committed model, `temperature_milli` the request's.
///
/// The input trace leaves are opened by one multiproof (`traceNodes`, docs/protocol.md §1.1). SwiGlu's SIGMOID
/// lookups open no chunk when the model's SIGMOID leaf is the VIR table ([`held_sigmoid_root`]): the prover
/// contract reads them from its own copy.
pub fn one_step_proof<T: TraceData + ?Sized, M: ModelData + ?Sized>(
    exec: &T,
    model: &M,
    temperature_milli: u32,
    index: u64,
    element: u32,
) -> Result<OneStepProof, ProverError> {
    let plan = plan(exec, model, temperature_milli, index, element)?;
    let out_bytes = exec.output(index);
    let out = OutputOpening {
        outputRoot: tensor_root(&out_bytes),
        chunks: chunks(&out_bytes, plan.out.0, plan.out.1),
    };
    let prompt_bytes: Vec<u8> = exec.prompt().iter().flat_map(|t| t.to_le_bytes()).collect();
    let mut leaf_proofs = Vec::new();
    let inputs = plan
        .inputs
        .iter()
        .map(|r| match r.source {
            Source::Prompt => OutputOpening {
                outputRoot: tensor_root(&prompt_bytes),
                chunks: chunks(&prompt_bytes, r.from, r.to),
            },
            Source::Op(j) => {
                let b = exec.output(j);
                leaf_proofs.push(MerkleProof {
                    index: j,
                    siblings: exec.trace_proof(j),
                });
                OutputOpening {
                    outputRoot: tensor_root(&b),
                    chunks: chunks(&b, r.from, r.to),
                }
            }
        })
        .collect();
    let trace_nodes = multiproof_nodes(&leaf_proofs)?;
    let weights = plan
        .weights
        .iter()
        .map(|w| {
            let (leaf, sel) = match w {
                ModelRead::Range { leaf, .. } | ModelRead::Chunks { leaf, .. } => (*leaf, w),
            };
            let (kind, bytes) = model.tensor(leaf);
            let root = tensor_root(&bytes);
            let chunks = match sel {
                ModelRead::Chunks { .. } if root == held_sigmoid_root() => chunk_set(&bytes, []),
                ModelRead::Chunks { chunks: cs, .. } => chunk_set(&bytes, cs.iter().copied()),
                ModelRead::Range { from, to, .. } => chunks(&bytes, *from, *to),
            };
            ModelOpening {
                kind,
                tensorRoot: root,
                modelProof: model.model_proof(leaf),
                chunks,
            }
        })
        .collect();
    Ok(OneStepProof {
        out,
        inputs,
        traceNodes: trace_nodes,
        weights,
    })
}

/// The model-root leaf of a matrix (`vir::model::matrix_leaf`), re-exported for synthetic model data.
pub fn matrix_model_leaf(m: &QuantMatrix) -> B256 {
    matrix_leaf(m)
}

/// The rollup's `ModelConfig` of `model` (docs/vir.md §7 order); its `config_hash` is the model root's last leaf.
pub fn model_config(model: &IntModel) -> crate::bindings::InferenceRollup::ModelConfig {
    let c = &model.config;
    crate::bindings::InferenceRollup::ModelConfig {
        virVersion: u64::from(vir::VIR_VERSION),
        nLayers: c.n_layers as u64,
        dModel: c.d_model as u64,
        dFf: c.d_ff as u64,
        nHeads: c.n_heads as u64,
        nKvHeads: c.n_kv_heads as u64,
        headDim: c.head_dim as u64,
        vocabSize: c.vocab_size as u64,
        contextLength: c.context_length as u64,
        tiedOutput: u64::from(c.tied_output),
        epsFx: model.params.eps_fx as u64,
        scoreScale: model.params.score_scale as u64,
        residualFrac: u64::from(vir::ops::RESIDUAL_FRAC),
        actFrac: u64::from(vir::ops::ACT_FRAC),
        attnChunk: vir::ops::ATTN_CHUNK as u64,
        vocabChunk: vir::ops::VOCAB_CHUNK as u64,
        toppRounds: vir::ops::TOPP_ROUNDS as u64,
        tableFrac: u64::from(vir::tables::TABLE_FRAC),
    }
}

/// `registerModel`'s arguments for `model`: root, config, and the proof of the config leaf (the last leaf).
pub fn model_registration(
    model: &IntModel,
) -> (
    B256,
    crate::bindings::InferenceRollup::ModelConfig,
    Vec<B256>,
) {
    let data = IntModelData::new(model);
    let last = model.tensor_roots.len() as u64 - 1;
    (model.root, model_config(model), data.model_proof(last))
}

/// The openings of `DisputeGame.proveOutputMismatch` for generation step `step`: the trace's PickToken op of that
/// step (under the trace root) and the chunk of the leaf's output token list holding token `step`.
pub fn output_mismatch_openings<T: TraceData + ?Sized>(
    trace: &T,
    output: &[u32],
    step: u32,
) -> (TraceOpening, Chunks) {
    let p = trace.program();
    let pos = (p.prompt_len - 1) as u64 + u64::from(step);
    let j = p.position_start(pos) + p.body_ops() + HEAD_PICK_TOKEN;
    let b = trace.output(j);
    let pick = TraceOpening {
        outputRoot: tensor_root(&b),
        traceProof: trace.trace_proof(j),
        chunks: chunks(&b, 0, 4),
    };
    let out: Vec<u8> = output.iter().flat_map(|t| t.to_le_bytes()).collect();
    let s = 4 * step as usize;
    (pick, chunks(&out, s, s + 4))
}

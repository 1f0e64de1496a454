//! Replay for disputes: regenerates any trace op's inputs and output by re-running the request
//! deterministically on the engine, stopping as soon as the op has been computed.
//!
//! [`op_inputs`] is the input wiring of docs/vir.md §5.1 (which earlier trace ops, and which request-level values,
//! one op reads); [`replay`] runs the request with an [`OpCapture`] sink that keeps just those ops. Model data
//! (weights, norm weights, tables) and the request's sampling parameters are inputs too, but they are committed
//! under the model root and the request leaf, so they are not repeated here.

use crate::engine::{BurnEngine, DEFAULT_PREFILL_CHUNK};
use crate::error::EngineError;
use crate::trace::OpOutput;
use crate::{BatchItem, RequestState};
use burn::tensor::backend::Backend;
use protocol::SamplingParams;
use std::collections::BTreeMap;
use thiserror::Error;
use vir::interp::{TensorView, TraceSink};
use vir::ops::TOPP_ROUNDS;
use vir::program::{HeadOp, LayerOp, OpDescriptor, OpKind, Program};
use vir::sampling;

/// Where one input of an op comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// The output of the trace op at this index.
    Op(u64),
    /// The token an Embed op looks up: `prompt[pos]`, or the token generated at `pos - 1`.
    Token { pos: u64 },
    /// The ChaCha20 draw of generation step `step` that PickChunk uses.
    Draw { step: u64 },
}

/// One input value of a replayed op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpInput {
    /// An earlier op's output.
    Op {
        desc: OpDescriptor,
        value: OpOutput,
    },
    Token(u32),
    Draw(u64),
}

/// A replayed op: its descriptor, its inputs in [`op_inputs`] order, and its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedOp {
    pub desc: OpDescriptor,
    pub inputs: Vec<OpInput>,
    pub output: OpOutput,
}

/// Why a replay failed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The request has fewer ops than the index asked for.
    #[error(
        "op index {index} is past the end of the trace ({op_count} ops); pick an index below {op_count}"
    )]
    OutOfRange { index: u64, op_count: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The run did not produce an op the program says it reads (a bug).
    #[error("replay did not capture op {index} ({what})")]
    Missing { index: u64, what: &'static str },
}

/// The inputs of trace op `index` (docs/vir.md §5.1), in the order the op's formula lists them. The KV
/// inputs of AttnScores and AttnWeightedSum are the KRope / VProj ops of every position `0..=pos`.
pub fn op_inputs(program: &Program, index: u64) -> Vec<InputSource> {
    use InputSource::{Draw, Op, Token};
    let desc = program.descriptor(index);
    let pos = u64::from(desc.pos);
    let at = |kind| Op(program.index_of(pos, kind));
    let n_layers = program.config.n_layers;
    match desc.kind {
        OpKind::Embed => vec![Token { pos }],
        OpKind::Layer(l, op) => {
            let ly = |o| at(OpKind::Layer(l, o));
            let h_in = if l == 0 {
                at(OpKind::Embed)
            } else {
                at(OpKind::Layer(l - 1, LayerOp::FfnResidual))
            };
            let history = |o| {
                (0..=pos)
                    .map(move |p| Op(program.index_of(p, OpKind::Layer(l, o))))
                    .collect::<Vec<_>>()
            };
            use LayerOp as L;
            match op {
                L::AttnNorm => vec![h_in],
                L::QProj | L::KProj | L::VProj => vec![ly(L::AttnNorm)],
                L::QRope => vec![ly(L::QProj)],
                L::KRope => vec![ly(L::KProj)],
                L::AttnScores => {
                    let mut v = vec![ly(L::QRope)];
                    v.extend(history(L::KRope));
                    v
                }
                L::AttnChunkMax => vec![ly(L::AttnScores)],
                L::AttnMax => vec![ly(L::AttnChunkMax)],
                L::AttnExp => vec![ly(L::AttnScores), ly(L::AttnMax)],
                L::AttnChunkSum => vec![ly(L::AttnExp)],
                L::AttnSum => vec![ly(L::AttnChunkSum)],
                L::AttnWeightedSum => {
                    let mut v = vec![ly(L::AttnExp)];
                    v.extend(history(L::VProj));
                    v
                }
                L::AttnOut => vec![ly(L::AttnWeightedSum), ly(L::AttnSum)],
                L::AttnOutQuant => vec![ly(L::AttnOut)],
                L::OProj => vec![ly(L::AttnOutQuant)],
                L::AttnResidual => vec![h_in, ly(L::OProj)],
                L::FfnNorm => vec![ly(L::AttnResidual)],
                L::GateProj | L::UpProj => vec![ly(L::FfnNorm)],
                L::SwiGlu => vec![ly(L::GateProj), ly(L::UpProj)],
                L::DownProj => vec![ly(L::SwiGlu)],
                L::FfnResidual => vec![ly(L::AttnResidual), ly(L::DownProj)],
            }
        }
        OpKind::Head(h) => {
            let hd = |o| at(OpKind::Head(o));
            let last = TOPP_ROUNDS as u8 - 1;
            let tau = |r: u8| r.checked_sub(1).map(|p| hd(HeadOp::TopPStep(p)));
            use HeadOp as H;
            match h {
                H::OutNorm => vec![at(OpKind::Layer(
                    n_layers.saturating_sub(1) as u16,
                    LayerOp::FfnResidual,
                ))],
                H::Logits => vec![hd(H::OutNorm)],
                H::LogitChunkMax => vec![hd(H::Logits)],
                H::LogitMax => vec![hd(H::LogitChunkMax)],
                H::SampleExp => vec![hd(H::Logits), hd(H::LogitMax)],
                H::SampleChunkSum => vec![hd(H::SampleExp)],
                H::SampleSum => vec![hd(H::SampleChunkSum)],
                H::TopPChunkSum(r) => std::iter::once(hd(H::SampleExp)).chain(tau(r)).collect(),
                H::TopPStep(r) => std::iter::once(hd(H::TopPChunkSum(r)))
                    .chain(tau(r))
                    .chain(std::iter::once(hd(H::SampleSum)))
                    .collect(),
                H::KeptChunkSum => vec![hd(H::SampleExp), hd(H::TopPStep(last))],
                H::PickChunk => vec![
                    hd(H::KeptChunkSum),
                    Draw {
                        step: pos + 1 - program.prompt_len as u64,
                    },
                ],
                H::PickToken => vec![hd(H::SampleExp), hd(H::TopPStep(last)), hd(H::PickChunk)],
            }
        }
    }
}

/// A trace sink that keeps the descriptors and outputs of chosen op indices.
#[derive(Debug, Default)]
pub struct OpCapture {
    ops: BTreeMap<u64, Option<(OpDescriptor, OpOutput)>>,
}

impl OpCapture {
    /// Captures the ops at `indices`.
    pub fn new(indices: impl IntoIterator<Item = u64>) -> Self {
        Self {
            ops: indices.into_iter().map(|i| (i, None)).collect(),
        }
    }

    /// The captured op at `index`, if it was asked for and has run.
    pub fn get(&self, index: u64) -> Option<&(OpDescriptor, OpOutput)> {
        self.ops.get(&index).and_then(Option::as_ref)
    }

    /// Removes and returns the captured op at `index`.
    pub fn take(&mut self, index: u64) -> Option<(OpDescriptor, OpOutput)> {
        self.ops.get_mut(&index).and_then(Option::take)
    }
}

impl TraceSink for OpCapture {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        if let Some(slot) = self.ops.get_mut(&desc.index) {
            *slot = Some((*desc, OpOutput::from(out)));
        }
    }
}

/// Re-runs the request `(prompt, params)` on `engine` up to trace op `op_index` and returns that op's descriptor,
/// inputs ([`op_inputs`]) and output, exactly as a full run computes them.
pub fn replay<B: Backend>(
    engine: &BurnEngine<B>,
    prompt: &[u32],
    params: &SamplingParams,
    op_index: u64,
) -> Result<ReplayedOp, ReplayError> {
    let program = Program::new(engine.config().clone(), prompt.len());
    let op_count = program.op_count(params.max_tokens as usize);
    if op_index >= op_count {
        return Err(ReplayError::OutOfRange {
            index: op_index,
            op_count,
        });
    }
    let sources = op_inputs(&program, op_index);
    let mut capture = OpCapture::new(
        sources
            .iter()
            .filter_map(|s| match s {
                InputSource::Op(i) => Some(*i),
                _ => None,
            })
            .chain(std::iter::once(op_index)),
    );
    let mut request: RequestState<B> = engine.start(prompt, params)?;
    while request.ops_emitted() <= op_index && !request.is_finished() {
        let positions = request.max_step_positions().min(DEFAULT_PREFILL_CHUNK);
        engine.forward_batch(&mut [BatchItem {
            request: &mut request,
            positions,
            sink: &mut capture,
        }])?;
    }
    if request.ops_emitted() <= op_index {
        return Err(ReplayError::OutOfRange {
            index: op_index,
            op_count: request.ops_emitted(),
        });
    }
    let mut inputs = Vec::with_capacity(sources.len());
    for source in sources {
        inputs.push(match source {
            InputSource::Op(i) => {
                let (desc, value) = capture.get(i).cloned().ok_or(ReplayError::Missing {
                    index: i,
                    what: "input",
                })?;
                OpInput::Op { desc, value }
            }
            InputSource::Token { pos } => {
                let pos = pos as usize;
                let token = match pos.checked_sub(prompt.len()) {
                    None => prompt.get(pos).copied(),
                    Some(g) => request.tokens().get(g).copied(),
                };
                OpInput::Token(token.ok_or(ReplayError::Missing {
                    index: op_index,
                    what: "embedded token",
                })?)
            }
            InputSource::Draw { step } => {
                OpInput::Draw(sampling::draw(params.sampling_key(), step))
            }
        });
    }
    let (desc, output) = capture.take(op_index).ok_or(ReplayError::Missing {
        index: op_index,
        what: "output",
    })?;
    Ok(ReplayedOp {
        desc,
        inputs,
        output,
    })
}

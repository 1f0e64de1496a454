//! The canonical per-token trace: which op sits at trace index `i`, as a pure function of
//! (model config, prompt length, i), and each op's descriptor hash.
//!
//! Every position runs the body (embedding + layers). Positions from `prompt_len - 1` on also run the head
//! (final norm, logits, sampling), which produces the next token. Layout and input wiring: docs/vir.md §Program.

use crate::config::LlamaConfig;
use crate::ops::{ATTN_CHUNK, TOPP_ROUNDS, VOCAB_CHUNK, n_chunks};
use alloy_primitives::{B256, keccak256};

/// Ops of one decoder layer, in trace order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LayerOp {
    AttnNorm = 0,
    QProj,
    KProj,
    VProj,
    QRope,
    KRope,
    AttnScores,
    AttnChunkMax,
    AttnMax,
    AttnExp,
    AttnChunkSum,
    AttnSum,
    AttnWeightedSum,
    AttnOut,
    AttnOutQuant,
    OProj,
    AttnResidual,
    FfnNorm,
    GateProj,
    UpProj,
    SwiGlu,
    DownProj,
    FfnResidual,
}

impl LayerOp {
    pub const ALL: [LayerOp; 23] = [
        Self::AttnNorm,
        Self::QProj,
        Self::KProj,
        Self::VProj,
        Self::QRope,
        Self::KRope,
        Self::AttnScores,
        Self::AttnChunkMax,
        Self::AttnMax,
        Self::AttnExp,
        Self::AttnChunkSum,
        Self::AttnSum,
        Self::AttnWeightedSum,
        Self::AttnOut,
        Self::AttnOutQuant,
        Self::OProj,
        Self::AttnResidual,
        Self::FfnNorm,
        Self::GateProj,
        Self::UpProj,
        Self::SwiGlu,
        Self::DownProj,
        Self::FfnResidual,
    ];
}

/// Ops per layer.
pub const LAYER_OPS: usize = LayerOp::ALL.len();

/// Ops of the head, in trace order; top-p rounds repeat `TopPChunkSum`, `TopPStep` for each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOp {
    OutNorm,
    Logits,
    LogitChunkMax,
    LogitMax,
    SampleExp,
    SampleChunkSum,
    SampleSum,
    TopPChunkSum(u8),
    TopPStep(u8),
    KeptChunkSum,
    PickChunk,
    PickToken,
}

/// Ops of the head: 7 fixed, 2 per top-p round, 3 to pick the token.
pub const HEAD_OPS: usize = 7 + 2 * TOPP_ROUNDS + 3;

impl HeadOp {
    pub fn from_slot(slot: usize) -> Option<Self> {
        Some(match slot {
            0 => Self::OutNorm,
            1 => Self::Logits,
            2 => Self::LogitChunkMax,
            3 => Self::LogitMax,
            4 => Self::SampleExp,
            5 => Self::SampleChunkSum,
            6 => Self::SampleSum,
            s if s < 7 + 2 * TOPP_ROUNDS => {
                let round = ((s - 7) / 2) as u8;
                if (s - 7) % 2 == 0 {
                    Self::TopPChunkSum(round)
                } else {
                    Self::TopPStep(round)
                }
            }
            s if s == 7 + 2 * TOPP_ROUNDS => Self::KeptChunkSum,
            s if s == 8 + 2 * TOPP_ROUNDS => Self::PickChunk,
            s if s == 9 + 2 * TOPP_ROUNDS => Self::PickToken,
            _ => return None,
        })
    }

    pub fn slot(self) -> usize {
        match self {
            Self::OutNorm => 0,
            Self::Logits => 1,
            Self::LogitChunkMax => 2,
            Self::LogitMax => 3,
            Self::SampleExp => 4,
            Self::SampleChunkSum => 5,
            Self::SampleSum => 6,
            Self::TopPChunkSum(r) => 7 + 2 * r as usize,
            Self::TopPStep(r) => 8 + 2 * r as usize,
            Self::KeptChunkSum => 7 + 2 * TOPP_ROUNDS,
            Self::PickChunk => 8 + 2 * TOPP_ROUNDS,
            Self::PickToken => 9 + 2 * TOPP_ROUNDS,
        }
    }
}

/// What an op is: its kind, the layer (for layer ops) and the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Embed,
    Layer(u16, LayerOp),
    Head(HeadOp),
}

/// Canonical element type of an op's output tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OutType {
    I32 = 1,
    I64 = 2,
    /// int16 values with one i32 exponent per group.
    QVec = 3,
}

/// Identity of trace op `i`: what it computes, where, and the size of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpDescriptor {
    pub index: u64,
    pub kind: OpKind,
    pub pos: u32,
    pub out_type: OutType,
    /// Number of output values (for QVec: int16 values).
    pub out_len: u32,
    /// QVec groups (0 for other types).
    pub out_groups: u32,
}

impl OpDescriptor {
    /// `(code, layer, round)`: code 0 = embed, 1..=23 layer op + 1, 64 + head slot for head ops.
    pub fn code(&self) -> (u8, u16, u8) {
        match self.kind {
            OpKind::Embed => (0, 0, 0),
            OpKind::Layer(l, op) => (op as u8 + 1, l, 0),
            OpKind::Head(h) => {
                let round = match h {
                    HeadOp::TopPChunkSum(r) | HeadOp::TopPStep(r) => r,
                    _ => 0,
                };
                (64 + HeadOp::slot(h) as u8, 0, round)
            }
        }
    }

    /// `keccak256(code u8 ‖ layer u16 ‖ round u8 ‖ pos u32 ‖ out_type u8 ‖ out_len u32 ‖ out_groups u32)`, big-endian.
    pub fn hash(&self) -> B256 {
        let (code, layer, round) = self.code();
        let mut b = Vec::with_capacity(19);
        b.push(code);
        b.extend_from_slice(&layer.to_be_bytes());
        b.push(round);
        b.extend_from_slice(&self.pos.to_be_bytes());
        b.push(self.out_type as u8);
        b.extend_from_slice(&self.out_len.to_be_bytes());
        b.extend_from_slice(&self.out_groups.to_be_bytes());
        keccak256(b)
    }
}

/// The op layout of one request.
#[derive(Debug, Clone)]
pub struct Program {
    pub config: LlamaConfig,
    pub prompt_len: usize,
}

impl Program {
    pub fn new(config: LlamaConfig, prompt_len: usize) -> Self {
        Self { config, prompt_len }
    }

    /// Ops of the body of one position (embedding + layers).
    pub fn body_ops(&self) -> u64 {
        1 + (self.config.n_layers * LAYER_OPS) as u64
    }

    /// First position that runs the head.
    fn first_head_pos(&self) -> u64 {
        self.prompt_len.saturating_sub(1) as u64
    }

    /// Trace index of the first op of position `pos`.
    pub fn position_start(&self, pos: u64) -> u64 {
        let body = self.body_ops();
        let p0 = self.first_head_pos();
        if pos <= p0 {
            pos * body
        } else {
            p0 * body + (pos - p0) * (body + HEAD_OPS as u64)
        }
    }

    /// Trace index of `kind` at `pos`.
    pub fn index_of(&self, pos: u64, kind: OpKind) -> u64 {
        let start = self.position_start(pos);
        let body = self.body_ops();
        start
            + match kind {
                OpKind::Embed => 0,
                OpKind::Layer(l, op) => 1 + u64::from(l) * LAYER_OPS as u64 + op as u64,
                OpKind::Head(h) => body + h.slot() as u64,
            }
    }

    /// Number of ops of a run that generated `generated` tokens (the last one is not fed back).
    pub fn op_count(&self, generated: usize) -> u64 {
        if generated == 0 {
            return 0;
        }
        let last_pos = self.first_head_pos() + generated as u64 - 1;
        self.position_start(last_pos) + self.body_ops() + HEAD_OPS as u64
    }

    /// The descriptor of trace op `index`: a pure function of (config, prompt length, index).
    pub fn descriptor(&self, index: u64) -> OpDescriptor {
        let body = self.body_ops();
        let p0 = self.first_head_pos();
        let (pos, slot) = if index < p0 * body {
            (index / body, index % body)
        } else {
            let rel = index - p0 * body;
            let per = body + HEAD_OPS as u64;
            (p0 + rel / per, rel % per)
        };
        let kind = if slot == 0 {
            OpKind::Embed
        } else if slot < body {
            let s = (slot - 1) as usize;
            OpKind::Layer((s / LAYER_OPS) as u16, LayerOp::ALL[s % LAYER_OPS])
        } else {
            // slot - body < HEAD_OPS by construction of `per`
            OpKind::Head(HeadOp::from_slot((slot - body) as usize).unwrap_or(HeadOp::PickToken))
        };
        self.describe(index, pos, kind)
    }

    /// Builds the descriptor of `kind` at `pos` (output type and size follow from the config and position).
    pub fn describe(&self, index: u64, pos: u64, kind: OpKind) -> OpDescriptor {
        let c = &self.config;
        let n_pos = pos as usize + 1;
        let heads_x_pos = c.n_heads * n_pos;
        let att_chunks = c.n_heads * n_chunks(n_pos, ATTN_CHUNK);
        let vocab_chunks = n_chunks(c.vocab_size, VOCAB_CHUNK);
        use LayerOp as L;
        use OutType::*;
        let (out_type, out_len, out_groups) = match kind {
            OpKind::Embed => (I32, c.d_model, 0),
            OpKind::Layer(_, op) => match op {
                L::AttnNorm | L::FfnNorm | L::AttnOutQuant => (QVec, c.d_model, 1),
                L::QProj
                | L::OProj
                | L::DownProj
                | L::AttnResidual
                | L::FfnResidual
                | L::AttnOut => (I32, c.d_model, 0),
                L::KProj | L::VProj | L::KRope => (I32, c.kv_dim(), 0),
                L::QRope => (QVec, c.d_model, c.n_heads),
                L::AttnScores | L::AttnExp => (I32, heads_x_pos, 0),
                L::AttnChunkMax => (I32, att_chunks, 0),
                L::AttnMax => (I32, c.n_heads, 0),
                L::AttnChunkSum => (I64, att_chunks, 0),
                L::AttnSum => (I64, c.n_heads, 0),
                L::AttnWeightedSum => (I64, att_chunks * c.head_dim, 0),
                L::GateProj | L::UpProj => (I32, c.d_ff, 0),
                L::SwiGlu => (QVec, c.d_ff, 1),
            },
            OpKind::Head(h) => match h {
                HeadOp::OutNorm => (QVec, c.d_model, 1),
                HeadOp::Logits | HeadOp::SampleExp => (I32, c.vocab_size, 0),
                HeadOp::LogitChunkMax => (I32, 2 * vocab_chunks, 0),
                HeadOp::LogitMax => (I32, 2, 0),
                HeadOp::SampleChunkSum | HeadOp::TopPChunkSum(_) | HeadOp::KeptChunkSum => {
                    (I64, vocab_chunks, 0)
                }
                HeadOp::SampleSum | HeadOp::PickChunk => (I64, 2, 0),
                HeadOp::TopPStep(_) => (I64, 1, 0),
                HeadOp::PickToken => (I32, 1, 0),
            },
        };
        OpDescriptor {
            index,
            kind,
            pos: pos as u32,
            out_type,
            out_len: out_len as u32,
            out_groups: out_groups as u32,
        }
    }
}

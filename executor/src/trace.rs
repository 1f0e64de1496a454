//! Op outputs read back from the device, buffered per token position and emitted to a request's
//! [`TraceSink`] in canonical trace order.
//!
//! A batched step computes layer by layer over all positions of the step, while the trace is position by
//! position; so each position's outputs are kept in a [`RowTrace`] (in the order the program defines them) and
//! emitted once the step is done.

use crate::error::EngineError;
use crate::ops::QBatch;
use crate::ops::quant::to_i16;
use crate::transfer::{read_i32, read_i64};
use alloy_primitives::B256;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use std::sync::{Arc, OnceLock};
use vir::fixed::QVec;
use vir::interp::{TensorView, TraceSink};
use vir::program::{OpKind, Program};

/// One op's output on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    I32(Vec<i32>),
    I64(Vec<i64>),
    Q(QVec),
}

impl OpOutput {
    pub fn view(&self) -> TensorView<'_> {
        match self {
            Self::I32(v) => TensorView::I32(v),
            Self::I64(v) => TensorView::I64(v),
            Self::Q(q) => TensorView::Q(q),
        }
    }
}

impl From<TensorView<'_>> for OpOutput {
    fn from(view: TensorView<'_>) -> Self {
        match view {
            TensorView::I32(v) => Self::I32(v.to_vec()),
            TensorView::I64(v) => Self::I64(v.to_vec()),
            TensorView::Q(q) => Self::Q(q.clone()),
        }
    }
}

/// The outputs of one position, in trace order.
#[derive(Debug, Clone)]
pub struct RowTrace {
    pub pos: usize,
    pub ops: Vec<(OpKind, OpOutput)>,
    /// Whether [`RowTrace::hash_recorded`] hashes in the background.
    hash_in_background: bool,
    /// Output roots of `ops[..ahead.len()]`, being computed in the background.
    ahead: Vec<Arc<OnceLock<B256>>>,
}

impl RowTrace {
    pub fn new(pos: usize, hash_in_background: bool) -> Self {
        Self {
            pos,
            ops: Vec::new(),
            hash_in_background,
            ahead: Vec::new(),
        }
    }

    /// When the row hashes in the background: starts computing the output roots of the ops recorded since the
    /// last call, each as a task on the rayon pool. A step with fewer rows than threads leaves cores idle during
    /// its per-row ops, and these tasks hash the trace there instead of after the step. [`emit`] takes each root
    /// as it is ready (computing it itself if its task has not run yet).
    pub fn hash_recorded(&mut self) {
        if !self.hash_in_background {
            return;
        }
        for (_, out) in &self.ops[self.ahead.len()..] {
            let slot = Arc::new(OnceLock::new());
            let bytes = out.view().canonical_bytes();
            let task_slot = Arc::clone(&slot);
            rayon::spawn(move || {
                task_slot.get_or_init(|| protocol::tensor_root(&bytes));
            });
            self.ahead.push(slot);
        }
    }
}

/// Per-position buffers of one batch step.
#[derive(Debug)]
pub struct Recorder {
    pub rows: Vec<RowTrace>,
}

impl Recorder {
    /// Buffers for rows at `positions`; `hash_in_background`: see [`RowTrace::hash_recorded`].
    pub fn new(positions: &[usize], hash_in_background: bool) -> Self {
        Self {
            rows: positions
                .iter()
                .map(|&pos| RowTrace::new(pos, hash_in_background))
                .collect(),
        }
    }

    fn width(op: OpKind, len: usize, rows: usize) -> Result<usize, EngineError> {
        if rows == 0 || !len.is_multiple_of(rows) {
            return Err(EngineError::invariant(
                "trace",
                format!("{op:?}: {len} values for {rows} rows"),
            ));
        }
        Ok(len / rows)
    }

    /// Records row `i` of the I32 tensor `t` as the output of `kind` at trace row `targets[i]`; returns the data.
    pub fn i32<B: Backend>(
        &mut self,
        targets: &[usize],
        kind: OpKind,
        t: Tensor<B, 2, Int>,
    ) -> Result<Vec<i32>, EngineError> {
        let data = read_i32(t)?;
        let w = Self::width(kind, data.len(), targets.len())?;
        for (i, &row) in targets.iter().enumerate() {
            self.rows[row]
                .ops
                .push((kind, OpOutput::I32(data[i * w..(i + 1) * w].to_vec())));
        }
        Ok(data)
    }

    /// Records row `i` of the I64 tensor `t` as the output of `kind` at trace row `targets[i]`; returns the data.
    pub fn i64<B: Backend>(
        &mut self,
        targets: &[usize],
        kind: OpKind,
        t: Tensor<B, 2, Int>,
    ) -> Result<Vec<i64>, EngineError> {
        let data = read_i64(t)?;
        let w = Self::width(kind, data.len(), targets.len())?;
        for (i, &row) in targets.iter().enumerate() {
            self.rows[row]
                .ops
                .push((kind, OpOutput::I64(data[i * w..(i + 1) * w].to_vec())));
        }
        Ok(data)
    }

    /// Records row `i` of `q` as the output of `kind` at trace row `targets[i]`.
    pub fn q<B: Backend>(
        &mut self,
        targets: &[usize],
        kind: OpKind,
        q: &QBatch<B>,
    ) -> Result<(), EngineError> {
        let values = read_i32(q.values.clone())?;
        let w = Self::width(kind, values.len(), targets.len())?;
        for (i, &row) in targets.iter().enumerate() {
            let qv = QVec {
                exps: q.row_exps(i).to_vec(),
                values: to_i16(&values[i * w..(i + 1) * w])?,
            };
            self.rows[row].ops.push((kind, OpOutput::Q(qv)));
        }
        Ok(())
    }

    /// Records an output computed per row on the host.
    pub fn push(&mut self, row: usize, kind: OpKind, out: OpOutput) {
        self.rows[row].ops.push((kind, out));
    }
}

/// Emits the rows `rows` (consecutive positions of one request) to `sink`, numbering ops from `*next_index`.
pub fn emit(
    program: &Program,
    next_index: &mut u64,
    rows: &[RowTrace],
    sink: &mut dyn TraceSink,
) -> Result<(), EngineError> {
    for row in rows {
        for (i, (kind, out)) in row.ops.iter().enumerate() {
            let pos = row.pos as u64;
            if program.index_of(pos, *kind) != *next_index {
                return Err(EngineError::invariant(
                    "trace",
                    format!(
                        "{kind:?} at position {pos} computed as op {} but the program puts it at {}",
                        next_index,
                        program.index_of(pos, *kind)
                    ),
                ));
            }
            let desc = program.describe(*next_index, pos, *kind);
            let view = out.view();
            if desc.out_len as usize != view.len() {
                return Err(EngineError::invariant(
                    "trace",
                    format!(
                        "{kind:?} at position {pos}: {} values, descriptor says {}",
                        view.len(),
                        desc.out_len
                    ),
                ));
            }
            match row.ahead.get(i) {
                Some(root) => {
                    let root = *root.get_or_init(|| view.root());
                    sink.record_hashed(&desc, view, root);
                }
                None => sink.record(&desc, view),
            }
            *next_index += 1;
        }
    }
    Ok(())
}

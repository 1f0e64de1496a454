//! [`ParallelCommitter`]: a trace sink with exactly the commitment of `vir::interp::TraceCommitter` (trace leaf
//! `i = keccak(i ‖ descriptorHash ‖ outputRoot)`, Merkle root over all leaves, `protocol::TraceBuilder`), whose
//! descriptor hashes and tensor roots are computed for many ops at once on the rayon pool.
//!
//! The ops of one request arrive in trace order; the committer buffers their canonical bytes and hashes a
//! buffer at once (the roots are independent: [`crate::keccak_x4::tensor_roots`] hashes the 1 KiB chunks of all
//! of them four at a time with AVX2, on the rayon pool), then appends the leaves in order. A buffer is hashed once it holds
//! [`FLUSH_BYTES`], at each generated token (PickToken, the last op of a generating position), and by
//! [`ParallelCommitter::finish`]/[`ParallelCommitter::commitment`], so every figure it returns covers every op
//! recorded.

use crate::keccak_x4::tensor_roots;
use alloy_primitives::B256;
use protocol::tensor::CHUNK_BYTES;
use protocol::{TraceBuilder, TraceCommitment};
use rayon::prelude::*;
use vir::interp::{TensorView, TraceSink};
use vir::program::{HeadOp, OpDescriptor, OpKind};

/// Output bytes buffered before they are hashed.
pub const FLUSH_BYTES: usize = 1 << 20;

/// A committing trace sink that hashes in parallel (see the module docs).
#[derive(Debug, Default)]
pub struct ParallelCommitter {
    builder: TraceBuilder,
    /// The ops not committed yet: descriptors and canonical output bytes or already computed output roots.
    pending: Vec<(OpDescriptor, Output)>,
    pending_bytes: usize,
    /// 1 KiB chunk leaves of every op recorded (an empty output is one chunk).
    chunks: u64,
}

/// A pending op's output: bytes to hash, or the root computed ahead.
#[derive(Debug)]
enum Output {
    Bytes(Vec<u8>),
    Root(B256),
}

impl TraceSink for ParallelCommitter {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        let bytes = out.canonical_bytes();
        self.pending_bytes += bytes.len();
        self.chunks += chunk_count(bytes.len());
        self.push(desc, Output::Bytes(bytes));
    }

    fn record_hashed(&mut self, desc: &OpDescriptor, out: TensorView<'_>, root: B256) {
        self.chunks += chunk_count(out.byte_len());
        self.push(desc, Output::Root(root));
    }

    fn commits_roots(&self) -> bool {
        true
    }
}

/// Chunk leaves of an output of `bytes` bytes (an empty output is one chunk).
fn chunk_count(bytes: usize) -> u64 {
    bytes.div_ceil(CHUNK_BYTES).max(1) as u64
}

impl ParallelCommitter {
    fn push(&mut self, desc: &OpDescriptor, out: Output) {
        self.pending.push((*desc, out));
        if self.pending_bytes >= FLUSH_BYTES || desc.kind == OpKind::Head(HeadOp::PickToken) {
            self.flush();
        }
    }

    /// Hashes the buffered ops and appends their leaves.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (descs, outputs): (Vec<OpDescriptor>, Vec<Output>) = self.pending.drain(..).unzip();
        let mut to_hash = Vec::new();
        let known: Vec<Option<B256>> = outputs
            .into_iter()
            .map(|o| match o {
                Output::Bytes(bytes) => {
                    to_hash.push(bytes);
                    None
                }
                Output::Root(root) => Some(root),
            })
            .collect();
        // One computed root per `None`, in order.
        let mut hashed = tensor_roots(&to_hash).into_iter();
        let desc_hashes: Vec<_> = descs.par_iter().map(OpDescriptor::hash).collect();
        for (descriptor_hash, root) in desc_hashes.into_iter().zip(known) {
            let output_root = root.or_else(|| hashed.next()).unwrap_or_default();
            self.builder.push(descriptor_hash, output_root);
        }
        self.pending_bytes = 0;
    }

    /// Chunk leaves (`protocol::tensor::chunk_leaf`) of every op recorded so far: the Keccak work of the trace.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Ops recorded so far.
    pub fn op_count(&self) -> u64 {
        self.builder.op_count() + self.pending.len() as u64
    }

    /// The commitment to every op recorded so far (hashes what is buffered first).
    pub fn commitment(&mut self) -> TraceCommitment {
        self.flush();
        self.builder.commitment()
    }

    /// The commitment to every op recorded.
    pub fn finish(mut self) -> TraceCommitment {
        self.commitment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vir::fixed::QVec;
    use vir::interp::TraceCommitter;
    use vir::program::Program;

    /// Same root as the reference committer over a whole program's descriptors with outputs of every type and
    /// of sizes around the flush threshold (so buffers are hashed at the threshold, at PickToken and at finish),
    /// a third of them recorded with their root computed ahead; and the chunk count of `protocol`'s leaves.
    #[test]
    fn equals_the_reference_committer() {
        let program = Program::new(vir::synthetic::SyntheticSpec::tiny().config(), 3);
        let mut reference = TraceCommitter::default();
        let mut parallel = ParallelCommitter::default();
        let big: Vec<i32> = (0..(FLUSH_BYTES / 4 + 1000) as i32)
            .map(|i| i * 7 - 5)
            .collect();
        let wide: Vec<i64> = (0..5000).map(|i| i * 1_000_003 - 77).collect();
        let q = QVec {
            exps: vec![-3, 4],
            values: (0..64).map(|i| i as i16 - 30).collect(),
        };
        let ops = program.op_count(4);
        let mut chunk_leaves = 0;
        for index in 0..ops {
            let desc = program.descriptor(index);
            let at = index as usize;
            let view = match at % 4 {
                0 => TensorView::I32(&big[..(at * 7919) % big.len()]),
                1 => TensorView::I64(&wide[..at % wide.len()]),
                2 => TensorView::Q(&q),
                _ => TensorView::I32(&big[at % 100..at % 100 + 3]),
            };
            reference.record(&desc, view);
            if index % 3 == 0 {
                parallel.record_hashed(&desc, view, view.root());
            } else {
                parallel.record(&desc, view);
            }
            chunk_leaves += protocol::tensor::chunk_leaves(&view.canonical_bytes()).len() as u64;
        }
        assert_eq!(parallel.chunks(), chunk_leaves);
        assert!(ops > 100);
        assert_eq!(parallel.op_count(), ops);
        let mid = parallel.commitment();
        assert_eq!(mid.op_count, ops);
        assert_eq!(parallel.finish(), reference.finish());
    }
}

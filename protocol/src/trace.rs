//! Execution-trace commitments: trace leaves `keccak256(uint256(i) ‖ descriptorHash ‖ outputRoot)`,
//! the trace root (a Merkle root over the leaves in op order) and its proofs.
//!
//! A trace-leaf preimage is 96 bytes, never confusable with a 64-byte inner node.

use crate::merkle::{MerkleBuilder, MerkleError, MerkleProof, MerkleTree, merkle_root};
use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};

/// Trace leaf of op `index`: `keccak256(uint256(index) as 32 bytes big-endian ‖ descriptor_hash ‖
/// output_root)`.
#[inline]
pub fn trace_leaf(index: u64, descriptor_hash: B256, output_root: B256) -> B256 {
    let mut buf = [0u8; 96];
    buf[24..32].copy_from_slice(&index.to_be_bytes());
    buf[32..64].copy_from_slice(descriptor_hash.as_slice());
    buf[64..].copy_from_slice(output_root.as_slice());
    keccak256(buf)
}

/// Trace root over trace leaves in op order ([`EMPTY_LEAF`](crate::merkle::EMPTY_LEAF) for none).
pub fn trace_root(leaves: &[B256]) -> B256 {
    merkle_root(leaves)
}

/// Proof of trace leaf `index`.
pub fn trace_proof(leaves: &[B256], index: u64) -> Result<MerkleProof, MerkleError> {
    MerkleTree::new(leaves.to_vec()).proof(index)
}

/// Whether op `index` with `descriptor_hash` and `output_root` is in the trace committed by
/// `commitment` (checks the index against `op_count` and the proof depth).
pub fn verify_trace_leaf(
    commitment: &TraceCommitment,
    index: u64,
    descriptor_hash: B256,
    output_root: B256,
    proof: &MerkleProof,
) -> bool {
    proof.index == index
        && proof.verify_with_count(
            commitment.root,
            commitment.op_count,
            trace_leaf(index, descriptor_hash, output_root),
        )
}

/// What a request's trace commits to: the root and the number of ops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceCommitment {
    /// Merkle root over the trace leaves.
    pub root: B256,
    /// Number of ops (trace leaves).
    pub op_count: u64,
}

/// Builds a trace commitment op by op, in O(log n) memory without allocation.
#[derive(Debug, Clone, Default)]
pub struct TraceBuilder {
    tree: MerkleBuilder,
}

impl TraceBuilder {
    /// An empty trace.
    pub const fn new() -> Self {
        Self {
            tree: MerkleBuilder::new(),
        }
    }

    /// Appends the next op and returns its index.
    #[inline]
    pub fn push(&mut self, descriptor_hash: B256, output_root: B256) -> u64 {
        let index = self.tree.len();
        self.tree
            .push(trace_leaf(index, descriptor_hash, output_root))
    }

    /// Number of ops pushed.
    pub const fn op_count(&self) -> u64 {
        self.tree.len()
    }

    /// The commitment to the ops pushed so far (the builder stays usable).
    pub fn commitment(&self) -> TraceCommitment {
        TraceCommitment {
            root: self.tree.root(),
            op_count: self.tree.len(),
        }
    }

    /// The commitment to all pushed ops.
    pub fn finish(self) -> TraceCommitment {
        self.commitment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_layout() {
        let d = B256::repeat_byte(0xaa);
        let o = B256::repeat_byte(0xbb);
        let mut pre = Vec::new();
        pre.extend_from_slice(&alloy_primitives::U256::from(258u64).to_be_bytes::<32>());
        pre.extend_from_slice(d.as_slice());
        pre.extend_from_slice(o.as_slice());
        assert_eq!(trace_leaf(258, d, o), keccak256(&pre));
    }

    #[test]
    fn builder_matches_one_shot() {
        let ops: Vec<(B256, B256)> = (0..37u64)
            .map(|i| {
                (
                    keccak256(i.to_le_bytes()),
                    keccak256((i + 1000).to_be_bytes()),
                )
            })
            .collect();
        let mut b = TraceBuilder::new();
        let mut leaves = Vec::new();
        for (i, (d, o)) in ops.iter().enumerate() {
            assert_eq!(b.push(*d, *o), i as u64);
            leaves.push(trace_leaf(i as u64, *d, *o));
        }
        assert_eq!(b.op_count(), 37);
        let c = b.finish();
        assert_eq!(
            c,
            TraceCommitment {
                root: trace_root(&leaves),
                op_count: 37
            }
        );
        for i in [0u64, 5, 36] {
            let p = trace_proof(&leaves, i).unwrap();
            let (d, o) = ops[i as usize];
            assert!(verify_trace_leaf(&c, i, d, o, &p));
            assert!(!verify_trace_leaf(&c, i, o, d, &p));
        }
        assert_eq!(TraceBuilder::new().finish(), TraceCommitment::default());
    }
}

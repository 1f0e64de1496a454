//! Batch commitments: the batch root (Merkle root over leaf hashes in batch order), leaf inclusion
//! proofs, and the L1 state-root chain `stateRoot_n = keccak256(stateRoot_{n-1} ‖ batchRoot_n)`.

use crate::merkle::{MerkleError, MerkleProof, MerkleTree, merkle_root};
use alloy_primitives::{B256, keccak256};

/// State root before the first batch.
pub const GENESIS_STATE_ROOT: B256 = B256::ZERO;

/// Batch root over leaf hashes ([`crate::leaf::InferenceLeaf::hash`]) in batch order.
pub fn batch_root(leaf_hashes: &[B256]) -> B256 {
    merkle_root(leaf_hashes)
}

/// Proof of leaf `index` under [`batch_root`]`(leaf_hashes)`.
pub fn leaf_proof(leaf_hashes: &[B256], index: u64) -> Result<MerkleProof, MerkleError> {
    MerkleTree::new(leaf_hashes.to_vec()).proof(index)
}

/// Whether `leaf_hash` is leaf `proof.index` of a batch of `leaf_count` leaves with root
/// `batch_root`. Checks the index against the count and the proof length against the depth, as
/// the contract does (so an inner node can never pass as a leaf).
pub fn verify_leaf(
    batch_root: B256,
    leaf_count: u64,
    leaf_hash: B256,
    proof: &MerkleProof,
) -> bool {
    proof.verify_with_count(batch_root, leaf_count, leaf_hash)
}

/// `keccak256(prev ‖ batch_root)`.
pub fn next_state_root(prev: B256, batch_root: B256) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(prev.as_slice());
    buf[32..].copy_from_slice(batch_root.as_slice());
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_chain() {
        let r1 = B256::repeat_byte(1);
        let s1 = next_state_root(GENESIS_STATE_ROOT, r1);
        let mut pre = [0u8; 64];
        pre[32..].fill(1);
        assert_eq!(s1, keccak256(pre));
        assert_ne!(next_state_root(s1, r1), s1);
    }

    #[test]
    fn leaf_proofs() {
        let leaves: Vec<B256> = (0..6u8).map(|i| keccak256([i])).collect();
        let root = batch_root(&leaves);
        for i in 0..6 {
            let p = leaf_proof(&leaves, i).unwrap();
            assert!(verify_leaf(root, 6, leaves[i as usize], &p));
            assert!(!verify_leaf(root, 5, leaves[i as usize], &p) || i < 5);
        }
        // An inner node with a shortened proof is not a leaf.
        let tree = MerkleTree::new(leaves.clone());
        let inner = tree.node(1, 0).unwrap_or_default();
        let mut p = leaf_proof(&leaves, 0).unwrap();
        p.siblings.remove(0);
        assert!(p.verify(root, inner));
        assert!(!verify_leaf(root, 6, inner, &p));
        assert!(leaf_proof(&leaves, 6).is_err());
    }
}

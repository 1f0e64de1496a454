//! Batch commitments: the batch root (Merkle root over leaf hashes in batch order), leaf inclusion
//! proofs, the signature root (Merkle root over the leaves' signature hashes, in the same order) and
//! its proofs, and the L1 state-root chain `stateRoot_n = keccak256(stateRoot_{n-1} ‖ batchRoot_n)`.

use crate::codec::BatchData;
use crate::leaf::LeafSignature;
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

/// `keccak256(signature)` over the 65 bytes `r ‖ s ‖ v`: a leaf of the signature tree.
pub fn signature_hash(signature: &LeafSignature) -> B256 {
    keccak256(signature.as_bytes())
}

/// The signature root `sigRoot` a batch is posted with (docs/protocol.md §5): the Merkle root over
/// [`signature_hash`] of each leaf's signature, in batch (leaf) order. Same tree as [`batch_root`].
pub fn signature_root(signatures: &[LeafSignature]) -> B256 {
    merkle_root(&signature_hashes(signatures))
}

/// [`signature_root`] of the signatures `data` carries (what the batcher posts and challengers
/// recompute from the posted data).
pub fn batch_signature_root(data: &BatchData) -> B256 {
    merkle_root(&data_signature_hashes(data))
}

/// Proof of signature `index` under [`signature_root`]`(signatures)` (checked on L1 by
/// `proveBadSignature` with the batch's leaf count).
pub fn signature_proof(
    signatures: &[LeafSignature],
    index: u64,
) -> Result<MerkleProof, MerkleError> {
    MerkleTree::new(signature_hashes(signatures)).proof(index)
}

/// [`signature_proof`] for the signatures `data` carries.
pub fn batch_signature_proof(data: &BatchData, index: u64) -> Result<MerkleProof, MerkleError> {
    MerkleTree::new(data_signature_hashes(data)).proof(index)
}

fn signature_hashes(signatures: &[LeafSignature]) -> Vec<B256> {
    signatures.iter().map(signature_hash).collect()
}

fn data_signature_hashes(data: &BatchData) -> Vec<B256> {
    data.entries
        .iter()
        .map(|e| signature_hash(&e.signature))
        .collect()
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
    fn signature_tree() {
        let sigs: Vec<LeafSignature> = (0..5u8).map(|i| LeafSignature::from([i; 65])).collect();
        // Independent computation: the leaves are keccak256 of the 65 raw bytes.
        let hashes: Vec<B256> = (0..5u8).map(|i| keccak256([i; 65])).collect();
        let root = signature_root(&sigs);
        assert_eq!(root, merkle_root(&hashes));
        for i in 0..5 {
            let p = signature_proof(&sigs, i).unwrap();
            assert!(p.verify_with_count(root, 5, hashes[i as usize]));
            assert!(!p.verify_with_count(root, 5, keccak256([9u8; 65])));
        }
        assert!(signature_proof(&sigs, 5).is_err());
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

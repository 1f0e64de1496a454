//! verinfer commitments and wire types: keccak Merkle trees, tensor and trace roots, request leaves,
//! batches and the batch data (DA) codec.
//!
//! Every definition here is recomputed by the L1 contracts and by independent implementations; the
//! normative text is `docs/protocol.md`. Changing any byte of a hashed encoding is a protocol change.

#![warn(missing_docs, unreachable_pub)]

pub mod batch;
pub mod codec;
pub mod leaf;
pub mod merkle;
pub mod tensor;
pub mod trace;

pub use alloy_primitives::{Address, B256, keccak256};
pub use batch::{GENESIS_STATE_ROOT, batch_root, leaf_proof, next_state_root, verify_leaf};
pub use codec::{BatchData, BatchEntry, CodecError, da_commitment};
pub use leaf::{
    FinishReason, InferenceLeaf, LEAF_VERSION, LeafSignature, ParamsError, SamplingParams,
    SignatureError, leaf_domain, recover_signer, sign_leaf, signing_hash,
};
pub use merkle::{EMPTY_LEAF, MerkleBuilder, MerkleError, MerkleProof, MerkleTree, merkle_root};
pub use tensor::{CHUNK_BYTES, TensorHasher, tensor_root, token_ids_root};
pub use trace::{TraceBuilder, TraceCommitment, trace_leaf, trace_root};

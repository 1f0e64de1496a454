//! Tensor roots: a tensor's canonical bytes cut into [`CHUNK_BYTES`] chunks, each chunk hashed
//! zero-padded to exactly `CHUNK_BYTES`, and a Merkle tree ([`crate::merkle`]) over the chunk hashes.
//!
//! A chunk-leaf preimage is always 1024 bytes, an inner-node preimage always 64, so a chunk can never
//! be passed off as an inner node (or the reverse). The root does **not** bind the byte length:
//! trailing zero bytes inside the last chunk do not change it. Lengths come from context (an op's
//! output shape in its descriptor).

use crate::merkle::{MerkleBuilder, MerkleError, MerkleProof, MerkleTree, tree_depth};
use alloy_primitives::{B256, keccak256};

/// Bytes per chunk.
pub const CHUNK_BYTES: usize = 1024;

/// Errors of chunk proofs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The chunk does not exist.
    #[error("chunk index {index} out of range for a tensor of {len} bytes ({chunks} chunks)")]
    ChunkOutOfRange {
        /// Requested chunk.
        index: u64,
        /// Tensor length in bytes.
        len: u64,
        /// Number of chunks of that tensor.
        chunks: u64,
    },
}

impl From<MerkleError> for TensorError {
    fn from(e: MerkleError) -> Self {
        match e {
            MerkleError::IndexOutOfRange { index, count } => Self::ChunkOutOfRange {
                index,
                len: count * CHUNK_BYTES as u64,
                chunks: count,
            },
        }
    }
}

/// Number of chunks of a tensor of `len` bytes: `max(1, ceil(len / CHUNK_BYTES))`.
#[inline]
pub const fn chunk_count(len: u64) -> u64 {
    if len == 0 {
        1
    } else {
        len.div_ceil(CHUNK_BYTES as u64)
    }
}

/// Leaf of one chunk: `keccak256(chunk ‖ zeros)` over exactly `CHUNK_BYTES` bytes. `chunk` longer
/// than `CHUNK_BYTES` is not a chunk: `None`.
pub fn chunk_leaf(chunk: &[u8]) -> Option<B256> {
    match chunk.len() {
        CHUNK_BYTES => Some(keccak256(chunk)),
        n if n < CHUNK_BYTES => Some(keccak256(padded_chunk(chunk))),
        _ => None,
    }
}

fn padded_chunk(chunk: &[u8]) -> [u8; CHUNK_BYTES] {
    let mut buf = [0u8; CHUNK_BYTES];
    buf[..chunk.len()].copy_from_slice(chunk);
    buf
}

/// Tensor root of `bytes`.
pub fn tensor_root(bytes: &[u8]) -> B256 {
    let mut h = TensorHasher::new();
    h.write(bytes);
    h.finish()
}

/// Chunk leaves of `bytes` (always at least one).
pub fn chunk_leaves(bytes: &[u8]) -> Vec<B256> {
    if bytes.is_empty() {
        return vec![keccak256([0u8; CHUNK_BYTES])];
    }
    bytes
        .chunks(CHUNK_BYTES)
        .map(|c| chunk_leaf(c).unwrap_or_default())
        .collect()
}

/// Chunk `chunk_index` of `bytes`, zero-padded to `CHUNK_BYTES`, with its proof under
/// [`tensor_root`]`(bytes)`.
pub fn tensor_chunk_proof(
    bytes: &[u8],
    chunk_index: u64,
) -> Result<([u8; CHUNK_BYTES], MerkleProof), TensorError> {
    let len = bytes.len() as u64;
    let chunks = chunk_count(len);
    let out_of_range = TensorError::ChunkOutOfRange {
        index: chunk_index,
        len,
        chunks,
    };
    if chunk_index >= chunks {
        return Err(out_of_range);
    }
    let proof = MerkleTree::new(chunk_leaves(bytes)).proof(chunk_index)?;
    let start = usize::try_from(chunk_index).map_err(|_| out_of_range)? * CHUNK_BYTES;
    let end = bytes.len().min(start + CHUNK_BYTES);
    let chunk = padded_chunk(bytes.get(start..end).unwrap_or_default());
    Ok((chunk, proof))
}

/// Whether `chunk` (exactly `CHUNK_BYTES` bytes) is chunk `chunk_index` of the tensor with root
/// `root`. `proof.index` must equal `chunk_index`.
pub fn verify_tensor_chunk(
    root: B256,
    chunk_index: u64,
    chunk: &[u8],
    proof: &MerkleProof,
) -> bool {
    chunk.len() == CHUNK_BYTES && proof.index == chunk_index && proof.verify(root, keccak256(chunk))
}

/// [`verify_tensor_chunk`] for a tensor of known byte length: also pins the depth and the chunk
/// range, and requires the padding past `len` to be zero.
pub fn verify_tensor_chunk_with_len(
    root: B256,
    len: u64,
    chunk_index: u64,
    chunk: &[u8],
    proof: &MerkleProof,
) -> bool {
    let chunks = chunk_count(len);
    let used = len.saturating_sub(chunk_index.saturating_mul(CHUNK_BYTES as u64));
    let used = used.min(CHUNK_BYTES as u64) as usize;
    chunk_index < chunks
        && proof.siblings.len() == tree_depth(chunks) as usize
        && chunk
            .get(used..)
            .is_some_and(|pad| pad.iter().all(|b| *b == 0))
        && verify_tensor_chunk(root, chunk_index, chunk, proof)
}

/// Streaming tensor root: `write` bytes in any pieces, `finish` gives [`tensor_root`] of their
/// concatenation. Buffers at most one chunk and never allocates.
#[derive(Clone)]
pub struct TensorHasher {
    buf: [u8; CHUNK_BYTES],
    filled: usize,
    len: u64,
    tree: MerkleBuilder,
}

impl std::fmt::Debug for TensorHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorHasher")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for TensorHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TensorHasher {
    /// An empty hasher.
    pub const fn new() -> Self {
        Self {
            buf: [0u8; CHUNK_BYTES],
            filled: 0,
            len: 0,
            tree: MerkleBuilder::new(),
        }
    }

    /// Bytes written so far.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes. Whole chunks are hashed straight from `data` without copying.
    pub fn write(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.filled > 0 {
            let take = data.len().min(CHUNK_BYTES - self.filled);
            self.buf[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < CHUNK_BYTES {
                return;
            }
            self.tree.push(keccak256(self.buf));
            self.filled = 0;
        }
        let mut chunks = data.chunks_exact(CHUNK_BYTES);
        for chunk in &mut chunks {
            self.tree.push(keccak256(chunk));
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// Appends `u32` values as little-endian bytes.
    pub fn write_u32_le(&mut self, values: &[u32]) {
        let mut buf = [0u8; CHUNK_BYTES];
        for group in values.chunks(CHUNK_BYTES / 4) {
            for (dst, v) in buf.chunks_exact_mut(4).zip(group) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            self.write(&buf[..group.len() * 4]);
        }
    }

    /// The tensor root of everything written.
    pub fn finish(mut self) -> B256 {
        if self.filled > 0 || self.tree.is_empty() {
            self.buf[self.filled..].fill(0);
            self.tree.push(keccak256(self.buf));
        }
        self.tree.finish()
    }
}

/// `values` as little-endian bytes (the canonical bytes of a `u32` tensor).
pub fn u32_tensor_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Root of a token id list: `keccak256(uint64 len big-endian ‖ tensor_root(u32_tensor_bytes(ids)))`.
/// Used for the leaf's prompt root and output hash. The length is bound explicitly because zero
/// padding of the last chunk would otherwise make `[a, b]` and `[a, b, 0]` share a root (token 0 is
/// a real token). A verifier reads token `t` with a chunk proof under the inner tensor root.
pub fn token_ids_root(ids: &[u32]) -> B256 {
    let mut h = TensorHasher::new();
    h.write_u32_le(ids);
    token_list_root(ids.len() as u64, h.finish())
}

/// Binds a token list's length to the tensor root of its bytes (see [`token_ids_root`]).
pub fn token_list_root(len: u64, tensor_root: B256) -> B256 {
    let mut preimage = [0u8; 40];
    preimage[..8].copy_from_slice(&len.to_be_bytes());
    preimage[8..].copy_from_slice(tensor_root.as_slice());
    keccak256(preimage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::merkle_root;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn empty_and_single_chunk() {
        assert_eq!(tensor_root(&[]), keccak256([0u8; CHUNK_BYTES]));
        assert_eq!(tensor_root(&[1, 2, 3]), keccak256(padded_chunk(&[1, 2, 3])));
        let full = bytes(CHUNK_BYTES);
        assert_eq!(tensor_root(&full), keccak256(&full));
    }

    #[test]
    fn multi_chunk_matches_definition() {
        for n in [1025, 2048, 2049, 5000, 4096] {
            let b = bytes(n);
            let leaves: Vec<B256> = b
                .chunks(CHUNK_BYTES)
                .map(|c| keccak256(padded_chunk(c)))
                .collect();
            assert_eq!(tensor_root(&b), merkle_root(&leaves), "n={n}");
            assert_eq!(chunk_leaves(&b), leaves);
        }
    }

    #[test]
    fn streaming_pieces() {
        let b = bytes(10_000);
        let want = tensor_root(&b);
        for step in [1, 3, 1023, 1024, 1025, 4000] {
            let mut h = TensorHasher::new();
            for piece in b.chunks(step) {
                h.write(piece);
            }
            assert_eq!(h.len(), b.len() as u64);
            assert_eq!(h.finish(), want, "step={step}");
        }
    }

    #[test]
    fn token_roots() {
        let ids: Vec<u32> = (0..700).map(|i| i * 65_537).collect();
        assert_eq!(
            token_ids_root(&ids),
            token_list_root(700, tensor_root(&u32_tensor_bytes(&ids)))
        );
        assert_eq!(u32_tensor_bytes(&[0x0403_0201]), vec![1, 2, 3, 4]);
        assert_eq!(token_ids_root(&[]), token_list_root(0, tensor_root(&[])));
        // Trailing zero tokens change the root even though their bytes are zero padding.
        assert_ne!(token_ids_root(&[5, 6]), token_ids_root(&[5, 6, 0]));
        assert_ne!(token_ids_root(&[]), token_ids_root(&[0]));
    }

    #[test]
    fn chunk_proofs() {
        for n in [0usize, 1, 1024, 1025, 3000, 4096] {
            let b = bytes(n);
            let root = tensor_root(&b);
            let chunks = chunk_count(n as u64);
            for i in 0..chunks {
                let (chunk, proof) = tensor_chunk_proof(&b, i).unwrap();
                assert!(verify_tensor_chunk(root, i, &chunk, &proof));
                assert!(verify_tensor_chunk_with_len(
                    root, n as u64, i, &chunk, &proof
                ));
                assert!(!verify_tensor_chunk(
                    root,
                    i,
                    &chunk[..CHUNK_BYTES - 1],
                    &proof
                ));
                assert!(!verify_tensor_chunk(root, i + 1, &chunk, &proof));
            }
            assert!(matches!(
                tensor_chunk_proof(&b, chunks),
                Err(TensorError::ChunkOutOfRange { .. })
            ));
        }
        // Non-zero padding in a partial last chunk is rejected when the length is known.
        let b = bytes(1000);
        let root = tensor_root(&b);
        let (mut chunk, proof) = tensor_chunk_proof(&b, 0).unwrap();
        assert!(!verify_tensor_chunk_with_len(root, 999, 0, &chunk, &proof));
        chunk[1000] = 1;
        assert!(!verify_tensor_chunk(root, 0, &chunk, &proof));
    }
}

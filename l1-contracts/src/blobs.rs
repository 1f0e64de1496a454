//! Batch data in EIP-4844 blobs: the field-element packing of the batch bytes ([`encode`], [`decode`]), the
//! sidecar with its KZG commitments and proofs, and the DA commitment `postBatchBlobs` computes from the versioned
//! hashes ([`da_commitment`]).
//!
//! Packing: alloy's `SimpleCoder` (docs/protocol.md §6.1): the bytes are preceded by one field element holding
//! their length (`u64` big-endian in bytes 1..9) and then packed 31 bytes per 32-byte field element, the first byte
//! of every element zero (so every element is below the BLS modulus), the last one right-padded with zeros, the rest
//! of the last blob zero. 4,096 elements per blob: up to 126,945 bytes in one blob, 761,825 bytes in the six blobs a
//! Cancun block holds.

use crate::l1::{Blob, BlobTransactionSidecar};
use alloy::eips::eip4844::builder::{SidecarBuilder, SidecarCoder, SimpleCoder};
use alloy::eips::eip4844::env_settings::EnvKzgSettings;
use alloy::primitives::{B256, keccak256};

/// Most blobs one batch may use (the Cancun per-block maximum).
pub const MAX_BLOBS: usize = crate::embedded::MAX_BLOBS_PER_TX;

/// Usable bytes per blob with the packing above (31 of every 32 bytes, minus one length element per batch).
pub const BYTES_PER_BLOB: usize = 4096 * 31;

/// Most batch-data bytes [`encode`] fits into [`MAX_BLOBS`] blobs.
pub const MAX_DATA_BYTES: usize = MAX_BLOBS * BYTES_PER_BLOB - 31;

/// Errors of the blob codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Nothing to post.
    #[error("empty batch data")]
    Empty,
    /// The data needs more blobs than a transaction may carry.
    #[error("{len} bytes need {blobs} blobs; at most {MAX_BLOBS} fit one transaction")]
    TooLarge {
        /// Data length.
        len: usize,
        /// Blobs it would need.
        blobs: usize,
    },
    /// c-kzg failed (commitment or proof computation).
    #[error("KZG: {0}")]
    Kzg(String),
    /// The blobs do not hold one batch in the packing above.
    #[error("the blobs do not decode to batch data")]
    Undecodable,
}

/// Number of blobs [`encode`] uses for `len` bytes.
pub fn blob_count(len: usize) -> usize {
    (len.div_ceil(31) + 1).div_ceil(4096)
}

/// Packs `data` into blobs and computes their KZG commitments and proofs (the v0 sidecar; see
/// [`crate::rpc::BlobSidecarFormat`] for the cell-proof form real networks want).
pub fn encode(data: &[u8]) -> Result<BlobTransactionSidecar, BlobError> {
    if data.is_empty() {
        return Err(BlobError::Empty);
    }
    let blobs = blob_count(data.len());
    if blobs > MAX_BLOBS {
        return Err(BlobError::TooLarge {
            len: data.len(),
            blobs,
        });
    }
    SidecarBuilder::<SimpleCoder>::from_slice(data)
        .build_4844_with_settings(EnvKzgSettings::Default.get())
        .map_err(|e| BlobError::Kzg(e.to_string()))
}

/// The batch data packed into `blobs` by [`encode`].
pub fn decode(blobs: &[Blob]) -> Result<Vec<u8>, BlobError> {
    let pieces = SimpleCoder::default()
        .decode_all(blobs)
        .ok_or(BlobError::Undecodable)?;
    match <[Vec<u8>; 1]>::try_from(pieces) {
        Ok([data]) => Ok(data),
        Err(_) => Err(BlobError::Undecodable),
    }
}

/// The versioned hashes of `blobs` recomputed from their content (KZG commitment of each blob, then
/// `0x01 ‖ sha256(commitment)[1..]`): what a reader checks blobs it was served against.
pub fn versioned_hashes(blobs: &[Blob]) -> Result<Vec<B256>, BlobError> {
    let sidecar = BlobTransactionSidecar::try_from_blobs_with_settings(
        blobs.to_vec(),
        EnvKzgSettings::Default.get(),
    )
    .map_err(|e| BlobError::Kzg(e.to_string()))?;
    Ok(sidecar.versioned_hashes().collect())
}

/// `keccak256(versionedHash_0 ‖ … ‖ versionedHash_{n-1})`: the DA commitment `postBatchBlobs` records.
pub fn da_commitment(versioned_hashes: &[B256]) -> B256 {
    let mut buf = Vec::with_capacity(32 * versioned_hashes.len());
    for h in versioned_hashes {
        buf.extend_from_slice(h.as_slice());
    }
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sizes() {
        for len in [1usize, 31, 32, BYTES_PER_BLOB - 31, BYTES_PER_BLOB, 300_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let sidecar = encode(&data).unwrap();
            assert_eq!(sidecar.blobs.len(), blob_count(len), "len {len}");
            assert_eq!(decode(&sidecar.blobs).unwrap(), data);
            let hashes: Vec<B256> = sidecar.versioned_hashes().collect();
            assert_eq!(versioned_hashes(&sidecar.blobs).unwrap(), hashes);
            assert!(hashes.iter().all(|h| h[0] == 1));
        }
        assert_eq!(blob_count(BYTES_PER_BLOB - 31), 1);
        assert_eq!(blob_count(BYTES_PER_BLOB - 30), 2);
        assert_eq!(blob_count(MAX_DATA_BYTES), MAX_BLOBS);
        assert!(matches!(
            encode(&vec![1u8; MAX_DATA_BYTES + 1]),
            Err(BlobError::TooLarge { blobs: 7, .. })
        ));
        assert_eq!(encode(&[]), Err(BlobError::Empty));
    }

    #[test]
    fn commitment_is_keccak_of_hashes() {
        let a = B256::repeat_byte(1);
        let b = B256::repeat_byte(2);
        let mut concat = [0u8; 64];
        concat[..32].fill(1);
        concat[32..].fill(2);
        assert_eq!(da_commitment(&[a, b]), keccak256(concat));
    }
}

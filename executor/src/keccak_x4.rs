//! Tensor roots (`protocol::tensor_root`) of many tensors at once: every 1 KiB chunk leaf
//! (`keccak256` of the chunk zero-padded to 1024 bytes) of every tensor is computed four at a time with an AVX2
//! Keccak-f\[1600\] that runs four independent states in the four 64-bit lanes of each vector, in parallel over
//! the rayon pool; then each tensor's Merkle root over its leaves (`protocol::merkle::merkle_root`). Without AVX2
//! (detected at run time) the leaves use `alloy_primitives::keccak256`. The result is `protocol::tensor_root`'s,
//! bit for bit (unit-tested against it).

use crate::cpu::has_avx2;
use alloy_primitives::{B256, keccak256};
use protocol::merkle::merkle_root;
use protocol::tensor::CHUNK_BYTES;
use rayon::prelude::*;

/// Keccak-256 rate in bytes.
const RATE: usize = 136;

/// Chunks per rayon task.
const CHUNKS_PER_TASK: usize = 64;

const RC: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808a,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808b,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008a,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000a,
    0x0000_0000_8000_808b,
    0x8000_0000_0000_008b,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800a,
    0x8000_0000_8000_000a,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];

/// Rotates each 64-bit lane of an AVX2 vector left by the literal `n` (0 < n < 64).
#[cfg(target_arch = "x86_64")]
macro_rules! rol {
    ($v:expr, $n:literal) => {
        _mm256_or_si256(
            _mm256_slli_epi64::<$n>($v),
            _mm256_srli_epi64::<{ 64 - $n }>($v),
        )
    };
}

/// Leaves of four chunks (each at most [`CHUNK_BYTES`], zero-padded): four Keccak-256 states side by side.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn leaves_x4(chunks: [&[u8]; 4]) -> [B256; 4] {
    use std::arch::x86_64::*;
    let mut padded = [[0u8; CHUNK_BYTES + RATE - CHUNK_BYTES % RATE]; 4];
    for (p, c) in padded.iter_mut().zip(chunks) {
        p[..c.len()].copy_from_slice(c);
        // Keccak padding (0x01 … 0x80) of a 1024-byte message: the last block holds its final 72 bytes.
        p[CHUNK_BYTES] ^= 0x01;
        p[p.len() - 1] ^= 0x80;
    }
    let lane = |m: usize, at: usize| -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&padded[m][at..at + 8]);
        i64::from_le_bytes(b)
    };
    let mut a = [_mm256_setzero_si256(); 25];
    for block in (0..padded[0].len()).step_by(RATE) {
        for (i, ai) in a.iter_mut().enumerate().take(RATE / 8) {
            let at = block + 8 * i;
            let v = _mm256_set_epi64x(lane(3, at), lane(2, at), lane(1, at), lane(0, at));
            *ai = _mm256_xor_si256(*ai, v);
        }
        for rc in RC {
            // θ
            let mut c = [_mm256_setzero_si256(); 5];
            for (x, cx) in c.iter_mut().enumerate() {
                *cx = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_xor_si256(a[x], a[x + 5]), a[x + 10]),
                    _mm256_xor_si256(a[x + 15], a[x + 20]),
                );
            }
            for x in 0..5 {
                let d = _mm256_xor_si256(c[(x + 4) % 5], rol!(c[(x + 1) % 5], 1));
                for y in 0..5 {
                    a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
                }
            }
            // ρ and π: along the π cycle from lane 1, each lane moves to the next position rotated by its ρ
            // offset (unrolled so every rotation is by an immediate).
            let mut last = a[1];
            macro_rules! rho_pi {
                ($($j:literal $r:literal),*) => {$(
                    let t = a[$j];
                    a[$j] = rol!(last, $r);
                    last = t;
                )*};
            }
            rho_pi!(
                10 1, 7 3, 11 6, 17 10, 18 15, 3 21, 5 28, 16 36, 8 45, 21 55, 24 2, 4 14, 15 27,
                23 41, 19 56, 13 8, 12 25, 2 43, 20 62, 14 18, 22 39, 9 61, 6 20, 1 44
            );
            let _ = last;
            // χ
            for y in 0..5 {
                let t = [
                    a[5 * y],
                    a[5 * y + 1],
                    a[5 * y + 2],
                    a[5 * y + 3],
                    a[5 * y + 4],
                ];
                for x in 0..5 {
                    a[5 * y + x] =
                        _mm256_xor_si256(t[x], _mm256_andnot_si256(t[(x + 1) % 5], t[(x + 2) % 5]));
                }
            }
            // ι
            a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
        }
    }
    let mut out = [[0u8; 32]; 4];
    for (i, ai) in a.iter().enumerate().take(4) {
        let mut lanes = [0i64; 4];
        // SAFETY: `lanes` holds four i64.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), *ai) };
        for (m, l) in lanes.iter().enumerate() {
            out[m][8 * i..8 * i + 8].copy_from_slice(&l.to_le_bytes());
        }
    }
    out.map(B256::from)
}

/// The leaf of one chunk (at most [`CHUNK_BYTES`]) with the scalar keccak.
fn leaf(chunk: &[u8]) -> B256 {
    if chunk.len() == CHUNK_BYTES {
        keccak256(chunk)
    } else {
        let mut buf = [0u8; CHUNK_BYTES];
        buf[..chunk.len()].copy_from_slice(chunk);
        keccak256(buf)
    }
}

/// The leaves of `chunks` (each at most [`CHUNK_BYTES`]): four at a time with AVX2 when `four_lane` and the CPU
/// has it, else one at a time with the scalar `keccak256`.
pub fn leaves(chunks: &[&[u8]], four_lane: bool) -> Vec<B256> {
    let avx2 = four_lane && has_avx2();
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        let quads = chunks.chunks_exact(4);
        let rest = quads.remainder();
        let mut out = Vec::with_capacity(chunks.len());
        for q in quads {
            // SAFETY: the CPU supports AVX2 (checked at run time by `has_avx2`).
            out.extend(unsafe { leaves_x4([q[0], q[1], q[2], q[3]]) });
        }
        out.extend(rest.iter().map(|c| leaf(c)));
        return out;
    }
    let _ = avx2;
    chunks.iter().map(|c| leaf(c)).collect()
}

/// `protocol::tensor_root` of every byte string in `tensors`.
pub fn tensor_roots(tensors: &[Vec<u8>]) -> Vec<B256> {
    // Every chunk of every tensor (an empty tensor is one empty chunk), and where each tensor's chunks start.
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut starts = Vec::with_capacity(tensors.len() + 1);
    for t in tensors {
        starts.push(chunks.len());
        if t.is_empty() {
            chunks.push(&[]);
        } else {
            chunks.extend(t.chunks(CHUNK_BYTES));
        }
    }
    starts.push(chunks.len());
    let leaves: Vec<B256> = chunks
        .par_chunks(CHUNKS_PER_TASK)
        .flat_map_iter(|part| leaves(part, true))
        .collect();
    starts
        .par_windows(2)
        .map(|w| merkle_root(&leaves[w[0]..w[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal to `protocol::tensor::tensor_root` for empty, short, exact-chunk and multi-chunk tensors, in one
    /// batch (so the four-lane kernel mixes chunks of different tensors) and one at a time.
    #[test]
    fn roots_equal_the_protocol_definition() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut byte = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        let sizes = [
            0usize, 1, 8, 71, 72, 73, 135, 136, 137, 1023, 1024, 1025, 2048, 3000, 4096, 5000,
            70_000,
        ];
        let tensors: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|_| byte()).collect())
            .collect();
        let want: Vec<B256> = tensors
            .iter()
            .map(|t| protocol::tensor::tensor_root(t))
            .collect();
        assert_eq!(tensor_roots(&tensors), want);
        for (t, w) in tensors.iter().zip(&want) {
            assert_eq!(tensor_roots(std::slice::from_ref(t)), vec![*w]);
        }
        // The scalar fallback too.
        let chunks: Vec<&[u8]> = tensors[14].chunks(CHUNK_BYTES).collect();
        assert_eq!(
            leaves(&chunks, false),
            leaves(&chunks, true),
            "scalar and four-lane leaves"
        );
    }
}

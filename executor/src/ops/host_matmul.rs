//! The exact block matmul on the host, for the CPU backend: burn-flex's integer matmul is a generic loop, while
//! this kernel streams each int8 weight row once per step against every activation row of the step (a 32-wide
//! int8 × int16 dot per block, exact in i32, combined in i64 exactly as `vir::ops::matmul_row_exact`), split
//! over output rows with rayon.
//!
//! The CPU backend's tensors live in host memory, so reading the activations and writing the result are copies;
//! integer arithmetic is exact, so the result is bit for bit the device matmul's and the reference's.

use rayon::prelude::*;
use vir::weights::{QuantKind, QuantMatrix};

/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 16;

/// A Q4_1 / Q8_0 matrix in host memory: quants row-major, per-block scales and mins `[rows][blocks]`.
#[derive(Debug, Clone)]
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub blocks: usize,
    /// The quants widened to i16 (so the AVX2 kernel multiplies 16 pairs per instruction).
    quants: Vec<i16>,
    scales: Vec<i64>,
    mins: Option<Vec<i64>>,
}

/// `Σ_j q_j · x_j` over one 32-wide block (|result| < 2^27: exact in i32).
#[inline(always)]
fn dot32(q: &[i16; 32], x: &[i16; 32]) -> i32 {
    q.iter()
        .zip(x)
        .map(|(&q, &x)| i32::from(q) * i32::from(x))
        .sum()
}

/// Whether the AVX2 build of the kernel can run (detected once per call; cheap).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl HostMatrix {
    /// [`HostMatrix::rows`] with AVX2 intrinsics: per block, two `vpmaddwd` (16 int16 pairs each, summed in
    /// pairs into i32, exact: `|q·x| ≤ 2^22`), eight blocks reduced together, then the same i64 combination.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2(&self, x: &[i16], xsums: &[i64], n: usize, first: usize, out: &mut [i64]) {
        use std::arch::x86_64::*;
        let (cols, nb) = (self.cols, self.blocks);
        let mut dots = [0i32; 8];
        for (k, out_r) in out.chunks_exact_mut(n).enumerate() {
            let r = first + k;
            let q = &self.quants[r * cols..(r + 1) * cols];
            let d = &self.scales[r * nb..(r + 1) * nb];
            for (i, y) in out_r.iter_mut().enumerate() {
                let xi = &x[i * cols..(i + 1) * cols];
                let mut acc = 0i64;
                let mut b = 0;
                while b < nb {
                    let group = (nb - b).min(8);
                    let mut s = [_mm256_setzero_si256(); 8];
                    for (g, sg) in s.iter_mut().enumerate().take(group) {
                        let at = (b + g) * 32;
                        let (qb, xb) = (&q[at..at + 32], &xi[at..at + 32]);
                        // SAFETY: `qb` and `xb` hold 32 i16 each; unaligned loads of 16 i16 at 0 and 16.
                        unsafe {
                            let q0 = _mm256_loadu_si256(qb.as_ptr().cast());
                            let q1 = _mm256_loadu_si256(qb.as_ptr().add(16).cast());
                            let x0 = _mm256_loadu_si256(xb.as_ptr().cast());
                            let x1 = _mm256_loadu_si256(xb.as_ptr().add(16).cast());
                            *sg = _mm256_add_epi32(
                                _mm256_madd_epi16(q0, x0),
                                _mm256_madd_epi16(q1, x1),
                            );
                        }
                    }
                    // Horizontal sums of the eight vectors: lane j of `t` is block j's dot.
                    let h01 = _mm256_hadd_epi32(s[0], s[1]);
                    let h23 = _mm256_hadd_epi32(s[2], s[3]);
                    let h45 = _mm256_hadd_epi32(s[4], s[5]);
                    let h67 = _mm256_hadd_epi32(s[6], s[7]);
                    let h0123 = _mm256_hadd_epi32(h01, h23);
                    let h4567 = _mm256_hadd_epi32(h45, h67);
                    let lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
                    let hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
                    let t = _mm256_add_epi32(lo, hi);
                    // SAFETY: `dots` holds 8 i32.
                    unsafe { _mm256_storeu_si256(dots.as_mut_ptr().cast(), t) };
                    for (g, &dot) in dots.iter().enumerate().take(group) {
                        acc += d[b + g] * i64::from(dot);
                    }
                    b += group;
                }
                if let Some(mins) = &self.mins {
                    let m = &mins[r * nb..(r + 1) * nb];
                    let xs = &xsums[i * nb..(i + 1) * nb];
                    acc += m.iter().zip(xs).map(|(&m, &s)| m * s).sum::<i64>();
                }
                *y = acc;
            }
        }
    }

    /// `out[k][i]` = exact dot of weight row `first + k` with activation row `i`.
    #[inline(always)]
    fn rows(&self, x: &[i16], xsums: &[i64], n: usize, first: usize, out: &mut [i64]) {
        let (cols, nb) = (self.cols, self.blocks);
        for (k, out_r) in out.chunks_exact_mut(n).enumerate() {
            let r = first + k;
            let q = &self.quants[r * cols..(r + 1) * cols];
            let d = &self.scales[r * nb..(r + 1) * nb];
            for (i, y) in out_r.iter_mut().enumerate() {
                let xi = &x[i * cols..(i + 1) * cols];
                let mut acc = 0i64;
                for ((qb, xb), &db) in q.chunks_exact(32).zip(xi.chunks_exact(32)).zip(d) {
                    if let (Ok(qb), Ok(xb)) = (qb.try_into(), xb.try_into()) {
                        acc += db * i64::from(dot32(qb, xb));
                    }
                }
                if let Some(mins) = &self.mins {
                    let m = &mins[r * nb..(r + 1) * nb];
                    let xs = &xsums[i * nb..(i + 1) * nb];
                    acc += m.iter().zip(xs).map(|(&m, &s)| m * s).sum::<i64>();
                }
                *y = acc;
            }
        }
    }

    /// Copies the matrix (the caller has checked its shapes).
    pub fn new(m: &QuantMatrix) -> Self {
        Self {
            rows: m.rows,
            cols: m.cols,
            blocks: m.blocks_per_row(),
            quants: m.quants.iter().map(|&q| i16::from(q)).collect(),
            scales: m.scales.clone(),
            mins: (m.kind == QuantKind::Q4_1).then(|| m.mins.clone()),
        }
    }

    /// The exact dot products `y[i][r]` of weight row `r` with activation row `i` of `x` (`[n, cols]` int16,
    /// row-major); returns `[n, rows]` row-major.
    pub fn matmul_exact(&self, x: &[i16], n: usize) -> Vec<i64> {
        let rows = self.rows;
        let xsums: Vec<i64> = x
            .chunks_exact(32)
            .map(|b| b.iter().map(|&v| i64::from(v)).sum())
            .collect();
        // yt[r][i], computed in tasks of ROWS_PER_TASK weight rows.
        let mut yt = vec![0i64; rows * n];
        let avx2 = has_avx2();
        yt.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * ROWS_PER_TASK;
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU supports AVX2 (checked at run time by `has_avx2`).
                    unsafe { self.rows_avx2(x, &xsums, n, first, out) };
                    return;
                }
                let _ = avx2;
                self.rows(x, &xsums, n, first, out);
            });
        if n == 1 {
            return yt;
        }
        let mut y = vec![0i64; rows * n];
        for (r, row) in yt.chunks_exact(n).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                y[i * rows + r] = v;
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernel builds equal `vir::ops::matmul_row_exact` on extreme and pseudo-random values.
    #[test]
    fn kernels_equal_the_reference_row_dot() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            let (rows, cols, n) = (37, 352, 5);
            let blocks = cols / 32;
            let quants: Vec<i8> = (0..rows * cols)
                .map(|i| match (kind, i % 7) {
                    (QuantKind::Q8_0, 0) => -128,
                    (QuantKind::Q8_0, _) => next() as i8,
                    (QuantKind::Q4_1, 0) => 15,
                    (QuantKind::Q4_1, _) => (next() % 16) as i8,
                })
                .collect();
            let scales: Vec<i64> = (0..rows * blocks)
                .map(|_| (next() % (1 << 20)) as i64 - (1 << 19))
                .collect();
            let mins: Vec<i64> = match kind {
                QuantKind::Q4_1 => (0..rows * blocks)
                    .map(|_| (next() % (1 << 22)) as i64 - (1 << 21))
                    .collect(),
                QuantKind::Q8_0 => Vec::new(),
            };
            let m = QuantMatrix {
                name: "t".into(),
                rows,
                cols,
                kind,
                scales,
                mins,
                quants,
                raw: Vec::new(),
            };
            let x: Vec<i16> = (0..n * cols)
                .map(|i| match i % 11 {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => next() as i16,
                })
                .collect();
            let h = HostMatrix::new(&m);
            let got = h.matmul_exact(&x, n);
            let xsums: Vec<i64> = x
                .chunks_exact(32)
                .map(|b| b.iter().map(|&v| i64::from(v)).sum())
                .collect();
            let mut portable = vec![0i64; rows * n];
            h.rows(&x, &xsums, n, 0, &mut portable);
            for i in 0..n {
                let xi = &x[i * cols..(i + 1) * cols];
                let xs = &xsums[i * blocks..(i + 1) * blocks];
                for r in 0..rows {
                    let want = vir::ops::matmul_row_exact(&m, r, xi, xs);
                    assert_eq!(got[i * rows + r], want, "{kind:?} row {r} input {i}");
                    assert_eq!(
                        portable[r * n + i],
                        want,
                        "{kind:?} portable row {r} input {i}"
                    );
                }
            }
        }
    }
}

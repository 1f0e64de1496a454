//! The exact block matmul on the host, for the CPU backend: burn-flex's integer matmul is a generic loop, while
//! this kernel streams each int8 weight row once per step against every activation row of the step (a 32-wide
//! int8 × int16 dot per block, exact in i32, combined in i64 exactly as `vir::ops::matmul_row_exact`), split
//! over output rows with rayon.
//!
//! The AVX2 kernel keeps the quants as int8 (half the memory traffic of int16, which bounds single-stream
//! decode) and widens them in registers; it multiplies each widened weight block with two activation rows at once
//! and reduces four blocks' dots together, so the batched case is bound by `vpmaddwd` rather than by loads and
//! horizontal sums. Wrapping i64 sums are associative, so any order of the block terms gives the reference's sum.
//!
//! The CPU backend's tensors live in host memory, so reading the activations and writing the result are copies;
//! integer arithmetic is exact, so the result is bit for bit the device matmul's and the reference's.

use crate::cpu::has_avx2;
use rayon::prelude::*;
use vir::weights::{QuantKind, QuantMatrix};

/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 16;

/// Values per quantization block.
const BLOCK: usize = 32;

/// A Q4_1 / Q8_0 matrix in host memory: quants row-major, per-block scales and mins `[rows][blocks]`.
#[derive(Debug, Clone)]
pub struct HostMatrix {
    pub rows: usize,
    pub cols: usize,
    pub blocks: usize,
    /// The quants (Q4_1: 0..=15, Q8_0: -128..=127), row-major.
    quants: Vec<i8>,
    scales: Vec<i64>,
    mins: Option<Vec<i64>>,
    /// Every scale and min fits in i32, so the AVX2 kernel can combine blocks with `vpmuldq`.
    combine_in_i32: bool,
}

/// `Σ_j q_j · x_j` over one 32-wide block (|result| < 2^27: exact in i32).
#[inline(always)]
fn dot32(q: &[i8], x: &[i16]) -> i32 {
    q.iter()
        .zip(x)
        .map(|(&q, &x)| i32::from(q) * i32::from(x))
        .sum()
}

/// The AVX2 kernel's building blocks (all exact integer arithmetic).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// The 32 int8 quants at `q` widened to two vectors of 16 int16.
    ///
    /// # Safety
    /// AVX2 is available and `q` points to 32 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn widen(q: *const i8) -> (__m256i, __m256i) {
        unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(q.cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16).cast())),
            )
        }
    }

    /// Eight i32 partial sums of one block's products with the 32 int16 activations at `x`
    /// (each lane `< 2^24` in magnitude).
    ///
    /// # Safety
    /// AVX2 is available and `x` points to 32 readable i16.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn partial(q: (__m256i, __m256i), x: *const i16) -> __m256i {
        unsafe {
            let x0 = _mm256_loadu_si256(x.cast());
            let x1 = _mm256_loadu_si256(x.add(16).cast());
            _mm256_add_epi32(_mm256_madd_epi16(q.0, x0), _mm256_madd_epi16(q.1, x1))
        }
    }

    /// The four block dots of four partial-sum vectors, widened to i64 lanes: `[Σ s0, Σ s1, Σ s2, Σ s3]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn reduce4(s: [__m256i; 4]) -> __m256i {
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        _mm256_cvtepi32_epi64(_mm_add_epi32(
            _mm256_castsi256_si128(h),
            _mm256_extracti128_si256::<1>(h),
        ))
    }

    /// `acc + a · b` per i64 lane, for lanes whose values fit in i32 (`vpmuldq`: exact 32 × 32 → 64 bits).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn mul_add(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi64(acc, _mm256_mul_epi32(a, b))
    }

    /// Four i64 at `p`.
    ///
    /// # Safety
    /// AVX2 is available and `p` points to four readable i64.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn load4(p: *const i64) -> __m256i {
        unsafe { _mm256_loadu_si256(p.cast()) }
    }

    /// The wrapping sum of the four i64 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn sum4(v: __m256i) -> i64 {
        let t = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        _mm_cvtsi128_si64(t).wrapping_add(_mm_extract_epi64::<1>(t))
    }

    /// The dot of one partial-sum vector.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn reduce1(s: __m256i) -> i32 {
        let t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let t = _mm_hadd_epi32(t, t);
        _mm_cvtsi128_si32(_mm_hadd_epi32(t, t))
    }
}

impl HostMatrix {
    /// The exact dots of weight row `r` with the `P` activation rows `xs` (their block sums `xsums`), with AVX2:
    /// each weight block is widened once and multiplied with all `P` rows; four blocks are reduced together and
    /// combined with their scales (and Q4_1 mins with the block sums) by `vpmuldq`, which needs every scale, min
    /// and block sum in i32 ([`HostMatrix::combine_in_i32`]; block sums of int16 always are).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn row_dots_avx2<const P: usize>(
        &self,
        r: usize,
        xs: [&[i16]; P],
        xsums: [&[i64]; P],
    ) -> [i64; P] {
        use std::arch::x86_64::{__m256i, _mm256_setzero_si256};
        let (cols, nb) = (self.cols, self.blocks);
        let q = &self.quants[r * cols..(r + 1) * cols];
        let d = &self.scales[r * nb..(r + 1) * nb];
        let m = self.mins.as_ref().map(|m| &m[r * nb..(r + 1) * nb]);
        assert!(
            xs.iter().all(|x| x.len() == cols)
                && xsums.iter().all(|s| s.len() == nb)
                && nb * BLOCK == cols
        );
        let mut acc = [_mm256_setzero_si256(); P];
        let groups = nb / 4;
        for g in 0..groups {
            let mut s: [[__m256i; 4]; P] = [[_mm256_setzero_si256(); 4]; P];
            for j in 0..4 {
                let at = (4 * g + j) * BLOCK;
                // SAFETY: block `4g + j` < `nb`, so `at + 32 <= cols`, the length of `q` and of every `x`.
                unsafe {
                    let w = avx2::widen(q.as_ptr().add(at));
                    for (sp, x) in s.iter_mut().zip(xs) {
                        sp[j] = avx2::partial(w, x.as_ptr().add(at));
                    }
                }
            }
            // SAFETY: blocks `4g..4g + 4` < `nb`: four values of `d`, `m` and each `xsums` row.
            unsafe {
                let dv = avx2::load4(d.as_ptr().add(4 * g));
                let mv = m.map(|m| avx2::load4(m.as_ptr().add(4 * g)));
                for ((a, sp), xsum) in acc.iter_mut().zip(s).zip(xsums) {
                    *a = avx2::mul_add(*a, dv, avx2::reduce4(sp));
                    if let Some(mv) = mv {
                        *a = avx2::mul_add(*a, mv, avx2::load4(xsum.as_ptr().add(4 * g)));
                    }
                }
            }
        }
        let mut out = acc.map(|a| avx2::sum4(a));
        for b in 4 * groups..nb {
            let at = b * BLOCK;
            // SAFETY: `b < nb`, so `at + 32 <= cols`.
            unsafe {
                let w = avx2::widen(q.as_ptr().add(at));
                for ((o, x), xsum) in out.iter_mut().zip(xs).zip(xsums) {
                    let dot = avx2::reduce1(avx2::partial(w, x.as_ptr().add(at)));
                    *o = o.wrapping_add(d[b].wrapping_mul(i64::from(dot)));
                    if let Some(m) = m {
                        *o = o.wrapping_add(m[b].wrapping_mul(xsum[b]));
                    }
                }
            }
        }
        out
    }

    /// The exact dots of weight row `r` with the activation rows `xs`, portable.
    fn row_dots<const P: usize>(&self, r: usize, xs: [&[i16]; P], xsums: [&[i64]; P]) -> [i64; P] {
        let (cols, nb) = (self.cols, self.blocks);
        let q = &self.quants[r * cols..(r + 1) * cols];
        let d = &self.scales[r * nb..(r + 1) * nb];
        let mut acc = [0i64; P];
        for (a, x) in acc.iter_mut().zip(xs) {
            for ((qb, xb), &db) in q.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(d) {
                *a = a.wrapping_add(db.wrapping_mul(i64::from(dot32(qb, xb))));
            }
        }
        self.add_min_terms(r, &mut acc, xsums);
        acc
    }

    /// Adds Q4_1's `Σ_b min_b · xsum_b` of weight row `r` to each row's dot.
    #[inline(always)]
    fn add_min_terms<const P: usize>(&self, r: usize, acc: &mut [i64; P], xsums: [&[i64]; P]) {
        if let Some(mins) = &self.mins {
            let m = &mins[r * self.blocks..(r + 1) * self.blocks];
            for (a, xs) in acc.iter_mut().zip(xsums) {
                for (&mb, &sb) in m.iter().zip(xs) {
                    *a = a.wrapping_add(mb.wrapping_mul(sb));
                }
            }
        }
    }

    /// `out[k][i]` = exact dot of weight row `first + k` with activation row `i`, activation rows two at a time.
    fn rows(&self, x: &[i16], xsums: &[i64], n: usize, first: usize, out: &mut [i64], avx2: bool) {
        let (cols, nb) = (self.cols, self.blocks);
        let act = |i: usize| (&x[i * cols..(i + 1) * cols], &xsums[i * nb..(i + 1) * nb]);
        for (k, out_r) in out.chunks_exact_mut(n).enumerate() {
            let r = first + k;
            let mut i = 0;
            while i + 2 <= n {
                let ((x0, s0), (x1, s1)) = (act(i), act(i + 1));
                let dots = self.dots(r, [x0, x1], [s0, s1], avx2);
                out_r[i..i + 2].copy_from_slice(&dots);
                i += 2;
            }
            if i < n {
                let (x0, s0) = act(i);
                out_r[i] = self.dots(r, [x0], [s0], avx2)[0];
            }
        }
    }

    /// [`HostMatrix::row_dots_avx2`] where AVX2 runs, else [`HostMatrix::row_dots`].
    #[inline(always)]
    fn dots<const P: usize>(
        &self,
        r: usize,
        xs: [&[i16]; P],
        xsums: [&[i64]; P],
        avx2: bool,
    ) -> [i64; P] {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 (checked at run time by `has_avx2`).
            return unsafe { self.row_dots_avx2(r, xs, xsums) };
        }
        let _ = avx2;
        self.row_dots(r, xs, xsums)
    }

    /// Copies the matrix (the caller has checked its shapes).
    pub fn new(m: &QuantMatrix) -> Self {
        let mins = (m.kind == QuantKind::Q4_1).then(|| m.mins.clone());
        let fits = |v: &i64| i32::try_from(*v).is_ok();
        Self {
            rows: m.rows,
            cols: m.cols,
            blocks: m.blocks_per_row(),
            quants: m.quants.clone(),
            combine_in_i32: m.scales.iter().all(fits) && mins.iter().flatten().all(fits),
            scales: m.scales.clone(),
            mins,
        }
    }

    /// The exact dot products `y[i][r]` of weight row `r` with activation row `i` of `x` (`[n, cols]` int16,
    /// row-major); returns `[n, rows]` row-major.
    pub fn matmul_exact(&self, x: &[i16], n: usize) -> Vec<i64> {
        self.matmul_with(x, n, self.combine_in_i32 && has_avx2())
    }

    fn matmul_with(&self, x: &[i16], n: usize, avx2: bool) -> Vec<i64> {
        let rows = self.rows;
        let xsums: Vec<i64> = x
            .chunks_exact(BLOCK)
            .map(|b| b.iter().map(|&v| i64::from(v)).sum())
            .collect();
        // yt[r][i], computed in tasks of ROWS_PER_TASK weight rows.
        let mut yt = vec![0i64; rows * n];
        yt.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(task, out)| self.rows(x, &xsums, n, task * ROWS_PER_TASK, out, avx2));
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

    /// Both kernel builds equal `vir::ops::matmul_row_exact` on extreme and pseudo-random values, for block
    /// counts with and without a tail after the groups of four, odd and even numbers of activation rows, and a
    /// scale too wide for the AVX2 combination.
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
            for (rows, cols, n) in [
                (37, 352, 5),
                (17, 32, 1),
                (20, 96, 2),
                (33, 128, 3),
                (19, 576, 4),
            ] {
                let blocks = cols / BLOCK;
                let quants: Vec<i8> = (0..rows * cols)
                    .map(|i| match (kind, i % 7) {
                        (QuantKind::Q8_0, 0) => -128,
                        (QuantKind::Q8_0, 1) => 127,
                        (QuantKind::Q8_0, _) => next() as i8,
                        (QuantKind::Q4_1, 0) => 15,
                        (QuantKind::Q4_1, _) => (next() % 16) as i8,
                    })
                    .collect();
                let mut scales: Vec<i64> = (0..rows * blocks)
                    .map(|_| (next() % (1 << 20)) as i64 - (1 << 19))
                    .collect();
                if cols == 96 {
                    // A scale outside i32: the AVX2 kernel cannot combine with `vpmuldq`; the portable one runs.
                    scales[1] = -(1 << 33);
                }
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
                assert_eq!(h.combine_in_i32, cols != 96);
                let fast = h.matmul_exact(&x, n);
                let portable = h.matmul_with(&x, n, false);
                for i in 0..n {
                    let xi = &x[i * cols..(i + 1) * cols];
                    let xs: Vec<i64> = xi
                        .chunks_exact(BLOCK)
                        .map(|b| b.iter().map(|&v| i64::from(v)).sum())
                        .collect();
                    for r in 0..rows {
                        let want = vir::ops::matmul_row_exact(&m, r, xi, &xs);
                        let at = i * rows + r;
                        assert_eq!(fast[at], want, "{kind:?} {cols} cols: row {r} input {i}");
                        assert_eq!(
                            portable[at], want,
                            "{kind:?} {cols} cols portable: row {r} input {i}"
                        );
                    }
                }
            }
        }
    }
}

//! Floor shifts of I64 tensors by a per-row exponent: `floor(x · 2^k)` (arithmetic right shift for `k < 0`,
//! exact multiplication for `k > 0`), optionally saturated, as `vir::fixed::shift` followed by a clamp.
//!
//! Right-shift amounts are clamped to 63 (every backend then computes `floor`, never a masked or undefined
//! shift); left shifts are multiplications by a power of two after a pre-clamp that keeps the product in range
//! without changing the saturated result.

use crate::transfer::i64_tensor;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor};

/// Largest bound [`shift_clamp_rows`] supports: `|lo|, |hi| < 2^61`.
pub const MAX_CLAMP: i64 = (1 << 61) - 1;

fn uniform(k: &[i32]) -> Option<i32> {
    let first = *k.first()?;
    k.iter().all(|&v| v == first).then_some(first)
}

fn right_amount(k: i32) -> i64 {
    i64::from((-k).clamp(0, 63))
}

/// `x >> min(s, 63)` for a scalar `s ≥ 0` (floor).
pub fn shr_scalar<B: Backend, const D: usize>(x: Tensor<B, D, Int>, s: u32) -> Tensor<B, D, Int> {
    if s == 0 {
        x
    } else {
        x.bitwise_right_shift_scalar((s.min(63) as i32).elem())
    }
}

fn shr_rows<B: Backend>(x: Tensor<B, 2, Int>, k: &[i32]) -> Tensor<B, 2, Int> {
    if let Some(k0) = uniform(k) {
        return shr_scalar(x, right_amount(k0) as u32);
    }
    let amounts: Vec<i64> = k.iter().map(|&v| right_amount(v)).collect();
    let t = i64_tensor::<B, 2>(amounts, [k.len(), 1], &x.device());
    x.bitwise_right_shift(t)
}

fn mul_pow2_rows<B: Backend>(x: Tensor<B, 2, Int>, k: &[i32], cap: i32) -> Tensor<B, 2, Int> {
    if let Some(k0) = uniform(k) {
        let k0 = k0.clamp(0, cap);
        return if k0 == 0 { x } else { x.mul_scalar(1i64 << k0) };
    }
    let factors: Vec<i64> = k.iter().map(|&v| 1i64 << v.clamp(0, cap)).collect();
    let t = i64_tensor::<B, 2>(factors, [k.len(), 1], &x.device());
    x.mul(t)
}

/// `floor(x[r] · 2^k[r])` for an I64 `[rows, n]` tensor (`k`: one entry per row, or one for all rows), when the caller knows the result cannot leave i64 (left
/// shifts only of values small enough, as in `quantize` and RMSNorm's normalization).
pub fn shift_rows_exact<B: Backend>(x: Tensor<B, 2, Int>, k: &[i32]) -> Tensor<B, 2, Int> {
    let x = shr_rows(x, k);
    if k.iter().any(|&v| v > 0) {
        mul_pow2_rows(x, k, 62)
    } else {
        x
    }
}

/// `clamp(floor(x[r] · 2^k[r]), lo, hi)` of the exact (unbounded) value, for an I64 `[rows, n]` tensor; any `k`
/// (one entry per row, or one for all rows).
/// Requires `-2^61 < lo ≤ 0 ≤ hi < 2^61`.
///
/// For `k > 0` the value is first clamped to `[-(⌊-lo/2^k⌋ + 1), ⌊hi/2^k⌋ + 1]`: any value beyond those bounds
/// saturates anyway, and inside them `x · 2^k` stays below `2^62`. Shifts past 61 saturate every non-zero value,
/// so `k` is capped at 61.
pub fn shift_clamp_rows<B: Backend>(
    x: Tensor<B, 2, Int>,
    k: &[i32],
    lo: i64,
    hi: i64,
) -> Tensor<B, 2, Int> {
    debug_assert!((-MAX_CLAMP..=0).contains(&lo) && (0..=MAX_CLAMP).contains(&hi));
    if k.iter().all(|&v| v <= 0) {
        return shr_rows(x, k).clamp(lo, hi);
    }
    let pre = |kk: i32| -> (i64, i64) {
        if kk <= 0 {
            (lo, hi)
        } else {
            let kk = kk.min(61);
            (-(((-lo) >> kk) + 1), (hi >> kk) + 1)
        }
    };
    let x = shr_rows(x, k);
    let x = if let Some(k0) = uniform(k) {
        let (plo, phi) = pre(k0);
        x.clamp(plo, phi)
    } else {
        let [rows, n] = x.dims();
        let device = x.device();
        let (los, his): (Vec<i64>, Vec<i64>) = k.iter().map(|&v| pre(v)).unzip();
        let lo_t = i64_tensor::<B, 2>(los, [rows, 1], &device).repeat_dim(1, n);
        let hi_t = i64_tensor::<B, 2>(his, [rows, 1], &device).repeat_dim(1, n);
        x.max_pair(lo_t).min_pair(hi_t)
    };
    mul_pow2_rows(x, k, 61).clamp(lo, hi)
}

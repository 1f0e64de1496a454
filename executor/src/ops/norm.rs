//! RMSNorm (`vir::ops::rms_norm`) for a batch of residual rows.

use crate::error::EngineError;
use crate::ops::quant::{QBatch, quantize};
use crate::ops::shift::{shift_rows_exact, shr_scalar};
use crate::transfer::{i64_tensor, read_i64};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, IntDType, Tensor};
use vir::fixed::{bit_len, isqrt, shift};
use vir::ops::{NORM_OUT_EXP, RESIDUAL_FRAC};

/// RMSNorm of Q12 residual rows (I32 `[rows, d]`) with Q16 gamma (I64 `[1, d]`): per row
/// `k = bit_len(max|h|) - 24`, `h' = floor(h·2^-k)`, `ms = floor(Σh'²/d) + eps_term`, `r = max(isqrt(ms), 1)`,
/// `inv = floor(2^48 / r)`, `y = floor(h'·inv·2^-24)`, `z = y·g`, then `quantize(z, d, -40)` (docs/vir.md §4.2).
/// The per-row scalars (`k`, `ms`, `r`, `inv`) are computed on the host from values read back.
pub fn rms_norm<B: Backend>(
    h: Tensor<B, 2, Int>,
    gamma: &Tensor<B, 2, Int>,
    eps_fx: i64,
) -> Result<QBatch<B>, EngineError> {
    let [rows, d] = h.dims();
    if gamma.dims() != [1, d] || d == 0 {
        return Err(EngineError::shape(
            "rms_norm",
            format!("gamma {:?} for rows of {d}", gamma.dims()),
        ));
    }
    let device = h.device();
    let h = h.cast(IntDType::I64);
    let ext = read_i64(Tensor::cat(
        vec![h.clone().max_dim(1), h.clone().min_dim(1)],
        1,
    ))?;
    let k: Vec<i32> = ext
        .chunks_exact(2)
        .map(|p| {
            let m = p[0].unsigned_abs().max(p[1].unsigned_abs());
            if m == 0 { 0 } else { bit_len(m) - 24 }
        })
        .collect();
    let neg: Vec<i32> = k.iter().map(|v| -v).collect();
    let hp = shift_rows_exact(h, &neg);
    let ss = read_i64(hp.clone().mul(hp.clone()).sum_dim(1))?;
    let inv: Vec<i64> = ss
        .iter()
        .zip(&k)
        .map(|(&ss, &k)| {
            let eps_term = shift(eps_fx, 2 * RESIDUAL_FRAC as i32 - 2 * k - 48).min(1 << 60);
            let ms = ss / d as i64 + eps_term;
            let r = (isqrt(ms as u64) as i64).max(1);
            (1i64 << 48) / r
        })
        .collect();
    let inv = i64_tensor::<B, 2>(inv, [rows, 1], &device);
    let y = shr_scalar(hp.mul(inv), 24);
    quantize(y.mul(gamma.clone()), 1, NORM_OUT_EXP)
}

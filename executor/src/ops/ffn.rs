//! The residual add and the SwiGLU gate (`vir::ops::residual_add`, `vir::ops::swiglu`).

use crate::error::EngineError;
use crate::ops::quant::{QBatch, quantize};
use crate::ops::shift::shr_scalar;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, IntDType, Tensor};
use vir::ops::ACT_FRAC;
use vir::tables::{SIGMOID_INDEX_FRAC, SIGMOID_LEN, TABLE_FRAC};

/// `sat32(a + b)` of two I32 `[rows, n]` tensors (the sum is taken in I64).
pub fn residual_add<B: Backend>(
    a: Tensor<B, 2, Int>,
    b: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    if a.dims() != b.dims() {
        return Err(EngineError::shape(
            "residual_add",
            format!("{:?} + {:?}", a.dims(), b.dims()),
        ));
    }
    Ok(a.cast(IntDType::I64)
        .add(b.cast(IntDType::I64))
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        .cast(IntDType::I32))
}

/// SwiGLU of Q16 gate and up rows (I32 `[rows, d_ff]`): `σ = SIGMOID[clamp((g >> 6) + 2^14, 0, 2^15 - 1)]`,
/// `silu = floor(g·σ·2^-16)`, `h = silu·u` (Q32), then int16 with one exponent per row. `sigmoid` is the table
/// as I64 `[2^15]`.
pub fn swiglu<B: Backend>(
    gate: Tensor<B, 2, Int>,
    up: Tensor<B, 2, Int>,
    sigmoid: &Tensor<B, 1, Int>,
) -> Result<QBatch<B>, EngineError> {
    let [rows, n] = gate.dims();
    if up.dims() != [rows, n] || sigmoid.dims() != [SIGMOID_LEN] {
        return Err(EngineError::shape(
            "swiglu",
            format!(
                "gate {:?}, up {:?}, table {:?}",
                gate.dims(),
                up.dims(),
                sigmoid.dims()
            ),
        ));
    }
    let g = gate.cast(IntDType::I64);
    let idx = shr_scalar(g.clone(), TABLE_FRAC - SIGMOID_INDEX_FRAC)
        .add_scalar((SIGMOID_LEN / 2) as i64)
        .clamp(0, SIGMOID_LEN as i64 - 1)
        .cast(IntDType::I32)
        .reshape([rows * n]);
    let sig = sigmoid.clone().select(0, idx).reshape([rows, n]);
    // |g·σ| ≤ 2^47, |silu| ≤ 2^31, |silu·u| ≤ 2^62.
    let silu = shr_scalar(g.mul(sig), TABLE_FRAC);
    quantize(silu.mul(up.cast(IntDType::I64)), 1, -2 * ACT_FRAC as i32)
}

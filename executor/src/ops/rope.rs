//! RoPE (`vir::ops::rope_quant`, `vir::ops::rope`): rotation of adjacent pairs by the committed Q16 cos/sin
//! table, each row at its own position.

use crate::error::EngineError;
use crate::ops::quant::{QBatch, quantize};
use crate::ops::shift::shr_scalar;
use crate::transfer::{i32_tensor, i64_tensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, IntDType, Tensor};
use vir::ops::ACT_FRAC;
use vir::tables::TABLE_FRAC;

/// The ROPE table on the device, spread so one elementwise pass rotates every pair:
/// `cos[p][2i] = cos[p][2i+1] = c_i` and `sin[p][2i] = -s_i`, `sin[p][2i+1] = s_i`.
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    pub positions: usize,
    pub head_dim: usize,
    cos: Tensor<B, 2, Int>,
    sin: Tensor<B, 2, Int>,
}

impl<B: Backend> RopeTable<B> {
    /// From `vir`'s `[position][pair][cos, sin]` table.
    pub fn upload(rope: &[i32], head_dim: usize, device: &B::Device) -> Result<Self, EngineError> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || !rope.len().is_multiple_of(head_dim) {
            return Err(EngineError::shape(
                "RopeTable",
                format!("{} entries for head_dim {head_dim}", rope.len()),
            ));
        }
        let positions = rope.len() / head_dim;
        let mut cos = Vec::with_capacity(rope.len());
        let mut sin = Vec::with_capacity(rope.len());
        for pair in rope.chunks_exact(2) {
            let (c, s) = (i64::from(pair[0]), i64::from(pair[1]));
            cos.extend([c, c]);
            sin.extend([-s, s]);
        }
        Ok(Self {
            positions,
            head_dim,
            cos: i64_tensor::<B, 2>(cos, [positions, head_dim], device),
            sin: i64_tensor::<B, 2>(sin, [positions, head_dim], device),
        })
    }
}

/// Rotated pairs in Q16 as I64 `[rows, n·head_dim]`: `rot[2i] = floor((a·c - b·s)·2^-16)`,
/// `rot[2i+1] = floor((a·s + b·c)·2^-16)` for `(a, b) = (x[2i], x[2i+1])` of each head, at each row's position.
pub fn rotate<B: Backend>(
    x: Tensor<B, 2, Int>,
    positions: &[usize],
    table: &RopeTable<B>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, width] = x.dims();
    let hd = table.head_dim;
    if rows != positions.len() || width % hd != 0 {
        return Err(EngineError::shape(
            "rope",
            format!(
                "{rows} rows of {width} values for {} positions and head_dim {hd}",
                positions.len()
            ),
        ));
    }
    if let Some(&p) = positions.iter().find(|&&p| p >= table.positions) {
        return Err(EngineError::shape(
            "rope",
            format!(
                "position {p} is past the table's {} positions",
                table.positions
            ),
        ));
    }
    let heads = width / hd;
    let device = x.device();
    let idx = i32_tensor::<B, 1>(
        positions.iter().map(|&p| p as i32).collect(),
        [rows],
        &device,
    );
    let cos = table
        .cos
        .clone()
        .select(0, idx.clone())
        .repeat_dim(1, heads);
    let sin = table.sin.clone().select(0, idx).repeat_dim(1, heads);
    let x = x.cast(IntDType::I64);
    let swapped = x
        .clone()
        .reshape([rows, width / 2, 2])
        .flip([2])
        .reshape([rows, width]);
    Ok(shr_scalar(x.mul(cos).add(swapped.mul(sin)), TABLE_FRAC))
}

/// QRope: RoPE on Q16 queries, then int16 with one exponent per head (`quantize(rot, head_dim, -16)`).
pub fn rope_quant<B: Backend>(
    q: Tensor<B, 2, Int>,
    positions: &[usize],
    table: &RopeTable<B>,
) -> Result<QBatch<B>, EngineError> {
    let heads = q.dims()[1] / table.head_dim.max(1);
    quantize(rotate(q, positions, table)?, heads, -(ACT_FRAC as i32))
}

/// KRope: RoPE on Q16 keys, saturated to i32 (the key-cache entry).
pub fn rope<B: Backend>(
    k: Tensor<B, 2, Int>,
    positions: &[usize],
    table: &RopeTable<B>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    Ok(rotate(k, positions, table)?
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        .cast(IntDType::I32))
}

//! Block-quantized matrices on the device ([`DeviceMatrix`]), the embedding lookup and the exact matmul.
//!
//! A row's weights are `w = D_b·q + M_b` per 32-wide block `b` (units of 2^-24). The matmul computes the
//! per-block dots `acc_b = Σ q·x` with one batched I32 matmul (`[blocks, rows, 32] × [blocks, 32, n]`: exact,
//! `|acc_b| < 2^28`), then combines them exactly in I64: `y = Σ_b D_b·acc_b + Σ_b M_b·xs_b` (docs/vir.md §4.3).
//! Measured on burn-flex against folding the weights into exact I64 integers (`w < 2^35`) and one I64 matmul:
//! the block form is 1.5–2× faster at one row (flex's I64 matmul is a scalar loop) and as fast at 8 rows, with
//! half the memory.
//!
//! On the CPU backend the matmul itself runs on the host ([`HostMatrix`]): the same exact sums, computed by a
//! kernel that streams each weight row once against every row of the step. The result is bit for bit the same.

use crate::error::EngineError;
use crate::ops::host_matmul::HostMatrix;
use crate::ops::quant::{QBatch, to_i16};
use crate::ops::shift::shift_clamp_rows;
use crate::transfer::{i32_tensor, i64_tensor, read_i32};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, IntDType, Tensor};
use std::any::TypeId;
use std::sync::Arc;
use vir::ops::WEIGHT_FRAC;
use vir::weights::{QuantKind, QuantMatrix};

/// Weights per block.
pub const BLOCK: usize = 32;

/// A Q4_1 or Q8_0 matrix on the device.
#[derive(Debug, Clone)]
pub struct DeviceMatrix<B: Backend> {
    pub rows: usize,
    pub cols: usize,
    pub blocks: usize,
    /// `q` as I32 `[blocks, rows, 32]`.
    quants: Tensor<B, 3, Int>,
    /// `D` as I64 `[blocks, rows]`.
    scales: Tensor<B, 2, Int>,
    /// `M` as I64 `[rows, blocks]` (Q4_1 only).
    mins: Option<Tensor<B, 2, Int>>,
    /// A host copy for the CPU backend's matmul.
    host: Option<Arc<HostMatrix>>,
}

impl<B: Backend> DeviceMatrix<B> {
    /// Uploads a matrix (block-major, so each block's dots are one batch of the matmul).
    pub fn upload(m: &QuantMatrix, device: &B::Device) -> Result<Self, EngineError> {
        let (rows, cols) = (m.rows, m.cols);
        let blocks = m.blocks_per_row();
        if cols % BLOCK != 0 || m.quants.len() != rows * cols || m.scales.len() != rows * blocks {
            return Err(EngineError::shape(
                "DeviceMatrix",
                format!("{}: {rows}x{cols} with inconsistent block data", m.name),
            ));
        }
        let mut quants = Vec::with_capacity(rows * cols);
        for b in 0..blocks {
            for r in 0..rows {
                let at = r * cols + b * BLOCK;
                quants.extend(m.quants[at..at + BLOCK].iter().map(|&q| i32::from(q)));
            }
        }
        let mut scales = Vec::with_capacity(rows * blocks);
        for b in 0..blocks {
            scales.extend((0..rows).map(|r| m.scales[r * blocks + b]));
        }
        let mins = match m.kind {
            QuantKind::Q4_1 => {
                if m.mins.len() != rows * blocks {
                    return Err(EngineError::shape(
                        "DeviceMatrix",
                        format!(
                            "{}: {} mins for {rows}x{blocks} blocks",
                            m.name,
                            m.mins.len()
                        ),
                    ));
                }
                Some(i64_tensor::<B, 2>(m.mins.clone(), [rows, blocks], device))
            }
            QuantKind::Q8_0 => None,
        };
        let host = (TypeId::of::<B>() == TypeId::of::<crate::backend::Cpu>())
            .then(|| Arc::new(HostMatrix::new(m)));
        Ok(Self {
            rows,
            cols,
            blocks,
            quants: i32_tensor::<B, 3>(quants, [blocks, rows, BLOCK], device),
            scales: i64_tensor::<B, 2>(scales, [blocks, rows], device),
            mins,
            host,
        })
    }

    /// The host copy the CPU backend's matmul runs on (`None` on other backends).
    pub fn host(&self) -> Option<&HostMatrix> {
        self.host.as_deref()
    }
}

/// `vir::ops::embed` for each token: `out[t][i] = sat32(floor((D·q + M) · 2^(out_frac - 24)))`, I32
/// `[tokens, cols]`.
pub fn embed<B: Backend>(
    w: &DeviceMatrix<B>,
    tokens: &[u32],
    out_frac: u32,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= w.rows) {
        return Err(EngineError::shape(
            "embed",
            format!("token {t} is outside the {} rows of the matrix", w.rows),
        ));
    }
    let n = tokens.len();
    let nb = w.blocks;
    let device = w.quants.device();
    let idx = i32_tensor::<B, 1>(tokens.iter().map(|&t| t as i32).collect(), [n], &device);
    let q = w
        .quants
        .clone()
        .select(1, idx.clone())
        .cast(IntDType::I64)
        .reshape([nb * n, BLOCK]);
    let d = w.scales.clone().select(1, idx.clone()).reshape([nb * n, 1]);
    let mut v = q.mul(d);
    if let Some(mins) = &w.mins {
        let m = mins
            .clone()
            .select(0, idx)
            .swap_dims(0, 1)
            .reshape([nb * n, 1]);
        v = v.add(m);
    }
    let k = out_frac as i32 - WEIGHT_FRAC;
    let v = shift_clamp_rows(v, &[k], i64::from(i32::MIN), i64::from(i32::MAX));
    Ok(v.cast(IntDType::I32)
        .reshape([nb, n, BLOCK])
        .swap_dims(0, 1)
        .reshape([n, w.cols]))
}

/// `vir::ops::matmul` for each row of `x` (one group per row): `out[r] = sat32(floor(y_r · 2^(e_x - 24 + f)))`
/// with `y_r` the exact dot product of weight row `r` and `x`; I32 `[x rows, w rows]`.
pub fn matmul<B: Backend>(
    w: &DeviceMatrix<B>,
    x: &QBatch<B>,
    out_frac: u32,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let (m, k) = (x.rows(), x.len());
    if k != w.cols || x.groups != 1 {
        return Err(EngineError::shape(
            "matmul",
            format!(
                "input of {k} values in {} groups for a {}x{} matrix (one group of {} expected)",
                x.groups, w.rows, w.cols, w.cols
            ),
        ));
    }
    let shifts: Vec<i32> = x
        .exps
        .iter()
        .map(|&e| e - WEIGHT_FRAC + out_frac as i32)
        .collect();
    let (n, nb) = (w.rows, w.blocks);
    if let Some(host) = &w.host {
        let xv = to_i16(&read_i32(x.values.clone())?)?;
        let y = i64_tensor::<B, 2>(host.matmul_exact(&xv, m), [m, n], &x.values.device());
        let y = shift_clamp_rows(y, &shifts, i64::from(i32::MIN), i64::from(i32::MAX));
        return Ok(y.cast(IntDType::I32));
    }
    let xb = x.values.clone().reshape([m, nb, BLOCK]);
    // [blocks, rows, 32] x [blocks, 32, m]: the per-block dots, exact in I32.
    let acc = w.quants.clone().matmul(xb.clone().permute([1, 2, 0]));
    let scaled = acc
        .reshape([nb * n, m])
        .cast(IntDType::I64)
        .mul(w.scales.clone().reshape([nb * n, 1]));
    let mut y = sum_leading(scaled.reshape([nb, n * m])).reshape([n, m]);
    if let Some(mins) = &w.mins {
        // Σ_b M_b · xs_b as [rows, blocks] x [blocks, m] (|M·xs| < 2^50 per term).
        let xs = xb
            .cast(IntDType::I64)
            .sum_dim(2)
            .reshape([m, nb])
            .swap_dims(0, 1);
        y = y.add(mins.clone().matmul(xs));
    }
    let y = shift_clamp_rows(
        y.swap_dims(0, 1),
        &shifts,
        i64::from(i32::MIN),
        i64::from(i32::MAX),
    );
    Ok(y.cast(IntDType::I32))
}

/// Sum over the first dimension of an I64 `[rows, w]` tensor, `[1, w]`, by pairwise halving: contiguous
/// elementwise adds, which burn-flex runs 1.5–2× faster than its strided `sum_dim(0)`. Integer addition is exact,
/// so the order does not matter.
fn sum_leading<B: Backend>(mut p: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    let [mut rows, w] = p.dims();
    while rows > 1 {
        let half = rows / 2;
        let sum = p
            .clone()
            .slice([0..half, 0..w])
            .add(p.clone().slice([rows - half..rows, 0..w]));
        p = if rows % 2 == 1 {
            Tensor::cat(vec![sum, p.slice([half..half + 1, 0..w])], 0)
        } else {
            sum
        };
        rows = p.dims()[0];
    }
    p
}

//! Weight tensors as exact integers: block-quantized matrices (Q4_1, Q8_0) and fixed-point norm vectors.
//!
//! A Q4_1 weight is `w = d·q + m` and a Q8_0 weight is `w = d·q`, with `d, m` f16 values. Every finite f16 is an
//! integer multiple of 2^-24, so weights are kept exactly as `(D, M, q)` with `D, M` integers in units of 2^-24.
//! Nothing is re-quantized; the f32 view ([`QuantMatrix::dequantize_f32`]) exists for the float reference only.

use crate::gguf::{GgufError, GgufFile, QK, TensorInfo, TensorType, f16_to_f32, f16_to_units};
use thiserror::Error;

/// Fixed-point fraction bits of norm weights (gamma) and of activations.
pub const NORM_FRAC_BITS: u32 = 16;
/// Largest |D| or |M| accepted, in units of 2^-24 (64.0): real weight scales are far below this.
pub const MAX_BLOCK_SCALE: i64 = 1 << 30;

#[derive(Debug, Error)]
pub enum WeightError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tensor `{name}`: {why}")]
    Invalid { name: String, why: String },
}

fn invalid(name: &str, why: impl Into<String>) -> WeightError {
    WeightError::Invalid {
        name: name.to_string(),
        why: why.into(),
    }
}

/// Storage format of a [`QuantMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKind {
    /// `w = D·q + M`, `q ∈ [0, 15]`.
    Q4_1,
    /// `w = D·q`, `q ∈ [-128, 127]`.
    Q8_0,
}

/// A `rows × cols` matrix (row `r` = output `r`) stored exactly as per-block integer scales and small quants.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub kind: QuantKind,
    /// `D` per block, units of 2^-24, row-major `[rows][cols / 32]`.
    pub scales: Vec<i64>,
    /// `M` per block (Q4_1 only; empty for Q8_0).
    pub mins: Vec<i64>,
    /// One quant per weight, row-major.
    pub quants: Vec<i8>,
    /// Canonical bytes for commitments: the GGUF block bytes, unchanged.
    pub raw: Vec<u8>,
}

impl QuantMatrix {
    /// Reads a 2-D Q4_1 or Q8_0 tensor (`dims = [cols, rows]` in GGUF order).
    pub fn from_gguf(file: &GgufFile, name: &str) -> Result<Self, WeightError> {
        let info = file.tensor(name)?;
        Self::from_info(file, info)
    }

    fn from_info(file: &GgufFile, info: &TensorInfo) -> Result<Self, WeightError> {
        let name = info.name.as_str();
        if info.dims.len() != 2 {
            return Err(invalid(
                name,
                format!("expected a matrix, found dims {:?}", info.dims),
            ));
        }
        let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        let kind = match info.ty {
            TensorType::Q4_1 => QuantKind::Q4_1,
            TensorType::Q8_0 => QuantKind::Q8_0,
            other => {
                return Err(invalid(
                    name,
                    format!(
                        "matrix type {} is not supported; use Q4_1 or Q8_0",
                        other.name()
                    ),
                ));
            }
        };
        let raw = file.tensor_data(info).to_vec();
        let blocks = rows * cols / QK;
        let mut scales = Vec::with_capacity(blocks);
        let mut mins = Vec::with_capacity(if kind == QuantKind::Q4_1 { blocks } else { 0 });
        let mut quants = vec![0i8; rows * cols];
        let block_bytes = info.ty.block_bytes();
        for (b, block) in raw.chunks_exact(block_bytes).enumerate() {
            let scale = block_scale(name, b, u16::from_le_bytes([block[0], block[1]]))?;
            scales.push(scale);
            let q = &mut quants[b * QK..(b + 1) * QK];
            match kind {
                QuantKind::Q4_1 => {
                    mins.push(block_scale(
                        name,
                        b,
                        u16::from_le_bytes([block[2], block[3]]),
                    )?);
                    for (j, byte) in block[4..20].iter().enumerate() {
                        q[j] = (byte & 0x0f) as i8;
                        q[j + 16] = (byte >> 4) as i8;
                    }
                }
                QuantKind::Q8_0 => {
                    for (j, byte) in block[2..34].iter().enumerate() {
                        q[j] = *byte as i8;
                    }
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            rows,
            cols,
            kind,
            scales,
            mins,
            quants,
            raw,
        })
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Real value of every weight as f32 (`d·q + m` in f32, as the GGUF reference dequantizers compute it).
    pub fn dequantize_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        let block_bytes = match self.kind {
            QuantKind::Q4_1 => 20,
            QuantKind::Q8_0 => 34,
        };
        for (b, block) in self.raw.chunks_exact(block_bytes).enumerate() {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let m = match self.kind {
                QuantKind::Q4_1 => f16_to_f32(u16::from_le_bytes([block[2], block[3]])),
                QuantKind::Q8_0 => 0.0,
            };
            for j in 0..QK {
                out[b * QK + j] = d * f32::from(self.quants[b * QK + j]) + m;
            }
        }
        out
    }

    /// Checks that no row dot product with int16 inputs can leave i64 (docs/vir.md §MatMul):
    /// `blocks · (max|D| · 2^24 + max|M| · 2^20) < 2^63` for Q4_1, `blocks · max|D| · 2^27 < 2^63` for Q8_0.
    pub fn check_accumulator_bound(&self) -> Result<(), WeightError> {
        let (d, m) = self.max_abs_scale_min();
        let (d, m, nb) = (d as u128, m as u128, self.blocks_per_row() as u128);
        let worst = match self.kind {
            QuantKind::Q4_1 => nb * ((d << 24) + (m << 20)),
            QuantKind::Q8_0 => nb * (d << 27),
        };
        if worst >= 1u128 << 63 {
            return Err(invalid(
                &self.name,
                format!(
                    "block scales up to {d} units with {nb} blocks per row could overflow the i64 accumulator"
                ),
            ));
        }
        Ok(())
    }

    /// Largest |D| and |M| over all blocks (for the overflow bounds of docs/vir.md).
    pub fn max_abs_scale_min(&self) -> (i64, i64) {
        let max_abs = |v: &[i64]| v.iter().map(|x| x.abs()).max().unwrap_or(0);
        (max_abs(&self.scales), max_abs(&self.mins))
    }
}

fn block_scale(name: &str, block: usize, bits: u16) -> Result<i64, WeightError> {
    match f16_to_units(bits) {
        Some(v) if v.abs() < MAX_BLOCK_SCALE => Ok(v),
        Some(v) => Err(invalid(
            name,
            format!(
                "block {block} scale {} exceeds 64.0",
                f16_to_f32(bits).max(v as f32)
            ),
        )),
        None => Err(invalid(name, format!("block {block} scale is inf or NaN"))),
    }
}

/// Reads an F32/F16 vector as f32 values.
pub fn vector_f32(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, WeightError> {
    let info = file.tensor(name)?;
    if info.dims.len() != 1 || info.dims[0] as usize != len {
        return Err(invalid(
            name,
            format!("expected a vector of {len}, found dims {:?}", info.dims),
        ));
    }
    let data = file.tensor_data(info);
    let values: Vec<f32> = match info.ty {
        TensorType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        TensorType::F16 => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        other => {
            return Err(invalid(
                name,
                format!(
                    "vector type {} is not supported; use F32 or F16",
                    other.name()
                ),
            ));
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(name, format!("element {i} is not finite")));
    }
    Ok(values)
}

/// Converts a norm weight to Q16 fixed point: `round(g · 2^16)`, ties away from zero, exact in f64.
pub fn to_fixed(values: &[f32], frac_bits: u32) -> Vec<i64> {
    values
        .iter()
        .map(|&v| (f64::from(v) * f64::from(1u32 << frac_bits)).round() as i64)
        .collect()
}

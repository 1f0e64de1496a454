//! QVecs on the device ([`QBatch`]) and the dynamic int16 quantization `vir::fixed::quantize`.

use crate::error::EngineError;
use crate::ops::shift::shift_rows_exact;
use crate::transfer::{i32_tensor, read_i32, read_i64};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, IntDType, Tensor};
use std::ops::Range;
use vir::fixed::{QVec, quant_shift};

/// A batch of QVecs of equal shape: int16 values in an I32 `[rows, len]` tensor, and one exponent per
/// (row, group) on the host, row-major `[rows][groups]`.
#[derive(Debug, Clone)]
pub struct QBatch<B: Backend> {
    pub values: Tensor<B, 2, Int>,
    pub exps: Vec<i32>,
    pub groups: usize,
}

impl<B: Backend> QBatch<B> {
    pub fn rows(&self) -> usize {
        self.values.dims()[0]
    }

    pub fn len(&self) -> usize {
        self.values.dims()[1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exponents of row `r`.
    pub fn row_exps(&self, r: usize) -> &[i32] {
        &self.exps[r * self.groups..(r + 1) * self.groups]
    }

    /// Uploads QVecs that all have the same length and group count.
    pub fn from_qvecs(qs: &[QVec], device: &B::Device) -> Result<Self, EngineError> {
        let first = qs
            .first()
            .ok_or_else(|| EngineError::shape("QBatch", "no rows"))?;
        let (len, groups) = (first.values.len(), first.exps.len());
        if groups == 0 || len % groups != 0 {
            return Err(EngineError::shape(
                "QBatch",
                format!("{len} values in {groups} groups"),
            ));
        }
        if qs
            .iter()
            .any(|q| q.values.len() != len || q.exps.len() != groups)
        {
            return Err(EngineError::shape("QBatch", "rows differ in shape"));
        }
        let values = qs
            .iter()
            .flat_map(|q| q.values.iter().map(|&v| i32::from(v)))
            .collect();
        Ok(Self {
            values: i32_tensor::<B, 2>(values, [qs.len(), len], device),
            exps: qs.iter().flat_map(|q| q.exps.iter().copied()).collect(),
            groups,
        })
    }

    /// Reads every row back as a `QVec`.
    pub fn to_qvecs(&self) -> Result<Vec<QVec>, EngineError> {
        let (rows, len) = (self.rows(), self.len());
        let values = read_i32(self.values.clone())?;
        (0..rows)
            .map(|r| {
                Ok(QVec {
                    exps: self.row_exps(r).to_vec(),
                    values: to_i16(&values[r * len..(r + 1) * len])?,
                })
            })
            .collect()
    }

    /// Rows `range` of the batch.
    pub fn slice_rows(&self, range: Range<usize>) -> Self {
        let len = self.len();
        Self {
            values: self.values.clone().slice([range.clone(), 0..len]),
            exps: self.exps[range.start * self.groups..range.end * self.groups].to_vec(),
            groups: self.groups,
        }
    }
}

/// Narrows int16 values read back in an I32 tensor.
pub fn to_i16(values: &[i32]) -> Result<Vec<i16>, EngineError> {
    values
        .iter()
        .map(|&v| {
            i16::try_from(v)
                .map_err(|_| EngineError::invariant("quantize", format!("{v} does not fit int16")))
        })
        .collect()
}

/// `vir::fixed::quantize` of each row of the I64 `[rows, len]` tensor `v`, in `groups` equal groups per row:
/// `s = quant_shift(max |v|)` per group, values `floor(v · 2^-s)`, exponent `exp_in + s`.
pub fn quantize<B: Backend>(
    v: Tensor<B, 2, Int>,
    groups: usize,
    exp_in: i32,
) -> Result<QBatch<B>, EngineError> {
    let [rows, len] = v.dims();
    if groups == 0 || len % groups != 0 || len == 0 {
        return Err(EngineError::shape(
            "quantize",
            format!("{len} values per row cannot form {groups} equal groups"),
        ));
    }
    let group_len = len / groups;
    let g = v.reshape([rows * groups, group_len]);
    // Largest magnitude from max and min, so i64::MIN needs no negation on the device.
    let ext = read_i64(Tensor::cat(
        vec![g.clone().max_dim(1), g.clone().min_dim(1)],
        1,
    ))?;
    let shifts: Vec<i32> = ext
        .chunks_exact(2)
        .map(|p| quant_shift(p[0].unsigned_abs().max(p[1].unsigned_abs())))
        .collect();
    let neg: Vec<i32> = shifts.iter().map(|s| -s).collect();
    let values = shift_rows_exact(g, &neg)
        .cast(IntDType::I32)
        .reshape([rows, len]);
    Ok(QBatch {
        values,
        exps: shifts.iter().map(|s| exp_in + s).collect(),
        groups,
    })
}

/// `vir::ops::quantize_vec`: a Q(`frac`) I32 `[rows, n]` tensor to int16 with one exponent per row.
pub fn quantize_vec<B: Backend>(x: Tensor<B, 2, Int>, frac: u32) -> Result<QBatch<B>, EngineError> {
    quantize(x.cast(IntDType::I64), 1, -(frac as i32))
}

//! An [`IntModel`] on a device: every weight matrix, norm weight and table the program reads.

use crate::error::EngineError;
use crate::ops::{DeviceMatrix, RopeTable};
use crate::transfer::{i32_tensor, i64_tensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vir::IntModel;
use vir::tables::{EXP_LEN, SIGMOID_LEN};

/// One decoder layer on the device.
#[derive(Debug, Clone)]
pub struct DeviceLayer<B: Backend> {
    /// Q16 gamma, I64 `[1, d_model]`.
    pub attn_norm: Tensor<B, 2, Int>,
    pub wq: DeviceMatrix<B>,
    pub wk: DeviceMatrix<B>,
    pub wv: DeviceMatrix<B>,
    pub wo: DeviceMatrix<B>,
    pub ffn_norm: Tensor<B, 2, Int>,
    pub w_gate: DeviceMatrix<B>,
    pub w_up: DeviceMatrix<B>,
    pub w_down: DeviceMatrix<B>,
}

/// The model's weights and tables on one device.
#[derive(Debug, Clone)]
pub struct DeviceModel<B: Backend> {
    pub token_embd: DeviceMatrix<B>,
    /// `None` when the output projection is tied to `token_embd`.
    pub output: Option<DeviceMatrix<B>>,
    pub layers: Vec<DeviceLayer<B>>,
    pub output_norm: Tensor<B, 2, Int>,
    /// EXP followed by one 0 (index `2^14` = past the table), I32.
    pub exp: Tensor<B, 1, Int>,
    /// SIGMOID, I64.
    pub sigmoid: Tensor<B, 1, Int>,
    pub rope: RopeTable<B>,
}

/// Q16 norm weights as an I64 `[1, d]` tensor.
pub fn gamma_tensor<B: Backend>(gamma: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
    i64_tensor::<B, 2>(gamma.to_vec(), [1, gamma.len()], device)
}

/// The EXP table extended by one 0, so `EXP[min(idx, 2^14)]` is the lookup with its "0 past the table" rule.
pub fn exp_table_tensor<B: Backend>(
    exp: &[i32],
    device: &B::Device,
) -> Result<Tensor<B, 1, Int>, EngineError> {
    if exp.len() != EXP_LEN {
        return Err(EngineError::shape(
            "exp table",
            format!("{} entries, expected {EXP_LEN}", exp.len()),
        ));
    }
    let mut ext = exp.to_vec();
    ext.push(0);
    Ok(i32_tensor::<B, 1>(ext, [EXP_LEN + 1], device))
}

/// The SIGMOID table as I64.
pub fn sigmoid_table_tensor<B: Backend>(
    sigmoid: &[i32],
    device: &B::Device,
) -> Result<Tensor<B, 1, Int>, EngineError> {
    if sigmoid.len() != SIGMOID_LEN {
        return Err(EngineError::shape(
            "sigmoid table",
            format!("{} entries, expected {SIGMOID_LEN}", sigmoid.len()),
        ));
    }
    Ok(i64_tensor::<B, 1>(
        sigmoid.iter().map(|&v| i64::from(v)).collect(),
        [SIGMOID_LEN],
        device,
    ))
}

impl<B: Backend> DeviceModel<B> {
    /// Uploads every tensor of `model` to `device` (the device should be set up with
    /// [`crate::init_device`] first).
    pub fn upload(model: &IntModel, device: &B::Device) -> Result<Self, EngineError> {
        let mat = |m| DeviceMatrix::upload(m, device);
        let layers = model
            .layers
            .iter()
            .map(|w| -> Result<DeviceLayer<B>, EngineError> {
                Ok(DeviceLayer {
                    attn_norm: gamma_tensor(&w.attn_norm, device),
                    wq: mat(&w.wq)?,
                    wk: mat(&w.wk)?,
                    wv: mat(&w.wv)?,
                    wo: mat(&w.wo)?,
                    ffn_norm: gamma_tensor(&w.ffn_norm, device),
                    w_gate: mat(&w.w_gate)?,
                    w_up: mat(&w.w_up)?,
                    w_down: mat(&w.w_down)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            token_embd: mat(&model.token_embd)?,
            output: model.output.as_ref().map(mat).transpose()?,
            layers,
            output_norm: gamma_tensor(&model.output_norm, device),
            exp: exp_table_tensor(&model.tables.exp, device)?,
            sigmoid: sigmoid_table_tensor(&model.tables.sigmoid, device)?,
            rope: RopeTable::upload(&model.tables.rope, model.config.head_dim, device)?,
        })
    }

    /// The output projection (tied or separate).
    pub fn output_matrix(&self) -> &DeviceMatrix<B> {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

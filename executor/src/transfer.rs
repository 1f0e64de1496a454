//! Moving integer data between the host and a device, always with an explicit dtype.

use crate::error::EngineError;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

/// An I32 tensor of `shape` from row-major values.
pub fn i32_tensor<B: Backend, const D: usize>(
    values: Vec<i32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::I32))
}

/// An I64 tensor of `shape` from row-major values.
pub fn i64_tensor<B: Backend, const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::I64))
}

/// A bool tensor of `shape` (true where `flags` is true), built on the device from an I32 0/1 tensor so the bool
/// storage type stays the backend's own.
pub fn bool_tensor<B: Backend, const D: usize>(
    flags: &[bool],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Bool> {
    i32_tensor::<B, D>(flags.iter().map(|&f| i32::from(f)).collect(), shape, device).greater_elem(0)
}

fn read<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Result<TensorData, EngineError> {
    t.try_into_data()
        .map_err(|e| EngineError::Read(format!("{e:?}")))
}

/// Reads an I32 tensor back (row-major).
pub fn read_i32<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Result<Vec<i32>, EngineError> {
    let found = t.dtype();
    if found != DType::I32 {
        return Err(EngineError::DType {
            expected: "I32",
            found: format!("{found:?}"),
        });
    }
    read(t)?
        .into_vec::<i32>()
        .map_err(|e| EngineError::Read(e.to_string()))
}

/// Reads an I64 tensor back (row-major).
pub fn read_i64<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Result<Vec<i64>, EngineError> {
    let found = t.dtype();
    if found != DType::I64 {
        return Err(EngineError::DType {
            expected: "I64",
            found: format!("{found:?}"),
        });
    }
    read(t)?
        .into_vec::<i64>()
        .map_err(|e| EngineError::Read(e.to_string()))
}

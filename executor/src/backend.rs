//! Backends and device setup: the CPU backend ([`Cpu`], burn-flex), CUDA (`Cuda`, feature `cuda`), and
//! [`init_device`], which pins a device's default integer dtype to I32.
//!
//! Every tensor the engine creates also names its dtype explicitly (I32 for int16/int32 values and indices, I64
//! for wide intermediates), so the defaults only matter for the few burn ops that create integer tensors
//! themselves (bool-to-int conversions).

use crate::error::EngineError;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, IntDType, get_device_settings, set_default_dtypes};

/// The CPU backend: burn-flex (pure Rust; I32/I64 integer matmul).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (cubecl-cuda; loads libcuda and NVRTC at run time).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;

/// Sets the device's default dtypes (I32 integers) before any tensor is created on it. A device that was already
/// initialized is accepted when its integer default is I32.
pub fn init_device<B: Backend>(device: &B::Device) -> Result<(), EngineError> {
    if set_default_dtypes::<B>(device, FloatDType::F32, IntDType::I32).is_ok() {
        return Ok(());
    }
    let settings = get_device_settings::<B>(device);
    if settings.int_dtype == IntDType::I32 {
        Ok(())
    } else {
        Err(EngineError::Device(format!(
            "the device was initialized with default integer dtype {:?}; the engine needs I32",
            settings.int_dtype
        )))
    }
}

//! Errors of the burn engine.

use thiserror::Error;
use vir::interp::RunError;

/// Any failure of the engine: a request the program rejects, a device problem, or a broken internal invariant.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The request is invalid for the model (same checks and messages as the reference interpreter).
    #[error(transparent)]
    Request(#[from] RunError),
    /// The device could not be configured for the engine's integer dtypes.
    #[error("device setup failed: {0}")]
    Device(String),
    /// Reading a tensor back from the device failed.
    #[error("reading a tensor back from the device failed: {0}")]
    Read(String),
    /// A tensor read back from the device has an unexpected element type.
    #[error("tensor read back as {found}, expected {expected}")]
    DType {
        expected: &'static str,
        found: String,
    },
    /// An op got inputs whose shapes do not fit together.
    #[error("op `{op}`: {why}")]
    Shape { op: &'static str, why: String },
    /// A batch step asked for something the request cannot do.
    #[error("batch item {index}: {why}")]
    Step { index: usize, why: String },
    /// An integer result outside the range the op's proof allows: a bug, never an input error.
    #[error("internal invariant broken in `{op}`: {why}")]
    Invariant { op: &'static str, why: String },
}

impl EngineError {
    pub(crate) fn shape(op: &'static str, why: impl Into<String>) -> Self {
        Self::Shape {
            op,
            why: why.into(),
        }
    }

    pub(crate) fn invariant(op: &'static str, why: impl Into<String>) -> Self {
        Self::Invariant {
            op,
            why: why.into(),
        }
    }
}

//! Verifiable Integer IR (VIR): the specified model as an integer program.
//!
//! * [`gguf`] reads (and writes) GGUF model files;
//! * [`tokenizer`] builds the byte-level BPE tokenizer and chat template from GGUF metadata;
//! * [`ops`] defines every VIR op as an exact integer function, [`interp`] runs programs with them;
//! * [`float_ref`] is the f32 llama forward used only to measure the integer model.

pub mod bundle;
pub mod config;
pub mod fixed;
pub mod float_ref;
pub mod gguf;
pub mod interp;
pub mod logprobs;
pub mod model;
pub mod ops;
pub mod program;
pub mod quality;
pub mod sampling;
pub mod synthetic;
pub mod tables;
pub mod tokenizer;
pub mod weights;

pub use config::{ConfigError, LlamaConfig};
pub use model::IntModel;

/// Version of the VIR op semantics; part of the model root's config hash.
pub const VIR_VERSION: u16 = 1;

/// Any failure while loading a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Weights(#[from] weights::WeightError),
    #[error("tokenizer metadata: {0}")]
    Tokenizer(gguf::GgufError),
}

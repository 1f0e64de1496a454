//! A model file opened for serving: the integer model, its tokenizer, and the GGUF it came from.

use crate::gguf::{GgufError, GgufFile};
use crate::model::IntModel;
use crate::tokenizer::{Tokenizer, TokenizerError, TokenizerSpec};
use crate::{ModelError, float_ref::FloatModel};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "tokenizer vocabulary has {tokenizer} tokens but the model's embedding has {model} rows"
    )]
    VocabMismatch { tokenizer: usize, model: usize },
}

/// Integer model + tokenizer from one GGUF file.
pub struct ModelBundle {
    pub file: GgufFile,
    pub model: IntModel,
    pub tokenizer: Tokenizer,
}

impl ModelBundle {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BundleError> {
        Self::from_file(GgufFile::open(path)?)
    }

    pub fn from_file(file: GgufFile) -> Result<Self, BundleError> {
        let model = IntModel::load(&file)?;
        let tokenizer = Tokenizer::from_spec(&TokenizerSpec::from_gguf(&file)?)?;
        if tokenizer.vocab_size() != model.config.vocab_size {
            return Err(BundleError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: model.config.vocab_size,
            });
        }
        Ok(Self {
            file,
            model,
            tokenizer,
        })
    }

    /// The f32 reference model of the same file (for measurements).
    pub fn float_model(&self) -> Result<FloatModel, ModelError> {
        FloatModel::load(&self.file)
    }
}

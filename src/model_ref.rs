//! Resolves a `--model` argument: `smollm2` (fetched and checksum-verified into the cache), `tiny` (the seeded
//! synthetic model, generated in memory), or a path to a GGUF file.

use crate::model_store::{SMOLLM2, default_cache_dir, ensure_model};
use anyhow::{Context, Result};
use std::path::PathBuf;
use vir::bundle::ModelBundle;
use vir::gguf::GgufFile;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

/// What `--model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    SmolLm2,
    Tiny,
    Path(PathBuf),
}

impl std::str::FromStr for ModelRef {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "smollm2" => Self::SmolLm2,
            "tiny" => Self::Tiny,
            path => Self::Path(PathBuf::from(path)),
        })
    }
}

impl ModelRef {
    /// Opens the GGUF (fetching SmolLM2 into the cache on first use).
    pub fn open_gguf(&self) -> Result<GgufFile> {
        match self {
            Self::SmolLm2 => {
                let path = ensure_model(&SMOLLM2, &default_cache_dir())
                    .context("fetching the SmolLM2 model")?;
                GgufFile::open(&path).with_context(|| format!("reading {}", path.display()))
            }
            Self::Tiny => Ok(GgufFile::parse(synthetic_gguf(&SyntheticSpec::tiny())?)?),
            Self::Path(p) => {
                GgufFile::open(p).with_context(|| format!("reading model file {}", p.display()))
            }
        }
    }

    /// Opens the model and its tokenizer.
    pub fn open(&self) -> Result<ModelBundle> {
        Ok(ModelBundle::from_file(self.open_gguf()?)?)
    }
}

//! Llama-family model configuration read from GGUF metadata, validated against the limits the integer ops prove.

use crate::gguf::{GgufError, GgufFile};
use serde::Serialize;
use thiserror::Error;

/// Longest context the VIR program supports (bounds in docs/vir.md are proved up to this).
pub const MAX_CONTEXT: usize = 8192;
/// Largest model width the RMSNorm and matmul bounds are proved for.
pub const MAX_DIM: usize = 8192;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "unsupported architecture `{0}`: only llama-family decoders (general.architecture = llama) are supported"
    )]
    Architecture(String),
    #[error("model config `{field}` = {value} is invalid: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: String,
    },
}

/// Shape and hyper-parameters of a llama-style decoder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Context the model was trained for, capped at [`MAX_CONTEXT`].
    pub context_length: usize,
    pub rope_base: f64,
    pub rms_eps: f64,
    /// True when the output projection reuses `token_embd.weight`.
    pub tied_output: bool,
}

fn invalid(field: &'static str, value: impl ToString, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        why: why.into(),
    }
}

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ConfigError> {
        let arch = file.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(ConfigError::Architecture(arch.to_string()));
        }
        let u = |k: &str| -> Result<usize, ConfigError> {
            Ok(file.meta_u64(&format!("llama.{k}"))? as usize)
        };
        let n_heads = u("attention.head_count")?;
        let d_model = u("embedding_length")?;
        let n_kv_heads = if file.metadata.contains_key("llama.attention.head_count_kv") {
            u("attention.head_count_kv")?
        } else {
            n_heads
        };
        let embd = file.tensor("token_embd.weight")?;
        let vocab_size = embd.dims.get(1).copied().unwrap_or(0) as usize;
        let cfg = Self {
            n_layers: u("block_count")?,
            d_model,
            d_ff: u("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim: d_model.checked_div(n_heads).unwrap_or(0),
            vocab_size,
            context_length: u("context_length")?.min(MAX_CONTEXT),
            rope_base: file.meta_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: file.meta_f64("llama.attention.layer_norm_rms_epsilon")?,
            tied_output: file.tensor("output.weight").is_err(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every limit the integer semantics rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n_layers == 0 || self.n_layers > 256 {
            return Err(invalid("block_count", self.n_layers, "must be in 1..=256"));
        }
        if self.d_model == 0 || self.d_model > MAX_DIM || !self.d_model.is_multiple_of(32) {
            return Err(invalid(
                "embedding_length",
                self.d_model,
                format!("must be a multiple of 32 up to {MAX_DIM}"),
            ));
        }
        if self.d_ff == 0 || self.d_ff > 4 * MAX_DIM || !self.d_ff.is_multiple_of(32) {
            return Err(invalid(
                "feed_forward_length",
                self.d_ff,
                "must be a multiple of 32 up to 32768",
            ));
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(invalid(
                "attention.head_count",
                self.n_heads,
                "must divide embedding_length",
            ));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(invalid(
                "attention.head_count_kv",
                self.n_kv_heads,
                "must divide attention.head_count",
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim > 256 {
            return Err(invalid(
                "head_dim",
                self.head_dim,
                "must be even and at most 256",
            ));
        }
        if self.vocab_size == 0 || self.vocab_size > 1 << 20 {
            return Err(invalid(
                "vocab_size",
                self.vocab_size,
                "must be in 1..=1048576",
            ));
        }
        if self.context_length == 0 {
            return Err(invalid(
                "context_length",
                self.context_length,
                "must be positive",
            ));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return Err(invalid(
                "rope.freq_base",
                self.rope_base,
                "must be a finite number > 1",
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return Err(invalid(
                "attention.layer_norm_rms_epsilon",
                self.rms_eps,
                "must be in (0, 1)",
            ));
        }
        Ok(())
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

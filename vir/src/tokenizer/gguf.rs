//! Reading a [`TokenizerSpec`] from GGUF metadata.

use super::TokenizerSpec;
use crate::gguf::{GgufError, GgufFile, MetaValue};

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>, GgufError> {
    let bad = |problem: &str| GgufError::Metadata {
        key: key.into(),
        problem: problem.into(),
    };
    file.meta(key)?
        .as_array()
        .ok_or_else(|| bad("must be an array of strings"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("must contain only strings"))
        })
        .collect()
}

fn optional_id(file: &GgufFile, key: &str) -> Result<Option<u32>, GgufError> {
    match file.metadata.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!("must be a token id, found {v:?}"),
            }),
    }
}

impl TokenizerSpec {
    /// Reads the tokenizer description from `tokenizer.ggml.*` and `tokenizer.chat_template`.
    pub fn from_gguf(file: &GgufFile) -> Result<TokenizerSpec, GgufError> {
        let token_types = match file.metadata.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(MetaValue::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| GgufError::Metadata {
                            key: "tokenizer.ggml.token_type".into(),
                            problem: format!("must contain integers, found {v:?}"),
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(GgufError::Metadata {
                    key: "tokenizer.ggml.token_type".into(),
                    problem: format!("must be an array, found {v:?}"),
                });
            }
        };
        Ok(TokenizerSpec {
            model: file.meta_str("tokenizer.ggml.model")?.to_string(),
            pre: file
                .metadata
                .get("tokenizer.ggml.pre")
                .and_then(MetaValue::as_str)
                .map(str::to_string),
            tokens: strings(file, "tokenizer.ggml.tokens")?,
            merges: if file.metadata.contains_key("tokenizer.ggml.merges") {
                strings(file, "tokenizer.ggml.merges")?
            } else {
                Vec::new()
            },
            token_types,
            bos_id: optional_id(file, "tokenizer.ggml.bos_token_id")?,
            eos_id: optional_id(file, "tokenizer.ggml.eos_token_id")?,
            unk_id: optional_id(file, "tokenizer.ggml.unknown_token_id")?,
            pad_id: optional_id(file, "tokenizer.ggml.padding_token_id")?,
            add_bos: file
                .metadata
                .get("tokenizer.ggml.add_bos_token")
                .and_then(MetaValue::as_bool)
                .unwrap_or(false),
            chat_template: file
                .metadata
                .get("tokenizer.chat_template")
                .and_then(MetaValue::as_str)
                .map(str::to_string),
        })
    }
}

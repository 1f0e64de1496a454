//! Tokenizer and chat template of a GGUF model: byte-level BPE built from `tokenizer.ggml.*` metadata, prompt rendering
//! with the model's Jinja chat template, stop ids and incremental (streaming) detokenization.
//!
//! The input is [`TokenizerSpec`], plain data the GGUF loader fills from metadata, so this module does not depend on the
//! container format. Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is supported; the pre-tokenizer is chosen by
//! `tokenizer.ggml.pre`. Every input problem is a [`TokenizerError`] naming the field or value at fault.

mod gguf;
mod stream;
mod template;

pub use stream::StreamDecoder;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;
use tokenizers::AddedToken;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

/// `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    /// Special tokens such as `<|im_start|>`: recognised in text, skipped by [`super::Tokenizer::decode`].
    pub const CONTROL: i32 = 3;
    /// Tokens added by the model author: recognised in text as a unit, kept by [`super::Tokenizer::decode`].
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Token strings that end a turn in common chat formats; [`Tokenizer::stop_ids`] includes those the vocabulary has.
pub const EXTRA_STOP_TOKENS: [&str; 4] =
    ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"];

/// Everything needed to build a [`Tokenizer`], as stored in GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`; only `"gpt2"` (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`: `"smollm"`, `"gpt2"`, `"default"` or absent.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the token string of each id, in byte-level encoding (`Ġ` for a space, ...).
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: BPE merges in rank order, each `"left right"`.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`: one [`token_type`] per token.
    pub token_types: Vec<i32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether a raw (non-chat) prompt should start with BOS. [`Tokenizer::encode`]
    /// never adds it; callers that want it prepend [`Tokenizer::bos_id`].
    pub add_bos: bool,
    /// `tokenizer.chat_template` (Jinja).
    pub chat_template: Option<String>,
}

impl TokenizerSpec {
    /// Ids that end generation: the EOS id plus those of [`EXTRA_STOP_TOKENS`] the vocabulary has; sorted.
    /// They are part of the committed program (the model root), since they decide where a trace ends.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id.into_iter().collect();
        ids.extend(
            self.tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| EXTRA_STOP_TOKENS.contains(&t.as_str()))
                .map(|(i, _)| i as u32),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// One chat message as given to the chat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error(
        "unsupported tokenizer model {0:?} (tokenizer.ggml.model): only \"gpt2\" (byte-level BPE) is supported"
    )]
    UnsupportedModel(String),
    #[error(
        "unsupported pre-tokenizer {0:?} (tokenizer.ggml.pre): supported are \"smollm\", \"gpt2\", \"default\" or none"
    )]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocabulary,
    #[error("tokenizer.ggml.tokens has {0} entries, more than 32-bit token ids can address")]
    VocabularyTooLarge(usize),
    #[error("tokenizer.ggml.tokens has token {token:?} twice, at ids {first} and {second}")]
    DuplicateToken {
        token: String,
        first: u32,
        second: u32,
    },
    #[error("tokenizer.ggml.token_type has {types} entries but tokenizer.ggml.tokens has {tokens}")]
    TokenTypeCount { tokens: usize, types: usize },
    #[error("tokenizer.ggml.token_type[{index}] = {value} is not a known token type (0..=6)")]
    UnknownTokenType { index: usize, value: i32 },
    #[error(
        "tokenizer.ggml.merges[{index}] = {merge:?} is malformed: expected two tokens separated by one space"
    )]
    MalformedMerge { index: usize, merge: String },
    #[error(
        "tokenizer.ggml.merges[{index}] = {merge:?} needs token {token:?}, which is not in tokenizer.ggml.tokens"
    )]
    MergeTokenNotInVocabulary {
        index: usize,
        merge: String,
        token: String,
    },
    #[error("{field} = {id} is out of range for a vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        field: &'static str,
        id: u32,
        vocab_size: usize,
    },
    #[error("cannot build the tokenizer: {0}")]
    Build(String),
    #[error(
        "text contains byte {byte:#04x} at offset {offset}, which this vocabulary cannot represent"
    )]
    UnrepresentableByte { byte: u8, offset: usize },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("token id {id} is out of range for a vocabulary of {vocab_size} tokens")]
    IdOutOfRange { id: u32, vocab_size: usize },
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("model has no chat template")]
    NoChatTemplate,
    #[error("chat template does not compile: {0}")]
    TemplateSyntax(String),
    #[error("chat template raised an exception: {0}")]
    TemplateException(String),
    #[error("chat template rendering failed: {0}")]
    TemplateRender(String),
}

/// A byte-level BPE tokenizer with its chat template. Cheap to clone (shared state), `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    hf: Arc<tokenizers::Tokenizer>,
    tokens: Vec<String>,
    token_ids: HashMap<String, u32>,
    /// `missing_bytes[b]`: byte `b` has no byte-level token, so text containing it cannot be encoded losslessly.
    missing_bytes: [bool; 256],
    any_missing_byte: bool,
    /// Contents of the CONTROL and USER_DEFINED tokens (matched as units in text).
    added_tokens: Vec<String>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    pad_id: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    template: Option<template::ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.inner.bos_id)
            .field("eos_id", &self.inner.eos_id)
            .field("stop_ids", &self.inner.stop_ids)
            .field("has_chat_template", &self.inner.template.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Validates `spec` and builds the tokenizer, compiling the chat template if there is one.
    pub fn from_spec(spec: &TokenizerSpec) -> Result<Self, TokenizerError> {
        if spec.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(spec.model.clone()));
        }
        let digits_first = match spec.pre.as_deref() {
            Some("smollm") => true,
            None | Some("gpt2") | Some("default") => false,
            Some(other) => return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
        };
        if spec.tokens.is_empty() {
            return Err(TokenizerError::EmptyVocabulary);
        }
        let vocab_size = spec.tokens.len();
        if u32::try_from(vocab_size).is_err() {
            return Err(TokenizerError::VocabularyTooLarge(vocab_size));
        }
        if spec.token_types.len() != vocab_size {
            return Err(TokenizerError::TokenTypeCount {
                tokens: vocab_size,
                types: spec.token_types.len(),
            });
        }
        if let Some((index, &value)) = spec
            .token_types
            .iter()
            .enumerate()
            .find(|&(_, t)| !(token_type::UNDEFINED..=token_type::BYTE).contains(t))
        {
            return Err(TokenizerError::UnknownTokenType { index, value });
        }
        for (field, id) in [
            ("tokenizer.ggml.bos_token_id", spec.bos_id),
            ("tokenizer.ggml.eos_token_id", spec.eos_id),
            ("tokenizer.ggml.unknown_token_id", spec.unk_id),
            ("tokenizer.ggml.padding_token_id", spec.pad_id),
        ] {
            if let Some(id) = id
                && id as usize >= vocab_size
            {
                return Err(TokenizerError::SpecialIdOutOfRange {
                    field,
                    id,
                    vocab_size,
                });
            }
        }

        let mut token_ids: HashMap<String, u32> = HashMap::with_capacity(vocab_size);
        for (id, token) in (0u32..).zip(&spec.tokens) {
            if let Some(&first) = token_ids.get(token) {
                return Err(TokenizerError::DuplicateToken {
                    token: token.clone(),
                    first,
                    second: id,
                });
            }
            token_ids.insert(token.clone(), id);
        }
        let merges = parse_merges(&spec.merges, &token_ids)?;

        let vocab: Vocab = token_ids.iter().map(|(t, &id)| (t.clone(), id)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut hf = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = if digits_first {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
        hf.with_pre_tokenizer(Some(pre));
        hf.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));

        let with_type = |ty: i32, special: bool| -> Vec<AddedToken> {
            spec.tokens
                .iter()
                .zip(&spec.token_types)
                .filter(|&(_, &t)| t == ty)
                .map(|(tok, _)| AddedToken::from(tok.clone(), special).normalized(false))
                .collect()
        };
        let control = with_type(token_type::CONTROL, true);
        let added_tokens: Vec<String> = spec
            .tokens
            .iter()
            .zip(&spec.token_types)
            .filter(|&(_, &t)| t == token_type::CONTROL || t == token_type::USER_DEFINED)
            .map(|(tok, _)| tok.clone())
            .collect();
        if !control.is_empty() {
            hf.add_special_tokens(control)
                .map_err(|e| TokenizerError::Build(e.to_string()))?;
        }
        let user_defined = with_type(token_type::USER_DEFINED, false);
        if !user_defined.is_empty() {
            hf.add_tokens(user_defined)
                .map_err(|e| TokenizerError::Build(e.to_string()))?;
        }

        let mut missing_bytes = [false; 256];
        for (byte, ch) in byte_level_alphabet() {
            let mut buf = [0u8; 4];
            missing_bytes[byte as usize] = !token_ids.contains_key(&*ch.encode_utf8(&mut buf));
        }

        let stop_ids = spec.stop_ids();

        let token_str = |id: Option<u32>| {
            id.and_then(|id| spec.tokens.get(id as usize))
                .cloned()
                .unwrap_or_default()
        };
        let template = spec
            .chat_template
            .as_ref()
            .map(|source| {
                template::ChatTemplate::new(source, token_str(spec.bos_id), token_str(spec.eos_id))
            })
            .transpose()?;

        Ok(Self {
            inner: Arc::new(Inner {
                hf: Arc::new(hf),
                tokens: spec.tokens.clone(),
                token_ids,
                any_missing_byte: missing_bytes.contains(&true),
                added_tokens,
                missing_bytes,
                bos_id: spec.bos_id,
                eos_id: spec.eos_id,
                unk_id: spec.unk_id,
                pad_id: spec.pad_id,
                add_bos: spec.add_bos,
                stop_ids,
                template,
            }),
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) map to their ids; no BOS is added.
    ///
    /// Fails if the text contains a byte, outside special tokens, that the vocabulary has no byte-level token for
    /// (the BPE would silently drop it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let inner = &self.inner;
        let encoding = inner
            .hf
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let ids = encoding.get_ids().to_vec();
        if inner.any_missing_byte && text.bytes().any(|b| inner.missing_bytes[b as usize]) {
            // Rare path: the byte may sit inside an added token (fine) or have been dropped; the round trip decides.
            if self.decode_with_specials(&ids)? != text {
                let mut in_added = vec![false; text.len()];
                for token in &inner.added_tokens {
                    for (start, m) in text.match_indices(token.as_str()) {
                        in_added[start..start + m.len()]
                            .iter_mut()
                            .for_each(|f| *f = true);
                    }
                }
                let missing =
                    |&(i, b): &(usize, u8)| inner.missing_bytes[b as usize] && !in_added[i];
                let any = |&(_, b): &(usize, u8)| inner.missing_bytes[b as usize];
                let (offset, byte) = text
                    .bytes()
                    .enumerate()
                    .find(missing)
                    .or_else(|| text.bytes().enumerate().find(any))
                    .unwrap_or((0, 0));
                return Err(TokenizerError::UnrepresentableByte { byte, offset });
            }
        }
        Ok(ids)
    }

    /// User-visible text of `ids`: special (CONTROL) tokens are left out. Partial UTF-8 sequences become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        decode_ids(&self.inner.hf, self.vocab_size(), ids, true)
    }

    /// Text of `ids` with special tokens written out (`<|im_start|>user\n...`).
    pub fn decode_with_specials(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        decode_ids(&self.inner.hf, self.vocab_size(), ids, false)
    }

    /// Number of token ids (`tokenizer.ggml.tokens` length).
    pub fn vocab_size(&self) -> usize {
        self.inner.tokens.len()
    }

    /// Id of a token string in its byte-level form (`"Ġthe"`, `"<|im_end|>"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_ids.get(token).copied()
    }

    /// The token string of `id` in its byte-level form (as stored in `tokenizer.ggml.tokens`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tokens.get(id as usize).cloned()
    }

    /// The raw bytes of token `id`: its byte-level form mapped back through GPT-2's byte alphabet (characters outside
    /// the alphabet, as in added special tokens, count as their UTF-8). `None` for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let token = self.inner.tokens.get(id as usize)?;
        let mut out = Vec::with_capacity(token.len());
        for c in token.chars() {
            match byte_level_alphabet().find(|&(_, ch)| ch == c) {
                Some((byte, _)) => out.push(byte),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Some(out)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.inner.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.inner.eos_id
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.inner.unk_id
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.inner.pad_id
    }

    /// `tokenizer.ggml.add_bos_token`: whether raw prompts should be prefixed with [`Self::bos_id`].
    pub fn add_bos(&self) -> bool {
        self.inner.add_bos
    }

    /// Ids that end generation: the EOS id plus any of [`EXTRA_STOP_TOKENS`] in the vocabulary; sorted, deduplicated.
    pub fn stop_ids(&self) -> Vec<u32> {
        self.inner.stop_ids.clone()
    }

    /// Whether `id` is one of [`Self::stop_ids`].
    pub fn is_stop(&self, id: u32) -> bool {
        self.inner.stop_ids.binary_search(&id).is_ok()
    }

    pub fn has_chat_template(&self) -> bool {
        self.inner.template.is_some()
    }

    /// Renders the model's chat template (as `transformers.apply_chat_template` does: Jinja with `trim_blocks` and
    /// `lstrip_blocks`; variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`; functions
    /// `raise_exception`, `strftime_now` (UTC); Python-compatible string methods and `tojson`).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let template = self
            .inner
            .template
            .as_ref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        template.render(messages, add_generation_prompt)
    }

    /// [`Self::render_chat`] then [`Self::encode`]: the prompt ids for a chat (the template inserts the specials).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode(&self.render_chat(messages, add_generation_prompt)?)
    }

    /// A decoder that turns generated ids into text pieces as they arrive (special tokens left out).
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::new(Arc::clone(&self.inner.hf), self.vocab_size())
    }
}

/// Decodes after checking every id against the vocabulary (the `tokenizers` crate silently skips unknown ids).
fn decode_ids(
    hf: &tokenizers::Tokenizer,
    vocab_size: usize,
    ids: &[u32],
    skip_special: bool,
) -> Result<String, TokenizerError> {
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
        return Err(TokenizerError::IdOutOfRange { id, vocab_size });
    }
    hf.decode(ids, skip_special)
        .map_err(|e| TokenizerError::Decode(e.to_string()))
}

/// Splits each `"left right"` merge and checks that both sides and their concatenation are tokens.
fn parse_merges(
    merges: &[String],
    token_ids: &HashMap<String, u32>,
) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            let malformed = || TokenizerError::MalformedMerge {
                index,
                merge: merge.clone(),
            };
            let (left, right) = merge.split_once(' ').ok_or_else(malformed)?;
            if left.is_empty() || right.is_empty() || right.contains(' ') {
                return Err(malformed());
            }
            for token in [
                left.to_string(),
                right.to_string(),
                format!("{left}{right}"),
            ] {
                if !token_ids.contains_key(&token) {
                    return Err(TokenizerError::MergeTokenNotInVocabulary {
                        index,
                        merge: merge.clone(),
                        token,
                    });
                }
            }
            Ok((left.to_string(), right.to_string()))
        })
        .collect()
}

/// GPT-2's byte → printable-char map used by byte-level BPE (`bytes_to_unicode`).
fn byte_level_alphabet() -> impl Iterator<Item = (u8, char)> {
    let mut extra = 0u32;
    (0u8..=255).map(move |b| {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        // `code` is below 0x200, always a valid scalar value.
        (
            b,
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_matches_gpt2() {
        let map: Vec<(u8, char)> = byte_level_alphabet().collect();
        assert_eq!(map[b' ' as usize].1, 'Ġ');
        assert_eq!(map[b'\n' as usize].1, 'Ċ');
        assert_eq!(map[b'A' as usize].1, 'A');
        assert_eq!(map[0xAD].1, 'Ń');
        let mut chars: Vec<char> = map.iter().map(|&(_, c)| c).collect();
        chars.sort_unstable();
        chars.dedup();
        assert_eq!(chars.len(), 256);
        let reference = ByteLevel::alphabet();
        assert!(chars.iter().all(|c| reference.contains(c)));
    }
}

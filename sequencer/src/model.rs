//! Served models: id, model root, context length, and the tokenizer behind the [`Tokenize`] seam (chat template,
//! encoding, incremental decoding).

use protocol::B256;
use std::sync::Arc;
use vir::bundle::ModelBundle;
use vir::tokenizer::{ChatMessage, StreamDecoder, Tokenizer};

/// A prompt the tokenizer cannot encode (unrepresentable bytes, a chat template that raised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenizeError(pub String);

/// Turns generated token ids into text as they arrive.
pub trait TextDecoder: Send {
    /// Adds one id; returns the text it completes (possibly empty).
    fn push(&mut self, id: u32) -> String;
    /// Returns whatever is held back.
    fn finish(&mut self) -> String;
}

/// Tokenization for admission and detokenization for responses.
pub trait Tokenize: Send + Sync {
    /// Renders the chat template (with the generation prompt) and encodes it.
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TokenizeError>;
    /// Encodes a completion prompt (with BOS when the model asks for it).
    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError>;
    /// A fresh incremental decoder (special tokens left out).
    fn decoder(&self) -> Box<dyn TextDecoder>;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Most input bytes one token can cover: a text of `b` bytes has at least `b / max_token_bytes` tokens.
    fn max_token_bytes(&self) -> usize;
    /// The raw bytes of one token (special tokens: their text; empty for an unknown id), for logprobs.
    fn token_bytes(&self, id: u32) -> Vec<u8>;
}

/// [`Tokenize`] by the model's own byte-level BPE tokenizer and chat template (`vir::tokenizer`).
#[derive(Clone)]
pub struct VirTokenizer {
    inner: Tokenizer,
    max_token_bytes: usize,
}

impl VirTokenizer {
    /// Wraps a tokenizer.
    pub fn new(inner: Tokenizer) -> Self {
        let max_token_bytes = (0..inner.vocab_size())
            .filter_map(|id| inner.id_to_token(id as u32))
            .map(|t| t.chars().count())
            .max()
            .unwrap_or(1)
            .max(1);
        Self {
            inner,
            max_token_bytes,
        }
    }
}

struct VirDecoder(StreamDecoder);

impl TextDecoder for VirDecoder {
    fn push(&mut self, id: u32) -> String {
        self.0.push(id).ok().flatten().unwrap_or_default()
    }

    fn finish(&mut self) -> String {
        self.0.finish().ok().flatten().unwrap_or_default()
    }
}

impl Tokenize for VirTokenizer {
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TokenizeError> {
        self.inner
            .encode_chat(messages, true)
            .map_err(|e| TokenizeError(e.to_string()))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut ids = Vec::new();
        if self.inner.add_bos()
            && let Some(bos) = self.inner.bos_id()
        {
            ids.push(bos);
        }
        ids.extend(
            self.inner
                .encode(text)
                .map_err(|e| TokenizeError(e.to_string()))?,
        );
        Ok(ids)
    }

    fn decoder(&self) -> Box<dyn TextDecoder> {
        Box::new(VirDecoder(self.inner.stream_decoder()))
    }

    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.inner.token_bytes(id).unwrap_or_default()
    }
}

/// A model the sequencer accepts requests for.
#[derive(Clone)]
pub struct ServedModel {
    /// The id clients send as `model`.
    pub id: String,
    /// `created` of the model card (Unix seconds).
    pub created: u32,
    /// `owned_by` of the model card.
    pub owned_by: String,
    /// Model root (registered on L1).
    pub root: B256,
    /// Context length: prompt + max_tokens must fit.
    pub context_length: usize,
    /// Token ids that end generation (a `stop` finish must end with one).
    pub stop_ids: Vec<u32>,
    /// Tokenizer.
    pub tokenizer: Arc<dyn Tokenize>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.id)
            .field("root", &self.root)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    /// Serves `bundle` under `id`.
    pub fn from_bundle(id: impl Into<String>, bundle: &ModelBundle, created: u32) -> Self {
        Self {
            id: id.into(),
            created,
            owned_by: "verinfer".into(),
            root: bundle.model.root,
            context_length: bundle.model.config.context_length,
            stop_ids: bundle.model.stop_ids.clone(),
            tokenizer: Arc::new(VirTokenizer::new(bundle.tokenizer.clone())),
        }
    }
}

//! OpenAI response shapes: completions, chat completions, their stream chunks and model cards, with every field the
//! strict clients require (`id`, `object`, `created` as integer seconds, `model`, `choices[].index`, complete `usage`)
//! plus a `verinfer` object the clients ignore.

use serde::{Deserialize, Serialize};

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: u32,
    /// Generated tokens over all choices.
    pub completion_tokens: u32,
    /// Sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Usage of a prompt and its generations.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        let p = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
        let c = u32::try_from(completion_tokens).unwrap_or(u32::MAX);
        Self {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p.saturating_add(c),
        }
    }
}

/// The `verinfer` object of every response: where to follow the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerinferInfo {
    /// `0x…` request id (the leaf's `requestId`).
    pub request_id: String,
    /// Path of the receipt (`/v1/receipts/{id}`).
    pub receipt_url: String,
    /// `pending` while generating; `executed` once every choice's result is committed.
    pub status: String,
}

/// An assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// Generated text.
    pub content: String,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Choice index.
    pub index: u32,
    /// The message.
    pub message: AssistantMessage,
    /// Logprobs of the tokens (of this chunk), when asked for; see [`ChatLogprobs`] / [`CompletionLogprobs`].
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length`.
    pub finish_reason: Option<String>,
}

/// `chat.completion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// Identifies the program (model root).
    pub system_fingerprint: String,
    /// Choices by index.
    pub choices: Vec<ChatChoice>,
    /// Usage.
    pub usage: Usage,
    /// Receipt pointer.
    pub verinfer: VerinferInfo,
}

/// The delta of a chat chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant` in a choice's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chat chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChunkChoice {
    /// Choice index.
    pub index: u32,
    /// New text.
    pub delta: Delta,
    /// Logprobs of the tokens (of this chunk), when asked for; see [`ChatLogprobs`] / [`CompletionLogprobs`].
    pub logprobs: Option<serde_json::Value>,
    /// Set in the choice's last chunk.
    pub finish_reason: Option<String>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Same id in every chunk.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// Identifies the program.
    pub system_fingerprint: String,
    /// Choices with news (empty in the usage chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// Null except in the final usage chunk.
    pub usage: Option<Usage>,
    /// Receipt pointer.
    pub verinfer: VerinferInfo,
}

/// One choice of a text completion (also of its chunks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Choice index.
    pub index: u32,
    /// Generated text (a piece of it in chunks).
    pub text: String,
    /// Logprobs of the tokens (of this chunk), when asked for; see [`ChatLogprobs`] / [`CompletionLogprobs`].
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length` at the end, else null.
    pub finish_reason: Option<String>,
}

/// `text_completion` (a response, or one chunk of a stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// Identifies the program.
    pub system_fingerprint: String,
    /// Choices.
    pub choices: Vec<CompletionChoice>,
    /// Always set in a response; null in chunks except the usage chunk.
    pub usage: Option<Usage>,
    /// Receipt pointer.
    pub verinfer: VerinferInfo,
}

/// A model card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Model id.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u32,
    /// Owner.
    pub owned_by: String,
    /// Model root (verinfer extension).
    pub root: String,
    /// Context length (verinfer extension, as vLLM's `max_model_len`).
    pub max_model_len: usize,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// Cards.
    pub data: Vec<ModelCard>,
}

/// One alternative of a chat token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTopLogprob {
    /// The token's text (invalid UTF-8 replaced).
    pub token: String,
    /// Its logprob.
    pub logprob: f64,
    /// The token's bytes.
    pub bytes: Vec<u8>,
}

/// One generated token in chat `logprobs.content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    /// The token's text (invalid UTF-8 replaced).
    pub token: String,
    /// Its logprob.
    pub logprob: f64,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    /// The `top_logprobs` most likely tokens at this position.
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// `choices[i].logprobs` of a chat completion or chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
    /// Always null.
    pub refusal: Option<String>,
}

/// `choices[i].logprobs` of a text completion or chunk (the legacy shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their logprobs.
    pub token_logprobs: Vec<f64>,
    /// Per token: the `logprobs` most likely tokens and the generated one, text → logprob.
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Per token: the character offset in the choice's text where it starts.
    pub text_offset: Vec<usize>,
}

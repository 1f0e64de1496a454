//! Admission: model lookup, limits, chat template and tokenization, context check, per-choice sampling parameters,
//! and the durable commit of the request with one job per choice — all before any byte of the response.

use crate::error::ApiError;
use crate::ids::{RequestId, RequestKind};
use crate::model::ServedModel;
use crate::params::{COMPLETIONS_DEFAULT_MAX_TOKENS, GenerationRequest, Prompt};
use crate::server::AppState;
use crate::storage::{ApiKeyRecord, NewRequest};
use protocol::{SamplingParams, token_ids_root};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Instant;

/// Response options stored with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseOptions {
    /// Stop strings.
    pub stop: Vec<String>,
    /// SSE streaming.
    pub stream: bool,
    /// Usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Logprobs were asked for.
    pub logprobs: bool,
    /// Alternatives per token asked for (chat `top_logprobs`, completions `logprobs`), when `logprobs`.
    #[serde(default)]
    pub top_logprobs: u8,
    /// Whether the client chose the seed.
    pub seed_given: bool,
}

/// A request that is stored and queued.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Id.
    pub request_id: RequestId,
    /// Endpoint.
    pub kind: RequestKind,
    /// Admission time, Unix seconds (`created`).
    pub created: u64,
    /// The model.
    pub model: ServedModel,
    /// Prompt tokens.
    pub prompt_len: usize,
    /// Per-choice parameters.
    pub choices: Vec<SamplingParams>,
    /// Response options.
    pub options: ResponseOptions,
}

impl Admitted {
    /// `chatcmpl-…` / `cmpl-…`.
    pub fn response_id(&self) -> String {
        self.request_id.response_id(self.kind)
    }
}

fn context_error(
    param: &'static str,
    context: usize,
    prompt: usize,
    max_tokens: Option<u32>,
) -> ApiError {
    let what = if param == "messages" {
        "messages"
    } else {
        "prompt"
    };
    let message = match max_tokens {
        Some(m) => format!(
            "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt} \
             in the {what}, {m} in the completion). Please reduce the length of the {what} or completion.",
            prompt as u64 + u64::from(m)
        ),
        None => format!(
            "This model's maximum context length is {context} tokens. However, your {what} resulted in {prompt} \
             tokens, leaving no room for the completion. Please reduce the length of the {what}."
        ),
    };
    ApiError::invalid(
        message,
        Some(Cow::Borrowed(param)),
        Some("context_length_exceeded"),
    )
}

/// Validated request → stored request.
pub async fn admit(
    state: &AppState,
    key: Option<&ApiKeyRecord>,
    req: GenerationRequest,
) -> Result<Admitted, ApiError> {
    let start = Instant::now();
    let model = state
        .model(&req.model)
        .ok_or_else(|| ApiError::model_not_found(&req.model))?
        .clone();
    if let Some(key) = key {
        state.limiter().check_request(key)?;
    }
    let config = state.config();
    if state.queue_estimate().saturating_add(u64::from(req.n)) > config.max_queue_depth {
        return Err(ApiError::overloaded(config.overload_retry_after.as_secs()));
    }
    let param = match req.kind {
        RequestKind::Chat => "messages",
        RequestKind::Completion => "prompt",
    };
    let context = model.context_length;
    // A text of b bytes has at least b / max_token_bytes tokens: refuse hopeless prompts before tokenizing them.
    let text_bytes = match &req.prompt {
        Prompt::Chat(messages) => messages.iter().map(|m| m.content.len()).sum(),
        Prompt::Text(t) => t.len(),
        Prompt::Tokens(_) => 0,
    };
    let lower_bound = text_bytes / model.tokenizer.max_token_bytes();
    if lower_bound >= context {
        return Err(context_error(param, context, lower_bound, req.max_tokens));
    }
    let tokenizer = model.tokenizer.clone();
    let prompt = req.prompt.clone();
    let tokens = tokio::task::spawn_blocking(move || match &prompt {
        Prompt::Chat(messages) => tokenizer.encode_chat(messages),
        Prompt::Text(text) => tokenizer.encode(text),
        Prompt::Tokens(ids) => Ok(ids.clone()),
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        ApiError::invalid(
            format!("The {param} cannot be tokenized: {e}"),
            Some(Cow::Borrowed(param)),
            Some("invalid_prompt"),
        )
    })?;
    let vocab = model.tokenizer.vocab_size();
    if let Some((i, id)) = tokens
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'prompt[{i}]': token id {id} is outside the vocabulary of {vocab} tokens."
            ),
            Some(Cow::Owned(format!("prompt[{i}]"))),
            Some("invalid_value"),
        ));
    }
    if tokens.is_empty() {
        return Err(ApiError::invalid(
            format!("The {param} is empty: at least one token is required."),
            Some(Cow::Borrowed(param)),
            Some("empty_prompt"),
        ));
    }
    let prompt_len = tokens.len();
    if prompt_len >= context {
        return Err(context_error(param, context, prompt_len, req.max_tokens));
    }
    let max_tokens = match (req.max_tokens, req.kind) {
        (Some(m), _) => m,
        (None, RequestKind::Completion) => COMPLETIONS_DEFAULT_MAX_TOKENS,
        // Chat defaults to the rest of the context, as vLLM does.
        (None, RequestKind::Chat) => u32::try_from(context - prompt_len).unwrap_or(u32::MAX),
    };
    if prompt_len as u64 + u64::from(max_tokens) > context as u64 {
        return Err(context_error(param, context, prompt_len, Some(max_tokens)));
    }
    if let Some(key) = key {
        let cost = prompt_len as u64 + u64::from(max_tokens) * u64::from(req.n);
        state.limiter().check_tokens(key, cost)?;
    }
    let seed = match req.seed {
        Some(s) => s,
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(ApiError::internal)?;
            u64::from_le_bytes(b)
        }
    };
    let choices: Vec<SamplingParams> = (0..req.n)
        .map(|choice_index| SamplingParams {
            max_tokens,
            temperature_milli: req.temperature_milli,
            top_p_milli: req.top_p_milli,
            seed,
            choice_index,
        })
        .collect();
    for p in &choices {
        p.validate()
            .map_err(|e| ApiError::invalid(e.to_string(), None, Some("invalid_value")))?;
    }
    let options = ResponseOptions {
        stop: req.stop,
        stream: req.stream,
        include_usage: req.include_usage,
        logprobs: req.logprobs.is_some(),
        top_logprobs: req.logprobs.unwrap_or(0),
        seed_given: req.seed.is_some(),
    };
    let request_id = RequestId::random().map_err(ApiError::internal)?;
    let now_ms = state.clock().now_ms();
    let new = NewRequest {
        id: request_id,
        kind: req.kind,
        model: model.id.clone(),
        model_root: model.root,
        key_id: key.map(|k| k.id),
        created_ms: now_ms,
        prompt_root: token_ids_root(&tokens),
        prompt_tokens: tokens,
        options: serde_json::to_string(&options).map_err(ApiError::internal)?,
        choices: choices.clone(),
        logprobs: req.logprobs,
    };
    // Counted before the commit: a concurrent recount then errs low for one interval, never high.
    state.add_queued(u64::from(req.n));
    if let Err(e) = state.storage().insert_request(&new).await {
        state.sub_queued(u64::from(req.n));
        return Err(e.into());
    }
    state.hub().jobs_added();
    let metrics = state.metrics();
    metrics
        .admitted
        .with_label_values(&[req.kind.as_str()])
        .inc();
    metrics
        .admission_latency
        .observe(start.elapsed().as_secs_f64());
    Ok(Admitted {
        request_id,
        kind: req.kind,
        created: u64::try_from(now_ms / 1000).unwrap_or(0),
        model,
        prompt_len,
        choices,
        options,
    })
}

//! Following a request's jobs until every choice is executed, and turning their tokens into OpenAI responses: one
//! JSON body, or SSE chunks as the executor reports tokens (`data: {...}`, a usage chunk when asked, `data: [DONE]`).
//!
//! Both paths run the same per-choice pipeline (incremental decoding, then stop strings), so a stream concatenates to
//! exactly the non-streamed text. A response ends once every choice's result is committed (state `executed`): a stop
//! string ends a choice's text early (`finish_reason: "stop"`), but `[DONE]` and the usage wait for the committed
//! result, so the receipt is ready when the response ends.

use crate::admission::Admitted;
use crate::error::ApiError;
use crate::hub::Subscription;
use crate::ids::RequestKind;
use crate::model::TextDecoder;
use crate::openai::{
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, Completion,
    CompletionChoice, Delta, Usage, VerinferInfo,
};
use crate::server::AppState;
use crate::stop::StopMatcher;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use protocol::FinishReason;
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// News of one choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceUpdate {
    /// Choice index.
    pub index: u32,
    /// Text to append.
    pub text: String,
    /// Set once, when the choice's text is complete.
    pub finish_reason: Option<String>,
}

struct ChoiceText {
    decoder: Box<dyn TextDecoder>,
    matcher: StopMatcher,
    consumed: usize,
    finish: Option<String>,
    generated: usize,
}

/// Follows one request's jobs.
pub struct ResultFollower {
    state: AppState,
    admitted: Admitted,
    sub: Subscription,
    choices: Vec<ChoiceText>,
    deadline: tokio::time::Instant,
    executed: bool,
}

fn finish_name(reason: Option<FinishReason>) -> String {
    match reason {
        Some(FinishReason::Length) => "length",
        _ => "stop",
    }
    .to_string()
}

impl ResultFollower {
    /// Starts following `admitted`.
    pub fn new(state: AppState, admitted: Admitted) -> Self {
        let sub = state.hub().subscribe(admitted.request_id);
        let choices = admitted
            .choices
            .iter()
            .map(|_| ChoiceText {
                decoder: admitted.model.tokenizer.decoder(),
                matcher: StopMatcher::new(&admitted.options.stop),
                consumed: 0,
                finish: None,
                generated: 0,
            })
            .collect();
        let deadline = tokio::time::Instant::now() + state.config().response_timeout;
        Self {
            state,
            admitted,
            sub,
            choices,
            deadline,
            executed: false,
        }
    }

    /// The request.
    pub fn admitted(&self) -> &Admitted {
        &self.admitted
    }

    /// Tokens generated over all choices (complete once [`Self::next`] returned `None`).
    pub fn completion_tokens(&self) -> usize {
        self.choices.iter().map(|c| c.generated).sum()
    }

    /// The next updates; `None` once every choice is executed and its text delivered.
    pub async fn next(&mut self) -> Result<Option<Vec<ChoiceUpdate>>, ApiError> {
        loop {
            if self.executed {
                return Ok(None);
            }
            let progress = self
                .state
                .storage()
                .progress(self.admitted.request_id)
                .await?;
            if progress.len() != self.choices.len() {
                return Err(ApiError::internal(format!(
                    "request {} has {} jobs, expected {}",
                    self.admitted.request_id,
                    progress.len(),
                    self.choices.len()
                )));
            }
            let mut updates = Vec::new();
            let mut all_executed = true;
            for p in &progress {
                let Some(c) = self.choices.get_mut(p.choice_index as usize) else {
                    return Err(ApiError::internal("choice index out of range"));
                };
                let mut text = String::new();
                for &t in p.tokens.get(c.consumed..).unwrap_or_default() {
                    let piece = c.decoder.push(t);
                    text.push_str(&c.matcher.push(&piece));
                }
                c.consumed = c.consumed.max(p.tokens.len());
                let mut finished_now = false;
                if p.state.has_result() {
                    c.generated = p.tokens.len();
                    if c.finish.is_none() {
                        let tail = c.decoder.finish();
                        text.push_str(&c.matcher.push(&tail));
                        text.push_str(&c.matcher.finish());
                        c.finish = Some(if c.matcher.stopped() {
                            "stop".to_string()
                        } else {
                            finish_name(p.finish_reason)
                        });
                        finished_now = true;
                    }
                } else {
                    all_executed = false;
                    if c.matcher.stopped() && c.finish.is_none() {
                        c.finish = Some("stop".to_string());
                        finished_now = true;
                    }
                }
                if !text.is_empty() || finished_now {
                    updates.push(ChoiceUpdate {
                        index: p.choice_index,
                        text,
                        finish_reason: if finished_now { c.finish.clone() } else { None },
                    });
                }
            }
            self.executed = all_executed;
            if !updates.is_empty() {
                return Ok(Some(updates));
            }
            if self.executed {
                return Ok(None);
            }
            let poll = self.state.config().poll_interval;
            tokio::select! {
                () = self.sub.changed() => {}
                () = tokio::time::sleep(poll) => {}
                () = tokio::time::sleep_until(self.deadline) => {
                    return Err(ApiError::timeout(format!(
                        "The request {} is stored and will complete, but no result arrived in time; follow it at \
                         /v1/receipts/{}.",
                        self.admitted.request_id,
                        self.admitted.response_id()
                    )));
                }
            }
        }
    }
}

fn info(admitted: &Admitted, status: &str) -> VerinferInfo {
    VerinferInfo {
        request_id: admitted.request_id.to_string(),
        receipt_url: format!("/v1/receipts/{}", admitted.response_id()),
        status: status.to_string(),
    }
}

/// `system_fingerprint`: the model root, shortened.
pub fn fingerprint(admitted: &Admitted) -> String {
    format!("vi-{}", &hex::encode(admitted.model.root)[..16])
}

/// Waits for every choice and builds the JSON response.
pub async fn respond_json(mut follower: ResultFollower) -> Result<Response, ApiError> {
    let n = follower.admitted().choices.len();
    let mut texts = vec![String::new(); n];
    let mut finishes: Vec<Option<String>> = vec![None; n];
    while let Some(updates) = follower.next().await? {
        for u in updates {
            let i = u.index as usize;
            if let Some(t) = texts.get_mut(i) {
                t.push_str(&u.text);
            }
            if let (Some(f), Some(reason)) = (finishes.get_mut(i), u.finish_reason) {
                *f = Some(reason);
            }
        }
    }
    let a = follower.admitted();
    let usage = Usage::new(a.prompt_len, follower.completion_tokens());
    let body = match a.kind {
        RequestKind::Chat => serde_json::to_value(ChatCompletion {
            id: a.response_id(),
            object: "chat.completion".into(),
            created: a.created,
            model: a.model.id.clone(),
            system_fingerprint: fingerprint(a),
            choices: texts
                .into_iter()
                .zip(finishes)
                .enumerate()
                .map(|(i, (content, finish_reason))| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        content,
                    },
                    logprobs: None,
                    finish_reason,
                })
                .collect(),
            usage,
            verinfer: info(a, "executed"),
        }),
        RequestKind::Completion => serde_json::to_value(Completion {
            id: a.response_id(),
            object: "text_completion".into(),
            created: a.created,
            model: a.model.id.clone(),
            system_fingerprint: fingerprint(a),
            choices: texts
                .into_iter()
                .zip(finishes)
                .enumerate()
                .map(|(i, (text, finish_reason))| CompletionChoice {
                    index: i as u32,
                    text,
                    logprobs: None,
                    finish_reason,
                })
                .collect(),
            usage: Some(usage),
            verinfer: info(a, "executed"),
        }),
    }
    .map_err(ApiError::internal)?;
    Ok(axum::Json(body).into_response())
}

/// Chunk builder for one stream.
struct Chunks {
    admitted: Admitted,
    fingerprint: String,
}

impl Chunks {
    fn chat(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>, status: &str) -> String {
        let a = &self.admitted;
        serde_json::to_string(&ChatChunk {
            id: a.response_id(),
            object: "chat.completion.chunk".into(),
            created: a.created,
            model: a.model.id.clone(),
            system_fingerprint: self.fingerprint.clone(),
            choices,
            usage,
            verinfer: info(a, status),
        })
        .unwrap_or_default()
    }

    fn completion(
        &self,
        choices: Vec<CompletionChoice>,
        usage: Option<Usage>,
        status: &str,
    ) -> String {
        let a = &self.admitted;
        serde_json::to_string(&Completion {
            id: a.response_id(),
            object: "text_completion".into(),
            created: a.created,
            model: a.model.id.clone(),
            system_fingerprint: self.fingerprint.clone(),
            choices,
            usage,
            verinfer: info(a, status),
        })
        .unwrap_or_default()
    }

    /// One chunk with the updates (chat: a role-only first chunk per choice is sent separately).
    fn updates(&self, updates: Vec<ChoiceUpdate>) -> String {
        match self.admitted.kind {
            RequestKind::Chat => self.chat(
                updates
                    .into_iter()
                    .map(|u| ChatChunkChoice {
                        index: u.index,
                        delta: Delta {
                            role: None,
                            content: (!u.text.is_empty()).then_some(u.text),
                        },
                        logprobs: None,
                        finish_reason: u.finish_reason,
                    })
                    .collect(),
                None,
                "pending",
            ),
            RequestKind::Completion => self.completion(
                updates
                    .into_iter()
                    .map(|u| CompletionChoice {
                        index: u.index,
                        text: u.text,
                        logprobs: None,
                        finish_reason: u.finish_reason,
                    })
                    .collect(),
                None,
                "pending",
            ),
        }
    }
}

/// Streams the request as SSE.
pub fn respond_stream(follower: ResultFollower) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let admitted = follower.admitted().clone();
    let state = follower.state.clone();
    tokio::spawn(run_stream(follower, tx, admitted, state));
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn run_stream(
    mut follower: ResultFollower,
    tx: mpsc::Sender<Result<Event, Infallible>>,
    admitted: Admitted,
    state: AppState,
) {
    let send = |data: String| {
        let tx = tx.clone();
        async move { tx.send(Ok(Event::default().data(data))).await.is_ok() }
    };
    let chunks = Chunks {
        fingerprint: fingerprint(&admitted),
        admitted,
    };
    let a = &chunks.admitted;
    let start = Instant::now();
    let mut first_token = true;
    // Chat streams open with the role, as OpenAI and vLLM do.
    if a.kind == RequestKind::Chat {
        let opening = chunks.chat(
            (0..a.choices.len() as u32)
                .map(|index| ChatChunkChoice {
                    index,
                    delta: Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                    },
                    logprobs: None,
                    finish_reason: None,
                })
                .collect(),
            None,
            "pending",
        );
        if !send(opening).await {
            return;
        }
    }
    loop {
        // A client that went away stops the follower at once (not at its next chunk).
        let next = tokio::select! {
            r = follower.next() => r,
            () = tx.closed() => return,
        };
        match next {
            Ok(Some(updates)) => {
                if first_token && updates.iter().any(|u| !u.text.is_empty()) {
                    first_token = false;
                    state
                        .metrics()
                        .time_to_first_token
                        .observe(start.elapsed().as_secs_f64());
                }
                if !send(chunks.updates(updates)).await {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Mid-stream failure: an error event, then [DONE] (what vLLM sends; clients raise it).
                let body = serde_json::to_string(&e.body()).unwrap_or_default();
                let _ = send(body).await;
                let _ = send("[DONE]".into()).await;
                return;
            }
        }
    }
    if a.options.include_usage {
        let usage = Some(Usage::new(a.prompt_len, follower.completion_tokens()));
        let chunk = match a.kind {
            RequestKind::Chat => chunks.chat(Vec::new(), usage, "executed"),
            RequestKind::Completion => chunks.completion(Vec::new(), usage, "executed"),
        };
        if !send(chunk).await {
            return;
        }
    }
    let _ = send("[DONE]".into()).await;
}

//! Following a request's jobs until every choice is executed, and turning their tokens into OpenAI responses: one
//! JSON body, or SSE chunks as the executor reports tokens (`data: {...}`, a usage chunk when asked, `data: [DONE]`).
//!
//! Both paths run the same per-choice pipeline (incremental decoding, then stop strings), so a stream concatenates to
//! exactly the non-streamed text. A response ends once every choice's result is committed (state `executed`): a stop
//! string ends a choice's text early (`finish_reason: "stop"`), but `[DONE]` and the usage wait for the committed
//! result, so the receipt is ready when the response ends.
//!
//! Logprobs (when asked for) go with the text they produced: a token's logprobs are sent once some of its text has
//! been sent (or, for a choice that ends without a stop string, at its end). A stop string that cuts the text drops
//! the logprobs of the tokens whose text starts at or after the cut, so streamed and non-streamed logprobs agree.

use crate::admission::Admitted;
use crate::error::ApiError;
use crate::hub::Subscription;
use crate::ids::RequestKind;
use crate::model::TextDecoder;
use crate::openai::{
    AssistantMessage, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatLogprobs,
    ChatTokenLogprob, ChatTopLogprob, Completion, CompletionChoice, CompletionLogprobs, Delta,
    Usage, VerinferInfo,
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
use vir::logprobs::TokenLogprobs;

/// News of one choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceUpdate {
    /// Choice index.
    pub index: u32,
    /// Text to append.
    pub text: String,
    /// Set once, when the choice's text is complete.
    pub finish_reason: Option<String>,
    /// Logprobs of the tokens released with this update (when asked for).
    pub logprobs: Vec<TokenLogprobs>,
    /// For each of `logprobs`: the character offset in the choice's text where its token starts.
    pub offsets: Vec<usize>,
}

struct ChoiceText {
    decoder: Box<dyn TextDecoder>,
    matcher: StopMatcher,
    consumed: usize,
    finish: Option<String>,
    generated: usize,
    /// Per consumed token: the character offset where its text starts in the decoded (uncut) text.
    starts: Vec<usize>,
    /// Characters decoded so far.
    decoded_chars: usize,
    /// Characters emitted so far (after stop strings).
    emitted_chars: usize,
    /// Tokens whose logprobs were released.
    released: usize,
}

impl ChoiceText {
    /// Feeds decoded text through the stop matcher into `text`.
    fn emit(&mut self, decoded: &str, text: &mut String) {
        self.decoded_chars += decoded.chars().count();
        let out = self.matcher.push(decoded);
        self.emitted_chars += out.chars().count();
        text.push_str(&out);
    }

    /// Releases the logprobs of the tokens now known to be part of the response: those whose text starts before the
    /// end of the emitted text, or every token once the choice ended without a stop string.
    fn release(
        &mut self,
        logprobs: &[TokenLogprobs],
        all: bool,
    ) -> (Vec<TokenLogprobs>, Vec<usize>) {
        let kept = if all {
            self.starts.len()
        } else {
            self.starts.partition_point(|&s| s < self.emitted_chars)
        };
        let upto = kept.min(logprobs.len());
        if upto <= self.released {
            return (Vec::new(), Vec::new());
        }
        let range = self.released..upto;
        self.released = upto;
        (
            logprobs[range.clone()].to_vec(),
            self.starts[range].to_vec(),
        )
    }
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
                starts: Vec::new(),
                decoded_chars: 0,
                emitted_chars: 0,
                released: 0,
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
                    c.starts.push(c.decoded_chars);
                    let piece = c.decoder.push(t);
                    c.emit(&piece, &mut text);
                }
                c.consumed = c.consumed.max(p.tokens.len());
                let mut finished_now = false;
                let mut ended_whole = false;
                if p.state.has_result() {
                    c.generated = p.tokens.len();
                    if c.finish.is_none() {
                        let tail = c.decoder.finish();
                        c.emit(&tail, &mut text);
                        let rest = c.matcher.finish();
                        c.emitted_chars += rest.chars().count();
                        text.push_str(&rest);
                        ended_whole = !c.matcher.stopped();
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
                let (logprobs, offsets) = c.release(&p.logprobs, ended_whole);
                if !text.is_empty() || finished_now || !logprobs.is_empty() {
                    updates.push(ChoiceUpdate {
                        index: p.choice_index,
                        text,
                        finish_reason: if finished_now { c.finish.clone() } else { None },
                        logprobs,
                        offsets,
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
    let mut logprobs: Vec<(Vec<TokenLogprobs>, Vec<usize>)> = vec![Default::default(); n];
    while let Some(updates) = follower.next().await? {
        for u in updates {
            let i = u.index as usize;
            if let Some(t) = texts.get_mut(i) {
                t.push_str(&u.text);
            }
            if let Some((lp, offsets)) = logprobs.get_mut(i) {
                lp.extend(u.logprobs);
                offsets.extend(u.offsets);
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
                .zip(&logprobs)
                .enumerate()
                .map(|(i, ((content, finish_reason), (lp, _)))| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        content,
                    },
                    logprobs: chat_logprobs(a, lp, true),
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
                .zip(&logprobs)
                .enumerate()
                .map(
                    |(i, ((text, finish_reason), (lp, offsets)))| CompletionChoice {
                        index: i as u32,
                        text,
                        logprobs: completion_logprobs(a, lp, offsets, true),
                        finish_reason,
                    },
                )
                .collect(),
            usage: Some(usage),
            verinfer: info(a, "executed"),
        }),
    }
    .map_err(ApiError::internal)?;
    Ok(axum::Json(body).into_response())
}

/// A token's text and bytes by the model's tokenizer.
fn token_text(admitted: &Admitted, id: u32) -> (String, Vec<u8>) {
    let bytes = admitted.model.tokenizer.token_bytes(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// Chat `logprobs` of `lp` when the request asked for them: `null` otherwise, and in a chunk without tokens
/// (`whole`: a response, where a choice without tokens has an empty `content`).
fn chat_logprobs(
    admitted: &Admitted,
    lp: &[TokenLogprobs],
    whole: bool,
) -> Option<serde_json::Value> {
    if !admitted.options.logprobs || (lp.is_empty() && !whole) {
        return None;
    }
    let top = usize::from(admitted.options.top_logprobs);
    let content = lp
        .iter()
        .map(|t| {
            let (token, bytes) = token_text(admitted, t.token);
            ChatTokenLogprob {
                token,
                logprob: t.logprob,
                bytes,
                top_logprobs: t
                    .top
                    .iter()
                    .take(top)
                    .map(|alt| {
                        let (token, bytes) = token_text(admitted, alt.token);
                        ChatTopLogprob {
                            token,
                            logprob: alt.logprob,
                            bytes,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    serde_json::to_value(ChatLogprobs {
        content,
        refusal: None,
    })
    .ok()
}

/// Completions `logprobs` of `lp` (starting at the character `offsets`) when the request asked for them; `null`
/// otherwise and in a chunk without tokens. Each `top_logprobs` entry holds the `logprobs` most likely tokens and the
/// generated one (OpenAI: "up to logprobs+1 elements"; vLLM does the same).
fn completion_logprobs(
    admitted: &Admitted,
    lp: &[TokenLogprobs],
    offsets: &[usize],
    whole: bool,
) -> Option<serde_json::Value> {
    if !admitted.options.logprobs || (lp.is_empty() && !whole) {
        return None;
    }
    let top = usize::from(admitted.options.top_logprobs);
    let mut out = CompletionLogprobs {
        tokens: Vec::with_capacity(lp.len()),
        token_logprobs: Vec::with_capacity(lp.len()),
        top_logprobs: Vec::with_capacity(lp.len()),
        text_offset: offsets.to_vec(),
    };
    for t in lp {
        let (token, _) = token_text(admitted, t.token);
        let mut alternatives = serde_json::Map::new();
        for alt in t.top.iter().take(top) {
            alternatives
                .entry(token_text(admitted, alt.token).0)
                .or_insert_with(|| alt.logprob.into());
        }
        alternatives
            .entry(token.clone())
            .or_insert_with(|| t.logprob.into());
        out.tokens.push(token);
        out.token_logprobs.push(t.logprob);
        out.top_logprobs.push(alternatives);
    }
    serde_json::to_value(out).ok()
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
                        logprobs: chat_logprobs(&self.admitted, &u.logprobs, false),
                        delta: Delta {
                            role: None,
                            content: (!u.text.is_empty()).then_some(u.text),
                        },
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
                        logprobs: completion_logprobs(
                            &self.admitted,
                            &u.logprobs,
                            &u.offsets,
                            false,
                        ),
                        text: u.text,
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

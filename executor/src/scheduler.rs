//! Continuous batching over [`BurnEngine::forward_batch`] (vLLM-style, without preemption).
//!
//! Every [`Scheduler::step`] builds one engine step under a token budget ([`SchedulerConfig::max_step_tokens`]):
//! first one decode token for every running request that has finished its prompt, then prefill chunks of the
//! running requests still in their prompt (oldest first), as much as the budget leaves. Requests wait in a FIFO
//! queue and are admitted while fewer than [`SchedulerConfig::max_running`] run and their whole KV need
//! (`prompt + max_tokens` positions) fits in what is left of [`SchedulerConfig::kv_budget`]; that space is
//! reserved at admission, so an admitted request always completes. A request that could never fit is refused at
//! submission with [`SchedulerError::KvBudget`].
//!
//! Each request streams [`Event`]s on its own channel: one [`Event::Token`] per generated token, then exactly one
//! of [`Event::Finished`] (generation and trace commitment, from the same [`ParallelCommitter`] as
//! [`BurnEngine::generate_committed`]) or [`Event::Failed`]. Integer results do not depend on batching, so a
//! request's tokens and trace root are the same as a solo run's, whatever it shares steps with.
//!
//! The scheduler itself is synchronous ([`Scheduler::submit`], [`Scheduler::cancel`], [`Scheduler::step`]).
//! [`Scheduler::spawn`] runs it on a dedicated thread and returns a [`SchedulerHandle`] that any thread or async
//! task can submit to; the returned [`RequestStream`] is awaited with [`RequestStream::next`] (or
//! [`RequestStream::blocking_next`] outside a runtime) and cancelled with [`RequestStream::cancel`] or a
//! [`CancelHandle`]. Dropping a stream cancels its request too; a cancelled request leaves the batch and frees
//! its KV reservation before the next step.

use crate::commit::ParallelCommitter;
use crate::engine::{BatchItem, BurnEngine, RequestState, validate_request};
use crate::error::EngineError;
use burn::tensor::backend::Backend;
use protocol::{SamplingParams, TraceCommitment};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use vir::config::LlamaConfig;
use vir::interp::{Generation, RunError};

/// Identifies a request within one scheduler.
pub type RequestId = u64;

/// Limits of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Token positions per engine step (decode tokens plus prefill positions); at least `max_running`.
    pub max_step_tokens: usize,
    /// Requests running (admitted) at once.
    pub max_running: usize,
    /// KV positions that running requests may reserve in total (`prompt + max_tokens` each).
    pub kv_budget: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_step_tokens: 256,
            max_running: 32,
            kv_budget: 32 * 2048,
        }
    }
}

impl SchedulerConfig {
    /// Checks that the limits can make progress.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |field, why: String| Err(SchedulerError::Config { field, why });
        if self.max_running == 0 {
            return bad("max_running", "must be at least 1".into());
        }
        if self.max_step_tokens < self.max_running {
            return bad(
                "max_step_tokens",
                format!(
                    "{} is below max_running {}: every running request must be able to decode in each step; \
                     raise max_step_tokens or lower max_running",
                    self.max_step_tokens, self.max_running
                ),
            );
        }
        if self.kv_budget == 0 {
            return bad("kv_budget", "must be at least 1 position".into());
        }
        Ok(())
    }
}

/// Why a request or the scheduler failed.
#[derive(Debug, Clone, Error)]
pub enum SchedulerError {
    /// A configuration value cannot work.
    #[error("scheduler config `{field}`: {why}")]
    Config { field: &'static str, why: String },
    /// The request is invalid for the model.
    #[error("invalid request: {0}")]
    Invalid(Arc<RunError>),
    /// The request needs more KV positions than the whole budget.
    #[error(
        "the request needs {needed} KV positions (prompt {prompt} + max_tokens {max_tokens}) but the scheduler's \
         KV budget is {budget}; shorten the prompt or lower max_tokens"
    )]
    KvBudget {
        needed: usize,
        prompt: usize,
        max_tokens: u32,
        budget: usize,
    },
    /// The request was cancelled.
    #[error("request cancelled")]
    Cancelled,
    /// The engine failed on a step this request was part of.
    #[error("engine step failed: {0}")]
    Engine(Arc<EngineError>),
    /// The scheduler thread is gone.
    #[error("the scheduler has stopped")]
    Stopped,
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub generation: Generation,
    /// Trace root and op count, as [`BurnEngine::generate_committed`] commits them.
    pub trace: TraceCommitment,
}

/// What a request's stream carries.
#[derive(Debug, Clone)]
pub enum Event {
    /// A generated token (including a final stop token).
    Token(u32),
    /// The request finished; no more events follow.
    Finished(Completion),
    /// The request failed or was cancelled; no more events follow.
    Failed(SchedulerError),
}

/// What one step ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStats {
    /// Step number (from 0).
    pub step: u64,
    /// Positions run: `decode_tokens + prefill_tokens` (never above `max_step_tokens`).
    pub tokens: usize,
    pub decode_tokens: usize,
    pub prefill_tokens: usize,
    /// Requests in the step.
    pub requests: usize,
    /// Requests running after the step.
    pub running: usize,
    /// Requests queued after the step.
    pub waiting: usize,
    /// KV positions reserved during the step.
    pub kv_reserved: usize,
    /// Wall time of the step.
    pub elapsed: Duration,
    /// Part of `elapsed` spent committing the trace (wall time of the engine's emit phase, where the
    /// requests' trace committers hash tensor roots and trace leaves).
    pub hashing: Duration,
}

/// Totals since the scheduler started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub steps: u64,
    pub tokens: u64,
    pub decode_tokens: u64,
    pub prefill_tokens: u64,
    /// Largest `tokens` of one step.
    pub max_step_tokens: usize,
    /// Most requests in one step.
    pub max_step_requests: usize,
    /// Largest KV reservation seen.
    pub max_kv_reserved: usize,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    /// Time spent in engine steps.
    pub busy: Duration,
    /// Part of `busy` spent hashing traces.
    pub hashing: Duration,
}

impl SchedulerStats {
    fn record(&mut self, s: &StepStats) {
        self.steps += 1;
        self.tokens += s.tokens as u64;
        self.decode_tokens += s.decode_tokens as u64;
        self.prefill_tokens += s.prefill_tokens as u64;
        self.max_step_tokens = self.max_step_tokens.max(s.tokens);
        self.max_step_requests = self.max_step_requests.max(s.requests);
        self.max_kv_reserved = self.max_kv_reserved.max(s.kv_reserved);
        self.busy += s.elapsed;
        self.hashing += s.hashing;
    }
}

struct Waiting {
    id: RequestId,
    prompt: Vec<u32>,
    params: SamplingParams,
    events: UnboundedSender<Event>,
}

struct Running<B: Backend> {
    id: RequestId,
    state: RequestState<B>,
    trace: ParallelCommitter,
    events: UnboundedSender<Event>,
    reserved: usize,
}

/// KV positions a request reserves.
fn kv_need(prompt: &[u32], params: &SamplingParams) -> usize {
    prompt.len() + params.max_tokens as usize
}

/// Checks a request against the model and the KV budget.
fn check_request(
    config: &LlamaConfig,
    kv_budget: usize,
    prompt: &[u32],
    params: &SamplingParams,
) -> Result<(), SchedulerError> {
    validate_request(config, prompt, params).map_err(|e| SchedulerError::Invalid(Arc::new(e)))?;
    let needed = kv_need(prompt, params);
    if needed > kv_budget {
        return Err(SchedulerError::KvBudget {
            needed,
            prompt: prompt.len(),
            max_tokens: params.max_tokens,
            budget: kv_budget,
        });
    }
    Ok(())
}

/// The synchronous scheduler: owns the engine, the queue and the running requests.
pub struct Scheduler<B: Backend> {
    engine: BurnEngine<B>,
    config: SchedulerConfig,
    waiting: VecDeque<Waiting>,
    running: Vec<Running<B>>,
    kv_reserved: usize,
    next_id: RequestId,
    step: u64,
    stats: SchedulerStats,
}

impl<B: Backend> std::fmt::Debug for Scheduler<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .field("waiting", &self.waiting.len())
            .field("running", &self.running.len())
            .field("kv_reserved", &self.kv_reserved)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Scheduler<B> {
    pub fn new(engine: BurnEngine<B>, config: SchedulerConfig) -> Result<Self, SchedulerError> {
        config.validate()?;
        Ok(Self {
            engine,
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_reserved: 0,
            next_id: 0,
            step: 0,
            stats: SchedulerStats::default(),
        })
    }

    pub fn engine(&self) -> &BurnEngine<B> {
        &self.engine
    }

    pub fn into_engine(self) -> BurnEngine<B> {
        self.engine
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// Requests queued, not yet admitted.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests admitted and not finished.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// KV positions reserved by running requests.
    pub fn kv_reserved(&self) -> usize {
        self.kv_reserved
    }

    /// No request queued or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Queues a request; its events arrive on the returned receiver as steps run.
    pub fn submit(
        &mut self,
        prompt: Vec<u32>,
        params: SamplingParams,
    ) -> Result<(RequestId, UnboundedReceiver<Event>), SchedulerError> {
        check_request(
            self.engine.config(),
            self.config.kv_budget,
            &prompt,
            &params,
        )?;
        let (tx, rx) = unbounded_channel();
        let id = self.next_id;
        self.next_id += 1;
        self.enqueue(id, prompt, params, tx);
        Ok((id, rx))
    }

    /// Queues a request that the caller has checked (the thread handle checks on its side).
    fn enqueue(
        &mut self,
        id: RequestId,
        prompt: Vec<u32>,
        params: SamplingParams,
        events: UnboundedSender<Event>,
    ) {
        self.waiting.push_back(Waiting {
            id,
            prompt,
            params,
            events,
        });
    }

    /// Cancels a queued or running request: it gets [`Event::Failed`]`(`[`SchedulerError::Cancelled`]`)` and its
    /// KV reservation is released at once. Returns whether the request was found.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            if let Some(w) = self.waiting.remove(i) {
                let _ = w.events.send(Event::Failed(SchedulerError::Cancelled));
                self.stats.cancelled += 1;
            }
            return true;
        }
        if let Some(i) = self.running.iter().position(|r| r.id == id) {
            let r = self.running.remove(i);
            self.kv_reserved -= r.reserved;
            let _ = r.events.send(Event::Failed(SchedulerError::Cancelled));
            self.stats.cancelled += 1;
            return true;
        }
        false
    }

    /// Drops requests whose receiver is gone (nobody listens: same as a cancel).
    fn drop_abandoned(&mut self) {
        let before = self.waiting.len() + self.running.len();
        self.waiting.retain(|w| !w.events.is_closed());
        let mut freed = 0;
        self.running.retain(|r| {
            let keep = !r.events.is_closed();
            if !keep {
                freed += r.reserved;
            }
            keep
        });
        self.kv_reserved -= freed;
        self.stats.cancelled += (before - self.waiting.len() - self.running.len()) as u64;
    }

    /// Admits queued requests in FIFO order while slots and KV space allow.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_running {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let need = kv_need(&front.prompt, &front.params);
            if self.kv_reserved + need > self.config.kv_budget {
                break;
            }
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            match self.engine.start(&w.prompt, &w.params) {
                Ok(state) => {
                    self.kv_reserved += need;
                    self.running.push(Running {
                        id: w.id,
                        state,
                        trace: ParallelCommitter::default(),
                        events: w.events,
                        reserved: need,
                    });
                }
                Err(e) => {
                    self.stats.failed += 1;
                    let _ = w
                        .events
                        .send(Event::Failed(SchedulerError::Engine(Arc::new(e))));
                }
            }
        }
    }

    /// Positions each running request runs in the next step (0: not in the step).
    fn plan(&self) -> Vec<usize> {
        let mut budget = self.config.max_step_tokens;
        let mut plan = vec![0; self.running.len()];
        for (p, r) in plan.iter_mut().zip(&self.running) {
            if budget > 0 && r.state.remaining_prompt() == 0 && !r.state.is_finished() {
                *p = 1;
                budget -= 1;
            }
        }
        for (p, r) in plan.iter_mut().zip(&self.running) {
            let left = r.state.remaining_prompt();
            if budget > 0 && left > 0 {
                *p = left.min(budget);
                budget -= *p;
            }
        }
        plan
    }

    /// Runs one step: admits what fits, runs decode tokens and prefill chunks under the budget, and streams the
    /// results. Returns `Ok(None)` when there was nothing to run. An engine failure fails the requests of that
    /// step (they get [`Event::Failed`]) and is returned; the scheduler stays usable.
    pub fn step(&mut self) -> Result<Option<StepStats>, SchedulerError> {
        self.drop_abandoned();
        self.admit();
        let plan = self.plan();
        if plan.iter().all(|&p| p == 0) {
            return Ok(None);
        }
        let started = Instant::now();
        let kv_reserved = self.kv_reserved;
        let emit_before = self.engine.trace_emit_time();
        let (mut decode_tokens, mut prefill_tokens) = (0, 0);
        let mut in_step = Vec::new();
        let mut items: Vec<BatchItem<'_, B>> = Vec::new();
        for (i, (r, &positions)) in self.running.iter_mut().zip(&plan).enumerate() {
            if positions == 0 {
                continue;
            }
            if r.state.remaining_prompt() == 0 {
                decode_tokens += positions;
            } else {
                prefill_tokens += positions;
            }
            in_step.push(i);
            items.push(BatchItem {
                request: &mut r.state,
                positions,
                sink: &mut r.trace,
            });
        }
        let result = self.engine.forward_batch(&mut items);
        drop(items);
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(e) => {
                let e = Arc::new(e);
                for &i in in_step.iter().rev() {
                    let r = self.running.remove(i);
                    self.kv_reserved -= r.reserved;
                    self.stats.failed += 1;
                    let _ = r
                        .events
                        .send(Event::Failed(SchedulerError::Engine(e.clone())));
                }
                return Err(SchedulerError::Engine(e));
            }
        };
        let hashing = self.engine.trace_emit_time().saturating_sub(emit_before);
        let mut finished = Vec::new();
        for (&i, out) in in_step.iter().zip(&outputs) {
            let r = &self.running[i];
            if let Some(token) = out.token {
                let _ = r.events.send(Event::Token(token));
            }
            if out.finish_reason.is_some() {
                finished.push(i);
            }
        }
        for &i in finished.iter().rev() {
            let r = self.running.remove(i);
            self.kv_reserved -= r.reserved;
            match r.state.generation() {
                Some(generation) => {
                    self.stats.completed += 1;
                    let trace = r.trace.finish();
                    let _ = r
                        .events
                        .send(Event::Finished(Completion { generation, trace }));
                }
                None => {
                    self.stats.failed += 1;
                    let _ = r.events.send(Event::Failed(SchedulerError::Engine(Arc::new(
                        EngineError::invariant("scheduler", "finished request has no generation"),
                    ))));
                }
            }
        }
        let stats = StepStats {
            step: self.step,
            tokens: decode_tokens + prefill_tokens,
            decode_tokens,
            prefill_tokens,
            requests: in_step.len(),
            running: self.running.len(),
            waiting: self.waiting.len(),
            kv_reserved,
            elapsed: started.elapsed(),
            hashing,
        };
        self.step += 1;
        self.stats.record(&stats);
        Ok(Some(stats))
    }

    /// Steps until no request is queued or running; returns every step's stats. Engine failures fail their
    /// requests and do not stop the loop.
    pub fn run_until_idle(&mut self) -> Vec<StepStats> {
        let mut steps = Vec::new();
        while !self.is_idle() {
            match self.step() {
                Ok(Some(s)) => steps.push(s),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        steps
    }
}

enum Command {
    Submit {
        id: RequestId,
        prompt: Vec<u32>,
        params: SamplingParams,
        events: UnboundedSender<Event>,
    },
    Cancel(RequestId),
}

/// Submits to a scheduler running on its own thread ([`Scheduler::spawn`]). Cheap to clone; the thread ends
/// once every handle and stream is dropped and the remaining work is done.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
    next_id: Arc<AtomicU64>,
    model: Arc<LlamaConfig>,
    kv_budget: usize,
    stats: Arc<Mutex<SchedulerStats>>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("kv_budget", &self.kv_budget)
            .finish_non_exhaustive()
    }
}

/// Cancels one request of a threaded scheduler.
#[derive(Debug, Clone)]
pub struct CancelHandle {
    id: RequestId,
    commands: mpsc::Sender<Command>,
}

impl CancelHandle {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Asks the scheduler to cancel the request (a no-op once it has finished).
    pub fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel(self.id));
    }
}

/// One submitted request's events.
#[derive(Debug)]
pub struct RequestStream {
    events: UnboundedReceiver<Event>,
    cancel: CancelHandle,
}

impl RequestStream {
    pub fn id(&self) -> RequestId {
        self.cancel.id
    }

    /// The next event; `None` after the final one.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event, blocking the thread (do not call from async code).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.events.blocking_recv()
    }

    /// Cancels the request.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Waits for the end of the request: the streamed tokens and the completion.
    pub async fn finish(mut self) -> Result<(Vec<u32>, Completion), SchedulerError> {
        let mut tokens = Vec::new();
        while let Some(event) = self.next().await {
            match event {
                Event::Token(t) => tokens.push(t),
                Event::Finished(c) => return Ok((tokens, c)),
                Event::Failed(e) => return Err(e),
            }
        }
        Err(SchedulerError::Stopped)
    }

    /// [`RequestStream::finish`], blocking the thread.
    pub fn blocking_finish(mut self) -> Result<(Vec<u32>, Completion), SchedulerError> {
        let mut tokens = Vec::new();
        while let Some(event) = self.blocking_next() {
            match event {
                Event::Token(t) => tokens.push(t),
                Event::Finished(c) => return Ok((tokens, c)),
                Event::Failed(e) => return Err(e),
            }
        }
        Err(SchedulerError::Stopped)
    }
}

impl SchedulerHandle {
    /// Checks and queues a request; an invalid request or one that exceeds the KV budget is refused here.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: SamplingParams,
    ) -> Result<RequestStream, SchedulerError> {
        check_request(&self.model, self.kv_budget, &prompt, &params)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.commands
            .send(Command::Submit {
                id,
                prompt,
                params,
                events: tx,
            })
            .map_err(|_| SchedulerError::Stopped)?;
        Ok(RequestStream {
            events: rx,
            cancel: CancelHandle {
                id,
                commands: self.commands.clone(),
            },
        })
    }

    /// Totals so far (updated after every step).
    pub fn stats(&self) -> SchedulerStats {
        match self.stats.lock() {
            Ok(s) => *s,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl<B: Backend> Scheduler<B>
where
    Self: Send + 'static,
{
    /// Runs the scheduler on a new thread (named `verinfer-scheduler`).
    pub fn spawn(
        mut self,
    ) -> std::io::Result<(SchedulerHandle, std::thread::JoinHandle<SchedulerStats>)> {
        let (tx, rx) = mpsc::channel::<Command>();
        let stats = Arc::new(Mutex::new(self.stats));
        let handle = SchedulerHandle {
            commands: tx,
            next_id: Arc::new(AtomicU64::new(self.next_id)),
            model: Arc::new(self.engine.config().clone()),
            kv_budget: self.config.kv_budget,
            stats: stats.clone(),
        };
        let join = std::thread::Builder::new()
            .name("verinfer-scheduler".into())
            .spawn(move || {
                let apply = |s: &mut Self, cmd| match cmd {
                    Command::Submit {
                        id,
                        prompt,
                        params,
                        events,
                    } => s.enqueue(id, prompt, params, events),
                    Command::Cancel(id) => {
                        s.cancel(id);
                    }
                };
                loop {
                    if self.is_idle() {
                        match rx.recv() {
                            Ok(cmd) => apply(&mut self, cmd),
                            Err(_) => break,
                        }
                    }
                    while let Ok(cmd) = rx.try_recv() {
                        apply(&mut self, cmd);
                    }
                    let progressed = !matches!(self.step(), Ok(None));
                    if let Ok(mut s) = stats.lock() {
                        *s = self.stats;
                    }
                    if !progressed && !self.is_idle() {
                        // Nothing could run (cannot happen with a valid config); wait for a command.
                        match rx.recv_timeout(Duration::from_millis(50)) {
                            Ok(cmd) => apply(&mut self, cmd),
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
                self.stats
            })?;
        Ok((handle, join))
    }
}

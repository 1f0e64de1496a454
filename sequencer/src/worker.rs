//! The remote executor: a worker loop over the executor HTTP API ([`crate::wire`]), generic over the inference
//! engine ([`InferenceEngine`]) and signing leaves with the executor's secp256k1 key.
//!
//! Per job: lease (long-poll) → run the engine on a blocking thread → stream each token (with its logprobs when the
//! job asks for them, see [`vir::logprobs`]) to `/tokens` as it is produced → build the leaf from the lease (request
//! id, model root, prompt root, params hash) and the result, sign it under the rollup's EIP-712 domain →
//! `/complete`. A heartbeat task renews every held lease every
//! [`WorkerConfig::heartbeat_every`]; a lease the sequencer reports lost is abandoned (its result is not sent).
//!
//! - **Re-leased jobs**: a job an earlier attempt already streamed tokens of comes with `streamed_tokens`; the run
//!   must reproduce them exactly (the engine is deterministic), and only the tokens after them are sent. A run that
//!   diverges is abandoned and reported, never completed.
//! - **Network errors** (and 5xx / 429 answers) are retried with exponential backoff ([`WorkerConfig::max_backoff`]);
//!   `/tokens` and `/complete` are idempotent, so a retry after a lost answer is harmless. A 4xx answer is final for
//!   that call (logged with the sequencer's message).
//! - **Shutdown**: once the `shutdown` future passed to [`Worker::run`] resolves, no new lease is taken; the lease
//!   call in flight (at most [`WorkerConfig::wait`]) and every running job finish and complete, then `run` returns.
//!
//! Metrics (`verinfer_executor_*`, see [`WorkerMetrics`]) live in the worker's own registry.

use crate::leaf::{LeafContext, build_leaf};
use crate::storage::LeaseRef;
use crate::wire::{
    CompleteRequest, CompleteResponse, ExecutorInfo, HeartbeatRequest, HeartbeatResponse,
    LeaseRequest, LeaseResponse, TokensRequest, TokensResponse, WireJob,
};
use alloy::signers::local::PrivateKeySigner;
use alloy_sol_types::Eip712Domain;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use protocol::{
    Address, B256, FinishReason, SamplingParams, TraceCommitment, leaf_domain, token_ids_root,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use vir::bundle::ModelBundle;
use vir::interp::{Generation, TraceCommitter, TraceSink, generate};
use vir::logprobs::{LogprobSink, TokenLogprobs};

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// Output token ids (the stop token included).
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Root of the execution trace.
    pub trace_root: B256,
    /// Ops in the trace.
    pub op_count: u64,
}

/// An engine failure (bad request for this model, device error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineFailure(pub String);

/// Runs VIR programs. Called on a blocking thread; several runs may overlap.
pub trait InferenceEngine: Send + Sync + 'static {
    /// The model root of the loaded model (jobs for another model are refused).
    fn model_root(&self) -> B256;

    /// Runs `prompt` with `params`, calling `on_token` with each token as it is produced, and commits the trace.
    /// With `logprobs: Some(k)` each token comes with its logprobs and `k` alternatives (computed from the run's
    /// Logits ops, see [`vir::logprobs`]); with `None` nothing extra is computed and `on_token` gets `None`.
    fn run(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        logprobs: Option<u8>,
        on_token: &mut dyn FnMut(u32, Option<TokenLogprobs>),
    ) -> Result<Execution, EngineFailure>;
}

/// Runs one request through `run` (an engine's generate: a trace sink and a per-token callback) with `committer` as
/// its trace sink (`finish` turns it into the commitment), wrapped in a [`LogprobSink`] when logprobs are asked for;
/// the shared body of every engine's [`InferenceEngine::run`]. Engines pass their fastest committer with the same
/// commitment (the reference: [`TraceCommitter`]; the burn engine: its parallel committer).
pub fn committed_run<C: TraceSink + Send, E: std::fmt::Display>(
    committer: C,
    finish: impl FnOnce(C) -> TraceCommitment,
    logprobs: Option<u8>,
    on_token: &mut dyn FnMut(u32, Option<TokenLogprobs>),
    run: impl FnOnce(&mut (dyn TraceSink + Send), &mut dyn FnMut(u32)) -> Result<Generation, E>,
) -> Result<Execution, EngineFailure> {
    let failure = |e: E| EngineFailure(e.to_string());
    let (generation, trace) = match logprobs {
        None => {
            let mut sink = committer;
            let g = run(&mut sink, &mut |t| on_token(t, None)).map_err(failure)?;
            (g, finish(sink))
        }
        Some(k) => {
            let (mut sink, rx) = LogprobSink::new(committer, usize::from(k));
            let g = run(&mut sink, &mut |t| on_token(t, rx.next())).map_err(failure)?;
            (g, finish(sink.into_inner()))
        }
    };
    Ok(Execution {
        tokens: generation.tokens,
        finish_reason: generation.finish_reason,
        trace_root: trace.root,
        op_count: trace.op_count,
    })
}

/// [`InferenceEngine`] on the scalar reference interpreter (`vir::interp::generate`).
#[derive(Clone)]
pub struct ReferenceEngine {
    bundle: Arc<ModelBundle>,
}

impl ReferenceEngine {
    /// Runs `bundle`'s model.
    pub fn new(bundle: Arc<ModelBundle>) -> Self {
        Self { bundle }
    }
}

impl InferenceEngine for ReferenceEngine {
    fn model_root(&self) -> B256 {
        self.bundle.model.root
    }

    fn run(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        logprobs: Option<u8>,
        on_token: &mut dyn FnMut(u32, Option<TokenLogprobs>),
    ) -> Result<Execution, EngineFailure> {
        committed_run(
            TraceCommitter::default(),
            TraceCommitter::finish,
            logprobs,
            on_token,
            |sink, on_token| generate(&self.bundle.model, prompt, params, sink, on_token),
        )
    }
}

/// Settings of a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Base URL of the sequencer (`http://host:port`, no trailing `/executor/v1`).
    pub sequencer: String,
    /// Bearer token of the executor API (`None`: send none).
    pub token: Option<String>,
    /// Jobs run at once.
    pub concurrency: u32,
    /// Lease duration asked for.
    pub lease: Duration,
    /// Long-poll of a lease call when no job waits (capped by the sequencer at 30 s); also the longest delay of a
    /// graceful shutdown before running jobs are waited for.
    pub wait: Duration,
    /// How often held leases are renewed (well under `lease`).
    pub heartbeat_every: Duration,
    /// Longest pause between retries of a failing call.
    pub max_backoff: Duration,
    /// The leaf signing domain; `None`: read `(chain id, rollup)` from the sequencer's `/executor/v1/info`.
    pub domain: Option<Eip712Domain>,
}

impl WorkerConfig {
    /// Defaults against `sequencer`: 4 jobs at once, 30 s leases renewed every 10 s, 2 s long-polls, backoff up to
    /// 5 s, domain from the sequencer.
    pub fn new(sequencer: impl Into<String>) -> Self {
        Self {
            sequencer: sequencer.into().trim_end_matches('/').to_string(),
            token: None,
            concurrency: 4,
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(2),
            heartbeat_every: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
            domain: None,
        }
    }
}

/// Why [`Worker::run`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The sequencer refused the worker (bad token, ...).
    #[error("the sequencer refused the executor: {0}")]
    Refused(String),
    /// The sequencer has no L1 domain and none was configured.
    #[error(
        "the sequencer does not say which rollup leaves are signed for (it runs without L1 checks); configure the \
         signing domain explicitly"
    )]
    NoDomain,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Worker metrics (`verinfer_executor_*`).
#[derive(Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    /// `verinfer_executor_jobs_total{outcome}`: `completed`, `refused` (4xx at complete), `lost` (lease lost),
    /// `failed` (engine error or divergence).
    pub jobs: IntCounterVec,
    /// `verinfer_executor_tokens_generated_total`.
    pub tokens: IntCounter,
    /// `verinfer_executor_jobs_running`.
    pub running: IntGauge,
    /// `verinfer_executor_job_seconds`: lease to completion.
    pub job_seconds: Histogram,
    /// `verinfer_executor_http_errors_total{call}`: failed calls to the sequencer (retried).
    pub http_errors: IntCounterVec,
}

impl WorkerMetrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new("verinfer_executor_jobs_total", "Jobs by outcome"),
            &["outcome"],
        )?;
        let tokens = IntCounter::new(
            "verinfer_executor_tokens_generated_total",
            "Tokens generated",
        )?;
        let running = IntGauge::new("verinfer_executor_jobs_running", "Jobs running now")?;
        let job_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "verinfer_executor_job_seconds",
                "Seconds from lease to completion",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 16)?),
        )?;
        let http_errors = IntCounterVec::new(
            Opts::new(
                "verinfer_executor_http_errors_total",
                "Failed calls to the sequencer (retried), by call",
            ),
            &["call"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(running.clone()))?;
        registry.register(Box::new(job_seconds.clone()))?;
        registry.register(Box::new(http_errors.clone()))?;
        Ok(Self {
            registry,
            jobs,
            tokens,
            running,
            job_seconds,
            http_errors,
        })
    }

    /// Prometheus text of every worker metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder
            .encode_utf8(&self.registry.gather(), &mut out)
            .is_err()
        {
            out.clear();
        }
        out
    }
}

/// A failed call.
#[derive(Debug)]
enum CallError {
    /// Not answered, or answered 5xx / 429 / unreadable: retry.
    Transient(String),
    /// Answered 4xx: do not retry.
    Refused { status: u16, message: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(m) => write!(f, "{m}"),
            Self::Refused { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

type Leases = Arc<Mutex<HashMap<LeaseRef, Arc<AtomicBool>>>>;

struct Shared<E> {
    config: WorkerConfig,
    engine: Arc<E>,
    signer: PrivateKeySigner,
    http: reqwest::Client,
    metrics: WorkerMetrics,
    /// Held leases and their "lost" flags.
    leases: Leases,
}

/// The executor worker; see the module docs.
pub struct Worker<E> {
    shared: Arc<Shared<E>>,
}

impl<E> std::fmt::Debug for Worker<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the key.
        f.debug_struct("Worker")
            .field("sequencer", &self.shared.config.sequencer)
            .field("executor", &self.shared.signer.address())
            .finish_non_exhaustive()
    }
}

impl<E: InferenceEngine> Worker<E> {
    /// A worker running `engine` and signing with `signer`.
    pub fn new(
        config: WorkerConfig,
        engine: Arc<E>,
        signer: PrivateKeySigner,
    ) -> Result<Self, WorkerError> {
        // The client timeout covers the longest long-poll with room to spare.
        let http = reqwest::Client::builder()
            .timeout(config.wait + Duration::from_secs(30))
            .build()
            .map_err(|e| WorkerError::Client(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                engine,
                signer,
                http,
                metrics: WorkerMetrics::new()?,
                leases: Arc::default(),
            }),
        })
    }

    /// The executor address (the signer's).
    pub fn address(&self) -> Address {
        self.shared.signer.address()
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics
    }

    /// Runs until `shutdown` resolves, then finishes the jobs it holds and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), WorkerError> {
        let shared = self.shared;
        tokio::pin!(shutdown);
        let domain = tokio::select! {
            d = shared.domain() => d?,
            () = &mut shutdown => return Ok(()),
        };
        let heartbeat = tokio::spawn(heartbeat_loop(shared.clone()));
        let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1) as usize));
        let mut jobs = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            while jobs.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let free = 1 + slots.available_permits() as u32;
            let request = LeaseRequest {
                max_jobs: free.min(crate::executor_api::MAX_JOBS_PER_LEASE),
                lease_ms: Some(duration_ms(shared.config.lease)),
                wait_ms: Some(duration_ms(shared.config.wait)),
            };
            // The lease call is not cut short by shutdown: jobs it leases would sit until their lease expires.
            let leased: LeaseResponse = match shared.call("lease", &request).await {
                Ok(r) => {
                    backoff = Duration::from_millis(100);
                    r
                }
                Err(CallError::Refused { status, message }) if status == 401 || status == 403 => {
                    drop(permit);
                    heartbeat.abort();
                    while jobs.join_next().await.is_some() {}
                    return Err(WorkerError::Refused(message));
                }
                Err(e) => {
                    eprintln!(
                        "verinfer-executor: lease: {e} (retrying in {} ms)",
                        backoff.as_millis()
                    );
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(shared.config.max_backoff);
                    continue;
                }
            };
            let mut permit = Some(permit);
            for job in leased.jobs {
                let slot = match permit.take() {
                    Some(p) => p,
                    // Slots only free up while we lease, so one is there; wait for it otherwise.
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let shared = shared.clone();
                let domain = domain.clone();
                jobs.spawn(async move {
                    shared.run_job(job, &domain).await;
                    drop(slot);
                });
            }
        }
        while jobs.join_next().await.is_some() {}
        heartbeat.abort();
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn heartbeat_loop<E: InferenceEngine>(shared: Arc<Shared<E>>) {
    let mut tick =
        tokio::time::interval(shared.config.heartbeat_every.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let held: Vec<LeaseRef> = shared.lock_leases().keys().copied().collect();
        if held.is_empty() {
            continue;
        }
        let request = HeartbeatRequest {
            leases: held,
            lease_ms: Some(duration_ms(shared.config.lease)),
        };
        match shared
            .call::<_, HeartbeatResponse>("heartbeat", &request)
            .await
        {
            Ok(r) => {
                let leases = shared.lock_leases();
                for lost in r.lost {
                    if let Some(flag) = leases.get(&lost) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => eprintln!("verinfer-executor: heartbeat: {e}"),
        }
    }
}

/// A token as the engine produced it, with its logprobs when asked for.
type Produced = (u32, Option<TokenLogprobs>);

/// Records a produced token; `logprobs` (when asked for) becomes `None` if a token comes without its own.
fn push_produced(
    (token, lp): Produced,
    produced: &mut Vec<u32>,
    logprobs: &mut Option<Vec<TokenLogprobs>>,
) {
    produced.push(token);
    if let Some(all) = logprobs {
        match lp {
            Some(lp) if lp.token == token => all.push(lp),
            _ => *logprobs = None,
        }
    }
}

/// How a job's streaming ended.
enum Streamed {
    /// Every token produced was consistent with `streamed_tokens`.
    Ok,
    /// The run produced a different token than an earlier attempt at `index`.
    Diverged { index: usize },
}

impl<E: InferenceEngine> Shared<E> {
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseRef, Arc<AtomicBool>>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn url(&self, call: &str) -> String {
        format!("{}/executor/v1/{call}", self.config.sequencer)
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        call: &str,
        body: &B,
    ) -> Result<R, CallError> {
        let mut request = self.http.post(self.url(call)).json(body);
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let result = Self::answer(request.send().await).await;
        if result.is_err() {
            self.metrics.http_errors.with_label_values(&[call]).inc();
        }
        result
    }

    async fn answer<R: DeserializeOwned>(
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<R, CallError> {
        let response = response.map_err(|e| CallError::Transient(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| CallError::Transient(format!("unreadable answer: {e}")));
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<crate::ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or(text);
        if status.is_server_error() || status.as_u16() == 429 {
            Err(CallError::Transient(format!("HTTP {status}: {message}")))
        } else {
            Err(CallError::Refused {
                status: status.as_u16(),
                message,
            })
        }
    }

    /// The signing domain: configured, or from `/executor/v1/info` (retried until it answers).
    async fn domain(&self) -> Result<Eip712Domain, WorkerError> {
        if let Some(domain) = &self.config.domain {
            return Ok(domain.clone());
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut request = self.http.get(self.url("info"));
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token);
            }
            match Self::answer::<ExecutorInfo>(request.send().await).await {
                Ok(info) => {
                    let root = self.engine.model_root();
                    if !info.models.iter().any(|m| m.model_root == root) {
                        eprintln!(
                            "verinfer-executor: warning: the sequencer serves no model with root {root} (the model \
                             this executor runs); it will refuse every job"
                        );
                    }
                    return match (info.chain_id, info.rollup) {
                        (Some(chain_id), Some(rollup)) => Ok(leaf_domain(chain_id, rollup)),
                        _ => Err(WorkerError::NoDomain),
                    };
                }
                Err(CallError::Refused { message, .. }) => {
                    return Err(WorkerError::Refused(message));
                }
                Err(e) => {
                    eprintln!(
                        "verinfer-executor: sequencer not reachable yet: {e} (retrying in {} ms)",
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn run_job(self: &Arc<Self>, job: WireJob, domain: &Eip712Domain) {
        let started = Instant::now();
        let lease = LeaseRef {
            job_id: job.job_id,
            attempt: job.attempt,
        };
        let lost = Arc::new(AtomicBool::new(false));
        self.lock_leases().insert(lease, lost.clone());
        self.metrics.running.inc();
        let outcome = self.execute(&job, domain, &lost).await;
        self.metrics.running.dec();
        self.lock_leases().remove(&lease);
        self.metrics.jobs.with_label_values(&[outcome]).inc();
        if outcome == "completed" {
            self.metrics
                .job_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Runs, streams and completes one job; returns the outcome label.
    async fn execute(
        self: &Arc<Self>,
        job: &WireJob,
        domain: &Eip712Domain,
        lost: &AtomicBool,
    ) -> &'static str {
        let id = job.job_id;
        if job.model_root != self.engine.model_root() {
            eprintln!(
                "verinfer-executor: job {id} is for model root {} but this executor runs {}; not running it",
                job.model_root,
                self.engine.model_root()
            );
            return "failed";
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Produced>();
        let engine = self.engine.clone();
        let prompt = job.prompt_tokens.clone();
        let params = job.params;
        let logprobs = job.logprobs;
        let run = tokio::task::spawn_blocking(move || {
            engine.run(&prompt, &params, logprobs, &mut |t, lp| {
                let _ = tx.send((t, lp));
            })
        });
        let (streamed, produced, produced_logprobs) = self.stream(job, &mut rx, lost).await;
        let execution = match run.await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                eprintln!("verinfer-executor: job {id}: engine failed: {e}");
                return "failed";
            }
            Err(e) => {
                eprintln!("verinfer-executor: job {id}: engine task failed: {e}");
                return "failed";
            }
        };
        if let Streamed::Diverged { index } = streamed {
            eprintln!(
                "verinfer-executor: job {id}: token #{index} differs from the one an earlier attempt streamed; the \
                 engine is not deterministic here, not completing"
            );
            return "failed";
        }
        if produced != execution.tokens.len() || execution.tokens.len() < job.streamed_tokens.len()
        {
            eprintln!(
                "verinfer-executor: job {id}: the run reported {} tokens but streamed {produced} (an earlier attempt \
                 streamed {}); not completing",
                execution.tokens.len(),
                job.streamed_tokens.len()
            );
            return "failed";
        }
        if lost.load(Ordering::Relaxed) {
            return "lost";
        }
        let logprobs = match job.logprobs {
            None => None,
            Some(_) => match produced_logprobs {
                Some(lp) => Some(lp),
                None => {
                    eprintln!(
                        "verinfer-executor: job {id}: the engine gave no logprobs for some token; not completing"
                    );
                    return "failed";
                }
            },
        };
        self.metrics.tokens.inc_by(execution.tokens.len() as u64);
        self.complete(job, domain, execution, logprobs, lost).await
    }

    /// Forwards produced tokens (with their logprobs when the job asks for them) to `/tokens` (only those after
    /// `streamed_tokens`); returns how streaming ended, how many tokens the engine produced and, when every token
    /// came with logprobs, their logprobs.
    async fn stream(
        &self,
        job: &WireJob,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Produced>,
        lost: &AtomicBool,
    ) -> (Streamed, usize, Option<Vec<TokenLogprobs>>) {
        let earlier = &job.streamed_tokens;
        let mut produced: Vec<u32> = Vec::new();
        let mut logprobs: Option<Vec<TokenLogprobs>> = job.logprobs.map(|_| Vec::new());
        let mut sent = earlier.len();
        let mut diverged = None;
        let mut give_up_sending = false;
        while let Some(first) = rx.recv().await {
            push_produced(first, &mut produced, &mut logprobs);
            while let Ok(t) = rx.try_recv() {
                push_produced(t, &mut produced, &mut logprobs);
            }
            if diverged.is_none()
                && let Some(index) = produced.iter().zip(earlier).position(|(a, b)| a != b)
            {
                diverged = Some(index);
            }
            if diverged.is_some() || give_up_sending || lost.load(Ordering::Relaxed) {
                continue; // drain: the engine cannot be stopped mid-run
            }
            if produced.len() <= sent {
                continue;
            }
            let request = TokensRequest {
                job_id: job.job_id,
                attempt: job.attempt,
                offset: u32::try_from(sent).unwrap_or(u32::MAX),
                tokens: produced[sent..].to_vec(),
                logprobs: logprobs
                    .as_ref()
                    .and_then(|all| all.get(sent..))
                    .map(<[TokenLogprobs]>::to_vec),
            };
            match self.call::<_, TokensResponse>("tokens", &request).await {
                Ok(_) => sent = produced.len(),
                // Not sent: the next batch starts from the same offset (the call is idempotent).
                Err(CallError::Transient(e)) => {
                    eprintln!("verinfer-executor: job {}: tokens: {e}", job.job_id);
                }
                Err(e) => {
                    eprintln!(
                        "verinfer-executor: job {}: tokens refused: {e}; no longer streaming it",
                        job.job_id
                    );
                    if matches!(&e, CallError::Refused { status: 409, .. }) {
                        lost.store(true, Ordering::Relaxed);
                    }
                    give_up_sending = true;
                }
            }
        }
        let streamed = match diverged {
            Some(index) => Streamed::Diverged { index },
            None if produced.len() < earlier.len() => Streamed::Diverged {
                index: produced.len(),
            },
            None => Streamed::Ok,
        };
        (streamed, produced.len(), logprobs)
    }

    async fn complete(
        &self,
        job: &WireJob,
        domain: &Eip712Domain,
        execution: Execution,
        logprobs: Option<Vec<TokenLogprobs>>,
        lost: &AtomicBool,
    ) -> &'static str {
        let executor = self.signer.address();
        let ctx = LeafContext {
            request_id: job.request_id,
            model_root: job.model_root,
            prompt_root: token_ids_root(&job.prompt_tokens),
            params_hash: job.params.params_hash(),
        };
        let leaf = build_leaf(
            &ctx,
            &execution.tokens,
            execution.finish_reason,
            execution.trace_root,
            execution.op_count,
            executor,
        );
        let signature = match protocol::sign_leaf(&leaf, domain, self.signer.credential()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("verinfer-executor: job {}: signing failed: {e}", job.job_id);
                return "failed";
            }
        };
        let request = CompleteRequest {
            job_id: job.job_id,
            attempt: job.attempt,
            tokens: execution.tokens,
            logprobs,
            finish_reason: execution.finish_reason,
            trace_root: execution.trace_root,
            op_count: execution.op_count,
            executor,
            signature: Some(signature),
            leaf: Some(leaf),
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.call::<_, CompleteResponse>("complete", &request).await {
                Ok(_) => return "completed",
                Err(CallError::Refused { status, message }) => {
                    eprintln!(
                        "verinfer-executor: job {}: the sequencer refused the result (HTTP {status}): {message}",
                        job.job_id
                    );
                    return if status == 409 { "lost" } else { "refused" };
                }
                Err(CallError::Transient(e)) => {
                    if lost.load(Ordering::Relaxed) {
                        return "lost";
                    }
                    eprintln!(
                        "verinfer-executor: job {}: complete: {e} (retrying in {} ms)",
                        job.job_id,
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }
}

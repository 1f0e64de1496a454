//! The executor-facing HTTP API (bodies in [`crate::wire`]): lease, heartbeat, stream tokens, complete.
//!
//! Executors authenticate through the [`ExecutorAuth`] seam. For now the only implementation is [`AllowList`]:
//! bearer tokens configured per executor. The signature is stored as given; the batcher
//! ([`crate::settlement::batcher`]) checks it against the rollup's EIP-712 domain, and the executor's L1 bond, before
//! it batches the leaf (a leaf that fails is marked `invalid`). Refusing such a completion here is still to do.

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::keys::{bearer, hash_key};
use crate::leaf::{LeafContext, build_leaf, check_outcome};
use crate::server::AppState;
use crate::storage::{JobOutcome, StorageError};
use crate::wire::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest,
    LeaseResponse, TokensRequest, TokensResponse,
};
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::post;
use protocol::token_ids_root;
use std::collections::HashMap;
use std::time::Duration;

/// Most jobs per lease call.
pub const MAX_JOBS_PER_LEASE: u32 = 256;

/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Identifies the executor making a call.
pub trait ExecutorAuth: Send + Sync {
    /// The executor id of the caller, or 401.
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError>;
}

/// Executors known by bearer token (`Authorization: Bearer <token>`); tokens are kept as sha256 only.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    tokens: HashMap<[u8; 32], String>,
}

impl AllowList {
    /// An allow-list of `(executor id, token)` pairs.
    pub fn new<I, A, B>(entries: I) -> Self
    where
        I: IntoIterator<Item = (A, B)>,
        A: Into<String>,
        B: AsRef<str>,
    {
        Self {
            tokens: entries
                .into_iter()
                .map(|(id, token)| (hash_key(token.as_ref()), id.into()))
                .collect(),
        }
    }
}

impl ExecutorAuth for AllowList {
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        bearer(headers)
            .and_then(|t| self.tokens.get(&hash_key(t)))
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized("Unknown executor: send a configured executor token.")
            })
    }
}

/// The authenticated executor of a call (checked before the body is read).
#[derive(Debug, Clone)]
pub struct ExecutorId(pub String);

impl FromRequestParts<AppState> for ExecutorId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.executor_auth().authenticate(&parts.headers).map(Self)
    }
}

/// The executor routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/executor/v1/lease", post(lease))
        .route("/executor/v1/heartbeat", post(heartbeat))
        .route("/executor/v1/tokens", post(tokens))
        .route("/executor/v1/complete", post(complete))
}

fn lease_duration(state: &AppState, lease_ms: Option<u64>) -> Duration {
    let config = state.config();
    lease_ms
        .map(Duration::from_millis)
        .unwrap_or(config.default_lease)
        .clamp(Duration::from_millis(100), config.max_lease)
}

async fn lease(
    State(state): State<AppState>,
    ExecutorId(executor): ExecutorId,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> Result<Json<LeaseResponse>, ApiError> {
    if !(1..=MAX_JOBS_PER_LEASE).contains(&req.max_jobs) {
        return Err(ApiError::invalid(
            format!("max_jobs must be in 1..={MAX_JOBS_PER_LEASE}"),
            Some("max_jobs".into()),
            Some("invalid_value"),
        ));
    }
    let duration = lease_duration(&state, req.lease_ms);
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut wake = state.hub().jobs_watch();
    loop {
        wake.borrow_and_update();
        let jobs = state
            .storage()
            .lease(&executor, req.max_jobs, duration)
            .await?;
        if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
            state.metrics().jobs_leased.inc_by(jobs.len() as u64);
            return Ok(Json(LeaseResponse {
                jobs: jobs.into_iter().map(Into::into).collect(),
            }));
        }
        // Expired leases are picked up by polling; new jobs wake us at once.
        let poll = state.config().poll_interval.max(Duration::from_millis(100));
        tokio::select! {
            _ = wake.changed() => {}
            () = tokio::time::sleep(poll) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn heartbeat(
    State(state): State<AppState>,
    ExecutorId(executor): ExecutorId,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let duration = lease_duration(&state, req.lease_ms);
    let renewed = state
        .storage()
        .heartbeat(&executor, &req.leases, duration)
        .await?;
    let lost = req
        .leases
        .iter()
        .filter(|l| !renewed.contains(l))
        .copied()
        .collect();
    Ok(Json(HeartbeatResponse { renewed, lost }))
}

async fn tokens(
    State(state): State<AppState>,
    ExecutorId(executor): ExecutorId,
    JsonBody(req): JsonBody<TokensRequest>,
) -> Result<Json<TokensResponse>, ApiError> {
    let lease = crate::storage::LeaseRef {
        job_id: req.job_id,
        attempt: req.attempt,
    };
    let stored = state
        .storage()
        .append_tokens(&executor, lease, req.offset, &req.tokens)
        .await?;
    state.hub().notify(stored.request_id);
    Ok(Json(TokensResponse {
        stored: stored.stored,
    }))
}

async fn complete(
    State(state): State<AppState>,
    ExecutorId(executor): ExecutorId,
    JsonBody(req): JsonBody<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    let storage = state.storage();
    let job = storage
        .job(req.job_id)
        .await?
        .ok_or(StorageError::UnknownJob(req.job_id))?;
    let request = storage
        .request(job.request_id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("job {} has no request", job.job_id)))?;
    check_outcome(
        &job,
        state.model(&request.model),
        &req.tokens,
        req.finish_reason,
    )
    .map_err(|e| ApiError::invalid(e.to_string(), Some("tokens".into()), Some("invalid_result")))?;
    let ctx = LeafContext {
        request_id: request.id.0,
        model_root: request.model_root,
        prompt_root: request.prompt_root,
        params_hash: job.params.params_hash(),
    };
    let leaf = build_leaf(
        &ctx,
        &req.tokens,
        req.finish_reason,
        req.trace_root,
        req.op_count,
        req.executor,
    );
    let leaf_hash = leaf.hash();
    let lease = crate::storage::LeaseRef {
        job_id: req.job_id,
        attempt: req.attempt,
    };
    storage
        .complete(
            &executor,
            lease,
            &JobOutcome {
                output_hash: token_ids_root(&req.tokens),
                tokens: req.tokens.clone(),
                finish_reason: req.finish_reason,
                trace_root: req.trace_root,
                op_count: req.op_count,
                executor_address: req.executor,
                signature: req.signature,
                leaf_hash,
            },
        )
        .await?;
    state.hub().notify(request.id);
    state.sub_queued(1);
    let metrics = state.metrics();
    metrics.jobs_completed.inc();
    metrics.tokens_generated.inc_by(req.tokens.len() as u64);
    Ok(Json(CompleteResponse { leaf, leaf_hash }))
}

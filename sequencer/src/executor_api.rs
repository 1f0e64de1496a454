//! The executor-facing HTTP API (bodies in [`crate::wire`]): lease, heartbeat, stream tokens, complete.
//!
//! Executors authenticate through the [`ExecutorAuth`] seam. For now the only implementation is [`AllowList`]:
//! bearer tokens configured per executor. When the state has a leaf verifier ([`crate::verify`]), `complete` refuses
//! a result whose leaf differs from the job (400 `leaf_mismatch`), whose signature is missing or does not recover the
//! named executor (400 `invalid_signature`), or whose executor has no active bond on L1 (403 `executor_not_bonded`);
//! an unreachable L1 is a 503. A refused result is not stored: the lease runs out and the job is leased again. The
//! batcher ([`crate::settlement::batcher`]) checks all of it again before it posts the leaf.

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::keys::{bearer, hash_key};
use crate::leaf::{LeafContext, build_leaf, check_outcome};
use crate::server::AppState;
use crate::storage::{JobOutcome, StorageError};
use crate::verify::VerifyError;
use crate::wire::{
    CompleteRequest, CompleteResponse, ExecutorInfo, ExecutorModel, HeartbeatRequest,
    HeartbeatResponse, LeaseRequest, LeaseResponse, TokensRequest, TokensResponse,
};
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
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
        .route("/executor/v1/info", get(info))
}

async fn info(State(state): State<AppState>, ExecutorId(_): ExecutorId) -> Json<ExecutorInfo> {
    let domain = state.leaf_verifier().map(|v| v.domain().clone());
    Json(ExecutorInfo {
        chain_id: domain
            .as_ref()
            .and_then(|d| d.chain_id)
            .and_then(|c| u64::try_from(c).ok()),
        rollup: domain.and_then(|d| d.verifying_contract),
        models: state
            .models()
            .iter()
            .map(|m| ExecutorModel {
                id: m.id.clone(),
                model_root: m.root,
            })
            .collect(),
    })
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
        .append_tokens(
            &executor,
            lease,
            req.offset,
            &req.tokens,
            req.logprobs.as_deref(),
        )
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
    if let Some(verifier) = state.leaf_verifier() {
        // Only a result for a lease this executor holds is worth an L1 read; a stale one fails below anyway.
        if let Err(e) = verifier
            .verify(&leaf, req.leaf.as_ref(), req.signature.as_ref())
            .await
        {
            state
                .metrics()
                .jobs_refused
                .with_label_values(&[refusal_label(&e)])
                .inc();
            return Err(refusal(e));
        }
    }
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
                logprobs: req.logprobs.clone(),
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

fn refusal_label(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Unsigned | VerifyError::Signature { .. } => "signature",
        VerifyError::FieldMismatch { .. } => "leaf_mismatch",
        VerifyError::NotBonded(_) => "not_bonded",
        VerifyError::L1(_) => "l1_unavailable",
    }
}

fn refusal(e: VerifyError) -> ApiError {
    match &e {
        VerifyError::Unsigned | VerifyError::Signature { .. } => ApiError::invalid(
            e.to_string(),
            Some("signature".into()),
            Some("invalid_signature"),
        ),
        VerifyError::FieldMismatch { .. } => {
            ApiError::invalid(e.to_string(), Some("leaf".into()), Some("leaf_mismatch"))
        }
        VerifyError::NotBonded(_) => ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "permission_error",
            e.to_string(),
            Some("executor".into()),
            Some("executor_not_bonded"),
        ),
        VerifyError::L1(_) => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                e.to_string(),
                None,
                Some("l1_unavailable"),
            )
        },
    }
}

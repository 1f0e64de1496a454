//! Durable state of the sequencer: requests, their jobs (one per choice) with the tokens streamed so far, API keys
//! (hashes only) and per-key usage, batches and the jobs in them ([`BatchStore`]). Two backends share one schema and one conformance suite: [`PgStorage`]
//! (production, several replicas) and [`SqliteStorage`] (embedded default).
//!
//! Job states: `queued → leased(executor, lease_expires_at) → executed → posted → final | invalid`. An expired lease
//! is leased again by the next [`JobQueue::lease`]; every executor call is fenced by the job's `attempt`, so a worker
//! whose lease was taken over can no longer write.

mod batch_sql;
mod batches;
pub mod leader;
mod postgres;
mod sql;
mod sqlite;

pub use batches::{
    BatchHead, BatchRecord, BatchStatus, BatchStore, NewBatch, PostedInfo, UnbatchedJob,
    UnbatchedSummary,
};
pub use leader::{LeaderLock, PgAdvisoryLock, ProcessLock};
pub use postgres::PgStorage;
pub use sqlite::SqliteStorage;

use crate::ids::{RequestId, RequestKind};
use async_trait::async_trait;
use protocol::{Address, B256, FinishReason, LeafSignature, SamplingParams};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use vir::logprobs::{TokenLogprobs, TopLogprob};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A request with this id is already stored.
    #[error("request {0} already exists")]
    DuplicateRequest(RequestId),
    /// No job has this id.
    #[error("job {0} does not exist")]
    UnknownJob(i64),
    /// The job is not (or no longer) leased to this executor under this attempt.
    #[error(
        "job {job_id} is not leased to {executor} under attempt {attempt} (lease expired and taken over, or job \
         already finished)"
    )]
    LeaseLost {
        /// The job.
        job_id: i64,
        /// The caller.
        executor: String,
        /// The attempt the caller holds.
        attempt: u32,
    },
    /// Tokens disagree with the tokens already stored for the job.
    #[error("job {job_id}: token #{index} differs from the token already streamed")]
    TokenMismatch {
        /// The job.
        job_id: i64,
        /// First differing position.
        index: usize,
    },
    /// Appended tokens start past the end of the stored tokens.
    #[error("job {job_id}: offset {offset} is past the {stored} tokens already stored")]
    TokenGap {
        /// The job.
        job_id: i64,
        /// The offset given.
        offset: u32,
        /// Tokens stored.
        stored: usize,
    },
    /// More tokens than the job's `max_tokens`.
    #[error("job {job_id}: {len} tokens exceed max_tokens {max_tokens}")]
    TooManyTokens {
        /// The job.
        job_id: i64,
        /// Tokens that would be stored.
        len: usize,
        /// The job's limit.
        max_tokens: u32,
    },
    /// A batch cannot be recorded as planned (its number is taken or a job was batched meanwhile); nothing was
    /// written.
    #[error("batch {number} conflicts with stored batches: {reason}")]
    BatchConflict {
        /// The batch number.
        number: u64,
        /// What conflicts.
        reason: String,
    },
    /// Streamed or completed logprobs do not fit the job (missing when asked for, or not one per token).
    #[error("job {job_id}: {why}")]
    Logprobs {
        /// The job.
        job_id: i64,
        /// What is wrong.
        why: String,
    },
    /// A stored value cannot be decoded (schema drift or manual edits).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// State of one job (one choice of a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for an executor.
    Queued,
    /// Leased to an executor until its lease expires.
    Leased,
    /// The executor returned its result and leaf.
    Executed,
    /// The leaf is in a batch posted to L1.
    Posted,
    /// The batch's challenge window passed.
    Final,
    /// A dispute proved the leaf wrong.
    Invalid,
}

impl JobState {
    /// Name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Leased => "leased",
            Self::Executed => "executed",
            Self::Posted => "posted",
            Self::Final => "final",
            Self::Invalid => "invalid",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "leased" => Self::Leased,
            "executed" => Self::Executed,
            "posted" => Self::Posted,
            "final" => Self::Final,
            "invalid" => Self::Invalid,
            _ => return None,
        })
    }

    /// Whether the output tokens are final (executed or later).
    pub const fn has_result(self) -> bool {
        !matches!(self, Self::Queued | Self::Leased)
    }
}

/// A request to store, with one job per choice.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Fresh id.
    pub id: RequestId,
    /// Endpoint.
    pub kind: RequestKind,
    /// Served model id.
    pub model: String,
    /// Model root registered on L1.
    pub model_root: B256,
    /// API key that made the request, if any.
    pub key_id: Option<i64>,
    /// Admission time.
    pub created_ms: i64,
    /// Prompt token ids (after the chat template).
    pub prompt_tokens: Vec<u32>,
    /// `token_ids_root(prompt_tokens)`.
    pub prompt_root: B256,
    /// Response options as JSON (stop strings, stream flags, ...).
    pub options: String,
    /// Sampling parameters, one per choice, `choice_index = 0..n`.
    pub choices: Vec<SamplingParams>,
    /// Logprobs wanted for every choice: `None` = none, `Some(k)` = the chosen token's and `k` alternatives.
    pub logprobs: Option<u8>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Id.
    pub id: RequestId,
    /// Endpoint.
    pub kind: RequestKind,
    /// Served model id.
    pub model: String,
    /// Model root.
    pub model_root: B256,
    /// API key that made it.
    pub key_id: Option<i64>,
    /// Admission time.
    pub created_ms: i64,
    /// Prompt token ids.
    pub prompt_tokens: Vec<u32>,
    /// `token_ids_root(prompt_tokens)`.
    pub prompt_root: B256,
    /// Number of choices.
    pub n: u32,
    /// Response options as JSON.
    pub options: String,
}

/// A job lease handle: the job and the attempt that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRef {
    /// Job id.
    pub job_id: i64,
    /// Attempt number (1 for the first lease, +1 for each re-lease).
    pub attempt: u32,
}

/// A job handed to an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedJob {
    /// The lease.
    pub lease: LeaseRef,
    /// Request id (the leaf's `requestId`).
    pub request_id: RequestId,
    /// Served model id.
    pub model: String,
    /// Model root.
    pub model_root: B256,
    /// Prompt token ids.
    pub prompt_tokens: Vec<u32>,
    /// Sampling parameters of this choice.
    pub params: SamplingParams,
    /// Tokens already streamed by an earlier attempt (a re-run must reproduce them).
    pub tokens: Vec<u32>,
    /// Logprobs wanted: `None` = none, `Some(k)` = the chosen token's and `k` alternatives per token.
    pub logprobs: Option<u8>,
    /// When the lease expires unless renewed.
    pub lease_expires_ms: i64,
}

/// What a client waiting on a request sees of one choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceProgress {
    /// Choice index.
    pub choice_index: u32,
    /// Job state.
    pub state: JobState,
    /// Tokens so far (all of them once [`JobState::has_result`]).
    pub tokens: Vec<u32>,
    /// Why generation stopped, once executed.
    pub finish_reason: Option<FinishReason>,
    /// The logprobs of `tokens`, one per token, when the request asked for logprobs (else empty).
    pub logprobs: Vec<TokenLogprobs>,
}

/// Everything stored about a job (receipts, batcher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Job id.
    pub job_id: i64,
    /// Request.
    pub request_id: RequestId,
    /// Sampling parameters (carries the choice index).
    pub params: SamplingParams,
    /// State.
    pub state: JobState,
    /// Executor holding or having held the lease.
    pub executor: Option<String>,
    /// Lease expiry while leased.
    pub lease_expires_ms: Option<i64>,
    /// Lease attempts so far.
    pub attempt: u32,
    /// Tokens streamed so far, or the output once executed.
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// Trace root reported by the executor.
    pub trace_root: Option<B256>,
    /// Op count reported by the executor.
    pub op_count: Option<u64>,
    /// The leaf's executor address.
    pub executor_address: Option<Address>,
    /// The executor's leaf signature, as given.
    pub signature: Option<LeafSignature>,
    /// `token_ids_root(tokens)` once executed.
    pub output_hash: Option<B256>,
    /// EIP-712 hash of the leaf once executed.
    pub leaf_hash: Option<B256>,
    /// Completion time.
    pub executed_ms: Option<i64>,
    /// Batch the leaf was posted in.
    pub batch_number: Option<u64>,
    /// Index of the leaf in its batch.
    pub leaf_index: Option<u64>,
    /// L1 transaction that posted the batch.
    pub l1_tx: Option<B256>,
}

/// The result of a job, checked by the caller against the request before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// Output token ids (must extend the tokens already streamed).
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Root of the execution trace.
    pub trace_root: B256,
    /// Ops in the trace.
    pub op_count: u64,
    /// The leaf's executor (signer) address.
    pub executor_address: Address,
    /// Leaf signature, when the executor sent one.
    pub signature: Option<LeafSignature>,
    /// `token_ids_root(tokens)`.
    pub output_hash: B256,
    /// EIP-712 hash of the leaf.
    pub leaf_hash: B256,
    /// Logprobs of `tokens` (one per token) when the job asked for them; those of tokens already streamed are kept.
    pub logprobs: Option<Vec<TokenLogprobs>>,
}

/// The result of [`JobQueue::append_tokens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensStored {
    /// The job's request.
    pub request_id: RequestId,
    /// Tokens now stored for the job.
    pub stored: usize,
}

/// Jobs waiting and running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Jobs in state `queued`.
    pub queued: u64,
    /// Jobs in state `leased` (including expired leases not yet taken over).
    pub leased: u64,
}

/// An API key to store: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// sha256 of the key.
    pub hash: [u8; 32],
    /// Leading characters of the key, for display.
    pub prefix: String,
    /// Human-readable name.
    pub name: String,
    /// Creation time.
    pub created_ms: i64,
    /// Requests per minute (None = unlimited).
    pub rpm_limit: Option<u64>,
    /// Prompt plus max tokens per minute (None = unlimited).
    pub tpm_limit: Option<u64>,
}

/// Per-key usage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// Requests admitted.
    pub requests: u64,
    /// Prompt tokens admitted.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: i64,
    /// Leading characters of the key.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_ms: i64,
    /// Revocation time.
    pub revoked_ms: Option<i64>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Usage so far.
    pub usage: KeyUsage,
}

/// Requests and their results (the API side).
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a request and its jobs (state `queued`) and counts it against its key, in one transaction: when this
    /// returns, the request is durable.
    async fn insert_request(&self, request: &NewRequest) -> Result<(), StorageError>;

    /// The stored request.
    async fn request(&self, id: RequestId) -> Result<Option<StoredRequest>, StorageError>;

    /// State and tokens of every choice, by choice index.
    async fn progress(&self, id: RequestId) -> Result<Vec<ChoiceProgress>, StorageError>;

    /// Every job of a request, by choice index.
    async fn jobs(&self, id: RequestId) -> Result<Vec<JobRecord>, StorageError>;

    /// Jobs queued and leased.
    async fn queue_depth(&self) -> Result<QueueDepth, StorageError>;
}

/// The job queue executors lease from.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Leases up to `max_jobs` jobs, oldest first: queued jobs and jobs whose lease expired.
    async fn lease(
        &self,
        executor: &str,
        max_jobs: u32,
        lease: Duration,
    ) -> Result<Vec<LeasedJob>, StorageError>;

    /// Extends the given leases held by `executor`; returns those renewed (the others were lost).
    async fn heartbeat(
        &self,
        executor: &str,
        leases: &[LeaseRef],
        lease: Duration,
    ) -> Result<Vec<LeaseRef>, StorageError>;

    /// Stores streamed tokens starting at position `offset`; tokens overlapping those already stored must equal
    /// them. When the job asked for logprobs, `logprobs` holds one per token (stored for the new tokens only).
    async fn append_tokens(
        &self,
        executor: &str,
        lease: LeaseRef,
        offset: u32,
        tokens: &[u32],
        logprobs: Option<&[TokenLogprobs]>,
    ) -> Result<TokensStored, StorageError>;

    /// Marks the job executed with its outcome and counts the tokens against the request's key. Repeating the
    /// same completion is a no-op.
    async fn complete(
        &self,
        executor: &str,
        lease: LeaseRef,
        outcome: &JobOutcome,
    ) -> Result<(), StorageError>;

    /// One job.
    async fn job(&self, job_id: i64) -> Result<Option<JobRecord>, StorageError>;
}

/// API keys and usage.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a key hash; returns the record.
    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyRecord, StorageError>;

    /// The key with this hash (revoked or not).
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StorageError>;

    /// Every key, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError>;

    /// Revokes a key; false if no such key or already revoked.
    async fn revoke_key(&self, id: i64) -> Result<bool, StorageError>;
}

/// The whole storage seam.
pub trait Storage: RequestStore + JobQueue + KeyStore + BatchStore {}

impl<T: RequestStore + JobQueue + KeyStore + BatchStore> Storage for T {}

/// Shared handle to a storage backend.
pub type SharedStorage = Arc<dyn Storage>;

/// Opens a database by URL: `postgres://…` / `postgresql://…` or `sqlite:…`, and applies the migrations.
pub async fn connect(
    url: &str,
    clock: crate::clock::SharedClock,
) -> Result<SharedStorage, StorageError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStorage::connect(url, clock).await?))
    } else {
        Ok(Arc::new(SqliteStorage::connect(url, clock).await?))
    }
}

/// `u32` token ids as little-endian bytes (the stored form).
pub fn encode_tokens(tokens: &[u32]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

/// Inverse of [`encode_tokens`].
pub fn decode_tokens(bytes: &[u8]) -> Result<Vec<u32>, StorageError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StorageError::Corrupt(format!(
            "token list of {} bytes is not a multiple of 4",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// `tokens` appended at `offset` to `stored`: overlapping tokens must agree. `None` when nothing changes.
pub(crate) fn merge_tokens(
    job_id: i64,
    stored: &[u32],
    offset: u32,
    tokens: &[u32],
) -> Result<Option<Vec<u32>>, StorageError> {
    let offset_usize = offset as usize;
    if offset_usize > stored.len() {
        return Err(StorageError::TokenGap {
            job_id,
            offset,
            stored: stored.len(),
        });
    }
    let overlap = (stored.len() - offset_usize).min(tokens.len());
    if let Some(i) = (0..overlap).find(|&i| stored[offset_usize + i] != tokens[i]) {
        return Err(StorageError::TokenMismatch {
            job_id,
            index: offset_usize + i,
        });
    }
    if overlap == tokens.len() {
        return Ok(None);
    }
    let mut merged = stored.to_vec();
    merged.extend_from_slice(&tokens[overlap..]);
    Ok(Some(merged))
}

/// Token logprobs as stored: per token, the number of alternatives `k` (u8), the logprob (f64 bits, LE), then `k`
/// times (token id u32 LE, logprob f64 bits LE). The chosen token's id is the token at the same position.
pub fn encode_logprobs(logprobs: &[TokenLogprobs]) -> Vec<u8> {
    let mut out = Vec::new();
    for lp in logprobs {
        let top = &lp.top[..lp.top.len().min(usize::from(u8::MAX))];
        out.push(top.len() as u8);
        out.extend_from_slice(&lp.logprob.to_bits().to_le_bytes());
        for t in top {
            out.extend_from_slice(&t.token.to_le_bytes());
            out.extend_from_slice(&t.logprob.to_bits().to_le_bytes());
        }
    }
    out
}

/// Inverse of [`encode_logprobs`], given the tokens the records belong to: at most one record per token (records
/// past the tokens, written by a newer update, are left out).
pub fn decode_logprobs(bytes: &[u8], tokens: &[u32]) -> Result<Vec<TokenLogprobs>, StorageError> {
    let corrupt = || StorageError::Corrupt("truncated logprobs record".into());
    let f64_at = |b: &[u8], at: usize| -> Result<f64, StorageError> {
        let raw: [u8; 8] = b
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(corrupt)?;
        Ok(f64::from_bits(u64::from_le_bytes(raw)))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(&token) = tokens.get(out.len()) else {
            break;
        };
        let k = usize::from(bytes[at]);
        let logprob = f64_at(bytes, at + 1)?;
        at += 9;
        let mut top = Vec::with_capacity(k);
        for _ in 0..k {
            let id: [u8; 4] = bytes
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(corrupt)?;
            top.push(TopLogprob {
                token: u32::from_le_bytes(id),
                logprob: f64_at(bytes, at + 4)?,
            });
            at += 12;
        }
        out.push(TokenLogprobs {
            token,
            logprob,
            top,
        });
    }
    Ok(out)
}

/// Checks logprobs sent for `tokens` against a job asking for `top` alternatives (`None`: not asked, ignored).
pub(crate) fn check_logprobs(
    job_id: i64,
    top: Option<u8>,
    tokens: &[u32],
    logprobs: Option<&[TokenLogprobs]>,
) -> Result<(), StorageError> {
    let Some(k) = top else {
        return Ok(());
    };
    let why = |why: String| StorageError::Logprobs { job_id, why };
    let Some(logprobs) = logprobs else {
        return Err(why(
            "the request asked for logprobs but none were sent".into()
        ));
    };
    if logprobs.len() != tokens.len() {
        return Err(why(format!(
            "{} logprobs for {} tokens",
            logprobs.len(),
            tokens.len()
        )));
    }
    for (i, (lp, &t)) in logprobs.iter().zip(tokens).enumerate() {
        if lp.token != t {
            return Err(why(format!(
                "logprobs #{i} are for token {} not {t}",
                lp.token
            )));
        }
        if lp.top.len() > usize::from(k) || !lp.logprob.is_finite() {
            return Err(why(format!(
                "logprobs #{i}: {} alternatives (asked: {k}) or a non-finite logprob",
                lp.top.len()
            )));
        }
    }
    Ok(())
}

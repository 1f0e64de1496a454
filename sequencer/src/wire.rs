//! Bodies of the executor-facing HTTP API (`/executor/v1/*`), shared by the sequencer and remote workers. JSON;
//! hashes and addresses as `0x…` hex, [`SamplingParams`] in its protocol camelCase form.
//!
//! * `POST /executor/v1/lease` [`LeaseRequest`] → [`LeaseResponse`] (long-polls up to `wait_ms` when no job waits);
//! * `POST /executor/v1/heartbeat` [`HeartbeatRequest`] → [`HeartbeatResponse`];
//! * `POST /executor/v1/tokens` [`TokensRequest`] → [`TokensResponse`] (idempotent: tokens at `offset..`);
//! * `POST /executor/v1/complete` [`CompleteRequest`] → [`CompleteResponse`] (idempotent);
//! * `GET /executor/v1/info` → [`ExecutorInfo`] (the signing domain and the served models).
//!
//! Errors use the OpenAI error body; a lost lease or tokens that contradict those already streamed are 409.

use crate::storage::{LeaseRef, LeasedJob};
use protocol::{Address, B256, FinishReason, InferenceLeaf, LeafSignature, SamplingParams};
use serde::{Deserialize, Serialize};
use vir::logprobs::TokenLogprobs;

/// Ask for jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Most jobs to lease (1..=256).
    #[serde(default = "one")]
    pub max_jobs: u32,
    /// Lease duration; the server's default when absent, capped by its maximum.
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// Wait up to this long for a job when none is queued (capped at 30 s).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// One leased job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireJob {
    /// Job id.
    pub job_id: i64,
    /// Lease attempt; every later call names it.
    pub attempt: u32,
    /// Request id (the leaf's `requestId`).
    pub request_id: B256,
    /// Served model id.
    pub model: String,
    /// Model root the executor must run.
    pub model_root: B256,
    /// Prompt token ids.
    pub prompt_tokens: Vec<u32>,
    /// Sampling parameters of this choice.
    pub params: SamplingParams,
    /// Tokens an earlier attempt already streamed (the run must reproduce them).
    pub streamed_tokens: Vec<u32>,
    /// Logprobs wanted with the tokens: absent = none; `k` = each token's logprob and its `k` most likely
    /// alternatives (0..=20), sent with `/tokens` and `/complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u8>,
    /// Lease expiry, Unix ms.
    pub lease_expires_ms: i64,
}

impl From<LeasedJob> for WireJob {
    fn from(j: LeasedJob) -> Self {
        Self {
            job_id: j.lease.job_id,
            attempt: j.lease.attempt,
            request_id: j.request_id.0,
            model: j.model,
            model_root: j.model_root,
            prompt_tokens: j.prompt_tokens,
            params: j.params,
            streamed_tokens: j.tokens,
            logprobs: j.logprobs,
            lease_expires_ms: j.lease_expires_ms,
        }
    }
}

/// Leased jobs (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Jobs, oldest first.
    pub jobs: Vec<WireJob>,
}

/// Renew leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Leases to renew.
    pub leases: Vec<LeaseRef>,
    /// New lease duration from now.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// Which leases were renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Still held.
    pub renewed: Vec<LeaseRef>,
    /// Lost (expired and taken over, or finished): stop working on them.
    pub lost: Vec<LeaseRef>,
}

/// Stream tokens of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensRequest {
    /// Job id.
    pub job_id: i64,
    /// Lease attempt.
    pub attempt: u32,
    /// Position of `tokens[0]` in the output.
    pub offset: u32,
    /// Token ids.
    pub tokens: Vec<u32>,
    /// One per token when the job asks for logprobs ([`WireJob::logprobs`]); not part of the leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprobs>>,
}

/// Tokens stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensResponse {
    /// Tokens of the job now stored.
    pub stored: usize,
}

/// Finish a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRequest {
    /// Job id.
    pub job_id: i64,
    /// Lease attempt.
    pub attempt: u32,
    /// All output token ids (including the stop token).
    pub tokens: Vec<u32>,
    /// One per token when the job asks for logprobs (those of tokens already streamed are kept as stored); not part
    /// of the leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// `stop` (a stop token ended generation) or `length`.
    pub finish_reason: FinishReason,
    /// Root of the execution trace.
    pub trace_root: B256,
    /// Ops in the trace.
    pub op_count: u64,
    /// Address that signs the leaf.
    pub executor: Address,
    /// EIP-712 signature over the leaf. A sequencer with L1 checks refuses a completion without a valid signature
    /// of a bonded executor (and the batcher never batches a leaf without one).
    #[serde(default)]
    pub signature: Option<LeafSignature>,
    /// The leaf the executor signed; when sent, the sequencer names the first field that differs from the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<InferenceLeaf>,
}

/// `GET /executor/v1/info`: what an executor needs to sign leaves and pick its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// Chain id of the rollup's chain (EIP-712 `chainId`), when the sequencer checks leaves against L1.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// The rollup contract (EIP-712 `verifyingContract`), when the sequencer checks leaves against L1.
    #[serde(default)]
    pub rollup: Option<Address>,
    /// Served models.
    pub models: Vec<ExecutorModel>,
}

/// A served model as executors see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorModel {
    /// Model id.
    pub id: String,
    /// Model root.
    pub model_root: B256,
}

/// The accepted leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResponse {
    /// The leaf as the sequencer computed it.
    pub leaf: InferenceLeaf,
    /// Its EIP-712 hash.
    pub leaf_hash: B256,
}

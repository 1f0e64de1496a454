//! Receipts (`GET /v1/receipts/{id}`): the status of a request and, per choice, its parameters, output hash, trace
//! root, executor and leaf. Batch number, Merkle proof and L1 transaction are filled once the batcher posts the leaf
//! (null until then).

use crate::ids::{RequestId, RequestKind};
use crate::leaf::{LeafContext, build_leaf};
use crate::storage::{JobRecord, JobState, StoredRequest};
use protocol::{Address, B256, InferenceLeaf, LeafSignature, SamplingParams};
use serde::{Deserialize, Serialize};

/// Status of a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Some choice is still queued or running.
    Pending,
    /// Every choice is executed (leaf known, not yet on L1).
    Executed,
    /// Every leaf is posted to L1.
    Posted,
    /// Every leaf is final.
    Final,
    /// A leaf was proven invalid.
    Invalid,
}

impl ReceiptStatus {
    /// The status of one job.
    pub fn of_job(state: JobState) -> Self {
        match state {
            JobState::Queued | JobState::Leased => Self::Pending,
            JobState::Executed => Self::Executed,
            JobState::Posted => Self::Posted,
            JobState::Final => Self::Final,
            JobState::Invalid => Self::Invalid,
        }
    }

    /// The status of a request: invalid if any leaf is, else the least advanced choice.
    pub fn of_request(jobs: &[JobRecord]) -> Self {
        let states: Vec<Self> = jobs.iter().map(|j| Self::of_job(j.state)).collect();
        if states.contains(&Self::Invalid) {
            Self::Invalid
        } else {
            states.into_iter().min().unwrap_or(Self::Pending)
        }
    }
}

/// One choice of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptChoice {
    /// Choice index.
    pub index: u32,
    /// Job state (`queued`, `leased`, `executed`, `posted`, `final`, `invalid`).
    pub state: JobState,
    /// Sampling parameters in protocol units.
    pub params: SamplingParams,
    /// `paramsHash`.
    pub params_hash: B256,
    /// Tokens generated (so far).
    pub completion_tokens: usize,
    /// `stop` / `length` once executed.
    pub finish_reason: Option<String>,
    /// `token_ids_root(output)`.
    pub output_hash: Option<B256>,
    /// Trace root.
    pub trace_root: Option<B256>,
    /// Op count.
    pub op_count: Option<u64>,
    /// Executor (signer) address.
    pub executor: Option<Address>,
    /// The leaf.
    pub leaf: Option<InferenceLeaf>,
    /// Its EIP-712 hash.
    pub leaf_hash: Option<B256>,
    /// The executor's signature over it.
    pub signature: Option<LeafSignature>,
    /// Batch number once posted.
    pub batch: Option<u64>,
    /// Leaf index in the batch.
    pub leaf_index: Option<u64>,
    /// Merkle proof of the leaf in its batch (siblings, leaf to root) once posted.
    pub merkle_proof: Option<Vec<B256>>,
    /// L1 transaction that posted the batch.
    pub l1_tx: Option<B256>,
}

/// A receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// `verinfer.receipt`.
    pub object: String,
    /// The OpenAI response id.
    pub id: String,
    /// `0x…` request id (`requestId` of the leaves).
    pub request_id: String,
    /// Status of the request.
    pub status: ReceiptStatus,
    /// `chat` or `completion`.
    pub kind: RequestKind,
    /// Model id.
    pub model: String,
    /// Model root.
    pub model_root: B256,
    /// Admission time, Unix seconds.
    pub created: u64,
    /// Prompt root.
    pub prompt_root: B256,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Choices.
    pub choices: Vec<ReceiptChoice>,
}

/// Builds a receipt from storage.
pub fn build(request: &StoredRequest, jobs: &[JobRecord]) -> Receipt {
    let id: RequestId = request.id;
    Receipt {
        object: "verinfer.receipt".into(),
        id: id.response_id(request.kind),
        request_id: id.to_string(),
        status: ReceiptStatus::of_request(jobs),
        kind: request.kind,
        model: request.model.clone(),
        model_root: request.model_root,
        created: u64::try_from(request.created_ms / 1000).unwrap_or(0),
        prompt_root: request.prompt_root,
        prompt_tokens: request.prompt_tokens.len(),
        choices: jobs
            .iter()
            .map(|job| {
                let ctx = LeafContext {
                    request_id: id.0,
                    model_root: request.model_root,
                    prompt_root: request.prompt_root,
                    params_hash: job.params.params_hash(),
                };
                let leaf = match (
                    job.finish_reason,
                    job.trace_root,
                    job.op_count,
                    job.executor_address,
                ) {
                    (Some(finish), Some(trace_root), Some(op_count), Some(executor))
                        if job.state.has_result() =>
                    {
                        Some(build_leaf(
                            &ctx,
                            &job.tokens,
                            finish,
                            trace_root,
                            op_count,
                            executor,
                        ))
                    }
                    _ => None,
                };
                ReceiptChoice {
                    index: job.params.choice_index,
                    state: job.state,
                    params: job.params,
                    params_hash: ctx.params_hash,
                    completion_tokens: job.tokens.len(),
                    finish_reason: job.finish_reason.map(|f| match f {
                        protocol::FinishReason::Stop => "stop".to_string(),
                        protocol::FinishReason::Length => "length".to_string(),
                    }),
                    output_hash: job.output_hash,
                    trace_root: job.trace_root,
                    op_count: job.op_count,
                    executor: job.executor_address,
                    leaf_hash: job.leaf_hash,
                    leaf,
                    signature: job.signature,
                    batch: job.batch_number,
                    leaf_index: job.leaf_index,
                    merkle_proof: None,
                    l1_tx: job.l1_tx,
                }
            })
            .collect(),
    }
}

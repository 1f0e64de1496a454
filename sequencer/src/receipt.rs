//! Receipts (`GET /v1/receipts/{id}`): the status of a request and, per choice, its status, parameters, output hash,
//! trace root, executor and leaf (all fields). Once the leaf's batch is on L1: the L1 batch id, the leaf index, the
//! Merkle proof of the leaf under the batch root (`protocol::leaf_proof`), the batch root and leaf count, the
//! `postBatch` transaction and block, and when the batch can be finalized (null until then). With those a consumer
//! contract checks `InferenceRollup.isFinalized(batch, hashLeaf(leaf), leaf_index, merkle_proof)`.

use crate::ids::{RequestId, RequestKind};
use crate::leaf::{LeafContext, build_leaf};
use crate::storage::{BatchRecord, BatchStatus, JobRecord, JobState, StoredRequest};
use protocol::{Address, B256, InferenceLeaf, LeafSignature, MerkleTree, SamplingParams};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    /// Status of this choice's leaf.
    pub status: ReceiptStatus,
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
    /// The rollup's batch id once posted (the `batchId` of `isFinalized`).
    pub batch: Option<u64>,
    /// Leaf index in the batch once posted.
    pub leaf_index: Option<u64>,
    /// Merkle proof of the leaf in its batch (siblings, leaf to root) once posted.
    pub merkle_proof: Option<Vec<B256>>,
    /// Root of the batch once posted.
    pub batch_root: Option<B256>,
    /// Leaves in the batch once posted.
    pub leaf_count: Option<u64>,
    /// L1 transaction that posted the batch.
    pub l1_tx: Option<B256>,
    /// L1 block of that transaction.
    pub l1_block: Option<u64>,
    /// L1 timestamp (Unix seconds) from which the batch can be finalized.
    pub finalizes_at: Option<u64>,
}

/// Where a posted leaf sits on L1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct OnChain {
    batch: Option<u64>,
    leaf_index: Option<u64>,
    merkle_proof: Option<Vec<B256>>,
    batch_root: Option<B256>,
    leaf_count: Option<u64>,
    l1_tx: Option<B256>,
    l1_block: Option<u64>,
    finalizes_at: Option<u64>,
}

impl OnChain {
    /// The job's place in its batch, once the batch is on L1.
    fn of(job: &JobRecord, batches: &HashMap<u64, BatchRecord>) -> Self {
        let (Some(number), Some(index)) = (job.batch_number, job.leaf_index) else {
            return Self::default();
        };
        let Some(batch) = batches
            .get(&number)
            .filter(|b| b.status != BatchStatus::Planned)
        else {
            return Self::default();
        };
        let proof = MerkleTree::new(batch.leaf_hashes.clone())
            .proof(index)
            .ok()
            .map(|p| p.siblings);
        Self {
            batch: batch.l1_batch_id,
            leaf_index: Some(index),
            merkle_proof: proof,
            batch_root: Some(batch.batch_root),
            leaf_count: Some(batch.leaf_count()),
            l1_tx: batch.l1_tx.or(job.l1_tx),
            l1_block: batch.l1_block,
            finalizes_at: batch.finalizes_at,
        }
    }
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

/// Builds a receipt from storage: the request, its jobs, and the batches those jobs are in (by batch number).
pub fn build(
    request: &StoredRequest,
    jobs: &[JobRecord],
    batches: &HashMap<u64, BatchRecord>,
) -> Receipt {
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
                let on_chain = OnChain::of(job, batches);
                ReceiptChoice {
                    index: job.params.choice_index,
                    status: ReceiptStatus::of_job(job.state),
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
                    batch: on_chain.batch,
                    leaf_index: on_chain.leaf_index,
                    merkle_proof: on_chain.merkle_proof,
                    batch_root: on_chain.batch_root,
                    leaf_count: on_chain.leaf_count,
                    l1_tx: on_chain.l1_tx,
                    l1_block: on_chain.l1_block,
                    finalizes_at: on_chain.finalizes_at,
                }
            })
            .collect(),
    }
}

//! The batch side of storage: executed jobs waiting for a batch, batches (`planned → posted → final`) with the exact
//! bytes posted, job assignment (`batch_number`, `leaf_index`), the L1 event cursors and the leader lock.
//!
//! Durability contract (what makes posting crash-safe): [`BatchStore::insert_batch`] stores the batch row with its
//! encoded data and assigns its jobs in **one transaction**, before anything is sent to L1. Whatever happens after
//! that, the batch that gets posted is exactly those bytes; nothing re-plans its jobs.

use super::{JobRecord, StorageError};
use crate::storage::leader::LeaderLock;
use async_trait::async_trait;
use protocol::B256;
use serde::{Deserialize, Serialize};

/// Lifecycle of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Recorded with its data and jobs; not (known to be) on L1 yet.
    Planned,
    /// Posted: the L1 batch id, transaction and block are known.
    Posted,
    /// The challenge window passed and `finalize` succeeded.
    Final,
}

impl BatchStatus {
    /// Name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Posted => "posted",
            Self::Final => "final",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Self::Planned,
            "posted" => Self::Posted,
            "final" => Self::Final,
            _ => return None,
        })
    }
}

/// Executed jobs that are not in a batch yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnbatchedSummary {
    /// How many.
    pub count: u64,
    /// `executed_ms` of the oldest.
    pub oldest_executed_ms: Option<i64>,
    /// Prompt tokens over all of them.
    pub prompt_tokens: u64,
    /// Output tokens over all of them.
    pub output_tokens: u64,
}

/// An executed job waiting for a batch, with the request fields its batch entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbatchedJob {
    /// The job (state `executed`, no batch).
    pub job: JobRecord,
    /// The request's model root.
    pub model_root: B256,
    /// The request's prompt root.
    pub prompt_root: B256,
    /// The request's prompt token ids.
    pub prompt_tokens: Vec<u32>,
}

/// A batch to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// `1 +` the latest batch number.
    pub number: u64,
    /// Merkle root over `leaf_hashes`.
    pub batch_root: B256,
    /// Leaf hashes in batch order.
    pub leaf_hashes: Vec<B256>,
    /// Jobs in batch order: `job_ids[i]` gets leaf index `i`.
    pub job_ids: Vec<i64>,
    /// Encoded batch data (the bytes to post).
    pub data: Vec<u8>,
    /// `keccak256(data)`.
    pub da_commitment: B256,
    /// Size of the uncompressed layout.
    pub raw_bytes: u64,
    /// State root the batch is expected to follow.
    pub prev_state_root: B256,
    /// `next_state_root(prev_state_root, batch_root)`.
    pub state_root: B256,
}

/// How a batch got onto L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedInfo {
    /// The contract's batch id.
    pub l1_batch_id: u64,
    /// The contract's state root before the batch.
    pub prev_state_root: B256,
    /// The contract's state root after the batch.
    pub state_root: B256,
    /// The `postBatch` transaction.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
    /// Its block timestamp (Unix s).
    pub posted_at: u64,
    /// Gas used (unknown when the post was recovered from events after a crash).
    pub gas_used: Option<u64>,
    /// L1 timestamp from which `finalize` succeeds.
    pub finalizes_at: u64,
}

/// The latest batch: where the next one chains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHead {
    /// Its number.
    pub number: u64,
    /// Its state root (expected while planned, the chain's once posted).
    pub state_root: B256,
}

/// A stored batch (without its data; see [`BatchStore::batch_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// The sequencer's batch number.
    pub number: u64,
    /// Lifecycle state.
    pub status: BatchStatus,
    /// Merkle root over the leaf hashes.
    pub batch_root: B256,
    /// Leaf hashes in batch order.
    pub leaf_hashes: Vec<B256>,
    /// `keccak256(data)`.
    pub da_commitment: B256,
    /// Size of the encoded data.
    pub data_bytes: u64,
    /// Size of the uncompressed layout.
    pub raw_bytes: u64,
    /// State root before the batch.
    pub prev_state_root: B256,
    /// State root after the batch.
    pub state_root: B256,
    /// When it was planned (Unix ms).
    pub planned_ms: i64,
    /// The contract's batch id once posted.
    pub l1_batch_id: Option<u64>,
    /// The `postBatch` transaction.
    pub l1_tx: Option<B256>,
    /// Its block.
    pub l1_block: Option<u64>,
    /// Its block timestamp (Unix s).
    pub posted_at: Option<u64>,
    /// Gas used by the post.
    pub gas_used: Option<u64>,
    /// L1 timestamp from which `finalize` succeeds.
    pub finalizes_at: Option<u64>,
    /// Our `finalize` transaction.
    pub final_tx: Option<B256>,
    /// When it was seen final (Unix ms).
    pub finalized_ms: Option<i64>,
}

impl BatchRecord {
    /// Number of leaves.
    pub fn leaf_count(&self) -> u64 {
        self.leaf_hashes.len() as u64
    }
}

/// Batches and the jobs in them.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Count, age and token totals of the executed jobs not in a batch yet.
    async fn unbatched_summary(&self) -> Result<UnbatchedSummary, StorageError>;

    /// Up to `limit` executed jobs not in a batch, in batch order: by `executed_ms`, then job id.
    async fn unbatched_jobs(&self, limit: u32) -> Result<Vec<UnbatchedJob>, StorageError>;

    /// Marks an executed job that can never be batched (its leaf or signature does not check out) `invalid`; false
    /// when it is not an unbatched executed job.
    async fn reject_job(&self, job_id: i64) -> Result<bool, StorageError>;

    /// The latest batch.
    async fn batch_head(&self) -> Result<Option<BatchHead>, StorageError>;

    /// Records a planned batch and assigns its jobs, in one transaction. [`StorageError::BatchConflict`] when the
    /// number is taken or a job is no longer an unbatched executed job (nothing is written then).
    async fn insert_batch(&self, batch: &NewBatch) -> Result<(), StorageError>;

    /// Batch `number`.
    async fn batch(&self, number: u64) -> Result<Option<BatchRecord>, StorageError>;

    /// The batch with the contract's batch id `l1_batch_id`.
    async fn batch_by_l1_id(&self, l1_batch_id: u64) -> Result<Option<BatchRecord>, StorageError>;

    /// Up to `limit` batches in `status`, by number.
    async fn batches(
        &self,
        status: BatchStatus,
        limit: u32,
    ) -> Result<Vec<BatchRecord>, StorageError>;

    /// Up to `limit` posted batches whose `finalizes_at` is at most `l1_now` (Unix s), by number.
    async fn batches_due(&self, l1_now: u64, limit: u32) -> Result<Vec<BatchRecord>, StorageError>;

    /// The encoded data of batch `number`.
    async fn batch_data(&self, number: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// Records the post of a planned batch and marks its jobs `posted`, in one transaction; false (nothing
    /// written) when the batch is not planned.
    async fn mark_batch_posted(&self, number: u64, info: &PostedInfo)
    -> Result<bool, StorageError>;

    /// Marks a posted batch and its posted jobs `final`; false when the batch is not posted.
    async fn mark_batch_final(
        &self,
        number: u64,
        final_tx: Option<B256>,
    ) -> Result<bool, StorageError>;

    /// Marks the job at `leaf_index` of the batch with contract id `l1_batch_id` `invalid`; false when there is no
    /// such job or it already is.
    async fn invalidate_leaf(
        &self,
        l1_batch_id: u64,
        leaf_index: u64,
    ) -> Result<bool, StorageError>;

    /// A saved event-follower cursor.
    async fn load_cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Saves an event-follower cursor (durably, before returning).
    async fn save_cursor(&self, name: &str, cursor: &[u8]) -> Result<(), StorageError>;

    /// The lock that makes one replica the batch leader (`key` names it).
    fn leader_lock(&self, key: i64) -> Box<dyn LeaderLock>;
}

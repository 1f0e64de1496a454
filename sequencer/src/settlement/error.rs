//! [`SettlementError`]: what can stop one round of the batch pipeline. Every error is retried by the pipeline with
//! backoff; none loses or duplicates a batch (see [`super`]).

use crate::storage::StorageError;
use l1_contracts::rpc::FollowerError;
use l1_contracts::{L1Error, RollupError};
use protocol::CodecError;

/// An error of the batcher, poster or finalizer.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A rollup call or transaction failed (reverts decoded to the contract's errors).
    #[error("rollup: {0}")]
    Rollup(#[from] RollupError),
    /// The chain failed.
    #[error(transparent)]
    L1(#[from] L1Error),
    /// Following the contract's events failed.
    #[error("event follower: {0}")]
    Follower(#[from] FollowerError),
    /// Batch data could not be encoded.
    #[error("batch {number}: cannot encode the batch data: {source}")]
    Codec {
        /// The batch being planned.
        number: u64,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// Stored batches disagree with each other or with the chain (needs an operator).
    #[error("batch {number}: {reason}")]
    Inconsistent {
        /// The batch.
        number: u64,
        /// What disagrees.
        reason: String,
    },
}

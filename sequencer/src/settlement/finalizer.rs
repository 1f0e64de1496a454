//! [`Finalizer`]: finalizes posted batches once their challenge window has passed, and follows the rollup's events
//! so that receipts reflect what L1 decided.
//!
//! - `finalize(batchId)` is sent for every posted batch whose `finalizes_at` (post time + the contract's challenge
//!   window) the latest L1 block has reached; batch and jobs become `final`. `BatchAlreadyFinalized` (anyone may
//!   finalize) counts as success; `ChallengeWindowOpen` and `BatchUnderDispute` wait for a later round.
//! - `LeafInvalidated(batchId, index)` marks that job `invalid` (whatever its state: the contract's `isFinalized`
//!   is false for an invalidated leaf even in a final batch), and `BatchFinalized` marks a batch someone else
//!   finalized. Events come through `l1_contracts::rpc::LogFollower` (confirmations, resumable through
//!   [`DbCursorStore`]); handling is idempotent, so at-least-once delivery is enough. A reorganisation deeper than
//!   the confirmation depth is logged and not undone.

use super::SettlementError;
use super::cursor::DbCursorStore;
use crate::metrics::SettlementMetrics;
use crate::storage::{BatchRecord, BatchStatus, SharedStorage};
use alloy_sol_types::SolEvent;
use l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors};
use l1_contracts::rpc::{Delivery, FollowerConfig, LogFollower};
use l1_contracts::{ContractError, L1, LogFilter, Rollup};

/// Most batches finalized per round.
const MAX_BATCHES_PER_ROUND: u32 = 256;

/// Most event deliveries handled per round.
const MAX_DELIVERIES_PER_ROUND: usize = 64;

/// Finalizes batches and follows finality events; see the module docs.
pub struct Finalizer<L> {
    storage: SharedStorage,
    rollup: Rollup<L>,
    metrics: SettlementMetrics,
    follower: LogFollower<L, DbCursorStore>,
}

impl<L: L1> std::fmt::Debug for Finalizer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finalizer")
            .field("rollup", &self.rollup.address())
            .finish_non_exhaustive()
    }
}

/// What one [`Finalizer::follow`] round changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Followed {
    /// Jobs newly marked invalid.
    pub invalidated: usize,
    /// Batches newly marked final (finalized by someone else).
    pub finalized: usize,
}

impl<L: L1 + Clone> Finalizer<L> {
    /// A finalizer sending from `rollup`'s handle, following events from `start_block` (or the saved cursor).
    pub async fn new(
        storage: SharedStorage,
        rollup: Rollup<L>,
        metrics: SettlementMetrics,
        follower: FollowerConfig,
        start_block: u64,
    ) -> Result<Self, SettlementError> {
        let filter = LogFilter::new(rollup.address(), start_block)
            .event(InferenceRollup::LeafInvalidated::SIGNATURE_HASH)
            .event(InferenceRollup::BatchFinalized::SIGNATURE_HASH);
        let store = DbCursorStore::new(
            storage.clone(),
            format!("rollup-{}-finality", rollup.address()),
        );
        let follower = LogFollower::new(rollup.l1().clone(), filter, follower, store).await?;
        Ok(Self {
            storage,
            rollup,
            metrics,
            follower,
        })
    }

    /// Finalizes every posted batch whose challenge window has passed; returns those now final.
    pub async fn finalize_due(&self) -> Result<Vec<BatchRecord>, SettlementError> {
        let now = self.rollup.l1().latest_block().await?.timestamp;
        let due = self.storage.batches_due(now, MAX_BATCHES_PER_ROUND).await?;
        let mut finalized = Vec::new();
        for batch in due {
            let Some(l1_batch_id) = batch.l1_batch_id else {
                return Err(SettlementError::Inconsistent {
                    number: batch.number,
                    reason: "posted without an L1 batch id".into(),
                });
            };
            let final_tx = match self.rollup.finalize(l1_batch_id).await {
                Ok(receipt) => {
                    self.metrics
                        .l1_gas_used
                        .with_label_values(&["finalize"])
                        .inc_by(receipt.gas_used);
                    Some(receipt.tx_hash)
                }
                Err(ContractError::Revert(InferenceRollupErrors::BatchAlreadyFinalized(_))) => None,
                Err(ContractError::Revert(
                    InferenceRollupErrors::ChallengeWindowOpen(_)
                    | InferenceRollupErrors::BatchUnderDispute(_),
                )) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(record) = self.mark_final(&batch, final_tx).await? {
                finalized.push(record);
            }
        }
        Ok(finalized)
    }

    /// Handles the confirmed `LeafInvalidated` and `BatchFinalized` events not handled yet.
    pub async fn follow(&mut self) -> Result<Followed, SettlementError> {
        let mut followed = Followed::default();
        for _ in 0..MAX_DELIVERIES_PER_ROUND {
            let Some(delivery) = self.follower.poll().await? else {
                break;
            };
            if let Delivery::Reorg {
                old_tip,
                resume_from,
                ..
            } = &delivery
            {
                eprintln!(
                    "verinfer-sequencer: L1 reorganisation past block {} (tip {}); finality events are read \
                     again from block {resume_from}, earlier marks are kept",
                    old_tip.number, old_tip.hash
                );
            }
            for log in delivery.logs() {
                let topic0 = log.inner.topics().first().copied();
                if topic0 == Some(InferenceRollup::LeafInvalidated::SIGNATURE_HASH) {
                    let Ok(event) = InferenceRollup::LeafInvalidated::decode_log(&log.inner) else {
                        continue;
                    };
                    let (Ok(batch_id), Ok(index)) =
                        (u64::try_from(event.batchId), u64::try_from(event.index))
                    else {
                        continue;
                    };
                    if self.storage.invalidate_leaf(batch_id, index).await? {
                        self.metrics.leaves_invalidated.inc();
                        followed.invalidated += 1;
                    }
                } else if topic0 == Some(InferenceRollup::BatchFinalized::SIGNATURE_HASH) {
                    let Ok(event) = InferenceRollup::BatchFinalized::decode_log(&log.inner) else {
                        continue;
                    };
                    let Ok(batch_id) = u64::try_from(event.batchId) else {
                        continue;
                    };
                    if let Some(batch) = self.storage.batch_by_l1_id(batch_id).await?
                        && batch.status == BatchStatus::Posted
                        && self.mark_final(&batch, None).await?.is_some()
                    {
                        followed.finalized += 1;
                    }
                }
            }
            self.follower.commit(&delivery).await?;
        }
        Ok(followed)
    }

    async fn mark_final(
        &self,
        batch: &BatchRecord,
        final_tx: Option<protocol::B256>,
    ) -> Result<Option<BatchRecord>, SettlementError> {
        if !self
            .storage
            .mark_batch_final(batch.number, final_tx)
            .await?
        {
            return Ok(None);
        }
        self.metrics.batches_finalized.inc();
        if let Some(id) = batch.l1_batch_id {
            let id = i64::try_from(id).unwrap_or(i64::MAX);
            if id > self.metrics.last_final_batch.get() {
                self.metrics.last_final_batch.set(id);
            }
        }
        Ok(self.storage.batch(batch.number).await?)
    }
}

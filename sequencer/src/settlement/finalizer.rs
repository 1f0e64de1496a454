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
//! - `SignatureChallenged(batchId, index, …)` on one of this database's batches is answered at once with the
//!   signature the stored batch data carries for that leaf, opened under the batch's `sigRoot`
//!   (`answerSignatureChallenge`; docs/disputes.md §6), so an honest sequencer never loses its bond to an
//!   unanswered challenge. A batch with a pending challenge is not finalized (`SignatureChallengePending` waits for
//!   a later round, like `BatchUnderDispute`).

use super::SettlementError;
use super::cursor::DbCursorStore;
use crate::metrics::SettlementMetrics;
use crate::storage::{BatchRecord, BatchStatus, SharedStorage};
use alloy_sol_types::SolEvent;
use l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors};
use l1_contracts::rpc::{Delivery, FollowerConfig, LogFollower};
use l1_contracts::{ContractError, L1, LogFilter, Rollup};
use protocol::BatchData;

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
    /// Signature challenges on this database's batches answered.
    pub answered: usize,
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
            .event(InferenceRollup::BatchFinalized::SIGNATURE_HASH)
            .event(InferenceRollup::SignatureChallenged::SIGNATURE_HASH);
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
                    | InferenceRollupErrors::BatchUnderDispute(_)
                    | InferenceRollupErrors::SignatureChallengePending(_),
                )) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(record) = self.mark_final(&batch, final_tx).await? {
                finalized.push(record);
            }
        }
        Ok(finalized)
    }

    /// Handles the confirmed `LeafInvalidated`, `BatchFinalized` and `SignatureChallenged` events not handled yet.
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
                } else if topic0 == Some(InferenceRollup::SignatureChallenged::SIGNATURE_HASH) {
                    let Ok(event) = InferenceRollup::SignatureChallenged::decode_log(&log.inner)
                    else {
                        continue;
                    };
                    let (Ok(batch_id), Ok(index)) =
                        (u64::try_from(event.batchId), u64::try_from(event.index))
                    else {
                        continue;
                    };
                    if self.answer_signature_challenge(batch_id, index).await? {
                        followed.answered += 1;
                    }
                }
            }
            self.follower.commit(&delivery).await?;
        }
        Ok(followed)
    }

    /// Answers the signature challenge on leaf `index` of L1 batch `batch_id` if the batch is this database's:
    /// the signature comes from the stored batch data, `daCommitment` and `sigRoot` from the `BatchPosted` event.
    /// Returns whether an answer was mined. A challenge that can no longer be answered (already answered, expired,
    /// or a signature that does not open or recover) is logged and skipped.
    async fn answer_signature_challenge(
        &self,
        batch_id: u64,
        index: u64,
    ) -> Result<bool, SettlementError> {
        let Some(batch) = self.storage.batch_by_l1_id(batch_id).await? else {
            return Ok(false);
        };
        let Some(data) = self.storage.batch_data(batch.number).await? else {
            return Err(SettlementError::Inconsistent {
                number: batch.number,
                reason: "challenged batch has no stored data".into(),
            });
        };
        let decoded = BatchData::decode(&data).map_err(|e| SettlementError::Inconsistent {
            number: batch.number,
            reason: format!("stored batch data does not decode: {e}"),
        })?;
        let (Some(entry), Ok(proof)) = (
            usize::try_from(index)
                .ok()
                .and_then(|i| decoded.entries.get(i)),
            protocol::batch::batch_signature_proof(&decoded, index),
        ) else {
            eprintln!(
                "verinfer-sequencer: signature challenge on batch {batch_id} leaf {index}: no such leaf in the stored \
                 data"
            );
            return Ok(false);
        };
        let (posted, _) = self.rollup.batch_posted(batch_id).await?;
        let opening = l1_contracts::signature_opening(
            posted.daCommitment,
            posted.sigRoot,
            entry.signature.as_bytes(),
            &proof,
        );
        match self
            .rollup
            .answer_signature_challenge(batch_id, index, opening)
            .await
        {
            Ok(receipt) => {
                self.metrics
                    .l1_gas_used
                    .with_label_values(&["answer_signature_challenge"])
                    .inc_by(receipt.gas_used);
                Ok(true)
            }
            Err(ContractError::Revert(e)) => {
                eprintln!(
                    "verinfer-sequencer: cannot answer the signature challenge on batch {batch_id} leaf {index}: \
                     {e:?}"
                );
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NewBatch, PostedInfo};
    use l1_contracts::{EmbeddedChain, LeafStatus, RollupConfig, SignatureChallengeStatus, dev};
    use protocol::{
        BatchEntry, FinishReason, GENESIS_STATE_ROOT, InferenceLeaf, LEAF_VERSION, SamplingParams,
        keccak256, leaf_proof, token_ids_root,
    };

    /// A challenge on a leaf of a batch this database posted is answered by `follow` from the stored data; the
    /// batch waits for it (`SignatureChallengePending`) and then finalizes, the sequencer keeping its bond and
    /// earning the challenger's.
    #[tokio::test]
    async fn signature_challenges_on_own_batches_are_answered() {
        let chain = EmbeddedChain::default();
        let accounts = dev::accounts();
        let (owner, seq, exec, challenger) = (
            accounts[0].address,
            accounts[1].address,
            accounts[2].address,
            accounts[4].address,
        );
        let config = RollupConfig {
            challenge_window: 60,
            withdrawal_delay: 120,
            ..RollupConfig::devnet(owner)
        };
        let rollup = Rollup::deploy(chain.connect(owner), &config).await.unwrap();
        let as_seq = rollup.with_l1(chain.connect(seq));
        as_seq
            .register_sequencer(config.min_sequencer_bond)
            .await
            .unwrap();
        let domain = protocol::leaf_domain(chain.chain_id(), rollup.address());
        let entries: Vec<BatchEntry> = (0..2u32)
            .map(|i| {
                let params = SamplingParams {
                    max_tokens: 8,
                    temperature_milli: 0,
                    top_p_milli: 1000,
                    seed: u64::from(i),
                    choice_index: 0,
                };
                let prompt_tokens = vec![1, 2, i];
                let output_tokens = vec![7, 8, 9, i];
                let leaf = InferenceLeaf {
                    version: LEAF_VERSION,
                    requestId: keccak256(format!("request-{i}")),
                    modelRoot: keccak256("model"),
                    promptRoot: token_ids_root(&prompt_tokens),
                    paramsHash: params.params_hash(),
                    outputHash: token_ids_root(&output_tokens),
                    finishReason: FinishReason::Stop.into(),
                    traceRoot: keccak256(format!("trace-{i}")),
                    opCount: 100,
                    executor: exec,
                };
                BatchEntry {
                    signature: protocol::sign_leaf(&leaf, &domain, accounts[2].signer.credential())
                        .unwrap(),
                    leaf,
                    prompt_tokens,
                    params,
                    output_tokens,
                }
            })
            .collect();
        let batch = BatchData::new(chain.chain_id(), entries);
        let data = batch.encode().unwrap();
        let posted = as_seq
            .post_batch(
                data.clone().into(),
                batch.batch_root(),
                2,
                GENESIS_STATE_ROOT,
            )
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sequencer.db").display());
        let storage = crate::storage::connect(&url, crate::clock::system())
            .await
            .unwrap();
        storage
            .insert_batch(&NewBatch {
                number: 1,
                batch_root: batch.batch_root(),
                leaf_hashes: batch.leaf_hashes(),
                job_ids: Vec::new(),
                da_commitment: keccak256(&data),
                raw_bytes: data.len() as u64,
                data,
                prev_state_root: GENESIS_STATE_ROOT,
                state_root: posted.state_root,
            })
            .await
            .unwrap();
        let info = rollup.batch(posted.batch_id).await.unwrap().unwrap();
        storage
            .mark_batch_posted(
                1,
                &PostedInfo {
                    l1_batch_id: posted.batch_id,
                    prev_state_root: GENESIS_STATE_ROOT,
                    state_root: posted.state_root,
                    tx_hash: posted.receipt.tx_hash,
                    block_number: posted.receipt.block_number,
                    posted_at: info.posted_at,
                    gas_used: Some(posted.receipt.gas_used),
                    finalizes_at: info.posted_at + 60,
                },
            )
            .await
            .unwrap();
        let metrics = crate::metrics::Metrics::new().unwrap().settlement;
        let mut finalizer = Finalizer::new(
            storage.clone(),
            as_seq.clone(),
            metrics,
            l1_contracts::rpc::FollowerConfig::local(),
            0,
        )
        .await
        .unwrap();

        let bond = rollup.signature_challenge_bond().await.unwrap();
        rollup
            .with_l1(chain.connect(challenger))
            .challenge_signature(
                posted.batch_id,
                &batch.entries[1].leaf,
                &leaf_proof(&batch.leaf_hashes(), 1).unwrap(),
            )
            .await
            .unwrap();
        // Past the challenge window the pending challenge holds finalization back (no error, nothing final).
        chain.connect(owner).advance_time(60).await.unwrap();
        assert!(finalizer.finalize_due().await.unwrap().is_empty());
        let followed = finalizer.follow().await.unwrap();
        assert_eq!(followed.answered, 1);
        let c = rollup
            .signature_challenge(posted.batch_id, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.status, SignatureChallengeStatus::Answered);
        assert_eq!(rollup.credits(seq).await.unwrap(), bond);
        // Handled once: a second round answers nothing.
        assert_eq!(finalizer.follow().await.unwrap().answered, 0);
        assert_eq!(finalizer.finalize_due().await.unwrap().len(), 1);
        assert_eq!(
            rollup.leaf_status(posted.batch_id, 1).await.unwrap(),
            LeafStatus::Final
        );
        assert_eq!(
            rollup
                .bond(l1_contracts::Role::Sequencer, seq)
                .await
                .unwrap()
                .amount,
            config.min_sequencer_bond
        );
    }
}

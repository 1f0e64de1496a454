//! [`Poster`]: posts planned batches to L1 in order and records where they landed: with
//! `postBatchBlobs(batchRoot, leafCount, sigRoot, prevStateRoot)` and the batch data in EIP-4844 blobs
//! ([`DaMode::Blobs`], constant gas), or `postBatch(data, …)` with the data as calldata ([`DaMode::Calldata`]). The
//! signature root is recomputed from the stored batch data (`protocol::batch::batch_signature_root`). After a blob
//! post the poster checks that the versioned hashes the chain recorded are the ones it built.
//!
//! Exactly-once, across crashes: the bytes come from the batch row written at planning, and the contract accepts a
//! batch only on top of its current state root. So whatever happened before (a crash after the transaction was mined
//! but before it was recorded, a timeout whose transaction landed anyway, another replica that posted it), a second
//! `postBatch` of the same batch reverts with `StaleStateRoot`. The poster treats that revert as "maybe already
//! posted": it looks for its own `BatchPosted` event with this batch's root and DA commitment (from the block of the
//! previous batch on) and records it. Only when the chain moved on without this batch (another sequencer posted to
//! the same rollup) does it post again, chained on the contract's current state root: the same bytes, batch root and
//! leaf count; only the state-root link differs.
//!
//! Posting stops at the first failure (batches go to L1 strictly in order); the pipeline retries with backoff.

use super::SettlementError;
use crate::metrics::SettlementMetrics;
use crate::storage::{BatchRecord, BatchStatus, PostedInfo, SharedStorage};
use alloy_sol_types::{SolCall, SolEvent};
use l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors};
use l1_contracts::{ContractError, L1, LogFilter, PostedBatch, Rollup, blobs};
use protocol::{B256, BatchData, keccak256};
use std::time::Instant;

/// Where batch data goes on L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaMode {
    /// Calldata of `postBatch` (gas grows with the data: 16 gas per non-zero byte).
    Calldata,
    /// EIP-4844 blobs of a `postBatchBlobs` transaction (gas independent of the size; up to
    /// `l1_contracts::blobs::MAX_DATA_BYTES` per batch).
    Blobs,
}

impl DaMode {
    /// `"calldata"` or `"blobs"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calldata => "calldata",
            Self::Blobs => "blobs",
        }
    }
}

impl std::fmt::Display for DaMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DaMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "calldata" => Ok(Self::Calldata),
            "blobs" | "blob" => Ok(Self::Blobs),
            other => Err(format!("unknown DA mode {other:?} (calldata or blobs)")),
        }
    }
}

/// Most `StaleStateRoot` rounds for one batch before giving up until the next pipeline round.
const MAX_STALE_ROUNDS: usize = 4;

/// Most planned batches posted per round.
const MAX_BATCHES_PER_ROUND: u32 = 64;

/// Posts planned batches; see the module docs.
pub struct Poster<L> {
    storage: SharedStorage,
    rollup: Rollup<L>,
    metrics: SettlementMetrics,
    challenge_window: u64,
    start_block: u64,
    da: DaMode,
}

impl<L: L1> std::fmt::Debug for Poster<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("rollup", &self.rollup.address())
            .field("challenge_window", &self.challenge_window)
            .field("da", &self.da)
            .finish_non_exhaustive()
    }
}

impl<L: L1> Poster<L> {
    /// A poster sending from `rollup`'s handle, with the data as calldata (see [`Self::with_da`]).
    /// `challenge_window` is the contract's (seconds); `start_block` is where event searches start when no earlier
    /// batch is recorded (the rollup's deployment block).
    pub fn new(
        storage: SharedStorage,
        rollup: Rollup<L>,
        metrics: SettlementMetrics,
        challenge_window: u64,
        start_block: u64,
    ) -> Self {
        Self {
            storage,
            rollup,
            metrics,
            challenge_window,
            start_block,
            da: DaMode::Calldata,
        }
    }

    /// Posts in DA mode `da`.
    pub fn with_da(mut self, da: DaMode) -> Self {
        self.da = da;
        self
    }

    /// The DA mode.
    pub fn da(&self) -> DaMode {
        self.da
    }

    /// Posts every planned batch, in order; returns them as recorded.
    pub async fn post_planned(&self) -> Result<Vec<BatchRecord>, SettlementError> {
        let planned = self
            .storage
            .batches(BatchStatus::Planned, MAX_BATCHES_PER_ROUND)
            .await?;
        let mut posted = Vec::with_capacity(planned.len());
        for batch in &planned {
            posted.push(self.post(batch).await?);
        }
        Ok(posted)
    }

    /// Posts one planned batch (or finds it already posted) and records it.
    pub async fn post(&self, batch: &BatchRecord) -> Result<BatchRecord, SettlementError> {
        let number = batch.number;
        let inconsistent = |reason: &str| SettlementError::Inconsistent {
            number,
            reason: reason.to_string(),
        };
        let data = self
            .storage
            .batch_data(number)
            .await?
            .ok_or_else(|| inconsistent("the batch data is missing"))?;
        if keccak256(&data) != batch.da_commitment {
            return Err(inconsistent(
                "the stored data does not hash to its DA commitment",
            ));
        }
        let decoded = BatchData::decode(&data)
            .map_err(|e| inconsistent(&format!("the stored data does not decode: {e}")))?;
        let sig_root = protocol::batch::batch_signature_root(&decoded);
        // Built once: the same blobs (and versioned hashes) for every attempt.
        let sidecar = match self.da {
            DaMode::Calldata => None,
            DaMode::Blobs => Some(
                blobs::encode(&data)
                    .map_err(|e| inconsistent(&format!("cannot put the data in blobs: {e}")))?,
            ),
        };
        // Chain on the previous batch as it landed (the stored expectation for the first one).
        let previous = match number.checked_sub(1).filter(|n| *n > 0) {
            Some(n) => self.storage.batch(n).await?,
            None => None,
        };
        let (mut prev_state_root, scan_from) = match previous {
            Some(p) if p.status == BatchStatus::Planned => {
                return Err(inconsistent("the previous batch is not posted yet"));
            }
            Some(p) => (p.state_root, p.l1_block.unwrap_or(self.start_block)),
            None => (batch.prev_state_root, self.start_block),
        };

        for _ in 0..MAX_STALE_ROUNDS {
            let started = Instant::now();
            let sent = match &sidecar {
                None => {
                    self.rollup
                        .post_batch_calldata(
                            data.clone().into(),
                            batch.batch_root,
                            batch.leaf_count(),
                            sig_root,
                            prev_state_root,
                        )
                        .await
                }
                Some(sidecar) => {
                    self.rollup
                        .post_batch_sidecar(
                            sidecar.clone(),
                            batch.batch_root,
                            batch.leaf_count(),
                            sig_root,
                            prev_state_root,
                        )
                        .await
                }
            };
            match sent {
                Ok(posted) => {
                    if sidecar.is_some() {
                        self.check_blobs_recorded(number, &posted).await?;
                    }
                    let receipt = &posted.receipt;
                    self.metrics
                        .l1_post_latency
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.l1_post_gas.observe(receipt.gas_used as f64);
                    self.metrics
                        .l1_gas_used
                        .with_label_values(&["post"])
                        .inc_by(receipt.gas_used);
                    let info = PostedInfo {
                        l1_batch_id: posted.batch_id,
                        prev_state_root,
                        state_root: posted.state_root,
                        tx_hash: receipt.tx_hash,
                        block_number: receipt.block_number,
                        posted_at: receipt.block_timestamp,
                        gas_used: Some(receipt.gas_used),
                        finalizes_at: receipt
                            .block_timestamp
                            .saturating_add(self.challenge_window),
                    };
                    return self.record(batch, &info).await;
                }
                Err(ContractError::Revert(InferenceRollupErrors::StaleStateRoot(stale))) => {
                    if let Some(info) = self.find_posted(batch, scan_from).await? {
                        return self.record(batch, &info).await;
                    }
                    // Not ours: the chain moved on without this batch. Same bytes on top of its state root.
                    prev_state_root = stale.current;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(inconsistent(
            "the rollup's state root kept moving while posting",
        ))
    }

    /// Checks that the chain recorded the blobs this poster built: the mined transaction's versioned hashes and the
    /// DA commitment in `BatchPosted` must be those of the sidecar.
    async fn check_blobs_recorded(
        &self,
        number: u64,
        posted: &PostedBatch,
    ) -> Result<(), SettlementError> {
        let tx = self
            .rollup
            .l1()
            .transaction(posted.receipt.tx_hash)
            .await?
            .ok_or_else(|| SettlementError::Inconsistent {
                number,
                reason: format!("the mined post {} is not found", posted.receipt.tx_hash),
            })?;
        if tx.blob_versioned_hashes != posted.blob_versioned_hashes
            || posted.da_commitment != blobs::da_commitment(&posted.blob_versioned_hashes)
        {
            return Err(SettlementError::Inconsistent {
                number,
                reason: format!(
                    "transaction {} carries versioned hashes {:?}, the poster built {:?}",
                    posted.receipt.tx_hash, tx.blob_versioned_hashes, posted.blob_versioned_hashes
                ),
            });
        }
        Ok(())
    }

    /// The DA commitments `batch` may have been posted with: `keccak256(data)` (calldata) and, when the data is
    /// stored and fits, the commitment of its blobs (a post in either mode is found, whatever the mode now).
    async fn expected_commitments(
        &self,
        batch: &BatchRecord,
    ) -> Result<Vec<B256>, SettlementError> {
        let mut out = vec![batch.da_commitment];
        if let Some(data) = self.storage.batch_data(batch.number).await?
            && let Ok(sidecar) = blobs::encode(&data)
        {
            let hashes: Vec<B256> = sidecar.versioned_hashes().collect();
            out.push(blobs::da_commitment(&hashes));
        }
        Ok(out)
    }

    /// This sequencer's `BatchPosted` event of `batch` (same root, DA commitment in either mode and leaf count)
    /// from `from_block` on.
    pub async fn find_posted(
        &self,
        batch: &BatchRecord,
        from_block: u64,
    ) -> Result<Option<PostedInfo>, SettlementError> {
        let l1 = self.rollup.l1();
        let commitments = self.expected_commitments(batch).await?;
        let filter = LogFilter::new(self.rollup.address(), from_block)
            .event(InferenceRollup::BatchPosted::SIGNATURE_HASH)
            .topic(2, l1.sender().into_word());
        for log in l1.logs(&filter).await? {
            let Ok(event) = InferenceRollup::BatchPosted::decode_log(&log.inner) else {
                continue;
            };
            if event.batchRoot != batch.batch_root
                || !commitments.contains(&event.daCommitment)
                || event.leafCount != batch.leaf_count()
            {
                continue;
            }
            let l1_batch_id =
                u64::try_from(event.batchId).map_err(|_| SettlementError::Inconsistent {
                    number: batch.number,
                    reason: format!("L1 batch id {} does not fit 64 bits", event.batchId),
                })?;
            let prev_state_root = self
                .prev_state_root_of(log.tx_hash)
                .await?
                .unwrap_or(batch.prev_state_root);
            return Ok(Some(PostedInfo {
                l1_batch_id,
                prev_state_root,
                state_root: event.stateRoot,
                tx_hash: log.tx_hash,
                block_number: log.block_number,
                posted_at: log.block_timestamp,
                gas_used: None,
                finalizes_at: log.block_timestamp.saturating_add(self.challenge_window),
            }));
        }
        Ok(None)
    }

    /// The `prevStateRoot` argument of a `postBatch` or `postBatchBlobs` transaction.
    async fn prev_state_root_of(&self, tx_hash: B256) -> Result<Option<B256>, SettlementError> {
        let Some(tx) = self.rollup.l1().transaction(tx_hash).await? else {
            return Ok(None);
        };
        Ok(InferenceRollup::postBatchCall::abi_decode(&tx.input)
            .map(|call| call.prevStateRoot)
            .or_else(|_| {
                InferenceRollup::postBatchBlobsCall::abi_decode(&tx.input)
                    .map(|call| call.prevStateRoot)
            })
            .ok())
    }

    async fn record(
        &self,
        batch: &BatchRecord,
        info: &PostedInfo,
    ) -> Result<BatchRecord, SettlementError> {
        if self.storage.mark_batch_posted(batch.number, info).await? {
            self.metrics.batches_posted.inc();
            self.metrics
                .last_posted_batch
                .set(i64::try_from(info.l1_batch_id).unwrap_or(i64::MAX));
        }
        self.storage
            .batch(batch.number)
            .await?
            .ok_or_else(|| SettlementError::Inconsistent {
                number: batch.number,
                reason: "the batch vanished while recording its post".into(),
            })
    }
}

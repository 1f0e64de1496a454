//! [`Batcher`]: turns executed jobs into planned batches.
//!
//! A batch is due when the executed jobs not yet in a batch reach [`BatcherConfig::max_leaves`], or their
//! uncompressed batch layout reaches [`BatcherConfig::max_bytes`], or the oldest has waited
//! [`BatcherConfig::max_age`]. Planning takes the oldest jobs (by execution time, then job id: a deterministic order),
//! rebuilds each leaf from what is stored, and checks it before the sequencer stakes its bond on it:
//!
//! - the executor signed it (an unsigned leaf cannot be posted);
//! - the leaf hash equals the one stored when the executor completed the job;
//! - the batch entry is well-formed (`BatchEntry::validate`: params in range, roots match the tokens);
//! - the signature is canonical and recovers the leaf's executor under the rollup's EIP-712 domain;
//! - the executor is an active bonded executor on L1.
//!
//! A job that fails a check is marked `invalid` and never batched (posting it would be a provable sequencer fault,
//! DESIGN §5). The batch data (`protocol::BatchData`, zstd) is encoded, the batch root computed over the leaf hashes
//! in that order, and the batch recorded with its bytes and its jobs in one transaction ([`BatchStore::insert_batch`])
//! before the poster ever sees it.
//!
//! [`BatchStore::insert_batch`]: crate::storage::BatchStore::insert_batch

use super::SettlementError;
use crate::clock::SharedClock;
use crate::leaf::{LeafContext, build_leaf};
use crate::metrics::SettlementMetrics;
use crate::storage::{BatchRecord, NewBatch, SharedStorage, UnbatchedJob, UnbatchedSummary};
use alloy_sol_types::Eip712Domain;
use l1_contracts::{L1, Role, Rollup};
use protocol::codec::{HEADER_BYTES, MAX_DECOMPRESSED_BYTES, MIN_ENTRY_BYTES};
use protocol::{
    Address, BatchData, BatchEntry, GENESIS_STATE_ROOT, batch_root, da_commitment, leaf_domain,
    next_state_root,
};
use std::collections::HashMap;
use std::time::Duration;

/// When a batch is due, and how big it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Most leaves per batch; a batch is due as soon as this many jobs wait.
    pub max_leaves: u32,
    /// Most bytes of the uncompressed batch layout (`docs/protocol.md` §6) per batch; a batch is due as soon as the
    /// waiting jobs need this many. A single larger entry goes alone. Capped at the codec's 64 MiB.
    pub max_bytes: u64,
    /// A batch is due once the oldest waiting job was executed this long ago.
    pub max_age: Duration,
}

impl Default for BatcherConfig {
    /// 1,024 leaves, 1 MiB, 10 s.
    fn default() -> Self {
        Self {
            max_leaves: 1024,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(10),
        }
    }
}

/// Why a job is never batched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The executor sent no signature.
    #[error("the leaf is not signed")]
    Unsigned,
    /// A leaf field is missing from the stored job.
    #[error("the stored job lacks {0}")]
    Incomplete(&'static str),
    /// The rebuilt leaf does not hash to the stored leaf hash.
    #[error("the rebuilt leaf hashes to {rebuilt}, the stored leaf hash is {stored}")]
    LeafHash {
        /// Hash of the rebuilt leaf.
        rebuilt: protocol::B256,
        /// Stored hash.
        stored: protocol::B256,
    },
    /// The batch entry does not validate.
    #[error("invalid batch entry: {0}")]
    Entry(String),
    /// The signature does not recover the leaf's executor.
    #[error("the signature does not recover the leaf's executor {executor}: {why}")]
    Signature {
        /// The leaf's executor.
        executor: Address,
        /// What went wrong.
        why: String,
    },
    /// The executor is not an active bonded executor on L1.
    #[error("executor {0} is not an active bonded executor")]
    NotBonded(Address),
}

/// Size of one entry in the uncompressed layout.
pub fn entry_bytes(prompt_tokens: u64, output_tokens: u64) -> u64 {
    MIN_ENTRY_BYTES as u64 + 4 * (prompt_tokens + output_tokens)
}

/// Plans batches; see the module docs.
pub struct Batcher<L> {
    storage: SharedStorage,
    clock: SharedClock,
    config: BatcherConfig,
    rollup: Rollup<L>,
    chain_id: u64,
    domain: Eip712Domain,
    metrics: SettlementMetrics,
}

impl<L: L1> std::fmt::Debug for Batcher<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.config)
            .field("chain_id", &self.chain_id)
            .field("rollup", &self.rollup.address())
            .finish_non_exhaustive()
    }
}

impl<L: L1> Batcher<L> {
    /// A batcher for the rollup `rollup` on chain `chain_id` (the batch data's chain id and the leaf domain).
    pub fn new(
        storage: SharedStorage,
        clock: SharedClock,
        mut config: BatcherConfig,
        rollup: Rollup<L>,
        chain_id: u64,
        metrics: SettlementMetrics,
    ) -> Self {
        config.max_leaves = config.max_leaves.max(1);
        config.max_bytes = config.max_bytes.min(MAX_DECOMPRESSED_BYTES);
        let domain = leaf_domain(chain_id, rollup.address());
        Self {
            storage,
            clock,
            config,
            rollup,
            chain_id,
            domain,
            metrics,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// Whether the waiting jobs call for a batch now.
    pub fn is_due(&self, waiting: &UnbatchedSummary) -> bool {
        let Some(oldest) = waiting.oldest_executed_ms else {
            return false;
        };
        if waiting.count == 0 {
            return false;
        }
        let bytes = HEADER_BYTES as u64
            + waiting.count * MIN_ENTRY_BYTES as u64
            + 4 * (waiting.prompt_tokens + waiting.output_tokens);
        let age_ms = self.clock.now_ms().saturating_sub(oldest);
        waiting.count >= u64::from(self.config.max_leaves)
            || bytes >= self.config.max_bytes
            || u128::try_from(age_ms).unwrap_or(0) >= self.config.max_age.as_millis()
    }

    /// Plans every batch that is due now (a backlog yields several full batches); returns them in order.
    pub async fn plan_due(&self) -> Result<Vec<BatchRecord>, SettlementError> {
        let mut planned = Vec::new();
        // Each round either plans a batch or rejects jobs, so the waiting set shrinks; the bound is a safety net.
        for _ in 0..64 {
            let waiting = self.storage.unbatched_summary().await?;
            if !self.is_due(&waiting) {
                break;
            }
            if let Some(batch) = self.plan_now().await? {
                planned.push(batch);
            }
        }
        Ok(planned)
    }

    /// Plans one batch from the oldest waiting jobs, due or not (up to the count and byte limits). `None` when no
    /// job is waiting (or every candidate was rejected).
    pub async fn plan_now(&self) -> Result<Option<BatchRecord>, SettlementError> {
        let candidates = self.storage.unbatched_jobs(self.config.max_leaves).await?;
        let mut bonded: HashMap<Address, bool> = HashMap::new();
        let mut entries = Vec::with_capacity(candidates.len());
        let mut job_ids = Vec::with_capacity(candidates.len());
        let mut raw_bytes = HEADER_BYTES as u64;
        for candidate in &candidates {
            let len = entry_bytes(
                candidate.prompt_tokens.len() as u64,
                candidate.job.tokens.len() as u64,
            );
            if !entries.is_empty() && raw_bytes + len > self.config.max_bytes {
                break;
            }
            match self.entry_of(candidate, &mut bonded).await? {
                Ok(entry) => {
                    entries.push(entry);
                    job_ids.push(candidate.job.job_id);
                    raw_bytes += len;
                }
                Err(why) => {
                    eprintln!(
                        "verinfer-sequencer: job {} is never batched: {why}",
                        candidate.job.job_id
                    );
                    if self.storage.reject_job(candidate.job.job_id).await? {
                        self.metrics.leaves_rejected.inc();
                    }
                }
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }

        let head = self.storage.batch_head().await?;
        let (number, prev_state_root) =
            head.map_or((1, GENESIS_STATE_ROOT), |h| (h.number + 1, h.state_root));
        let batch = BatchData::new(self.chain_id, entries);
        let data = batch
            .encode()
            .map_err(|source| SettlementError::Codec { number, source })?;
        let leaf_hashes = batch.leaf_hashes();
        let root = batch_root(&leaf_hashes);
        let new = NewBatch {
            number,
            batch_root: root,
            leaf_hashes,
            job_ids,
            da_commitment: da_commitment(&data),
            raw_bytes,
            prev_state_root,
            state_root: next_state_root(prev_state_root, root),
            data,
        };
        self.storage.insert_batch(&new).await?;
        self.metrics.batches_planned.inc();
        self.metrics.batch_leaves.observe(new.job_ids.len() as f64);
        self.metrics.batch_bytes.observe(new.data.len() as f64);
        self.storage
            .batch(number)
            .await?
            .map(Some)
            .ok_or_else(|| SettlementError::Inconsistent {
                number,
                reason: "the batch just recorded cannot be read back".into(),
            })
    }

    /// The batch entry of a waiting job, or why it can never be batched. L1 failures (the bond check) are errors, not
    /// rejections.
    async fn entry_of(
        &self,
        candidate: &UnbatchedJob,
        bonded: &mut HashMap<Address, bool>,
    ) -> Result<Result<BatchEntry, Rejection>, SettlementError> {
        let job = &candidate.job;
        let Some(signature) = job.signature else {
            return Ok(Err(Rejection::Unsigned));
        };
        let (Some(finish), Some(trace_root), Some(op_count), Some(executor), Some(stored)) = (
            job.finish_reason,
            job.trace_root,
            job.op_count,
            job.executor_address,
            job.leaf_hash,
        ) else {
            return Ok(Err(Rejection::Incomplete("part of its leaf")));
        };
        let ctx = LeafContext {
            request_id: job.request_id.0,
            model_root: candidate.model_root,
            prompt_root: candidate.prompt_root,
            params_hash: job.params.params_hash(),
        };
        let leaf = build_leaf(&ctx, &job.tokens, finish, trace_root, op_count, executor);
        let rebuilt = leaf.hash();
        if rebuilt != stored {
            return Ok(Err(Rejection::LeafHash { rebuilt, stored }));
        }
        let entry = BatchEntry {
            leaf,
            prompt_tokens: candidate.prompt_tokens.clone(),
            params: job.params,
            output_tokens: job.tokens.clone(),
            signature,
        };
        if let Err(e) = entry.validate() {
            return Ok(Err(Rejection::Entry(e.to_string())));
        }
        match signature.recover(&leaf, &self.domain) {
            Ok(signer) if signer == executor => {}
            Ok(signer) => {
                return Ok(Err(Rejection::Signature {
                    executor,
                    why: format!("it recovers {signer}"),
                }));
            }
            Err(e) => {
                return Ok(Err(Rejection::Signature {
                    executor,
                    why: e.to_string(),
                }));
            }
        }
        let active = match bonded.get(&executor) {
            Some(active) => *active,
            None => {
                let active = self.rollup.is_active(Role::Executor, executor).await?;
                bonded.insert(executor, active);
                active
            }
        };
        if !active {
            return Ok(Err(Rejection::NotBonded(executor)));
        }
        Ok(Ok(entry))
    }
}

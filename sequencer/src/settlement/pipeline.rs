//! [`L1Pipeline`]: the batch leader's loop. Each round, while this replica holds the leader lock, it plans due
//! batches ([`Batcher`]), posts planned ones ([`Poster`]), finalizes those past their challenge window and follows
//! finality events ([`Finalizer`]), and refreshes the sequencer-bond gauge. A failed round is retried with
//! exponential backoff; nothing a round did is lost, because every step starts from what is stored.

use super::SettlementError;
use super::batcher::{Batcher, BatcherConfig};
use super::finalizer::{Finalizer, Followed};
use super::poster::{DaMode, Poster};
use crate::clock::SharedClock;
use crate::metrics::{Metrics, SettlementMetrics};
use crate::storage::leader::DEFAULT_LEADER_KEY;
use crate::storage::{BatchRecord, SharedStorage};
use l1_contracts::rpc::FollowerConfig;
use l1_contracts::{L1, Role, Rollup};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Settings of the batch pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// When batches are due and how big they may be.
    pub batcher: BatcherConfig,
    /// Pause between rounds (and between leader-lock attempts of a follower replica).
    pub poll_interval: Duration,
    /// Longest pause after failed rounds (the pause doubles from `poll_interval` up to this).
    pub max_backoff: Duration,
    /// First L1 block of the rollup (its deployment): event searches start here.
    pub start_block: u64,
    /// Confirmations and ranges of the finality-event follower.
    pub follower: FollowerConfig,
    /// Advisory-lock key of the leader (Postgres).
    pub leader_key: i64,
    /// How often the sequencer bond is read for `verinfer_sequencer_l1_bond_wei`.
    pub bond_refresh: Duration,
    /// Where batch data goes. The library default is [`DaMode::Calldata`] (any [`L1`] handle can post it); the
    /// `verinfer` binaries default to [`DaMode::Blobs`] (`--da`).
    pub da: DaMode,
}

impl Default for PipelineConfig {
    /// Default batching, 500 ms rounds, backoff up to 30 s, events from block 0 with 12 confirmations, bond read
    /// every 30 s.
    fn default() -> Self {
        Self {
            batcher: BatcherConfig::default(),
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            start_block: 0,
            follower: FollowerConfig::default(),
            leader_key: DEFAULT_LEADER_KEY,
            bond_refresh: Duration::from_secs(30),
            da: DaMode::Calldata,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Batches planned.
    pub planned: Vec<BatchRecord>,
    /// Batches posted (or found posted).
    pub posted: Vec<BatchRecord>,
    /// Batches finalized.
    pub finalized: Vec<BatchRecord>,
    /// What the finality events changed.
    pub followed: Followed,
}

/// The batch pipeline over one rollup; see the module docs.
pub struct L1Pipeline<L> {
    storage: SharedStorage,
    rollup: Rollup<L>,
    config: PipelineConfig,
    metrics: SettlementMetrics,
    batcher: Batcher<L>,
    poster: Poster<L>,
    /// Built when leadership is taken (it loads the stored event cursor), dropped when it is lost.
    finalizer: Option<Finalizer<L>>,
    last_bond_read: Option<Instant>,
}

impl<L: L1> std::fmt::Debug for L1Pipeline<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1Pipeline")
            .field("rollup", &self.rollup.address())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<L: L1 + Clone + 'static> L1Pipeline<L> {
    /// A pipeline posting through `rollup` (its handle's sender is the bonded sequencer). Reads the chain id and
    /// the challenge window from the chain.
    pub async fn new(
        storage: SharedStorage,
        clock: SharedClock,
        metrics: &Metrics,
        rollup: Rollup<L>,
        config: PipelineConfig,
    ) -> Result<Self, SettlementError> {
        let chain_id = rollup.l1().chain_id().await?;
        let challenge_window = rollup.config().await?.challenge_window;
        let metrics = metrics.settlement.clone();
        let batcher = Batcher::new(
            storage.clone(),
            clock,
            config.batcher.clone(),
            rollup.clone(),
            chain_id,
            metrics.clone(),
        );
        let poster = Poster::new(
            storage.clone(),
            rollup.clone(),
            metrics.clone(),
            challenge_window,
            config.start_block,
        )
        .with_da(config.da);
        Ok(Self {
            storage,
            rollup,
            config,
            metrics,
            batcher,
            poster,
            finalizer: None,
            last_bond_read: None,
        })
    }

    /// The batcher.
    pub fn batcher(&self) -> &Batcher<L> {
        &self.batcher
    }

    /// The poster.
    pub fn poster(&self) -> &Poster<L> {
        &self.poster
    }

    /// The rollup client.
    pub fn rollup(&self) -> &Rollup<L> {
        &self.rollup
    }

    /// Plans the due batches.
    pub async fn plan(&self) -> Result<Vec<BatchRecord>, SettlementError> {
        self.step("plan", self.batcher.plan_due()).await
    }

    /// Posts the planned batches.
    pub async fn post(&self) -> Result<Vec<BatchRecord>, SettlementError> {
        self.step("post", self.poster.post_planned()).await
    }

    /// Finalizes the batches past their window, then follows the finality events.
    pub async fn finalize(&mut self) -> Result<(Vec<BatchRecord>, Followed), SettlementError> {
        if self.finalizer.is_none() {
            let finalizer = Finalizer::new(
                self.storage.clone(),
                self.rollup.clone(),
                self.metrics.clone(),
                self.config.follower.clone(),
                self.config.start_block,
            );
            self.finalizer = Some(self.step("follow", finalizer).await?);
        }
        let Some(finalizer) = self.finalizer.as_mut() else {
            return Ok(Default::default());
        };
        let finalized = match finalizer.finalize_due().await {
            Ok(f) => f,
            Err(e) => {
                self.metrics
                    .l1_errors
                    .with_label_values(&["finalize"])
                    .inc();
                return Err(e);
            }
        };
        let followed = match finalizer.follow().await {
            Ok(f) => f,
            Err(e) => {
                self.metrics.l1_errors.with_label_values(&["follow"]).inc();
                return Err(e);
            }
        };
        Ok((finalized, followed))
    }

    /// Reads the sequencer's bond into `verinfer_sequencer_l1_bond_wei`.
    pub async fn refresh_bond(&mut self) -> Result<(), SettlementError> {
        let sender = self.rollup.l1().sender();
        let bond = self
            .step("bond", self.rollup.bond(Role::Sequencer, sender))
            .await?;
        self.metrics
            .l1_bond_wei
            .set(bond.amount.to_string().parse::<f64>().unwrap_or(f64::MAX));
        self.last_bond_read = Some(Instant::now());
        Ok(())
    }

    /// One round as leader: bond gauge (when due), plan, post, finalize, follow.
    pub async fn tick(&mut self) -> Result<TickReport, SettlementError> {
        if self
            .last_bond_read
            .is_none_or(|t| t.elapsed() >= self.config.bond_refresh)
        {
            self.refresh_bond().await?;
        }
        let planned = self.plan().await?;
        let posted = self.post().await?;
        let (finalized, followed) = self.finalize().await?;
        Ok(TickReport {
            planned,
            posted,
            finalized,
            followed,
        })
    }

    /// Runs rounds forever on a task, as leader only; dropping (or aborting) the handle stops it and releases the
    /// leader lock.
    pub fn spawn(self) -> PipelineHandle {
        PipelineHandle(tokio::spawn(self.run()))
    }

    async fn run(mut self) {
        let mut lock = self.storage.leader_lock(self.config.leader_key);
        let mut pause = self.config.poll_interval;
        loop {
            let leading = match lock.ensure().await {
                Ok(leading) => leading,
                Err(e) => {
                    eprintln!("verinfer-sequencer: batch leader lock: {e}");
                    false
                }
            };
            self.metrics.leader.set(i64::from(leading));
            if !leading {
                // Another replica leads; whatever we knew about event positions may be stale.
                self.finalizer = None;
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            match self.tick().await {
                Ok(_) => pause = self.config.poll_interval,
                Err(e) => {
                    eprintln!(
                        "verinfer-sequencer: batch pipeline: {e} (retrying in {} ms)",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.config.max_backoff.max(self.config.poll_interval));
                    continue;
                }
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn step<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, impl Into<SettlementError>>>,
    ) -> Result<T, SettlementError> {
        match fut.await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.metrics.l1_errors.with_label_values(&[op]).inc();
                Err(e.into())
            }
        }
    }
}

/// A running [`L1Pipeline`]; the task stops when this is dropped.
#[derive(Debug)]
pub struct PipelineHandle(JoinHandle<()>);

impl PipelineHandle {
    /// Stops the pipeline (a crash, as far as storage and L1 are concerned).
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Whether the task ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Batching, L1 posting and finalization on the embedded chain (rollup deployed, sequencers and executor bonded):
//! request → executed → planned → posted → final with the receipt's Merkle proof accepted by `isFinalized`;
//! batching thresholds; crash safety (no batch posted twice, never a different batch); one poster among replicas.

use crate::common::*;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{SolCall, SolEvent};
use l1_contracts::bindings::InferenceRollup;
use l1_contracts::rpc::FollowerConfig;
use l1_contracts::{
    BlockInfo, EmbeddedChain, EmbeddedL1, L1, L1Error, L1Log, LogFilter, Receipt, Rollup,
    RollupConfig, TxInfo, TxRequest, dev,
};
use protocol::codec::{HEADER_BYTES, MIN_ENTRY_BYTES};
use protocol::{
    BatchData, FinishReason, GENESIS_STATE_ROOT, InferenceLeaf, MerkleProof, SamplingParams,
    batch_root, next_state_root, token_ids_root, verify_leaf,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use verinfer_sequencer::clock::{self, ManualClock, SharedClock};
use verinfer_sequencer::ids::{RequestId, RequestKind};
use verinfer_sequencer::leaf::{LeafContext, build_leaf};
use verinfer_sequencer::metrics::Metrics;
use verinfer_sequencer::settlement::{
    Batcher, BatcherConfig, L1Pipeline, PipelineConfig, PipelineHandle,
};
use verinfer_sequencer::storage::{
    BatchRecord, BatchStatus, JobOutcome, JobState, NewBatch, NewRequest, PostedInfo,
    SharedStorage, StorageError,
};

/// Challenge window of the test rollup, seconds.
const WINDOW: u64 = 60;

/// An embedded chain with the rollup deployed, two bonded sequencers, a bonded executor and the dispute game set.
struct Chain {
    chain: EmbeddedChain,
    /// The rollup as its owner.
    rollup: Rollup<EmbeddedL1>,
    seq: Address,
    seq2: Address,
    game: Address,
    /// The bonded executor.
    signer: LeafSigner,
    /// An unbonded key.
    stranger: LeafSigner,
}

impl Chain {
    async fn new() -> Self {
        let chain = EmbeddedChain::default();
        let accounts = dev::accounts();
        let owner = accounts[0].address;
        let config = RollupConfig {
            challenge_window: WINDOW,
            withdrawal_delay: 2 * WINDOW,
            ..RollupConfig::devnet(owner)
        };
        let rollup = Rollup::deploy(chain.connect(owner), &config)
            .await
            .expect("deploy the rollup");
        let (seq, seq2, game) = (
            accounts[1].address,
            accounts[4].address,
            accounts[3].address,
        );
        for s in [seq, seq2] {
            rollup
                .with_l1(chain.connect(s))
                .register_sequencer(config.min_sequencer_bond)
                .await
                .expect("bond a sequencer");
        }
        rollup
            .with_l1(chain.connect(accounts[2].address))
            .register_executor(config.min_executor_bond)
            .await
            .expect("bond the executor");
        rollup.set_dispute_game(game).await.expect("dispute game");
        let domain = protocol::leaf_domain(chain.chain_id(), rollup.address());
        Self {
            signer: LeafSigner {
                account: accounts[2].clone(),
                domain: domain.clone(),
            },
            stranger: LeafSigner {
                account: accounts[5].clone(),
                domain,
            },
            chain,
            rollup,
            seq,
            seq2,
            game,
        }
    }

    /// The rollup as `who`.
    fn by(&self, who: Address) -> Rollup<EmbeddedL1> {
        self.rollup.with_l1(self.chain.connect(who))
    }

    async fn advance(&self, secs: u64) {
        self.chain
            .connect(self.game)
            .advance_time(secs)
            .await
            .expect("advance time");
    }

    /// Every `BatchPosted` event, in chain order.
    async fn posted_events(&self) -> Vec<(InferenceRollup::BatchPosted, L1Log)> {
        let filter = LogFilter::new(self.rollup.address(), 0)
            .event(InferenceRollup::BatchPosted::SIGNATURE_HASH);
        self.chain
            .connect(self.seq)
            .logs(&filter)
            .await
            .expect("logs")
            .into_iter()
            .map(|log| {
                let event = InferenceRollup::BatchPosted::decode_log(&log.inner)
                    .expect("BatchPosted decodes")
                    .data;
                (event, log)
            })
            .collect()
    }
}

fn pipeline_config(max_leaves: u32) -> PipelineConfig {
    PipelineConfig {
        batcher: BatcherConfig {
            max_leaves,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(100),
        },
        poll_interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        follower: FollowerConfig::local(),
        ..PipelineConfig::default()
    }
}

async fn pipeline<L: L1 + Clone + 'static>(
    storage: &SharedStorage,
    clock: SharedClock,
    metrics: &Metrics,
    rollup: Rollup<L>,
    max_leaves: u32,
) -> L1Pipeline<L> {
    L1Pipeline::new(
        storage.clone(),
        clock,
        metrics,
        rollup,
        pipeline_config(max_leaves),
    )
    .await
    .expect("pipeline starts")
}

/// Stores a one-choice request and completes its job with a leaf of `executor`, signed by `signer` (unsigned for
/// `None`); returns the job id.
async fn executed_job(
    storage: &SharedStorage,
    executor: &LeafSigner,
    signer: Option<&LeafSigner>,
    seed: u64,
) -> i64 {
    let prompt = vec![1, 2, 3, seed as u32];
    let params = SamplingParams {
        max_tokens: 4,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed,
        choice_index: 0,
    };
    let request = NewRequest {
        id: RequestId::random().expect("random"),
        kind: RequestKind::Chat,
        model: MODEL.into(),
        model_root: B256::repeat_byte(7),
        key_id: None,
        created_ms: 0,
        prompt_root: token_ids_root(&prompt),
        prompt_tokens: prompt,
        options: "{}".into(),
        choices: vec![params],
        logprobs: None,
    };
    storage.insert_request(&request).await.expect("insert");
    let leased = storage
        .lease("worker", 1, Duration::from_secs(600))
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);
    let lease = leased[0].lease;
    let tokens = vec![10, 11, 12, (seed % 50) as u32];
    let trace_root = keccak256(seed.to_be_bytes());
    let ctx = LeafContext {
        request_id: request.id.0,
        model_root: request.model_root,
        prompt_root: request.prompt_root,
        params_hash: params.params_hash(),
    };
    let leaf = build_leaf(
        &ctx,
        &tokens,
        FinishReason::Length,
        trace_root,
        100 + seed,
        executor.account.address,
    );
    storage
        .complete(
            "worker",
            lease,
            &JobOutcome {
                output_hash: token_ids_root(&tokens),
                tokens,
                finish_reason: FinishReason::Length,
                trace_root,
                op_count: 100 + seed,
                executor_address: executor.account.address,
                signature: signer.map(|s| s.sign(&leaf)),
                leaf_hash: leaf.hash(),
                logprobs: None,
            },
        )
        .await
        .expect("complete");
    lease.job_id
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The receipt once `done` holds for it.
async fn receipt_when(server: &TestServer, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, receipt) = server.get(url).await;
        assert_eq!(status, reqwest::StatusCode::OK);
        if done(&receipt) {
            return receipt;
        }
        assert!(Instant::now() < deadline, "timed out: {receipt:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The batch id, leaf, leaf hash and proof of a receipt choice, checked off chain against its batch root.
fn posted_leaf(choice: &Value) -> (u64, InferenceLeaf, B256, MerkleProof) {
    let batch = choice["batch"].as_u64().expect("batch id");
    let leaf: InferenceLeaf = serde_json::from_value(choice["leaf"].clone()).expect("leaf");
    let hash = leaf.hash();
    assert_eq!(choice["leaf_hash"], json!(hash));
    let proof = MerkleProof {
        index: choice["leaf_index"].as_u64().expect("leaf index"),
        siblings: serde_json::from_value(choice["merkle_proof"].clone()).expect("proof"),
    };
    let root: B256 = serde_json::from_value(choice["batch_root"].clone()).expect("batch root");
    let count = choice["leaf_count"].as_u64().expect("leaf count");
    assert!(verify_leaf(root, count, hash, &proof), "proof off chain");
    assert!(choice["trace_root"].is_string() && choice["l1_tx"].is_string());
    (batch, leaf, hash, proof)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test]
async fn request_to_final_with_receipt_proof_on_chain() {
    on_both(|backend| async move {
        let fx = Chain::new().await;
        let server = TestServer::start_with(backend, test_config(), false).await;
        let worker = spawn_worker_with(
            server.base.clone(),
            EXECUTOR_TOKEN.into(),
            Some(fx.signer.clone()),
        );
        let state = &server.state;
        let running = pipeline(
            state.storage(),
            state.clock().clone(),
            state.metrics(),
            fx.by(fx.seq),
            16,
        )
        .await
        .spawn();

        let mut urls = Vec::new();
        for seed in [1, 2] {
            let body = json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": format!("hello {seed}")}],
                "max_tokens": 4,
                "seed": seed,
            });
            let (status, response) = server.post("/v1/chat/completions", &body).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{response}");
            urls.push(
                response["verinfer"]["receipt_url"]
                    .as_str()
                    .expect("receipt url")
                    .to_string(),
            );
        }

        // Posted: batch, leaf index, proof, transaction; included on chain, not final yet.
        let a = receipt_when(&server, &urls[0], |r| r["status"] == "posted").await;
        let b = receipt_when(&server, &urls[1], |r| r["status"] == "posted").await;
        let (a_batch, _, a_hash, a_proof) = posted_leaf(&a["choices"][0]);
        let (b_batch, _, b_hash, b_proof) = posted_leaf(&b["choices"][0]);
        assert_eq!(a["choices"][0]["status"], "posted");
        for (batch, hash, proof) in [(a_batch, a_hash, &a_proof), (b_batch, b_hash, &b_proof)] {
            assert!(
                fx.rollup
                    .verify_leaf(batch, hash, proof)
                    .await
                    .expect("view")
            );
            assert!(
                !fx.rollup
                    .is_finalized(batch, hash, proof)
                    .await
                    .expect("view")
            );
        }
        let events = fx.posted_events().await;
        let a_event = &events[usize::try_from(a_batch).expect("id") - 1];
        assert_eq!(a["choices"][0]["l1_tx"], json!(a_event.1.tx_hash));
        assert_eq!(a_event.0.sequencer, fx.seq);

        // A dispute proves b's leaf wrong: its receipt says so, and it never becomes final.
        fx.by(fx.game)
            .invalidate_leaf(b_batch, b_proof.index)
            .await
            .expect("invalidate");
        let b = receipt_when(&server, &urls[1], |r| r["status"] == "invalid").await;
        assert_eq!(b["choices"][0]["status"], "invalid");

        // After the challenge window the pipeline finalizes; the receipt's proof is accepted by the contract.
        fx.advance(WINDOW).await;
        let a = receipt_when(&server, &urls[0], |r| r["status"] == "final").await;
        let (batch, leaf, hash, proof) = posted_leaf(&a["choices"][0]);
        assert_eq!(fx.rollup.hash_leaf(&leaf).await.expect("view"), hash);
        assert!(
            fx.rollup
                .is_finalized(batch, hash, &proof)
                .await
                .expect("view")
        );
        assert!(
            !fx.rollup
                .is_finalized(b_batch, b_hash, &b_proof)
                .await
                .expect("view")
        );
        eventually("b's batch final", || async {
            fx.rollup
                .batch(b_batch)
                .await
                .ok()
                .flatten()
                .is_some_and(|i| i.finalized)
        })
        .await;
        let b = receipt_when(&server, &urls[1], |r| r["status"] == "invalid").await;
        assert_eq!(b["choices"][0]["state"], "invalid");

        let text = server
            .http
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let posted = metric(&text, "verinfer_sequencer_batches_posted_total");
        assert!(posted >= 1.0);
        assert_eq!(
            metric(&text, "verinfer_sequencer_last_posted_batch"),
            events.len() as f64
        );
        assert_eq!(metric(&text, "verinfer_sequencer_l1_bond_wei"), 1e18);
        assert_eq!(
            metric(&text, "verinfer_sequencer_leaves_invalidated_total"),
            1.0
        );
        assert_eq!(metric(&text, "verinfer_sequencer_batch_leader"), 1.0);
        assert!(metric(&text, "verinfer_sequencer_l1_post_gas_used_sum") > 100_000.0);
        assert!(metric(&text, "verinfer_sequencer_batch_leaves_count") >= posted);
        assert!(text.contains("verinfer_sequencer_l1_post_duration_seconds_bucket"));
        assert!(text.contains("verinfer_sequencer_batch_bytes_bucket"));

        drop(running);
        worker.abort();
        server.stop().await;
    })
    .await;
}

/// Checks a planned batch against its stored data and jobs.
async fn check_planned(storage: &SharedStorage, batch: &BatchRecord, jobs: &[i64], chain_id: u64) {
    assert_eq!(batch.status, BatchStatus::Planned);
    assert_eq!(batch.leaf_count(), jobs.len() as u64);
    let data = storage
        .batch_data(batch.number)
        .await
        .expect("read")
        .expect("data");
    assert_eq!(keccak256(&data), batch.da_commitment);
    assert_eq!(data.len() as u64, batch.data_bytes);
    let decoded = BatchData::decode(&data).expect("the planned data decodes");
    assert_eq!(decoded.chain_id, chain_id);
    assert_eq!(decoded.leaf_hashes(), batch.leaf_hashes);
    assert_eq!(batch_root(&batch.leaf_hashes), batch.batch_root);
    assert_eq!(
        next_state_root(batch.prev_state_root, batch.batch_root),
        batch.state_root
    );
    for (index, job_id) in jobs.iter().enumerate() {
        let job = storage.job(*job_id).await.expect("read").expect("job");
        assert_eq!(
            (job.batch_number, job.leaf_index, job.state),
            (Some(batch.number), Some(index as u64), JobState::Executed)
        );
        assert_eq!(job.leaf_hash, Some(batch.leaf_hashes[index]));
    }
}

#[tokio::test]
async fn batching_thresholds() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let fx = Chain::new().await;
        let db = TestDb::new(backend).await;
        let clock = ManualClock::new(1_700_000_000_000);
        let storage = db.storage(clock.clone()).await;
        let metrics = Metrics::new().expect("metrics");
        let chain_id = fx.chain.chain_id();
        let batcher = |max_leaves, max_bytes| {
            Batcher::new(
                storage.clone(),
                clock.clone(),
                BatcherConfig {
                    max_leaves,
                    max_bytes,
                    max_age: Duration::from_secs(60),
                },
                fx.by(fx.seq),
                chain_id,
                metrics.settlement.clone(),
            )
        };
        let (good, bad) = (&fx.signer, &fx.stranger);
        let mut planned: Vec<BatchRecord> = Vec::new();

        // Count: 3 waiting is not a batch, the fourth makes one.
        let by_count = batcher(4, 1 << 20);
        let mut jobs = Vec::new();
        for seed in 0..3 {
            jobs.push(executed_job(&storage, good, Some(good), seed).await);
        }
        assert!(by_count.plan_due().await.expect("plan").is_empty());
        jobs.push(executed_job(&storage, good, Some(good), 3).await);
        let batches = by_count.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].prev_state_root, GENESIS_STATE_ROOT);
        check_planned(&storage, &batches[0], &jobs, chain_id).await;
        planned.extend(batches);

        // A backlog of 9 is two full batches, one job waits.
        let mut jobs = Vec::new();
        for seed in 10..19 {
            jobs.push(executed_job(&storage, good, Some(good), seed).await);
        }
        let batches = by_count.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 2);
        check_planned(&storage, &batches[0], &jobs[0..4], chain_id).await;
        check_planned(&storage, &batches[1], &jobs[4..8], chain_id).await;
        planned.extend(batches);

        // Age: the last one goes alone once it waited max_age.
        clock.advance(59_999);
        assert!(by_count.plan_due().await.expect("plan").is_empty());
        clock.advance(1);
        let batches = by_count.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 1);
        check_planned(&storage, &batches[0], &jobs[8..], chain_id).await;
        planned.extend(batches);

        // Bytes: two entries fill the batch, the third waits.
        let entry = (MIN_ENTRY_BYTES + 4 * (4 + 4)) as u64;
        let by_bytes = batcher(100, HEADER_BYTES as u64 + 2 * entry);
        let mut jobs = Vec::new();
        for seed in 20..22 {
            jobs.push(executed_job(&storage, good, Some(good), seed).await);
        }
        // Exactly full counts as due.
        let batches = by_bytes.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 1);
        check_planned(&storage, &batches[0], &jobs, chain_id).await;
        planned.extend(batches);
        let mut jobs = Vec::new();
        for seed in 22..25 {
            jobs.push(executed_job(&storage, good, Some(good), seed).await);
        }
        let batches = by_bytes.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 1);
        check_planned(&storage, &batches[0], &jobs[..2], chain_id).await;
        planned.extend(batches);
        assert_eq!(storage.unbatched_summary().await.expect("summary").count, 1);

        // Never batched: an unsigned leaf, a bad signature and an unbonded executor become invalid.
        let forged = executed_job(&storage, good, Some(bad), 30).await;
        let unbonded = executed_job(&storage, bad, Some(bad), 31).await;
        let unsigned = executed_job(&storage, good, None, 32).await;
        clock.advance(60_000);
        let batches = by_bytes.plan_due().await.expect("plan");
        assert_eq!(batches.len(), 1);
        check_planned(&storage, &batches[0], &jobs[2..], chain_id).await;
        planned.extend(batches);
        for job in [forged, unbonded, unsigned] {
            let job = storage.job(job).await.expect("read").expect("job");
            assert_eq!((job.state, job.batch_number), (JobState::Invalid, None));
        }
        assert_eq!(metrics.settlement.leaves_rejected.get(), 3);
        assert_eq!(storage.unbatched_summary().await.expect("summary").count, 0);

        // The batches chain: numbers 1.., each on the previous state root.
        let mut prev = GENESIS_STATE_ROOT;
        for (i, batch) in planned.iter().enumerate() {
            assert_eq!(batch.number, i as u64 + 1);
            assert_eq!(batch.prev_state_root, prev);
            prev = batch.state_root;
        }
        assert_eq!(
            metrics.settlement.batches_planned.get(),
            planned.len() as u64
        );
        db.cleanup().await;
    }
}

/// An L1 handle whose next `postBatch` is mined but reported as failed (the connection died after the broadcast):
/// the poster "crashes" without recording what it posted.
#[derive(Clone)]
struct LoseNextPost {
    inner: EmbeddedL1,
    armed: Arc<AtomicBool>,
}

impl L1 for LoseNextPost {
    fn sender(&self) -> Address {
        self.inner.sender()
    }

    async fn chain_id(&self) -> Result<u64, L1Error> {
        self.inner.chain_id().await
    }

    async fn latest_block(&self) -> Result<BlockInfo, L1Error> {
        self.inner.latest_block().await
    }

    async fn block(&self, number: u64) -> Result<Option<BlockInfo>, L1Error> {
        self.inner.block(number).await
    }

    async fn balance(&self, who: Address) -> Result<U256, L1Error> {
        self.inner.balance(who).await
    }

    async fn send(&self, tx: TxRequest) -> Result<Receipt, L1Error> {
        let is_post = tx
            .input
            .starts_with(&InferenceRollup::postBatchCall::SELECTOR);
        let receipt = self.inner.send(tx).await?;
        if is_post && self.armed.swap(false, Ordering::SeqCst) {
            return Err(L1Error::Backend("connection reset after broadcast".into()));
        }
        Ok(receipt)
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes, L1Error> {
        self.inner.call(tx).await
    }

    async fn logs(&self, filter: &LogFilter) -> Result<Vec<L1Log>, L1Error> {
        self.inner.logs(filter).await
    }

    async fn transaction(&self, hash: B256) -> Result<Option<TxInfo>, L1Error> {
        self.inner.transaction(hash).await
    }

    async fn advance_time(&self, seconds: u64) -> Result<BlockInfo, L1Error> {
        self.inner.advance_time(seconds).await
    }

    async fn mine(&self) -> Result<BlockInfo, L1Error> {
        self.inner.mine().await
    }
}

#[tokio::test]
async fn crash_safety_same_batch_exactly_once() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let fx = Chain::new().await;
        let db = TestDb::new(backend).await;
        let storage = db.storage(clock::system()).await;
        let metrics = Metrics::new().expect("metrics");
        let signer = &fx.signer;

        // 1. Crash between planning and posting: the restarted poster posts the planned bytes.
        let jobs = [
            executed_job(&storage, signer, Some(signer), 1).await,
            executed_job(&storage, signer, Some(signer), 2).await,
        ];
        let first = pipeline(&storage, clock::system(), &metrics, fx.by(fx.seq), 2).await;
        let planned = first.plan().await.expect("plan");
        assert_eq!(planned.len(), 1);
        let planned = planned[0].clone();
        let data = storage.batch_data(1).await.expect("read").expect("data");
        drop(first);
        assert!(fx.posted_events().await.is_empty());
        let mut second = pipeline(&storage, clock::system(), &metrics, fx.by(fx.seq), 2).await;
        let report = second.tick().await.expect("round");
        assert!(report.planned.is_empty());
        assert_eq!(report.posted.len(), 1);
        let events = fx.posted_events().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0.batchRoot, planned.batch_root);
        assert_eq!(events[0].0.daCommitment, planned.da_commitment);
        assert_eq!(fx.rollup.batch_data(1).await.expect("read back"), data);
        let posted = storage.batch(1).await.expect("read").expect("batch");
        assert_eq!(posted.status, BatchStatus::Posted);
        assert_eq!(
            (posted.l1_batch_id, posted.l1_tx),
            (Some(1), Some(events[0].1.tx_hash))
        );
        assert!(posted.gas_used.is_some());
        for (index, job) in jobs.iter().enumerate() {
            let job = storage.job(*job).await.expect("read").expect("job");
            assert_eq!(job.state, JobState::Posted);
            assert_eq!(
                (job.batch_number, job.leaf_index, job.l1_tx),
                (Some(1), Some(index as u64), Some(events[0].1.tx_hash))
            );
        }

        // 2. Crash after the post was mined but before it was recorded: the retry's post reverts
        //    (StaleStateRoot), the poster finds its BatchPosted event and records it; nothing is posted twice.
        executed_job(&storage, signer, Some(signer), 3).await;
        executed_job(&storage, signer, Some(signer), 4).await;
        let armed = Arc::new(AtomicBool::new(true));
        let flaky = LoseNextPost {
            inner: fx.chain.connect(fx.seq),
            armed: armed.clone(),
        };
        let mut crashing = pipeline(
            &storage,
            clock::system(),
            &metrics,
            fx.rollup.with_l1(flaky),
            2,
        )
        .await;
        assert!(crashing.tick().await.is_err());
        assert!(!armed.load(Ordering::SeqCst));
        drop(crashing);
        assert_eq!(fx.posted_events().await.len(), 2);
        let lost = storage.batch(2).await.expect("read").expect("batch");
        assert_eq!(lost.status, BatchStatus::Planned);
        let mut restarted = pipeline(&storage, clock::system(), &metrics, fx.by(fx.seq), 2).await;
        let report = restarted.tick().await.expect("round");
        assert_eq!(report.posted.len(), 1);
        let events = fx.posted_events().await;
        assert_eq!(events.len(), 2);
        let recovered = storage.batch(2).await.expect("read").expect("batch");
        assert_eq!(recovered.status, BatchStatus::Posted);
        assert_eq!(recovered.batch_root, lost.batch_root);
        assert_eq!(events[1].0.batchRoot, lost.batch_root);
        assert_eq!(events[1].0.daCommitment, lost.da_commitment);
        assert_eq!(
            (recovered.l1_batch_id, recovered.l1_tx, recovered.gas_used),
            (Some(2), Some(events[1].1.tx_hash), None)
        );
        assert_eq!(recovered.prev_state_root, posted.state_root);
        assert_eq!(recovered.state_root, events[1].0.stateRoot);

        // 3. Another sequencer posts between our planning and our post: same bytes, chained on its state root.
        executed_job(&storage, signer, Some(signer), 5).await;
        executed_job(&storage, signer, Some(signer), 6).await;
        let planned = restarted.plan().await.expect("plan");
        assert_eq!(planned.len(), 1);
        let foreign = fx
            .by(fx.seq2)
            .post_batch(
                Bytes::from_static(b"foreign batch"),
                B256::repeat_byte(0xfb),
                1,
                recovered.state_root,
            )
            .await
            .expect("foreign post");
        let report = restarted.tick().await.expect("round");
        assert_eq!(report.posted.len(), 1);
        let third = &report.posted[0];
        assert_eq!(
            (third.number, third.l1_batch_id),
            (3, Some(foreign.batch_id + 1))
        );
        assert_eq!(third.batch_root, planned[0].batch_root);
        assert_eq!(third.da_commitment, planned[0].da_commitment);
        assert_eq!(third.prev_state_root, foreign.state_root);
        assert_eq!(
            fx.rollup.state_root().await.expect("view"),
            third.state_root
        );

        // Never the same batch twice.
        let events = fx.posted_events().await;
        assert_eq!(events.len(), 4);
        let mut commitments: Vec<B256> = events.iter().map(|(e, _)| e.daCommitment).collect();
        commitments.sort();
        commitments.dedup();
        assert_eq!(commitments.len(), 4);
        assert_eq!(metrics.settlement.batches_posted.get(), 3);

        // Finality after the window, for every batch.
        fx.advance(WINDOW).await;
        let report = restarted.tick().await.expect("round");
        assert_eq!(report.finalized.len(), 3);
        for number in 1..=3 {
            let batch = storage.batch(number).await.expect("read").expect("batch");
            assert_eq!(batch.status, BatchStatus::Final);
            assert!(batch.final_tx.is_some());
        }
        let job = storage.job(jobs[0]).await.expect("read").expect("job");
        assert_eq!(job.state, JobState::Final);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn only_the_advisory_lock_holder_posts() {
    let fx = Chain::new().await;
    let db = TestDb::new(Backend::Postgres).await;
    let storage = db.storage(clock::system()).await;
    let replicas = [fx.seq, fx.seq2];
    let mut metrics = Vec::new();
    let mut handles: Vec<Option<PipelineHandle>> = Vec::new();
    for sender in replicas {
        // Each replica has its own pool (its own process, as far as Postgres is concerned).
        let own = db.storage(clock::system()).await;
        let m = Metrics::new().expect("metrics");
        let p = pipeline(&own, clock::system(), &m, fx.by(sender), 4).await;
        handles.push(Some(p.spawn()));
        metrics.push(m);
    }
    let mut jobs = Vec::new();
    for seed in 0..6 {
        jobs.push(executed_job(&storage, &fx.signer, Some(&fx.signer), seed).await);
    }
    let all_posted = |jobs: Vec<i64>| {
        let storage = storage.clone();
        async move {
            for job in jobs {
                let state = storage.job(job).await.ok().flatten().map(|j| j.state);
                if state != Some(JobState::Posted) {
                    return false;
                }
            }
            true
        }
    };
    eventually("the first jobs posted", || all_posted(jobs.clone())).await;
    let events = fx.posted_events().await;
    assert!(!events.is_empty());
    let leader = events[0].0.sequencer;
    assert!(events.iter().all(|(e, _)| e.sequencer == leader));
    let l = replicas
        .iter()
        .position(|s| *s == leader)
        .expect("a replica");
    let f = 1 - l;
    assert_eq!(metrics[l].settlement.leader.get(), 1);
    assert_eq!(metrics[f].settlement.leader.get(), 0);
    assert_eq!(
        metrics[l].settlement.batches_posted.get(),
        events.len() as u64
    );
    assert_eq!(metrics[f].settlement.batches_posted.get(), 0);
    assert_eq!(metrics[f].settlement.batches_planned.get(), 0);

    // The leader dies: its session ends, the other replica takes the lock and posts what comes next.
    handles[l].take();
    let mut more = Vec::new();
    for seed in 10..13 {
        more.push(executed_job(&storage, &fx.signer, Some(&fx.signer), seed).await);
    }
    eventually("the next jobs posted", || all_posted(more.clone())).await;
    let after = fx.posted_events().await;
    assert!(after.len() > events.len());
    assert!(
        after[events.len()..]
            .iter()
            .all(|(e, _)| e.sequencer == replicas[f])
    );
    assert_eq!(metrics[f].settlement.leader.get(), 1);
    let mut commitments: Vec<B256> = after.iter().map(|(e, _)| e.daCommitment).collect();
    commitments.sort();
    commitments.dedup();
    assert_eq!(commitments.len(), after.len(), "no batch posted twice");
    let mut planned = storage
        .batches(BatchStatus::Posted, 100)
        .await
        .expect("batches");
    planned.extend(
        storage
            .batches(BatchStatus::Planned, 100)
            .await
            .expect("batches"),
    );
    assert_eq!(planned.len(), after.len());
    drop(handles);
    db.cleanup().await;
}

#[tokio::test]
async fn batch_store_conformance() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let fx = Chain::new().await;
        let db = TestDb::new(backend).await;
        let storage = db.storage(clock::system()).await;
        let signer = &fx.signer;
        let a = executed_job(&storage, signer, Some(signer), 1).await;
        let b = executed_job(&storage, signer, Some(signer), 2).await;
        let waiting = storage.unbatched_jobs(10).await.expect("read");
        assert_eq!(
            waiting.iter().map(|w| w.job.job_id).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert_eq!(waiting[0].prompt_tokens, vec![1, 2, 3, 1]);
        let summary = storage.unbatched_summary().await.expect("summary");
        assert_eq!(
            (summary.count, summary.prompt_tokens, summary.output_tokens),
            (2, 8, 8)
        );
        assert!(storage.batch_head().await.expect("head").is_none());

        let batch = |number, job_ids: Vec<i64>| NewBatch {
            number,
            batch_root: B256::repeat_byte(number as u8),
            leaf_hashes: job_ids
                .iter()
                .map(|j| B256::repeat_byte(*j as u8))
                .collect(),
            job_ids,
            data: vec![1, 2, 3],
            da_commitment: keccak256([1, 2, 3]),
            raw_bytes: 100,
            prev_state_root: GENESIS_STATE_ROOT,
            state_root: B256::repeat_byte(0xaa),
        };
        storage
            .insert_batch(&batch(1, vec![a]))
            .await
            .expect("plan");
        // A taken number, or a job already batched: nothing is written.
        assert!(matches!(
            storage.insert_batch(&batch(1, vec![b])).await,
            Err(StorageError::BatchConflict { number: 1, .. })
        ));
        assert!(matches!(
            storage.insert_batch(&batch(2, vec![b, a])).await,
            Err(StorageError::BatchConflict { number: 2, .. })
        ));
        assert!(storage.batch(2).await.expect("read").is_none());
        let job_b = storage.job(b).await.expect("read").expect("job");
        assert_eq!(job_b.batch_number, None);
        let head = storage.batch_head().await.expect("head").expect("one");
        assert_eq!((head.number, head.state_root), (1, B256::repeat_byte(0xaa)));
        let stored = storage.batch(1).await.expect("read").expect("batch");
        assert_eq!(stored.leaf_hashes, vec![B256::repeat_byte(a as u8)]);
        assert_eq!((stored.data_bytes, stored.raw_bytes), (3, 100));
        assert_eq!(
            storage.batch_data(1).await.expect("read"),
            Some(vec![1, 2, 3])
        );

        let info = PostedInfo {
            l1_batch_id: 7,
            prev_state_root: B256::repeat_byte(0x01),
            state_root: B256::repeat_byte(0x02),
            tx_hash: B256::repeat_byte(0x03),
            block_number: 11,
            posted_at: 1_700_000_000,
            gas_used: Some(123_456),
            finalizes_at: 1_700_000_060,
        };
        assert!(storage.mark_batch_posted(1, &info).await.expect("post"));
        assert!(!storage.mark_batch_posted(1, &info).await.expect("again"));
        let posted = storage
            .batch_by_l1_id(7)
            .await
            .expect("read")
            .expect("batch");
        assert_eq!(
            (
                posted.status,
                posted.l1_tx,
                posted.l1_block,
                posted.gas_used,
                posted.finalizes_at,
                posted.state_root
            ),
            (
                BatchStatus::Posted,
                Some(info.tx_hash),
                Some(11),
                Some(123_456),
                Some(1_700_000_060),
                info.state_root
            )
        );
        let job_a = storage.job(a).await.expect("read").expect("job");
        assert_eq!(
            (job_a.state, job_a.l1_tx, job_a.leaf_index),
            (JobState::Posted, Some(info.tx_hash), Some(0))
        );
        assert_eq!(
            storage
                .batches(BatchStatus::Posted, 10)
                .await
                .expect("read")
                .len(),
            1
        );
        let due = |now| {
            let storage = storage.clone();
            async move { storage.batches_due(now, 10).await.expect("read").len() }
        };
        assert_eq!(due(1_700_000_059).await, 0);
        assert_eq!(due(1_700_000_060).await, 1);

        assert!(storage.mark_batch_final(1, None).await.expect("final"));
        assert!(!storage.mark_batch_final(1, None).await.expect("again"));
        let job_a = storage.job(a).await.expect("read").expect("job");
        assert_eq!(job_a.state, JobState::Final);
        assert!(storage.invalidate_leaf(7, 0).await.expect("invalidate"));
        assert!(!storage.invalidate_leaf(7, 0).await.expect("again"));
        assert!(!storage.invalidate_leaf(8, 0).await.expect("unknown"));
        let job_a = storage.job(a).await.expect("read").expect("job");
        assert_eq!(job_a.state, JobState::Invalid);

        assert!(storage.reject_job(b).await.expect("reject"));
        assert!(!storage.reject_job(b).await.expect("again"));
        assert_eq!(storage.unbatched_summary().await.expect("summary").count, 0);

        assert_eq!(storage.load_cursor("c").await.expect("read"), None);
        storage.save_cursor("c", &[1, 2]).await.expect("save");
        storage.save_cursor("c", &[3]).await.expect("save");
        assert_eq!(storage.load_cursor("c").await.expect("read"), Some(vec![3]));
        db.cleanup().await;
    }
}

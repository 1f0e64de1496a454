//! Gas report: every `InferenceRollup` and `ExampleConsumer` function measured on a fresh [`EmbeddedChain`].
//!
//! `postBatch` is measured for several leaf counts and batch-data sizes. Its cost is a constant part plus the
//! calldata cost of the data bytes (16 gas per non-zero byte, 4 per zero byte; Cancun), which is the price of
//! calldata DA and would move to blob gas with blobs. The report shows both the total and the total without the
//! data bytes. The latter is constant in the leaf count; it grows with the data size only by hashing the data
//! (`keccak256` needs the bytes in memory: 3 gas/word copy, 6 gas/word keccak, plus quadratic memory expansion).
//! `postBatchBlobs` carries the same data in EIP-4844 blobs (real KZG commitments; the embedded chain's blob base
//! fee is zero, so blob gas is not in the figures): its gas is independent of the size.

use crate::bindings::{ExampleConsumer, InferenceRollup};
use crate::consumer::{Consumer, ConsumerError};
use crate::dev;
use crate::embedded::{EmbeddedChain, EmbeddedL1};
use crate::l1::{L1, L1Error, Receipt, TxRequest};
use crate::rollup::{
    Role, Rollup, RollupConfig, RollupError, config_hash, model_leaf_count, signature_opening,
};
use alloy::primitives::{B256, Bytes, U256, keccak256};
use alloy::sol_types::SolCall;
use protocol::batch::{signature_proof, signature_root};
use protocol::{
    FinishReason, InferenceLeaf, LEAF_VERSION, LeafSignature, MerkleTree, leaf_domain, sign_leaf,
    token_ids_root,
};
use std::fmt;

/// One measured call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasEntry {
    /// Contract function.
    pub function: &'static str,
    /// What was measured (sizes, path).
    pub case: String,
    /// Gas used by the transaction, intrinsic gas included.
    pub gas_used: u64,
    /// Calldata gas of the batch-data bytes inside the call (0 for calls without batch data).
    pub data_gas: u64,
    /// Calldata size in bytes.
    pub calldata_bytes: usize,
}

impl GasEntry {
    /// Gas without the calldata cost of the batch-data bytes.
    pub fn gas_without_data(&self) -> u64 {
        self.gas_used - self.data_gas
    }
}

/// All measurements, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GasReport {
    /// The measurements.
    pub entries: Vec<GasEntry>,
}

impl GasReport {
    /// The largest steady-state `postBatch` gas without the data calldata, over all leaf counts, for 1 KiB of
    /// data: the size-independent part of the cost.
    pub fn post_batch_fixed(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| {
                e.function == "postBatch" && e.case.contains(" 1 KiB") && !e.case.contains("first")
            })
            .map(GasEntry::gas_without_data)
            .max()
            .unwrap_or(0)
    }

    /// The largest steady-state `postBatchBlobs` gas over every measured size (1 KiB to six blobs).
    pub fn post_batch_blobs_max(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.function == "postBatchBlobs" && !e.case.contains("first"))
            .map(|e| e.gas_used)
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for GasReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<25} {:<44} {:>10} {:>14} {:>10}",
            "function", "case", "gas", "gas - DA data", "calldata"
        )?;
        for e in &self.entries {
            writeln!(
                f,
                "{:<25} {:<44} {:>10} {:>14} {:>10}",
                e.function,
                e.case,
                e.gas_used,
                e.gas_without_data(),
                e.calldata_bytes
            )?;
        }
        Ok(())
    }
}

/// Errors while building the report.
#[derive(Debug, thiserror::Error)]
pub enum GasReportError {
    /// A rollup call failed.
    #[error(transparent)]
    Rollup(#[from] RollupError),
    /// A consumer call failed.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// A chain operation failed.
    #[error(transparent)]
    L1(#[from] L1Error),
    /// A Merkle proof could not be built.
    #[error(transparent)]
    Merkle(#[from] protocol::MerkleError),
    /// A dispute-game call or a one-step proof failed.
    #[error("dispute game: {0}")]
    Game(String),
    /// A leaf could not be signed.
    #[error(transparent)]
    Signature(#[from] protocol::SignatureError),
    /// A development key is not a valid secp256k1 key.
    #[error("development key: {0}")]
    Key(#[from] k256::ecdsa::Error),
    /// The development accounts are missing.
    #[error("development account {0} is missing")]
    NoAccount(usize),
}

/// Calldata gas of `bytes` (Cancun: 4 per zero byte, 16 per non-zero byte).
pub fn calldata_gas(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum()
}

/// `len` pseudo-random bytes (a keccak stream), standing in for compressed batch data.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut state = keccak256(seed.to_be_bytes());
    while out.len() < len {
        out.extend_from_slice(state.as_slice());
        state = keccak256(state);
    }
    out.truncate(len);
    out
}

/// SmolLM2-135M's model parameters (docs/vir.md §7 order); used by the gas report and tests.
pub fn smollm2_config() -> InferenceRollup::ModelConfig {
    InferenceRollup::ModelConfig {
        virVersion: 1,
        nLayers: 30,
        dModel: 576,
        dFf: 1536,
        nHeads: 9,
        nKvHeads: 3,
        headDim: 64,
        vocabSize: 49152,
        contextLength: 8192,
        tiedOutput: 1,
        epsFx: 1,
        scoreScale: 1,
        residualFrac: 12,
        actFrac: 16,
        attnChunk: 64,
        vocabChunk: 1024,
        toppRounds: 17,
        tableFrac: 16,
    }
}

/// A synthetic model root for `config`: pseudo-random weight leaves followed by `config_hash(config)` as the last
/// leaf; returns the root and the proof of that last leaf.
pub fn synthetic_model_root(
    config: &InferenceRollup::ModelConfig,
) -> Result<(B256, Vec<B256>), protocol::MerkleError> {
    let count = model_leaf_count(config.nLayers, config.tiedOutput == 1);
    let mut leaves: Vec<B256> = (0..count - 1).map(|i| keccak256(i.to_be_bytes())).collect();
    leaves.push(config_hash(config));
    let tree = MerkleTree::new(leaves);
    Ok((tree.root(), tree.proof(count - 1)?.siblings))
}

struct Recorder {
    report: GasReport,
}

impl Recorder {
    fn record(
        &mut self,
        function: &'static str,
        case: impl Into<String>,
        r: &Receipt,
        calldata_bytes: usize,
        data_gas: u64,
    ) {
        self.report.entries.push(GasEntry {
            function,
            case: case.into(),
            gas_used: r.gas_used,
            data_gas,
            calldata_bytes,
        });
    }
}

/// Runs every function on a fresh embedded chain and returns the measurements.
pub async fn gas_report() -> Result<GasReport, GasReportError> {
    let chain = EmbeddedChain::default();
    let accounts = dev::accounts();
    let addr = |i: usize| {
        accounts
            .get(i)
            .map(|a| a.address)
            .ok_or(GasReportError::NoAccount(i))
    };
    let (owner, sequencer, executor, game) = (addr(0)?, addr(1)?, addr(2)?, addr(3)?);
    let eth = U256::from(10u64).pow(U256::from(18u64));
    let config = RollupConfig {
        min_sequencer_bond: eth,
        min_executor_bond: eth,
        withdrawal_delay: 7200,
        challenge_window: 3600,
        owner,
    };
    let mut rec = Recorder {
        report: GasReport::default(),
    };

    let init = config.init_code();
    let deploy = chain
        .connect(owner)
        .send(TxRequest::create(init.clone()))
        .await?;
    rec.record("constructor", "InferenceRollup", &deploy, init.len(), 0);
    let rollup_address = deploy
        .contract_address
        .ok_or(RollupError::NoContractAddress)?;
    let as_owner = Rollup::at(chain.connect(owner), rollup_address);
    let as_seq = as_owner.with_l1(chain.connect(sequencer));
    let as_exec = as_owner.with_l1(chain.connect(executor));
    let as_game = as_owner.with_l1(chain.connect(game));

    let r = as_seq.register_sequencer(eth).await?;
    rec.record("registerSequencer", "first registration", &r, 4, 0);
    let r = as_exec.register_executor(eth).await?;
    rec.record("registerExecutor", "first registration", &r, 4, 0);
    let r = as_exec.top_up(Role::Executor, eth).await?;
    rec.record("topUp", "executor", &r, 36, 0);

    let model = smollm2_config();
    let (model_root, proof) = synthetic_model_root(&model)?;
    let call = InferenceRollup::registerModelCall {
        modelRoot: model_root,
        config: model.clone(),
        configProof: proof.clone(),
    };
    let r = as_owner.register_model(model_root, model, proof).await?;
    rec.record(
        "registerModel",
        "SmolLM2-135M (30 layers, 277 leaves)",
        &r,
        call.abi_encode().len(),
        0,
    );
    let r = as_owner.set_dispute_game(game).await?;
    rec.record("setDisputeGame", "", &r, 36, 0);

    // postBatch: the leaf count does not matter; the data size does (calldata, and hashing it in memory).
    let max_leaves = (1u64 << 48) - 1;
    let cases = [
        (1u64, 1usize << 10, " (first batch: stateRoot 0 -> x)"),
        (1, 1 << 10, ""),
        (1024, 1 << 10, ""),
        (1 << 20, 1 << 10, ""),
        (max_leaves, 1 << 10, ""),
        (1024, 4 << 10, ""),
        (1024, 16 << 10, ""),
        (1024, 32 << 10, ""),
        (1024, 64 << 10, ""),
        (1024, 128 << 10, ""),
    ];
    for (seed, (leaf_count, data_len, note)) in cases.into_iter().enumerate() {
        let data = Bytes::from(pseudo_random_bytes(data_len, seed as u64));
        let batch_root = keccak256(data.as_ref());
        let prev = as_seq.state_root().await?;
        let call = InferenceRollup::postBatchCall {
            data: data.clone(),
            batchRoot: batch_root,
            leafCount: leaf_count,
            sigRoot: batch_root,
            prevStateRoot: prev,
        };
        let input = call.abi_encode();
        // The data bytes plus their zero padding to a 32-byte word.
        let data_gas =
            calldata_gas(&data) + 4 * (data.len().next_multiple_of(32) - data.len()) as u64;
        let posted = as_seq
            .post_batch_calldata(data, batch_root, leaf_count, batch_root, prev)
            .await?;
        let case = format!("{leaf_count} leaves, {} KiB data{note}", data_len >> 10);
        rec.record("postBatch", case, &posted.receipt, input.len(), data_gas);
    }

    // postBatchBlobs: the same kind of data in blobs, from 1 KiB to the six blobs of one transaction.
    let blob_cases = [
        (1u64, 1usize << 10),
        (max_leaves, 1 << 10),
        (1024, 32 << 10),
        (1024, 128 << 10),
        (1024, 256 << 10),
        (1024, 512 << 10),
        (1024, crate::blobs::MAX_DATA_BYTES),
    ];
    for (seed, (leaf_count, data_len)) in blob_cases.into_iter().enumerate() {
        let data = pseudo_random_bytes(data_len, 1000 + seed as u64);
        let batch_root = keccak256(&data);
        let prev = as_seq.state_root().await?;
        let input = InferenceRollup::postBatchBlobsCall {
            batchRoot: batch_root,
            leafCount: leaf_count,
            sigRoot: batch_root,
            prevStateRoot: prev,
        }
        .abi_encode();
        let posted = as_seq
            .post_batch_blobs(&data, batch_root, leaf_count, batch_root, prev)
            .await?;
        let case = format!(
            "{leaf_count} leaves, {} KiB in {} blob(s)",
            data_len >> 10,
            posted.blob_versioned_hashes.len()
        );
        rec.record("postBatchBlobs", case, &posted.receipt, input.len(), 0);
    }

    // A real batch of leaves for the consumer and proof-depth measurements.
    let leaves: Vec<InferenceLeaf> = (0..1024u64)
        .map(|i| InferenceLeaf {
            version: LEAF_VERSION,
            requestId: keccak256(i.to_be_bytes()),
            modelRoot: model_root,
            promptRoot: token_ids_root(&[1, 2, 3]),
            paramsHash: B256::repeat_byte(4),
            outputHash: token_ids_root(&(0..64u32).collect::<Vec<_>>()),
            finishReason: FinishReason::Stop.into(),
            traceRoot: B256::repeat_byte(6),
            opCount: 1000,
            executor,
        })
        .collect();
    let hashes: Vec<B256> = leaves.iter().map(InferenceLeaf::hash).collect();
    let tree = MerkleTree::new(hashes.clone());
    let prev = as_seq.state_root().await?;
    let real = as_seq
        .post_batch(
            Bytes::from(pseudo_random_bytes(4096, 99)),
            tree.root(),
            1024,
            prev,
        )
        .await?;

    // The signature challenge on a second 1024-leaf batch (depth 10): leaf 0 carries the executor's signature and
    // is answered; leaf 1 carries an all-zero one, stays unanswered and is resolved at the end.
    let exec_key = k256::ecdsa::SigningKey::from_slice(dev::DEV_KEYS[2].as_slice())?;
    let domain = leaf_domain(chain.connect(owner).chain_id().await?, rollup_address);
    let mut sigs = vec![LeafSignature::default(); leaves.len()];
    sigs[0] = sign_leaf(&leaves[0], &domain, &exec_key)?;
    let sig_root = signature_root(&sigs);
    let data = Bytes::from(pseudo_random_bytes(4096, 97));
    let prev = as_seq.state_root().await?;
    let signed = as_seq
        .post_batch_calldata(data, tree.root(), 1024, sig_root, prev)
        .await?;
    let as_challenger = as_owner.with_l1(chain.connect(addr(4)?));
    let challenge_len = |i: usize| -> Result<usize, GasReportError> {
        Ok(InferenceRollup::challengeSignatureCall {
            batchId: U256::from(signed.batch_id),
            leaf: leaves[i].into(),
            index: U256::from(i),
            leafProof: tree.proof(i as u64)?.siblings,
        }
        .abi_encode()
        .len())
    };
    let r = as_challenger
        .challenge_signature(signed.batch_id, &leaves[0], &tree.proof(0)?)
        .await?;
    rec.record("challengeSignature", "depth 10", &r, challenge_len(0)?, 0);
    as_challenger
        .challenge_signature(signed.batch_id, &leaves[1], &tree.proof(1)?)
        .await?;
    let opening = signature_opening(
        signed.da_commitment,
        sig_root,
        sigs[0].as_bytes(),
        &signature_proof(&sigs, 0)?,
    );
    let answer = InferenceRollup::answerSignatureChallengeCall {
        batchId: U256::from(signed.batch_id),
        index: U256::ZERO,
        sig: opening.clone(),
    };
    let r = as_seq
        .answer_signature_challenge(signed.batch_id, 0, opening)
        .await?;
    rec.record(
        "answerSignatureChallenge",
        "depth 10",
        &r,
        answer.abi_encode().len(),
        0,
    );

    let r = as_game.dispute_opened(real.batch_id, executor).await?;
    rec.record("disputeOpened", "", &r, 68, 0);
    let r = as_game.invalidate_leaf(real.batch_id, 1).await?;
    rec.record("invalidateLeaf", "", &r, 68, 0);
    let r = as_game.dispute_closed(real.batch_id, executor).await?;
    rec.record("disputeClosed", "", &r, 68, 0);
    let r = as_game
        .slash(
            Role::Executor,
            executor,
            eth / U256::from(2u64),
            game,
            eth / U256::from(4u64),
        )
        .await?;
    rec.record("slash", "half a bond, half of it rewarded", &r, 164, 0);
    let r = as_game.claim().await?;
    rec.record("claim", "", &r, 4, 0);

    chain.connect(owner).advance_time(3600).await?;
    let r = as_owner.finalize(real.batch_id).await?;
    rec.record("finalize", "", &r, 36, 0);

    // isFinalized as a transaction, to meter it, at several proof depths.
    let owner_l1: EmbeddedL1 = chain.connect(owner);
    let proof = tree.proof(0)?;
    let call = InferenceRollup::isFinalizedCall {
        batchId: U256::from(real.batch_id),
        leafHash: hashes[0],
        index: U256::ZERO,
        proof: proof.siblings.clone(),
    };
    let input = call.abi_encode();
    let r = owner_l1
        .send(TxRequest::call(rollup_address, input.clone()))
        .await?;
    rec.record("isFinalized", "depth 10 (1024 leaves)", &r, input.len(), 0);

    // And for a one-leaf batch (depth 0).
    let prev = as_seq.state_root().await?;
    let single = as_seq
        .post_batch(
            Bytes::from(pseudo_random_bytes(512, 98)),
            hashes[0],
            1,
            prev,
        )
        .await?;
    chain.connect(owner).advance_time(3600).await?;
    as_owner.finalize(single.batch_id).await?;
    let call = InferenceRollup::isFinalizedCall {
        batchId: U256::from(single.batch_id),
        leafHash: hashes[0],
        index: U256::ZERO,
        proof: Vec::new(),
    };
    let input = call.abi_encode();
    let r = owner_l1
        .send(TxRequest::call(rollup_address, input.clone()))
        .await?;
    rec.record("isFinalized", "depth 0 (1 leaf)", &r, input.len(), 0);

    let consumer = Consumer::deploy(chain.connect(owner), rollup_address).await?;
    let q = consumer
        .ask(model_root, leaves[0].promptRoot, eth / U256::from(100u64))
        .await?;
    let output: Vec<u32> = (0..64).collect();
    let answer_len = ExampleConsumer::answerCall {
        questionId: U256::from(q),
        batchId: U256::from(real.batch_id),
        leaf: leaves[0].into(),
        leafIndex: U256::ZERO,
        proof: proof.siblings.clone(),
        outputTokens: output.clone(),
    }
    .abi_encode()
    .len();
    let r = consumer
        .with_l1(chain.connect(sequencer))
        .answer(q, real.batch_id, &leaves[0], &proof, &output)
        .await?;
    rec.record(
        "answer (consumer)",
        "64 output tokens, depth 10",
        &r,
        answer_len,
        0,
    );

    let r = as_exec.request_withdrawal(Role::Executor).await?;
    rec.record("requestWithdrawal", "executor", &r, 36, 0);
    chain.connect(owner).advance_time(7200).await?;
    let r = as_exec.withdraw(Role::Executor).await?;
    rec.record("withdraw", "executor", &r, 36, 0);

    // Long past its deadline: the unanswered challenge slashes the sequencer.
    let r = as_challenger
        .resolve_signature_challenge(signed.batch_id, 1)
        .await?;
    rec.record(
        "resolveSignatureChallenge",
        "whole sequencer bond slashed",
        &r,
        68,
        0,
    );

    crate::one_step_gas::dispute_entries(&mut rec.report.entries).await?;
    Ok(rec.report)
}

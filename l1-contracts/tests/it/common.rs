//! Shared fixtures.

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use protocol::{FinishReason, InferenceLeaf, LEAF_VERSION, token_ids_root};
use std::fmt::Debug;
use verinfer_l1_contracts::bindings::InferenceRollup::InferenceRollupErrors;
use verinfer_l1_contracts::{
    ContractError, EmbeddedChain, EmbeddedL1, L1, PostedBatch, Rollup, RollupConfig, TxRequest, dev,
};

pub const WINDOW: u64 = 3600;
pub const DELAY: u64 = 7200;

pub fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18u64))
}

pub fn min_sequencer_bond() -> U256 {
    eth(1)
}

pub fn min_executor_bond() -> U256 {
    eth(2)
}

/// A deployed rollup and named dev accounts.
pub struct Fx {
    pub chain: EmbeddedChain,
    pub owner: Address,
    pub seq: Address,
    pub exec: Address,
    pub game: Address,
    pub challenger: Address,
    pub stranger: Address,
    /// The rollup, sending as the owner.
    pub rollup: Rollup<EmbeddedL1>,
}

impl Fx {
    pub async fn new() -> Self {
        let chain = EmbeddedChain::default();
        let a: Vec<Address> = dev::accounts().iter().map(|a| a.address).collect();
        let config = RollupConfig {
            min_sequencer_bond: min_sequencer_bond(),
            min_executor_bond: min_executor_bond(),
            withdrawal_delay: DELAY,
            challenge_window: WINDOW,
            owner: a[0],
        };
        let rollup = Rollup::deploy(chain.connect(a[0]), &config).await.unwrap();
        Self {
            chain,
            owner: a[0],
            seq: a[1],
            exec: a[2],
            game: a[3],
            challenger: a[4],
            stranger: a[5],
            rollup,
        }
    }

    /// The rollup as sent from `who`.
    pub fn by(&self, who: Address) -> Rollup<EmbeddedL1> {
        self.rollup.with_l1(self.chain.connect(who))
    }

    /// With a registered sequencer and executor and the dispute game set to `self.game`.
    pub async fn ready() -> Self {
        let fx = Self::new().await;
        fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
        fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
        fx.rollup.set_dispute_game(fx.game).await.unwrap();
        fx
    }

    pub async fn advance(&self, secs: u64) {
        self.chain
            .connect(self.owner)
            .advance_time(secs)
            .await
            .unwrap();
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.chain.connect(who).balance(who).await.unwrap()
    }

    /// Posts a batch over `leaves` as `self.seq`; returns the posted batch and the leaf hashes.
    pub async fn post(&self, leaves: &[InferenceLeaf]) -> (PostedBatch, Vec<B256>) {
        let hashes: Vec<B256> = leaves.iter().map(InferenceLeaf::hash).collect();
        let root = protocol::batch_root(&hashes);
        let seq = self.by(self.seq);
        let prev = seq.state_root().await.unwrap();
        let data = batch_bytes(leaves);
        let posted = seq
            .post_batch(data, root, hashes.len() as u64, prev)
            .await
            .unwrap();
        (posted, hashes)
    }
}

/// Stand-in batch data for `leaves` (the contract hashes whatever bytes it gets).
pub fn batch_bytes(leaves: &[InferenceLeaf]) -> Bytes {
    let mut out = vec![1u8];
    for l in leaves {
        out.extend_from_slice(l.hash().as_slice());
    }
    out.into()
}

/// `n` distinct leaves signed (nominally) by `executor`; the output of leaf `i` is `output_tokens(i)`.
pub fn sample_leaves(n: u64, executor: Address) -> Vec<InferenceLeaf> {
    (0..n)
        .map(|i| InferenceLeaf {
            version: LEAF_VERSION,
            requestId: keccak256(format!("request-{i}")),
            modelRoot: keccak256("model"),
            promptRoot: token_ids_root(&[1, 2, 3, i as u32]),
            paramsHash: keccak256("params"),
            outputHash: token_ids_root(&output_tokens(i)),
            finishReason: FinishReason::Stop.into(),
            traceRoot: keccak256(format!("trace-{i}")),
            opCount: 1000 + i,
            executor,
        })
        .collect()
}

pub fn output_tokens(i: u64) -> Vec<u32> {
    (0..(i as u32 % 7 + 1)).map(|t| t * 31 + i as u32).collect()
}

/// The custom error of a reverted call (panics on success or another failure).
pub fn revert<T: Debug>(
    r: Result<T, ContractError<InferenceRollupErrors>>,
) -> InferenceRollupErrors {
    match r {
        Err(ContractError::Revert(e)) => e,
        other => panic!("expected a custom-error revert, got {other:?}"),
    }
}

impl Fx {
    /// A deployed rollup with the dispute game set and no bonds (the invariant tests register their own actors).
    pub async fn ready_empty() -> Self {
        let fx = Self::new().await;
        fx.rollup.set_dispute_game(fx.game).await.unwrap();
        fx
    }
}

/// Deploys (from `deployer`) a contract that forwards any call with calldata to `target` (value included, revert data
/// bubbled up) and rejects plain ETH transfers: a bond holder whose payouts fail.
pub async fn rejecting_proxy(chain: &EmbeddedChain, deployer: Address, target: Address) -> Address {
    let mut runtime = vec![
        0x36, 0x15, 0x60, 0x00, 0x57, // CALLDATASIZE ISZERO PUSH1 reject JUMPI
        0x36, 0x5f, 0x5f, 0x37, // CALLDATASIZE PUSH0 PUSH0 CALLDATACOPY
        0x5f, 0x5f, 0x36, 0x5f, 0x34, 0x73, // PUSH0 PUSH0 CALLDATASIZE PUSH0 CALLVALUE PUSH20
    ];
    runtime.extend_from_slice(target.as_slice());
    runtime.extend_from_slice(&[
        0x5a, 0xf1, // GAS CALL
        0x3d, 0x5f, 0x5f, 0x3e, // RETURNDATASIZE PUSH0 PUSH0 RETURNDATACOPY
    ]);
    let ok_push = runtime.len() + 1;
    runtime.extend_from_slice(&[
        0x60, 0x00, 0x57, // PUSH1 ok JUMPI
        0x3d, 0x5f, 0xfd, // RETURNDATASIZE PUSH0 REVERT
    ]);
    let ok = runtime.len() as u8;
    runtime.extend_from_slice(&[0x5b, 0x3d, 0x5f, 0xf3]); // ok: JUMPDEST RETURNDATASIZE PUSH0 RETURN
    let reject = runtime.len() as u8;
    runtime.extend_from_slice(&[0x5b, 0x5f, 0x5f, 0xfd]); // reject: JUMPDEST PUSH0 PUSH0 REVERT
    runtime[3] = reject;
    runtime[ok_push] = ok;
    // Init code: copy the runtime to memory and return it.
    let len = runtime.len() as u8;
    let mut init = vec![0x60, len, 0x80, 0x60, 12, 0x5f, 0x39, 0x5f, 0xf3];
    init.resize(12, 0x00);
    init.extend_from_slice(&runtime);
    chain
        .connect(deployer)
        .send(TxRequest::create(init))
        .await
        .unwrap()
        .contract_address
        .unwrap()
}

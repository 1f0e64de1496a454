//! `RpcL1` and `LogFollower` against a real anvil that each test starts (npm `@foundry-rs/anvil`, installed by
//! `npm ci` in l1-contracts/), a scripted JSON-RPC server for transport failures, and the batch lifecycle run
//! unchanged on both the embedded chain and anvil.

use crate::common::*;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::sol_types::{SolCall, SolEvent};
use protocol::{GENESIS_STATE_ROOT, InferenceLeaf, leaf_proof, next_state_root};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use verinfer_l1_contracts::anvil::Anvil;
use verinfer_l1_contracts::bindings::InferenceRollup::{
    self, InferenceRollupErrors as E, InferenceRollupEvents as Ev,
};
use verinfer_l1_contracts::gas::{smollm2_config, synthetic_model_root};
use verinfer_l1_contracts::rpc::{
    Cursor, CursorStore, Delivery, FileCursorStore, FollowerConfig, LogFollower, LogId,
    MemoryCursorStore, RetryConfig, RpcConfig, RpcL1,
};
use verinfer_l1_contracts::{
    EmbeddedChain, L1, L1Error, LeafStatus, LogFilter, PostedBatch, Role, Rollup, RollupConfig,
    TxRequest, config_hash, dev,
};

// ---- fixtures ----------------------------------------------------------------------------------------------------

/// An anvil with handles for the named dev accounts (owner 0, sequencer 1, executor 2, stranger 5).
struct Net {
    anvil: Anvil,
    owner: RpcL1,
    seq: RpcL1,
    exec: RpcL1,
    stranger: RpcL1,
}

async fn net(config: RpcConfig) -> Net {
    let anvil = Anvil::spawn().unwrap_or_else(|e| panic!("{e}"));
    let keys = dev::accounts();
    let owner = RpcL1::connect(anvil.endpoint(), keys[0].signer.clone(), config)
        .await
        .unwrap();
    Net {
        seq: owner.with_signer(keys[1].signer.clone()),
        exec: owner.with_signer(keys[2].signer.clone()),
        stranger: owner.with_signer(keys[5].signer.clone()),
        owner,
        anvil,
    }
}

fn rollup_config(owner: Address) -> RollupConfig {
    RollupConfig {
        min_sequencer_bond: min_sequencer_bond(),
        min_executor_bond: min_executor_bond(),
        withdrawal_delay: DELAY,
        challenge_window: WINDOW,
        owner,
    }
}

/// A rollup deployed by the owner with the sequencer registered; returns it as sent by the sequencer.
async fn rollup_with_sequencer(net: &Net) -> Rollup<RpcL1> {
    let rollup = Rollup::deploy(net.owner.clone(), &rollup_config(net.owner.sender()))
        .await
        .unwrap();
    let seq = rollup.with_l1(net.seq.clone());
    seq.register_sequencer(eth(1)).await.unwrap();
    seq
}

/// Posts a one-leaf batch whose data is `tag`.
async fn post_tagged(seq: &Rollup<RpcL1>, tag: &str) -> PostedBatch {
    let prev = seq.state_root().await.unwrap();
    seq.post_batch(
        Bytes::from(tag.as_bytes().to_vec()),
        keccak256(tag),
        1,
        prev,
    )
    .await
    .unwrap()
}

fn batch_posted_filter(rollup: Address) -> LogFilter {
    LogFilter::new(rollup, 0).event(InferenceRollup::BatchPosted::SIGNATURE_HASH)
}

fn batch_id(log: &verinfer_l1_contracts::L1Log) -> u64 {
    InferenceRollup::BatchPosted::decode_log(&log.inner)
        .unwrap()
        .batchId
        .to()
}

/// Polls and commits until the follower is caught up; returns the deliveries.
async fn drain<L: L1, S: CursorStore>(f: &mut LogFollower<L, S>) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(d) = f.poll().await.unwrap() {
        f.commit(&d).await.unwrap();
        out.push(d);
    }
    out
}

async fn pending_and_mined_nonce(l1: &RpcL1, who: Address) -> (u64, u64) {
    let p = l1.provider();
    (
        p.get_transaction_count(who).pending().await.unwrap(),
        p.get_transaction_count(who).latest().await.unwrap(),
    )
}

// ---- the batch lifecycle, once per L1 implementation -------------------------------------------------------------

struct Actors<L> {
    owner: L,
    seq: L,
    exec: L,
    stranger: L,
}

/// Deploy, bonds, model, a batch of real leaves, the challenge window, finality and the consumer's proof check.
async fn batch_lifecycle<L: L1 + Clone>(a: Actors<L>) {
    let config = rollup_config(a.owner.sender());
    let rollup = Rollup::deploy(a.owner.clone(), &config).await.unwrap();
    assert_eq!(rollup.config().await.unwrap(), config);
    let by = |l: &L| rollup.with_l1(l.clone());

    // Bonds (and a revert path: an unbonded poster).
    by(&a.seq).register_sequencer(eth(1)).await.unwrap();
    by(&a.exec).register_executor(eth(2)).await.unwrap();
    assert!(
        rollup
            .is_active(Role::Sequencer, a.seq.sender())
            .await
            .unwrap()
    );
    assert!(
        rollup
            .is_active(Role::Executor, a.exec.sender())
            .await
            .unwrap()
    );
    let e = revert(
        by(&a.stranger)
            .post_batch(
                Bytes::from_static(b"x"),
                keccak256("x"),
                1,
                GENESIS_STATE_ROOT,
            )
            .await,
    );
    assert!(matches!(e, E::NotActiveSequencer(_)), "{e:?}");

    // A model.
    let model = smollm2_config();
    let (model_root, config_proof) = synthetic_model_root(&model).unwrap();
    rollup
        .register_model(model_root, model.clone(), config_proof)
        .await
        .unwrap();
    assert_eq!(
        rollup.model(model_root).await.unwrap().unwrap().configHash,
        config_hash(&model)
    );

    // A batch of real leaves.
    let mut leaves = sample_leaves(13, a.exec.sender());
    for leaf in &mut leaves {
        leaf.modelRoot = model_root;
    }
    let hashes: Vec<B256> = leaves.iter().map(InferenceLeaf::hash).collect();
    let root = protocol::batch_root(&hashes);
    let data = batch_bytes(&leaves);
    let prev = rollup.state_root().await.unwrap();
    assert_eq!(prev, GENESIS_STATE_ROOT);
    let posted = by(&a.seq)
        .post_batch(data.clone(), root, hashes.len() as u64, prev)
        .await
        .unwrap();
    assert_eq!(posted.batch_id, 1);
    assert_eq!(posted.state_root, next_state_root(GENESIS_STATE_ROOT, root));
    assert_eq!(posted.da_commitment, keccak256(&data));
    assert_eq!(rollup.state_root().await.unwrap(), posted.state_root);
    assert_eq!(rollup.batch_data(1).await.unwrap(), data);
    let info = rollup.batch(1).await.unwrap().unwrap();
    assert_eq!(
        (info.batch_root, info.leaf_count, info.sequencer),
        (root, 13, a.seq.sender())
    );
    assert_eq!(info.posted_at, posted.receipt.block_timestamp);
    let events = rollup.events(0, None).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Ev::BatchPosted(p) if p.batchRoot == root))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Ev::ModelRegistered(m) if m.modelRoot == model_root))
    );

    // Pending until the window has passed.
    let proof0 = leaf_proof(&hashes, 0).unwrap();
    assert!(rollup.verify_leaf(1, hashes[0], &proof0).await.unwrap());
    assert!(!rollup.is_finalized(1, hashes[0], &proof0).await.unwrap());
    assert_eq!(rollup.leaf_status(1, 0).await.unwrap(), LeafStatus::Pending);
    let e = revert(by(&a.stranger).finalize(1).await);
    assert!(matches!(e, E::ChallengeWindowOpen(_)), "{e:?}");

    let advanced = a.stranger.advance_time(WINDOW).await.unwrap();
    assert!(advanced.timestamp >= info.posted_at + WINDOW);
    by(&a.stranger).finalize(1).await.unwrap();
    assert!(rollup.batch(1).await.unwrap().unwrap().finalized);
    for i in 0..hashes.len() as u64 {
        let proof = leaf_proof(&hashes, i).unwrap();
        assert!(
            rollup
                .is_finalized(1, hashes[i as usize], &proof)
                .await
                .unwrap(),
            "leaf {i}"
        );
        assert_eq!(rollup.leaf_status(1, i).await.unwrap(), LeafStatus::Final);
    }
    // A leaf under another index is not final.
    assert!(!rollup.is_finalized(1, hashes[1], &proof0).await.unwrap());
}

#[tokio::test]
async fn batch_lifecycle_on_embedded_chain() {
    let chain = EmbeddedChain::default();
    let a: Vec<Address> = dev::accounts().iter().map(|a| a.address).collect();
    batch_lifecycle(Actors {
        owner: chain.connect(a[0]),
        seq: chain.connect(a[1]),
        exec: chain.connect(a[2]),
        stranger: chain.connect(a[5]),
    })
    .await;
}

#[tokio::test]
async fn batch_lifecycle_on_anvil() {
    let n = net(RpcConfig::local()).await;
    batch_lifecycle(Actors {
        owner: n.owner.clone(),
        seq: n.seq.clone(),
        exec: n.exec.clone(),
        stranger: n.stranger.clone(),
    })
    .await;
}

// ---- RpcL1 basics ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn reads_blocks_balances_and_transactions() {
    let n = net(RpcConfig::local()).await;
    let l1 = &n.owner;
    assert_eq!(l1.chain_id().await.unwrap(), 31337);
    assert_eq!(l1.sender(), dev::accounts()[0].address);
    let genesis = l1.block(0).await.unwrap().unwrap();
    assert_eq!(genesis.number, 0);
    assert_eq!(l1.balance(n.seq.sender()).await.unwrap(), dev::DEV_BALANCE);

    let to = Address::repeat_byte(0x42);
    let r = l1
        .send(TxRequest::call(to, Bytes::new()).with_value(eth(3)))
        .await
        .unwrap();
    assert_eq!(r.block_number, 1);
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(l1.balance(to).await.unwrap(), eth(3));
    let b1 = l1.block(1).await.unwrap().unwrap();
    assert_eq!((b1.hash, b1.timestamp), (r.block_hash, r.block_timestamp));
    assert_eq!(l1.latest_block().await.unwrap(), b1);
    assert_eq!(l1.block(2).await.unwrap(), None);
    let tx = l1.transaction(r.tx_hash).await.unwrap().unwrap();
    assert_eq!(
        (tx.from, tx.to, tx.value, tx.block_number),
        (l1.sender(), Some(to), eth(3), 1)
    );
    assert_eq!(l1.transaction(B256::repeat_byte(1)).await.unwrap(), None);
    assert_eq!(l1.receipt(r.tx_hash).await.unwrap().unwrap(), r);

    // Time and blocks.
    let t = l1.advance_time(1000).await.unwrap();
    assert_eq!(t.number, 2);
    assert!(t.timestamp >= r.block_timestamp + 1000);
    let m = l1.mine().await.unwrap();
    assert_eq!(m.number, 3);
    assert!(m.timestamp >= t.timestamp);

    // The key never shows up in Debug output.
    let key = alloy::primitives::hex::encode(dev::DEV_KEYS[0]);
    let debug = format!("{l1:?}");
    assert!(
        !debug.contains(&key) && !debug.contains(&key[..16]),
        "{debug}"
    );
}

#[tokio::test]
async fn logs_are_split_into_ranges() {
    let mut config = RpcConfig::local();
    config.max_log_range = 2;
    let n = net(config).await;
    let seq = rollup_with_sequencer(&n).await;
    for i in 0..5 {
        post_tagged(&seq, &format!("batch {i}")).await;
    }
    let logs = n
        .owner
        .logs(&batch_posted_filter(seq.address()))
        .await
        .unwrap();
    assert_eq!(
        logs.iter().map(batch_id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    for log in &logs {
        let block = n.owner.block(log.block_number).await.unwrap().unwrap();
        assert_eq!(
            (log.block_hash, log.block_timestamp),
            (block.hash, block.timestamp)
        );
    }
    let tail = n
        .owner
        .logs(&batch_posted_filter(seq.address()).to_block(logs[1].block_number))
        .await
        .unwrap();
    assert_eq!(tail.len(), 2);
}

// ---- nonces --------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_sends_get_distinct_nonces() {
    let n = net(RpcConfig::local()).await;
    let sender = n.owner.sender();
    let (start, _) = pending_and_mined_nonce(&n.owner, sender).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10u8 {
        let l1 = n.owner.clone();
        set.spawn(async move {
            l1.send(
                TxRequest::call(Address::repeat_byte(0x10 + i), Bytes::new())
                    .with_value(U256::from(1000 + u64::from(i))),
            )
            .await
        });
    }
    let mut nonces = HashSet::new();
    let mut hashes = HashSet::new();
    while let Some(r) = set.join_next().await {
        let receipt = r.unwrap().unwrap();
        let tx = n
            .owner
            .provider()
            .get_transaction_by_hash(receipt.tx_hash)
            .await
            .unwrap()
            .unwrap();
        assert!(nonces.insert(alloy::consensus::Transaction::nonce(&tx)));
        assert!(hashes.insert(receipt.tx_hash));
    }
    assert_eq!(nonces, (start..start + 10).collect::<HashSet<_>>());
    for i in 0..10u8 {
        assert_eq!(
            n.owner
                .balance(Address::repeat_byte(0x10 + i))
                .await
                .unwrap(),
            U256::from(1000 + u64::from(i))
        );
    }
    assert_eq!(
        pending_and_mined_nonce(&n.owner, sender).await,
        (start + 10, start + 10)
    );
}

#[tokio::test]
async fn reverts_interleaved_with_sends_leak_no_nonce() {
    let n = net(RpcConfig::local()).await;
    let rollup = Rollup::deploy(n.owner.clone(), &rollup_config(n.owner.sender()))
        .await
        .unwrap();
    let sender = n.owner.sender();
    let (start, _) = pending_and_mined_nonce(&n.owner, sender).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10u8 {
        let l1 = n.owner.clone();
        let tx = if i % 2 == 0 {
            // Finalizing an unknown batch reverts during gas estimation.
            TxRequest::call(
                rollup.address(),
                InferenceRollup::finalizeCall {
                    batchId: U256::from(99),
                }
                .abi_encode(),
            )
        } else {
            TxRequest::call(Address::repeat_byte(0x20 + i), Bytes::new()).with_value(U256::from(7))
        };
        set.spawn(async move { (i, l1.send(tx).await) });
    }
    while let Some(r) = set.join_next().await {
        let (i, result) = r.unwrap();
        if i % 2 == 0 {
            let e = result.unwrap_err();
            assert!(
                matches!(e.decode_revert::<E>(), Some(E::UnknownBatch(_))),
                "{e:?}"
            );
        } else {
            result.unwrap();
        }
    }
    assert_eq!(
        pending_and_mined_nonce(&n.owner, sender).await,
        (start + 5, start + 5)
    );
}

#[tokio::test]
async fn a_revert_is_decoded_and_the_next_send_works() {
    let n = net(RpcConfig::local()).await;
    let seq = rollup_with_sequencer(&n).await;
    let (before, _) = pending_and_mined_nonce(&n.owner, n.seq.sender()).await;

    let e = revert(seq.register_sequencer(eth(1)).await);
    assert!(matches!(e, E::AlreadyRegistered(_)), "{e:?}");
    let e = revert(seq.finalize(7).await);
    assert!(matches!(e, E::UnknownBatch(_)), "{e:?}");
    // Raw: the same data the embedded chain reports.
    let raw = n
        .seq
        .send(TxRequest::call(
            seq.address(),
            InferenceRollup::finalizeCall {
                batchId: U256::from(7),
            }
            .abi_encode(),
        ))
        .await
        .unwrap_err();
    let expected = E::UnknownBatch(InferenceRollup::UnknownBatch {
        batchId: U256::from(7),
    });
    assert_eq!(
        raw.revert_data().unwrap().as_ref(),
        alloy::sol_types::SolInterface::abi_encode(&expected).as_slice()
    );
    // With an explicit gas limit the pre-flight is an eth_call; still not mined.
    let e = n
        .seq
        .send(
            TxRequest::call(
                seq.address(),
                InferenceRollup::finalizeCall {
                    batchId: U256::from(7),
                }
                .abi_encode(),
            )
            .with_gas_limit(200_000),
        )
        .await
        .unwrap_err();
    assert!(matches!(e.decode_revert::<E>(), Some(E::UnknownBatch(_))));
    // A call that reverts.
    let e = n
        .seq
        .call(TxRequest::call(
            seq.address(),
            InferenceRollup::finalizeCall {
                batchId: U256::from(7),
            }
            .abi_encode(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e.decode_revert::<E>(), Some(E::UnknownBatch(_))));

    assert_eq!(
        pending_and_mined_nonce(&n.owner, n.seq.sender()).await,
        (before, before)
    );
    let posted = post_tagged(&seq, "after the reverts").await;
    assert_eq!(posted.batch_id, 1);
    assert_eq!(
        pending_and_mined_nonce(&n.owner, n.seq.sender()).await,
        (before + 1, before + 1)
    );
}

#[tokio::test]
async fn nonce_resyncs_after_another_client_used_it() {
    let n = net(RpcConfig::local()).await;
    let a = n.seq.clone();
    // Another client for the same key: its own counter.
    let b = n.owner.with_signer(dev::accounts()[1].signer.clone());
    let to = Address::repeat_byte(0x77);
    a.send(TxRequest::call(to, Bytes::new()).with_value(U256::from(1)))
        .await
        .unwrap();
    b.send(TxRequest::call(to, Bytes::new()).with_value(U256::from(2)))
        .await
        .unwrap();
    // `a` believes its next nonce is 1, the node is at 2: "nonce too low", resync, success.
    a.send(TxRequest::call(to, Bytes::new()).with_value(U256::from(4)))
        .await
        .unwrap();
    assert_eq!(n.owner.balance(to).await.unwrap(), U256::from(7));
    assert_eq!(pending_and_mined_nonce(&n.owner, a.sender()).await, (3, 3));
}

#[tokio::test]
async fn a_revert_after_pre_flight_is_mined_and_decoded() {
    let mut config = RpcConfig::local();
    config.bump_after = Duration::from_secs(60);
    let n = net(config).await;
    let rollup = Rollup::deploy(n.owner.clone(), &rollup_config(n.owner.sender()))
        .await
        .unwrap();
    n.owner.set_automine(false).await.unwrap();
    let seq = rollup.with_l1(n.seq.clone());
    let register = InferenceRollup::registerSequencerCall {}.abi_encode();
    let first = tokio::spawn({
        let seq = seq.clone();
        async move { seq.register_sequencer(eth(1)).await }
    });
    // Wait for the first registration in the pool, then send a second one with a gas limit: its pre-flight
    // (`eth_call` on the latest block, where the first is not mined yet) passes, and it reverts in the block.
    let wait_pool = |k: u64| {
        let l1 = n.owner.clone();
        let who = n.seq.sender();
        async move {
            for _ in 0..400 {
                let (pending, mined) = pending_and_mined_nonce(&l1, who).await;
                if pending >= mined + k {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("transactions did not reach the pool");
        }
    };
    wait_pool(1).await;
    let second = tokio::spawn({
        let l1 = n.seq.clone();
        let to = rollup.address();
        async move {
            l1.send(
                TxRequest::call(to, register)
                    .with_value(eth(1))
                    .with_gas_limit(200_000),
            )
            .await
        }
    });
    wait_pool(2).await;
    n.owner.mine().await.unwrap();
    first.await.unwrap().unwrap();
    let e = second.await.unwrap().unwrap_err();
    let L1Error::Reverted { gas_used, .. } = &e else {
        panic!("expected a revert, got {e:?}");
    };
    assert!(*gas_used > 21_000, "mined: gas was used ({gas_used})");
    assert!(
        matches!(e.decode_revert::<E>(), Some(E::AlreadyRegistered(_))),
        "{e:?}"
    );
    // The nonce was used; the next send goes through.
    n.owner.set_automine(true).await.unwrap();
    let (pending, mined) = pending_and_mined_nonce(&n.owner, n.seq.sender()).await;
    assert_eq!((pending, mined), (2, 2));
    post_tagged(&seq, "next").await;
}

// ---- fees and confirmations ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stuck_transaction_is_replaced_with_higher_fees() {
    let mut config = RpcConfig::local();
    config.bump_after = Duration::from_millis(300);
    let n = net(config).await;
    let estimate = n.owner.provider().estimate_eip1559_fees().await.unwrap();
    n.owner.set_automine(false).await.unwrap();
    let to = Address::repeat_byte(0x99);
    let send = tokio::spawn({
        let l1 = n.seq.clone();
        async move {
            l1.send(TxRequest::call(to, Bytes::new()).with_value(U256::from(5)))
                .await
        }
    });
    // Long enough for at least two replacements.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!send.is_finished());
    n.owner.mine().await.unwrap();
    let receipt = send.await.unwrap().unwrap();
    let tx = n
        .owner
        .provider()
        .get_transaction_by_hash(receipt.tx_hash)
        .await
        .unwrap()
        .unwrap();
    use alloy::consensus::Transaction as _;
    assert_eq!(tx.nonce(), 0);
    let twice = |fee: u128| {
        let once = fee + (fee * 125).div_ceil(1000);
        once + (once * 125).div_ceil(1000)
    };
    assert!(
        tx.max_fee_per_gas() >= twice(estimate.max_fee_per_gas),
        "{} < {}",
        tx.max_fee_per_gas(),
        twice(estimate.max_fee_per_gas)
    );
    assert!(
        tx.max_priority_fee_per_gas().unwrap_or_default()
            >= twice(estimate.max_priority_fee_per_gas)
    );
    assert_eq!(n.owner.balance(to).await.unwrap(), U256::from(5));
    // Only one version was mined; nothing is left in the pool.
    assert_eq!(
        pending_and_mined_nonce(&n.owner, n.seq.sender()).await,
        (1, 1)
    );
}

#[tokio::test]
async fn send_waits_for_confirmations() {
    let mut config = RpcConfig::local();
    config.confirmations = 3;
    let n = net(config).await;
    let send = tokio::spawn({
        let l1 = n.seq.clone();
        async move {
            l1.send(
                TxRequest::call(Address::repeat_byte(1), Bytes::new()).with_value(U256::from(1)),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!send.is_finished(), "returned with one confirmation");
    n.owner.mine().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!send.is_finished(), "returned with two confirmations");
    let third = n.owner.mine().await.unwrap();
    let receipt = send.await.unwrap().unwrap();
    assert_eq!(receipt.block_number + 2, third.number);
}

// ---- transport failures and non-development nodes ------------------------------------------------------------------

/// A JSON-RPC server on a loopback port: `answer(method, request number)` gives `Some(result JSON)`, or `None` for
/// HTTP 503. Unknown methods get "Method not found".
struct ScriptedNode {
    url: String,
    requests: Arc<AtomicUsize>,
}

fn scripted_node(
    answer: impl Fn(&str, usize) -> Option<String> + Send + Sync + 'static,
) -> ScriptedNode {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let count = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let answer = Arc::clone(&answer);
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let method = req["method"].as_str().unwrap_or_default().to_string();
                    let response = match answer(&method, n) {
                        None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                            .to_string(),
                        Some(result) => {
                            let body = if let Some(error) = result.strip_prefix("error:") {
                                format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, req["id"])
                            } else {
                                format!(
                                    r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
                                    req["id"]
                                )
                            };
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                    };
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    ScriptedNode { url, requests }
}

fn fast_retries(max_retries: u32) -> RpcConfig {
    RpcConfig {
        retry: RetryConfig {
            max_retries,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        ..RpcConfig::local()
    }
}

#[tokio::test]
async fn transport_errors_are_retried_with_backoff() {
    // 503 twice, then an answer.
    let node = scripted_node(|method, n| match (method, n) {
        (_, 0 | 1) => None,
        ("eth_chainId", _) => Some(r#""0x7a69""#.into()),
        _ => Some(r#"error:{"code":-32601,"message":"Method not found"}"#.into()),
    });
    let signer = dev::accounts()[0].signer.clone();
    let l1 = RpcL1::connect(&node.url, signer.clone(), fast_retries(3))
        .await
        .unwrap();
    assert_eq!(l1.chain_id().await.unwrap(), 31337);
    assert_eq!(node.requests.load(Ordering::SeqCst), 3);

    // Always 503: gives up after the retries.
    let down = scripted_node(|_, _| None);
    let e = RpcL1::connect(&down.url, signer.clone(), fast_retries(2))
        .await
        .unwrap_err();
    assert!(matches!(e, L1Error::Backend(_)), "{e:?}");
    assert_eq!(down.requests.load(Ordering::SeqCst), 3);

    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = RpcL1::connect(
        &format!("http://127.0.0.1:{port}/v3/secret-key"),
        signer,
        fast_retries(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, L1Error::Backend(_)), "{e:?}");
    assert!(!e.to_string().contains("secret-key"), "{e}");
}

#[tokio::test]
async fn time_travel_is_unsupported_on_production_nodes() {
    let node = scripted_node(|method, _| {
        match method {
        "eth_chainId" => Some(r#""0x1""#.into()),
        _ => Some(r#"error:{"code":-32601,"message":"the method evm_mine does not exist/is not available"}"#.into()),
    }
    });
    let l1 = RpcL1::connect(
        &node.url,
        dev::accounts()[0].signer.clone(),
        fast_retries(0),
    )
    .await
    .unwrap();
    assert!(matches!(
        l1.advance_time(10).await,
        Err(L1Error::Unsupported(_))
    ));
    assert!(matches!(l1.mine().await, Err(L1Error::Unsupported(_))));
    assert!(matches!(l1.snapshot().await, Err(L1Error::Unsupported(_))));
}

// ---- the log follower ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn follower_delivers_every_batch_once_across_restarts() {
    let n = net(RpcConfig::local()).await;
    let seq = rollup_with_sequencer(&n).await;
    let filter = batch_posted_filter(seq.address());
    let config = FollowerConfig {
        max_range: 3,
        ..FollowerConfig::local()
    };
    let store = MemoryCursorStore::default();
    let mut committed = Vec::new();
    let mut ids = HashSet::new();
    let mut record = |deliveries: &[Delivery]| {
        for d in deliveries {
            for log in d.logs() {
                assert!(ids.insert(LogId::of(log)), "delivered twice: {log:?}");
                committed.push(batch_id(log));
            }
        }
    };

    for i in 1..=3 {
        post_tagged(&seq, &format!("batch {i}")).await;
    }
    let mut f = LogFollower::new(
        n.owner.clone(),
        filter.clone(),
        config.clone(),
        store.clone(),
    )
    .await
    .unwrap();
    record(&drain(&mut f).await);
    assert!(f.poll().await.unwrap().is_none());

    // A crash between delivery and commit: the logs come again after the restart.
    for i in 4..=5 {
        post_tagged(&seq, &format!("batch {i}")).await;
    }
    let uncommitted = f.poll().await.unwrap().unwrap();
    assert_eq!(batch_id(&uncommitted.logs()[0]), 4);
    drop(f);
    let mut f = LogFollower::new(
        n.owner.clone(),
        filter.clone(),
        config.clone(),
        store.clone(),
    )
    .await
    .unwrap();
    record(&drain(&mut f).await);

    // A clean restart: only what is new.
    post_tagged(&seq, "batch 6").await;
    drop(f);
    let mut f = LogFollower::new(n.owner.clone(), filter, config, store.clone())
        .await
        .unwrap();
    record(&drain(&mut f).await);
    assert_eq!(committed, vec![1, 2, 3, 4, 5, 6]);
    let saved = store.get().unwrap();
    assert_eq!(
        saved.next_block(),
        n.owner.latest_block().await.unwrap().number + 1
    );
    // Committing a delivery twice is refused.
    let stale = Delivery::Logs {
        logs: Vec::new(),
        from_block: 0,
        to_block: 0,
        cursor: Cursor::start(1),
        base: Cursor::start(0),
    };
    assert!(f.commit(&stale).await.is_err());
}

#[tokio::test]
async fn follower_rewinds_on_reorg_and_delivers_the_new_log() {
    let n = net(RpcConfig::local()).await;
    let seq = rollup_with_sequencer(&n).await;
    let filter = batch_posted_filter(seq.address());
    let store = MemoryCursorStore::default();
    let mut f = LogFollower::new(
        n.owner.clone(),
        filter,
        FollowerConfig::local(),
        store.clone(),
    )
    .await
    .unwrap();

    let first = post_tagged(&seq, "batch 1").await;
    let snapshot = n.owner.snapshot().await.unwrap();
    let old = post_tagged(&seq, "batch 2, old").await;
    let delivered: Vec<_> = drain(&mut f)
        .await
        .iter()
        .flat_map(|d| d.logs().to_vec())
        .collect();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].tx_hash, old.receipt.tx_hash);

    // Roll the chain back and post different data at the same height.
    assert!(n.owner.revert_to(snapshot).await.unwrap());
    n.seq.resync_nonce().await;
    let new = post_tagged(&seq, "batch 2, new").await;
    assert_eq!(new.batch_id, 2);
    assert_eq!(new.receipt.block_number, old.receipt.block_number);
    assert_ne!(new.receipt.block_hash, old.receipt.block_hash);

    let reorg = f.poll().await.unwrap().unwrap();
    let Delivery::Reorg {
        old_tip,
        last_agreed,
        resume_from,
        ..
    } = &reorg
    else {
        panic!("expected a reorg, got {reorg:?}");
    };
    assert_eq!(old_tip.hash, old.receipt.block_hash);
    assert_eq!(last_agreed.unwrap().number, first.receipt.block_number);
    assert_eq!(*resume_from, first.receipt.block_number + 1);
    f.commit(&reorg).await.unwrap();
    assert_eq!(store.get().unwrap().next_block(), *resume_from);

    let redelivered: Vec<_> = drain(&mut f)
        .await
        .iter()
        .flat_map(|d| d.logs().to_vec())
        .collect();
    assert_eq!(redelivered.len(), 1);
    let ev = InferenceRollup::BatchPosted::decode_log(&redelivered[0].inner).unwrap();
    assert_eq!(ev.batchId, U256::from(2));
    assert_eq!(ev.daCommitment, keccak256("batch 2, new"));
    assert_eq!(redelivered[0].block_hash, new.receipt.block_hash);
}

#[tokio::test]
async fn follower_waits_for_confirmations_and_persists_to_a_file() {
    let chain = EmbeddedChain::default();
    let owner = dev::accounts()[0].address;
    let seq_addr = dev::accounts()[1].address;
    let rollup = Rollup::deploy(chain.connect(owner), &rollup_config(owner))
        .await
        .unwrap();
    let seq = rollup.with_l1(chain.connect(seq_addr));
    seq.register_sequencer(eth(1)).await.unwrap();
    let path = std::env::temp_dir().join(format!(
        "verinfer-follower-{}-{:?}.cursor",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&path);
    let config = FollowerConfig {
        confirmations: 3,
        ..FollowerConfig::local()
    };
    let filter = batch_posted_filter(rollup.address());
    let mut f = LogFollower::new(
        chain.connect(owner),
        filter.clone(),
        config.clone(),
        FileCursorStore::new(&path),
    )
    .await
    .unwrap();

    let prev = seq.state_root().await.unwrap();
    seq.post_batch(Bytes::from_static(b"d"), keccak256("d"), 1, prev)
        .await
        .unwrap();
    assert!(f.poll().await.unwrap().is_none(), "one confirmation");
    chain.connect(owner).mine().await.unwrap();
    assert!(f.poll().await.unwrap().is_none(), "two confirmations");
    chain.connect(owner).mine().await.unwrap();
    let d = f.poll().await.unwrap().unwrap();
    assert_eq!(d.logs().len(), 1);
    f.commit(&d).await.unwrap();

    // A new follower on the same file resumes after the delivered block.
    let f2 = LogFollower::new(
        chain.connect(owner),
        filter,
        config,
        FileCursorStore::new(&path),
    )
    .await
    .unwrap();
    assert_eq!(f2.cursor(), d.cursor());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn follower_runs_in_a_spawned_task() {
    let chain = EmbeddedChain::default();
    let owner = dev::accounts()[0].address;
    let rollup = Rollup::deploy(chain.connect(owner), &rollup_config(owner))
        .await
        .unwrap();
    let mut f = LogFollower::new(
        chain.connect(owner),
        LogFilter::new(rollup.address(), 0),
        FollowerConfig::local(),
        MemoryCursorStore::default(),
    )
    .await
    .unwrap();
    // `LogFollower` futures are `Send`: a role can run its follower as a tokio task.
    let delivery = tokio::spawn(async move {
        let d = f.next().await.unwrap();
        f.commit(&d).await.unwrap();
        d
    })
    .await
    .unwrap();
    assert!(!delivery.logs().is_empty());
}

#[test]
fn anvil_is_stopped_on_drop() {
    let anvil = Anvil::spawn().unwrap_or_else(|e| panic!("{e}"));
    let port = anvil.port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(anvil);
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn anvil_endpoint_serves_the_dev_accounts() {
    let n = net(RpcConfig::local()).await;
    assert!(n.anvil.endpoint().starts_with("http://127.0.0.1:"));
    for a in dev::accounts() {
        assert_eq!(n.owner.balance(a.address).await.unwrap(), dev::DEV_BALANCE);
    }
}

/// A blob batch on a real anvil, sent in both sidecar forms (cell proofs by default, then v0): `blobhash` in the
/// contract sees the versioned hashes, anvil keeps the blobs and `batch_data` reads them back
/// (`anvil_getBlobsByTransactionHash`) and checks them against the DA commitment.
#[tokio::test]
async fn blob_batches_on_anvil() {
    use verinfer_l1_contracts::blobs;
    use verinfer_l1_contracts::gas::pseudo_random_bytes;
    use verinfer_l1_contracts::rpc::BlobSidecarFormat;
    let n = net(RpcConfig::local()).await;
    assert_eq!(n.owner.config().blob_sidecar, BlobSidecarFormat::Eip7594);
    let seq = rollup_with_sequencer(&n).await;
    let reader = seq.with_l1(n.stranger.clone());
    for (i, format) in [BlobSidecarFormat::Eip7594, BlobSidecarFormat::Eip4844]
        .into_iter()
        .enumerate()
    {
        let l1 = n.seq.with_config(RpcConfig {
            blob_sidecar: format,
            ..RpcConfig::local()
        });
        let by = seq.with_l1(l1);
        let data = pseudo_random_bytes(150_000 + i, i as u64);
        let prev = by.state_root().await.unwrap();
        let root = keccak256(&data);
        let posted = by
            .post_batch_blobs(&data, root, 3, B256::repeat_byte(9), prev)
            .await
            .unwrap();
        assert_eq!(posted.batch_id, i as u64 + 1);
        assert_eq!(posted.blob_versioned_hashes.len(), 2);
        let tx = n
            .stranger
            .transaction(posted.receipt.tx_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tx.blob_versioned_hashes, posted.blob_versioned_hashes);
        assert_eq!(
            posted.da_commitment,
            blobs::da_commitment(&posted.blob_versioned_hashes)
        );
        assert_eq!(
            reader.batch_data(posted.batch_id).await.unwrap(),
            Bytes::from(data)
        );
        println!(
            "postBatchBlobs on anvil ({format:?}): {} gas",
            posted.receipt.gas_used
        );
    }
    // Without blobs the contract refuses (the estimate reverts: nothing is sent).
    let call = InferenceRollup::postBatchBlobsCall {
        batchRoot: keccak256("x"),
        leafCount: 1,
        sigRoot: B256::ZERO,
        prevStateRoot: seq.state_root().await.unwrap(),
    };
    let e = n
        .seq
        .send(TxRequest::call(seq.address(), call.abi_encode()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.decode_revert::<E>(), Some(E::NoBlobs(_))),
        "{e:?}"
    );
}

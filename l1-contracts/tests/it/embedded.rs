//! The embedded chain: accounts, blocks, time, reverts, logs, automine.

use crate::common::*;
use alloy::primitives::{Address, B256, Bytes, U256, address, keccak256};
use alloy::sol_types::SolEvent;
use verinfer_l1_contracts::bindings::InferenceRollup;
use verinfer_l1_contracts::{
    ChainConfig, Clock, EmbeddedChain, L1, L1Error, LogFilter, TxRequest, dev,
};

#[test]
fn dev_accounts_are_anvils() {
    let a = dev::accounts();
    assert_eq!(a.len(), 10);
    assert_eq!(
        a[0].address,
        address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    );
    assert_eq!(
        a[1].address,
        address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    );
    assert_eq!(
        a[9].address,
        address!("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720")
    );
}

#[tokio::test]
async fn blocks_time_and_balances() {
    let chain = EmbeddedChain::default();
    let [alice, bob] = [dev::accounts()[0].address, dev::accounts()[1].address];
    let l1 = chain.connect(alice);
    assert_eq!(l1.sender(), alice);
    assert_eq!(l1.chain_id().await.unwrap(), 31337);
    let genesis = l1.latest_block().await.unwrap();
    assert_eq!((genesis.number, genesis.timestamp), (0, 1_700_000_000));
    assert_eq!(l1.balance(alice).await.unwrap(), dev::DEV_BALANCE);

    let r = l1
        .send(TxRequest::call(bob, Bytes::new()).with_value(eth(1)))
        .await
        .unwrap();
    assert_eq!(r.block_number, 1);
    assert!(r.block_timestamp > genesis.timestamp);
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(l1.balance(bob).await.unwrap(), dev::DEV_BALANCE + eth(1));
    assert_eq!(l1.balance(alice).await.unwrap(), dev::DEV_BALANCE - eth(1));
    let b1 = l1.block(1).await.unwrap().unwrap();
    assert_eq!(b1.hash, r.block_hash);
    assert_eq!(l1.block(2).await.unwrap(), None);

    let t = l1.advance_time(1000).await.unwrap();
    assert_eq!(t.number, 2);
    assert_eq!(t.timestamp, r.block_timestamp + 1000);
    let m = l1.mine().await.unwrap();
    assert_eq!((m.number, m.timestamp), (3, t.timestamp + 1));

    chain.set_balance(bob, U256::from(5)).unwrap();
    assert_eq!(l1.balance(bob).await.unwrap(), U256::from(5));

    let tx = l1.transaction(r.tx_hash).await.unwrap().unwrap();
    assert_eq!(
        (tx.from, tx.to, tx.value, tx.block_number),
        (alice, Some(bob), eth(1), 1)
    );
    assert_eq!(l1.transaction(B256::ZERO).await.unwrap(), None);
    assert_eq!(chain.receipt(r.tx_hash).unwrap(), r);
}

#[tokio::test]
async fn reverts_are_not_mined() {
    let fx = Fx::new().await;
    let before = fx.chain.latest_block();
    let err = fx
        .by(fx.stranger)
        .post_batch(Bytes::from_static(b"x"), keccak256("r"), 1, B256::ZERO)
        .await
        .unwrap_err();
    assert!(err.as_revert().is_some());
    assert_eq!(fx.chain.latest_block(), before);
    // The nonce did not move: the next deployment lands at the address of nonce 0.
    let l1 = fx.chain.connect(fx.stranger);
    let r = l1
        .send(TxRequest::create(InferenceRollup::BYTECODE.clone()))
        .await;
    // Bare bytecode without constructor args reverts in the constructor (decoding fails), also not mined.
    assert!(matches!(r, Err(L1Error::Reverted { .. })));
    assert_eq!(fx.chain.latest_block(), before);

    // Insufficient balance is rejected before execution.
    let poor = Address::repeat_byte(0x77);
    let r = fx
        .chain
        .connect(poor)
        .send(TxRequest::call(fx.owner, Bytes::new()).with_value(eth(1)))
        .await;
    assert!(matches!(r, Err(L1Error::Rejected(_))), "{r:?}");
    // Out of gas halts.
    let r = fx
        .chain
        .connect(fx.seq)
        .send(
            TxRequest::call(
                fx.rollup.address(),
                alloy::sol_types::SolCall::abi_encode(&InferenceRollup::registerSequencerCall {}),
            )
            .with_value(eth(1))
            .with_gas_limit(22_000),
        )
        .await;
    assert!(matches!(r, Err(L1Error::Halted { .. })), "{r:?}");
}

#[tokio::test]
async fn calls_do_not_change_state() {
    let fx = Fx::new().await;
    let l1 = fx.chain.connect(fx.seq);
    let call = alloy::sol_types::SolCall::abi_encode(&InferenceRollup::registerSequencerCall {});
    l1.call(TxRequest::call(fx.rollup.address(), call).with_value(eth(1)))
        .await
        .unwrap();
    assert_eq!(fx.balance(fx.rollup.address()).await, U256::ZERO);
    assert!(
        !fx.rollup
            .is_active(verinfer_l1_contracts::Role::Sequencer, fx.seq)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn one_block_per_batch_of_transactions() {
    let fx = Fx::new().await;
    let start = fx.chain.latest_block();
    fx.chain.set_automine(false);
    let r1 = fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    let r2 = fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
    // Executed at once (calls see them) but not yet mined.
    assert!(
        fx.rollup
            .is_active(verinfer_l1_contracts::Role::Executor, fx.exec)
            .await
            .unwrap()
    );
    assert_eq!(fx.chain.latest_block(), start);
    assert_eq!(r1.block_number, start.number + 1);
    assert_eq!(r2.block_number, start.number + 1);
    assert_eq!(r1.block_hash, B256::ZERO);
    let block = fx.chain.connect(fx.owner).mine().await.unwrap();
    assert_eq!(block.number, start.number + 1);
    let r1 = fx.chain.receipt(r1.tx_hash).unwrap();
    let r2 = fx.chain.receipt(r2.tx_hash).unwrap();
    assert_eq!((r1.block_hash, r2.block_hash), (block.hash, block.hash));
    // Log indices run across the block.
    assert_eq!(
        r1.logs.iter().map(|l| l.log_index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(
        r2.logs.iter().map(|l| l.log_index).collect::<Vec<_>>(),
        vec![2, 3]
    );
    fx.chain.set_automine(true);
    let r3 = fx
        .by(fx.exec)
        .top_up(verinfer_l1_contracts::Role::Executor, eth(1))
        .await
        .unwrap();
    assert_eq!(r3.block_number, block.number + 1);
    assert_ne!(r3.block_hash, B256::ZERO);
}

#[tokio::test]
async fn log_filters() {
    let fx = Fx::ready().await;
    let l1 = fx.chain.connect(fx.owner);
    let all = l1
        .logs(&LogFilter::new(fx.rollup.address(), 0))
        .await
        .unwrap();
    assert!(all.len() >= 5);
    assert!(
        all.windows(2)
            .all(|w| (w[0].block_number, w[0].log_index) < (w[1].block_number, w[1].log_index))
    );
    let registered = l1
        .logs(
            &LogFilter::new(fx.rollup.address(), 0)
                .event(InferenceRollup::ExecutorRegistered::SIGNATURE_HASH),
        )
        .await
        .unwrap();
    assert_eq!(registered.len(), 1);
    let by_who = l1
        .logs(
            &LogFilter::new(fx.rollup.address(), 0)
                .event(InferenceRollup::BondChanged::SIGNATURE_HASH)
                .topic(2, fx.exec.into_word()),
        )
        .await
        .unwrap();
    assert_eq!(by_who.len(), 1);
    let none = l1
        .logs(&LogFilter::new(Address::repeat_byte(1), 0))
        .await
        .unwrap();
    assert!(none.is_empty());
    let latest = fx.chain.latest_block().number;
    assert!(
        l1.logs(&LogFilter::new(fx.rollup.address(), latest + 1))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn wall_clock() {
    let chain = EmbeddedChain::new(ChainConfig {
        clock: Clock::Wall,
        ..ChainConfig::default()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let l1 = chain.connect(dev::accounts()[0].address);
    let b = l1.mine().await.unwrap();
    assert!(b.timestamp >= now && b.timestamp <= now + 5);
    let later = l1.advance_time(3600).await.unwrap();
    assert!(later.timestamp >= now + 3600);
    let next = l1.mine().await.unwrap();
    assert!(next.timestamp > later.timestamp);
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<verinfer_l1_contracts::EmbeddedL1>();
    assert_send_sync::<verinfer_l1_contracts::Rollup<verinfer_l1_contracts::EmbeddedL1>>();
}

#[tokio::test]
async fn futures_run_on_a_multi_threaded_runtime() {
    let fx = Fx::ready().await;
    let rollup = fx.rollup.clone();
    let handle = tokio::task::spawn(async move { rollup.batch_count().await.unwrap() });
    // current_thread runtime: spawn still requires Send futures.
    assert_eq!(handle.await.unwrap(), 0);
}

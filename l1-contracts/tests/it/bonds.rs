//! Registration, top-up, withdrawal: happy paths and every revert.

use crate::common::*;
use alloy::primitives::U256;
use alloy::sol_types::SolEvent;
use verinfer_l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors as E};
use verinfer_l1_contracts::{BondStatus, Role, RollupConfig};

#[tokio::test]
async fn register_sequencer_and_executor() {
    let fx = Fx::new().await;
    let r = fx.by(fx.seq).register_sequencer(eth(3)).await.unwrap();
    let ev = InferenceRollup::SequencerRegistered::decode_log(&r.logs[1].inner).unwrap();
    assert_eq!((ev.sequencer, ev.bond), (fx.seq, eth(3)));
    let changed = InferenceRollup::BondChanged::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!((changed.who, changed.bond), (fx.seq, eth(3)));
    assert!(fx.rollup.is_active(Role::Sequencer, fx.seq).await.unwrap());
    assert!(!fx.rollup.is_active(Role::Executor, fx.seq).await.unwrap());

    let r = fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
    let ev = InferenceRollup::ExecutorRegistered::decode_log(&r.logs[1].inner).unwrap();
    assert_eq!((ev.executor, ev.bond), (fx.exec, eth(2)));
    let b = fx.rollup.bond(Role::Executor, fx.exec).await.unwrap();
    assert_eq!(
        (b.amount, b.status, b.unlock_at),
        (eth(2), BondStatus::Active, 0)
    );
    assert_eq!(fx.balance(fx.rollup.address()).await, eth(5));

    // One address may hold both roles.
    fx.by(fx.seq).register_executor(eth(2)).await.unwrap();
    assert!(fx.rollup.is_active(Role::Executor, fx.seq).await.unwrap());
}

#[tokio::test]
async fn underbonded_and_double_registration_revert() {
    let fx = Fx::new().await;
    let e = revert(
        fx.by(fx.seq)
            .register_sequencer(eth(1) - U256::from(1))
            .await,
    );
    assert!(
        matches!(e, E::InsufficientBond(x) if x.sent == eth(1) - U256::from(1) && x.required == eth(1))
    );
    let e = revert(fx.by(fx.exec).register_executor(eth(1)).await);
    assert!(matches!(e, E::InsufficientBond(x) if x.required == eth(2)));

    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    let e = revert(fx.by(fx.seq).register_sequencer(eth(1)).await);
    assert!(matches!(e, E::AlreadyRegistered(x) if x.who == fx.seq && x.role == 0));
    // Still registered while withdrawing.
    fx.by(fx.seq)
        .request_withdrawal(Role::Sequencer)
        .await
        .unwrap();
    let e = revert(fx.by(fx.seq).register_sequencer(eth(1)).await);
    assert!(matches!(e, E::AlreadyRegistered(_)));
    assert_eq!(fx.balance(fx.rollup.address()).await, eth(1));
}

#[tokio::test]
async fn top_up() {
    let fx = Fx::new().await;
    let e = revert(fx.by(fx.exec).top_up(Role::Executor, eth(1)).await);
    assert!(matches!(e, E::NotRegistered(x) if x.who == fx.exec));
    fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
    let e = revert(fx.by(fx.exec).top_up(Role::Executor, U256::ZERO).await);
    assert!(matches!(e, E::ZeroValue(_)));
    let r = fx.by(fx.exec).top_up(Role::Executor, eth(3)).await.unwrap();
    let ev = InferenceRollup::BondChanged::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!(ev.bond, eth(5));
    assert_eq!(
        fx.rollup
            .bond(Role::Executor, fx.exec)
            .await
            .unwrap()
            .amount,
        eth(5)
    );
    fx.by(fx.exec)
        .request_withdrawal(Role::Executor)
        .await
        .unwrap();
    let e = revert(fx.by(fx.exec).top_up(Role::Executor, eth(1)).await);
    assert!(matches!(e, E::BondWithdrawing(_)));
}

#[tokio::test]
async fn withdrawal_lifecycle() {
    let fx = Fx::new().await;
    fx.by(fx.seq).register_sequencer(eth(4)).await.unwrap();
    let e = revert(fx.by(fx.seq).withdraw(Role::Sequencer).await);
    assert!(matches!(e, E::NoWithdrawalRequested(_)));
    let e = revert(fx.by(fx.stranger).request_withdrawal(Role::Sequencer).await);
    assert!(matches!(e, E::NotRegistered(_)));

    let r = fx
        .by(fx.seq)
        .request_withdrawal(Role::Sequencer)
        .await
        .unwrap();
    let ev = InferenceRollup::WithdrawalRequested::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!(ev.amount, eth(4));
    assert_eq!(ev.unlockAt, r.block_timestamp + DELAY);
    // Inactive while withdrawing.
    assert!(!fx.rollup.is_active(Role::Sequencer, fx.seq).await.unwrap());
    let b = fx.rollup.bond(Role::Sequencer, fx.seq).await.unwrap();
    assert_eq!(b.status, BondStatus::Withdrawing);
    let e = revert(fx.by(fx.seq).request_withdrawal(Role::Sequencer).await);
    assert!(matches!(e, E::WithdrawalAlreadyRequested(_)));

    // Not before the delay.
    fx.advance(DELAY - 10).await;
    let e = revert(fx.by(fx.seq).withdraw(Role::Sequencer).await);
    assert!(matches!(e, E::WithdrawalNotReady(x) if x.unlockAt == ev.unlockAt));

    fx.advance(10).await;
    let before = fx.balance(fx.seq).await;
    let r = fx.by(fx.seq).withdraw(Role::Sequencer).await.unwrap();
    let w = InferenceRollup::Withdrawn::decode_log(&r.logs[1].inner).unwrap();
    assert_eq!((w.who, w.amount), (fx.seq, eth(4)));
    // Gas is free on the embedded chain: the balance moves by exactly the bond.
    assert_eq!(fx.balance(fx.seq).await, before + eth(4));
    assert_eq!(fx.balance(fx.rollup.address()).await, U256::ZERO);
    let b = fx.rollup.bond(Role::Sequencer, fx.seq).await.unwrap();
    assert_eq!((b.status, b.amount), (BondStatus::None, U256::ZERO));
    let e = revert(fx.by(fx.seq).withdraw(Role::Sequencer).await);
    assert!(matches!(e, E::NoWithdrawalRequested(_)));

    // Registering again works after a full withdrawal.
    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    assert!(fx.rollup.is_active(Role::Sequencer, fx.seq).await.unwrap());
}

#[tokio::test]
async fn roles_are_separate_bonds() {
    let fx = Fx::new().await;
    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    fx.by(fx.seq).register_executor(eth(2)).await.unwrap();
    fx.by(fx.seq)
        .request_withdrawal(Role::Executor)
        .await
        .unwrap();
    assert!(fx.rollup.is_active(Role::Sequencer, fx.seq).await.unwrap());
    assert!(!fx.rollup.is_active(Role::Executor, fx.seq).await.unwrap());
    let e = revert(fx.by(fx.seq).withdraw(Role::Sequencer).await);
    assert!(matches!(e, E::NoWithdrawalRequested(_)));
}

#[tokio::test]
async fn constructor_validation() {
    let fx = Fx::new().await;
    let l1 = fx.chain.connect(fx.owner);
    let good = RollupConfig {
        min_sequencer_bond: eth(1),
        min_executor_bond: eth(1),
        withdrawal_delay: 100,
        challenge_window: 100,
        owner: fx.owner,
    };
    let deploy = |c: RollupConfig| {
        let l1 = l1.clone();
        async move { verinfer_l1_contracts::Rollup::deploy(l1, &c).await }
    };
    let e = revert(
        deploy(RollupConfig {
            min_sequencer_bond: U256::ZERO,
            ..good.clone()
        })
        .await,
    );
    assert!(matches!(e, E::ZeroMinBond(_)));
    let e = revert(
        deploy(RollupConfig {
            min_executor_bond: U256::ZERO,
            ..good.clone()
        })
        .await,
    );
    assert!(matches!(e, E::ZeroMinBond(_)));
    let e = revert(
        deploy(RollupConfig {
            challenge_window: 0,
            withdrawal_delay: 0,
            ..good.clone()
        })
        .await,
    );
    assert!(matches!(e, E::ZeroChallengeWindow(_)));
    let e = revert(
        deploy(RollupConfig {
            withdrawal_delay: 99,
            ..good.clone()
        })
        .await,
    );
    assert!(
        matches!(e, E::WithdrawalDelayShorterThanChallengeWindow(x) if x.withdrawalDelay == 99)
    );
    let e = revert(
        deploy(RollupConfig {
            owner: alloy::primitives::Address::ZERO,
            ..good.clone()
        })
        .await,
    );
    assert!(matches!(e, E::ZeroAddress(_)));
    let r = deploy(good.clone()).await.unwrap();
    assert_eq!(r.config().await.unwrap(), good);
}

#[tokio::test]
async fn ownership() {
    let fx = Fx::new().await;
    assert_eq!(fx.rollup.owner().await.unwrap(), fx.owner);
    let e = revert(fx.by(fx.stranger).transfer_ownership(fx.stranger).await);
    assert!(matches!(e, E::NotOwner(x) if x.caller == fx.stranger));
    let e = revert(
        fx.rollup
            .transfer_ownership(alloy::primitives::Address::ZERO)
            .await,
    );
    assert!(matches!(e, E::ZeroAddress(_)));
    fx.rollup.transfer_ownership(fx.stranger).await.unwrap();
    assert_eq!(fx.rollup.owner().await.unwrap(), fx.stranger);
    let e = revert(fx.rollup.set_dispute_game(fx.game).await);
    assert!(matches!(e, E::NotOwner(_)));
    fx.by(fx.stranger).set_dispute_game(fx.game).await.unwrap();
}

#[tokio::test]
async fn failed_payouts_revert() {
    use crate::common::rejecting_proxy;
    use verinfer_l1_contracts::{L1, TxRequest};
    let fx = Fx::ready().await;
    let proxy = rejecting_proxy(&fx.chain, fx.stranger, fx.rollup.address()).await;
    let via_proxy = |call: Vec<u8>, value: U256| {
        let l1 = fx.chain.connect(fx.stranger);
        async move {
            l1.send(TxRequest::call(proxy, call).with_value(value))
                .await
        }
    };
    use alloy::sol_types::SolCall;
    via_proxy(
        InferenceRollup::registerSequencerCall {}.abi_encode(),
        eth(1),
    )
    .await
    .unwrap();
    assert!(fx.rollup.is_active(Role::Sequencer, proxy).await.unwrap());
    via_proxy(
        InferenceRollup::requestWithdrawalCall { role: 0 }.abi_encode(),
        U256::ZERO,
    )
    .await
    .unwrap();
    fx.advance(DELAY).await;
    let err = via_proxy(
        InferenceRollup::withdrawCall { role: 0 }.abi_encode(),
        U256::ZERO,
    )
    .await
    .unwrap_err();
    let e = err.decode_revert::<E>().unwrap();
    assert!(matches!(e, E::TransferFailed(x) if x.to == proxy && x.amount == eth(1)));
    // The bond is still there.
    assert_eq!(
        fx.rollup.bond(Role::Sequencer, proxy).await.unwrap().amount,
        eth(1)
    );

    // Credits to a contract that rejects ETH cannot be claimed either.
    fx.by(fx.game)
        .slash(Role::Executor, fx.exec, eth(2), proxy, eth(1))
        .await
        .unwrap();
    let err = via_proxy(InferenceRollup::claimCall {}.abi_encode(), U256::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(
        err.decode_revert::<E>().unwrap(),
        E::TransferFailed(_)
    ));
    assert_eq!(fx.rollup.credits(proxy).await.unwrap(), eth(1));
}

#[tokio::test]
async fn bonds_are_capped_at_128_bits() {
    let fx = Fx::new().await;
    let huge = U256::from(1) << 130;
    fx.chain.set_balance(fx.seq, huge).unwrap();
    let max = U256::from(u128::MAX);
    let e = revert(fx.by(fx.seq).register_sequencer(max + U256::from(1)).await);
    assert!(matches!(e, E::BondTooLarge(x) if x.amount == max + U256::from(1)));
    fx.by(fx.seq).register_sequencer(max).await.unwrap();
    let e = revert(fx.by(fx.seq).top_up(Role::Sequencer, U256::from(1)).await);
    assert!(matches!(e, E::BondTooLarge(_)));
}

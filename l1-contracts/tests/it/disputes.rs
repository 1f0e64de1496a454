//! The dispute-game hooks: only the game may call them, they keep their invariants, and they plug into finality,
//! withdrawals and leaf status.

use crate::common::*;
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolEvent;
use protocol::leaf_proof;
use verinfer_l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors as E};
use verinfer_l1_contracts::{LeafStatus, Role};

#[tokio::test]
async fn only_the_dispute_game_calls_hooks() {
    let fx = Fx::new().await;
    let leaves = sample_leaves(2, fx.exec);
    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    fx.post(&leaves).await;
    // No game set yet: nobody may call.
    for who in [fx.owner, fx.game, fx.stranger] {
        let r = fx.by(who);
        assert!(
            matches!(revert(r.dispute_opened(1, fx.exec).await), E::NotDisputeGame(x) if x.caller == who)
        );
        assert!(matches!(
            revert(r.dispute_closed(1, fx.exec).await),
            E::NotDisputeGame(_)
        ));
        assert!(matches!(
            revert(r.invalidate_leaf(1, 0).await),
            E::NotDisputeGame(_)
        ));
        assert!(matches!(
            revert(
                r.slash(Role::Executor, fx.exec, eth(1), who, U256::ZERO)
                    .await
            ),
            E::NotDisputeGame(_)
        ));
    }
    // Set once, by the owner only.
    assert!(matches!(
        revert(fx.by(fx.stranger).set_dispute_game(fx.game).await),
        E::NotOwner(_)
    ));
    assert!(matches!(
        revert(fx.rollup.set_dispute_game(Address::ZERO).await),
        E::ZeroAddress(_)
    ));
    fx.rollup.set_dispute_game(fx.game).await.unwrap();
    assert_eq!(fx.rollup.dispute_game().await.unwrap(), fx.game);
    assert!(matches!(
        revert(fx.rollup.set_dispute_game(fx.stranger).await),
        E::DisputeGameAlreadySet(x) if x.disputeGame == fx.game
    ));
    assert!(matches!(
        revert(fx.by(fx.owner).invalidate_leaf(1, 0).await),
        E::NotDisputeGame(_)
    ));
    fx.by(fx.game).invalidate_leaf(1, 0).await.unwrap();
}

#[tokio::test]
async fn open_dispute_blocks_finality_and_withdrawal() {
    let fx = Fx::ready().await;
    let game = fx.by(fx.game);
    let leaves = sample_leaves(4, fx.exec);
    let (_, hashes) = fx.post(&leaves).await;

    assert!(matches!(
        revert(game.dispute_opened(2, fx.exec).await),
        E::UnknownBatch(_)
    ));
    assert!(matches!(
        revert(game.dispute_closed(1, fx.exec).await),
        E::NoOpenDispute(_)
    ));
    let r = game.dispute_opened(1, fx.exec).await.unwrap();
    let ev = InferenceRollup::DisputeOpened::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!((ev.batchId, ev.executor), (U256::from(1), fx.exec));

    // The executor cannot leave while the dispute is open.
    fx.by(fx.exec)
        .request_withdrawal(Role::Executor)
        .await
        .unwrap();
    fx.advance(DELAY).await;
    let e = revert(fx.by(fx.exec).withdraw(Role::Executor).await);
    assert!(
        matches!(e, E::BondLocked(x) if x.executor == fx.exec && x.openDisputes == U256::from(1))
    );
    // The batch cannot finalize while the dispute is open, even after the window.
    let e = revert(fx.rollup.finalize(1).await);
    assert!(matches!(e, E::BatchUnderDispute(x) if x.openDisputes == U256::from(1)));
    // No new dispute after the window.
    let e = revert(game.dispute_opened(1, fx.exec).await);
    assert!(matches!(e, E::ChallengeWindowClosed(_)));

    // The game proves leaf 2 wrong.
    let r = game.invalidate_leaf(1, 2).await.unwrap();
    let ev = InferenceRollup::LeafInvalidated::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!((ev.batchId, ev.index), (U256::from(1), U256::from(2)));
    assert!(matches!(
        revert(game.invalidate_leaf(1, 2).await),
        E::LeafAlreadyInvalid(_)
    ));
    assert!(
        matches!(revert(game.invalidate_leaf(1, 4).await), E::LeafIndexOutOfRange(x) if x.leafCount == U256::from(4))
    );
    assert!(matches!(
        revert(game.invalidate_leaf(9, 0).await),
        E::UnknownBatch(_)
    ));
    assert_eq!(
        fx.rollup.leaf_status(1, 2).await.unwrap(),
        LeafStatus::Invalid
    );

    game.dispute_closed(1, fx.exec).await.unwrap();
    fx.rollup.finalize(1).await.unwrap();
    fx.by(fx.exec).withdraw(Role::Executor).await.unwrap();

    // The invalid leaf is never final; the others are.
    for i in 0..4u64 {
        let proof = leaf_proof(&hashes, i).unwrap();
        let ok = fx
            .rollup
            .is_finalized(1, hashes[i as usize], &proof)
            .await
            .unwrap();
        assert_eq!(ok, i != 2, "leaf {i}");
        assert!(
            fx.rollup
                .verify_leaf(1, hashes[i as usize], &proof)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        fx.rollup.leaf_status(1, 2).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        fx.rollup.leaf_status(1, 1).await.unwrap(),
        LeafStatus::Final
    );
    // Nothing changes a final batch.
    assert!(matches!(
        revert(game.invalidate_leaf(1, 1).await),
        E::BatchAlreadyFinalized(_)
    ));
    assert!(matches!(
        revert(game.dispute_opened(1, fx.exec).await),
        E::BatchAlreadyFinalized(_)
    ));
}

#[tokio::test]
async fn slash_burns_and_credits() {
    let fx = Fx::ready().await;
    let game = fx.by(fx.game);
    let contract = fx.rollup.address();
    assert_eq!(fx.balance(contract).await, eth(3));
    let zero_before = fx.balance(Address::ZERO).await;

    // More than half as reward is refused.
    let e = revert(
        game.slash(
            Role::Executor,
            fx.exec,
            eth(2),
            fx.challenger,
            eth(1) + U256::from(1),
        )
        .await,
    );
    assert!(matches!(e, E::RewardTooLarge(x) if x.max == eth(1)));
    let e = revert(
        game.slash(
            Role::Executor,
            fx.exec,
            eth(2),
            Address::ZERO,
            U256::from(1),
        )
        .await,
    );
    assert!(matches!(e, E::ZeroAddress(_)));

    // Asking for more than the bond takes the whole bond.
    let r = game
        .slash(Role::Executor, fx.exec, U256::MAX, fx.challenger, eth(1))
        .await
        .unwrap();
    let ev = InferenceRollup::Slashed::decode_log(&r.logs[1].inner).unwrap();
    assert_eq!(ev.slashed, eth(2));
    assert_eq!(ev.burned, eth(1));
    assert_eq!(ev.reward, eth(1));
    assert_eq!(ev.beneficiary, fx.challenger);
    assert_eq!(
        fx.rollup
            .bond(Role::Executor, fx.exec)
            .await
            .unwrap()
            .amount,
        U256::ZERO
    );
    assert!(!fx.rollup.is_active(Role::Executor, fx.exec).await.unwrap());
    assert_eq!(fx.balance(Address::ZERO).await, zero_before + eth(1));
    assert_eq!(fx.rollup.credits(fx.challenger).await.unwrap(), eth(1));
    // Balance = bonds (sequencer 1) + credits (1).
    assert_eq!(fx.balance(contract).await, eth(2));

    // Claim.
    assert!(matches!(
        revert(fx.by(fx.stranger).claim().await),
        E::NothingToClaim(_)
    ));
    let before = fx.balance(fx.challenger).await;
    fx.by(fx.challenger).claim().await.unwrap();
    assert_eq!(fx.balance(fx.challenger).await, before + eth(1));
    assert_eq!(fx.rollup.credits(fx.challenger).await.unwrap(), U256::ZERO);
    assert_eq!(fx.balance(contract).await, eth(1));

    // Slashing nothing is allowed and moves nothing; a withdrawing bond stays slashable.
    game.slash(
        Role::Executor,
        fx.stranger,
        eth(1),
        fx.challenger,
        U256::ZERO,
    )
    .await
    .unwrap();
    fx.by(fx.seq)
        .request_withdrawal(Role::Sequencer)
        .await
        .unwrap();
    game.slash(
        Role::Sequencer,
        fx.seq,
        eth(1) / U256::from(2),
        fx.challenger,
        U256::ZERO,
    )
    .await
    .unwrap();
    fx.advance(DELAY).await;
    let before = fx.balance(fx.seq).await;
    fx.by(fx.seq).withdraw(Role::Sequencer).await.unwrap();
    assert_eq!(fx.balance(fx.seq).await, before + eth(1) / U256::from(2));
    assert_eq!(fx.balance(contract).await, U256::ZERO);
}

//! ExampleConsumer acts only on final, valid results.

use crate::common::*;
use alloy::primitives::{U256, keccak256};
use protocol::{leaf_proof, token_ids_root};
use verinfer_l1_contracts::bindings::ExampleConsumer::ExampleConsumerErrors as CE;
use verinfer_l1_contracts::{Consumer, ConsumerError, ContractError, EmbeddedL1};

fn consumer_revert<T: std::fmt::Debug>(r: Result<T, ConsumerError>) -> CE {
    match r {
        Err(ContractError::Revert(e)) => e,
        other => panic!("expected a consumer revert, got {other:?}"),
    }
}

async fn setup(fx: &Fx) -> Consumer<EmbeddedL1> {
    Consumer::deploy(fx.chain.connect(fx.stranger), fx.rollup.address())
        .await
        .unwrap()
}

#[tokio::test]
async fn pays_only_for_final_valid_results() {
    let fx = Fx::ready().await;
    let consumer = setup(&fx).await;
    let leaves = sample_leaves(5, fx.exec);
    let q = consumer
        .ask(leaves[3].modelRoot, leaves[3].promptRoot, eth(1))
        .await
        .unwrap();
    assert_eq!(q, 1);
    assert_eq!(fx.balance(consumer.address()).await, eth(1));
    let (posted, hashes) = fx.post(&leaves).await;
    let proof = leaf_proof(&hashes, 3).unwrap();
    let out = output_tokens(3);
    let relayer = consumer.with_l1(fx.chain.connect(fx.challenger));

    // Posted but not final.
    let e = consumer_revert(
        relayer
            .answer(q, posted.batch_id, &leaves[3], &proof, &out)
            .await,
    );
    assert!(matches!(e, CE::NotFinalized(_)));

    fx.advance(WINDOW).await;
    fx.rollup.finalize(posted.batch_id).await.unwrap();

    // Wrong leaf for the question, wrong output, wrong proof.
    let p1 = leaf_proof(&hashes, 1).unwrap();
    let e = consumer_revert(
        relayer
            .answer(q, 1, &leaves[1], &p1, &output_tokens(1))
            .await,
    );
    assert!(matches!(e, CE::WrongPrompt(_)));
    let mut wrong = out.clone();
    wrong[0] += 1;
    let e = consumer_revert(relayer.answer(q, 1, &leaves[3], &proof, &wrong).await);
    assert!(matches!(e, CE::OutputMismatch(x) if x.outputHash == leaves[3].outputHash));
    let e = consumer_revert(relayer.answer(q, 1, &leaves[3], &p1, &out).await);
    assert!(matches!(e, CE::NotFinalized(_)));
    let e = consumer_revert(relayer.answer(99, 1, &leaves[3], &proof, &out).await);
    assert!(matches!(e, CE::UnknownQuestion(_)));

    // The real answer pays the executor.
    let before = fx.balance(fx.exec).await;
    relayer
        .answer(q, 1, &leaves[3], &proof, &out)
        .await
        .unwrap();
    assert_eq!(fx.balance(fx.exec).await, before + eth(1));
    assert_eq!(fx.balance(consumer.address()).await, U256::ZERO);
    let rec = consumer.question(q).await.unwrap();
    assert!(rec.answered);
    assert_eq!(
        (rec.batchId, rec.leafIndex, rec.outputHash),
        (U256::from(1), U256::from(3), leaves[3].outputHash)
    );
    let e = consumer_revert(relayer.answer(q, 1, &leaves[3], &proof, &out).await);
    assert!(matches!(e, CE::AlreadyAnswered(_)));
}

#[tokio::test]
async fn invalidated_leaf_is_never_paid() {
    let fx = Fx::ready().await;
    let consumer = setup(&fx).await;
    let leaves = sample_leaves(3, fx.exec);
    let mut other_model = leaves[0];
    other_model.modelRoot = keccak256("other");
    let q = consumer
        .ask(leaves[0].modelRoot, leaves[0].promptRoot, eth(1))
        .await
        .unwrap();
    let q2 = consumer
        .ask(other_model.modelRoot, leaves[0].promptRoot, eth(1))
        .await
        .unwrap();
    let (posted, hashes) = fx.post(&leaves).await;
    fx.by(fx.game)
        .dispute_opened(posted.batch_id, fx.exec)
        .await
        .unwrap();
    fx.by(fx.game)
        .invalidate_leaf(posted.batch_id, 0)
        .await
        .unwrap();
    fx.by(fx.game)
        .dispute_closed(posted.batch_id, fx.exec)
        .await
        .unwrap();
    fx.advance(WINDOW).await;
    fx.rollup.finalize(posted.batch_id).await.unwrap();
    let proof = leaf_proof(&hashes, 0).unwrap();
    let e = consumer_revert(
        consumer
            .answer(q, 1, &leaves[0], &proof, &output_tokens(0))
            .await,
    );
    assert!(matches!(e, CE::NotFinalized(_)));
    let e = consumer_revert(
        consumer
            .answer(q2, 1, &leaves[0], &proof, &output_tokens(0))
            .await,
    );
    assert!(matches!(e, CE::WrongModel(_)));
    assert_eq!(fx.balance(consumer.address()).await, eth(2));
}

#[tokio::test]
async fn token_ids_root_matches_rust() {
    let fx = Fx::new().await;
    let consumer = setup(&fx).await;
    let cases: Vec<Vec<u32>> = vec![
        vec![],
        vec![0],
        vec![1, 2, 3],
        vec![u32::MAX, 0x0102_0304, 7],
        (0..255).collect(),
        (0..256).collect(),
        (0..257).collect(),
        (0..1000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect(),
    ];
    for ids in cases {
        assert_eq!(
            consumer.token_ids_root(&ids).await.unwrap(),
            token_ids_root(&ids),
            "{} tokens",
            ids.len()
        );
    }
}

#[tokio::test]
async fn failed_reward_payment_reverts() {
    use crate::common::rejecting_proxy;
    let fx = Fx::ready().await;
    let consumer = setup(&fx).await;
    // An "executor" address that rejects ETH.
    let proxy = rejecting_proxy(&fx.chain, fx.stranger, fx.rollup.address()).await;
    let leaves = sample_leaves(1, proxy);
    let q = consumer
        .ask(leaves[0].modelRoot, leaves[0].promptRoot, eth(1))
        .await
        .unwrap();
    let (posted, hashes) = fx.post(&leaves).await;
    fx.advance(WINDOW).await;
    fx.rollup.finalize(posted.batch_id).await.unwrap();
    let proof = leaf_proof(&hashes, 0).unwrap();
    let e = consumer_revert(
        consumer
            .answer(q, 1, &leaves[0], &proof, &output_tokens(0))
            .await,
    );
    assert!(matches!(e, CE::PaymentFailed(x) if x.to == proxy && x.amount == eth(1)));
    assert!(!consumer.question(q).await.unwrap().answered);
    // Zero-reward questions need no payment.
    let q0 = consumer
        .ask(leaves[0].modelRoot, leaves[0].promptRoot, U256::ZERO)
        .await
        .unwrap();
    consumer
        .answer(q0, 1, &leaves[0], &proof, &output_tokens(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn consumer_needs_a_rollup() {
    let fx = Fx::new().await;
    let e = consumer_revert(
        Consumer::deploy(fx.chain.connect(fx.owner), alloy::primitives::Address::ZERO).await,
    );
    assert!(matches!(e, CE::ZeroRollup(_)));
}

//! Batch lifecycle: post, state chain, finality, leaf proofs, batch data, events.

use crate::common::*;
use alloy::primitives::{B256, Bytes, U256, keccak256};
use protocol::{GENESIS_STATE_ROOT, MerkleProof, leaf_proof, next_state_root};
use verinfer_l1_contracts::bindings::InferenceRollup::{
    InferenceRollupErrors as E, InferenceRollupEvents as Ev,
};
use verinfer_l1_contracts::{ContractError, LeafStatus, Role};

#[tokio::test]
async fn lifecycle_with_real_leaves() {
    let fx = Fx::ready().await;
    let leaves = sample_leaves(13, fx.exec);
    let (posted, hashes) = fx.post(&leaves).await;
    assert_eq!(posted.batch_id, 1);
    let root = protocol::batch_root(&hashes);
    assert_eq!(posted.state_root, next_state_root(GENESIS_STATE_ROOT, root));
    assert_eq!(posted.da_commitment, keccak256(batch_bytes(&leaves)));
    assert_eq!(fx.rollup.state_root().await.unwrap(), posted.state_root);
    assert_eq!(fx.rollup.batch_count().await.unwrap(), 1);

    let info = fx.rollup.batch(1).await.unwrap().unwrap();
    assert_eq!(info.batch_root, root);
    assert_eq!(info.leaf_count, 13);
    assert_eq!(info.sequencer, fx.seq);
    assert_eq!(info.posted_at, posted.receipt.block_timestamp);
    assert!(!info.finalized);
    assert_eq!(
        fx.rollup.finalizes_at(1).await.unwrap(),
        Some(info.posted_at + WINDOW)
    );

    // Included but not final yet.
    for i in 0..13 {
        let proof = leaf_proof(&hashes, i).unwrap();
        assert!(
            fx.rollup
                .verify_leaf(1, hashes[i as usize], &proof)
                .await
                .unwrap()
        );
        assert!(
            !fx.rollup
                .is_finalized(1, hashes[i as usize], &proof)
                .await
                .unwrap()
        );
        assert_eq!(
            fx.rollup.leaf_status(1, i).await.unwrap(),
            LeafStatus::Pending
        );
    }
    assert_eq!(
        fx.rollup.leaf_status(1, 13).await.unwrap(),
        LeafStatus::Unknown
    );

    // Not before the window.
    fx.advance(WINDOW - 5).await;
    let e = revert(fx.by(fx.stranger).finalize(1).await);
    assert!(
        matches!(e, E::ChallengeWindowOpen(x) if x.finalizesAt == U256::from(info.posted_at + WINDOW))
    );

    fx.advance(5).await;
    let r = fx.by(fx.stranger).finalize(1).await.unwrap();
    assert_eq!(r.logs.len(), 1);
    assert!(fx.rollup.batch(1).await.unwrap().unwrap().finalized);
    let e = revert(fx.by(fx.stranger).finalize(1).await);
    assert!(matches!(e, E::BatchAlreadyFinalized(_)));

    for i in 0..13 {
        let proof = leaf_proof(&hashes, i).unwrap();
        assert!(
            fx.rollup
                .is_finalized(1, hashes[i as usize], &proof)
                .await
                .unwrap(),
            "leaf {i}"
        );
        assert_eq!(
            fx.rollup.leaf_status(1, i).await.unwrap(),
            LeafStatus::Final
        );
    }

    // Wrong leaf, wrong index, wrong proof, wrong batch.
    let proof3 = leaf_proof(&hashes, 3).unwrap();
    assert!(!fx.rollup.is_finalized(1, hashes[4], &proof3).await.unwrap());
    assert!(
        !fx.rollup
            .is_finalized(1, keccak256("not a leaf"), &proof3)
            .await
            .unwrap()
    );
    let shifted = MerkleProof {
        index: 4,
        ..proof3.clone()
    };
    assert!(
        !fx.rollup
            .is_finalized(1, hashes[3], &shifted)
            .await
            .unwrap()
    );
    let mut bad = proof3.clone();
    bad.siblings[1] = B256::repeat_byte(9);
    assert!(!fx.rollup.is_finalized(1, hashes[3], &bad).await.unwrap());
    assert!(!fx.rollup.is_finalized(2, hashes[3], &proof3).await.unwrap());
    assert!(!fx.rollup.is_finalized(0, hashes[3], &proof3).await.unwrap());
}

#[tokio::test]
async fn proofs_must_match_the_leaf_count() {
    let fx = Fx::ready().await;
    let leaves = sample_leaves(6, fx.exec);
    let (_, hashes) = fx.post(&leaves).await;
    fx.advance(WINDOW).await;
    fx.rollup.finalize(1).await.unwrap();

    // An inner node with a shortened proof is not a leaf.
    let tree = protocol::MerkleTree::new(hashes.clone());
    let inner = tree.node(1, 0).unwrap();
    let mut short = leaf_proof(&hashes, 0).unwrap();
    short.siblings.remove(0);
    assert!(short.verify(tree.root(), inner));
    assert!(!fx.rollup.is_finalized(1, inner, &short).await.unwrap());
    assert!(!fx.rollup.verify_leaf(1, inner, &short).await.unwrap());

    // A padding position (index 6 or 7 of 8) never verifies, even with the zero leaf.
    let mut pad = leaf_proof(&hashes, 5).unwrap();
    pad.index = 6;
    pad.siblings[0] = B256::ZERO;
    assert!(!fx.rollup.is_finalized(1, B256::ZERO, &pad).await.unwrap());
    // A proof one level too long.
    let mut long = leaf_proof(&hashes, 2).unwrap();
    long.siblings.push(B256::ZERO);
    assert!(!fx.rollup.is_finalized(1, hashes[2], &long).await.unwrap());
}

#[tokio::test]
async fn single_leaf_and_power_of_two_batches() {
    let fx = Fx::ready().await;
    for (id, n) in [(1u64, 1u64), (2, 2), (3, 8), (4, 9)] {
        let leaves = sample_leaves(n, fx.exec);
        let (posted, hashes) = fx.post(&leaves).await;
        assert_eq!(posted.batch_id, id);
        fx.advance(WINDOW).await;
        fx.rollup.finalize(id).await.unwrap();
        for i in 0..n {
            let proof = leaf_proof(&hashes, i).unwrap();
            assert_eq!(proof.siblings.len() as u32, protocol::merkle::tree_depth(n));
            assert!(
                fx.rollup
                    .is_finalized(id, hashes[i as usize], &proof)
                    .await
                    .unwrap()
            );
        }
    }
}

#[tokio::test]
async fn state_root_chains_across_batches() {
    let fx = Fx::ready().await;
    let mut expected = GENESIS_STATE_ROOT;
    for k in 0..5u64 {
        let leaves = sample_leaves(k + 1, fx.exec);
        let (posted, hashes) = fx.post(&leaves).await;
        expected = next_state_root(expected, protocol::batch_root(&hashes));
        assert_eq!(posted.batch_id, k + 1);
        assert_eq!(posted.state_root, expected);
    }
    assert_eq!(fx.rollup.state_root().await.unwrap(), expected);
}

#[tokio::test]
async fn post_batch_reverts() {
    let fx = Fx::new().await;
    let data = Bytes::from_static(b"batch");
    let root = keccak256("root");

    // Unregistered.
    let e = revert(
        fx.by(fx.stranger)
            .post_batch(data.clone(), root, 1, B256::ZERO)
            .await,
    );
    assert!(matches!(e, E::NotActiveSequencer(x) if x.who == fx.stranger));
    // An executor bond does not make a sequencer.
    fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
    let e = revert(
        fx.by(fx.exec)
            .post_batch(data.clone(), root, 1, B256::ZERO)
            .await,
    );
    assert!(matches!(e, E::NotActiveSequencer(_)));

    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    let seq = fx.by(fx.seq);
    let e = revert(seq.post_batch(data.clone(), root, 0, B256::ZERO).await);
    assert!(matches!(e, E::EmptyBatch(_)));
    let too_many = (1u64 << 48) - 1 + 1;
    let e = revert(
        seq.post_batch(data.clone(), root, too_many, B256::ZERO)
            .await,
    );
    assert!(matches!(e, E::LeafCountTooLarge(x) if x.leafCount == too_many));
    let e = revert(
        seq.post_batch(data.clone(), B256::ZERO, 1, B256::ZERO)
            .await,
    );
    assert!(matches!(e, E::ZeroBatchRoot(_)));
    let e = revert(seq.post_batch(Bytes::new(), root, 1, B256::ZERO).await);
    assert!(matches!(e, E::EmptyBatchData(_)));
    let e = revert(
        seq.post_batch(data.clone(), root, 1, B256::repeat_byte(1))
            .await,
    );
    assert!(
        matches!(e, E::StaleStateRoot(x) if x.expected == B256::repeat_byte(1) && x.current == B256::ZERO)
    );

    let posted = seq
        .post_batch(data.clone(), root, 1, B256::ZERO)
        .await
        .unwrap();
    // A retried post with the old prev root cannot post twice.
    let e = revert(seq.post_batch(data.clone(), root, 1, B256::ZERO).await);
    assert!(matches!(e, E::StaleStateRoot(x) if x.current == posted.state_root));
    assert_eq!(fx.rollup.batch_count().await.unwrap(), 1);

    // A withdrawing sequencer is inactive.
    seq.request_withdrawal(Role::Sequencer).await.unwrap();
    let e = revert(seq.post_batch(data, root, 1, posted.state_root).await);
    assert!(matches!(e, E::NotActiveSequencer(_)));
}

#[tokio::test]
async fn slashed_below_minimum_sequencer_cannot_post() {
    let fx = Fx::ready().await;
    fx.by(fx.game)
        .slash(
            Role::Sequencer,
            fx.seq,
            U256::from(1),
            fx.challenger,
            U256::ZERO,
        )
        .await
        .unwrap();
    let e = revert(
        fx.by(fx.seq)
            .post_batch(Bytes::from_static(b"x"), keccak256("r"), 1, B256::ZERO)
            .await,
    );
    assert!(matches!(e, E::NotActiveSequencer(_)));
    fx.by(fx.seq)
        .top_up(Role::Sequencer, U256::from(1))
        .await
        .unwrap();
    fx.by(fx.seq)
        .post_batch(Bytes::from_static(b"x"), keccak256("r"), 1, B256::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn finalize_unknown_batch() {
    let fx = Fx::ready().await;
    for id in [0u64, 1, 7] {
        let e = revert(fx.rollup.finalize(id).await);
        assert!(matches!(e, E::UnknownBatch(x) if x.batchId == U256::from(id)));
    }
    assert_eq!(fx.rollup.batch(1).await.unwrap(), None);
    assert_eq!(fx.rollup.finalizes_at(1).await.unwrap(), None);
}

#[tokio::test]
async fn batch_data_is_read_back_from_calldata() {
    let fx = Fx::ready().await;
    let leaves = sample_leaves(4, fx.exec);
    fx.post(&leaves).await;
    let other = sample_leaves(2, fx.exec);
    fx.post(&other).await;
    assert_eq!(fx.rollup.batch_data(1).await.unwrap(), batch_bytes(&leaves));
    assert_eq!(fx.rollup.batch_data(2).await.unwrap(), batch_bytes(&other));
    assert!(matches!(
        fx.rollup.batch_data(3).await,
        Err(ContractError::UnknownBatch(3))
    ));
}

#[tokio::test]
async fn events_follow_the_lifecycle() {
    let fx = Fx::ready().await;
    let start = fx.chain.latest_block().number + 1;
    let leaves = sample_leaves(3, fx.exec);
    let (posted, hashes) = fx.post(&leaves).await;
    fx.advance(WINDOW).await;
    fx.rollup.finalize(1).await.unwrap();

    let events = fx.rollup.events(start, None).await.unwrap();
    assert_eq!(events.len(), 2);
    match &events[0].event {
        Ev::BatchPosted(e) => {
            assert_eq!(e.batchId, U256::from(1));
            assert_eq!(e.sequencer, fx.seq);
            assert_eq!(e.batchRoot, protocol::batch_root(&hashes));
            assert_eq!(e.daCommitment, posted.da_commitment);
            assert_eq!(e.leafCount, 3);
            assert_eq!(e.stateRoot, posted.state_root);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(events[0].log.block_number, posted.receipt.block_number);
    assert_eq!(events[0].log.tx_hash, posted.receipt.tx_hash);
    assert!(matches!(&events[1].event, Ev::BatchFinalized(e) if e.batchId == U256::from(1)));

    // Everything from genesis: registrations, bond changes, dispute game, the batch.
    let all = fx.rollup.events(0, None).await.unwrap();
    assert!(
        all.iter()
            .any(|e| matches!(e.event, Ev::SequencerRegistered(_)))
    );
    assert!(
        all.iter()
            .any(|e| matches!(e.event, Ev::ExecutorRegistered(_)))
    );
    assert!(all.iter().any(|e| matches!(e.event, Ev::DisputeGameSet(_))));
    assert!(
        all.iter()
            .any(|e| matches!(e.event, Ev::OwnershipTransferred(_)))
    );
    // A closed range.
    let only = fx
        .rollup
        .events(
            posted.receipt.block_number,
            Some(posted.receipt.block_number),
        )
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
}

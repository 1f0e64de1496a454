//! Batch data in EIP-4844 blobs on the embedded chain: `postBatchBlobs` records the versioned hashes of real KZG
//! commitments, the chain keeps the blobs, `batch_data` reads them back; a transaction without blobs reverts and a
//! sidecar whose commitments or proofs are wrong is refused before anything is mined.

use crate::common::*;
use alloy::primitives::{B256, Bytes};
use alloy::sol_types::SolCall;
use verinfer_l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors as E};
use verinfer_l1_contracts::gas::pseudo_random_bytes;
use verinfer_l1_contracts::{ContractError, L1, L1Error, TxRequest, blobs};

#[tokio::test]
async fn blob_batch_is_posted_and_read_back() {
    let fx = Fx::ready().await;
    let seq = fx.by(fx.seq);
    // Two batches: one small (one blob), one over two blobs.
    for (n, len) in [(1u64, 3_000usize), (2, 200_000)] {
        let data = pseudo_random_bytes(len, n);
        let root = B256::repeat_byte(n as u8);
        let sig_root = B256::repeat_byte(0x50 + n as u8);
        let prev = seq.state_root().await.unwrap();
        let posted = seq
            .post_batch_blobs(&data, root, 7, sig_root, prev)
            .await
            .unwrap();
        assert_eq!(posted.batch_id, n);
        assert_eq!(posted.sig_root, sig_root);
        assert_eq!(posted.blob_versioned_hashes.len(), blobs::blob_count(len));
        // The hashes are those of KZG commitments recomputed from the blobs the chain serves, and the contract
        // committed to exactly them.
        let l1 = fx.chain.connect(fx.stranger);
        let served = l1.blobs(posted.receipt.tx_hash).await.unwrap().unwrap();
        assert_eq!(
            blobs::versioned_hashes(&served).unwrap(),
            posted.blob_versioned_hashes
        );
        assert!(posted.blob_versioned_hashes.iter().all(|h| h[0] == 1));
        let tx = l1
            .transaction(posted.receipt.tx_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tx.blob_versioned_hashes, posted.blob_versioned_hashes);
        let mut concat = Vec::new();
        for h in &posted.blob_versioned_hashes {
            concat.extend_from_slice(h.as_slice());
        }
        assert_eq!(posted.da_commitment, alloy::primitives::keccak256(&concat));
        // A challenger reads the data back and checks it against the commitment.
        assert_eq!(
            fx.rollup.batch_data(n).await.unwrap(),
            Bytes::from(data.clone())
        );
        let info = fx.rollup.batch(n).await.unwrap().unwrap();
        assert_eq!((info.batch_root, info.leaf_count), (root, 7));
    }
    // Calldata and blob batches chain on the same state root.
    let prev = seq.state_root().await.unwrap();
    let third = seq
        .post_batch(
            Bytes::from_static(b"calldata"),
            B256::repeat_byte(3),
            1,
            prev,
        )
        .await
        .unwrap();
    assert_eq!(third.batch_id, 3);
    assert!(third.blob_versioned_hashes.is_empty());
    assert_eq!(
        fx.rollup.batch_data(3).await.unwrap(),
        Bytes::from_static(b"calldata")
    );
}

#[tokio::test]
async fn missing_or_wrong_blobs_are_refused() {
    let fx = Fx::ready().await;
    let seq = fx.by(fx.seq);
    let call = InferenceRollup::postBatchBlobsCall {
        batchRoot: B256::repeat_byte(1),
        leafCount: 1,
        sigRoot: B256::repeat_byte(2),
        prevStateRoot: B256::ZERO,
    };
    let l1 = fx.chain.connect(fx.seq);
    // No blobs: the contract reverts with NoBlobs.
    let e = l1
        .send(TxRequest::call(fx.rollup.address(), call.abi_encode()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.decode_revert::<E>(), Some(E::NoBlobs(_))),
        "{e:?}"
    );
    // A sidecar whose commitment is another blob's: refused by the chain, nothing mined.
    let data = pseudo_random_bytes(200_000, 9);
    let good = blobs::encode(&data).unwrap();
    assert_eq!(good.blobs.len(), 2);
    let block = l1.latest_block().await.unwrap().number;
    let mut swapped = good.clone();
    swapped.commitments.swap(0, 1);
    let r = seq
        .post_batch_sidecar(
            swapped,
            B256::repeat_byte(1),
            1,
            B256::repeat_byte(2),
            B256::ZERO,
        )
        .await;
    assert!(
        matches!(r, Err(ContractError::L1(L1Error::Rejected(_)))),
        "{r:?}"
    );
    // A wrong KZG proof.
    let mut bad_proof = good.clone();
    bad_proof.proofs.swap(0, 1);
    let r = seq
        .post_batch_sidecar(
            bad_proof,
            B256::repeat_byte(1),
            1,
            B256::repeat_byte(2),
            B256::ZERO,
        )
        .await;
    assert!(
        matches!(r, Err(ContractError::L1(L1Error::Rejected(_)))),
        "{r:?}"
    );
    // A blob that is not a list of field elements (a 32-byte word at or above the BLS modulus).
    let mut non_canonical = good.clone();
    non_canonical.blobs[0][..32].fill(0xff);
    let r = seq
        .post_batch_sidecar(
            non_canonical,
            B256::repeat_byte(1),
            1,
            B256::repeat_byte(2),
            B256::ZERO,
        )
        .await;
    assert!(
        matches!(r, Err(ContractError::L1(L1Error::Rejected(_)))),
        "{r:?}"
    );
    // Too many blobs for one transaction.
    let r = seq
        .post_batch_blobs(
            &vec![7u8; blobs::MAX_DATA_BYTES + 1],
            B256::repeat_byte(1),
            1,
            B256::ZERO,
            B256::ZERO,
        )
        .await;
    assert!(
        matches!(
            r,
            Err(ContractError::Blobs(blobs::BlobError::TooLarge { .. }))
        ),
        "{r:?}"
    );
    assert_eq!(l1.latest_block().await.unwrap().number, block);
    assert_eq!(fx.rollup.batch_count().await.unwrap(), 0);
    // Blobs cannot create a contract.
    let create = TxRequest::create(Bytes::from_static(&[0x00])).with_blobs(good.clone());
    assert!(matches!(l1.send(create).await, Err(L1Error::Rejected(_))));
    // The good sidecar goes through; an inactive sequencer's is refused by the contract.
    seq.post_batch_sidecar(
        good.clone(),
        B256::repeat_byte(1),
        1,
        B256::repeat_byte(2),
        B256::ZERO,
    )
    .await
    .unwrap();
    let e = revert(
        fx.by(fx.stranger)
            .post_batch_sidecar(
                good,
                B256::repeat_byte(1),
                1,
                B256::repeat_byte(2),
                B256::ZERO,
            )
            .await,
    );
    assert!(matches!(e, E::NotActiveSequencer(_)), "{e:?}");
    assert_eq!(fx.rollup.batch_count().await.unwrap(), 1);
    assert_eq!(fx.rollup.batch_data(1).await.unwrap(), Bytes::from(data));
    // The blob base fee is zero like the gas price: the sequencer paid only its bond.
    assert_eq!(
        fx.balance(fx.seq).await,
        verinfer_l1_contracts::dev::DEV_BALANCE - eth(1)
    );
    assert_eq!(fx.balance(fx.rollup.address()).await, eth(3));
}

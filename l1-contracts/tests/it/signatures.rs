//! The bad-signature fault (`proveBadSignature`): a leaf posted with a signature that does not recover its executor
//! (forged, another key, garbled, high-s, bad v) slashes the sequencer; a valid one is refused; the signature root
//! is opened from real batch data read back from the chain.

use crate::common::*;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use protocol::batch::{batch_signature_proof, signature_proof, signature_root};
use protocol::{
    BatchData, BatchEntry, InferenceLeaf, LeafSignature, MerkleProof, SamplingParams, leaf_domain,
    leaf_proof, merkle_root, sign_leaf, token_ids_root,
};
use verinfer_l1_contracts::bindings::InferenceRollup::InferenceRollupErrors as E;
use verinfer_l1_contracts::{LeafStatus, Role, SignatureChallengeStatus, dev, signature_opening};

/// secp256k1 group order.
const N: U256 = alloy::primitives::uint!(
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141_U256
);

fn key(i: usize) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(dev::DEV_KEYS[i].as_slice()).unwrap()
}

/// The high-s twin of a canonical signature (`s' = n - s`, parity flipped): ecrecover still returns the signer,
/// but the protocol (EIP-2) rejects it.
fn high_s_twin(sig: &LeafSignature) -> LeafSignature {
    let mut b = *sig.as_bytes();
    let s = U256::from_be_slice(&b[32..64]);
    b[32..64].copy_from_slice(&(N - s).to_be_bytes::<32>());
    b[64] = if b[64] == 27 { 28 } else { 27 };
    LeafSignature::from(b)
}

/// The signatures of the test batch: leaf 0 valid, then forged (another key), garbled, high-s, bad v, all zero.
fn signatures(fx: &Fx, leaves: &[InferenceLeaf]) -> Vec<LeafSignature> {
    let domain = leaf_domain(31337, fx.rollup.address());
    let exec_key = key(2);
    let valid = |i: usize| sign_leaf(&leaves[i], &domain, &exec_key).unwrap();
    let mut garbled = *valid(2).as_bytes();
    garbled[5] ^= 0x40;
    let mut bad_v = *valid(4).as_bytes();
    bad_v[64] = 29;
    vec![
        valid(0),
        sign_leaf(&leaves[1], &domain, &key(5)).unwrap(),
        LeafSignature::from(garbled),
        high_s_twin(&valid(3)),
        LeafSignature::from(bad_v),
        LeafSignature::default(),
    ]
}

struct Posted {
    fx: Fx,
    leaves: Vec<InferenceLeaf>,
    hashes: Vec<B256>,
    sigs: Vec<LeafSignature>,
    batch_id: u64,
    da_commitment: B256,
    sig_root: B256,
}

async fn posted() -> Posted {
    let fx = Fx::ready().await;
    let leaves = sample_leaves(6, fx.exec);
    let hashes: Vec<B256> = leaves.iter().map(InferenceLeaf::hash).collect();
    let sigs = signatures(&fx, &leaves);
    // The signature root, computed independently of `signature_root`: keccak256 of the 65 raw bytes.
    let sig_root = merkle_root(
        &sigs
            .iter()
            .map(|s| keccak256(s.as_bytes()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(signature_root(&sigs), sig_root);
    let seq = fx.by(fx.seq);
    let prev = seq.state_root().await.unwrap();
    let data = batch_bytes(&leaves);
    let p = seq
        .post_batch_calldata(
            data.clone(),
            protocol::batch_root(&hashes),
            6,
            sig_root,
            prev,
        )
        .await
        .unwrap();
    assert_eq!(p.sig_root, sig_root);
    assert_eq!(p.da_commitment, keccak256(&data));
    let info = fx.rollup.batch(p.batch_id).await.unwrap().unwrap();
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(p.da_commitment.as_slice());
    both[32..].copy_from_slice(sig_root.as_slice());
    assert_eq!(info.commitment, keccak256(both));
    Posted {
        batch_id: p.batch_id,
        da_commitment: p.da_commitment,
        sig_root,
        fx,
        leaves,
        hashes,
        sigs,
    }
}

impl Posted {
    fn leaf_proof(&self, i: u64) -> MerkleProof {
        leaf_proof(&self.hashes, i).unwrap()
    }

    fn sig_proof(&self, i: u64) -> MerkleProof {
        signature_proof(&self.sigs, i).unwrap()
    }

    async fn prove(
        &self,
        by: Address,
        i: u64,
        sig: &LeafSignature,
        sig_proof: &MerkleProof,
    ) -> Result<verinfer_l1_contracts::Receipt, verinfer_l1_contracts::RollupError> {
        self.fx
            .by(by)
            .prove_bad_signature(
                self.batch_id,
                &self.leaves[i as usize],
                &self.leaf_proof(i),
                signature_opening(self.da_commitment, self.sig_root, sig.as_bytes(), sig_proof),
            )
            .await
    }
}

#[tokio::test]
async fn each_bad_signature_slashes_the_sequencer() {
    for i in 1..6u64 {
        let p = posted().await;
        let fx = &p.fx;
        let bond = fx
            .rollup
            .bond(Role::Sequencer, fx.seq)
            .await
            .unwrap()
            .amount;
        assert_eq!(bond, eth(1));
        let burned_before = fx.balance(Address::ZERO).await;
        let held_before = fx.balance(fx.rollup.address()).await;
        let r = p
            .prove(fx.challenger, i, &p.sigs[i as usize], &p.sig_proof(i))
            .await
            .unwrap_or_else(|e| panic!("signature {i}: {e}"));
        if i == 1 {
            println!("proveBadSignature {} gas", r.gas_used);
        }
        assert_eq!(
            fx.rollup.leaf_status(p.batch_id, i).await.unwrap(),
            LeafStatus::Invalid
        );
        // The other leaves are untouched.
        assert_eq!(
            fx.rollup.leaf_status(p.batch_id, 0).await.unwrap(),
            LeafStatus::Pending
        );
        // The whole bond: half to the prover (a credit), half burned; the executor's bond is untouched.
        let after = fx.rollup.bond(Role::Sequencer, fx.seq).await.unwrap();
        assert_eq!(after.amount, U256::ZERO);
        assert!(!fx.rollup.is_active(Role::Sequencer, fx.seq).await.unwrap());
        let half = bond / U256::from(2);
        assert_eq!(fx.rollup.credits(fx.challenger).await.unwrap(), half);
        assert_eq!(fx.balance(Address::ZERO).await - burned_before, bond - half);
        assert_eq!(
            held_before - fx.balance(fx.rollup.address()).await,
            bond - half
        );
        assert_eq!(
            fx.rollup
                .bond(Role::Executor, fx.exec)
                .await
                .unwrap()
                .amount,
            eth(2)
        );
        // Proven once: a second proof of the same leaf is refused.
        let e = revert(
            p.prove(fx.stranger, i, &p.sigs[i as usize], &p.sig_proof(i))
                .await,
        );
        assert!(matches!(e, E::LeafAlreadyInvalid(_)), "{e:?}");
        // The reward is paid out.
        let before = fx.balance(fx.challenger).await;
        fx.by(fx.challenger).claim().await.unwrap();
        assert_eq!(fx.balance(fx.challenger).await - before, half);
    }
}

#[tokio::test]
async fn valid_signatures_and_bad_openings_are_refused() {
    let p = posted().await;
    let fx = &p.fx;
    // The executor's own, canonical signature.
    let e = revert(p.prove(fx.challenger, 0, &p.sigs[0], &p.sig_proof(0)).await);
    assert!(
        matches!(&e, E::SignatureValid(v) if v.executor == fx.exec && v.index == U256::ZERO),
        "{e:?}"
    );
    // A valid signature that was not the one posted for this leaf (the posted one is forged): not in the tree.
    let domain = leaf_domain(31337, fx.rollup.address());
    let honest = sign_leaf(&p.leaves[1], &domain, &key(2)).unwrap();
    let e = revert(p.prove(fx.challenger, 1, &honest, &p.sig_proof(1)).await);
    assert!(matches!(e, E::SignatureNotInBatch(_)), "{e:?}");
    // Another leaf's signature proof.
    let e = revert(p.prove(fx.challenger, 1, &p.sigs[1], &p.sig_proof(2)).await);
    assert!(matches!(e, E::SignatureNotInBatch(_)), "{e:?}");
    // A wrong DA commitment or signature root.
    let wrong = fx
        .by(fx.challenger)
        .prove_bad_signature(
            p.batch_id,
            &p.leaves[1],
            &p.leaf_proof(1),
            signature_opening(
                keccak256("other data"),
                p.sig_root,
                p.sigs[1].as_bytes(),
                &p.sig_proof(1),
            ),
        )
        .await;
    assert!(matches!(revert(wrong), E::CommitmentMismatch(_)));
    // A leaf that is not in the batch.
    let mut other = p.leaves[1];
    other.opCount += 1;
    let wrong = fx
        .by(fx.challenger)
        .prove_bad_signature(
            p.batch_id,
            &other,
            &p.leaf_proof(1),
            signature_opening(
                p.da_commitment,
                p.sig_root,
                p.sigs[1].as_bytes(),
                &p.sig_proof(1),
            ),
        )
        .await;
    assert!(matches!(revert(wrong), E::LeafNotInBatch(_)));
    // Nothing was slashed.
    assert_eq!(
        fx.rollup
            .bond(Role::Sequencer, fx.seq)
            .await
            .unwrap()
            .amount,
        eth(1)
    );
    // After finalization the fault can no longer be proven.
    fx.advance(WINDOW).await;
    fx.rollup.finalize(p.batch_id).await.unwrap();
    let e = revert(p.prove(fx.challenger, 1, &p.sigs[1], &p.sig_proof(1)).await);
    assert!(matches!(e, E::BatchAlreadyFinalized(_)), "{e:?}");
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 1).await.unwrap(),
        LeafStatus::Final
    );
}

/// The challenger's path on real batch data: read the posted data back, decode it, check each signature, and open
/// a forged one with `batch_signature_proof`. `post_batch` derives the signature root from the data itself.
#[tokio::test]
async fn forged_signature_in_real_batch_data() {
    let fx = Fx::ready().await;
    let domain = leaf_domain(31337, fx.rollup.address());
    let entries: Vec<BatchEntry> = (0..3u32)
        .map(|i| {
            let params = SamplingParams {
                max_tokens: 8,
                temperature_milli: 0,
                top_p_milli: 1000,
                seed: u64::from(i),
                choice_index: 0,
            };
            let prompt_tokens = vec![1, 2, i];
            let output_tokens = vec![7, 8, 9, i];
            let mut leaf = sample_leaves(3, fx.exec)[i as usize];
            leaf.promptRoot = token_ids_root(&prompt_tokens);
            leaf.outputHash = token_ids_root(&output_tokens);
            leaf.paramsHash = params.params_hash();
            // Leaf 1 is "signed" by the sequencer's own key: a leaf the executor never signed.
            let signer = if i == 1 { key(1) } else { key(2) };
            BatchEntry {
                signature: sign_leaf(&leaf, &domain, &signer).unwrap(),
                leaf,
                prompt_tokens,
                params,
                output_tokens,
            }
        })
        .collect();
    let batch = BatchData::new(31337, entries);
    let data = Bytes::from(batch.encode().unwrap());
    let seq = fx.by(fx.seq);
    let prev = seq.state_root().await.unwrap();
    let posted = seq
        .post_batch(data, batch.batch_root(), 3, prev)
        .await
        .unwrap();
    assert_eq!(
        posted.sig_root,
        signature_root(
            &batch
                .entries
                .iter()
                .map(|e| e.signature)
                .collect::<Vec<_>>()
        )
    );

    // The challenger.
    let (event, _) = fx.rollup.batch_posted(posted.batch_id).await.unwrap();
    let read = BatchData::decode(&fx.rollup.batch_data(posted.batch_id).await.unwrap()).unwrap();
    assert_eq!(protocol::batch::batch_signature_root(&read), event.sigRoot);
    let bad: Vec<usize> = read
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.signature.recover(&e.leaf, &domain).ok() != Some(e.leaf.executor))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, vec![1]);
    let hashes = read.leaf_hashes();
    let r = fx
        .by(fx.challenger)
        .prove_bad_signature(
            posted.batch_id,
            &read.entries[1].leaf,
            &leaf_proof(&hashes, 1).unwrap(),
            signature_opening(
                event.daCommitment,
                event.sigRoot,
                read.entries[1].signature.as_bytes(),
                &batch_signature_proof(&read, 1).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(r.gas_used > 0);
    assert_eq!(
        fx.rollup.leaf_status(posted.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        fx.rollup.credits(fx.challenger).await.unwrap(),
        eth(1) / U256::from(2)
    );
    // The honest leaves cannot be proven bad.
    let e = revert(
        fx.by(fx.challenger)
            .prove_bad_signature(
                posted.batch_id,
                &read.entries[0].leaf,
                &leaf_proof(&hashes, 0).unwrap(),
                signature_opening(
                    event.daCommitment,
                    event.sigRoot,
                    read.entries[0].signature.as_bytes(),
                    &batch_signature_proof(&read, 0).unwrap(),
                ),
            )
            .await,
    );
    assert!(matches!(e, E::SignatureValid(_)), "{e:?}");
}

// ---- the signature challenge (a garbage `sigRoot`) ----------------------------------------------------------------

/// The event of `receipt` decoded as `E`, if it emitted one.
fn event_of<Ev: alloy::sol_types::SolEvent>(
    receipt: &verinfer_l1_contracts::Receipt,
) -> Option<Ev> {
    receipt
        .logs
        .iter()
        .find_map(|l| Ev::decode_log(&l.inner).ok().map(|d| d.data))
}

/// A sequencer posts the test leaves with a garbage signature root: no signature can be opened, so
/// `proveBadSignature` is impossible, but an unanswered challenge slashes the sequencer after the deadline.
#[tokio::test]
async fn garbage_sig_root_unanswered_challenge_slashes_the_sequencer() {
    let fx = Fx::ready().await;
    let leaves = sample_leaves(4, fx.exec);
    let hashes: Vec<B256> = leaves.iter().map(InferenceLeaf::hash).collect();
    let domain = leaf_domain(31337, fx.rollup.address());
    // The real signatures (leaf 2 signed by the sequencer's key: a leaf the executor never signed).
    let sigs: Vec<LeafSignature> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| sign_leaf(l, &domain, &key(if i == 2 { 1 } else { 2 })).unwrap())
        .collect();
    let garbage = keccak256("not a signature root");
    let seq = fx.by(fx.seq);
    let prev = seq.state_root().await.unwrap();
    let p = seq
        .post_batch_calldata(
            batch_bytes(&leaves),
            protocol::batch_root(&hashes),
            4,
            garbage,
            prev,
        )
        .await
        .unwrap();
    let proof = |i: u64| leaf_proof(&hashes, i).unwrap();
    // No opening of the forged signature exists: under the real root the commitment does not match, under the
    // garbage root the signature is not a leaf.
    let real_root = signature_root(&sigs);
    let e = revert(
        fx.by(fx.challenger)
            .prove_bad_signature(
                p.batch_id,
                &leaves[2],
                &proof(2),
                signature_opening(
                    p.da_commitment,
                    real_root,
                    sigs[2].as_bytes(),
                    &signature_proof(&sigs, 2).unwrap(),
                ),
            )
            .await,
    );
    assert!(matches!(e, E::CommitmentMismatch(_)), "{e:?}");

    let bond = fx.rollup.signature_challenge_bond().await.unwrap();
    assert_eq!(bond, U256::from(10u64).pow(U256::from(16u64)));
    let window = fx.rollup.signature_response_window().await.unwrap();
    assert_eq!(window, 3600);
    // The wrong bond is refused.
    let e = revert(
        fx.by(fx.challenger)
            .challenge_signature_with_bond(p.batch_id, &leaves[2], &proof(2), bond - U256::from(1))
            .await,
    );
    assert!(matches!(e, E::WrongChallengeBond(_)), "{e:?}");
    // A leaf not in the batch is refused.
    let mut other = leaves[2];
    other.opCount += 1;
    let e = revert(
        fx.by(fx.challenger)
            .challenge_signature(p.batch_id, &other, &proof(2))
            .await,
    );
    assert!(matches!(e, E::LeafNotInBatch(_)), "{e:?}");

    let held_before = fx.balance(fx.rollup.address()).await;
    let burned_before = fx.balance(Address::ZERO).await;
    let r = fx
        .by(fx.challenger)
        .challenge_signature(p.batch_id, &leaves[2], &proof(2))
        .await
        .unwrap();
    println!("challengeSignature {} gas", r.gas_used);
    let ev = event_of::<verinfer_l1_contracts::bindings::InferenceRollup::SignatureChallenged>(&r)
        .expect("SignatureChallenged");
    assert_eq!(ev.batchId, U256::from(p.batch_id));
    assert_eq!(ev.index, U256::from(2));
    assert_eq!(ev.executor, fx.exec);
    assert_eq!(ev.challenger, fx.challenger);
    assert_eq!(ev.deadline, r.block_timestamp + window);
    assert_eq!(ev.bond, bond);
    assert_eq!(fx.balance(fx.rollup.address()).await - held_before, bond);
    let c = fx
        .rollup
        .signature_challenge(p.batch_id, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, SignatureChallengeStatus::Pending);
    assert_eq!(
        c.digest,
        fx.rollup.leaf_signing_hash(&leaves[2]).await.unwrap()
    );
    assert_eq!(
        fx.rollup
            .pending_signature_challenges(p.batch_id)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fx.rollup.signature_challenge(p.batch_id, 1).await.unwrap(),
        None
    );

    // One challenge per leaf.
    let e = revert(
        fx.by(fx.stranger)
            .challenge_signature(p.batch_id, &leaves[2], &proof(2))
            .await,
    );
    assert!(matches!(e, E::SignatureChallengeExists(_)), "{e:?}");
    // The sequencer cannot answer: neither the real root nor the garbage one opens a signature.
    let e = revert(
        seq.answer_signature_challenge(
            p.batch_id,
            2,
            signature_opening(
                p.da_commitment,
                real_root,
                sigs[2].as_bytes(),
                &signature_proof(&sigs, 2).unwrap(),
            ),
        )
        .await,
    );
    assert!(matches!(e, E::CommitmentMismatch(_)), "{e:?}");
    let e = revert(
        seq.answer_signature_challenge(
            p.batch_id,
            2,
            signature_opening(
                p.da_commitment,
                garbage,
                sigs[2].as_bytes(),
                &signature_proof(&sigs, 2).unwrap(),
            ),
        )
        .await,
    );
    assert!(matches!(e, E::SignatureNotInBatch(_)), "{e:?}");
    // Not resolvable before the deadline; the batch cannot be finalized while the challenge is pending.
    let e = revert(fx.rollup.resolve_signature_challenge(p.batch_id, 2).await);
    assert!(matches!(e, E::SignatureResponseWindowOpen(_)), "{e:?}");
    fx.advance(WINDOW).await;
    let e = revert(fx.rollup.finalize(p.batch_id).await);
    assert!(
        matches!(&e, E::SignatureChallengePending(v) if v.pending == U256::from(1)),
        "{e:?}"
    );
    // Nothing to resolve on an unchallenged leaf.
    let e = revert(fx.rollup.resolve_signature_challenge(p.batch_id, 1).await);
    assert!(matches!(e, E::NoPendingSignatureChallenge(_)), "{e:?}");

    // Past the deadline (the challenge was mined after the batch, so wait the rest of the window).
    let now = fx.chain.latest_block().timestamp;
    if now < c.deadline {
        fx.advance(c.deadline - now).await;
    }
    let seq_bond = fx
        .rollup
        .bond(Role::Sequencer, fx.seq)
        .await
        .unwrap()
        .amount;
    let held_mid = fx.balance(fx.rollup.address()).await;
    let r = fx
        .by(fx.stranger)
        .resolve_signature_challenge(p.batch_id, 2)
        .await
        .unwrap();
    println!("resolveSignatureChallenge {} gas", r.gas_used);
    let ev =
        event_of::<verinfer_l1_contracts::bindings::InferenceRollup::SignatureChallengeResolved>(
            &r,
        )
        .expect("SignatureChallengeResolved");
    assert_eq!((ev.challenger, ev.sequencer), (fx.challenger, fx.seq));
    assert_eq!((ev.slashed, ev.bond), (seq_bond, bond));
    // The leaf is invalid, the sequencer lost its whole bond: half burned, half (plus the challenge bond) to the
    // challenger, the executor untouched.
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 2).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        fx.rollup
            .bond(Role::Sequencer, fx.seq)
            .await
            .unwrap()
            .amount,
        U256::ZERO
    );
    let half = seq_bond / U256::from(2);
    assert_eq!(
        fx.balance(Address::ZERO).await - burned_before,
        seq_bond - half
    );
    assert_eq!(
        held_mid - fx.balance(fx.rollup.address()).await,
        seq_bond - half
    );
    assert_eq!(fx.rollup.credits(fx.challenger).await.unwrap(), half + bond);
    assert_eq!(fx.rollup.credits(fx.stranger).await.unwrap(), U256::ZERO);
    assert_eq!(
        fx.rollup
            .bond(Role::Executor, fx.exec)
            .await
            .unwrap()
            .amount,
        eth(2)
    );
    assert_eq!(
        fx.rollup
            .signature_challenge(p.batch_id, 2)
            .await
            .unwrap()
            .unwrap()
            .status,
        SignatureChallengeStatus::Resolved
    );
    // Resolved once; the leaf can no longer be challenged.
    let e = revert(fx.rollup.resolve_signature_challenge(p.batch_id, 2).await);
    assert!(matches!(e, E::NoPendingSignatureChallenge(_)), "{e:?}");
    let e = revert(
        fx.by(fx.stranger)
            .challenge_signature(p.batch_id, &leaves[2], &proof(2))
            .await,
    );
    assert!(matches!(e, E::LeafAlreadyInvalid(_)), "{e:?}");
    // The challenger is paid out; the batch finalizes without the invalid leaf.
    let before = fx.balance(fx.challenger).await;
    fx.by(fx.challenger).claim().await.unwrap();
    assert_eq!(fx.balance(fx.challenger).await - before, half + bond);
    // The contract paid out exactly the sequencer's bond (the challenge bond came in and went back out).
    assert_eq!(
        fx.balance(fx.rollup.address()).await,
        held_before - seq_bond
    );
    fx.rollup.finalize(p.batch_id).await.unwrap();
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 2).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 1).await.unwrap(),
        LeafStatus::Final
    );
}

/// On an honest leaf the sequencer answers with the posted signature: the challenger's bond goes to the sequencer,
/// the leaf stays valid and the batch finalizes; wrong answers, late answers and late challenges are refused.
#[tokio::test]
async fn honest_leaf_challenge_is_answered() {
    let p = posted().await;
    let fx = &p.fx;
    let bond = fx.rollup.signature_challenge_bond().await.unwrap();
    let challenge = |by: Address, i: u64| {
        let r = fx.by(by);
        let leaf = p.leaves[i as usize];
        let proof = p.leaf_proof(i);
        async move { r.challenge_signature(p.batch_id, &leaf, &proof).await }
    };
    let opening = |i: u64, proof_of: u64| {
        signature_opening(
            p.da_commitment,
            p.sig_root,
            p.sigs[i as usize].as_bytes(),
            &p.sig_proof(proof_of),
        )
    };
    // Leaf 0 is validly signed, leaf 1 forged; both challenged.
    challenge(fx.challenger, 0).await.unwrap();
    challenge(fx.stranger, 1).await.unwrap();
    assert_eq!(
        fx.rollup
            .pending_signature_challenges(p.batch_id)
            .await
            .unwrap(),
        2
    );
    let seq = fx.by(fx.seq);
    // No challenge on leaf 2.
    let e = revert(
        seq.answer_signature_challenge(p.batch_id, 2, opening(2, 2))
            .await,
    );
    assert!(matches!(e, E::NoPendingSignatureChallenge(_)), "{e:?}");
    // Another index's signature and proof for leaf 0.
    let e = revert(
        seq.answer_signature_challenge(p.batch_id, 0, opening(1, 1))
            .await,
    );
    assert!(matches!(e, E::SignatureNotInBatch(_)), "{e:?}");
    // The forged signature of leaf 1 opens but does not recover its executor.
    let e = revert(
        seq.answer_signature_challenge(p.batch_id, 1, opening(1, 1))
            .await,
    );
    assert!(
        matches!(&e, E::SignatureDoesNotRecover(v) if v.executor == fx.exec && v.signer == fx.stranger),
        "{e:?}"
    );
    // The honest answer, by anyone.
    let r = fx
        .by(fx.owner)
        .answer_signature_challenge(p.batch_id, 0, opening(0, 0))
        .await
        .unwrap();
    println!("answerSignatureChallenge {} gas", r.gas_used);
    let ev =
        event_of::<verinfer_l1_contracts::bindings::InferenceRollup::SignatureChallengeAnswered>(
            &r,
        )
        .expect("SignatureChallengeAnswered");
    assert_eq!(
        (ev.executor, ev.sequencer, ev.bond),
        (fx.exec, fx.seq, bond)
    );
    assert_eq!(fx.rollup.credits(fx.seq).await.unwrap(), bond);
    assert_eq!(fx.rollup.credits(fx.challenger).await.unwrap(), U256::ZERO);
    assert_eq!(
        fx.rollup
            .signature_challenge(p.batch_id, 0)
            .await
            .unwrap()
            .unwrap()
            .status,
        SignatureChallengeStatus::Answered
    );
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 0).await.unwrap(),
        LeafStatus::Pending
    );
    // Answered once; no second challenge on the same leaf.
    let e = revert(
        seq.answer_signature_challenge(p.batch_id, 0, opening(0, 0))
            .await,
    );
    assert!(matches!(e, E::NoPendingSignatureChallenge(_)), "{e:?}");
    let e = revert(challenge(fx.stranger, 0).await);
    assert!(matches!(e, E::SignatureChallengeExists(_)), "{e:?}");
    // The sequencer is not slashed; leaf 1's challenge still blocks finalization.
    assert_eq!(
        fx.rollup
            .bond(Role::Sequencer, fx.seq)
            .await
            .unwrap()
            .amount,
        eth(1)
    );
    fx.advance(WINDOW).await;
    let e = revert(fx.rollup.finalize(p.batch_id).await);
    assert!(matches!(e, E::SignatureChallengePending(_)), "{e:?}");
    // Too late to answer leaf 1 (even with a valid signature it could not); resolve it.
    let e = revert(
        seq.answer_signature_challenge(p.batch_id, 1, opening(1, 1))
            .await,
    );
    assert!(matches!(e, E::SignatureChallengeExpired(_)), "{e:?}");
    fx.rollup
        .resolve_signature_challenge(p.batch_id, 1)
        .await
        .unwrap();
    assert_eq!(
        fx.rollup.credits(fx.stranger).await.unwrap(),
        eth(1) / U256::from(2) + bond
    );
    fx.rollup.finalize(p.batch_id).await.unwrap();
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 0).await.unwrap(),
        LeafStatus::Final
    );
    assert_eq!(
        fx.rollup.leaf_status(p.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
    // After finalization no challenge.
    let e = revert(challenge(fx.challenger, 3).await);
    assert!(matches!(e, E::BatchAlreadyFinalized(_)), "{e:?}");
    // The sequencer claims the challenger's bond.
    let before = fx.balance(fx.seq).await;
    seq.claim().await.unwrap();
    assert!(fx.balance(fx.seq).await > before);
}

/// The owner sets the answer window and bond; zero windows and others' calls are refused.
#[tokio::test]
async fn signature_challenge_params_are_owner_set() {
    let fx = Fx::ready().await;
    let e = revert(
        fx.by(fx.stranger)
            .set_signature_challenge_params(10, U256::from(5))
            .await,
    );
    assert!(matches!(e, E::NotOwner(_)), "{e:?}");
    let e = revert(
        fx.rollup
            .set_signature_challenge_params(0, U256::from(5))
            .await,
    );
    assert!(matches!(e, E::ZeroResponseWindow(_)), "{e:?}");
    fx.rollup
        .set_signature_challenge_params(10, U256::from(5))
        .await
        .unwrap();
    assert_eq!(fx.rollup.signature_response_window().await.unwrap(), 10);
    assert_eq!(
        fx.rollup.signature_challenge_bond().await.unwrap(),
        U256::from(5)
    );
}

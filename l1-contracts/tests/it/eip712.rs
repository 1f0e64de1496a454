//! EIP-712 leaf hashing and signatures in Solidity equal the Rust protocol crate (docs/protocol.md §4, §8).

use crate::common::*;
use alloy::primitives::{Address, B256, U256, address, b256, keccak256};
use proptest::prelude::*;
use protocol::{
    FinishReason, InferenceLeaf, LEAF_VERSION, LeafSignature, SamplingParams, leaf_domain,
    sign_leaf, token_ids_root,
};
use verinfer_l1_contracts::{EmbeddedChain, Rollup, RollupConfig, dev};

/// The known-answer leaf of docs/protocol.md §8.
fn vector_leaf() -> InferenceLeaf {
    let params = SamplingParams {
        max_tokens: 256,
        temperature_milli: 700,
        top_p_milli: 950,
        seed: 42,
        choice_index: 1,
    };
    InferenceLeaf {
        version: LEAF_VERSION,
        requestId: keccak256("request-1"),
        modelRoot: keccak256("model"),
        promptRoot: token_ids_root(&[1, 2, 3]),
        paramsHash: params.params_hash(),
        outputHash: token_ids_root(&[4, 5]),
        finishReason: FinishReason::Stop.into(),
        traceRoot: keccak256("trace"),
        opCount: 1000,
        executor: address!("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"),
    }
}

/// Deploys from dev account 0 at nonce 0: address 0x5FbDB…0aa3 on chain 31337, the vector's domain.
async fn vector_rollup() -> Rollup<verinfer_l1_contracts::EmbeddedL1> {
    let chain = EmbeddedChain::default();
    let owner = dev::accounts()[0].address;
    let rollup = Rollup::deploy(chain.connect(owner), &RollupConfig::devnet(owner))
        .await
        .unwrap();
    assert_eq!(
        rollup.address(),
        address!("0x5FbDB2315678afecb367f032d93F642f64180aa3")
    );
    rollup
}

#[tokio::test]
async fn known_answer_vectors() {
    let rollup = vector_rollup().await;
    let leaf = vector_leaf();
    assert_eq!(
        rollup.domain_separator().await.unwrap(),
        b256!("0x520be9f5f89679a05096276b0bde6007ea05269ccd680cb2fffc615ef0d6ab69")
    );
    assert_eq!(
        rollup.hash_leaf(&leaf).await.unwrap(),
        b256!("0xe835f456851fa62d28f6f66ba72e34b1cc35554d3ca863d6e986d2342e644885")
    );
    assert_eq!(
        rollup.leaf_signing_hash(&leaf).await.unwrap(),
        b256!("0x874cb9e1f83defb47d9ddf8611b05e1ab0b2d6db664e136eef5d4a7aedbb96b4")
    );
    let sig: [u8; 65] = alloy::primitives::hex::decode(
        "aa681133e6158910d96862c26e01e7d22c53e87c9344e304ddb4a199ce508a605bb2412404f82a136f553bbc38a10c96a6c967c2b1fce3a7e67e8543e19ed45b1c",
    )
    .unwrap()
    .try_into()
    .unwrap();
    assert_eq!(
        rollup
            .leaf_signer(&leaf, &LeafSignature::from(sig))
            .await
            .unwrap(),
        leaf.executor
    );
}

#[tokio::test]
async fn signatures_match_rust_and_reject_non_canonical() {
    let rollup = vector_rollup().await;
    let key = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let signer = Address::from_public_key(key.verifying_key());
    let domain = leaf_domain(31337, rollup.address());
    let mut leaf = vector_leaf();
    leaf.executor = signer;
    let sig = sign_leaf(&leaf, &domain, &key).unwrap();
    assert_eq!(rollup.leaf_signer(&leaf, &sig).await.unwrap(), signer);
    // Another leaf: another signer.
    let mut other = leaf;
    other.opCount += 1;
    assert_ne!(rollup.leaf_signer(&other, &sig).await.unwrap(), signer);

    // Non-canonical forms recover nothing.
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let bytes = *sig.as_bytes();
    let s = U256::from_be_slice(&bytes[32..64]);
    let mut high_s = bytes;
    high_s[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high_s[64] = if bytes[64] == 27 { 28 } else { 27 };
    let mut bad_v = bytes;
    bad_v[64] = 1;
    let mut zero_r = bytes;
    zero_r[..32].fill(0);
    let mut zero_s = bytes;
    zero_s[32..64].fill(0);
    for (what, b) in [
        ("high s", high_s),
        ("v = 1", bad_v),
        ("r = 0", zero_r),
        ("s = 0", zero_s),
    ] {
        assert_eq!(
            rollup
                .leaf_signer(&leaf, &LeafSignature::from(b))
                .await
                .unwrap(),
            Address::ZERO,
            "{what}"
        );
    }
    // Wrong length, through the raw binding.
    use alloy::sol_types::SolCall;
    use verinfer_l1_contracts::L1;
    use verinfer_l1_contracts::bindings::InferenceRollup;
    let call = InferenceRollup::leafSignerCall {
        leaf: leaf.into(),
        signature: bytes[..64].to_vec().into(),
    };
    let out = rollup
        .l1()
        .call(verinfer_l1_contracts::TxRequest::call(
            rollup.address(),
            call.abi_encode(),
        ))
        .await
        .unwrap();
    assert_eq!(
        InferenceRollup::leafSignerCall::abi_decode_returns(&out).unwrap(),
        Address::ZERO
    );
}

fn arb_leaf() -> impl Strategy<Value = InferenceLeaf> {
    (
        any::<u16>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u8>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<[u8; 20]>(),
    )
        .prop_map(|(v, a, b, c, d, e, f, g, h, i)| InferenceLeaf {
            version: v,
            requestId: B256::from(a),
            modelRoot: B256::from(b),
            promptRoot: B256::from(c),
            paramsHash: B256::from(d),
            outputHash: B256::from(e),
            finishReason: f,
            traceRoot: B256::from(g),
            opCount: h,
            executor: Address::from(i),
        })
}

#[test]
fn random_leaves_hash_alike() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rollup = runtime.block_on(vector_rollup());
    let domain = leaf_domain(31337, rollup.address());
    proptest!(ProptestConfig::with_cases(64), |(leaf in arb_leaf())| {
        let (h, s) = runtime.block_on(async {
            (rollup.hash_leaf(&leaf).await.unwrap(), rollup.leaf_signing_hash(&leaf).await.unwrap())
        });
        prop_assert_eq!(h, leaf.hash());
        prop_assert_eq!(s, leaf.signing_hash(&domain));
    });
}

#[tokio::test]
async fn batch_root_of_vector() {
    // docs/protocol.md §8: batchRoot([leafHash, keccak256("x")]) and stateRoot_1; posted on chain.
    let fx = Fx::ready().await;
    let hashes = [vector_leaf().hash(), keccak256("x")];
    let root = protocol::batch_root(&hashes);
    assert_eq!(
        root,
        b256!("0xdd6a751a7267a7eb915f8c6e3a6699099db006492862f402148b52c1751a4cff")
    );
    let posted = fx
        .by(fx.seq)
        .post_batch(
            alloy::primitives::Bytes::from_static(b"data"),
            root,
            2,
            B256::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        posted.state_root,
        b256!("0x95609d4a8feb9d1cf9e9a5d12c7225e390da2d631a4af045c758e01f1866c1bd")
    );
}

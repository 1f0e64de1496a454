//! Known-answer vectors (also listed in `docs/protocol.md` §8), computed independently in Python
//! (pycryptodome keccak, eth-abi, eth-account's EIP-712 and RFC 6979 signer), and an EIP-712 leaf
//! hash recomputed by hand from the type string and ABI words.

use alloy_primitives::{Address, B256, U256, address, b256, hex, keccak256};
use proptest::prelude::*;
use verinfer_protocol::{
    batch::{GENESIS_STATE_ROOT, batch_root, next_state_root},
    leaf::{
        FinishReason, InferenceLeaf, LEAF_VERSION, LeafSignature, SamplingParams, leaf_domain,
        recover_signer, sign_leaf, signing_hash,
    },
    merkle::merkle_root,
    tensor::{tensor_root, token_ids_root},
    trace::trace_leaf,
};

const ROLLUP: Address = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");

fn key() -> k256::ecdsa::SigningKey {
    let mut sk = [0u8; 32];
    sk[31] = 1;
    k256::ecdsa::SigningKey::from_slice(&sk).expect("valid key")
}

fn params() -> SamplingParams {
    SamplingParams {
        max_tokens: 256,
        temperature_milli: 700,
        top_p_milli: 950,
        seed: 42,
        choice_index: 1,
    }
}

fn leaf() -> InferenceLeaf {
    InferenceLeaf {
        version: LEAF_VERSION,
        requestId: keccak256("request-1"),
        modelRoot: keccak256("model"),
        promptRoot: token_ids_root(&[1, 2, 3]),
        paramsHash: params().params_hash(),
        outputHash: token_ids_root(&[4, 5]),
        finishReason: FinishReason::Stop.into(),
        traceRoot: keccak256("trace"),
        opCount: 1000,
        executor: address!("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"),
    }
}

#[test]
fn merkle_and_tensor_vectors() {
    let l: Vec<B256> = (0..8u64).map(|i| keccak256(i.to_be_bytes())).collect();
    let want = [
        (
            0,
            b256!("0x0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        (
            1,
            b256!("0x011b4d03dd8c01f1049143cf9c4c817e4b167f1d1b83e5c6f0f10d89ba1e7bce"),
        ),
        (
            2,
            b256!("0x1a232952e30c721bb8ce6d74cdc988052b3a4e87eaac5ad92e44479241d34f9c"),
        ),
        (
            3,
            b256!("0x44ad5902fecf82d3829598a89b2ff01b3440868f0927474dbf721535683830a2"),
        ),
        (
            5,
            b256!("0x32b0fc0a3eb30231158bdfa1f8d8b0501721e8de0574be62c950f0bedd8cc58a"),
        ),
        (
            8,
            b256!("0x77d01398e1c1e2a85da1cf6415cfabd825a4886936827cc326ec579a34e7d8a1"),
        ),
    ];
    for (n, root) in want {
        assert_eq!(merkle_root(&l[..n]), root, "n={n}");
    }
    let t = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
    let want = [
        (
            0,
            b256!("0xb5d4d1df10388bbc208778ff02310db98fdaa68efed0b2068a9bef78bd3bfd74"),
        ),
        (
            1,
            b256!("0xb5d4d1df10388bbc208778ff02310db98fdaa68efed0b2068a9bef78bd3bfd74"),
        ),
        (
            1024,
            b256!("0x8067fe24dad927632e32dcaf9b7958a5f301cfc4e37f419a08e059290be23370"),
        ),
        (
            1025,
            b256!("0xf46eb2f2357faa8734ab864f0fe8b91e971cc981f57b9c2e8f492982a94c1d30"),
        ),
        (
            3000,
            b256!("0xcf55b630f8e0ca396a3a20b1baf2e59ecea9972bc74cf92bc13f23c8388cd4fb"),
        ),
    ];
    for (n, root) in want {
        assert_eq!(tensor_root(&t(n)), root, "n={n}");
    }
    assert_eq!(
        token_ids_root(&[]),
        b256!("0x15e7795a60923ebf32d756a47c20c43b99c1781458e8ac12818f0f50672f8843")
    );
    assert_eq!(
        token_ids_root(&[1, 2, 3]),
        b256!("0xf870b5015b4d7dcad3e1cc4226ffd6b64e93bcf2d37a35f893c9c9a35e80aacd")
    );
    assert_eq!(
        trace_leaf(5, keccak256("desc"), keccak256("out")),
        b256!("0x4d922e38ccbc0fd1191c427557d33fb583a16ea66952cc67c966a40ba62f03d3")
    );
}

#[test]
fn params_vectors() {
    assert_eq!(
        params().params_hash(),
        b256!("0x0668dff09146a4b79e8f7ecdc16bceca69b2c460eb2f8a9409e833d72291f8d6")
    );
    assert_eq!(
        params().sampling_key(),
        b256!("0x96e56fc7c9bb0d5de7cdd0f6073a515ba4d60b07329f889d7ab40cee38d3ff96")
    );
}

#[test]
fn leaf_signature_and_batch_vectors() {
    let key = key();
    assert_eq!(
        Address::from_public_key(key.verifying_key()),
        leaf().executor
    );
    let domain = leaf_domain(31337, ROLLUP);
    assert_eq!(
        domain.separator(),
        b256!("0x520be9f5f89679a05096276b0bde6007ea05269ccd680cb2fffc615ef0d6ab69")
    );
    let leaf = leaf();
    assert_eq!(
        leaf.hash(),
        b256!("0xe835f456851fa62d28f6f66ba72e34b1cc35554d3ca863d6e986d2342e644885")
    );
    assert_eq!(
        signing_hash(&leaf, &domain),
        b256!("0x874cb9e1f83defb47d9ddf8611b05e1ab0b2d6db664e136eef5d4a7aedbb96b4")
    );
    let sig = sign_leaf(&leaf, &domain, &key).expect("signs");
    assert_eq!(
        sig.as_bytes()[..],
        hex!(
            "aa681133e6158910d96862c26e01e7d22c53e87c9344e304ddb4a199ce508a605bb2412404f82a136f553bbc38a10c96a6c967c2b1fce3a7e67e8543e19ed45b1c"
        )[..]
    );
    assert_eq!(
        sig.recover(&leaf, &domain).expect("recovers"),
        leaf.executor
    );

    let root = batch_root(&[leaf.hash(), keccak256("x")]);
    assert_eq!(
        root,
        b256!("0xdd6a751a7267a7eb915f8c6e3a6699099db006492862f402148b52c1751a4cff")
    );
    assert_eq!(
        next_state_root(GENESIS_STATE_ROOT, root),
        b256!("0x95609d4a8feb9d1cf9e9a5d12c7225e390da2d631a4af045c758e01f1866c1bd")
    );
}

/// EIP-712 written out by hand: `hashStruct = keccak(typeHash ‖ enc(field)...)`, every field one
/// 32-byte ABI word, and the signing hash `keccak(0x19 0x01 ‖ domainSeparator ‖ hashStruct)`.
fn hand_hash(leaf: &InferenceLeaf, chain_id: u64, contract: Address) -> (B256, B256) {
    let word_u = |v: u64| U256::from(v).to_be_bytes::<32>();
    let word_addr = |a: Address| {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(a.as_slice());
        w
    };
    let type_hash = keccak256(
        "InferenceLeaf(uint16 version,bytes32 requestId,bytes32 modelRoot,bytes32 promptRoot,\
bytes32 paramsHash,bytes32 outputHash,uint8 finishReason,bytes32 traceRoot,uint64 opCount,\
address executor)",
    );
    let mut enc = Vec::new();
    enc.extend_from_slice(type_hash.as_slice());
    enc.extend_from_slice(&word_u(leaf.version.into()));
    enc.extend_from_slice(leaf.requestId.as_slice());
    enc.extend_from_slice(leaf.modelRoot.as_slice());
    enc.extend_from_slice(leaf.promptRoot.as_slice());
    enc.extend_from_slice(leaf.paramsHash.as_slice());
    enc.extend_from_slice(leaf.outputHash.as_slice());
    enc.extend_from_slice(&word_u(leaf.finishReason.into()));
    enc.extend_from_slice(leaf.traceRoot.as_slice());
    enc.extend_from_slice(&word_u(leaf.opCount));
    enc.extend_from_slice(&word_addr(leaf.executor));
    assert_eq!(enc.len(), 11 * 32);
    let struct_hash = keccak256(&enc);

    let mut dom = Vec::new();
    dom.extend_from_slice(
        keccak256(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
        )
        .as_slice(),
    );
    dom.extend_from_slice(keccak256("verinfer").as_slice());
    dom.extend_from_slice(keccak256("1").as_slice());
    dom.extend_from_slice(&word_u(chain_id));
    dom.extend_from_slice(&word_addr(contract));
    let separator = keccak256(&dom);
    let mut msg = vec![0x19, 0x01];
    msg.extend_from_slice(separator.as_slice());
    msg.extend_from_slice(struct_hash.as_slice());
    (struct_hash, keccak256(&msg))
}

#[test]
fn eip712_by_hand() {
    let (struct_hash, signing) = hand_hash(&leaf(), 31337, ROLLUP);
    assert_eq!(leaf().hash(), struct_hash);
    assert_eq!(signing_hash(&leaf(), &leaf_domain(31337, ROLLUP)), signing);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn eip712_by_hand_random(
        version: u16, ids: [[u8; 32]; 6], finish: u8, op_count: u64, executor: [u8; 20],
        chain_id: u64, contract: [u8; 20],
    ) {
        let leaf = InferenceLeaf {
            version,
            requestId: B256::new(ids[0]),
            modelRoot: B256::new(ids[1]),
            promptRoot: B256::new(ids[2]),
            paramsHash: B256::new(ids[3]),
            outputHash: B256::new(ids[4]),
            finishReason: finish,
            traceRoot: B256::new(ids[5]),
            opCount: op_count,
            executor: Address::new(executor),
        };
        let (struct_hash, signing) = hand_hash(&leaf, chain_id, Address::new(contract));
        prop_assert_eq!(leaf.hash(), struct_hash);
        prop_assert_eq!(signing_hash(&leaf, &leaf_domain(chain_id, Address::new(contract))), signing);
    }

    #[test]
    fn signatures_recover_and_bind_every_field(field in 0usize..10, chain_id in 1u64..100_000) {
        let key = key();
        let domain = leaf_domain(chain_id, ROLLUP);
        let leaf = leaf();
        let sig = sign_leaf(&leaf, &domain, &key).expect("signs");
        let decoded = sig.to_signature().expect("canonical");
        prop_assert_eq!(recover_signer(&leaf, &domain, &decoded).expect("recovers"), leaf.executor);
        let bytes: [u8; 65] = sig.into();
        prop_assert_eq!(LeafSignature::from(bytes), sig);

        let mut other = leaf;
        match field {
            0 => other.version += 1,
            1 => other.requestId.0[0] ^= 1,
            2 => other.modelRoot.0[31] ^= 1,
            3 => other.promptRoot.0[5] ^= 1,
            4 => other.paramsHash.0[9] ^= 1,
            5 => other.outputHash.0[1] ^= 1,
            6 => other.finishReason = 1,
            7 => other.traceRoot.0[2] ^= 1,
            8 => other.opCount += 1,
            _ => other.executor.0[0] ^= 1,
        }
        // A changed leaf either fails to recover or recovers a different address.
        let who = recover_signer(&other, &domain, &decoded);
        prop_assert!(who.map_or(true, |a| a != leaf.executor));
    }
}

//! Property tests: incremental builders equal the one-shot definitions, every proof verifies and
//! any tampering fails, tensor roots see every byte, and the DA codec round-trips and rejects
//! corrupted input without panicking.

use alloy_primitives::{Address, B256, keccak256};
use proptest::{prelude::*, strategy::ValueTree};
use verinfer_protocol::{
    batch,
    codec::{BatchData, BatchEntry, CodecError, compress},
    leaf::{InferenceLeaf, LEAF_VERSION, LeafSignature, SamplingParams},
    merkle::{self, EMPTY_LEAF, MerkleBuilder, MerkleProof, MerkleTree, merkle_root, tree_depth},
    tensor::{self, CHUNK_BYTES, TensorHasher, tensor_root, token_ids_root},
    trace::{self, TraceBuilder, trace_leaf},
};

/// Deterministic distinct leaves from a seed (keeps shrinking cheap).
fn leaves(seed: u64, n: usize) -> Vec<B256> {
    (0..n as u64)
        .map(|i| {
            let mut pre = [0u8; 16];
            pre[..8].copy_from_slice(&seed.to_le_bytes());
            pre[8..].copy_from_slice(&i.to_le_bytes());
            keccak256(pre)
        })
        .collect()
}

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut block = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            keccak256([seed.to_le_bytes(), block.to_le_bytes()].concat()).as_slice(),
        );
        block += 1;
    }
    out.truncate(n);
    out
}

/// The definition read literally: pad to a power of two with EMPTY_LEAF, hash pairs.
fn naive_root(leaves: &[B256]) -> B256 {
    if leaves.is_empty() {
        return EMPTY_LEAF;
    }
    let mut level = leaves.to_vec();
    level.resize(leaves.len().next_power_of_two(), EMPTY_LEAF);
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| keccak256([p[0].as_slice(), p[1].as_slice()].concat()))
            .collect();
    }
    level[0]
}

fn naive_tensor_root(bytes: &[u8]) -> B256 {
    let chunks: Vec<B256> = if bytes.is_empty() {
        vec![keccak256([0u8; CHUNK_BYTES])]
    } else {
        bytes
            .chunks(CHUNK_BYTES)
            .map(|c| {
                let mut buf = c.to_vec();
                buf.resize(CHUNK_BYTES, 0);
                keccak256(buf)
            })
            .collect()
    };
    naive_root(&chunks)
}

/// Leaf counts: uniform in 0..5000 plus powers of two and their neighbours.
fn leaf_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..5000,
        (0u32..=12).prop_map(|k| 1usize << k),
        (1u32..=12).prop_map(|k| (1usize << k) - 1),
        (0u32..=12).prop_map(|k| (1usize << k) + 1),
    ]
}

/// Byte lengths: uniform in 0..10000 plus chunk boundaries and their neighbours.
fn byte_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..10_000,
        (0usize..=9).prop_map(|k| k * CHUNK_BYTES),
        (1usize..=9).prop_map(|k| k * CHUNK_BYTES - 1),
        (0usize..=9).prop_map(|k| k * CHUNK_BYTES + 1),
    ]
}

/// Every way a proof can be tampered with must fail.
fn assert_tamper_fails(root: B256, leaf: B256, proof: &MerkleProof, pick: usize, bit: usize) {
    assert!(merkle::verify(root, leaf, proof));
    // Leaf changed.
    let mut bad_leaf = leaf;
    bad_leaf.0[bit / 8 % 32] ^= 1 << (bit % 8);
    assert!(!merkle::verify(root, bad_leaf, proof));
    // Wrong root.
    let mut bad_root = root;
    bad_root.0[bit / 8 % 32] ^= 1 << (bit % 8);
    assert!(!merkle::verify(bad_root, leaf, proof));
    // Sibling flipped.
    if !proof.siblings.is_empty() {
        let mut p = proof.clone();
        let s = pick % p.siblings.len();
        p.siblings[s].0[bit / 8 % 32] ^= 1 << (bit % 8);
        assert!(!merkle::verify(root, leaf, &p));
        // Sibling dropped or added.
        let mut p = proof.clone();
        p.siblings.pop();
        assert!(!merkle::verify(root, leaf, &p));
    }
    let mut p = proof.clone();
    p.siblings.push(B256::ZERO);
    assert!(!merkle::verify(root, leaf, &p));
    // Index changed (to any other index, inside or outside the tree).
    let mut p = proof.clone();
    p.index ^= 1 << (pick % 64);
    assert!(!merkle::verify(root, leaf, &p));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn builder_equals_one_shot(n in leaf_count(), seed: u64) {
        let l = leaves(seed, n);
        let want = naive_root(&l);
        prop_assert_eq!(merkle_root(&l), want);
        prop_assert_eq!(MerkleTree::new(l.clone()).root(), want);
        let mut b = MerkleBuilder::new();
        for (i, leaf) in l.iter().enumerate() {
            prop_assert_eq!(b.push(*leaf), i as u64);
        }
        prop_assert_eq!(b.root(), want);
        prop_assert_eq!(b.finish(), want);
    }

    #[test]
    fn trace_builder_equals_one_shot(n in 0usize..600, seed: u64) {
        let d = leaves(seed, n);
        let o = leaves(seed.wrapping_add(1), n);
        let mut b = TraceBuilder::new();
        let mut tl = Vec::new();
        for i in 0..n {
            b.push(d[i], o[i]);
            tl.push(trace_leaf(i as u64, d[i], o[i]));
        }
        let c = b.finish();
        prop_assert_eq!(c.op_count, n as u64);
        prop_assert_eq!(c.root, naive_root(&tl));
    }

    #[test]
    fn tensor_hasher_equals_one_shot(len in byte_len(), seed: u64, cuts in prop::collection::vec(0usize..3000, 0..8)) {
        let b = bytes(seed, len);
        let want = naive_tensor_root(&b);
        prop_assert_eq!(tensor_root(&b), want);
        let mut h = TensorHasher::new();
        let mut rest = &b[..];
        for cut in cuts {
            let cut = cut.min(rest.len());
            h.write(&rest[..cut]);
            rest = &rest[cut..];
        }
        h.write(rest);
        prop_assert_eq!(h.finish(), want);
    }

    #[test]
    fn token_ids_root_is_u32_le_tensor_root(ids in prop::collection::vec(any::<u32>(), 0..1200)) {
        let le: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut preimage = (ids.len() as u64).to_be_bytes().to_vec();
        preimage.extend_from_slice(naive_tensor_root(&le).as_slice());
        prop_assert_eq!(token_ids_root(&ids), keccak256(&preimage));
    }

    #[test]
    fn single_byte_change_changes_tensor_root(len in 1usize..10_000, seed: u64, pos: prop::sample::Index, xor in 1u8..=255) {
        let mut b = bytes(seed, len);
        let root = tensor_root(&b);
        b[pos.index(len)] ^= xor;
        prop_assert_ne!(tensor_root(&b), root);
    }

    #[test]
    fn merkle_proofs_verify_and_resist_tampering(n in 1usize..700, seed: u64, idx: prop::sample::Index, pick: usize, bit in 0usize..256) {
        let l = leaves(seed, n);
        let tree = MerkleTree::new(l.clone());
        let root = tree.root();
        let i = idx.index(n);
        let p = merkle::proof(&l, i as u64).unwrap();
        prop_assert_eq!(&p, &tree.proof(i as u64).unwrap());
        prop_assert_eq!(p.siblings.len() as u32, tree_depth(n as u64));
        prop_assert!(p.verify_with_count(root, n as u64, l[i]));
        assert_tamper_fails(root, l[i], &p, pick, bit);
        // Batch-level helpers agree.
        prop_assert_eq!(batch::batch_root(&l), root);
        prop_assert!(batch::verify_leaf(root, n as u64, l[i], &batch::leaf_proof(&l, i as u64).unwrap()));
    }

    #[test]
    fn trace_proofs(n in 1usize..300, seed: u64, idx: prop::sample::Index, pick: usize, bit in 0usize..256) {
        let d = leaves(seed, n);
        let o = leaves(!seed, n);
        let tl: Vec<B256> = (0..n).map(|i| trace_leaf(i as u64, d[i], o[i])).collect();
        let mut b = TraceBuilder::new();
        for i in 0..n { b.push(d[i], o[i]); }
        let c = b.finish();
        let i = idx.index(n);
        let p = trace::trace_proof(&tl, i as u64).unwrap();
        prop_assert!(trace::verify_trace_leaf(&c, i as u64, d[i], o[i], &p));
        prop_assert!(!trace::verify_trace_leaf(&c, i as u64, o[i], d[i], &p));
        assert_tamper_fails(c.root, tl[i], &p, pick, bit);
    }

    #[test]
    fn tensor_chunk_proofs(len in byte_len(), seed: u64, idx: prop::sample::Index, pick: usize, bit in 0usize..8192) {
        let b = bytes(seed, len);
        let root = tensor_root(&b);
        let chunks = tensor::chunk_count(len as u64);
        let i = idx.index(chunks as usize) as u64;
        let (chunk, p) = tensor::tensor_chunk_proof(&b, i).unwrap();
        prop_assert!(tensor::verify_tensor_chunk(root, i, &chunk, &p));
        prop_assert!(tensor::verify_tensor_chunk_with_len(root, len as u64, i, &chunk, &p));
        let mut bad = chunk;
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!tensor::verify_tensor_chunk(root, i, &bad, &p));
        assert_tamper_fails(root, keccak256(chunk), &p, pick, bit);
        prop_assert!(tensor::tensor_chunk_proof(&b, chunks).is_err());
    }
}

fn params() -> impl Strategy<Value = SamplingParams> {
    (1u32.., 0u32..=2000, 1u32..=1000, any::<u64>(), any::<u32>()).prop_map(
        |(max_tokens, temperature_milli, top_p_milli, seed, choice_index)| SamplingParams {
            max_tokens,
            temperature_milli,
            top_p_milli,
            seed,
            choice_index,
        },
    )
}

fn entry() -> impl Strategy<Value = BatchEntry> {
    (
        params(),
        prop::collection::vec(0u32..50_000, 0..200),
        prop::collection::vec(any::<u32>(), 0..100),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<[u8; 20]>(),
        0u8..=1,
        prop::collection::vec(any::<u8>(), 65),
    )
        .prop_map(
            |(params, prompt, output, root, op_count, executor, finish, sig)| {
                let mut signature = [0u8; 65];
                signature.copy_from_slice(&sig);
                BatchEntry {
                    leaf: InferenceLeaf {
                        version: LEAF_VERSION,
                        requestId: keccak256(root),
                        modelRoot: B256::new(root),
                        promptRoot: token_ids_root(&prompt),
                        paramsHash: params.params_hash(),
                        outputHash: token_ids_root(&output),
                        finishReason: finish,
                        traceRoot: keccak256(executor),
                        opCount: op_count,
                        executor: Address::new(executor),
                    },
                    prompt_tokens: prompt,
                    params,
                    output_tokens: output,
                    signature: LeafSignature::from(signature),
                }
            },
        )
}

fn small_encoded_batch() -> Vec<u8> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let entries = prop::collection::vec(entry(), 2)
        .new_tree(&mut runner)
        .map(|t| t.current())
        .unwrap_or_default();
    BatchData::new(17, entries).encode().unwrap()
}

#[test]
fn truncation_at_every_offset_is_rejected() {
    let enc = small_encoded_batch();
    assert!(BatchData::decode(&enc).is_ok());
    for k in 0..enc.len() {
        assert!(
            BatchData::decode(&enc[..k]).is_err(),
            "prefix of {k} bytes accepted"
        );
    }
    let raw = verinfer_protocol::codec::decompress(&enc).unwrap();
    for k in 0..raw.len() {
        let err = BatchData::decode_raw(&raw[..k]).unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { .. }),
            "prefix {k}: {err}"
        );
        assert!(BatchData::decode(&compress(&raw[..k]).unwrap()).is_err());
    }
}

/// zstd is not a canonical encoding: a few bits (e.g. inside entropy-table descriptions) can change
/// without changing the content. The content checksum and the layout checks make every other flip
/// an error, so a flipped frame either fails or decodes to exactly the original batch.
fn assert_flip_rejected_or_harmless(original: &BatchData, bad: &[u8]) -> bool {
    match BatchData::decode(bad) {
        Err(_) => true,
        Ok(decoded) => {
            assert_eq!(
                &decoded, original,
                "a flipped frame decoded to a different batch"
            );
            false
        }
    }
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let enc = small_encoded_batch();
    let original = BatchData::decode(&enc).unwrap();
    let (mut rejected, mut harmless) = (0, 0);
    for pos in 0..enc.len() {
        for xor in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            let mut bad = enc.clone();
            bad[pos] ^= xor;
            if assert_flip_rejected_or_harmless(&original, &bad) {
                rejected += 1
            } else {
                harmless += 1
            }
        }
    }
    eprintln!("byte flips: {rejected} rejected, {harmless} decoded to the same batch");
    // Header, layout and content are all covered; only entropy-coding slack may pass.
    assert!(
        harmless * 100 <= rejected,
        "{harmless} harmless vs {rejected} rejected flips"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn codec_round_trips(chain_id: u64, entries in prop::collection::vec(entry(), 0..6)) {
        let batch = BatchData::new(chain_id, entries);
        let enc = batch.encode().unwrap();
        let back = BatchData::decode(&enc).unwrap();
        prop_assert_eq!(&back, &batch);
        prop_assert_eq!(back.encode().unwrap(), enc);
        prop_assert_eq!(BatchData::decode_raw(&batch.encode_raw().unwrap()).unwrap(), batch);
    }

    #[test]
    fn codec_rejects_random_flips(entries in prop::collection::vec(entry(), 1..4), pos: prop::sample::Index, xor in 1u8..=255) {
        let enc = BatchData::new(5, entries).encode().unwrap();
        let original = BatchData::decode(&enc).unwrap();
        let mut bad = enc.clone();
        bad[pos.index(enc.len())] ^= xor;
        assert_flip_rejected_or_harmless(&original, &bad);
    }

    #[test]
    fn codec_never_panics_on_garbage(data in prop::collection::vec(any::<u8>(), 0..2000), raw_flip: prop::sample::Index, xor in 1u8..=255) {
        let _ = BatchData::decode(&data);
        let _ = BatchData::decode_raw(&data);
        // Raw-layout corruption: may hit unchecked fields (ids, roots) and decode, but never panics.
        let batch = BatchData::new(1, vec![]);
        let mut raw = batch.encode_raw().unwrap();
        raw.extend_from_slice(&data);
        let i = raw_flip.index(raw.len());
        raw[i] ^= xor;
        let _ = BatchData::decode_raw(&raw).map(|b| b.validate());
        let _ = compress(&raw).map(|c| BatchData::decode(&c));
    }
}

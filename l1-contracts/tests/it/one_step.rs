//! `OneStepVerifier` against the Rust reference (`vir::ops`, `vir::sampling`, `protocol`): differential tests on the
//! embedded chain with at least 500 seeded random cases per op (boundary values mixed in), ChaCha20 draws against
//! `vir::sampling::draw`, the commitment helpers against `protocol`, the reverts, and the gas of every op at
//! SmolLM2-135M sizes (printed with `--nocapture`; the largest must stay within 5M gas).

use alloy::primitives::{B256, Bytes, U256};
use alloy::sol_types::SolCall;
use protocol::tensor::{
    chunk_count, tensor_chunk_proof, verify_tensor_chunk, verify_tensor_chunk_with_len,
};
use protocol::trace::{trace_proof, verify_trace_leaf};
use protocol::{MerkleProof, SamplingParams, TraceCommitment, tensor_root, trace_leaf, trace_root};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use verinfer_l1_contracts::one_step::{
    KIND_Q4_1, KIND_Q8_0, OneStep, OneStepError, OneStepVerifier as V, i16_bytes, i32_bytes,
    i64_bytes, intrinsic_gas, qvec_bytes,
};
use verinfer_l1_contracts::{EmbeddedChain, EmbeddedL1, dev};
use vir::fixed::QVec;
use vir::gguf::{GgufFile, GgufWriter, TensorType};
use vir::ops::{self, AttnShape};
use vir::weights::QuantMatrix;

/// Random cases per op (at least).
const CASES: usize = 500;

async fn deploy() -> OneStep<EmbeddedL1> {
    let chain = EmbeddedChain::default();
    OneStep::deploy(chain.connect(dev::accounts()[0].address))
        .await
        .unwrap()
}

fn rng(tag: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x0e57_e900 ^ tag)
}

// ---------------------------------------------------------------------------------------------------------------
// Random inputs

/// Uniform in `[0, n)`.
fn below(r: &mut ChaCha20Rng, n: u64) -> u64 {
    r.next_u64() % n
}

/// Uniform in `[lo, hi]`.
fn between(r: &mut ChaCha20Rng, lo: i64, hi: i64) -> i64 {
    let span = (i128::from(hi) - i128::from(lo) + 1) as u128;
    (i128::from(lo) + (u128::from(r.next_u64()) % span) as i128) as i64
}

fn coin(r: &mut ChaCha20Rng, one_in: u64) -> bool {
    below(r, one_in) == 0
}

/// A value whose bit length is uniform in `0..=bits` (`bits <= 63`), with a random sign: every magnitude is hit.
fn mag(r: &mut ChaCha20Rng, bits: u32) -> i64 {
    let b = below(r, u64::from(bits) + 1) as u32;
    if b == 0 {
        return 0;
    }
    let top = 1i64 << (b - 1);
    let v = top + (r.next_u64() as i64 & (top - 1));
    if r.next_u32() & 1 == 1 { -v } else { v }
}

/// Any i32, with the range ends and small values mixed in.
fn any_i32(r: &mut ChaCha20Rng) -> i32 {
    if coin(r, 8) {
        [i32::MIN, i32::MAX, 0, 1, -1, i32::MIN + 1, i32::MAX - 1][below(r, 7) as usize]
    } else {
        mag(r, 31) as i32
    }
}

/// A vector of `n` i32 in one of several shapes (wide, narrow, constant, one spike, zero, range ends).
fn i32_vec(r: &mut ChaCha20Rng, n: usize) -> Vec<i32> {
    match below(r, 8) {
        0 => vec![0; n],
        1 => vec![any_i32(r); n],
        2 => {
            let mut v = vec![0; n];
            v[below(r, n as u64) as usize] = any_i32(r);
            v
        }
        3 => (0..n).map(|_| mag(r, 12) as i32).collect(),
        4 => (0..n)
            .map(|_| [i32::MIN, i32::MAX, 0][below(r, 3) as usize])
            .collect(),
        _ => {
            let bits = 1 + below(r, 31) as u32;
            (0..n).map(|_| mag(r, bits) as i32).collect()
        }
    }
}

/// int16 QVec values (`|q| <= 2^15`, -2^15 included).
fn i16_vec(r: &mut ChaCha20Rng, n: usize) -> Vec<i16> {
    match below(r, 6) {
        0 => vec![i16::MIN; n],
        1 => vec![i16::MAX; n],
        2 => vec![0; n],
        _ => (0..n)
            .map(|_| {
                if coin(r, 16) {
                    i16::MIN
                } else {
                    mag(r, 15) as i16
                }
            })
            .collect(),
    }
}

/// A finite f16 block scale with `|units| < 2^30` (exponent field ≤ 20), the largest one and zero mixed in.
fn f16_scale(r: &mut ChaCha20Rng) -> u16 {
    let sign = if coin(r, 2) { 0x8000 } else { 0 };
    match below(r, 16) {
        0 => sign | (20 << 10) | 0x3ff,
        1 => sign,
        2 => sign | below(r, 1024) as u16,
        _ => sign | ((below(r, 21) as u16) << 10) | below(r, 1024) as u16,
    }
}

fn block_bytes(kind: u8) -> usize {
    if kind == KIND_Q4_1 { 20 } else { 34 }
}

/// Raw GGUF blocks of a `rows × cols` matrix: random scales, and quants that are random or at their extremes.
fn random_blocks(r: &mut ChaCha20Rng, kind: u8, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rows * cols / 32 {
        out.extend_from_slice(&f16_scale(r).to_le_bytes());
        if kind == KIND_Q4_1 {
            out.extend_from_slice(&f16_scale(r).to_le_bytes());
        }
        let quant_bytes = if kind == KIND_Q4_1 { 16 } else { 32 };
        let fill = below(r, 4);
        for _ in 0..quant_bytes {
            out.push(match fill {
                0 => 0xff,
                1 => 0x80,
                _ => r.next_u32() as u8,
            });
        }
    }
    out
}

/// The matrix as the Rust loader reads it (through a GGUF image and `QuantMatrix::from_gguf`).
fn load_matrix(kind: u8, rows: usize, cols: usize, raw: Vec<u8>) -> QuantMatrix {
    let ty = if kind == KIND_Q4_1 {
        TensorType::Q4_1
    } else {
        TensorType::Q8_0
    };
    let mut w = GgufWriter::new();
    w.tensor("m", &[cols as u64, rows as u64], ty, raw);
    let file = GgufFile::parse(w.to_bytes()).unwrap();
    QuantMatrix::from_gguf(&file, "m").unwrap()
}

fn u(x: usize) -> U256 {
    U256::from(x)
}

fn qvec(exp: i32, values: Vec<i16>) -> QVec {
    QVec {
        exps: vec![exp],
        values,
    }
}

fn revert_of<T: std::fmt::Debug>(r: Result<T, OneStepError>) -> V::OneStepVerifierErrors {
    match r {
        Err(OneStepError::Revert(e)) => e,
        other => panic!("expected a custom-error revert, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding, normalization, projections

#[tokio::test]
async fn embed_matches_reference() {
    let v = deploy().await;
    let mut r = rng(1);
    for kind in [KIND_Q4_1, KIND_Q8_0] {
        let (rows, cols) = (64, 96);
        let raw = random_blocks(&mut r, kind, rows, cols);
        let w = load_matrix(kind, rows, cols, raw.clone());
        let bb = block_bytes(kind);
        for _ in 0..CASES {
            let t = below(&mut r, rows as u64) as usize;
            let i = below(&mut r, cols as u64) as usize;
            let expected = ops::embed(&w, t as u32, ops::RESIDUAL_FRAC)[i];
            let b = t * cols / 32 + i / 32;
            let blk = Bytes::copy_from_slice(&raw[b * bb..(b + 1) * bb]);
            let got = v
                .call(V::embedCall {
                    blk,
                    kind,
                    j: u(i % 32),
                })
                .await
                .unwrap();
            assert_eq!(got, expected, "kind {kind} token {t} element {i}");
        }
    }
}

#[tokio::test]
async fn rms_norm_matches_reference() {
    let v = deploy().await;
    let mut r = rng(2);
    for case in 0..CASES {
        let d = match case % 5 {
            0 => 576,
            1 => 1 + below(&mut r, 4) as usize,
            _ => 1 + below(&mut r, 300) as usize,
        };
        let h = i32_vec(&mut r, d);
        let gamma: Vec<i64> = (0..d)
            .map(|_| {
                if coin(&mut r, 16) {
                    [(1 << 24) - 1, -(1 << 24) + 1][below(&mut r, 2) as usize]
                } else {
                    mag(&mut r, 24)
                }
            })
            .collect();
        let eps_fx = match below(&mut r, 4) {
            0 => 0,
            1 => 2_814_749_767, // 1e-5 · 2^48
            2 => (1 << 48) - 1,
            _ => below(&mut r, 1 << 48) as i64,
        };
        let expected = ops::rms_norm(&h, &gamma, eps_fx);
        let g32: Vec<i32> = gamma.iter().map(|&g| g as i32).collect();
        let (start, count) = if coin(&mut r, 4) {
            let s = below(&mut r, d as u64) as usize;
            (s, 1 + below(&mut r, (d - s) as u64) as usize)
        } else {
            (0, d)
        };
        let got = v
            .call(V::rmsNormCall {
                h: i32_bytes(&h),
                gamma: i32_bytes(&g32),
                epsFx: eps_fx,
                start: u(start),
                count: u(count),
            })
            .await
            .unwrap();
        assert_eq!(got.exp, expected.exps[0], "case {case}: exponent");
        assert_eq!(
            got.values,
            expected.values[start..start + count],
            "case {case}: d {d} range {start}+{count}"
        );
    }
}

#[tokio::test]
async fn matmul_rows_match_reference() {
    let v = deploy().await;
    let mut r = rng(3);
    // (kind, cols, rows): SmolLM2's widths, the smallest, and odd multiples of 32.
    let shapes = [
        (KIND_Q4_1, 576, 120),
        (KIND_Q4_1, 1536, 60),
        (KIND_Q4_1, 32, 120),
        (KIND_Q4_1, 224, 80),
        (KIND_Q8_0, 576, 80),
        (KIND_Q8_0, 64, 80),
    ];
    let mut n = 0;
    for (kind, cols, rows) in shapes {
        let raw = random_blocks(&mut r, kind, rows, cols);
        let w = load_matrix(kind, rows, cols, raw.clone());
        w.check_accumulator_bound().unwrap();
        let row_bytes = cols / 32 * block_bytes(kind);
        for row in 0..rows {
            let x = i16_vec(&mut r, cols);
            let exp = if coin(&mut r, 8) {
                between(&mut r, -300, 300) as i32
            } else {
                between(&mut r, -45, 10) as i32
            };
            let frac = if coin(&mut r, 2) { 12 } else { 16 };
            let xq = qvec(exp, x);
            let expected = ops::matmul(&w, &xq, frac)[row];
            let got = v
                .call(V::matmulRowCall {
                    row: Bytes::copy_from_slice(&raw[row * row_bytes..(row + 1) * row_bytes]),
                    kind,
                    x: qvec_bytes(&xq.exps, &xq.values),
                    outFrac: frac as u8,
                })
                .await
                .unwrap();
            assert_eq!(got, expected, "kind {kind} cols {cols} row {row} exp {exp}");
            n += 1;
        }
    }
    assert!(n >= CASES);
}

#[tokio::test]
async fn rope_matches_reference() {
    let v = deploy().await;
    let mut r = rng(4);
    let trig = |r: &mut ChaCha20Rng| -> i32 {
        if coin(r, 8) {
            [65536, -65536, 0][below(r, 3) as usize]
        } else {
            between(r, -65536, 65536) as i32
        }
    };
    for case in 0..CASES {
        let (a, b) = (any_i32(&mut r), any_i32(&mut r));
        let (c, s) = (trig(&mut r), trig(&mut r));
        let expected = ops::rope(&[a, b], &[c, s], 2);
        let got = v.call(V::ropeCall { a, b, c, s }).await.unwrap();
        assert_eq!([got.r0, got.r1], [expected[0], expected[1]], "case {case}");
    }
    for case in 0..CASES {
        let head_dim = match case % 4 {
            0 => 64,
            1 => 2 * (1 + below(&mut r, 128) as usize),
            2 => 2,
            _ => 128,
        };
        let x = i32_vec(&mut r, head_dim);
        let row: Vec<i32> = (0..head_dim).map(|_| trig(&mut r)).collect();
        let expected = ops::rope_quant(&x, &row, head_dim);
        let got = v
            .call(V::ropeQuantCall {
                x: i32_bytes(&x),
                ropeRow: i32_bytes(&row),
                start: u(0),
                count: u(head_dim),
            })
            .await
            .unwrap();
        assert_eq!(got.exp, expected.exps[0], "case {case}");
        assert_eq!(got.values, expected.values, "case {case}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

#[tokio::test]
async fn attention_scores_and_reductions_match_reference() {
    let v = deploy().await;
    let mut r = rng(5);
    for case in 0..CASES {
        let hd = match case % 4 {
            0 => 64,
            1 => 256,
            _ => 1 + below(&mut r, 128) as usize,
        };
        let q = i16_vec(&mut r, hd);
        let k = i32_vec(&mut r, hd);
        let exp = if coin(&mut r, 8) {
            between(&mut r, -200, 100) as i32
        } else {
            between(&mut r, -40, 4) as i32
        };
        let scale = match below(&mut r, 3) {
            0 => 8192,
            1 => 46341,
            _ => between(&mut r, 1, 46341),
        };
        let shape = AttnShape {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: hd,
            n_pos: 1,
        };
        let expected = ops::attn_scores(&qvec(exp, q.clone()), &[&k], shape, scale)[0];
        let got = v
            .call(V::attnScoreCall {
                q: i16_bytes(&q),
                qExp: exp,
                k: i32_bytes(&k),
                scoreScale: scale,
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}: head_dim {hd} exp {exp}");
    }
    for case in 0..CASES {
        // Ties: draw from a handful of values half the time.
        let n = 1 + below(&mut r, 64) as usize;
        let x: Vec<i32> = if coin(&mut r, 2) {
            let pool = [any_i32(&mut r), any_i32(&mut r), i32::MIN];
            (0..n).map(|_| pool[below(&mut r, 3) as usize]).collect()
        } else {
            i32_vec(&mut r, n)
        };
        let got = v
            .call(V::chunkMaxCall {
                scores: i32_bytes(&x),
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            ops::chunk_max(&x, 1, ops::ATTN_CHUNK)[0],
            "case {case}"
        );
        let m = 1 + below(&mut r, 128) as usize;
        let y = i32_vec(&mut r, m);
        let got = v
            .call(V::rowMaxCall {
                chunkMaxima: i32_bytes(&y),
            })
            .await
            .unwrap();
        assert_eq!(got, ops::row_max(&y, 1)[0], "case {case}");
    }
    for case in 0..CASES {
        let n = 1 + below(&mut r, 64) as usize;
        let e: Vec<i32> = if coin(&mut r, 2) {
            (0..n).map(|_| between(&mut r, 0, 1 << 16) as i32).collect()
        } else {
            i32_vec(&mut r, n)
        };
        let got = v.call(V::chunkSumCall { e: i32_bytes(&e) }).await.unwrap();
        assert_eq!(
            got,
            ops::chunk_sum(&e, 1, ops::ATTN_CHUNK)[0],
            "case {case}"
        );
        let m = 1 + below(&mut r, 128) as usize;
        let s: Vec<i64> = (0..m).map(|_| mag(&mut r, 55)).collect();
        let got = v
            .call(V::rowSumCall {
                sums: i64_bytes(&s),
            })
            .await
            .unwrap();
        assert_eq!(got, ops::row_sum(&s, 1)[0], "case {case}");
    }
}

#[tokio::test]
async fn attention_exp_and_weighted_sums_match_reference() {
    let v = deploy().await;
    let mut r = rng(6);
    let table = vir::tables::exp_table();
    for case in 0..CASES {
        let max = any_i32(&mut r);
        let diff: i64 = match below(&mut r, 6) {
            0 => [0, 63, 64, (1 << 20) - 1, 1 << 20, (1 << 20) + 64][below(&mut r, 6) as usize],
            1 => i64::from(max) - i64::from(i32::MIN),
            2 => below(&mut r, 1 << 24) as i64,
            _ => below(&mut r, 1 << 20) as i64,
        };
        let score = (i64::from(max) - diff.min(i64::from(max) - i64::from(i32::MIN))) as i32;
        let expected = ops::attn_exp(&[score], &[max], &table)[0];
        let idx = v.call(V::attnExpIndexCall { score, max }).await.unwrap();
        let d = i64::from(max) - i64::from(score);
        assert_eq!(idx.inTable, (d >> 6) < (1 << 14), "case {case}");
        let entry = if idx.inTable {
            assert_eq!(idx.index.to::<i64>(), d >> 6, "case {case}");
            table[idx.index.to::<usize>()]
        } else {
            any_i32(&mut r) // ignored
        };
        let got = v
            .call(V::attnExpCall {
                score,
                max,
                expEntry: entry,
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}: diff {d}");
    }
    for case in 0..CASES {
        let n = 1 + below(&mut r, 64) as usize;
        let e: Vec<i32> = (0..n)
            .map(|_| {
                if coin(&mut r, 4) {
                    [0, 1 << 16][below(&mut r, 2) as usize]
                } else {
                    between(&mut r, 0, 1 << 16) as i32
                }
            })
            .collect();
        let vals = i32_vec(&mut r, n);
        let refs: Vec<&[i32]> = vals.chunks(1).collect();
        let shape = AttnShape {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 1,
            n_pos: n,
        };
        let expected = ops::attn_weighted_sums(&e, &refs, shape)[0];
        let got = v
            .call(V::attnWeightedSumCall {
                e: i32_bytes(&e),
                v: i32_bytes(&vals),
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}");
    }
    for case in 0..CASES {
        let nc = 1 + below(&mut r, 128) as usize;
        let l: i64 = match below(&mut r, 4) {
            0 => 1 << 16,
            1 => 1 + below(&mut r, 1000) as i64,
            _ => between(&mut r, 1 << 16, 1 << 29),
        };
        // In range: |W| <= L · 2^31 (a weighted mean of i32); sometimes past it, where sat32 binds.
        let bound = if coin(&mut r, 8) { 1i64 << 60 } else { l << 31 };
        let per = bound / nc as i64;
        let w: Vec<i64> = (0..nc).map(|_| between(&mut r, -per, per)).collect();
        let shape = AttnShape {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 1,
            n_pos: nc * ops::ATTN_CHUNK,
        };
        let expected = ops::attn_out(&w, &[l], shape)[0];
        let got = v
            .call(V::attnOutCall {
                w: i64_bytes(&w),
                l,
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}");
    }
}

#[tokio::test]
async fn residual_quantize_and_swiglu_match_reference() {
    let v = deploy().await;
    let mut r = rng(7);
    for case in 0..CASES {
        let (a, b) = (any_i32(&mut r), any_i32(&mut r));
        let got = v.call(V::residualAddCall { a, b }).await.unwrap();
        assert_eq!(got, ops::residual_add(&[a], &[b])[0], "case {case}");
    }
    for case in 0..CASES {
        let n = if case % 5 == 0 {
            576
        } else {
            1 + below(&mut r, 300) as usize
        };
        let x = i32_vec(&mut r, n);
        let frac = if coin(&mut r, 2) {
            16
        } else {
            below(&mut r, 40) as u32
        };
        let expected = ops::quantize_vec(&x, frac);
        let got = v
            .call(V::quantizeVecCall {
                x: i32_bytes(&x),
                frac: frac as u8,
                start: u(0),
                count: u(n),
            })
            .await
            .unwrap();
        assert_eq!(got.exp, expected.exps[0], "case {case}");
        assert_eq!(got.values, expected.values, "case {case}");
    }
    let table = vir::tables::sigmoid_table();
    let index = |g: i32| ((i64::from(g) >> 6) + (1 << 14)).clamp(0, (1 << 15) - 1) as usize;
    for case in 0..CASES {
        let g = any_i32(&mut r);
        assert_eq!(
            ops::sigmoid_lookup(&table, g),
            i64::from(table[index(g)]),
            "the test's index formula"
        );
        let got = v.call(V::sigmoidIndexCall { g }).await.unwrap();
        assert_eq!(got.to::<usize>(), index(g), "case {case}: g {g}");
    }
    for case in 0..CASES {
        let n = if case % 10 == 0 {
            1536
        } else {
            1 + below(&mut r, 200) as usize
        };
        let gate = i32_vec(&mut r, n);
        let up = i32_vec(&mut r, n);
        let sig: Vec<i32> = gate.iter().map(|&g| table[index(g)]).collect();
        let expected = ops::swiglu(&gate, &up, &table);
        let (start, count) = if coin(&mut r, 4) {
            let s = below(&mut r, n as u64) as usize;
            (s, 1 + below(&mut r, (n - s) as u64) as usize)
        } else {
            (0, n)
        };
        let got = v
            .call(V::swigluCall {
                gate: i32_bytes(&gate),
                up: i32_bytes(&up),
                sig: i32_bytes(&sig),
                start: u(start),
                count: u(count),
            })
            .await
            .unwrap();
        assert_eq!(got.exp, expected.exps[0], "case {case}");
        assert_eq!(
            got.values,
            expected.values[start..start + count],
            "case {case}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

/// Sampling weights: mostly 0 / 2^16 / random in between, with ties.
fn weights(r: &mut ChaCha20Rng, n: usize) -> Vec<i32> {
    let pool: Vec<i32> = (0..4).map(|_| between(r, 0, 1 << 16) as i32).collect();
    (0..n)
        .map(|_| match below(r, 6) {
            0 => 0,
            1 => 1 << 16,
            2 => pool[below(r, 4) as usize],
            _ => between(r, 0, 1 << 16) as i32,
        })
        .collect()
}

#[tokio::test]
async fn logit_max_and_sample_exp_match_reference() {
    let v = deploy().await;
    let mut r = rng(8);
    let table = vir::tables::exp_table();
    for case in 0..CASES {
        let c = below(&mut r, 48) as usize;
        let n = if coin(&mut r, 2) {
            1024
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let mut logits: Vec<i32> = (0..c * 1024).map(|_| mag(&mut r, 20) as i32).collect();
        let part: Vec<i32> = if coin(&mut r, 2) {
            let pool = [any_i32(&mut r), any_i32(&mut r), any_i32(&mut r)];
            (0..n).map(|_| pool[below(&mut r, 3) as usize]).collect()
        } else {
            i32_vec(&mut r, n)
        };
        logits.extend_from_slice(&part);
        let expected = ops::logit_chunk_max(&logits, ops::VOCAB_CHUNK);
        let got = v
            .call(V::logitChunkMaxCall {
                logits: i32_bytes(&part),
                chunk: u(c),
            })
            .await
            .unwrap();
        assert_eq!(
            [got.max, got.index],
            [expected[2 * c], expected[2 * c + 1]],
            "case {case}"
        );
    }
    for case in 0..CASES {
        let nv = if coin(&mut r, 2) {
            48
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let pool = [any_i32(&mut r), any_i32(&mut r)];
        let pairs: Vec<i32> = (0..nv)
            .flat_map(|c| {
                let m = if coin(&mut r, 2) {
                    pool[below(&mut r, 2) as usize]
                } else {
                    any_i32(&mut r)
                };
                [m, (c * 1024 + below(&mut r, 1024) as usize) as i32]
            })
            .collect();
        let expected = ops::logit_max(&pairs);
        let got = v
            .call(V::logitMaxCall {
                pairs: i32_bytes(&pairs),
            })
            .await
            .unwrap();
        assert_eq!([got.max, got.index], expected, "case {case}");
    }
    // SampleExp over whole random logit vectors, every element of a sample checked.
    let mut checked = 0;
    while checked < 4 * CASES {
        let n = 1 + below(&mut r, 3000) as usize;
        let logits: Vec<i32> = if coin(&mut r, 3) {
            i32_vec(&mut r, n)
        } else {
            (0..n).map(|_| mag(&mut r, 22) as i32).collect()
        };
        let max = ops::logit_max(&ops::logit_chunk_max(&logits, ops::VOCAB_CHUNK));
        let t = match below(&mut r, 5) {
            0 => 0,
            1 => 1,
            2 => 2000,
            _ => between(&mut r, 1, 2000) as u32,
        };
        let expected = ops::sample_exp(&logits, max, t, &table);
        for _ in 0..8 {
            let i = if coin(&mut r, 4) {
                max[1] as usize
            } else {
                below(&mut r, n as u64) as usize
            };
            let idx = v
                .call(V::sampleExpIndexCall {
                    logit: logits[i],
                    lmax: max[0],
                    temperatureMilli: t,
                })
                .await
                .unwrap();
            let entry = if idx.inTable {
                table[idx.index.to::<usize>()]
            } else {
                any_i32(&mut r)
            };
            let got = v
                .call(V::sampleExpCall {
                    logit: logits[i],
                    index: i as u32,
                    lmax: max[0],
                    imax: max[1],
                    temperatureMilli: t,
                    expEntry: entry,
                })
                .await
                .unwrap();
            assert_eq!(got, expected[i], "T {t} element {i} of {n}");
            checked += 1;
        }
    }
}

#[tokio::test]
async fn top_p_ops_match_reference() {
    let v = deploy().await;
    let mut r = rng(9);
    for case in 0..CASES {
        let n = if coin(&mut r, 2) {
            1024
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let e = weights(&mut r, n);
        let tau = match below(&mut r, 4) {
            0 => 0,
            1 => i64::from(e[below(&mut r, n as u64) as usize]),
            _ => between(&mut r, 0, 1 << 17),
        };
        let got = v
            .call(V::maskedChunkSumCall {
                e: i32_bytes(&e),
                threshold: tau,
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            ops::masked_chunk_sum(&e, tau, ops::VOCAB_CHUNK)[0],
            "case {case}"
        );
    }
    for case in 0..CASES {
        let nv = if coin(&mut r, 2) {
            48
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let sums: Vec<i64> = (0..nv)
            .map(|_| {
                if coin(&mut r, 4) {
                    [0, 1 << 26][below(&mut r, 2) as usize]
                } else {
                    between(&mut r, 0, 1 << 26)
                }
            })
            .collect();
        let p = match below(&mut r, 3) {
            0 => [1, 1000, 999][below(&mut r, 3) as usize],
            _ => between(&mut r, 1, 1000) as u32,
        };
        let got = v
            .call(V::sampleSumCall {
                sums: i64_bytes(&sums),
                topPMilli: p,
            })
            .await
            .unwrap();
        assert_eq!(
            [got.total, got.target],
            ops::sample_sum(&sums, p),
            "case {case}"
        );
        // One top-p round on the same sums: a threshold with only the higher bits set, and a target around the mass.
        let round = below(&mut r, ops::TOPP_ROUNDS as u64) as usize;
        let tau_prev = (below(&mut r, 1 << 17) as i64) & !((1i64 << (17 - round)) - 1);
        let mass: i64 = sums.iter().sum();
        let target = match below(&mut r, 3) {
            0 => mass,
            1 => mass + 1,
            _ => between(&mut r, 1, mass.max(1) * 2),
        };
        let cand = v
            .call(V::topPCandidateCall {
                tauPrev: tau_prev,
                round: round as u8,
            })
            .await
            .unwrap();
        assert_eq!(cand, ops::topp_candidate(tau_prev, round), "case {case}");
        let got = v
            .call(V::topPStepCall {
                sums: i64_bytes(&sums),
                tauPrev: tau_prev,
                round: round as u8,
                target,
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            ops::topp_step(&sums, tau_prev, round, target),
            "case {case}: round {round}"
        );
    }
}

fn random_key(r: &mut ChaCha20Rng) -> B256 {
    let mut k = [0u8; 32];
    r.fill_bytes(&mut k);
    B256::from(k)
}

fn random_step(r: &mut ChaCha20Rng) -> u64 {
    match below(r, 4) {
        0 => [0, 1, u64::from(u32::MAX), 1 << 32, u64::MAX, u64::MAX - 1][below(r, 6) as usize],
        1 => below(r, 4096),
        _ => r.next_u64(),
    }
}

#[tokio::test]
async fn chacha_draws_match_reference() {
    let v = deploy().await;
    let mut r = rng(10);
    for case in 0..4 * CASES {
        let key = if case % 50 == 0 {
            [B256::ZERO, B256::repeat_byte(0xff)][case / 50 % 2]
        } else {
            random_key(&mut r)
        };
        let step = random_step(&mut r);
        let got = v.call(V::drawCall { key, step }).await.unwrap();
        assert_eq!(got, vir::sampling::draw(key, step), "key {key} step {step}");
    }
    for _ in 0..CASES {
        let params = SamplingParams {
            max_tokens: 1,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: r.next_u64(),
            choice_index: r.next_u32(),
        };
        let got = v
            .call(V::samplingKeyCall {
                seed: params.seed,
                choiceIndex: params.choice_index,
            })
            .await
            .unwrap();
        assert_eq!(got, params.sampling_key());
    }
}

#[tokio::test]
async fn pick_ops_match_reference() {
    let v = deploy().await;
    let mut r = rng(11);
    for case in 0..CASES {
        let nv = if coin(&mut r, 2) {
            48
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let mut kept: Vec<i64> = (0..nv)
            .map(|_| match below(&mut r, 4) {
                0 => 0,
                1 => between(&mut r, 0, 1 << 26),
                _ => between(&mut r, 0, 1 << 17),
            })
            .collect();
        if kept.iter().all(|&k| k == 0) {
            kept[below(&mut r, nv as u64) as usize] = 1 << 16;
        }
        let key = random_key(&mut r);
        let step = random_step(&mut r);
        let expected = ops::pick_chunk(&kept, vir::sampling::draw(key, step));
        let got = v
            .call(V::pickChunkCall {
                kept: i64_bytes(&kept),
                key,
                step,
            })
            .await
            .unwrap();
        assert_eq!([got.chunk, got.rr], expected, "case {case}");
    }
    for case in 0..CASES {
        let c = below(&mut r, 48) as usize;
        let n = if coin(&mut r, 2) {
            1024
        } else {
            1 + below(&mut r, 1024) as usize
        };
        let mut e = vec![0i32; c * 1024];
        let part = weights(&mut r, n);
        e.extend_from_slice(&part);
        let tau = match below(&mut r, 3) {
            0 => i64::from(part[below(&mut r, n as u64) as usize]),
            _ => between(&mut r, 1, 1 << 16),
        };
        let mass: i64 = part
            .iter()
            .map(|&x| i64::from(x))
            .filter(|&x| x >= tau)
            .sum();
        // rr < mass always in the protocol; rr >= mass reaches the (unreachable) fallback.
        let rr = if coin(&mut r, 10) || mass == 0 {
            mass + below(&mut r, 3) as i64
        } else {
            below(&mut r, mass as u64) as i64
        };
        let expected = ops::pick_token(&e, tau, [c as i64, rr], ops::VOCAB_CHUNK);
        let got = v
            .call(V::pickTokenCall {
                e: i32_bytes(&part),
                tau,
                chunk: c as i64,
                rr,
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}");
    }
}

/// The head's sampling ops chained as the program runs them (§5.1), every output checked on chain.
#[tokio::test]
async fn sampling_head_end_to_end() {
    let v = deploy().await;
    let mut r = rng(12);
    let table = vir::tables::exp_table();
    for case in 0..12 {
        let vocab = [49152, 3000, 1024, 1, 1500][case % 5];
        let logits: Vec<i32> = (0..vocab).map(|_| mag(&mut r, 22) as i32).collect();
        let t = [0, 700, 1000, 2000][case % 4];
        let p = [1000, 900, 1, 500][case % 4];
        let (key, step) = (random_key(&mut r), random_step(&mut r));
        let cm = ops::logit_chunk_max(&logits, ops::VOCAB_CHUNK);
        let lmax = ops::logit_max(&cm);
        let got = v
            .call(V::logitMaxCall {
                pairs: i32_bytes(&cm),
            })
            .await
            .unwrap();
        assert_eq!([got.max, got.index], lmax);
        let e = ops::sample_exp(&logits, lmax, t, &table);
        let s0 = ops::masked_chunk_sum(&e, 0, ops::VOCAB_CHUNK);
        let [total, target] = ops::sample_sum(&s0, p);
        let got = v
            .call(V::sampleSumCall {
                sums: i64_bytes(&s0),
                topPMilli: p,
            })
            .await
            .unwrap();
        assert_eq!([got.total, got.target], [total, target]);
        let mut tau = 0i64;
        for round in 0..ops::TOPP_ROUNDS {
            let cand = ops::topp_candidate(tau, round);
            let sums = ops::masked_chunk_sum(&e, cand, ops::VOCAB_CHUNK);
            for (c, chunk) in e.chunks(ops::VOCAB_CHUNK).enumerate().take(3) {
                let got = v
                    .call(V::maskedChunkSumCall {
                        e: i32_bytes(chunk),
                        threshold: cand,
                    })
                    .await
                    .unwrap();
                assert_eq!(got, sums[c]);
            }
            let next = ops::topp_step(&sums, tau, round, target);
            let got = v
                .call(V::topPStepCall {
                    sums: i64_bytes(&sums),
                    tauPrev: tau,
                    round: round as u8,
                    target,
                })
                .await
                .unwrap();
            assert_eq!(got, next);
            tau = next;
        }
        let kept = ops::masked_chunk_sum(&e, tau, ops::VOCAB_CHUNK);
        let pick = ops::pick_chunk(&kept, vir::sampling::draw(key, step));
        let got = v
            .call(V::pickChunkCall {
                kept: i64_bytes(&kept),
                key,
                step,
            })
            .await
            .unwrap();
        assert_eq!([got.chunk, got.rr], pick);
        let token = ops::pick_token(&e, tau, pick, ops::VOCAB_CHUNK);
        let c = pick[0] as usize;
        let part = &e[c * 1024..((c + 1) * 1024).min(vocab)];
        let got = v
            .call(V::pickTokenCall {
                e: i32_bytes(part),
                tau,
                chunk: pick[0],
                rr: pick[1],
            })
            .await
            .unwrap();
        assert_eq!(got, token, "case {case}");
        if t == 0 {
            assert_eq!(token, lmax[1], "greedy picks the argmax");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Commitments

fn siblings(p: &MerkleProof) -> Vec<B256> {
    p.siblings.clone()
}

#[tokio::test]
async fn tensor_chunk_proofs_match_protocol() {
    let v = deploy().await;
    let mut r = rng(13);
    let mut n = 0;
    while n < 2 * CASES {
        let len = match below(&mut r, 4) {
            0 => below(&mut r, 1025) as usize,
            1 => 1024 * (1 + below(&mut r, 9) as usize),
            _ => below(&mut r, 9000) as usize,
        };
        let mut bytes = vec![0u8; len];
        r.fill_bytes(&mut bytes);
        let root = tensor_root(&bytes);
        let chunks = chunk_count(len as u64);
        for _ in 0..4 {
            let idx = below(&mut r, chunks);
            let (chunk, proof) = tensor_chunk_proof(&bytes, idx).unwrap();
            let (mut chunk, mut proof) = (chunk.to_vec(), proof);
            let mut index = idx;
            let mut claimed_len = len as u64;
            match below(&mut r, 8) {
                0 => {
                    let b = below(&mut r, 1024) as usize;
                    chunk[b] ^= 1 << below(&mut r, 8);
                }
                1 => index ^= 1 << below(&mut r, 4),
                2 => {
                    proof.siblings.push(B256::ZERO);
                }
                3 => claimed_len = below(&mut r, 10_000),
                4 => {
                    chunk.pop();
                }
                _ => {}
            }
            proof.index = index;
            let expected = verify_tensor_chunk(root, index, &chunk, &proof);
            let got = v
                .call(V::verifyTensorChunkCall {
                    root,
                    index,
                    chunk: chunk.clone().into(),
                    proof: siblings(&proof),
                })
                .await
                .unwrap();
            assert_eq!(got, expected, "len {len} index {index}");
            let expected = verify_tensor_chunk_with_len(root, claimed_len, index, &chunk, &proof);
            let got = v
                .call(V::verifyTensorChunkWithLenCall {
                    root,
                    len: claimed_len,
                    index,
                    chunk: chunk.into(),
                    proof: siblings(&proof),
                })
                .await
                .unwrap();
            assert_eq!(
                got, expected,
                "len {len} claimed {claimed_len} index {index}"
            );
            n += 1;
        }
    }
}

#[tokio::test]
async fn trace_leaves_and_descriptors_match_protocol() {
    let v = deploy().await;
    let mut r = rng(14);
    for case in 0..CASES {
        let count = 1 + below(&mut r, 300);
        let leaves: Vec<B256> = (0..count)
            .map(|i| trace_leaf(i, random_key(&mut r), random_key(&mut r)))
            .collect();
        let commitment = TraceCommitment {
            root: trace_root(&leaves),
            op_count: count,
        };
        let i = below(&mut r, count);
        let (desc, out) = (random_key(&mut r), random_key(&mut r));
        let got = v
            .call(V::traceLeafCall {
                index: i,
                descHash: desc,
                outputRoot: out,
            })
            .await
            .unwrap();
        assert_eq!(got, trace_leaf(i, desc, out));
        // A trace whose leaf `i` is (desc, out); then a random tampering.
        let mut leaves = leaves;
        leaves[i as usize] = trace_leaf(i, desc, out);
        let mut c = TraceCommitment {
            root: trace_root(&leaves),
            ..commitment
        };
        let mut proof = trace_proof(&leaves, i).unwrap();
        let (mut index, mut d) = (i, desc);
        match below(&mut r, 6) {
            0 => c.op_count = below(&mut r, 2 * count + 2),
            1 => index = below(&mut r, count + 4),
            2 => d = random_key(&mut r),
            3 => {
                proof.siblings.pop();
            }
            _ => {}
        }
        proof.index = index;
        let expected = verify_trace_leaf(&c, index, d, out, &proof);
        let got = v
            .call(V::verifyTraceLeafCall {
                traceRoot: c.root,
                opCount: c.op_count,
                index,
                descHash: d,
                outputRoot: out,
                proof: siblings(&proof),
            })
            .await
            .unwrap();
        assert_eq!(got, expected, "case {case}");
    }
    let config = vir::synthetic::SyntheticSpec::tiny().config();
    for case in 0..CASES {
        let prompt_len = 1 + below(&mut r, 40) as usize;
        let program = vir::program::Program::new(config.clone(), prompt_len);
        let generated = 1 + below(&mut r, 20) as usize;
        let index = below(&mut r, program.op_count(generated));
        let d = program.descriptor(index);
        let (code, layer, round) = d.code();
        let got = v
            .call(V::descriptorHashCall {
                code,
                layer,
                round,
                pos: d.pos,
                outType: d.out_type as u8,
                outLen: d.out_len,
                outGroups: d.out_groups,
            })
            .await
            .unwrap();
        assert_eq!(got, d.hash(), "case {case}: {d:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reverts

#[tokio::test]
async fn rejects_what_the_reference_rejects() {
    use V::OneStepVerifierErrors as E;
    let v = deploy().await;
    // A negative EXP index (the reference panics).
    let e = revert_of(
        v.call(V::attnExpCall {
            score: 64,
            max: 0,
            expEntry: 0,
        })
        .await,
    );
    assert!(matches!(e, E::NegativeTableIndex(_)), "{e:?}");
    // The same argument truncates toward zero for SampleExp: (0 - 1)·1000/2000 = 0, index 0.
    let got = v
        .call(V::sampleExpCall {
            logit: 1,
            index: 0,
            lmax: 0,
            imax: 0,
            temperatureMilli: 2000,
            expEntry: 65536,
        })
        .await
        .unwrap();
    let table = vir::tables::exp_table();
    assert_eq!(got, ops::sample_exp(&[1], [0, 0], 2000, &table)[0]);
    let e = revert_of(
        v.call(V::sampleExpCall {
            logit: 1000,
            index: 0,
            lmax: 0,
            imax: 0,
            temperatureMilli: 1,
            expEntry: 0,
        })
        .await,
    );
    assert!(matches!(e, E::NegativeTableIndex(_)), "{e:?}");
    let e = revert_of(
        v.call(V::attnOutCall {
            w: i64_bytes(&[5]),
            l: 0,
        })
        .await,
    );
    assert!(matches!(e, E::NonPositiveDivisor(_)), "{e:?}");
    let e = revert_of(
        v.call(V::topPStepCall {
            sums: i64_bytes(&[1]),
            tauPrev: 0,
            round: 17,
            target: 0,
        })
        .await,
    );
    assert!(matches!(e, E::BadRound(_)), "{e:?}");
    let e = revert_of(
        v.call(V::chunkMaxCall {
            scores: Bytes::from(vec![1, 2, 3]),
        })
        .await,
    );
    assert!(matches!(e, E::BadLength(_)), "{e:?}");
    let e = revert_of(
        v.call(V::chunkMaxCall {
            scores: Bytes::new(),
        })
        .await,
    );
    assert!(matches!(e, E::BadLength(_)), "{e:?}");
    let e = revert_of(
        v.call(V::rmsNormCall {
            h: i32_bytes(&[1, 2]),
            gamma: i32_bytes(&[1, 2]),
            epsFx: 0,
            start: u(1),
            count: u(2),
        })
        .await,
    );
    assert!(matches!(e, E::BadRange(_)), "{e:?}");
    let e = revert_of(
        v.call(V::embedCall {
            blk: vec![0u8; 20].into(),
            kind: 3,
            j: u(0),
        })
        .await,
    );
    assert!(matches!(e, E::BadKind(_)), "{e:?}");
    // Infinite and too-large block scales: the loader rejects both.
    let mut blk = vec![0u8; 20];
    blk[..2].copy_from_slice(&0x7c00u16.to_le_bytes());
    let e = revert_of(
        v.call(V::embedCall {
            blk: blk.clone().into(),
            kind: KIND_Q4_1,
            j: u(0),
        })
        .await,
    );
    assert!(matches!(e, E::NonFiniteScale(_)), "{e:?}");
    blk[..2].copy_from_slice(&(21u16 << 10).to_le_bytes());
    let e = revert_of(
        v.call(V::embedCall {
            blk: blk.into(),
            kind: KIND_Q4_1,
            j: u(0),
        })
        .await,
    );
    assert!(matches!(e, E::ScaleTooLarge(_)), "{e:?}");
    let e = revert_of(
        v.call(V::matmulRowCall {
            row: vec![0u8; 19].into(),
            kind: KIND_Q4_1,
            x: qvec_bytes(&[0], &[0; 32]),
            outFrac: 16,
        })
        .await,
    );
    assert!(matches!(e, E::BadLength(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Gas

struct GasRow {
    function: &'static str,
    case: String,
    gas: u64,
    execution: u64,
    calldata: usize,
}

async fn measure<C: SolCall>(
    v: &OneStep<EmbeddedL1>,
    rows: &mut Vec<GasRow>,
    function: &'static str,
    case: impl Into<String>,
    call: C,
) {
    let data = call.abi_encode();
    let receipt = v.gas(call).await.unwrap();
    rows.push(GasRow {
        function,
        case: case.into(),
        gas: receipt.gas_used,
        execution: receipt.gas_used - intrinsic_gas(&data),
        calldata: data.len(),
    });
}

/// Gas of every op at SmolLM2-135M sizes (`d_model` 576, `d_ff` 1536, `head_dim` 64, vocab 49152: `nv` = 48), as
/// transactions on the embedded chain. `cargo test -p verinfer-l1-contracts --test it one_step_gas -- --nocapture`.
#[tokio::test]
async fn one_step_gas() {
    let v = deploy().await;
    let mut r = rng(15);
    let mut rows = Vec::new();
    let acts = |r: &mut ChaCha20Rng, n: usize, bits: u32| -> Vec<i32> {
        (0..n).map(|_| mag(r, bits) as i32).collect()
    };
    let blocks = random_blocks(&mut r, KIND_Q4_1, 1, 32);
    measure(
        &v,
        &mut rows,
        "embed",
        "Q4_1 block",
        V::embedCall {
            blk: blocks.into(),
            kind: KIND_Q4_1,
            j: u(17),
        },
    )
    .await;
    let h = acts(&mut r, 576, 27);
    let g = acts(&mut r, 576, 17);
    for (case, start, count) in [
        ("d 576, 1 value", 100usize, 1usize),
        ("d 576, 512 values (1 KiB chunk)", 0, 512),
        ("d 576, all 576", 0, 576),
    ] {
        measure(
            &v,
            &mut rows,
            "rmsNorm",
            case,
            V::rmsNormCall {
                h: i32_bytes(&h),
                gamma: i32_bytes(&g),
                epsFx: 2_814_749_767,
                start: u(start),
                count: u(count),
            },
        )
        .await;
    }
    for (kind, cols) in [
        (KIND_Q4_1, 576),
        (KIND_Q4_1, 1536),
        (KIND_Q8_0, 576),
        (KIND_Q8_0, 1536),
    ] {
        let row = random_blocks(&mut r, kind, 1, cols);
        let x: Vec<i16> = (0..cols).map(|_| mag(&mut r, 15) as i16).collect();
        let name = if kind == KIND_Q4_1 { "Q4_1" } else { "Q8_0" };
        measure(
            &v,
            &mut rows,
            "matmulRow",
            format!("{name}, cols {cols}"),
            V::matmulRowCall {
                row: row.into(),
                kind,
                x: qvec_bytes(&[-20], &x),
                outFrac: 16,
            },
        )
        .await;
    }
    measure(
        &v,
        &mut rows,
        "rope",
        "one pair (KRope)",
        V::ropeCall {
            a: 123_456,
            b: -654_321,
            c: 40_000,
            s: -30_000,
        },
    )
    .await;
    let x = acts(&mut r, 64, 24);
    let rope_row: Vec<i32> = (0..64)
        .map(|_| between(&mut r, -65536, 65536) as i32)
        .collect();
    measure(
        &v,
        &mut rows,
        "ropeQuant",
        "head_dim 64, whole head",
        V::ropeQuantCall {
            x: i32_bytes(&x),
            ropeRow: i32_bytes(&rope_row),
            start: u(0),
            count: u(64),
        },
    )
    .await;
    let q: Vec<i16> = (0..64).map(|_| mag(&mut r, 15) as i16).collect();
    measure(
        &v,
        &mut rows,
        "attnScore",
        "head_dim 64",
        V::attnScoreCall {
            q: i16_bytes(&q),
            qExp: -14,
            k: i32_bytes(&acts(&mut r, 64, 20)),
            scoreScale: 8192,
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "chunkMax",
        "64 scores",
        V::chunkMaxCall {
            scores: i32_bytes(&acts(&mut r, 64, 20)),
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "rowMax",
        "128 chunk maxima (context 8192)",
        V::rowMaxCall {
            chunkMaxima: i32_bytes(&acts(&mut r, 128, 20)),
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "attnExp",
        "one weight",
        V::attnExpCall {
            score: -5000,
            max: 7000,
            expEntry: 53_000,
        },
    )
    .await;
    let w64: Vec<i32> = (0..64)
        .map(|_| between(&mut r, 0, 1 << 16) as i32)
        .collect();
    measure(
        &v,
        &mut rows,
        "chunkSum",
        "64 weights",
        V::chunkSumCall { e: i32_bytes(&w64) },
    )
    .await;
    let partial: Vec<i64> = (0..128).map(|_| between(&mut r, 0, 1 << 22)).collect();
    measure(
        &v,
        &mut rows,
        "rowSum",
        "128 partial sums",
        V::rowSumCall {
            sums: i64_bytes(&partial),
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "attnWeightedSum",
        "64 positions",
        V::attnWeightedSumCall {
            e: i32_bytes(&w64),
            v: i32_bytes(&acts(&mut r, 64, 22)),
        },
    )
    .await;
    let wsum: Vec<i64> = (0..128).map(|_| mag(&mut r, 45)).collect();
    measure(
        &v,
        &mut rows,
        "attnOut",
        "128 partials",
        V::attnOutCall {
            w: i64_bytes(&wsum),
            l: 3 << 20,
        },
    )
    .await;
    let o = acts(&mut r, 576, 20);
    for (case, count) in [("d 576, 1 value", 1usize), ("d 576, 512 values", 512)] {
        measure(
            &v,
            &mut rows,
            "quantizeVec",
            case,
            V::quantizeVecCall {
                x: i32_bytes(&o),
                frac: 16,
                start: u(0),
                count: u(count),
            },
        )
        .await;
    }
    measure(
        &v,
        &mut rows,
        "residualAdd",
        "one element",
        V::residualAddCall {
            a: 1_000_000,
            b: -3,
        },
    )
    .await;
    let sig_table = vir::tables::sigmoid_table();
    let gate = acts(&mut r, 1536, 20);
    let up = acts(&mut r, 1536, 20);
    let sig: Vec<i32> = gate
        .iter()
        .map(|&x| sig_table[((i64::from(x) >> 6) + (1 << 14)).clamp(0, (1 << 15) - 1) as usize])
        .collect();
    for (case, count) in [
        ("d_ff 1536, 1 value", 1usize),
        ("d_ff 1536, 512 values", 512),
    ] {
        measure(
            &v,
            &mut rows,
            "swiglu",
            case,
            V::swigluCall {
                gate: i32_bytes(&gate),
                up: i32_bytes(&up),
                sig: i32_bytes(&sig),
                start: u(0),
                count: u(count),
            },
        )
        .await;
    }
    let logits = acts(&mut r, 1024, 22);
    measure(
        &v,
        &mut rows,
        "logitChunkMax",
        "1024 logits",
        V::logitChunkMaxCall {
            logits: i32_bytes(&logits),
            chunk: u(47),
        },
    )
    .await;
    let pairs = |r: &mut ChaCha20Rng, nv: usize| -> Vec<i32> {
        (0..nv)
            .flat_map(|c| [mag(r, 22) as i32, (c * 1024 + 5) as i32])
            .collect()
    };
    measure(
        &v,
        &mut rows,
        "logitMax",
        "nv 48",
        V::logitMaxCall {
            pairs: i32_bytes(&pairs(&mut r, 48)),
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "logitMax",
        "nv 1024 (vocab 2^20)",
        V::logitMaxCall {
            pairs: i32_bytes(&pairs(&mut r, 1024)),
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "sampleExp",
        "T 0.7",
        V::sampleExpCall {
            logit: 100_000,
            index: 77,
            lmax: 400_000,
            imax: 3,
            temperatureMilli: 700,
            expEntry: 1234,
        },
    )
    .await;
    let e: Vec<i32> = weights(&mut r, 1024);
    measure(
        &v,
        &mut rows,
        "maskedChunkSum",
        "1024 weights",
        V::maskedChunkSumCall {
            e: i32_bytes(&e),
            threshold: 30_000,
        },
    )
    .await;
    let sums: Vec<i64> = (0..48).map(|_| between(&mut r, 0, 1 << 26)).collect();
    measure(
        &v,
        &mut rows,
        "sampleSum",
        "nv 48",
        V::sampleSumCall {
            sums: i64_bytes(&sums),
            topPMilli: 900,
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "topPStep",
        "nv 48",
        V::topPStepCall {
            sums: i64_bytes(&sums),
            tauPrev: 1 << 15,
            round: 3,
            target: 1 << 30,
        },
    )
    .await;
    let key = random_key(&mut r);
    measure(
        &v,
        &mut rows,
        "pickChunk",
        "nv 48 (ChaCha20 included)",
        V::pickChunkCall {
            kept: i64_bytes(&sums),
            key,
            step: 17,
        },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "draw",
        "one ChaCha20 block",
        V::drawCall { key, step: 17 },
    )
    .await;
    measure(
        &v,
        &mut rows,
        "pickToken",
        "1024 weights (last token)",
        V::pickTokenCall {
            e: i32_bytes(&e),
            tau: 1,
            chunk: 47,
            rr: i64::MAX,
        },
    )
    .await;
    let bytes: Vec<u8> = (0..1024 * 1000).map(|i| (i % 251) as u8).collect();
    let (chunk, proof) = tensor_chunk_proof(&bytes, 777).unwrap();
    measure(
        &v,
        &mut rows,
        "verifyTensorChunkWithLen",
        "1000 chunks (depth 10)",
        V::verifyTensorChunkWithLenCall {
            root: tensor_root(&bytes),
            len: bytes.len() as u64,
            index: 777,
            chunk: chunk.to_vec().into(),
            proof: proof.siblings,
        },
    )
    .await;
    let proof: Vec<B256> = (0..24).map(|_| random_key(&mut r)).collect();
    measure(
        &v,
        &mut rows,
        "verifyTraceLeaf",
        "depth 24 (false)",
        V::verifyTraceLeafCall {
            traceRoot: B256::ZERO,
            opCount: 1 << 24,
            index: 12345,
            descHash: B256::ZERO,
            outputRoot: B256::ZERO,
            proof,
        },
    )
    .await;

    println!(
        "{:<26} {:<36} {:>10} {:>10} {:>9}",
        "function", "case", "gas", "execution", "calldata"
    );
    for row in &rows {
        println!(
            "{:<26} {:<36} {:>10} {:>10} {:>9}",
            row.function, row.case, row.gas, row.execution, row.calldata
        );
    }
    let max = rows.iter().max_by_key(|row| row.gas).unwrap();
    println!("largest: {} ({}) {} gas", max.function, max.case, max.gas);
    assert!(
        max.gas <= 5_000_000,
        "{} ({}) costs {} gas",
        max.function,
        max.case,
        max.gas
    );
}

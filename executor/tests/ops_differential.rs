//! Differential tests: every VIR op on the burn CPU backend equals the scalar reference `vir::ops` bit for bit,
//! on ≥ 1000 seeded random rows per op (several rows per device call), including boundary values: i32 extremes,
//! all-zero rows, saturating shifts, the largest block scales, ties, vocabularies that are not a multiple of the
//! chunk.

mod common;

use common::{Dev, Gen, device, rows_i32, rows_i64, tensor_i32, tensor_i64};
use verinfer_executor::Cpu;
use verinfer_executor::model::{exp_table_tensor, gamma_tensor, sigmoid_table_tensor};
use verinfer_executor::ops::{self, CausalRows, DeviceMatrix, QBatch, RopeTable};
use vir::fixed::{self, QVec};
use vir::ops::{ATTN_CHUNK, AttnShape, VOCAB_CHUNK};
use vir::tables;
use vir::weights::{QuantKind, QuantMatrix};

/// Random rows per op.
const ROWS: usize = 1000;
/// Largest |D| or |M| the loader accepts (2^30 - 1 units).
const MAX_SCALE: i64 = (1 << 30) - 1;

/// Runs `f(rows_in_this_call, call_index)` until `ROWS` rows are covered, with 1..=max_batch rows per call.
fn batches(g: &mut Gen, max_batch: u64, mut f: impl FnMut(&mut Gen, usize)) {
    let mut done = 0;
    while done < ROWS {
        let n = 1 + g.below(max_batch) as usize;
        f(g, n);
        done += n;
    }
}

fn qbatch_rows(q: &QBatch<Cpu>) -> Vec<QVec> {
    q.to_qvecs().expect("reads back")
}

/// A QVec of `n` values in `groups` groups as `quantize` produces it (values of random magnitude), with the
/// group exponents then replaced by `exps`.
fn random_qvec(g: &mut Gen, n: usize, groups: usize, exp_lo: i64, exp_hi: i64) -> QVec {
    let raw: Vec<i64> = match g.below(8) {
        0 => vec![0; n],
        1 => vec![-(1 << 40); n],
        _ => (0..n).map(|_| g.magnitude(40)).collect(),
    };
    let mut q = fixed::quantize(&raw, n / groups, 0);
    for e in &mut q.exps {
        *e = g.range_i64(exp_lo, exp_hi) as i32;
    }
    q
}

fn random_matrix(g: &mut Gen, rows: usize, cols: usize, kind: QuantKind) -> QuantMatrix {
    let nb = cols / 32;
    // Scale range: tiny, typical (~2^17 units), or up to the loader's limit (subject to the accumulator bound).
    let max_bits = match g.below(3) {
        0 => 8,
        1 => 18,
        _ => 30,
    };
    let scale = |g: &mut Gen| {
        if max_bits == 30 && g.chance(1, 8) {
            if g.chance(1, 2) {
                MAX_SCALE
            } else {
                -MAX_SCALE
            }
        } else {
            g.magnitude(max_bits).clamp(-MAX_SCALE, MAX_SCALE)
        }
    };
    let scales: Vec<i64> = (0..rows * nb).map(|_| scale(g)).collect();
    let mins: Vec<i64> = match kind {
        QuantKind::Q4_1 => (0..rows * nb).map(|_| scale(g)).collect(),
        QuantKind::Q8_0 => Vec::new(),
    };
    let quants: Vec<i8> = (0..rows * cols)
        .map(|_| match kind {
            QuantKind::Q4_1 => match g.below(8) {
                0 => 0,
                1 => 15,
                _ => g.below(16) as i8,
            },
            QuantKind::Q8_0 => match g.below(8) {
                0 => -128,
                1 => 127,
                _ => g.below(256) as i64 as i8,
            },
        })
        .collect();
    QuantMatrix {
        name: "test".into(),
        rows,
        cols,
        kind,
        scales,
        mins,
        quants,
        raw: Vec::new(),
    }
}

/// A matrix that passes the loader's accumulator bound (retries with smaller scales if needed).
fn bounded_matrix(g: &mut Gen, rows: usize, cols: usize, kind: QuantKind) -> QuantMatrix {
    loop {
        let m = random_matrix(g, rows, cols, kind);
        if m.check_accumulator_bound().is_ok() {
            return m;
        }
    }
}

#[test]
fn quantize_matches_reference() {
    let dev = device();
    let mut g = Gen::new(1);
    let edges = [
        i64::MIN,
        i64::MAX,
        -(1 << 62),
        (1 << 62) - 1,
        0,
        1,
        -1,
        -32769,
        32768,
    ];
    batches(&mut g, 16, |g, n| {
        let groups = [1usize, 2, 4, 8][g.below(4) as usize];
        let len = groups * (1 + g.below(40) as usize);
        let exp_in = g.range_i64(-40, 10) as i32;
        let rows: Vec<Vec<i64>> = (0..n)
            .map(|_| match g.below(6) {
                0 => vec![0; len],
                1 => (0..len)
                    .map(|_| edges[g.below(edges.len() as u64) as usize])
                    .collect(),
                _ => {
                    let bits = 1 + g.below(63) as u32;
                    (0..len).map(|_| g.magnitude(bits)).collect()
                }
            })
            .collect();
        let got = ops::quantize(tensor_i64(&rows, &dev), groups, exp_in).expect("quantize");
        for (row, q) in rows.iter().zip(qbatch_rows(&got)) {
            assert_eq!(q, fixed::quantize(row, len / groups, exp_in), "{row:?}");
        }
    });
}

#[test]
fn quantize_vec_and_residual_add_match_reference() {
    let dev = device();
    let mut g = Gen::new(2);
    batches(&mut g, 16, |g, n| {
        let len = 1 + g.below(100) as usize;
        let a: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(len)).collect();
        let b: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(len)).collect();
        let frac = [12u32, 16][g.below(2) as usize];
        let q = ops::quantize_vec(tensor_i32(&a, &dev), frac).expect("quantize_vec");
        for (row, got) in a.iter().zip(qbatch_rows(&q)) {
            assert_eq!(got, vir::ops::quantize_vec(row, frac));
        }
        let sum = ops::residual_add(tensor_i32(&a, &dev), tensor_i32(&b, &dev)).expect("residual");
        for ((x, y), got) in a.iter().zip(&b).zip(rows_i32(sum)) {
            assert_eq!(got, vir::ops::residual_add(x, y));
        }
    });
}

#[test]
fn embed_matches_reference() {
    let dev = device();
    let mut g = Gen::new(3);
    for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
        let mut covered = 0;
        while covered < ROWS {
            let (rows, cols) = (1 + g.below(64) as usize, 32 * (1 + g.below(8) as usize));
            let m = random_matrix(&mut g, rows, cols, kind);
            let dm = DeviceMatrix::<Cpu>::upload(&m, &dev).expect("upload");
            let tokens: Vec<u32> = (0..1 + g.below(32))
                .map(|_| g.below(rows as u64) as u32)
                .collect();
            let got = rows_i32(ops::embed(&dm, &tokens, 12).expect("embed"));
            for (&t, row) in tokens.iter().zip(got) {
                assert_eq!(row, vir::ops::embed(&m, t, 12), "{kind:?} token {t}");
            }
            covered += tokens.len();
        }
    }
}

#[test]
fn rms_norm_matches_reference() {
    let dev = device();
    let mut g = Gen::new(4);
    batches(&mut g, 12, |g, n| {
        let d = 32 * (1 + g.below(24) as usize);
        let gamma: Vec<i64> = (0..d)
            .map(|_| match g.below(10) {
                0 => (1 << 24) - 1,
                1 => -(1 << 24) + 1,
                _ => g.magnitude(24).clamp(-(1 << 24) + 1, (1 << 24) - 1),
            })
            .collect();
        // eps from 1e-12 to 0.9 (rms_eps ∈ (0, 1)), plus the SmolLM2 value.
        let eps_fx = match g.below(3) {
            0 => 2_814_750_000,
            1 => 1 + g.below(1 << 20) as i64,
            _ => 1 + g.below((1 << 48) - 2) as i64,
        };
        let h: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(d)).collect();
        let got = ops::rms_norm(
            tensor_i32(&h, &dev),
            &gamma_tensor::<Cpu>(&gamma, &dev),
            eps_fx,
        )
        .expect("rms_norm");
        for (row, q) in h.iter().zip(qbatch_rows(&got)) {
            assert_eq!(q, vir::ops::rms_norm(row, &gamma, eps_fx), "eps {eps_fx}");
        }
    });
}

#[test]
fn matmul_matches_reference() {
    let dev = device();
    let mut g = Gen::new(5);
    for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
        let mut covered = 0;
        while covered < ROWS {
            let (rows, cols) = (1 + g.below(48) as usize, 32 * (1 + g.below(24) as usize));
            let m = bounded_matrix(&mut g, rows, cols, kind);
            let dm = DeviceMatrix::<Cpu>::upload(&m, &dev).expect("upload");
            let n = 1 + g.below(12) as usize;
            // Exponents from deep right shifts to saturating left shifts (e - 24 + f up to +22).
            let xs: Vec<QVec> = (0..n)
                .map(|_| random_qvec(&mut g, cols, 1, -60, 30))
                .collect();
            let frac = [12u32, 16][g.below(2) as usize];
            let x = QBatch::<Cpu>::from_qvecs(&xs, &dev).expect("upload x");
            let got = rows_i32(ops::matmul(&dm, &x, frac).expect("matmul"));
            for (xv, row) in xs.iter().zip(got) {
                assert_eq!(
                    row,
                    vir::ops::matmul(&m, xv, frac),
                    "{kind:?} exp {:?}",
                    xv.exps
                );
            }
            covered += n;
        }
    }
}

#[test]
fn rope_matches_reference() {
    let dev = device();
    let mut g = Gen::new(6);
    for head_dim in [2usize, 16, 64] {
        let ctx = 300;
        let table = tables::rope_table(ctx, head_dim, 10_000.0);
        let rt = RopeTable::<Cpu>::upload(&table, head_dim, &dev).expect("rope table");
        batches(&mut g, 16, |g, n| {
            let heads = 1 + g.below(6) as usize;
            let x: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(heads * head_dim)).collect();
            let pos: Vec<usize> = (0..n).map(|_| g.below(ctx as u64) as usize).collect();
            let qr = ops::rope_quant(tensor_i32(&x, &dev), &pos, &rt).expect("rope_quant");
            let kr = rows_i32(ops::rope(tensor_i32(&x, &dev), &pos, &rt).expect("rope"));
            for (((row, &p), q), k) in x.iter().zip(&pos).zip(qbatch_rows(&qr)).zip(kr) {
                let rope_row = &table[p * head_dim..(p + 1) * head_dim];
                assert_eq!(q, vir::ops::rope_quant(row, rope_row, head_dim));
                assert_eq!(k, vir::ops::rope(row, rope_row, head_dim));
            }
        });
    }
}

#[test]
fn swiglu_matches_reference() {
    let dev = device();
    let mut g = Gen::new(7);
    let sig = tables::sigmoid_table();
    let st = sigmoid_table_tensor::<Cpu>(&sig, &dev).expect("table");
    batches(&mut g, 16, |g, n| {
        let d = 32 * (1 + g.below(16) as usize);
        let gate: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(d)).collect();
        let up: Vec<Vec<i32>> = (0..n).map(|_| g.i32_row(d)).collect();
        let got = ops::swiglu(tensor_i32(&gate, &dev), tensor_i32(&up, &dev), &st).expect("swiglu");
        for ((a, b), q) in gate.iter().zip(&up).zip(qbatch_rows(&got)) {
            assert_eq!(q, vir::ops::swiglu(a, b, &sig));
        }
    });
}

/// One request's attention at several consecutive positions: every op of the chain against the reference run
/// per row with `n_pos = p + 1` keys.
fn check_attention(
    g: &mut Gen,
    dev: &Dev,
    exp: &[i32],
    exp_t: &burn::tensor::Tensor<Cpu, 1, burn::tensor::Int>,
) -> usize {
    let (n_kv, group, hd) = (
        1 + g.below(3) as usize,
        1 + g.below(3) as usize,
        [2usize, 8, 16][g.below(3) as usize],
    );
    let h = n_kv * group;
    // Positions: spans that cross chunk boundaries (64) as well as short ones.
    let first_max = if g.chance(1, 2) { 8 } else { 200 };
    let first = g.below(first_max) as usize;
    let rows_max = if g.chance(1, 3) { 70 } else { 6 };
    let m = 1 + g.below(rows_max) as usize;
    let positions: Vec<usize> = (first..first + m).collect();
    let n_keys = first + m;
    let keys: Vec<Vec<i32>> = (0..n_keys).map(|_| g.i32_row(n_kv * hd)).collect();
    let values: Vec<Vec<i32>> = (0..n_keys).map(|_| g.i32_row(n_kv * hd)).collect();
    // Query exponents span real ones ([-30, 2]) and large left shifts that saturate.
    let qs: Vec<QVec> = (0..m).map(|_| random_qvec(g, h * hd, h, -45, 50)).collect();
    let scale = vir::ops::score_scale(hd);

    let ctx = CausalRows::<Cpu>::new(&positions, h, n_kv, hd, dev).expect("ctx");
    let q = QBatch::<Cpu>::from_qvecs(&qs, dev).expect("q");
    let scores = ops::attn_scores(&ctx, &q, tensor_i32(&keys, dev), scale).expect("scores");
    let cmax = ops::chunk_max(scores.clone(), ATTN_CHUNK).expect("chunk_max");
    let rmax = ops::row_max(cmax.clone());
    let e = ops::attn_exp(&ctx, scores.clone(), rmax.clone(), exp_t).expect("attn_exp");
    let csum = ops::chunk_sum(e.clone(), ATTN_CHUNK).expect("chunk_sum");
    let rsum = ops::row_sum(csum.clone());
    let wsum = ops::attn_weighted_sums(&ctx, e.clone(), tensor_i32(&values, dev)).expect("wsum");
    let out = ops::attn_out(&ctx, wsum.clone(), rsum.clone()).expect("attn_out");

    let (scores, cmax, rmax, e) = (
        rows_i32(scores),
        rows_i32(cmax),
        rows_i32(rmax),
        rows_i32(e),
    );
    let (csum, rsum, wsum, out) = (
        rows_i64(csum),
        rows_i64(rsum),
        rows_i64(wsum),
        rows_i32(out),
    );
    let nc = ctx.chunks;
    let width = ctx.padded();
    let cut = ops::attention::line_prefixes::<i32>;
    let cut64 = ops::attention::line_prefixes::<i64>;
    let (scores, cmax, e) = (scores.concat(), cmax.concat(), e.concat());
    let (rmax, csum, rsum) = (rmax.concat(), csum.concat(), rsum.concat());
    for (i, &p) in positions.iter().enumerate() {
        let shape = AttnShape {
            n_heads: h,
            n_kv_heads: n_kv,
            head_dim: hd,
            n_pos: p + 1,
        };
        let nc_i = ctx.row_chunks(i);
        let key_refs: Vec<&[i32]> = keys[..=p].iter().map(Vec::as_slice).collect();
        let val_refs: Vec<&[i32]> = values[..=p].iter().map(Vec::as_slice).collect();
        let want_s = vir::ops::attn_scores(&qs[i], &key_refs, shape, scale);
        assert_eq!(
            cut(&scores, i * h, h, width, p + 1),
            want_s,
            "scores, row {i} pos {p}"
        );
        let want_cm = vir::ops::chunk_max(&want_s, h, ATTN_CHUNK);
        assert_eq!(cut(&cmax, i * h, h, nc, nc_i), want_cm, "chunk max");
        let want_rm = vir::ops::row_max(&want_cm, h);
        assert_eq!(&rmax[i * h..(i + 1) * h], want_rm.as_slice(), "row max");
        let want_e = vir::ops::attn_exp(&want_s, &want_rm, exp);
        assert_eq!(cut(&e, i * h, h, width, p + 1), want_e, "exp");
        let want_cs = vir::ops::chunk_sum(&want_e, h, ATTN_CHUNK);
        assert_eq!(cut64(&csum, i * h, h, nc, nc_i), want_cs, "chunk sum");
        let want_rs = vir::ops::row_sum(&want_cs, h);
        assert_eq!(&rsum[i * h..(i + 1) * h], want_rs.as_slice(), "row sum");
        let want_w = vir::ops::attn_weighted_sums(&want_e, &val_refs, shape);
        assert_eq!(
            cut64(&wsum[i], 0, h * hd, nc, nc_i),
            want_w,
            "weighted sums"
        );
        assert_eq!(
            out[i],
            vir::ops::attn_out(&want_w, &want_rs, shape),
            "attn out"
        );
    }
    m
}

#[test]
fn attention_ops_match_reference() {
    let dev = device();
    let mut g = Gen::new(8);
    let exp = tables::exp_table();
    let exp_t = exp_table_tensor::<Cpu>(&exp, &dev).expect("exp table");
    let mut covered = 0;
    while covered < ROWS {
        covered += check_attention(&mut g, &dev, &exp, &exp_t);
    }
}

/// Logits with many ties (a small value set), extremes, or random magnitudes.
fn random_logits(g: &mut Gen, vocab: usize) -> Vec<i32> {
    match g.below(5) {
        0 => (0..vocab).map(|_| g.below(4) as i32 - 2).collect(),
        1 => (0..vocab)
            .map(|_| [i32::MIN, i32::MAX, 0][g.below(3) as usize])
            .collect(),
        2 => vec![7; vocab],
        _ => {
            let bits = 1 + g.below(32) as u32;
            (0..vocab)
                .map(|_| {
                    g.magnitude(bits)
                        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
                })
                .collect()
        }
    }
}

#[test]
fn sampling_ops_match_reference() {
    let dev = device();
    let mut g = Gen::new(9);
    let exp = tables::exp_table();
    let exp_t = exp_table_tensor::<Cpu>(&exp, &dev).expect("exp table");
    batches(&mut g, 6, |g, n| {
        let vocab = [1usize, 700, 1024, 1500, 2048, 3001][g.below(6) as usize];
        let logits: Vec<Vec<i32>> = (0..n).map(|_| random_logits(g, vocab)).collect();
        let temps: Vec<u32> = (0..n)
            .map(|_| match g.below(4) {
                0 => 0,
                1 => 2000,
                _ => 1 + g.below(2000) as u32,
            })
            .collect();
        let top_p: Vec<u32> = (0..n)
            .map(|_| match g.below(4) {
                0 => 1000,
                1 => 1,
                _ => 1 + g.below(1000) as u32,
            })
            .collect();
        let draws: Vec<u64> = (0..n)
            .map(|_| match g.below(6) {
                0 => 0,
                1 => u64::MAX,
                _ => g.u64(),
            })
            .collect();

        let lt = tensor_i32(&logits, &dev);
        let cm = ops::logit_chunk_max(lt.clone(), VOCAB_CHUNK).expect("chunk max");
        let mx = ops::logit_max(cm.clone()).expect("logit max");
        let e = ops::sample_exp(lt, mx.clone(), &temps, &exp_t).expect("sample exp");
        let all = ops::masked_chunk_sum(e.clone(), &vec![0; n], VOCAB_CHUNK).expect("sums");
        let sum = rows_i64(ops::sample_sum(all.clone(), &top_p).expect("sample sum"));
        let (cm, mx, e_rows, all) = (
            rows_i32(cm),
            rows_i32(mx),
            rows_i32(e.clone()),
            rows_i64(all),
        );

        let mut want_e = Vec::new();
        let mut tau = vec![0i64; n];
        for r in 0..n {
            let wcm = vir::ops::logit_chunk_max(&logits[r], VOCAB_CHUNK);
            assert_eq!(cm[r], wcm, "chunk max");
            let wmx = vir::ops::logit_max(&wcm);
            assert_eq!(mx[r], wmx.to_vec(), "logit max");
            let we = vir::ops::sample_exp(&logits[r], wmx, temps[r], &exp);
            assert_eq!(e_rows[r], we, "sample exp T={}", temps[r]);
            let wall = vir::ops::masked_chunk_sum(&we, 0, VOCAB_CHUNK);
            assert_eq!(all[r], wall, "sample chunk sums");
            assert_eq!(
                sum[r],
                vir::ops::sample_sum(&wall, top_p[r]).to_vec(),
                "sample sum"
            );
            want_e.push(we);
        }
        let target: Vec<i64> = sum.iter().map(|s| s[1]).collect();
        for round in 0..vir::ops::TOPP_ROUNDS {
            let cand: Vec<i64> = tau
                .iter()
                .map(|&t| vir::ops::topp_candidate(t, round))
                .collect();
            let sums_t = ops::masked_chunk_sum(e.clone(), &cand, VOCAB_CHUNK).expect("topp sums");
            let next =
                rows_i64(ops::topp_step(sums_t.clone(), &tau, round, &target).expect("step"));
            let sums = rows_i64(sums_t);
            for r in 0..n {
                let ws = vir::ops::masked_chunk_sum(&want_e[r], cand[r], VOCAB_CHUNK);
                assert_eq!(sums[r], ws, "top-p sums round {round}");
                let wt = vir::ops::topp_step(&ws, tau[r], round, target[r]);
                assert_eq!(next[r], vec![wt], "top-p step round {round}");
            }
            tau = next.iter().map(|v| v[0]).collect();
        }
        let kept = rows_i64(ops::masked_chunk_sum(e.clone(), &tau, VOCAB_CHUNK).expect("kept"));
        let mut picks = Vec::new();
        for r in 0..n {
            let wk = vir::ops::masked_chunk_sum(&want_e[r], tau[r], VOCAB_CHUNK);
            assert_eq!(kept[r], wk, "kept sums");
            let p = ops::pick_chunk(&kept[r], draws[r]);
            assert_eq!(p, vir::ops::pick_chunk(&wk, draws[r]), "pick chunk");
            picks.push(p);
        }
        let tok = rows_i32(ops::pick_token(e, &tau, &picks, VOCAB_CHUNK).expect("pick token"));
        for r in 0..n {
            assert_eq!(
                tok[r],
                vec![vir::ops::pick_token(
                    &want_e[r],
                    tau[r],
                    picks[r],
                    VOCAB_CHUNK
                )],
                "pick token"
            );
        }
    });
}

#[test]
fn pick_chunk_and_pick_token_match_reference_on_arbitrary_weights() {
    // Beyond the pipeline: random non-negative weights, thresholds (including 0, which keeps padding-free zeros)
    // and draws, with every chunk picked.
    let dev = device();
    let mut g = Gen::new(10);
    batches(&mut g, 8, |g, n| {
        let vocab = [5usize, 1023, 1025, 2500][g.below(4) as usize];
        let e: Vec<Vec<i32>> = (0..n)
            .map(|_| {
                (0..vocab)
                    .map(|_| {
                        if g.chance(1, 3) {
                            0
                        } else {
                            g.below(1 << 16) as i32 + 1
                        }
                    })
                    .collect()
            })
            .collect();
        let tau: Vec<i64> = (0..n).map(|_| g.below(1 << 17) as i64).collect();
        let mut picks = Vec::new();
        for r in 0..n {
            let kept = vir::ops::masked_chunk_sum(&e[r], tau[r], VOCAB_CHUNK);
            let u = g.u64();
            let p = ops::pick_chunk(&kept, u);
            assert_eq!(p, vir::ops::pick_chunk(&kept, u));
            picks.push(p);
        }
        let got = rows_i32(
            ops::pick_token(tensor_i32(&e, &dev), &tau, &picks, VOCAB_CHUNK).expect("pick"),
        );
        for r in 0..n {
            assert_eq!(
                got[r],
                vec![vir::ops::pick_token(&e[r], tau[r], picks[r], VOCAB_CHUNK)]
            );
        }
    });
}

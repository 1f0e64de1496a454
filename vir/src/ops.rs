//! The VIR op set: each op is a pure function on integers with exactly one correct result.
//!
//! These are the scalar reference implementations. Formulas, rounding, overflow bounds and fan-in of every op are
//! specified in `docs/vir.md`; the executor's burn kernels and the on-chain one-step verifier must agree bit for bit.
//! Layouts are row-major; "Qn" means a fixed-point integer with n fraction bits.

use crate::fixed::{QVec, bit_len, clamp_i32, div_trunc, isqrt, quantize, shift};
use crate::tables::{EXP_INDEX_FRAC, EXP_LEN, SIGMOID_INDEX_FRAC, SIGMOID_LEN, TABLE_FRAC};
use crate::weights::{QuantKind, QuantMatrix};
use rayon::prelude::*;

/// Fraction bits of the residual stream (i32). SmolLM2's residual reaches ~2.6e4, so Q16 (max 32768) is too tight.
pub const RESIDUAL_FRAC: u32 = 12;
/// Fraction bits of q/k/v, FFN gate/up, attention output and logits (i32).
pub const ACT_FRAC: u32 = 16;
/// Fraction bits of weight block scales (`D`, `M`: units of 2^-24).
pub const WEIGHT_FRAC: i32 = 24;
/// Exponent of the RMSNorm pre-quantization product `z` (real = z · 2^-40).
pub const NORM_OUT_EXP: i32 = -40;
/// Positions per attention chunk (bounds the fan-in of partial softmax ops).
pub const ATTN_CHUNK: usize = 64;
/// Vocabulary entries per sampling chunk.
pub const VOCAB_CHUNK: usize = 1024;
/// Binary-search rounds of the top-p threshold: probabilities are in [0, 2^16], 17 bits.
pub const TOPP_ROUNDS: usize = 17;
/// Fixed-point one of the (unnormalized) probabilities `EXP[0]`.
pub const PROB_ONE: i64 = 1 << TABLE_FRAC;

/// Number of chunks of `n` items.
pub fn n_chunks(n: usize, chunk: usize) -> usize {
    n.div_ceil(chunk).max(1)
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding, normalization, projections

/// `out[i] = clamp_i32(floor(w[token][i] · 2^out_frac))`, with `w = D·q (+M)` in units of 2^-24.
pub fn embed(w: &QuantMatrix, token: u32, out_frac: u32) -> Vec<i32> {
    let r = token as usize;
    let cols = w.cols;
    let bpr = w.blocks_per_row();
    (0..cols)
        .map(|i| {
            let b = r * bpr + i / 32;
            let q = i64::from(w.quants[r * cols + i]);
            let m = if w.kind == QuantKind::Q4_1 {
                w.mins[b]
            } else {
                0
            };
            clamp_i32(shift(w.scales[b] * q + m, out_frac as i32 - WEIGHT_FRAC))
        })
        .collect()
}

/// RMSNorm of a Q12 residual with Q16 gamma, to int16 with one exponent (docs/vir.md §RmsNorm):
/// `k = bit_len(max|h|) - 24` (0 for a zero row), `h' = floor(h·2^-k)`, `ms = floor(Σh'²/d) + eps_term`,
/// `r = max(isqrt(ms), 1)`, `inv = floor(2^48 / r)`, `y = floor(h'·inv·2^-24)`, `z = y·g`, then `quantize(z, d, -40)`.
pub fn rms_norm(h: &[i32], gamma: &[i64], eps_fx: i64) -> QVec {
    let d = h.len() as i64;
    let m = h
        .iter()
        .map(|v| u64::from(v.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let k = if m == 0 { 0 } else { bit_len(m) - 24 };
    let hp: Vec<i64> = h.iter().map(|&v| shift(i64::from(v), -k)).collect();
    let ss: i64 = hp.iter().map(|v| v * v).sum();
    let eps_term = shift(eps_fx, 2 * RESIDUAL_FRAC as i32 - 2 * k - 48).min(1 << 60);
    let ms = ss / d + eps_term;
    let r = (isqrt(ms as u64) as i64).max(1);
    let inv = (1i64 << 48) / r;
    let z: Vec<i64> = hp
        .iter()
        .zip(gamma)
        .map(|(&v, &g)| shift(v * inv, -24) * g)
        .collect();
    quantize(&z, h.len(), NORM_OUT_EXP)
}

/// Sums of each 32-element block of the input (the `M` term of Q4_1 needs them).
fn block_sums(x: &[i16]) -> Vec<i64> {
    x.chunks_exact(32)
        .map(|b| b.iter().map(|&v| i64::from(v)).sum())
        .collect()
}

/// Exact dot product of weight row `r` with int16 `x`: `Σ_b D_b·Σ_j q_j x_j + M_b·Σ_j x_j` (i64).
pub fn matmul_row_exact(w: &QuantMatrix, r: usize, x: &[i16], xsums: &[i64]) -> i64 {
    let bpr = w.blocks_per_row();
    let q_row = &w.quants[r * w.cols..(r + 1) * w.cols];
    let mut y = 0i64;
    for (b, (qb, xb)) in q_row.chunks_exact(32).zip(x.chunks_exact(32)).enumerate() {
        let acc: i32 = qb
            .iter()
            .zip(xb)
            .map(|(&q, &v)| i32::from(q) * i32::from(v))
            .sum();
        y += w.scales[r * bpr + b] * i64::from(acc);
        if w.kind == QuantKind::Q4_1 {
            y += w.mins[r * bpr + b] * xsums[b];
        }
    }
    y
}

/// `out[r] = clamp_i32(floor(y_r · 2^(e_x - 24 + out_frac)))` with `y_r` the exact row dot product.
pub fn matmul(w: &QuantMatrix, x: &QVec, out_frac: u32) -> Vec<i32> {
    let e = x.exps.first().copied().unwrap_or(0);
    let xsums = block_sums(&x.values);
    let k = e - WEIGHT_FRAC + out_frac as i32;
    (0..w.rows)
        .into_par_iter()
        .map(|r| clamp_i32(shift(matmul_row_exact(w, r, &x.values, &xsums), k)))
        .collect()
}

/// Rotates adjacent pairs `(2i, 2i+1)` of each head by the Q16 (cos, sin) of `rope_row`; results Q16 in i64.
fn rotate(x: &[i32], rope_row: &[i32], head_dim: usize) -> Vec<i64> {
    let mut out = vec![0i64; x.len()];
    for (head_in, head_out) in x.chunks_exact(head_dim).zip(out.chunks_exact_mut(head_dim)) {
        for i in 0..head_dim / 2 {
            let (a, b) = (i64::from(head_in[2 * i]), i64::from(head_in[2 * i + 1]));
            let (c, s) = (i64::from(rope_row[2 * i]), i64::from(rope_row[2 * i + 1]));
            head_out[2 * i] = shift(a * c - b * s, -(TABLE_FRAC as i32));
            head_out[2 * i + 1] = shift(a * s + b * c, -(TABLE_FRAC as i32));
        }
    }
    out
}

/// RoPE on the Q16 query, then int16 per head (one exponent per head).
pub fn rope_quant(q: &[i32], rope_row: &[i32], head_dim: usize) -> QVec {
    quantize(&rotate(q, rope_row, head_dim), head_dim, -(ACT_FRAC as i32))
}

/// RoPE on the Q16 key, saturated to i32 (the key cache entry).
pub fn rope(k: &[i32], rope_row: &[i32], head_dim: usize) -> Vec<i32> {
    rotate(k, rope_row, head_dim)
        .into_iter()
        .map(clamp_i32)
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

/// Shapes of one attention step.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Positions attended (current position + 1).
    pub n_pos: usize,
}

impl AttnShape {
    pub fn kv_head(&self, head: usize) -> usize {
        head / (self.n_heads / self.n_kv_heads)
    }
    pub fn n_chunks(&self) -> usize {
        n_chunks(self.n_pos, ATTN_CHUNK)
    }
}

/// `round(2^16 / sqrt(head_dim))` (f64 sqrt is correctly rounded; 8192 for head_dim 64).
pub fn score_scale(head_dim: usize) -> i64 {
    (65536.0 / (head_dim as f64).sqrt()).round() as i64
}

/// Q16 scores `[head][pos]`: `a = clamp(floor(dot · 2^e_h), ±2^46)`, `s = clamp_i32(floor(a · scale · 2^-16))`.
pub fn attn_scores(q: &QVec, keys: &[&[i32]], shape: AttnShape, scale: i64) -> Vec<i32> {
    let hd = shape.head_dim;
    let mut out = Vec::with_capacity(shape.n_heads * shape.n_pos);
    for h in 0..shape.n_heads {
        let qh = &q.values[h * hd..(h + 1) * hd];
        let kv = shape.kv_head(h);
        for key in keys.iter().take(shape.n_pos) {
            let kh = &key[kv * hd..(kv + 1) * hd];
            let dot: i64 = qh
                .iter()
                .zip(kh)
                .map(|(&a, &b)| i64::from(a) * i64::from(b))
                .sum();
            let a = shift(dot, q.exps[h]).clamp(-(1 << 46), 1 << 46);
            out.push(clamp_i32(shift(a * scale, -16)));
        }
    }
    out
}

/// Maximum of each chunk of `chunk` items of each row: `[rows][n_chunks]`.
pub fn chunk_max(x: &[i32], rows: usize, chunk: usize) -> Vec<i32> {
    let n = x.len() / rows.max(1);
    let mut out = Vec::with_capacity(rows * n_chunks(n, chunk));
    for row in x.chunks_exact(n.max(1)).take(rows) {
        out.extend(
            row.chunks(chunk)
                .map(|c| c.iter().copied().max().unwrap_or(i32::MIN)),
        );
    }
    out
}

/// Maximum of each row of `[rows][n]`.
pub fn row_max(x: &[i32], rows: usize) -> Vec<i32> {
    let n = x.len() / rows.max(1);
    x.chunks_exact(n.max(1))
        .take(rows)
        .map(|r| r.iter().copied().max().unwrap_or(i32::MIN))
        .collect()
}

/// `EXP(x)` for a non-negative Q16 difference: `EXP[x >> 6]`, or 0 past the table.
pub fn exp_lookup(exp_table: &[i32], diff_q16: i64) -> i32 {
    let idx = diff_q16 >> (16 - EXP_INDEX_FRAC);
    if idx < EXP_LEN as i64 {
        exp_table[idx as usize]
    } else {
        0
    }
}

/// Unnormalized probabilities `e[h][j] = EXP(max[h] - s[h][j])`, Q16 with `EXP(0) = 2^16`.
pub fn attn_exp(scores: &[i32], max: &[i32], exp_table: &[i32]) -> Vec<i32> {
    let n = scores.len() / max.len().max(1);
    scores
        .chunks_exact(n.max(1))
        .zip(max)
        .flat_map(|(row, &m)| {
            row.iter()
                .map(move |&s| exp_lookup(exp_table, i64::from(m) - i64::from(s)))
        })
        .collect()
}

/// Sums of each chunk of each row: `[rows][n_chunks]`, i64.
pub fn chunk_sum(x: &[i32], rows: usize, chunk: usize) -> Vec<i64> {
    let n = x.len() / rows.max(1);
    let mut out = Vec::with_capacity(rows * n_chunks(n, chunk));
    for row in x.chunks_exact(n.max(1)).take(rows) {
        out.extend(
            row.chunks(chunk)
                .map(|c| c.iter().map(|&v| i64::from(v)).sum::<i64>()),
        );
    }
    out
}

/// Sums of each row of `[rows][n]`.
pub fn row_sum(x: &[i64], rows: usize) -> Vec<i64> {
    let n = x.len() / rows.max(1);
    x.chunks_exact(n.max(1))
        .take(rows)
        .map(|r| r.iter().sum())
        .collect()
}

/// Partial weighted sums `w[h][d][c] = Σ_{j ∈ chunk c} e[h][j] · v_j[kv(h)][d]` (i64).
pub fn attn_weighted_sums(e: &[i32], values: &[&[i32]], shape: AttnShape) -> Vec<i64> {
    let (hd, n, nc) = (shape.head_dim, shape.n_pos, shape.n_chunks());
    let mut out = vec![0i64; shape.n_heads * hd * nc];
    for h in 0..shape.n_heads {
        let kv = shape.kv_head(h);
        for j in 0..n {
            let p = i64::from(e[h * n + j]);
            let c = j / ATTN_CHUNK;
            let vj = &values[j][kv * hd..(kv + 1) * hd];
            for (d, &v) in vj.iter().enumerate() {
                out[(h * hd + d) * nc + c] += p * i64::from(v);
            }
        }
    }
    out
}

/// Attention output Q16: `o[h][d] = clamp_i32(trunc(Σ_c w[h][d][c] / L[h]))`.
pub fn attn_out(wsums: &[i64], sums: &[i64], shape: AttnShape) -> Vec<i32> {
    let (hd, nc) = (shape.head_dim, shape.n_chunks());
    (0..shape.n_heads * hd)
        .map(|hd_idx| {
            let total: i64 = wsums[hd_idx * nc..(hd_idx + 1) * nc].iter().sum();
            clamp_i32(div_trunc(total, sums[hd_idx / hd]))
        })
        .collect()
}

/// A Q(`frac`) i32 vector to int16 with one exponent.
pub fn quantize_vec(x: &[i32], frac: u32) -> QVec {
    let wide: Vec<i64> = x.iter().map(|&v| i64::from(v)).collect();
    quantize(&wide, x.len(), -(frac as i32))
}

/// `clamp_i32(a + b)`.
pub fn residual_add(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| clamp_i32(i64::from(x) + i64::from(y)))
        .collect()
}

/// `σ(g)` for Q16 `g`: `SIGMOID[clamp((g >> 6) + 2^14, 0, 2^15 - 1)]`, Q16.
pub fn sigmoid_lookup(sig_table: &[i32], g_q16: i32) -> i64 {
    let idx = (i64::from(g_q16) >> (16 - SIGMOID_INDEX_FRAC)) + (SIGMOID_LEN / 2) as i64;
    i64::from(sig_table[idx.clamp(0, SIGMOID_LEN as i64 - 1) as usize])
}

/// SwiGLU: `silu = floor(g · σ(g) · 2^-16)`, `h = silu · u` (Q32), then int16 with one exponent.
pub fn swiglu(gate: &[i32], up: &[i32], sig_table: &[i32]) -> QVec {
    let h: Vec<i64> = gate
        .iter()
        .zip(up)
        .map(|(&g, &u)| shift(i64::from(g) * sigmoid_lookup(sig_table, g), -16) * i64::from(u))
        .collect();
    quantize(&h, gate.len(), -2 * ACT_FRAC as i32)
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

/// Per chunk of logits: `(max, lowest index of the max)`, flattened `[n_chunks][2]`.
pub fn logit_chunk_max(logits: &[i32], chunk: usize) -> Vec<i32> {
    let mut out = Vec::with_capacity(2 * n_chunks(logits.len(), chunk));
    for (c, part) in logits.chunks(chunk).enumerate() {
        let (mut best, mut at) = (part[0], 0usize);
        for (i, &v) in part.iter().enumerate() {
            if v > best {
                (best, at) = (v, i);
            }
        }
        out.push(best);
        out.push((c * chunk + at) as i32);
    }
    out
}

/// Combines chunk maxima: `(max, lowest index)`; an earlier chunk wins ties.
pub fn logit_max(chunk_max: &[i32]) -> [i32; 2] {
    let mut best = [chunk_max[0], chunk_max[1]];
    for pair in chunk_max.chunks_exact(2) {
        if pair[0] > best[0] {
            best = [pair[0], pair[1]];
        }
    }
    best
}

/// Unnormalized sampling weights Q16: greedy (temperature 0) puts 2^16 on the argmax and 0 elsewhere; otherwise
/// `e_i = EXP(floor((max - l_i) · 1000 / temperature_milli))`.
pub fn sample_exp(
    logits: &[i32],
    max: [i32; 2],
    temperature_milli: u32,
    exp_table: &[i32],
) -> Vec<i32> {
    logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if temperature_milli == 0 {
                if i as i32 == max[1] {
                    PROB_ONE as i32
                } else {
                    0
                }
            } else {
                let diff = (i64::from(max[0]) - i64::from(l)) * 1000 / i64::from(temperature_milli);
                exp_lookup(exp_table, diff)
            }
        })
        .collect()
}

/// Per chunk: the sum of the weights that are `>= threshold` (threshold 0 sums everything).
pub fn masked_chunk_sum(e: &[i32], threshold: i64, chunk: usize) -> Vec<i64> {
    e.chunks(chunk)
        .map(|c| {
            c.iter()
                .map(|&v| i64::from(v))
                .filter(|&v| v >= threshold)
                .sum()
        })
        .collect()
}

/// `(L, target)`: the total weight and the top-p mass `ceil(L · top_p_milli / 1000)`.
pub fn sample_sum(chunk_sums: &[i64], top_p_milli: u32) -> [i64; 2] {
    let total: i64 = chunk_sums.iter().sum();
    [total, (total * i64::from(top_p_milli) + 999) / 1000]
}

/// Bit tested in top-p round `round` (high to low).
pub fn topp_bit(round: usize) -> u32 {
    (TOPP_ROUNDS - 1 - round) as u32
}

/// Candidate threshold of a round: the previous threshold with the round's bit set.
pub fn topp_candidate(tau_prev: i64, round: usize) -> i64 {
    tau_prev | (1 << topp_bit(round))
}

/// One binary-search step: keep the candidate when the mass at or above it still reaches the target.
pub fn topp_step(candidate_chunk_sums: &[i64], tau_prev: i64, round: usize, target: i64) -> i64 {
    let mass: i64 = candidate_chunk_sums.iter().sum();
    if mass >= target {
        topp_candidate(tau_prev, round)
    } else {
        tau_prev
    }
}

/// Draws `r = floor(u · K / 2^64)` in `[0, K)` from the kept mass `K = Σ kept`, and finds the chunk holding it:
/// `(chunk, r - mass of earlier chunks)`.
pub fn pick_chunk(kept_chunk_sums: &[i64], u: u64) -> [i64; 2] {
    let total: i64 = kept_chunk_sums.iter().sum();
    let r = ((u128::from(u) * total as u128) >> 64) as i64;
    let mut before = 0i64;
    for (c, &s) in kept_chunk_sums.iter().enumerate() {
        if r < before + s {
            return [c as i64, r - before];
        }
        before += s;
    }
    // Unreachable while total > 0 (the argmax always keeps weight 2^16 > 0); defined anyway.
    [kept_chunk_sums.len() as i64 - 1, 0]
}

/// The token in chunk `pick[0]` whose running kept mass first exceeds `pick[1]`.
pub fn pick_token(e: &[i32], tau: i64, pick: [i64; 2], chunk: usize) -> i32 {
    let c = pick[0] as usize;
    let part = &e[c * chunk..((c + 1) * chunk).min(e.len())];
    let mut acc = 0i64;
    for (i, &v) in part.iter().enumerate() {
        let v = i64::from(v);
        if v >= tau {
            acc += v;
            if acc > pick[1] {
                return (c * chunk + i) as i32;
            }
        }
    }
    (c * chunk + part.len() - 1) as i32
}

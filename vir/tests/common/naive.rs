//! Naive reference implementations of the VIR ops, written from their mathematical definitions only.
//!
//! Everything is computed in i128 with explicit floor divisions (no arithmetic shifts), brute-force loops and a
//! binary-search square root, so that an agreement with `verinfer_vir::ops` is evidence of correctness rather than
//! of a shared implementation. Nothing here calls the code under test.

#![allow(dead_code)]

/// `2^k` as i128 (`k ≤ 126`).
pub fn pow2(k: u32) -> i128 {
    assert!(k <= 126);
    let mut p = 1i128;
    for _ in 0..k {
        p *= 2;
    }
    p
}

/// `floor(n / d)` for `d > 0`, from truncating division plus a correction.
pub fn floor_div(n: i128, d: i128) -> i128 {
    assert!(d > 0);
    let q = n / d;
    if n % d != 0 && n < 0 { q - 1 } else { q }
}

/// Sentinel magnitude for "far outside i64": any result beyond it is reported as ±2^100.
const HUGE: i128 = 1 << 100;

/// `floor(v · 2^k)` for any `k`; results beyond ±2^100 are returned as ±2^100 (enough for every later clamp).
pub fn floor_pow2(v: i128, k: i64) -> i128 {
    if v == 0 {
        return 0;
    }
    if k >= 0 {
        let mut r = v;
        let mut i = 0i64;
        while i < k {
            r *= 2;
            if r.abs() >= HUGE {
                return if r < 0 { -HUGE } else { HUGE };
            }
            i += 1;
        }
        r
    } else if k <= -120 {
        // |v| < 2^120 here, so v · 2^k lies in (-1, 1).
        if v < 0 { -1 } else { 0 }
    } else {
        floor_div(v, pow2((-k) as u32))
    }
}

pub fn clamp(v: i128, lo: i128, hi: i128) -> i128 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

pub fn sat_i64(v: i128) -> i64 {
    clamp(v, i64::MIN as i128, i64::MAX as i128) as i64
}

pub fn clamp_i32(v: i128) -> i32 {
    clamp(v, i32::MIN as i128, i32::MAX as i128) as i32
}

/// `shift(v, k) = floor(v · 2^k)` saturated to i64.
pub fn shift(v: i64, k: i64) -> i64 {
    sat_i64(floor_pow2(v as i128, k))
}

/// Number of significant bits (0 for 0).
pub fn bit_len(m: u128) -> i64 {
    let mut n = 0;
    let mut x = m;
    while x > 0 {
        x /= 2;
        n += 1;
    }
    n
}

/// `floor(sqrt(n))` by binary search.
pub fn isqrt(n: u128) -> u128 {
    assert!(n < 1u128 << 126);
    let (mut lo, mut hi) = (0u128, 1u128 << 63); // invariant: lo² ≤ n < hi²
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if mid * mid <= n {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `sign(n) · floor(|n| / d)`, `d > 0`.
pub fn div_trunc(n: i128, d: i128) -> i128 {
    assert!(d > 0);
    let q = floor_div(n.abs(), d);
    if n < 0 { -q } else { q }
}

/// Per-group dynamic quantization; panics (with a message) if a value does not fit i16.
pub fn quantize(values: &[i128], group: usize, exp_in: i64) -> (Vec<i32>, Vec<i16>) {
    let mut exps = Vec::new();
    let mut out = Vec::new();
    for g in values.chunks(group.max(1)) {
        let m = g.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let s = if m == 0 { 0 } else { bit_len(m) - 15 };
        exps.push(i32::try_from(exp_in + s).expect("group exponent fits i32"));
        for &v in g {
            let q = floor_pow2(v, -s);
            out.push(
                i16::try_from(q)
                    .unwrap_or_else(|_| panic!("quantized value {q} of {v} (s={s}) leaves i16")),
            );
        }
    }
    (exps, out)
}

// ---------------------------------------------------------------------------------------------------------------
// Weights

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Q4_1,
    Q8_0,
}

/// A quantized matrix described independently of `QuantMatrix`: `w[r][i] = D[r][i/32]·q[r][i] (+ M[r][i/32])`.
pub struct NaiveMatrix {
    pub rows: usize,
    pub cols: usize,
    pub kind: Kind,
    pub d: Vec<i64>,
    pub m: Vec<i64>,
    pub q: Vec<i8>,
}

impl NaiveMatrix {
    pub fn weight(&self, r: usize, i: usize) -> i128 {
        let b = r * (self.cols / 32) + i / 32;
        let base = self.d[b] as i128 * self.q[r * self.cols + i] as i128;
        match self.kind {
            Kind::Q4_1 => base + self.m[b] as i128,
            Kind::Q8_0 => base,
        }
    }
}

pub fn embed(w: &NaiveMatrix, token: usize, out_frac: i64) -> Vec<i32> {
    (0..w.cols)
        .map(|i| clamp_i32(floor_pow2(w.weight(token, i), out_frac - 24)))
        .collect()
}

/// Exact `y_r = Σ_b (D_rb · Σ_j q_rbj x_bj + M_rb · Σ_j x_bj)`.
pub fn matmul_exact(w: &NaiveMatrix, r: usize, x: &[i16]) -> i128 {
    let nb = w.cols / 32;
    let mut y = 0i128;
    for b in 0..nb {
        let mut qx = 0i128;
        let mut sx = 0i128;
        for j in 0..32 {
            let i = b * 32 + j;
            qx += w.q[r * w.cols + i] as i128 * x[i] as i128;
            sx += x[i] as i128;
        }
        y += w.d[r * nb + b] as i128 * qx;
        if w.kind == Kind::Q4_1 {
            y += w.m[r * nb + b] as i128 * sx;
        }
    }
    y
}

pub fn matmul(w: &NaiveMatrix, e: i64, x: &[i16], out_frac: i64) -> Vec<i32> {
    (0..w.rows)
        .map(|r| clamp_i32(floor_pow2(matmul_exact(w, r, x), e - 24 + out_frac)))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Norm, rotation

pub fn rms_norm(h: &[i32], gamma: &[i64], eps_fx: i64) -> (Vec<i32>, Vec<i16>) {
    let d = h.len() as i128;
    let m = h
        .iter()
        .map(|&v| (v as i128).unsigned_abs())
        .max()
        .unwrap_or(0);
    let k = if m == 0 { 0 } else { bit_len(m) - 24 };
    let hp: Vec<i128> = h.iter().map(|&v| floor_pow2(v as i128, -k)).collect();
    let ss: i128 = hp.iter().map(|v| v * v).sum();
    let eps_term = floor_pow2(eps_fx as i128, 2 * 12 - 2 * k - 48).min(pow2(60));
    let ms = floor_div(ss, d) + eps_term;
    let r = isqrt(ms as u128).max(1) as i128;
    let inv = floor_div(pow2(48), r);
    let z: Vec<i128> = hp
        .iter()
        .zip(gamma)
        .map(|(&v, &g)| floor_div(v * inv, pow2(24)) * g as i128)
        .collect();
    quantize(&z, h.len(), -40)
}

/// Rotated pairs per head, unclamped.
pub fn rotate(x: &[i32], row: &[i32], hd: usize) -> Vec<i128> {
    let mut out = Vec::with_capacity(x.len());
    for head in x.chunks(hd) {
        for i in 0..hd / 2 {
            let (a, b) = (head[2 * i] as i128, head[2 * i + 1] as i128);
            let (c, s) = (row[2 * i] as i128, row[2 * i + 1] as i128);
            out.push(floor_div(a * c - b * s, 65536));
            out.push(floor_div(a * s + b * c, 65536));
        }
    }
    out
}

pub fn rope(x: &[i32], row: &[i32], hd: usize) -> Vec<i32> {
    rotate(x, row, hd).into_iter().map(clamp_i32).collect()
}

pub fn rope_quant(x: &[i32], row: &[i32], hd: usize) -> (Vec<i32>, Vec<i16>) {
    quantize(&rotate(x, row, hd), hd, -16)
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub hd: usize,
    pub n_pos: usize,
}

impl Shape {
    pub fn kv(&self, h: usize) -> usize {
        h / (self.n_heads / self.n_kv_heads)
    }
    pub fn n_chunks(&self) -> usize {
        ceil_div(self.n_pos, 64).max(1)
    }
}

pub fn ceil_div(n: usize, c: usize) -> usize {
    let mut k = 0;
    while k * c < n {
        k += 1;
    }
    k
}

pub fn attn_scores(
    q_exps: &[i32],
    q: &[i16],
    keys: &[Vec<i32>],
    sh: Shape,
    scale: i64,
) -> Vec<i32> {
    let mut out = vec![0i32; sh.n_heads * sh.n_pos];
    for h in 0..sh.n_heads {
        let kv = sh.kv(h);
        for j in 0..sh.n_pos {
            let mut dot = 0i128;
            for d in 0..sh.hd {
                dot += q[h * sh.hd + d] as i128 * keys[j][kv * sh.hd + d] as i128;
            }
            let a = clamp(floor_pow2(dot, q_exps[h] as i64), -pow2(46), pow2(46));
            out[h * sh.n_pos + j] = clamp_i32(floor_div(a * scale as i128, 65536));
        }
    }
    out
}

pub fn chunk_max(x: &[i32], rows: usize, chunk: usize) -> Vec<i32> {
    let n = x.len() / rows;
    let mut out = Vec::new();
    for r in 0..rows {
        for c in 0..ceil_div(n, chunk) {
            let mut best: Option<i32> = None;
            for i in c * chunk..((c + 1) * chunk).min(n) {
                let v = x[r * n + i];
                if best.is_none_or(|b| v > b) {
                    best = Some(v);
                }
            }
            out.push(best.unwrap());
        }
    }
    out
}

pub fn row_max(x: &[i32], rows: usize) -> Vec<i32> {
    let n = x.len() / rows;
    (0..rows)
        .map(|r| *x[r * n..(r + 1) * n].iter().max().unwrap())
        .collect()
}

pub fn chunk_sum(x: &[i32], rows: usize, chunk: usize) -> Vec<i64> {
    let n = x.len() / rows;
    let mut out = Vec::new();
    for r in 0..rows {
        for c in 0..ceil_div(n, chunk) {
            let mut s = 0i128;
            for i in c * chunk..((c + 1) * chunk).min(n) {
                s += x[r * n + i] as i128;
            }
            out.push(i64::try_from(s).unwrap());
        }
    }
    out
}

pub fn row_sum(x: &[i64], rows: usize) -> Vec<i64> {
    let n = x.len() / rows;
    (0..rows)
        .map(|r| {
            i64::try_from(
                x[r * n..(r + 1) * n]
                    .iter()
                    .map(|&v| v as i128)
                    .sum::<i128>(),
            )
            .unwrap()
        })
        .collect()
}

pub fn exp_lookup(table: &[i32], diff: i128) -> i32 {
    assert!(diff >= 0);
    let idx = floor_div(diff, 64);
    if idx < 16384 { table[idx as usize] } else { 0 }
}

pub fn attn_exp(scores: &[i32], max: &[i32], table: &[i32]) -> Vec<i32> {
    let n = scores.len() / max.len();
    (0..scores.len())
        .map(|i| exp_lookup(table, max[i / n] as i128 - scores[i] as i128))
        .collect()
}

pub fn attn_weighted_sums(e: &[i32], values: &[Vec<i32>], sh: Shape) -> Vec<i64> {
    let nc = sh.n_chunks();
    let mut out = Vec::new();
    for h in 0..sh.n_heads {
        for d in 0..sh.hd {
            for c in 0..nc {
                let mut s = 0i128;
                for j in 0..sh.n_pos {
                    if j / 64 == c {
                        s += e[h * sh.n_pos + j] as i128 * values[j][sh.kv(h) * sh.hd + d] as i128;
                    }
                }
                out.push(i64::try_from(s).unwrap());
            }
        }
    }
    out
}

pub fn attn_out(w: &[i64], l: &[i64], sh: Shape) -> Vec<i32> {
    let nc = sh.n_chunks();
    let mut out = Vec::new();
    for h in 0..sh.n_heads {
        for d in 0..sh.hd {
            let s: i128 = (0..nc).map(|c| w[(h * sh.hd + d) * nc + c] as i128).sum();
            out.push(clamp_i32(div_trunc(s, l[h] as i128)));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Residual, FFN

pub fn quantize_vec(x: &[i32], frac: i64) -> (Vec<i32>, Vec<i16>) {
    let v: Vec<i128> = x.iter().map(|&a| a as i128).collect();
    quantize(&v, x.len(), -frac)
}

pub fn residual_add(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| clamp_i32(x as i128 + y as i128))
        .collect()
}

pub fn sigmoid_lookup(table: &[i32], g: i32) -> i128 {
    let idx = clamp(floor_div(g as i128, 64) + 16384, 0, 32767);
    table[idx as usize] as i128
}

pub fn swiglu(gate: &[i32], up: &[i32], table: &[i32]) -> (Vec<i32>, Vec<i16>) {
    let h: Vec<i128> = gate
        .iter()
        .zip(up)
        .map(|(&g, &u)| floor_div(g as i128 * sigmoid_lookup(table, g), 65536) * u as i128)
        .collect();
    quantize(&h, gate.len(), -32)
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

/// `(max, lowest index)` over `x[lo..hi]`, index global.
pub fn argmax(x: &[i32], lo: usize, hi: usize) -> (i32, usize) {
    let m = *x[lo..hi].iter().max().unwrap();
    let at = (lo..hi).find(|&i| x[i] == m).unwrap();
    (m, at)
}

pub fn logit_chunk_max(logits: &[i32], chunk: usize) -> Vec<i32> {
    let mut out = Vec::new();
    for c in 0..ceil_div(logits.len(), chunk) {
        let (m, at) = argmax(logits, c * chunk, ((c + 1) * chunk).min(logits.len()));
        out.push(m);
        out.push(at as i32);
    }
    out
}

pub fn sample_exp(
    logits: &[i32],
    max: i32,
    argmax: usize,
    t_milli: u32,
    table: &[i32],
) -> Vec<i32> {
    (0..logits.len())
        .map(|i| {
            if t_milli == 0 {
                if i == argmax { 65536 } else { 0 }
            } else {
                exp_lookup(
                    table,
                    floor_div((max as i128 - logits[i] as i128) * 1000, t_milli as i128),
                )
            }
        })
        .collect()
}

pub fn masked_chunk_sum(e: &[i32], threshold: i64, chunk: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for c in 0..ceil_div(e.len(), chunk) {
        let mut s = 0i64;
        for &v in &e[c * chunk..((c + 1) * chunk).min(e.len())] {
            if v as i64 >= threshold {
                s += v as i64;
            }
        }
        out.push(s);
    }
    out
}

/// `[L, ceil(L·p/1000)]`.
pub fn sample_sum(sums: &[i64], top_p_milli: u32) -> [i64; 2] {
    let l: i128 = sums.iter().map(|&v| v as i128).sum();
    let t = -floor_div(-(l * top_p_milli as i128), 1000);
    [l as i64, t as i64]
}

/// Brute force: the largest `τ ∈ [0, 2^17)` with `Σ_{e_i ≥ τ} e_i ≥ target` (suffix sums over every τ).
pub fn topp_brute(e: &[i32], target: i64) -> i64 {
    const N: usize = 1 << 17;
    let mut weight_at = vec![0i64; N + 1];
    for &v in e {
        assert!((0..N as i32).contains(&v));
        weight_at[v as usize] += v as i64;
    }
    // mass[τ] = Σ_{v ≥ τ} weight_at[v]
    let mut mass = 0i64;
    let mut best = None;
    for tau in (0..N).rev() {
        mass += weight_at[tau];
        if mass >= target {
            best = Some(tau as i64);
            break;
        }
    }
    best.expect("target above total mass")
}

/// `(chunk, offset)` with `r = floor(u·K / 2^64)`.
pub fn pick_chunk(kept: &[i64], u: u64) -> [i64; 2] {
    let k: i128 = kept.iter().map(|&v| v as i128).sum();
    let r = (u as u128 * k as u128 / (1u128 << 64)) as i128;
    let mut cum = 0i128;
    for (c, &s) in kept.iter().enumerate() {
        if cum + s as i128 > r {
            return [c as i64, (r - cum) as i64];
        }
        cum += s as i128;
    }
    panic!("no chunk holds r={r} (K={k})")
}

pub fn pick_token(e: &[i32], tau: i64, pick: [i64; 2], chunk: usize) -> i32 {
    let c = pick[0] as usize;
    let mut acc = 0i64;
    let lo = c * chunk;
    for (i, &v) in e
        .iter()
        .enumerate()
        .take(((c + 1) * chunk).min(e.len()))
        .skip(lo)
    {
        if v as i64 >= tau {
            acc += v as i64;
            if acc > pick[1] {
                return i as i32;
            }
        }
    }
    panic!("no token in chunk {c} exceeds {}", pick[1])
}

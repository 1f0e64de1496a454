//! Chunked integer attention (`vir::ops::attn_scores` … `attn_out`) for rows of one request.
//!
//! [`CausalRows`] describes rows at positions `p_i` that attend to the request's keys `0..=p_i`. Scores and
//! weights are laid out `[rows·heads, padded]` with `padded = chunks·64`; entries past a row's position are
//! masked (`i32::MIN` scores, zero weights), so each row's values equal the reference's for `n_pos = p_i + 1`, and
//! its outputs are the first `p_i + 1` positions (or `n_chunks(p_i + 1, 64)` chunks) of each head's line.

use crate::error::EngineError;
use crate::ops::quant::QBatch;
use crate::ops::shift::{shift_clamp_rows, shr_scalar};
use crate::transfer::bool_tensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, IntDType, Tensor};
use vir::ops::{ATTN_CHUNK, n_chunks};
use vir::tables::{EXP_INDEX_FRAC, EXP_LEN, TABLE_FRAC};

/// Bound of the scaled-down dot product `a` (docs/vir.md §4.5).
const SCORE_DOT_BOUND: i64 = 1 << 46;

/// Rows of one request attending causally to its own keys.
#[derive(Debug, Clone)]
pub struct CausalRows<B: Backend> {
    pub positions: Vec<usize>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Keys read: `max(p_i) + 1`.
    pub n_keys: usize,
    /// `n_chunks(n_keys, 64)`.
    pub chunks: usize,
    /// `[rows·heads, padded]`: true past the row's position.
    masked: Tensor<B, 2, Bool>,
}

impl<B: Backend> CausalRows<B> {
    pub fn new(
        positions: &[usize],
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Result<Self, EngineError> {
        if positions.is_empty()
            || n_heads == 0
            || n_kv_heads == 0
            || !n_heads.is_multiple_of(n_kv_heads)
            || head_dim == 0
        {
            return Err(EngineError::shape(
                "attention",
                format!(
                    "{} rows, {n_heads} heads, {n_kv_heads} kv heads, head_dim {head_dim}",
                    positions.len()
                ),
            ));
        }
        let n_keys = positions.iter().max().map_or(1, |p| p + 1);
        let chunks = n_chunks(n_keys, ATTN_CHUNK);
        let padded = chunks * ATTN_CHUNK;
        let mut flags = Vec::with_capacity(positions.len() * n_heads * padded);
        for &p in positions {
            for _ in 0..n_heads {
                flags.extend((0..padded).map(|j| j > p));
            }
        }
        let masked = bool_tensor::<B, 2>(&flags, [positions.len() * n_heads, padded], device);
        Ok(Self {
            positions: positions.to_vec(),
            n_heads,
            n_kv_heads,
            head_dim,
            n_keys,
            chunks,
            masked,
        })
    }

    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Width of a score line: `chunks · 64`.
    pub fn padded(&self) -> usize {
        self.chunks * ATTN_CHUNK
    }

    /// Heads sharing one KV head.
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Chunks row `i` attends: `n_chunks(p_i + 1, 64)`.
    pub fn row_chunks(&self, i: usize) -> usize {
        n_chunks(self.positions[i] + 1, ATTN_CHUNK)
    }

    fn check_kv(&self, op: &'static str, t: &Tensor<B, 2, Int>) -> Result<(), EngineError> {
        let [n, w] = t.dims();
        if n < self.n_keys || w != self.n_kv_heads * self.head_dim {
            return Err(EngineError::shape(
                op,
                format!(
                    "cache of {n}x{w} for {} positions of {} kv values",
                    self.n_keys,
                    self.n_kv_heads * self.head_dim
                ),
            ));
        }
        Ok(())
    }
}

/// Keeps, for `lines` consecutive lines of `width` values starting at line `first`, the first `keep` values of
/// each line (how a row's outputs are cut out of the padded layouts).
pub fn line_prefixes<T: Copy>(
    data: &[T],
    first: usize,
    lines: usize,
    width: usize,
    keep: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(lines * keep);
    for line in first..first + lines {
        out.extend_from_slice(&data[line * width..line * width + keep]);
    }
    out
}

/// Q16 scores `[rows·heads, padded]` (I32): `a = clamp(floor(dot·2^e_h), ±2^46)`,
/// `s = sat32(floor(a·scale·2^-16))`, `i32::MIN` past each row's position. `q` has one group per head; `keys`
/// holds the KRope outputs of positions `0..n_keys` (I32 `[≥ n_keys, kv_dim]`).
pub fn attn_scores<B: Backend>(
    ctx: &CausalRows<B>,
    q: &QBatch<B>,
    keys: Tensor<B, 2, Int>,
    scale: i64,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let (m, h, hd, kv, g) = (
        ctx.rows(),
        ctx.n_heads,
        ctx.head_dim,
        ctx.n_kv_heads,
        ctx.group(),
    );
    if q.rows() != m || q.len() != h * hd || q.groups != h {
        return Err(EngineError::shape(
            "attn_scores",
            format!(
                "query of {}x{} in {} groups for {m} rows of {h} heads x {hd}",
                q.rows(),
                q.len(),
                q.groups
            ),
        ));
    }
    ctx.check_kv("attn_scores", &keys)?;
    let p = ctx.n_keys;
    let qv = q
        .values
        .clone()
        .cast(IntDType::I64)
        .reshape([m, kv, g, hd])
        .permute([1, 0, 2, 3])
        .reshape([kv, m * g, hd]);
    let kt = keys
        .slice([0..p, 0..kv * hd])
        .cast(IntDType::I64)
        .reshape([p, kv, hd])
        .permute([1, 2, 0]);
    // |dot| ≤ head_dim · 2^15 · 2^31 ≤ 2^54: exact in I64.
    let dot = qv
        .matmul(kt)
        .reshape([kv, m, g, p])
        .permute([1, 0, 2, 3])
        .reshape([m * h, p]);
    let a = shift_clamp_rows(dot, &q.exps, -SCORE_DOT_BOUND, SCORE_DOT_BOUND);
    let s = shr_scalar(a.mul_scalar(scale), TABLE_FRAC)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        .cast(IntDType::I32);
    let padded = ctx.padded();
    let s = if padded > p {
        let fill =
            Tensor::<B, 2, Int>::full([m * h, padded - p], i32::MIN, (&s.device(), s.dtype()));
        Tensor::cat(vec![s, fill], 1)
    } else {
        s
    };
    Ok(s.mask_fill(ctx.masked.clone(), i32::MIN))
}

/// Maximum of each chunk of `chunk` values of each line: `[lines, width]` → `[lines, width / chunk]`.
pub fn chunk_max<B: Backend>(
    x: Tensor<B, 2, Int>,
    chunk: usize,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [lines, width] = x.dims();
    if chunk == 0 || width % chunk != 0 {
        return Err(EngineError::shape(
            "chunk_max",
            format!("width {width} in chunks of {chunk}"),
        ));
    }
    Ok(x.reshape([lines * (width / chunk), chunk])
        .max_dim(1)
        .reshape([lines, width / chunk]))
}

/// Maximum of each line: `[lines, n]` → `[lines, 1]`.
pub fn row_max<B: Backend>(x: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    x.max_dim(1)
}

/// `e = EXP(max - s)` per line (`EXP[(max - s) >> 6]`, 0 past the table), 0 past each row's position.
/// `exp_table` is I32 `[2^14 + 1]`: the EXP table followed by one 0.
pub fn attn_exp<B: Backend>(
    ctx: &CausalRows<B>,
    scores: Tensor<B, 2, Int>,
    max: Tensor<B, 2, Int>,
    exp_table: &Tensor<B, 1, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [lines, width] = scores.dims();
    if lines != ctx.rows() * ctx.n_heads || width != ctx.padded() || max.dims() != [lines, 1] {
        return Err(EngineError::shape(
            "attn_exp",
            format!("scores {lines}x{width} with max {:?}", max.dims()),
        ));
    }
    let diff = max.cast(IntDType::I64).sub(scores.cast(IntDType::I64));
    let e = exp_lookup(diff, exp_table);
    Ok(e.mask_fill(ctx.masked.clone(), 0))
}

/// `EXP(x)` of non-negative Q16 differences (I64 `[lines, n]`) from the extended table: I32.
pub fn exp_lookup<B: Backend>(
    diff: Tensor<B, 2, Int>,
    exp_table: &Tensor<B, 1, Int>,
) -> Tensor<B, 2, Int> {
    let [lines, n] = diff.dims();
    let idx = shr_scalar(diff, TABLE_FRAC - EXP_INDEX_FRAC)
        .clamp(0, EXP_LEN as i64)
        .cast(IntDType::I32)
        .reshape([lines * n]);
    exp_table.clone().select(0, idx).reshape([lines, n])
}

/// Sums (I64) of each chunk of `chunk` values of each line: `[lines, width]` → `[lines, width / chunk]`.
pub fn chunk_sum<B: Backend>(
    x: Tensor<B, 2, Int>,
    chunk: usize,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [lines, width] = x.dims();
    if chunk == 0 || width % chunk != 0 {
        return Err(EngineError::shape(
            "chunk_sum",
            format!("width {width} in chunks of {chunk}"),
        ));
    }
    Ok(x.cast(IntDType::I64)
        .reshape([lines * (width / chunk), chunk])
        .sum_dim(1)
        .reshape([lines, width / chunk]))
}

/// Sum of each line (I64): `[lines, n]` → `[lines, 1]`.
pub fn row_sum<B: Backend>(x: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    x.cast(IntDType::I64).sum_dim(1)
}

/// Partial weighted sums `w[h][d][c] = Σ_{j ∈ chunk c} e[h][j] · v_j[kv(h)][d]` (I64), per row laid out
/// `[heads][head_dim][chunks]`: `[rows, heads·head_dim·chunks]`. `values` holds the VProj outputs of positions
/// `0..n_keys` (I32 `[≥ n_keys, kv_dim]`).
pub fn attn_weighted_sums<B: Backend>(
    ctx: &CausalRows<B>,
    e: Tensor<B, 2, Int>,
    values: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let (m, h, hd, kv, g, nc) = (
        ctx.rows(),
        ctx.n_heads,
        ctx.head_dim,
        ctx.n_kv_heads,
        ctx.group(),
        ctx.chunks,
    );
    let padded = ctx.padded();
    if e.dims() != [m * h, padded] {
        return Err(EngineError::shape(
            "attn_weighted_sums",
            format!(
                "weights {:?} for {m} rows of {h} heads x {padded}",
                e.dims()
            ),
        ));
    }
    ctx.check_kv("attn_weighted_sums", &values)?;
    let p = ctx.n_keys;
    let v = values.slice([0..p, 0..kv * hd]).cast(IntDType::I64);
    let v = if padded > p {
        let zeros = Tensor::<B, 2, Int>::zeros([padded - p, kv * hd], (&v.device(), v.dtype()));
        Tensor::cat(vec![v, zeros], 0)
    } else {
        v
    };
    let v = v
        .reshape([nc, ATTN_CHUNK, kv, hd])
        .permute([2, 0, 1, 3])
        .reshape([kv * nc, ATTN_CHUNK, hd]);
    let e = e
        .cast(IntDType::I64)
        .reshape([m, kv, g, nc, ATTN_CHUNK])
        .permute([1, 3, 0, 2, 4])
        .reshape([kv * nc, m * g, ATTN_CHUNK]);
    // |e·v| ≤ 2^16·2^31 per term, ≤ 2^53 per chunk: exact in I64.
    Ok(e.matmul(v)
        .reshape([kv, nc, m, g, hd])
        .permute([2, 0, 3, 4, 1])
        .reshape([m, h * hd * nc]))
}

/// Attention output Q16 (I32 `[rows, heads·head_dim]`): `o[h][d] = sat32(trunc(Σ_c w[h][d][c] / L[h]))`, with
/// the truncating quotient computed as `sign(W)·floor(|W| / L)` (non-negative division only). `sums` is
/// AttnSum (I64 `[rows·heads, 1]`, every `L ≥ 2^16`).
pub fn attn_out<B: Backend>(
    ctx: &CausalRows<B>,
    wsums: Tensor<B, 2, Int>,
    sums: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let (m, h, hd, nc) = (ctx.rows(), ctx.n_heads, ctx.head_dim, ctx.chunks);
    if wsums.dims() != [m, h * hd * nc] || sums.dims() != [m * h, 1] {
        return Err(EngineError::shape(
            "attn_out",
            format!("sums {:?} and {:?}", wsums.dims(), sums.dims()),
        ));
    }
    // |W| ≤ L·2^31 ≤ 2^60, so |W| needs no i64::MIN care.
    let w = wsums.reshape([m * h * hd, nc]).sum_dim(1);
    // Every valid L is ≥ 2^16; the floor of 1 only keeps a malformed input from dividing by zero.
    let l = sums.clamp_min(1).repeat_dim(1, hd).reshape([m * h * hd, 1]);
    let q = w.clone().abs().div(l).mul(w.sign());
    Ok(q.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        .cast(IntDType::I32)
        .reshape([m, h * hd]))
}

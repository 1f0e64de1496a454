//! The sampling head (`vir::ops::logit_chunk_max` … `pick_token`) for rows that each carry their own
//! temperature, top-p, threshold and draw.
//!
//! Ties are resolved by explicit index arithmetic (the lowest index among equal maxima), never by a backend's
//! argmax. `pick_chunk` runs on the host: it needs the 128-bit product `u·K`.

use crate::error::EngineError;
use crate::ops::attention::exp_lookup;
use crate::transfer::{bool_tensor, i32_tensor, i64_tensor};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, IntDType, Tensor};
use vir::ops::{PROB_ONE, n_chunks, topp_candidate};

/// `(max, lowest index attaining it)` of each line of an I32 `[lines, n]` tensor, both I32 `[lines, 1]`.
fn lowest_argmax<B: Backend>(x: Tensor<B, 2, Int>) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let [lines, n] = x.dims();
    let device = x.device();
    let max = x.clone().max_dim(1);
    let at_max = x.equal(max.clone().repeat_dim(1, n));
    let iota = Tensor::<B, 1, Int>::arange(0..n as i64, (&device, DType::I32))
        .reshape([1, n])
        .repeat_dim(0, lines);
    let none = Tensor::<B, 2, Int>::full([lines, n], n as i32, (&device, DType::I32));
    (max, none.mask_where(at_max, iota).min_dim(1))
}

/// Pads each line of an I32 `[lines, n]` tensor with `fill` to `width ≥ n`.
fn pad_lines<B: Backend>(x: Tensor<B, 2, Int>, width: usize, fill: i32) -> Tensor<B, 2, Int> {
    let [lines, n] = x.dims();
    if width == n {
        return x;
    }
    let pad = Tensor::<B, 2, Int>::full([lines, width - n], fill, (&x.device(), DType::I32));
    Tensor::cat(vec![x, pad], 1)
}

fn check_rows(op: &'static str, rows: usize, params: usize) -> Result<(), EngineError> {
    if rows == params {
        Ok(())
    } else {
        Err(EngineError::shape(
            op,
            format!("{rows} rows but {params} per-row parameters"),
        ))
    }
}

/// Per chunk of `chunk` logits: `(max, lowest global index of the max)`, I32 `[rows, 2·n_chunks]`.
pub fn logit_chunk_max<B: Backend>(
    logits: Tensor<B, 2, Int>,
    chunk: usize,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, vocab] = logits.dims();
    if vocab == 0 || chunk == 0 {
        return Err(EngineError::shape(
            "logit_chunk_max",
            "empty logits or chunk",
        ));
    }
    let nv = n_chunks(vocab, chunk);
    let device = logits.device();
    let x = pad_lines(logits, nv * chunk, i32::MIN).reshape([rows * nv, chunk]);
    let (max, local) = lowest_argmax(x);
    let offsets: Vec<i32> = (0..rows * nv).map(|i| ((i % nv) * chunk) as i32).collect();
    let global = local.add(i32_tensor::<B, 2>(offsets, [rows * nv, 1], &device));
    Ok(Tensor::cat(vec![max, global], 1).reshape([rows, 2 * nv]))
}

/// Combines chunk maxima: `(max, index)` of the earliest chunk holding the maximum, I32 `[rows, 2]`.
pub fn logit_max<B: Backend>(
    chunk_max: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, width] = chunk_max.dims();
    if width == 0 || width % 2 != 0 {
        return Err(EngineError::shape(
            "logit_max",
            format!("{width} values per row"),
        ));
    }
    let nv = width / 2;
    let pairs = chunk_max.reshape([rows, nv, 2]);
    let maxes = pairs
        .clone()
        .slice([0..rows, 0..nv, 0..1])
        .reshape([rows, nv]);
    let index = pairs.slice([0..rows, 0..nv, 1..2]).reshape([rows, nv]);
    let (max, chunk) = lowest_argmax(maxes);
    Ok(Tensor::cat(vec![max, index.gather(1, chunk)], 1))
}

/// Unnormalized sampling weights Q16 (I32 `[rows, vocab]`): for temperature 0, `2^16` at the LogitMax index
/// and 0 elsewhere; otherwise `EXP(floor((max - l)·1000 / T))`. `exp_table` is the extended I32 EXP table.
pub fn sample_exp<B: Backend>(
    logits: Tensor<B, 2, Int>,
    max: Tensor<B, 2, Int>,
    temperatures_milli: &[u32],
    exp_table: &Tensor<B, 1, Int>,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, vocab] = logits.dims();
    check_rows("sample_exp", rows, temperatures_milli.len())?;
    if max.dims() != [rows, 2] {
        return Err(EngineError::shape(
            "sample_exp",
            format!("max {:?}", max.dims()),
        ));
    }
    let device = logits.device();
    let greedy: Vec<bool> = temperatures_milli.iter().map(|&t| t == 0).collect();
    let sampled = if greedy.iter().all(|&g| g) {
        None
    } else {
        let t: Vec<i64> = temperatures_milli
            .iter()
            .map(|&t| i64::from(t.max(1)))
            .collect();
        // (max - l)·1000 ≥ 0 and < 2^42: a non-negative numerator over a positive divisor.
        let diff = max
            .clone()
            .slice([0..rows, 0..1])
            .cast(IntDType::I64)
            .sub(logits.cast(IntDType::I64))
            .mul_scalar(1000)
            .div(i64_tensor::<B, 2>(t, [rows, 1], &device));
        Some(exp_lookup(diff, exp_table))
    };
    let onehot = if greedy.iter().any(|&g| g) {
        let iota = Tensor::<B, 1, Int>::arange(0..vocab as i64, (&device, DType::I32))
            .reshape([1, vocab])
            .repeat_dim(0, rows);
        let at = iota.equal(max.slice([0..rows, 1..2]).repeat_dim(1, vocab));
        Some(
            Tensor::<B, 2, Int>::zeros([rows, vocab], (&device, DType::I32))
                .mask_fill(at, PROB_ONE as i32),
        )
    } else {
        None
    };
    match (sampled, onehot) {
        (Some(s), None) => Ok(s),
        (None, Some(o)) => Ok(o),
        (Some(s), Some(o)) => {
            let flags: Vec<bool> = greedy
                .iter()
                .flat_map(|&g| std::iter::repeat_n(g, vocab))
                .collect();
            Ok(s.mask_where(bool_tensor::<B, 2>(&flags, [rows, vocab], &device), o))
        }
        (None, None) => Err(EngineError::shape("sample_exp", "no rows")),
    }
}

/// Per chunk of `chunk` weights: the sum (I64) of the weights `≥` the row's threshold, `[rows, n_chunks]`.
pub fn masked_chunk_sum<B: Backend>(
    e: Tensor<B, 2, Int>,
    thresholds: &[i64],
    chunk: usize,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, vocab] = e.dims();
    check_rows("masked_chunk_sum", rows, thresholds.len())?;
    if vocab == 0 || chunk == 0 {
        return Err(EngineError::shape(
            "masked_chunk_sum",
            "empty weights or chunk",
        ));
    }
    let nv = n_chunks(vocab, chunk);
    let e = pad_lines(e, nv * chunk, 0).cast(IntDType::I64);
    let below = match thresholds {
        [first, rest @ ..] if rest.iter().all(|t| t == first) => e.clone().lower_elem(*first),
        _ => {
            let t = i64_tensor::<B, 2>(thresholds.to_vec(), [rows, 1], &e.device());
            e.clone().sub(t).lower_elem(0)
        }
    };
    Ok(e.mask_fill(below, 0)
        .reshape([rows * nv, chunk])
        .sum_dim(1)
        .reshape([rows, nv]))
}

/// `(L, target)` per row (I64 `[rows, 2]`): `L = Σ chunk sums`, `target = floor((L·top_p + 999) / 1000)`.
pub fn sample_sum<B: Backend>(
    chunk_sums: Tensor<B, 2, Int>,
    top_p_milli: &[u32],
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, _] = chunk_sums.dims();
    check_rows("sample_sum", rows, top_p_milli.len())?;
    let p: Vec<i64> = top_p_milli.iter().map(|&p| i64::from(p)).collect();
    let total = chunk_sums.sum_dim(1);
    let p = i64_tensor::<B, 2>(p, [rows, 1], &total.device());
    let target = total.clone().mul(p).add_scalar(999).div_scalar(1000);
    Ok(Tensor::cat(vec![total, target], 1))
}

/// One top-p round per row (I64 `[rows, 1]`): the candidate `τ_prev | 2^(16 - round)` when the mass at or above
/// it (the sum of `candidate_chunk_sums`) reaches the target, else `τ_prev`.
pub fn topp_step<B: Backend>(
    candidate_chunk_sums: Tensor<B, 2, Int>,
    tau_prev: &[i64],
    round: usize,
    target: &[i64],
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, _] = candidate_chunk_sums.dims();
    check_rows("topp_step", rows, tau_prev.len())?;
    check_rows("topp_step", rows, target.len())?;
    let device = candidate_chunk_sums.device();
    let cand: Vec<i64> = tau_prev.iter().map(|&t| topp_candidate(t, round)).collect();
    let keep = candidate_chunk_sums
        .sum_dim(1)
        .sub(i64_tensor::<B, 2>(target.to_vec(), [rows, 1], &device))
        .greater_equal_elem(0);
    Ok(i64_tensor::<B, 2>(tau_prev.to_vec(), [rows, 1], &device)
        .mask_where(keep, i64_tensor::<B, 2>(cand, [rows, 1], &device)))
}

/// PickChunk on the host: `rr = floor(u·K / 2^64)` (128-bit product) with `K = Σ kept`, then the first chunk
/// whose running mass exceeds `rr`: `(chunk, rr - mass before it)`; `(n - 1, 0)` if none (unreachable for
/// `K > 0`).
pub fn pick_chunk(kept_chunk_sums: &[i64], u: u64) -> [i64; 2] {
    let total: i64 = kept_chunk_sums.iter().sum();
    let rr = ((u128::from(u) * total as u128) >> 64) as i64;
    let mut before = 0i64;
    for (c, &mass) in kept_chunk_sums.iter().enumerate() {
        if rr < before + mass {
            return [c as i64, rr - before];
        }
        before += mass;
    }
    [kept_chunk_sums.len() as i64 - 1, 0]
}

/// PickToken per row (I32 `[rows, 1]`): in chunk `pick[0]`, the first token with weight `≥ τ` whose running
/// kept mass exceeds `pick[1]` — the number of leading positions whose running mass is still `≤ pick[1]` — or the
/// chunk's last token if none.
pub fn pick_token<B: Backend>(
    e: Tensor<B, 2, Int>,
    tau: &[i64],
    pick: &[[i64; 2]],
    chunk: usize,
) -> Result<Tensor<B, 2, Int>, EngineError> {
    let [rows, vocab] = e.dims();
    check_rows("pick_token", rows, tau.len())?;
    check_rows("pick_token", rows, pick.len())?;
    if vocab == 0 || chunk == 0 {
        return Err(EngineError::shape("pick_token", "empty weights or chunk"));
    }
    let nv = n_chunks(vocab, chunk);
    if let Some(p) = pick.iter().find(|p| p[0] < 0 || p[0] as usize >= nv) {
        return Err(EngineError::shape(
            "pick_token",
            format!("chunk {} of {nv}", p[0]),
        ));
    }
    let device = e.device();
    let lines: Vec<i32> = pick
        .iter()
        .enumerate()
        .map(|(r, p)| (r * nv) as i32 + p[0] as i32)
        .collect();
    let part = pad_lines(e, nv * chunk, 0)
        .reshape([rows * nv, chunk])
        .select(0, i32_tensor::<B, 1>(lines, [rows], &device))
        .cast(IntDType::I64);
    let t = i64_tensor::<B, 2>(tau.to_vec(), [rows, 1], &device);
    let kept = part.clone().mask_fill(part.sub(t).lower_elem(0), 0);
    let rr = i64_tensor::<B, 2>(pick.iter().map(|p| p[1]).collect(), [rows, 1], &device);
    let count = kept
        .cumsum(1)
        .sub(rr)
        .lower_equal_elem(0)
        .int()
        .cast(IntDType::I64)
        .sum_dim(1);
    let last: Vec<i64> = pick
        .iter()
        .map(|p| (vocab as i64 - p[0] * chunk as i64).min(chunk as i64) - 1)
        .collect();
    let base: Vec<i64> = pick.iter().map(|p| p[0] * chunk as i64).collect();
    Ok(count
        .min_pair(i64_tensor::<B, 2>(last, [rows, 1], &device))
        .add(i64_tensor::<B, 2>(base, [rows, 1], &device))
        .cast(IntDType::I32))
}

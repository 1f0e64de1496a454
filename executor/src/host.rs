//! The CPU backend's step on the host: every op of a [`crate::BurnEngine::forward_batch`] step computed over host
//! slices by the scalar reference functions of `vir::ops` (so each op output is the reference's by
//! construction), the projections by [`HostMatrix`] (each weight row read once for all rows of the step), and
//! the rows of a step in parallel with rayon. It replaces burn-flex's per-op dispatch and read-backs, which cost
//! the same per row whatever the batch size; other backends keep the burn ops.

use crate::error::EngineError;
use crate::kv_cache::HostKv;
use crate::model::DeviceModel;
use crate::ops::DeviceMatrix;
use crate::ops::host_matmul::HostMatrix;
use crate::trace::{OpOutput, RowTrace};
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use vir::IntModel;
use vir::config::LlamaConfig;
use vir::fixed::{QVec, clamp_i32, shift};
use vir::model::ProgramParams;
use vir::ops::{
    self, ACT_FRAC, ATTN_CHUNK, AttnShape, RESIDUAL_FRAC, TOPP_ROUNDS, VOCAB_CHUNK, WEIGHT_FRAC,
};
use vir::program::{HeadOp, LayerOp, OpKind};
use vir::weights::QuantMatrix;

/// What the host step reads besides the projection matrices (those are the [`DeviceMatrix`] host copies).
#[derive(Debug, Clone)]
pub struct HostModel {
    config: LlamaConfig,
    params: ProgramParams,
    /// The embedding matrix for `vir::ops::embed` (quants, scales and mins; no raw bytes).
    token_embd: QuantMatrix,
    attn_norm: Vec<Vec<i64>>,
    ffn_norm: Vec<Vec<i64>>,
    output_norm: Vec<i64>,
    exp: Vec<i32>,
    sigmoid: Vec<i32>,
    rope: Vec<i32>,
}

impl HostModel {
    pub fn new(model: &IntModel) -> Self {
        let embd = &model.token_embd;
        Self {
            config: model.config.clone(),
            params: model.params.clone(),
            token_embd: QuantMatrix {
                name: embd.name.clone(),
                rows: embd.rows,
                cols: embd.cols,
                kind: embd.kind,
                scales: embd.scales.clone(),
                mins: embd.mins.clone(),
                quants: embd.quants.clone(),
                raw: Vec::new(),
            },
            attn_norm: model.layers.iter().map(|w| w.attn_norm.clone()).collect(),
            ffn_norm: model.layers.iter().map(|w| w.ffn_norm.clone()).collect(),
            output_norm: model.output_norm.clone(),
            exp: model.tables.exp.clone(),
            sigmoid: model.tables.sigmoid.clone(),
            rope: model.tables.rope.clone(),
        }
    }

    fn rope_row(&self, pos: usize) -> Result<&[i32], EngineError> {
        let hd = self.config.head_dim;
        self.rope
            .get(pos * hd..(pos + 1) * hd)
            .ok_or_else(|| EngineError::shape("rope", format!("position {pos} past the table")))
    }
}

/// One request's rows in a host step.
pub struct HostSpan<'a> {
    pub first_row: usize,
    pub first_pos: usize,
    pub rows: usize,
    pub kv: &'a mut HostKv,
}

/// Per-row sampling parameters of the rows that run the head.
pub struct HeadParams<'a> {
    /// Step rows that run the head.
    pub rows: &'a [usize],
    pub temperature_milli: &'a [u32],
    pub top_p_milli: &'a [u32],
    pub draws: &'a [u64],
}

type Ops = Vec<(OpKind, OpOutput)>;

fn host_matrix<B: Backend>(m: &DeviceMatrix<B>) -> Result<&HostMatrix, EngineError> {
    m.host()
        .ok_or_else(|| EngineError::invariant("host step", "a matrix has no host copy"))
}

/// `vir::ops::matmul` of every row of `xs` (one group each) with the weights `w`: one pass over the weights.
fn project(w: &HostMatrix, xs: &[QVec], out_frac: u32) -> Result<Vec<Vec<i32>>, EngineError> {
    if let Some(x) = xs
        .iter()
        .find(|x| x.values.len() != w.cols || x.exps.len() != 1)
    {
        return Err(EngineError::shape(
            "matmul",
            format!(
                "input of {} values in {} groups for a {}x{} matrix",
                x.values.len(),
                x.exps.len(),
                w.rows,
                w.cols
            ),
        ));
    }
    let flat: Vec<i16> = xs.iter().flat_map(|x| x.values.iter().copied()).collect();
    let y = w.matmul_exact(&flat, xs.len());
    Ok(y.par_chunks_exact(w.rows.max(1))
        .zip(xs)
        .map(|(yr, x)| {
            let k = x.exps[0] - WEIGHT_FRAC + out_frac as i32;
            yr.iter().map(|&v| clamp_i32(shift(v, k))).collect()
        })
        .collect())
}

fn record_i32(rows: &mut [RowTrace], kind: OpKind, values: &[Vec<i32>]) {
    for (row, v) in rows.iter_mut().zip(values) {
        row.ops.push((kind, OpOutput::I32(v.clone())));
        row.hash_recorded();
    }
}

fn record_q(rows: &mut [RowTrace], kind: OpKind, values: &[QVec]) {
    for (row, q) in rows.iter_mut().zip(values) {
        row.ops.push((kind, OpOutput::Q(q.clone())));
        row.hash_recorded();
    }
}

/// The body (embedding and every layer) of all rows of a step: `rows[i]` is row `i`'s trace buffer (its
/// position), `tokens[i]` its input token; each span's rows attend to that request's host cache, into which
/// this step's keys and values are written. Returns each row's final residual.
pub fn body<B: Backend>(
    hm: &HostModel,
    dm: &DeviceModel<B>,
    rows: &mut [RowTrace],
    tokens: &[u32],
    spans: &mut [HostSpan<'_>],
) -> Result<Vec<Vec<i32>>, EngineError> {
    let c = &hm.config;
    let n = rows.len();
    if tokens.len() != n || spans.iter().map(|s| s.rows).sum::<usize>() != n {
        return Err(EngineError::invariant(
            "host step",
            format!("{n} rows for {} tokens", tokens.len()),
        ));
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hm.token_embd.rows) {
        return Err(EngineError::shape(
            "embed",
            format!(
                "token {t} is outside the {} rows of the matrix",
                hm.token_embd.rows
            ),
        ));
    }
    // Request of each row.
    let owner: Vec<usize> = spans
        .iter()
        .enumerate()
        .flat_map(|(s, span)| std::iter::repeat_n(s, span.rows))
        .collect();
    let positions: Vec<usize> = rows.iter().map(|r| r.pos).collect();
    let eps = hm.params.eps_fx;

    let mut h: Vec<Vec<i32>> = tokens
        .par_iter()
        .map(|&t| ops::embed(&hm.token_embd, t, RESIDUAL_FRAC))
        .collect();
    record_i32(rows, OpKind::Embed, &h);
    for (l, w) in dm.layers.iter().enumerate() {
        let k = |op| OpKind::Layer(l as u16, op);
        let gamma = hm.attn_norm.get(l).zip(hm.ffn_norm.get(l)).ok_or_else(|| {
            EngineError::invariant("host step", format!("no norms for layer {l}"))
        })?;
        let x: Vec<QVec> = h
            .par_iter()
            .map(|hr| ops::rms_norm(hr, gamma.0, eps))
            .collect();
        record_q(rows, k(LayerOp::AttnNorm), &x);
        let q = project(host_matrix(&w.wq)?, &x, ACT_FRAC)?;
        record_i32(rows, k(LayerOp::QProj), &q);
        let kp = project(host_matrix(&w.wk)?, &x, ACT_FRAC)?;
        record_i32(rows, k(LayerOp::KProj), &kp);
        let v = project(host_matrix(&w.wv)?, &x, ACT_FRAC)?;
        record_i32(rows, k(LayerOp::VProj), &v);
        let roped = (0..n)
            .into_par_iter()
            .map(|i| {
                let rope_row = hm.rope_row(positions[i])?;
                Ok((
                    ops::rope_quant(&q[i], rope_row, c.head_dim),
                    ops::rope(&kp[i], rope_row, c.head_dim),
                ))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let (qr, kr): (Vec<QVec>, Vec<Vec<i32>>) = roped.into_iter().unzip();
        record_q(rows, k(LayerOp::QRope), &qr);
        record_i32(rows, k(LayerOp::KRope), &kr);
        for span in spans.iter_mut() {
            for i in 0..span.rows {
                let r = span.first_row + i;
                span.kv.write(l, span.first_pos + i, &kr[r], &v[r])?;
            }
        }

        let caches: Vec<&HostKv> = spans.iter().map(|s| &*s.kv).collect();
        let attended = (0..n)
            .into_par_iter()
            .map(|i| attention(hm, l, positions[i], &qr[i], caches[owner[i]]))
            .collect::<Result<Vec<_>, EngineError>>()?;
        let mut oq = Vec::with_capacity(n);
        for (row, (ops, o)) in rows.iter_mut().zip(attended) {
            row.ops.extend(ops);
            row.hash_recorded();
            oq.push(o);
        }
        let op = project(host_matrix(&w.wo)?, &oq, RESIDUAL_FRAC)?;
        record_i32(rows, k(LayerOp::OProj), &op);
        h = h
            .par_iter()
            .zip(&op)
            .map(|(a, b)| ops::residual_add(a, b))
            .collect();
        record_i32(rows, k(LayerOp::AttnResidual), &h);

        let x: Vec<QVec> = h
            .par_iter()
            .map(|hr| ops::rms_norm(hr, gamma.1, eps))
            .collect();
        record_q(rows, k(LayerOp::FfnNorm), &x);
        let g = project(host_matrix(&w.w_gate)?, &x, ACT_FRAC)?;
        record_i32(rows, k(LayerOp::GateProj), &g);
        let u = project(host_matrix(&w.w_up)?, &x, ACT_FRAC)?;
        record_i32(rows, k(LayerOp::UpProj), &u);
        let s: Vec<QVec> = g
            .par_iter()
            .zip(&u)
            .map(|(g, u)| ops::swiglu(g, u, &hm.sigmoid))
            .collect();
        record_q(rows, k(LayerOp::SwiGlu), &s);
        let dn = project(host_matrix(&w.w_down)?, &s, RESIDUAL_FRAC)?;
        record_i32(rows, k(LayerOp::DownProj), &dn);
        h = h
            .par_iter()
            .zip(&dn)
            .map(|(a, b)| ops::residual_add(a, b))
            .collect();
        record_i32(rows, k(LayerOp::FfnResidual), &h);
    }
    Ok(h)
}

/// The attention ops of the row at `pos` in layer `l`, exactly as `vir::interp`: AttnScores … AttnOutQuant, and
/// the quantized output that feeds OProj.
fn attention(
    hm: &HostModel,
    l: usize,
    pos: usize,
    q: &QVec,
    kv: &HostKv,
) -> Result<(Ops, QVec), EngineError> {
    let c = &hm.config;
    let kvd = c.kv_dim();
    let n_pos = pos + 1;
    let missing = || EngineError::invariant("attention", format!("no cache for layer {l}"));
    let (keys, values) = (
        kv.keys(l).ok_or_else(missing)?,
        kv.values(l).ok_or_else(missing)?,
    );
    if keys.len() < n_pos * kvd || values.len() < n_pos * kvd {
        return Err(EngineError::shape(
            "attention",
            format!("cache of {} values for {n_pos} positions", keys.len()),
        ));
    }
    let keys: Vec<&[i32]> = keys.chunks_exact(kvd).take(n_pos).collect();
    let values: Vec<&[i32]> = values.chunks_exact(kvd).take(n_pos).collect();
    let shape = AttnShape {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        n_pos,
    };
    let scores = ops::attn_scores(q, &keys, shape, hm.params.score_scale);
    let cmax = ops::chunk_max(&scores, c.n_heads, ATTN_CHUNK);
    let rmax = ops::row_max(&cmax, c.n_heads);
    let e = ops::attn_exp(&scores, &rmax, &hm.exp);
    let csum = ops::chunk_sum(&e, c.n_heads, ATTN_CHUNK);
    let rsum = ops::row_sum(&csum, c.n_heads);
    let wsum = ops::attn_weighted_sums(&e, &values, shape);
    let o = ops::attn_out(&wsum, &rsum, shape);
    let oq = ops::quantize_vec(&o, ACT_FRAC);
    let k = |op| OpKind::Layer(l as u16, op);
    let out = vec![
        (k(LayerOp::AttnScores), OpOutput::I32(scores)),
        (k(LayerOp::AttnChunkMax), OpOutput::I32(cmax)),
        (k(LayerOp::AttnMax), OpOutput::I32(rmax)),
        (k(LayerOp::AttnExp), OpOutput::I32(e)),
        (k(LayerOp::AttnChunkSum), OpOutput::I64(csum)),
        (k(LayerOp::AttnSum), OpOutput::I64(rsum)),
        (k(LayerOp::AttnWeightedSum), OpOutput::I64(wsum)),
        (k(LayerOp::AttnOut), OpOutput::I32(o)),
        (k(LayerOp::AttnOutQuant), OpOutput::Q(oq.clone())),
    ];
    Ok((out, oq))
}

/// The sampling head of the rows `head.rows` of a step, from their final residuals `h`: records OutNorm …
/// PickToken into each row's trace buffer and returns each row's token.
pub fn head<B: Backend>(
    hm: &HostModel,
    dm: &DeviceModel<B>,
    rows: &mut [RowTrace],
    head: &HeadParams<'_>,
    h: &[Vec<i32>],
) -> Result<Vec<u32>, EngineError> {
    let n = head.rows.len();
    if [
        head.temperature_milli.len(),
        head.top_p_milli.len(),
        head.draws.len(),
    ]
    .iter()
    .any(|&len| len != n)
        || head.rows.iter().any(|&r| r >= h.len() || r >= rows.len())
    {
        return Err(EngineError::invariant(
            "host head",
            format!("{n} head rows with inconsistent parameters"),
        ));
    }
    let x: Vec<QVec> = head
        .rows
        .par_iter()
        .map(|&r| ops::rms_norm(&h[r], &hm.output_norm, hm.params.eps_fx))
        .collect();
    let logits = project(host_matrix(dm.output_matrix())?, &x, ACT_FRAC)?;
    let sampled = (0..n)
        .into_par_iter()
        .map(|i| {
            sample(
                hm,
                &logits[i],
                head.temperature_milli[i],
                head.top_p_milli[i],
                head.draws[i],
            )
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    let hk = OpKind::Head;
    let mut tokens = Vec::with_capacity(n);
    for (((&r, x), logits), (ops, token)) in head.rows.iter().zip(x).zip(logits).zip(sampled) {
        let row = &mut rows[r];
        row.ops.push((hk(HeadOp::OutNorm), OpOutput::Q(x)));
        row.ops.push((hk(HeadOp::Logits), OpOutput::I32(logits)));
        row.ops.extend(ops);
        row.hash_recorded();
        tokens.push(token);
    }
    Ok(tokens)
}

/// LogitChunkMax … PickToken of one row, exactly as `vir::interp::Session::head`.
fn sample(
    hm: &HostModel,
    logits: &[i32],
    temperature_milli: u32,
    top_p_milli: u32,
    draw: u64,
) -> Result<(Ops, u32), EngineError> {
    if logits.is_empty() {
        return Err(EngineError::shape("sampling", "empty logits"));
    }
    let hk = OpKind::Head;
    let mut out: Ops = Vec::with_capacity(6 + 2 * TOPP_ROUNDS);
    let cmax = ops::logit_chunk_max(logits, VOCAB_CHUNK);
    let max = ops::logit_max(&cmax);
    out.push((hk(HeadOp::LogitChunkMax), OpOutput::I32(cmax)));
    out.push((hk(HeadOp::LogitMax), OpOutput::I32(max.to_vec())));
    let e = ops::sample_exp(logits, max, temperature_milli, &hm.exp);
    let all = ops::masked_chunk_sum(&e, 0, VOCAB_CHUNK);
    let sum = ops::sample_sum(&all, top_p_milli);
    out.push((hk(HeadOp::SampleChunkSum), OpOutput::I64(all)));
    out.push((hk(HeadOp::SampleSum), OpOutput::I64(sum.to_vec())));
    let mut tau = 0i64;
    for round in 0..TOPP_ROUNDS {
        let sums = ops::masked_chunk_sum(&e, ops::topp_candidate(tau, round), VOCAB_CHUNK);
        tau = ops::topp_step(&sums, tau, round, sum[1]);
        out.push((hk(HeadOp::TopPChunkSum(round as u8)), OpOutput::I64(sums)));
        out.push((hk(HeadOp::TopPStep(round as u8)), OpOutput::I64(vec![tau])));
    }
    let kept = ops::masked_chunk_sum(&e, tau, VOCAB_CHUNK);
    let pick = ops::pick_chunk(&kept, draw);
    let token = ops::pick_token(&e, tau, pick, VOCAB_CHUNK);
    // SampleExp goes after LogitMax; it is moved in last because the rounds and the pick read it.
    out.insert(2, (hk(HeadOp::SampleExp), OpOutput::I32(e)));
    out.push((hk(HeadOp::KeptChunkSum), OpOutput::I64(kept)));
    out.push((hk(HeadOp::PickChunk), OpOutput::I64(pick.to_vec())));
    out.push((hk(HeadOp::PickToken), OpOutput::I32(vec![token])));
    let token = u32::try_from(token)
        .map_err(|_| EngineError::invariant("pick_token", format!("token {token}")))?;
    Ok((out, token))
}

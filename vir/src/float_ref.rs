//! f32 llama forward (RMSNorm, adjacent-pair RoPE, GQA, SwiGLU, tied output) on dequantized weights.
//!
//! This is *not* the specified model: it exists only to measure how close the integer program stays to the float
//! model it was converted from (docs/vir.md, `verinfer model quality`).

use crate::config::LlamaConfig;
use crate::gguf::GgufFile;
use crate::weights::{QuantMatrix, WeightError, vector_f32};
use rayon::prelude::*;

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
}

/// The float model: all weights dequantized to f32.
pub struct FloatModel {
    pub config: LlamaConfig,
    embd: Vec<f32>,
    output: Option<Vec<f32>>,
    out_norm: Vec<f32>,
    layers: Vec<Layer>,
}

/// Largest magnitudes seen in a run, used to choose and check the integer model's fixed-point formats.
#[derive(Debug, Default, Clone, Copy)]
pub struct ActivationStats {
    pub residual: f32,
    pub qkv: f32,
    pub ffn_hidden: f32,
    pub logits: f32,
}

/// Per-request KV cache of the float model.
pub struct FloatSession {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pub pos: usize,
    pub stats: ActivationStats,
}

fn matvec(w: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let cols = x.len();
    (0..rows)
        .into_par_iter()
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

fn rms_norm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, g)| v * inv * g).collect()
}

fn rope(x: &mut [f32], head_dim: usize, pos: usize, base: f64) {
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
            let (s, c) = (theta.sin() as f32, theta.cos() as f32);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

impl FloatModel {
    pub fn load(file: &GgufFile) -> Result<Self, crate::ModelError> {
        let config = LlamaConfig::from_gguf(file)?;
        let mat = |name: &str| -> Result<Vec<f32>, WeightError> {
            Ok(QuantMatrix::from_gguf(file, name)?.dequantize_f32())
        };
        let layers = (0..config.n_layers)
            .map(|l| -> Result<Layer, WeightError> {
                let p = format!("blk.{l}");
                Ok(Layer {
                    attn_norm: vector_f32(file, &format!("{p}.attn_norm.weight"), config.d_model)?,
                    wq: mat(&format!("{p}.attn_q.weight"))?,
                    wk: mat(&format!("{p}.attn_k.weight"))?,
                    wv: mat(&format!("{p}.attn_v.weight"))?,
                    wo: mat(&format!("{p}.attn_output.weight"))?,
                    ffn_norm: vector_f32(file, &format!("{p}.ffn_norm.weight"), config.d_model)?,
                    w_gate: mat(&format!("{p}.ffn_gate.weight"))?,
                    w_up: mat(&format!("{p}.ffn_up.weight"))?,
                    w_down: mat(&format!("{p}.ffn_down.weight"))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            embd: mat("token_embd.weight")?,
            output: if config.tied_output {
                None
            } else {
                Some(mat("output.weight")?)
            },
            out_norm: vector_f32(file, "output_norm.weight", config.d_model)?,
            layers,
            config,
        })
    }

    pub fn session(&self) -> FloatSession {
        let n = self.config.n_layers;
        FloatSession {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            pos: 0,
            stats: ActivationStats::default(),
        }
    }

    /// Runs one token at the session's next position and returns the logits.
    pub fn forward(&self, s: &mut FloatSession, token: u32) -> Vec<f32> {
        let c = &self.config;
        let (d, hd, kvd) = (c.d_model, c.head_dim, c.kv_dim());
        let eps = c.rms_eps as f32;
        let t = token as usize;
        let mut h = self.embd[t * d..(t + 1) * d].to_vec();
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        for (l, layer) in self.layers.iter().enumerate() {
            let x = rms_norm(&h, &layer.attn_norm, eps);
            let mut q = matvec(&layer.wq, &x, d);
            let mut k = matvec(&layer.wk, &x, kvd);
            let v = matvec(&layer.wv, &x, kvd);
            s.stats.qkv = s
                .stats
                .qkv
                .max(max_abs(&q))
                .max(max_abs(&k))
                .max(max_abs(&v));
            rope(&mut q, hd, s.pos, c.rope_base);
            rope(&mut k, hd, s.pos, c.rope_base);
            s.k[l].extend_from_slice(&k);
            s.v[l].extend_from_slice(&v);
            let n_pos = s.pos + 1;
            let mut attn = vec![0f32; d];
            for head in 0..c.n_heads {
                let kvh = head / group;
                let qh = &q[head * hd..(head + 1) * hd];
                let scores: Vec<f32> = (0..n_pos)
                    .map(|j| {
                        let kj = &s.k[l][j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                        qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let m = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f32> = scores.iter().map(|x| (x - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                let out = &mut attn[head * hd..(head + 1) * hd];
                for (j, ej) in e.iter().enumerate() {
                    let vj = &s.v[l][j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                    for (o, vv) in out.iter_mut().zip(vj) {
                        *o += ej / sum * vv;
                    }
                }
            }
            let o = matvec(&layer.wo, &attn, d);
            h.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            s.stats.residual = s.stats.residual.max(max_abs(&h));
            let x = rms_norm(&h, &layer.ffn_norm, eps);
            let gate = matvec(&layer.w_gate, &x, c.d_ff);
            let up = matvec(&layer.w_up, &x, c.d_ff);
            let hidden: Vec<f32> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            s.stats.ffn_hidden = s.stats.ffn_hidden.max(max_abs(&gate)).max(max_abs(&up));
            let down = matvec(&layer.w_down, &hidden, d);
            h.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
            s.stats.residual = s.stats.residual.max(max_abs(&h));
        }
        s.pos += 1;
        let x = rms_norm(&h, &self.out_norm, eps);
        let logits = matvec(self.output.as_ref().unwrap_or(&self.embd), &x, c.vocab_size);
        s.stats.logits = s.stats.logits.max(max_abs(&logits));
        logits
    }

    /// Greedy decoding (lowest index wins ties) until a stop id or `max_tokens`.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        stop_ids: &[u32],
    ) -> (Vec<u32>, FloatSession) {
        let mut s = self.session();
        let mut logits = Vec::new();
        for &t in prompt {
            logits = self.forward(&mut s, t);
        }
        let mut out = Vec::new();
        while out.len() < max_tokens {
            let next = argmax(&logits);
            out.push(next);
            if stop_ids.contains(&next) {
                break;
            }
            logits = self.forward(&mut s, next);
        }
        (out, s)
    }
}

/// Index of the largest value, lowest index on ties.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

//! Token log-probabilities (OpenAI `logprobs`): the math from one position's committed Q16 logits, and a
//! [`TraceSink`] wrapper that computes them for every generated token of a run, on any engine.
//!
//! Definition (OpenAI's and vLLM's default "raw" logprobs): the distribution of the model itself, before temperature
//! and top-p. With `x_i = logits_i / 65536` (the `HeadOp::Logits` op output, `i32` with [`ACT_FRAC`] fractional
//! bits), `logprob_i = x_i − logsumexp(x)`, computed in `f64` outside the traced program. The top-k list is the `k`
//! largest logits, ties broken by the lower token id. Logprobs never change a result: they are not part of the leaf
//! or the sampling parameters, and since they derive from a committed op output, anyone can recompute them by
//! replaying the run (the Logits op of each head position is in the trace).

use crate::interp::{TensorView, TraceSink};
use crate::ops::ACT_FRAC;
use crate::program::{HeadOp, OpDescriptor, OpKind};
use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use std::sync::mpsc;

/// Most top alternatives per token (OpenAI's `top_logprobs` maximum).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One alternative: a token id and its logprob.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: u32,
    pub logprob: f64,
}

/// The logprob of a generated token and the most likely alternatives at its position (most likely first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// The generated token.
    pub token: u32,
    /// Its logprob.
    pub logprob: f64,
    /// The `k` most likely tokens (`k` as asked, at most the vocabulary), by decreasing logprob, ties by id.
    #[serde(default)]
    pub top: Vec<TopLogprob>,
}

// Equality by bit pattern: logprobs are deterministic functions of integer logits, so equal runs give equal bits.
impl PartialEq for TopLogprob {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.logprob.to_bits() == other.logprob.to_bits()
    }
}

impl Eq for TopLogprob {}

impl PartialEq for TokenLogprobs {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
            && self.logprob.to_bits() == other.logprob.to_bits()
            && self.top == other.top
    }
}

impl Eq for TokenLogprobs {}

/// A logit as a real number.
fn real(logit: i32) -> f64 {
    f64::from(logit) / f64::from(1u32 << ACT_FRAC)
}

/// `logsumexp(logits / 65536)`, stable (shifted by the maximum). `None` for an empty vector.
pub fn logsumexp(logits: &[i32]) -> Option<f64> {
    let max = real(*logits.iter().max()?);
    let sum: f64 = logits.iter().map(|&l| (real(l) - max).exp()).sum();
    Some(max + sum.ln())
}

/// The logprob of `token` and the `top_k` (capped at [`MAX_TOP_LOGPROBS`] and the vocabulary) most likely tokens
/// of one position's Q16 logits. `None` when `token` is outside the logits.
pub fn token_logprobs(logits: &[i32], token: u32, top_k: usize) -> Option<TokenLogprobs> {
    let chosen = *logits.get(token as usize)?;
    let lse = logsumexp(logits)?;
    let k = top_k.min(MAX_TOP_LOGPROBS).min(logits.len());
    // The k best (logit desc, id asc), kept sorted; k ≤ 20, so insertion is cheap and one pass over the vocabulary.
    let mut best: Vec<(i32, u32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (id, &l) in logits.iter().enumerate() {
            let better = |&(bl, bid): &(i32, u32)| bl > l || (bl == l && bid < id as u32);
            if best.len() == k && best.last().is_some_and(&better) {
                continue;
            }
            let at = best.partition_point(better);
            best.insert(at, (l, id as u32));
            best.truncate(k);
        }
    }
    Some(TokenLogprobs {
        token,
        logprob: real(chosen) - lse,
        top: best
            .into_iter()
            .map(|(l, id)| TopLogprob {
                token: id,
                logprob: real(l) - lse,
            })
            .collect(),
    })
}

/// Wraps a run's trace sink: forwards every op unchanged and, at each head position, computes the logprobs of the
/// picked token (from the `Logits` op output and the `PickToken` output) and sends them to the paired
/// [`LogprobReceiver`]. Engines emit a head's ops before they report its token, so the receiver has the token's
/// logprobs when the token arrives.
pub struct LogprobSink<S> {
    inner: S,
    top_k: usize,
    logits: Vec<i32>,
    tx: mpsc::Sender<TokenLogprobs>,
}

/// The receiving end of a [`LogprobSink`].
pub struct LogprobReceiver(mpsc::Receiver<TokenLogprobs>);

impl LogprobReceiver {
    /// The logprobs of the next generated token, if its head has been emitted.
    pub fn next(&self) -> Option<TokenLogprobs> {
        self.0.try_recv().ok()
    }
}

impl<S: TraceSink> LogprobSink<S> {
    /// Wraps `inner`, computing `top_k` alternatives per token.
    pub fn new(inner: S, top_k: usize) -> (Self, LogprobReceiver) {
        let (tx, rx) = mpsc::channel();
        (
            Self {
                inner,
                top_k: top_k.min(MAX_TOP_LOGPROBS),
                logits: Vec::new(),
                tx,
            },
            LogprobReceiver(rx),
        )
    }

    /// The wrapped sink.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: TraceSink> TraceSink for LogprobSink<S> {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        self.inner.record(desc, out);
        self.observe(desc, out);
    }

    fn record_hashed(&mut self, desc: &OpDescriptor, out: TensorView<'_>, root: B256) {
        self.inner.record_hashed(desc, out, root);
        self.observe(desc, out);
    }

    fn commits_roots(&self) -> bool {
        self.inner.commits_roots()
    }
}

impl<S> LogprobSink<S> {
    /// Keeps the latest logits and sends the logprobs of each picked token.
    fn observe(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        match (desc.kind, out) {
            (OpKind::Head(HeadOp::Logits), TensorView::I32(logits)) => {
                self.logits.clear();
                self.logits.extend_from_slice(logits);
            }
            (OpKind::Head(HeadOp::PickToken), TensorView::I32(&[token])) => {
                if let Ok(token) = u32::try_from(token)
                    && let Some(lp) = token_logprobs(&self.logits, token, self.top_k)
                {
                    // The receiver may be gone (nobody asked for the rest): nothing to do then.
                    let _ = self.tx.send(lp);
                }
            }
            _ => {}
        }
    }
}

/// Logprobs computed the slow, obvious way, to check [`token_logprobs`] and the engines' sinks against: an f64
/// softmax over every logit and a full sort of the vocabulary (ties to the lower id).
#[derive(Debug, Clone, PartialEq)]
pub struct NaiveLogprobs {
    /// The chosen token's logprob.
    pub logprob: f64,
    /// The `k` most likely `(id, logprob)`, best first.
    pub top: Vec<(u32, f64)>,
    /// The sum of every probability (1 up to rounding).
    pub total: f64,
}

/// [`NaiveLogprobs`] of `token` under `logits` (Q16), keeping the `k` best.
pub fn naive_logprobs(logits: &[i32], token: u32, k: usize) -> NaiveLogprobs {
    let xs: Vec<f64> = logits.iter().map(|&l| f64::from(l) / 65536.0).collect();
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z = max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].cmp(&logits[a as usize]).then(a.cmp(&b)));
    NaiveLogprobs {
        logprob: xs.get(token as usize).map_or(f64::NAN, |x| x - z),
        top: ids
            .into_iter()
            .take(k)
            .map(|id| (id, xs[id as usize] - z))
            .collect(),
        total: xs.iter().map(|x| (x - z).exp()).sum(),
    }
}

/// [`naive_logprobs`] of each token of a generation, from the reference interpreter's logits computed outside the
/// trace (`Session::logits_untraced`): an independent account of what an engine's [`LogprobSink`] should send.
/// `None` if the interpreter does not generate `tokens` for `prompt` and `params`.
pub fn replay_naive_logprobs(
    model: &crate::IntModel,
    prompt: &[u32],
    params: &protocol::SamplingParams,
    tokens: &[u32],
    k: usize,
) -> Option<Vec<NaiveLogprobs>> {
    let mut sink = crate::interp::NoTrace;
    let key = params.sampling_key();
    let mut session = crate::interp::Session::new(model, prompt.len(), &mut sink);
    let mut h = Vec::new();
    for &t in prompt {
        h = session.body(t);
    }
    let mut out = Vec::with_capacity(tokens.len());
    for (i, &t) in tokens.iter().enumerate() {
        out.push(naive_logprobs(&session.logits_untraced(&h), t, k));
        // The head keeps the session's op numbering (the body of the next position follows it).
        if session.head(&h, params, key, i as u64) != t {
            return None;
        }
        if i + 1 < tokens.len() {
            h = session.body(t);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(logits: &[i32], k: usize) -> Vec<(u32, f64)> {
        naive_logprobs(logits, 0, k).top
    }

    #[test]
    fn matches_naive_softmax_and_sorting() {
        let logits: Vec<i32> = (0..300)
            .map(|i: i32| ((i * 7919) % 613 - 300) * 977 + if i % 5 == 0 { 12345 } else { 0 })
            .collect();
        let mut with_ties = logits.clone();
        with_ties[10] = with_ties[3];
        with_ties[200] = *with_ties.iter().max().unwrap_or(&0);
        for logits in [&logits, &with_ties] {
            for k in [0, 1, 5, 20, 25] {
                let lp = token_logprobs(logits, 17, k).expect("in range");
                let want = naive(logits, k.min(20));
                assert_eq!(lp.top.len(), want.len());
                for (got, (id, p)) in lp.top.iter().zip(&want) {
                    assert_eq!(got.token, *id);
                    assert!((got.logprob - p).abs() < 1e-9, "{} vs {p}", got.logprob);
                }
                let p17 = naive(logits, logits.len())
                    .into_iter()
                    .find(|(id, _)| *id == 17)
                    .map(|(_, p)| p)
                    .unwrap_or(f64::NAN);
                assert!((lp.logprob - p17).abs() < 1e-9);
            }
        }
        assert!(token_logprobs(&logits, 300, 3).is_none());
    }

    #[test]
    fn extreme_logits_stay_finite_and_normalised() {
        let logits = vec![i32::MAX, i32::MIN, 0, i32::MAX];
        let lse = logsumexp(&logits).expect("non-empty");
        let total: f64 = logits.iter().map(|&l| (real(l) - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let lp = token_logprobs(&logits, 1, 2).expect("in range");
        assert!(lp.logprob.is_finite());
        assert_eq!(
            lp.top.iter().map(|t| t.token).collect::<Vec<_>>(),
            vec![0, 3]
        );
    }
}

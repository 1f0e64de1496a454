//! How close the integer program stays to the float model it was converted from: teacher-forced top-1 agreement
//! and logit error over a token sequence, and greedy agreement on prompts.

use crate::float_ref::{FloatModel, argmax};
use crate::interp::{NoTrace, Session};
use crate::model::IntModel;
use crate::ops::ACT_FRAC;
use serde::Serialize;

/// Teacher-forced comparison over a token sequence cut into windows (each window starts a fresh context).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TeacherForcedReport {
    /// Positions compared (each predicts the next token of the text).
    pub positions: usize,
    /// Positions where the integer and float argmax agree.
    pub top1_agree: usize,
    /// Positions where the integer argmax equals the text's next token (and the same for float).
    pub int_correct: usize,
    pub float_correct: usize,
    /// Max over positions of the per-position max |int logit − float logit| (real units).
    pub max_abs_logit_err: f64,
    /// Mean over positions of the per-position max |int logit − float logit|.
    pub mean_max_abs_logit_err: f64,
    /// Mean |float logit| for scale.
    pub mean_abs_float_logit: f64,
}

impl TeacherForcedReport {
    pub fn agreement(&self) -> f64 {
        self.top1_agree as f64 / self.positions.max(1) as f64
    }
}

/// Runs both models over `tokens` in windows of `window` tokens; `on_window` is called after each window.
pub fn teacher_forced(
    int_model: &IntModel,
    float_model: &FloatModel,
    tokens: &[u32],
    window: usize,
    on_window: &mut dyn FnMut(&TeacherForcedReport),
) -> TeacherForcedReport {
    let mut report = TeacherForcedReport::default();
    let (mut err_sum, mut abs_sum) = (0f64, 0f64);
    let scale = f64::from(1u32 << ACT_FRAC);
    for chunk in tokens.chunks(window.max(2)) {
        let mut sink = NoTrace;
        let mut session = Session::new(int_model, chunk.len(), &mut sink);
        let mut fs = float_model.session();
        for (i, &t) in chunk.iter().enumerate().take(chunk.len() - 1) {
            let h = session.body(t);
            let il = session.logits_untraced(&h);
            let fl = float_model.forward(&mut fs, t);
            let ia = il
                .iter()
                .enumerate()
                .fold(0, |b, (j, &v)| if v > il[b] { j } else { b }) as u32;
            let fa = argmax(&fl);
            let next = chunk[i + 1];
            report.positions += 1;
            report.top1_agree += usize::from(ia == fa);
            report.int_correct += usize::from(ia == next);
            report.float_correct += usize::from(fa == next);
            let err = il
                .iter()
                .zip(&fl)
                .map(|(&a, &b)| (f64::from(a) / scale - f64::from(b)).abs())
                .fold(0f64, f64::max);
            report.max_abs_logit_err = report.max_abs_logit_err.max(err);
            err_sum += err;
            abs_sum += fl.iter().map(|v| f64::from(v.abs())).sum::<f64>() / fl.len() as f64;
        }
        report.mean_max_abs_logit_err = err_sum / report.positions.max(1) as f64;
        report.mean_abs_float_logit = abs_sum / report.positions.max(1) as f64;
        on_window(&report);
    }
    report
}

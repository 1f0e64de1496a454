//! Lookup tables of the non-linear functions (exp, sigmoid, RoPE cos/sin), committed in the model root.
//!
//! Tables are generated with f64 arithmetic that uses only `+ - * /` and `round` (IEEE-754 correctly rounded, no
//! library `exp`/`sin`), so every platform produces the same bits; they are still model data, so a verifier
//! reads them by Merkle proof instead of recomputing them.

use std::f64::consts::{LN_2, PI};

/// `EXP[k] = round(2^16 · e^(-k / 2^10))`, `k < 2^14` (covers differences below 16.0).
pub const EXP_LEN: usize = 1 << 14;
/// Fraction bits of the argument of `EXP` (index step 2^-10).
pub const EXP_INDEX_FRAC: u32 = 10;
/// `SIGMOID[k] = round(2^16 · σ((k - 2^14) / 2^10))`, `k < 2^15` (covers [-16, 16)).
pub const SIGMOID_LEN: usize = 1 << 15;
pub const SIGMOID_INDEX_FRAC: u32 = 10;
/// Fraction bits of table values (EXP, SIGMOID, ROPE).
pub const TABLE_FRAC: u32 = 16;

/// e^x with range reduction to |r| ≤ ln2/2 and a 24-term Taylor series, basic operations only.
pub fn soft_exp(x: f64) -> f64 {
    if x < -745.0 {
        return 0.0;
    }
    let k = (x / LN_2).round();
    let r = x - k * LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..24 {
        term = term * r / f64::from(i);
        sum += term;
    }
    let mut scale = 1.0;
    let mut n = k as i32;
    while n > 0 {
        scale *= 2.0;
        n -= 1;
    }
    while n < 0 {
        scale *= 0.5;
        n += 1;
    }
    sum * scale
}

/// ln(x) for x > 0: x = m · 2^e with m ∈ [1, 2), ln m = 2·atanh((m-1)/(m+1)) by its series.
pub fn soft_ln(x: f64) -> f64 {
    let mut m = x;
    let mut e = 0i32;
    while m >= 2.0 {
        m *= 0.5;
        e += 1;
    }
    while m < 1.0 {
        m *= 2.0;
        e -= 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    for i in 0..40 {
        sum += term / f64::from(2 * i + 1);
        term *= z2;
    }
    2.0 * sum + f64::from(e) * LN_2
}

/// (sin x, cos x) with reduction modulo 2π and 30-term series.
pub fn soft_sin_cos(x: f64) -> (f64, f64) {
    let two_pi = 2.0 * PI;
    let r = x - (x / two_pi).round() * two_pi;
    let (mut s, mut c) = (0.0, 0.0);
    let mut term = 1.0; // r^n / n!
    for n in 0..30 {
        match n % 4 {
            0 => c += term,
            1 => s += term,
            2 => c -= term,
            _ => s -= term,
        }
        term = term * r / f64::from(n + 1);
    }
    (s, c)
}

fn fixed(v: f64) -> i32 {
    (v * f64::from(1u32 << TABLE_FRAC)).round() as i32
}

pub fn exp_table() -> Vec<i32> {
    (0..EXP_LEN)
        .map(|k| fixed(soft_exp(-(k as f64) / f64::from(1u32 << EXP_INDEX_FRAC))))
        .collect()
}

pub fn sigmoid_table() -> Vec<i32> {
    let half = (SIGMOID_LEN / 2) as f64;
    (0..SIGMOID_LEN)
        .map(|k| {
            let x = (k as f64 - half) / f64::from(1u32 << SIGMOID_INDEX_FRAC);
            fixed(1.0 / (1.0 + soft_exp(-x)))
        })
        .collect()
}

/// RoPE table, row-major `[position][pair][cos, sin]` in Q16 for adjacent pairs `(2i, 2i+1)`:
/// angle = position · base^(-2i / head_dim).
pub fn rope_table(context: usize, head_dim: usize, base: f64) -> Vec<i32> {
    let pairs = head_dim / 2;
    let ln_base = soft_ln(base);
    let freqs: Vec<f64> = (0..pairs)
        .map(|i| soft_exp(-(2.0 * i as f64 / head_dim as f64) * ln_base))
        .collect();
    let mut out = Vec::with_capacity(context * pairs * 2);
    for pos in 0..context {
        for f in &freqs {
            let (s, c) = soft_sin_cos(pos as f64 * f);
            out.push(fixed(c));
            out.push(fixed(s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_functions_match_libm_closely() {
        for x in [-20.0, -5.5, -1.0, -0.3, 0.0, 0.7, 3.0] {
            assert!(
                (soft_exp(x) - f64::exp(x)).abs() <= 1e-14 * f64::exp(x).max(1e-300) * 4.0,
                "{x}"
            );
        }
        for x in [1e-3, 0.5, 1.0, 2.0, 10000.0, 100000.0] {
            assert!((soft_ln(x) - f64::ln(x)).abs() < 1e-12, "{x}");
        }
        for x in [0.0, 1.0, 3.0, 100.0, 8191.0] {
            let (s, c) = soft_sin_cos(x);
            assert!(
                (s - x.sin()).abs() < 1e-11 && (c - x.cos()).abs() < 1e-11,
                "{x}"
            );
        }
    }

    #[test]
    fn tables_have_the_documented_endpoints() {
        let e = exp_table();
        assert_eq!(e[0], 65536);
        assert_eq!(e[1024], (65536.0 * (-1f64).exp()).round() as i32);
        let s = sigmoid_table();
        assert_eq!(s[SIGMOID_LEN / 2], 32768);
        let r = rope_table(4, 8, 10000.0);
        assert_eq!(&r[..2], &[65536, 0]);
    }
}

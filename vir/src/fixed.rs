//! Integer primitives shared by every op: floor shifts, saturation, integer square root and the per-group
//! dynamic quantization to int16 (`QVec`). Each is a mathematically unique function of its inputs.

/// Floor of `v · 2^k` for any `k` (right shifts are arithmetic = floor, like EVM `SAR`), saturated to i64.
pub fn shift(v: i64, k: i32) -> i64 {
    if k <= 0 {
        v >> k.unsigned_abs().min(63)
    } else if v == 0 {
        0
    } else if k >= 64 {
        if v > 0 { i64::MAX } else { i64::MIN }
    } else {
        // |v| < 2^63 and k < 64, so the product fits i128.
        (i128::from(v) << k).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// Saturates to the i32 range.
pub fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Number of significant bits of `m` (0 for 0).
pub fn bit_len(m: u64) -> i32 {
    64 - m.leading_zeros() as i32
}

/// `floor(sqrt(n))`, exact for every u64.
pub fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton from an over-estimate decreases monotonically to floor(sqrt(n)).
    let mut x = 1u64 << ((bit_len(n) + 1) / 2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Truncating division of a signed numerator by a positive divisor, defined through non-negative division only:
/// `sign(n) · floor(|n| / d)`.
pub fn div_trunc(n: i64, d: i64) -> i64 {
    debug_assert!(d > 0);
    let q = i128::from(n.unsigned_abs() / d as u64);
    // |q| ≤ 2^63 and the result is ≥ i64::MIN, so the narrowing is exact.
    (if n < 0 { -q } else { q }) as i64
}

/// Width of int16 quantized values: magnitudes are normalized into `[2^14, 2^15)`.
pub const QBITS: i32 = 15;

/// The normalizing shift of a group with largest magnitude `m`: `bit_len(m) - 15`, or 0 for an all-zero group.
pub fn quant_shift(m: u64) -> i32 {
    if m == 0 { 0 } else { bit_len(m) - QBITS }
}

/// Int16 values in groups, each group with its own power-of-two exponent: `real = value · 2^exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QVec {
    pub exps: Vec<i32>,
    pub values: Vec<i16>,
}

impl QVec {
    pub fn group_len(&self) -> usize {
        if self.exps.is_empty() {
            0
        } else {
            self.values.len() / self.exps.len()
        }
    }

    /// Canonical bytes: every exponent (i32 LE), then every value (i16 LE).
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.exps.len() * 4 + self.values.len() * 2);
        for e in &self.exps {
            out.extend_from_slice(&e.to_le_bytes());
        }
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Dynamic quantization: each group of `group` values (real = v · 2^exp_in) is shifted by
/// `s = quant_shift(max |v|)` so its largest magnitude lands in `[2^14, 2^15]` (2^15 only as −2^15); the group exponent is `exp_in + s`.
/// Values: `floor(v · 2^-s)`, which always fits i16 (see docs/vir.md).
pub fn quantize(values: &[i64], group: usize, exp_in: i32) -> QVec {
    let mut out = QVec {
        exps: Vec::with_capacity(values.len() / group.max(1)),
        values: Vec::with_capacity(values.len()),
    };
    for chunk in values.chunks(group.max(1)) {
        let m = chunk.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let s = quant_shift(m);
        out.exps.push(exp_in + s);
        out.values
            .extend(chunk.iter().map(|&v| shift(v, -s) as i16));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_floor_of_root_at_boundaries() {
        for n in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            99,
            100,
            101,
            u64::MAX,
            u64::MAX - 1,
            1 << 62,
            (1 << 62) - 1,
        ] {
            let r = isqrt(n);
            assert!(u128::from(r) * u128::from(r) <= u128::from(n), "{n}");
            assert!(
                (u128::from(r) + 1) * (u128::from(r) + 1) > u128::from(n),
                "{n}"
            );
        }
    }

    #[test]
    fn shift_is_floor_and_saturates() {
        assert_eq!(shift(-7, -1), -4);
        assert_eq!(shift(7, -1), 3);
        assert_eq!(shift(-1, -200), -1);
        assert_eq!(shift(1, -200), 0);
        assert_eq!(shift(3, 2), 12);
        assert_eq!(shift(1, 70), i64::MAX);
        assert_eq!(shift(-1, 70), i64::MIN);
    }

    #[test]
    fn quantize_fits_i16_at_extremes() {
        for v in [
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            -(1 << 62),
            (1 << 62) - 1,
            -32769,
            32768,
            -32768,
            1,
            -1,
        ] {
            let q = quantize(&[v, 0], 2, 0);
            let back = i64::from(q.values[0]) << q.exps[0].max(0);
            assert!(
                q.values[0].unsigned_abs() >= 1 << 14 || v == 0,
                "{v} -> {q:?}"
            );
            assert!(
                (back - v).unsigned_abs() < 1u64 << q.exps[0].max(0) || q.exps[0] <= 0,
                "{v} -> {q:?}"
            );
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @notice A packed input's byte length is not a whole, non-empty number of its elements, or does not match the
///         other inputs of the op.
error BadLength(uint256 length);
/// @notice The requested outputs `[start, start + count)` are not all among the op's `n` outputs.
error BadRange(uint256 start, uint256 count, uint256 n);
/// @notice A weight storage kind other than 1 (Q4_1) or 2 (Q8_0).
error BadKind(uint8 kind);
/// @notice A block scale is an f16 infinity or NaN (the Rust loader rejects the model).
error NonFiniteScale(uint256 bits);
/// @notice A block scale has `|units| >= 2^30` (the Rust loader rejects the model, docs/vir.md §2.4).
error ScaleTooLarge(int256 units);
/// @notice A table lookup with a negative index (`max - x < 0`): the reference panics on it.
error NegativeTableIndex(int256 diff);
/// @notice `AttnOut` divides by `L[h] <= 0`: the reference requires a positive divisor.
error NonPositiveDivisor(int256 divisor);
/// @notice A top-p round outside `0..17`.
error BadRound(uint8 round);
/// @notice The kept mass of `PickChunk` is negative.
error NegativeMass(int256 mass);
/// @notice A value the reference holds in an i64 does not fit one (the reference would overflow).
error OutOfRange(int256 value);

/// @title LE
/// @notice Readers of canonical little-endian tensor bytes in calldata (docs/vir.md §5.4). They do not check bounds:
///         callers validate the lengths first.
library LE {
    /// @notice The unsigned 16-bit little-endian value at byte offset `off`.
    function u16(bytes calldata b, uint256 off) internal pure returns (uint256 v) {
        assembly ("memory-safe") {
            let t := shr(240, calldataload(add(b.offset, off)))
            v := or(shr(8, t), and(shl(8, t), 0xff00))
        }
    }

    /// @notice Element `i` of an int32 LE array.
    function i32(bytes calldata b, uint256 i) internal pure returns (int256 v) {
        assembly ("memory-safe") {
            let t := shr(224, calldataload(add(b.offset, shl(2, i))))
            t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
            v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
        }
    }

    /// @notice Element `i` of an int64 LE array.
    function i64(bytes calldata b, uint256 i) internal pure returns (int256 v) {
        assembly ("memory-safe") {
            let t := shr(192, calldataload(add(b.offset, shl(3, i))))
            t := or(shr(8, and(t, 0xff00ff00ff00ff00)), shl(8, and(t, 0x00ff00ff00ff00ff)))
            t := or(shr(16, and(t, 0xffff0000ffff0000)), shl(16, and(t, 0x0000ffff0000ffff)))
            v := signextend(7, or(shr(32, t), and(shl(32, t), 0xffffffff00000000)))
        }
    }

    /// @notice Maximum of the non-empty int32 LE array `b` (length checked by the caller).
    function maxI32(bytes calldata b) internal pure returns (int256 m) {
        assembly ("memory-safe") {
            let p := b.offset
            let end := add(p, b.length)
            m := le32(p)
            for { p := add(p, 4) } lt(p, end) { p := add(p, 4) } {
                let v := le32(p)
                if sgt(v, m) { m := v }
            }
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
        }
    }

    /// @notice Exact sum of the int32 LE array `b`; with `threshold`, only of the elements `>= threshold`
    ///         (`masked` false sums everything).
    function sumI32(bytes calldata b, bool masked, int256 threshold) internal pure returns (int256 s) {
        assembly ("memory-safe") {
            let end := add(b.offset, b.length)
            for { let p := b.offset } lt(p, end) { p := add(p, 4) } {
                let v := le32(p)
                if or(iszero(masked), iszero(slt(v, threshold))) { s := add(s, v) }
            }
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
        }
    }

    /// @notice Exact sum of the int64 LE array `b`.
    function sumI64(bytes calldata b) internal pure returns (int256 s) {
        assembly ("memory-safe") {
            let end := add(b.offset, b.length)
            for { let p := b.offset } lt(p, end) { p := add(p, 8) } {
                let t := shr(192, calldataload(p))
                t := or(shr(8, and(t, 0xff00ff00ff00ff00)), shl(8, and(t, 0x00ff00ff00ff00ff)))
                t := or(shr(16, and(t, 0xffff0000ffff0000)), shl(16, and(t, 0x0000ffff0000ffff)))
                s := add(s, signextend(7, or(shr(32, t), and(shl(32, t), 0xffffffff00000000))))
            }
        }
    }

    /// @notice Exact `Σ a_i · b_i` of two int32 LE arrays of `a.length` bytes each (lengths checked by the caller).
    function dotI32(bytes calldata a, bytes calldata b) internal pure returns (int256 s) {
        assembly ("memory-safe") {
            let d := sub(b.offset, a.offset)
            let end := add(a.offset, a.length)
            for { let p := a.offset } lt(p, end) { p := add(p, 4) } {
                s := add(s, mul(le32(p), le32(add(p, d))))
            }
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
        }
    }

    /// @notice Exact `Σ q_i · k_i` of an int16 LE array `q` and an int32 LE array `k` of as many elements.
    function dotI16I32(bytes calldata q, bytes calldata k) internal pure returns (int256 s) {
        assembly ("memory-safe") {
            let kp := k.offset
            let end := add(q.offset, q.length)
            for { let p := q.offset } lt(p, end) { p := add(p, 2) } {
                let t := shr(240, calldataload(p))
                let a := signextend(1, or(shr(8, t), and(shl(8, t), 0xff00)))
                s := add(s, mul(a, le32(kp)))
                kp := add(kp, 4)
            }
            function le32(x) -> v {
                let u := shr(224, calldataload(x))
                u := or(shr(8, and(u, 0xff00ff00)), shl(8, and(u, 0x00ff00ff)))
                v := signextend(3, or(shr(16, u), and(shl(16, u), 0xffff0000)))
            }
        }
    }

    /// @notice Number of int32 elements of `b`; reverts `BadLength` unless it is a non-empty multiple of 4 bytes.
    function count32(bytes calldata b) internal pure returns (uint256 n) {
        n = b.length >> 2;
        if (n == 0 || b.length & 3 != 0) revert BadLength(b.length);
    }

    /// @notice Number of int64 elements of `b`; reverts `BadLength` unless it is a non-empty multiple of 8 bytes.
    function count64(bytes calldata b) internal pure returns (uint256 n) {
        n = b.length >> 3;
        if (n == 0 || b.length & 7 != 0) revert BadLength(b.length);
    }
}

/// @title VirMath
/// @notice The integer primitives of `vir/src/fixed.rs` (docs/vir.md §2.2). Values are carried in int256, so every
///         intermediate is exact; where the reference saturates (`shift`), so does this.
library VirMath {
    int256 internal constant I32_MIN = type(int32).min;
    int256 internal constant I32_MAX = type(int32).max;
    int256 internal constant I64_MIN = type(int64).min;
    int256 internal constant I64_MAX = type(int64).max;
    /// @dev Largest accepted |D|, |M| (exclusive), units of 2^-24 (`weights::MAX_BLOCK_SCALE`).
    int256 internal constant MAX_BLOCK_SCALE = 1 << 30;
    /// @dev int16 value width of quantized groups (`fixed::QBITS`).
    int256 internal constant QBITS = 15;

    /// @notice `fixed::shift`: `floor(v · 2^k)` (a right shift is SAR), saturated to the i64 range; `v` is an i64.
    function shift(int256 v, int256 k) internal pure returns (int256 r) {
        if (k <= 0) {
            // SAR by >= 63 leaves 0 or -1 for an i64, as the reference's shift by min(-k, 63) does.
            assembly ("memory-safe") {
                r := sar(sub(0, k), v)
            }
        } else if (v == 0) {
            r = 0;
        } else if (k >= 64) {
            r = v > 0 ? I64_MAX : I64_MIN;
        } else {
            // |v| < 2^63 and k < 64: exact in int256 (shifts are unchecked, and cannot overflow here).
            r = v << uint256(k);
            if (r > I64_MAX) r = I64_MAX;
            else if (r < I64_MIN) r = I64_MIN;
        }
    }

    /// @notice `fixed::clamp_i32` (sat32): saturates to the i32 range.
    function sat32(int256 v) internal pure returns (int32) {
        if (v > I32_MAX) return type(int32).max;
        if (v < I32_MIN) return type(int32).min;
        return int32(v);
    }

    /// @notice `v` as an int64; reverts `OutOfRange` where the reference's i64 arithmetic would overflow.
    function toI64(int256 v) internal pure returns (int64) {
        if (v > I64_MAX || v < I64_MIN) revert OutOfRange(v);
        return int64(v);
    }

    /// @notice `|v|`.
    function abs(int256 v) internal pure returns (uint256) {
        return uint256(v < 0 ? -v : v);
    }

    /// @notice `fixed::bit_len`: number of significant bits of `m` (0 for 0).
    function bitLen(uint256 m) internal pure returns (int256 n) {
        assembly ("memory-safe") {
            if shr(128, m) { m := shr(128, m) n := 128 }
            if shr(64, m) { m := shr(64, m) n := add(n, 64) }
            if shr(32, m) { m := shr(32, m) n := add(n, 32) }
            if shr(16, m) { m := shr(16, m) n := add(n, 16) }
            if shr(8, m) { m := shr(8, m) n := add(n, 8) }
            if shr(4, m) { m := shr(4, m) n := add(n, 4) }
            if shr(2, m) { m := shr(2, m) n := add(n, 2) }
            if shr(1, m) { m := shr(1, m) n := add(n, 1) }
            n := add(n, m)
        }
    }

    /// @notice `fixed::quant_shift`: 0 for 0, else `bit_len(m) - 15`.
    function quantShift(uint256 m) internal pure returns (int256) {
        return m == 0 ? int256(0) : bitLen(m) - QBITS;
    }

    /// @notice `fixed::isqrt`: `floor(sqrt(n))` (Newton from an over-estimate, as the reference).
    function isqrt(uint256 n) internal pure returns (uint256 x) {
        if (n < 2) return n;
        unchecked {
            x = uint256(1) << uint256((bitLen(n) + 1) / 2);
            while (true) {
                uint256 y = (x + n / x) / 2;
                if (y >= x) return x;
                x = y;
            }
        }
    }

    /// @notice `gguf::f16_to_units`: an f16 (bits) as an exact integer in units of 2^-24; reverts `NonFiniteScale`
    ///         for inf/NaN and `ScaleTooLarge` for `|units| >= 2^30`, as the model loader does.
    function f16Units(uint256 bits) internal pure returns (int256 u) {
        uint256 e = (bits >> 10) & 31;
        uint256 f = bits & 1023;
        if (e == 31) revert NonFiniteScale(bits);
        u = int256(e == 0 ? f : (1024 + f) << (e - 1));
        if (bits & 0x8000 != 0) u = -u;
        if (u >= MAX_BLOCK_SCALE || u <= -MAX_BLOCK_SCALE) revert ScaleTooLarge(u);
    }
}

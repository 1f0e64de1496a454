// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ChaCha20
/// @notice The sampling draw of docs/vir.md §6.4 (`vir::sampling::draw`): ChaCha20 (20 rounds, Bernstein's layout:
///         4 constant words, 8 key words read as little-endian u32s, a 64-bit block counter in words 12–13 and a
///         64-bit stream id = 0 in words 14–15), as `rand_chacha 0.10`'s `ChaCha20Rng::from_seed(key)` with
///         `set_word_pos(16 · step)` followed by `next_u64`.
library ChaCha20 {
    /// @notice `u = w0 | w1 << 32`, where `w0`, `w1` are the first two output words of block `step` under `key`.
    function draw(bytes32 key, uint64 step) internal pure returns (uint64 u) {
        assembly ("memory-safe") {
            // Byte-swaps the 32-bit value `t` (a big-endian read of 4 key bytes) into its little-endian value.
            function bswap32(t) -> v {
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := or(shr(16, t), and(shl(16, t), 0xffff0000))
            }
            function rotl(v, n) -> r {
                r := and(or(shl(n, v), shr(sub(32, n), v)), 0xffffffff)
            }
            // One quarter round on the state words at memory offsets a, b, c, d.
            function qr(a, b, c, d) {
                let va := mload(a)
                let vb := mload(b)
                let vc := mload(c)
                let vd := mload(d)
                va := and(add(va, vb), 0xffffffff)
                vd := rotl(xor(vd, va), 16)
                vc := and(add(vc, vd), 0xffffffff)
                vb := rotl(xor(vb, vc), 12)
                va := and(add(va, vb), 0xffffffff)
                vd := rotl(xor(vd, va), 8)
                vc := and(add(vc, vd), 0xffffffff)
                vb := rotl(xor(vb, vc), 7)
                mstore(a, va)
                mstore(b, vb)
                mstore(c, vc)
                mstore(d, vd)
            }
            // Working state x[0..16) at p (one word per u32); scratch beyond the free memory pointer.
            let p := mload(0x40)
            mstore(p, 0x61707865)
            mstore(add(p, 0x20), 0x3320646e)
            mstore(add(p, 0x40), 0x79622d32)
            mstore(add(p, 0x60), 0x6b206574)
            for { let i := 0 } lt(i, 8) { i := add(i, 1) } {
                mstore(add(p, shl(5, add(4, i))), bswap32(shr(224, shl(shl(5, i), key))))
            }
            mstore(add(p, 0x180), and(step, 0xffffffff))
            mstore(add(p, 0x1a0), shr(32, step))
            mstore(add(p, 0x1c0), 0)
            mstore(add(p, 0x1e0), 0)
            for { let r := 0 } lt(r, 10) { r := add(r, 1) } {
                qr(p, add(p, 0x80), add(p, 0x100), add(p, 0x180))
                qr(add(p, 0x20), add(p, 0xa0), add(p, 0x120), add(p, 0x1a0))
                qr(add(p, 0x40), add(p, 0xc0), add(p, 0x140), add(p, 0x1c0))
                qr(add(p, 0x60), add(p, 0xe0), add(p, 0x160), add(p, 0x1e0))
                qr(p, add(p, 0xa0), add(p, 0x140), add(p, 0x1e0))
                qr(add(p, 0x20), add(p, 0xc0), add(p, 0x160), add(p, 0x180))
                qr(add(p, 0x40), add(p, 0xe0), add(p, 0x100), add(p, 0x1a0))
                qr(add(p, 0x60), add(p, 0x80), add(p, 0x120), add(p, 0x1c0))
            }
            // Output words 0 and 1: working state plus the input state (constants 0 and 1).
            let w0 := and(add(mload(p), 0x61707865), 0xffffffff)
            let w1 := and(add(mload(add(p, 0x20)), 0x3320646e), 0xffffffff)
            u := or(w0, shl(32, w1))
        }
    }
}

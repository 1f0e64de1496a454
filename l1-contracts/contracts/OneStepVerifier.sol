// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Protocol} from "./Protocol.sol";
import {ChaCha20} from "./vir/ChaCha20.sol";
import {
    BadKind, BadLength, BadRange, BadRound, LE, NegativeMass, NegativeTableIndex, NonPositiveDivisor, VirMath
} from "./vir/VirMath.sol";

/// @title OneStepVerifier
/// @notice Every VIR op of docs/vir.md §4 as a pure function, bit-identical to the Rust reference (`vir::ops`): a
///         dispute game recomputes the disputed output element (or a range of a QVec output) from inputs it has
///         already authenticated, and compares. Plus the commitment helpers the game reads those inputs with
///         (tensor chunks, trace leaves, descriptors; docs/protocol.md §2–3, docs/vir.md §5.3).
/// @dev Encoding. Tensor inputs are `bytes` in the canonical little-endian form of docs/vir.md §5.4 (`le4` per
///      i32, `le8` per i64, `le2` per int16 value; a QVec is `le4(exp) ‖ le2(values)`), i.e. exactly the bytes of
///      the tensor chunks the game authenticates, so slices of verified chunks are passed through unchanged. This
///      is 4–8× less calldata than ABI `int32[]` (an ABI word of a negative value is 28 bytes of 0xff at 16 gas
///      each) and is decoded with a few shifts per element. Weight rows and blocks are the raw GGUF block bytes.
///      Scalars are ABI integers of the reference's type. Table entries (EXP, SIGMOID) are passed in by the caller,
///      which must authenticate them under the model root at the index the `*Index` helpers give.
///
///      Arithmetic is exact in int256; floor shifts are SAR; saturation is applied where the reference applies it
///      (`VirMath.shift` saturates to i64 like `fixed::shift`); int16 outputs are truncating casts like Rust's `as`.
///      Inputs on which the reference panics or overflows i64 revert with a custom error.
contract OneStepVerifier {
    /// @dev Matrix storage kinds (the `kind` byte of `matrix_leaf`, docs/vir.md §7).
    uint8 internal constant Q4_1 = 1;
    uint8 internal constant Q8_0 = 2;
    /// @dev docs/vir.md §1 constants.
    int256 internal constant RESIDUAL_FRAC = 12;
    int256 internal constant ACT_FRAC = 16;
    int256 internal constant WEIGHT_FRAC = 24;
    int256 internal constant NORM_OUT_EXP = -40;
    int256 internal constant EXP_LEN = 1 << 14;
    int256 internal constant SIGMOID_LEN = 1 << 15;
    uint256 internal constant VOCAB_CHUNK = 1024;
    uint8 internal constant TOPP_ROUNDS = 17;
    int32 internal constant PROB_ONE = 1 << 16;
    int256 internal constant SCORE_CLAMP = 1 << 46;
    /// @dev `0x00ff` in every 16-bit lane: swaps the bytes of sixteen int16 values at once.
    uint256 internal constant LANE_LO = 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;

    // -----------------------------------------------------------------------------------------------------------
    // Embedding, normalization, projections

    /// @notice Embed (§4.1), one element: `sat32(fl(D·q_j + M, 12 - 24))` for element `j` (0..31) of one weight
    ///         block of row `token` of `token_embd`.
    /// @param blk The raw GGUF block (20 bytes Q4_1: d, m, 16 nibble bytes; 34 bytes Q8_0: d, 32 int8).
    /// @param kind 1 = Q4_1, 2 = Q8_0.
    /// @param j Element within the block (`i mod 32` for output `i`).
    /// @return The Q12 embedding value.
    function embed(bytes calldata blk, uint8 kind, uint256 j) external pure returns (int32) {
        if (j >= 32) revert BadRange(j, 1, 32);
        int256 w;
        if (kind == Q4_1) {
            if (blk.length != 20) revert BadLength(blk.length);
            uint256 b = uint8(blk[4 + (j & 15)]);
            w = VirMath.f16Units(LE.u16(blk, 0)) * int256(j < 16 ? b & 15 : b >> 4) + VirMath.f16Units(LE.u16(blk, 2));
        } else if (kind == Q8_0) {
            if (blk.length != 34) revert BadLength(blk.length);
            w = VirMath.f16Units(LE.u16(blk, 0)) * int256(int8(uint8(blk[2 + j])));
        } else {
            revert BadKind(kind);
        }
        return VirMath.sat32(VirMath.shift(w, RESIDUAL_FRAC - WEIGHT_FRAC));
    }

    /// @notice RmsNorm (§4.2), outputs `[start, start + count)` of the QVec (one group) and its exponent `-40 + s`.
    ///         Computes `k`, `ss`, `ms`, `r`, `inv` from the whole row and the group shift `s` from the whole `z`.
    /// @param h The residual row, `d` i32 LE (Q12).
    /// @param gamma The Q16 norm weights as committed, `d` i32 LE.
    /// @param epsFx `eps_fx = round(rms_eps · 2^48)` from the config.
    /// @param start First output index.
    /// @param count Number of outputs (1 for a single element).
    /// @return exp The group exponent.
    /// @return values The int16 outputs `start .. start + count`.
    function rmsNorm(bytes calldata h, bytes calldata gamma, int64 epsFx, uint256 start, uint256 count)
        external
        pure
        returns (int32 exp, int16[] memory values)
    {
        int256 s;
        (s, values) = _quantize(_rmsZ(h, gamma, epsFx), start, count);
        exp = int32(NORM_OUT_EXP + s);
    }

    /// @notice MatMul (§4.3), one row: `sat32(fl(y_r, e_x - 24 + f))` with `y_r` the exact dot product of weight row
    ///         `r` with the single-group QVec `x`.
    /// @param row The row's raw GGUF blocks (`cols/32` blocks of 20 (Q4_1) or 34 (Q8_0) bytes).
    /// @param kind 1 = Q4_1, 2 = Q8_0.
    /// @param x The input QVec's canonical bytes: `le4(exp) ‖ le2(x_0) ‖ … ‖ le2(x_{cols-1})`, `cols` a multiple of 32.
    /// @param outFrac Output fraction bits `f` (12 for o/down projections, 16 otherwise).
    /// @return The output element, Q(f).
    function matmulRow(bytes calldata row, uint8 kind, bytes calldata x, uint8 outFrac)
        external
        pure
        returns (int32)
    {
        if (x.length < 4 || (x.length - 4) & 63 != 0) revert BadLength(x.length);
        uint256 nb = (x.length - 4) >> 6;
        uint256 bb;
        if (kind == Q4_1) bb = 20;
        else if (kind == Q8_0) bb = 34;
        else revert BadKind(kind);
        if (row.length != nb * bb) revert BadLength(row.length);
        int256 y;
        for (uint256 b; b < nb; ++b) {
            uint256 blk;
            uint256 xp;
            assembly ("memory-safe") {
                blk := add(row.offset, mul(b, bb))
                xp := add(add(x.offset, 4), shl(6, b))
            }
            int256 d = VirMath.f16Units(_u16At(blk));
            if (kind == Q4_1) {
                (int256 acc, int256 xs) = _dotQ41(blk + 4, xp);
                y += d * acc + VirMath.f16Units(_u16At(blk + 2)) * xs;
            } else {
                y += d * _dotQ80(blk + 2, xp);
            }
        }
        return VirMath.sat32(VirMath.shift(y, LE.i32(x, 0) - WEIGHT_FRAC + int256(uint256(outFrac))));
    }

    /// @notice KRope (§4.4), one rotated pair: `sat32(fl(a·c - b·s, -16))`, `sat32(fl(a·s + b·c, -16))`.
    /// @param a Key element `2i` (Q16).
    /// @param b Key element `2i + 1`.
    /// @param c ROPE cos of pair `i` at the position.
    /// @param s ROPE sin of pair `i` at the position.
    /// @return r0 Output `2i`.
    /// @return r1 Output `2i + 1`.
    function rope(int32 a, int32 b, int32 c, int32 s) external pure returns (int32 r0, int32 r1) {
        r0 = VirMath.sat32((int256(a) * c - int256(b) * s) >> 16);
        r1 = VirMath.sat32((int256(a) * s + int256(b) * c) >> 16);
    }

    /// @notice QRope (§4.4) of one head, outputs `[start, start + count)` of the head and the head's exponent
    ///         `-16 + s` (the group shift depends on the whole rotated head).
    /// @param x The head's QProj values, `head_dim` i32 LE (Q16).
    /// @param ropeRow The position's ROPE row, `head_dim` i32 LE: `(cos_i, sin_i)` pairs.
    /// @param start First output index within the head.
    /// @param count Number of outputs.
    /// @return exp The head's exponent.
    /// @return values The int16 outputs.
    function ropeQuant(bytes calldata x, bytes calldata ropeRow, uint256 start, uint256 count)
        external
        pure
        returns (int32 exp, int16[] memory values)
    {
        uint256 n = LE.count32(x);
        if (n & 1 != 0) revert BadLength(x.length);
        if (ropeRow.length != x.length) revert BadLength(ropeRow.length);
        int256[] memory z = new int256[](n);
        for (uint256 j; j < n; j += 2) {
            int256 a = LE.i32(x, j);
            int256 b = LE.i32(x, j + 1);
            int256 c = LE.i32(ropeRow, j);
            int256 sn = LE.i32(ropeRow, j + 1);
            assembly ("memory-safe") {
                let o := add(add(z, 0x20), shl(5, j))
                mstore(o, sar(16, sub(mul(a, c), mul(b, sn))))
                mstore(add(o, 0x20), sar(16, add(mul(a, sn), mul(b, c))))
            }
        }
        int256 s;
        (s, values) = _quantize(z, start, count);
        exp = int32(-ACT_FRAC + s);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Attention

    /// @notice AttnScores (§4.5), one element: `a = clamp(fl(q·k, e_h), ±2^46)`, `sat32(fl(a · scale, -16))`.
    /// @param q Head `h` of QRope: `head_dim` int16 LE values.
    /// @param qExp QRope's exponent of head `h`.
    /// @param k Head `kv(h)` of KRope at position `j`: `head_dim` i32 LE.
    /// @param scoreScale `score_scale` from the config.
    /// @return The Q16 score.
    function attnScore(bytes calldata q, int32 qExp, bytes calldata k, int64 scoreScale)
        external
        pure
        returns (int32)
    {
        uint256 n = q.length >> 1;
        if (q.length & 1 != 0 || k.length != n << 2) revert BadLength(k.length);
        int256 a = VirMath.shift(LE.dotI16I32(q, k), qExp);
        if (a > SCORE_CLAMP) a = SCORE_CLAMP;
        else if (a < -SCORE_CLAMP) a = -SCORE_CLAMP;
        return VirMath.sat32(VirMath.shift(a * scoreScale, -16));
    }

    /// @notice AttnChunkMax (§4.6): the maximum of one chunk of (≤ 64) scores.
    /// @param scores i32 LE.
    /// @return The maximum.
    function chunkMax(bytes calldata scores) external pure returns (int32) {
        return _maxI32(scores);
    }

    /// @notice AttnMax (§4.6): the maximum of a row's chunk maxima.
    /// @param chunkMaxima i32 LE.
    /// @return The maximum.
    function rowMax(bytes calldata chunkMaxima) external pure returns (int32) {
        return _maxI32(chunkMaxima);
    }

    /// @notice AttnExp (§4.7), one element: `EXP[(max - s) >> 6]`, or 0 past the table.
    /// @param score `s[h][j]`.
    /// @param max `max[h]` (AttnMax).
    /// @param expEntry `EXP[i]` at `i` = `attnExpIndex(score, max)` (ignored when that is past the table).
    /// @return The Q16 weight.
    function attnExp(int32 score, int32 max, int32 expEntry) external pure returns (int32) {
        (bool inTable,) = _expIndex(int256(max) - score);
        return inTable ? expEntry : int32(0);
    }

    /// @notice The EXP index AttnExp reads: `inTable` is false (no entry needed) when `(max - s) >> 6 >= 2^14`.
    /// @param score `s[h][j]`.
    /// @param max `max[h]`.
    /// @return inTable Whether an EXP entry is read.
    /// @return index The EXP index (when `inTable`).
    function attnExpIndex(int32 score, int32 max) external pure returns (bool inTable, uint256 index) {
        return _expIndex(int256(max) - score);
    }

    /// @notice AttnChunkSum (§4.8): the sum of one chunk of (≤ 64) weights.
    /// @param e i32 LE.
    /// @return The i64 sum.
    function chunkSum(bytes calldata e) external pure returns (int64) {
        LE.count32(e);
        return VirMath.toI64(LE.sumI32(e, false, 0));
    }

    /// @notice AttnSum (§4.8): the sum of a row's chunk sums.
    /// @param sums i64 LE.
    /// @return The i64 sum.
    function rowSum(bytes calldata sums) external pure returns (int64) {
        return VirMath.toI64(_sumI64(sums));
    }

    /// @notice AttnWeightedSum (§4.9), one element `w[h][d][c] = Σ_j e[h][j] · v_j[kv(h)][d]` over chunk `c`.
    /// @param e The chunk's weights `e[h][j]`, i32 LE (≤ 64).
    /// @param v The matching value entries `v_j[kv(h)][d]` (VProj at position `j`), i32 LE, same count.
    /// @return The i64 partial.
    function attnWeightedSum(bytes calldata e, bytes calldata v) external pure returns (int64) {
        LE.count32(e);
        if (v.length != e.length) revert BadLength(v.length);
        return VirMath.toI64(LE.dotI32(e, v));
    }

    /// @notice AttnOut (§4.10), one element: `sat32(trunc(Σ_c w[h][d][c] / L[h]))`, rounding toward zero.
    /// @param w The `nc` partials of `(h, d)`, i64 LE.
    /// @param l `L[h]` (AttnSum), > 0.
    /// @return The Q16 output.
    function attnOut(bytes calldata w, int64 l) external pure returns (int32) {
        if (l <= 0) revert NonPositiveDivisor(l);
        int256 total = VirMath.toI64(_sumI64(w));
        int256 q = int256(VirMath.abs(total) / uint256(int256(l)));
        return VirMath.sat32(total < 0 ? -q : q);
    }

    /// @notice `quantize_vec` (§4.11, AttnOutQuant with `frac` 16): outputs `[start, start + count)` of the single
    ///         group and its exponent `-frac + s`.
    /// @param x The whole vector, i32 LE.
    /// @param frac Input fraction bits.
    /// @param start First output index.
    /// @param count Number of outputs.
    /// @return exp The group exponent.
    /// @return values The int16 outputs.
    function quantizeVec(bytes calldata x, uint8 frac, uint256 start, uint256 count)
        external
        pure
        returns (int32 exp, int16[] memory values)
    {
        uint256 n = LE.count32(x);
        int256[] memory z = _decodeI32(x, n);
        int256 s;
        (s, values) = _quantize(z, start, count);
        exp = int32(-int256(uint256(frac)) + s);
    }

    /// @notice ResidualAdd (§4.12), one element: `sat32(a + b)`.
    /// @param a First input (Q12).
    /// @param b Second input (Q12).
    /// @return The saturated sum.
    function residualAdd(int32 a, int32 b) external pure returns (int32) {
        return VirMath.sat32(int256(a) + b);
    }

    /// @notice SwiGlu (§4.13), outputs `[start, start + count)` and the exponent `-32 + s`:
    ///         `h_i = fl(g_i · σ_i, -16) · u_i`, quantized as one group over all `d_ff` values.
    /// @param gate GateProj, `d_ff` i32 LE.
    /// @param up UpProj, `d_ff` i32 LE.
    /// @param sig One SIGMOID entry per element, i32 LE: `sig_i = SIGMOID[sigmoidIndex(gate_i)]`.
    /// @param start First output index.
    /// @param count Number of outputs.
    /// @return exp The group exponent.
    /// @return values The int16 outputs.
    function swiglu(bytes calldata gate, bytes calldata up, bytes calldata sig, uint256 start, uint256 count)
        external
        pure
        returns (int32 exp, int16[] memory values)
    {
        int256 s;
        (s, values) = _quantize(_swigluH(gate, up, sig), start, count);
        exp = int32(-2 * ACT_FRAC + s);
    }

    /// @notice The SIGMOID index of a Q16 gate value: `clamp((g >> 6) + 2^14, 0, 2^15 - 1)`.
    /// @param g The gate value.
    /// @return The table index.
    function sigmoidIndex(int32 g) external pure returns (uint256) {
        int256 i = (int256(g) >> 6) + (SIGMOID_LEN >> 1);
        if (i < 0) return 0;
        if (i >= SIGMOID_LEN) return uint256(SIGMOID_LEN - 1);
        return uint256(i);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Sampling

    /// @notice LogitChunkMax (§4.15): `(max, lowest global index of the max)` over one chunk of ≤ 1024 logits.
    /// @param logits The chunk's logits, i32 LE.
    /// @param chunk The chunk index `c` (global index = `1024c + i`).
    /// @return max The maximum.
    /// @return index Its lowest global index.
    function logitChunkMax(bytes calldata logits, uint256 chunk) external pure returns (int32 max, int32 index) {
        LE.count32(logits);
        int256 best = LE.i32(logits, 0);
        uint256 atIdx;
        assembly ("memory-safe") {
            let end := add(logits.offset, logits.length)
            for { let p := add(logits.offset, 4) } lt(p, end) { p := add(p, 4) } {
                let t := shr(224, calldataload(p))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                let v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
                if sgt(v, best) {
                    best := v
                    atIdx := shr(2, sub(p, logits.offset))
                }
            }
        }
        // Rust's `(c·chunk + at) as i32`: a wrapping cast.
        return (int32(best), int32(int256(chunk * VOCAB_CHUNK + atIdx)));
    }

    /// @notice LogitMax (§4.15): `(max, index)` over the chunk pairs; an earlier chunk wins ties.
    /// @param pairs `nv` pairs `(max, index)`, i32 LE.
    /// @return max The maximum.
    /// @return index The lowest global argmax.
    function logitMax(bytes calldata pairs) external pure returns (int32 max, int32 index) {
        LE.count64(pairs);
        int256 best = LE.i32(pairs, 0);
        int256 bestIdx = LE.i32(pairs, 1);
        assembly ("memory-safe") {
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
            let end := add(pairs.offset, pairs.length)
            for { let p := add(pairs.offset, 8) } lt(p, end) { p := add(p, 8) } {
                let v := le32(p)
                if sgt(v, best) {
                    best := v
                    bestIdx := le32(add(p, 4))
                }
            }
        }
        return (int32(best), int32(bestIdx));
    }

    /// @notice SampleExp (§4.16), one element: greedy `2^16·[i == imax]`, else `EXP[floor((lmax - l)·1000/T) >> 6]`
    ///         (0 past the table). The division truncates toward zero as the reference's i64 division does.
    /// @param logit `l_i`.
    /// @param index `i`.
    /// @param lmax LogitMax's maximum.
    /// @param imax LogitMax's index.
    /// @param temperatureMilli `T` from the request parameters.
    /// @param expEntry `EXP[sampleExpIndex(...)]` (ignored when no entry is read).
    /// @return The Q16 weight.
    function sampleExp(int32 logit, uint32 index, int32 lmax, int32 imax, uint32 temperatureMilli, int32 expEntry)
        external
        pure
        returns (int32)
    {
        if (temperatureMilli == 0) return int32(index) == imax ? PROB_ONE : int32(0);
        (bool inTable,) = _expIndex(_sampleDiff(logit, lmax, temperatureMilli));
        return inTable ? expEntry : int32(0);
    }

    /// @notice The EXP index SampleExp reads; `inTable` is false when no entry is read (greedy, or past the table).
    /// @param logit `l_i`.
    /// @param lmax LogitMax's maximum.
    /// @param temperatureMilli `T`.
    /// @return inTable Whether an EXP entry is read.
    /// @return index The EXP index (when `inTable`).
    function sampleExpIndex(int32 logit, int32 lmax, uint32 temperatureMilli)
        external
        pure
        returns (bool inTable, uint256 index)
    {
        if (temperatureMilli == 0) return (false, 0);
        return _expIndex(_sampleDiff(logit, lmax, temperatureMilli));
    }

    /// @notice Masked chunk sums (§4.17: SampleChunkSum, TopPChunkSum, KeptChunkSum): `Σ {e_i : e_i >= τ}` over one
    ///         chunk of ≤ 1024 weights.
    /// @param e The chunk's weights, i32 LE.
    /// @param threshold `τ` (0 for SampleChunkSum).
    /// @return The i64 sum.
    function maskedChunkSum(bytes calldata e, int64 threshold) external pure returns (int64) {
        LE.count32(e);
        return VirMath.toI64(LE.sumI32(e, true, threshold));
    }

    /// @notice SampleSum (§4.18): `(L, ceil(L · top_p_milli / 1000))`.
    /// @param sums The `nv` chunk sums, i64 LE.
    /// @param topPMilli `top_p_milli` from the request parameters.
    /// @return total `L`.
    /// @return target The top-p mass.
    function sampleSum(bytes calldata sums, uint32 topPMilli) external pure returns (int64 total, int64 target) {
        int256 l = VirMath.toI64(_sumI64(sums));
        return (int64(l), VirMath.toI64((l * int256(uint256(topPMilli)) + 999) / 1000));
    }

    /// @notice The threshold TopPChunkSum(`round`) masks with: `tauPrev | 2^(16 - round)`.
    /// @param tauPrev `τ_{round-1}` (0 for round 0).
    /// @param round The round, 0..16.
    /// @return The candidate threshold.
    function topPCandidate(int64 tauPrev, uint8 round) external pure returns (int64) {
        return _candidate(tauPrev, round);
    }

    /// @notice TopPStep (§4.19): `τ_r = cand` if `Σ sums >= target`, else `τ_{r-1}`.
    /// @param sums TopPChunkSum(`round`), `nv` i64 LE.
    /// @param tauPrev `τ_{round-1}`.
    /// @param round The round, 0..16.
    /// @param target SampleSum's target.
    /// @return `τ_round`.
    function topPStep(bytes calldata sums, int64 tauPrev, uint8 round, int64 target) external pure returns (int64) {
        int64 cand = _candidate(tauPrev, round);
        return VirMath.toI64(_sumI64(sums)) >= target ? cand : tauPrev;
    }

    /// @notice PickChunk (§4.20): `rr = floor(u · K / 2^64)` with `u = draw(key, step)`, and the first chunk whose
    ///         cumulative kept mass exceeds `rr`: `(c, rr - mass before c)`; `(nv - 1, 0)` if none.
    /// @param kept KeptChunkSum, `nv` i64 LE.
    /// @param key The request's sampling key (`samplingKey(seed, choiceIndex)`).
    /// @param step The generation step.
    /// @return chunk `c`.
    /// @return rr The draw within chunk `c`.
    function pickChunk(bytes calldata kept, bytes32 key, uint64 step) external pure returns (int64 chunk, int64 rr) {
        uint256 n = kept.length >> 3;
        if (kept.length & 7 != 0) revert BadLength(kept.length);
        int256 total = VirMath.toI64(_sumI64(kept));
        if (total < 0) revert NegativeMass(total);
        int256 r = int256((uint256(ChaCha20.draw(key, step)) * uint256(total)) >> 64);
        int256 before;
        for (uint256 c; c < n; ++c) {
            int256 s = LE.i64(kept, c);
            if (r < before + s) return (int64(int256(c)), int64(r - before));
            before += s;
        }
        return (int64(int256(n)) - 1, 0);
    }

    /// @notice PickToken (§4.21): in chunk `chunk`, the first token (walking up) with `e_i >= τ*` whose running
    ///         kept mass exceeds `rr`; the chunk's last index if none.
    /// @param e The chunk's weights (SampleExp `[1024c, min(1024c + 1024, vocab))`), i32 LE.
    /// @param tau `τ*` (TopPStep of round 16).
    /// @param chunk PickChunk's chunk `c`.
    /// @param rr PickChunk's draw within the chunk.
    /// @return The global token id.
    function pickToken(bytes calldata e, int64 tau, int64 chunk, int64 rr) external pure returns (int32) {
        uint256 n = LE.count32(e);
        if (chunk < 0) revert BadRange(0, 1, 0);
        uint256 base = uint256(int256(chunk)) * VOCAB_CHUNK;
        uint256 found = n - 1;
        assembly ("memory-safe") {
            // Clean the int64 arguments (assembly sees narrow types with unspecified high bits).
            let threshold := signextend(7, tau)
            let target := signextend(7, rr)
            let acc := 0
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let t := shr(224, calldataload(add(e.offset, shl(2, i))))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                let v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
                if iszero(slt(v, threshold)) {
                    acc := add(acc, v)
                    if sgt(acc, target) {
                        found := i
                        break
                    }
                }
            }
        }
        return int32(int256(base + found));
    }

    /// @notice The 64-bit sampling draw of generation `step` (docs/vir.md §6.4, `vir::sampling::draw`).
    /// @param key The sampling key.
    /// @param step The generation step.
    /// @return u ChaCha20 block `step`, words 0 (low) and 1 (high).
    function draw(bytes32 key, uint64 step) external pure returns (uint64) {
        return ChaCha20.draw(key, step);
    }

    /// @notice The sampling key `keccak256(be8(seed) ‖ be4(choiceIndex))` (docs/protocol.md §4.1).
    /// @param seed The request seed.
    /// @param choiceIndex The choice index.
    /// @return The ChaCha20 key.
    function samplingKey(uint64 seed, uint32 choiceIndex) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(seed, choiceIndex));
    }

    // -----------------------------------------------------------------------------------------------------------
    // Commitments (docs/protocol.md §1–3, docs/vir.md §5.3)

    /// @notice `protocol::tensor::verify_tensor_chunk`: whether `chunk` (exactly 1024 bytes) is chunk `index` of the
    ///         tensor with root `root`, with `proof` the siblings bottom-up (index bits above the depth rejected).
    /// @param root The tensor root.
    /// @param index The chunk index.
    /// @param chunk The chunk, zero-padded to 1024 bytes.
    /// @param proof Sibling hashes, bottom-up.
    /// @return Whether the chunk is included.
    function verifyTensorChunk(bytes32 root, uint64 index, bytes calldata chunk, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        return _verifyChunk(root, index, chunk, proof);
    }

    /// @notice `protocol::tensor::verify_tensor_chunk_with_len`: `verifyTensorChunk` for a tensor of `len` bytes,
    ///         also requiring `index < chunk_count(len)`, exactly `ceil(log2 chunk_count)` siblings, and zero bytes
    ///         past `len` in the chunk.
    /// @param root The tensor root.
    /// @param len The tensor's byte length.
    /// @param index The chunk index.
    /// @param chunk The chunk, zero-padded to 1024 bytes.
    /// @param proof Sibling hashes, bottom-up.
    /// @return Whether the chunk is included.
    function verifyTensorChunkWithLen(
        bytes32 root,
        uint64 len,
        uint64 index,
        bytes calldata chunk,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        uint256 chunks = len == 0 ? 1 : (uint256(len) + Protocol.CHUNK_BYTES - 1) / Protocol.CHUNK_BYTES;
        if (index >= chunks || proof.length != Protocol.treeDepth(chunks) || chunk.length != Protocol.CHUNK_BYTES) {
            return false;
        }
        uint256 from = uint256(index) * Protocol.CHUNK_BYTES;
        uint256 used = len > from ? len - from : 0;
        if (used > Protocol.CHUNK_BYTES) used = Protocol.CHUNK_BYTES;
        for (uint256 o = used; o < Protocol.CHUNK_BYTES; o += 32) {
            uint256 w;
            assembly ("memory-safe") {
                w := calldataload(add(chunk.offset, o))
            }
            uint256 rest = Protocol.CHUNK_BYTES - o;
            if (rest < 32) w >>= 8 * (32 - rest);
            if (w != 0) return false;
        }
        return _verifyChunk(root, index, chunk, proof);
    }

    /// @notice Trace leaf of op `index`: `keccak256(uint256(index) ‖ descriptorHash ‖ outputRoot)`.
    /// @param index The op index.
    /// @param descHash The op's descriptor hash.
    /// @param outputRoot The tensor root of its output.
    /// @return The leaf.
    function traceLeaf(uint64 index, bytes32 descHash, bytes32 outputRoot) external pure returns (bytes32) {
        return _traceLeaf(index, descHash, outputRoot);
    }

    /// @notice `protocol::trace::verify_trace_leaf`: whether op `index` with `descHash` and `outputRoot` is in the
    ///         trace `(traceRoot, opCount)` (index below the count, exact depth).
    /// @param traceRoot The request's trace root.
    /// @param opCount The request's op count.
    /// @param index The op index.
    /// @param descHash The op's descriptor hash.
    /// @param outputRoot The tensor root of its output.
    /// @param proof Sibling hashes, bottom-up.
    /// @return Whether the leaf is included.
    function verifyTraceLeaf(
        bytes32 traceRoot,
        uint64 opCount,
        uint64 index,
        bytes32 descHash,
        bytes32 outputRoot,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        return Protocol.verifyWithCount(traceRoot, opCount, _traceLeaf(index, descHash, outputRoot), index, proof);
    }

    /// @notice `OpDescriptor::hash`: `keccak256(be1(code) ‖ be2(layer) ‖ be1(round) ‖ be4(pos) ‖ be1(outType) ‖
    ///         be4(outLen) ‖ be4(outGroups))` (docs/vir.md §5.3).
    /// @param code Op code (0 embed, 1..23 layer op + 1, 64 + head slot).
    /// @param layer Layer (layer ops).
    /// @param round Top-p round (TopPChunkSum / TopPStep).
    /// @param pos Position.
    /// @param outType 1 = I32, 2 = I64, 3 = QVec.
    /// @param outLen Number of output values.
    /// @param outGroups QVec groups, else 0.
    /// @return The descriptor hash.
    function descriptorHash(
        uint8 code,
        uint16 layer,
        uint8 round,
        uint32 pos,
        uint8 outType,
        uint32 outLen,
        uint32 outGroups
    ) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(code, layer, round, pos, outType, outLen, outGroups));
    }

    // -----------------------------------------------------------------------------------------------------------
    // Internals

    /// @dev Reverts `BadRange` unless `[start, start + count)` lies within `n` outputs.
    function _checkRange(uint256 start, uint256 count, uint256 n) private pure {
        if (start > n || count > n - start) revert BadRange(start, count, n);
    }

    /// @dev RmsNorm's pre-quantization values `z_i = fl(fl(h_i, -k) · inv, -24) · g_i` (docs/vir.md §4.2).
    function _rmsZ(bytes calldata h, bytes calldata gamma, int64 epsFx) private pure returns (int256[] memory z) {
        uint256 d = LE.count32(h);
        if (gamma.length != h.length) revert BadLength(gamma.length);
        (int256 k, int256 inv) = _rmsScale(h, d, epsFx);
        z = new int256[](d);
        assembly ("memory-safe") {
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
            let o := add(z, 0x20)
            for { let i := 0 } lt(i, d) { i := add(i, 1) } {
                let q := shl(2, i)
                // h' = fl(h, -k): exact for k in [-23, 8] (|h'| <= 2^24).
                let hp := le32(add(h.offset, q))
                switch slt(k, 0)
                case 0 { hp := sar(k, hp) }
                default { hp := shl(sub(0, k), hp) }
                mstore(add(o, shl(5, i)), mul(sar(24, mul(hp, inv)), le32(add(gamma.offset, q))))
            }
        }
    }

    /// @dev RmsNorm's row scale: `k` and `inv = floor(2^48 / max(isqrt(ms), 1))` (docs/vir.md §4.2).
    function _rmsScale(bytes calldata h, uint256 d, int64 epsFx) private pure returns (int256 k, int256 inv) {
        uint256 m;
        assembly ("memory-safe") {
            let end := add(h.offset, shl(2, d))
            for { let p := h.offset } lt(p, end) { p := add(p, 4) } {
                let t := shr(224, calldataload(p))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                let v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
                if slt(v, 0) { v := sub(0, v) }
                if gt(v, m) { m := v }
            }
        }
        k = m == 0 ? int256(0) : VirMath.bitLen(m) - 24;
        int256 ss;
        assembly ("memory-safe") {
            let end := add(h.offset, shl(2, d))
            for { let p := h.offset } lt(p, end) { p := add(p, 4) } {
                let t := shr(224, calldataload(p))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                let hp := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
                // h' = fl(h, -k): exact for k in [-23, 8].
                switch slt(k, 0)
                case 0 { hp := sar(k, hp) }
                default { hp := shl(sub(0, k), hp) }
                ss := add(ss, mul(hp, hp))
            }
        }
        int256 epsTerm = VirMath.shift(epsFx, 2 * RESIDUAL_FRAC - 2 * k - 48);
        if (epsTerm > 1 << 60) epsTerm = 1 << 60;
        // The reference's `isqrt(ms as u64)`.
        int256 ms = ss / int256(d) + epsTerm;
        uint256 r = VirMath.isqrt(uint64(int64(ms)));
        if (r == 0) r = 1;
        inv = int256((uint256(1) << 48) / r);
    }




    /// @dev SwiGlu's pre-quantization values `h_i = fl(g_i · σ_i, -16) · u_i` (Q32).
    function _swigluH(bytes calldata gate, bytes calldata up, bytes calldata sig)
        private
        pure
        returns (int256[] memory z)
    {
        uint256 n = LE.count32(gate);
        if (up.length != gate.length) revert BadLength(up.length);
        if (sig.length != gate.length) revert BadLength(sig.length);
        z = new int256[](n);
        assembly ("memory-safe") {
            function le32(q) -> v {
                let t := shr(224, calldataload(q))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
            }
            let o := add(z, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let q := shl(2, i)
                let h := mul(sar(16, mul(le32(add(gate.offset, q)), le32(add(sig.offset, q)))), le32(add(up.offset, q)))
                mstore(add(o, shl(5, i)), h)
            }
        }
    }

    /// @dev `exp_lookup`'s index: `(inTable, diff >> 6)`; reverts on a negative index (the reference panics).
    function _expIndex(int256 diff) private pure returns (bool inTable, uint256 index) {
        int256 i = diff >> 6;
        if (i < 0) revert NegativeTableIndex(diff);
        return i < EXP_LEN ? (true, uint256(i)) : (false, 0);
    }

    /// @dev SampleExp's Q16 argument `(lmax - l) · 1000 / T`, truncating like Rust's i64 division.
    function _sampleDiff(int32 logit, int32 lmax, uint32 temperatureMilli) private pure returns (int256) {
        return (int256(lmax) - logit) * 1000 / int256(uint256(temperatureMilli));
    }

    /// @dev `topp_candidate`: `tauPrev | 2^(16 - round)`.
    function _candidate(int64 tauPrev, uint8 round) private pure returns (int64) {
        if (round >= TOPP_ROUNDS) revert BadRound(round);
        return tauPrev | int64(int256(1) << (TOPP_ROUNDS - 1 - round));
    }

    /// @dev `fixed::quantize` of one group `z` (exact values): the shift `s = quant_shift(max|z|)` and the int16
    ///      values `floor(z_i · 2^-s)` for `i` in `[start, start + count)` (a truncating cast, as Rust's `as i16`).
    function _quantize(int256[] memory z, uint256 start, uint256 count)
        private
        pure
        returns (int256 s, int16[] memory values)
    {
        uint256 n = z.length;
        _checkRange(start, count, n);
        uint256 m;
        assembly ("memory-safe") {
            let end := add(add(z, 0x20), shl(5, n))
            for { let p := add(z, 0x20) } lt(p, end) { p := add(p, 0x20) } {
                let v := mload(p)
                if slt(v, 0) { v := sub(0, v) }
                if gt(v, m) { m := v }
            }
        }
        s = VirMath.quantShift(m);
        values = new int16[](count);
        // floor(z · 2^-s): SAR for s >= 0; for s < 0 (max|z| < 2^14) an exact left shift by at most 14. The int16
        // cast keeps the low 16 bits, as Rust's `as i16`.
        assembly ("memory-safe") {
            let src := add(add(z, 0x20), shl(5, start))
            let dst := add(values, 0x20)
            for { let t := 0 } lt(t, count) { t := add(t, 1) } {
                let v := mload(add(src, shl(5, t)))
                switch slt(s, 0)
                case 0 { v := sar(s, v) }
                default { v := shl(sub(0, s), v) }
                mstore(add(dst, shl(5, t)), signextend(1, v))
            }
        }
    }

    /// @dev The `n` elements of an i32 LE array as int256 in memory.
    function _decodeI32(bytes calldata x, uint256 n) private pure returns (int256[] memory z) {
        z = new int256[](n);
        assembly ("memory-safe") {
            let o := add(z, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let t := shr(224, calldataload(add(x.offset, shl(2, i))))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                mstore(add(o, shl(5, i)), signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000))))
            }
        }
    }

    /// @dev Maximum of a non-empty i32 LE array (`i32::MIN` never needed: the array is non-empty).
    function _maxI32(bytes calldata x) private pure returns (int32) {
        LE.count32(x);
        return int32(LE.maxI32(x));
    }

    /// @dev Sum of a non-empty i64 LE array (exact).
    function _sumI64(bytes calldata x) private pure returns (int256 s) {
        LE.count64(x);
        s = LE.sumI64(x);
    }

    /// @dev `keccak256(uint256(index) ‖ descHash ‖ outputRoot)`.
    function _traceLeaf(uint64 index, bytes32 descHash, bytes32 outputRoot) private pure returns (bytes32) {
        return keccak256(abi.encode(uint256(index), descHash, outputRoot));
    }

    /// @dev `verify_tensor_chunk`: 1024-byte chunk, depth ≤ 64, no index bits above the depth, root matches.
    function _verifyChunk(bytes32 root, uint64 index, bytes calldata chunk, bytes32[] calldata proof)
        private
        pure
        returns (bool)
    {
        uint256 depth = proof.length;
        if (chunk.length != Protocol.CHUNK_BYTES || depth > 64 || (depth < 64 && index >> depth != 0)) return false;
        bytes32 node = keccak256(chunk);
        for (uint256 k; k < depth; ++k) {
            node = (index >> k) & 1 == 0 ? Protocol.hashPair(node, proof[k]) : Protocol.hashPair(proof[k], node);
        }
        return node == root;
    }

    /// @dev The little-endian u16 at calldata offset `p`.
    function _u16At(uint256 p) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            let t := shr(240, calldataload(p))
            v := or(shr(8, t), and(shl(8, t), 0xff00))
        }
    }

    /// @dev Q4_1 block at calldata `qp` (16 nibble bytes) against 32 int16 at `xp`:
    ///      `acc = Σ q_j x_j` (byte j: q_j low nibble, q_{j+16} high nibble) and `xs = Σ x_j`.
    function _dotQ41(uint256 qp, uint256 xp) private pure returns (int256 acc, int256 xs) {
        assembly ("memory-safe") {
            let qw := calldataload(qp)
            let x0 := calldataload(xp)
            let x1 := calldataload(add(xp, 32))
            // Swap the bytes of every 16-bit lane: lane j then holds x_j (x_{16+j}) big-endian.
            x0 := or(shl(8, and(x0, LANE_LO)), and(shr(8, x0), LANE_LO))
            x1 := or(shl(8, and(x1, LANE_LO)), and(shr(8, x1), LANE_LO))
            for { let j := 0 } lt(j, 16) { j := add(j, 1) } {
                let qb := byte(j, qw)
                let sh := sub(240, shl(4, j))
                let a := signextend(1, shr(sh, x0))
                let c := signextend(1, shr(sh, x1))
                acc := add(acc, add(mul(and(qb, 15), a), mul(shr(4, qb), c)))
                xs := add(xs, add(a, c))
            }
        }
    }

    /// @dev Q8_0 block at calldata `qp` (32 int8) against 32 int16 at `xp`: `Σ q_j x_j`.
    function _dotQ80(uint256 qp, uint256 xp) private pure returns (int256 acc) {
        assembly ("memory-safe") {
            let qw := calldataload(qp)
            let x0 := calldataload(xp)
            let x1 := calldataload(add(xp, 32))
            x0 := or(shl(8, and(x0, LANE_LO)), and(shr(8, x0), LANE_LO))
            x1 := or(shl(8, and(x1, LANE_LO)), and(shr(8, x1), LANE_LO))
            for { let j := 0 } lt(j, 16) { j := add(j, 1) } {
                let sh := sub(240, shl(4, j))
                let a := signextend(1, shr(sh, x0))
                let c := signextend(1, shr(sh, x1))
                acc := add(acc, add(mul(signextend(0, byte(j, qw)), a), mul(signextend(0, byte(add(j, 16), qw)), c)))
            }
        }
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Protocol} from "./Protocol.sol";
import {OneStepVerifier} from "./OneStepVerifier.sol";
import {OpDesc, ProgramConfig, VirProgram} from "./VirProgram.sol";

/// @notice Chunks of one tensor (docs/protocol.md §2) with their Merkle proofs. Each chunk is given **trimmed** to
///         the tensor's byte length (1024 bytes, or fewer for the last chunk); the verifier zero-pads it to 1024
///         bytes before hashing, so padding past the length is zero by construction.
struct Chunks {
    uint64[] index;
    bytes[] data;
    bytes32[][] proofs;
}

/// @notice An op output under the trace root: its output root, the trace-leaf proof (bottom-up siblings) and
///         the chunks read (`proveOutputMismatch`'s PickToken opening).
struct TraceOpening {
    bytes32 outputRoot;
    bytes32[] traceProof;
    Chunks chunks;
}

/// @notice An op output read by a one-step proof: its output root and the chunks read. The trace leaves of all
///         inputs are proven together by the proof's `traceNodes` multiproof; for the disputed op itself the leaf
///         is the dispute's current node; for an Embed op's prompt token `outputRoot` is the prompt's tensor root.
struct OutputOpening {
    bytes32 outputRoot;
    Chunks chunks;
}

/// @notice A weight matrix, norm weight vector or table under the model root (docs/vir.md §7). `kind` is the
///         matrix storage kind (1 = Q4_1, 2 = Q8_0; ignored for vectors and tables), `tensorRoot` the tensor root
///         of its committed bytes.
struct ModelOpening {
    uint8 kind;
    bytes32 tensorRoot;
    bytes32[] modelProof;
    Chunks chunks;
}

/// @notice A one-step proof of op `index`: the executor's output chunk(s) holding the disputed element, the op's
///         inputs under earlier trace leaves, the Merkle multiproof of those leaves under the trace root
///         (docs/protocol.md §1.1: the distinct input indices, ascending) and the op's weights/tables under the
///         model root, in the op's order (docs/disputes.md §4).
struct OneStepProof {
    OutputOpening out;
    OutputOpening[] inputs;
    bytes32[] traceNodes;
    ModelOpening[] weights;
}

/// @notice What the dispute game knows about the disputed op.
struct OneStepContext {
    bytes32 traceRoot;
    uint64 opCount;
    uint64 index;
    bytes32 executorLeaf;
    uint32 element;
    bytes32 modelRoot;
    bytes32 promptTensorRoot;
    uint32 temperatureMilli;
    uint32 topPMilli;
    uint64 seed;
    uint32 choiceIndex;
}

/// @title OneStepProver
/// @notice The bottom of the dispute game: recomputes element `element` of trace op `index` from inputs it
///         authenticates itself, and compares it with the executor's committed output.
///
///         The op's descriptor comes from the program layout (`VirProgram`, a function of the registered model
///         config, the prompt length and `index`), never from a party. Every input is read by tensor-chunk proofs
///         under the output root of the earlier trace leaf the program names; those leaves are proven together
///         under the executor's trace root by one multiproof (the challenger agreed to every leaf before `index`
///         while bisecting). Weights, norm weights and tables are read under the model root, at the leaf the layout
///         of docs/vir.md §7 names; SwiGlu's SIGMOID lookups come from the prover's held copy of the VIR table
///         when the model's SIGMOID leaf is that table.
///         The arithmetic is `OneStepVerifier`'s (bit-identical to `vir::ops`).
///
///         Element `e` of a QVec output is its int16 value `e` together with its group's exponent; a last-chunk
///         opening must show zero-subtree siblings to its right, so a root with junk past the length cannot be
///         opened there.
contract OneStepProver {
    error BadChunks(string what);
    error BadOpening(string what);
    error ElementOutOfRange(uint32 element, uint32 outLen);
    error ValueOutOfRange(string what);

    uint256 internal constant CHUNK = 1024;
    uint256 internal constant EXP_LEN = 1 << 14;
    uint256 internal constant SIGMOID_LEN = 1 << 15;
    /// @dev SIGMOID entries per table part (16 chunks): a part's code is `0x00 ‖ 16 KiB` of the table.
    uint256 internal constant PART_ENTRIES = 1 << 12;

    /// @notice The arithmetic.
    OneStepVerifier public immutable verifier;
    /// @notice Tensor root of the SIGMOID table held in `sigmoidParts` (zero when none is held). A SwiGlu proof
    ///         whose SIGMOID model leaf has this tensor root reads its entries from that code instead of calldata.
    bytes32 public immutable sigmoidRoot;
    /// @notice The contracts whose code holds the SIGMOID table, 16 KiB each after a leading STOP byte.
    address[] public sigmoidParts;

    /// @dev Per-call state.
    struct S {
        ProgramConfig c;
        OpDesc o;
        uint256 e;
        bytes32 traceRoot;
        uint256 opCount;
        bytes32 modelRoot;
        uint256 modelLeaves;
        // The input trace leaves read so far: `nLeaves` pairs (index, leaf), checked together at the end.
        uint256 nLeaves;
        uint256[] leafIndex;
        bytes32[] leafHash;
    }

    /// @param verifier_ The op arithmetic.
    /// @param sigmoidParts_ Contracts holding the SIGMOID table (each `0x00 ‖` 4,096 entries, i32 LE), or none.
    constructor(OneStepVerifier verifier_, address[] memory sigmoidParts_) {
        verifier = verifier_;
        bytes32 root;
        if (sigmoidParts_.length != 0) {
            if (sigmoidParts_.length * PART_ENTRIES != SIGMOID_LEN) revert BadChunks("sigmoid parts");
            uint256 perPart = 4 * PART_ENTRIES / CHUNK;
            bytes32[] memory leaves = new bytes32[](SIGMOID_LEN * 4 / CHUNK);
            for (uint256 c; c < leaves.length; ++c) {
                address part = sigmoidParts_[c / perPart];
                if (part.code.length != 1 + 4 * PART_ENTRIES) revert BadChunks("sigmoid part size");
                uint256 off = 1 + (c % perPart) * CHUNK;
                bytes32 h;
                assembly ("memory-safe") {
                    let buf := mload(0x40)
                    extcodecopy(part, buf, off, 1024)
                    h := keccak256(buf, 1024)
                }
                leaves[c] = h;
            }
            root = Protocol.merkleRoot(leaves);
            sigmoidParts = sigmoidParts_;
        }
        sigmoidRoot = root;
    }

    /// @notice Op `x.index`'s descriptor under `c`.
    function descriptorOf(ProgramConfig calldata c, uint64 index) external pure returns (OpDesc memory) {
        return VirProgram.descriptor(c, index);
    }

    /// @notice The op count of a run of `generated` tokens under `c`.
    function opCountOf(ProgramConfig calldata c, uint256 generated) external pure returns (uint256) {
        return VirProgram.opCount(c, generated);
    }

    /// @notice The token PickToken of generation step `step` committed in a trace (for the output-mismatch fault):
    ///         `pick` opens trace op `headIndex(promptLen - 1 + step, 43)` under `(traceRoot, opCount)`.
    function pickedToken(
        ProgramConfig calldata c,
        bytes32 traceRoot,
        uint64 opCount,
        uint32 step,
        TraceOpening calldata pick
    ) external pure returns (int256) {
        S memory s;
        s.c = c;
        s.traceRoot = traceRoot;
        s.opCount = opCount;
        uint256 j = VirProgram.headIndex(s.c, c.promptLen - 1 + step, 43);
        OpDesc memory dj = VirProgram.descriptor(s.c, j);
        if (!Protocol.verifyWithCount(traceRoot, opCount, _traceLeaf(j, VirProgram.hash(dj), pick.outputRoot), j, pick.traceProof)) {
            revert BadOpening("pick leaf");
        }
        return _i32(_range(pick.outputRoot, 4, 0, 4, pick.chunks), 0);
    }

    /// @notice Token `step` of a token list with tensor root `root` and `len` tokens, from its chunk.
    function tokenAt(bytes32 root, uint256 len, uint256 step, Chunks calldata ch) external pure returns (uint256) {
        return uint32(uint256(_i32(_range(root, 4 * len, 4 * step, 4 * step + 4, ch), 0)));
    }

    /// @notice Checks the one-step proof `p` of element `x.element` of op `x.index`.
    /// @return executorRight Whether the executor's committed element equals the recomputed one.
    /// @return computed The recomputed value (I32 / I64 element or QVec value).
    /// @return claimed The executor's value.
    function check(OneStepContext calldata x, ProgramConfig calldata c, OneStepProof calldata p)
        external
        view
        returns (bool executorRight, int256 computed, int256 claimed)
    {
        S memory s;
        s.c = c;
        s.o = VirProgram.descriptor(s.c, x.index);
        if (x.element >= s.o.outLen) revert ElementOutOfRange(x.element, s.o.outLen);
        s.e = x.element;
        s.traceRoot = x.traceRoot;
        s.opCount = x.opCount;
        s.modelRoot = x.modelRoot;
        s.modelLeaves = 9 * c.nLayers + (c.tiedOutput ? 7 : 8);
        s.leafIndex = new uint256[](p.inputs.length);
        s.leafHash = new bytes32[](p.inputs.length);
        // The executor's committed element (and exponent for QVec outputs).
        if (_traceLeaf(x.index, VirProgram.hash(s.o), p.out.outputRoot) != x.executorLeaf) revert BadOpening("out");
        int256 claimedExp;
        (claimed, claimedExp) = _claimed(s, p.out);
        int256 exp;
        (computed, exp) = _compute(s, x, p);
        _verifyInputLeaves(s, p.traceNodes);
        executorRight = claimed == computed && (s.o.outType != 3 || claimedExp == exp);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Dispatch

    function _compute(S memory s, OneStepContext calldata x, OneStepProof calldata p)
        internal
        view
        returns (int256 v, int256 exp)
    {
        uint256 code = s.o.code;
        if (code == 0) return (_embed(s, x, p), 0);
        if (code == 1 || code == 18 || code == 64) return _norm(s, p);
        if (code == 2 || code == 3 || code == 4 || code == 16 || code == 19 || code == 20 || code == 22 || code == 65) {
            return (_matmul(s, p), 0);
        }
        if (code == 5) return _qrope(s, p);
        if (code == 6) return (_krope(s, p), 0);
        if (code >= 7 && code <= 15) return _attention(s, p);
        if (code == 17 || code == 23) return (_residual(s, p), 0);
        if (code == 21) return _swiglu(s, p);
        return (_head(s, x, p), 0);
    }

    function _attention(S memory s, OneStepProof calldata p) internal view returns (int256, int256) {
        uint256 code = s.o.code;
        if (code == 7) return (_scores(s, p), 0);
        if (code == 8 || code == 11) return (_chunkReduce(s, p), 0);
        if (code == 9 || code == 12) return (_rowReduce(s, p), 0);
        if (code == 10) return (_attnExp(s, p), 0);
        if (code == 13) return (_weightedSum(s, p), 0);
        if (code == 14) return (_attnOut(s, p), 0);
        // 15 AttnOutQuant
        bytes memory a = _in(s, p, 0, _li(s, 14), 0, 4 * s.c.dModel);
        (int32 ex, int16[] memory vals) = verifier.quantizeVec(a, 16, s.e, 1);
        return (vals[0], ex);
    }

    // -----------------------------------------------------------------------------------------------------------
    // Body ops

    function _embed(S memory s, OneStepContext calldata x, OneStepProof calldata p) internal view returns (int256) {
        uint256 pos = s.o.pos;
        uint256 token;
        if (pos < s.c.promptLen) {
            OutputOpening calldata t = p.inputs[0];
            if (t.outputRoot != x.promptTensorRoot) revert BadOpening("prompt");
            token = uint32(uint256(_i32(_range(t.outputRoot, 4 * s.c.promptLen, 4 * pos, 4 * pos + 4, t.chunks), 0)));
        } else {
            int256 t = _i32(_in(s, p, 0, VirProgram.headIndex(s.c, pos - 1, 43), 0, 4), 0);
            if (t < 0) revert ValueOutOfRange("token");
            token = uint256(t);
        }
        if (token >= s.c.vocabSize) revert ValueOutOfRange("token");
        uint256 nb = s.c.dModel / 32;
        (uint8 kind, uint256 bb) = _matrix(s, p.weights[0], 0, s.c.vocabSize, s.c.dModel);
        uint256 off = (token * nb + s.e / 32) * bb;
        bytes memory blk = _range(p.weights[0].tensorRoot, s.c.vocabSize * nb * bb, off, off + bb, p.weights[0].chunks);
        return verifier.embed(blk, kind, s.e % 32);
    }

    /// @dev RmsNorm: AttnNorm (1), FfnNorm (18), OutNorm (64).
    function _norm(S memory s, OneStepProof calldata p) internal view returns (int256, int256) {
        (uint256 hIdx, uint256 gLeaf) = _normSources(s);
        bytes memory h = _in(s, p, 0, hIdx, 0, 4 * s.c.dModel);
        bytes memory g = _vector(s, p.weights[0], gLeaf, 4 * s.c.dModel, 0, 4 * s.c.dModel);
        (int32 ex, int16[] memory vals) = verifier.rmsNorm(h, g, s.c.epsFx, s.e, 1);
        return (vals[0], ex);
    }

    /// @dev (input op, gamma model leaf) of a norm op.
    function _normSources(S memory s) internal pure returns (uint256 hIdx, uint256 gLeaf) {
        uint256 l = s.o.layer;
        if (s.o.code == 1) {
            hIdx = _hIn(s, l);
            gLeaf = 1 + 9 * l;
        } else if (s.o.code == 18) {
            hIdx = _li(s, 17);
            gLeaf = 1 + 9 * l + 5;
        } else {
            hIdx = VirProgram.layerIndex(s.c, s.o.pos, s.c.nLayers - 1, 23);
            gLeaf = 9 * s.c.nLayers + 1;
        }
    }

    function _matmul(S memory s, OneStepProof calldata p) internal view returns (int256) {
        (uint256 xIdx, uint256 leaf, uint256 rows, uint256 cols, uint8 frac) = _matmulSources(s);
        bytes memory xv = _in(s, p, 0, xIdx, 0, 4 + 2 * cols);
        (bytes memory row, uint8 kind) = _row(s, p.weights[0], leaf, rows, cols);
        return verifier.matmulRow(row, kind, xv, frac);
    }

    /// @dev Row `s.e` of the matrix at model leaf `leaf`.
    function _row(S memory s, ModelOpening calldata w, uint256 leaf, uint256 rows, uint256 cols)
        internal
        pure
        returns (bytes memory row, uint8 kind)
    {
        uint256 bb;
        (kind, bb) = _matrix(s, w, leaf, rows, cols);
        uint256 rowBytes = (cols / 32) * bb;
        row = _range(w.tensorRoot, rows * rowBytes, s.e * rowBytes, (s.e + 1) * rowBytes, w.chunks);
    }

    /// @dev (input op, model leaf, rows, cols, output fraction) of a matmul op.
    function _matmulSources(S memory s)
        internal
        pure
        returns (uint256 xIdx, uint256 leaf, uint256 rows, uint256 cols, uint8 frac)
    {
        uint256 code = s.o.code;
        uint256 l = s.o.layer;
        (rows, cols, frac) = (s.c.dModel, s.c.dModel, 16);
        if (code == 2 || code == 3 || code == 4) {
            xIdx = _li(s, 1);
            leaf = 1 + 9 * l + code - 1;
            if (code != 2) rows = s.c.nKvHeads * s.c.headDim;
        } else if (code == 16) {
            xIdx = _li(s, 15);
            leaf = 1 + 9 * l + 4;
            frac = 12;
        } else if (code == 19 || code == 20) {
            xIdx = _li(s, 18);
            leaf = 1 + 9 * l + code - 13;
            rows = s.c.dFf;
        } else if (code == 22) {
            xIdx = _li(s, 21);
            leaf = 1 + 9 * l + 8;
            cols = s.c.dFf;
            frac = 12;
        } else {
            // 65 Logits
            xIdx = VirProgram.headIndex(s.c, s.o.pos, 0);
            leaf = s.c.tiedOutput ? 0 : 9 * s.c.nLayers + 2;
            rows = s.c.vocabSize;
        }
    }

    function _qrope(S memory s, OneStepProof calldata p) internal view returns (int256, int256) {
        uint256 hd = s.c.headDim;
        uint256 h = s.e / hd;
        uint256 pos = s.o.pos;
        bytes memory xv = _in(s, p, 0, _li(s, 2), 4 * h * hd, 4 * (h + 1) * hd);
        bytes memory row =
            _vector(s, p.weights[0], _ropeLeaf(s), 4 * s.c.contextLength * hd, 4 * pos * hd, 4 * (pos + 1) * hd);
        (int32 ex, int16[] memory vals) = verifier.ropeQuant(xv, row, s.e % hd, 1);
        return (vals[0], ex);
    }

    function _krope(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 hd = s.c.headDim;
        uint256 pe = s.e & ~uint256(1);
        bytes memory ab = _in(s, p, 0, _li(s, 3), 4 * pe, 4 * pe + 8);
        uint256 t = s.o.pos * hd + ((s.e % hd) & ~uint256(1));
        bytes memory cs = _vector(s, p.weights[0], _ropeLeaf(s), 4 * s.c.contextLength * hd, 4 * t, 4 * t + 8);
        (int32 r0, int32 r1) =
            verifier.rope(int32(_i32(ab, 0)), int32(_i32(ab, 4)), int32(_i32(cs, 0)), int32(_i32(cs, 4)));
        return s.e & 1 == 0 ? int256(r0) : int256(r1);
    }

    function _scores(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 n = uint256(s.o.pos) + 1;
        uint256 h = s.e / n;
        uint256 hd = s.c.headDim;
        uint256 nh = s.c.nHeads;
        // QRope head h: exponent at 4h, values at 4·nHeads + 2·h·hd.
        bytes memory q = _in(s, p, 0, _li(s, 5), 4 * h, 4 * nh + 2 * (h + 1) * hd);
        bytes memory k = _key(s, p, h, s.e % n);
        return verifier.attnScore(_slice(q, 4 * nh + 2 * h * hd - 4 * h, 2 * hd), int32(_i32(q, 0)), k, s.c.scoreScale);
    }

    /// @dev Head kv(h) of KRope at position j of the disputed op's layer.
    function _key(S memory s, OneStepProof calldata p, uint256 h, uint256 j) internal pure returns (bytes memory) {
        uint256 hd = s.c.headDim;
        uint256 kv = h / (s.c.nHeads / s.c.nKvHeads);
        return _in(s, p, 1, VirProgram.layerIndex(s.c, j, s.o.layer, 6), 4 * kv * hd, 4 * (kv + 1) * hd);
    }

    /// @dev AttnChunkMax (8) over AttnScores, AttnChunkSum (11) over AttnExp.
    function _chunkReduce(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 n = uint256(s.o.pos) + 1;
        uint256 nc = VirProgram.nChunks(n, 64);
        uint256 h = s.e / nc;
        uint256 a = 64 * (s.e % nc);
        uint256 b = a + 64 < n ? a + 64 : n;
        bool isMax = s.o.code == 8;
        bytes memory v = _in(s, p, 0, _li(s, isMax ? 7 : 10), 4 * (h * n + a), 4 * (h * n + b));
        return isMax ? int256(verifier.chunkMax(v)) : int256(verifier.chunkSum(v));
    }

    /// @dev AttnMax (9) over AttnChunkMax, AttnSum (12) over AttnChunkSum.
    function _rowReduce(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 nc = VirProgram.nChunks(uint256(s.o.pos) + 1, 64);
        bool isMax = s.o.code == 9;
        uint256 w = isMax ? 4 : 8;
        bytes memory v = _in(s, p, 0, _li(s, isMax ? 8 : 11), w * s.e * nc, w * (s.e + 1) * nc);
        return isMax ? int256(verifier.rowMax(v)) : int256(verifier.rowSum(v));
    }

    function _attnExp(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 h = s.e / (uint256(s.o.pos) + 1);
        int256 sc = _i32(_in(s, p, 0, _li(s, 7), 4 * s.e, 4 * s.e + 4), 0);
        int256 mx = _i32(_in(s, p, 1, _li(s, 9), 4 * h, 4 * h + 4), 0);
        (bool inTable, uint256 idx) = verifier.attnExpIndex(int32(sc), int32(mx));
        int256 entry;
        if (inTable) entry = _i32(_vector(s, p.weights[0], _expLeaf(s), 4 * EXP_LEN, 4 * idx, 4 * idx + 4), 0);
        return verifier.attnExp(int32(sc), int32(mx), int32(entry));
    }

    function _weightedSum(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 n = uint256(s.o.pos) + 1;
        uint256 nc = VirProgram.nChunks(n, 64);
        uint256 h = (s.e / nc) / s.c.headDim;
        uint256 a = 64 * (s.e % nc);
        uint256 b = a + 64 < n ? a + 64 : n;
        bytes memory w = _in(s, p, 0, _li(s, 10), 4 * (h * n + a), 4 * (h * n + b));
        return verifier.attnWeightedSum(w, _values(s, p, h, a, b));
    }

    /// @dev `v_j[kv(h)][d]` for positions `j` in `[a, b)`, each from VProj at `j` (inputs 1 ..).
    function _values(S memory s, OneStepProof calldata p, uint256 h, uint256 a, uint256 b)
        internal
        pure
        returns (bytes memory v)
    {
        uint256 nc = VirProgram.nChunks(uint256(s.o.pos) + 1, 64);
        uint256 col = (h / (s.c.nHeads / s.c.nKvHeads)) * s.c.headDim + (s.e / nc) % s.c.headDim;
        v = new bytes(4 * (b - a));
        for (uint256 t; t < b - a; ++t) {
            _copy4(v, 4 * t, _valueAt(s, p, t, a + t, col));
        }
    }

    function _valueAt(S memory s, OneStepProof calldata p, uint256 t, uint256 j, uint256 col)
        internal
        pure
        returns (bytes memory)
    {
        return _in(s, p, 1 + t, VirProgram.layerIndex(s.c, j, s.o.layer, 4), 4 * col, 4 * col + 4);
    }

    /// @dev `dst[off .. off + 4] = src[0 .. 4]`.
    function _copy4(bytes memory dst, uint256 off, bytes memory src) internal pure {
        assembly ("memory-safe") {
            let q := add(add(dst, 0x20), off)
            mstore(q, or(and(mload(add(src, 0x20)), shl(224, 0xffffffff)), and(mload(q), not(shl(224, 0xffffffff)))))
        }
    }

    function _attnOut(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 nc = VirProgram.nChunks(uint256(s.o.pos) + 1, 64);
        uint256 h = s.e / s.c.headDim;
        bytes memory w = _in(s, p, 0, _li(s, 13), 8 * s.e * nc, 8 * (s.e + 1) * nc);
        int256 l = _i64(_in(s, p, 1, _li(s, 12), 8 * h, 8 * h + 8), 0);
        return verifier.attnOut(w, int64(l));
    }

    /// @dev AttnResidual (17) = h_in + OProj; FfnResidual (23) = AttnResidual + DownProj.
    function _residual(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 aIdx = s.o.code == 17 ? _hIn(s, s.o.layer) : _li(s, 17);
        uint256 bIdx = _li(s, s.o.code == 17 ? 16 : 22);
        int256 a = _i32(_in(s, p, 0, aIdx, 4 * s.e, 4 * s.e + 4), 0);
        int256 b = _i32(_in(s, p, 1, bIdx, 4 * s.e, 4 * s.e + 4), 0);
        return verifier.residualAdd(int32(a), int32(b));
    }

    function _swiglu(S memory s, OneStepProof calldata p) internal view returns (int256, int256) {
        uint256 n = s.c.dFf;
        bytes memory g = _in(s, p, 0, _li(s, 19), 0, 4 * n);
        bytes memory u = _in(s, p, 1, _li(s, 20), 0, 4 * n);
        bytes memory sig = _sigmoids(s, p.weights[0], g, n);
        (int32 ex, int16[] memory vals) = verifier.swiglu(g, u, sig, s.e, 1);
        return (vals[0], ex);
    }

    /// @dev `SIGMOID[sigmoidIndex(g_i)]` for every gate value: from the table held in `sigmoidParts` when the
    ///      model's SIGMOID leaf is that table and `w` opens no chunk, else from the distinct table chunks in `w`.
    function _sigmoids(S memory s, ModelOpening calldata w, bytes memory g, uint256 n)
        internal
        view
        returns (bytes memory sig)
    {
        uint256 len = 4 * SIGMOID_LEN;
        _leaf(s, w.tensorRoot, _expLeaf(s) + 1, w.modelProof);
        Chunks calldata ch = w.chunks;
        if (ch.index.length == 0 && w.tensorRoot == sigmoidRoot && sigmoidRoot != bytes32(0)) {
            return _heldSigmoids(g, n);
        }
        if (ch.data.length != ch.index.length || ch.proofs.length != ch.index.length) revert BadChunks("shape");
        // slot[c] = position + 1 of table chunk c in `ch` (128 chunks of 256 entries).
        uint256[] memory slot = new uint256[](len / CHUNK);
        for (uint256 k; k < ch.index.length; ++k) {
            uint256 c = ch.index[k];
            if (c >= slot.length || slot[c] != 0) revert BadChunks("index");
            _verifyChunk(w.tensorRoot, len, c, ch.data[k], ch.proofs[k]);
            slot[c] = k + 1;
        }
        sig = new bytes(4 * n);
        for (uint256 i; i < n; ++i) {
            int256 idx = (_i32(g, 4 * i) >> 6) + int256(SIGMOID_LEN >> 1);
            if (idx < 0) idx = 0;
            if (idx >= int256(SIGMOID_LEN)) idx = int256(SIGMOID_LEN) - 1;
            uint256 k = slot[uint256(idx) >> 8];
            if (k == 0) revert BadChunks("missing");
            bytes calldata data = ch.data[k - 1];
            uint256 off = (uint256(idx) & 255) * 4;
            assembly ("memory-safe") {
                let dst := add(add(sig, 0x20), shl(2, i))
                let word := and(calldataload(add(data.offset, off)), shl(224, 0xffffffff))
                mstore(dst, or(word, and(mload(dst), not(shl(224, 0xffffffff)))))
            }
        }
    }

    /// @dev `SIGMOID[sigmoidIndex(g_i)]` for every gate value, read from the code of `sigmoidParts`.
    function _heldSigmoids(bytes memory g, uint256 n) internal view returns (bytes memory sig) {
        address[] memory parts = sigmoidParts;
        sig = new bytes(4 * n);
        assembly ("memory-safe") {
            let gp := add(g, 0x20)
            let dst := add(sig, 0x20)
            let pp := add(parts, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                // i32 LE gate value, sign-extended
                let t := shr(224, mload(add(gp, shl(2, i))))
                t := or(shr(8, and(t, 0xff00ff00)), shl(8, and(t, 0x00ff00ff)))
                let v := signextend(3, or(shr(16, t), and(shl(16, t), 0xffff0000)))
                let idx := add(sar(6, v), shl(14, 1))
                if slt(idx, 0) { idx := 0 }
                if sgt(idx, sub(shl(15, 1), 1)) { idx := sub(shl(15, 1), 1) }
                extcodecopy(
                    mload(add(pp, shl(5, shr(12, idx)))), add(dst, shl(2, i)), add(1, shl(2, and(idx, 4095))), 4
                )
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Head ops (code 64 + slot; OutNorm and Logits are dispatched above)

    function _head(S memory s, OneStepContext calldata x, OneStepProof calldata p) internal view returns (int256) {
        uint256 slot = s.o.code - 64;
        if (slot == 2) return _logitChunkMax(s, p);
        if (slot == 3) return _logitMax(s, p);
        if (slot == 4) return _sampleExp(s, x, p);
        if (slot == 6) return _sampleSum(s, x, p);
        if (slot == 5 || slot == 41 || (slot >= 7 && slot < 41 && (slot - 7) % 2 == 0)) return _maskedSum(s, p);
        if (slot >= 8 && slot <= 40) return _topPStep(s, p);
        if (slot == 42) return _pickChunk(s, x, p);
        return _pickToken(s, p);
    }

    function _nv(S memory s) internal pure returns (uint256) {
        return VirProgram.nChunks(s.c.vocabSize, 1024);
    }

    /// @dev LogitChunkMax: (max, index) of chunk e / 2.
    function _logitChunkMax(S memory s, OneStepProof calldata p) internal view returns (int256) {
        (uint256 a, uint256 b) = _vocabChunk(s, s.e / 2);
        bytes memory v = _in(s, p, 0, _hi(s, 1), 4 * a, 4 * b);
        (int32 mx, int32 ix) = verifier.logitChunkMax(v, s.e / 2);
        return s.e % 2 == 0 ? int256(mx) : int256(ix);
    }

    function _logitMax(S memory s, OneStepProof calldata p) internal view returns (int256) {
        (int32 mx, int32 ix) = verifier.logitMax(_in(s, p, 0, _hi(s, 2), 0, 8 * _nv(s)));
        return s.e == 0 ? int256(mx) : int256(ix);
    }

    function _sampleSum(S memory s, OneStepContext calldata x, OneStepProof calldata p) internal view returns (int256) {
        (int64 total, int64 target) = verifier.sampleSum(_in(s, p, 0, _hi(s, 5), 0, 8 * _nv(s)), x.topPMilli);
        return s.e == 0 ? int256(total) : int256(target);
    }

    /// @dev Masked chunk sums of SampleExp chunk e: SampleChunkSum (τ = 0), TopPChunkSum(r), KeptChunkSum (τ*).
    function _maskedSum(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint256 slot = s.o.code - 64;
        (uint256 a, uint256 b) = _vocabChunk(s, s.e);
        bytes memory w = _in(s, p, 0, _hi(s, 4), 4 * a, 4 * b);
        int64 tau;
        if (slot == 41) {
            tau = int64(_i64(_in(s, p, 1, _hi(s, 40), 0, 8), 0));
        } else if (slot != 5) {
            uint8 r = s.o.round;
            int64 prev = r == 0 ? int64(0) : int64(_i64(_in(s, p, 1, _hi(s, 6 + 2 * uint256(r)), 0, 8), 0));
            tau = verifier.topPCandidate(prev, r);
        }
        return verifier.maskedChunkSum(w, tau);
    }

    /// @dev TopPStep(r): TopPChunkSum(r), SampleSum's target, τ_{r-1}.
    function _topPStep(S memory s, OneStepProof calldata p) internal view returns (int256) {
        uint8 r = s.o.round;
        bytes memory sums = _in(s, p, 0, _hi(s, 7 + 2 * uint256(r)), 0, 8 * _nv(s));
        int64 target = int64(_i64(_in(s, p, 1, _hi(s, 6), 8, 16), 0));
        int64 prev = r == 0 ? int64(0) : int64(_i64(_in(s, p, 2, _hi(s, 6 + 2 * uint256(r)), 0, 8), 0));
        return verifier.topPStep(sums, prev, r, target);
    }

    function _pickChunk(S memory s, OneStepContext calldata x, OneStepProof calldata p) internal view returns (int256) {
        bytes memory kept = _in(s, p, 0, _hi(s, 41), 0, 8 * _nv(s));
        (int64 c, int64 rr) = verifier.pickChunk(
            kept, keccak256(abi.encodePacked(x.seed, x.choiceIndex)), uint64(s.o.pos + 1 - s.c.promptLen)
        );
        return s.e == 0 ? int256(c) : int256(rr);
    }

    function _pickToken(S memory s, OneStepProof calldata p) internal view returns (int256) {
        bytes memory pc = _in(s, p, 0, _hi(s, 42), 0, 16);
        int256 chunk = _i64(pc, 0);
        if (chunk < 0 || uint256(chunk) >= _nv(s)) revert ValueOutOfRange("chunk");
        int64 tauStar = int64(_i64(_in(s, p, 1, _hi(s, 40), 0, 8), 0));
        (uint256 lo, uint256 hi) = _vocabChunk(s, uint256(chunk));
        bytes memory w = _in(s, p, 2, _hi(s, 4), 4 * lo, 4 * hi);
        return verifier.pickToken(w, tauStar, int64(chunk), int64(_i64(pc, 8)));
    }

    function _sampleExp(S memory s, OneStepContext calldata x, OneStepProof calldata p)
        internal
        view
        returns (int256)
    {
        int32 logit = int32(_i32(_in(s, p, 0, _hi(s, 1), 4 * s.e, 4 * s.e + 4), 0));
        bytes memory lm = _in(s, p, 1, _hi(s, 3), 0, 8);
        int32 lmax = int32(_i32(lm, 0));
        (bool inTable, uint256 idx) = verifier.sampleExpIndex(logit, lmax, x.temperatureMilli);
        int256 entry;
        if (inTable) entry = _i32(_vector(s, p.weights[0], _expLeaf(s), 4 * EXP_LEN, 4 * idx, 4 * idx + 4), 0);
        return verifier.sampleExp(logit, uint32(s.e), lmax, int32(_i32(lm, 4)), x.temperatureMilli, int32(entry));
    }

    // -----------------------------------------------------------------------------------------------------------
    // Indices and model-root layout (docs/vir.md §5.2, §7)

    /// @dev Layer op `code` of the disputed op's layer and position.
    function _li(S memory s, uint256 code) internal pure returns (uint256) {
        return VirProgram.layerIndex(s.c, s.o.pos, s.o.layer, code);
    }

    /// @dev Head slot `slot` at the disputed op's position.
    function _hi(S memory s, uint256 slot) internal pure returns (uint256) {
        return VirProgram.headIndex(s.c, s.o.pos, slot);
    }

    /// @dev `h_in(l)`: Embed for layer 0, else FfnResidual of layer l - 1.
    function _hIn(S memory s, uint256 l) internal pure returns (uint256) {
        return l == 0
            ? VirProgram.positionStart(s.c, s.o.pos)
            : VirProgram.layerIndex(s.c, s.o.pos, l - 1, 23);
    }

    /// @dev Model leaf of `table.exp` (then sigmoid, rope).
    function _expLeaf(S memory s) internal pure returns (uint256) {
        return 9 * s.c.nLayers + (s.c.tiedOutput ? 2 : 3);
    }

    function _ropeLeaf(S memory s) internal pure returns (uint256) {
        return _expLeaf(s) + 2;
    }

    function _vocabChunk(S memory s, uint256 c) internal pure returns (uint256 a, uint256 b) {
        a = 1024 * c;
        b = a + 1024 < s.c.vocabSize ? a + 1024 : s.c.vocabSize;
    }

    // -----------------------------------------------------------------------------------------------------------
    // Authenticated reads

    /// @dev The executor's element: `(value, exponent)` (exponent only for QVec outputs).
    function _claimed(S memory s, OutputOpening calldata out) internal pure returns (int256 v, int256 exp) {
        uint256 len = VirProgram.byteLen(s.o);
        uint256 e = s.e;
        if (s.o.outType == 1) return (_i32(_range(out.outputRoot, len, 4 * e, 4 * e + 4, out.chunks), 0), 0);
        if (s.o.outType == 2) return (_i64(_range(out.outputRoot, len, 8 * e, 8 * e + 8, out.chunks), 0), 0);
        uint256 g = e / (s.o.outLen / s.o.outGroups);
        uint256 from = 4 * g;
        uint256 to = 4 * uint256(s.o.outGroups) + 2 * e + 2;
        bytes memory b = _range(out.outputRoot, len, from, to, out.chunks);
        return (_i16(b, to - from - 2), _i32(b, 0));
    }

    /// @dev Bytes `[from, to)` of the output of trace op `j`, from `p.inputs[k]`. Its trace leaf is recorded in `s`
    ///      and proven under the trace root with all the others by `_verifyInputLeaves`.
    function _in(S memory s, OneStepProof calldata p, uint256 k, uint256 j, uint256 from, uint256 to)
        internal
        pure
        returns (bytes memory)
    {
        OutputOpening calldata t = p.inputs[k];
        OpDesc memory dj = VirProgram.descriptor(s.c, j);
        if (j >= s.opCount) revert BadOpening("input leaf");
        uint256 n = s.nLeaves;
        s.leafIndex[n] = j;
        s.leafHash[n] = _traceLeaf(j, VirProgram.hash(dj), t.outputRoot);
        s.nLeaves = n + 1;
        return _range(t.outputRoot, VirProgram.byteLen(dj), from, to, t.chunks);
    }

    /// @dev Proves every input leaf recorded by `_in` under the trace root with one multiproof (docs/protocol.md
    ///      §1.1): the leaves sorted by index (a repeated index must repeat its leaf and counts once), `nodes` the
    ///      siblings the bottom-up pass consumes. With no input leaf, `nodes` must be empty.
    function _verifyInputLeaves(S memory s, bytes32[] calldata nodes) internal pure {
        uint256[] memory idx = s.leafIndex;
        bytes32[] memory h = s.leafHash;
        uint256 n = s.nLeaves;
        // Insertion sort (the inputs are nearly sorted: linear for AttnWeightedSum's values), then deduplicate.
        for (uint256 i = 1; i < n; ++i) {
            (uint256 ki, bytes32 hi) = (idx[i], h[i]);
            uint256 j = i;
            while (j > 0 && idx[j - 1] > ki) {
                (idx[j], h[j]) = (idx[j - 1], h[j - 1]);
                --j;
            }
            (idx[j], h[j]) = (ki, hi);
        }
        uint256 m;
        for (uint256 i; i < n; ++i) {
            if (m > 0 && idx[m - 1] == idx[i]) {
                if (h[m - 1] != h[i]) revert BadOpening("input leaf");
                continue;
            }
            (idx[m], h[m]) = (idx[i], h[i]);
            ++m;
        }
        if (m == 0) {
            if (nodes.length != 0) revert BadOpening("trace nodes");
            return;
        }
        if (_multiRoot(Protocol.treeDepth(s.opCount), idx, h, m, nodes) != s.traceRoot) revert BadOpening("input leaf");
    }

    /// @dev The root implied by the multiproof `nodes` of the `n` leaves `(idx[i], h[i])` (strictly ascending,
    ///      each `< 2^depth`) in a tree of depth `depth` (docs/protocol.md §1.1). Overwrites `idx` and `h`.
    function _multiRoot(uint256 depth, uint256[] memory idx, bytes32[] memory h, uint256 n, bytes32[] calldata nodes)
        internal
        pure
        returns (bytes32)
    {
        uint256 used;
        for (uint256 level; level < depth; ++level) {
            uint256 w;
            for (uint256 i; i < n; ++i) {
                uint256 x = idx[i];
                bytes32 node = h[i];
                if (x & 1 == 0) {
                    if (i + 1 < n && idx[i + 1] == x + 1) {
                        ++i;
                        node = Protocol.hashPair(node, h[i]);
                    } else {
                        if (used == nodes.length) revert BadOpening("trace nodes");
                        node = Protocol.hashPair(node, nodes[used++]);
                    }
                } else {
                    if (used == nodes.length) revert BadOpening("trace nodes");
                    node = Protocol.hashPair(nodes[used++], node);
                }
                (idx[w], h[w]) = (x >> 1, node);
                ++w;
            }
            n = w;
        }
        if (used != nodes.length || n != 1) revert BadOpening("trace nodes");
        return h[0];
    }

    /// @dev Verifies matrix leaf `leaf` (`keccak(kind ‖ rows ‖ cols ‖ tensorRoot)`); returns its kind and block size.
    function _matrix(S memory s, ModelOpening calldata w, uint256 leaf, uint256 rows, uint256 cols)
        internal
        pure
        returns (uint8 kind, uint256 bb)
    {
        kind = w.kind;
        if (kind == 1) bb = 20;
        else if (kind == 2) bb = 34;
        else revert BadOpening("kind");
        _leaf(s, keccak256(abi.encodePacked(kind, uint32(rows), uint32(cols), w.tensorRoot)), leaf, w.modelProof);
    }

    /// @dev Bytes `[from, to)` of the vector/table at model leaf `leaf` (the leaf is its tensor root).
    function _vector(S memory s, ModelOpening calldata w, uint256 leaf, uint256 len, uint256 from, uint256 to)
        internal
        pure
        returns (bytes memory)
    {
        _leaf(s, w.tensorRoot, leaf, w.modelProof);
        return _range(w.tensorRoot, len, from, to, w.chunks);
    }

    function _leaf(S memory s, bytes32 value, uint256 index, bytes32[] calldata proof) internal pure {
        if (!Protocol.verifyWithCount(s.modelRoot, s.modelLeaves, value, index, proof)) revert BadOpening("model leaf");
    }

    function _traceLeaf(uint256 index, bytes32 descHash, bytes32 outputRoot) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(index, descHash, outputRoot));
    }

    /// @dev Bytes `[from, to)` (`from < to ≤ len`) of the tensor `(root, len)` from the consecutive chunks `ch`.
    function _range(bytes32 root, uint256 len, uint256 from, uint256 to, Chunks calldata ch)
        internal
        pure
        returns (bytes memory out)
    {
        if (from >= to || to > len) revert BadChunks("range");
        uint256 first = from / CHUNK;
        uint256 n = (to - 1) / CHUNK - first + 1;
        if (ch.index.length != n || ch.data.length != n || ch.proofs.length != n) revert BadChunks("count");
        out = new bytes(to - from);
        for (uint256 k; k < n; ++k) {
            uint256 idx = first + k;
            if (ch.index[k] != idx) revert BadChunks("index");
            bytes calldata data = ch.data[k];
            _verifyChunk(root, len, idx, data, ch.proofs[k]);
            uint256 cs = idx * CHUNK;
            uint256 a = from > cs ? from : cs;
            uint256 b = to < cs + data.length ? to : cs + data.length;
            assembly ("memory-safe") {
                calldatacopy(add(add(out, 0x20), sub(a, from)), add(data.offset, sub(a, cs)), sub(b, a))
            }
        }
    }

    /// @dev Chunk `idx` of tensor `(root, len)`: `data` is the chunk trimmed to the length, `proof` exact depth; the
    ///      last chunk's right-hand siblings must be empty subtrees.
    function _verifyChunk(bytes32 root, uint256 len, uint256 idx, bytes calldata data, bytes32[] calldata proof)
        internal
        pure
    {
        uint256 count = len == 0 ? 1 : (len + CHUNK - 1) / CHUNK;
        if (idx >= count) revert BadChunks("chunk index");
        uint256 from = idx * CHUNK;
        uint256 want = len - from < CHUNK ? len - from : CHUNK;
        if (data.length != want) revert BadChunks("chunk length");
        if (proof.length != Protocol.treeDepth(count)) revert BadChunks("depth");
        bytes32 node;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            calldatacopy(buf, calldatasize(), 1024)
            calldatacopy(buf, data.offset, data.length)
            node := keccak256(buf, 1024)
        }
        bool last = idx == count - 1;
        bytes32 zero;
        for (uint256 k; k < proof.length; ++k) {
            if ((idx >> k) & 1 == 0) {
                if (last && proof[k] != zero) revert BadChunks("padding");
                node = Protocol.hashPair(node, proof[k]);
            } else {
                node = Protocol.hashPair(proof[k], node);
            }
            zero = Protocol.hashPair(zero, zero);
        }
        if (node != root) revert BadChunks("root");
    }

    // -----------------------------------------------------------------------------------------------------------
    // Little-endian decoding of memory bytes

    function _le(bytes memory b, uint256 off, uint256 n) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            let w := mload(add(add(b, 0x20), off))
            for { let i := 0 } lt(i, n) { i := add(i, 1) } { v := or(v, shl(mul(8, i), byte(i, w))) }
        }
    }

    function _i16(bytes memory b, uint256 off) internal pure returns (int256 v) {
        uint256 u = _le(b, off, 2);
        assembly ("memory-safe") {
            v := signextend(1, u)
        }
    }

    function _i32(bytes memory b, uint256 off) internal pure returns (int256 v) {
        uint256 u = _le(b, off, 4);
        assembly ("memory-safe") {
            v := signextend(3, u)
        }
    }

    function _i64(bytes memory b, uint256 off) internal pure returns (int256 v) {
        uint256 u = _le(b, off, 8);
        assembly ("memory-safe") {
            v := signextend(7, u)
        }
    }

    function _slice(bytes memory b, uint256 from, uint256 n) internal pure returns (bytes memory out) {
        out = new bytes(n);
        assembly ("memory-safe") {
            mcopy(add(out, 0x20), add(add(b, 0x20), from), n)
        }
    }
}

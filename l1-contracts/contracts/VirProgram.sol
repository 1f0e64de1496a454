// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @notice The program parameters a one-step proof needs (docs/vir.md §7 config, plus the request's prompt length).
struct ProgramConfig {
    uint256 nLayers;
    uint256 dModel;
    uint256 dFf;
    uint256 nHeads;
    uint256 nKvHeads;
    uint256 headDim;
    uint256 vocabSize;
    uint256 contextLength;
    bool tiedOutput;
    int64 epsFx;
    int64 scoreScale;
    uint256 promptLen;
}

/// @notice An op descriptor (docs/vir.md §5.3).
struct OpDesc {
    uint8 code;
    uint16 layer;
    uint8 round;
    uint32 pos;
    uint8 outType;
    uint32 outLen;
    uint32 outGroups;
}

/// @title VirProgram
/// @notice The VIR program layout of docs/vir.md §5 on chain: op `i` of a request is a pure function of (model
///         config, prompt length, `i`), bit-identical to `vir::program::Program::descriptor`.
library VirProgram {
    uint256 internal constant LAYER_OPS = 23;
    uint256 internal constant HEAD_OPS = 44;
    uint256 internal constant ATTN_CHUNK = 64;
    uint256 internal constant VOCAB_CHUNK = 1024;

    /// @notice Ops of one position's body: `1 + 23·nLayers`.
    function bodyOps(ProgramConfig memory c) internal pure returns (uint256) {
        return 1 + LAYER_OPS * c.nLayers;
    }

    /// @notice Trace index of the first op of position `pos` (docs/vir.md §5.2).
    function positionStart(ProgramConfig memory c, uint256 pos) internal pure returns (uint256) {
        uint256 b = bodyOps(c);
        uint256 p0 = c.promptLen - 1;
        return pos <= p0 ? pos * b : p0 * b + (pos - p0) * (b + HEAD_OPS);
    }

    /// @notice Trace index of layer op `code` (1..23) of `layer` at `pos`.
    function layerIndex(ProgramConfig memory c, uint256 pos, uint256 layer, uint256 code)
        internal
        pure
        returns (uint256)
    {
        return positionStart(c, pos) + 1 + LAYER_OPS * layer + code - 1;
    }

    /// @notice Trace index of head slot `slot` (0..43) at `pos` (a position that runs the head).
    function headIndex(ProgramConfig memory c, uint256 pos, uint256 slot) internal pure returns (uint256) {
        return positionStart(c, pos) + bodyOps(c) + slot;
    }

    /// @notice Op count of a run that generated `generated` tokens (0 for none).
    function opCount(ProgramConfig memory c, uint256 generated) internal pure returns (uint256) {
        if (generated == 0) return 0;
        return positionStart(c, c.promptLen + generated - 2) + bodyOps(c) + HEAD_OPS;
    }

    /// @notice `ceil(n / k)`, at least 1.
    function nChunks(uint256 n, uint256 k) internal pure returns (uint256) {
        return n == 0 ? 1 : (n + k - 1) / k;
    }

    /// @notice The descriptor of trace op `index`.
    function descriptor(ProgramConfig memory c, uint256 index) internal pure returns (OpDesc memory x) {
        uint256 b = bodyOps(c);
        uint256 p0 = c.promptLen - 1;
        uint256 pos;
        uint256 slot;
        if (index < p0 * b) {
            pos = index / b;
            slot = index % b;
        } else {
            uint256 rel = index - p0 * b;
            pos = p0 + rel / (b + HEAD_OPS);
            slot = rel % (b + HEAD_OPS);
        }
        x.pos = uint32(pos);
        uint256 nPos = pos + 1;
        if (slot == 0) {
            (x.outType, x.outLen) = (1, uint32(c.dModel));
        } else if (slot < b) {
            uint256 s = slot - 1;
            x.layer = uint16(s / LAYER_OPS);
            x.code = uint8(s % LAYER_OPS + 1);
            _layerShape(c, x, nPos);
        } else {
            uint256 s = slot - b;
            x.code = uint8(64 + s);
            if (s >= 7 && s < 41) x.round = uint8((s - 7) / 2);
            _headShape(c, x, s);
        }
    }

    function _layerShape(ProgramConfig memory c, OpDesc memory x, uint256 nPos) private pure {
        uint8 code = x.code;
        uint256 kvDim = c.nKvHeads * c.headDim;
        uint256 attChunks = c.nHeads * nChunks(nPos, ATTN_CHUNK);
        uint256 t;
        uint256 n;
        uint256 g;
        if (code == 1 || code == 18 || code == 15) (t, n, g) = (3, c.dModel, 1);
        else if (code == 2 || code == 16 || code == 22 || code == 17 || code == 23 || code == 14) (t, n) = (1, c.dModel);
        else if (code == 3 || code == 4 || code == 6) (t, n) = (1, kvDim);
        else if (code == 5) (t, n, g) = (3, c.dModel, c.nHeads);
        else if (code == 7 || code == 10) (t, n) = (1, c.nHeads * nPos);
        else if (code == 8) (t, n) = (1, attChunks);
        else if (code == 9) (t, n) = (1, c.nHeads);
        else if (code == 11) (t, n) = (2, attChunks);
        else if (code == 12) (t, n) = (2, c.nHeads);
        else if (code == 13) (t, n) = (2, attChunks * c.headDim);
        else if (code == 19 || code == 20) (t, n) = (1, c.dFf);
        else (t, n, g) = (3, c.dFf, 1); // 21 SwiGlu
        (x.outType, x.outLen, x.outGroups) = (uint8(t), uint32(n), uint32(g));
    }

    function _headShape(ProgramConfig memory c, OpDesc memory x, uint256 s) private pure {
        uint256 nv = nChunks(c.vocabSize, VOCAB_CHUNK);
        uint256 t;
        uint256 n;
        uint256 g;
        if (s == 0) (t, n, g) = (3, c.dModel, 1);
        else if (s == 1 || s == 4) (t, n) = (1, c.vocabSize);
        else if (s == 2) (t, n) = (1, 2 * nv);
        else if (s == 3) (t, n) = (1, 2);
        else if (s == 6 || s == 42) (t, n) = (2, 2);
        else if (s == 43) (t, n) = (1, 1);
        else if (s == 5 || s == 41 || (s >= 7 && s < 41 && (s - 7) % 2 == 0)) (t, n) = (2, nv);
        else (t, n) = (2, 1); // TopPStep
        (x.outType, x.outLen, x.outGroups) = (uint8(t), uint32(n), uint32(g));
    }

    /// @notice Canonical byte length of an op's output (docs/vir.md §5.4).
    function byteLen(OpDesc memory x) internal pure returns (uint256) {
        if (x.outType == 1) return 4 * uint256(x.outLen);
        if (x.outType == 2) return 8 * uint256(x.outLen);
        return 4 * uint256(x.outGroups) + 2 * uint256(x.outLen);
    }

    /// @notice `descriptorHash` (docs/vir.md §5.3).
    function hash(OpDesc memory x) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(x.code, x.layer, x.round, x.pos, x.outType, x.outLen, x.outGroups));
    }
}

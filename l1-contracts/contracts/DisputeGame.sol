// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {InferenceLeaf, Protocol} from "./Protocol.sol";
import {InferenceRollup} from "./InferenceRollup.sol";
import {OneStepVerifier} from "./OneStepVerifier.sol";

/// @title DisputeGame
/// @notice The interactive fraud-proof game on one leaf of a posted, not yet final batch (docs/protocol.md,
///         DESIGN.md §5). A bonded challenger opens a dispute against the leaf's executor (the defender). The two
///         bisect the executor's trace tree (`traceRoot`, `opCount` leaves): the executor reveals the two children
///         of the current node, the challenger picks the one holding the first leaf they disagree with. At the
///         bottom (leaf `i`) the challenger states their own leaf hash for `i` and the element of op `i`'s output
///         they dispute; then op `i` is re-executed for that element by the `OneStepVerifier` from inputs proven
///         under the executor's earlier trace leaves (`j < i`, which the challenger accepted while bisecting).
///
///         Each side has a chess clock (`clock` seconds, plus `extension` per move); `timeout` lets the waiting side
///         win once the moving side's clock has run out.
///
///         The executor loses: the leaf is invalidated, the executor's whole bond is slashed (half to the
///         challenger, half burned) and the challenger's bond is returned. The challenger loses: their bond goes to
///         the executor. Payouts are credits withdrawn with `claim`.
///
///         Simplification (this version): the one-step check exists only for ResidualAdd (AttnResidual, code 17;
///         FfnResidual, code 23). Other ops revert `OpNotSupportedYet(code)`, so such a dispute ends on time only.
///         The descriptor of op `i` (which op runs at index `i`) is taken from the executor's revealed leaf; its
///         inputs are bound by the fixed offsets of docs/vir.md §5.1 and checked by descriptor (code, layer, pos,
///         type, length). Faults outside the disputed element (output length, non-zero padding) are not covered.
contract DisputeGame {
    /// @notice Where a dispute stands; `executorToMove` says whose turn it is.
    enum Phase {
        None,
        Reveal,
        Choose,
        Claim,
        OneStep,
        Resolved
    }

    /// @notice One dispute.
    struct Dispute {
        uint256 batchId;
        uint256 leafIndex;
        address executor;
        address challenger;
        uint256 bond;
        bytes32 traceRoot;
        uint64 opCount;
        // Bisection state: `node` covers trace leaves [start, start + 2^height).
        bytes32 node;
        bytes32 left;
        bytes32 right;
        uint64 start;
        uint8 height;
        Phase phase;
        bool executorToMove;
        bool executorWon;
        uint64 lastMove;
        uint64 executorClock;
        uint64 challengerClock;
        bytes32 claimedLeaf;
        uint32 element;
    }

    /// @notice An op descriptor (docs/vir.md §5.3).
    struct Descriptor {
        uint8 code;
        uint16 layer;
        uint8 round;
        uint32 pos;
        uint8 outType;
        uint32 outLen;
        uint32 outGroups;
    }

    /// @notice One trace leaf with one chunk of its output tensor.
    struct TensorOpening {
        Descriptor desc;
        bytes32 outputRoot;
        // Siblings of the trace leaf under the trace root (unused for the disputed leaf itself).
        bytes32[] traceProof;
        // The 1024-byte chunk holding the disputed element, and its proof under `outputRoot`.
        bytes chunk;
        bytes32[] chunkProof;
    }

    event DisputeOpened(
        uint256 indexed disputeId,
        uint256 indexed batchId,
        uint256 leafIndex,
        address indexed executor,
        address challenger,
        uint256 bond
    );
    event Revealed(uint256 indexed disputeId, uint64 start, uint8 height, bytes32 left, bytes32 right);
    event Chosen(uint256 indexed disputeId, bool right, uint64 start, uint8 height, bytes32 node);
    event LeafClaimed(uint256 indexed disputeId, uint64 opIndex, bytes32 executorLeaf, bytes32 claimedLeaf, uint32 element);
    event OneStepChecked(uint256 indexed disputeId, uint64 opIndex, uint8 code, int32 computed, int32 claimed);
    event DisputeResolved(uint256 indexed disputeId, bool executorWon, bool onTime, uint256 slashed);
    event CreditClaimed(address indexed who, uint256 amount);

    error ZeroAddress();
    error ZeroClock();
    error InsufficientBond(uint256 sent, uint256 required);
    error LeafNotInBatch(uint256 batchId, uint256 index);
    error EmptyTrace();
    error UnknownDispute(uint256 disputeId);
    error WrongPhase(uint256 disputeId, Phase phase);
    error NotYourTurn(address caller);
    error ClockExpired(uint256 disputeId);
    error ClockRunning(uint256 disputeId, uint256 expiresAt);
    error BadReveal(bytes32 node, bytes32 left, bytes32 right);
    error ChildIsPadding(uint64 start, uint64 opCount);
    error ClaimAgrees(bytes32 leaf);
    error ElementOutOfRange(uint32 element, uint32 outLen);
    error OpNotSupportedYet(uint8 code);
    error BadOpening(string what);
    error NothingToClaim(address who);
    error TransferFailed(address to, uint256 amount);

    /// @notice The rollup whose hooks this game calls (it must name this contract as its `disputeGame`).
    InferenceRollup public immutable rollup;
    /// @notice The one-step verifier used at the bottom of the game.
    OneStepVerifier public immutable verifier;
    /// @notice The challenger's minimum bond.
    uint256 public immutable minChallengerBond;
    /// @notice Each side's initial clock, in seconds.
    uint64 public immutable clock;
    /// @notice Seconds added to a side's clock per move.
    uint64 public immutable extension;

    /// @notice Dispute ids start at 1.
    uint256 public disputeCount;
    mapping(uint256 disputeId => Dispute) internal _disputes;
    /// @notice Payouts waiting for `claim`.
    mapping(address who => uint256) public credits;

    /// @param rollup_ The rollup.
    /// @param verifier_ The one-step verifier.
    /// @param minChallengerBond_ Minimum challenger bond (may be 0).
    /// @param clock_ Initial clock per side in seconds (e.g. 1800).
    /// @param extension_ Seconds added per move (e.g. 300).
    constructor(
        InferenceRollup rollup_,
        OneStepVerifier verifier_,
        uint256 minChallengerBond_,
        uint64 clock_,
        uint64 extension_
    ) {
        if (address(rollup_) == address(0) || address(verifier_) == address(0)) revert ZeroAddress();
        if (clock_ == 0) revert ZeroClock();
        rollup = rollup_;
        verifier = verifier_;
        minChallengerBond = minChallengerBond_;
        clock = clock_;
        extension = extension_;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Moves
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Opens a dispute on leaf `index` of batch `batchId` with `msg.value` as the bond.
    /// @param batchId The batch.
    /// @param leaf The disputed leaf.
    /// @param index Its index in the batch.
    /// @param proof Its batch Merkle proof.
    /// @return id The dispute id.
    function open(uint256 batchId, InferenceLeaf calldata leaf, uint256 index, bytes32[] calldata proof)
        external
        payable
        returns (uint256 id)
    {
        if (msg.value < minChallengerBond) revert InsufficientBond(msg.value, minChallengerBond);
        if (!rollup.verifyLeaf(batchId, rollup.hashLeaf(leaf), index, proof)) revert LeafNotInBatch(batchId, index);
        if (leaf.opCount == 0) revert EmptyTrace();
        rollup.disputeOpened(batchId, leaf.executor);
        id = ++disputeCount;
        Dispute storage d = _disputes[id];
        d.batchId = batchId;
        d.leafIndex = index;
        d.executor = leaf.executor;
        d.challenger = msg.sender;
        d.bond = msg.value;
        d.traceRoot = leaf.traceRoot;
        d.opCount = leaf.opCount;
        d.node = leaf.traceRoot;
        d.height = uint8(Protocol.treeDepth(leaf.opCount));
        d.lastMove = uint64(block.timestamp);
        d.executorClock = clock;
        d.challengerClock = clock;
        if (d.height == 0) {
            d.phase = Phase.Claim;
        } else {
            d.phase = Phase.Reveal;
            d.executorToMove = true;
        }
        emit DisputeOpened(id, batchId, index, leaf.executor, msg.sender, msg.value);
    }

    /// @notice Executor: reveals the children of the current node.
    /// @param id The dispute.
    /// @param left Left child hash.
    /// @param right Right child hash.
    function reveal(uint256 id, bytes32 left, bytes32 right) external {
        Dispute storage d = _at(id, Phase.Reveal);
        _tick(d, id, true);
        if (Protocol.hashPair(left, right) != d.node) revert BadReveal(d.node, left, right);
        d.left = left;
        d.right = right;
        d.phase = Phase.Choose;
        emit Revealed(id, d.start, d.height, left, right);
    }

    /// @notice Challenger: descends into the child holding the first leaf they disagree with.
    /// @param id The dispute.
    /// @param right Whether the right child (then the challenger accepts the left one).
    function choose(uint256 id, bool right) external {
        Dispute storage d = _at(id, Phase.Choose);
        _tick(d, id, false);
        uint8 h = d.height - 1;
        if (right) {
            uint64 s = d.start + (uint64(1) << h);
            if (s >= d.opCount) revert ChildIsPadding(s, d.opCount);
            d.start = s;
            d.node = d.right;
        } else {
            d.node = d.left;
        }
        d.height = h;
        if (h == 0) {
            // Leaf reached: the challenger moves again (states their leaf).
            d.phase = Phase.Claim;
            d.executorToMove = false;
        } else {
            d.phase = Phase.Reveal;
        }
        emit Chosen(id, right, d.start, h, d.node);
    }

    /// @notice Challenger, at the leaf: their own leaf hash for op `start` and the disputed output element.
    /// @param id The dispute.
    /// @param claimedLeaf The challenger's trace leaf for the op (must differ from the executor's).
    /// @param element Index of the disputed output value.
    function claimLeaf(uint256 id, bytes32 claimedLeaf, uint32 element) external {
        Dispute storage d = _at(id, Phase.Claim);
        _tick(d, id, false);
        if (claimedLeaf == d.node) revert ClaimAgrees(claimedLeaf);
        d.claimedLeaf = claimedLeaf;
        d.element = element;
        d.phase = Phase.OneStep;
        d.executorToMove = true;
        emit LeafClaimed(id, d.start, d.node, claimedLeaf, element);
    }

    /// @notice Either side, at the end: re-executes ResidualAdd for the disputed element. `out` opens the disputed
    ///         leaf (descriptor, output root, output chunk), `a` the first input (`h_in` / AttnResidual), `b` the
    ///         second (OProj / DownProj), both with trace proofs under the executor's trace root. The executor wins
    ///         iff its output element equals `sat32(a + b)`.
    /// @param id The dispute.
    /// @param out Opening of the disputed op.
    /// @param a Opening of the first input.
    /// @param b Opening of the second input.
    function proveResidualAdd(
        uint256 id,
        TensorOpening calldata out,
        TensorOpening calldata a,
        TensorOpening calldata b
    ) external {
        Dispute storage d = _at(id, Phase.OneStep);
        if (msg.sender != d.executor && msg.sender != d.challenger) revert NotYourTurn(msg.sender);
        if (uint256(d.lastMove) + d.executorClock < block.timestamp) revert ClockExpired(id);
        uint64 i = d.start;
        Descriptor calldata o = out.desc;
        if (verifier.traceLeaf(i, _descHash(o), out.outputRoot) != d.node) revert BadOpening("out leaf");
        if (o.code != 17 && o.code != 23) revert OpNotSupportedYet(o.code);
        if (o.outType != 1) revert BadOpening("out type");
        if (d.element >= o.outLen) revert ElementOutOfRange(d.element, o.outLen);
        // docs/vir.md §5.1: AttnResidual = residual_add(h_in(l) at i-17, OProj at i-1);
        //                   FfnResidual = residual_add(AttnResidual at i-6, DownProj at i-1).
        if (o.code == 17) {
            if (o.layer == 0) _checkInput(d, a, i - 17, 0, 0, o);
            else _checkInput(d, a, i - 17, 23, o.layer - 1, o);
            _checkInput(d, b, i - 1, 16, o.layer, o);
        } else {
            _checkInput(d, a, i - 6, 17, o.layer, o);
            _checkInput(d, b, i - 1, 22, o.layer, o);
        }
        int32 got = _element(out, d.element);
        int32 want = verifier.residualAdd(_element(a, d.element), _element(b, d.element));
        emit OneStepChecked(id, i, o.code, want, got);
        _resolve(id, d, got == want, false);
    }

    /// @notice Anyone: ends a dispute whose moving side's clock has run out; the other side wins.
    /// @param id The dispute.
    function timeout(uint256 id) external {
        Dispute storage d = _disputes[id];
        if (d.phase == Phase.None) revert UnknownDispute(id);
        if (d.phase == Phase.Resolved) revert WrongPhase(id, d.phase);
        uint256 deadline = uint256(d.lastMove) + (d.executorToMove ? d.executorClock : d.challengerClock);
        if (block.timestamp <= deadline) revert ClockRunning(id, deadline);
        _resolve(id, d, !d.executorToMove, true);
    }

    /// @notice Pays the caller's credits.
    function claim() external {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        credits[msg.sender] = 0;
        emit CreditClaimed(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice The dispute `id`.
    function getDispute(uint256 id) external view returns (Dispute memory) {
        return _disputes[id];
    }

    /// @notice When the moving side's clock runs out.
    function expiresAt(uint256 id) external view returns (uint256) {
        Dispute storage d = _disputes[id];
        return uint256(d.lastMove) + (d.executorToMove ? d.executorClock : d.challengerClock);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    function _at(uint256 id, Phase phase) internal view returns (Dispute storage d) {
        d = _disputes[id];
        if (d.phase == Phase.None) revert UnknownDispute(id);
        if (d.phase != phase) revert WrongPhase(id, d.phase);
    }

    /// @dev Checks the caller is the side to move and charges the elapsed time to its clock, then adds the extension
    ///      and passes the turn (the caller sets `executorToMove` when a side moves twice).
    function _tick(Dispute storage d, uint256 id, bool executorMoves) internal {
        if (d.executorToMove != executorMoves) revert NotYourTurn(msg.sender);
        if (msg.sender != (executorMoves ? d.executor : d.challenger)) revert NotYourTurn(msg.sender);
        uint64 elapsed = uint64(block.timestamp) - d.lastMove;
        if (executorMoves) {
            if (elapsed > d.executorClock) revert ClockExpired(id);
            d.executorClock = d.executorClock - elapsed + extension;
        } else {
            if (elapsed > d.challengerClock) revert ClockExpired(id);
            d.challengerClock = d.challengerClock - elapsed + extension;
        }
        d.lastMove = uint64(block.timestamp);
        d.executorToMove = !executorMoves;
    }

    function _checkInput(
        Dispute storage d,
        TensorOpening calldata t,
        uint64 index,
        uint8 code,
        uint16 layer,
        Descriptor calldata o
    ) internal view {
        Descriptor calldata x = t.desc;
        if (x.code != code || x.layer != layer || x.pos != o.pos || x.outType != 1 || x.outLen != o.outLen) {
            revert BadOpening("input descriptor");
        }
        if (!verifier.verifyTraceLeaf(d.traceRoot, d.opCount, index, _descHash(x), t.outputRoot, t.traceProof)) {
            revert BadOpening("input leaf");
        }
    }

    /// @dev The i32 element `e` of `t`'s output, after checking its chunk.
    function _element(TensorOpening calldata t, uint32 e) internal view returns (int32) {
        uint256 pos = uint256(e) * 4;
        if (!verifier.verifyTensorChunk(t.outputRoot, uint64(pos / Protocol.CHUNK_BYTES), t.chunk, t.chunkProof)) {
            revert BadOpening("chunk");
        }
        uint256 o = pos % Protocol.CHUNK_BYTES;
        bytes calldata c = t.chunk;
        return int32(
            uint32(uint8(c[o])) | (uint32(uint8(c[o + 1])) << 8) | (uint32(uint8(c[o + 2])) << 16)
                | (uint32(uint8(c[o + 3])) << 24)
        );
    }

    function _descHash(Descriptor calldata x) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(x.code, x.layer, x.round, x.pos, x.outType, x.outLen, x.outGroups));
    }

    function _resolve(uint256 id, Dispute storage d, bool executorWon, bool onTime) internal {
        d.phase = Phase.Resolved;
        d.executorWon = executorWon;
        uint256 slashed;
        if (executorWon) {
            credits[d.executor] += d.bond;
        } else {
            if (!rollup.invalidLeaf(d.batchId, d.leafIndex)) rollup.invalidateLeaf(d.batchId, d.leafIndex);
            uint256 amount = rollup.bondOf(InferenceRollup.Role.Executor, d.executor).amount;
            slashed = rollup.slash(InferenceRollup.Role.Executor, d.executor, amount, d.challenger, amount / 2);
            credits[d.challenger] += d.bond;
        }
        rollup.disputeClosed(d.batchId, d.executor);
        emit DisputeResolved(id, executorWon, onTime, slashed);
    }
}

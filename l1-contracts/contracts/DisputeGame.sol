// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {InferenceLeaf, Protocol} from "./Protocol.sol";
import {InferenceRollup} from "./InferenceRollup.sol";
import {Chunks, OneStepContext, OneStepProof, OneStepProver, TraceOpening} from "./OneStepProver.sol";
import {OpDesc, ProgramConfig} from "./VirProgram.sol";

/// @title DisputeGame
/// @notice The interactive fraud-proof game on one leaf of a posted, not yet final batch (docs/disputes.md,
///         DESIGN.md §5). A bonded challenger opens a dispute against the leaf's executor (the defender), revealing
///         the request the leaf commits (prompt length and prompt tensor root under `promptRoot`, sampling
///         parameters under `paramsHash`, output length under `outputHash`). A leaf over a model the rollup has
///         not registered, or whose `opCount` is not the program's op count for its prompt and output lengths,
///         loses at once (`MalformedLeaf`, expected count 0 for an unknown model). Otherwise the two bisect the
///         executor's trace tree (`traceRoot`, `opCount` leaves): the executor reveals the two children of the
///         current node, the challenger picks the one holding the first leaf they disagree with. At the bottom (leaf
///         `i`) the challenger states their own leaf hash for `i` and the output element they dispute; then either
///         side submits a one-step proof (`proveOneStep`): `OneStepProver` recomputes that element of op `i` from
///         inputs proven under the executor's earlier trace leaves (which the challenger accepted while bisecting)
///         and weights/tables proven under the model root, with op `i`'s descriptor taken from the program layout
///         (registered model config, prompt length, `i`). The executor wins iff its committed element is right.
///
///         Each side has a chess clock (`clock` seconds, plus `extension` per move); `timeout` lets the waiting side
///         win once the moving side's clock has run out. After `claimLeaf` the executor is the side to move: an
///         executor that cannot open its own output (wrong descriptor, junk past the tensor length) loses on time.
///
///         The executor loses: the leaf is invalidated, the executor's whole bond is slashed (half to the
///         challenger, half burned) and the challenger's bond is returned. The challenger loses: their bond goes to
///         the executor. Payouts are credits withdrawn with `claim`.
///
///         Non-interactive fault (`proveUnbondedExecutor`): a posted leaf naming an executor with no bond at all
///         invalidates the leaf and slashes the sequencer's whole bond (half to the prover, half burned).
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
        // keccak256(abi.encode(Request)) of the request revealed at `open`.
        bytes32 requestHash;
    }

    /// @notice The request a leaf commits, revealed by the challenger at `open` and checked against the leaf:
    ///         `promptRoot = keccak256(be8(promptLen) ‖ promptTensorRoot)`, `outputHash = keccak256(be8(outputLen)
    ///         ‖ outputTensorRoot)` (docs/protocol.md §2), `paramsHash = keccak256(abi.encode(maxTokens,
    ///         temperatureMilli, topPMilli, seed, choiceIndex))` (§4.1).
    struct Request {
        bytes32 modelRoot;
        uint32 promptLen;
        bytes32 promptTensorRoot;
        uint32 outputLen;
        bytes32 outputTensorRoot;
        uint32 maxTokens;
        uint32 temperatureMilli;
        uint32 topPMilli;
        uint64 seed;
        uint32 choiceIndex;
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
    event OneStepChecked(uint256 indexed disputeId, uint64 opIndex, uint8 code, int256 computed, int256 claimed);
    event MalformedLeaf(uint256 indexed disputeId, uint64 opCount, uint256 expectedOpCount);
    event DisputeResolved(uint256 indexed disputeId, bool executorWon, bool onTime, uint256 slashed);
    event UnbondedExecutorProven(
        uint256 indexed batchId, uint256 leafIndex, address indexed executor, address indexed sequencer, uint256 slashed
    );
    event OutputMismatchProven(
        uint256 indexed batchId, uint256 leafIndex, address indexed executor, uint32 step, int256 traced, uint256 output
    );
    event CreditClaimed(address indexed who, uint256 amount);

    error ZeroAddress();
    error ZeroClock();
    error InsufficientBond(uint256 sent, uint256 required);
    error LeafNotInBatch(uint256 batchId, uint256 index);
    error EmptyTrace();
    error UnknownModel(bytes32 modelRoot);
    error RequestMismatch(string field);
    error UnknownDispute(uint256 disputeId);
    error WrongPhase(uint256 disputeId, Phase phase);
    error NotYourTurn(address caller);
    error ClockExpired(uint256 disputeId);
    error ClockRunning(uint256 disputeId, uint256 expiresAt);
    error BadReveal(bytes32 node, bytes32 left, bytes32 right);
    error ChildIsPadding(uint64 start, uint64 opCount);
    error ClaimAgrees(bytes32 leaf);
    error ElementOutOfRange(uint32 element, uint32 outLen);
    error ExecutorBonded(address executor);
    error OutputMatches(uint32 step);
    error WrongOpCount(uint64 opCount, uint256 expected);
    error StepOutOfRange(uint32 step, uint32 outputLen);
    error NothingToClaim(address who);
    error TransferFailed(address to, uint256 amount);

    /// @notice The rollup whose hooks this game calls (it must name this contract as its `disputeGame`).
    InferenceRollup public immutable rollup;
    /// @notice The one-step prover used at the bottom of the game.
    OneStepProver public immutable prover;
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
    /// @param prover_ The one-step prover.
    /// @param minChallengerBond_ Minimum challenger bond (may be 0).
    /// @param clock_ Initial clock per side in seconds (e.g. 1800).
    /// @param extension_ Seconds added per move (e.g. 300).
    constructor(
        InferenceRollup rollup_,
        OneStepProver prover_,
        uint256 minChallengerBond_,
        uint64 clock_,
        uint64 extension_
    ) {
        if (address(rollup_) == address(0) || address(prover_) == address(0)) revert ZeroAddress();
        if (clock_ == 0) revert ZeroClock();
        rollup = rollup_;
        prover = prover_;
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
    /// @param req The request the leaf commits (checked against the leaf).
    /// @return id The dispute id.
    function open(
        uint256 batchId,
        InferenceLeaf calldata leaf,
        uint256 index,
        bytes32[] calldata proof,
        Request calldata req
    ) external payable returns (uint256 id) {
        if (msg.value < minChallengerBond) revert InsufficientBond(msg.value, minChallengerBond);
        if (!rollup.verifyLeaf(batchId, rollup.hashLeaf(leaf), index, proof)) revert LeafNotInBatch(batchId, index);
        if (leaf.opCount == 0) revert EmptyTrace();
        _checkRequest(leaf, req);
        bool knownModel = rollup.getModel(req.modelRoot).configHash != bytes32(0);
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
        d.requestHash = keccak256(abi.encode(req));
        if (d.height == 0) {
            d.phase = Phase.Claim;
        } else {
            d.phase = Phase.Reveal;
            d.executorToMove = true;
        }
        emit DisputeOpened(id, batchId, index, leaf.executor, msg.sender, msg.value);
        // A leaf over an unregistered model, or a trace of the wrong length, is a fault in itself: no bisection.
        uint256 expected = knownModel ? prover.opCountOf(_config(req), req.outputLen) : 0;
        if (!knownModel || expected != leaf.opCount) {
            emit MalformedLeaf(id, leaf.opCount, expected);
            _resolve(id, d, false, false);
        }
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

    /// @notice Challenger, at the leaf: their own leaf hash for op `start` and the disputed output element (an
    ///         index below the op's output length, which the program layout gives).
    /// @param id The dispute.
    /// @param claimedLeaf The challenger's trace leaf for the op (must differ from the executor's).
    /// @param element Index of the disputed output value.
    /// @param req The request revealed at `open`.
    function claimLeaf(uint256 id, bytes32 claimedLeaf, uint32 element, Request calldata req) external {
        Dispute storage d = _at(id, Phase.Claim);
        _checkRequestHash(d, req);
        _tick(d, id, false);
        if (claimedLeaf == d.node) revert ClaimAgrees(claimedLeaf);
        OpDesc memory o = prover.descriptorOf(_config(req), d.start);
        if (element >= o.outLen) revert ElementOutOfRange(element, o.outLen);
        d.claimedLeaf = claimedLeaf;
        d.element = element;
        d.phase = Phase.OneStep;
        d.executorToMove = true;
        emit LeafClaimed(id, d.start, d.node, claimedLeaf, element);
    }

    /// @notice Either side, at the end: the one-step proof of the disputed element (`OneStepProver.check`). The
    ///         executor wins iff its committed element equals the recomputed one. Only while the executor's clock
    ///         runs; a proof that does not verify reverts.
    /// @param id The dispute.
    /// @param req The request revealed at `open`.
    /// @param p The proof: the executor's output opening, the op's inputs and weights (docs/disputes.md §4).
    function proveOneStep(uint256 id, Request calldata req, OneStepProof calldata p) external {
        Dispute storage d = _at(id, Phase.OneStep);
        if (msg.sender != d.executor && msg.sender != d.challenger) revert NotYourTurn(msg.sender);
        if (uint256(d.lastMove) + d.executorClock < block.timestamp) revert ClockExpired(id);
        _checkRequestHash(d, req);
        OneStepContext memory x = OneStepContext({
            traceRoot: d.traceRoot,
            opCount: d.opCount,
            index: d.start,
            executorLeaf: d.node,
            element: d.element,
            modelRoot: req.modelRoot,
            promptTensorRoot: req.promptTensorRoot,
            temperatureMilli: req.temperatureMilli,
            topPMilli: req.topPMilli,
            seed: req.seed,
            choiceIndex: req.choiceIndex
        });
        ProgramConfig memory c = _config(req);
        (bool right, int256 computed, int256 claimed) = prover.check(x, c, p);
        emit OneStepChecked(id, d.start, prover.descriptorOf(c, d.start).code, computed, claimed);
        _resolve(id, d, right, false);
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

    /// @notice Non-interactive fault: leaf `index` of `batchId` names an executor that has no bond (never
    ///         registered, or fully withdrawn), so nobody answers for it. The leaf is invalidated and the batch's
    ///         sequencer loses its whole bond: half to the caller, half burned. Only before the batch is final.
    /// @param batchId The batch.
    /// @param leaf The leaf.
    /// @param index Its index in the batch.
    /// @param proof Its batch Merkle proof.
    function proveUnbondedExecutor(
        uint256 batchId,
        InferenceLeaf calldata leaf,
        uint256 index,
        bytes32[] calldata proof
    ) external {
        if (!rollup.verifyLeaf(batchId, rollup.hashLeaf(leaf), index, proof)) revert LeafNotInBatch(batchId, index);
        InferenceRollup.Bond memory b = rollup.bondOf(InferenceRollup.Role.Executor, leaf.executor);
        if (b.status != InferenceRollup.BondStatus.None) revert ExecutorBonded(leaf.executor);
        rollup.invalidateLeaf(batchId, index);
        address sequencer = rollup.getBatch(batchId).sequencer;
        uint256 amount = rollup.bondOf(InferenceRollup.Role.Sequencer, sequencer).amount;
        uint256 slashed = rollup.slash(InferenceRollup.Role.Sequencer, sequencer, amount, msg.sender, amount / 2);
        emit UnbondedExecutorProven(batchId, index, leaf.executor, sequencer, slashed);
    }

    /// @notice Non-interactive fault: the leaf's output tokens (`outputHash`) disagree with its own trace: token
    ///         `step` of the output differs from the PickToken output of generation step `step` in the executor's
    ///         trace (a cached or substituted answer over an honest trace). The leaf is invalidated and the
    ///         executor's whole bond slashed, half to the caller. The trace must have the program's op count (else
    ///         `open` settles it). Only before the batch is final.
    /// @param batchId The batch.
    /// @param leaf The leaf.
    /// @param index Its index in the batch.
    /// @param proof Its batch Merkle proof.
    /// @param req The request the leaf commits.
    /// @param step The generation step.
    /// @param pick Opening of the trace's PickToken op of that step.
    /// @param outputChunk The output token list's chunk holding token `step`.
    function proveOutputMismatch(
        uint256 batchId,
        InferenceLeaf calldata leaf,
        uint256 index,
        bytes32[] calldata proof,
        Request calldata req,
        uint32 step,
        TraceOpening calldata pick,
        Chunks calldata outputChunk
    ) external {
        if (!rollup.verifyLeaf(batchId, rollup.hashLeaf(leaf), index, proof)) revert LeafNotInBatch(batchId, index);
        _checkRequest(leaf, req);
        if (step >= req.outputLen) revert StepOutOfRange(step, req.outputLen);
        ProgramConfig memory c = _config(req);
        uint256 expected = prover.opCountOf(c, req.outputLen);
        if (expected != leaf.opCount) revert WrongOpCount(leaf.opCount, expected);
        int256 traced = prover.pickedToken(c, leaf.traceRoot, leaf.opCount, step, pick);
        uint256 out = prover.tokenAt(req.outputTensorRoot, req.outputLen, step, outputChunk);
        if (traced == int256(out)) revert OutputMatches(step);
        rollup.invalidateLeaf(batchId, index);
        uint256 amount = rollup.bondOf(InferenceRollup.Role.Executor, leaf.executor).amount;
        rollup.slash(InferenceRollup.Role.Executor, leaf.executor, amount, msg.sender, amount / 2);
        emit OutputMismatchProven(batchId, index, leaf.executor, step, traced, out);
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

    /// @notice The program parameters of `req`'s model and prompt length (reverts `UnknownModel`).
    function programConfig(Request calldata req) external view returns (ProgramConfig memory) {
        return _config(req);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------------

    function _at(uint256 id, Phase phase) internal view returns (Dispute storage d) {
        d = _disputes[id];
        if (d.phase == Phase.None) revert UnknownDispute(id);
        if (d.phase != phase) revert WrongPhase(id, d.phase);
    }

    function _checkRequest(InferenceLeaf calldata leaf, Request calldata req) internal pure {
        if (req.modelRoot != leaf.modelRoot) revert RequestMismatch("modelRoot");
        if (req.promptLen == 0 || keccak256(abi.encodePacked(uint64(req.promptLen), req.promptTensorRoot)) != leaf.promptRoot) {
            revert RequestMismatch("promptRoot");
        }
        if (keccak256(abi.encodePacked(uint64(req.outputLen), req.outputTensorRoot)) != leaf.outputHash) {
            revert RequestMismatch("outputHash");
        }
        bytes32 params =
            keccak256(abi.encode(req.maxTokens, req.temperatureMilli, req.topPMilli, req.seed, req.choiceIndex));
        if (params != leaf.paramsHash) revert RequestMismatch("paramsHash");
    }

    function _checkRequestHash(Dispute storage d, Request calldata req) internal view {
        if (keccak256(abi.encode(req)) != d.requestHash) revert RequestMismatch("request");
    }

    function _config(Request calldata req) internal view returns (ProgramConfig memory c) {
        InferenceRollup.Model memory m = rollup.getModel(req.modelRoot);
        if (m.configHash == bytes32(0)) revert UnknownModel(req.modelRoot);
        InferenceRollup.ModelConfig memory k = m.config;
        c = ProgramConfig({
            nLayers: k.nLayers,
            dModel: k.dModel,
            dFf: k.dFf,
            nHeads: k.nHeads,
            nKvHeads: k.nKvHeads,
            headDim: k.headDim,
            vocabSize: k.vocabSize,
            contextLength: k.contextLength,
            tiedOutput: k.tiedOutput == 1,
            epsFx: int64(k.epsFx),
            scoreScale: int64(k.scoreScale),
            promptLen: req.promptLen
        });
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

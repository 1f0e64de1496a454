// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {InferenceLeaf, Protocol} from "./Protocol.sol";
import {IInferenceRollup} from "./IInferenceRollup.sol";

/// @title InferenceRollup
/// @notice verinfer's L1 anchor: bonded sequencers post batch roots of signed inference results, each batch becomes
///         final after a challenge window, and a dispute game (set once by the owner) can invalidate single leaves
///         and slash bonds before that. Consumers call `isFinalized(batchId, leafHash, index, proof)`.
/// @dev Definitions (leaf hash, Merkle tree, state chain, DA commitment) are docs/protocol.md. The batch data is
///      either the calldata of `postBatch`, with DA commitment `keccak256(data)`, or the EIP-4844 blobs of a
///      `postBatchBlobs` transaction, with DA commitment `keccak256(versionedHash_0 ‖ … ‖ versionedHash_{n-1})`
///      read from `blobhash(i)`; both are computed here, so a batch can never be posted with a commitment that does
///      not match its data. Every batch also commits `sigRoot`, the Merkle root over `keccak256` of the leaves' 65-byte
///      signatures in leaf order, so a leaf's signature can be opened in one call (`proveBadSignature`); when the root
///      opens nothing (a garbage `sigRoot`), `challengeSignature` makes the sequencer open it or be slashed. Batch ids
///      start at 1; batch `n` carries `stateRoot_n = keccak256(stateRoot_{n-1} ‖ batchRoot_n)`, `stateRoot_0 = 0`.
contract InferenceRollup is IInferenceRollup {
    // ---------------------------------------------------------------------------------------------------------------
    // Types
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice The two bonded roles.
    enum Role {
        Sequencer,
        Executor
    }

    /// @notice Lifecycle of a bond: None (never registered or fully withdrawn), Active, Withdrawing (inactive; the
    ///         bond stays slashable until `withdraw` after the delay).
    enum BondStatus {
        None,
        Active,
        Withdrawing
    }

    /// @notice One bond (one storage slot).
    struct Bond {
        uint128 amount;
        uint64 unlockAt;
        BondStatus status;
    }

    /// @notice One posted batch. `batchRoot` and `commitment` take a slot each; the rest packs into one (three
    ///         slots: `postBatchBlobs` stays within 120k gas). `commitment = keccak256(daCommitment ‖ sigRoot)`; both
    ///         halves are in the `BatchPosted` event.
    struct Batch {
        bytes32 batchRoot;
        bytes32 commitment;
        address sequencer;
        uint40 postedAt;
        uint48 leafCount;
        bool finalized;
    }

    /// @notice A leaf's signature opened under a batch's `sigRoot` (for `proveBadSignature`).
    /// @param daCommitment The batch's DA commitment (from `BatchPosted`).
    /// @param sigRoot The batch's signature root (from `BatchPosted`).
    /// @param signature The 65-byte `r ‖ s ‖ v` signature posted for the leaf.
    /// @param proof Merkle proof of `keccak256(signature)` at the leaf's index under `sigRoot`.
    struct SignatureOpening {
        bytes32 daCommitment;
        bytes32 sigRoot;
        bytes signature;
        bytes32[] proof;
    }

    /// @notice State of a signature challenge on one leaf (`challengeSignature`).
    enum SignatureChallengeStatus {
        None,
        Pending,
        Answered,
        Resolved
    }

    /// @notice A signature challenge: the leaf's executor and EIP-712 digest (what an answer must recover to), the
    ///         challenger and its bond, and the answer deadline (three slots).
    struct SignatureChallenge {
        address challenger;
        uint64 deadline;
        SignatureChallengeStatus status;
        address executor;
        uint96 bond;
        bytes32 digest;
    }

    /// @notice The model parameters the dispute game needs to know op `i` of a request. They are the 18 values of
    ///         `config_hash` (docs/vir.md §7), in that order; `configHash = keccak256(be8 of each)`.
    struct ModelConfig {
        uint64 virVersion;
        uint64 nLayers;
        uint64 dModel;
        uint64 dFf;
        uint64 nHeads;
        uint64 nKvHeads;
        uint64 headDim;
        uint64 vocabSize;
        uint64 contextLength;
        uint64 tiedOutput;
        uint64 epsFx;
        uint64 scoreScale;
        uint64 residualFrac;
        uint64 actFrac;
        uint64 attnChunk;
        uint64 vocabChunk;
        uint64 toppRounds;
        uint64 tableFrac;
    }

    /// @notice A registered model.
    struct Model {
        bytes32 configHash;
        ModelConfig config;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------------------------

    event SequencerRegistered(address indexed sequencer, uint256 bond);
    event ExecutorRegistered(address indexed executor, uint256 bond);
    /// @notice Any change of a bond amount (register, top-up, slash, withdraw); `bond` is the new amount.
    event BondChanged(Role indexed role, address indexed who, uint256 bond);
    event WithdrawalRequested(Role indexed role, address indexed who, uint256 amount, uint64 unlockAt);
    event Withdrawn(Role indexed role, address indexed who, uint256 amount);
    event ModelRegistered(bytes32 indexed modelRoot, bytes32 configHash, uint64 nLayers, uint64 contextLength);
    event BatchPosted(
        uint256 indexed batchId,
        address indexed sequencer,
        bytes32 batchRoot,
        bytes32 daCommitment,
        bytes32 sigRoot,
        uint64 leafCount,
        bytes32 stateRoot
    );
    event BatchFinalized(uint256 indexed batchId, bytes32 batchRoot);
    event DisputeOpened(uint256 indexed batchId, address indexed executor);
    event DisputeClosed(uint256 indexed batchId, address indexed executor);
    event LeafInvalidated(uint256 indexed batchId, uint256 indexed index);
    /// @notice `slashed` left `offender`'s bond: `burned` went to address(0), `reward` was credited to `beneficiary`.
    event Slashed(
        Role indexed role,
        address indexed offender,
        uint256 slashed,
        uint256 burned,
        address indexed beneficiary,
        uint256 reward
    );
    /// @notice Leaf `index` of `batchId` was posted with a signature that does not recover its executor: the leaf is
    ///         invalid and `sequencer` lost `slashed` (half to the prover, half burned).
    event BadSignatureProven(
        uint256 indexed batchId, uint256 index, address indexed executor, address indexed sequencer, uint256 slashed
    );
    /// @notice Anyone challenged the sequencer of `batchId` to open the signature posted for leaf `index` (signed by
    ///         `executor`) before `deadline`; `bond` is the challenger's stake.
    event SignatureChallenged(
        uint256 indexed batchId,
        uint256 index,
        address indexed executor,
        address indexed challenger,
        uint64 deadline,
        uint256 bond
    );
    /// @notice The challenge on leaf `index` was answered with a signature recovering `executor`; the challenger's
    ///         `bond` was credited to `sequencer`.
    event SignatureChallengeAnswered(
        uint256 indexed batchId, uint256 index, address indexed executor, address indexed sequencer, uint256 bond
    );
    /// @notice The challenge on leaf `index` went unanswered: the leaf is invalid, `sequencer` lost `slashed` (half to
    ///         `challenger`, half burned) and the challenger's `bond` was credited back to it.
    event SignatureChallengeResolved(
        uint256 indexed batchId,
        uint256 index,
        address indexed challenger,
        address indexed sequencer,
        uint256 slashed,
        uint256 bond
    );
    event SignatureChallengeParamsSet(uint64 responseWindow, uint256 bond);
    event CreditClaimed(address indexed who, uint256 amount);
    event DisputeGameSet(address indexed disputeGame);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    // ---------------------------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------------------------

    error ZeroMinBond();
    error ZeroChallengeWindow();
    error WithdrawalDelayShorterThanChallengeWindow(uint64 withdrawalDelay, uint64 challengeWindow);
    error ZeroAddress();
    error NotOwner(address caller);
    error NotDisputeGame(address caller);
    error DisputeGameAlreadySet(address disputeGame);

    error AlreadyRegistered(Role role, address who);
    error InsufficientBond(uint256 sent, uint256 required);
    error BondTooLarge(uint256 amount);
    error NotRegistered(Role role, address who);
    error BondWithdrawing(Role role, address who);
    error ZeroValue();
    error WithdrawalAlreadyRequested(Role role, address who);
    error NoWithdrawalRequested(Role role, address who);
    error WithdrawalNotReady(uint64 unlockAt, uint64 nowTimestamp);
    error BondLocked(address executor, uint256 openDisputes);
    error TransferFailed(address to, uint256 amount);
    error NothingToClaim(address who);

    error ZeroModelRoot();
    error ModelAlreadyRegistered(bytes32 modelRoot);
    error InvalidModelConfig(string field);
    error ConfigNotInModelRoot(bytes32 modelRoot, bytes32 configHash);

    error NotActiveSequencer(address who);
    error EmptyBatch();
    error EmptyBatchData();
    error NoBlobs();
    error ZeroBatchRoot();
    error LeafCountTooLarge(uint64 leafCount, uint64 max);
    error StaleStateRoot(bytes32 expected, bytes32 current);

    error UnknownBatch(uint256 batchId);
    error BatchAlreadyFinalized(uint256 batchId);
    error ChallengeWindowOpen(uint256 batchId, uint256 finalizesAt);
    error BatchUnderDispute(uint256 batchId, uint256 openDisputes);
    error ChallengeWindowClosed(uint256 batchId, uint256 closedAt);
    error LeafIndexOutOfRange(uint256 index, uint256 leafCount);
    error LeafAlreadyInvalid(uint256 batchId, uint256 index);
    error NoOpenDispute(uint256 batchId, address executor);
    error RewardTooLarge(uint256 reward, uint256 max);
    error LeafNotInBatch(uint256 batchId, uint256 index);
    error CommitmentMismatch(uint256 batchId);
    error SignatureNotInBatch(uint256 batchId, uint256 index);
    error SignatureValid(uint256 batchId, uint256 index, address executor);
    error ZeroResponseWindow();
    error WrongChallengeBond(uint256 sent, uint256 required);
    error SignatureChallengeExists(uint256 batchId, uint256 index, SignatureChallengeStatus status);
    error NoPendingSignatureChallenge(uint256 batchId, uint256 index);
    error SignatureChallengeExpired(uint256 batchId, uint256 index, uint256 deadline);
    error SignatureResponseWindowOpen(uint256 batchId, uint256 index, uint256 deadline);
    error SignatureDoesNotRecover(uint256 batchId, uint256 index, address signer, address executor);
    error SignatureChallengePending(uint256 batchId, uint256 pending);

    // ---------------------------------------------------------------------------------------------------------------
    // Configuration and state
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Smallest bond with which a sequencer is active.
    uint256 public immutable minSequencerBond;
    /// @notice Smallest bond with which an executor is active.
    uint256 public immutable minExecutorBond;
    /// @notice Seconds between `requestWithdrawal` and `withdraw`; at least the challenge window.
    uint64 public immutable withdrawalDelay;
    /// @notice Seconds after posting before a batch can be finalized; disputes must open inside it.
    uint64 public immutable challengeWindow;

    /// @notice Largest leaf count of one batch (the count is stored in 48 bits).
    uint64 public constant MAX_LEAF_COUNT = type(uint48).max;

    /// @notice May register models, set the dispute game once and hand over ownership.
    address public owner;
    /// @notice Number of batches posted; the latest batch id.
    uint64 public batchCount;
    /// @notice The contract allowed to report disputes, invalidate leaves and slash. Set once.
    address public disputeGame;
    /// @notice `stateRoot_{batchCount}`.
    bytes32 public stateRoot;

    mapping(uint256 batchId => Batch) internal _batches;
    mapping(Role role => mapping(address who => Bond)) internal _bonds;
    mapping(bytes32 modelRoot => Model) internal _models;
    mapping(uint256 batchId => mapping(uint256 index => bool)) public invalidLeaf;
    /// @notice Open disputes per batch (a batch under dispute cannot be finalized).
    mapping(uint256 batchId => uint256) public openDisputesOfBatch;
    /// @notice Open disputes per executor (an executor under dispute cannot withdraw).
    mapping(address executor => uint256) public openDisputesOfExecutor;
    /// @notice Slashing rewards waiting to be claimed.
    mapping(address who => uint256) public credits;
    /// @notice Seconds the sequencer has to answer a signature challenge (owner-set; default 1 hour).
    uint64 public signatureResponseWindow;
    /// @notice Exact `msg.value` of `challengeSignature` (owner-set; default 0.01 ether).
    uint256 public signatureChallengeBond;
    mapping(uint256 batchId => mapping(uint256 index => SignatureChallenge)) internal _signatureChallenges;
    /// @notice Unresolved signature challenges per batch (a batch with one cannot be finalized).
    mapping(uint256 batchId => uint256) public pendingSignatureChallenges;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyDisputeGame() {
        if (msg.sender != disputeGame) revert NotDisputeGame(msg.sender);
        _;
    }

    constructor(
        uint256 minSequencerBond_,
        uint256 minExecutorBond_,
        uint64 withdrawalDelay_,
        uint64 challengeWindow_,
        address owner_
    ) {
        if (minSequencerBond_ == 0 || minExecutorBond_ == 0) revert ZeroMinBond();
        if (challengeWindow_ == 0) revert ZeroChallengeWindow();
        if (withdrawalDelay_ < challengeWindow_) {
            revert WithdrawalDelayShorterThanChallengeWindow(withdrawalDelay_, challengeWindow_);
        }
        if (owner_ == address(0)) revert ZeroAddress();
        minSequencerBond = minSequencerBond_;
        minExecutorBond = minExecutorBond_;
        withdrawalDelay = withdrawalDelay_;
        challengeWindow = challengeWindow_;
        owner = owner_;
        signatureResponseWindow = 1 hours;
        signatureChallengeBond = 0.01 ether;
        emit OwnershipTransferred(address(0), owner_);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Owner
    // ---------------------------------------------------------------------------------------------------------------

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Sets the dispute game contract. Once only: the game is part of the rollup's security.
    function setDisputeGame(address game) external onlyOwner {
        if (game == address(0)) revert ZeroAddress();
        if (disputeGame != address(0)) revert DisputeGameAlreadySet(disputeGame);
        disputeGame = game;
        emit DisputeGameSet(game);
    }

    /// @notice Sets the signature challenge's answer window (non-zero) and bond. Open challenges keep theirs.
    function setSignatureChallengeParams(uint64 responseWindow, uint256 bond) external onlyOwner {
        if (responseWindow == 0) revert ZeroResponseWindow();
        if (bond > type(uint96).max) revert BondTooLarge(bond);
        signatureResponseWindow = responseWindow;
        signatureChallengeBond = bond;
        emit SignatureChallengeParamsSet(responseWindow, bond);
    }

    /// @notice Registers a model: its root (docs/vir.md §7) and program parameters. `configProof` proves that
    ///         `configHash(config)` is the last leaf of `modelRoot` (leaf count `9·nLayers + 7`, `+1` when the
    ///         output matrix is untied), so the parameters are bound to the committed weights.
    function registerModel(bytes32 modelRoot, ModelConfig calldata config, bytes32[] calldata configProof)
        external
        onlyOwner
    {
        if (modelRoot == bytes32(0)) revert ZeroModelRoot();
        if (_models[modelRoot].configHash != bytes32(0)) revert ModelAlreadyRegistered(modelRoot);
        if (config.virVersion == 0) revert InvalidModelConfig("virVersion");
        if (config.nLayers == 0) revert InvalidModelConfig("nLayers");
        if (config.dModel == 0) revert InvalidModelConfig("dModel");
        if (config.vocabSize == 0) revert InvalidModelConfig("vocabSize");
        if (config.contextLength == 0) revert InvalidModelConfig("contextLength");
        if (config.tiedOutput > 1) revert InvalidModelConfig("tiedOutput");
        bytes32 configHash = configHashOf(config);
        uint256 leaves = 9 * uint256(config.nLayers) + (config.tiedOutput == 1 ? 7 : 8);
        if (!Protocol.verifyWithCount(modelRoot, leaves, configHash, leaves - 1, configProof)) {
            revert ConfigNotInModelRoot(modelRoot, configHash);
        }
        Model storage m = _models[modelRoot];
        m.configHash = configHash;
        m.config = config;
        emit ModelRegistered(modelRoot, configHash, config.nLayers, config.contextLength);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Bonds
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Registers the caller as a sequencer with `msg.value` as bond (at least `minSequencerBond`).
    function registerSequencer() external payable {
        _register(Role.Sequencer, minSequencerBond);
        emit SequencerRegistered(msg.sender, msg.value);
    }

    /// @notice Registers the caller as an executor with `msg.value` as bond (at least `minExecutorBond`).
    function registerExecutor() external payable {
        _register(Role.Executor, minExecutorBond);
        emit ExecutorRegistered(msg.sender, msg.value);
    }

    /// @notice Adds `msg.value` to the caller's active bond of `role`.
    function topUp(Role role) external payable {
        if (msg.value == 0) revert ZeroValue();
        Bond storage b = _bonds[role][msg.sender];
        if (b.status == BondStatus.None) revert NotRegistered(role, msg.sender);
        if (b.status == BondStatus.Withdrawing) revert BondWithdrawing(role, msg.sender);
        uint256 amount = uint256(b.amount) + msg.value;
        if (amount > type(uint128).max) revert BondTooLarge(amount);
        b.amount = uint128(amount);
        emit BondChanged(role, msg.sender, amount);
    }

    /// @notice Starts the withdrawal delay of the caller's bond of `role`; the role is inactive from now on.
    function requestWithdrawal(Role role) external {
        Bond storage b = _bonds[role][msg.sender];
        if (b.status == BondStatus.None) revert NotRegistered(role, msg.sender);
        if (b.status == BondStatus.Withdrawing) revert WithdrawalAlreadyRequested(role, msg.sender);
        uint64 unlockAt = uint64(block.timestamp) + withdrawalDelay;
        b.status = BondStatus.Withdrawing;
        b.unlockAt = unlockAt;
        emit WithdrawalRequested(role, msg.sender, b.amount, unlockAt);
    }

    /// @notice Pays out the caller's bond of `role` after the withdrawal delay (and, for an executor, once no
    ///         dispute against it is open). The registration ends; the caller may register again.
    function withdraw(Role role) external {
        Bond memory b = _bonds[role][msg.sender];
        if (b.status != BondStatus.Withdrawing) revert NoWithdrawalRequested(role, msg.sender);
        if (block.timestamp < b.unlockAt) revert WithdrawalNotReady(b.unlockAt, uint64(block.timestamp));
        if (role == Role.Executor) {
            uint256 open = openDisputesOfExecutor[msg.sender];
            if (open != 0) revert BondLocked(msg.sender, open);
        }
        delete _bonds[role][msg.sender];
        emit BondChanged(role, msg.sender, 0);
        emit Withdrawn(role, msg.sender, b.amount);
        _send(msg.sender, b.amount);
    }

    /// @notice Pays out the caller's slashing rewards.
    function claim() external {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        credits[msg.sender] = 0;
        emit CreditClaimed(msg.sender, amount);
        _send(msg.sender, amount);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Batches
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Posts a batch with its data as calldata: `data` is the batch data (docs/protocol.md §6) and its DA
    ///         commitment is `keccak256(data)`; `batchRoot` is the Merkle root over `leafCount` leaf hashes, `sigRoot`
    ///         the Merkle root over the `leafCount` signature hashes. `prevStateRoot` must be the current
    ///         `stateRoot`, so a poster that retries after a crash can never post a batch twice.
    /// @return batchId The new batch id (`batchCount`).
    /// @return newStateRoot `keccak256(prevStateRoot ‖ batchRoot)`.
    function postBatch(bytes calldata data, bytes32 batchRoot, uint64 leafCount, bytes32 sigRoot, bytes32 prevStateRoot)
        external
        returns (uint256 batchId, bytes32 newStateRoot)
    {
        if (data.length == 0) revert EmptyBatchData();
        bytes32 daCommitment;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, data.offset, data.length)
            daCommitment := keccak256(ptr, data.length)
        }
        return _post(daCommitment, batchRoot, leafCount, sigRoot, prevStateRoot);
    }

    /// @notice Posts a batch whose data travels in the transaction's EIP-4844 blobs (docs/protocol.md §6): the DA
    ///         commitment is `keccak256(blobhash(0) ‖ … ‖ blobhash(n-1))` over all the transaction's blobs, so gas
    ///         does not depend on the data size. Otherwise as `postBatch`. Reverts with `NoBlobs` without blobs.
    /// @return batchId The new batch id (`batchCount`).
    /// @return newStateRoot `keccak256(prevStateRoot ‖ batchRoot)`.
    function postBatchBlobs(bytes32 batchRoot, uint64 leafCount, bytes32 sigRoot, bytes32 prevStateRoot)
        external
        returns (uint256 batchId, bytes32 newStateRoot)
    {
        bytes32 daCommitment;
        uint256 n;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            for {} 1 {} {
                let h := blobhash(n)
                if iszero(h) { break }
                mstore(add(ptr, shl(5, n)), h)
                n := add(n, 1)
            }
            daCommitment := keccak256(ptr, shl(5, n))
        }
        if (n == 0) revert NoBlobs();
        return _post(daCommitment, batchRoot, leafCount, sigRoot, prevStateRoot);
    }

    /// @notice Finalizes batch `batchId` once its challenge window has passed and no dispute and no signature
    ///         challenge on it is open. Anyone may call it.
    function finalize(uint256 batchId) external {
        Batch storage b = _batch(batchId);
        if (b.finalized) revert BatchAlreadyFinalized(batchId);
        uint256 windowEnd = uint256(b.postedAt) + challengeWindow;
        if (block.timestamp < windowEnd) revert ChallengeWindowOpen(batchId, windowEnd);
        uint256 open = openDisputesOfBatch[batchId];
        if (open != 0) revert BatchUnderDispute(batchId, open);
        uint256 pending = pendingSignatureChallenges[batchId];
        if (pending != 0) revert SignatureChallengePending(batchId, pending);
        b.finalized = true;
        emit BatchFinalized(batchId, b.batchRoot);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Dispute game hooks
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Records a dispute on a leaf of `batchId` signed by `executor`. Only inside the challenge window; while
    ///         open, the batch cannot be finalized and the executor cannot withdraw.
    function disputeOpened(uint256 batchId, address executor) external onlyDisputeGame {
        Batch storage b = _batch(batchId);
        if (b.finalized) revert BatchAlreadyFinalized(batchId);
        uint256 closesAt = uint256(b.postedAt) + challengeWindow;
        if (block.timestamp >= closesAt) revert ChallengeWindowClosed(batchId, closesAt);
        ++openDisputesOfBatch[batchId];
        ++openDisputesOfExecutor[executor];
        emit DisputeOpened(batchId, executor);
    }

    /// @notice Records the end of a dispute reported with `disputeOpened(batchId, executor)`.
    function disputeClosed(uint256 batchId, address executor) external onlyDisputeGame {
        if (openDisputesOfBatch[batchId] == 0 || openDisputesOfExecutor[executor] == 0) {
            revert NoOpenDispute(batchId, executor);
        }
        --openDisputesOfBatch[batchId];
        --openDisputesOfExecutor[executor];
        emit DisputeClosed(batchId, executor);
    }

    /// @notice Marks leaf `index` of batch `batchId` invalid (a proven fraud). Only before the batch is final.
    function invalidateLeaf(uint256 batchId, uint256 index) external onlyDisputeGame {
        Batch storage b = _batch(batchId);
        if (index >= b.leafCount) revert LeafIndexOutOfRange(index, b.leafCount);
        if (b.finalized) revert BatchAlreadyFinalized(batchId);
        if (invalidLeaf[batchId][index]) revert LeafAlreadyInvalid(batchId, index);
        invalidLeaf[batchId][index] = true;
        emit LeafInvalidated(batchId, index);
    }

    /// @notice Takes up to `amount` from `offender`'s bond of `role` (active or withdrawing): `reward` (at most half
    ///         of what was taken) is credited to `beneficiary`, the rest is burned (sent to address(0)).
    /// @return slashed What was taken (the bond, if smaller than `amount`).
    function slash(Role role, address offender, uint256 amount, address beneficiary, uint256 reward)
        external
        onlyDisputeGame
        returns (uint256 slashed)
    {
        return _slash(role, offender, amount, beneficiary, reward);
    }

    function _slash(Role role, address offender, uint256 amount, address beneficiary, uint256 reward)
        internal
        returns (uint256 slashed)
    {
        if (beneficiary == address(0) && reward != 0) revert ZeroAddress();
        Bond storage b = _bonds[role][offender];
        slashed = amount < b.amount ? amount : b.amount;
        if (reward > slashed / 2) revert RewardTooLarge(reward, slashed / 2);
        uint256 burned = slashed - reward;
        b.amount -= uint128(slashed);
        credits[beneficiary] += reward;
        emit BondChanged(role, offender, b.amount);
        emit Slashed(role, offender, slashed, burned, beneficiary, reward);
        _send(address(0), burned);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Non-interactive fault: bad signature
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Proves that leaf `index` of `batchId` was posted with a signature that does not recover its executor
    ///         (forged, signed by another key, malformed, high-s, bad v): the leaf is invalidated and the batch's
    ///         sequencer loses its whole bond, half credited to the caller and half burned. Anyone; only before the
    ///         batch is final. `sig` opens the signature posted for the leaf under the batch's `sigRoot`.
    /// @param batchId The batch.
    /// @param leaf The leaf.
    /// @param index Its index in the batch.
    /// @param leafProof Its batch Merkle proof.
    /// @param sig The signature posted for it, with its proof under `sigRoot`.
    function proveBadSignature(
        uint256 batchId,
        InferenceLeaf calldata leaf,
        uint256 index,
        bytes32[] calldata leafProof,
        SignatureOpening calldata sig
    ) external {
        Batch storage b = _unfinalizedLeaf(batchId, leaf, index, leafProof);
        address signer = _openSignature(b, batchId, index, leafSigningHash(leaf), sig);
        if (signer != address(0) && signer == leaf.executor) revert SignatureValid(batchId, index, signer);
        if (invalidLeaf[batchId][index]) revert LeafAlreadyInvalid(batchId, index);
        _punishBadSignature(b, batchId, index, leaf.executor, msg.sender);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Signature challenge (a garbage `sigRoot`)
    // ---------------------------------------------------------------------------------------------------------------

    /// @notice Challenges the sequencer of `batchId` to open the signature posted for leaf `index` (for when no
    ///         signature can be opened under the batch's `sigRoot`, e.g. a garbage root). Anyone, with exactly
    ///         `signatureChallengeBond` as value; only before the batch is final, for a leaf not already invalid,
    ///         once per leaf. The batch cannot be finalized until the challenge is answered or resolved.
    /// @param batchId The batch.
    /// @param leaf The leaf.
    /// @param index Its index in the batch.
    /// @param leafProof Its batch Merkle proof.
    function challengeSignature(uint256 batchId, InferenceLeaf calldata leaf, uint256 index, bytes32[] calldata leafProof)
        external
        payable
    {
        _unfinalizedLeaf(batchId, leaf, index, leafProof);
        if (invalidLeaf[batchId][index]) revert LeafAlreadyInvalid(batchId, index);
        uint256 required = signatureChallengeBond;
        if (msg.value != required) revert WrongChallengeBond(msg.value, required);
        SignatureChallenge storage c = _signatureChallenges[batchId][index];
        if (c.status != SignatureChallengeStatus.None) revert SignatureChallengeExists(batchId, index, c.status);
        uint64 deadline = uint64(block.timestamp) + signatureResponseWindow;
        c.challenger = msg.sender;
        c.deadline = deadline;
        c.status = SignatureChallengeStatus.Pending;
        c.executor = leaf.executor;
        c.bond = uint96(required);
        c.digest = leafSigningHash(leaf);
        ++pendingSignatureChallenges[batchId];
        emit SignatureChallenged(batchId, index, leaf.executor, msg.sender, deadline, required);
    }

    /// @notice Answers the pending challenge on leaf `index` of `batchId` before its deadline: `sig` opens the
    ///         signature posted for the leaf under the batch's `sigRoot`, and it must recover the leaf's executor
    ///         (the same check as `proveBadSignature`). The challenger's bond is credited to the batch's sequencer.
    ///         Anyone (typically the sequencer's poster).
    function answerSignatureChallenge(uint256 batchId, uint256 index, SignatureOpening calldata sig) external {
        SignatureChallenge storage c = _pendingSignatureChallenge(batchId, index);
        if (block.timestamp >= c.deadline) revert SignatureChallengeExpired(batchId, index, c.deadline);
        Batch storage b = _batches[batchId];
        address signer = _openSignature(b, batchId, index, c.digest, sig);
        address executor = c.executor;
        if (signer == address(0) || signer != executor) {
            revert SignatureDoesNotRecover(batchId, index, signer, executor);
        }
        c.status = SignatureChallengeStatus.Answered;
        --pendingSignatureChallenges[batchId];
        address sequencer = b.sequencer;
        uint256 bond = c.bond;
        credits[sequencer] += bond;
        emit SignatureChallengeAnswered(batchId, index, executor, sequencer, bond);
    }

    /// @notice Resolves the pending challenge on leaf `index` of `batchId` once its deadline passed unanswered: the
    ///         leaf is invalid and the sequencer slashed as by `proveBadSignature` (whole bond, half to the
    ///         challenger, half burned); the challenger's bond is credited back to it. Anyone.
    function resolveSignatureChallenge(uint256 batchId, uint256 index) external {
        SignatureChallenge storage c = _pendingSignatureChallenge(batchId, index);
        if (block.timestamp < c.deadline) revert SignatureResponseWindowOpen(batchId, index, c.deadline);
        c.status = SignatureChallengeStatus.Resolved;
        --pendingSignatureChallenges[batchId];
        Batch storage b = _batches[batchId];
        address challenger = c.challenger;
        uint256 bond = c.bond;
        credits[challenger] += bond;
        uint256 slashed = _punishBadSignature(b, batchId, index, c.executor, challenger);
        emit SignatureChallengeResolved(batchId, index, challenger, b.sequencer, slashed, bond);
    }

    /// @notice The signature challenge on leaf `index` of `batchId` (status None when there is none).
    function signatureChallenge(uint256 batchId, uint256 index) external view returns (SignatureChallenge memory) {
        return _signatureChallenges[batchId][index];
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------------

    /// @inheritdoc IInferenceRollup
    function isFinalized(uint256 batchId, bytes32 leafHash, uint256 index, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Batch storage b = _batches[batchId];
        if (!b.finalized || invalidLeaf[batchId][index]) return false;
        return Protocol.verifyWithCount(b.batchRoot, b.leafCount, leafHash, index, proof);
    }

    /// @notice Whether `leafHash` is leaf `index` of batch `batchId` (inclusion only; says nothing about finality).
    function verifyLeaf(uint256 batchId, bytes32 leafHash, uint256 index, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Batch storage b = _batches[batchId];
        if (b.leafCount == 0) return false;
        return Protocol.verifyWithCount(b.batchRoot, b.leafCount, leafHash, index, proof);
    }

    /// @inheritdoc IInferenceRollup
    function leafStatus(uint256 batchId, uint256 index) external view returns (LeafStatus) {
        Batch storage b = _batches[batchId];
        if (index >= b.leafCount) return LeafStatus.Unknown;
        if (invalidLeaf[batchId][index]) return LeafStatus.Invalid;
        return b.finalized ? LeafStatus.Final : LeafStatus.Pending;
    }

    /// @notice Batch `batchId` (all zero for an unknown id).
    function getBatch(uint256 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice When batch `batchId` can be finalized (0 for an unknown id).
    function finalizesAt(uint256 batchId) external view returns (uint256) {
        Batch storage b = _batches[batchId];
        return b.leafCount == 0 ? 0 : uint256(b.postedAt) + challengeWindow;
    }

    /// @notice The bond of `who` in `role`.
    function bondOf(Role role, address who) external view returns (Bond memory) {
        return _bonds[role][who];
    }

    /// @notice Whether `who` is active in `role`: registered, not withdrawing, bond at least the minimum.
    function isActive(Role role, address who) public view returns (bool) {
        Bond storage b = _bonds[role][who];
        uint256 min = role == Role.Sequencer ? minSequencerBond : minExecutorBond;
        return b.status == BondStatus.Active && b.amount >= min;
    }

    /// @notice Registered model `modelRoot` (`configHash` zero when unknown).
    function getModel(bytes32 modelRoot) external view returns (Model memory) {
        return _models[modelRoot];
    }

    /// @notice `keccak256(be8(virVersion) ‖ be8(nLayers) ‖ … ‖ be8(tableFrac))` (docs/vir.md §7).
    function configHashOf(ModelConfig calldata c) public pure returns (bytes32) {
        return keccak256(
            abi.encodePacked(
                abi.encodePacked(
                    c.virVersion, c.nLayers, c.dModel, c.dFf, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.contextLength
                ),
                abi.encodePacked(
                    c.tiedOutput, c.epsFx, c.scoreScale, c.residualFrac, c.actFrac, c.attnChunk, c.vocabChunk, c.toppRounds, c.tableFrac
                )
            )
        );
    }

    /// @inheritdoc IInferenceRollup
    function hashLeaf(InferenceLeaf calldata leaf) external pure returns (bytes32) {
        return Protocol.hashLeaf(leaf);
    }

    /// @notice The EIP-712 domain separator of leaf signatures: ("verinfer", "1", chain id, this contract).
    function domainSeparator() public view returns (bytes32) {
        return Protocol.domainSeparator(address(this));
    }

    /// @notice The EIP-712 digest an executor signs for `leaf`.
    function leafSigningHash(InferenceLeaf calldata leaf) public view returns (bytes32) {
        return Protocol.signingHash(domainSeparator(), Protocol.hashLeaf(leaf));
    }

    /// @notice The signer of `leaf` for a 65-byte `r ‖ s ‖ v` signature (docs/protocol.md §4.3), or address(0) for
    ///         a non-canonical or unrecoverable signature.
    function leafSigner(InferenceLeaf calldata leaf, bytes calldata signature) external view returns (address) {
        return Protocol.recover(leafSigningHash(leaf), signature);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Internal
    // ---------------------------------------------------------------------------------------------------------------

    function _register(Role role, uint256 min) internal {
        Bond storage b = _bonds[role][msg.sender];
        if (b.status != BondStatus.None) revert AlreadyRegistered(role, msg.sender);
        if (msg.value < min) revert InsufficientBond(msg.value, min);
        if (msg.value > type(uint128).max) revert BondTooLarge(msg.value);
        b.amount = uint128(msg.value);
        b.status = BondStatus.Active;
        emit BondChanged(role, msg.sender, msg.value);
    }

    /// @dev The common part of `postBatch` and `postBatchBlobs`.
    function _post(bytes32 daCommitment, bytes32 batchRoot, uint64 leafCount, bytes32 sigRoot, bytes32 prevStateRoot)
        internal
        returns (uint256 batchId, bytes32 newStateRoot)
    {
        if (!isActive(Role.Sequencer, msg.sender)) revert NotActiveSequencer(msg.sender);
        if (leafCount == 0) revert EmptyBatch();
        if (leafCount > MAX_LEAF_COUNT) revert LeafCountTooLarge(leafCount, MAX_LEAF_COUNT);
        if (batchRoot == bytes32(0)) revert ZeroBatchRoot();
        bytes32 current = stateRoot;
        if (prevStateRoot != current) revert StaleStateRoot(prevStateRoot, current);

        newStateRoot = Protocol.hashPair(current, batchRoot);
        batchId = uint256(batchCount) + 1;

        batchCount = uint64(batchId);
        stateRoot = newStateRoot;
        _batches[batchId] = Batch({
            batchRoot: batchRoot,
            commitment: Protocol.hashPair(daCommitment, sigRoot),
            sequencer: msg.sender,
            postedAt: uint40(block.timestamp),
            leafCount: uint48(leafCount),
            finalized: false
        });
        emit BatchPosted(batchId, msg.sender, batchRoot, daCommitment, sigRoot, leafCount, newStateRoot);
    }

    /// @dev Batch `batchId`, not final, with `leaf` at `index` (the common checks of `proveBadSignature` and
    ///      `challengeSignature`).
    function _unfinalizedLeaf(uint256 batchId, InferenceLeaf calldata leaf, uint256 index, bytes32[] calldata leafProof)
        internal
        view
        returns (Batch storage b)
    {
        b = _batch(batchId);
        if (b.finalized) revert BatchAlreadyFinalized(batchId);
        if (!Protocol.verifyWithCount(b.batchRoot, b.leafCount, Protocol.hashLeaf(leaf), index, leafProof)) {
            revert LeafNotInBatch(batchId, index);
        }
    }

    /// @dev Opens `sig` as the signature posted at `index` of batch `b` (its halves must hash to the stored
    ///      commitment, the signature hash must be leaf `index` of `sigRoot`) and returns its signer of `digest`, or
    ///      address(0) for a non-canonical or unrecoverable signature. Shared by `proveBadSignature` and
    ///      `answerSignatureChallenge`.
    function _openSignature(
        Batch storage b,
        uint256 batchId,
        uint256 index,
        bytes32 digest,
        SignatureOpening calldata sig
    ) internal view returns (address) {
        if (Protocol.hashPair(sig.daCommitment, sig.sigRoot) != b.commitment) revert CommitmentMismatch(batchId);
        if (!Protocol.verifyWithCount(sig.sigRoot, b.leafCount, keccak256(sig.signature), index, sig.proof)) {
            revert SignatureNotInBatch(batchId, index);
        }
        return Protocol.recover(digest, sig.signature);
    }

    /// @dev The bad-signature penalty: leaf `index` invalid (if it is not already), the batch's sequencer loses its
    ///      whole bond, half credited to `beneficiary`, half burned.
    function _punishBadSignature(Batch storage b, uint256 batchId, uint256 index, address executor, address beneficiary)
        internal
        returns (uint256 slashed)
    {
        if (!invalidLeaf[batchId][index]) {
            invalidLeaf[batchId][index] = true;
            emit LeafInvalidated(batchId, index);
        }
        address sequencer = b.sequencer;
        uint256 amount = _bonds[Role.Sequencer][sequencer].amount;
        slashed = _slash(Role.Sequencer, sequencer, amount, beneficiary, amount / 2);
        emit BadSignatureProven(batchId, index, executor, sequencer, slashed);
    }

    function _pendingSignatureChallenge(uint256 batchId, uint256 index)
        internal
        view
        returns (SignatureChallenge storage c)
    {
        c = _signatureChallenges[batchId][index];
        if (c.status != SignatureChallengeStatus.Pending) revert NoPendingSignatureChallenge(batchId, index);
    }

    function _batch(uint256 batchId) internal view returns (Batch storage b) {
        b = _batches[batchId];
        if (b.leafCount == 0) revert UnknownBatch(batchId);
    }

    function _send(address to, uint256 amount) internal {
        if (amount == 0) return;
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {InferenceLeaf, Protocol} from "./Protocol.sol";
import {IInferenceRollup} from "./IInferenceRollup.sol";

/// @title ExampleConsumer
/// @notice A question board that acts only on final, valid inference results. An asker posts a question (the model
///         and the prompt token root it wants answered) with a reward in ETH; anyone may then submit a leaf of a final
///         batch with its Merkle proof and the output token ids. The contract checks with the rollup that the leaf
///         is final and not invalidated, that it answers this question (model, prompt) and that the token ids hash
///         to the leaf's `outputHash`; then it records the answer and pays the reward to the leaf's executor.
contract ExampleConsumer {
    struct Question {
        address asker;
        bytes32 modelRoot;
        bytes32 promptRoot;
        uint256 reward;
        bool answered;
        uint256 batchId;
        uint256 leafIndex;
        bytes32 outputHash;
    }

    event Asked(uint256 indexed questionId, address indexed asker, bytes32 modelRoot, bytes32 promptRoot, uint256 reward);
    event Answered(
        uint256 indexed questionId, address indexed executor, uint256 batchId, uint256 leafIndex, uint32[] outputTokens
    );

    error ZeroRollup();
    error UnknownQuestion(uint256 questionId);
    error AlreadyAnswered(uint256 questionId);
    error WrongModel(bytes32 expected, bytes32 got);
    error WrongPrompt(bytes32 expected, bytes32 got);
    error OutputMismatch(bytes32 outputHash, bytes32 computed);
    error NotFinalized(uint256 batchId, uint256 leafIndex);
    error PaymentFailed(address to, uint256 amount);

    /// @notice The rollup whose finality this contract trusts.
    IInferenceRollup public immutable rollup;
    /// @notice Number of questions asked; the latest question id (ids start at 1).
    uint256 public questionCount;
    mapping(uint256 questionId => Question) internal _questions;

    constructor(IInferenceRollup rollup_) {
        if (address(rollup_) == address(0)) revert ZeroRollup();
        rollup = rollup_;
    }

    /// @notice Asks for a completion of `promptRoot` (docs/protocol.md §2 `token_ids_root` of the templated prompt)
    ///         by model `modelRoot`; `msg.value` is the reward.
    function ask(bytes32 modelRoot, bytes32 promptRoot) external payable returns (uint256 questionId) {
        questionId = ++questionCount;
        _questions[questionId] = Question({
            asker: msg.sender,
            modelRoot: modelRoot,
            promptRoot: promptRoot,
            reward: msg.value,
            answered: false,
            batchId: 0,
            leafIndex: 0,
            outputHash: bytes32(0)
        });
        emit Asked(questionId, msg.sender, modelRoot, promptRoot, msg.value);
    }

    /// @notice Answers question `questionId` with leaf `leafIndex` of batch `batchId`. Reverts unless the rollup
    ///         reports the leaf final and valid.
    function answer(
        uint256 questionId,
        uint256 batchId,
        InferenceLeaf calldata leaf,
        uint256 leafIndex,
        bytes32[] calldata proof,
        uint32[] calldata outputTokens
    ) external {
        Question storage q = _questions[questionId];
        if (q.asker == address(0)) revert UnknownQuestion(questionId);
        if (q.answered) revert AlreadyAnswered(questionId);
        if (leaf.modelRoot != q.modelRoot) revert WrongModel(q.modelRoot, leaf.modelRoot);
        if (leaf.promptRoot != q.promptRoot) revert WrongPrompt(q.promptRoot, leaf.promptRoot);
        bytes32 computed = Protocol.tokenIdsRoot(outputTokens);
        if (computed != leaf.outputHash) revert OutputMismatch(leaf.outputHash, computed);
        if (!rollup.isFinalized(batchId, Protocol.hashLeaf(leaf), leafIndex, proof)) {
            revert NotFinalized(batchId, leafIndex);
        }
        q.answered = true;
        q.batchId = batchId;
        q.leafIndex = leafIndex;
        q.outputHash = leaf.outputHash;
        uint256 reward = q.reward;
        q.reward = 0;
        emit Answered(questionId, leaf.executor, batchId, leafIndex, outputTokens);
        if (reward != 0) {
            (bool ok,) = payable(leaf.executor).call{value: reward}("");
            if (!ok) revert PaymentFailed(leaf.executor, reward);
        }
    }

    /// @notice Question `questionId` (asker zero when unknown).
    function getQuestion(uint256 questionId) external view returns (Question memory) {
        return _questions[questionId];
    }

    /// @notice `token_ids_root(ids)` (docs/protocol.md §2), as checked against a leaf's `outputHash`.
    function tokenIdsRoot(uint32[] calldata ids) external pure returns (bytes32) {
        return Protocol.tokenIdsRoot(ids);
    }
}

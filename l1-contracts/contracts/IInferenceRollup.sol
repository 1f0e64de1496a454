// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {InferenceLeaf} from "./Protocol.sol";

/// @title IInferenceRollup
/// @notice What a consumer contract needs from the rollup: whether a leaf of a batch is final and valid.
interface IInferenceRollup {
    /// @notice Status of one leaf position of a batch.
    /// @dev Unknown: no such batch or index; Pending: in a batch that is not final yet; Final: the batch is final and
    ///      the leaf was not invalidated; Invalid: a dispute proved the leaf wrong.
    enum LeafStatus {
        Unknown,
        Pending,
        Final,
        Invalid
    }

    /// @notice True iff batch `batchId` is final, `leafHash` is its leaf `index` under the batch root (Merkle proof
    ///         checked with the batch's leaf count, docs/protocol.md §1) and that leaf was not invalidated.
    function isFinalized(uint256 batchId, bytes32 leafHash, uint256 index, bytes32[] calldata proof)
        external
        view
        returns (bool);

    /// @notice The status of leaf position `index` of batch `batchId`, without a proof.
    function leafStatus(uint256 batchId, uint256 index) external view returns (LeafStatus);

    /// @notice EIP-712 `hashStruct(leaf)` (docs/protocol.md §4.2).
    function hashLeaf(InferenceLeaf calldata leaf) external pure returns (bytes32);
}

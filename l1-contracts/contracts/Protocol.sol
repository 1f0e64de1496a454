// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @notice One request's result, signed by its executor (EIP-712). Field order and types are the protocol
///         (docs/protocol.md §4.2); the Rust twin is `protocol::InferenceLeaf`.
struct InferenceLeaf {
    uint16 version;
    bytes32 requestId;
    bytes32 modelRoot;
    bytes32 promptRoot;
    bytes32 paramsHash;
    bytes32 outputHash;
    uint8 finishReason;
    bytes32 traceRoot;
    uint64 opCount;
    address executor;
}

/// @title Protocol
/// @notice The commitments of docs/protocol.md in Solidity: EIP-712 leaf hashing (§4), the keccak Merkle tree
///         with zero-leaf padding and count-checked proofs (§1), and token-id roots (§2). Every function here has a
///         Rust reference in the `protocol` crate and is tested against it.
library Protocol {
    /// @dev keccak256 of the leaf's EIP-712 `encodeType` (docs/protocol.md §4.2).
    bytes32 internal constant LEAF_TYPEHASH = keccak256(
        "InferenceLeaf(uint16 version,bytes32 requestId,bytes32 modelRoot,bytes32 promptRoot,bytes32 paramsHash,bytes32 outputHash,uint8 finishReason,bytes32 traceRoot,uint64 opCount,address executor)"
    );

    /// @dev keccak256 of the EIP-712 domain type (name, version, chainId, verifyingContract; no salt).
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev keccak256("verinfer") and keccak256("1"): the domain name and version.
    bytes32 internal constant DOMAIN_NAME_HASH = keccak256("verinfer");
    bytes32 internal constant DOMAIN_VERSION_HASH = keccak256("1");

    /// @dev secp256k1 order / 2: canonical (EIP-2) signatures have s <= this.
    uint256 internal constant SECP256K1_N_HALF = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @dev Bytes per tensor chunk (docs/protocol.md §2).
    uint256 internal constant CHUNK_BYTES = 1024;

    /// @notice EIP-712 `hashStruct(leaf)`: the leaf hash that batch roots are built over.
    function hashLeaf(InferenceLeaf memory leaf) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                LEAF_TYPEHASH,
                leaf.version,
                leaf.requestId,
                leaf.modelRoot,
                leaf.promptRoot,
                leaf.paramsHash,
                leaf.outputHash,
                leaf.finishReason,
                leaf.traceRoot,
                leaf.opCount,
                leaf.executor
            )
        );
    }

    /// @notice The EIP-712 domain separator for `verifyingContract` on the current chain.
    function domainSeparator(address verifyingContract) internal view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, DOMAIN_NAME_HASH, DOMAIN_VERSION_HASH, block.chainid, verifyingContract)
        );
    }

    /// @notice `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ leafHash)`.
    function signingHash(bytes32 separator, bytes32 leafHash) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), leafHash)
            digest := keccak256(ptr, 0x42)
        }
    }

    /// @notice The signer of `digest` for a 65-byte `r ‖ s ‖ v` signature, or address(0) when the signature is not
    ///         canonical (length, v not 27/28, r or s zero, s above n/2) or does not recover.
    function recover(bytes32 digest, bytes calldata signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v != 27 && v != 28) return address(0);
        // r < n is enforced by the precompile (it returns nothing for r >= n); s <= n/2 < n here.
        if (r == bytes32(0) || s == bytes32(0) || uint256(s) > SECP256K1_N_HALF) return address(0);
        return ecrecover(digest, v, r, s);
    }

    /// @notice `keccak256(left ‖ right)`: an inner Merkle node.
    function hashPair(bytes32 left, bytes32 right) internal pure returns (bytes32 node) {
        assembly ("memory-safe") {
            mstore(0x00, left)
            mstore(0x20, right)
            node := keccak256(0x00, 0x40)
        }
    }

    /// @notice Height of the tree over `count` leaves: ceil(log2(count)), 0 for 0 or 1 leaves.
    function treeDepth(uint256 count) internal pure returns (uint256 depth) {
        if (count <= 1) return 0;
        uint256 x = count - 1;
        while (x != 0) {
            x >>= 1;
            ++depth;
        }
    }

    /// @notice Whether `leaf` is leaf `index` of a tree of `count` leaves with root `root` (docs/protocol.md §1):
    ///         requires `index < count` and exactly `treeDepth(count)` siblings, bottom-up.
    function verifyWithCount(bytes32 root, uint256 count, bytes32 leaf, uint256 index, bytes32[] calldata proof)
        internal
        pure
        returns (bool)
    {
        if (index >= count || proof.length != treeDepth(count)) return false;
        bytes32 node = leaf;
        for (uint256 k; k < proof.length; ++k) {
            node = (index >> k) & 1 == 0 ? hashPair(node, proof[k]) : hashPair(proof[k], node);
        }
        return node == root;
    }

    /// @notice Merkle root of `leaves` (docs/protocol.md §1); overwrites `leaves`.
    function merkleRoot(bytes32[] memory leaves) internal pure returns (bytes32) {
        uint256 n = leaves.length;
        if (n == 0) return bytes32(0);
        bytes32 zero; // Z_h: the root of an empty subtree at the current height
        while (n > 1) {
            uint256 half = (n + 1) / 2;
            for (uint256 i; i < half; ++i) {
                bytes32 right = 2 * i + 1 < n ? leaves[2 * i + 1] : zero;
                leaves[i] = hashPair(leaves[2 * i], right);
            }
            zero = hashPair(zero, zero);
            n = half;
        }
        return leaves[0];
    }

    /// @notice `token_ids_root(ids) = keccak256(be8(len) ‖ tensor_root(le4(ids[0]) ‖ le4(ids[1]) ‖ …))`
    ///         (docs/protocol.md §2).
    function tokenIdsRoot(uint32[] calldata ids) internal pure returns (bytes32) {
        uint256 n = ids.length;
        uint256 perChunk = CHUNK_BYTES / 4;
        uint256 chunks = n == 0 ? 1 : (n + perChunk - 1) / perChunk;
        bytes32[] memory leaves = new bytes32[](chunks);
        // One zeroed chunk buffer plus 32 bytes of slack for the last word store.
        bytes memory buf = new bytes(CHUNK_BYTES + 32);
        for (uint256 c; c < chunks; ++c) {
            uint256 start = c * perChunk;
            uint256 end = start + perChunk < n ? start + perChunk : n;
            assembly ("memory-safe") {
                // Zero the chunk (the previous chunk was full, so only the last one can be partial).
                let base := add(buf, 0x20)
                for { let o := 0 } lt(o, 1024) { o := add(o, 0x20) } { mstore(add(base, o), 0) }
            }
            for (uint256 i = start; i < end; ++i) {
                uint256 v = ids[i];
                // Byte-swap to little-endian.
                v = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24);
                uint256 off = (i - start) * 4;
                assembly ("memory-safe") {
                    let p := add(add(buf, 0x20), off)
                    // Write 4 bytes; the 28 zero bytes after them are overwritten by later tokens or are padding.
                    mstore(p, shl(224, v))
                }
            }
            bytes32 leaf;
            assembly ("memory-safe") {
                leaf := keccak256(add(buf, 0x20), 1024)
            }
            leaves[c] = leaf;
        }
        bytes32 inner = merkleRoot(leaves);
        return keccak256(abi.encodePacked(uint64(n), inner));
    }
}

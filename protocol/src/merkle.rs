//! Binary keccak256 Merkle trees over `B256` leaves: roots, inclusion proofs, full trees for
//! bisection, and the allocation-free incremental [`MerkleBuilder`].
//!
//! Definition (normative, `docs/protocol.md` §1): a node is `keccak256(left ‖ right)`; the leaf count
//! is padded to the next power of two with [`EMPTY_LEAF`]; one leaf is its own root; no leaves give
//! [`EMPTY_LEAF`]. Padding is never materialised: an empty subtree of height `k` hashes to
//! [`zero_hashes`]`()[k]` (`Z0 = EMPTY_LEAF`, `Z(k+1) = H(Zk ‖ Zk)`).

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// The padding leaf. It has no known keccak preimage, so no tensor chunk, trace leaf or request leaf
/// can ever be proven at a padding position.
pub const EMPTY_LEAF: B256 = B256::ZERO;

/// The deepest tree the `u64` leaf index can address.
pub const MAX_DEPTH: usize = 64;

static ZERO_HASHES: LazyLock<[B256; MAX_DEPTH + 1]> = LazyLock::new(|| {
    let mut z = [EMPTY_LEAF; MAX_DEPTH + 1];
    for k in 1..=MAX_DEPTH {
        z[k] = hash_pair(&z[k - 1], &z[k - 1]);
    }
    z
});

/// Errors of proof construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The requested leaf does not exist.
    #[error("leaf index {index} out of range for a tree of {count} leaves")]
    IndexOutOfRange {
        /// Requested index.
        index: u64,
        /// Number of (unpadded) leaves in the tree.
        count: u64,
    },
}

/// `keccak256(left ‖ right)`: an inner node.
#[inline]
pub fn hash_pair(left: &B256, right: &B256) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left.as_slice());
    buf[32..].copy_from_slice(right.as_slice());
    keccak256(buf)
}

/// Roots of empty subtrees: `zero_hashes()[k]` is the root of `2^k` [`EMPTY_LEAF`]s.
#[inline]
pub fn zero_hashes() -> &'static [B256; MAX_DEPTH + 1] {
    &ZERO_HASHES
}

/// Height of the tree over `leaf_count` leaves: `ceil(log2(leaf_count))`, 0 for 0 or 1 leaves.
/// An inclusion proof in such a tree has exactly this many siblings.
#[inline]
pub const fn tree_depth(leaf_count: u64) -> u32 {
    if leaf_count <= 1 {
        0
    } else {
        u64::BITS - (leaf_count - 1).leading_zeros()
    }
}

/// Merkle root of `leaves` (see the module docs for the definition).
pub fn merkle_root(leaves: &[B256]) -> B256 {
    match leaves {
        [] => EMPTY_LEAF,
        [leaf] => *leaf,
        _ => {
            let z = zero_hashes();
            let mut level: Vec<B256> = leaves
                .chunks(2)
                .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&z[0])))
                .collect();
            let mut height = 1;
            while level.len() > 1 {
                let n = level.len();
                for i in 0..n.div_ceil(2) {
                    let right = if 2 * i + 1 < n {
                        level[2 * i + 1]
                    } else {
                        z[height]
                    };
                    level[i] = hash_pair(&level[2 * i], &right);
                }
                level.truncate(n.div_ceil(2));
                height += 1;
            }
            level[0]
        }
    }
}

/// Inclusion proof of one leaf: its index and the sibling hashes from the leaf level upwards.
///
/// A proof does not carry the leaf count. A verifier that knows the count should use
/// [`MerkleProof::verify_with_count`], which also pins the depth and rejects padding positions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the leaf (bit `k` selects the side at height `k`: 0 = left).
    pub index: u64,
    /// Sibling hashes, bottom-up.
    pub siblings: Vec<B256>,
}

impl MerkleProof {
    /// The root implied by `leaf` at this proof's position, or `None` when the index does not fit the
    /// proof's depth (an index with bits above the depth would be ambiguous).
    pub fn compute_root(&self, leaf: B256) -> Option<B256> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH || (depth < MAX_DEPTH && self.index >> depth != 0) {
            return None;
        }
        let mut node = leaf;
        let mut index = self.index;
        for sibling in &self.siblings {
            node = if index & 1 == 0 {
                hash_pair(&node, sibling)
            } else {
                hash_pair(sibling, &node)
            };
            index >>= 1;
        }
        Some(node)
    }

    /// Whether `leaf` is at `self.index` under `root`.
    pub fn verify(&self, root: B256, leaf: B256) -> bool {
        self.compute_root(leaf) == Some(root)
    }

    /// [`Self::verify`] for a tree known to hold `leaf_count` leaves: additionally requires
    /// `index < leaf_count` and exactly [`tree_depth`]`(leaf_count)` siblings.
    pub fn verify_with_count(&self, root: B256, leaf_count: u64, leaf: B256) -> bool {
        self.index < leaf_count
            && self.siblings.len() == tree_depth(leaf_count) as usize
            && self.verify(root, leaf)
    }
}

/// Whether `leaf` is included under `root` at `proof.index`.
pub fn verify(root: B256, leaf: B256, proof: &MerkleProof) -> bool {
    proof.verify(root, leaf)
}

/// Inclusion proof of `leaves[index]`.
pub fn proof(leaves: &[B256], index: u64) -> Result<MerkleProof, MerkleError> {
    MerkleTree::new(leaves.to_vec()).proof(index)
}

/// A fully materialised tree: every level kept, for proofs and for revealing inner nodes during
/// bisection. Memory is about twice the leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves, `levels[k]` the nodes at height `k` (unpadded: a missing right
    /// child is the empty subtree of that height).
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: Vec<B256>) -> Self {
        let z = zero_hashes();
        let mut levels = vec![leaves];
        let mut height = 0;
        while levels[height].len() > 1 {
            let below = &levels[height];
            let next = below
                .chunks(2)
                .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&z[height])))
                .collect();
            levels.push(next);
            height += 1;
        }
        Self { levels }
    }

    /// Number of (unpadded) leaves.
    pub fn leaf_count(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Height of the tree, [`tree_depth`] of the leaf count.
    pub fn depth(&self) -> u32 {
        tree_depth(self.leaf_count())
    }

    /// The root ([`EMPTY_LEAF`] for an empty tree).
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or(EMPTY_LEAF)
    }

    /// The leaves.
    pub fn leaves(&self) -> &[B256] {
        &self.levels[0]
    }

    /// Node at `height` (0 = leaves) and position `index` within that height, including padding
    /// nodes (empty-subtree hashes); `None` outside the padded tree.
    pub fn node(&self, height: u32, index: u64) -> Option<B256> {
        let depth = self.depth();
        if height > depth || index >> (depth - height) != 0 {
            return None;
        }
        let level = &self.levels[height as usize];
        Some(
            usize::try_from(index)
                .ok()
                .and_then(|i| level.get(i))
                .copied()
                .unwrap_or(zero_hashes()[height as usize]),
        )
    }

    /// Inclusion proof of leaf `index`.
    pub fn proof(&self, index: u64) -> Result<MerkleProof, MerkleError> {
        let count = self.leaf_count();
        if index >= count {
            return Err(MerkleError::IndexOutOfRange { index, count });
        }
        let z = zero_hashes();
        let depth = self.depth() as usize;
        let mut siblings = Vec::with_capacity(depth);
        let mut i = index as usize;
        for (height, level) in self.levels.iter().take(depth).enumerate() {
            siblings.push(level.get(i ^ 1).copied().unwrap_or(z[height]));
            i >>= 1;
        }
        Ok(MerkleProof { index, siblings })
    }
}

/// The nodes of the **multiproof** of several leaves (`docs/protocol.md` §1.1), built from their single
/// inclusion proofs (all of the same depth).
///
/// A multiproof opens the distinct leaf indices `I` (ascending) of one tree of depth `D` at once. Its nodes are
/// the siblings the bottom-up pass below consumes, in the order it consumes them: at each height `h = 0 .. D-1`
/// the current nodes (ascending by position) are taken in turn; a node at even position `x` whose right
/// neighbour `x + 1` is also current is hashed with it (`H(n_x ‖ n_{x+1})`), any other node takes the next proof
/// node as its sibling (on the right for even `x`, on the left for odd `x`); the parents (`x >> 1`) are the
/// current nodes of height `h + 1`. After `D` heights exactly one node (position 0), the root, is left and every
/// proof node is used. For one leaf the nodes are exactly its single proof's siblings. Duplicate indices are
/// opened once.
pub fn multiproof_nodes(proofs: &[MerkleProof]) -> Result<Vec<B256>, MultiProofError> {
    let Some(depth) = proofs.first().map(|p| p.siblings.len()) else {
        return Ok(Vec::new());
    };
    let mut open: Vec<&MerkleProof> = proofs.iter().collect();
    open.sort_by_key(|p| p.index);
    open.dedup_by_key(|p| p.index);
    for p in &open {
        if p.siblings.len() != depth || (depth < MAX_DEPTH && p.index >> depth != 0) {
            return Err(MultiProofError::Shape);
        }
    }
    // (position at the current height, one opened leaf below it)
    let mut cur: Vec<(u64, usize)> = open.iter().enumerate().map(|(k, p)| (p.index, k)).collect();
    let mut nodes = Vec::new();
    for h in 0..depth {
        let mut next = Vec::with_capacity(cur.len());
        let mut i = 0;
        while i < cur.len() {
            let (x, k) = cur[i];
            if x & 1 == 0 && cur.get(i + 1).is_some_and(|n| n.0 == x + 1) {
                i += 2;
            } else {
                nodes.push(open[k].siblings[h]);
                i += 1;
            }
            next.push((x >> 1, k));
        }
        cur = next;
    }
    Ok(nodes)
}

/// The root implied by a multiproof (`docs/protocol.md` §1.1) of `leaves` (`(index, leaf)`, strictly ascending
/// by index) in a tree of depth `depth`; `None` when the leaves are empty, unordered or outside the depth, or the
/// nodes are too few or too many.
pub fn multiproof_root(depth: u32, leaves: &[(u64, B256)], nodes: &[B256]) -> Option<B256> {
    if leaves.is_empty()
        || depth as usize > MAX_DEPTH
        || leaves.windows(2).any(|w| w[0].0 >= w[1].0)
        || leaves
            .iter()
            .any(|(i, _)| (depth as usize) < MAX_DEPTH && i >> depth != 0)
    {
        return None;
    }
    let mut cur = leaves.to_vec();
    let mut proof = nodes.iter();
    for _ in 0..depth {
        let mut next = Vec::with_capacity(cur.len());
        let mut i = 0;
        while i < cur.len() {
            let (x, node) = cur[i];
            let parent = if x & 1 == 0 {
                match cur.get(i + 1) {
                    Some(&(y, right)) if y == x + 1 => {
                        i += 1;
                        hash_pair(&node, &right)
                    }
                    _ => hash_pair(&node, proof.next()?),
                }
            } else {
                hash_pair(proof.next()?, &node)
            };
            i += 1;
            next.push((x >> 1, parent));
        }
        cur = next;
    }
    if proof.next().is_some() {
        return None;
    }
    Some(cur[0].1)
}

/// Whether `leaves` (`(index, leaf)`, strictly ascending by index, every index `< leaf_count`) are in the tree of
/// `leaf_count` leaves with root `root`, by the multiproof `nodes` (exact depth [`tree_depth`]`(leaf_count)`).
pub fn verify_multiproof(
    root: B256,
    leaf_count: u64,
    leaves: &[(u64, B256)],
    nodes: &[B256],
) -> bool {
    leaves.iter().all(|(i, _)| *i < leaf_count)
        && multiproof_root(tree_depth(leaf_count), leaves, nodes) == Some(root)
}

/// Errors of multiproof construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultiProofError {
    /// The single proofs have different depths, or an index does not fit the depth.
    #[error("single proofs of different depths, or an index outside the depth")]
    Shape,
    /// A leaf does not exist.
    #[error(transparent)]
    Leaf(#[from] MerkleError),
}

impl MerkleTree {
    /// The multiproof nodes of the leaves at `indices` (any order, duplicates allowed; see [`multiproof_nodes`]).
    pub fn multiproof(&self, indices: &[u64]) -> Result<Vec<B256>, MultiProofError> {
        let proofs = indices
            .iter()
            .map(|&i| self.proof(i))
            .collect::<Result<Vec<_>, _>>()?;
        multiproof_nodes(&proofs)
    }
}

/// Incremental root computation: push leaves one at a time, O(log n) memory, no allocation.
///
/// `finish()` equals [`merkle_root`] of the pushed leaves. The builder keeps, per height `k`, the root
/// of the last complete left subtree of `2^k` leaves (the "frontier").
#[derive(Clone)]
pub struct MerkleBuilder {
    branch: [B256; MAX_DEPTH + 1],
    count: u64,
}

impl std::fmt::Debug for MerkleBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleBuilder")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for MerkleBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MerkleBuilder {
    /// An empty builder.
    pub const fn new() -> Self {
        Self {
            branch: [EMPTY_LEAF; MAX_DEPTH + 1],
            count: 0,
        }
    }

    /// Appends a leaf and returns its index. Amortised one hash per push.
    #[inline]
    pub fn push(&mut self, leaf: B256) -> u64 {
        let index = self.count;
        let mut node = leaf;
        let mut height = 0;
        let mut c = index;
        while c & 1 == 1 {
            node = hash_pair(&self.branch[height], &node);
            c >>= 1;
            height += 1;
        }
        self.branch[height] = node;
        self.count += 1;
        index
    }

    /// Number of leaves pushed.
    pub const fn len(&self) -> u64 {
        self.count
    }

    /// Whether no leaf was pushed.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Root of the leaves pushed so far (the builder stays usable).
    pub fn root(&self) -> B256 {
        let n = self.count;
        if n == 0 {
            return EMPTY_LEAF;
        }
        if n.is_power_of_two() {
            return self.branch[n.trailing_zeros() as usize];
        }
        let z = zero_hashes();
        // `node` is the root of the partial subtree right of the complete ones, at height `h`.
        let mut node = z[0];
        let depth = tree_depth(n) as usize;
        for (h, (left, empty)) in self.branch.iter().zip(z.iter()).take(depth).enumerate() {
            node = if (n >> h) & 1 == 1 {
                hash_pair(left, &node)
            } else {
                hash_pair(&node, empty)
            };
        }
        node
    }

    /// Root of all pushed leaves.
    pub fn finish(self) -> B256 {
        self.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n as u64).map(|i| keccak256(i.to_be_bytes())).collect()
    }

    /// Literal reading of the definition: pad with EMPTY_LEAF to a power of two, hash pairwise.
    fn naive_root(leaves: &[B256]) -> B256 {
        if leaves.is_empty() {
            return EMPTY_LEAF;
        }
        let mut level = leaves.to_vec();
        level.resize(leaves.len().next_power_of_two(), EMPTY_LEAF);
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        }
        level[0]
    }

    #[test]
    fn small_trees_match_definition() {
        let l = leaves(5);
        assert_eq!(merkle_root(&[]), EMPTY_LEAF);
        assert_eq!(merkle_root(&l[..1]), l[0]);
        assert_eq!(merkle_root(&l[..2]), hash_pair(&l[0], &l[1]));
        assert_eq!(
            merkle_root(&l[..3]),
            hash_pair(&hash_pair(&l[0], &l[1]), &hash_pair(&l[2], &EMPTY_LEAF))
        );
        for n in 0..=70 {
            let l = leaves(n);
            let want = naive_root(&l);
            assert_eq!(merkle_root(&l), want, "n={n}");
            assert_eq!(MerkleTree::new(l.clone()).root(), want, "n={n}");
            let mut b = MerkleBuilder::new();
            for (i, leaf) in l.iter().enumerate() {
                assert_eq!(b.push(*leaf), i as u64);
            }
            assert_eq!(b.finish(), want, "n={n}");
        }
    }

    #[test]
    fn multiproofs_match_single_proofs() {
        // Every subset of up to 3 leaves of small trees, and spread subsets of a larger one.
        for n in 1..=13u64 {
            let l = leaves(n as usize);
            let tree = MerkleTree::new(l.clone());
            let depth = tree.depth();
            for a in 0..n {
                for b in a..n {
                    for c in b..n {
                        let idx = [c, a, b];
                        let nodes = tree.multiproof(&idx).unwrap();
                        let mut open: Vec<(u64, B256)> =
                            idx.iter().map(|&i| (i, l[i as usize])).collect();
                        open.sort_unstable();
                        open.dedup();
                        assert!(
                            verify_multiproof(tree.root(), n, &open, &nodes),
                            "n={n} {idx:?}"
                        );
                        // Never longer than the single proofs together; one leaf gives its single proof.
                        assert!(nodes.len() <= open.len() * depth as usize);
                        if open.len() == 1 {
                            assert_eq!(nodes, tree.proof(a).unwrap().siblings);
                        }
                        // A wrong leaf, a missing or an extra node fails.
                        let mut bad = open.clone();
                        bad[0].1 = keccak256(b"x");
                        assert!(!verify_multiproof(tree.root(), n, &bad, &nodes));
                        if !nodes.is_empty() {
                            assert!(!verify_multiproof(tree.root(), n, &open, &nodes[1..]));
                        }
                        let mut more = nodes.clone();
                        more.push(B256::ZERO);
                        assert!(!verify_multiproof(tree.root(), n, &open, &more));
                    }
                }
            }
        }
        let l = leaves(5000);
        let tree = MerkleTree::new(l.clone());
        let idx: Vec<u64> = (0..64).map(|k| 100 + 73 * k).collect();
        let nodes = tree.multiproof(&idx).unwrap();
        let open: Vec<(u64, B256)> = idx.iter().map(|&i| (i, l[i as usize])).collect();
        assert!(verify_multiproof(tree.root(), 5000, &open, &nodes));
        assert!(nodes.len() < 64 * tree.depth() as usize / 2);
        let mut swapped = open.clone();
        swapped.swap(0, 1);
        assert!(!verify_multiproof(tree.root(), 5000, &swapped, &nodes));
        assert!(!verify_multiproof(tree.root(), 5000, &[], &[]));
    }

    #[test]
    fn zero_hashes_chain() {
        let z = zero_hashes();
        assert_eq!(z[0], EMPTY_LEAF);
        assert_eq!(z[1], keccak256([0u8; 64]));
        assert_eq!(merkle_root(&[EMPTY_LEAF; 8]), z[3]);
    }

    #[test]
    fn depth() {
        assert_eq!(tree_depth(0), 0);
        assert_eq!(tree_depth(1), 0);
        assert_eq!(tree_depth(2), 1);
        assert_eq!(tree_depth(3), 2);
        assert_eq!(tree_depth(4), 2);
        assert_eq!(tree_depth(5), 3);
        assert_eq!(tree_depth(u64::MAX), 64);
    }

    #[test]
    fn proofs_and_nodes() {
        for n in 1..=17 {
            let l = leaves(n);
            let tree = MerkleTree::new(l.clone());
            for i in 0..n as u64 {
                let p = tree.proof(i).unwrap();
                assert_eq!(p.siblings.len() as u32, tree_depth(n as u64));
                assert!(p.verify_with_count(tree.root(), n as u64, l[i as usize]));
                assert!(!p.verify_with_count(tree.root(), i, l[i as usize]));
            }
            assert_eq!(
                tree.proof(n as u64),
                Err(MerkleError::IndexOutOfRange {
                    index: n as u64,
                    count: n as u64
                })
            );
            assert_eq!(tree.node(tree.depth(), 0), Some(tree.root()));
            assert_eq!(tree.node(tree.depth(), 1), None);
        }
        let tree = MerkleTree::new(leaves(5));
        assert_eq!(tree.node(0, 7), Some(EMPTY_LEAF));
        assert_eq!(tree.node(1, 3), Some(zero_hashes()[1]));
        assert_eq!(tree.node(0, 8), None);
        assert!(MerkleTree::new(vec![]).proof(0).is_err());
        assert_eq!(MerkleTree::new(vec![]).root(), EMPTY_LEAF);
    }

    #[test]
    fn index_above_depth_rejected() {
        let l = leaves(4);
        let root = merkle_root(&l);
        let mut p = proof(&l, 1).unwrap();
        assert!(verify(root, l[1], &p));
        p.index += 4;
        assert!(!verify(root, l[1], &p));
        let huge = MerkleProof {
            index: 0,
            siblings: vec![B256::ZERO; 65],
        };
        assert_eq!(huge.compute_root(B256::ZERO), None);
    }
}

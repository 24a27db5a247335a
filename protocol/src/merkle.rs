//! SHA-256 Merkle tree over chunk hashes, with per-chunk proofs (as BitTorrent v2).
//!
//! Leaves are `H(0x00 || chunk)`, inner nodes `H(0x01 || left || right)`; the
//! leaf layer is padded to a power of two with zero hashes. A tree may be
//! partial: a downloader starts with only the root and learns the nodes on each
//! verified chunk's path, which is exactly what it needs to serve that chunk's
//! proof to others.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Hash length in bytes.
pub const HASH_LEN: usize = 32;

/// Deepest tree we accept (2^32 chunks).
pub const MAX_DEPTH: usize = 32;

/// Sibling hashes from a leaf up to (not including) the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof(pub Vec<Hash>);

/// Why a chunk or proof failed verification.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    /// Chunk index past the end of the content.
    #[error("chunk {index} out of range (content has {count} chunks)")]
    IndexOutOfRange { index: u32, count: u32 },
    /// Proof has the wrong number of hashes for this tree.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength { got: usize, expected: usize },
    /// Proof bytes are not a whole number of hashes.
    #[error("proof is {0} bytes, not a multiple of 32")]
    RaggedProof(usize),
    /// The recomputed root differs from the trusted one.
    #[error("chunk {0} does not match the content's Merkle root")]
    RootMismatch(u32),
}

/// Hash of one chunk's bytes as a leaf.
pub fn hash_leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Incremental leaf hasher, for chunks that arrive in pieces.
#[derive(Clone)]
pub struct LeafHasher(Sha256);

impl LeafHasher {
    /// Starts a new leaf.
    pub fn new() -> Self {
        let mut h = Sha256::new();
        h.update([0u8]);
        Self(h)
    }

    /// Feeds more of the chunk.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The leaf hash.
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

impl Default for LeafHasher {
    fn default() -> Self {
        Self::new()
    }
}

fn hash_node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Number of levels above the leaves for `count` chunks.
pub fn depth_for(count: u32) -> usize {
    if count <= 1 {
        0
    } else {
        (32 - (count - 1).leading_zeros()) as usize
    }
}

/// Hashes of all-padding subtrees, one per level.
fn pad_hashes(depth: usize) -> Vec<Hash> {
    let mut pads = vec![[0u8; 32]];
    for l in 0..depth {
        let p = pads[l];
        pads.push(hash_node(&p, &p));
    }
    pads
}

impl Proof {
    /// Concatenated hashes, for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.concat()
    }

    /// Splits concatenated hashes, rejecting a ragged or over-deep proof.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        if !bytes.len().is_multiple_of(HASH_LEN) {
            return Err(ProofError::RaggedProof(bytes.len()));
        }
        let n = bytes.len() / HASH_LEN;
        if n > MAX_DEPTH {
            return Err(ProofError::WrongProofLength {
                got: n,
                expected: MAX_DEPTH,
            });
        }
        Ok(Self(
            bytes
                .chunks_exact(HASH_LEN)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect(),
        ))
    }
}

/// Checks one chunk against a trusted root without keeping any state.
pub fn verify_chunk(
    root: &Hash,
    count: u32,
    index: u32,
    data: &[u8],
    proof: &Proof,
) -> Result<Hash, ProofError> {
    let leaf = hash_leaf(data);
    verify_leaf(root, count, index, &leaf, proof)?;
    Ok(leaf)
}

/// A proof fits chunk `index` of `count`: the index is in range and the proof
/// has one sibling per level.
fn check_shape(count: u32, index: u32, proof: &Proof) -> Result<(), ProofError> {
    if index >= count {
        return Err(ProofError::IndexOutOfRange { index, count });
    }
    let depth = depth_for(count);
    if proof.0.len() != depth {
        return Err(ProofError::WrongProofLength {
            got: proof.0.len(),
            expected: depth,
        });
    }
    Ok(())
}

/// Checks a leaf hash against a trusted root.
pub fn verify_leaf(
    root: &Hash,
    count: u32,
    index: u32,
    leaf: &Hash,
    proof: &Proof,
) -> Result<(), ProofError> {
    check_shape(count, index, proof)?;
    let mut node = *leaf;
    let mut i = index;
    for sib in &proof.0 {
        node = if i & 1 == 0 {
            hash_node(&node, sib)
        } else {
            hash_node(sib, &node)
        };
        i >>= 1;
    }
    if &node == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch(index))
    }
}

/// A Merkle tree whose nodes may be partly unknown.
///
/// `levels[0]` are leaves, the last level is the root; level `l` keeps only
/// nodes that cover at least one real chunk (all-padding nodes are computed).
#[derive(Clone, Debug)]
pub struct MerkleTree {
    count: u32,
    levels: Vec<Vec<Option<Hash>>>,
    pads: Vec<Hash>,
}

impl MerkleTree {
    /// A full tree from every leaf hash (what a seeder builds while chunking).
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let count = u32::try_from(leaves.len()).unwrap_or(u32::MAX);
        let depth = depth_for(count);
        let pads = pad_hashes(depth);
        let mut levels: Vec<Vec<Option<Hash>>> = vec![leaves.iter().copied().map(Some).collect()];
        for l in 0..depth {
            let below = &levels[l];
            let next: Vec<Option<Hash>> = below
                .chunks(2)
                .map(|pair| {
                    let left = pair[0].unwrap_or(pads[l]);
                    let right = pair.get(1).copied().flatten().unwrap_or(pads[l]);
                    Some(hash_node(&left, &right))
                })
                .collect();
            levels.push(next);
        }
        if count == 0 {
            levels = vec![vec![Some([0u8; 32])]];
        }
        Self {
            count,
            levels,
            pads,
        }
    }

    /// A tree that knows only its root (what a downloader starts with).
    pub fn with_root(root: Hash, count: u32) -> Self {
        let depth = depth_for(count);
        let pads = pad_hashes(depth);
        let mut levels = Vec::with_capacity(depth + 1);
        let mut width = count.max(1) as usize;
        for _ in 0..=depth {
            levels.push(vec![None; width]);
            width = width.div_ceil(2);
        }
        if let Some(top) = levels.last_mut() {
            top[0] = Some(root);
        }
        Self {
            count,
            levels,
            pads,
        }
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first().copied().flatten())
            .unwrap_or([0u8; 32])
    }

    /// Number of chunks (leaves).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Proof length for this tree.
    pub fn depth(&self) -> usize {
        self.levels.len().saturating_sub(1)
    }

    /// True if the leaf for `index` has been verified (or built).
    pub fn has_leaf(&self, index: u32) -> bool {
        matches!(self.node(0, index as usize), Some(Some(_)))
    }

    /// The proof for chunk `index`, if every sibling on its path is known.
    pub fn proof(&self, index: u32) -> Option<Proof> {
        if index >= self.count || !self.has_leaf(index) {
            return None;
        }
        let mut i = index as usize;
        let mut out = Vec::with_capacity(self.depth());
        for l in 0..self.depth() {
            out.push(self.sibling(l, i)?);
            i >>= 1;
        }
        Some(Proof(out))
    }

    /// Verifies `data` as chunk `index` against the root and remembers its path.
    pub fn verify_and_insert(
        &mut self,
        index: u32,
        data: &[u8],
        proof: &Proof,
    ) -> Result<(), ProofError> {
        let leaf = hash_leaf(data);
        self.insert_leaf(index, leaf, proof)
    }

    /// Verifies a leaf hash against the root and remembers its path.
    pub fn insert_leaf(&mut self, index: u32, leaf: Hash, proof: &Proof) -> Result<(), ProofError> {
        check_shape(self.count, index, proof)?;
        let depth = self.depth();
        // Every node we hold was verified against the root, and so were its
        // sibling and its ancestors (see `insert_path`): the climb may stop at
        // the first node we hold. Over a download most chunks meet one at
        // their parent, or are a leaf some sibling's proof named already.
        let mut path = [[0u8; 32]; MAX_DEPTH + 1];
        let mut node = leaf;
        let mut i = index as usize;
        for l in 0..=depth {
            if let Some(Some(known)) = self.node(l, i) {
                if known != node {
                    return Err(ProofError::RootMismatch(index));
                }
                self.insert_path(index as usize, &path[..l], &proof.0[..l]);
                return Ok(());
            }
            let (Some(slot), Some(sib)) = (path.get_mut(l), proof.0.get(l)) else {
                break;
            };
            *slot = node;
            node = if i & 1 == 0 {
                hash_node(&node, sib)
            } else {
                hash_node(sib, &node)
            };
            i >>= 1;
        }
        // Unreachable while the root is held (`with_root`, `from_leaves`).
        Err(ProofError::RootMismatch(index))
    }

    /// Stores a verified path from leaf `index` upwards: `nodes[l]` and its sibling `sibs[l]`.
    fn insert_path(&mut self, index: usize, nodes: &[Hash], sibs: &[Hash]) {
        let mut i = index;
        for (l, (node, sib)) in nodes.iter().zip(sibs).enumerate() {
            self.set(l, i, *node);
            self.set(l, i ^ 1, *sib);
            i >>= 1;
        }
    }

    /// Every known node as `(level, position, hash)`, for saving a partial tree.
    pub fn known_nodes(&self) -> impl Iterator<Item = (u8, u32, Hash)> + '_ {
        self.levels.iter().enumerate().flat_map(|(l, level)| {
            level
                .iter()
                .enumerate()
                .filter_map(move |(i, h)| h.map(|h| (l as u8, i as u32, h)))
        })
    }

    /// Restores nodes saved by `known_nodes`, then drops any that do not agree with the root.
    pub fn restore_nodes(&mut self, nodes: impl IntoIterator<Item = (u8, u32, Hash)>) {
        let depth = self.depth();
        for (l, i, h) in nodes {
            if (l as usize) < depth {
                self.set(l as usize, i as usize, h);
            }
        }
        self.drop_inconsistent();
    }

    fn drop_inconsistent(&mut self) {
        // Top-down: a child pair is kept only if it hashes to a parent that is itself kept.
        for l in (0..self.depth()).rev() {
            let width = self.levels[l].len();
            for i in (0..width).step_by(2) {
                let parent = self.levels[l + 1][i / 2];
                let left = self.levels[l][i];
                let right = if i + 1 < width {
                    self.levels[l][i + 1]
                } else {
                    Some(self.pads[l])
                };
                let ok = match (parent, left, right) {
                    (Some(p), Some(a), Some(b)) => hash_node(&a, &b) == p,
                    _ => false,
                };
                if !ok {
                    self.levels[l][i] = None;
                    if i + 1 < width {
                        self.levels[l][i + 1] = None;
                    }
                }
            }
        }
    }

    fn node(&self, level: usize, i: usize) -> Option<Option<Hash>> {
        self.levels.get(level).and_then(|l| l.get(i).copied())
    }

    fn sibling(&self, level: usize, i: usize) -> Option<Hash> {
        match self.node(level, i ^ 1) {
            Some(h) => h,
            None => Some(self.pads[level]),
        }
    }

    fn set(&mut self, level: usize, i: usize, h: Hash) {
        if let Some(slot) = self.levels.get_mut(level).and_then(|l| l.get_mut(i)) {
            *slot = Some(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunks(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; 3 + i % 5]).collect()
    }

    fn tree(data: &[Vec<u8>]) -> MerkleTree {
        let leaves: Vec<Hash> = data.iter().map(|c| hash_leaf(c)).collect();
        MerkleTree::from_leaves(&leaves)
    }

    #[test]
    fn every_chunk_verifies_for_many_sizes() {
        for n in [1usize, 2, 3, 4, 5, 7, 8, 9, 33] {
            let data = chunks(n);
            let full = tree(&data);
            assert_eq!(full.depth(), depth_for(n as u32));
            for (i, c) in data.iter().enumerate() {
                let proof = full.proof(i as u32).expect("full tree has every proof");
                verify_chunk(&full.root(), n as u32, i as u32, c, &proof).unwrap();
            }
        }
    }

    #[test]
    fn partial_tree_serves_proofs_only_for_verified_chunks() {
        let data = chunks(11);
        let full = tree(&data);
        let mut partial = MerkleTree::with_root(full.root(), 11);
        assert!(partial.proof(4).is_none());
        partial
            .verify_and_insert(4, &data[4], &full.proof(4).unwrap())
            .unwrap();
        assert_eq!(partial.proof(4), full.proof(4));
        // Chunk 6's leaf never came with any proof, so no proof can be served for it.
        assert!(partial.proof(6).is_none());
        // A third peer can verify chunk 4 with the partial seed's proof.
        verify_chunk(&full.root(), 11, 4, &data[4], &partial.proof(4).unwrap()).unwrap();
    }

    #[test]
    fn saved_nodes_restore_and_forged_ones_are_dropped() {
        let data = chunks(9);
        let full = tree(&data);
        let mut a = MerkleTree::with_root(full.root(), 9);
        a.verify_and_insert(2, &data[2], &full.proof(2).unwrap())
            .unwrap();
        let mut saved: Vec<_> = a.known_nodes().collect();
        saved.push((0, 7, [9u8; 32])); // forged leaf
        let mut b = MerkleTree::with_root(full.root(), 9);
        b.restore_nodes(saved);
        assert_eq!(b.proof(2), full.proof(2));
        assert!(!b.has_leaf(7));
    }

    #[test]
    fn wrong_proof_length_and_range_rejected() {
        let data = chunks(4);
        let full = tree(&data);
        let mut p = full.proof(1).unwrap();
        p.0.pop();
        assert!(matches!(
            verify_chunk(&full.root(), 4, 1, &data[1], &p),
            Err(ProofError::WrongProofLength { .. })
        ));
        assert!(matches!(
            verify_chunk(&full.root(), 4, 4, &data[1], &full.proof(1).unwrap()),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(Proof::from_bytes(&[0u8; 33]).is_err());
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_rejected(n in 1usize..40, pick in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>(), target in 0u8..3) {
            let data = chunks(n);
            let full = tree(&data);
            let i = pick.index(n);
            let mut chunk = data[i].clone();
            let mut proof = full.proof(i as u32).unwrap();
            let mut index = i as u32;
            match target {
                0 => { let b = bit.index(chunk.len() * 8); chunk[b / 8] ^= 1 << (b % 8); }
                1 if !proof.0.is_empty() => { let b = bit.index(proof.0.len() * 256); proof.0[b / 256][(b % 256) / 8] ^= 1 << (b % 8); }
                _ => { index ^= 1 << bit.index(32); }
            }
            if chunk == data[i] && proof == full.proof(i as u32).unwrap() && index == i as u32 {
                return Ok(()); // n == 1 and target 1: nothing to flip
            }
            prop_assert!(verify_chunk(&full.root(), n as u32, index, &chunk, &proof).is_err());
        }

        #[test]
        fn a_partial_tree_takes_genuine_leaves_in_any_order_and_no_forged_one(n in 1usize..70, order_seed in any::<u64>(), bit in 0usize..256) {
            let data = chunks(n);
            let full = tree(&data);
            let mut partial = MerkleTree::with_root(full.root(), n as u32);
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut x = order_seed | 1;
            for k in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(k, (x % (k as u64 + 1)) as usize);
            }
            for &i in &order {
                let leaf = hash_leaf(&data[i as usize]);
                let proof = full.proof(i).unwrap();
                // The climb stops at the first node already held: a forged leaf must still fail there.
                let mut forged = leaf;
                forged[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(partial.insert_leaf(i, forged, &proof).is_err());
                prop_assert!(!partial.has_leaf(i) || partial.proof(i) == full.proof(i));
                prop_assert!(partial.insert_leaf(i, leaf, &proof).is_ok());
            }
            for i in 0..n as u32 {
                prop_assert_eq!(partial.proof(i), full.proof(i));
            }
        }
    }
}

//! RFC 6962 / RFC 9162 Merkle tree over the ledger's leaf hashes: tree hashes, inclusion
//! and consistency proofs and their verification, and a streaming root builder.
//!
//! Storage scheme (as C2SP tlog-tiles): a store keeps every leaf hash and the hash of every
//! *complete, aligned* subtree at the levels that are multiples of 8 — level 8 covers 256
//! leaves, level 16 covers 65 536, … — addressed by `(level, index)`, where subtree
//! `(level, index)` covers leaves `index·2^level .. (index+1)·2^level`. That costs 1/255 of
//! the leaf storage. Any node of the tree is then computed from at most 128 stored hashes
//! per 8-level group, so proofs need O(log n) reads and hashes and never all the leaves.
//!
//! The algorithms read through the [`NodeSource`] trait and know nothing of SQLite; this
//! module does no I/O of its own and knows nothing of what a leaf means. Verification
//! functions follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step so that proofs made here
//! verify with any RFC implementation and the other way round.

use std::convert::Infallible;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Stored subtree levels are the multiples of this (C2SP tlog-tiles tile height).
pub const STORED_LEVEL_STEP: u32 = 8;

/// Leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Where the tree algorithms read leaf hashes and stored subtree hashes.
///
/// Both methods take a half-open range `lo..hi` and return the hashes in order. A result
/// shorter than `hi - lo` means the rest are missing (the caller reports
/// [`MerkleError::Missing`]); a longer one is reported as [`MerkleError::WrongCount`].
pub trait NodeSource {
    /// What the underlying store fails with.
    type Error;

    /// Leaf hashes `lo..hi`.
    fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error>;

    /// Hashes of the complete subtrees `(level, lo)..(level, hi)`; `level` is a multiple of
    /// [`STORED_LEVEL_STEP`], at least 8.
    fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;

    fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error> {
        (**self).leaves(lo, hi)
    }

    fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error> {
        (**self).stored_nodes(level, lo, hi)
    }
}

/// Hashes per tile: one aligned block of `2^STORED_LEVEL_STEP` hashes of one stored level.
const TILE_WIDTH: u64 = 1 << STORED_LEVEL_STEP;

/// A [`NodeSource`] that reads whole tiles and keeps them: every range that lies inside
/// one aligned block of [`TILE_WIDTH`] hashes of a level is served from that block, read
/// once. A proof then costs one read per 8 levels (as a C2SP tlog-tiles client fetches one
/// tile per 8 levels) instead of one per sibling. Ranges that cross a block boundary are
/// passed through. Meant to live for one proof or root computation, not longer: it never
/// forgets.
pub struct Tiled<S> {
    src: S,
    /// Leaves the store holds: a tile is read only up to what exists.
    size: u64,
    tiles: std::cell::RefCell<std::collections::HashMap<(u32, u64), Vec<Hash>>>,
}

impl<S: NodeSource> Tiled<S> {
    /// Reads `src`, which holds (at least) the first `size` leaves, tile by tile.
    pub fn new(src: S, size: u64) -> Self {
        Tiled {
            src,
            size,
            tiles: Default::default(),
        }
    }

    fn read(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, S::Error> {
        let block = lo / TILE_WIDTH;
        // Complete subtrees at `level` in the first `size` leaves.
        let exists = self.size.checked_shr(level).unwrap_or(0);
        if hi <= lo || (hi - 1) / TILE_WIDTH != block || hi > exists {
            return self.raw(level, lo, hi);
        }
        let mut tiles = self.tiles.borrow_mut();
        let tile = match tiles.entry((level, block)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let start = block * TILE_WIDTH;
                // A partial tile at the right edge: as far as the tree goes.
                e.insert(self.raw(level, start, exists.min(start + TILE_WIDTH))?)
            }
        };
        if tile.len() as u64 > TILE_WIDTH {
            // The store answered with too many: let `fetch` report it.
            return Ok(tile.clone());
        }
        let start = (lo % TILE_WIDTH) as usize;
        let end = ((hi - 1) % TILE_WIDTH) as usize + 1;
        // Whatever of `lo..hi` the tile has; `fetch` reports a short answer as missing.
        Ok(tile
            .get(start.min(tile.len())..end.min(tile.len()))
            .unwrap_or_default()
            .to_vec())
    }

    fn raw(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, S::Error> {
        if level == 0 {
            self.src.leaves(lo, hi)
        } else {
            self.src.stored_nodes(level, lo, hi)
        }
    }
}

impl<S: NodeSource> NodeSource for Tiled<S> {
    type Error = S::Error;

    fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error> {
        self.read(0, lo, hi)
    }

    fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Self::Error> {
        self.read(level, lo, hi)
    }
}

/// Why a tree hash or proof could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError<E> {
    /// The store failed.
    #[error("reading merkle tree nodes failed")]
    Source(#[source] E),
    /// The store does not have a hash the computation needs (level 0 = a leaf).
    #[error("merkle tree node at level {level}, index {index} is missing from the store")]
    Missing {
        /// Level of the missing node (0 for a leaf).
        level: u32,
        /// Its index within the level.
        index: u64,
    },
    /// The store returned more hashes than asked for.
    #[error("the store returned {got} merkle tree nodes for level {level}, range {lo}..{hi}")]
    WrongCount {
        /// Level asked for.
        level: u32,
        /// Range asked for.
        lo: u64,
        /// Range asked for.
        hi: u64,
        /// How many came back.
        got: usize,
    },
    /// A subtree range with no leaves.
    #[error("leaf range {lo}..{hi} is empty")]
    EmptyRange {
        /// Start of the range.
        lo: u64,
        /// End of the range.
        hi: u64,
    },
    /// An inclusion proof for a leaf outside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
}

/// Reads `lo..hi` at `level` (0 = leaves) and checks that all of it came back.
fn fetch<S: NodeSource>(
    src: &S,
    level: u32,
    lo: u64,
    hi: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    let got = if level == 0 {
        src.leaves(lo, hi)
    } else {
        src.stored_nodes(level, lo, hi)
    }
    .map_err(MerkleError::Source)?;
    let want = hi - lo;
    let n = got.len() as u64;
    if n < want {
        return Err(MerkleError::Missing {
            level,
            index: lo + n,
        });
    }
    if n > want {
        return Err(MerkleError::WrongCount {
            level,
            lo,
            hi,
            got: got.len(),
        });
    }
    Ok(got)
}

/// Hash of the complete, aligned subtree `(level, index)`: one stored node if `level` is a
/// stored level, else the reduction of at most 128 hashes of the stored level below.
fn complete_hash<S: NodeSource>(
    src: &S,
    level: u32,
    index: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    let base = level - level % STORED_LEVEL_STEP;
    let width = 1u64 << (level - base);
    // The subtree ends at (index + 1)·2^level <= u64::MAX leaves, so these do not overflow.
    let lo = index * width;
    let mut hashes = fetch(src, base, lo, lo + width)?;
    let mut n = hashes.len();
    while n > 1 {
        for i in 0..n / 2 {
            // INVARIANT: `n` is a power of two no larger than `hashes.len()`, so
            // `2i + 1 < n`.
            let parent = node_hash(&hashes[2 * i], &hashes[2 * i + 1]);
            hashes[i] = parent;
        }
        n /= 2;
    }
    // INVARIANT: `fetch` returned exactly `width >= 1` hashes.
    Ok(hashes[0])
}

/// The largest power of two strictly below `n` (`n >= 2`): RFC 9162's split point `k`.
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash (RFC 9162 §2.1.1) of leaves `lo..hi`.
///
/// Every node of an RFC 9162 tree is an *aligned* range — `lo` a multiple of the smallest
/// power of two `>= hi - lo` — and is computed from at most 255 stored hashes per 8-level
/// group (127 for a complete subtree), O(log n) in all. An unaligned range is not a node of
/// any tree: none of its inner nodes is stored, so its hash is computed by streaming its
/// leaves in O(log n) memory but O(hi - lo) time.
pub fn subtree_hash<S: NodeSource>(
    src: &S,
    lo: u64,
    hi: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    if lo >= hi {
        return Err(MerkleError::EmptyRange { lo, hi });
    }
    let n = hi - lo;
    let aligned = match n.checked_next_power_of_two() {
        Some(p) => lo % p == 0,
        None => lo == 0,
    };
    if aligned {
        aligned_hash(src, lo, hi)
    } else {
        streamed_hash(src, lo, hi)
    }
}

/// MTH of an aligned range: the right fold of its complete subtrees, one per set bit of
/// its size, largest first (which is what the recursive definition unrolls to).
fn aligned_hash<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, MerkleError<S::Error>> {
    let n = hi - lo;
    let mut parts: Vec<Hash> = Vec::with_capacity(n.count_ones() as usize);
    let mut at = lo;
    for level in (0..64).rev() {
        if n >> level & 1 == 1 {
            parts.push(complete_hash(src, level, at >> level)?);
            at += 1 << level;
        }
    }
    Ok(fold_right(&parts))
}

/// MTH of any range by streaming its leaves through a [`RootBuilder`].
fn streamed_hash<S: NodeSource>(src: &S, lo: u64, hi: u64) -> Result<Hash, MerkleError<S::Error>> {
    const BATCH: u64 = 4096;
    let mut builder = RootBuilder::new();
    let mut at = lo;
    while at < hi {
        let end = hi.min(at.saturating_add(BATCH));
        for leaf in fetch(src, 0, at, end)? {
            // The stored nodes it reports are relative to `lo`, not the store's: unused.
            let _ = builder.push(leaf);
        }
        at = end;
    }
    Ok(builder.root())
}

/// Right fold of complete-subtree hashes, largest (leftmost) first; `EMPTY_ROOT` if none.
fn fold_right(parts: &[Hash]) -> Hash {
    let mut it = parts.iter().rev();
    let Some(last) = it.next() else {
        return EMPTY_ROOT;
    };
    it.fold(*last, |right, left| node_hash(left, &right))
}

/// The root of the tree of the first `size` leaves (`EMPTY_ROOT` for 0).
pub fn root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, MerkleError<S::Error>> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    subtree_hash(src, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of size `size`: RFC 9162 §2.1.3.1
/// `PATH(index, D[size])`, siblings from the leaf up.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, remembering the sibling range at every step.
    let mut siblings: Vec<(u64, u64)> = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            siblings.push((lo + k, hi));
            hi = lo + k;
        } else {
            siblings.push((lo, lo + k));
            lo += k;
        }
    }
    siblings
        .iter()
        .rev()
        .map(|&(a, b)| subtree_hash(src, a, b))
        .collect()
}

/// The consistency proof between the trees of sizes `old` and `new`: RFC 9162 §2.1.4.1
/// `PROOF(old, D[new])`.
///
/// For `old == new` and for `old == 0` the proof is empty (RFC 9162 defines proofs only for
/// `0 < old < new`; see [`verify_consistency`] for how empty proofs are checked).
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    if old > new {
        return Err(MerkleError::SizeOrder { old, new });
    }
    let mut proof = Vec::with_capacity(64);
    if old > 0 && old < new {
        subproof(src, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

/// RFC 9162 `SUBPROOF(m, D[lo:hi], b)` with `m` counted from `lo`, appended to `out`.
fn subproof<S: NodeSource>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError<S::Error>> {
    let n = hi - lo;
    if m == n {
        if !b {
            out.push(subtree_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, lo, lo + k, b, out)?;
        out.push(subtree_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(subtree_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2: `leaf` (a leaf hash) is leaf
/// `index` of the tree of size `size` whose root is `root`.
///
/// Rejects `index >= size`, paths with missing or extra elements, and any changed hash.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(leaf, index, size, path).is_some_and(|r| r == *root)
}

/// The root that an inclusion path leads to (the computation of RFC 9162 §2.1.3.2 without
/// the final comparison), or `None` when the path does not fit `index` and `size`.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// Verifies a consistency proof exactly as RFC 9162 §2.1.4.2: the tree of size `new_size`
/// with root `new_root` extends the tree of size `old_size` with root `old_root`.
///
/// Cases RFC 9162 leaves open, decided here:
/// - `old_size > new_size`: false.
/// - `old_size == new_size`: true iff the path is empty and the roots are equal.
/// - `old_size == 0` (< `new_size`): the empty tree is a prefix of every tree, so no proof
///   exists or is needed: true iff the path is empty and `old_root` is [`EMPTY_ROOT`].
///   `new_root` is not checked by this case.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return path.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return path.is_empty() && *old_root == EMPTY_ROOT;
    }
    // 1. An empty path cannot prove 0 < old < new.
    if path.is_empty() {
        return false;
    }
    // 2. If old is a power of two, old_root is the first node of the path.
    let prefix = old_size.is_power_of_two().then_some(old_root);
    let mut nodes = prefix.into_iter().chain(path);
    // 3.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let Some(first) = nodes.next() else {
        return false;
    };
    let (mut fr, mut sr) = (*first, *first);
    // 6.
    for c in nodes {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    fr == *old_root && sr == *new_root && sn == 0
}

/// A complete, aligned subtree at a stored level: covers leaves
/// `index·2^level .. (index+1)·2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredNode {
    /// A multiple of [`STORED_LEVEL_STEP`], at least 8.
    pub level: u32,
    /// Index within the level.
    pub index: u64,
    /// The subtree's hash.
    pub hash: Hash,
}

/// A streaming tree (a compact range from 0): the root for the leaves pushed so far in
/// O(log n) memory, and the stored-level subtrees as they complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootBuilder {
    size: u64,
    /// One complete subtree per set bit of `size`, largest (leftmost) first.
    frontier: Vec<Hash>,
}

impl RootBuilder {
    /// The empty tree.
    pub fn new() -> Self {
        RootBuilder {
            size: 0,
            frontier: Vec::with_capacity(64),
        }
    }

    /// Continues a tree of `size` leaves held by `src`, reading one complete subtree per set
    /// bit of `size` (O(log n) reads).
    pub fn resume<S: NodeSource>(src: &S, size: u64) -> Result<Self, MerkleError<S::Error>> {
        let mut frontier = Vec::with_capacity(64);
        let mut at = 0u64;
        for level in (0..64).rev() {
            if size >> level & 1 == 1 {
                frontier.push(complete_hash(src, level, at >> level)?);
                at += 1 << level;
            }
        }
        Ok(RootBuilder { size, frontier })
    }

    /// Number of leaves pushed (or resumed from).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns the stored-level subtrees this leaf completes — none for
    /// 255 of every 256 leaves, so usually an empty vector that has not allocated.
    pub fn push(&mut self, leaf: Hash) -> Vec<StoredNode> {
        let mut completed = Vec::new();
        let mut hash = leaf;
        let mut level = 0u32;
        // INVARIANT: `size + 1` cannot overflow: nobody appends 2^64 leaves.
        let new_size = self.size + 1;
        while self.size >> level & 1 == 1 {
            // INVARIANT: the frontier has one entry per set bit of `size`.
            let Some(left) = self.frontier.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            if level % STORED_LEVEL_STEP == 0 {
                completed.push(StoredNode {
                    level,
                    index: (new_size >> level) - 1,
                    hash,
                });
            }
        }
        self.frontier.push(hash);
        self.size = new_size;
        completed
    }

    /// The root of the tree of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        fold_right(&self.frontier)
    }
}

/// An in-memory [`NodeSource`] holding leaf hashes and the stored levels, kept up to date
/// with [`RootBuilder`]. For tests and tools; not a ledger store.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    leaves: Vec<Hash>,
    /// `stored[g]` is level `8·(g + 1)`.
    stored: Vec<Vec<Hash>>,
    builder: RootBuilder,
}

impl MemTree {
    /// The empty tree.
    pub fn new() -> Self {
        MemTree::default()
    }

    /// A tree of these leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = MemTree::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// Appends a leaf hash and stores the subtrees it completes.
    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
        for node in self.builder.push(leaf) {
            let group = (node.level / STORED_LEVEL_STEP - 1) as usize;
            if self.stored.len() <= group {
                self.stored.resize_with(group + 1, Vec::new);
            }
            if let Some(level) = self.stored.get_mut(group) {
                level.push(node.hash);
            }
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.builder.root()
    }

    /// All leaf hashes.
    pub fn leaf_hashes(&self) -> &[Hash] {
        &self.leaves
    }

    /// The stored hashes at `level` (empty for a level that is not stored).
    pub fn stored_level(&self, level: u32) -> &[Hash] {
        if level == 0 || level % STORED_LEVEL_STEP != 0 {
            return &[];
        }
        self.stored
            .get((level / STORED_LEVEL_STEP - 1) as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Overwrites one leaf hash and nothing else, leaving an inconsistent tree: for tests
    /// of tamper detection. Returns whether the leaf existed.
    pub fn replace_leaf(&mut self, index: u64, hash: Hash) -> bool {
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.leaves.get_mut(i))
        {
            Some(slot) => {
                *slot = hash;
                true
            }
            None => false,
        }
    }

    /// Overwrites one stored node and nothing else, leaving an inconsistent tree: for tests
    /// of tamper detection. Returns whether the node existed.
    pub fn replace_stored(&mut self, level: u32, index: u64, hash: Hash) -> bool {
        if level == 0 || level % STORED_LEVEL_STEP != 0 {
            return false;
        }
        let slot = self
            .stored
            .get_mut((level / STORED_LEVEL_STEP - 1) as usize)
            .and_then(|nodes| usize::try_from(index).ok().and_then(|i| nodes.get_mut(i)));
        match slot {
            Some(slot) => {
                *slot = hash;
                true
            }
            None => false,
        }
    }
}

/// The part of `items` in `lo..hi` that exists.
fn clamp(items: &[Hash], lo: u64, hi: u64) -> Vec<Hash> {
    let len = items.len() as u64;
    let (lo, hi) = (lo.min(len), hi.min(len));
    if lo >= hi {
        return Vec::new();
    }
    // INVARIANT: lo < hi <= len, which fits in usize because it came from a slice length.
    items[lo as usize..hi as usize].to_vec()
}

impl NodeSource for MemTree {
    type Error = Infallible;

    fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
        Ok(clamp(&self.leaves, lo, hi))
    }

    fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
        Ok(clamp(self.stored_level(level), lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    // ---- reference implementations, straight from the RFC's recursive definitions ----

    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => EMPTY_ROOT,
            1 => d[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// The same recursive definitions over one fixed leaf list, memoising MTH of every
    /// range it has computed, so that the reference stays cheap for large trees.
    struct Reference {
        leaves: Vec<Hash>,
        memo: Mutex<HashMap<(usize, usize), Hash>>,
    }

    impl Reference {
        fn new(leaves: Vec<Hash>) -> Self {
            Reference {
                leaves,
                memo: Mutex::new(HashMap::new()),
            }
        }

        fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, usize), Hash>> {
            self.memo.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// MTH(D[lo:hi]).
        fn mth(&self, lo: usize, hi: usize) -> Hash {
            match hi - lo {
                0 => EMPTY_ROOT,
                1 => self.leaves[lo],
                n => {
                    if let Some(h) = self.memo().get(&(lo, hi)) {
                        return *h;
                    }
                    let k = split_point(n as u64) as usize;
                    let h = node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi));
                    self.memo().insert((lo, hi), h);
                    h
                }
            }
        }

        /// PATH(m, D[lo:hi]), `m` counted from `lo`.
        fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
            if hi - lo <= 1 {
                return Vec::new();
            }
            let k = split_point((hi - lo) as u64) as usize;
            let (mut path, sibling) = if m < k {
                (self.path(m, lo, lo + k), self.mth(lo + k, hi))
            } else {
                (self.path(m - k, lo + k, hi), self.mth(lo, lo + k))
            };
            path.push(sibling);
            path
        }

        /// SUBPROOF(m, D[lo:hi], b), `m` counted from `lo`.
        fn subproof(&self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
            let n = hi - lo;
            if m == n {
                return if b {
                    Vec::new()
                } else {
                    vec![self.mth(lo, hi)]
                };
            }
            let k = split_point(n as u64) as usize;
            let (mut proof, extra) = if m <= k {
                (self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi))
            } else {
                (
                    self.subproof(m - k, lo + k, hi, false),
                    self.mth(lo, lo + k),
                )
            };
            proof.push(extra);
            proof
        }
    }

    fn unwrap<T>(r: Result<T, MerkleError<Infallible>>) -> T {
        match r {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn h(hex_str: &str) -> Hash {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(hex_str, &mut out) {
            Ok(()) => out,
            Err(e) => panic!("bad hex {hex_str}: {e}"),
        }
    }

    fn synthetic_leaves(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[bit / 8 % 32] ^= 1 << (bit % 8);
        out
    }

    // ---- known answers ----
    // Source: google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
    // (kInputs, kSHA256Roots, kSHA256Paths, kSHA256Proofs; its leaf numbers are 1-based,
    // converted to 0-based indexes here).

    const CT_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn ct_leaves() -> Vec<Hash> {
        CT_INPUTS
            .iter()
            .map(|s| leaf_hash(&hex::decode(s).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            EMPTY_ROOT,
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let digest: Hash = Sha256::digest(b"").into();
        assert_eq!(EMPTY_ROOT, digest);
        assert_eq!(RootBuilder::new().root(), EMPTY_ROOT);
        assert_eq!(unwrap(root(&MemTree::new(), 0)), EMPTY_ROOT);
    }

    #[test]
    fn leaf_and_node_hash_prefixes() {
        // RFC 6962 test data: the leaf hash of the empty input is the root of size 1.
        assert_eq!(leaf_hash(b""), h(CT_ROOTS[0]));
        let expected: Hash = Sha256::digest(
            [0x01; 1]
                .iter()
                .chain(&[7u8; 64])
                .copied()
                .collect::<Vec<u8>>(),
        )
        .into();
        assert_eq!(node_hash(&[7; 32], &[7; 32]), expected);
        assert_ne!(leaf_hash(&[1; 64]), node_hash(&[1; 32], &[1; 32]));
    }

    #[test]
    fn certificate_transparency_roots() {
        let leaves = ct_leaves();
        let tree = MemTree::from_leaves(leaves.iter().copied());
        let mut builder = RootBuilder::new();
        for (n, leaf) in leaves.iter().enumerate() {
            builder.push(*leaf);
            let expected = h(CT_ROOTS[n]);
            assert_eq!(builder.root(), expected, "builder, size {}", n + 1);
            assert_eq!(
                unwrap(root(&tree, n as u64 + 1)),
                expected,
                "root, size {}",
                n + 1
            );
            assert_eq!(mth(&leaves[..=n]), expected, "reference, size {}", n + 1);
        }
    }

    #[test]
    fn certificate_transparency_inclusion_proofs() {
        let tree = MemTree::from_leaves(ct_leaves());
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, expected) in cases {
            let proof = unwrap(inclusion_proof(&tree, index, size));
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "index {index}, size {size}");
            let leaf = tree.leaf_hashes()[index as usize];
            let root = h(CT_ROOTS[size as usize - 1]);
            assert!(verify_inclusion(&leaf, index, size, &proof, &root));
        }
    }

    #[test]
    fn certificate_transparency_consistency_proofs() {
        let tree = MemTree::from_leaves(ct_leaves());
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, expected) in cases {
            let proof = unwrap(consistency_proof(&tree, old, new));
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "{old} -> {new}");
            let old_root = h(CT_ROOTS[old as usize - 1]);
            let new_root = h(CT_ROOTS[new as usize - 1]);
            assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
        }
    }

    // ---- exhaustive small trees ----

    const EXHAUSTIVE_MAX: usize = 140;

    /// The leaves, the tree and `roots[n]` = root of the first `n` leaves.
    fn small() -> &'static (Reference, MemTree, Vec<Hash>) {
        static SMALL: OnceLock<(Reference, MemTree, Vec<Hash>)> = OnceLock::new();
        SMALL.get_or_init(|| {
            let reference = Reference::new(synthetic_leaves(EXHAUSTIVE_MAX));
            let tree = MemTree::from_leaves(reference.leaves.iter().copied());
            let roots = (0..=EXHAUSTIVE_MAX).map(|n| reference.mth(0, n)).collect();
            (reference, tree, roots)
        })
    }

    fn inclusion_mutations_fail(
        leaves: &[Hash],
        roots: &[Hash],
        index: u64,
        size: u64,
        proof: &[Hash],
    ) {
        let leaf = &leaves[index as usize];
        let root = &roots[size as usize];
        let ctx = format!("index {index}, size {size}");
        for (i, p) in proof.iter().enumerate() {
            let mut bad = proof.to_vec();
            bad[i] = flip(p, (i * 37 + index as usize) % 256);
            assert!(
                !verify_inclusion(leaf, index, size, &bad, root),
                "{ctx}: flipped {i}"
            );
        }
        let mut longer = proof.to_vec();
        longer.push(*root);
        assert!(
            !verify_inclusion(leaf, index, size, &longer, root),
            "{ctx}: appended"
        );
        let mut longer = proof.to_vec();
        longer.insert(0, *leaf);
        assert!(
            !verify_inclusion(leaf, index, size, &longer, root),
            "{ctx}: prepended"
        );
        if !proof.is_empty() {
            let shorter = &proof[..proof.len() - 1];
            assert!(
                !verify_inclusion(leaf, index, size, shorter, root),
                "{ctx}: last removed"
            );
            assert!(
                !verify_inclusion(leaf, index, size, &proof[1..], root),
                "{ctx}: first removed"
            );
        }
        assert!(
            !verify_inclusion(&flip(leaf, 3), index, size, proof, root),
            "{ctx}: leaf"
        );
        assert!(
            !verify_inclusion(leaf, index, size, proof, &flip(root, 200)),
            "{ctx}: root"
        );
        assert!(
            !verify_inclusion(leaf, index + 1, size, proof, root),
            "{ctx}: index+1"
        );
        if index > 0 {
            assert!(
                !verify_inclusion(leaf, index - 1, size, proof, root),
                "{ctx}: index-1"
            );
        }
        assert!(
            !verify_inclusion(leaf, size, size, proof, root),
            "{ctx}: index=size"
        );
        // A claim about a neighbouring tree (its own size and root) with this proof fails.
        if (size as usize) < EXHAUSTIVE_MAX {
            let r = &roots[size as usize + 1];
            assert!(
                !verify_inclusion(leaf, index, size + 1, proof, r),
                "{ctx}: size+1"
            );
        }
        if index < size - 1 {
            let r = &roots[size as usize - 1];
            assert!(
                !verify_inclusion(leaf, index, size - 1, proof, r),
                "{ctx}: size-1"
            );
        }
    }

    #[test]
    fn exhaustive_inclusion_proofs() {
        let (reference, tree, roots) = small();
        let leaves = &reference.leaves;
        for size in 1..=EXHAUSTIVE_MAX as u64 {
            for index in 0..size {
                let proof = unwrap(inclusion_proof(tree, index, size));
                assert_eq!(
                    proof,
                    reference.path(index as usize, 0, size as usize),
                    "index {index}, size {size}"
                );
                let leaf = &leaves[index as usize];
                assert!(
                    verify_inclusion(leaf, index, size, &proof, &roots[size as usize]),
                    "index {index}, size {size}"
                );
                inclusion_mutations_fail(leaves, roots, index, size, &proof);
            }
        }
    }

    fn consistency_mutations_fail(roots: &[Hash], old: u64, new: u64, proof: &[Hash]) {
        let (o, n) = (&roots[old as usize], &roots[new as usize]);
        let ctx = format!("{old} -> {new}");
        for (i, p) in proof.iter().enumerate() {
            let mut bad = proof.to_vec();
            bad[i] = flip(p, (i * 37 + old as usize) % 256);
            assert!(
                !verify_consistency(old, new, o, n, &bad),
                "{ctx}: flipped {i}"
            );
        }
        let mut longer = proof.to_vec();
        longer.push(*n);
        assert!(
            !verify_consistency(old, new, o, n, &longer),
            "{ctx}: appended"
        );
        let mut longer = proof.to_vec();
        longer.insert(0, *o);
        assert!(
            !verify_consistency(old, new, o, n, &longer),
            "{ctx}: prepended"
        );
        if !proof.is_empty() {
            let shorter = &proof[..proof.len() - 1];
            assert!(
                !verify_consistency(old, new, o, n, shorter),
                "{ctx}: last removed"
            );
            assert!(
                !verify_consistency(old, new, o, n, &proof[1..]),
                "{ctx}: first removed"
            );
        }
        if old < new {
            assert!(
                !verify_consistency(old, new, &flip(o, 9), n, proof),
                "{ctx}: old root"
            );
            // From the empty tree nothing about the new root is proved (documented).
            if old > 0 {
                assert!(
                    !verify_consistency(old, new, o, &flip(n, 9), proof),
                    "{ctx}: new root"
                );
            }
            assert!(!verify_consistency(new, old, n, o, proof), "{ctx}: swapped");
            // Claims about neighbouring trees (their own sizes and roots) fail.
            if old > 1 {
                let r = &roots[old as usize - 1];
                assert!(
                    !verify_consistency(old - 1, new, r, n, proof),
                    "{ctx}: old-1"
                );
            }
            if old + 1 < new {
                let r = &roots[old as usize + 1];
                assert!(
                    !verify_consistency(old + 1, new, r, n, proof),
                    "{ctx}: old+1"
                );
            }
            if old > 0 && (new as usize) < EXHAUSTIVE_MAX {
                let r = &roots[new as usize + 1];
                assert!(
                    !verify_consistency(old, new + 1, o, r, proof),
                    "{ctx}: new+1"
                );
            }
            if old > 0 && new - 1 > old {
                let r = &roots[new as usize - 1];
                assert!(
                    !verify_consistency(old, new - 1, o, r, proof),
                    "{ctx}: new-1"
                );
            }
        }
    }

    #[test]
    fn exhaustive_consistency_proofs() {
        let (reference, tree, roots) = small();
        for new in 0..=EXHAUSTIVE_MAX as u64 {
            for old in 0..=new {
                let proof = unwrap(consistency_proof(tree, old, new));
                let expected = if old == 0 || old == new {
                    Vec::new()
                } else {
                    reference.subproof(old as usize, 0, new as usize, true)
                };
                assert_eq!(proof, expected, "{old} -> {new}");
                let (o, n) = (&roots[old as usize], &roots[new as usize]);
                assert!(verify_consistency(old, new, o, n, &proof), "{old} -> {new}");
                consistency_mutations_fail(roots, old, new, &proof);
            }
        }
    }

    /// Counts the reads that reach the store.
    struct Reads<'a>(&'a MemTree, Cell<usize>);

    impl NodeSource for Reads<'_> {
        type Error = Infallible;

        fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
            self.1.set(self.1.get() + 1);
            self.0.leaves(lo, hi)
        }

        fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
            self.1.set(self.1.get() + 1);
            self.0.stored_nodes(level, lo, hi)
        }
    }

    #[test]
    fn tiled_reads_give_the_same_proofs_with_one_read_per_tile() {
        let (_, tree) = big();
        let n = BIG as u64;
        let sizes = [1, 255, 256, 257, 65_535, 65_536, 65_537, 69_999, n];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &size in &sizes {
            for _ in 0..40 {
                let index = rng.gen_range(0..size);
                let plain = Reads(tree, Default::default());
                let tiled = Tiled::new(Reads(tree, Default::default()), size);
                let want = unwrap(inclusion_proof(&plain, index, size));
                assert_eq!(
                    unwrap(inclusion_proof(&tiled, index, size)),
                    want,
                    "{index}/{size}"
                );
                // Leaves, level 8 and the right edge: a handful of tiles, whatever the path.
                let reads = tiled.src.1.get();
                assert!(reads <= 8, "{reads} reads for {index}/{size}");
                if size > 1 << 16 {
                    assert!(reads < plain.1.get(), "{reads} vs {}", plain.1.get());
                }
                let old = rng.gen_range(0..=size);
                let tiled = Tiled::new(tree, size);
                assert_eq!(
                    unwrap(consistency_proof(&tiled, old, size)),
                    unwrap(consistency_proof(tree, old, size)),
                    "{old} -> {size}"
                );
                assert_eq!(unwrap(root(&tiled, old)), unwrap(root(tree, old)));
            }
        }
    }

    #[test]
    fn fail_tiled_reads_report_missing_and_surplus_hashes() {
        let tree = MemTree::from_leaves(synthetic_leaves(300));
        // Leaf 300 is not there: the tile is short, and that is reported, not hidden.
        let tiled = Tiled::new(&tree, 301);
        assert_eq!(
            inclusion_proof(&tiled, 0, 301),
            Err(MerkleError::Missing {
                level: 0,
                index: 300
            })
        );
        assert_eq!(
            inclusion_proof(&tiled, 0, 301),
            inclusion_proof(&tree, 0, 301)
        );
        /// Answers every read with one hash too many.
        struct Surplus(MemTree);
        impl NodeSource for Surplus {
            type Error = Infallible;
            fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
                let mut v = self.0.leaves(lo, hi)?;
                v.push([0; 32]);
                Ok(v)
            }
            fn stored_nodes(&self, l: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
                self.0.stored_nodes(l, lo, hi)
            }
        }
        let tiled = Tiled::new(Surplus(tree), 300);
        assert!(matches!(
            inclusion_proof(&tiled, 3, 300),
            Err(MerkleError::WrongCount { level: 0, .. })
        ));
    }

    #[test]
    fn fail_consistency_edge_cases() {
        let (_, tree, roots) = small();
        let r5 = roots[5];
        // old == new: empty proof and equal roots only.
        assert!(verify_consistency(5, 5, &r5, &r5, &[]));
        assert!(!verify_consistency(5, 5, &r5, &roots[4], &[]));
        assert!(!verify_consistency(5, 5, &r5, &r5, &[r5]));
        // old == 0: empty proof and the empty root only.
        assert!(verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[]));
        assert!(!verify_consistency(0, 5, &r5, &r5, &[]));
        assert!(!verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[r5]));
        assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]));
        // 0 < old < new never accepts an empty proof, even with equal roots.
        assert!(!verify_consistency(3, 5, &r5, &r5, &[]));
        assert!(!verify_consistency(4, 8, &roots[4], &roots[8], &[]));
        // old > new.
        assert!(!verify_consistency(6, 5, &roots[6], &r5, &[]));
        assert_eq!(
            consistency_proof(tree, 6, 5),
            Err(MerkleError::SizeOrder { old: 6, new: 5 })
        );
    }

    #[test]
    fn fail_inclusion_edge_cases() {
        let (reference, tree, roots) = small();
        let leaves = &reference.leaves;
        // Size 1: the leaf is the root and the path is empty.
        assert!(verify_inclusion(&leaves[0], 0, 1, &[], &roots[1]));
        assert!(!verify_inclusion(&leaves[0], 0, 1, &[leaves[0]], &roots[1]));
        assert!(!verify_inclusion(&leaves[0], 0, 0, &[], &EMPTY_ROOT));
        assert!(!verify_inclusion(&leaves[0], 1, 1, &[], &roots[1]));
        assert!(!verify_inclusion(
            &leaves[0],
            u64::MAX,
            u64::MAX,
            &[],
            &roots[1]
        ));
        assert_eq!(
            inclusion_proof(tree, 5, 5),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(tree, 0, 0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    // ---- stored levels, the streaming builder and the cost bound ----

    #[test]
    fn builder_reports_stored_levels_as_they_complete() {
        let (reference, _) = big();
        let leaves = &reference.leaves[..1 << 16];
        let mut builder = RootBuilder::new();
        let mut reported = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            for node in builder.push(*leaf) {
                reported.push((i + 1, node));
            }
        }
        // 256 level-8 nodes, then one level-16 node, at the leaf that completes them.
        assert_eq!(reported.len(), 257);
        for (n, (after, node)) in reported.iter().take(255).enumerate() {
            assert_eq!(*after, (n + 1) * 256);
            assert_eq!((node.level, node.index), (8, n as u64));
            assert_eq!(node.hash, reference.mth(n * 256, (n + 1) * 256));
        }
        let last: Vec<_> = reported[255..]
            .iter()
            .map(|(a, n)| (*a, n.level, n.index))
            .collect();
        assert_eq!(last, vec![(1 << 16, 8, 255), (1 << 16, 16, 0)]);
        assert_eq!(reported[256].1.hash, reference.mth(0, 1 << 16));
        assert_eq!(builder.root(), reference.mth(0, 1 << 16));
        assert_eq!(builder.size(), 1 << 16);
    }

    #[test]
    fn builder_resumes_from_a_store() {
        let leaves = synthetic_leaves(1200);
        let tree = MemTree::from_leaves(leaves.iter().copied());
        for start in [0u64, 1, 255, 256, 257, 700, 1023, 1024, 1199] {
            let mut resumed = unwrap(RootBuilder::resume(&tree, start));
            let mut fresh = RootBuilder::new();
            for leaf in &leaves[..start as usize] {
                let _ = fresh.push(*leaf);
            }
            assert_eq!(resumed, fresh, "start {start}");
            for leaf in &leaves[start as usize..] {
                assert_eq!(resumed.push(*leaf), fresh.push(*leaf), "start {start}");
                assert_eq!(resumed.root(), fresh.root(), "start {start}");
            }
        }
        assert_eq!(
            RootBuilder::resume(&tree, 1201).err(),
            Some(MerkleError::Missing {
                level: 0,
                index: 1200
            })
        );
    }

    #[test]
    fn memtree_stores_only_complete_aligned_subtrees() {
        let leaves = synthetic_leaves(1000);
        let tree = MemTree::from_leaves(leaves.iter().copied());
        assert_eq!(tree.size(), 1000);
        assert_eq!(tree.stored_level(8).len(), 3);
        assert_eq!(tree.stored_level(16).len(), 0);
        assert_eq!(tree.stored_level(4).len(), 0);
        for (i, hash) in tree.stored_level(8).iter().enumerate() {
            assert_eq!(*hash, mth(&leaves[i * 256..(i + 1) * 256]));
        }
        assert_eq!(tree.root(), mth(&leaves));
    }

    /// A source that counts how many hashes the algorithms read.
    struct Counting<'a> {
        inner: &'a MemTree,
        read: Cell<u64>,
    }

    impl NodeSource for Counting<'_> {
        type Error = Infallible;

        fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
            let out = self.inner.leaves(lo, hi)?;
            self.read.set(self.read.get() + out.len() as u64);
            Ok(out)
        }

        fn stored_nodes(&self, level: u32, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
            let out = self.inner.stored_nodes(level, lo, hi)?;
            self.read.set(self.read.get() + out.len() as u64);
            Ok(out)
        }
    }

    const BIG: usize = 70_000;

    fn big() -> &'static (Reference, MemTree) {
        static BIG_TREE: OnceLock<(Reference, MemTree)> = OnceLock::new();
        BIG_TREE.get_or_init(|| {
            let reference = Reference::new(synthetic_leaves(BIG));
            let tree = MemTree::from_leaves(reference.leaves.iter().copied());
            (reference, tree)
        })
    }

    #[test]
    fn proofs_read_few_hashes() {
        let (reference, tree) = big();
        let leaves = &reference.leaves;
        let full = reference.mth(0, BIG);
        let src = Counting {
            inner: tree,
            read: Cell::new(0),
        };
        let size = BIG as u64;
        // A level-16 subtree is one stored node.
        assert_eq!(
            unwrap(subtree_hash(&src, 0, 1 << 16)),
            reference.mth(0, 1 << 16)
        );
        assert_eq!(src.read.get(), 1);
        // A level-15 subtree is 128 level-8 nodes.
        src.read.set(0);
        assert_eq!(
            unwrap(subtree_hash(&src, 1 << 15, 1 << 16)),
            reference.mth(1 << 15, 1 << 16)
        );
        assert_eq!(src.read.get(), 128);
        // The root of 70 000 = 2^16 + 2^12 + 2^8 + 112 leaves: 1 level-16 node, 16 + 1
        // level-8 nodes and 112 leaves; the bound is 256 per 8-level group.
        src.read.set(0);
        assert_eq!(unwrap(root(&src, size)), full);
        assert!(src.read.get() <= 3 * 256, "root read {}", src.read.get());
        for index in [0, 1, 255, 256, 65_535, 65_536, 69_999] {
            src.read.set(0);
            let proof = unwrap(inclusion_proof(&src, index, size));
            assert!(
                src.read.get() <= 3 * 256,
                "inclusion {index} read {}",
                src.read.get()
            );
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &proof,
                &full
            ));
        }
        for old in [1, 256, 1000, 65_536, 65_537, 69_999] {
            src.read.set(0);
            let proof = unwrap(consistency_proof(&src, old, size));
            assert!(
                src.read.get() <= 4 * 256,
                "consistency {old} read {}",
                src.read.get()
            );
            let old_root = reference.mth(0, old as usize);
            assert!(verify_consistency(old, size, &old_root, &full, &proof));
        }
    }

    #[test]
    fn fail_missing_nodes_are_reported() {
        let leaves = synthetic_leaves(600);
        let tree = MemTree::from_leaves(leaves.iter().copied());
        assert_eq!(
            root(&tree, 601),
            Err(MerkleError::Missing {
                level: 0,
                index: 600
            })
        );
        // 1000 = 512 + 256 + …: the second level-8 node past the end is asked for first.
        assert_eq!(
            inclusion_proof(&tree, 0, 1000),
            Err(MerkleError::Missing { level: 8, index: 2 })
        );
        // A store that lost its stored level cannot serve a 256-leaf subtree.
        struct LeavesOnly(MemTree);
        impl NodeSource for LeavesOnly {
            type Error = Infallible;
            fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
                self.0.leaves(lo, hi)
            }
            fn stored_nodes(&self, _: u32, _: u64, _: u64) -> Result<Vec<Hash>, Infallible> {
                Ok(Vec::new())
            }
        }
        let bare = LeavesOnly(tree.clone());
        assert_eq!(
            root(&bare, 300),
            Err(MerkleError::Missing { level: 8, index: 0 })
        );
        assert_eq!(unwrap(root(&bare, 255)), mth(&leaves[..255]));
        assert_eq!(
            subtree_hash(&tree, 5, 5),
            Err(MerkleError::EmptyRange { lo: 5, hi: 5 })
        );
        let message = MerkleError::<Infallible>::Missing { level: 8, index: 2 }.to_string();
        assert_eq!(
            message,
            "merkle tree node at level 8, index 2 is missing from the store"
        );
    }

    #[test]
    fn fail_store_errors_and_excess_are_reported() {
        #[derive(Debug, PartialEq)]
        struct Broken;
        impl std::fmt::Display for Broken {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("disk on fire")
            }
        }
        impl std::error::Error for Broken {}
        struct Failing;
        impl NodeSource for Failing {
            type Error = Broken;
            fn leaves(&self, _: u64, _: u64) -> Result<Vec<Hash>, Broken> {
                Err(Broken)
            }
            fn stored_nodes(&self, _: u32, _: u64, _: u64) -> Result<Vec<Hash>, Broken> {
                Err(Broken)
            }
        }
        let err = root(&Failing, 3).err();
        assert_eq!(err, Some(MerkleError::Source(Broken)));
        let source = err
            .as_ref()
            .and_then(|e| std::error::Error::source(e))
            .map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("disk on fire"));

        struct Generous;
        impl NodeSource for Generous {
            type Error = Infallible;
            fn leaves(&self, lo: u64, hi: u64) -> Result<Vec<Hash>, Infallible> {
                Ok(vec![[0; 32]; (hi - lo + 1) as usize])
            }
            fn stored_nodes(&self, _: u32, _: u64, _: u64) -> Result<Vec<Hash>, Infallible> {
                Ok(Vec::new())
            }
        }
        assert_eq!(
            root(&Generous, 2),
            Err(MerkleError::WrongCount {
                level: 0,
                lo: 0,
                hi: 2,
                got: 3
            })
        );
    }

    #[test]
    fn tampered_store_changes_the_root() {
        let leaves = synthetic_leaves(600);
        let mut tree = MemTree::from_leaves(leaves.iter().copied());
        let good = unwrap(root(&tree, 600));
        assert!(tree.replace_stored(8, 1, [9; 32]));
        assert_ne!(unwrap(root(&tree, 600)), good);
        // Subtrees that do not use the tampered node are unchanged.
        assert_eq!(unwrap(root(&tree, 256)), mth(&leaves[..256]));
        let mut tree = MemTree::from_leaves(leaves.iter().copied());
        assert!(tree.replace_leaf(599, [9; 32]));
        assert_ne!(unwrap(root(&tree, 600)), good);
        assert!(!tree.replace_leaf(600, [9; 32]));
        assert!(!tree.replace_stored(8, 2, [9; 32]));
        assert!(!tree.replace_stored(7, 0, [9; 32]));
    }

    #[test]
    fn unaligned_ranges_are_correct() {
        let (reference, tree, _) = small();
        for (lo, hi) in [(3u64, 4u64), (3, 7), (1, 140), (5, 133), (100, 139)] {
            assert_eq!(
                unwrap(subtree_hash(tree, lo, hi)),
                reference.mth(lo as usize, hi as usize),
                "{lo}..{hi}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Aligned subtrees computed from stored nodes equal the reference MTH of the leaves,
        /// for trees up to 70 000 leaves (levels 8 and 16 stored).
        #[test]
        fn stored_subtrees_match_reference(level in 0u32..17, raw_index in any::<u64>(), len_frac in 1u64..=u64::MAX) {
            let (reference, tree) = big();
            let width = 1u64 << level;
            let blocks = BIG as u64 / width;
            prop_assume!(blocks > 0);
            let lo = raw_index % blocks * width;
            // Any aligned right-edge range inside the block: lo..lo+len, len <= width.
            let len = 1 + len_frac % width;
            let hi = lo + len;
            let got = unwrap(subtree_hash(tree, lo, hi));
            prop_assert_eq!(got, reference.mth(lo as usize, hi as usize));
        }

        /// Random sizes and indexes in a large tree: proofs equal the RFC reference and
        /// verify; roots equal the reference.
        #[test]
        fn large_tree_proofs(size in 1u64..=BIG as u64, index_frac in any::<u64>(), old_frac in any::<u64>()) {
            let (reference, tree) = big();
            let leaves = &reference.leaves;
            let r = reference.mth(0, size as usize);
            prop_assert_eq!(unwrap(root(tree, size)), r);
            let index = index_frac % size;
            let proof = unwrap(inclusion_proof(tree, index, size));
            prop_assert_eq!(&proof, &reference.path(index as usize, 0, size as usize));
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &r));
            let old = 1 + old_frac % size;
            let proof = unwrap(consistency_proof(tree, old, size));
            if old < size {
                prop_assert_eq!(&proof, &reference.subproof(old as usize, 0, size as usize, true));
            }
            let old_root = reference.mth(0, old as usize);
            prop_assert!(verify_consistency(old, size, &old_root, &r, &proof));
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0] = flip(first, 1);
                prop_assert!(!verify_consistency(old, size, &old_root, &r, &bad));
            }
        }
    }
}

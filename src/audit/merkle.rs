//! RFC 6962 Merkle tree over an append-only log, stored incrementally, with inclusion and
//! consistency proofs (generation and verification as in RFC 9162 §2.1).
//!
//! # Storage layout
//!
//! Only **perfect subtrees** are stored: node `(level, index)` is the Merkle Tree Hash of the
//! leaves `[index·2^level, (index+1)·2^level)`. Such a node never changes once written (the
//! log is append-only), so the same nodes serve every past tree size. Appending leaf `n`
//! writes `(0, n)` and then, while `n >> level` is odd, the parent `(level+1, n >> (level+1))`:
//! at most `1 + log2(n+1)` writes, amortised two.
//!
//! # Why proofs cost O(log n) node reads
//!
//! Every hash a proof needs is the hash of a leaf range `[begin, end)` where `begin` is a
//! multiple of the largest power of two not smaller than `end - begin`. Such a range is the
//! concatenation of at most 64 stored perfect subtrees (one per set bit of `end - begin`,
//! largest first) and its hash is their right fold: `range_hash` reads `popcount(end -
//! begin)` nodes and never a leaf beyond them. Walking down from the root towards the target
//! (the leaf for an inclusion proof, the old size for a consistency proof), a step to the right
//! adds the left sibling, a perfect subtree (one read), and keeps us on the right edge; a step
//! to the left adds the right sibling, the only kind of range that can be imperfect, and puts us
//! inside a perfect subtree for the rest of the walk, where every later sibling is perfect.
//! So at most one imperfect range is hashed: a proof reads at most `64 + 64` nodes (plus one
//! for the final node of a consistency proof), `O(log n)` with `log n ≤ 64`.
//! [`root`] reads `popcount(size)` nodes. No operation touches `O(n)` nodes.

use super::AuditError;
use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a root hash.
pub type Hash = [u8; 32];

/// The root hash of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 || event)`.
pub fn leaf_hash(event: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(event);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A hash received as bytes (a proof element from the wire, a root from a bundle).
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, AuditError> {
    bytes
        .try_into()
        .map_err(|_| AuditError::BadHashLength { len: bytes.len() })
}

/// Read access to the stored perfect-subtree nodes of one log.
///
/// Implemented by the service over a storage transaction, by [`MemNodes`] in memory, and by
/// [`Appender`] (pending writes over its source). A node that does not exist is `Ok(None)`;
/// the functions of this module turn it into [`AuditError::MissingNode`] when they need it,
/// converted into `Self::Error`.
pub trait NodeSource {
    type Error: From<AuditError>;

    /// The hash of node `(level, index)`, the root of leaves `[index·2^level, (index+1)·2^level)`.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    type Error = T::Error;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        (**self).node(level, index)
    }
}

fn read<S: NodeSource + ?Sized>(src: &S, level: u8, index: u64) -> Result<Hash, S::Error> {
    src.node(level, index)?
        .ok_or_else(|| AuditError::MissingNode { level, index }.into())
}

/// The Merkle Tree Hash of leaves `[begin, end)`, for `begin` a multiple of the largest power
/// of two not smaller than `end - begin` (every range a proof needs is of this form). Reads one
/// stored node per set bit of `end - begin`, smallest (rightmost) first.
fn range_hash<S: NodeSource + ?Sized>(src: &S, begin: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end - begin;
    let mut acc: Option<Hash> = None;
    let mut hi = end;
    for level in 0..64u8 {
        if (len >> level) & 1 == 1 {
            let lo = hi - (1u64 << level);
            let h = read(src, level, lo >> level)?;
            acc = Some(match acc {
                None => h,
                Some(right) => node_hash(&h, &right),
            });
            hi = lo;
        }
    }
    Ok(acc.unwrap_or(EMPTY_ROOT))
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The leaf ranges whose hashes form the inclusion proof of `index` in a tree of `size`
/// (RFC 9162 §2.1.3.1, PATH), in proof order (leaf level first).
fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, AuditError> {
    if index >= size {
        return Err(AuditError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut out = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The leaf ranges whose hashes form the consistency proof from `old` to `new` (RFC 9162
/// §2.1.4.1, SUBPROOF), in proof order. Empty when `old` is 0 or equals `new`.
fn consistency_ranges(old: u64, new: u64) -> Result<Vec<(u64, u64)>, AuditError> {
    if old > new {
        return Err(AuditError::SizesOutOfOrder { old, new });
    }
    let mut out = Vec::with_capacity(65);
    if old == 0 || old == new {
        return Ok(out);
    }
    // Invariant: lo < old <= hi; `complete` is the RFC's `b` flag (the current subtree is the
    // whole old tree, whose hash the verifier already has).
    let (mut lo, mut hi, mut complete) = (0u64, new, true);
    loop {
        if old == hi {
            if !complete {
                out.push((lo, hi));
            }
            break;
        }
        let k = split_point(hi - lo);
        if old - lo <= k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            complete = false;
        }
    }
    out.reverse();
    Ok(out)
}

fn hash_ranges<S: NodeSource + ?Sized>(
    src: &S,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, S::Error> {
    ranges
        .iter()
        .map(|&(begin, end)| range_hash(src, begin, end))
        .collect()
}

/// The root hash of the log's first `size` leaves (any size up to the stored one).
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1): sibling hashes from the leaf up to the root. Reads O(log size) nodes.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let ranges = inclusion_ranges(index, size)?;
    hash_ranges(src, &ranges)
}

/// The consistency proof between the trees of sizes `old` and `new` (RFC 9162 §2.1.4.1).
/// Empty when `old` is 0 or equals `new`. Reads O(log new) nodes.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    let ranges = consistency_ranges(old, new)?;
    hash_ranges(src, &ranges)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    let expected = inclusion_ranges(index, size)?.len();
    let length_error = || AuditError::InclusionProofLength {
        index,
        size,
        got: proof.len(),
        expected,
    };
    if proof.len() != expected {
        return Err(length_error());
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(length_error());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(length_error());
    }
    if r != *root {
        return Err(AuditError::InclusionRootMismatch { index, size });
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2). A proof built over a history
/// in which any of the first `old_size` leaves differs fails with
/// [`AuditError::OldRootMismatch`], or [`AuditError::NewRootMismatch`] when `old_size` is a
/// power of two (the proof then omits the old root and the verifier starts from its own).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    let expected = consistency_ranges(old_size, new_size)?.len();
    let length_error = || AuditError::ConsistencyProofLength {
        old: old_size,
        new: new_size,
        got: proof.len(),
        expected,
    };
    if proof.len() != expected {
        return Err(length_error());
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree.
        if *old_root != EMPTY_ROOT {
            return Err(AuditError::OldRootMismatch { old: 0 });
        }
        return Ok(());
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(AuditError::Fork { size: old_size });
        }
        return Ok(());
    }
    // RFC 9162 §2.1.4.2, step 2: when the old size is a power of two, the old root is the
    // first node of the path.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let Some((first, rest)) = path.split_first() else {
        return Err(length_error());
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        if sn == 0 {
            return Err(length_error());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(length_error());
    }
    if fr != *old_root {
        return Err(AuditError::OldRootMismatch { old: old_size });
    }
    if sr != *new_root {
        return Err(AuditError::NewRootMismatch { new: new_size });
    }
    Ok(())
}

/// One node an append created, for the caller to persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeWrite {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The result of a batch of appends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The size before the batch, which is also the index of its first leaf.
    pub first_index: u64,
    /// The size after the batch.
    pub size: u64,
    /// The root hash at `size`.
    pub root: Hash,
    /// Every node the batch created, by level then index; persist them all with the new size.
    pub writes: Vec<NodeWrite>,
}

/// Appends a batch of leaves to a log of known size, inside one storage transaction.
///
/// [`Appender::new`] reads the `popcount(size)` perfect subtrees that make up the current tree
/// (its right edge); every append then computes its new nodes from them without any read. The
/// appender is itself a [`NodeSource`] that sees the pending writes over its source, so proofs
/// for leaves appended in the same batch can be built before the writes are persisted.
pub struct Appender<'s, S: NodeSource + ?Sized> {
    src: &'s S,
    base: u64,
    size: u64,
    /// Roots of the perfect subtrees making up the tree of `size` leaves, one per set bit of
    /// `size`, largest (leftmost) first.
    peaks: Vec<Hash>,
    /// New nodes per level: level `l` holds indices `base >> l`, `(base >> l) + 1`, … in order.
    pending: Vec<Vec<Hash>>,
}

impl<'s, S: NodeSource + ?Sized> Appender<'s, S> {
    /// Starts a batch on a log whose stored size is `size`. Reads `popcount(size)` nodes.
    pub fn new(src: &'s S, size: u64) -> Result<Self, S::Error> {
        let mut peaks = Vec::with_capacity(64);
        for level in (0..64u8).rev() {
            if (size >> level) & 1 == 1 {
                peaks.push(read(src, level, (size >> level) - 1)?);
            }
        }
        Ok(Appender {
            src,
            base: size,
            size,
            peaks,
            pending: Vec::new(),
        })
    }

    /// The size the batch started from.
    pub fn base_size(&self) -> u64 {
        self.base
    }

    /// The size including the pending appends.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one event (hashed as a leaf); returns its leaf index.
    pub fn append(&mut self, event: &[u8]) -> Result<u64, AuditError> {
        self.append_leaf_hash(leaf_hash(event))
    }

    /// Appends a leaf given by its leaf hash; returns its leaf index. No storage read.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> Result<u64, AuditError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(AuditError::LogFull)?;
        // The new leaf merges with one peak per trailing one bit of `index`, smallest first.
        let merges = index.trailing_ones() as usize;
        let keep = self.peaks.len().saturating_sub(merges);
        let merged = self.peaks.split_off(keep);
        let mut h = leaf;
        self.record(0, h);
        for (step, left) in merged.iter().rev().enumerate() {
            h = node_hash(left, &h);
            // `step` < 64 because `merged` has at most 63 elements.
            self.record(step as u8 + 1, h);
        }
        self.peaks.push(h);
        self.size = new_size;
        Ok(index)
    }

    fn record(&mut self, level: u8, hash: Hash) {
        let l = usize::from(level);
        if self.pending.len() <= l {
            self.pending.resize_with(l + 1, Vec::new);
        }
        self.pending[l].push(hash);
    }

    /// The root hash including the pending appends (O(log n) hashing, no read).
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return EMPTY_ROOT;
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }

    /// The nodes created so far, by level then index.
    pub fn writes(&self) -> Vec<NodeWrite> {
        let mut out = Vec::with_capacity(self.pending.iter().map(Vec::len).sum());
        for (level, hashes) in self.pending.iter().enumerate() {
            let first = self.base >> level;
            for (offset, hash) in hashes.iter().enumerate() {
                out.push(NodeWrite {
                    // `pending` has at most 64 levels.
                    level: level as u8,
                    index: first + offset as u64,
                    hash: *hash,
                });
            }
        }
        out
    }

    /// Ends the batch: the new size, root and the writes to persist.
    pub fn finish(self) -> AppendOutcome {
        AppendOutcome {
            first_index: self.base,
            size: self.size,
            root: self.root(),
            writes: self.writes(),
        }
    }
}

impl<S: NodeSource + ?Sized> NodeSource for Appender<'_, S> {
    type Error = S::Error;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        if let Some(hashes) = self.pending.get(usize::from(level)) {
            let first = self.base >> level;
            if index >= first {
                if let Some(h) = usize::try_from(index - first)
                    .ok()
                    .and_then(|o| hashes.get(o))
                {
                    return Ok(Some(*h));
                }
            }
        }
        self.src.node(level, index)
    }
}

/// The nodes of one log in memory, for tests, benchmarks and offline tools.
#[derive(Clone, Debug, Default)]
pub struct MemNodes {
    levels: Vec<Vec<Option<Hash>>>,
}

impl MemNodes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores one node (overwriting any previous value).
    pub fn put(&mut self, level: u8, index: u64, hash: Hash) {
        let l = usize::from(level);
        if self.levels.len() <= l {
            self.levels.resize_with(l + 1, Vec::new);
        }
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        let nodes = &mut self.levels[l];
        if nodes.len() <= i {
            nodes.resize(i + 1, None);
        }
        nodes[i] = Some(hash);
    }

    /// Stores the writes of an [`AppendOutcome`].
    pub fn apply(&mut self, writes: &[NodeWrite]) {
        for w in writes {
            self.put(w.level, w.index, w.hash);
        }
    }

    /// One past the highest stored leaf: the log size when leaves were only appended.
    pub fn leaf_count(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one event; returns its leaf index.
    pub fn append(&mut self, event: &[u8]) -> Result<u64, AuditError> {
        let outcome = self.append_all([event])?;
        Ok(outcome.first_index)
    }

    /// Appends events in one batch.
    pub fn append_all<I>(&mut self, events: I) -> Result<AppendOutcome, AuditError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut appender = Appender::new(&*self, self.leaf_count())?;
        for e in events {
            appender.append(e.as_ref())?;
        }
        let outcome = appender.finish();
        self.apply(&outcome.writes);
        Ok(outcome)
    }
}

impl NodeSource for MemNodes {
    type Error = AuditError;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, AuditError> {
        Ok(self
            .levels
            .get(usize::from(level))
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .flatten())
    }
}

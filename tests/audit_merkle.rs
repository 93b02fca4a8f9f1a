//! The audit Merkle log: RFC 6962 known-answer vectors, proofs against a naive reference
//! (property tests), rewritten-history detection, and the O(log n) cost of appends and proofs.

use paraph::audit::merkle::{
    self, consistency_proof, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion, Appender, Hash, MemNodes, NodeSource, EMPTY_ROOT,
};
use paraph::audit::AuditError;
use proptest::prelude::*;
use std::cell::Cell;

fn h(s: &str) -> Hash {
    merkle::hash_from_slice(&hex::decode(s).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Known-answer vectors. Leaf inputs, node hashes and roots: transparency-dev/merkle,
// testonly/constants.go (LeafInputs, NodeHashes, RootHashes). Inclusion and consistency proofs:
// transparency-dev/merkle, proof/verify_test.go (inclusionProofs, consistencyProofs; leaf numbers
// there are 1-based). Hasher vectors: transparency-dev/merkle, rfc6962/rfc6962_test.go. Proof
// shapes (which nodes a proof holds): transparency-dev/merkle, proof/proof_test.go.
// ---------------------------------------------------------------------------------------------

const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// NodeHashes()[level][index].
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// RootHashes()[size] for sizes 1..=8.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf number, 1-based; tree size; proof).
const INCLUSION_PROOFS: [(u64, u64, &[&str]); 5] = [
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
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof).
const CONSISTENCY_PROOFS: [(u64, u64, &[&str]); 5] = [
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
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn kat_tree() -> MemNodes {
    let mut tree = MemNodes::new();
    for input in LEAF_INPUTS {
        tree.append(&hex::decode(input).unwrap()).unwrap();
    }
    tree
}

fn nh(level: usize, index: usize) -> Hash {
    h(NODE_HASHES[level][index])
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

#[test]
fn hasher_known_answers() {
    // rfc6962/rfc6962_test.go: "RFC6962 Empty", "RFC6962 Empty Leaf", "RFC6962 Leaf".
    let empty = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(EMPTY_ROOT, empty);
    assert_eq!(
        leaf_hash(b""),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        leaf_hash(b"L123456"),
        h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
    assert_eq!(root(&MemNodes::new(), 0).unwrap(), EMPTY_ROOT);
    // node = H(0x01 || left || right), checked on the reference level-1 node (0,1).
    assert_eq!(node_hash(&nh(0, 0), &nh(0, 1)), nh(1, 0));
}

#[test]
fn known_nodes_and_roots() {
    let mut tree = MemNodes::new();
    for (i, input) in LEAF_INPUTS.iter().enumerate() {
        let outcome = tree.append_all([hex::decode(input).unwrap()]).unwrap();
        assert_eq!(outcome.first_index, i as u64);
        assert_eq!(outcome.size, i as u64 + 1);
        assert_eq!(outcome.root, h(ROOTS[i]), "root after append {i}");
    }
    for (level, nodes) in NODE_HASHES.iter().enumerate() {
        for (index, expected) in nodes.iter().enumerate() {
            assert_eq!(
                tree.node(level as u8, index as u64).unwrap(),
                Some(h(expected)),
                "node ({level},{index})"
            );
        }
    }
    assert_eq!(tree.node(0, 8).unwrap(), None);
    assert_eq!(tree.node(4, 0).unwrap(), None);
    for size in 1..=8u64 {
        assert_eq!(root(&tree, size).unwrap(), h(ROOTS[size as usize - 1]));
    }
    // One batch of eight gives the same nodes and root.
    let mut batch = MemNodes::new();
    let outcome = batch
        .append_all(LEAF_INPUTS.iter().map(|s| hex::decode(s).unwrap()))
        .unwrap();
    assert_eq!(outcome.root, h(ROOTS[7]));
    assert_eq!(outcome.writes.len(), 15);
    for w in &outcome.writes {
        assert_eq!(w.hash, nh(w.level as usize, w.index as usize));
    }
}

/// Variations of a valid inclusion proof that must all be rejected (after proof/verify_test.go,
/// corruptInclusionProof).
fn corrupt_inclusion(index: u64, size: u64, proof: &[Hash], root: &Hash, leaf: &Hash) {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
        (
            index.wrapping_sub(1),
            size,
            *root,
            *leaf,
            proof.to_vec(),
            "index - 1".into(),
        ),
        (
            index + 1,
            size,
            *root,
            *leaf,
            proof.to_vec(),
            "index + 1".into(),
        ),
        (
            index ^ 2,
            size,
            *root,
            *leaf,
            proof.to_vec(),
            "index ^ 2".into(),
        ),
        (
            index,
            size * 2,
            *root,
            *leaf,
            proof.to_vec(),
            "size * 2".into(),
        ),
        (
            index,
            size / 2,
            *root,
            *leaf,
            proof.to_vec(),
            "size / 2".into(),
        ),
        (
            index,
            size,
            *root,
            leaf_hash(b"WrongLeaf"),
            proof.to_vec(),
            "wrong leaf".into(),
        ),
        (
            index,
            size,
            EMPTY_ROOT,
            *leaf,
            proof.to_vec(),
            "empty root".into(),
        ),
        (
            index,
            size,
            some,
            *leaf,
            proof.to_vec(),
            "random root".into(),
        ),
        (
            index,
            size,
            *root,
            *leaf,
            [proof, &[*root]].concat(),
            "trailing root".into(),
        ),
        (
            index,
            size,
            *root,
            *leaf,
            [&[*root], proof].concat(),
            "preceding root".into(),
        ),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 8;
        probes.push((index, size, *root, *leaf, p, format!("modified proof[{i}]")));
    }
    if !proof.is_empty() {
        let p = proof[..proof.len() - 1].to_vec();
        probes.push((index, size, *root, *leaf, p, "removed component".into()));
    }
    if proof.len() > 1 {
        let p = [&[proof[0], some], &proof[1..]].concat();
        probes.push((index, size, *root, *leaf, p, "inserted component".into()));
    }
    for (i, s, r, l, p, desc) in probes {
        assert!(
            verify_inclusion(&l, i, s, &p, &r).is_err(),
            "accepted corrupt inclusion proof ({desc}) for {index}/{size}"
        );
    }
}

#[test]
fn known_inclusion_proofs() {
    let tree = kat_tree();
    for (leaf, size, expected) in INCLUSION_PROOFS {
        let index = leaf - 1;
        let expected = hashes(expected);
        let proof = inclusion_proof(&tree, index, size).unwrap();
        assert_eq!(
            proof, expected,
            "inclusion proof of leaf {index} in size {size}"
        );
        let lh = leaf_hash(&hex::decode(LEAF_INPUTS[index as usize]).unwrap());
        let r = h(ROOTS[size as usize - 1]);
        verify_inclusion(&lh, index, size, &expected, &r).unwrap();
        corrupt_inclusion(index, size, &expected, &r, &lh);
    }
}

#[test]
fn known_consistency_proofs() {
    let tree = kat_tree();
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (size1, size2, expected) in CONSISTENCY_PROOFS {
        let expected = hashes(expected);
        assert_eq!(consistency_proof(&tree, size1, size2).unwrap(), expected);
        let (r1, r2) = (h(ROOTS[size1 as usize - 1]), h(ROOTS[size2 as usize - 1]));
        verify_consistency(size1, size2, &r1, &r2, &expected).unwrap();
        if expected.is_empty() {
            continue;
        }
        // After proof/verify_test.go, corruptConsistencyProof.
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (size1 - 1, size2, r1, r2, expected.clone()),
            (size1 + 1, size2, r1, r2, expected.clone()),
            (size1 ^ 2, size2, r1, r2, expected.clone()),
            (size1, size2 * 2, r1, r2, expected.clone()),
            (size1, size2 / 2, r1, r2, expected.clone()),
            (size1, size2, some, r2, expected.clone()),
            (size1, size2, r1, some, expected.clone()),
            (size1, size2, r2, r1, expected.clone()),
            (size1, size2, r1, r2, vec![]),
            (size1, size2, r1, r2, [&expected[..], &[r1]].concat()),
            (size1, size2, r1, r2, [&expected[..], &[r2]].concat()),
            (size1, size2, r1, r2, [&[r1], &expected[..]].concat()),
            (size1, size2, r1, r2, [&[r2], &expected[..]].concat()),
            (
                size1,
                size2,
                r1,
                r2,
                [&[expected[0]], &expected[..]].concat(),
            ),
            (
                size1,
                size2,
                r1,
                r2,
                expected[..expected.len() - 1].to_vec(),
            ),
        ];
        for i in 0..expected.len() {
            let mut p = expected.clone();
            p[i][0] ^= 16;
            probes.push((size1, size2, r1, r2, p));
        }
        for (n, (s1, s2, a, b, p)) in probes.into_iter().enumerate() {
            assert!(
                verify_consistency(s1, s2, &a, &b, &p).is_err(),
                "accepted corrupt consistency proof #{n} for {size1}->{size2}"
            );
        }
    }
}

#[test]
fn proof_shapes_of_the_reference_implementation() {
    // Node lists from proof/proof_test.go (TestInclusion, TestConsistency) over the tree of
    // seven leaves a..j of its figure, evaluated with NodeHashes(); "rehash" entries are the
    // hash of the imperfect right subtree l = H(i, j).
    let tree = kat_tree();
    let l7 = node_hash(&nh(1, 2), &nh(0, 6));
    let inclusion: [(u64, u64, Vec<Hash>); 7] = [
        (0, 7, vec![nh(0, 1), nh(1, 1), l7]),
        (2, 7, vec![nh(0, 3), nh(1, 0), l7]),
        (4, 7, vec![nh(0, 5), nh(0, 6), nh(2, 0)]),
        (6, 7, vec![nh(1, 2), nh(2, 0)]),
        (3, 5, vec![nh(0, 2), nh(1, 0), nh(0, 4)]),
        (3, 6, vec![nh(0, 2), nh(1, 0), nh(1, 2)]),
        (1, 3, vec![nh(0, 0), nh(0, 2)]),
    ];
    for (index, size, expected) in inclusion {
        assert_eq!(inclusion_proof(&tree, index, size).unwrap(), expected);
    }
    let consistency: [(u64, u64, Vec<Hash>); 10] = [
        (1, 2, vec![nh(0, 1)]),
        (1, 4, vec![nh(0, 1), nh(1, 1)]),
        (1, 6, vec![nh(0, 1), nh(1, 1), nh(1, 2)]),
        (2, 3, vec![nh(0, 2)]),
        (2, 8, vec![nh(1, 1), nh(2, 1)]),
        (3, 7, vec![nh(0, 2), nh(0, 3), nh(1, 0), l7]),
        (4, 7, vec![l7]),
        (5, 7, vec![nh(0, 4), nh(0, 5), nh(0, 6), nh(2, 0)]),
        (6, 7, vec![nh(1, 2), nh(0, 6), nh(2, 0)]),
        (7, 8, vec![nh(0, 6), nh(0, 7), nh(1, 2), nh(2, 0)]),
    ];
    for (old, new, expected) in consistency {
        assert_eq!(consistency_proof(&tree, old, new).unwrap(), expected);
    }
    for size in 1..=8 {
        assert!(consistency_proof(&tree, size, size).unwrap().is_empty());
    }
}

#[test]
fn verifier_edge_cases() {
    let r1 = leaf_hash(b"one");
    let r2 = leaf_hash(b"two");
    // Sizes that are always consistent.
    verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
    verify_consistency(0, 5, &EMPTY_ROOT, &r2, &[]).unwrap();
    verify_consistency(1, 1, &r2, &r2, &[]).unwrap();
    // The empty tree has one root.
    assert!(matches!(
        verify_consistency(0, 5, &r1, &r2, &[]),
        Err(AuditError::OldRootMismatch { old: 0 })
    ));
    // Same size, different roots: a fork.
    assert!(matches!(
        verify_consistency(1, 1, &r1, &r2, &[]),
        Err(AuditError::Fork { size: 1 })
    ));
    // Time travel to the past.
    assert!(matches!(
        verify_consistency(2, 1, &r1, &r2, &[]),
        Err(AuditError::SizesOutOfOrder { old: 2, new: 1 })
    ));
    // Empty proof, or a proof where none is due.
    assert!(matches!(
        verify_consistency(1, 2, &r1, &r2, &[]),
        Err(AuditError::ConsistencyProofLength {
            got: 0,
            expected: 1,
            ..
        })
    ));
    assert!(matches!(
        verify_consistency(1, 1, &r1, &r1, &[EMPTY_ROOT]),
        Err(AuditError::ConsistencyProofLength {
            got: 1,
            expected: 0,
            ..
        })
    ));
    // Inclusion outside the tree.
    for (index, size) in [(0, 0), (1, 0), (2, 1), (8, 8)] {
        assert!(matches!(
            verify_inclusion(&r1, index, size, &[], &r1),
            Err(AuditError::IndexOutOfRange { .. })
        ));
    }
    // A one-leaf tree: the root is the leaf hash and the proof is empty.
    verify_inclusion(&r1, 0, 1, &[], &r1).unwrap();
    assert!(matches!(
        verify_inclusion(&r1, 0, 1, &[], &r2),
        Err(AuditError::InclusionRootMismatch { index: 0, size: 1 })
    ));
}

#[test]
fn generation_errors() {
    let tree = kat_tree();
    assert!(matches!(
        inclusion_proof(&tree, 8, 8),
        Err(AuditError::IndexOutOfRange { index: 8, size: 8 })
    ));
    assert!(matches!(
        consistency_proof(&tree, 9, 8),
        Err(AuditError::SizesOutOfOrder { old: 9, new: 8 })
    ));
    let err = root(&tree, 9).unwrap_err();
    assert!(matches!(
        err,
        AuditError::MissingNode { level: 0, index: 8 }
    ));
    assert_eq!(err.to_string(), "log storage is missing node (0,8)");
    assert!(matches!(
        Appender::new(&tree, 10),
        Err(AuditError::MissingNode { level: 1, index: 4 })
    ));
}

// ---------------------------------------------------------------------------------------------
// A naive reference (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 written recursively over all leaves).
// ---------------------------------------------------------------------------------------------

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn ref_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => EMPTY_ROOT,
        1 => d[0],
        n => {
            let k = split(n);
            node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
        }
    }
}

fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = split(d.len());
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn events(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("event {i} {salt}").into_bytes())
        .collect()
}

/// Builds the log in batches of the given sizes (cycled), checking each batch's root.
fn build(evs: &[Vec<u8>], batches: &[usize]) -> MemNodes {
    let mut tree = MemNodes::new();
    let leaves: Vec<Hash> = evs.iter().map(|e| leaf_hash(e)).collect();
    let mut done = 0;
    let mut b = 0;
    while done < evs.len() {
        let take = batches[b % batches.len()].max(1).min(evs.len() - done);
        let outcome = tree.append_all(&evs[done..done + take]).unwrap();
        done += take;
        b += 1;
        assert_eq!(outcome.size, done as u64);
        assert_eq!(outcome.root, ref_mth(&leaves[..done]));
    }
    tree
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inclusion_proofs_match_reference_and_verify(
        n in 1usize..300,
        batches in proptest::collection::vec(1usize..40, 1..6),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..12),
    ) {
        let evs = events(n, 0);
        let leaves: Vec<Hash> = evs.iter().map(|e| leaf_hash(e)).collect();
        let tree = build(&evs, &batches);
        for (a, b) in picks {
            let size = 1 + b % n as u64;
            let index = a % size;
            let r = root(&tree, size).unwrap();
            prop_assert_eq!(r, ref_mth(&leaves[..size as usize]));
            let proof = inclusion_proof(&tree, index, size).unwrap();
            prop_assert_eq!(&proof, &ref_path(index as usize, &leaves[..size as usize]));
            let leaf = leaves[index as usize];
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &r).is_ok());
            // A wrong leaf fails with a root mismatch.
            let matched = matches!(
                verify_inclusion(&leaf_hash(b"not in the log"), index, size, &proof, &r),
                Err(AuditError::InclusionRootMismatch { .. })
            );
            prop_assert!(matched);
            // So does the right leaf at another index.
            for other in [index ^ 1, index.wrapping_add(1), index.wrapping_sub(1)] {
                if other != index {
                    prop_assert!(verify_inclusion(&leaf, other, size, &proof, &r).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_match_reference_and_verify(
        n in 1usize..300,
        batches in proptest::collection::vec(1usize..40, 1..6),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..12),
    ) {
        let evs = events(n, 0);
        let leaves: Vec<Hash> = evs.iter().map(|e| leaf_hash(e)).collect();
        let tree = build(&evs, &batches);
        for (a, b) in picks {
            let new = b % (n as u64 + 1);
            let old = a % (new + 1);
            let proof = consistency_proof(&tree, old, new).unwrap();
            let expected = if old == 0 {
                vec![]
            } else {
                ref_subproof(old as usize, &leaves[..new as usize], true)
            };
            prop_assert_eq!(&proof, &expected);
            let r1 = root(&tree, old).unwrap();
            let r2 = root(&tree, new).unwrap();
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
        }
    }

    #[test]
    fn rewritten_history_is_detected(
        new in 2usize..300,
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let old = 1 + (a % (new as u64 - 1)) as usize; // 1 <= old < new
        let changed = (b % old as u64) as usize; // a leaf before old
        let honest = build(&events(new, 0), &[new]);
        let mut rewritten_events = events(new, 0);
        rewritten_events[changed] = b"rewritten".to_vec();
        let rewritten = build(&rewritten_events, &[7]);

        let old_root = root(&honest, old as u64).unwrap();
        let new_root = root(&rewritten, new as u64).unwrap();
        prop_assert_ne!(root(&rewritten, old as u64).unwrap(), old_root);
        // The rewritten log's own proof cannot reach the root the verifier already holds. (When
        // `old` is a power of two the proof does not carry the old root, the verifier starts
        // from its own, and the mismatch shows at the new root instead.)
        let proof = consistency_proof(&rewritten, old as u64, new as u64).unwrap();
        let matched = matches!(
            verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof),
            Err(AuditError::OldRootMismatch { .. } | AuditError::NewRootMismatch { .. })
        );
        prop_assert!(matched);
        // Nor can the honest log's proof reach the rewritten root.
        let proof = consistency_proof(&honest, old as u64, new as u64).unwrap();
        prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof).is_err());
        // And an inclusion proof of the changed leaf from the rewritten log fails against the
        // honest root.
        let proof = inclusion_proof(&rewritten, changed as u64, old as u64).unwrap();
        let matched = matches!(
            verify_inclusion(&leaf_hash(b"rewritten"), changed as u64, old as u64, &proof, &old_root),
            Err(AuditError::InclusionRootMismatch { .. })
        );
        prop_assert!(matched);
    }

    #[test]
    fn appender_overlay_serves_proofs_before_persisting(
        base in 0usize..200,
        extra in 1usize..60,
    ) {
        let evs = events(base + extra, 1);
        let leaves: Vec<Hash> = evs.iter().map(|e| leaf_hash(e)).collect();
        let mut tree = MemNodes::new();
        if base > 0 {
            tree.append_all(&evs[..base]).unwrap();
        }
        let mut appender = Appender::new(&tree, base as u64).unwrap();
        for e in &evs[base..] {
            appender.append(e).unwrap();
        }
        let size = (base + extra) as u64;
        let r = appender.root();
        prop_assert_eq!(r, ref_mth(&leaves));
        prop_assert_eq!(root(&appender, size).unwrap(), r);
        for index in [base as u64, size - 1, (base as u64 + size) / 2] {
            let proof = inclusion_proof(&appender, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &r).is_ok());
        }
        if base > 0 {
            let proof = consistency_proof(&appender, base as u64, size).unwrap();
            let old_root = root(&tree, base as u64).unwrap();
            prop_assert!(verify_consistency(base as u64, size, &old_root, &r, &proof).is_ok());
        }
        // Nothing was persisted; applying the writes gives the same tree.
        prop_assert_eq!(tree.leaf_count(), base as u64);
        let outcome = appender.finish();
        tree.apply(&outcome.writes);
        prop_assert_eq!(root(&tree, size).unwrap(), r);
    }
}

// ---------------------------------------------------------------------------------------------
// Cost: node reads per proof and node writes per append.
// ---------------------------------------------------------------------------------------------

struct Counting<S> {
    inner: S,
    reads: Cell<u64>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Counting {
            inner,
            reads: Cell::new(0),
        }
    }
    fn take(&self) -> u64 {
        self.reads.replace(0)
    }
}

impl<S: NodeSource> NodeSource for Counting<S> {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.node(level, index)
    }
}

/// A log of any size whose every node is present (with a made-up hash): counts reads at sizes
/// too large to build.
struct EveryNode {
    size: u64,
}

impl NodeSource for EveryNode {
    type Error = AuditError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, AuditError> {
        let end = (u128::from(index) + 1) << level;
        if end > u128::from(self.size) {
            return Ok(None);
        }
        let mut hash = [0u8; 32];
        hash[0] = level;
        hash[1..9].copy_from_slice(&index.to_be_bytes());
        Ok(Some(hash))
    }
}

fn log2_ceil(n: u64) -> u64 {
    u64::from(64 - (n - 1).leading_zeros())
}

#[test]
fn proofs_at_one_million_read_log_n_nodes() {
    const N: u64 = 1_000_003;
    let mut tree = MemNodes::new();
    let mut appender = Appender::new(&tree, 0).unwrap();
    for i in 0..N {
        let mut leaf = [0u8; 32];
        leaf[..8].copy_from_slice(&i.to_be_bytes());
        appender.append_leaf_hash(leaf).unwrap();
    }
    let outcome = appender.finish();
    tree.apply(&outcome.writes);
    let src = Counting::new(tree);
    // log2(1_000_003) = 19.9: a proof reads at most 2·20 + 1 nodes, far below 4·64.
    let bound = 2 * log2_ceil(N) + 1;
    assert_eq!(root(&src, N).unwrap(), outcome.root);
    assert_eq!(src.take(), u64::from(N.count_ones()));
    let mut max_reads = 0;
    for i in 0..200u64 {
        let index = (i * 7919 * 127) % N;
        let proof = inclusion_proof(&src, index, N).unwrap();
        let reads = src.take();
        assert!(
            reads <= bound && reads < 4 * 64,
            "inclusion {index}: {reads} reads"
        );
        max_reads = max_reads.max(reads);
        let mut leaf = [0u8; 32];
        leaf[..8].copy_from_slice(&index.to_be_bytes());
        verify_inclusion(&leaf, index, N, &proof, &outcome.root).unwrap();

        let old = 1 + (i * 104_729) % (N - 1);
        let proof = consistency_proof(&src, old, N).unwrap();
        let reads = src.take();
        assert!(
            reads <= bound && reads < 4 * 64,
            "consistency {old}: {reads} reads"
        );
        max_reads = max_reads.max(reads);
        let old_root = root(&src, old).unwrap();
        src.take();
        verify_consistency(old, N, &old_root, &outcome.root, &proof).unwrap();
    }
    assert!(max_reads > 0);
}

#[test]
fn proofs_read_at_most_two_nodes_per_level_at_any_size() {
    for size in [
        1u64 << 40,
        (1 << 40) - 1,
        (1 << 40) + 1,
        0x5555_5555_5555,
        u64::MAX - 1,
    ] {
        let src = Counting::new(EveryNode { size });
        let bound = 2 * log2_ceil(size) + 1;
        for index in [0, 1, size / 3, size / 2, size - 2, size - 1] {
            inclusion_proof(&src, index, size).unwrap();
            let reads = src.take();
            assert!(
                reads <= bound,
                "inclusion {index}/{size}: {reads} > {bound}"
            );
        }
        for old in [1, 2, 3, size / 3, size / 2 + 1, size - 1] {
            consistency_proof(&src, old, size).unwrap();
            let reads = src.take();
            assert!(
                reads <= bound,
                "consistency {old}->{size}: {reads} > {bound}"
            );
        }
    }
}

#[test]
fn append_writes_at_most_one_plus_log2_nodes() {
    let mut tree = MemNodes::new();
    for n in 0..5000u64 {
        let outcome = {
            let src = Counting::new(&tree);
            let mut appender = Appender::new(&src, n).unwrap();
            assert_eq!(
                src.take(),
                u64::from(n.count_ones()),
                "reads to start at {n}"
            );
            appender.append(&n.to_be_bytes()).unwrap();
            let outcome = appender.finish();
            assert_eq!(src.take(), 0, "an append reads nothing");
            outcome
        };
        let writes = outcome.writes.len() as u64;
        assert_eq!(writes, 1 + u64::from(n.trailing_ones()));
        assert!(
            writes <= 1 + u64::from((n + 1).ilog2()),
            "append {n}: {writes} writes"
        );
        tree.apply(&outcome.writes);
    }
    assert_eq!(tree.leaf_count(), 5000);
}

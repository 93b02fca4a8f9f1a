//! The audit log's cost at 10k, 100k and 1M events: appends (computing the node writes in
//! memory; committed into a sled tree, one transaction per batch, no flush) and inclusion /
//! consistency proof generation (from memory and from a warm sled tree). Every measured append
//! starts at exactly the stated size. Run: `cargo bench --bench audit`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use paraph::audit::merkle::{
    self, consistency_proof, inclusion_proof, Appender, Hash, MemNodes, NodeSource, NodeWrite,
};
use paraph::audit::AuditError;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionalTree,
    UnabortableTransactionError,
};
use std::cell::{Cell, RefCell};
use std::time::Duration;

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
const EVENT_LEN: usize = 256;
const BATCH: usize = 100;

/// A 256-byte event, standing for a canonical audit event.
fn event(i: u64) -> Vec<u8> {
    let mut e = vec![0x5a; EVENT_LEN];
    e[..8].copy_from_slice(&i.to_be_bytes());
    e
}

/// Deterministic pseudo-random numbers (xorshift), so every run probes the same positions.
struct Rng(Cell<u64>);

impl Rng {
    fn below(&self, n: u64) -> u64 {
        let mut x = self.0.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.set(x);
        x % n
    }
}

fn build(n: u64) -> (MemNodes, Vec<NodeWrite>) {
    let mut tree = MemNodes::new();
    let mut appender = Appender::new(&tree, 0).unwrap();
    for i in 0..n {
        appender.append(&event(i)).unwrap();
    }
    let outcome = appender.finish();
    tree.apply(&outcome.writes);
    (tree, outcome.writes)
}

/// Storage key of a node: level byte, then the index big-endian (so a level is one key range).
fn key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

const SIZE_KEY: &[u8] = b"size";

/// Nodes read outside a transaction (proof serving).
struct SledNodes<'a>(&'a sled::Tree);

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl NodeSource for SledNodes<'_> {
    type Error = ReadError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, ReadError> {
        match self.0.get(key(level, index))? {
            Some(v) => Ok(Some(merkle::hash_from_slice(&v)?)),
            None => Ok(None),
        }
    }
}

/// Nodes read inside a transaction: the integration's pattern, storage errors kept apart so
/// that conflicts are retried.
enum TxError {
    Sled(UnabortableTransactionError),
    Audit(AuditError),
}

impl From<AuditError> for TxError {
    fn from(e: AuditError) -> Self {
        TxError::Audit(e)
    }
}

impl From<TxError> for ConflictableTransactionError<AuditError> {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Sled(e) => e.into(),
            TxError::Audit(e) => ConflictableTransactionError::Abort(e),
        }
    }
}

struct TxNodes<'a>(&'a TransactionalTree);

impl NodeSource for TxNodes<'_> {
    type Error = TxError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, TxError> {
        match self.0.get(key(level, index)).map_err(TxError::Sled)? {
            Some(v) => Ok(Some(merkle::hash_from_slice(&v)?)),
            None => Ok(None),
        }
    }
}

/// Appends `count` events to the sled log in one transaction (no flush); returns the writes.
fn sled_append(tree: &sled::Tree, count: usize) -> Vec<NodeWrite> {
    tree.transaction(|tx| -> ConflictableTransactionResult<_, AuditError> {
        let size = match tx.get(SIZE_KEY)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap()),
            None => 0,
        };
        let nodes = TxNodes(tx);
        let mut appender = Appender::new(&nodes, size)?;
        for i in 0..count as u64 {
            appender
                .append(&event(size + i))
                .map_err(ConflictableTransactionError::Abort)?;
        }
        let outcome = appender.finish();
        for w in &outcome.writes {
            tx.insert(&key(w.level, w.index)[..], &w.hash[..])?;
        }
        tx.insert(SIZE_KEY, &outcome.size.to_be_bytes()[..])?;
        Ok(outcome.writes)
    })
    .unwrap()
}

/// Undoes appends (untimed), so that every measured append starts at the same size.
fn sled_rollback(tree: &sled::Tree, writes: &[NodeWrite], size: u64) {
    let mut batch = sled::Batch::default();
    for w in writes {
        batch.remove(&key(w.level, w.index)[..]);
    }
    batch.insert(SIZE_KEY, &size.to_be_bytes()[..]);
    tree.apply_batch(batch).unwrap();
}

fn sled_log(dir: &std::path::Path, writes: &[NodeWrite], size: u64) -> (sled::Db, sled::Tree) {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(256 * 1024 * 1024)
        .open()
        .unwrap();
    let tree = db.open_tree("audit").unwrap();
    for chunk in writes.chunks(100_000) {
        let mut batch = sled::Batch::default();
        for w in chunk {
            batch.insert(&key(w.level, w.index)[..], &w.hash[..]);
        }
        tree.apply_batch(batch).unwrap();
    }
    tree.insert(SIZE_KEY, &size.to_be_bytes()[..]).unwrap();
    db.flush().unwrap();
    // Read everything once: measure a warm tree, as in a long-running server (right after the
    // bulk load sled still has to materialise its pages, which is far slower).
    assert_eq!(tree.iter().count(), writes.len() + 1);
    (db, tree)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (tree, writes) = build(n);
        let rng = Rng(Cell::new(0x9e37_79b9_7f4a_7c15));

        // Memory: what one append costs in CPU (start a batch at size n, append, collect the
        // writes). The tree is not modified, so every iteration appends at size n.
        let ev = event(n);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("append/mem/1", n), |b| {
            b.iter(|| {
                let mut a = Appender::new(&tree, n).unwrap();
                a.append(&ev).unwrap();
                a.finish()
            })
        });
        let evs: Vec<Vec<u8>> = (n..n + BATCH as u64).map(event).collect();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new(format!("append/mem/{BATCH}"), n), |b| {
            b.iter(|| {
                let mut a = Appender::new(&tree, n).unwrap();
                for e in &evs {
                    a.append(e).unwrap();
                }
                a.finish()
            })
        });

        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("inclusion/mem", n), |b| {
            b.iter(|| inclusion_proof(&tree, rng.below(n), n).unwrap())
        });
        g.bench_function(BenchmarkId::new("consistency/mem", n), |b| {
            b.iter(|| consistency_proof(&tree, 1 + rng.below(n - 1), n).unwrap())
        });

        // Sled: the same nodes in a real tree in a temporary directory, keys `level || index`
        // big-endian.
        let dir = tempfile::tempdir().unwrap();
        let (_db, stree) = sled_log(dir.path(), &writes, n);
        drop(writes);
        let nodes = SledNodes(&stree);
        g.bench_function(BenchmarkId::new("inclusion/sled", n), |b| {
            b.iter(|| inclusion_proof(&nodes, rng.below(n), n).unwrap())
        });
        g.bench_function(BenchmarkId::new("consistency/sled", n), |b| {
            b.iter(|| consistency_proof(&nodes, 1 + rng.below(n - 1), n).unwrap())
        });
        // Every measured append starts at size n: the previous one is undone, untimed.
        for count in [1, BATCH] {
            let last: RefCell<Vec<NodeWrite>> = RefCell::new(Vec::new());
            g.throughput(Throughput::Elements(count as u64));
            g.bench_function(BenchmarkId::new(format!("append/sled/{count}"), n), |b| {
                b.iter_batched(
                    || sled_rollback(&stree, &last.take(), n),
                    |()| last.replace(sled_append(&stree, count)),
                    BatchSize::PerIteration,
                )
            });
            sled_rollback(&stree, &last.take(), n);
        }
        assert_eq!(
            merkle::root(&nodes, n).unwrap(),
            merkle::root(&tree, n).unwrap()
        );
        assert!(stree.get(key(0, n)).unwrap().is_none());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

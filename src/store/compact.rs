//! Value-log compaction on a stopped store: copies the values the index still points to into a
//! new generation of the log, moves the pointers to it, checks every one, and only then removes
//! the older generations' files, with the values nothing points to any more (the earlier
//! versions of rewritten records, removed records).
//!
//! Crash safety, step by step (see [`CompactStep`]): values are copied and made durable before
//! any pointer names them; pointers are moved in atomic batches of the index, each naming a
//! file that exists; the old files are removed only once every pointer names the new
//! generation durably and every value was read back and checked. A crash at any point leaves
//! every durable pointer naming a file that is there, holding its value: the store opens as it
//! was, with at most an extra generation that then takes the appends, and compacting again
//! finishes the job. The directory's lock is held throughout: no server opens it meanwhile.
//!
//! This module must not know what the keys or values mean.

use super::engine::{self, Index};
use super::values::{self, NewGeneration, Pointer, ValueLog};
use super::StoreError;
use sled::IVec;
use std::collections::BTreeMap;
use std::path::Path;

/// A point in a compaction, reported to [`CompactOptions::on_step`] (which a crash test may
/// use to stop the process there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactStep {
    /// A batch of values was copied to the new generation and made durable; their pointers
    /// still name the old ones.
    Copied,
    /// A batch of pointers was moved to the new generation in the index, not yet durably.
    Moved,
    /// Every pointer names the new generation, durably, and every value was read back; the
    /// old files are all still there.
    Checked,
    /// One old generation's file was removed.
    Removed,
}

impl CompactStep {
    pub fn name(self) -> &'static str {
        match self {
            CompactStep::Copied => "copied",
            CompactStep::Moved => "moved",
            CompactStep::Checked => "checked",
            CompactStep::Removed => "removed",
        }
    }
}

pub struct CompactOptions<'a> {
    /// Most pointers moved per index transaction.
    pub batch: usize,
    /// Called at each step.
    pub on_step: &'a dyn Fn(CompactStep),
}

impl Default for CompactOptions<'_> {
    fn default() -> Self {
        CompactOptions {
            batch: 10_000,
            on_step: &|_| {},
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// The values kept (as many as pointers in the index).
    pub values: u64,
    /// Bytes of the log's files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The generation now holding every value.
    pub generation: u16,
    /// Values kept and their bytes, by the first segment of their keys (`doc`, `idem`, …).
    pub kept_by_kind: BTreeMap<String, (u64, u64)>,
    /// The generations whose files were removed.
    pub removed: Vec<u16>,
}

/// Bytes copied per batch at most, whatever the number of values (bounds the batch's time
/// between two durable points, not memory: values are written one by one).
const BATCH_BYTES: u64 = 256 * 1024 * 1024;

fn log_bytes(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for g in values::generations_in(dir)? {
        total += std::fs::metadata(values::file_of(dir, g))?.len();
    }
    Ok(total)
}

/// Compacts the value log of the stopped store in `dir` (see the module's documentation).
pub fn compact_value_log(
    dir: &Path,
    opts: &CompactOptions<'_>,
) -> Result<CompactReport, StoreError> {
    if engine::found_in(dir).is_none() {
        return Err(StoreError::Compact(format!(
            "{} holds no store",
            dir.display()
        )));
    }
    // Locked first: no server writes while the pointers move.
    let mut index = Index::open(dir, None)?;
    let old = values::generations_in(dir)?;
    let bytes_before = log_bytes(dir)?;
    let (log, _) = ValueLog::open(dir)?;
    let new = log.current().checked_add(1).ok_or_else(|| {
        StoreError::Compact("the value log has used every generation number".into())
    })?;
    let mut out = NewGeneration::create(dir, new)?;
    engine::sync_dir(dir)?;
    let unreadable = |k: &[u8], source| StoreError::Unreadable {
        key: String::from_utf8_lossy(k).into_owned(),
        source,
    };
    let batch_size = opts.batch.max(1);
    let mut start: Vec<u8> = Vec::new();
    loop {
        // The next keys holding a pointer to an older generation.
        let mut batch: Vec<(Vec<u8>, Pointer)> = Vec::new();
        let mut bytes = 0u64;
        let mut last: Option<Vec<u8>> = None;
        index.walk_from(&start, |k, v| {
            last = Some(k.to_vec());
            if let Some(p) = Pointer::decode(&v) {
                if p.generation() != new {
                    bytes += u64::from(p.len());
                    batch.push((k.to_vec(), p));
                }
            }
            Ok(batch.len() < batch_size && bytes < BATCH_BYTES)
        })?;
        let mut moved = Vec::with_capacity(batch.len());
        for (k, p) in &batch {
            let v = log.read(*p).map_err(|e| unreadable(k, e))?;
            moved.push((k.as_slice(), out.append(&v)?));
        }
        out.sync()?;
        (opts.on_step)(CompactStep::Copied);
        index.apply(
            moved
                .iter()
                .map(|(k, p)| (*k, Some(IVec::from(&p.encode()[..])))),
        )?;
        (opts.on_step)(CompactStep::Moved);
        let full = batch.len() >= batch_size || bytes >= BATCH_BYTES;
        match last {
            Some(mut k) if full => {
                k.push(0);
                start = k;
            }
            _ => break,
        }
    }
    index.flush()?;
    // Every pointer names the new generation and its value reads back, before anything goes.
    drop(log);
    let (log, _) = ValueLog::open(dir)?;
    let mut kept = 0u64;
    let mut kept_by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    index.walk_from(b"", |k, v| {
        if let Some(p) = Pointer::decode(&v) {
            if p.generation() != new {
                return Err(StoreError::Compact(format!(
                    "key {} still names generation {} after the move",
                    String::from_utf8_lossy(k),
                    p.generation()
                )));
            }
            log.read(p).map_err(|e| unreadable(k, e))?;
            kept += 1;
            let kind = k.split(|b| *b == b'/').next().unwrap_or_default();
            let e = kept_by_kind
                .entry(String::from_utf8_lossy(kind).into_owned())
                .or_default();
            e.0 += 1;
            e.1 += u64::from(p.len());
        }
        Ok(true)
    })?;
    (opts.on_step)(CompactStep::Checked);
    drop(log);
    let mut removed = Vec::new();
    for g in old {
        std::fs::remove_file(values::file_of(dir, g))?;
        engine::sync_dir(dir)?;
        removed.push(g);
        (opts.on_step)(CompactStep::Removed);
    }
    // The pages the moved pointers left free in the index's file (redb's own crash-safe
    // operation; the lock is still held).
    index.compact_files()?;
    // The files the engine wrote meanwhile (sled's snapshots) with its own modes.
    drop(index);
    super::files::tighten_and_report(dir, false)?;
    Ok(CompactReport {
        values: kept,
        bytes_before,
        bytes_after: log_bytes(dir)?,
        generation: new,
        kept_by_kind,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EngineKind, Store};
    use std::collections::BTreeMap;

    /// Every key and value of the store, values resolved.
    fn everything(store: &Store) -> BTreeMap<String, Vec<u8>> {
        store
            .scan_keys("", None, usize::MAX)
            .expect("scan")
            .into_iter()
            .map(|k| {
                let v = store.get_raw(&k).expect("read").expect("present");
                (k, v.to_vec())
            })
            .collect()
    }

    fn live_values_are_kept_and_dead_ones_dropped(engine: EngineKind) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let before = {
            let store = Store::open_with(dir.path(), Some(engine)).expect("open");
            for round in 0..5u8 {
                store
                    .transact_blocking(move |tx| {
                        for i in 0..40u32 {
                            // Rewritten at each round: four dead versions of each.
                            tx.put_raw(&format!("doc/{i:03}"), &vec![round; 1000 + i as usize])?;
                        }
                        tx.put_raw(&format!("small/{round}"), b"inline")?;
                        tx.put_raw(&format!("gone/{round}"), &[9u8; 500])
                    })
                    .expect("commit");
                store
                    .transact_blocking(move |tx| tx.remove(&format!("gone/{round}")))
                    .expect("commit");
            }
            everything(&store)
        };
        let report = compact_value_log(
            dir.path(),
            &CompactOptions {
                batch: 7,
                ..Default::default()
            },
        )
        .expect("compact");
        assert_eq!(report.values, 40);
        assert_eq!(report.generation, 1);
        assert_eq!(report.removed, vec![0]);
        let live: u64 = (0..40u64).map(|i| 1000 + i).sum();
        assert_eq!(report.bytes_after, live);
        assert!(report.bytes_before > 4 * live, "{report:?}");
        assert!(!dir.path().join("values.log").exists());
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(everything(&store), before);
        // New values go to the new generation, and a second compaction moves them all again.
        store
            .transact_blocking(|tx| tx.put_raw("doc/000", &[7u8; 3000]))
            .expect("commit");
        drop(store);
        let again = compact_value_log(dir.path(), &CompactOptions::default()).expect("compact");
        assert_eq!((again.generation, again.removed), (2, vec![1]));
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.get_raw("doc/000").expect("read").as_deref(),
            Some(&[7u8; 3000][..])
        );
        assert_eq!(everything(&store).len(), before.len());
        drop(store);
        // Refused while the store is open, and where there is none.
        let _open = Store::open(dir.path()).expect("reopen");
        let busy = compact_value_log(dir.path(), &CompactOptions::default()).expect_err("busy");
        assert!(matches!(busy, StoreError::InUse(_)), "{busy}");
        let empty = tempfile::tempdir().expect("temporary directory");
        let none = compact_value_log(empty.path(), &CompactOptions::default()).expect_err("none");
        assert!(none.to_string().contains("holds no store"), "{none}");
    }

    #[test]
    fn live_values_are_kept_and_dead_ones_dropped_on_sled() {
        live_values_are_kept_and_dead_ones_dropped(EngineKind::Sled);
    }

    #[test]
    fn live_values_are_kept_and_dead_ones_dropped_on_redb() {
        live_values_are_kept_and_dead_ones_dropped(EngineKind::Redb);
    }
}

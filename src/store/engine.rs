//! The ordered key–value index under the store: the engine that keeps the keys and the short
//! values (sled, the embedded default, or redb), behind the handful of operations the store's
//! pipeline needs — read a key, walk keys in order, find the greatest key of a range, apply a
//! group atomically, make what was applied durable.
//!
//! Why two engines: sled 0.34 keeps an in-memory entry for every page of its tree and every
//! fragment of a page, so its resident memory grows with the number of records stored (about
//! 25 bytes per sequential key and 45 per random one, measured), whatever its cache capacity.
//! redb keeps only a bounded page cache in memory: its resident memory stays flat as the store
//! grows. A data directory holds one engine's files; which one is found on opening.
//!
//! Every value this version writes carries a CRC-32 of its key and value, checked on every
//! read: a damaged value, or a key whose bytes changed (a flipped bit in a page), is reported as
//! a damaged record naming its key, never served. A panic of an engine (a damaged file can make
//! one panic) is caught here and becomes an error of the call. The engine can be closed and
//! opened again in place ([`Index::reopen`]), for the store's recovery from a full disk.
//!
//! This module must not know what a key or a value means, nor see the value log.

use super::StoreError;
use serde::Deserialize;
use sled::IVec;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The engine of a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// sled 0.34, in `DATA/db` (the default).
    Sled,
    /// redb 2, in `DATA/index.redb`.
    Redb,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
        })
    }
}

/// redb's file in the data directory.
const REDB_FILE: &str = "index.redb";
/// The file sled creates first in the data directory.
const SLED_FILE: &str = "db";
/// redb's file while a conversion writes it: never opened as the index.
const REDB_PARTIAL: &str = "index.redb.partial";
/// Where a conversion moves sled's files, kept until the operator removes them.
const SLED_KEPT: &str = "sled-before-conversion";
/// Keys copied per redb transaction during a conversion.
const CONVERT_CHUNK: usize = 10_000;
/// redb's page cache (its only memory that grows with use, and bounded).
const REDB_CACHE: usize = 32 * 1024 * 1024;
/// sled's cache capacity (sled's own accounting, not its resident memory).
const SLED_CACHE: u64 = 16 * 1024 * 1024;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("paraph");

/// The file paraph locks while a data directory is open, whatever its engine.
const LOCK_FILE: &str = "lock";

/// An open index, shared by the store's threads; the directory's lock is held until the last
/// clone is dropped. The engine's handles sit behind a lock so that [`Index::reopen`] can close
/// and open them again in place (after a failed write, see the store's module doc) while every
/// clone keeps working.
#[derive(Clone)]
pub struct Index {
    dir: PathBuf,
    kind: EngineKind,
    engine: Arc<RwLock<Option<Engine>>>,
    _lock: Arc<std::fs::File>,
}

/// The engine's own handles.
enum Engine {
    Sled { db: sled::Db, tree: sled::Tree },
    Redb { db: redb::Database },
}

/// Starts every value the index holds (written by this version): a CRC-32 of the key and the
/// value follows it. A value without it was written by an older version and cannot be checked.
const SUMMED: &[u8; 8] = b"\xfepsum\x01\xff\x00";
/// The tag and the checksum.
const SUM_LEN: usize = SUMMED.len() + 4;

/// The checksum of a value stored under `key`: a value moved to another key, or a key whose
/// bytes changed on disk, no longer matches.
fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(value);
    h.finalize()
}

/// `value` as the index stores it under `key`: tagged and checksummed.
fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SUM_LEN + value.len());
    out.extend_from_slice(SUMMED);
    out.extend_from_slice(&checksum(key, value).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// What the index holds under a key, once its checksum is looked at.
pub enum Stored {
    /// Checksummed and intact.
    Checked(IVec),
    /// Written by an older version, without a checksum.
    Unchecked(IVec),
    /// The checksum does not match the key and value.
    Damaged,
}

/// Looks at the checksum of `raw`, read under `key`.
fn open_sealed(key: &[u8], raw: IVec) -> Stored {
    if !raw.starts_with(SUMMED) {
        return Stored::Unchecked(raw);
    }
    if raw.len() < SUM_LEN {
        return Stored::Damaged;
    }
    let mut sum = [0u8; 4];
    sum.copy_from_slice(&raw[SUMMED.len()..SUM_LEN]);
    let value = raw.subslice(SUM_LEN, raw.len() - SUM_LEN);
    if checksum(key, &value) == u32::from_be_bytes(sum) {
        Stored::Checked(value)
    } else {
        Stored::Damaged
    }
}

/// The value of a [`Stored`] read under `key`, or the error naming the damaged record.
fn checked(key: &[u8], stored: Stored) -> Result<IVec, StoreError> {
    match stored {
        Stored::Checked(v) | Stored::Unchecked(v) => Ok(v),
        Stored::Damaged => Err(StoreError::Damaged {
            key: String::from_utf8_lossy(key).into_owned(),
        }),
    }
}

/// Takes the directory's exclusive lock (created on first use): a second process, or a second
/// opening in this one, is refused before any engine file is touched.
pub(super) fn lock_dir(dir: &Path) -> Result<Arc<std::fs::File>, StoreError> {
    super::files::create_dir(dir)?;
    let file = super::files::private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(Arc::new(file)),
        Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
            Err(StoreError::InUse(dir.display().to_string()))
        }
        Err(e) => Err(StoreError::Io(e)),
    }
}

fn redb_error(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(Box::new(e.into()))
}

/// The engine whose files `dir` holds, if any.
pub fn found_in(dir: &Path) -> Option<EngineKind> {
    if dir.join(REDB_FILE).exists() {
        Some(EngineKind::Redb)
    } else if dir.join(SLED_FILE).exists() {
        Some(EngineKind::Sled)
    } else {
        None
    }
}

/// How long a reopening waits for the engine's own file lock, released once the threads of
/// the closed engine are gone.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the engine's files in `dir` (the directory's lock is held by the caller).
fn open_engine(dir: &Path, kind: EngineKind) -> Result<Engine, StoreError> {
    match kind {
        EngineKind::Sled => {
            let db = open_sled(dir)?;
            let tree = db.open_tree("paraph")?;
            Ok(Engine::Sled { db, tree })
        }
        EngineKind::Redb => {
            let db = redb::Database::builder()
                .set_cache_size(REDB_CACHE)
                .create(dir.join(REDB_FILE))
                .map_err(redb_error)?;
            // The table exists from the start, so that every read finds it.
            let tx = db.begin_write().map_err(redb_error)?;
            tx.open_table(TABLE).map_err(redb_error)?;
            tx.commit().map_err(redb_error)?;
            Ok(Engine::Redb { db })
        }
    }
}

/// Opens sled's files. Called with `DATA/lock` held, so no other store has the directory: a
/// refusal of sled's own file lock can only come from a store of this process just closed,
/// whose sled threads let go of the file a moment after it (seen in tests reopening a
/// directory at once). That refusal is retried for a bounded time, never waited on forever.
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    const TRIES: u32 = 100;
    let mut tries = 0;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE)
            .open()
        {
            Err(sled::Error::Io(e))
                if tries < TRIES && e.to_string().contains("could not acquire lock") =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return Ok(r?),
        }
    }
}

/// The message of a panic caught at the engine's boundary.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl Index {
    /// Opens the index in `dir`: the engine whose files are there, else `wanted`, else sled.
    /// Refuses a directory holding another engine's files than the one `wanted`.
    pub fn open(dir: &Path, wanted: Option<EngineKind>) -> Result<Index, StoreError> {
        // Locked first: what the directory holds cannot change (a conversion) while it is read.
        let lock = lock_dir(dir)?;
        let kind = match (found_in(dir), wanted) {
            (Some(found), Some(w)) if found != w => {
                return Err(StoreError::WrongEngine {
                    dir: dir.display().to_string(),
                    found,
                    wanted: w,
                })
            }
            (Some(found), _) => found,
            (None, w) => w.unwrap_or(EngineKind::Sled),
        };
        let engine = open_engine(dir, kind)?;
        Ok(Index {
            dir: dir.to_path_buf(),
            kind,
            engine: Arc::new(RwLock::new(Some(engine))),
            _lock: lock,
        })
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the engine and opens its files again, dropping whatever it held in memory and had
    /// not made durable: what it serves afterwards is what its files hold. Waits for every
    /// operation under way. If the opening fails, every operation fails until a later
    /// reopening succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut engine = self.engine.write().unwrap_or_else(|p| p.into_inner());
        drop(engine.take());
        let started = std::time::Instant::now();
        loop {
            let opened = std::panic::catch_unwind(|| open_engine(&self.dir, self.kind))
                .unwrap_or_else(|p| {
                    Err(StoreError::EnginePanic {
                        op: "reopen",
                        key: String::new(),
                        message: panic_message(&*p),
                    })
                });
            match opened {
                Ok(e) => {
                    *engine = Some(e);
                    return Ok(());
                }
                // sled's own file lock outlives the closed handles until its threads end.
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < REOPEN_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `op` on the open engine; a panic of the engine (a damaged file can make one
    /// panic) becomes an error naming the operation and the key.
    fn with<R>(
        &self,
        op: &'static str,
        key: &[u8],
        run: impl FnOnce(&Engine) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let engine = self.engine.read().unwrap_or_else(|p| p.into_inner());
        let Some(e) = engine.as_ref() else {
            return Err(StoreError::Closed);
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(e))).unwrap_or_else(|p| {
            let message = panic_message(&*p);
            let key = String::from_utf8_lossy(key).into_owned();
            tracing::error!(op, key = %key, panic = %message, "the storage engine panicked");
            Err(StoreError::EnginePanic { op, key, message })
        })
    }

    /// The value stored under `k` (a value-log pointer or an inline value).
    pub fn get(&self, k: &[u8]) -> Result<Option<IVec>, StoreError> {
        let raw = self.with("get", k, |e| match e {
            Engine::Sled { tree, .. } => Ok(tree.get(k)?),
            Engine::Redb { db } => {
                let rtx = db.begin_read().map_err(redb_error)?;
                let t = rtx.open_table(TABLE).map_err(redb_error)?;
                Ok(t.get(k).map_err(redb_error)?.map(|v| IVec::from(v.value())))
            }
        })?;
        raw.map(|v| checked(k, open_sealed(k, v))).transpose()
    }

    /// Calls `visit` on every key from `start` on, in order, until it answers `false`.
    pub fn walk_from(
        &self,
        start: &[u8],
        mut visit: impl FnMut(&[u8], IVec) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.walk_stored(start, |k, stored| visit(k, checked(k, stored)?))
    }

    /// [`Index::walk_from`] with each value as stored, its checksum looked at but not
    /// enforced (for the checker, which goes on past a damaged record).
    pub fn walk_stored(
        &self,
        start: &[u8],
        mut visit: impl FnMut(&[u8], Stored) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.with("walk", start, |e| {
            match e {
                Engine::Sled { tree, .. } => {
                    for item in tree.range(start..) {
                        let (k, v) = item?;
                        if !visit(&k, open_sealed(&k, v))? {
                            break;
                        }
                    }
                }
                Engine::Redb { db } => {
                    let rtx = db.begin_read().map_err(redb_error)?;
                    let t = rtx.open_table(TABLE).map_err(redb_error)?;
                    for item in t.range(start..).map_err(redb_error)? {
                        let (k, v) = item.map_err(redb_error)?;
                        let k = k.value();
                        if !visit(k, open_sealed(k, IVec::from(v.value())))? {
                            break;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// The entry with the greatest key from `low` (included) up to `high`.
    pub fn last_in(
        &self,
        low: &[u8],
        high: Bound<&[u8]>,
    ) -> Result<Option<(IVec, IVec)>, StoreError> {
        // An empty range (its end before its start) holds nothing, on every engine.
        let empty = match high {
            Bound::Included(h) => h < low,
            Bound::Excluded(h) => h <= low,
            Bound::Unbounded => false,
        };
        if empty {
            return Ok(None);
        }
        let range = (Bound::Included(low), high);
        let last = self.with("last", low, |e| match e {
            Engine::Sled { tree, .. } => {
                Ok(tree.range::<&[u8], _>(range).next_back().transpose()?)
            }
            Engine::Redb { db } => {
                let rtx = db.begin_read().map_err(redb_error)?;
                let t = rtx.open_table(TABLE).map_err(redb_error)?;
                let last = t
                    .range::<&[u8]>(range)
                    .map_err(redb_error)?
                    .next_back()
                    .transpose()
                    .map_err(redb_error)?;
                Ok(last.map(|(k, v)| (IVec::from(k.value()), IVec::from(v.value()))))
            }
        })?;
        match last {
            Some((k, v)) => {
                let v = checked(&k, open_sealed(&k, v))?;
                Ok(Some((k, v)))
            }
            None => Ok(None),
        }
    }

    /// Applies `writes` (`None` removes the key) as one atomic change, visible to every read
    /// that starts after it returns; durable only after [`Index::flush`].
    pub fn apply<'w>(
        &self,
        writes: impl IntoIterator<Item = (&'w [u8], Option<IVec>)>,
    ) -> Result<(), StoreError> {
        let writes: Vec<(&[u8], Option<Vec<u8>>)> = writes
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| seal(k, &v))))
            .collect();
        self.with("apply", b"", |e| match e {
            Engine::Sled { tree, .. } => {
                let mut batch = sled::Batch::default();
                for (k, v) in writes {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                Ok(tree.apply_batch(batch)?)
            }
            Engine::Redb { db } => {
                let mut tx = db.begin_write().map_err(redb_error)?;
                tx.set_durability(redb::Durability::None);
                {
                    let mut t = tx.open_table(TABLE).map_err(redb_error)?;
                    for (k, v) in writes {
                        match v {
                            Some(v) => {
                                t.insert(k, &v[..]).map_err(redb_error)?;
                            }
                            None => {
                                t.remove(k).map_err(redb_error)?;
                            }
                        }
                    }
                }
                tx.commit().map_err(redb_error)
            }
        })
    }

    /// The bytes stored under `k` as they are, checksum included (tests damage them).
    #[cfg(test)]
    pub fn raw_get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with("get", k, |e| match e {
            Engine::Sled { tree, .. } => Ok(tree.get(k)?.map(|v| v.to_vec())),
            Engine::Redb { db } => {
                let rtx = db.begin_read().map_err(redb_error)?;
                let t = rtx.open_table(TABLE).map_err(redb_error)?;
                Ok(t.get(k).map_err(redb_error)?.map(|v| v.value().to_vec()))
            }
        })
    }

    /// Stores `v` under `k` as it is, without a checksum (tests damage the index with it).
    #[cfg(test)]
    pub fn raw_put(&self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.with("put", k, |e| match e {
            Engine::Sled { tree, .. } => tree.insert(k, v).map(|_| ()).map_err(StoreError::from),
            Engine::Redb { db } => {
                let tx = db.begin_write().map_err(redb_error)?;
                tx.open_table(TABLE)
                    .map_err(redb_error)?
                    .insert(k, v)
                    .map_err(redb_error)?;
                tx.commit().map_err(redb_error)
            }
        })
    }

    /// Gives the index file's free pages back to the file system where the engine needs to be
    /// asked (redb, and only while this is its one handle; sled reclaims its segments itself).
    pub fn compact_files(&mut self) -> Result<(), StoreError> {
        // The write lock: no operation of another handle runs during the compaction.
        let mut engine = self.engine.write().unwrap_or_else(|p| p.into_inner());
        if let Some(Engine::Redb { db }) = engine.as_mut() {
            db.compact().map_err(redb_error)?;
        }
        Ok(())
    }

    /// Makes every change applied so far durable (one fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.with("flush", b"", |e| match e {
            Engine::Sled { db, .. } => db.flush().map(|_| ()).map_err(StoreError::from),
            Engine::Redb { db } => {
                // An empty commit at `Immediate` persists the `None` commits before it.
                let mut tx = db.begin_write().map_err(redb_error)?;
                tx.set_durability(redb::Durability::Immediate);
                tx.commit().map_err(redb_error)
            }
        })
    }
}

/// Converts the sled index of `dir` to redb, with nothing else open on `dir`: copies every key
/// and value (value-log pointers stay valid: the value log is not touched), checks the copy
/// key by key, makes it durable, and only then puts it in place as `index.redb` and moves sled's
/// files under `sled-before-conversion/`. An interrupted conversion leaves the sled index in
/// use and at most an `index.redb.partial`, which the next conversion overwrites. Returns the
/// number of keys copied.
pub fn convert_sled_to_redb(dir: &Path) -> Result<u64, StoreError> {
    match found_in(dir) {
        Some(EngineKind::Sled) => {}
        Some(EngineKind::Redb) => {
            return Err(StoreError::Convert(format!(
                "{} already holds a redb store",
                dir.display()
            )))
        }
        None => {
            return Err(StoreError::Convert(format!(
                "{} holds no store",
                dir.display()
            )))
        }
    }
    let _lock = lock_dir(dir)?;
    let Engine::Sled { db, tree } = open_engine(dir, EngineKind::Sled)? else {
        return Err(StoreError::Convert(
            "the sled index did not open as sled".into(),
        ));
    };
    let partial = dir.join(REDB_PARTIAL);
    if partial.exists() {
        std::fs::remove_file(&partial)?;
    }
    let target = redb::Database::builder()
        .set_cache_size(REDB_CACHE)
        .create(&partial)
        .map_err(redb_error)?;
    let mut copied = 0u64;
    let mut entries = tree.iter();
    loop {
        let mut tx = target.begin_write().map_err(redb_error)?;
        tx.set_durability(redb::Durability::None);
        let mut in_chunk = 0;
        {
            let mut t = tx.open_table(TABLE).map_err(redb_error)?;
            for entry in entries.by_ref() {
                let (k, v) = entry?;
                t.insert(&k[..], &v[..]).map_err(redb_error)?;
                in_chunk += 1;
                if in_chunk == CONVERT_CHUNK {
                    break;
                }
            }
        }
        tx.commit().map_err(redb_error)?;
        copied += in_chunk as u64;
        if in_chunk < CONVERT_CHUNK {
            break;
        }
    }
    // Key by key, in order: the copy is whole before anything is moved.
    {
        let rtx = target.begin_read().map_err(redb_error)?;
        let t = rtx.open_table(TABLE).map_err(redb_error)?;
        let mut copy = redb::ReadableTable::iter(&t).map_err(redb_error)?;
        for entry in tree.iter() {
            let (k, v) = entry?;
            let same = match copy.next() {
                Some(c) => {
                    let (ck, cv) = c.map_err(redb_error)?;
                    ck.value() == &k[..] && cv.value() == &v[..]
                }
                None => false,
            };
            if !same {
                return Err(StoreError::Convert(format!(
                    "the copy differs from sled at key {}",
                    String::from_utf8_lossy(&k)
                )));
            }
        }
        if copy.next().is_some() {
            return Err(StoreError::Convert(
                "the copy holds more keys than sled".into(),
            ));
        }
    }
    let mut tx = target.begin_write().map_err(redb_error)?;
    tx.set_durability(redb::Durability::Immediate);
    tx.commit().map_err(redb_error)?;
    drop(target);
    drop(tree);
    drop(db);
    // The lock is held until the end: no server may open the directory half converted.
    std::fs::rename(&partial, dir.join(REDB_FILE))?;
    sync_dir(dir)?;
    // From here the directory opens as redb; sled's files are only kept.
    let kept = dir.join(SLED_KEPT);
    super::files::create_dir(&kept)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let sled_file = name == SLED_FILE
            || name == "conf"
            || name == "blobs"
            || name.to_string_lossy().starts_with("snap.");
        if sled_file {
            std::fs::rename(entry.path(), kept.join(&name))?;
        }
    }
    sync_dir(dir)?;
    Ok(copied)
}

/// Makes the renames in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

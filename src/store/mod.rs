//! Persistence of domain records in an embedded ordered key–value index: sled (the default) or
//! redb (see [`engine`]), chosen per data directory.
//!
//! Owns the key layout, record encoding and atomicity. Every mutation is a closure run on ONE
//! writer thread against a [`Tx`]: it reads through the writes not yet applied and records its
//! own (records, indexes, event log and idempotency record together); a closure that fails
//! leaves nothing. The writer takes every mutation waiting at once as a *group*: runs them one
//! after the other and runs the commit hook (the service signs the audit checkpoints there,
//! once per group). It hands the group's writes to the applier thread, which applies them as
//! one atomic batch to the index (a key written by several mutations is written once), then to the
//! flusher thread, which makes them durable with one fsync and only then answers each
//! mutation. The three stages overlap (group commit, pipelined): while a group is applied and
//! another flushed, the writer already runs the next one, reading through the writes of the
//! groups not applied yet. A failed apply or flush poisons the store: it refuses every later
//! mutation (fail closed), and a group built over a failed one is never applied. Below the
//! groups in flight, the writer reads through a bounded cache of the records it read and wrote
//! lately ([`recent`]). It knows nothing of gRPC, authorisation or workflow rules.
//!
//! The data directory and its files are its owner's only (see [`files`]). Uploads in progress
//! are spooled in its `spool/` directory (see [`spool`]), emptied when the store opens; a large
//! value is read piece by piece with [`Store::value_reader`].
//!
//! **A full disk, and recovering from it.** Why the poison: once a group failed, the groups
//! built after it read its writes (through the writer's view), and the index may hold some of
//! them in memory, applied but never made durable. Answering or applying anything over that
//! state could acknowledge a write that depends on one that will vanish at the next restart.
//! So a failure still poisons, and the store says it cannot write ([`Store::writable`], which
//! the health service reports). A failure that is not ENOSPC/EDQUOT (an I/O error) keeps it
//! poisoned until a restart: after a failed fsync the kernel may have dropped the dirty pages
//! while the page cache still shows them, so nothing this process reads can be trusted to be
//! on disk. A full disk is different: write() refuses the bytes before they enter the page
//! cache, so what the files hold is what was written before. The store then recovers by
//! itself, on the writer, at the next mutation or every [`RETRY_EVERY`] without one:
//!
//! 1. the writer probes for room (a 1 MiB file written, synced and removed) and refuses the
//!    mutations it holds while there is none, without touching the pipeline;
//! 2. it sends a marker down the pipeline and builds nothing until it is answered, so that
//!    every group built before the failure is applied or refused, and answered, first (those
//!    behind the failure were all refused: their callers never saw a success);
//! 3. the applier cuts the value log back to the end of the last group it made durable (the
//!    bytes of a failed append belong to no record) — every pointer the index holds is below
//!    it, since a group's values are synced before its batch is applied;
//! 4. the flusher closes the index and opens it from its files: whatever it held in memory and
//!    had not made durable (applied groups whose flush failed, whose callers got an error) is
//!    dropped, and what the engine recovers is a prefix of the applied groups, each whole (a
//!    group is one atomic batch). Every acknowledged group was flushed, so it is in that prefix.
//!    The key watches move, so that no cache keeps a record of a dropped group;
//! 5. the writer forgets the groups in flight and its cache of recent records (both may hold
//!    writes of failed groups), and the poison is lifted.
//!
//! A group whose callers got an error may thus survive or not (its outcome is unknown to them,
//! as after a crash), but never in part, and no acknowledged write is lost or built over one
//! that was dropped.
//!
//! Values of 256 bytes or more are kept in the value log (`values.log`, then `values.{g}.log`
//! after a compaction, see [`values`] and [`compact`]) and the index holds a checked pointer
//! to them; reads resolve pointers transparently.
//!
//! Key layout (one tree, `/`-separated, every tenant-scoped key starts with the tenant id):
//!
//! | prefix | value |
//! |---|---|
//! | `meta/init` | bootstrap marker |
//! | `meta/submitted-index` | marker: the documents stored before the `submitted/` keys existed have theirs |
//! | `tenant/{t}` | Tenant |
//! | `user/{t}/{user}` | User |
//! | `userlist/{t}` | every User of the tenant (transactions cannot scan) |
//! | `token/{sha256}` | TokenRecord (the secret itself is never stored) |
//! | `tokenid/{id}` | sha256 of the token with that id |
//! | `operatortokens` | ids of the live platform operator tokens (transactions cannot scan) |
//! | `circuit/{t}/{name}/{version:010}` | Circuit |
//! | `circuitlatest/{t}/{name}` | latest version number |
//! | `doc/{t}/{id}` | Document |
//! | `blob/{t}/{sha256}` | document content |
//! | `inbox/{t}/{user}/{since:020}/{id}` | empty: the document waits for the user |
//! | `submitted/{t}/{user}/{created:020}/{id}` | empty: the user submitted the document then (seconds); written with the document, and for documents stored by older versions when the store is opened (`meta/submitted-index` marks that done) |
//! | `evs/{t}/{first:020}` | the canonical bytes of consecutive events of the tenant's log, leaves `first`… (length-prefixed), appended by the transactions of one group up to 32 KiB |
//! | `ev/{t}/{index:020}` | canonical audit event bytes of leaf `index` alone; read only, written by older versions |
//! | `mt/{t}/{level:02}/{index:020}` | 32-byte hash of a perfect subtree of the tenant's log, levels 4, 8, 12… only (a leaf's hash is its event's, other levels are recomputed from their children) |
//! | `mthead/{t}` | head of the tenant's log: size, root, right-edge subtree hashes |
//! | `evdoc/{t}/{doc}` | the document's event indexes and the leaf hash of the last one |
//! | `ckpt/{t}` | the latest signed checkpoint of the tenant's log |
//! | `sig/{t}/{doc}/{i:04}` | SignatureRecord i of a document (`sigcount/{t}/{doc}`, their count, is left by older versions and no longer read) |
//! | `sighash/{t}/{doc}/{i:04}` | hex SHA-256 of signature i's CMS (for its audit event); read only, written by older versions |
//! | `der/{t}/{sha256}` | a certificate or CRL signature records refer to by hash (kept once) |
//! | `prep/{t}/{id}` | a signature Preparation; empty once it was used |
//! | `prepused/{t}/{id}` | empty: the preparation was used; read only, written by older versions |
//! | `trust/{t}` | TrustSettings |
//! | `absences/{t}` | every Absence of the tenant; read only, written by older versions and moved to the keys below when the store is opened |
//! | `absence/{t}/{id}` | Absence |
//! | `abslive/{t}/{to:020}/{id}` | empty: the absence is not cancelled (kept once it is over: a scan from an instant finds those not over then) |
//! | `absuser/{t}/{user}/{to:020}/{id}` | empty: the same, for one user |
//! | `abscancel/{t}/{at:020}/{id}` | empty: the absence was cancelled then |
//! | `due/{t}/{due:020}/{doc}` | empty: the document's active step is due then |
//! | `idem/{t}/{caller}/{method}/{key}` | IdemRecord |

mod compact;
mod engine;
mod files;
mod pg_line;
mod pg_tls;
mod postgres;
mod recent;
mod spool;
mod values;

pub use compact::{compact_value_log, CompactOptions, CompactReport, CompactStep};
use engine::Index;
#[cfg(test)]
use engine::Stored;
pub use engine::{convert_sled_to_redb, found_in, EngineKind};
pub use postgres::{migrate, redact, Migrated, PgOptions, SCHEMA_VERSION};
use recent::Recent;
use serde::{de::DeserializeOwned, Serialize};
use sled::IVec;
pub use spool::SpoolFile;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use values::{Appender, Pointer, ValueLog, ValueLogError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage failure: {0}")]
    Redb(Box<redb::Error>),
    #[error("storage I/O failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory {0} is in use by another process (a running paraph server?)")]
    InUse(String),
    #[error("conversion refused: {0}")]
    Convert(String),
    #[error("compaction refused: {0}")]
    Compact(String),
    #[error("data directory {dir} holds a {found} store, not {wanted}")]
    WrongEngine {
        dir: String,
        found: EngineKind,
        wanted: EngineKind,
    },
    #[error("stored record {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("record encoding failed: {0}")]
    Encode(serde_json::Error),
    #[error("the store refuses writes after a failed apply or flush: {0}")]
    Poisoned(String),
    #[error("the group of mutations could not be committed: {0}")]
    Commit(String),
    #[error("the store dropped this mutation (its writer stopped, or the mutation panicked)")]
    Stopped,
    #[error("stored record {key} is unreadable: {source}")]
    Unreadable { key: String, source: ValueLogError },
    #[error("{0}")]
    Values(#[from] ValueLogError),
    #[error("stored record {key} is damaged (its checksum does not match)")]
    Damaged { key: String },
    #[error("the storage engine failed ({op} {key}): {message}")]
    EnginePanic {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("stored record {key} is missing although {witness} refers to it")]
    Missing { key: String, witness: String },
    #[error("the index is closed (it could not be opened again after a failed write)")]
    Closed,
    #[error("the data directory's filesystem is full: {0}")]
    NoSpace(String),
    #[error("the store cannot write: {0}")]
    Unwritable(String),
    #[error("the database failed: {0}")]
    Database(String),
    /// The database's TLS certificate failed the check the `[store] url` asks for: not
    /// something waiting cures.
    #[error("the database's certificate is refused: {0}")]
    DatabaseRefused(String),
    #[error("{0}")]
    Schema(String),
}

impl StoreError {
    /// The I/O error under this one, if any.
    fn io(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io(e) | StoreError::Values(ValueLogError::Io(e)) => Some(e),
            StoreError::Sled(sled::Error::Io(e)) => Some(e),
            StoreError::Redb(e) => match &**e {
                redb::Error::Io(e) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }

    /// What kind of failure this is for the pipeline (see [`Failure`]).
    fn failure(&self) -> FailureKind {
        if let Some(e) = self.io() {
            if is_no_space(e) {
                return FailureKind::NoSpace;
            }
            return FailureKind::Io;
        }
        match self {
            StoreError::Redb(e) if matches!(**e, redb::Error::PreviousIo) => FailureKind::Io,
            StoreError::Sled(_) | StoreError::Redb(_) | StoreError::Closed => FailureKind::Io,
            _ => FailureKind::Other,
        }
    }
}

/// ENOSPC or EDQUOT: the filesystem (or the user's quota) is full.
fn is_no_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
        || e.to_string().contains("No space left on device")
}

/// How a write of the pipeline failed, which decides whether the store may recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// ENOSPC/EDQUOT: recovered from once space returns (see the module doc).
    NoSpace,
    /// Any other I/O failure: the store refuses writes until it is restarted.
    Io,
    /// Not an I/O failure (a value too large, a test's injected failure): same.
    Other,
}

/// A failed apply or flush: what poisons the store.
#[derive(Debug, Clone)]
struct Failure {
    kind: FailureKind,
    message: String,
}

impl Failure {
    fn of(e: &StoreError) -> Failure {
        Failure {
            kind: e.failure(),
            message: e.to_string(),
        }
    }

    /// The error the callers of the failed group get.
    fn error(&self) -> StoreError {
        match self.kind {
            FailureKind::NoSpace => StoreError::NoSpace(self.message.clone()),
            FailureKind::Io => StoreError::Unwritable(self.message.clone()),
            FailureKind::Other => StoreError::Commit(self.message.clone()),
        }
    }

    /// The error of a mutation refused because of this earlier failure.
    fn refusal(&self) -> StoreError {
        let message = format!("{EARLIER_FAILURE}: {}", self.message);
        match self.kind {
            FailureKind::NoSpace => StoreError::NoSpace(message),
            FailureKind::Io | FailureKind::Other => StoreError::Poisoned(message),
        }
    }
}

/// The store's poison: the failure that stopped its writes, if any, and whether it can write,
/// published to whoever watches (the health service).
struct Poison {
    failure: Mutex<Option<Failure>>,
    writable: tokio::sync::watch::Sender<bool>,
}

impl Poison {
    fn new() -> Poison {
        Poison {
            failure: Mutex::new(None),
            writable: tokio::sync::watch::Sender::new(true),
        }
    }

    fn get(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Poisons the store with `f` (the first failure is kept).
    fn set(&self, f: Failure) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            // The cause goes to the log (never a record's contents: the engines' and the
            // value log's errors name files and offsets only).
            tracing::error!(cause = %f.message, recoverable = f.kind == FailureKind::NoSpace,
                "a write of the store failed: it refuses writes until it recovers");
            *failure = Some(f);
        }
        drop(failure);
        self.writable.send_replace(false);
    }

    fn clear(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.writable.send_replace(true);
    }
}

/// Work run by the writer at the end of every group that left marks (see [`Tx::mark`]), inside
/// the group: what it writes commits with the group, and if it fails the whole group fails.
pub type CommitHook = dyn Fn(&mut Tx<'_>, &[String]) -> Result<(), String> + Send + Sync;

/// What the writer does with one mutation: run it, keep its writes or not, and later tell its
/// caller how the commit went; with what the mutation said it would read.
struct Job {
    reads: Reads,
    run: Run,
}
/// A mutation as the writer runs it: whether to keep its writes, and how to answer.
type Run = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Deliver) + Send>;

/// What a mutation will read, said before it runs (see [`Store::transact_reading`]).
///
/// A database-backed writer fetches what the mutations of a group declared in one round trip,
/// right after taking its lock, instead of one round trip per read while it holds the lock.
/// A declaration is only a hint: a read not declared is read when it happens, a declaration
/// not read costs its fetch. The embedded engines read their index directly and ignore it.
#[derive(Default, Clone, Debug)]
pub struct Reads {
    keys: Vec<String>,
    /// `(prefix, from)`: the keys under `prefix` from `from` on (`from` starts with `prefix`).
    ranges: Vec<(String, String)>,
}

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    /// The record under `key`.
    pub fn key(mut self, key: impl Into<String>) -> Reads {
        self.keys.push(key.into());
        self
    }

    /// The records under `prefix` whose keys sort at or after `from` (a short range: an index
    /// of a few records; a longer one is read as if it were not declared).
    pub fn range(mut self, prefix: impl Into<String>, from: impl Into<String>) -> Reads {
        let prefix = prefix.into();
        let from = from.into();
        if from.starts_with(&prefix) {
            self.ranges.push((prefix, from));
        }
        self
    }
}
/// Answers a mutation's caller once its group is durable (`None`) or failed (`Some`).
type Deliver = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// Writes in the order they must be applied: `None` removes the key.
type Writes = BTreeMap<Vec<u8>, Option<IVec>>;

/// A group on its way from the writer to the applier.
struct Built {
    /// Numbers the groups in order, from 1.
    seq: u64,
    writes: Arc<Writes>,
    deliveries: Vec<Deliver>,
    /// The group failed at the writer: answer with this error, apply nothing.
    failed: Option<String>,
    /// Not a group: the writer asks the pipeline to recover (see [`recover`]).
    recover: Option<mpsc::SyncSender<Result<(), StoreError>>>,
}

/// A group the applier applied, on its way to the flusher.
struct Applied {
    deliveries: Vec<Deliver>,
    /// The apply failed: answer with this error without flushing.
    failed: Option<Failed>,
    /// Not a group: recover once every group before is answered (see [`recover`]).
    recover: Option<mpsc::SyncSender<Result<(), StoreError>>>,
}

/// Why a group was not applied.
enum Failed {
    /// At the writer (its commit hook).
    Writer(String),
    /// Its apply failed.
    Apply(Failure),
    /// An earlier failure poisoned the store.
    Refused(Failure),
}

/// Counts the committed groups that wrote under some key prefixes, so that a cache of records
/// under them can tell whether an entry may be stale (see [`Store::watch`]).
pub struct KeyWatch {
    prefixes: Vec<Vec<u8>>,
    epoch: AtomicU64,
}

impl KeyWatch {
    /// Read it BEFORE reading the records a cache entry is made of: an entry made under epoch
    /// `e` is valid while `epoch() == e`. The applier bumps it after a group that wrote under
    /// one of the prefixes is applied and before any of that group's callers is answered.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn concerns(&self, key: &[u8]) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p))
    }
}

type Watches = Arc<Mutex<Vec<Arc<KeyWatch>>>>;

/// The most mutations one group takes (bounds the latency the first of them sees).
const MAX_GROUP: usize = 512;

/// How many built groups may wait for the applier before the writer waits.
const MAX_AHEAD: usize = 2;
/// Bytes of recently read and written records the writer keeps (see [`recent`]).
const RECENT_BUDGET: usize = 32 * 1024 * 1024;

/// Why a group is refused once the store is poisoned by a failed apply or flush.
const EARLIER_FAILURE: &str = "an earlier write or flush failed";

/// The embedded database.
pub struct Store {
    backend: Backend,
    poison: Arc<Poison>,
    watches: Watches,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    hook: Arc<Mutex<Option<Arc<CommitHook>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where uploads are spooled (see [`spool`]).
    spool_dir: std::path::PathBuf,
}

/// Where the records are: the embedded index and value log, or a PostgreSQL database.
enum Backend {
    Embedded { index: Index, values: Arc<ValueLog> },
    Postgres(Arc<postgres::Pg>),
}

/// What a mutation reads under the writes of its group: the committed state.
trait Base {
    /// The value under `k` (a value-log pointer resolved).
    fn get(&self, k: &[u8]) -> Result<Option<IVec>, StoreError>;
    /// The greatest key from `low` (included) up to `high`.
    fn last_key_in(
        &self,
        low: &[u8],
        high: std::ops::Bound<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// The least key under `prefix` from `start` on (a NUL byte ending `start` excludes the
    /// key before it).
    fn first_key_from(&self, start: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The committed state of the embedded engines.
struct EmbeddedBase<'a> {
    index: &'a Index,
    values: &'a ValueLog,
}

impl Base for EmbeddedBase<'_> {
    fn get(&self, k: &[u8]) -> Result<Option<IVec>, StoreError> {
        match self.index.get(k)? {
            Some(v) => Ok(Some(resolve(self.values, k, v)?)),
            None => Ok(None),
        }
    }

    fn last_key_in(
        &self,
        low: &[u8],
        high: std::ops::Bound<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.index.last_in(low, high)?.map(|(k, _)| k.to_vec()))
    }

    fn first_key_from(&self, start: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut best = None;
        self.index.walk_from(start, |k, _| {
            if k.starts_with(prefix) {
                best = Some(k.to_vec());
            }
            Ok(false)
        })?;
        Ok(best)
    }
}

/// A stored value read piece by piece, in order (see [`Store::value_reader`]): a large value
/// is never held whole. A value from the log is checked against its checksum when its last
/// piece is read: that read fails instead of returning the piece if the value is damaged.
pub struct ValueReader {
    key: String,
    source: ReaderSource,
    len: u64,
    at: u64,
}

enum ReaderSource {
    Inline(IVec),
    /// Read from the database piece by piece (the value is never held whole).
    Database(Arc<postgres::Pg>),
    Log {
        values: Arc<ValueLog>,
        pointer: Pointer,
        crc: crc32fast::Hasher,
    },
}

impl ValueReader {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.len - self.at
    }

    /// The next piece of at most `max` bytes (`None` once everything was read).
    pub fn next_piece(&mut self, max: usize) -> Result<Option<Vec<u8>>, StoreError> {
        if self.at >= self.len {
            return Ok(None);
        }
        let n = usize::try_from((self.len - self.at).min(max.max(1) as u64))
            .map_err(|_| StoreError::Commit("piece larger than memory".into()))?;
        let from = self.at;
        let piece = match &mut self.source {
            ReaderSource::Inline(v) => {
                let start = usize::try_from(from).unwrap_or(usize::MAX);
                v.get(start..start.saturating_add(n))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            }
            ReaderSource::Database(pg) => {
                let piece = pg.piece(&self.key, from, n)?;
                if piece.len() != n {
                    return Err(StoreError::Missing {
                        key: self.key.clone(),
                        witness: format!("its reader, at byte {from} of {}", self.len),
                    });
                }
                piece
            }
            ReaderSource::Log {
                values,
                pointer,
                crc,
            } => {
                let unreadable = |source| StoreError::Unreadable {
                    key: self.key.clone(),
                    source,
                };
                let piece = values.read_range(*pointer, from, n).map_err(unreadable)?;
                crc.update(&piece);
                if from + n as u64 >= self.len && crc.clone().finalize() != pointer.crc() {
                    return Err(unreadable(pointer.damaged()));
                }
                piece
            }
        };
        self.at += n as u64;
        Ok(Some(piece))
    }
}

/// Decodes the record `bytes` read raw from under `key` (see [`Store::get_raw`]).
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// The value stored under `key`: inline, or read from the value log.
fn resolve(values: &ValueLog, key: &[u8], stored: IVec) -> Result<IVec, StoreError> {
    match Pointer::decode(&stored) {
        None => Ok(stored),
        Some(p) => values
            .read(p)
            .map(IVec::from)
            .map_err(|source| StoreError::Unreadable {
                key: String::from_utf8_lossy(key).into_owned(),
                source,
            }),
    }
}

thread_local! {
    /// The buffer records are encoded into on the writer, reused from one write to the next:
    /// a record of a few KiB is not grown by doubling, each step a copy, at every write.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer grown past this by an unusually large record is not kept.
const SCRATCH_KEPT: usize = 1 << 20;

impl Store {
    /// Opens (or creates) the database in `dir` with the engine found there (sled for a new
    /// one) and starts its writer and flusher threads.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, None)
    }

    /// [`Store::open`], with the engine `engine` when given: a new directory gets it, and one
    /// holding another engine's files is refused.
    pub fn open_with(dir: &Path, engine: Option<EngineKind>) -> Result<Store, StoreError> {
        // Owner-only, before anything is written in it.
        files::create_dir(dir)?;
        files::tighten_and_report(dir, true)?;
        let index = Index::open(dir, engine)?;
        let (values, end) = ValueLog::open(dir)?;
        let spool_dir = spool::prepare(dir)?;
        // The files the engine has just created with its own modes.
        files::tighten_and_report(dir, false)?;
        let values = Arc::new(values);
        let watches: Watches = Arc::default();
        let hook: Arc<Mutex<Option<Arc<CommitHook>>>> = Arc::new(Mutex::new(None));
        let (jobs, queue) = mpsc::channel::<Job>();
        let (applied, to_flush) = mpsc::channel::<Applied>();
        // Bounded: a writer ahead of the applier by more groups waits (its reads go through
        // every group not applied yet).
        let (built, to_apply) = mpsc::sync_channel::<Built>(MAX_AHEAD);
        let applied_upto = Arc::new(AtomicU64::new(0));
        let poison = Arc::new(Poison::new());
        let flusher = {
            let index = index.clone();
            let poison = poison.clone();
            let watches = watches.clone();
            spawn_stage("paraph-flusher", move || {
                flusher_loop(&index, &to_flush, &poison, &watches)
            })?
        };
        let applier = {
            let index = index.clone();
            let values = values.clone();
            let watches = watches.clone();
            let applied_upto = applied_upto.clone();
            let poison = poison.clone();
            spawn_stage("paraph-applier", move || {
                let out = Out {
                    index: &index,
                    values: &values,
                    watches: &watches,
                    end,
                };
                applier_loop(out, &to_apply, &applied, &applied_upto, &poison);
                drop(applied);
                let _ = flusher.join();
            })?
        };
        let writer = {
            let index = index.clone();
            let hook = hook.clone();
            let values = values.clone();
            let poison = poison.clone();
            let dir = dir.to_path_buf();
            spawn_stage("paraph-writer", move || {
                let stage = Stage {
                    index: &index,
                    values: &values,
                    built: &built,
                    applied_upto: &applied_upto,
                    dir: &dir,
                };
                writer_loop(&stage, &queue, &hook, &poison);
                drop(built);
                let _ = applier.join();
            })?
        };
        Ok(Store {
            backend: Backend::Embedded { index, values },
            poison,
            watches,
            jobs: Mutex::new(Some(jobs)),
            hook,
            writer: Mutex::new(Some(writer)),
            spool_dir,
        })
    }

    /// Opens the store kept in the PostgreSQL database `options` names (whose schema must be
    /// this version's: see [`migrate`]) and starts its writer. `dir` keeps only what is local
    /// to this process: its lock and the spool of uploads in progress.
    pub fn open_postgres(dir: &Path, options: &PgOptions) -> Result<Store, StoreError> {
        files::create_dir(dir)?;
        files::tighten_and_report(dir, true)?;
        let lock = engine::lock_dir(dir)?;
        let spool_dir = spool::prepare(dir)?;
        let watches: Watches = Arc::default();
        let pg = postgres::Pg::open(options, watches.clone())?;
        let hook: Arc<Mutex<Option<Arc<CommitHook>>>> = Arc::new(Mutex::new(None));
        let (jobs, queue) = mpsc::channel::<Job>();
        let writer = {
            let pg = pg.clone();
            let hook = hook.clone();
            let watches = watches.clone();
            spawn_stage("paraph-writer", move || {
                let _lock = lock;
                postgres::writer_loop(&pg, &queue, &hook, &watches);
            })?
        };
        Ok(Store {
            backend: Backend::Postgres(pg),
            poison: Arc::new(Poison::new()),
            watches,
            jobs: Mutex::new(Some(jobs)),
            hook,
            writer: Mutex::new(Some(writer)),
            spool_dir,
        })
    }

    /// What keeps the records: `sled`, `redb` or `postgresql`.
    pub fn kind_name(&self) -> &'static str {
        match &self.backend {
            Backend::Embedded { index, .. } => match index.kind() {
                EngineKind::Sled => "sled",
                EngineKind::Redb => "redb",
            },
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Whether the records are in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Hands `notice` (the service's, opaque here) to the other processes sharing the store:
    /// with PostgreSQL, every other replica's [`Store::notices`] receives it. Embedded: no one.
    pub fn announce(&self, notice: &[u8]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded { .. } => Ok(()),
            Backend::Postgres(pg) => pg.announce(notice),
        }
    }

    /// What the other replicas announce (`None`: the store is not shared).
    pub fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Vec<u8>>>> {
        match &self.backend {
            Backend::Embedded { .. } => None,
            Backend::Postgres(pg) => Some(pg.notices()),
        }
    }

    /// A counter of the committed groups that wrote under any of `prefixes`.
    pub fn watch(&self, prefixes: &[&str]) -> Arc<KeyWatch> {
        let w = Arc::new(KeyWatch {
            prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            epoch: AtomicU64::new(0),
        });
        if let Ok(mut all) = self.watches.lock() {
            all.push(w.clone());
        }
        w
    }

    /// Whether the store can write now, and every change of it: `false` from a failed write
    /// until the store recovers (see the module doc).
    pub fn writable(&self) -> tokio::sync::watch::Receiver<bool> {
        self.poison.writable.subscribe()
    }

    /// Installs the work run at the end of each group that left marks.
    pub fn set_commit_hook(&self, hook: Arc<CommitHook>) {
        if let Ok(mut h) = self.hook.lock() {
            *h = Some(hook);
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get_raw(key)? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// The engine holding the index.
    pub fn engine(&self) -> Option<EngineKind> {
        match &self.backend {
            Backend::Embedded { index, .. } => Some(index.kind()),
            Backend::Postgres(_) => None,
        }
    }

    /// The bytes the data directory takes on disk (index, value log, everything in it).
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Embedded { index, .. } => Ok(files::disk_bytes(index.dir())?),
            Backend::Postgres(pg) => pg.size(),
        }
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<sled::IVec>, StoreError> {
        match &self.backend {
            Backend::Embedded { index, values } => match index.get(key.as_bytes())? {
                Some(v) => Ok(Some(resolve(values, key.as_bytes(), v)?)),
                None => Ok(None),
            },
            Backend::Postgres(pg) => pg.get(key),
        }
    }

    /// The records under `keys`, in the same order (`None`: no record there): one query per
    /// kind of record on PostgreSQL instead of one per key.
    pub fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let raw = self.get_many_raw(keys)?;
        keys.iter()
            .zip(raw)
            .map(|(k, v)| v.map(|v| decode(k.as_bytes(), &v)).transpose())
            .collect()
    }

    /// The raw values under `keys`, in the same order: one round trip on PostgreSQL.
    pub fn get_many_raw(&self, keys: &[String]) -> Result<Vec<Option<IVec>>, StoreError> {
        match &self.backend {
            Backend::Embedded { .. } => keys.iter().map(|k| self.get_raw(k)).collect(),
            Backend::Postgres(pg) => pg.get_many(keys),
        }
    }

    /// The value under `key` as a reader of pieces (for large values: see [`ValueReader`]).
    pub fn value_reader(&self, key: &str) -> Result<Option<ValueReader>, StoreError> {
        let (index, values) = match &self.backend {
            Backend::Embedded { index, values } => (index, values),
            Backend::Postgres(pg) => {
                return Ok(pg.length(key)?.map(|len| ValueReader {
                    key: key.to_owned(),
                    len,
                    source: ReaderSource::Database(pg.clone()),
                    at: 0,
                }))
            }
        };
        let Some(stored) = index.get(key.as_bytes())? else {
            return Ok(None);
        };
        let (source, len) = match Pointer::decode(&stored) {
            None => {
                let len = stored.len() as u64;
                (ReaderSource::Inline(stored), len)
            }
            Some(p) => (
                ReaderSource::Log {
                    values: values.clone(),
                    pointer: p,
                    crc: crc32fast::Hasher::new(),
                },
                u64::from(p.len()),
            ),
        };
        Ok(Some(ValueReader {
            key: key.to_owned(),
            source,
            len,
            at: 0,
        }))
    }

    /// A new spool file (see [`spool`]) for content on its way in.
    pub fn spool_file(&self) -> Result<SpoolFile, StoreError> {
        Ok(SpoolFile::create(&self.spool_dir)?)
    }

    /// Records under `prefix`, in key order, starting strictly after `after` when given,
    /// at most `limit` of them.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        self.walk_prefix(prefix, after, limit, true, |k, v| {
            let key = String::from_utf8_lossy(k).into_owned();
            out.push((key, decode(k, &v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `visit` on at most `limit` entries under `prefix`, in key order, strictly after
    /// `prefix + after` when given; the values only `with_value` (else empty).
    fn walk_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        with_value: bool,
        mut visit: impl FnMut(&[u8], IVec) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded { index, values } => {
                let mut seen = 0;
                index.walk_from(&scan_start(prefix, after), |k, v| {
                    if !k.starts_with(prefix.as_bytes()) || seen >= limit {
                        return Ok(false);
                    }
                    seen += 1;
                    let v = if with_value {
                        resolve(values, k, v)?
                    } else {
                        IVec::default()
                    };
                    visit(k, v)?;
                    Ok(true)
                })
            }
            Backend::Postgres(pg) => {
                let start = after.map(|a| format!("{prefix}{a}"));
                let bound = match &start {
                    Some(s) => std::ops::Bound::Excluded(s.as_str()),
                    None => std::ops::Bound::Unbounded,
                };
                for (k, v) in pg.walk(prefix, bound, limit, with_value)? {
                    visit(&k, v)?;
                }
                Ok(())
            }
        }
    }

    /// Up to `limit` records under `prefix` with their keys, in key order, strictly after
    /// `prefix + after` when given, undecoded (for copying a store).
    pub fn scan_raw(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, IVec)>, StoreError> {
        let mut out = Vec::new();
        self.walk_prefix(prefix, after, limit, true, |k, v| {
            out.push((String::from_utf8_lossy(k).into_owned(), v));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every record in key order, for a check of the store: `visit` gets each key with its
    /// value (a value-log pointer resolved and its CRC checked) or the error that makes it
    /// unreadable, and whether the index holds it with a checksum; it goes on past damage.
    pub fn check_walk(
        &self,
        mut visit: impl FnMut(&[u8], Result<IVec, StoreError>, bool),
    ) -> Result<(), StoreError> {
        let (index, values) = match &self.backend {
            Backend::Embedded { index, values } => (index, values),
            Backend::Postgres(pg) => {
                // The database checks its own pages; every record is read and handed on.
                for (k, v) in pg.snapshot_all()? {
                    visit(&k, Ok(v), true);
                }
                return Ok(());
            }
        };
        index.walk_stored(b"", |k, stored| {
            let (value, summed) = match stored {
                engine::Stored::Checked(v) => (resolve(values, k, v), true),
                engine::Stored::Unchecked(v) => (resolve(values, k, v), false),
                engine::Stored::Damaged => (
                    Err(StoreError::Damaged {
                        key: String::from_utf8_lossy(k).into_owned(),
                    }),
                    true,
                ),
            };
            visit(k, value, summed);
            Ok(true)
        })
    }

    /// Keys under `prefix` (values ignored), with the prefix stripped.
    pub fn scan_keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.walk_prefix(prefix, after, limit, false, |k, _| {
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// Keys under `prefix` in descending order (values ignored), with the prefix stripped:
    /// starting strictly before `before` (a key with the prefix stripped) when given, at most
    /// `limit` of them. One seek per key: for pages of an index, newest first.
    pub fn scan_keys_rev(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut high: Option<String> = match before {
            Some(b) => Some(format!("{prefix}{b}")),
            None => prefix_end(prefix.as_bytes()).and_then(|h| String::from_utf8(h).ok()),
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let bound = match &high {
                Some(h) => std::ops::Bound::Excluded(h.as_str()),
                None => std::ops::Bound::Unbounded,
            };
            let Some((k, _)) = self.last_raw(prefix, bound)? else {
                break;
            };
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let k = String::from_utf8_lossy(&k).into_owned();
            out.push(k[prefix.len()..].to_owned());
            high = Some(k);
        }
        Ok(out)
    }

    /// The record under `prefix` with the greatest key at or before `key`, if any, with its key.
    pub fn floor_raw(&self, prefix: &str, key: &str) -> Result<Option<(IVec, IVec)>, StoreError> {
        self.last_raw(prefix, std::ops::Bound::Included(key))
    }

    /// The last record under `prefix` in key order.
    pub fn last<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Option<(String, T)>, StoreError> {
        let high = prefix_end(prefix.as_bytes()).and_then(|h| String::from_utf8(h).ok());
        let high = match &high {
            Some(h) => std::ops::Bound::Excluded(h.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        match self.last_raw(prefix, high)? {
            Some((k, v)) => {
                if !k.starts_with(prefix.as_bytes()) {
                    return Ok(None);
                }
                Ok(Some((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode(&k, &v)?,
                )))
            }
            None => Ok(None),
        }
    }

    /// The entry with the greatest key from `low` (included) up to `high`, its value resolved.
    fn last_raw(
        &self,
        low: &str,
        high: std::ops::Bound<&str>,
    ) -> Result<Option<(IVec, IVec)>, StoreError> {
        match &self.backend {
            Backend::Embedded { index, values } => {
                let high = high.map(str::as_bytes);
                match index.last_in(low.as_bytes(), high)? {
                    Some((k, v)) => {
                        let v = resolve(values, &k, v)?;
                        Ok(Some((k, v)))
                    }
                    None => Ok(None),
                }
            }
            Backend::Postgres(pg) => pg.last_in(low, high),
        }
    }

    /// The embedded index (tests look under the store).
    #[cfg(test)]
    fn index(&self) -> &Index {
        match &self.backend {
            Backend::Embedded { index, .. } => index,
            Backend::Postgres(_) => panic!("not an embedded store"),
        }
    }

    /// The committed state of an embedded store, as mutations read it (tests).
    #[cfg(test)]
    fn embedded_base(&self) -> EmbeddedBase<'_> {
        match &self.backend {
            Backend::Embedded { index, values } => EmbeddedBase { index, values },
            Backend::Postgres(_) => panic!("not an embedded store"),
        }
    }

    /// Queues `job` for the writer.
    fn submit(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Poisoned("the job queue lock is poisoned".into()))?;
        match jobs.as_ref() {
            Some(s) => s.send(job).map_err(|_| StoreError::Stopped),
            None => Err(StoreError::Stopped),
        }
    }

    /// Wraps `f` into a job answering through `answer` once durable.
    fn job<R, E, F, A>(reads: Reads, f: F, answer: A) -> Job
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
        A: FnOnce(Result<R, E>) + Send + 'static,
    {
        let run = Box::new(move |tx: &mut Tx<'_>| {
            let out = f(tx);
            let keep = out.is_ok();
            let deliver: Deliver = Box::new(move |failure| {
                answer(match failure {
                    None => out,
                    Some(e) => out.and(Err(E::from(e))),
                })
            });
            (keep, deliver)
        });
        Job { reads, run }
    }

    /// Runs `f` as one atomic mutation on the writer and answers once it is durable. If `f`
    /// fails, nothing it wrote is kept.
    pub async fn transact<R, E>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (send, receive) = tokio::sync::oneshot::channel();
        self.submit(Self::job(Reads::default(), f, move |r| {
            let _ = send.send(r);
        }))?;
        receive.await.map_err(|_| E::from(StoreError::Stopped))?
    }

    /// [`Store::transact`] for a mutation that says beforehand what it will read (see
    /// [`Reads`]): the same mutation, fewer round trips on a database.
    pub async fn transact_reading<R, E>(
        &self,
        reads: Reads,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (send, receive) = tokio::sync::oneshot::channel();
        self.submit(Self::job(reads, f, move |r| {
            let _ = send.send(r);
        }))?;
        receive.await.map_err(|_| E::from(StoreError::Stopped))?
    }

    /// [`Store::transact`] for callers outside the async runtime (start-up, tools).
    pub fn transact_blocking<R, E>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (send, receive) = mpsc::sync_channel(1);
        self.submit(Self::job(Reads::default(), f, move |r| {
            let _ = send.send(r);
        }))?;
        receive.recv().map_err(|_| E::from(StoreError::Stopped))?
    }

    /// Makes every mutation answered before the call durable (they already are: every group
    /// is flushed, this one included; for shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.transact(|_| Ok::<_, StoreError>(())).await
    }
}

impl Drop for Store {
    /// Stops the writer once every queued mutation is answered.
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut writer) = self.writer.lock() {
            if let Some(w) = writer.take() {
                let _ = w.join();
            }
        }
    }
}

/// Starts one stage of the pipeline on its own named thread.
fn spawn_stage(
    name: &str,
    run: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(StoreError::Io)
}

/// Where a scan of `prefix` starts: at the prefix, or just after the key `prefix + after`.
fn scan_start(prefix: &str, after: Option<&str>) -> Vec<u8> {
    match after {
        Some(a) => format!("{prefix}{a}\u{0}").into_bytes(),
        None => prefix.as_bytes().to_vec(),
    }
}

/// The least key greater than every key starting with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Where the applier puts a group: the value log, then the index.
struct Out<'a> {
    index: &'a Index,
    values: &'a ValueLog,
    watches: &'a Mutex<Vec<Arc<KeyWatch>>>,
    /// The end of the value log.
    end: u64,
}

impl Out<'_> {
    /// Moves the group's large values to the value log (durably), then applies the group to
    /// the index as one atomic batch.
    fn apply(&mut self, writes: &Writes) -> Result<(), StoreError> {
        // The fault seams of the tests: a group writing one of these keys fails to apply, as
        // an I/O error or a full disk would.
        #[cfg(test)]
        if writes.contains_key(tests::FAIL_APPLY.as_bytes()) {
            return Err(StoreError::Commit("injected failure".into()));
        }
        #[cfg(test)]
        if writes.contains_key(tests::NO_SPACE.as_bytes()) {
            return Err(StoreError::Io(std::io::Error::from_raw_os_error(28)));
        }
        let mut log = Appender::new(self.values.current(), self.end);
        let mut batch: Vec<(&[u8], Option<IVec>)> = Vec::with_capacity(writes.len());
        for (k, v) in writes {
            let stored = match v {
                Some(v) if values::goes_to_log(v) => {
                    let p = log.push_shared(v)?;
                    Some(IVec::from(&p.encode()[..]))
                }
                Some(v) => Some(v.clone()),
                None => None,
            };
            batch.push((k.as_slice(), stored));
        }
        let start = log.start();
        self.values.append_durable(start, log.parts())?;
        self.end = log.end();
        let watches: Vec<Arc<KeyWatch>> = match self.watches.lock() {
            Ok(all) => all
                .iter()
                .filter(|w| writes.keys().any(|k| w.concerns(k)))
                .cloned()
                .collect(),
            Err(_) => return Err(StoreError::Commit("the watch list lock is poisoned".into())),
        };
        let applied = self.index.apply(batch);
        // Bumped even if the batch failed (it then changed nothing): staying safe is cheap.
        for w in watches {
            w.epoch.fetch_add(1, Ordering::SeqCst);
        }
        applied
    }
}

/// What the writer reads through and hands its groups to.
struct Stage<'a> {
    index: &'a Index,
    values: &'a ValueLog,
    built: &'a mpsc::SyncSender<Built>,
    /// The number of the last group the applier is done with (applied or failed).
    applied_upto: &'a AtomicU64,
    /// The data directory (where the writer probes for free space).
    dir: &'a Path,
}

/// How often a store that ran out of space tries to recover with no write asking.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// What the writer writes (and removes) to see that space returned before it recovers.
const PROBE_FILE: &str = "space-probe";
const PROBE_BYTES: usize = 1 << 20;

/// Whether `dir` has room again: a probe file of [`PROBE_BYTES`] written and synced.
fn probe_space(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written?;
    removed?;
    Ok(())
}

/// Brings a store poisoned by a full disk back to writing, on the writer, with every group
/// built before answered: probes for space, then sends a marker down the pipeline. The applier
/// cuts the value log back to its last referenced byte; the flusher, once every group before
/// the marker is answered, reopens the index (dropping what it held in memory and had not made
/// durable) and clears the poison. See the module doc for why this is safe.
fn recover(stage: &Stage<'_>, seq: &mut u64) -> Result<(), StoreError> {
    probe_space(stage.dir).map_err(|e| match e.failure() {
        FailureKind::NoSpace => StoreError::NoSpace(format!("still no space: {e}")),
        _ => StoreError::Unwritable(format!("probing for space: {e}")),
    })?;
    let (reply, answer) = mpsc::sync_channel(1);
    *seq += 1;
    let marker = Built {
        seq: *seq,
        writes: Arc::default(),
        deliveries: Vec::new(),
        failed: None,
        recover: Some(reply),
    };
    stage.built.send(marker).map_err(|_| StoreError::Stopped)?;
    answer.recv().map_err(|_| StoreError::Stopped)?
}

/// The writer thread: takes every waiting job as one group, runs it over the groups not
/// applied yet, hands it on.
fn writer_loop(
    stage: &Stage<'_>,
    queue: &mpsc::Receiver<Job>,
    hook: &Mutex<Option<Arc<CommitHook>>>,
    poison: &Poison,
) {
    let base = EmbeddedBase {
        index: stage.index,
        values: stage.values,
    };
    // The groups handed to the applier and not applied yet, oldest first.
    let mut ahead: Vec<(u64, Arc<Writes>)> = Vec::new();
    let recent = RefCell::new(Recent::new(RECENT_BUDGET));
    let mut seq = 0;
    loop {
        let recoverable = poison.get().is_some_and(|f| f.kind == FailureKind::NoSpace);
        let first = if recoverable {
            match queue.recv_timeout(RETRY_EVERY) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match queue.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        };
        let mut group: Vec<Job> = first.into_iter().collect();
        while !group.is_empty() && group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        // Poisoned perhaps while the writer waited: looked at again.
        let recoverable = poison.get().is_some_and(|f| f.kind == FailureKind::NoSpace);
        if recoverable {
            match recover(stage, &mut seq) {
                Ok(()) => {
                    // Nothing built before the failure is in flight any more, and what the
                    // writer remembers may hold writes that were never made durable.
                    ahead.clear();
                    *recent.borrow_mut() = Recent::new(RECENT_BUDGET);
                    tracing::info!("the store writes again");
                }
                Err(e) => tracing::debug!(error = %e, "the store cannot recover yet"),
            }
        }
        if group.is_empty() {
            continue;
        }
        let done = stage.applied_upto.load(Ordering::SeqCst);
        ahead.retain(|(s, _)| *s > done);
        seq += 1;
        if let Some(failure) = poison.get() {
            for job in group {
                let mut tx = Tx::new(&base, &[], None, &recent);
                let (_, deliver) = (job.run)(&mut tx);
                deliver(Some(failure.refusal()));
            }
            continue;
        }
        let (writes, deliveries, failed) = run_group(&base, &ahead, group, hook, &recent);
        let writes = Arc::new(if failed.is_some() {
            Writes::new()
        } else {
            writes
        });
        if !writes.is_empty() {
            ahead.push((seq, writes.clone()));
            let mut recent = recent.borrow_mut();
            for (k, v) in writes.iter() {
                recent.put(k.clone(), v.clone());
            }
        }
        let group = Built {
            seq,
            writes,
            deliveries,
            failed,
            recover: None,
        };
        if stage.built.send(group).is_err() {
            return;
        }
    }
}

/// Runs a group's mutations one after the other over `base` (and the groups `ahead`), each
/// reading through the writes kept before it, then the commit hook if any mutation left a
/// mark: the group's writes, the answers to deliver, and why the hook failed (the group must
/// then keep nothing). Shared by the writers of every backend.
fn run_group(
    base: &dyn Base,
    ahead: &[(u64, Arc<Writes>)],
    group: Vec<Job>,
    hook: &Mutex<Option<Arc<CommitHook>>>,
    recent: &RefCell<Recent>,
) -> (Writes, Vec<Deliver>, Option<String>) {
    let mut writes = Writes::new();
    let mut marks: Vec<String> = Vec::new();
    let mut deliveries = Vec::with_capacity(group.len());
    for job in group {
        let mut tx = Tx::new(base, ahead, Some(&writes), recent);
        // A mutation that panics (a bug) loses its writes and its answer (its caller sees
        // the writer as stopped for that call); the writer and the group go on.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.run)(&mut tx)));
        let Ok((keep, deliver)) = run else {
            tracing::error!("a mutation panicked; its writes are discarded");
            continue;
        };
        deliveries.push(deliver);
        if keep {
            let (w, m) = (tx.writes, tx.marks);
            writes.extend(w);
            for note in m {
                if !marks.contains(&note) {
                    marks.push(note);
                }
            }
        }
    }
    let mut failed = None;
    if !marks.is_empty() {
        let hook = hook.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            let mut tx = Tx::new(base, ahead, Some(&writes), recent);
            match hook(&mut tx, &marks) {
                Ok(()) => {
                    let w = tx.writes;
                    writes.extend(w);
                }
                Err(e) => failed = Some(format!("commit hook: {e}")),
            }
        }
    }
    (writes, deliveries, failed)
}

/// The applier thread: applies each built group, hands it to the flusher. After a failure
/// nothing more is applied: the groups behind it may have read its writes.
fn applier_loop(
    mut out: Out<'_>,
    to_apply: &mpsc::Receiver<Built>,
    applied: &mpsc::Sender<Applied>,
    applied_upto: &AtomicU64,
    poison: &Poison,
) {
    while let Ok(group) = to_apply.recv() {
        let Built {
            seq,
            writes,
            deliveries,
            failed,
            recover,
        } = group;
        if let Some(reply) = recover {
            // Every group before is applied or failed: the bytes past the last value a group
            // made durable belong to no record (a failed append's), give them back.
            if let Err(e) = out.values.truncate(out.end) {
                let _ = reply.send(Err(e.into()));
            } else if applied
                .send(Applied {
                    deliveries,
                    failed: None,
                    recover: Some(reply),
                })
                .is_err()
            {
                return;
            }
            applied_upto.store(seq, Ordering::SeqCst);
            continue;
        }
        let mut failed = failed.map(Failed::Writer);
        if failed.is_none() && !writes.is_empty() {
            if let Some(f) = poison.get() {
                failed = Some(Failed::Refused(f));
            } else if let Err(e) = out.apply(&writes) {
                let f = Failure::of(&e);
                poison.set(f.clone());
                failed = Some(Failed::Apply(f));
            }
        }
        drop(writes);
        applied_upto.store(seq, Ordering::SeqCst);
        let group = Applied {
            deliveries,
            failed,
            recover: None,
        };
        if applied.send(group).is_err() {
            return;
        }
    }
}

/// The flusher thread: makes applied groups durable, one fsync for all the groups waiting.
fn flusher_loop(
    index: &Index,
    to_flush: &mpsc::Receiver<Applied>,
    poison: &Poison,
    watches: &Mutex<Vec<Arc<KeyWatch>>>,
) {
    while let Ok(first) = to_flush.recv() {
        let mut groups = vec![first];
        while let Ok(g) = to_flush.try_recv() {
            groups.push(g);
        }
        // The groups up to a recovery marker are answered first, then the marker is handled.
        let mut pending = Vec::new();
        for g in groups {
            match g.recover {
                None => pending.push(g),
                Some(reply) => {
                    flush_groups(index, std::mem::take(&mut pending), poison);
                    let _ = reply.send(reopen(index, poison, watches));
                }
            }
        }
        flush_groups(index, pending, poison);
    }
}

/// The flusher's part of a recovery: every group built before is answered; what the index
/// holds and had not made durable may belong to a failed group, so it is closed and opened
/// again from its files, and every cache built over what it served is invalidated.
fn reopen(
    index: &Index,
    poison: &Poison,
    watches: &Mutex<Vec<Arc<KeyWatch>>>,
) -> Result<(), StoreError> {
    index.reopen()?;
    if let Ok(all) = watches.lock() {
        for w in all.iter() {
            w.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
    poison.clear();
    Ok(())
}

/// Flushes once for `groups` and answers their callers.
fn flush_groups(index: &Index, groups: Vec<Applied>, poison: &Poison) {
    if groups.is_empty() {
        return;
    }
    let flushed = match poison.get() {
        Some(f) => Err(Failed::Refused(f)),
        None => index.flush().map_err(|e| {
            let f = Failure::of(&e);
            poison.set(f.clone());
            Failed::Apply(f)
        }),
    };
    for g in groups {
        // Each caller gets its own error, made from the group's failure.
        let failure = g.failed.as_ref().or(flushed.as_ref().err());
        for d in g.deliveries {
            d(failure.map(|f| match f {
                Failed::Writer(e) => StoreError::Commit(e.clone()),
                Failed::Apply(f) => f.error(),
                Failed::Refused(f) => f.refusal(),
            }));
        }
    }
}

/// The view of the store inside a mutation: the committed tree, under the groups not applied
/// yet, under the writes of the mutations before it in the same group, under its own writes.
pub struct Tx<'a> {
    base: &'a dyn Base,
    /// Groups built but not applied yet, oldest first.
    ahead: &'a [(u64, Arc<Writes>)],
    group: Option<&'a Writes>,
    /// What the writer read and wrote lately, under the groups not applied yet.
    recent: &'a RefCell<Recent>,
    writes: Writes,
    /// Notes the mutation leaves for the end of its group (e.g. which audit logs grew and
    /// need a new checkpoint), deduplicated, in order.
    marks: Vec<String>,
    /// Facts one part of the mutation hands to another, never written.
    locals: std::collections::HashMap<String, Vec<u8>>,
}

impl<'a> Tx<'a> {
    fn new(
        base: &'a dyn Base,
        ahead: &'a [(u64, Arc<Writes>)],
        group: Option<&'a Writes>,
        recent: &'a RefCell<Recent>,
    ) -> Tx<'a> {
        Tx {
            base,
            ahead,
            group,
            recent,
            writes: Writes::new(),
            marks: Vec::new(),
            locals: Default::default(),
        }
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<IVec>, StoreError> {
        self.get_bytes(key.as_bytes())
    }

    /// The value of key `k` as this mutation sees it.
    fn get_bytes(&self, k: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(v) = self.writes.get(k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.and_then(|g| g.get(k)) {
            return Ok(v.clone());
        }
        if let Some(v) = self.ahead.iter().rev().find_map(|(_, g)| g.get(k)) {
            return Ok(v.clone());
        }
        // No group in flight wrote the key: what the cache or the index holds is the latest.
        if let Some(v) = self.recent.borrow_mut().get(k) {
            return Ok(v);
        }
        let v = self.base.get(k)?;
        self.recent.borrow_mut().put(k.to_vec(), v.clone());
        Ok(v)
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get_raw(key)? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// [`Store::floor_raw`] as this mutation sees the store: through its own writes, its
    /// group's and the groups not applied yet, removals included.
    pub fn floor_raw(&self, prefix: &str, key: &str) -> Result<Option<(IVec, IVec)>, StoreError> {
        use std::ops::Bound;
        let p = prefix.as_bytes();
        if key.as_bytes() < p {
            // Nothing lies between (and a map's range would panic on it).
            return Ok(None);
        }
        let mut upper = Bound::Included(key.as_bytes().to_vec());
        loop {
            let range = (Bound::Included(p.to_vec()), upper.clone());
            // The greatest candidate of every layer; the index's own is the latest applied state.
            // The recent cache needs no look: every key it holds is in the index or in a group
            // ahead.
            let high = upper.as_ref().map(Vec::as_slice);
            let mut best: Option<Vec<u8>> = self.base.last_key_in(p, high)?;
            let layers = [Some(&self.writes), self.group]
                .into_iter()
                .flatten()
                .chain(self.ahead.iter().map(|(_, g)| &**g));
            for layer in layers {
                if let Some((k, _)) = layer.range::<Vec<u8>, _>(range.clone()).next_back() {
                    if best.as_ref().is_none_or(|b| k > b) {
                        best = Some(k.clone());
                    }
                }
            }
            let Some(k) = best else {
                return Ok(None);
            };
            match self.get_bytes(&k)? {
                Some(v) => return Ok(Some((IVec::from(k), v))),
                // Removed by a write not applied yet: look further back.
                None => upper = Bound::Excluded(k),
            }
        }
    }

    /// Keys under `prefix` from the key `from` on (included; `from` before the prefix starts it
    /// at the prefix), in order, with the prefix stripped, at most `limit`: the store as this
    /// mutation sees it, through its own writes, its group's and the groups not applied yet,
    /// removals included. Each key found costs one seek per layer: meant for short ranges
    /// (an index of a few records), not for walking a table.
    pub fn scan_keys(
        &self,
        prefix: &str,
        from: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound;
        let p = prefix.as_bytes();
        let mut start = from.as_bytes().max(p).to_vec();
        let mut out = Vec::new();
        while out.len() < limit {
            // The least candidate of every layer at or after `start`; the index's own is the
            // latest applied state (the recent cache holds nothing the layers and the index
            // do not).
            let mut best: Option<Vec<u8>> = self.base.first_key_from(&start, p)?;
            let layers = [Some(&self.writes), self.group]
                .into_iter()
                .flatten()
                .chain(self.ahead.iter().map(|(_, g)| &**g));
            for layer in layers {
                let range = (Bound::Included(start.clone()), Bound::Unbounded);
                if let Some((k, _)) = layer.range::<Vec<u8>, _>(range).next() {
                    if k.starts_with(p) && best.as_ref().is_none_or(|b| k < b) {
                        best = Some(k.clone());
                    }
                }
            }
            let Some(k) = best else {
                break;
            };
            // Removed by a write not applied yet: skipped.
            if self.get_bytes(&k)?.is_some() {
                out.push(String::from_utf8_lossy(&k[p.len()..]).into_owned());
            }
            // The least key after `k`.
            start = k;
            start.push(0);
        }
        Ok(out)
    }

    /// The record under `prefix` with the greatest key at or before `key` among those this
    /// group wrote (this mutation or one before it in the group), with its key: `None` if the
    /// group wrote none there or removed the greatest. Reads neither the index nor other groups, so
    /// it is cheap; a record it returns is one the group may still rewrite before it commits.
    pub fn floor_in_group(&self, prefix: &str, key: &str) -> Option<(IVec, IVec)> {
        use std::ops::Bound;
        if key < prefix {
            return None;
        }
        let range = (
            Bound::Included(prefix.as_bytes().to_vec()),
            Bound::Included(key.as_bytes().to_vec()),
        );
        let mine = self.writes.range::<Vec<u8>, _>(range.clone()).next_back();
        let group = self
            .group
            .and_then(|g| g.range::<Vec<u8>, _>(range).next_back());
        // This mutation's own write of a key is newer than its group's.
        let (k, v) = match (mine, group) {
            (Some(m), Some(g)) if g.0 > m.0 => g,
            (Some(m), _) => m,
            (None, g) => g?,
        };
        v.as_ref().map(|v| (IVec::from(k.as_slice()), v.clone()))
    }

    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.get_raw(key)?.is_some())
    }

    /// Keeps `value` under `key` for the rest of this mutation only (see [`Tx::local`]): a fact
    /// one part of the mutation hands to another without storing it.
    pub fn set_local(&mut self, key: &str, value: Vec<u8>) {
        self.locals.insert(key.to_owned(), value);
    }

    /// What [`Tx::set_local`] kept under `key` in this mutation.
    pub fn local(&self, key: &str) -> Option<&[u8]> {
        self.locals.get(key).map(Vec::as_slice)
    }

    /// Leaves a note for the end of the group (kept once).
    pub fn mark(&mut self, note: String) {
        if !self.marks.contains(&note) {
            self.marks.push(note);
        }
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), StoreError> {
        let encoded = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            serde_json::to_writer(&mut *buf, value).map_err(StoreError::Encode)?;
            let encoded = IVec::from(&buf[..]);
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            Ok::<_, StoreError>(encoded)
        })?;
        self.writes.insert(key.as_bytes().to_vec(), Some(encoded));
        Ok(())
    }

    pub fn put_raw(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.writes
            .insert(key.as_bytes().to_vec(), Some(IVec::from(value)));
        Ok(())
    }

    /// [`Tx::put_raw`] of a value already in an [`IVec`], which is shared, not copied (for
    /// large values such as a document's content).
    pub fn put_shared(&mut self, key: &str, value: IVec) -> Result<(), StoreError> {
        self.writes.insert(key.as_bytes().to_vec(), Some(value));
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        self.writes.insert(key.as_bytes().to_vec(), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(engine: EngineKind) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open_with(dir.path(), Some(engine)).expect("open the store");
        (dir, store)
    }

    /// A runtime for the tests that await mutations.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Every test below runs once on each engine.
    macro_rules! on_each_engine {
        ($($name:ident),* $(,)?) => {
            mod on_sled {
                $(#[test] fn $name() { super::$name(super::EngineKind::Sled) })*
            }
            mod on_redb {
                $(#[test] fn $name() { super::$name(super::EngineKind::Redb) })*
            }
        };
    }

    on_each_engine!(
        a_failed_mutation_leaves_nothing_and_a_good_one_is_read_back,
        a_failed_apply_fails_its_group_and_every_later_one_even_those_built_over_it,
        a_store_out_of_space_refuses_writes_then_recovers_keeping_every_answered_one,
        a_damaged_index_value_is_reported_naming_its_key,
        concurrent_mutations_of_one_counter_never_lose_an_increment,
        the_commit_hook_sees_the_group_and_its_failure_fails_the_group,
        answered_mutations_survive_a_reopen,
        large_values_live_in_the_value_log_and_damage_is_reported_not_returned,
        a_watch_moves_only_when_a_group_writes_under_its_prefixes,
        floor_lookups_see_the_writes_of_the_mutation_and_skip_removed_keys,
        group_floor_lookups_see_only_the_group_and_this_mutation,
        a_panicking_mutation_fails_alone,
        scans_and_last_stay_within_their_prefix,
        a_directory_in_use_is_refused_naming_it,
        transaction_scans_see_every_layer_in_order_and_skip_removed_keys,
    );

    fn a_failed_mutation_leaves_nothing_and_a_good_one_is_read_back(engine: EngineKind) {
        let (_dir, store) = open(engine);
        let failed: Result<(), StoreError> = store.transact_blocking(|tx| {
            tx.put_raw("a", b"1")?;
            Err(StoreError::Commit("refused".into()))
        });
        assert!(failed.is_err());
        assert!(store.get_raw("a").expect("read").is_none());
        store
            .transact_blocking(|tx| {
                tx.put_raw("a", b"2")?;
                // A mutation reads its own writes.
                assert_eq!(tx.get_raw("a")?.as_deref(), Some(&b"2"[..]));
                tx.remove("a")?;
                assert!(!tx.exists("a")?);
                tx.put_raw("b", b"3")
            })
            .expect("commit");
        assert!(store.get_raw("a").expect("read").is_none());
        assert_eq!(
            store.get_raw("b").expect("read").as_deref(),
            Some(&b"3"[..])
        );
    }

    /// A group writing this key fails at the applier (see `Out::apply`).
    pub(super) const FAIL_APPLY: &str = "test/fail-apply";
    /// A group writing this key fails at the applier as on a full disk.
    pub(super) const NO_SPACE: &str = "test/no-space";

    fn a_failed_apply_fails_its_group_and_every_later_one_even_those_built_over_it(
        engine: EngineKind,
    ) {
        runtime().block_on(async {
            let (_dir, store) = open(engine);
            store
                .transact(|tx| tx.put_raw("before", b"1"))
                .await
                .expect("commit");
            // The second mutation reads what the failing one wrote: in the same group or in one
            // built over it, it must fail too.
            let (failed, over) = tokio::join!(
                store.transact(|tx| {
                    tx.put_raw(FAIL_APPLY, b"x")?;
                    tx.put_raw("lost", b"2")
                }),
                store.transact(|tx| {
                    let seen = tx.get_raw("lost")?;
                    tx.put_raw("copied", seen.as_deref().unwrap_or(b"none"))
                }),
            );
            let failed = failed.expect_err("the failing group is refused");
            assert!(
                matches!(failed, StoreError::Commit(ref m) if m.contains("injected")),
                "{failed}"
            );
            assert!(
                over.is_err(),
                "a mutation behind a failed apply was answered as committed"
            );
            // Later mutations are refused (fail closed), and nothing of the failed groups is read.
            let later = store.transact(|tx| tx.put_raw("after", b"3")).await;
            assert!(matches!(later, Err(StoreError::Poisoned(_))), "{later:?}");
            for key in ["lost", "copied", "after", FAIL_APPLY] {
                assert!(
                    store.get_raw(key).expect("read").is_none(),
                    "{key} was applied"
                );
            }
            assert_eq!(
                store.get_raw("before").expect("read").as_deref(),
                Some(&b"1"[..])
            );
        })
    }

    fn a_store_out_of_space_refuses_writes_then_recovers_keeping_every_answered_one(
        engine: EngineKind,
    ) {
        runtime().block_on(async {
            let (dir, store) = open(engine);
            let writable = store.writable();
            let big = vec![b'v'; 5_000];
            let b = big.clone();
            store
                .transact(move |tx| {
                    tx.put_raw("before", b"1")?;
                    tx.put_raw("before/big", &b)
                })
                .await
                .expect("commit");
            // The full disk's group and one built over it are refused, saying why. Both are
            // queued while the writer is held by a gate, so that they go into one group
            // whatever the scheduling (otherwise the second may come after the recovery, and
            // be rightly answered).
            let (started_tx, started) = mpsc::sync_channel::<()>(1);
            let (release, gate) = mpsc::sync_channel::<()>(1);
            let gated = store.transact(move |tx| {
                let _ = started_tx.send(());
                let _ = gate.recv();
                tx.put_raw("gate", b"1")
            });
            use std::future::Future as _;
            let mut gated = Box::pin(gated);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            // Polled once: submitted. Then wait until the writer runs it.
            assert!(gated.as_mut().poll(&mut cx).is_pending());
            started.recv().expect("the gate runs");
            let mut full = Box::pin(store.transact(|tx| {
                tx.put_raw(NO_SPACE, b"x")?;
                tx.put_raw("lost", &[b'l'; 3_000])
            }));
            let mut over = Box::pin(store.transact(|tx| {
                let seen = tx.get_raw("lost")?;
                tx.put_raw("copied", seen.as_deref().unwrap_or(b"none"))
            }));
            assert!(full.as_mut().poll(&mut cx).is_pending());
            assert!(over.as_mut().poll(&mut cx).is_pending());
            release.send(()).expect("release the gate");
            // Its flush may come after the failure, which then refuses it too: either is right.
            let _ = gated.await;
            let (full, over) = (full.await, over.await);
            let full = full.expect_err("the group is refused");
            assert!(matches!(full, StoreError::NoSpace(_)), "{full}");
            assert!(over.is_err(), "a mutation behind a full disk was answered");
            assert!(!*writable.borrow(), "the store says it cannot write");
            // Space is back (nothing to free here): the next write recovers, without a restart.
            store
                .transact(|tx| tx.put_raw("after", b"3"))
                .await
                .expect("the store recovers by itself");
            assert!(*writable.borrow(), "the store says it writes again");
            // The writer forgot what the failed groups wrote, and so did the index.
            let seen = store
                .transact(|tx| Ok::<_, StoreError>((tx.get_raw("lost")?, tx.get_raw("copied")?)))
                .await
                .expect("read");
            assert_eq!(seen, (None, None));
            for key in ["lost", "copied", NO_SPACE] {
                assert!(store.get_raw(key).expect("read").is_none(), "{key}");
            }
            assert_eq!(
                store.get_raw("before/big").expect("read").as_deref(),
                Some(&big[..])
            );
            drop(store);
            let store = Store::open(dir.path()).expect("reopen");
            for key in ["before", "before/big", "after"] {
                assert!(
                    store.get_raw(key).expect("read").is_some(),
                    "{key} was lost"
                );
            }
            assert!(!dir.path().join(PROBE_FILE).exists());
        })
    }

    fn a_damaged_index_value_is_reported_naming_its_key(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store
            .transact_blocking(|tx| {
                tx.put_raw("doc/t/a", b"{\"id\":\"a\"}")?;
                tx.put_raw("doc/t/b", b"{\"id\":\"b\"}")
            })
            .expect("commit");
        // The value kept under one key, moved under another (as a damaged page would show it).
        let Some(Stored::Checked(_)) = raw_stored(store.index(), b"doc/t/a") else {
            panic!("a value written now is checksummed");
        };
        let moved = raw_get(store.index(), b"doc/t/a");
        raw_put(store.index(), b"doc/t/b", &moved);
        let err = store.get_raw("doc/t/b").expect_err("damage is reported");
        assert!(
            matches!(err, StoreError::Damaged { ref key } if key == "doc/t/b"),
            "{err}"
        );
        let err = store
            .scan_keys("doc/t/", None, 10)
            .and_then(|_| store.scan::<serde_json::Value>("doc/t/", None, 10))
            .expect_err("a scan reports it too");
        assert!(err.to_string().contains("doc/t/b"), "{err}");
        // A value written by an older version (no checksum) is still read.
        raw_put(store.index(), b"doc/t/c", b"{\"id\":\"c\"}");
        assert!(store.get_raw("doc/t/c").expect("read").is_some());
    }

    /// The bytes the index holds under `k`, checksum included.
    fn raw_get(index: &Index, k: &[u8]) -> Vec<u8> {
        index.raw_get(k).expect("raw read").expect("present")
    }

    fn raw_put(index: &Index, k: &[u8], v: &[u8]) {
        index.raw_put(k, v).expect("raw write");
    }

    fn raw_stored(index: &Index, k: &[u8]) -> Option<Stored> {
        let mut found = None;
        index
            .walk_stored(k, |key, s| {
                if key == k {
                    found = Some(s);
                }
                Ok(false)
            })
            .expect("walk");
        found
    }

    fn concurrent_mutations_of_one_counter_never_lose_an_increment(engine: EngineKind) {
        runtime().block_on(async {
            let (_dir, store) = open(engine);
            let store = Arc::new(store);
            let mut tasks = Vec::new();
            for _ in 0..200 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .transact(|tx| {
                            let n: u64 = tx.get("n")?.unwrap_or(0);
                            tx.put("n", &(n + 1))?;
                            tx.mark("grew".into());
                            Ok::<_, StoreError>(n)
                        })
                        .await
                }));
            }
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.expect("task").expect("commit"));
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..200).collect::<Vec<u64>>());
            assert_eq!(store.get::<u64>("n").expect("read"), Some(200));
        })
    }

    fn the_commit_hook_sees_the_group_and_its_failure_fails_the_group(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store.set_commit_hook(Arc::new(|tx: &mut Tx<'_>, marks: &[String]| {
            if marks.iter().any(|m| m == "refuse") {
                return Err("refused by the hook".into());
            }
            let n: u64 = tx.get("n").map_err(|e| e.to_string())?.unwrap_or(0);
            tx.put("hooked", &n).map_err(|e| e.to_string())
        }));
        store
            .transact_blocking(|tx| {
                tx.put("n", &7u64)?;
                tx.mark("count".into());
                Ok::<_, StoreError>(())
            })
            .expect("commit");
        assert_eq!(store.get::<u64>("hooked").expect("read"), Some(7));
        let refused = store.transact_blocking(|tx| {
            tx.put("n", &8u64)?;
            tx.mark("refuse".into());
            Ok::<_, StoreError>(())
        });
        assert!(matches!(refused, Err(StoreError::Commit(_))), "{refused:?}");
        assert_eq!(store.get::<u64>("n").expect("read"), Some(7));
        // Nor does the writer itself remember the refused group's write.
        let seen = store.transact_blocking(|tx| tx.get::<u64>("n"));
        assert_eq!(seen.expect("read"), Some(7));
    }

    fn answered_mutations_survive_a_reopen(engine: EngineKind) {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = Store::open_with(dir.path(), Some(engine)).expect("open");
            store
                .transact_blocking(|tx| tx.put("kept", &1u8))
                .expect("commit");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get::<u8>("kept").expect("read"), Some(1));
    }

    fn large_values_live_in_the_value_log_and_damage_is_reported_not_returned(engine: EngineKind) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let big = vec![b'd'; 10_000];
        {
            let store = Store::open_with(dir.path(), Some(engine)).expect("open");
            let (a, b) = (big.clone(), big.clone());
            store
                .transact_blocking(move |tx| {
                    tx.put_raw("big", &a)?;
                    tx.put_raw("small", b"s")?;
                    // A short value that looks like a pointer is logged, not misread.
                    tx.put_raw("tricky", b"\0pvlog\x01\xff")?;
                    // Read back inside the same mutation, before the log has it.
                    assert_eq!(tx.get_raw("big")?.as_deref(), Some(&b[..]));
                    Ok::<_, StoreError>(())
                })
                .expect("commit");
            assert_eq!(
                store.get_raw("big").expect("read").as_deref(),
                Some(&big[..])
            );
            // The page holds a pointer, not the value.
            assert!(
                store
                    .index()
                    .get(b"big")
                    .expect("raw")
                    .expect("present")
                    .len()
                    < 64
            );
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.get_raw("big").expect("read").as_deref(),
            Some(&big[..])
        );
        assert_eq!(
            store.get_raw("small").expect("read").as_deref(),
            Some(&b"s"[..])
        );
        assert_eq!(
            store.get_raw("tricky").expect("read").as_deref(),
            Some(&b"\0pvlog\x01\xff"[..])
        );
        drop(store);
        let log = dir.path().join("values.log");
        let mut bytes = std::fs::read(&log).expect("read the log");
        bytes[100] ^= 1;
        std::fs::write(&log, bytes).expect("damage the log");
        let store = Store::open(dir.path()).expect("reopen");
        let err = store.get_raw("big").expect_err("damage must be reported");
        assert!(err.to_string().contains("big"), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
        drop(store);
        // A log cut short (a lost tail) is reported the same way, naming the record.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .and_then(|f| f.set_len(50))
            .expect("truncate the log");
        let store = Store::open(dir.path()).expect("reopen");
        let err = store
            .get_raw("big")
            .expect_err("a missing value must be reported");
        assert!(
            matches!(err, StoreError::Unreadable { ref key, .. } if key == "big"),
            "{err}"
        );
    }

    fn a_watch_moves_only_when_a_group_writes_under_its_prefixes(engine: EngineKind) {
        let (_dir, store) = open(engine);
        let w = store.watch(&["token/", "user/"]);
        let e0 = w.epoch();
        store
            .transact_blocking(|tx| tx.put_raw("doc/x", b"1"))
            .expect("commit");
        assert_eq!(w.epoch(), e0, "an unrelated write does not move it");
        store
            .transact_blocking(|tx| tx.remove("user/t/alice"))
            .expect("commit");
        // Moved by the time the caller is answered.
        assert!(w.epoch() > e0);
        let e1 = w.epoch();
        let _ = store.transact_blocking(|tx| {
            tx.put_raw("token/abc", b"x")?;
            Err::<(), _>(StoreError::Commit("refused".into()))
        });
        assert_eq!(w.epoch(), e1, "a refused mutation wrote nothing");
    }

    fn floor_lookups_see_the_writes_of_the_mutation_and_skip_removed_keys(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store
            .transact_blocking(|tx| {
                tx.put_raw("f/1", b"one")?;
                tx.put_raw("f/3", &[b't'; 300])?;
                tx.put_raw("g/0", b"other prefix")
            })
            .expect("commit");
        fn key(r: Option<(IVec, IVec)>) -> Option<String> {
            r.map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        }
        assert_eq!(
            key(store.floor_raw("f/", "f/2").expect("floor")),
            Some("f/1".into())
        );
        let (_, v) = store.floor_raw("f/", "f/9").expect("floor").expect("found");
        assert_eq!(&v[..], &[b't'; 300][..], "a logged value is resolved");
        assert_eq!(key(store.floor_raw("f/", "f/0").expect("floor")), None);
        assert_eq!(
            key(store.floor_raw("g/", "g/z").expect("floor")),
            Some("g/0".into())
        );
        store
            .transact_blocking(|tx| {
                let floor = |tx: &Tx<'_>, k: &str| tx.floor_raw("f/", k).map(key);
                assert_eq!(floor(tx, "f/2")?, Some("f/1".into()));
                tx.put_raw("f/2", b"two")?;
                assert_eq!(floor(tx, "f/2")?, Some("f/2".into()));
                tx.remove("f/2")?;
                tx.remove("f/1")?;
                assert_eq!(
                    floor(tx, "f/2")?,
                    None,
                    "removed here, present in the index"
                );
                assert_eq!(floor(tx, "f/4")?, Some("f/3".into()));
                Ok::<_, StoreError>(())
            })
            .expect("commit");
        assert_eq!(key(store.floor_raw("f/", "f/2").expect("floor")), None);
    }

    fn group_floor_lookups_see_only_the_group_and_this_mutation(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store
            .transact_blocking(|tx| tx.put_raw("f/1", b"applied"))
            .expect("commit");
        let base = store.embedded_base();
        let recent = RefCell::new(Recent::new(1 << 20));
        let mut group = Writes::new();
        group.insert(b"f/3".to_vec(), Some(IVec::from(&b"group"[..])));
        group.insert(b"f/5".to_vec(), None);
        group.insert(b"g/0".to_vec(), Some(IVec::from(&b"other prefix"[..])));
        let mut tx = Tx::new(&base, &[], Some(&group), &recent);
        let floor = |tx: &Tx<'_>, k: &str| {
            tx.floor_in_group("f/", k)
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
        };
        assert_eq!(
            floor(&tx, "f/2"),
            None,
            "f/1 is in the index, not the group's"
        );
        assert_eq!(floor(&tx, "f/4"), Some(("f/3".into(), b"group".to_vec())));
        assert_eq!(
            floor(&tx, "f/9"),
            None,
            "the group's greatest write removed f/5"
        );
        tx.put_raw("f/3", b"mine").expect("put");
        assert_eq!(floor(&tx, "f/4"), Some(("f/3".into(), b"mine".to_vec())));
        tx.put_raw("f/4", b"four").expect("put");
        assert_eq!(floor(&tx, "f/4"), Some(("f/4".into(), b"four".to_vec())));
        assert_eq!(floor(&tx, "f/3"), Some(("f/3".into(), b"mine".to_vec())));
        tx.put_raw("f/6", b"six").expect("put");
        assert_eq!(floor(&tx, "f/9"), Some(("f/6".into(), b"six".to_vec())));
    }

    fn transaction_scans_see_every_layer_in_order_and_skip_removed_keys(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store
            .transact_blocking(|tx| {
                for k in ["s/1", "s/3", "s/5", "s/7", "s0", "r/9"] {
                    tx.put_raw(k, b"")?;
                }
                Ok::<_, StoreError>(())
            })
            .expect("commit");
        let recent = RefCell::new(Recent::new(1 << 20));
        // A group not applied yet removed s/3 and wrote s/4; the group before this mutation
        // removed s/5 and wrote s/6.
        let mut ahead = Writes::new();
        ahead.insert(b"s/3".to_vec(), None);
        ahead.insert(b"s/4".to_vec(), Some(IVec::from(&b""[..])));
        let ahead = [(1u64, Arc::new(ahead))];
        let mut group = Writes::new();
        group.insert(b"s/5".to_vec(), None);
        group.insert(b"s/6".to_vec(), Some(IVec::from(&b""[..])));
        let base = store.embedded_base();
        let mut tx = Tx::new(&base, &ahead, Some(&group), &recent);
        tx.put_raw("s/2", b"mine").expect("put");
        tx.remove("s/7").expect("remove");
        tx.put_raw("s/8", b"mine").expect("put");
        let all = tx.scan_keys("s/", "", 100).expect("scan");
        assert_eq!(all, vec!["1", "2", "4", "6", "8"]);
        assert_eq!(
            tx.scan_keys("s/", "s/4", 100).expect("scan"),
            ["4", "6", "8"]
        );
        assert_eq!(tx.scan_keys("s/", "s/4", 2).expect("scan"), ["4", "6"]);
        assert_eq!(
            tx.scan_keys("s/", "s/9", 100).expect("scan"),
            Vec::<String>::new()
        );
        assert_eq!(tx.scan_keys("r/", "", 100).expect("scan"), ["9"]);
        assert!(tx.scan_keys("q/", "", 100).expect("scan").is_empty());
    }

    fn a_panicking_mutation_fails_alone(engine: EngineKind) {
        let (_dir, store) = open(engine);
        let failed = store.transact_blocking(|tx| -> Result<(), StoreError> {
            tx.put_raw("lost", b"1")?;
            panic!("a bug in a mutation");
        });
        assert!(matches!(failed, Err(StoreError::Stopped)), "{failed:?}");
        assert!(store.get_raw("lost").expect("read").is_none());
        store
            .transact_blocking(|tx| tx.put_raw("next", b"2"))
            .expect("the writer goes on");
        assert!(store.get_raw("next").expect("read").is_some());
    }

    fn scans_and_last_stay_within_their_prefix(engine: EngineKind) {
        let (_dir, store) = open(engine);
        store
            .transact_blocking(|tx| {
                for k in ["p", "p/a", "p/b", "p/c", "p0", "q/\u{7f}"] {
                    tx.put_raw(k, k.as_bytes())?;
                }
                tx.put_raw("p/big", &[b'v'; 400])
            })
            .expect("commit");
        let last = store.last::<serde_json::Value>("p/");
        // "p/c" holds no JSON: reaching it (and not "p0") is what is checked.
        let err = last.expect_err("p/c is not JSON");
        assert!(err.to_string().contains("p/c"), "{err}");
        assert_eq!(
            store.scan_keys("p/", None, 10).expect("scan"),
            vec!["a", "b", "big", "c"]
        );
        assert_eq!(
            store.scan_keys("p/", Some("b"), 2).expect("scan"),
            vec!["big", "c"]
        );
        assert!(store.last::<u8>("r/").expect("nothing there").is_none());
        assert!(store
            .last::<u8>("q/\u{7f}/")
            .expect("nothing there")
            .is_none());
        let (k, v) = store
            .floor_raw("p/", "p/bz")
            .expect("floor")
            .expect("found");
        assert_eq!((&k[..], v.len()), (&b"p/big"[..], 400));
        // A key before the prefix: an empty range, not a failure.
        assert!(store.floor_raw("p/", "a").expect("floor").is_none());
        let in_tx = store.transact_blocking(|tx| {
            tx.put_raw("p/d", b"written here")?;
            let floor = tx.floor_raw("p/", "a")?;
            Ok::<_, StoreError>((floor, tx.floor_in_group("p/", "a")))
        });
        assert_eq!(in_tx.expect("floor"), (None, None));
    }

    fn a_directory_in_use_is_refused_naming_it(engine: EngineKind) {
        let (dir, _store) = open(engine);
        let err = Store::open(dir.path())
            .err()
            .expect("a second opening while the first is open");
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        let convert = convert_sled_to_redb(dir.path()).expect_err("not while in use");
        if engine == EngineKind::Sled {
            assert!(matches!(convert, StoreError::InUse(_)), "{convert}");
        }
    }

    #[test]
    fn a_directory_keeps_its_engine_and_another_one_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = Store::open_with(dir.path(), Some(EngineKind::Redb)).expect("open");
            store
                .transact_blocking(|tx| tx.put("kept", &1u8))
                .expect("commit");
        }
        // Found again without being named, and refused when another engine is named.
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.engine(), Some(EngineKind::Redb));
        assert_eq!(store.get::<u8>("kept").expect("read"), Some(1));
        drop(store);
        let err = Store::open_with(dir.path(), Some(EngineKind::Sled))
            .err()
            .expect("a redb directory is not opened as sled");
        assert!(
            err.to_string().contains("holds a redb store, not sled"),
            "{err}"
        );
        let fresh = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(fresh.path()).expect("open");
        assert_eq!(store.engine(), Some(EngineKind::Sled), "the default");
        drop(store);
        let err = Store::open_with(fresh.path(), Some(EngineKind::Redb))
            .err()
            .expect("a sled directory is not opened as redb");
        assert!(
            err.to_string().contains("holds a sled store, not redb"),
            "{err}"
        );
        assert!(!fresh.path().join("index.redb").exists());
    }

    #[test]
    fn a_sled_directory_converts_to_redb_whole_and_only_once() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let big = vec![b'b'; 5_000];
        {
            let store = Store::open(dir.path()).expect("open");
            let b = big.clone();
            store
                .transact_blocking(move |tx| {
                    for i in 0..25_000u32 {
                        tx.put_raw(&format!("k/{i:06}"), &i.to_be_bytes())?;
                    }
                    tx.put_raw("big", &b)?;
                    tx.put_raw("gone", b"x")
                })
                .expect("commit");
            store
                .transact_blocking(|tx| tx.remove("gone"))
                .expect("commit");
        }
        // A conversion interrupted earlier left a partial file: it is overwritten.
        std::fs::write(dir.path().join("index.redb.partial"), b"junk").expect("junk");
        let copied = convert_sled_to_redb(dir.path()).expect("convert");
        assert_eq!(copied, 25_001);
        assert!(!dir.path().join("db").exists());
        assert!(dir.path().join("sled-before-conversion/db").exists());
        assert!(!dir.path().join("index.redb.partial").exists());
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.engine(), Some(EngineKind::Redb));
        assert_eq!(
            store.get_raw("big").expect("read").as_deref(),
            Some(&big[..]),
            "a value in the value log is found through the copied pointer"
        );
        assert!(store.get_raw("gone").expect("read").is_none());
        let keys = store.scan_keys("k/", None, usize::MAX).expect("scan");
        assert_eq!(keys.len(), 25_000);
        assert_eq!(
            store.get_raw("k/012345").expect("read").as_deref(),
            Some(&12_345u32.to_be_bytes()[..])
        );
        drop(store);
        let again = convert_sled_to_redb(dir.path()).expect_err("already redb");
        assert!(
            again.to_string().contains("already holds a redb store"),
            "{again}"
        );
        let empty = tempfile::tempdir().expect("temporary directory");
        let none = convert_sled_to_redb(empty.path()).expect_err("no store");
        assert!(none.to_string().contains("holds no store"), "{none}");
    }

    #[test]
    fn the_end_of_a_prefix_is_the_least_key_after_it() {
        assert_eq!(prefix_end(b"p/"), Some(b"p0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}

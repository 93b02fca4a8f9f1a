//! PostgreSQL under the store, for pooled platforms: several `paraph serve` processes (replicas)
//! on one database, any of them answering any call.
//!
//! Owns the schema (one table per kind of record, see `migrations/`), its versioned migrations,
//! the connections, the translation of the store's ordered-key reads into SQL, and the writer
//! of this backend. It knows nothing of what a record means beyond the kind its key names.
//!
//! **One transaction per group, serialised across replicas.** The writer takes every mutation
//! waiting, as the embedded writer does, and runs the whole group inside ONE database
//! transaction that first takes a transaction-scoped advisory lock shared by every replica
//! ([`WRITE_LOCK`]). So the groups of all replicas run one after the other, each reading what
//! the previous committed: the two-officer race has one winner whichever replicas the officers
//! reach, an idempotency record written by one replica is seen by a retry on another, and each
//! tenant's audit log grows by appends that never interleave (no gap, no fork). The group's
//! commit hook (the signed audit checkpoints) runs inside the same transaction. COMMIT returns
//! once the change is durable (synchronous commit, the server's default, is required) and
//! only then are the callers answered.
//!
//! **Caches stay true across replicas.** The writer reads through a cache of the records it
//! read and wrote lately. The row `paraph_writes.groups` counts the committed groups of every
//! replica: under the lock, the writer compares it with the count after its own last commit;
//! if another replica committed meanwhile, the cache is dropped. Each commit also sends a
//! notification (`paraph_changes`) naming the kinds of records it wrote; every replica listens
//! and moves the key watches of those kinds, so that the service's caches (authentication,
//! trust) drop what another replica changed, within the notification's delay.
//! [`Pg::announce`] carries the service's own notices (what WatchEvents streams) to the other
//! replicas the same way (`paraph_notices`).
//!
//! **Faults.** A group whose transaction fails (the database restarted, a connection lost, a
//! statement timeout) is rolled back whole and its callers get [`StoreError::Database`]
//! (answered UNAVAILABLE: safe to retry with the same idempotency key); the next group
//! connects again. Nothing poisons the store: the database is the only state. A connection
//! lost during COMMIT leaves the outcome unknown to the callers, as a crash would: a retry
//! with the same idempotency key gets the first answer if it was committed.

use super::pg_line::Line;
use super::pg_tls::Target;
use super::{
    prefix_end, CommitHook, Job, KeyWatch, Recent, StoreError, Tx, Watches, Writes, MAX_GROUP,
    RECENT_BUDGET,
};
use sled::IVec;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

/// The schema version this binary reads and writes, and the migrations up to it, in order.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_tables.sql")];

/// The advisory lock every replica's writer takes for the length of a group's transaction:
/// this number with the store's schema's (see [`Where`]).
const WRITE_LOCK: i32 = 0x7061_7261;
/// The advisory lock `paraph admin migrate` holds.
const MIGRATE_LOCK: i32 = 0x7061_7262;

/// Where each kind of key is kept: the key's first segment with its `/` (or the whole key,
/// for the few without one), and its table.
const KINDS: &[(&str, &str)] = &[
    ("meta/", "platform_meta"),
    ("operatortokens", "platform_operator_tokens"),
    ("tenant/", "tenants"),
    ("user/", "users"),
    ("userlist/", "user_lists"),
    ("token/", "tokens"),
    ("tokenid/", "token_ids"),
    ("tokenused/", "token_uses"),
    ("circuit/", "circuits"),
    ("circuitlatest/", "circuit_latest"),
    ("doc/", "documents"),
    ("blob/", "contents"),
    ("inbox/", "inbox"),
    ("submitted/", "submissions"),
    ("evs/", "audit_event_runs"),
    ("ev/", "audit_events_v1"),
    ("mt/", "audit_tree_nodes"),
    ("mthead/", "audit_heads"),
    ("evdoc/", "audit_document_events"),
    ("ckpt/", "audit_checkpoints"),
    ("sig/", "signatures"),
    ("sighash/", "signature_hashes_v1"),
    ("sigcount/", "signature_counts_v1"),
    ("der/", "certificates_and_crls"),
    ("prep/", "preparations"),
    ("prepused/", "preparations_used_v1"),
    ("trust/", "trust_settings"),
    ("certbind/", "certificate_bindings"),
    ("absences/", "absences_v1"),
    ("absence/", "absences"),
    ("abslive/", "absences_live"),
    ("absuser/", "absences_by_user"),
    ("abscancel/", "absences_cancelled"),
    ("due/", "deadlines"),
    ("idem/", "idempotency"),
];
/// The table of keys of a kind this version does not know.
const OTHER: &str = "other_records";

/// The kind part of `key`: up to and including its first `/`, or all of it.
fn kind_of(key: &str) -> &str {
    match key.find('/') {
        Some(i) => &key[..=i],
        None => key,
    }
}

/// The table holding `key`.
fn table_of(key: &str) -> &'static str {
    let kind = kind_of(key);
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(OTHER, |(_, t)| t)
}

/// The tables a range of keys starting with `prefix` may touch: one when the prefix names its
/// kind, every table otherwise (a walk of the whole store).
fn tables_under(prefix: &str) -> Vec<&'static str> {
    if prefix.contains('/') || KINDS.iter().any(|(k, _)| *k == prefix) {
        return vec![table_of(prefix)];
    }
    let mut all: Vec<(&str, &'static str)> = KINDS
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .copied()
        .collect();
    all.sort();
    let mut tables: Vec<&'static str> = all.into_iter().map(|(_, t)| t).collect();
    tables.push(OTHER);
    tables
}

/// How the store reaches its database: `[store]` in the settings.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgresql://user:password@host:port/database` (or a libpq key=value string).
    pub url: String,
    /// Connections for reads outside the writer (each carries one read at a time; more reads
    /// at once wait for one to be free).
    pub pool_size: usize,
    /// The longest any statement may run (also bounds the wait for the write lock).
    pub statement_timeout: Duration,
    /// How long opening waits for an unreachable database (`None`: for ever, logging each
    /// try; what `serve` does).
    pub connect_wait: Option<Duration>,
}

impl std::fmt::Debug for PgOptions {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        if let Some(at) = rest.find('@') {
            let (auth, host) = rest.split_at(at);
            let user = auth.split(':').next().unwrap_or("");
            let scheme = &url[..url.len() - rest.len()];
            if auth.contains(':') {
                return format!("{scheme}{user}:***{host}");
            }
        }
        return url.to_owned();
    }
    // key=value form: hide password=…
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which store of the database this is: a store is one schema (the first of the connection's
/// `search_path`, `public` by default; `?options=-csearch_path%3Dname` in the URL chooses
/// another), so that several paraph platforms may share one database without sharing
/// anything else.
#[derive(Clone, Debug)]
struct Where {
    /// The schema's number in the write lock.
    lock: i32,
    /// The notification channel of the store's replicas.
    channel: String,
}

impl Where {
    fn of(schema: String) -> Where {
        // FNV-1a of the name: stable across processes and versions.
        let mut h: u32 = 0x811c_9dc5;
        for b in schema.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Where {
            lock: i32::from_be_bytes(h.to_be_bytes()),
            channel: format!("paraph.{schema}"),
        }
    }

    /// `LISTEN` of the channel, its name quoted.
    fn listen_sql(&self) -> String {
        format!("LISTEN \"{}\"", self.channel.replace('"', "\"\""))
    }
}

/// The schema the connection's tables live in: the first of its `search_path` that exists.
fn current_schema(conn: &Conn) -> Result<Option<String>, StoreError> {
    let rows = conn.query("SELECT current_schema()::text", &[])?;
    Ok(rows.first().and_then(|r| r.get::<_, Option<String>>(0)))
}

/// The first schema the connection's `search_path` names (which may not exist yet).
fn wanted_schema(conn: &Conn) -> Result<String, StoreError> {
    let rows = conn.query("SELECT current_setting('search_path')", &[])?;
    let path: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
    let first = path
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .find(|s| !s.is_empty() && *s != "$user")
        .unwrap_or("public");
    Ok(first.to_owned())
}

pub(super) fn db_error(e: tokio_postgres::Error) -> StoreError {
    // The database's own message (code and text), never the statement's parameters.
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{}: {}", d.code().code(), d.message())),
        None => {
            // The client library's own message, with its causes (a TLS handshake says why).
            let mut m = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                m = format!("{m}: {c}");
                cause = c.source();
            }
            StoreError::Database(m)
        }
    }
}

fn utf8(k: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(k).map_err(|_| {
        StoreError::Database(format!("key {} is not UTF-8", String::from_utf8_lossy(k)))
    })
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
/// The parameters of one statement.
type Params<'w> = Vec<Box<dyn ToSql + Sync + 'w>>;

/// Runs every future at once (the client pipelines their statements on one connection) and
/// returns the first error, if any.
fn join_all(
    line: &Line,
    futs: Vec<BoxFut<'_, Result<u64, tokio_postgres::Error>>>,
) -> Result<(), StoreError> {
    // Each future is polled first in the order given (which is the order the statements are
    // sent in), and never moved.
    let mut futs: Vec<Option<BoxFut<'_, _>>> = futs.into_iter().map(Some).collect();
    let mut first_err = None;
    line.run(std::future::poll_fn(move |cx| {
        for slot in futs.iter_mut() {
            if let Some(f) = slot {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    if let Err(e) = r {
                        first_err.get_or_insert(e);
                    }
                    *slot = None;
                }
            }
        }
        if futs.iter().all(Option::is_none) {
            Poll::Ready(match first_err.take() {
                Some(e) => Err(db_error(e)),
                None => Ok(()),
            })
        } else {
            Poll::Pending
        }
    }))?
}

type Rows = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;

/// Runs every query at once, each sent in the order given, and returns their results in
/// that order.
fn queries(line: &Line, futs: Vec<BoxFut<'_, Rows>>) -> Result<Vec<Rows>, StoreError> {
    let mut futs: Vec<Option<BoxFut<'_, Rows>>> = futs.into_iter().map(Some).collect();
    let mut done: Vec<Option<Rows>> = futs.iter().map(|_| None).collect();
    line.run(std::future::poll_fn(|cx| {
        for (slot, out) in futs.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    *out = Some(r);
                    *slot = None;
                }
            }
        }
        if futs.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }))?;
    Ok(done.into_iter().flatten().collect())
}

// ---------------------------------------------------------------------------------------------
// Connections.

/// One connection with its prepared statements.
pub(super) struct Conn {
    line: Line,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    /// The statement `sql`, prepared once per connection.
    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Ok(cache) = self.statements.lock() {
            if let Some(s) = cache.get(sql) {
                return Ok(s.clone());
            }
        }
        let s = self
            .line
            .run(self.line.client.prepare(sql))?
            .map_err(db_error)?;
        if let Ok(mut cache) = self.statements.lock() {
            cache.insert(sql.to_owned(), s.clone());
        }
        Ok(s)
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let s = self.statement(sql)?;
        self.line
            .run(self.line.client.query(&s, params))?
            .map_err(db_error)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.line
            .run(self.line.client.batch_execute(sql))?
            .map_err(db_error)
    }

    fn is_closed(&self) -> bool {
        self.line.is_closed()
    }

    /// The value under `key`.
    fn get(&self, key: &str) -> Result<Option<IVec>, StoreError> {
        let sql = format!("SELECT value FROM {} WHERE store_key = $1", table_of(key));
        let rows = self.query(&sql, &[&key])?;
        Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
    }

    /// The entry with the greatest key from `low` up to `high`, under `low`'s kind.
    fn last_in(
        &self,
        low: &str,
        high: Bound<&str>,
        with_value: bool,
    ) -> Result<Option<(IVec, IVec)>, StoreError> {
        let cols = if with_value {
            "store_key, value"
        } else {
            "store_key"
        };
        for table in tables_under(low).into_iter().rev() {
            let (cond, bound) = match high {
                Bound::Included(h) => (" AND store_key <= $2", Some(h)),
                Bound::Excluded(h) => (" AND store_key < $2", Some(h)),
                Bound::Unbounded => ("", None),
            };
            let sql = format!(
                "SELECT {cols} FROM {table} WHERE store_key >= $1{cond} \
                 ORDER BY store_key DESC LIMIT 1"
            );
            let rows = match bound {
                Some(h) => self.query(&sql, &[&low, &h])?,
                None => self.query(&sql, &[&low])?,
            };
            if let Some(r) = rows.first() {
                let k = IVec::from(r.get::<_, &str>(0).as_bytes());
                let v = if with_value {
                    IVec::from(r.get::<_, &[u8]>(1))
                } else {
                    IVec::default()
                };
                return Ok(Some((k, v)));
            }
        }
        Ok(None)
    }

    /// Up to `limit` entries under `prefix` from `start` on (included, or excluded), in order.
    fn walk(
        &self,
        prefix: &str,
        start: Bound<&str>,
        limit: usize,
        with_value: bool,
    ) -> Result<Vec<(IVec, IVec)>, StoreError> {
        let cols = if with_value {
            "store_key, value"
        } else {
            "store_key"
        };
        let end = prefix_end(prefix.as_bytes()).and_then(|e| String::from_utf8(e).ok());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for table in tables_under(prefix) {
            let (op, from) = match start {
                Bound::Included(s) => (">=", s),
                Bound::Excluded(s) => (">", s),
                Bound::Unbounded => (">=", prefix),
            };
            let from = if from < prefix { prefix } else { from };
            let left = limit - out.len() as i64;
            if left <= 0 {
                break;
            }
            let rows = match &end {
                Some(end) => {
                    let sql = format!(
                        "SELECT {cols} FROM {table} WHERE store_key {op} $1 AND store_key < $2 \
                         ORDER BY store_key LIMIT $3"
                    );
                    self.query(&sql, &[&from, end, &left])?
                }
                None => {
                    let sql = format!(
                        "SELECT {cols} FROM {table} WHERE store_key {op} $1 \
                         AND left(store_key, length($2)) = $2 ORDER BY store_key LIMIT $3"
                    );
                    self.query(&sql, &[&from, &prefix, &left])?
                }
            };
            for r in rows {
                let k = IVec::from(r.get::<_, &str>(0).as_bytes());
                let v = if with_value {
                    IVec::from(r.get::<_, &[u8]>(1))
                } else {
                    IVec::default()
                };
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// The statements that write `writes` (inside the caller's transaction): per table, the
    /// upserts in one statement and the removals in another.
    fn write_statements<'w>(
        &self,
        writes: &'w Writes,
    ) -> Result<Vec<(Statement, Params<'w>)>, StoreError> {
        let mut puts: BTreeMap<&str, (Vec<&str>, Vec<&[u8]>)> = BTreeMap::new();
        let mut removes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, v) in writes {
            let k = utf8(k)?;
            let t = table_of(k);
            match v {
                Some(v) => {
                    let e = puts.entry(t).or_default();
                    e.0.push(k);
                    e.1.push(v);
                }
                None => removes.entry(t).or_default().push(k),
            }
        }
        let mut statements: Vec<(Statement, Params<'w>)> = Vec::new();
        for (t, (keys, values)) in puts {
            let sql = format!(
                "INSERT INTO {t} (store_key, value) SELECT * FROM unnest($1::text[], $2::bytea[]) \
                 ON CONFLICT (store_key) DO UPDATE SET value = EXCLUDED.value"
            );
            statements.push((
                self.statement(&sql)?,
                vec![Box::new(keys), Box::new(values)],
            ));
        }
        for (t, keys) in removes {
            let sql = format!("DELETE FROM {t} WHERE store_key = ANY($1::text[])");
            statements.push((self.statement(&sql)?, vec![Box::new(keys)]));
        }
        Ok(statements)
    }

    /// Sends every statement at once (one round trip), then `last` (a simple query) if any;
    /// the first error, if any.
    fn pipeline(
        &self,
        statements: &[(Statement, Params<'_>)],
        last: Option<&str>,
    ) -> Result<(), StoreError> {
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|(_, p)| p.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect())
            .collect();
        let mut futs: Vec<BoxFut<'_, _>> = statements
            .iter()
            .zip(params.iter())
            .map(|((s, _), p)| Box::pin(self.line.client.execute(s, p)) as BoxFut<'_, _>)
            .collect();
        if let Some(sql) = last {
            futs.push(Box::pin(async move {
                self.line.client.batch_execute(sql).await.map(|()| 0)
            }));
        }
        join_all(&self.line, futs)
    }

    /// Opens a group's transaction and takes the write lock, in one round trip: the count of
    /// committed groups, what the groups after `known` wrote when the change log still has
    /// them all, and what the group's mutations said they would read (`wanted`), read after
    /// the lock is held.
    fn begin_group(
        &self,
        place: &Where,
        known: Option<i64>,
        wanted: &Wanted,
    ) -> Result<Begun, StoreError> {
        let lock = self.statement("SELECT pg_advisory_xact_lock($1, $2)::text")?;
        // Read in a statement of its own, after the lock is held: a statement's snapshot is
        // taken when it starts, and the lock's may be older than the last commit.
        let count = self.statement("SELECT groups FROM paraph_writes")?;
        let changes = self.statement(
            "SELECT keys, removed, vals FROM paraph_changes WHERE groups > $1 ORDER BY groups",
        )?;
        let mut key_reads = Vec::with_capacity(wanted.keys.len());
        for (table, keys) in &wanted.keys {
            let sql = keys_sql(table);
            key_reads.push((self.statement(&sql)?, keys));
        }
        let mut range_reads = Vec::with_capacity(wanted.ranges.len());
        for (prefix, from) in &wanted.ranges {
            let Some(end) = prefix_end(prefix.as_bytes()).and_then(|e| String::from_utf8(e).ok())
            else {
                continue;
            };
            let sql = format!(
                "SELECT store_key, value FROM {} WHERE store_key >= $1 AND store_key < $2 \
                 ORDER BY store_key LIMIT $3",
                table_of(prefix)
            );
            range_reads.push((self.statement(&sql)?, prefix, from, end));
        }
        let k = known.unwrap_or(i64::MAX);
        let lock_params: [&(dyn ToSql + Sync); 2] = [&WRITE_LOCK, &place.lock];
        let missed_params: [&(dyn ToSql + Sync); 1] = [&k];
        let client = &self.line.client;
        let key_params: Vec<[&(dyn ToSql + Sync); 1]> =
            key_reads.iter().map(|(_, keys)| [*keys as _]).collect();
        let range_params: Vec<[&(dyn ToSql + Sync); 3]> = range_reads
            .iter()
            .map(|(_, _, from, end)| [*from as _, end as _, &RANGE_READ_ROWS as _])
            .collect();
        let mut futs: Vec<BoxFut<'_, Rows>> = vec![
            Box::pin(async { client.batch_execute("BEGIN").await.map(|()| Vec::new()) }),
            Box::pin(client.query(&lock, &lock_params)),
            Box::pin(client.query(&count, &[])),
            Box::pin(client.query(&changes, &missed_params)),
        ];
        for ((statement, _), params) in key_reads.iter().zip(&key_params) {
            futs.push(Box::pin(client.query(statement, params)));
        }
        for ((statement, ..), params) in range_reads.iter().zip(&range_params) {
            futs.push(Box::pin(client.query(statement, params)));
        }
        let mut out = queries(&self.line, futs)?.into_iter();
        let mut next = || out.next().ok_or(StoreError::Stopped)?.map_err(db_error);
        next()?;
        next()?;
        let groups = next()?.first().map(|r| r.get::<_, i64>(0)).ok_or_else(|| {
            StoreError::Database("paraph_writes has no row: the schema is damaged".into())
        })?;
        let rows = next()?;
        let missed = known.map(|_| {
            rows.into_iter()
                .map(|r| {
                    let keys: Vec<String> = r.get(0);
                    let removed: Vec<bool> = r.get(1);
                    let vals: Vec<Option<Vec<u8>>> = r.get(2);
                    keys.into_iter()
                        .zip(removed)
                        .zip(vals)
                        .map(|((k, gone), v)| {
                            let m = match (gone, v) {
                                (true, _) => Missed::Removed,
                                (false, Some(v)) => Missed::Value(IVec::from(v)),
                                (false, None) => Missed::Unknown,
                            };
                            (k.into_bytes(), m)
                        })
                        .collect()
                })
                .collect()
        });
        let mut read = Vec::new();
        for (_, keys) in &key_reads {
            let mut found: HashMap<String, IVec> = next()?
                .into_iter()
                .filter_map(|r| {
                    let v = r.get::<_, Option<&[u8]>>(1)?;
                    Some((r.get::<_, String>(0), IVec::from(v)))
                })
                .collect();
            for k in keys.iter() {
                let v = found.remove(k);
                read.push((k.clone().into_bytes(), v));
            }
        }
        let mut ranges = Vec::new();
        for (_, prefix, from, _) in &range_reads {
            let rows = next()?;
            let complete = (rows.len() as i64) < RANGE_READ_ROWS;
            let mut keys = BTreeMap::new();
            for r in rows {
                let k = r.get::<_, String>(0).into_bytes();
                let v = IVec::from(r.get::<_, &[u8]>(1));
                read.push((k.clone(), Some(v)));
                keys.insert(k, ());
            }
            if complete {
                ranges.push(ReadRange {
                    prefix: prefix.as_bytes().to_vec(),
                    from: from.as_bytes().to_vec(),
                    keys,
                });
            }
        }
        Ok(Begun {
            groups,
            missed,
            read,
            ranges,
        })
    }
}

/// Each key of the array `$1` with the value of `table` under it (NULL: none), each looked up
/// through the primary key by a subquery of its own. (`store_key = ANY($1)`, or a join with
/// the keys, leaves the plan to the table's statistics when the statement is first prepared:
/// on a young table never analysed, a sequential scan was chosen and stayed in use on the
/// connection as the table grew, ten to thirty times slower.)
fn keys_sql(table: &str) -> String {
    format!(
        "SELECT k.key, (SELECT value FROM {table} WHERE store_key = k.key) \
         FROM unnest($1::text[]) AS k(key)"
    )
}

/// The most keys [`Pg::get_many`] reads by one statement of a column per key.
const FEW_KEYS: usize = 4;

/// One row of a column per key: the value under `$i` in its table (NULL: none), each looked
/// up through the primary key. The text depends only on the tables, so a connection
/// prepares it once per sequence of kinds.
fn few_keys_sql(keys: &[String]) -> String {
    let columns: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "(SELECT value FROM {} WHERE store_key = ${})",
                table_of(k),
                i + 1
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// The most rows a declared range read brings (a longer range is read as undeclared).
const RANGE_READ_ROWS: i64 = 64;

/// What a group's mutations said they would read, by table, less what the cache holds.
#[derive(Default)]
struct Wanted {
    keys: BTreeMap<&'static str, Vec<String>>,
    ranges: Vec<(String, String)>,
}

impl Wanted {
    fn of(group: &[Job], recent: &RefCell<Recent>) -> Wanted {
        let mut wanted = Wanted::default();
        let mut recent = recent.borrow_mut();
        let mut seen = std::collections::HashSet::new();
        for job in group {
            for k in &job.reads.keys {
                if recent.get(k.as_bytes()).is_none() && seen.insert(k.as_str()) {
                    wanted.keys.entry(table_of(k)).or_default().push(k.clone());
                }
            }
            for r in &job.reads.ranges {
                if !wanted.ranges.contains(r) {
                    wanted.ranges.push(r.clone());
                }
            }
        }
        wanted
    }
}

/// What [`Conn::begin_group`] found.
struct Begun {
    /// The count of committed groups.
    groups: i64,
    /// What the groups after the one known wrote, when the change log still has them all.
    missed: Option<Vec<MissedGroup>>,
    /// The declared records, and the records of the declared ranges (`None`: no record).
    read: Vec<(Vec<u8>, Option<IVec>)>,
    /// The declared ranges read whole.
    ranges: Vec<ReadRange>,
}

/// Every key under `prefix` from `from` on, as the group's transaction started.
struct ReadRange {
    prefix: Vec<u8>,
    from: Vec<u8>,
    keys: BTreeMap<Vec<u8>, ()>,
}

impl ReadRange {
    /// Whether every key from `low` (included) up to `high` is known here.
    fn covers(&self, low: &[u8], high: Bound<&[u8]>) -> bool {
        let inside = match high {
            Bound::Included(h) | Bound::Excluded(h) => h.starts_with(&self.prefix),
            Bound::Unbounded => false,
        };
        inside && low.starts_with(&self.prefix) && low >= self.from.as_slice()
    }
}

/// The database of a store: its connections and the runtime their tasks run on.
pub(super) struct Pg {
    runtime: Option<tokio::runtime::Runtime>,
    target: Target,
    options: PgOptions,
    readers: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    /// This process among the replicas (in its notifications).
    replica: String,
    /// The store's schema, lock and channel (set once connected).
    place: Mutex<Option<Where>>,
    /// The notices other replicas announce.
    notices: tokio::sync::broadcast::Sender<Arc<Vec<u8>>>,
    /// The notices waiting to go to the other replicas (see [`Pg::announce`]).
    outbox: Mutex<Option<mpsc::Sender<String>>>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Dropping a runtime may block: never from inside another one.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Pg {
    /// Connects (waiting as `options.connect_wait` says), checks the schema version, and starts
    /// listening to the other replicas' notifications.
    pub(super) fn open(options: &PgOptions, watches: Watches) -> Result<Arc<Pg>, StoreError> {
        let target = Target::parse(&options.url, &redact(&options.url))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("paraph-postgres")
            .enable_all()
            .build()?;
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id)
            .map_err(|e| StoreError::Database(format!("randomness: {e}")))?;
        let (notices, _) = tokio::sync::broadcast::channel(4096);
        let pg = Arc::new(Pg {
            runtime: Some(runtime),
            target,
            options: options.clone(),
            readers: (0..options.pool_size.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            replica: hex::encode(id),
            place: Mutex::new(None),
            notices,
            outbox: Mutex::new(None),
        });
        let first = pg.connect_waiting()?;
        let Some(schema) = current_schema(&first)? else {
            return Err(StoreError::Schema(format!(
                "the database has no schema {}: run `paraph admin migrate` first",
                wanted_schema(&first)?
            )));
        };
        check_version(&first)?;
        if let Ok(mut p) = pg.place.lock() {
            *p = Some(Where::of(schema));
        }
        if let Some(slot) = pg.readers.first() {
            if let Ok(mut s) = slot.lock() {
                *s = Some(first);
            }
        }
        pg.listen(watches);
        pg.start_outbox()?;
        Ok(pg)
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.runtime
            .as_ref()
            .map(|r| r.handle())
            .ok_or(StoreError::Closed)
    }

    /// A new connection, driven by the threads that use it (see `pg_line`).
    pub(super) fn connect(&self) -> Result<Arc<Conn>, StoreError> {
        let timeout = self.options.statement_timeout;
        // A statement ends by the database's own timeout first; silence beyond that means the
        // database or the network is gone.
        let line = Line::connect(&self.target, timeout + Duration::from_secs(10))?;
        let conn = Conn {
            line,
            statements: Mutex::new(HashMap::new()),
        };
        // The server commits synchronously: an answered change is on its disk.
        conn.batch(&format!(
            "SET statement_timeout = {}; SET synchronous_commit = on; SET lock_timeout = {}",
            timeout.as_millis(),
            timeout.as_millis()
        ))?;
        // lz4 compresses large records several times faster than the default (pglz), where
        // the server was built with it.
        let _ = conn.batch("SET default_toast_compression = 'lz4'");
        Ok(Arc::new(conn))
    }

    /// [`Pg::connect`], retried while the database cannot be reached, with a log line each
    /// time, as long as the options allow.
    fn connect_waiting(&self) -> Result<Arc<Conn>, StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            match self.connect() {
                Ok(c) => return Ok(c),
                Err(e @ StoreError::DatabaseRefused(_)) => return Err(e),
                Err(e) => {
                    if let Some(wait) = self.options.connect_wait {
                        if started.elapsed() >= wait {
                            return Err(StoreError::Database(format!(
                                "cannot reach the database at {}: {e}",
                                redact(&self.options.url)
                            )));
                        }
                    }
                    tracing::warn!(
                        database = %redact(&self.options.url),
                        error = %e,
                        retry_in_ms = pause.as_millis() as u64,
                        "the database cannot be reached yet; retrying"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Runs `read` on a connection of the pool that no other thread is using (waiting for
    /// one when all are busy), connected again first if it was lost.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.readers.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut slot = None;
        for i in 0..n {
            match self.readers[(first + i) % n].try_lock() {
                Ok(g) => {
                    slot = Some(g);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    slot = Some(p.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        let mut slot = match slot {
            Some(s) => s,
            None => self.readers[first]
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        };
        let conn = match &*slot {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                let c = self.connect()?;
                *slot = Some(c.clone());
                c
            }
        };
        read(&conn)
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<IVec>, StoreError> {
        self.with_reader(|c| c.get(key))
    }

    /// The values under `keys`, in their order, in one round trip: a few keys by one
    /// statement looking each up through its table's primary key, more by one query per
    /// table, all sent at once.
    pub(super) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<IVec>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() <= FEW_KEYS {
            let sql = few_keys_sql(keys);
            let params: Vec<&(dyn ToSql + Sync)> = keys.iter().map(|k| k as _).collect();
            let rows = self.with_reader(|conn| conn.query(&sql, &params))?;
            let Some(row) = rows.first() else {
                return Ok(keys.iter().map(|_| None).collect());
            };
            return Ok((0..keys.len())
                .map(|i| row.get::<_, Option<&[u8]>>(i).map(IVec::from))
                .collect());
        }
        let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for k in keys {
            by_table.entry(table_of(k)).or_default().push(k);
        }
        let found = self.with_reader(|conn| {
            let statements = by_table
                .keys()
                .map(|table| conn.statement(&keys_sql(table)))
                .collect::<Result<Vec<_>, _>>()?;
            let params: Vec<[&(dyn ToSql + Sync); 1]> =
                by_table.values().map(|ks| [ks as _]).collect();
            let client = &conn.line.client;
            let futs: Vec<BoxFut<'_, Rows>> = statements
                .iter()
                .zip(&params)
                .map(|(s, p)| Box::pin(client.query(s, p)) as BoxFut<'_, Rows>)
                .collect();
            let mut found: HashMap<String, IVec> = HashMap::new();
            for rows in queries(&conn.line, futs)? {
                for r in rows.map_err(db_error)? {
                    if let Some(v) = r.get::<_, Option<&[u8]>>(1) {
                        found.insert(r.get::<_, String>(0), IVec::from(v));
                    }
                }
            }
            Ok(found)
        })?;
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    /// The length of the value under `key`, if any.
    pub(super) fn length(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let sql = format!(
            "SELECT octet_length(value)::bigint FROM {} WHERE store_key = $1",
            table_of(key)
        );
        let rows = self.with_reader(|c| c.query(&sql, &[&key]))?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    /// Bytes `from`… of the value under `key`, at most `n` (contents are stored uncompressed
    /// out of line, so a piece costs what it holds).
    pub(super) fn piece(&self, key: &str, from: u64, n: usize) -> Result<Vec<u8>, StoreError> {
        let sql = format!(
            "SELECT substring(value from $2 for $3) FROM {} WHERE store_key = $1",
            table_of(key)
        );
        let start = i32::try_from(from + 1)
            .map_err(|_| StoreError::Database(format!("{key}: a piece beyond 2 GiB")))?;
        let len = i32::try_from(n).unwrap_or(i32::MAX);
        let rows = self.with_reader(|c| c.query(&sql, &[&key, &start, &len]))?;
        Ok(rows
            .first()
            .map(|r| r.get::<_, Vec<u8>>(0))
            .unwrap_or_default())
    }

    pub(super) fn last_in(
        &self,
        low: &str,
        high: Bound<&str>,
    ) -> Result<Option<(IVec, IVec)>, StoreError> {
        self.with_reader(|c| c.last_in(low, high, true))
    }

    pub(super) fn walk(
        &self,
        prefix: &str,
        start: Bound<&str>,
        limit: usize,
        with_value: bool,
    ) -> Result<Vec<(IVec, IVec)>, StoreError> {
        self.with_reader(|c| c.walk(prefix, start, limit, with_value))
    }

    /// Every record of the store, read in one consistent snapshot (a REPEATABLE READ
    /// transaction of its own): a check while replicas write sees the store as of one instant.
    pub(super) fn snapshot_all(&self) -> Result<Vec<(IVec, IVec)>, StoreError> {
        let c = self.connect()?;
        c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let all = c.walk("", Bound::Unbounded, usize::MAX, true);
        let _ = c.batch("COMMIT");
        all
    }

    /// The store's size on disk: the tables of its schema, with their indexes and TOAST.
    pub(super) fn size(&self) -> Result<u64, StoreError> {
        // The store's schema only: the database may hold other stores (and anything else).
        let rows = self.with_reader(|c| {
            c.query(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                &[],
            )
        })?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
    }

    /// Sends `notice` to the other replicas (see [`Pg::notices`]).
    ///
    /// Queued: a thread of its own sends the notices waiting, together, in one statement,
    /// so that the request that announces does not wait for a round trip (the change the
    /// notice describes is already committed; a notice lost with its connection only delays
    /// the other replicas' live updates until the next change).
    pub(super) fn announce(&self, notice: &[u8]) -> Result<(), StoreError> {
        let payload = format!(
            "{} n {}",
            self.replica,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, notice)
        );
        let outbox = self
            .outbox
            .lock()
            .map_err(|_| StoreError::Database("the notices' queue lock is poisoned".into()))?;
        match outbox.as_ref() {
            Some(out) => out.send(payload).map_err(|_| StoreError::Stopped),
            None => Err(StoreError::Closed),
        }
    }

    /// Starts the thread that sends [`Pg::announce`]'s notices, for as long as the backend
    /// lives.
    fn start_outbox(self: &Arc<Self>) -> Result<(), StoreError> {
        let (send, queue) = mpsc::channel::<String>();
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("paraph-notices".into())
            .spawn(move || {
                let mut conn: Option<Arc<Conn>> = None;
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match queue.try_recv() {
                            Ok(n) => batch.push(n),
                            Err(_) => break,
                        }
                    }
                    let Some(pg) = weak.upgrade() else {
                        return;
                    };
                    let sent = (|| {
                        let c = match conn.take() {
                            Some(c) if !c.is_closed() => c,
                            _ => pg.connect()?,
                        };
                        conn = Some(c.clone());
                        let place = pg.place()?;
                        c.query(
                            "SELECT count(pg_notify($1, n)) FROM unnest($2::text[]) AS n",
                            &[&place.channel, &batch],
                        )
                    })();
                    if let Err(e) = sent {
                        tracing::warn!(
                            error = %e,
                            notices = batch.len(),
                            "notices could not reach the other replicas"
                        );
                    }
                }
            })?;
        if let Ok(mut outbox) = self.outbox.lock() {
            *outbox = Some(send);
        }
        Ok(())
    }

    /// Where the store is (known once opened).
    fn place(&self) -> Result<Where, StoreError> {
        self.place
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .ok_or(StoreError::Closed)
    }

    /// The notices the other replicas announce.
    pub(super) fn notices(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<u8>>> {
        self.notices.subscribe()
    }

    /// Listens to the other replicas' notifications for as long as the backend lives: moves
    /// the key watches of the kinds they wrote, hands on their notices. A lost listening
    /// connection is connected again, and every watch moves (a notification may have been
    /// missed meanwhile).
    fn listen(self: &Arc<Self>, watches: Watches) {
        let weak = Arc::downgrade(self);
        let Ok(handle) = self.handle() else {
            return;
        };
        let handle2 = handle.clone();
        handle.spawn(async move {
            let mut first = true;
            loop {
                let Some(pg) = weak.upgrade() else {
                    return;
                };
                let config = pg.target.config.clone();
                let tls = pg.target.make_tls();
                let replica = pg.replica.clone();
                let notices = pg.notices.clone();
                let Ok(place) = pg.place() else {
                    return;
                };
                drop(pg);
                if !first {
                    bump_all(&watches);
                }
                first = false;
                let Ok(Ok((client, mut connection))) =
                    tokio::time::timeout(Duration::from_secs(10), config.connect(tls)).await
                else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = handle2.spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                                if tx.send(n).is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                });
                if client.batch_execute(&place.listen_sql()).await.is_err() {
                    driver.abort();
                    continue;
                }
                while let Some(n) = rx.recv().await {
                    let mut parts = n.payload().splitn(3, ' ');
                    let (Some(from), Some(what), rest) = (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    if from == replica {
                        continue;
                    }
                    let rest = rest.unwrap_or("");
                    match what {
                        "c" => bump_kinds(&watches, rest.split(' ')),
                        "n" => {
                            if let Ok(bytes) = base64::Engine::decode(
                                &base64::engine::general_purpose::STANDARD,
                                rest,
                            ) {
                                let _ = notices.send(Arc::new(bytes));
                            }
                        }
                        _ => {}
                    }
                    if weak.strong_count() == 0 {
                        return;
                    }
                }
                drop(client);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

/// Moves every key watch.
fn bump_all(watches: &Watches) {
    if let Ok(all) = watches.lock() {
        for w in all.iter() {
            w.bump();
        }
    }
}

/// Moves the key watches that may concern keys of the kinds `kinds` (each a key's first
/// segment with its `/`).
fn bump_kinds<'k>(watches: &Watches, kinds: impl Iterator<Item = &'k str> + Clone) {
    if let Ok(all) = watches.lock() {
        for w in all.iter() {
            if kinds.clone().any(|k| w.may_concern_kind(k)) {
                w.bump();
            }
        }
    }
}

/// Refuses a database whose schema is not this binary's.
fn check_version(conn: &Conn) -> Result<(), StoreError> {
    let found = schema_version(conn)?;
    match found {
        None | Some(0) => Err(StoreError::Schema(
            "the database has no paraph schema: run `paraph admin migrate` first".into(),
        )),
        Some(v) if v < SCHEMA_VERSION => Err(StoreError::Schema(format!(
            "the database's schema is version {v}, this paraph needs {SCHEMA_VERSION}: \
             run `paraph admin migrate`"
        ))),
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::Schema(format!(
            "the database's schema is version {v}, newer than this paraph's \
             ({SCHEMA_VERSION}): run a paraph at least as recent"
        ))),
        Some(_) => Ok(()),
    }
}

/// The schema version of the database (`None`: no paraph schema).
fn schema_version(conn: &Conn) -> Result<Option<i32>, StoreError> {
    let exists = conn.query("SELECT to_regclass('paraph_schema') IS NOT NULL", &[])?;
    if !exists.first().is_some_and(|r| r.get::<_, bool>(0)) {
        return Ok(None);
    }
    let rows = conn.query("SELECT max(version) FROM paraph_schema", &[])?;
    Ok(rows.first().and_then(|r| r.get::<_, Option<i32>>(0)))
}

/// What `paraph admin migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Creates or upgrades the schema to this binary's version, each migration in its own
/// transaction, under the write lock (replicas of the older version wait). Refuses a
/// database whose schema is newer.
pub fn migrate(options: &PgOptions) -> Result<Migrated, StoreError> {
    let pg = Pg::bare(options)?;
    let conn = pg.connect_waiting()?;
    let schema = match current_schema(&conn)? {
        Some(s) => s,
        None => {
            let s = wanted_schema(&conn)?;
            conn.batch(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                s.replace('"', "\"\"")
            ))?;
            s
        }
    };
    let place = Where::of(schema);
    conn.query(
        "SELECT pg_advisory_lock($1, $2)",
        &[&MIGRATE_LOCK, &place.lock],
    )?;
    let from = schema_version(&conn)?.unwrap_or(0);
    if from > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database's schema is version {from}, newer than this paraph's \
             ({SCHEMA_VERSION}): run a paraph at least as recent"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let version = i as i32 + 1;
        conn.batch(&format!(
            "BEGIN; {sql}; INSERT INTO paraph_schema (version) VALUES ({version}); COMMIT"
        ))
        .map_err(|e| StoreError::Schema(format!("migration {version} failed: {e}")))?;
    }
    Ok(Migrated {
        from,
        to: SCHEMA_VERSION,
    })
}

impl Pg {
    /// A backend that neither checks the schema nor listens (for the migrations).
    fn bare(options: &PgOptions) -> Result<Arc<Pg>, StoreError> {
        let target = Target::parse(&options.url, &redact(&options.url))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (notices, _) = tokio::sync::broadcast::channel(1);
        Ok(Arc::new(Pg {
            runtime: Some(runtime),
            target,
            options: options.clone(),
            readers: vec![Mutex::new(None)],
            next: AtomicUsize::new(0),
            replica: String::new(),
            place: Mutex::new(None),
            notices,
            outbox: Mutex::new(None),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// What a mutation reads inside its group's transaction: the ranges read when it began, else
/// the database.
struct TxBase<'c> {
    conn: &'c Conn,
    ranges: &'c [ReadRange],
}

impl super::Base for TxBase<'_> {
    fn get(&self, k: &[u8]) -> Result<Option<IVec>, StoreError> {
        self.conn.get(utf8(k)?)
    }

    fn last_key_in(&self, low: &[u8], high: Bound<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(r) = self.ranges.iter().find(|r| r.covers(low, high)) {
            let high = match high {
                Bound::Included(h) => Bound::Included(h.to_vec()),
                Bound::Excluded(h) => Bound::Excluded(h.to_vec()),
                Bound::Unbounded => Bound::Unbounded,
            };
            return Ok(r
                .keys
                .range((Bound::Included(low.to_vec()), high))
                .next_back()
                .map(|(k, _)| k.clone()));
        }
        let high = match high {
            Bound::Included(h) => Bound::Included(utf8(h)?),
            Bound::Excluded(h) => Bound::Excluded(utf8(h)?),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(self
            .conn
            .last_in(utf8(low)?, high, false)?
            .map(|(k, _)| k.to_vec()))
    }

    fn first_key_from(&self, start: &[u8], prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let from = start.max(prefix);
        let known = self.ranges.iter().find(|r| {
            prefix.starts_with(&r.prefix) && from.starts_with(&r.prefix) && from >= &r.from[..]
        });
        if let Some(r) = known {
            return Ok(r
                .keys
                .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
                .next()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with(prefix))
                .cloned());
        }
        let start = after_bound(start)?;
        Ok(self
            .conn
            .walk(utf8(prefix)?, start, 1, false)?
            .into_iter()
            .next()
            .map(|(k, _)| k.to_vec()))
    }
}

/// A start key of the store's ranges as a bound: the store marks "strictly after `k`" with a
/// NUL byte after `k`, which a text column cannot hold.
pub(super) fn after_bound(start: &[u8]) -> Result<Bound<&str>, StoreError> {
    Ok(match start.strip_suffix(&[0u8]) {
        Some(k) => Bound::Excluded(utf8(k)?),
        None => Bound::Included(utf8(start)?),
    })
}

/// Reads of a group whose transaction could not start: each fails with why.
struct Down(String);

impl super::Base for Down {
    fn get(&self, _: &[u8]) -> Result<Option<IVec>, StoreError> {
        Err(StoreError::Database(self.0.clone()))
    }
    fn last_key_in(&self, _: &[u8], _: Bound<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Database(self.0.clone()))
    }
    fn first_key_from(&self, _: &[u8], _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Database(self.0.clone()))
    }
}

/// The writer thread of this backend: each group in one transaction (see the module doc).
pub(super) fn writer_loop(
    pg: &Pg,
    queue: &mpsc::Receiver<Job>,
    hook: &Mutex<Option<Arc<CommitHook>>>,
    watches: &Watches,
) {
    let recent = RefCell::new(Recent::new(RECENT_BUDGET));
    let mut conn: Option<Arc<Conn>> = None;
    // The count of committed groups right after this writer's last commit.
    let mut known: Option<i64> = None;
    loop {
        let Ok(first) = queue.recv() else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let wanted = Wanted::of(&group, &recent);
        // The connection, and the group's transaction with the write lock.
        let begun = (|| {
            let c = match conn.take() {
                Some(c) if !c.is_closed() => c,
                _ => pg.connect()?,
            };
            conn = Some(c.clone());
            let place = pg.place()?;
            match c.begin_group(&place, known, &wanted) {
                Ok(b) => Ok((c, b)),
                Err(e) => {
                    let _ = c.batch("ROLLBACK");
                    Err(e)
                }
            }
        })();
        let (c, begun) = match begun {
            Ok(b) => b,
            Err(e) => {
                known = None;
                *recent.borrow_mut() = Recent::new(RECENT_BUDGET);
                let why = format!("the database cannot be reached: {e}");
                tracing::warn!(error = %e, "a group of changes could not start");
                let down = Down(why.clone());
                for job in group {
                    let mut tx = Tx::new(&down, &[], None, &recent);
                    let (_, deliver) = (job.run)(&mut tx);
                    deliver(Some(StoreError::Database(why.clone())));
                }
                continue;
            }
        };
        let Begun {
            groups,
            missed,
            read,
            ranges,
        } = begun;
        if Some(groups) != known {
            // Another replica committed since this one last did: its writes are brought into
            // the cache when the change log still holds every group missed, else the cache is
            // dropped (it may be older than the database).
            let mut recent = recent.borrow_mut();
            match (known, missed) {
                (Some(k), Some(missed)) if missed.len() as i64 == groups - k => {
                    for change in missed {
                        for (key, value) in change {
                            match value {
                                Missed::Value(v) => recent.put(key, Some(v)),
                                Missed::Removed => recent.put(key, None),
                                Missed::Unknown => recent.forget(&key),
                            }
                        }
                    }
                }
                _ => *recent = Recent::new(RECENT_BUDGET),
            }
        }
        {
            // Read under the lock: the latest committed state.
            let mut recent = recent.borrow_mut();
            for (k, v) in read {
                recent.put(k, v);
            }
        }
        let base = TxBase {
            conn: &c,
            ranges: &ranges,
        };
        let (writes, deliveries, failed) = super::run_group(&base, &[], group, hook, &recent);
        let failed = failed.map(StoreError::Commit);
        let committed = match failed {
            Some(e) => {
                let _ = c.batch("ROLLBACK");
                Err(e)
            }
            None => match pg.place() {
                Ok(place) => commit(&c, &writes, &pg.replica, &place.channel, groups + 1),
                Err(e) => Err(e),
            },
        };
        match committed {
            Ok(count) => {
                known = Some(count);
                {
                    let mut recent = recent.borrow_mut();
                    for (k, v) in writes.iter() {
                        recent.put(k.clone(), v.clone());
                    }
                }
                bump_written(watches, &writes);
                for d in deliveries {
                    d(None);
                }
            }
            Err(e) => {
                known = None;
                *recent.borrow_mut() = Recent::new(RECENT_BUDGET);
                if !matches!(e, StoreError::Commit(_)) {
                    tracing::warn!(error = %e, "a group of changes failed and was rolled back");
                }
                let _ = c.batch("ROLLBACK");
                for d in deliveries {
                    d(Some(match &e {
                        StoreError::Commit(m) => StoreError::Commit(m.clone()),
                        other => StoreError::Database(other.to_string()),
                    }));
                }
            }
        }
    }
}

/// Writes the group, logs it for the other replicas' caches, counts it (`count` is the count
/// of committed groups with it), tells the other replicas which kinds it wrote, and commits:
/// every statement sent at once, one round trip. A statement that fails aborts the
/// transaction, whose COMMIT then only rolls back: the first error is the group's.
fn commit(
    c: &Conn,
    writes: &Writes,
    replica: &str,
    channel: &str,
    count: i64,
) -> Result<i64, StoreError> {
    let mut kinds: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::with_capacity(writes.len());
    let mut removed: Vec<bool> = Vec::with_capacity(writes.len());
    let mut vals: Vec<Option<&[u8]>> = Vec::with_capacity(writes.len());
    for (k, v) in writes {
        let k = utf8(k)?;
        let kind = kind_of(k);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        keys.push(k);
        removed.push(v.is_none());
        vals.push(v.as_deref().filter(|v| v.len() <= LOGGED_VALUE_MAX));
    }
    let payload = format!("{replica} c {}", kinds.join(" "));
    let mut statements = c.write_statements(writes)?;
    let log = c.statement(
        "INSERT INTO paraph_changes (groups, keys, removed, vals) VALUES ($1, $2, $3, $4)",
    )?;
    let count_it = c.statement("UPDATE paraph_writes SET groups = $1")?;
    let notify = c.statement("SELECT pg_notify($1, $2)::text")?;
    let prune = c.statement("DELETE FROM paraph_changes WHERE groups <= $1")?;
    statements.push((
        log,
        vec![
            Box::new(count),
            Box::new(keys),
            Box::new(removed),
            Box::new(vals),
        ],
    ));
    statements.push((count_it, vec![Box::new(count)]));
    statements.push((notify, vec![Box::new(channel), Box::new(payload)]));
    if count % CHANGES_KEPT == 0 {
        statements.push((prune, vec![Box::new(count - CHANGES_KEPT)]));
    }
    c.pipeline(&statements, Some("COMMIT"))?;
    Ok(count)
}

/// The largest value the change log carries (a larger one is named, and the other replicas
/// forget it).
const LOGGED_VALUE_MAX: usize = 512;
/// Groups the change log keeps (a replica further behind drops its cache).
const CHANGES_KEPT: i64 = 4096;

/// What one group of another replica wrote, key by key.
type MissedGroup = Vec<(Vec<u8>, Missed)>;

/// What a replica missed of a key while another one wrote.
enum Missed {
    Value(IVec),
    Removed,
    /// Too large for the log: read it again when needed.
    Unknown,
}

/// Moves the local key watches concerned by `writes`.
fn bump_written(watches: &Watches, writes: &Writes) {
    if let Ok(all) = watches.lock() {
        for w in all.iter() {
            if writes.keys().any(|k| w.concerns(k)) {
                w.bump();
            }
        }
    }
}

impl KeyWatch {
    /// Moves the watch: entries made before are stale.
    pub(super) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether keys of kind `kind` (a first segment with its `/`) may fall under the watch.
    fn may_concern_kind(&self, kind: &str) -> bool {
        self.prefixes
            .iter()
            .any(|p| p.starts_with(kind.as_bytes()) || kind.as_bytes().starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_kind_of_the_layout_has_its_table_in_the_schema() {
        let sql = MIGRATIONS.join("\n");
        for (kind, table) in KINDS {
            assert!(
                sql.contains(&format!("CREATE TABLE {table} (")),
                "{kind} -> {table} is not created by the migrations"
            );
            let check = if kind.ends_with('/') {
                format!("CHECK (store_key LIKE '{kind}%')")
            } else {
                format!("CHECK (store_key = '{kind}')")
            };
            assert!(
                sql.contains(&check),
                "{table} does not check its kind {kind}"
            );
        }
        // The key layout documented by the store names no kind without a table.
        let doc = include_str!("mod.rs");
        for line in doc.lines().filter(|l| l.starts_with("//! | `")) {
            let key = line.trim_start_matches("//! | `");
            let kind = kind_of(key.split('`').next().unwrap_or(""));
            if kind == "prefix" {
                continue;
            }
            assert_ne!(table_of(kind), OTHER, "{kind} has no table");
        }
    }

    #[test]
    fn keys_go_to_the_table_of_their_kind() {
        assert_eq!(table_of("doc/ville/abc"), "documents");
        assert_eq!(table_of("ev/ville/00000000000000000001"), "audit_events_v1");
        assert_eq!(
            table_of("evs/ville/00000000000000000001"),
            "audit_event_runs"
        );
        assert_eq!(table_of("operatortokens"), "platform_operator_tokens");
        assert_eq!(table_of("k/0001"), OTHER);
        assert_eq!(tables_under("doc/ville/"), vec!["documents"]);
        assert!(tables_under("").len() > KINDS.len());
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgresql://paraph:s3cret@db:5432/paraph"),
            "postgresql://paraph:***@db:5432/paraph"
        );
        assert_eq!(redact("postgresql://db/paraph"), "postgresql://db/paraph");
        assert_eq!(
            redact("host=db user=p password=s3cret"),
            "host=db user=p password=***"
        );
    }
}

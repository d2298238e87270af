//! The SQLite index: one connection, WAL mode, a busy timeout so several
//! processes can share it, and typed operations over the schema.

use crate::action::ActionResult;
use crate::digest::Digest;
use crate::error::{CasError, Result};
use crate::keys::ActionKey;
use crate::manifest::{Manifest, ManifestEntry};
use crate::record::Provenance;
use crate::schema;
use crate::statcache::FileStat;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// When the read transaction that lookups share was opened (see
    /// `snapshot`).
    snapshot: Cell<Option<Instant>>,
}

/// How long lookups may share one read transaction. Each transaction costs
/// WAL lock syscalls; sharing one makes a lookup several times cheaper.
/// The price: an entry another process commits may be missed for this
/// long (a redundant compile at worst, never a wrong result).
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(20);

/// One run, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub started_ns: i64,
    pub finished_ns: Option<i64>,
    pub command: String,
    pub status: Option<String>,
}

/// A target's provenance in a run, as the index holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenanceRow {
    pub run: i64,
    /// The body's digest (what a row of a later run may name again; for a
    /// row of schema 1, which holds its body, its record's digest).
    pub body: Digest,
    /// The body: what is not the run's.
    pub provenance: Provenance,
    /// The row's own notes: what is the run's.
    pub notes: Vec<(String, String)>,
}

/// A blob row: what gc and verify work from.
#[derive(Clone, Copy, Debug)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    pub last_used: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub blobs: u64,
    pub bytes: u64,
    pub actions: u64,
    pub manifests: u64,
    pub stat_entries: u64,
    pub runs: u64,
    /// Provenance rows (one per target and run).
    pub provenance: u64,
    /// Distinct provenance bodies the rows name, and their bytes.
    pub provenance_bodies: u64,
    pub provenance_body_bytes: u64,
}

fn d(digest: &Digest) -> &[u8] {
    &digest.0
}

fn col_digest(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Digest> {
    let v: Vec<u8> = row.get(i)?;
    Digest::from_slice(&v).ok_or(rusqlite::Error::IntegralValueOutOfRange(i, v.len() as i64))
}

impl Index {
    /// Opens (creating and migrating) the index for reading and writing.
    pub fn open(path: &Path) -> Result<Index> {
        let conn = Connection::open(path).map_err(|e| CasError::index(path, e, 0))?;
        let mut idx = Index {
            conn,
            path: path.to_path_buf(),
            snapshot: Cell::new(None),
        };
        idx.setup(false)?;
        if idx.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(CasError::ReadOnly {
                path: path.to_path_buf(),
                op: "open the index for writing",
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            });
        }
        idx.migrate()?;
        Ok(idx)
    }

    /// Opens an existing index without writing anything (a read-only cache
    /// folder). Falls back to SQLite's immutable mode when the WAL's shared
    /// memory file cannot be created there.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let try_open = |p: &str, extra: OpenFlags| -> rusqlite::Result<Connection> {
            let c = Connection::open_with_flags(p, flags | extra)?;
            // Opening is lazy: touch the schema to find out now.
            c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
            Ok(c)
        };
        let plain = path.to_string_lossy().into_owned();
        let conn = match try_open(&plain, OpenFlags::empty()) {
            Ok(c) => c,
            Err(_) => try_open(
                &format!("file:{}?immutable=1", uri_escape(&plain)),
                OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(|e| CasError::index(path, e, 0))?,
        };
        let mut idx = Index {
            conn,
            path: path.to_path_buf(),
            snapshot: Cell::new(None),
        };
        idx.setup(true)?;
        let v = idx.user_version()?;
        if v > schema::latest() {
            return Err(idx.too_new(v));
        }
        if v < schema::READ_ONLY_FROM {
            return Err(CasError::NotACache {
                path: path.to_path_buf(),
                reason: format!(
                    "index schema {v} needs a migration, which a read-only open cannot do"
                ),
            });
        }
        Ok(idx)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps a SQLite error, asking SQLite which errno it saw.
    pub fn err(&self, e: rusqlite::Error) -> CasError {
        // SAFETY: the handle is valid for the life of `self.conn`, and
        // sqlite3_system_errno only reads a field of it.
        let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(self.conn.handle()) };
        CasError::index(&self.path, e, errno)
    }

    fn setup(&mut self, read_only: bool) -> Result<()> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.err(e))?;
        // Lookups are the hot path: keep pages in memory (a 64 MiB page
        // cache, reads through mmap) instead of a pread per page.
        self.conn
            .pragma_update(None, "cache_size", -65536)
            .map_err(|e| self.err(e))?;
        self.conn
            .pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(|e| self.err(e))?;
        if !read_only {
            // WAL: readers never block the writer; NORMAL sync is safe
            // against process crashes (a power loss may drop the last
            // transactions, never corrupt the index).
            self.conn
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| self.err(e))?;
            self.conn
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn too_new(&self, found: i64) -> CasError {
        CasError::SchemaTooNew {
            path: self.path.clone(),
            found,
            supported: schema::latest(),
        }
    }

    fn migrate(&mut self) -> Result<()> {
        // The common case, an up-to-date index, needs no write lock.
        if self.user_version()? == schema::latest() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| CasError::index(&self.path, e, 0))?;
        let v: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| CasError::index(&self.path, e, 0))?;
        if v > schema::latest() {
            return Err(CasError::SchemaTooNew {
                path: self.path.clone(),
                found: v,
                supported: schema::latest(),
            });
        }
        if v < 0 {
            return Err(CasError::NotACache {
                path: self.path.clone(),
                reason: format!("index schema version {v}"),
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(v as usize) {
            tx.execute_batch(sql)
                .map_err(|e| CasError::index(&self.path, e, 0))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| CasError::index(&self.path, e, 0))?;
        }
        tx.commit().map_err(|e| CasError::index(&self.path, e, 0))
    }

    /// Makes sure a recent read transaction is open, for lookups.
    fn snapshot(&self) -> Result<()> {
        match self.snapshot.get() {
            Some(t) if t.elapsed() < SNAPSHOT_MAX_AGE => return Ok(()),
            Some(_) => self.end_snapshot(),
            None => {}
        }
        self.conn.execute_batch("BEGIN").map_err(|e| self.err(e))?;
        self.snapshot.set(Some(Instant::now()));
        Ok(())
    }

    /// Ends the lookups' read transaction, so the next read sees every
    /// commit. Writes and whole-index queries call it first.
    pub fn end_snapshot(&self) {
        if self.snapshot.take().is_some() {
            // A read transaction has nothing to lose: if COMMIT fails,
            // roll back.
            if self.conn.execute_batch("COMMIT").is_err() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
    }

    /// Runs `f` in an IMMEDIATE transaction (the write lock is taken up
    /// front, so two writers never deadlock upgrading).
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.end_snapshot();
        let path = self.path.clone();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        result.map_err(|e| {
            // SAFETY: as in `err`.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(self.conn.handle()) };
            CasError::index(&path, e, errno)
        })
    }

    // ---- actions ----

    /// An action's result and when it was last used (unix ms).
    pub fn lookup_action(&self, key: &ActionKey) -> Result<Option<(ActionResult, i64)>> {
        self.snapshot()?;
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT result, last_used FROM actions WHERE key = ?1")
            .and_then(|mut st| {
                st.query_row([d(&key.0)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        // An unreadable row is a miss, never a wrong result.
        Ok(row.and_then(|(j, used)| serde_json::from_str(&j).ok().map(|r| (r, used))))
    }

    /// Many lookups in one read transaction, ended afterwards.
    pub fn lookup_actions(&self, keys: &[ActionKey]) -> Result<Vec<Option<(ActionResult, i64)>>> {
        let found = keys.iter().map(|k| self.lookup_action(k)).collect();
        self.end_snapshot();
        found
    }

    /// Every stat-cache row, for an in-memory copy.
    pub fn all_stats(&self) -> Result<Vec<(Vec<u8>, FileStat, Digest)>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare("SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest FROM stat_cache")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    FileStat {
                        dev: r.get::<_, i64>(1)? as u64,
                        ino: r.get::<_, i64>(2)? as u64,
                        size: r.get::<_, i64>(3)? as u64,
                        mtime_ns: r.get(4)?,
                        ctime_ns: r.get(5)?,
                    },
                    col_digest(r, 6)?,
                ))
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        rows.map_err(|e| self.err(e))
    }

    // ---- manifests ----

    pub fn lookup_manifest(&self, key: &ActionKey) -> Result<Option<Manifest>> {
        self.snapshot()?;
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT manifest FROM manifests WHERE key = ?1")
            .and_then(|mut st| st.query_row([d(&key.0)], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    // ---- stat cache ----

    pub fn lookup_stat(&self, path: &[u8]) -> Result<Option<(FileStat, Digest)>> {
        self.snapshot()?;
        self.conn
            .prepare_cached(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM stat_cache WHERE path = ?1",
            )
            .and_then(|mut st| {
                st.query_row([path], |r| {
                    Ok((
                        FileStat {
                            dev: r.get::<_, i64>(0)? as u64,
                            ino: r.get::<_, i64>(1)? as u64,
                            size: r.get::<_, i64>(2)? as u64,
                            mtime_ns: r.get(3)?,
                            ctime_ns: r.get(4)?,
                        },
                        col_digest(r, 5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    // ---- runs and provenance ----

    pub fn runs(&self, limit: u32) -> Result<Vec<RunInfo>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, started_ns, finished_ns, command, status FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([limit], |r| {
                Ok(RunInfo {
                    id: r.get(0)?,
                    started_ns: r.get(1)?,
                    finished_ns: r.get(2)?,
                    command: r.get(3)?,
                    status: r.get(4)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        rows.map_err(|e| self.err(e))
    }

    pub fn run(&self, id: i64) -> Result<Option<RunInfo>> {
        self.end_snapshot();
        self.conn
            .prepare_cached(
                "SELECT id, started_ns, finished_ns, command, status FROM runs WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok(RunInfo {
                        id: r.get(0)?,
                        started_ns: r.get(1)?,
                        finished_ns: r.get(2)?,
                        command: r.get(3)?,
                        status: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Every target with a provenance record, sorted.
    pub fn provenance_targets(&self) -> Result<Vec<String>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT target FROM provenance ORDER BY target")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        rows.map_err(|e| self.err(e))
    }

    /// The newest records of a target, newest first. A row whose body is
    /// gone or unreadable is skipped.
    pub fn provenance(&self, target: &str, limit: u32) -> Result<Vec<ProvenanceRow>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare_cached(
                // A row of schema 1 holds its body (its `body_ref` is NULL);
                // a row whose body is gone reads as '' and is skipped.
                "SELECT p.run, coalesce(p.body_ref, p.record), coalesce(b.body, p.body), p.notes
                 FROM provenance p LEFT JOIN provenance_bodies b ON b.digest = p.body_ref
                 WHERE p.target = ?1 ORDER BY p.run DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![target, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    col_digest(r, 1)?,
                    r.get_ref(2)?.as_bytes()?.to_vec(),
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        let rows = rows.map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(run, body, json, notes)| {
                Some(ProvenanceRow {
                    run,
                    body,
                    provenance: serde_json::from_slice(&json).ok()?,
                    notes: match notes {
                        Some(n) => serde_json::from_str(&n).ok()?,
                        None => Vec::new(),
                    },
                })
            })
            .collect())
    }

    /// Whether the index holds a provenance body (read fresh, not from the
    /// lookups' shared snapshot).
    pub fn has_provenance_body(&self, digest: &Digest) -> Result<bool> {
        self.end_snapshot();
        self.conn
            .prepare_cached("SELECT 1 FROM provenance_bodies WHERE digest = ?1")
            .and_then(|mut st| st.query_row([d(digest)], |_| Ok(())).optional())
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    // ---- whole-index queries for stats, gc and verify ----

    /// Blob count and bytes, from the trigger-kept totals (O(1)).
    pub fn totals(&self) -> Result<(u64, u64)> {
        self.end_snapshot();
        self.conn
            .query_row("SELECT count, bytes FROM totals", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .map_err(|e| self.err(e))
    }

    pub fn counts(&self) -> Result<Counts> {
        self.end_snapshot();
        let q = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(|e| self.err(e))
        };
        Ok(Counts {
            blobs: q("SELECT count FROM totals")?,
            bytes: q("SELECT bytes FROM totals")?,
            actions: q("SELECT count(*) FROM actions")?,
            manifests: q("SELECT count(*) FROM manifests")?,
            stat_entries: q("SELECT count(*) FROM stat_cache")?,
            runs: q("SELECT count(*) FROM runs")?,
            provenance: q("SELECT count(*) FROM provenance")?,
            provenance_bodies: q("SELECT count(*) FROM provenance_bodies")?,
            provenance_body_bytes: q("SELECT coalesce(sum(size), 0) FROM provenance_bodies")?,
        })
    }

    pub fn blob_rows(&self) -> Result<Vec<BlobRow>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare("SELECT digest, size, last_used FROM blobs")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(BlobRow {
                    digest: col_digest(r, 0)?,
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    last_used: r.get(2)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        rows.map_err(|e| self.err(e))
    }

    /// Blobs referenced by actions, manifests or provenance (rows and
    /// bodies) but absent from the blobs table.
    pub fn dangling_refs(&self) -> Result<Vec<Digest>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare(
                "SELECT digest FROM action_blobs WHERE digest NOT IN (SELECT digest FROM blobs)
                 UNION SELECT record FROM manifests WHERE record NOT IN (SELECT digest FROM blobs)
                 UNION SELECT record FROM provenance WHERE record NOT IN (SELECT digest FROM blobs)
                 UNION SELECT digest FROM provenance_bodies WHERE digest NOT IN (SELECT digest FROM blobs)",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| col_digest(r, 0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        rows.map_err(|e| self.err(e))
    }

    /// SQLite's own consistency check.
    pub fn quick_check(&self) -> Result<Vec<String>> {
        self.end_snapshot();
        let mut st = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
        drop(st);
        let mut problems: Vec<String> = rows
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|r| r != "ok")
            .collect();
        // Both counts from one snapshot: other processes publish between
        // two autocommit reads.
        let snapshot = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let (count, bytes): (i64, i64) = snapshot
            .query_row("SELECT count, bytes FROM totals", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        let (real_count, real_bytes): (i64, i64) = snapshot
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM blobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let bodiless: i64 = snapshot
            .query_row(
                "SELECT count(*) FROM provenance WHERE body_ref IS NOT NULL
                 AND body_ref NOT IN (SELECT digest FROM provenance_bodies)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        drop(snapshot);
        if bodiless > 0 {
            problems.push(format!(
                "{bodiless} provenance rows name a body the index does not hold"
            ));
        }
        if (count, bytes) != (real_count, real_bytes) {
            problems.push(format!(
                "totals say {count} blobs / {bytes} bytes, the blobs table holds {real_count} / {real_bytes}"
            ));
        }
        Ok(problems)
    }
}

/// Writes that several operations share; each runs inside a transaction.
pub mod tx {
    use super::*;
    use rusqlite::Transaction;

    /// JSON for a column; a value JSON cannot hold (a non-UTF-8 path) is
    /// an error, not a panic.
    fn to_json<T: serde::Serialize>(v: &T) -> rusqlite::Result<String> {
        serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }

    pub fn insert_blob(
        tx: &Transaction<'_>,
        digest: &Digest,
        size: u64,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO blobs (digest, size, last_used) VALUES (?1, ?2, ?3)
             ON CONFLICT(digest) DO UPDATE SET last_used = excluded.last_used",
        )?
        .execute(params![d(digest), size as i64, now_ms])?;
        Ok(())
    }

    pub fn touch_blob(tx: &Transaction<'_>, digest: &Digest, now_ms: i64) -> rusqlite::Result<()> {
        tx.prepare_cached("UPDATE blobs SET last_used = ?2 WHERE digest = ?1 AND +last_used < ?2")?
            .execute(params![d(digest), now_ms])?;
        Ok(())
    }

    pub fn insert_action(
        tx: &Transaction<'_>,
        key: &ActionKey,
        record: &Digest,
        result: &ActionResult,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        let json = to_json(result)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO actions (key, record, result, duration_ns, created, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?
        .execute(params![
            d(&key.0),
            d(record),
            json,
            result.duration_ns as i64,
            now_ms
        ])?;
        tx.prepare_cached("DELETE FROM action_blobs WHERE key = ?1")?
            .execute([d(&key.0)])?;
        let mut ins =
            tx.prepare_cached("INSERT OR IGNORE INTO action_blobs (key, digest) VALUES (?1, ?2)")?;
        for b in result.blobs().iter().chain([record]) {
            ins.execute(params![d(&key.0), d(b)])?;
        }
        Ok(())
    }

    pub fn insert_manifest(
        tx: &Transaction<'_>,
        key: &ActionKey,
        record: &Digest,
        manifest: &Manifest,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        let json = to_json(manifest)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO manifests (key, record, manifest, last_used) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![d(&key.0), d(record), json, now_ms])?;
        Ok(())
    }

    /// Adds `entry` to the manifest of `direct` (see [`Manifest::add`]),
    /// read and written in the caller's transaction, so that entries two
    /// processes add at once are both kept. The manifest goes with the
    /// blob `record` (the newest entry's action record).
    pub fn add_manifest_entry(
        tx: &Transaction<'_>,
        direct: &ActionKey,
        record: &Digest,
        entry: ManifestEntry,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        let json: Option<String> = tx
            .prepare_cached("SELECT manifest FROM manifests WHERE key = ?1")?
            .query_row([d(&direct.0)], |r| r.get(0))
            .optional()?;
        let mut manifest: Manifest = json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        manifest.add(entry);
        insert_manifest(tx, direct, record, &manifest, now_ms)
    }

    pub fn insert_stat(
        tx: &Transaction<'_>,
        path: &[u8],
        s: &FileStat,
        digest: &Digest,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO stat_cache (path, dev, ino, size, mtime_ns, ctime_ns, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            path,
            s.dev as i64,
            s.ino as i64,
            s.size as i64,
            s.mtime_ns,
            s.ctime_ns,
            d(digest)
        ])?;
        Ok(())
    }

    pub fn insert_run(
        tx: &Transaction<'_>,
        id: Option<i64>,
        started_ns: i64,
        command: &str,
    ) -> rusqlite::Result<i64> {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO runs (id, started_ns, command) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, started_ns, command])?;
        Ok(id.unwrap_or_else(|| tx.last_insert_rowid()))
    }

    /// A provenance row: `record` is its own record blob, `body` a body
    /// the index holds (`insert_provenance_body`), `notes` the row's own.
    pub fn insert_provenance(
        tx: &Transaction<'_>,
        run: i64,
        target: &str,
        record: &Digest,
        body: &Digest,
        notes: &[(String, String)],
    ) -> rusqlite::Result<()> {
        let notes = if notes.is_empty() {
            None
        } else {
            Some(to_json(&notes)?)
        };
        tx.prepare_cached(
            "INSERT OR REPLACE INTO provenance (run, target, record, body, body_ref, notes)
             VALUES (?1, ?2, ?3, '', ?4, ?5)",
        )?
        .execute(params![run, target, d(record), d(body), notes])?;
        Ok(())
    }

    /// A provenance row of schema 1 (rebuilt from its record blob): the
    /// body inline.
    pub fn insert_provenance_inline(
        tx: &Transaction<'_>,
        run: i64,
        target: &str,
        record: &Digest,
        json: &str,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO provenance (run, target, record, body) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![run, target, d(record), json])?;
        Ok(())
    }

    /// A provenance body (JSON of a `Provenance`) under the digest of the
    /// blob that holds it; a body already held is left as it is.
    pub fn insert_provenance_body(
        tx: &Transaction<'_>,
        digest: &Digest,
        json: &str,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO provenance_bodies (digest, size, body) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![d(digest), json.len() as i64, json])?;
        Ok(())
    }

    pub fn has_provenance_body(tx: &Transaction<'_>, digest: &Digest) -> rusqlite::Result<bool> {
        tx.prepare_cached("SELECT 1 FROM provenance_bodies WHERE digest = ?1")?
            .query_row([d(digest)], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }

    /// Removes a blob's row and every entry that needs it: such entries
    /// would only ever be misses.
    pub fn forget_blob(tx: &Transaction<'_>, digest: &Digest) -> rusqlite::Result<()> {
        let keys: Vec<Vec<u8>> = tx
            .prepare_cached("SELECT key FROM action_blobs WHERE digest = ?1")?
            .query_map([d(digest)], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for k in keys {
            tx.prepare_cached("DELETE FROM actions WHERE key = ?1")?
                .execute([&k])?;
            tx.prepare_cached("DELETE FROM action_blobs WHERE key = ?1")?
                .execute([&k])?;
        }
        tx.prepare_cached("DELETE FROM manifests WHERE record = ?1")?
            .execute([d(digest)])?;
        // A provenance row goes with its record blob or its body; a body
        // goes with its blob, or when no row names it any more.
        let bodies: Vec<Vec<u8>> = tx
            .prepare_cached(
                "SELECT DISTINCT body_ref FROM provenance WHERE record = ?1 AND body_ref IS NOT NULL",
            )?
            .query_map([d(digest)], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tx.prepare_cached("DELETE FROM provenance WHERE record = ?1")?
            .execute([d(digest)])?;
        tx.prepare_cached("DELETE FROM provenance WHERE body_ref = ?1")?
            .execute([d(digest)])?;
        tx.prepare_cached("DELETE FROM provenance_bodies WHERE digest = ?1")?
            .execute([d(digest)])?;
        for b in bodies {
            tx.prepare_cached(
                "DELETE FROM provenance_bodies WHERE digest = ?1
                 AND NOT EXISTS (SELECT 1 FROM provenance WHERE body_ref = ?1)",
            )?
            .execute([&b])?;
        }
        tx.prepare_cached("DELETE FROM blobs WHERE digest = ?1")?
            .execute([d(digest)])?;
        Ok(())
    }
}

/// Escapes a path for an SQLite `file:` URI.
fn uri_escape(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            '?' | '#' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_refuses_newer() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("index.sqlite");
        let idx = Index::open(&p).unwrap();
        assert_eq!(idx.user_version().unwrap(), schema::latest());
        drop(idx);
        // Reopening an up-to-date index is a no-op.
        Index::open(&p).unwrap();
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Index::open(&p),
            Err(CasError::SchemaTooNew { found: 99, .. })
        ));
    }

    /// An index of schema 1 with provenance rows keeps them as they are
    /// (bodies inline); each reads with its record's digest as its body's.
    #[test]
    fn migrates_schema_1_provenance() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("index.sqlite");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        let body = Provenance {
            notes: vec![("status".into(), "ok".into())],
            ..Provenance::default()
        };
        let json = serde_json::to_string(&body).unwrap();
        for (run, rec) in [(1, b"r1"), (2, b"r2")] {
            c.execute(
                "INSERT INTO provenance (run, target, record, body) VALUES (?1, 'a:default', ?2, ?3)",
                params![run, d(&Digest::of(rec)), json],
            )
            .unwrap();
        }
        drop(c);
        let idx = Index::open(&p).unwrap();
        assert_eq!(idx.user_version().unwrap(), schema::latest());
        let got: Vec<(i64, Digest, Provenance)> = idx
            .provenance("a:default", 10)
            .unwrap()
            .into_iter()
            .map(|r| (r.run, r.body, r.provenance))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, Digest::of(b"r2"), body.clone()),
                (1, Digest::of(b"r1"), body.clone())
            ]
        );
        let counts = idx.counts().unwrap();
        assert_eq!((counts.provenance, counts.provenance_bodies), (2, 0));
        assert!(idx.quick_check().unwrap().is_empty());
    }

    /// Schema 3 changed no table: a read-only open takes a schema-2 index
    /// as it is (it writes nothing); a writable open migrates it. Schema 1
    /// still needs the migration.
    #[test]
    fn read_only_opens_schema_2() {
        let t = tempfile::tempdir().unwrap();
        let at = |v: usize| {
            let p = t.path().join(format!("index-{v}.sqlite"));
            let c = Connection::open(&p).unwrap();
            for sql in &schema::MIGRATIONS[..v] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", v as i64).unwrap();
            p
        };
        let p2 = at(2);
        assert_eq!(
            Index::open_read_only(&p2).unwrap().user_version().unwrap(),
            2
        );
        assert_eq!(Index::open(&p2).unwrap().user_version().unwrap(), 3);
        assert!(matches!(
            Index::open_read_only(&at(1)),
            Err(CasError::NotACache { .. })
        ));
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("index.sqlite");
        std::fs::write(&p, vec![0x5au8; 8192]).unwrap();
        assert!(Index::open(&p).is_err());
    }

    #[test]
    fn uri_escaping() {
        assert_eq!(uri_escape("/a?b#c%d"), "/a%3Fb%23c%25d");
    }
}

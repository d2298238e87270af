//! `LocalCas`: a cache folder on this machine (blobs + SQLite index).
//!
//! Publishing order, which makes a crash at any point harmless:
//! 1. every blob of an entry is written to `tmp/`, fsynced, renamed into
//!    `blobs/` (a crash leaves a temp file or an unreferenced blob);
//! 2. the record blob is written the same way;
//! 3. one index transaction adds the rows (a crash before the commit leaves
//!    the index as it was).
//!
//! An entry is published when its put returned Ok. Gc, clear and repair
//! take the cache's lock exclusively; publishers take it shared, so a blob
//! an entry is about to reference is never removed under it.

use crate::action::{ActionResult, NewAction, OutputFile, OutputSource};
use crate::blobs::{BlobDir, BlobRead};
use crate::digest::{hash_file, Digest};
use crate::error::{CasError, Result};
use crate::fsutil::{self, FileLock, LockKind};
use crate::index::{tx, Index, ProvenanceRow, RunInfo};
use crate::keys::ActionKey;
use crate::layout::{self, Layout};
use crate::manifest::Manifest;
use crate::record::{self, Provenance, Record};
use crate::statcache::{now_ns, FileStat, RunClock};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Pending writes are flushed once this many have piled up.
const FLUSH_EVERY: usize = 4096;
/// How many batched actions wait for one index transaction at most (each
/// commit costs ~0.7 ms and WAL pages; their blobs are already stored).
const BATCH_MAX: usize = 32;

#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Never write: lookups only (a read-only cache folder).
    pub read_only: bool,
    /// fsync blobs before publishing them. Off by default: every read
    /// hashes a blob, so a blob torn by a power failure is a miss (removed,
    /// and its entries with it), never a wrong output; a process crash is
    /// safe either way. On, each stored object cost two more syncs (≈ 3 ms
    /// between one compile and the next on the bench machine).
    pub durable: bool,
    /// Evict least-recently-used blobs beyond this size on `flush`.
    pub max_size: Option<u64>,
    /// A hit refreshes an entry's recency only when it is older than this
    /// (LRU at this granularity; saves a write per hit on warm builds).
    pub touch_after: std::time::Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read_only: false,
            durable: false,
            max_size: None,
            touch_after: std::time::Duration::from_secs(600),
        }
    }
}

#[derive(Default)]
struct Pending {
    /// New stat-cache entries, not yet written.
    stats: HashMap<Vec<u8>, (FileStat, Digest)>,
    touched_blobs: HashSet<Digest>,
    touched_actions: HashSet<ActionKey>,
}

impl Pending {
    fn len(&self) -> usize {
        self.stats.len() + self.touched_blobs.len() + self.touched_actions.len()
    }
}

struct Inner {
    index: Index,
    pending: Pending,
    /// Actions whose blobs are stored, waiting for their index rows
    /// ([`LocalCas::put_action_in_manifest_batched`]).
    batched: Vec<Batched>,
    /// Held while `batched` is not empty, so no gc removes their blobs
    /// before the index names them.
    batch_lock: Option<FileLock>,
    /// The whole stat cache in memory, once `preload_stat_cache` ran.
    stat_memory: Option<HashMap<Vec<u8>, (FileStat, Digest)>>,
}

/// The manifest entry an action's record holds: `headers` under `direct`.
fn manifest_entry(direct: &ActionKey, headers: &[(PathBuf, Digest)]) -> record::EntryRecord {
    record::EntryRecord {
        direct: direct.0,
        headers: headers.to_vec(),
    }
}

/// An action's index rows, ready to commit.
struct Batched {
    key: ActionKey,
    result: ActionResult,
    sized: Vec<(Digest, u64)>,
    entry: Option<record::EntryRecord>,
    record: (Digest, u64),
}

pub struct LocalCas {
    pub(crate) layout: Layout,
    pub(crate) blobs: BlobDir,
    inner: Mutex<Inner>,
    read_only: bool,
    max_size: Option<u64>,
    touch_after_ms: i64,
}

/// A run in progress; see `LocalCas::begin_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub i64);

pub(crate) fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

impl LocalCas {
    pub fn open(root: impl AsRef<Path>) -> Result<LocalCas> {
        LocalCas::open_with(root, OpenOptions::default())
    }

    pub fn open_with(root: impl AsRef<Path>, opts: OpenOptions) -> Result<LocalCas> {
        let layout = Layout::new(root.as_ref());
        if opts.read_only {
            check_format(&layout, false)?;
        } else {
            init_folder(&layout)?;
        }
        let index = if opts.read_only {
            Index::open_read_only(&layout.index())?
        } else {
            open_or_recover_index(&layout)?
        };
        let cas = LocalCas {
            blobs: BlobDir {
                layout: layout.clone(),
                durable: opts.durable,
            },
            layout,
            inner: Mutex::new(Inner {
                index,
                pending: Pending::default(),
                batched: Vec::new(),
                batch_lock: None,
                stat_memory: None,
            }),
            read_only: opts.read_only,
            max_size: opts.max_size,
            touch_after_ms: opts.touch_after.as_millis() as i64,
        };
        if cas.index_is_empty()? && !cas.read_only && !cas.blobs.scan()?.is_empty() {
            // A fresh index beside existing blobs: the index was lost.
            cas.rebuild_index()?;
        }
        Ok(cas)
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves valid data (every
        // write is a transaction), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        f(&mut self.lock_inner().index)
    }

    fn index_is_empty(&self) -> Result<bool> {
        self.with_index(|i| i.totals().map(|(count, _)| count == 0))
    }

    pub(crate) fn writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(CasError::OpenedReadOnly {
                path: self.layout.root.clone(),
                op,
            });
        }
        Ok(())
    }

    pub(crate) fn publish_lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.layout.lock(), LockKind::Shared)
    }

    pub(crate) fn exclusive_lock(&self) -> Result<FileLock> {
        // Our own batch's shared lock would wait for this one forever.
        self.commit_rows(None)?;
        FileLock::acquire(&self.layout.lock(), LockKind::Exclusive)
    }

    // ---- blobs ----

    /// Stores bytes as a blob and registers it in the index.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        self.writable("storing a blob")?;
        let _lock = self.publish_lock()?;
        let d = self.blobs.put_bytes(bytes)?;
        self.register_blobs(&[(d, bytes.len() as u64)])?;
        Ok(d)
    }

    /// Stores a file's bytes as a blob and registers it.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64)> {
        self.writable("storing a blob")?;
        let _lock = self.publish_lock()?;
        let (d, size) = self.blobs.put_file(path)?;
        self.register_blobs(&[(d, size)])?;
        Ok((d, size))
    }

    fn register_blobs(&self, blobs: &[(Digest, u64)]) -> Result<()> {
        let now = now_ms();
        self.with_index(|i| {
            i.write(|t| {
                for (d, s) in blobs {
                    tx::insert_blob(t, d, *s, now)?;
                }
                Ok(())
            })
        })
    }

    /// A blob's verified bytes; None when absent or corrupt (a corrupt one
    /// is removed, and forgotten by the index, on the way).
    pub fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        match self.blobs.read(d)? {
            BlobRead::Hit(b) => {
                self.touch(|p| {
                    p.touched_blobs.insert(*d);
                });
                Ok(Some(b))
            }
            BlobRead::Missing => Ok(None),
            BlobRead::Corrupt => {
                self.forget_blob(d);
                Ok(None)
            }
        }
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blobs.exists(d)
    }

    /// Writes a verified blob to `dest`; Ok(false) on a miss.
    pub fn materialize(&self, d: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        let ok = self.blobs.materialize(d, dest, executable)?;
        if !ok {
            self.forget_blob(d);
        }
        Ok(ok)
    }

    /// Best effort: a blob found corrupt or missing is dropped from the index
    /// with everything that needs it, so later lookups miss cleanly.
    fn forget_blob(&self, d: &Digest) {
        if self.read_only {
            return;
        }
        let _ = self.with_index(|i| i.write(|t| tx::forget_blob(t, d)));
    }

    // ---- actions ----

    /// Stores the outputs and captured output of a successful action, then
    /// its entry. A failed action (exit status ≠ 0) is refused.
    pub fn put_action(&self, key: &ActionKey, action: &NewAction<'_>) -> Result<ActionResult> {
        self.store_action(key, action, None)
    }

    /// [`LocalCas::put_action`] for an action a direct-mode manifest leads
    /// to: the entry (`headers` under `direct`, leading to `key`) is added
    /// to the manifest in the same index transaction, and the action's
    /// record holds it, so one record blob does what an action record and
    /// a manifest record did, and entries that two processes add to one
    /// manifest at once are both kept.
    pub fn put_action_in_manifest(
        &self,
        key: &ActionKey,
        action: &NewAction<'_>,
        direct: &ActionKey,
        headers: &[(PathBuf, Digest)],
    ) -> Result<ActionResult> {
        self.store_action(key, action, Some(manifest_entry(direct, headers)))
    }

    /// [`LocalCas::put_action_in_manifest`], with the index rows left to a
    /// later transaction: the next one of this process (any store, or
    /// [`LocalCas::flush`]), or their own once [`BATCH_MAX`] wait. Its
    /// blobs are stored now. For many small actions in a row (a build's
    /// compiles): a lookup in between may miss them, and an error of the
    /// transaction that takes them loses them (they were never cached).
    pub fn put_action_in_manifest_batched(
        &self,
        key: &ActionKey,
        action: &NewAction<'_>,
        direct: &ActionKey,
        headers: &[(PathBuf, Digest)],
    ) -> Result<ActionResult> {
        let lock = self.publish_lock_for(action)?;
        let rows = self.store_blobs(key, action, Some(manifest_entry(direct, headers)))?;
        let result = rows.result.clone();
        let full = {
            let mut inner = self.lock_inner();
            inner.batched.push(rows);
            inner.batch_lock.get_or_insert(lock);
            inner.batched.len() >= BATCH_MAX
        };
        if full {
            self.commit_rows(None)?;
        }
        Ok(result)
    }

    fn store_action(
        &self,
        key: &ActionKey,
        action: &NewAction<'_>,
        entry: Option<record::EntryRecord>,
    ) -> Result<ActionResult> {
        let _lock = self.publish_lock_for(action)?;
        let rows = self.store_blobs(key, action, entry)?;
        let result = rows.result.clone();
        self.commit_rows(Some(rows))?;
        Ok(result)
    }

    /// The shared lock that keeps gc away while a successful action's
    /// blobs are stored; a failed action (exit status ≠ 0) is refused.
    fn publish_lock_for(&self, action: &NewAction<'_>) -> Result<FileLock> {
        if action.exit_code != 0 {
            return Err(CasError::FailedAction {
                exit_code: action.exit_code,
            });
        }
        self.writable("storing an action")?;
        self.publish_lock()
    }

    /// Stores an action's outputs, captured output and record as blobs;
    /// returns the index rows that make it a hit.
    fn store_blobs(
        &self,
        key: &ActionKey,
        action: &NewAction<'_>,
        entry: Option<record::EntryRecord>,
    ) -> Result<Batched> {
        let mut sized = Vec::new();
        let mut outputs = Vec::with_capacity(action.outputs.len());
        for o in &action.outputs {
            let (digest, size) = match o.source {
                OutputSource::Bytes(b) => (self.blobs.put_bytes(b)?, b.len() as u64),
                OutputSource::File(p) => self.blobs.put_file(p)?,
            };
            sized.push((digest, size));
            outputs.push(OutputFile {
                name: o.name.clone(),
                digest,
                size,
                executable: o.executable,
            });
        }
        let stdout = self.blobs.put_bytes(action.stdout)?;
        let stderr = self.blobs.put_bytes(action.stderr)?;
        sized.push((stdout, action.stdout.len() as u64));
        sized.push((stderr, action.stderr.len() as u64));
        let result = ActionResult {
            outputs,
            exit_code: 0,
            stdout,
            stderr,
            duration_ns: action.duration.as_nanos() as u64,
        };
        self.rows(key, result, sized, entry)
    }

    /// An action's index rows, its record stored as a blob.
    fn rows(
        &self,
        key: &ActionKey,
        result: ActionResult,
        sized: Vec<(Digest, u64)>,
        entry: Option<record::EntryRecord>,
    ) -> Result<Batched> {
        let rec = record::encode(&Record::Action {
            key: key.0,
            result: result.clone(),
            entry: entry.clone(),
        })?;
        let record = (self.blobs.put_bytes(&rec)?, rec.len() as u64);
        Ok(Batched {
            key: *key,
            result,
            sized,
            entry,
            record,
        })
    }

    /// Commits the rows [`LocalCas::put_action_in_manifest_batched`] left
    /// (nothing to do when none wait).
    pub fn commit_batched(&self) -> Result<()> {
        self.commit_rows(None)
    }

    /// Commits the batched rows and `extra` in one index transaction.
    fn commit_rows(&self, extra: Option<Batched>) -> Result<()> {
        let mut inner = self.lock_inner();
        let mut rows = std::mem::take(&mut inner.batched);
        rows.extend(extra);
        if rows.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let written = inner.index.write(|t| {
            for b in &rows {
                for (d, s) in &b.sized {
                    tx::insert_blob(t, d, *s, now)?;
                }
                tx::insert_blob(t, &b.record.0, b.record.1, now)?;
                tx::insert_action(t, &b.key, &b.record.0, &b.result, now)?;
                if let Some(e) = &b.entry {
                    let (direct, entry) = e.clone().into_entry(b.key);
                    tx::add_manifest_entry(t, &direct, &b.record.0, entry, now)?;
                }
            }
            Ok(())
        });
        // Written or lost, the batch is over: its blobs need no guard.
        inner.batch_lock = None;
        written
    }

    /// Records an action whose blobs are already in this cache (what a
    /// remote or multi-level copy does). Every blob must be present.
    pub fn put_action_result(&self, key: &ActionKey, result: &ActionResult) -> Result<()> {
        if result.exit_code != 0 {
            return Err(CasError::FailedAction {
                exit_code: result.exit_code,
            });
        }
        self.writable("storing an action")?;
        let _lock = self.publish_lock()?;
        let mut sized = Vec::new();
        for o in &result.outputs {
            sized.push((o.digest, o.size));
        }
        for d in [result.stdout, result.stderr] {
            let size = std::fs::metadata(self.blobs.path(&d)).map(|m| m.len());
            sized.push((d, size.unwrap_or(u64::MAX)));
        }
        for (d, size) in &sized {
            if !self.blobs.has(d, *size) {
                return Err(CasError::Invalid {
                    what: "action result (a blob it names is not in the cache)",
                    value: d.to_hex(),
                });
            }
        }
        let rows = self.rows(key, result.clone(), sized, None)?;
        self.commit_rows(Some(rows))
    }

    /// The cached result of an action, if every blob it needs is present.
    /// Output bytes are verified when read (`get_blob`, `materialize`).
    pub fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        let found = self.with_index(|i| i.lookup_action(key))?;
        Ok(self.check_hit(key, found))
    }

    /// `get_action` for many keys, with one index transaction.
    pub fn get_actions(&self, keys: &[ActionKey]) -> Result<Vec<Option<ActionResult>>> {
        let found = self.with_index(|i| i.lookup_actions(keys))?;
        Ok(keys
            .iter()
            .zip(found)
            .map(|(k, f)| self.check_hit(k, f))
            .collect())
    }

    /// A hit counts only if every blob it needs is there; it refreshes the
    /// entry's recency when that is older than `touch_after`.
    fn check_hit(
        &self,
        key: &ActionKey,
        found: Option<(ActionResult, i64)>,
    ) -> Option<ActionResult> {
        let (result, last_used) = found?;
        if !result.blobs().iter().all(|d| self.blobs.exists(d)) {
            return None;
        }
        if now_ms() - last_used >= self.touch_after_ms {
            self.touch(|p| {
                p.touched_actions.insert(*key);
            });
        }
        Some(result)
    }

    /// The index lookup alone (no file-system check): for benchmarks and
    /// callers that check blobs themselves.
    pub fn lookup_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        Ok(self.with_index(|i| i.lookup_action(key))?.map(|(r, _)| r))
    }

    /// `lookup_action` for many keys, with one index transaction.
    pub fn lookup_actions(&self, keys: &[ActionKey]) -> Result<Vec<Option<ActionResult>>> {
        let found = self.with_index(|i| i.lookup_actions(keys))?;
        Ok(found.into_iter().map(|f| f.map(|(r, _)| r)).collect())
    }

    // ---- direct-mode manifests ----

    pub fn get_manifest(&self, direct: &ActionKey) -> Result<Option<Manifest>> {
        self.with_index(|i| i.lookup_manifest(direct))
    }

    pub fn put_manifest(&self, direct: &ActionKey, manifest: &Manifest) -> Result<()> {
        self.writable("storing a manifest")?;
        let _lock = self.publish_lock()?;
        let rec = record::encode(&Record::Manifest {
            key: direct.0,
            manifest: manifest.clone(),
        })?;
        let rd = self.blobs.put_bytes(&rec)?;
        let now = now_ms();
        self.with_index(|i| {
            i.write(|t| {
                tx::insert_blob(t, &rd, rec.len() as u64, now)?;
                tx::insert_manifest(t, direct, &rd, manifest, now)
            })
        })
    }

    // ---- stat cache ----

    /// A file's digest, from the stat cache when its metadata is unchanged
    /// and older than the run (see `RunClock::trusts`), else by hashing it.
    pub fn file_digest(&self, path: &Path, clock: &RunClock) -> Result<Digest> {
        // Entries are keyed by absolute path; most callers already pass one.
        let abs: std::borrow::Cow<'_, Path> = if path.is_absolute() {
            path.into()
        } else {
            std::path::absolute(path)
                .map_err(|e| CasError::io("resolve", path, e))?
                .into()
        };
        let meta = std::fs::metadata(&abs).map_err(|e| CasError::io("stat", &abs, e))?;
        let stat = FileStat::from_metadata(&meta);
        let key = abs.as_os_str().as_bytes();
        if clock.trusts(&stat) {
            if let Some(d) = self.cached_digest(key, &stat)? {
                return Ok(d);
            }
        }
        let digest = hash_file(&abs)?;
        let after = std::fs::metadata(&abs).map(|m| FileStat::from_metadata(&m));
        if !self.read_only && clock.trusts(&stat) && after.ok() == Some(stat) {
            self.touch(|p| {
                p.stats.insert(key.to_vec(), (stat, digest));
            });
        }
        Ok(digest)
    }

    fn cached_digest(&self, key: &[u8], stat: &FileStat) -> Result<Option<Digest>> {
        let inner = self.lock_inner();
        let same = |(s, d): &(FileStat, Digest)| (s == stat).then_some(*d);
        if let Some(e) = inner.pending.stats.get(key) {
            return Ok(same(e));
        }
        if let Some(mem) = &inner.stat_memory {
            return Ok(mem.get(key).and_then(same));
        }
        Ok(inner.index.lookup_stat(key)?.as_ref().and_then(same))
    }

    /// Loads the whole stat cache into memory, so each later hit costs a
    /// stat() and a hash-map lookup instead of an index query. Worth it
    /// when most files of a large tree will be looked at (a sweep, watch
    /// mode); returns how many entries were loaded.
    pub fn preload_stat_cache(&self) -> Result<usize> {
        let mut inner = self.lock_inner();
        let rows = inner.index.all_stats()?;
        let n = rows.len();
        inner.stat_memory = Some(rows.into_iter().map(|(p, s, d)| (p, (s, d))).collect());
        Ok(n)
    }

    // ---- runs and provenance ----

    pub fn begin_run(&self, command: &str) -> Result<RunId> {
        self.writable("recording a run")?;
        let started = now_ns();
        self.with_index(|i| i.write(|t| tx::insert_run(t, None, started, command)))
            .map(RunId)
    }

    pub fn finish_run(&self, run: RunId, status: &str) -> Result<()> {
        self.writable("recording a run")?;
        let now = now_ns();
        self.with_index(|i| {
            i.write(|t| {
                t.execute(
                    "UPDATE runs SET finished_ns = ?2, status = ?3 WHERE id = ?1",
                    rusqlite::params![run.0, now, status],
                )
                .map(drop)
            })
        })
    }

    /// Records a target's provenance in a run, all of it in the body.
    pub fn record_provenance(&self, run: RunId, target: &str, p: &Provenance) -> Result<Digest> {
        self.record_provenance_with(run, target, p, &[])
    }

    /// Records a target's provenance in a run: `p` is the body, stored once
    /// per distinct content (a blob, and a row of the index's bodies);
    /// `notes` are the run's (say, the tree's revision), kept in the row,
    /// which names the body. Returns the body's digest.
    pub fn record_provenance_with(
        &self,
        run: RunId,
        target: &str,
        p: &Provenance,
        notes: &[(String, String)],
    ) -> Result<Digest> {
        self.writable("recording provenance")?;
        let _lock = self.publish_lock()?;
        let json = record::provenance_json(p)?;
        let body_blob = record::provenance_body_blob(&json);
        let body = Digest::of(&body_blob);
        // A body held already (the same record as an earlier build) is
        // neither written nor stored again.
        if self.with_index(|i| i.has_provenance_body(&body))?
            && self.put_row(run, target, &body, notes, None)?
        {
            return Ok(body);
        }
        // Not fsynced, like the row's record (see `put_row`).
        self.blobs.put_bytes_synced(&body_blob, false)?;
        let size = body_blob.len() as u64;
        self.put_row(run, target, &body, notes, Some((json.as_str(), size)))?;
        Ok(body)
    }

    /// Records that a target's build in `run` has the body of an earlier
    /// record (an up-to-date build), with the row's own `notes`: a small
    /// row, no new body. Ok(false) when the index no longer holds that body
    /// (then nothing is recorded).
    pub fn record_provenance_again(
        &self,
        run: RunId,
        target: &str,
        body: &Digest,
        notes: &[(String, String)],
    ) -> Result<bool> {
        self.writable("recording provenance")?;
        let _lock = self.publish_lock()?;
        self.put_row(run, target, body, notes, None)
    }

    /// Writes a row's record blob, then in one transaction the row (and the
    /// body, when `new_body` gives its JSON and blob size). Ok(false) when
    /// the body is neither given nor held by the index.
    fn put_row(
        &self,
        run: RunId,
        target: &str,
        body: &Digest,
        notes: &[(String, String)],
        new_body: Option<(&str, u64)>,
    ) -> Result<bool> {
        let info = self.with_index(|i| i.run(run.0))?;
        let (started, command) = info.map(|r| (r.started_ns, r.command)).unwrap_or_default();
        let rec = record::encode(&Record::ProvenanceRef {
            run: run.0,
            run_started_ns: started,
            run_command: command,
            target: target.to_string(),
            body: *body,
            notes: notes.to_vec(),
        })?;
        // Not fsynced: the index row is the record's primary copy (and
        // SQLite's synchronous=NORMAL may lose it on a power failure
        // anyway); the blob only rebuilds the index, and a torn one is a
        // miss that takes its row with it. An fsync pair per target was
        // most of what recording cost a no-op sweep (~5 ms of ~5.5).
        let rd = self.blobs.put_bytes_synced(&rec, false)?;
        let now = now_ms();
        self.with_index(|i| {
            i.write(|t| {
                match new_body {
                    Some((json, size)) => {
                        tx::insert_blob(t, body, size, now)?;
                        tx::insert_provenance_body(t, body, json)?;
                    }
                    None if tx::has_provenance_body(t, body)? => tx::touch_blob(t, body, now)?,
                    None => return Ok(false),
                }
                tx::insert_blob(t, &rd, rec.len() as u64, now)?;
                tx::insert_provenance(t, run.0, target, &rd, body, notes)?;
                Ok(true)
            })
        })
    }

    /// Every target with a provenance record, sorted.
    pub fn provenance_targets(&self) -> Result<Vec<String>> {
        self.with_index(|i| i.provenance_targets())
    }

    /// The newest provenance records of a target, newest first, whole: the
    /// row's notes, then the body's.
    pub fn provenance(&self, target: &str, limit: u32) -> Result<Vec<(RunId, Provenance)>> {
        self.with_index(|i| i.provenance(target, limit)).map(|v| {
            v.into_iter()
                .map(|r| {
                    let mut p = r.provenance;
                    if !r.notes.is_empty() {
                        p.notes.splice(0..0, r.notes);
                    }
                    (RunId(r.run), p)
                })
                .collect()
        })
    }

    /// The newest provenance record of a target as stored: body (with its
    /// digest, what [`LocalCas::record_provenance_again`] takes) and the
    /// row's notes apart.
    pub fn last_provenance(&self, target: &str) -> Result<Option<ProvenanceRow>> {
        self.with_index(|i| i.provenance(target, 1))
            .map(|v| v.into_iter().next())
    }

    pub fn runs(&self, limit: u32) -> Result<Vec<RunInfo>> {
        self.with_index(|i| i.runs(limit))
    }

    // ---- pending writes ----

    fn touch(&self, f: impl FnOnce(&mut Pending)) {
        if self.read_only {
            return;
        }
        let full = {
            let mut inner = self.lock_inner();
            f(&mut inner.pending);
            inner.pending.len() >= FLUSH_EVERY
        };
        if full {
            // Recency and stat entries are hints: losing them is harmless.
            let _ = self.flush_pending();
        }
    }

    fn flush_pending(&self) -> Result<()> {
        let mut inner = self.lock_inner();
        if inner.pending.len() == 0 {
            return Ok(());
        }
        let pending = std::mem::take(&mut inner.pending);
        if let Some(mem) = &mut inner.stat_memory {
            mem.extend(pending.stats.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let now = now_ms();
        inner.index.write(|t| {
            for (path, (stat, d)) in &pending.stats {
                tx::insert_stat(t, path, stat, d)?;
            }
            for d in &pending.touched_blobs {
                tx::touch_blob(t, d, now)?;
            }
            // A used action keeps every blob it needs (record included) recent.
            let mut action = t.prepare_cached("UPDATE actions SET last_used = ?2 WHERE key = ?1")?;
            let mut blobs = t.prepare_cached(
                // `+last_used` keeps SQLite from scanning the LRU index
                // instead of probing the few digests by primary key.
                "UPDATE blobs SET last_used = ?2
                 WHERE digest IN (SELECT digest FROM action_blobs WHERE key = ?1) AND +last_used < ?2",
            )?;
            for k in &pending.touched_actions {
                action.execute(rusqlite::params![&k.0 .0[..], now])?;
                blobs.execute(rusqlite::params![&k.0 .0[..], now])?;
            }
            Ok(())
        })
    }

    /// Ends the read transaction single lookups share (so commits of
    /// other processes become visible and their WAL can be checkpointed),
    /// writes pending stat entries and recency, then enforces the size
    /// bound if one was set. Call at the end of a run or a burst of
    /// lookups (a long-running process: after each job); drop also does it.
    pub fn flush(&self) -> Result<()> {
        self.lock_inner().index.end_snapshot();
        if self.read_only {
            return Ok(());
        }
        self.commit_rows(None)?;
        self.flush_pending()?;
        if let Some(max) = self.max_size {
            let (_, bytes) = self.with_index(|i| i.totals())?;
            if bytes > max {
                self.gc(max)?;
            }
        }
        Ok(())
    }
}

impl Drop for LocalCas {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Creates (or checks) the folder skeleton of a writable cache.
fn init_folder(layout: &Layout) -> Result<()> {
    let root = &layout.root;
    std::fs::create_dir_all(root).map_err(|e| CasError::io("create the cache folder", root, e))?;
    check_format(layout, true)?;
    for dir in [layout.blobs(), layout.tmp()] {
        std::fs::create_dir_all(&dir).map_err(|e| CasError::io("create folder", &dir, e))?;
    }
    if !layout.format().exists() {
        let tmp = layout.tmp();
        fsutil::write_atomic(
            &tmp,
            &layout.root.join(layout::CACHEDIR_TAG),
            layout::CACHEDIR_TAG_BODY.as_bytes(),
            false,
        )?;
        fsutil::write_atomic(
            &tmp,
            &layout.format(),
            format!("{}\n", layout::FORMAT_LINE).as_bytes(),
            true,
        )?;
    }
    // Find out now, with a clear message, whether we may write here.
    fsutil::temp_in(&layout.tmp())?;
    drop(FileLock::acquire(&layout.lock(), LockKind::Shared)?);
    Ok(())
}

/// Refuses folders that are not keyfab caches (so `clear` can never empty
/// someone's home folder) and caches of another layout version.
fn check_format(layout: &Layout, allow_empty: bool) -> Result<()> {
    let not_cache = |reason: String| CasError::NotACache {
        path: layout.root.clone(),
        reason,
    };
    match std::fs::read_to_string(layout.format()) {
        Ok(s) if s.trim_end() == layout::FORMAT_LINE => Ok(()),
        Ok(s) => Err(not_cache(format!(
            "its format file says {:?}, expected {:?}",
            s.trim_end(),
            layout::FORMAT_LINE
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries = std::fs::read_dir(&layout.root)
                .map_err(|e| CasError::io("list", &layout.root, e))?;
            let foreign = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .find(|n| {
                    !["blobs", "tmp", "lock", layout::CACHEDIR_TAG]
                        .contains(&n.to_string_lossy().as_ref())
                });
            match foreign {
                None if allow_empty => Ok(()),
                None => Err(not_cache("it has no format file".into())),
                Some(n) => Err(not_cache(format!(
                    "it has no format file and holds other things ({})",
                    n.to_string_lossy()
                ))),
            }
        }
        Err(e) => Err(CasError::io("read", &layout.format(), e)),
    }
}

/// Opens the index; an index SQLite cannot read is moved aside and a new
/// one is built from the blobs (by `open_with`).
fn open_or_recover_index(layout: &Layout) -> Result<Index> {
    let path = layout.index();
    match Index::open(&path) {
        Ok(i) => Ok(i),
        Err(CasError::Index { source, .. })
            if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ) =>
        {
            let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), now_ms()));
            std::fs::rename(&path, &aside).map_err(|e| CasError::io("move aside", &path, e))?;
            for ext in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            Index::open(&path)
        }
        Err(e) => Err(e),
    }
}

//! Stats, gc, verify (and repair), clear, and rebuilding the index from the
//! blobs. All of these see the whole cache; the ones that remove things
//! hold the cache lock exclusively.

use crate::blobs::{BlobRead, ScanEntry};
use crate::digest::Digest;
use crate::error::{CasError, Result};
use crate::index::{tx, BlobRow, Counts};
use crate::local::{now_ms, LocalCas};
use crate::record::{self, Record};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Temp files older than this are leftovers of a crash (a live writer
/// finishes a blob in far less).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub root: PathBuf,
    #[serde(flatten)]
    pub counts: Counts,
    pub temp_files: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub max_size: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub blobs_removed: u64,
    pub actions_removed: u64,
    pub temp_files_removed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// Blobs whose bytes do not match their name.
    pub corrupt: Vec<Digest>,
    /// Blobs the index lists (or an entry needs) but the folder lacks.
    pub missing: Vec<Digest>,
    /// Files in `blobs/` that are not blobs.
    pub stray: Vec<PathBuf>,
    /// Problems SQLite's own check found.
    pub index_problems: Vec<String>,
    /// Harmless: valid blobs not in the index (a crash between writing a
    /// blob and committing its entry), and temp files.
    pub unindexed: u64,
    pub temp_files: u64,
    /// What `--repair` did.
    pub repaired: Option<RepairReport>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    pub corrupt_removed: u64,
    pub missing_forgotten: u64,
    pub stray_removed: u64,
    pub unindexed_registered: u64,
    pub temp_files_removed: u64,
    pub index_rebuilt: bool,
}

impl VerifyReport {
    /// No corruption, nothing missing, index sound. Unindexed blobs and
    /// temp files are normal after a crash and do not count.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.stray.is_empty()
            && self.index_problems.is_empty()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClearReport {
    pub blobs_removed: u64,
    pub bytes_removed: u64,
}

/// Which blobs to evict, least recently used first, to get to `target`
/// bytes. Pure, so the policy is testable on its own.
pub fn choose_victims(mut rows: Vec<BlobRow>, total: u64, target: u64) -> Vec<BlobRow> {
    if total <= target {
        return Vec::new();
    }
    rows.sort_by_key(|r| (r.last_used, r.digest));
    let mut freed = 0u64;
    rows.into_iter()
        .take_while(|r| {
            let need = total - freed > target;
            freed += r.size;
            need
        })
        .collect()
}

fn temp_files(cas: &LocalCas, older_than: Option<Duration>) -> Result<Vec<PathBuf>> {
    let dir = cas.layout.tmp();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CasError::io("list", &dir, e)),
    };
    let now = SystemTime::now();
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| match older_than {
            None => true,
            Some(age) => e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= age)
                .unwrap_or(false),
        })
        .map(|e| e.path())
        .collect())
}

fn remove_files(paths: &[PathBuf]) -> Result<u64> {
    let mut n = 0;
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CasError::io("remove", p, e)),
        }
    }
    Ok(n)
}

impl LocalCas {
    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            root: self.layout.root.clone(),
            counts: self.with_index(|i| i.counts())?,
            temp_files: temp_files(self, None)?.len() as u64,
        })
    }

    /// Evicts least-recently-used blobs (and the entries that need them)
    /// until the cache holds at most `max_size` bytes; removes stale temp
    /// files.
    pub fn gc(&self, max_size: u64) -> Result<GcReport> {
        self.writable("gc")?;
        let _lock = self.exclusive_lock()?;
        let before = self.with_index(|i| i.counts())?;
        let victims = {
            let rows = self.with_index(|i| i.blob_rows())?;
            choose_victims(rows, before.bytes, max_size)
        };
        let forget = || {
            self.with_index(|i| {
                i.write(|t| {
                    for v in &victims {
                        tx::forget_blob(t, &v.digest)?;
                    }
                    Ok(())
                })
            })
        };
        match forget() {
            Ok(()) => {
                for v in &victims {
                    self.blobs.remove(&v.digest)?;
                }
            }
            // On a full disk the index cannot even record the removal: free
            // the files first (their entries become misses, never wrong
            // results), then record it in the room that made.
            Err(e) if e.is_disk_full() => {
                for v in &victims {
                    self.blobs.remove(&v.digest)?;
                }
                forget()?;
            }
            Err(e) => return Err(e),
        }
        let temp_removed = remove_files(&temp_files(self, Some(STALE_TEMP_AGE))?)?;
        let after = self.with_index(|i| i.counts())?;
        Ok(GcReport {
            max_size,
            bytes_before: before.bytes,
            bytes_after: after.bytes,
            blobs_removed: victims.len() as u64,
            actions_removed: before.actions.saturating_sub(after.actions),
            temp_files_removed: temp_removed,
        })
    }

    /// Removes every blob and entry (the stat cache and run history too).
    pub fn clear(&self) -> Result<ClearReport> {
        self.writable("clear")?;
        let _lock = self.exclusive_lock()?;
        let before = self.with_index(|i| i.counts())?;
        let empty_index = || {
            self.with_index(|i| {
                i.write(|t| {
                    t.execute_batch(
                        "DELETE FROM action_blobs; DELETE FROM actions; DELETE FROM manifests;
                         DELETE FROM provenance; DELETE FROM provenance_bodies;
                         DELETE FROM runs; DELETE FROM stat_cache;
                         DELETE FROM blobs; UPDATE totals SET count = 0, bytes = 0;",
                    )
                })
            })
        };
        let remove_all = || -> Result<u64> {
            let mut removed = 0;
            for e in self.blobs.scan()? {
                if let ScanEntry::Blob { digest, .. } = e {
                    self.blobs.remove(&digest)?;
                    removed += 1;
                }
            }
            Ok(removed)
        };
        let removed = match empty_index() {
            Ok(()) => remove_all()?,
            // A full disk: make room first (see gc).
            Err(e) if e.is_disk_full() => {
                let n = remove_all()?;
                empty_index()?;
                n
            }
            Err(e) => return Err(e),
        };
        remove_files(&temp_files(self, None)?)?;
        Ok(ClearReport {
            blobs_removed: removed,
            bytes_removed: before.bytes,
        })
    }

    /// Hashes every blob and cross-checks the index against the folder.
    /// With `repair`, fixes what it finds (under the exclusive lock).
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        if repair {
            self.writable("verify --repair")?;
        }
        let _lock = if repair {
            self.exclusive_lock()?
        } else {
            self.publish_lock()?
        };
        let mut report = VerifyReport {
            index_problems: self.with_index(|i| i.quick_check())?,
            ..VerifyReport::default()
        };
        // Index first, then the folder: a blob published in between shows
        // up as unindexed (harmless), never as missing.
        let rows: HashMap<Digest, BlobRow> = self
            .with_index(|i| i.blob_rows())?
            .into_iter()
            .map(|r| (r.digest, r))
            .collect();
        let dangling = self.with_index(|i| i.dangling_refs())?;
        let mut on_disk = HashSet::new();
        let mut unindexed = Vec::new();
        for e in self.blobs.scan()? {
            match e {
                ScanEntry::Stray { path } => report.stray.push(path),
                ScanEntry::Blob { digest, size } => {
                    report.blobs_checked += 1;
                    report.bytes_checked += size;
                    match self.blobs.check(&digest)? {
                        BlobRead::Hit(_) => {
                            on_disk.insert(digest);
                            if !rows.contains_key(&digest) {
                                unindexed.push((digest, size));
                            }
                        }
                        BlobRead::Corrupt => report.corrupt.push(digest),
                        BlobRead::Missing => {}
                    }
                }
            }
        }
        let corrupt: HashSet<Digest> = report.corrupt.iter().copied().collect();
        report.missing = rows
            .keys()
            .chain(dangling.iter())
            .filter(|d| !on_disk.contains(d) && !corrupt.contains(d))
            .filter(|d| !self.blobs.exists(d))
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        report.missing.sort();
        report.unindexed = unindexed.len() as u64;
        let temps = temp_files(self, None)?;
        report.temp_files = temps.len() as u64;
        if repair {
            report.repaired = Some(self.repair(&report, &unindexed, &temps)?);
        }
        Ok(report)
    }

    fn repair(
        &self,
        report: &VerifyReport,
        unindexed: &[(Digest, u64)],
        temps: &[PathBuf],
    ) -> Result<RepairReport> {
        let mut r = RepairReport::default();
        if !report.index_problems.is_empty() {
            self.rebuild_index_locked()?;
            r.index_rebuilt = true;
        }
        for d in &report.corrupt {
            self.blobs.remove(d)?;
            r.corrupt_removed += 1;
        }
        let forget: Vec<Digest> = report
            .corrupt
            .iter()
            .chain(&report.missing)
            .copied()
            .collect();
        r.missing_forgotten = report.missing.len() as u64;
        self.with_index(|i| {
            i.write(|t| {
                for d in &forget {
                    tx::forget_blob(t, d)?;
                }
                Ok(())
            })
        })?;
        r.stray_removed = remove_files(&report.stray)?;
        if !r.index_rebuilt {
            r.unindexed_registered = self.register_found(unindexed)?;
        }
        r.temp_files_removed = remove_files(temps)?;
        Ok(r)
    }

    /// Adds blobs found on disk to the index; record blobs bring their
    /// entries back too (if every blob they need is there). A provenance
    /// body comes back with the rows that name it.
    fn register_found(&self, found: &[(Digest, u64)]) -> Result<u64> {
        let now = now_ms();
        let mut records = Vec::new();
        for (d, _) in found {
            if let BlobRead::Hit(bytes) = self.blobs.read(d)? {
                if record::is_record(&bytes) {
                    if let Some(rec) = record::decode(&bytes) {
                        records.push((*d, rec));
                    }
                }
            }
        }
        // The JSON of every body a row names: found with it, or on disk
        // (already indexed); None when it is nowhere (then the row comes
        // back only if the index still holds the body).
        let mut bodies: HashMap<Digest, Option<String>> = records
            .iter()
            .filter_map(|(d, r)| {
                Some((
                    *d,
                    Some(record::provenance_json(r.provenance_body()?).ok()?),
                ))
            })
            .collect();
        for (_, rec) in &records {
            if let Record::ProvenanceRef { body, .. } = rec {
                if !bodies.contains_key(body) {
                    let json = match self.blobs.read(body)? {
                        BlobRead::Hit(bytes) => record::decode(&bytes)
                            .and_then(|r| record::provenance_json(r.provenance_body()?).ok()),
                        _ => None,
                    };
                    bodies.insert(*body, json);
                }
            }
        }
        let blobs = &self.blobs;
        self.with_index(|i| {
            i.write(|t| {
                for (d, size) in found {
                    tx::insert_blob(t, d, *size, now)?;
                }
                for (rd, rec) in &records {
                    match rec {
                        Record::Action { key, result, entry } => {
                            if result.blobs().iter().all(|b| blobs.exists(b)) {
                                let key = crate::keys::ActionKey(*key);
                                for o in &result.outputs {
                                    tx::insert_blob(t, &o.digest, o.size, now)?;
                                }
                                tx::insert_action(t, &key, rd, result, now)?;
                                if let Some(e) = entry {
                                    let (direct, entry) = e.clone().into_entry(key);
                                    tx::add_manifest_entry(t, &direct, rd, entry, now)?;
                                }
                            }
                        }
                        Record::Manifest { key, manifest } => {
                            // Written by keyfab before actions held their
                            // entries: merged with the entries found so far.
                            for entry in manifest.entries.iter().rev() {
                                let direct = crate::keys::ActionKey(*key);
                                tx::add_manifest_entry(t, &direct, rd, entry.clone(), now)?;
                            }
                        }
                        Record::Provenance {
                            run,
                            run_started_ns,
                            run_command,
                            target,
                            ..
                        } => {
                            // Schema 1: the record holds its body.
                            if let Some(Some(json)) = bodies.get(rd) {
                                tx::insert_run(t, Some(*run), *run_started_ns, run_command)?;
                                tx::insert_provenance_inline(t, *run, target, rd, json)?;
                            }
                        }
                        Record::ProvenanceRef {
                            run,
                            run_started_ns,
                            run_command,
                            target,
                            body,
                            notes,
                        } => {
                            let held = match bodies.get(body) {
                                Some(Some(json)) => {
                                    tx::insert_provenance_body(t, body, json)?;
                                    true
                                }
                                _ => tx::has_provenance_body(t, body)?,
                            };
                            if held && blobs.exists(body) {
                                tx::insert_run(t, Some(*run), *run_started_ns, run_command)?;
                                tx::insert_provenance(t, *run, target, rd, body, notes)?;
                            }
                        }
                        // A body alone is a blob; it comes back with a row.
                        Record::ProvenanceBody { .. } => {}
                    }
                }
                Ok(())
            })
        })?;
        Ok(found.len() as u64)
    }

    /// Rebuilds the index's blob rows, actions, manifests and provenance
    /// from the blob folder alone. The stat cache is kept (it is only a
    /// hint). Returns how many blobs were registered.
    pub fn rebuild_index(&self) -> Result<u64> {
        self.writable("rebuilding the index")?;
        let _lock = self.exclusive_lock()?;
        self.rebuild_index_locked()
    }

    fn rebuild_index_locked(&self) -> Result<u64> {
        self.with_index(|i| {
            i.write(|t| {
                t.execute_batch(
                    "DELETE FROM action_blobs; DELETE FROM actions; DELETE FROM manifests;
                     DELETE FROM provenance; DELETE FROM provenance_bodies; DELETE FROM blobs;",
                )
            })
        })?;
        let mut found = Vec::new();
        for e in self.blobs.scan()? {
            if let ScanEntry::Blob { digest, size } = e {
                match self.blobs.check(&digest)? {
                    BlobRead::Hit(_) => found.push((digest, size)),
                    _ => self.blobs.remove(&digest)?,
                }
            }
        }
        self.register_found(&found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u8, size: u64, last_used: i64) -> BlobRow {
        BlobRow {
            digest: Digest([n; 32]),
            size,
            last_used,
        }
    }

    #[test]
    fn victims_are_least_recently_used_first() {
        let rows = vec![row(1, 10, 300), row(2, 10, 100), row(3, 10, 200)];
        let v = choose_victims(rows.clone(), 30, 15);
        let ids: Vec<u8> = v.iter().map(|r| r.digest.0[0]).collect();
        assert_eq!(ids, vec![2, 3]);
        assert!(choose_victims(rows.clone(), 30, 30).is_empty());
        assert_eq!(choose_victims(rows, 30, 0).len(), 3);
    }
}

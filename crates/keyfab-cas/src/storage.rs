//! The storage trait every cache back end implements, shaped after the
//! Bazel remote-cache protocol (`/cas/<digest>` blobs, `/ac/<key>` action
//! results), so an HTTP implementation can sit beside `LocalCas`; and the
//! read-only and multi-level wrappers.
//!
//! Manifests, the stat cache, runs and provenance are local concerns and
//! live on `LocalCas` itself.

use crate::action::{ActionResult, NewAction, OutputFile, OutputSource};
use crate::digest::Digest;
use crate::error::{CasError, Result};
use crate::keys::ActionKey;
use crate::local::LocalCas;
use std::io::Write;
use std::path::Path;

pub trait Storage: Send + Sync {
    /// For messages: where this storage is.
    fn location(&self) -> String;
    /// Whether puts store anything.
    fn writable(&self) -> bool {
        true
    }
    fn contains_blob(&self, d: &Digest) -> Result<bool>;
    /// Verified bytes, or None when absent or corrupt.
    fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>>;
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest>;
    /// A successful action's result, when every blob it names is present.
    fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>>;
    /// Records a result whose blobs were already put. Refuses failures.
    fn put_action_result(&self, key: &ActionKey, result: &ActionResult) -> Result<()>;

    fn put_file(&self, path: &Path) -> Result<(Digest, u64)> {
        let bytes = std::fs::read(path).map_err(|e| CasError::io("read", path, e))?;
        Ok((self.put_blob(&bytes)?, bytes.len() as u64))
    }

    /// Writes a verified blob to `dest` (atomically); Ok(false) on a miss.
    fn materialize(&self, d: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        let Some(bytes) = self.get_blob(d)? else {
            return Ok(false);
        };
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".keyfab-")
            .tempfile_in(dir)
            .map_err(|e| CasError::io("create a temp file in", dir, e))?;
        tmp.write_all(&bytes)
            .map_err(|e| CasError::io("write", tmp.path(), e))?;
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| CasError::io("chmod", tmp.path(), e))?;
        }
        tmp.persist(dest)
            .map_err(|e| CasError::io("rename into", dest, e.error))?;
        Ok(true)
    }

    /// Stores a finished action: its blobs, then its result.
    fn store_action(&self, key: &ActionKey, action: &NewAction<'_>) -> Result<ActionResult> {
        if action.exit_code != 0 {
            return Err(CasError::FailedAction {
                exit_code: action.exit_code,
            });
        }
        let mut outputs = Vec::new();
        for o in &action.outputs {
            let (digest, size) = match o.source {
                OutputSource::Bytes(b) => (self.put_blob(b)?, b.len() as u64),
                OutputSource::File(p) => self.put_file(p)?,
            };
            outputs.push(OutputFile {
                name: o.name.clone(),
                digest,
                size,
                executable: o.executable,
            });
        }
        let result = ActionResult {
            outputs,
            exit_code: 0,
            stdout: self.put_blob(action.stdout)?,
            stderr: self.put_blob(action.stderr)?,
            duration_ns: action.duration.as_nanos() as u64,
        };
        self.put_action_result(key, &result)?;
        Ok(result)
    }
}

impl Storage for LocalCas {
    fn location(&self) -> String {
        self.root().display().to_string()
    }
    fn writable(&self) -> bool {
        !self.is_read_only()
    }
    fn contains_blob(&self, d: &Digest) -> Result<bool> {
        Ok(self.has_blob(d))
    }
    fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        LocalCas::get_blob(self, d)
    }
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_bytes(bytes)
    }
    fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        LocalCas::get_action(self, key)
    }
    fn put_action_result(&self, key: &ActionKey, result: &ActionResult) -> Result<()> {
        LocalCas::put_action_result(self, key, result)
    }
    fn put_file(&self, path: &Path) -> Result<(Digest, u64)> {
        LocalCas::put_file(self, path)
    }
    fn materialize(&self, d: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        LocalCas::materialize(self, d, dest, executable)
    }
    fn store_action(&self, key: &ActionKey, action: &NewAction<'_>) -> Result<ActionResult> {
        self.put_action(key, action)
    }
}

impl<S: Storage + ?Sized> Storage for &S {
    fn location(&self) -> String {
        (**self).location()
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
    fn contains_blob(&self, d: &Digest) -> Result<bool> {
        (**self).contains_blob(d)
    }
    fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        (**self).get_blob(d)
    }
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        (**self).put_blob(bytes)
    }
    fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        (**self).get_action(key)
    }
    fn put_action_result(&self, key: &ActionKey, result: &ActionResult) -> Result<()> {
        (**self).put_action_result(key, result)
    }
}

/// Reads through, never writes: puts succeed and store nothing (as Bazel's
/// `--noremote_upload_local_results`), so a build proceeds unchanged.
pub struct ReadOnly<S>(pub S);

impl<S: Storage> Storage for ReadOnly<S> {
    fn location(&self) -> String {
        format!("{} (read-only)", self.0.location())
    }
    fn writable(&self) -> bool {
        false
    }
    fn contains_blob(&self, d: &Digest) -> Result<bool> {
        self.0.contains_blob(d)
    }
    fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        self.0.get_blob(d)
    }
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(Digest::of(bytes))
    }
    fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        self.0.get_action(key)
    }
    fn put_action_result(&self, _key: &ActionKey, result: &ActionResult) -> Result<()> {
        if result.exit_code != 0 {
            return Err(CasError::FailedAction {
                exit_code: result.exit_code,
            });
        }
        Ok(())
    }
}

/// Several storages, nearest first (local disk, then a shared cache). A
/// get tries each in turn and copies a hit into the nearer writable
/// levels; a put goes to every writable level.
pub struct MultiLevel {
    pub levels: Vec<Box<dyn Storage>>,
}

impl MultiLevel {
    /// Copies an action's blobs and result into `dest`.
    fn backfill(
        &self,
        from: &dyn Storage,
        dest: &dyn Storage,
        key: &ActionKey,
        r: &ActionResult,
    ) -> Result<bool> {
        for d in r.blobs() {
            if dest.contains_blob(&d)? {
                continue;
            }
            match from.get_blob(&d)? {
                Some(bytes) => {
                    dest.put_blob(&bytes)?;
                }
                None => return Ok(false),
            }
        }
        dest.put_action_result(key, r)?;
        Ok(true)
    }
}

impl Storage for MultiLevel {
    fn location(&self) -> String {
        let names: Vec<String> = self.levels.iter().map(|l| l.location()).collect();
        names.join(" → ")
    }
    fn writable(&self) -> bool {
        self.levels.iter().any(|l| l.writable())
    }
    fn contains_blob(&self, d: &Digest) -> Result<bool> {
        for l in &self.levels {
            if l.contains_blob(d)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    fn get_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        for (i, l) in self.levels.iter().enumerate() {
            if let Some(bytes) = l.get_blob(d)? {
                for nearer in self.levels[..i].iter().filter(|n| n.writable()) {
                    nearer.put_blob(&bytes)?;
                }
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut d = Digest::of(bytes);
        for l in self.levels.iter().filter(|l| l.writable()) {
            d = l.put_blob(bytes)?;
        }
        Ok(d)
    }
    fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>> {
        for (i, l) in self.levels.iter().enumerate() {
            if let Some(r) = l.get_action(key)? {
                for nearer in self.levels[..i].iter().filter(|n| n.writable()) {
                    self.backfill(l.as_ref(), nearer.as_ref(), key, &r)?;
                }
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
    fn put_action_result(&self, key: &ActionKey, result: &ActionResult) -> Result<()> {
        for l in self.levels.iter().filter(|l| l.writable()) {
            l.put_action_result(key, result)?;
        }
        Ok(())
    }
}

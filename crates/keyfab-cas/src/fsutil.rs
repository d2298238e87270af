//! Small file-system helpers: atomic publish, directory fsync, flock.

use crate::error::{CasError, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Makes a rename durable: fsync the folder that holds the new name.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| CasError::io("open folder", dir, e))?;
    f.sync_all()
        .map_err(|e| CasError::io("fsync folder", dir, e))
}

/// A temp file in `tmp_dir` (same file system as the final place, so the
/// rename is atomic).
pub fn temp_in(tmp_dir: &Path) -> Result<tempfile::NamedTempFile> {
    let make = || tempfile::Builder::new().prefix("put-").tempfile_in(tmp_dir);
    match make() {
        // Someone removed tmp/: make it again.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(tmp_dir)
                .map_err(|e| CasError::io("create folder", tmp_dir, e))?;
            make()
        }
        other => other,
    }
    .map_err(|e| CasError::io("create a temp file in", tmp_dir, e))
}

/// Finishes a temp file and renames it to `dest`: the data is fsynced first
/// (when `durable`), so a crash leaves either no file or the whole file.
pub fn publish(tmp: tempfile::NamedTempFile, dest: &Path, durable: bool) -> Result<()> {
    if durable {
        tmp.as_file()
            .sync_data()
            .map_err(|e| CasError::io("fsync", tmp.path(), e))?;
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = match tmp.persist(dest) {
        Ok(_) => None,
        Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => Some(e.file),
        Err(e) => return Err(CasError::io("rename into", dest, e.error)),
    };
    if let Some(tmp) = tmp {
        // The shard folder did not exist yet.
        std::fs::create_dir_all(parent).map_err(|e| CasError::io("create folder", parent, e))?;
        tmp.persist(dest)
            .map_err(|e| CasError::io("rename into", dest, e.error))?;
    }
    if durable {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `bytes` into a temp file and publishes it at `dest`.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut tmp = temp_in(tmp_dir)?;
    tmp.write_all(bytes)
        .map_err(|e| CasError::io("write", tmp.path(), e))?;
    publish(tmp, dest, durable)
}

/// An advisory lock on the cache's lock file; released on drop.
pub struct FileLock {
    _file: Option<File>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockKind {
    Shared,
    Exclusive,
}

impl FileLock {
    pub fn acquire(path: &Path, kind: LockKind) -> Result<FileLock> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .or_else(|e| {
                // A read-only folder: a shared lock on a read handle still works.
                if kind == LockKind::Shared {
                    File::open(path)
                } else {
                    Err(e)
                }
            });
        let file = match file {
            Ok(f) => f,
            // A read-only folder without a lock file: nobody can be
            // publishing there, so there is nothing to wait for.
            Err(e) if kind == LockKind::Shared && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileLock { _file: None });
            }
            Err(e) => return Err(CasError::io("open the lock file", path, e)),
        };
        let op = match kind {
            LockKind::Shared => libc::LOCK_SH,
            LockKind::Exclusive => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock on a descriptor we own; no memory is touched.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock { _file: Some(file) });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(CasError::io("lock", path, err));
            }
        }
    }
}

//! The blob folder: files named by the blake3 digest of their bytes.
//!
//! Invariants: a file under `blobs/` is only ever created by a rename of a
//! complete (and, when durable, fsynced) temp file; a reader never trusts a
//! blob without hashing it, and a blob whose bytes do not match its name is
//! removed and reported as absent.

use crate::digest::{hash_reader, Digest};
use crate::error::{CasError, Result};
use crate::fsutil;
use crate::layout::{digest_of_blob_path, Layout};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What reading a blob found.
#[derive(Debug, PartialEq, Eq)]
pub enum BlobRead {
    Hit(Vec<u8>),
    Missing,
    /// The bytes did not match the digest; the file has been removed.
    Corrupt,
}

/// The empty blob (most actions' stdout and stderr) needs no file: it is
/// always present and always intact.
pub fn is_empty_blob(d: &Digest) -> bool {
    static EMPTY: std::sync::OnceLock<Digest> = std::sync::OnceLock::new();
    d == EMPTY.get_or_init(Digest::empty)
}

#[derive(Debug, Clone)]
pub struct BlobDir {
    pub layout: Layout,
    pub durable: bool,
}

/// One file found by a scan of the blob folder.
#[derive(Debug, Clone)]
pub enum ScanEntry {
    Blob { digest: Digest, size: u64 },
    Stray { path: PathBuf },
}

impl BlobDir {
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.layout.blob(d)
    }

    /// True when a file of the expected size is there (contents are checked
    /// on read, not here).
    pub fn has(&self, d: &Digest, size: u64) -> bool {
        is_empty_blob(d) || std::fs::metadata(self.path(d)).is_ok_and(|m| m.len() == size)
    }

    pub fn exists(&self, d: &Digest) -> bool {
        is_empty_blob(d) || std::fs::symlink_metadata(self.path(d)).is_ok()
    }

    /// Stores bytes; returns their digest. Writing an existing blob again is
    /// a no-op (unless its size is wrong, then it is replaced).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_bytes_synced(bytes, self.durable)
    }

    /// [`Blobs::put_bytes`], fsynced only when `durable` (and the store is).
    pub fn put_bytes_synced(&self, bytes: &[u8], durable: bool) -> Result<Digest> {
        let d = Digest::of(bytes);
        if !self.has(&d, bytes.len() as u64) {
            let durable = durable && self.durable;
            fsutil::write_atomic(&self.layout.tmp(), &self.path(&d), bytes, durable)?;
        }
        Ok(d)
    }

    /// Stores a file's contents, hashing while copying (one read).
    pub fn put_file(&self, src: &Path) -> Result<(Digest, u64)> {
        let mut input = File::open(src).map_err(|e| CasError::io("open", src, e))?;
        let mut tmp = fsutil::temp_in(&self.layout.tmp())?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CasError::io("read", src, e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| CasError::io("write", tmp.path(), e))?;
            size += n as u64;
        }
        let d = Digest(*hasher.finalize().as_bytes());
        if !self.has(&d, size) {
            fsutil::publish(tmp, &self.path(&d), self.durable)?;
        }
        Ok((d, size))
    }

    /// Reads a blob and checks its bytes against its name.
    pub fn read(&self, d: &Digest) -> Result<BlobRead> {
        if is_empty_blob(d) {
            return Ok(BlobRead::Hit(Vec::new()));
        }
        let path = self.path(d);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BlobRead::Missing),
            Err(e) => return Err(CasError::io("read", &path, e)),
        };
        if Digest::of(&bytes) == *d {
            Ok(BlobRead::Hit(bytes))
        } else {
            self.remove_corrupt(d);
            Ok(BlobRead::Corrupt)
        }
    }

    /// Checks a blob without keeping its bytes: Ok(Some(size)) when good.
    pub fn check(&self, d: &Digest) -> Result<BlobRead> {
        if is_empty_blob(d) {
            return Ok(BlobRead::Hit(Vec::new()));
        }
        let path = self.path(d);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BlobRead::Missing),
            Err(e) => return Err(CasError::io("open", &path, e)),
        };
        let (got, _) = hash_reader(f).map_err(|e| CasError::io("read", &path, e))?;
        if got == *d {
            Ok(BlobRead::Hit(Vec::new()))
        } else {
            Ok(BlobRead::Corrupt)
        }
    }

    fn remove_corrupt(&self, d: &Digest) {
        // Best effort: a read-only cache still reports the miss.
        let _ = std::fs::remove_file(self.path(d));
    }

    pub fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path(d);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CasError::io("remove", &path, e)),
        }
    }

    /// Copies a verified blob to `dest` (atomically, via a temp file next to
    /// it). Ok(false) when the blob is missing or corrupt: a miss.
    pub fn materialize(&self, d: &Digest, dest: &Path, executable: bool) -> Result<bool> {
        let bytes = match self.read(d)? {
            BlobRead::Hit(b) => b,
            BlobRead::Missing | BlobRead::Corrupt => return Ok(false),
        };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".keyfab-")
            .tempfile_in(&dir)
            .map_err(|e| CasError::io("create a temp file in", &dir, e))?;
        tmp.write_all(&bytes)
            .map_err(|e| CasError::io("write", tmp.path(), e))?;
        if executable {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(tmp.path(), perms)
                .map_err(|e| CasError::io("chmod", tmp.path(), e))?;
        }
        tmp.persist(dest)
            .map_err(|e| CasError::io("rename into", dest, e.error))?;
        Ok(true)
    }

    /// Every file under `blobs/`: well-named blobs with their sizes, and
    /// stray files that have no business there.
    pub fn scan(&self) -> Result<Vec<ScanEntry>> {
        let root = self.layout.blobs();
        let mut out = Vec::new();
        let shards = match std::fs::read_dir(&root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(CasError::io("list", &root, e)),
        };
        for shard in shards {
            let shard = shard.map_err(|e| CasError::io("list", &root, e))?;
            let shard_path = shard.path();
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if !shard_path.is_dir() {
                out.push(ScanEntry::Stray { path: shard_path });
                continue;
            }
            let files =
                std::fs::read_dir(&shard_path).map_err(|e| CasError::io("list", &shard_path, e))?;
            for f in files {
                let f = f.map_err(|e| CasError::io("list", &shard_path, e))?;
                let name = f.file_name().to_string_lossy().into_owned();
                let meta = f
                    .metadata()
                    .map_err(|e| CasError::io("stat", &f.path(), e))?;
                match digest_of_blob_path(&shard_name, &name) {
                    Some(digest) if meta.is_file() => out.push(ScanEntry::Blob {
                        digest,
                        size: meta.len(),
                    }),
                    _ => out.push(ScanEntry::Stray { path: f.path() }),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, BlobDir) {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        std::fs::create_dir_all(layout.tmp()).unwrap();
        (
            t,
            BlobDir {
                layout,
                durable: false,
            },
        )
    }

    #[test]
    fn empty_blob_needs_no_file() {
        let (_t, b) = dir();
        let d = b.put_bytes(b"").unwrap();
        assert!(!b.path(&d).exists());
        assert!(b.exists(&d));
        assert_eq!(b.read(&d).unwrap(), BlobRead::Hit(Vec::new()));
    }

    #[test]
    fn put_get_round_trip() {
        let (_t, b) = dir();
        let d = b.put_bytes(b"hello").unwrap();
        assert_eq!(b.read(&d).unwrap(), BlobRead::Hit(b"hello".to_vec()));
        assert_eq!(b.read(&Digest::of(b"nope")).unwrap(), BlobRead::Missing);
    }

    #[test]
    fn put_file_hashes_while_copying() {
        let (t, b) = dir();
        let src = t.path().join("src.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (d, n) = b.put_file(&src).unwrap();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        assert_eq!(b.read(&d).unwrap(), BlobRead::Hit(data));
    }

    #[test]
    fn flipped_byte_is_a_miss_and_removed() {
        let (_t, b) = dir();
        let d = b.put_bytes(b"some object code").unwrap();
        let p = b.path(&d);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[3] ^= 0x20;
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(b.check(&d).unwrap(), BlobRead::Corrupt);
        assert_eq!(b.read(&d).unwrap(), BlobRead::Corrupt);
        assert!(!p.exists());
        // Putting the same bytes again repairs it.
        b.put_bytes(b"some object code").unwrap();
        assert!(matches!(b.read(&d).unwrap(), BlobRead::Hit(_)));
    }

    #[test]
    fn materialize_writes_and_refuses_corrupt() {
        let (t, b) = dir();
        let d = b.put_bytes(b"firmware").unwrap();
        let dest = t.path().join("out.hex");
        assert!(b.materialize(&d, &dest, false).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"firmware");
        std::fs::write(b.path(&d), b"firmwarX").unwrap();
        assert!(!b.materialize(&d, &t.path().join("o2"), false).unwrap());
    }
}

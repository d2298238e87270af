//! Typed errors. Every error that touches the file system carries the path,
//! and the two conditions users can act on (a read-only folder, a full disk)
//! have their own variants so the CLI can say so plainly. The OS or SQLite
//! error is the `source()`, not repeated in the message (print the chain,
//! as `anyhow`'s `{:#}` does).

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = CasError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CasError {
    #[error("the cache folder {path} is read-only (cannot {op})")]
    ReadOnly {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no space left for the cache at {path} (cannot {op}); free some space or run `keyfab cache gc --max-size SIZE`")]
    DiskFull {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {path}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cache index {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cache index {path} has schema version {found}, newer than this keyfab understands ({supported}); upgrade keyfab or use another --cache folder")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path} is not a keyfab cache: {reason}")]
    NotACache { path: PathBuf, reason: String },
    #[error("a failed action (exit status {exit_code}) is never cached")]
    FailedAction { exit_code: i32 },
    #[error("invalid {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("the cache at {path} is opened read-only; {op} needs write access")]
    OpenedReadOnly { path: PathBuf, op: &'static str },
}

/// What an OS error means for the cache, from its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    ReadOnly,
    DiskFull,
    Other,
}

/// Classifies an IO error: EROFS/EACCES/EPERM mean we may not write there;
/// ENOSPC/EDQUOT/EFBIG mean there is no room (EFBIG is what a file-size
/// limit gives, the portable stand-in for a full disk in tests).
pub fn classify(err: &io::Error) -> IoClass {
    match err.raw_os_error() {
        Some(libc::EROFS | libc::EACCES | libc::EPERM) => IoClass::ReadOnly,
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => IoClass::DiskFull,
        // Errors wrapped by other crates (tempfile adds the path) keep
        // their kind but lose the errno.
        _ => match err.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                IoClass::ReadOnly
            }
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => IoClass::DiskFull,
            _ => IoClass::Other,
        },
    }
}

impl CasError {
    /// Wraps an IO error with its path, picking the variant from its errno.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> CasError {
        let path = path.to_path_buf();
        match classify(&source) {
            IoClass::ReadOnly => CasError::ReadOnly { path, op, source },
            IoClass::DiskFull => CasError::DiskFull { path, op, source },
            IoClass::Other => CasError::Io { path, op, source },
        }
    }

    /// Wraps a SQLite error, mapping SQLite's own "full" and "read-only"
    /// codes to the variants users can act on.
    pub fn index(path: &Path, source: rusqlite::Error, errno: i32) -> CasError {
        use rusqlite::ffi::ErrorCode;
        let code = source.sqlite_error_code();
        // SQLite does not always say which errno it saw; then its own
        // code is the cause.
        let os = || match (errno, code) {
            (0, Some(ErrorCode::DiskFull)) => io::Error::new(
                io::ErrorKind::StorageFull,
                "SQLite: database or disk is full",
            ),
            (0, _) => io::Error::new(io::ErrorKind::PermissionDenied, "SQLite: read-only"),
            _ => io::Error::from_raw_os_error(errno),
        };
        let path_buf = path.to_path_buf();
        match code {
            Some(ErrorCode::DiskFull) => CasError::DiskFull {
                path: path_buf,
                op: "write the index",
                source: os(),
            },
            Some(ErrorCode::ReadOnly) => CasError::ReadOnly {
                path: path_buf,
                op: "write the index",
                source: os(),
            },
            // SQLite reports EFBIG and friends as a generic IO error; the
            // errno it saw tells what really happened.
            Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) if errno != 0 => {
                match classify(&os()) {
                    IoClass::ReadOnly => CasError::ReadOnly {
                        path: path_buf,
                        op: "write the index",
                        source: os(),
                    },
                    IoClass::DiskFull => CasError::DiskFull {
                        path: path_buf,
                        op: "write the index",
                        source: os(),
                    },
                    IoClass::Other => CasError::Index {
                        path: path_buf,
                        source,
                    },
                }
            }
            _ => CasError::Index {
                path: path_buf,
                source,
            },
        }
    }

    /// True for the errors that mean "the cache folder cannot be written".
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            CasError::ReadOnly { .. } | CasError::OpenedReadOnly { .. }
        )
    }

    pub fn is_disk_full(&self) -> bool {
        matches!(self, CasError::DiskFull { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::ENOSPC)), IoClass::DiskFull);
        assert_eq!(classify(&e(libc::EFBIG)), IoClass::DiskFull);
        assert_eq!(classify(&e(libc::EROFS)), IoClass::ReadOnly);
        assert_eq!(classify(&e(libc::EACCES)), IoClass::ReadOnly);
        assert_eq!(classify(&e(libc::EIO)), IoClass::Other);
        let wrapped = io::Error::new(e(libc::EFBIG).kind(), "tmp/put-x: File too large");
        assert_eq!(classify(&wrapped), IoClass::DiskFull);
    }

    #[test]
    fn messages_name_the_path() {
        let err = CasError::io(
            "write",
            Path::new("/c/blobs/ab"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(err.is_disk_full());
        assert!(err.to_string().contains("/c/blobs/ab"), "{err}");
    }
}

//! What a computation read from disk, for callers that reuse its result
//! while everything it read is unchanged (a generator call's output is
//! cached by the files it read, as a compile's object is by its headers).
//!
//! Every read of the tree by `keyfab-tree`, `keyfab-info` and the generators
//! goes through the functions here. While [`record`] runs a closure on a
//! thread, each read on that thread is noted; memo tables that share parsed
//! files across calls [`replay`] the reads that made an entry whenever they
//! hand it out, so a call's reads are complete whether or not it parsed the
//! file itself. Outside [`record`] the functions are plain file system calls.
//!
//! A [`Source`] installed with [`with_source`] answers the reads instead of
//! the file system (keyfab-build's salsa database serves them from its
//! inputs, so the queries that read learn what they depend on); replayed
//! reads are shown to it too.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// One observation of the file system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Read {
    /// A file's bytes (their blake3 digest); `None`: no readable file there.
    File {
        path: PathBuf,
        digest: Option<[u8; 32]>,
    },
    /// Whether a path is a regular file (its bytes were not read).
    IsFile { path: PathBuf, yes: bool },
    /// A folder's entries as [`folder_names`] lists them (empty: no folder).
    Folder { path: PathBuf, names: Vec<String> },
}

thread_local! {
    static RECORDING: RefCell<Vec<Vec<Read>>> = const { RefCell::new(Vec::new()) };
    static SOURCE: std::cell::Cell<Option<*const (dyn Source + 'static)>> =
        const { std::cell::Cell::new(None) };
}

/// What answers reads in place of the file system.
pub trait Source {
    /// A file's bytes; `None` when there is no readable file there.
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>>;
    /// Whether a regular file is at `path`.
    fn is_file(&self, path: &Path) -> bool;
    /// A folder's entries as [`folder_names`] lists them.
    fn folder_names(&self, path: &Path) -> Vec<String>;
    /// Reads a memo made earlier hands out again (see [`replay`]).
    fn replayed(&self, reads: &[Read]);
}

/// Runs `f` with `source` answering this thread's reads (the previous
/// source, if any, comes back after).
pub fn with_source<T>(source: &dyn Source, f: impl FnOnce() -> T) -> T {
    /// Puts the previous source back when dropped, also when `f` panics.
    struct Restore(Option<*const (dyn Source + 'static)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SOURCE.with(|s| s.set(self.0));
        }
    }
    // SAFETY: the pointer is only used while `f` runs (the guard takes it
    // out again before `source`'s borrow ends), on this thread.
    let erased: *const (dyn Source + '_) = source;
    let erased: *const (dyn Source + 'static) = unsafe { std::mem::transmute(erased) };
    let _restore = Restore(SOURCE.with(|s| s.replace(Some(erased))));
    f()
}

/// Whether a [`Source`] answers this thread's reads (memo tables that check
/// the file system themselves leave the work to it).
pub fn source_installed() -> bool {
    SOURCE.with(|s| s.get().is_some())
}

fn with_installed<T>(f: impl FnOnce(&dyn Source) -> T) -> Option<T> {
    let ptr = SOURCE.with(|s| s.get())?;
    // SAFETY: set only by `with_source`, which outlives this call.
    Some(f(unsafe { &*ptr }))
}

/// Runs `f`, returning what it returned and every read it made on this
/// thread (in order, repeats removed). Recordings nest: an inner one's reads
/// count for the outer one too.
pub fn record<T>(f: impl FnOnce() -> T) -> (T, Vec<Read>) {
    /// This recording's frame, popped when dropped: also when `f` panics,
    /// so a caught panic leaves no stale frame behind.
    struct Frame;
    impl Drop for Frame {
        fn drop(&mut self) {
            let _ = RECORDING.try_with(|r| r.borrow_mut().pop());
        }
    }
    RECORDING.with(|r| r.borrow_mut().push(Vec::new()));
    let frame = Frame;
    let out = f();
    let mut reads = RECORDING.with(|r| std::mem::take(r.borrow_mut().last_mut().unwrap()));
    drop(frame);
    dedup(&mut reads);
    replay(&reads);
    (out, reads)
}

/// Notes `reads` as made now (a memo handing out what they produced).
pub fn replay(reads: &[Read]) {
    with_installed(|src| src.replayed(reads));
    RECORDING.with(|r| {
        if let Some(top) = r.borrow_mut().last_mut() {
            top.extend_from_slice(reads);
        }
    });
}

fn note(read: impl FnOnce() -> Read) {
    RECORDING.with(|r| {
        if let Some(top) = r.borrow_mut().last_mut() {
            top.push(read());
        }
    });
}

fn dedup(reads: &mut Vec<Read>) {
    let mut seen = std::collections::HashSet::new();
    reads.retain(|r| seen.insert(r.clone()));
}

/// A file's bytes; `Ok(None)` when there is no file (or a folder) there.
pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let result = match with_installed(|src| src.read(path)) {
        Some(answer) => answer,
        None => read_file(path),
    };
    note(|| Read::File {
        path: path.to_path_buf(),
        digest: match &result {
            Ok(Some(b)) => Some(*blake3::hash(b).as_bytes()),
            _ => None,
        },
    });
    result
}

/// A file's bytes from the file system; `Ok(None)` when there is no file
/// (or a folder) there. Not noted.
pub fn read_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` is a regular file (following symlinks).
pub fn is_file(path: &Path) -> bool {
    let yes = with_installed(|src| src.is_file(path)).unwrap_or_else(|| path.is_file());
    note(|| Read::IsFile {
        path: path.to_path_buf(),
        yes,
    });
    yes
}

/// Whether `path` is a folder (following symlinks). Noted as the folder's
/// listing: conservative, an entry added there counts as a change.
pub fn is_dir(path: &Path) -> bool {
    if let Some(names) = with_installed(|src| src.folder_names(path)) {
        // A source knows a folder by its listing: an empty folder is none.
        let yes = !names.is_empty();
        note(|| Read::Folder {
            path: path.to_path_buf(),
            names,
        });
        return yes;
    }
    let yes = path.is_dir();
    note(|| Read::Folder {
        path: path.to_path_buf(),
        names: if yes { folder_names(path) } else { Vec::new() },
    });
    yes
}

/// Whether anything is at `path` (noted as [`is_file`], then [`is_dir`]).
pub fn exists(path: &Path) -> bool {
    is_file(path) || is_dir(path)
}

/// A folder's entries (see [`folder_names`]), noted.
pub fn list(path: &Path) -> Vec<String> {
    let names = with_installed(|src| src.folder_names(path)).unwrap_or_else(|| folder_names(path));
    note(|| Read::Folder {
        path: path.to_path_buf(),
        names: names.clone(),
    });
    names
}

/// A folder's entry names, sorted, sub-folders (by the entry's type; a
/// symlink to a folder too) ending in `/`; empty when it is no folder.
/// Not noted: the form shared by everything that compares listings.
pub fn folder_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let dir = match e.file_type() {
                        Ok(t) if t.is_symlink() => e.path().is_dir(),
                        Ok(t) => t.is_dir(),
                        Err(_) => false,
                    };
                    Some(if dir { format!("{name}/") } else { name })
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reads_and_nests() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "hi").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let missing = dir.path().join("missing");
        let ((), outer) = record(|| {
            let (bytes, inner) = record(|| read(&a).unwrap());
            assert_eq!(bytes.as_deref(), Some(&b"hi"[..]));
            assert_eq!(inner.len(), 1);
            assert!(!is_file(&missing));
            assert_eq!(list(dir.path()), vec!["a.txt", "sub/"]);
            read(&a).unwrap();
        });
        assert_eq!(
            outer,
            vec![
                Read::File {
                    path: a.clone(),
                    digest: Some(*blake3::hash(b"hi").as_bytes())
                },
                Read::IsFile {
                    path: missing,
                    yes: false
                },
                Read::Folder {
                    path: dir.path().to_path_buf(),
                    names: vec!["a.txt".into(), "sub/".into()]
                },
            ]
        );
        // Outside a recording nothing is kept.
        let ((), none) = record(|| ());
        assert!(none.is_empty());
    }

    #[test]
    fn a_panic_leaves_no_recording_behind() {
        let r = std::panic::catch_unwind(|| record(|| panic!("boom")));
        assert!(r.is_err());
        RECORDING.with(|r| assert!(r.borrow().is_empty()));
    }
}

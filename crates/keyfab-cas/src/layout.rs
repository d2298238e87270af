//! Where things live inside a cache folder. Pure path arithmetic.
//!
//! ```text
//! ROOT/CACHEDIR.TAG     marks the folder as a cache for backup tools
//! ROOT/format           "keyfab-cas 1": the layout version
//! ROOT/lock             flock: shared while publishing, exclusive for gc/clear/repair
//! ROOT/index.sqlite     the SQLite index (+ -wal, -shm)
//! ROOT/blobs/ab/cdef…   blob with digest abcdef… (2 hex shard + 62 hex)
//! ROOT/tmp/             temp files, renamed into blobs/ when complete
//! ```

use crate::digest::Digest;
use std::path::{Path, PathBuf};

pub const FORMAT_FILE: &str = "format";
pub const FORMAT_LINE: &str = "keyfab-cas 1";
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
pub const CACHEDIR_TAG_BODY: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks a keyfab cache folder; backup tools may skip it.\n";

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index.sqlite")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn format(&self) -> PathBuf {
        self.root.join(FORMAT_FILE)
    }
    pub fn shard(&self, d: &Digest) -> PathBuf {
        self.blobs().join(&d.to_hex()[..2])
    }
    pub fn blob(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.blobs().join(&hex[..2]).join(&hex[2..])
    }
}

/// The digest a blob file's path names, or None for a stray file.
pub fn digest_of_blob_path(shard: &str, name: &str) -> Option<Digest> {
    if shard.len() != 2 || name.len() != 62 {
        return None;
    }
    Digest::from_hex(&format!("{shard}{name}")).ok()
}

/// Where the cache lives: `--cache DIR`, else `$KEYFAB_CACHE`, else
/// `$XDG_CACHE_HOME/keyfab`, else `$HOME/.cache/keyfab`. Empty variables count
/// as unset, as the XDG spec asks.
pub fn cache_dir(flag: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = var("KEYFAB_CACHE") {
        return Some(p);
    }
    if let Some(p) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(p.join("keyfab"));
    }
    var("HOME").map(|h| h.join(".cache").join("keyfab"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_are_sharded_and_reversible() {
        let d = Digest::of(b"x");
        let l = Layout::new("/c");
        let p = l.blob(&d);
        let shard = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(shard.len(), 2);
        assert_eq!(digest_of_blob_path(shard, name), Some(d));
        assert_eq!(digest_of_blob_path("zz", name), None);
        assert_eq!(digest_of_blob_path(shard, "short"), None);
    }

    #[test]
    fn cache_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all: &[(&str, &str)] = &[
            ("KEYFAB_CACHE", "/kc"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            cache_dir(Some(Path::new("/flag")), env(all)),
            Some("/flag".into())
        );
        assert_eq!(cache_dir(None, env(all)), Some("/kc".into()));
        assert_eq!(
            cache_dir(
                None,
                env(&[("KEYFAB_CACHE", ""), ("XDG_CACHE_HOME", "/xdg")])
            ),
            Some("/xdg/keyfab".into())
        );
        assert_eq!(
            cache_dir(None, env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])),
            Some("/h/.cache/keyfab".into())
        );
        assert_eq!(cache_dir(None, env(&[])), None);
    }
}

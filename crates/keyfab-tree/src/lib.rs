//! A QMK-shaped tree on disk, and the questions QMK's CLI answers about it
//! before any info is merged: which keyboards exist, what a name resolves to
//! (aliases, `DEFAULT_FOLDER`), which files apply to a keyboard, which keymaps
//! it has and which keymap folder a build uses.
//!
//! Architecture invariant: this crate reads the tree but never writes to it,
//! never runs a process, and never merges info (that is `keyfab-info`'s job;
//! where a lookup needs a merged value, such as the community layouts, the
//! caller passes it in).

mod error;
mod keymaps;
mod list;
pub mod reads;
mod resolve;
mod userspace;

pub use error::TreeError;
pub use keymaps::{KeymapLocation, KeymapSource};
pub use resolve::{Aliases, ChainFiles, Resolution, ResolveStep};
pub use userspace::{BuildTarget, Userspace};

use std::path::{Path, PathBuf};

/// QMK supports keyboard folders this many levels deep below `keyboards/`.
pub const MAX_KEYBOARD_SUBFOLDERS: usize = 5;

/// A QMK tree (the folder holding `keyboards/`, `layouts/`, `data/`, …) and an
/// optional QMK userspace overlay.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    userspace: Option<Userspace>,
    /// The alias table as last parsed, with the file's stamp then (shared by
    /// clones; re-read when the stamp changes, so long-lived trees see edits).
    aliases: std::sync::Arc<std::sync::Mutex<Option<resolve::AliasMemo>>>,
}

impl Tree {
    /// Opens the tree at `root`; it must contain a `keyboards/` folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<Tree, TreeError> {
        let root = root.into();
        if !root.join("keyboards").is_dir() {
            return Err(TreeError::NotATree { path: root });
        }
        // One name per tree: cache keys and messages must not depend on
        // whether it was reached by a relative path or a symlink.
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        Ok(Tree {
            root,
            userspace: None,
            aliases: Default::default(),
        })
    }

    /// Finds the tree the way QMK's CLI does: an explicit path, else the
    /// current directory or one of its parents, else `$QMK_HOME`.
    pub fn discover(
        explicit: Option<&Path>,
        cwd: &Path,
        qmk_home: Option<&Path>,
    ) -> Result<Tree, TreeError> {
        if let Some(p) = explicit {
            return Tree::open(p);
        }
        let mut dir = Some(cwd);
        while let Some(d) = dir {
            if d.join("keyboards").is_dir() && d.join("data").is_dir() {
                return Tree::open(d);
            }
            dir = d.parent();
        }
        if let Some(home) = qmk_home {
            return Tree::open(home);
        }
        Err(TreeError::NoTree {
            cwd: cwd.to_path_buf(),
        })
    }

    pub fn with_userspace(mut self, userspace: Option<Userspace>) -> Tree {
        self.userspace = userspace;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn userspace(&self) -> Option<&Userspace> {
        self.userspace.as_ref()
    }

    /// `keyboards/<name>` below the tree root.
    pub fn keyboard_dir(&self, name: &str) -> PathBuf {
        self.root.join("keyboards").join(name)
    }

    /// QMK's `is_keyboard`: a relative name whose folder holds `keyboard.json`.
    pub fn is_keyboard(&self, name: &str) -> bool {
        if !is_safe_name(name) {
            return false;
        }
        reads::is_file(&self.keyboard_dir(name).join("keyboard.json"))
    }

    /// Reads a file of the tree as UTF-8, naming it on failure.
    pub(crate) fn read_text(&self, path: &Path) -> Result<Option<String>, TreeError> {
        match reads::read(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| TreeError::NotUtf8 {
                    path: self.display(path),
                }),
            Ok(None) => Ok(None),
            Err(e) => Err(TreeError::Io {
                path: self.display(path),
                message: e.to_string(),
            }),
        }
    }

    /// A path as we show it to people: relative to the tree root when inside.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => path.to_string_lossy().into_owned(),
        }
    }
}

/// The folder chain of a keyboard: `a/b/c` → `["a", "a/b", "a/b/c"]`.
pub fn keyboard_chain(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// A keyboard or keymap name that stays inside its folder: relative, no `..`.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && name.split('/').all(|p| p != ".." && p != ".")
        && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_nested_name() {
        assert_eq!(keyboard_chain("a/b/c"), ["a", "a/b", "a/b/c"]);
        assert_eq!(keyboard_chain("solo"), ["solo"]);
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in ["", "/abs", "../x", "a/../b", "a\\b", "./a"] {
            assert!(!is_safe_name(bad), "{bad}");
        }
        assert!(is_safe_name("a/b_c/rev1"));
    }
}

//! Keymaps of a keyboard: listing (QMK's `list_keymaps`) and lookup (the
//! search order of QMK's `builddefs/locate_keymap.mk`, which decides what a
//! build compiles).

use crate::{is_safe_name, keyboard_chain, reads, resolve::closest, Tree, TreeError};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a keymap was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeymapLocation {
    pub keymap: String,
    /// The keymap folder (absolute).
    pub dir: PathBuf,
    pub keymap_c: Option<PathBuf>,
    pub keymap_json: Option<PathBuf>,
    pub source: KeymapSource,
}

/// Which search area a keymap came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeymapSource {
    /// `keyboards/<folder>/keymaps/<keymap>` in the tree.
    Keyboard { folder: String },
    /// The same path inside the userspace overlay.
    Userspace { folder: String },
    /// `layouts/<repo>/<layout>/<keymap>` (or the userspace's `layouts/`).
    CommunityLayout { repo: String, layout: String },
}

/// QMK's `is_keymap_dir`: a folder with a `keymap.c` or `keymap.json` file.
fn is_keymap_dir(dir: &Path) -> bool {
    reads::is_file(&dir.join("keymap.c")) || reads::is_file(&dir.join("keymap.json"))
}

/// Names of the keymap folders directly inside `dir`.
fn keymap_names_in(dir: &Path, names: &mut BTreeSet<String>) {
    for entry in reads::list(dir) {
        if let Some(name) = entry.strip_suffix('/') {
            if is_keymap_dir(&dir.join(name)) {
                names.insert(name.to_string());
            }
        }
    }
}

impl Tree {
    /// The layout repositories searched for community keymaps: every visible
    /// folder of `layouts/`, sorted (make's `$(sort $(dir $(wildcard …)))`),
    /// then the userspace's `layouts/`.
    pub fn layout_repos(&self) -> Vec<(String, PathBuf)> {
        let mut repos: Vec<(String, PathBuf)> = Vec::new();
        let layouts = self.root.join("layouts");
        for entry in reads::list(&layouts) {
            if let Some(name) = entry.strip_suffix('/') {
                if !name.starts_with('.') {
                    repos.push((format!("layouts/{name}"), layouts.join(name)));
                }
            }
        }
        repos.sort();
        if let Some(us) = &self.userspace {
            let dir = us.root.join("layouts");
            if reads::is_dir(&dir) {
                repos.push(("userspace:layouts".into(), dir));
            }
        }
        repos
    }

    /// Roots searched for `keyboards/…/keymaps`: the tree, then the userspace.
    fn keymap_roots(&self) -> Vec<(bool, &Path)> {
        let mut roots = vec![(false, self.root.as_path())];
        if let Some(us) = &self.userspace {
            roots.push((true, us.root.as_path()));
        }
        roots
    }

    /// All keymap names of a (resolved) keyboard, sorted, like
    /// `qmk list-keymaps`: keymaps of every folder of its chain, in the tree
    /// and the userspace, plus those of its community layouts.
    pub fn list_keymaps(&self, keyboard: &str, community_layouts: &[String]) -> Vec<String> {
        let mut names = BTreeSet::new();
        for (_, root) in self.keymap_roots() {
            for folder in keyboard_chain(keyboard) {
                keymap_names_in(
                    &root.join("keyboards").join(&folder).join("keymaps"),
                    &mut names,
                );
            }
        }
        for (_, repo) in self.layout_repos() {
            for layout in community_layouts {
                keymap_names_in(&repo.join(layout), &mut names);
            }
        }
        names.into_iter().collect()
    }

    /// The keymap folder a build of `keyboard:keymap` uses: the deepest
    /// keyboard folder first, up to the top, in the tree and then in the
    /// userspace; then the community layouts in the keyboard's order, each
    /// searched through the layout repositories. The first hit wins.
    pub fn locate_keymap(
        &self,
        keyboard: &str,
        keymap: &str,
        community_layouts: &[String],
    ) -> Option<KeymapLocation> {
        if !is_safe_name(keymap) || keymap.contains('/') {
            return None;
        }
        let found = |dir: PathBuf, source: KeymapSource| -> Option<KeymapLocation> {
            let json = dir.join("keymap.json");
            let c = dir.join("keymap.c");
            let (json, c) = (
                reads::is_file(&json).then_some(json),
                reads::is_file(&c).then_some(c),
            );
            if json.is_none() && c.is_none() {
                return None;
            }
            Some(KeymapLocation {
                keymap: keymap.to_string(),
                dir,
                keymap_c: c,
                keymap_json: json,
                source,
            })
        };
        for (is_userspace, root) in self.keymap_roots() {
            for folder in keyboard_chain(keyboard).into_iter().rev() {
                let dir = root
                    .join("keyboards")
                    .join(&folder)
                    .join("keymaps")
                    .join(keymap);
                let source = if is_userspace {
                    KeymapSource::Userspace { folder }
                } else {
                    KeymapSource::Keyboard { folder }
                };
                if let Some(loc) = found(dir, source) {
                    return Some(loc);
                }
            }
        }
        let repos = self.layout_repos();
        for layout in community_layouts {
            for (repo, path) in &repos {
                let source = KeymapSource::CommunityLayout {
                    repo: repo.clone(),
                    layout: layout.clone(),
                };
                if let Some(loc) = found(path.join(layout).join(keymap), source) {
                    return Some(loc);
                }
            }
        }
        None
    }

    /// [`Tree::locate_keymap`], or an error naming the closest keymaps.
    pub fn require_keymap(
        &self,
        keyboard: &str,
        keymap: &str,
        community_layouts: &[String],
    ) -> Result<KeymapLocation, TreeError> {
        self.locate_keymap(keyboard, keymap, community_layouts)
            .ok_or_else(|| {
                let available = self.list_keymaps(keyboard, community_layouts);
                TreeError::UnknownKeymap {
                    keyboard: keyboard.to_string(),
                    keymap: keymap.to_string(),
                    suggestions: closest(keymap, available.clone()),
                    available,
                }
            })
    }
}

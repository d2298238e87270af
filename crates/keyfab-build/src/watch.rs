//! The pure parts of watch mode: which changed paths matter, and how a burst
//! of events becomes one rebuild.

use std::path::{Path, PathBuf};

/// Top-level folders of the tree whose changes never affect builds: build
/// output and VCS metadata.
const UNWATCHED: [&str; 4] = [".build", ".git", ".hg", ".svn"];

/// What to watch in a tree, `(path, recursively)`: the root itself (its
/// files, new folders), each of its folders but build output and VCS
/// metadata (a build writes and opens thousands of files in `.build`, events
/// only to drop), and of `.git` what moves the revision (`HEAD`, the index,
/// refs) for [`Revision`]. A top-level folder made later is watched by
/// [`watch_for`] when its event comes.
pub fn watch_roots(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = vec![(root.to_path_buf(), false)];
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        out.extend(watch_for(root, &d));
    }
    out
}

/// The watches a top-level folder `dir` of `root` needs (none for build
/// output; `.git`'s own files and its refs).
pub fn watch_for(root: &Path, dir: &Path) -> Vec<(PathBuf, bool)> {
    if dir.parent() != Some(root) || !dir.is_dir() {
        return Vec::new();
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    if name == ".git" {
        let mut out = vec![(dir.to_path_buf(), false)];
        if dir.join("refs").is_dir() {
            out.push((dir.join("refs"), true));
        }
        return out;
    }
    if UNWATCHED.contains(&name.as_ref()) {
        return Vec::new();
    }
    vec![(dir.to_path_buf(), true)]
}

/// Does a change to `path` (inside `root`) affect builds? Build output,
/// VCS metadata and editors' temporary and swap files do not.
pub fn is_relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let mut components = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let Some(first) = components.next() else {
        return false;
    };
    if UNWATCHED.contains(&first.as_str()) || first == "compile_commands.json" {
        return false;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let editor_junk = name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with(".tmp")
        || name.ends_with(".kate-swp")
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || name == "4913" // vim's probe file
        || name.starts_with(".goutputstream-");
    if editor_junk {
        return false;
    }
    // Firmware copied to the tree root by the build itself.
    let top_level_firmware = rel.components().count() == 1
        && [".hex", ".bin", ".uf2", ".elf", ".map"]
            .iter()
            .any(|e| name.ends_with(e));
    !top_level_firmware
}

/// The relevant paths of a batch of events, tree-relative, sorted, unique.
pub fn relevant_changes(root: &Path, paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    let mut out: Vec<String> = paths
        .into_iter()
        .filter(|p| is_relevant(root, p))
        .filter_map(|p| {
            p.strip_prefix(root)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The relevant changes of a batch of events (`(path, created)` in the
/// order they came; `created`: the event brought the path into being, by
/// creation or by a rename to it), tree-relative, sorted, unique. A path
/// that came and went within the batch (its first event created it, and
/// it is gone now: a temp file an editor or a tool renamed into place, or
/// removed, whatever its name) is no change. `exists` says whether a path
/// is there now.
pub fn settled_changes(
    root: &Path,
    events: &[(PathBuf, bool)],
    exists: impl Fn(&Path) -> bool,
) -> Vec<String> {
    let mut first: std::collections::HashMap<&Path, bool> = std::collections::HashMap::new();
    for (p, created) in events {
        first.entry(p.as_path()).or_insert(*created);
    }
    relevant_changes(
        root,
        first
            .into_iter()
            .filter(|(p, created)| !*created || exists(p))
            .map(|(p, _)| p.to_path_buf()),
    )
}

/// Whether `changes` (tree-relative) may have changed what merged info is
/// made with (`data/`: mapping tables, schemas, defaults), so an engine's
/// tables must be read again rather than renewed.
pub fn tables_may_have_changed(changes: &[String]) -> bool {
    changes.iter().any(|c| Path::new(c).starts_with("data"))
}

/// "a, b and 3 more" for the one-line summary of a rebuild.
pub fn describe_changes(changes: &[String]) -> String {
    match changes {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [a, b] => format!("{a}, {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
    }
}

/// The tree's revision ([`crate::target::tree_revision`]) for the provenance of a watch session's
/// rebuilds, without a `git describe` per rebuild: it is described again only
/// when it may have changed. That is after an event in the git folder
/// (`HEAD`, the index, refs: a commit, checkout or `git add`), or after an
/// edit while it was clean (the edit may make it dirty). While it reads
/// `-dirty`, edits keep it so (undoing every change by hand is the one case
/// that reads `-dirty` until git's own files next change). A checkout whose
/// git folder lies elsewhere (`.git` is a file: a worktree) sends no events
/// for it, so it is described for every rebuild.
#[derive(Debug)]
pub struct Revision {
    root: PathBuf,
    known: Option<Option<String>>,
}

impl Revision {
    pub fn new(root: &Path) -> Revision {
        Revision {
            root: root.to_path_buf(),
            known: None,
        }
    }

    /// The revision now, described again only if it may have changed.
    pub fn current(&mut self) -> Option<String> {
        if self.root.join(".git").is_file() {
            self.known = None;
        }
        self.known
            .get_or_insert_with(|| crate::target::tree_revision(&self.root))
            .clone()
    }

    /// Takes note of a batch of changed paths (all of them, before
    /// [`relevant_changes`] drops the git folder's).
    pub fn saw<'a>(&mut self, paths: impl IntoIterator<Item = &'a PathBuf>) {
        for p in paths {
            let Some(known) = &self.known else { return };
            let git = self.root.join(".git");
            let stale = if let Ok(rel) = p.strip_prefix(&git) {
                // New objects alone change no revision; the ref or index
                // that names them follows.
                !rel.starts_with("objects") && !rel.starts_with("logs")
            } else {
                // An edit can make a clean checkout dirty.
                matches!(known, Some(r) if !r.ends_with("-dirty")) && is_relevant(&self.root, p)
            };
            if stale {
                self.known = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files_and_build_output_are_ignored() {
        let root = Path::new("/t");
        for ignored in [
            "/t/.build/obj_x/a.o",
            "/t/.git/index",
            "/t/keyboards/x/keymaps/default/.keymap.c.swp",
            "/t/keyboards/x/keymaps/default/keymap.c~",
            "/t/keyboards/x/.#keymap.c",
            "/t/keyboards/x/#keymap.c#",
            "/t/keyboards/x/4913",
            "/t/solo_default.hex",
            "/elsewhere/x.c",
        ] {
            assert!(!is_relevant(root, Path::new(ignored)), "{ignored}");
        }
        for relevant in [
            "/t/keyboards/x/keymaps/default/keymap.c",
            "/t/quantum/a.h",
            "/t/builddefs/x.mk",
            "/t/keyboards/x/fw.hex",
        ] {
            assert!(is_relevant(root, Path::new(relevant)), "{relevant}");
        }
    }

    #[test]
    fn changes_are_relative_sorted_unique() {
        let root = Path::new("/t");
        let got = relevant_changes(
            root,
            ["/t/b.c", "/t/a.c", "/t/b.c", "/t/.build/x"].map(PathBuf::from),
        );
        assert_eq!(got, ["a.c", "b.c"]);
        assert_eq!(describe_changes(&got), "a.c, b.c");
        assert!(!tables_may_have_changed(&got));
        assert!(tables_may_have_changed(&["a.c".into(), "data".into()]));
        assert!(tables_may_have_changed(&[
            "data/schemas/x.jsonschema".into()
        ]));
        assert!(!tables_may_have_changed(&["database.c".into()]));
        assert_eq!(
            describe_changes(&["a".into(), "b".into(), "c".into(), "d".into()]),
            "a, b and 2 more"
        );
    }

    #[test]
    fn build_output_and_git_objects_are_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            ".build/obj",
            ".git/refs/heads",
            ".git/objects/ab",
            "keyboards/x",
            "quantum",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("Makefile"), "").unwrap();
        let got = watch_roots(root);
        let want: Vec<(PathBuf, bool)> = vec![
            (root.to_path_buf(), false),
            (root.join(".git"), false),
            (root.join(".git/refs"), true),
            (root.join("keyboards"), true),
            (root.join("quantum"), true),
        ];
        assert_eq!(got, want);
        // a folder made later, at the top or deeper (notify follows those)
        std::fs::create_dir_all(root.join("users/me")).unwrap();
        assert_eq!(
            watch_for(root, &root.join("users")),
            [(root.join("users"), true)]
        );
        assert!(watch_for(root, &root.join("users/me")).is_empty());
        assert!(watch_for(root, &root.join(".build")).is_empty());
    }

    #[test]
    fn paths_that_came_and_went_within_a_batch_are_no_change() {
        let root = Path::new("/t");
        let ev = |p: &str, created: bool| (PathBuf::from(p), created);
        let events = [
            // sed -i and editors' safe writes: a temp file renamed into place
            ev("/t/km/sedAb12Cd", true),
            ev("/t/km/sedAb12Cd", false),
            ev("/t/km/keymap.c", true),
            // a file that was there before: removed, made again, removed
            ev("/t/km/config.h", false),
            ev("/t/km/config.h", true),
            ev("/t/km/config.h", false),
            // created and still there
            ev("/t/km/new.c", true),
            // a probe created and removed, alone
            ev("/t/km/.probe", true),
        ];
        let there = ["/t/km/keymap.c", "/t/km/new.c"];
        let got = settled_changes(root, &events, |p| there.iter().any(|t| Path::new(t) == p));
        assert_eq!(got, ["km/config.h", "km/keymap.c", "km/new.c"]);
        assert!(settled_changes(root, &events[7..], |_| false).is_empty());
    }

    #[test]
    fn revision_is_described_again_only_when_it_may_have_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        let file = root.join("a.c");
        std::fs::write(&file, "int a;\n").unwrap();
        let mut rev = Revision::new(&root);
        assert_eq!(rev.current(), None, "not a checkout");
        rev.saw(std::slice::from_ref(&file));
        assert_eq!(rev.current(), None, "an edit makes no checkout");

        git(&["init", "-q"]);
        git(&["add", "a.c"]);
        git(&["commit", "-q", "-m", "one"]);
        rev.saw(&[root.join(".git/HEAD")]);
        let clean = rev.current().expect("a checkout now");
        assert!(!clean.ends_with("-dirty"), "{clean}");

        // an edit while clean: described again, dirty
        std::fs::write(&file, "int b;\n").unwrap();
        rev.saw(std::slice::from_ref(&file));
        assert_eq!(rev.current(), Some(format!("{clean}-dirty")));
        // swap files and build output are not edits; while dirty, edits
        // keep the revision without a describe (the commit below is not
        // seen until its events are)
        git(&["commit", "-q", "-am", "two"]);
        rev.saw(&[root.join(".build/x.o"), file.clone()]);
        assert_eq!(rev.current(), Some(format!("{clean}-dirty")));
        // git's own files changed: described again
        rev.saw(&[root.join(".git/objects/ab/cdef")]);
        assert_eq!(rev.current(), Some(format!("{clean}-dirty")));
        rev.saw(&[root.join(".git/refs/heads/master")]);
        let second = rev.current().unwrap();
        assert!(second != clean && !second.ends_with("-dirty"), "{second}");
    }
}

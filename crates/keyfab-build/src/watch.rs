//! The pure parts of watch mode: which changed paths matter, and how a burst
//! of events becomes one rebuild.

use std::path::{Path, PathBuf};

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
    if matches!(
        first.as_str(),
        ".build" | ".git" | ".hg" | ".svn" | "compile_commands.json"
    ) {
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

/// "a, b and 3 more" for the one-line summary of a rebuild.
pub fn describe_changes(changes: &[String]) -> String {
    match changes {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [a, b] => format!("{a}, {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
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
        assert_eq!(
            describe_changes(&["a".into(), "b".into(), "c".into(), "d".into()]),
            "a, b and 2 more"
        );
    }
}

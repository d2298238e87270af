//! `qmk generate-make-dependencies`: the files whose appearance or change
//! must re-run the generators, as make `$(wildcard …)` lines.

use crate::Generated;

const INTERESTING: [&str; 6] = [
    "info.json",
    "keyboard.json",
    "rules.mk",
    "post_rules.mk",
    "config.h",
    "post_config.h",
];

/// `keyboard` is the keyboard folder (`planck/rev6`); `keymap_dir` the
/// folder of the located keymap, as QMK's `locate_keymap` gives it (relative
/// to the tree, or absolute for a userspace), if `-km` was given and found;
/// `keymap` the `-km` value (QMK always adds `users/<keymap>/…`).
pub fn make_dependencies(keyboard: &str, keymap_dir: Option<&str>, keymap: &str) -> Generated {
    let mut files = Vec::new();
    let mut parent = format!("keyboards/{}", keyboard.trim_end_matches('/'));
    while parent != "keyboards" && !parent.is_empty() {
        for f in INTERESTING {
            files.push(format!("{parent}/{f}"));
        }
        parent = match parent.rfind('/') {
            Some(i) => parent[..i].to_string(),
            None => String::new(),
        };
    }
    if let Some(dir) = keymap_dir {
        files.push(join(dir, "keymap.json"));
        for f in INTERESTING {
            files.push(join(dir, f));
        }
    }
    for f in INTERESTING {
        files.push(join(&format!("users/{keymap}"), f));
    }
    Generated::new(
        files
            .into_iter()
            .map(|f| format!("generated-files: $(wildcard {f})\n"))
            .collect(),
    )
}

/// `Path(dir) / name`, as pathlib prints it (`.` disappears).
fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_end_matches('/');
    if d.is_empty() || d == "." {
        name.to_string()
    } else {
        format!("{d}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_keymap_and_users() {
        let out =
            make_dependencies("a/b", Some("keyboards/a/keymaps/default"), "default").contents();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "generated-files: $(wildcard keyboards/a/b/info.json)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[12],
            "generated-files: $(wildcard keyboards/a/info.json)"
        );
        assert_eq!(
            lines[24],
            "generated-files: $(wildcard keyboards/a/keymaps/default/keymap.json)"
        );
        assert!(out.ends_with("generated-files: $(wildcard users/default/post_config.h)\n\n"));
        assert_eq!(out.matches("generated-files").count(), 12 + 7 + 6);
    }

    #[test]
    fn no_keymap_found() {
        let out = make_dependencies("kb", None, "nope").contents();
        assert_eq!(out.matches("generated-files").count(), 6 + 6);
    }
}

//! Linker scripts a link reads: the `-T` scripts named on its command line
//! and every file they pull in with `INCLUDE` (ChibiOS's `STM32F303xC.ld`
//! includes `rules.ld`, which includes four more). They are link inputs like
//! the objects, so they belong in the link's cache key.

use std::path::{Path, PathBuf};

/// The `INCLUDE file` names of a linker script, in order (comments skipped).
pub fn includes(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut words = strip_comments(text)
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_string())
        .collect::<Vec<_>>()
        .into_iter();
    while let Some(w) = words.next() {
        if w == "INCLUDE" {
            if let Some(name) = words.next() {
                names.push(name.trim_matches('"').to_string());
            }
        }
    }
    names
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push(' ');
        match rest[i + 2..].find("*/") {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// `-T x`, `-Tx`, `-Wl,-T,x`, `-Wl,--script=x` → the scripts; `-L d`,
/// `-Ld` → the search folders (as ld searches `INCLUDE`: the current
/// folder, then each `-L` folder).
fn scripts_and_dirs(argv: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut scripts, mut dirs) = (Vec::new(), Vec::new());
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-T" || a == "-L" {
            if let Some(v) = it.next() {
                if a == "-T" { &mut scripts } else { &mut dirs }.push(v.clone());
            }
        } else if let Some(v) = a.strip_prefix("-T").filter(|v| !v.is_empty()) {
            scripts.push(v.to_string());
        } else if let Some(v) = a.strip_prefix("-L").filter(|v| !v.is_empty()) {
            dirs.push(v.to_string());
        } else if let Some(wl) = a.strip_prefix("-Wl,") {
            let parts: Vec<&str> = wl.split(',').collect();
            let mut p = parts.iter();
            while let Some(x) = p.next() {
                if *x == "-T" || *x == "--script" {
                    scripts.extend(p.next().map(|s| s.to_string()));
                } else if let Some(v) = x.strip_prefix("--script=") {
                    scripts.push(v.to_string());
                } else if let Some(v) = x.strip_prefix("-L").filter(|v| !v.is_empty()) {
                    dirs.push(v.to_string());
                }
            }
        }
    }
    (scripts, dirs)
}

/// The tree-relative linker scripts a link with `argv` (run in `tree`)
/// reads, found as ld finds them; scripts it cannot find are left out (ld
/// will say so when it runs).
pub fn script_inputs(tree: &Path, argv: &[String]) -> Vec<String> {
    let (scripts, dirs) = scripts_and_dirs(argv);
    let mut found: Vec<String> = Vec::new();
    let mut todo: Vec<(String, Option<PathBuf>)> = scripts.into_iter().map(|s| (s, None)).collect();
    while let Some((name, parent)) = todo.pop() {
        let candidates = std::iter::once(PathBuf::from(&name))
            .chain(dirs.iter().map(|d| Path::new(d).join(&name)))
            .chain(parent.map(|p| p.join(&name)));
        let Some(rel) = candidates
            .filter(|c| !c.is_absolute())
            .find(|c| tree.join(c).is_file())
        else {
            continue;
        };
        let rel_s = rel.to_string_lossy().into_owned();
        if found.contains(&rel_s) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(tree.join(&rel)) {
            let here = rel.parent().map(Path::to_path_buf);
            for inc in includes(&text).into_iter().rev() {
                todo.push((inc, here.clone()));
            }
        }
        found.push(rel_s);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn includes_skip_comments() {
        let text = "/* INCLUDE old.ld */\nMEMORY { ram : org = 0, len = 1k }\nINCLUDE rules.ld\nINCLUDE \"more.ld\";\n";
        assert_eq!(includes(text), ["rules.ld", "more.ld"]);
    }

    #[test]
    fn script_and_search_flags() {
        let argv = words("cc a.o -T ld/main.ld -Lx -L y -Wl,--script=s.ld,-Lz -Tt.ld -o out.elf");
        let (scripts, dirs) = scripts_and_dirs(&argv);
        assert_eq!(scripts, ["ld/main.ld", "s.ld", "t.ld"]);
        assert_eq!(dirs, ["x", "y", "z"]);
    }

    #[test]
    fn includes_are_found_through_search_folders() {
        let tree = tempfile::tempdir().unwrap();
        let ld = tree.path().join("ld");
        std::fs::create_dir_all(&ld).unwrap();
        std::fs::write(ld.join("board.ld"), "MEMORY {}\nINCLUDE rules.ld\n").unwrap();
        std::fs::write(
            ld.join("rules.ld"),
            "INCLUDE rules_code.ld\nINCLUDE missing.ld\n",
        )
        .unwrap();
        std::fs::write(ld.join("rules_code.ld"), "SECTIONS {}\n").unwrap();
        let argv = words("cc a.o -T ./ld/board.ld -L ./ld -o out.elf");
        assert_eq!(
            script_inputs(tree.path(), &argv),
            ["./ld/board.ld", "./ld/rules.ld", "./ld/rules_code.ld"]
        );
    }
}

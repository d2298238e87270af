//! Shared helpers for the integration tests: run the real `keyfab` binary on
//! fresh copies of our fixture trees.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Copies `fixtures/<name>` into a fresh temp dir; returns the dir guard and
/// the copy's path. Symlinks are copied as symlinks.
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join(name.replace('/', "_"));
    copy_dir(&fixtures().join(name), &dest);
    (tmp, dest)
}

/// The fixture userspace copied into `dir`: its path and the
/// `--userspace=PATH` argument naming it.
pub fn copy_userspace(dir: &Path) -> (PathBuf, String) {
    let us = dir.join("userspace");
    copy_dir(&fixtures().join("userspace"), &us);
    let arg = format!("--userspace={}", us.display());
    (us, arg)
}

pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        let to = dest.join(entry.file_name());
        // Build output of local runs is not part of a fixture.
        if entry.file_name() == ".build" {
            continue;
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success; stderr:\n{}", self.stderr);
        &self.stdout
    }
    /// Asserts exit 1 (a failed command, not a crash) and returns stderr.
    pub fn fails(&self) -> &str {
        assert_eq!(
            self.code, 1,
            "expected exit 1; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        &self.stderr
    }
    pub fn lines(&self) -> Vec<&str> {
        self.ok().lines().collect()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).expect("stdout is JSON")
    }
}

/// `git -C tree ARGS` with a throw-away identity and no hooks, asserting
/// success; its output, trimmed.
pub fn git(tree: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(tree)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "core.hooksPath=/dev/null"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// QMK's `git describe` (version.h's `QMK_VERSION`), as git's own answer to
/// compare with.
pub const DESCRIBE_DIRTY: [&str; 5] = ["describe", "--abbrev=6", "--dirty", "--always", "--tags"];

/// Makes the fixture tree's builds write version.h with git, as QMK's
/// makefiles ask for it (the fixture's own pass `--skip-git`).
pub fn version_h_with_git(tree: &Path) {
    let mk = tree.join("builddefs/build_keyboard.mk");
    let text = std::fs::read_to_string(&mk).unwrap();
    assert!(text.contains(" --skip-git -q"), "{text}");
    std::fs::write(&mk, text.replace(" --skip-git -q", " -q")).unwrap();
}

/// Makes `dir` a git checkout of one commit holding all its files.
pub fn commit_all(dir: &Path) {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "base"]);
}

/// A `keyfab` command with a clean environment (no QMK_HOME/QMK_USERSPACE
/// leaking in from the machine, nor colour settings: `NO_COLOR` is QMK's
/// `COLOR=false`, which changes every compile), run from `cwd`.
pub fn keyfab(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyfab"));
    // Never the user's cache (`$XDG_CACHE_HOME/keyfab`): a command given no
    // `--cache` gets one of this test process's own.
    let xdg = std::env::temp_dir().join(format!("keyfab-test-xdg-{}", std::process::id()));
    cmd.current_dir(cwd)
        .env_remove("QMK_HOME")
        .env_remove("QMK_USERSPACE")
        .env_remove("KEYFAB_CACHE")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("XDG_CACHE_HOME", xdg);
    cmd
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("keyfab runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `keyfab ARGS` inside `tree`.
pub fn in_tree(tree: &Path, args: &[&str]) -> Run {
    run(keyfab(tree).args(args))
}

/// The fixture's solo:default keymap, tree-relative.
pub const SOLO_KEYMAP: &str = "keyboards/solo/keymaps/default/keymap.c";

/// A temp copy of `fixtures/tree` with its own cache folder beside it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub tree: PathBuf,
    pub cache: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let (tmp, tree) = copy_fixture("tree");
        let cache = tmp.path().join("cache");
        Fixture { tmp, tree, cache }
    }

    /// `keyfab --cache <cache>`, run in the tree.
    pub fn keyfab(&self) -> Command {
        let mut cmd = keyfab(&self.tree);
        cmd.arg("--cache").arg(&self.cache);
        cmd
    }

    /// `keyfab cache stats`' figures, as JSON.
    pub fn cache_stats(&self) -> serde_json::Value {
        run(self.keyfab().args(["cache", "stats", "--format", "json"]))
            .json()
            .get("stats")
            .cloned()
            .unwrap()
    }

    /// Rewrites a tree file through `f`.
    pub fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let p = self.tree.join(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(text)).unwrap();
    }

    /// Adds to solo:default's keymap what its compiler warns about (a
    /// variable `never_read`, set and never read).
    pub fn warn_in_solo_keymap(&self) {
        self.edit(SOLO_KEYMAP, |s| {
            s + "\nint spare(void) { int never_read = 1; return 0; }\n"
        });
    }

    /// Adds to solo:default's keymap a compile error (`undeclared_name`).
    pub fn break_solo_keymap(&self) {
        self.edit(SOLO_KEYMAP, |s| {
            s + "\nint broken(void) { return undeclared_name; }\n"
        });
    }
}

/// Writes `dir/as`: an assembler that runs the real one (the one `cc`
/// uses), with `version` in a comment, so each version is another file.
/// With `COMPILER_PATH=dir`, `cc` runs it.
pub fn write_assembler(dir: &Path, version: u32) {
    write_assembler_script(dir, &format!("# assembler {version}"));
}

/// Writes `dir/as`: `script` (shell lines that may change the arguments),
/// then the real assembler run with them.
pub fn write_assembler_script(dir: &Path, script: &str) {
    let out = Command::new("cc")
        .arg("-print-prog-name=as")
        .output()
        .unwrap();
    let real = String::from_utf8(out.stdout).unwrap();
    let text = format!("#!/bin/sh\n{script}\nexec {} \"$@\"\n", real.trim());
    write_script(&dir.join("as"), &text);
}

/// Writes an executable script at `path`.
pub fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `PATH` with `dir` first (its programs shadow the machine's).
pub fn path_with_first(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A count from [`Fixture::cache_stats`].
pub fn num(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v:#}"))
}

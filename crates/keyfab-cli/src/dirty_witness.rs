//! QMK's `git diff --quiet` and `git diff --quiet --cached` of a checkout,
//! answered from one path when that suffices. The work-tree diff stats
//! every tracked file (~45 ms for QMK's 23k on a 2-core VM, most of a
//! no-op build in a checkout) and runs `git status` in each checked-out
//! submodule at its recorded commit; a checkout that is dirty usually stays dirty
//! by the same file between builds (the keymap being edited). So the cache
//! remembers, for each diff, the first path its last whole run named (its
//! witness), and the next build first asks git about those paths alone:
//! changes there are changes in the whole diff, since a pathspec only
//! narrows it, and version.h reads the two diffs only together (changes in
//! either make it dirty). When no witness shows changes, the whole diffs
//! run and name the next ones. A witness is a hint: its key is the
//! checkout's folder and the diff alone, and a wrong one only costs a
//! narrowed diff (~10 ms).

use crate::gen_cmds::{git, git_output, GitAnswer};
use keyfab_cas::{CommandKey, Digest, LocalCas, NewAction, NewOutput};
use std::path::Path;

/// Which of QMK's two diffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diff {
    /// `git diff --quiet`: the work tree against the index.
    WorkTree,
    /// `git diff --quiet --cached`: the index against `HEAD`.
    Index,
}

impl Diff {
    /// QMK's command.
    fn quiet(self) -> &'static [&'static str] {
        match self {
            Diff::WorkTree => &["diff", "--quiet"],
            Diff::Index => &["diff", "--quiet", "--cached"],
        }
    }

    /// The same diff, naming its changes: `--quiet` is `--exit-code` with
    /// no output, so the exit code is the same.
    fn naming(self) -> &'static [&'static str] {
        match self {
            Diff::WorkTree => &["diff", "--name-only", "-z", "--exit-code"],
            Diff::Index => &["diff", "--name-only", "-z", "--exit-code", "--cached"],
        }
    }
}

/// What QMK's two diffs say together: version.h's dirty marks follow from
/// that alone (QMK's star: either exits non-zero; describe's suffix:
/// either finds changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirt {
    /// Both exit 0.
    Clean,
    /// One finds changes, and neither fails.
    Changed,
    /// One fails (exits neither 0 nor 1).
    Failed,
}

impl Dirt {
    fn of(answers: [i32; 2]) -> Dirt {
        if answers.iter().any(|c| !matches!(c, 0 | 1)) {
            Dirt::Failed
        } else if answers.contains(&1) {
            Dirt::Changed
        } else {
            Dirt::Clean
        }
    }
}

/// QMK's `git diff --quiet` and `git diff --quiet --cached` of `repo`,
/// together; with `memo`, first from the witnesses kept there (the work
/// tree's whole diff then runs only when neither shows changes).
pub fn dirt(repo: &Path, memo: Option<&LocalCas>) -> Dirt {
    let diffs = [Diff::WorkTree, Diff::Index];
    let Some(cas) = memo else {
        let codes = std::thread::scope(|s| {
            let work_tree = s.spawn(|| exit_code(&git(repo, Diff::WorkTree.quiet())));
            let index = exit_code(&git(repo, Diff::Index.quiet()));
            [join(work_tree), index]
        });
        return Dirt::of(codes);
    };
    let keys = diffs.map(|d| witness_key(repo, d));
    let witnesses = keys.map(|k| recall(cas, &k));
    let shows_changes = |diff: Diff, path: &str| {
        // `top`: names are from the checkout's top, whichever folder git
        // runs in; `literal`: a name is not a pattern.
        let spec = format!(":(top,literal){path}");
        matches!(
            git(repo, &[diff.quiet(), &["--", &spec]].concat()),
            Err((1, _))
        )
    };
    let proven = std::thread::scope(|s| {
        let narrowed = |i: usize| {
            let path = witnesses[i].as_deref()?;
            Some(s.spawn(move || shows_changes(diffs[i], path)))
        };
        let work_tree = narrowed(0);
        let index = narrowed(1).is_some_and(join);
        work_tree.is_some_and(join) || index
    });
    if proven {
        return Dirt::Changed;
    }
    let codes = std::thread::scope(|s| {
        let whole = |i: usize| whole_diff(repo, diffs[i], cas, &keys[i], witnesses[i].as_deref());
        let work_tree = s.spawn(move || whole(0));
        let index = whole(1);
        [join(work_tree), index]
    });
    Dirt::of(codes)
}

/// The exit code of the whole `diff`, remembering the first path it names
/// (none when clean) where that is not `witness` already.
fn whole_diff(
    repo: &Path,
    diff: Diff,
    cas: &LocalCas,
    key: &keyfab_cas::ActionKey,
    witness: Option<&str>,
) -> i32 {
    let (code, names, _) = git_output(repo, diff.naming());
    let first = names
        .split(|&b| b == 0)
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|_| code == 1);
    let next = first.unwrap_or("");
    if witness.unwrap_or("") != next {
        remember(cas, key, next);
    }
    code
}

fn exit_code(answer: &GitAnswer) -> i32 {
    match answer {
        Ok(_) => 0,
        Err((code, _)) => *code,
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn witness_key(repo: &Path, diff: Diff) -> keyfab_cas::ActionKey {
    let folder = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    CommandKey {
        kind: "git-diff-witness".into(),
        tool: Digest::of(b""),
        argv: diff.quiet().iter().map(Into::into).collect(),
        cwd: folder,
        env: Default::default(),
        inputs: Vec::new(),
    }
    .key()
}

/// The remembered witness; `None` for none or a clean last diff.
fn recall(cas: &LocalCas, key: &keyfab_cas::ActionKey) -> Option<String> {
    let result = cas.get_action(key).ok()??;
    let path = cas.get_blob(&result.output("path")?.digest).ok()??;
    String::from_utf8(path).ok().filter(|p| !p.is_empty())
}

/// Keeps `path` as the witness ("" for none).
fn remember(cas: &LocalCas, key: &keyfab_cas::ActionKey, path: &str) {
    let action = NewAction::success(vec![NewOutput::bytes("path", path.as_bytes())]);
    // A hint: failing to store it only costs the whole diff next time.
    let _ = cas.put_action(key, &action);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_diffs_together_as_qmk_reads_them() {
        assert_eq!(Dirt::of([0, 0]), Dirt::Clean);
        assert_eq!(Dirt::of([1, 0]), Dirt::Changed);
        assert_eq!(Dirt::of([0, 1]), Dirt::Changed);
        // Both, even where they cancel out: describe goes by the index.
        assert_eq!(Dirt::of([1, 1]), Dirt::Changed);
        assert_eq!(Dirt::of([1, 128]), Dirt::Failed);
        assert_eq!(Dirt::of([129, 0]), Dirt::Failed);
        assert_eq!(Dirt::of([-1, 0]), Dirt::Failed);
    }
}

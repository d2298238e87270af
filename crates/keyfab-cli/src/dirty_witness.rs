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
//! narrowed diff (~15 ms: git reads the whole index). Without a cache the
//! whole diffs run as they do with one.

use crate::gen_cmds::{git, git_output, task, Task};
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
/// together; with `memo`, first from the witnesses kept there (the whole
/// diffs then run only when no witness shows changes).
pub fn dirt(repo: &Path, memo: Option<&LocalCas>) -> Dirt {
    let witnesses = DIFFS.map(|diff| memo.map(|cas| Witness::recall(cas, repo, diff)));
    let proven = std::thread::scope(|s| {
        let narrowed: Vec<_> = DIFFS
            .iter()
            .zip(&witnesses)
            .filter_map(|(&diff, w)| {
                let path = w.as_ref()?.path.as_deref()?;
                Some(task(s, true, move || shows_changes(repo, diff, path)))
            })
            .collect();
        // Every one joined, whichever answers first.
        narrowed
            .into_iter()
            .map(Task::get)
            .fold(false, |any, c| any | c)
    });
    if proven {
        return Dirt::Changed;
    }
    std::thread::scope(|s| {
        let whole = |i: usize| whole_diff(repo, DIFFS[i], witnesses[i].as_ref());
        let work_tree = task(s, true, move || whole(0));
        let index = whole(1);
        Dirt::of([work_tree.get(), index])
    })
}

const DIFFS: [Diff; 2] = [Diff::WorkTree, Diff::Index];

/// Whether `diff` limited to `path` finds changes.
fn shows_changes(repo: &Path, diff: Diff, path: &str) -> bool {
    // `top`: names are from the checkout's top, whichever folder git runs
    // in; `literal`: a name is not a pattern.
    let spec = format!(":(top,literal){path}");
    let narrowed = git(repo, &[diff.quiet(), &["--", &spec]].concat());
    matches!(narrowed, Err((1, _)))
}

/// The exit code of the whole `diff` (the naming one: `--quiet`'s exit
/// code), keeping the first path it names (none when clean) as the
/// witness where there is a cache and that is not the witness already.
fn whole_diff(repo: &Path, diff: Diff, witness: Option<&Witness>) -> i32 {
    let (code, names, _) = git_output(repo, diff.naming());
    if let Some(w) = witness {
        let first = names
            .split(|&b| b == 0)
            .next()
            .and_then(|n| std::str::from_utf8(n).ok())
            .filter(|_| code == 1);
        let next = first.unwrap_or("");
        if w.path.as_deref().unwrap_or("") != next {
            w.remember(next);
        }
    }
    code
}

/// One diff's witness in the cache: where it is kept, and the path kept.
struct Witness<'c> {
    cas: &'c LocalCas,
    key: keyfab_cas::ActionKey,
    /// `None` for none, or a clean last diff.
    path: Option<String>,
}

impl<'c> Witness<'c> {
    fn recall(cas: &'c LocalCas, repo: &Path, diff: Diff) -> Witness<'c> {
        let key = witness_key(repo, diff);
        let path = (|| {
            let result = cas.get_action(&key).ok()??;
            let path = cas.get_blob(&result.output("path")?.digest).ok()??;
            String::from_utf8(path).ok().filter(|p| !p.is_empty())
        })();
        Witness { cas, key, path }
    }

    /// Keeps `path` as the witness ("" for none).
    fn remember(&self, path: &str) {
        let action = NewAction::success(vec![NewOutput::bytes("path", path.as_bytes())]);
        // A hint: failing to store it only costs the whole diff next time.
        let _ = self.cas.put_action(&self.key, &action);
    }
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

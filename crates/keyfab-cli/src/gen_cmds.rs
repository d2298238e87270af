//! `keyfab generate KIND -kb KB [-km KM] [-o FILE]`: the files a QMK build
//! generates, for people; plus the clock and git look-ups the generators'
//! inputs need (the generators themselves are pure).

use crate::cli::{Context, GenerateArgs};
use crate::describe_memo::{DescribeState, DESCRIBE_PLAIN};
use crate::dirty_witness::{dirt, Dirt};
use crate::qmk_cmds::{self, Env, Kind, QmkArgs};
use anyhow::{bail, Context as _};
use keyfab_cas::LocalCas;
use keyfab_gen::VersionInfo;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Seconds since the epoch and whether they came from `SOURCE_DATE_EPOCH`.
fn now() -> (i64, bool) {
    if let Some(e) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        return (e, true);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (secs, false)
}

/// Broken-down time: local time like Python's `date.today()`/`strftime`,
/// or UTC for `SOURCE_DATE_EPOCH` (the reproducible-builds convention).
fn broken_down(secs: i64, utc: bool) -> libc::tm {
    // SAFETY: `tm` is plain data; localtime_r/gmtime_r fill it from `t`.
    unsafe {
        let t: libc::time_t = secs as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if utc {
            libc::gmtime_r(&t, &mut tm);
        } else {
            libc::localtime_r(&t, &mut tm);
        }
        tm
    }
}

/// The year of QMK's copyright lines (`date.today().year`); from
/// `SOURCE_DATE_EPOCH` when that is set.
pub fn current_year() -> i32 {
    let (secs, utc) = now();
    broken_down(secs, utc).tm_year + 1900
}

/// `strftime('%Y-%m-%d-%H:%M:%S')`.
fn build_date() -> String {
    let (secs, utc) = now();
    let tm = broken_down(secs, utc);
    format!(
        "{:04}-{:02}-{:02}-{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Whether git could find a repository from `dir` (a `.git` in it or a
/// parent, or `GIT_DIR` set). Without one every git call fails, so QMK's
/// results are known without spawning git.
fn in_git_repo(dir: &Path) -> bool {
    std::env::var_os("GIT_DIR").is_some() || checkout_of(dir).is_some()
}

/// The folder holding the `.git` that git finds from `dir` (itself or a
/// parent's); `None` when `GIT_DIR` names one (then every folder is in it).
fn checkout_of(dir: &Path) -> Option<PathBuf> {
    if std::env::var_os("GIT_DIR").is_some() {
        return None;
    }
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// What a git command printed (trimmed), or its exit code and stderr.
pub(crate) type GitAnswer = Result<String, (i32, String)>;

/// Runs git in `dir`; stdout trimmed on success.
pub(crate) fn git(dir: &Path, args: &[&str]) -> GitAnswer {
    match git_output(dir, args) {
        (0, stdout, _) => Ok(String::from_utf8_lossy(&stdout).trim().to_string()),
        (code, _, stderr) => Err((code, stderr)),
    }
}

/// Runs git in `dir`: its exit code, stdout and stderr (trimmed); outside
/// a repository what git says there, without running it.
pub(crate) fn git_output(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    if !in_git_repo(dir) {
        // `git diff` exits 129 there.
        let code = if args.first() == Some(&"diff") {
            129
        } else {
            128
        };
        let fatal = "fatal: not a git repository (or any of the parent directories): .git";
        return (code, Vec::new(), fatal.into());
    }
    let out = match Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => return (-1, Vec::new(), e.to_string()),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.code().unwrap_or(-1), out.stdout, stderr)
}

/// The `git describe` of QMK's `git_get_version(repo_dir, check_dir)`:
/// `None` when `check_dir` does not exist (QMK runs no git then).
fn describe(repo: &Path, check: Option<&str>) -> Option<GitAnswer> {
    let check_dir = match check {
        Some(c) => repo.join(c),
        None => repo.to_path_buf(),
    };
    if !check_dir.exists() {
        return None;
    }
    Some(git(repo, &DESCRIBE))
}

/// The settings under which `git diff` sees the work tree otherwise than
/// `git describe --dirty` does: describe reads no `diff.*` settings.
const DIFF_SETTINGS: [&str; 3] = [
    "config",
    "--get-regexp",
    "^diff\\.(ignoresubmodules|autorefreshindex)$",
];

/// What `git describe --dirty` ([`DESCRIBE`]) prints, from the describe
/// without it and the two diffs QMK runs for the tree anyway (`dirt`).
/// describe's suffix says whether `git diff-index HEAD` finds changes after
/// refreshing the index: an index that differs from `HEAD` does, even where
/// the file is as in `HEAD` again (the entry no longer matches the file,
/// which is then not hashed); so does a file that differs from the index;
/// nothing else does. `None` where only describe can say: a failure, or
/// `diff.*` settings found (`settings` is [`DIFF_SETTINGS`]' answer, which
/// exits 1 when there are none).
fn dirty_from_diffs(plain: &GitAnswer, dirt: Dirt, settings: &GitAnswer) -> Option<String> {
    let plain = plain.as_ref().ok()?;
    if !matches!(settings, Err((1, _))) {
        return None;
    }
    match dirt {
        Dirt::Clean => Some(plain.clone()),
        Dirt::Changed => Some(format!("{plain}-dirty")),
        Dirt::Failed => None,
    }
}

/// The tree's describe without `--dirty` ([`DESCRIBE_PLAIN`]), from `memo`
/// when it knows the checkout's state, else from git (then remembered).
fn described_plain(root: &Path, memo: Option<&LocalCas>) -> GitAnswer {
    let state = memo.and_then(|_| DescribeState::read(root, git));
    let (Some(cas), Some(state)) = (memo, state) else {
        return git(root, &DESCRIBE_PLAIN);
    };
    if let Some(described) = state.recall(cas) {
        return Ok(described);
    }
    let described = git(root, &state.describe_args());
    if let Ok(d) = &described {
        state.remember(cas, d);
    }
    described
}

/// [`describe`] of `dir` on a thread when it starts git, with `memo`
/// ([`describe_checkout`]); `None` when `dir` is a folder of the tree's own
/// checkout (`tree`), which the tree's describe answers for.
fn describe_other<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    dir: &'s Path,
    check: Option<&'static str>,
    tree: Option<&Path>,
    memo: Option<&'s LocalCas>,
) -> Option<Task<'s, Option<GitAnswer>>> {
    let starts_git = describes(dir, check);
    let as_tree = starts_git && tree.is_some() && checkout_of(dir).as_deref() == tree;
    (!as_tree).then(|| task(s, starts_git, move || describe_checkout(dir, check, memo)))
}

/// [`describe`] of a checkout of its own (ChibiOS's, a userspace), with its
/// walk from `memo` ([`describe_by_diffs`]; ~100 ms of walk saved in a
/// ChibiOS checkout with no tag near).
fn describe_checkout(
    repo: &Path,
    check: Option<&str>,
    memo: Option<&LocalCas>,
) -> Option<GitAnswer> {
    if memo.is_none() || !describes(repo, check) {
        return describe(repo, check);
    }
    Some(describe_by_diffs(repo, memo).0)
}

/// The checkout's `git describe --dirty` ([`DESCRIBE`]) and what QMK's
/// `git diff --quiet` and `git diff --quiet --cached` say together
/// ([`dirt`], from the witnesses in `memo`): the describe without
/// `--dirty` ([`described_plain`], its walk from `memo`) runs beside the
/// diffs, which settle its suffix ([`dirty_from_diffs`]), so git scans the
/// work tree once at most; describe itself with `--dirty` where they do
/// not.
fn describe_by_diffs(repo: &Path, memo: Option<&LocalCas>) -> (GitAnswer, Dirt) {
    std::thread::scope(|s| {
        let in_repo = in_git_repo(repo);
        let diffs = task(s, in_repo, || dirt(repo, memo));
        let settings = task(s, in_repo, || git(repo, &DIFF_SETTINGS));
        let plain = described_plain(repo, memo);
        let diffs = diffs.get();
        let version = dirty_from_diffs(&plain, diffs, &settings.get())
            .map_or_else(|| git(repo, &DESCRIBE), Ok);
        (version, diffs)
    })
}

/// Whether [`describe`] starts git.
fn describes(repo: &Path, check: Option<&str>) -> bool {
    check.map_or(repo.to_path_buf(), |c| repo.join(c)).exists() && in_git_repo(repo)
}

const DESCRIBE: [&str; 5] = keyfab_build::target::DESCRIBE;

/// The rest of `git_get_version`: the version, or QMK's warnings and none.
fn git_version(described: Option<GitAnswer>, quiet: bool) -> Option<String> {
    match described? {
        Ok(v) => Some(v),
        Err(_) if quiet => None,
        Err((code, stderr)) => {
            eprintln!(
                "keyfab: warning: \"git {}\" returned error code {code}",
                DESCRIBE.join(" ")
            );
            eprintln!("keyfab: warning: {stderr}");
            None
        }
    }
}

/// A git look-up: on a thread of its own when it starts git, else answered
/// at once (a thread costs more than the answer without git).
pub(crate) enum Task<'s, T> {
    Done(T),
    Running(std::thread::ScopedJoinHandle<'s, T>),
}

pub(crate) fn task<'s, T: Send + 's>(
    s: &'s std::thread::Scope<'s, '_>,
    starts_git: bool,
    f: impl FnOnce() -> T + Send + 's,
) -> Task<'s, T> {
    if starts_git {
        Task::Running(s.spawn(f))
    } else {
        Task::Done(f())
    }
}

impl<T> Task<'_, T> {
    pub(crate) fn get(self) -> T {
        match self {
            Task::Done(v) => v,
            Task::Running(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        }
    }
}

/// What QMK's `generate_version_h` puts into `version.h`, and the tree's
/// own `git describe` among it when git gave one.
#[derive(Debug, Clone)]
pub struct Versions {
    pub info: VersionInfo,
    /// The tree's revision (see [`keyfab_build::target::tree_revision`]).
    pub described: Option<String>,
}

/// What QMK's `generate_version_h` puts into `version.h`.
/// `quiet` keeps git's warnings to ourselves (in-process calls).
/// `memo`: the cache that remembers each checkout's describe walk.
pub fn version_info(
    ctx: &Context,
    skip_git: bool,
    skip_all: bool,
    quiet: bool,
    memo: Option<&LocalCas>,
) -> Versions {
    let without_git = |info| Versions {
        info,
        described: None,
    };
    if skip_all {
        return without_git(VersionInfo::skip_all());
    }
    let date = build_date();
    if skip_git {
        return without_git(VersionInfo::skip_git(&date));
    }
    let root = ctx.tree.root();
    let chibios_dir = root.join("lib/chibios");
    let contrib_dir = root.join("lib/chibios-contrib");
    let userspace_dir = ctx.tree.userspace().map(|us| us.root.clone());
    // QMK runs these git commands one after the other; they only read (an
    // index refresh that finds the lock taken is skipped), so those that do
    // start git run side by side here and are answered in QMK's order.
    // `git describe` speaks of a whole checkout, from any folder in it: a
    // folder of the tree's own (a submodule not checked out, say) is
    // described as the tree is, without git once more.
    let tree_checkout = checkout_of(root);
    let (diffs, version, hash, chibios, contrib, userspace) = std::thread::scope(|s| {
        let other = |dir, check| describe_other(s, dir, check, tree_checkout.as_deref(), memo);
        let in_repo = in_git_repo(root);
        let hash = task(s, in_repo, || git(root, &["rev-parse", "--short", "HEAD"]));
        let chibios = other(&chibios_dir, Some("os"));
        let contrib = other(&contrib_dir, None);
        let userspace = userspace_dir.as_deref().map(|us| other(us, None));
        // QMK's two diffs of the tree settle its describe's suffix too.
        let (version, diffs) = describe_by_diffs(root, memo);
        let version = Some(version);
        let or_tree = |t: Option<Task<'_, _>>| t.map_or_else(|| version.clone(), Task::get);
        (
            diffs,
            version.clone(),
            hash.get(),
            or_tree(chibios),
            or_tree(contrib),
            userspace.map(or_tree),
        )
    });
    // QMK's star: either diff exits non-zero.
    let dirty = diffs != Dirt::Clean;
    let described = version.clone().and_then(Result::ok);
    let version = git_version(version, quiet).unwrap_or_else(|| date.clone());
    let hash = hash.unwrap_or_else(|_| "Unknown".into());
    let bcd = keyfab_gen::triplet_to_bcd(&version);
    let chibios = git_version(chibios, quiet).unwrap_or_else(|| date.clone());
    let contrib = git_version(contrib, quiet).unwrap_or_else(|| date.clone());
    let userspace = match userspace {
        Some(described) => git_version(described, quiet).unwrap_or_else(|| date.clone()),
        None => "None".into(),
    };
    Versions {
        info: VersionInfo {
            git_version: version,
            build_date: date,
            bcd_version: bcd,
            git_hash: hash,
            dirty,
            chibios_version: chibios,
            chibios_contrib_version: contrib,
            userspace_version: userspace,
        },
        described,
    }
}

/// The kinds of `keyfab generate`, what they are, and the QMK generator.
pub const GENERATE_KINDS: [(&str, Kind, &str); 17] = [
    (
        "config-h",
        Kind::ConfigH,
        "info_config.h of the keyboard, or config.h of a keymap.json (-km)",
    ),
    (
        "rules-mk",
        Kind::RulesMk,
        "info_rules.mk of the keyboard, or rules.mk of a keymap.json (-km)",
    ),
    ("keymap-c", Kind::Json2c, "keymap.c of a keymap.json (-km)"),
    ("keymap-h", Kind::KeymapH, "keymap.h of a keymap.json (-km)"),
    ("keyboard-c", Kind::KeyboardC, "default_keyboard.c"),
    ("keyboard-h", Kind::KeyboardH, "default_keyboard.h"),
    ("version-h", Kind::VersionH, "version.h"),
    (
        "make-dependencies",
        Kind::MakeDependencies,
        "info_deps.d (needs -km)",
    ),
    (
        "community-rules-mk",
        Kind::CommunityRulesMk,
        "community_rules.mk",
    ),
    (
        "community-config-h",
        Kind::CommunityConfigH,
        "community_config.h",
    ),
    (
        "community-modules-h",
        Kind::CommunityModulesH,
        "community_modules.h",
    ),
    (
        "community-modules-c",
        Kind::CommunityModulesC,
        "community_modules.c",
    ),
    (
        "community-introspection-c",
        Kind::CommunityIntrospectionC,
        "community_modules_introspection.c",
    ),
    (
        "community-introspection-h",
        Kind::CommunityIntrospectionH,
        "community_modules_introspection.h",
    ),
    (
        "led-matrix-inc",
        Kind::LedMatrixInc,
        "led_matrix_community_modules.inc",
    ),
    (
        "rgb-matrix-inc",
        Kind::RgbMatrixInc,
        "rgb_matrix_community_modules.inc",
    ),
    (
        "split-transaction-id-inc",
        Kind::SplitTransactionIdInc,
        "split_transaction_id_community_modules.inc",
    ),
];

/// `keyfab generate KIND -kb KB [-km KM] [-o FILE]`: the same bytes as the
/// build would get, with the arguments make would have passed worked out
/// (the keymap's keymap.json, the keyboard's own header).
pub fn generate(ctx: &Context, g: GenerateArgs) -> anyhow::Result<ExitCode> {
    let list = || -> String {
        GENERATE_KINDS
            .iter()
            .map(|(n, _, what)| format!("  {n:<27} {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if g.kind == "list" {
        println!("{}", list());
        return Ok(ExitCode::SUCCESS);
    }
    let Some(&(_, kind, _)) = GENERATE_KINDS.iter().find(|(n, _, _)| *n == g.kind) else {
        bail!("unknown kind {:?}; the kinds are:\n{}", g.kind, list());
    };
    if kind == Kind::VersionH {
        let a = QmkArgs {
            output: g.output.clone(),
            quiet: true,
            ..QmkArgs::default()
        };
        let mut env = Env::new(ctx).context("cannot set up")?;
        return qmk_cmds::run_kind(&mut env, kind, &a);
    }
    let Some(requested) = g.keyboard.as_deref() else {
        bail!("{} needs -kb KEYBOARD", g.kind);
    };
    let res = ctx.tree.resolve_keyboard(requested)?;
    let kb = res.keyboard;
    let mut a = QmkArgs {
        keyboard: Some(kb.clone()),
        keymap: g.keymap.clone(),
        output: g.output.clone(),
        quiet: true,
        ..QmkArgs::default()
    };
    let keymap_only = matches!(kind, Kind::Json2c | Kind::KeymapH);
    if let Some(km) = &g.keymap {
        let info = keyfab_info::Engine::new(ctx.tree.clone())
            .info_json(&kb)
            .value;
        let layouts = keyfab_info::community_layouts_of(&info);
        let loc = ctx.tree.require_keymap(&kb, km, &layouts)?;
        match (&loc.keymap_json, kind) {
            (Some(json), _)
                if kind != Kind::MakeDependencies
                    && kind != Kind::KeyboardC
                    && kind != Kind::KeyboardH
                    && kind != Kind::VersionH =>
            {
                a.filename = Some(json.to_string_lossy().into_owned());
            }
            (None, _) if keymap_only => {
                bail!(
                    "keymap {km} of {kb} has no keymap.json: {} is written by hand",
                    loc.dir.display()
                )
            }
            _ => {}
        }
    } else if keymap_only {
        bail!("{} needs -km (a keymap with a keymap.json)", g.kind);
    }
    if kind == Kind::KeyboardH {
        // make's FOUND_KEYBOARD_H: the top-most `<folder>/<name>.h` of the chain.
        let mut found = None;
        for folder in keyfab_tree::keyboard_chain(&kb) {
            let name = folder.rsplit('/').next().unwrap_or(&folder).to_string();
            if ctx
                .tree
                .path(&format!("keyboards/{folder}/{name}.h"))
                .is_file()
            {
                found = Some(format!("{name}.h"));
                break;
            }
        }
        a.include = Some(found);
    }
    let mut env = Env::new(ctx).context("cannot set up")?;
    qmk_cmds::run_kind(&mut env, kind, &a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_dirty_suffix_from_the_diffs_unless_settings_or_failures() {
        let failed = || Err((128, "fatal".to_string()));
        let plain: GitAnswer = Ok("0.1.0-3-gabcdef".into());
        let none_set: GitAnswer = Err((1, String::new()));
        let derive = |dirt, settings| dirty_from_diffs(&plain, dirt, &settings);
        assert_eq!(
            derive(Dirt::Clean, none_set.clone()).as_deref(),
            Some("0.1.0-3-gabcdef")
        );
        assert_eq!(
            derive(Dirt::Changed, none_set.clone()).as_deref(),
            Some("0.1.0-3-gabcdef-dirty")
        );
        // A diff that failed, settings found (exit 0) or unreadable.
        assert_eq!(derive(Dirt::Failed, none_set.clone()), None);
        assert_eq!(
            derive(Dirt::Clean, Ok("diff.ignoresubmodules all".into())),
            None
        );
        assert_eq!(derive(Dirt::Clean, failed()), None);
        // No describe to suffix.
        assert_eq!(dirty_from_diffs(&failed(), Dirt::Clean, &none_set), None);
    }
}

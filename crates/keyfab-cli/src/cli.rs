//! Command-line definition. QMK's spellings `-kb` and `-km` are accepted and
//! rewritten to `--keyboard`/`--keymap` before clap sees them.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use keyfab_tree::{Tree, Userspace};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "keyfab",
    version,
    about = "Fast, incremental, content-addressed builds for QMK keyboard firmware trees",
    long_about = "keyfab answers the questions QMK's CLI answers (which keyboards exist, what a name \
resolves to, which keymap a build uses) and builds firmware from a content-addressed cache.\n\n\
The tree is --tree PATH, else the current folder (or a parent) holding keyboards/ and data/, \
else $QMK_HOME. A QMK userspace is --userspace PATH, else a parent folder with qmk.json, else \
$QMK_USERSPACE.\n\nExit status: 0 success, 1 the command failed (its error is on stderr), \
2 the command line was wrong.",
    after_help = "Examples:\n  keyfab --tree fixtures/tree list-keyboards\n  keyfab list-keymaps -kb planck/rev6\n  keyfab resolve -kb planck -km default --format json"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The QMK tree to work on (default: current folder or a parent, else $QMK_HOME)
    #[arg(long, global = true, value_name = "PATH")]
    pub tree: Option<PathBuf>,
    /// A QMK userspace overlay (default: a parent folder with qmk.json, else $QMK_USERSPACE)
    #[arg(long, global = true, value_name = "PATH")]
    pub userspace: Option<PathBuf>,
    /// The cache folder (default: $KEYFAB_CACHE, else $XDG_CACHE_HOME/keyfab, else ~/.cache/keyfab)
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every keyboard of the tree (folders with a keyboard.json), like `qmk list-keyboards`
    ListKeyboards(ListKeyboardsArgs),
    /// List the keymaps of a keyboard, like `qmk list-keymaps`
    ListKeymaps(ListKeymapsArgs),
    /// Show what a keyboard name resolves to, the files that apply, and the keymap a build uses
    Resolve(ResolveArgs),
    /// List the build targets of the userspace's qmk.json
    UserspaceList(FormatArgs),
    /// Build every target of the userspace's qmk.json, like `qmk userspace-compile` (as a sweep: one job pool, a report)
    UserspaceCompile(crate::sweep_cmds::UserspaceCompileArgs),
    /// Build a target's firmware: plan it with the tree's makefiles, compile from the cache
    Build(BuildArgs),
    /// Build targets, then rebuild them whenever a file they may depend on changes
    Watch(WatchArgs),
    /// Build the whole keyboard matrix (or a filtered, sharded part) on one job pool, with a report
    Sweep(crate::sweep_cmds::SweepArgs),
    /// Answer one of QMK's cc-option probes from the cache (make calls this while planning)
    #[command(hide = true)]
    ProbeCcOption(ProbeArgs),
    /// Log a generator call, then run it (make calls this while planning)
    #[command(hide = true)]
    RecordGenerator(RecordArgs),
    /// Inspect and maintain the cache: stats, gc, verify, clear
    Cache(crate::cache_cmds::CacheArgs),
    /// Show the merged info of a keyboard (and keymap), like `qmk info`
    Info(crate::info_cmds::InfoArgs),
    /// Stand-in for QMK's generators as make calls them: `make … QMK_BIN="keyfab qmk"`
    #[command(disable_help_flag = true)]
    Qmk(QmkCmdArgs),
    /// Write a file a QMK build generates (info_config.h, keymap.c, …); `keyfab generate list` lists the kinds
    Generate(GenerateArgs),
    /// Rebuild recorded targets from nothing elsewhere, on another clock, and prove byte-identity
    Audit(crate::audit_cmds::AuditArgs),
    /// Which inputs changed since a target's previous build, and which steps re-ran because of each
    Explain(crate::audit_cmds::ExplainArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[arg(long)]
    pub log: std::path::PathBuf,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Append the answer to this file (the plan's log)
    #[arg(long)]
    pub log: Option<std::path::PathBuf>,
    #[arg(allow_hyphen_values = true)]
    pub cc: String,
    #[arg(allow_hyphen_values = true)]
    pub option: String,
    #[arg(default_value = "", allow_hyphen_values = true)]
    pub fallback: String,
    #[arg(default_value = "", allow_hyphen_values = true)]
    pub extra: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// `KEYBOARD:KEYMAP`, one or more
    pub targets: Vec<String>,
    /// Parallel compile jobs (default: the number of cores)
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Set a make variable, like QMK's `-e VAR=VALUE`
    #[arg(short = 'e', long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// Wait this long after the last change before rebuilding
    #[arg(long, default_value_t = 40, value_name = "MS")]
    pub debounce_ms: u64,
    /// Stop after this many builds (for scripts and tests)
    #[arg(long, hide = true)]
    pub max_builds: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `KEYBOARD:KEYMAP`, or a QMK Configurator export FILE.json (`-` reads it from stdin)
    pub target: Option<String>,
    /// Keyboard name or alias (QMK's -kb also works)
    #[arg(long)]
    pub keyboard: Option<String>,
    /// Keymap (QMK's -km also works)
    #[arg(long)]
    pub keymap: Option<String>,
    /// Parallel compile jobs (default: the number of cores)
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Set a make variable, like QMK's `-e VAR=VALUE`
    #[arg(short = 'e', long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// Print the plan's steps (one JSON object per line) and build nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Remove the target's intermediate files (.build/obj_<target>) first; the cache stays
    #[arg(long)]
    pub clean: bool,
    /// Also write compile_commands.json at the tree root, like `qmk compile --compiledb`
    #[arg(long)]
    pub compiledb: bool,
    /// The generator command make calls as $(QMK_BIN) (default: this keyfab's `qmk` entry point, or $KEYFAB_QMK_BIN)
    #[arg(long, value_name = "CMD")]
    pub qmk_bin: Option<String>,
    /// Stable generated files: SOURCE_DATE_EPOCH from the tree's last commit (or 0) unless set (always on when it is set)
    #[arg(long)]
    pub reproducible: bool,
}

#[derive(Debug, Args)]
pub struct QmkCmdArgs {
    /// The QMK subcommand (generate-config-h, json2c, …) and its arguments, as QMK takes them
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to generate (config-h, rules-mk, keymap-c, keyboard-c, keyboard-h, version-h, …; `list` lists them)
    pub kind: String,
    /// Keyboard name or alias (QMK's -kb also works); not needed for version-h
    #[arg(long)]
    pub keyboard: Option<String>,
    /// Keymap whose keymap.json to use (QMK's -km also works)
    #[arg(long)]
    pub keymap: Option<String>,
    /// Write here (atomically; an unchanged file is left alone) instead of stdout
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ListKeyboardsArgs {
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct ListKeymapsArgs {
    /// Keyboard name or alias (QMK's -kb also works)
    #[arg(long)]
    pub keyboard: String,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Keyboard name or alias; `KB:KM` also sets the keymap (QMK's -kb also works)
    #[arg(long)]
    pub keyboard: String,
    /// Keymap to locate (QMK's -km also works)
    #[arg(long)]
    pub keymap: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// What every command needs: the tree, with its userspace.
pub struct Context {
    pub tree: Tree,
    pub cache: Option<PathBuf>,
}

impl Context {
    pub fn from_global(g: &GlobalArgs) -> anyhow::Result<Context> {
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let qmk_home = std::env::var_os("QMK_HOME").map(PathBuf::from);
        let tree = Tree::discover(g.tree.as_deref(), &cwd, qmk_home.as_deref())?;
        let env_us = std::env::var_os("QMK_USERSPACE").map(PathBuf::from);
        let userspace = Userspace::discover(g.userspace.as_deref(), &cwd, env_us.as_deref())?;
        Ok(Context {
            tree: tree.with_userspace(userspace),
            cache: g.cache.clone(),
        })
    }
}

/// Rewrites QMK's two-letter short options (`-kb X`, `-kb=X`, `-km X`) into
/// their long forms, which clap understands.
pub fn qmk_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            for (short, long) in [("-kb", "--keyboard"), ("-km", "--keymap")] {
                if s == short {
                    return long.into();
                }
                if let Some(rest) = s.strip_prefix(short).and_then(|r| r.strip_prefix('=')) {
                    return format!("{long}={rest}").into();
                }
            }
            a
        })
        .collect()
}

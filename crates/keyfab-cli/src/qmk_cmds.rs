//! `keyfab qmk <subcommand> …`: a stand-in for QMK's CLI as
//! `builddefs/build_keyboard.mk` calls it through `$(QMK_BIN)`, so
//! `make … QMK_BIN="keyfab qmk"` builds with keyfab generating every file.
//!
//! Arguments are read the way QMK's argparse reads them (`-kb`, `--keyboard`,
//! `--keyboard=X`, `-oFILE`, an optional value after `--include`), files are
//! written as QMK's `dump_lines` writes them (unchanged contents leave the
//! file alone; a changed file is first kept as `<file>.bak`), but atomically:
//! the new contents go to a temporary file in the same folder, renamed over
//! the old one, so a failure never leaves a half-written output.

use crate::cli::Context;
use anyhow::{anyhow, bail, Context as _};
use keyfab_build::generated::Generation;
use keyfab_build::info_db::InfoQueryHost;
use keyfab_gen::{Generated, MapEntry, ModuleApis, ModuleInfo, PerModuleInclude};
use keyfab_info::Engine;
use keyfab_tree::reads;
use serde_json::Value;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The subcommands, with their QMK names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ConfigH,
    RulesMk,
    Json2c,
    KeymapH,
    KeyboardC,
    KeyboardH,
    VersionH,
    MakeDependencies,
    CommunityRulesMk,
    CommunityConfigH,
    CommunityModulesH,
    CommunityModulesC,
    CommunityIntrospectionC,
    CommunityIntrospectionH,
    LedMatrixInc,
    RgbMatrixInc,
    SplitTransactionIdInc,
}

pub const KINDS: [(&str, Kind); 17] = [
    ("generate-config-h", Kind::ConfigH),
    ("generate-rules-mk", Kind::RulesMk),
    ("json2c", Kind::Json2c),
    ("generate-keymap-h", Kind::KeymapH),
    ("generate-keyboard-c", Kind::KeyboardC),
    ("generate-keyboard-h", Kind::KeyboardH),
    ("generate-version-h", Kind::VersionH),
    ("generate-make-dependencies", Kind::MakeDependencies),
    (
        "generate-community-modules-rules-mk",
        Kind::CommunityRulesMk,
    ),
    ("generate-community-config-h", Kind::CommunityConfigH),
    ("generate-community-modules-h", Kind::CommunityModulesH),
    ("generate-community-modules-c", Kind::CommunityModulesC),
    (
        "generate-community-modules-introspection-c",
        Kind::CommunityIntrospectionC,
    ),
    (
        "generate-community-modules-introspection-h",
        Kind::CommunityIntrospectionH,
    ),
    (
        "generate-led-matrix-community-modules-inc",
        Kind::LedMatrixInc,
    ),
    (
        "generate-rgb-matrix-community-modules-inc",
        Kind::RgbMatrixInc,
    ),
    (
        "generate-split-transaction-id-community-modules-inc",
        Kind::SplitTransactionIdInc,
    ),
];

/// The arguments of one call, as QMK's argparse would hold them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QmkArgs {
    pub keyboard: Option<String>,
    pub keymap: Option<String>,
    pub output: Option<PathBuf>,
    pub quiet: bool,
    pub escape: bool,
    /// `--include` given; its value may be absent (`--include --output …`).
    pub include: Option<Option<String>>,
    pub skip_git: bool,
    pub skip_all: bool,
    /// The positional keymap.json (configurator export); `-` is stdin.
    pub filename: Option<String>,
}

const USAGE: &str = "usage: keyfab qmk SUBCOMMAND [-kb KEYBOARD] [-km KEYMAP] [-o FILE] [-q] [-e] [-i [FILE]] [--skip-git] [--skip-all] [FILE]";

/// Parses `args` (after the subcommand) the way argparse parses QMK's.
pub fn parse_args(args: &[String]) -> anyhow::Result<QmkArgs> {
    let mut a = QmkArgs::default();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_positional || arg == "-" || !arg.starts_with('-') {
            if a.filename.is_some() {
                bail!("unrecognized arguments: {arg}\n{USAGE}");
            }
            a.filename = Some(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") || n == "-kb" || n == "-km" => {
                (n.to_string(), Some(v.to_string()))
            }
            _ => (arg.clone(), None),
        };
        // `-oFILE`, `-iFILE`: argparse's attached single-letter values.
        let (name, inline) = match (name.as_str(), inline) {
            (n, None)
                if n.len() > 2
                    && (n.starts_with("-o") || n.starts_with("-i"))
                    && !n.starts_with("--") =>
            {
                (n[..2].to_string(), Some(n[2..].to_string()))
            }
            (_, inline) => (name, inline),
        };
        let mut value = |what: &str| -> anyhow::Result<String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            match args.get(i) {
                Some(v) if v == "-" || !v.starts_with('-') => {
                    i += 1;
                    Ok(v.clone())
                }
                _ => bail!("argument {what}: expected one argument\n{USAGE}"),
            }
        };
        match name.as_str() {
            "-kb" | "--keyboard" => a.keyboard = Some(value("-kb/--keyboard")?),
            "-km" | "--keymap" => a.keymap = Some(value("-km/--keymap")?),
            "-o" | "--output" => a.output = Some(PathBuf::from(value("-o/--output")?)),
            "-q" | "--quiet" => a.quiet = true,
            "-e" | "--escape" => a.escape = true,
            "--skip-git" => a.skip_git = true,
            "--skip-all" => a.skip_all = true,
            "-i" | "--include" => {
                a.include = Some(match inline {
                    Some(v) => Some(v),
                    None => match args.get(i) {
                        Some(v) if !v.starts_with('-') => {
                            i += 1;
                            Some(v.clone())
                        }
                        _ => None,
                    },
                })
            }
            "-h" | "--help" => bail!("{USAGE}"),
            _ => bail!("unrecognized arguments: {arg}\n{USAGE}"),
        }
    }
    Ok(a)
}

/// Everything a generator call needs from outside: the tree, the merged-info
/// engine (built on first use), the folder the call was made from, the year.
pub struct Env<'a> {
    pub ctx: &'a Context,
    engine: Option<Engine>,
    /// An engine shared with other calls (in-process generation).
    shared: Option<&'a Engine>,
    /// version.h's values, found once for the calls sharing them (by the
    /// `--skip-git` and `--skip-all` flags).
    versions: Option<&'a Versions>,
    pub cwd: PathBuf,
    pub year: i32,
    /// Keep QMK's informational messages to ourselves (in-process calls:
    /// a spawned generator's stderr was not shown either).
    quiet: bool,
}

impl<'a> Env<'a> {
    pub fn new(ctx: &'a Context) -> anyhow::Result<Env<'a>> {
        Ok(Env {
            ctx,
            engine: None,
            shared: None,
            versions: None,
            cwd: std::env::current_dir().context("cannot read the current folder")?,
            year: crate::gen_cmds::current_year(),
            quiet: false,
        })
    }

    fn engine(&mut self) -> &Engine {
        if let Some(e) = self.shared {
            return e;
        }
        let tree = &self.ctx.tree;
        self.engine.get_or_insert_with(|| Engine::new(tree.clone()))
    }

    /// QMK's `keyboard_folder`: aliases and `DEFAULT_FOLDER` resolved; the
    /// result must be a keyboard.
    fn keyboard(&mut self, requested: &str) -> anyhow::Result<String> {
        match self.engine().keyboard_folder(requested)? {
            Some(kb) => Ok(kb),
            None => bail!("invalid keyboard_folder value: {requested:?}"),
        }
    }

    /// `info_json(keyboard)`; QMK's own fatal errors stop the command.
    fn info(&mut self, keyboard: &str) -> anyhow::Result<Value> {
        let info = self.engine().info_json(keyboard);
        if info.fatal {
            let msgs: Vec<String> = info
                .diagnostics
                .iter()
                .filter(|d| d.severity == keyfab_info::Severity::Error)
                .map(|d| d.to_string())
                .collect();
            bail!(
                "the info of keyboard {keyboard} cannot be merged:\n  {}",
                msgs.join("\n  ")
            );
        }
        // QMK logs these and carries on; so do we (on stderr: make reads
        // only the stdout of `--escape` calls).
        if !self.quiet {
            for d in &info.diagnostics {
                eprintln!("keyfab: {d}");
            }
        }
        Ok(info.value)
    }

    /// A file argument as QMK's `FileType` finds it: relative to the calling
    /// folder, else to the tree.
    fn input_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let from_cwd = self.cwd.join(p);
        if reads::exists(&from_cwd) {
            return from_cwd;
        }
        self.ctx.tree.root().join(p)
    }

    /// `parse_configurator_json`: load (JSON, HJSON tolerated), validate
    /// against `qmk.keymap.v1`.
    fn keymap_json(&mut self, name: &str) -> anyhow::Result<Value> {
        let (shown, text) = if name == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read the keymap from stdin")?;
            ("<stdin>".to_string(), s)
        } else {
            let path = self.input_path(name);
            let text = read_text(&path)?;
            (path.display().to_string(), text)
        };
        let km = keyfab_syntax::parse_json(&shown, &text)
            .map_err(|e| anyhow!("{shown}: invalid JSON: {e}"))?;
        if let Err(e) = self.engine().validate(&km, "qmk.keymap.v1") {
            bail!(
                "Invalid JSON keymap: {shown} : {} (at {})",
                e.message,
                e.json_path
            );
        }
        // QMK also resolves the `keyboard` field through the alias table
        // here; no generator output reads that field, so keyfab skips it.
        Ok(km)
    }

    fn map_entries(&mut self, rules: bool) -> Vec<(String, String, String, bool)> {
        let m = self.engine().mappings();
        let table = if rules { &m.rules } else { &m.config };
        table
            .iter()
            .map(|e| {
                (
                    e.key.clone(),
                    e.info_key.clone(),
                    e.value_type_name.clone(),
                    e.to_c,
                )
            })
            .collect()
    }

    /// `get_modules` plus `load_module_jsons`.
    fn modules(&mut self, a: &QmkArgs) -> anyhow::Result<(Vec<String>, Vec<ModuleInfo>)> {
        let kb = self.keyboard(a.keyboard.as_deref().unwrap_or_default())?;
        let info = self.info(&kb)?;
        let km = match &a.filename {
            Some(f) => Some(self.keymap_json(f)?),
            None => None,
        };
        let names = keyfab_gen::modules_of(&info, km.as_ref()).map_err(|e| anyhow!("{e}"))?;
        let mut infos = Vec::new();
        for m in &names {
            let dir = self
                .find_module(m)
                .ok_or_else(|| anyhow!("Module not found: {m}"))?;
            let file = dir.join("qmk_module.json");
            let text = read_text(&file)?;
            let shown = file.display().to_string();
            let json = keyfab_syntax::parse_json(&shown, &text)
                .map_err(|e| anyhow!("{shown}: invalid JSON: {e}"))?;
            if !skip_schema_validation() {
                if let Err(e) = self.engine().validate(&json, "qmk.community_module.v1") {
                    bail!("{shown}: {} (at {})", e.message, e.json_path);
                }
            }
            infos.push(ModuleInfo {
                module: m.clone(),
                path: dir.to_string_lossy().into_owned(),
                json,
            });
        }
        Ok((names, infos))
    }

    /// `find_module_path`: `modules/<name>/qmk_module.json` in the userspace,
    /// then in the tree.
    fn find_module(&self, module: &str) -> Option<PathBuf> {
        let mut roots = Vec::new();
        if let Some(us) = self.ctx.tree.userspace() {
            roots.push(absolute(&self.cwd, &us.root));
        }
        roots.push(absolute(&self.cwd, self.ctx.tree.root()));
        for root in roots {
            let dir = root.join("modules").join(module);
            if reads::is_file(&dir.join("qmk_module.json")) {
                return Some(dir);
            }
        }
        None
    }

    fn module_apis(&self) -> anyhow::Result<ModuleApis> {
        let dir = self.ctx.tree.root().join("data/constants/module_hooks");
        let mut files = Vec::new();
        if !reads::is_dir(&dir) {
            bail!("{}: no such folder", dir.display());
        }
        for name in reads::list(&dir) {
            if !name.ends_with(".hjson") {
                continue;
            }
            let path = dir.join(&name);
            let shown = path.display().to_string();
            let text = read_text(&path)?;
            let v = keyfab_syntax::parse_json(&shown, &text)
                .map_err(|e| anyhow!("{shown}: invalid JSON: {e}"))?;
            files.push((name, v));
        }
        ModuleApis::from_hook_files(&files).map_err(|e| anyhow!("{}: {e}", dir.display()))
    }

    /// The output path as QMK's `normpath` makes it.
    fn output_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

/// A file's text, read so that a recording caller sees the read.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = reads::read(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .ok_or_else(|| anyhow!("{}: cannot read: No such file or directory", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: cannot read: not valid UTF-8", path.display()))
}

/// `dir` made absolute and physical, as QMK's `Path.cwd()` after its
/// `chdir` to the tree.
fn absolute(cwd: &Path, dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        cwd.join(dir)
    };
    std::fs::canonicalize(&abs).unwrap_or(abs)
}

fn skip_schema_validation() -> bool {
    std::env::var("SKIP_SCHEMA_VALIDATION").is_ok_and(|v| {
        matches!(
            v.trim().to_lowercase().as_str(),
            "1" | "true" | "t" | "yes" | "y" | "on"
        )
    })
}

fn need_keyboard(a: &QmkArgs) -> anyhow::Result<&str> {
    a.keyboard
        .as_deref()
        .ok_or_else(|| anyhow!("the following arguments are required: -kb/--keyboard"))
}

fn need_file(a: &QmkArgs) -> anyhow::Result<&str> {
    a.filename
        .as_deref()
        .ok_or_else(|| anyhow!("the following arguments are required: filename"))
}

fn gen_err(what: &str) -> impl FnOnce(keyfab_gen::GenError) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {e}")
}

/// Runs one generator; returns the file's contents (and QMK's non-fatal
/// error messages).
pub fn generate(env: &mut Env, kind: Kind, a: &QmkArgs) -> anyhow::Result<Generated> {
    let year = env.year;
    Ok(match kind {
        Kind::ConfigH | Kind::RulesMk => {
            let rules = kind == Kind::RulesMk;
            let (info, keymap, converter, what) = match (&a.filename, &a.keyboard) {
                (Some(f), _) => {
                    let km = env.keymap_json(f)?;
                    let cfg = km
                        .get("config")
                        .cloned()
                        .unwrap_or(Value::Object(Default::default()));
                    (cfg, true, km.get("converter").cloned(), f.clone())
                }
                (None, Some(kb)) => {
                    let kb = env.keyboard(kb)?;
                    (env.info(&kb)?, false, None, format!("keyboard {kb}"))
                }
                (None, None) => bail!("You must supply a configurator export or `--keyboard`."),
            };
            let rows = env.map_entries(rules);
            let maps: Vec<MapEntry> = rows
                .iter()
                .map(|(k, i, t, c)| MapEntry {
                    key: k,
                    info_key: i,
                    value_type: t,
                    to_c: *c,
                })
                .collect();
            if rules {
                keyfab_gen::rules_mk(&info, &maps, keymap, converter.as_ref(), year)
            } else {
                keyfab_gen::config_h(&info, &maps, keymap, year)
            }
            .map_err(gen_err(&what))?
        }
        Kind::Json2c => {
            let f = need_file(a)?;
            let km = env.keymap_json(f)?;
            keyfab_gen::keymap_c(&km).map_err(gen_err(f))?
        }
        Kind::KeymapH => {
            let f = need_file(a)?;
            let km = env.keymap_json(f)?;
            keyfab_gen::keymap_h(&km, year).map_err(gen_err(f))?
        }
        Kind::KeyboardC => {
            let kb = env.keyboard(need_keyboard(a)?)?;
            let info = env.info(&kb)?;
            keyfab_gen::keyboard_c(&info, year).map_err(gen_err(&format!("keyboard {kb}")))?
        }
        Kind::KeyboardH => {
            let kb = env.keyboard(need_keyboard(a)?)?;
            let info = env.info(&kb)?;
            let include = a.include.clone().flatten();
            keyfab_gen::keyboard_h(&kb, &info, include.as_deref(), year)
                .map_err(gen_err(&format!("keyboard {kb}")))?
        }
        Kind::VersionH => {
            let flags = (a.skip_git, a.skip_all);
            let v = match env.versions {
                // A sweep's targets share one tree: git runs once for them all.
                Some(memo) => memoized_versions(memo, env.ctx, flags),
                None => {
                    let memo = (!flags.0 && !flags.1)
                        .then(|| existing_cache(env.ctx))
                        .flatten();
                    let quiet = env.quiet;
                    crate::gen_cmds::version_info(env.ctx, flags.0, flags.1, quiet, memo.as_ref())
                }
            };
            keyfab_gen::version_h(&v.info, year)
        }
        Kind::MakeDependencies => {
            let kb = env.keyboard(need_keyboard(a)?)?;
            let keymap = a.keymap.clone();
            let dir = match &keymap {
                Some(km) => {
                    // As QMK: the merged info (for community layouts) only
                    // when the keyboard folders have no such keymap.
                    let found = match env.ctx.tree.locate_keymap(&kb, km, &[]) {
                        Some(loc) => Some(loc),
                        None => {
                            let info = env.info(&kb)?;
                            let layouts = keyfab_info::community_layouts_of(&info);
                            env.ctx.tree.locate_keymap(&kb, km, &layouts)
                        }
                    };
                    found.map(|loc| match loc.source {
                        // QMK finds community layouts relative to the tree.
                        keyfab_tree::KeymapSource::CommunityLayout { .. } => loc
                            .dir
                            .strip_prefix(env.ctx.tree.root())
                            .map(Path::to_path_buf)
                            .unwrap_or(loc.dir.clone()),
                        _ => loc.dir.clone(),
                    })
                }
                None => None,
            };
            let Some(km) = keymap else {
                bail!("generate-make-dependencies needs -km (QMK fails without it too)");
            };
            let dir = dir.map(|d| d.to_string_lossy().into_owned());
            keyfab_gen::make_dependencies(&kb, dir.as_deref(), &km)
        }
        Kind::CommunityRulesMk => {
            let (_, mods) = env.modules(a)?;
            keyfab_gen::community_rules_mk(&mods, year)
        }
        Kind::CommunityConfigH => {
            let (names, _) = env.modules(a)?;
            keyfab_gen::community_config_h(&names, year)
        }
        Kind::CommunityModulesH | Kind::CommunityModulesC => {
            let apis = env.module_apis()?;
            let (_, mods) = env.modules(a)?;
            if kind == Kind::CommunityModulesH {
                keyfab_gen::community_modules_h(&apis, &mods, year)
            } else {
                keyfab_gen::community_modules_c(&apis, &mods, year)
            }
        }
        Kind::CommunityIntrospectionC
        | Kind::CommunityIntrospectionH
        | Kind::LedMatrixInc
        | Kind::RgbMatrixInc => {
            let which = match kind {
                Kind::CommunityIntrospectionC => PerModuleInclude::IntrospectionC,
                Kind::CommunityIntrospectionH => PerModuleInclude::IntrospectionH,
                Kind::LedMatrixInc => PerModuleInclude::LedMatrix,
                _ => PerModuleInclude::RgbMatrix,
            };
            let (_, mods) = env.modules(a)?;
            keyfab_gen::include_per_module(which, &mods, year)
        }
        Kind::SplitTransactionIdInc => {
            let (names, _) = env.modules(a)?;
            keyfab_gen::split_transaction_id_inc(&names, year)
        }
    })
}

/// Writes `contents` to `path` as QMK's `dump_lines` does, atomically.
/// Returns false when the file already held these bytes (left untouched).
pub fn write_output(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    keyfab_build::generated::write_generated(path, contents)
        .map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))
}

/// Generates, then writes the output (or prints it), with QMK's messages.
pub fn run_kind(env: &mut Env, kind: Kind, a: &QmkArgs) -> anyhow::Result<ExitCode> {
    let g = generate(env, kind, a)?;
    let output = a.output.as_ref().filter(|o| o.as_os_str() != "-");
    match output {
        Some(o) => {
            let path = env.output_path(o);
            let written = write_output(&path, g.contents().as_bytes())?;
            match printed(kind, a, &path, &g.errors) {
                Some((out, err)) => {
                    eprint!("{err}");
                    print!("{out}");
                }
                None => {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    for e in &g.errors {
                        eprintln!("keyfab: error: {e}");
                    }
                    if written {
                        eprintln!("Wrote {name} to {}.", path.display());
                    } else {
                        eprintln!("No changes to {name}.");
                    }
                }
            }
        }
        None => {
            for e in &g.errors {
                eprintln!("keyfab: error: {e}");
            }
            let mut out = std::io::stdout().lock();
            out.write_all(g.stdout().as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a call that wrote `path` prints (stdout, stderr), unless that
/// depends on whether the file changed (a call without `--quiet` says so).
fn printed(kind: Kind, a: &QmkArgs, path: &Path, errors: &[String]) -> Option<(String, String)> {
    let mut err: String = errors
        .iter()
        .map(|e| format!("keyfab: error: {e}\n"))
        .collect();
    let mut out = String::new();
    if matches!(kind, Kind::RulesMk | Kind::CommunityRulesMk) {
        if a.quiet {
            let shown = path.to_string_lossy();
            out = if a.escape {
                shown.replace(' ', "\\ ")
            } else {
                shown.into_owned()
            } + "\n";
        } else {
            err += &format!("Wrote rules.mk to {}.\n", path.display());
        }
    } else if !a.quiet && !matches!(kind, Kind::MakeDependencies) {
        return None;
    }
    Some((out, err))
}

/// `keyfab qmk SUBCOMMAND ARGS…`.
pub fn qmk(ctx: &Context, args: &[OsString]) -> anyhow::Result<ExitCode> {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(String::from)
                .ok_or_else(|| anyhow!("argument is not UTF-8: {a:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some((sub, rest)) = args.split_first() else {
        let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
        bail!("{USAGE}\nsubcommands: {}", names.join(", "));
    };
    let Some(&(_, kind)) = KINDS.iter().find(|(n, _)| n == sub) else {
        bail!(
            "keyfab qmk: unknown subcommand {sub:?} (keyfab stands in for QMK's generators only)"
        );
    };
    let a = parse_args(rest)?;
    let mut env = Env::new(ctx)?;
    let code = run_kind(&mut env, kind, &a);
    // The process ends right after: freeing the engine's parsed schemas and
    // files would only cost time.
    std::mem::forget(env);
    code
}

/// Runs `<keyfab> qmk …` calls of a build inside this process, with one
/// merged-info engine for all of them (its schemas compiled once): what a
/// spawned `keyfab qmk` would do, without the process. Calls it does not
/// know (another `QMK_BIN`, output to stdout) are left to spawn.
pub struct InProcessGenerators {
    ctx: Context,
    exe: String,
    engine: std::sync::OnceLock<Engine>,
    /// The salsa queries the engine resolves and merges with.
    queries: std::sync::OnceLock<Arc<InfoQueryHost>>,
    versions: Versions,
    year: i32,
}

/// version.h's values by (`--skip-git`, `--skip-all`), found once per
/// command, and the cache that remembers the checkouts' `git describe`
/// walks across commands.
pub struct Versions {
    found: std::sync::Mutex<std::collections::HashMap<(bool, bool), crate::gen_cmds::Versions>>,
    memo: Option<Arc<keyfab_cas::LocalCas>>,
}

/// The (`--skip-git`, `--skip-all`) QMK's makefiles give version.h for a
/// build with these `-e VAR=VALUE`s: `SKIP_GIT` and `SKIP_VERSION` from them
/// or the environment, set and not empty (make's `ifdef`).
fn version_flags(env: &[(String, String)]) -> (bool, bool) {
    let set = |name: &str| match env.iter().rev().find(|(k, _)| k == name) {
        Some((_, v)) => !v.is_empty(),
        None => std::env::var_os(name).is_some_and(|v| !v.is_empty()),
    };
    (set("SKIP_GIT"), set("SKIP_VERSION"))
}

/// The tree's revision for a build with these `-e`s: version.h's own
/// `git describe`, found once for both (waiting for a prefetch under way),
/// when its makefiles ask git; else git is asked for it alone
/// ([`keyfab_build::target::tree_revision`]).
pub fn tree_revision(
    generators: Option<&InProcessGenerators>,
    env: &[(String, String)],
    tree: &keyfab_tree::Tree,
) -> Option<String> {
    match generators {
        Some(g) if version_flags(env) == (false, false) => {
            memoized_versions(&g.versions, &g.ctx, (false, false)).described
        }
        _ => keyfab_build::target::tree_revision(tree.root()),
    }
}

/// The cache the user's builds use, when there is one (run by hand, or by
/// a make of the user's, `generate-version-h` remembers describe's walk
/// and the dirty witnesses there as a build does; it makes no cache).
fn existing_cache(ctx: &Context) -> Option<keyfab_cas::LocalCas> {
    let dir = crate::build_cmds::cache_dir(ctx).ok()?;
    dir.is_dir()
        .then(|| keyfab_cas::LocalCas::open(&dir).ok())
        .flatten()
}

/// version.h's values for these flags, found once (quietly, as in-process
/// calls are): a caller that comes while they are being found waits for them.
fn memoized_versions(
    memo: &Versions,
    ctx: &Context,
    (skip_git, skip_all): (bool, bool),
) -> crate::gen_cmds::Versions {
    let cas = memo.memo.as_deref();
    let mut found = memo.found.lock().unwrap_or_else(|e| e.into_inner());
    found
        .entry((skip_git, skip_all))
        .or_insert_with(|| crate::gen_cmds::version_info(ctx, skip_git, skip_all, true, cas))
        .clone()
}

impl InProcessGenerators {
    /// For builds in `tree` by this binary (`exe`), whose make gets the
    /// variables `make_env`. The context is the one a generator make spawns
    /// in the tree's folder would discover: make exports the variables of
    /// its command line, so a `QMK_USERSPACE` there (the build's userspace,
    /// see `build_cmds::options`) is the one it sees. `memo`: the cache that
    /// remembers the checkouts' `git describe` walks (a walk was most of a
    /// build's git work in a checkout).
    pub fn new(
        tree: &keyfab_tree::Tree,
        exe: &Path,
        make_env: &[(String, String)],
        memo: Option<Arc<keyfab_cas::LocalCas>>,
    ) -> anyhow::Result<InProcessGenerators> {
        let root = tree.root();
        let qmk_home = std::env::var_os("QMK_HOME").map(PathBuf::from);
        let env_us = match make_env.iter().rev().find(|(k, _)| k == "QMK_USERSPACE") {
            Some((_, v)) => Some(PathBuf::from(v)),
            None => std::env::var_os("QMK_USERSPACE").map(PathBuf::from),
        };
        let userspace = keyfab_tree::Userspace::discover(None, root, env_us.as_deref())?;
        let tree = keyfab_tree::Tree::discover(None, root, qmk_home.as_deref())?;
        Ok(InProcessGenerators {
            ctx: Context {
                tree: tree.with_userspace(userspace),
                cache: None,
            },
            exe: exe.display().to_string(),
            engine: std::sync::OnceLock::new(),
            queries: std::sync::OnceLock::new(),
            versions: Versions {
                found: Default::default(),
                memo,
            },
            year: crate::gen_cmds::current_year(),
        })
    }

    /// Goes on from `prev`'s generators (same tree, `data/` unchanged):
    /// their mapping tables and compiled schemas, and their info queries,
    /// whose inputs are refreshed now (only what changed is merged again).
    /// Does nothing when these generators made their engine already.
    pub fn continue_from(&self, prev: &InProcessGenerators) {
        let Some(queries) = prev.queries.get() else {
            return;
        };
        if self.engine.set(prev.engine().renewed()).is_ok() {
            let _ = self.queries.set(queries.clone());
            queries.refresh();
        }
    }

    /// The merged-info engine of the generators, made on first use; it
    /// resolves keyboards and merges their infos through salsa queries.
    pub fn engine(&self) -> &Engine {
        self.engine.get_or_init(|| {
            let engine = Engine::new(self.ctx.tree.clone());
            let queries = self
                .queries
                .get_or_init(|| InfoQueryHost::new(&engine))
                .clone();
            engine.with_queries(queries)
        })
    }

    /// Starts finding version.h's values now, on a thread of its own. QMK's
    /// build asks for them while make reads its makefiles, and their git
    /// commands (~0.1 s in a checkout of QMK) would hold make up there; the
    /// build's provenance names the tree by the same `git describe`
    /// ([`tree_revision`]). `env` is the build's `-e VAR=VALUE`s.
    pub fn prefetch_versions(self: &Arc<Self>, env: &[(String, String)]) {
        let flags = version_flags(env);
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            // Behind make and the build's own threads until they wait for
            // it: on Linux a thread's nice value is its own, and the threads
            // and git processes it starts take it on. (Alongside, git's
            // index scans took the cores from a no-op's plan check: 4 ms
            // without git, 11-44 ms with; 5-9 ms at nice 10.)
            // SAFETY: setpriority has no memory effects; on failure the
            // thread keeps its priority.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            memoized_versions(&me.versions, &me.ctx, flags)
        });
    }

    /// The generators see `tree` as it is (same root, same userspace): their
    /// engine answers for it too.
    pub fn sees(&self, tree: &keyfab_tree::Tree) -> bool {
        self.ctx.tree.root() == tree.root() && self.ctx.tree.userspace() == tree.userspace()
    }

    fn run(&self, kind: Kind, a: &QmkArgs, output: &Path) -> anyhow::Result<Generation> {
        let engine = self.engine();
        let mut env = Env {
            ctx: &self.ctx,
            engine: None,
            shared: Some(engine),
            versions: Some(&self.versions),
            cwd: self.ctx.tree.root().to_path_buf(),
            year: self.year,
            quiet: true,
        };
        // What the call read, unless its output depends on more than files:
        // version.h asks git and the clock, stdin is gone once read.
        let tracked = kind != Kind::VersionH && a.filename.as_deref() != Some("-");
        let (g, read) = reads::record(|| generate(&mut env, kind, a));
        let g = g?;
        let output = env.output_path(output);
        Ok(Generation {
            printed: printed(kind, a, &output, &g.errors)
                .map(|(out, err)| (out.into_bytes(), err.into_bytes())),
            contents: g.contents().into_bytes(),
            output,
            reads: tracked.then_some(read),
        })
    }
}

/// The engine a command resolves its targets with: the generators' own
/// when they see the same tree (the keyboard's files, the alias table and
/// the schemas are then parsed once for both), else one of its own.
pub enum TargetEngine<'h> {
    Generators(&'h Engine),
    Own(Box<Engine>),
}

impl TargetEngine<'_> {
    pub fn new<'h>(
        host: Option<&'h InProcessGenerators>,
        tree: &keyfab_tree::Tree,
    ) -> TargetEngine<'h> {
        match host {
            Some(h) if h.sees(tree) => TargetEngine::Generators(h.engine()),
            _ => TargetEngine::Own(Box::new(Engine::new(tree.clone()))),
        }
    }
}

impl std::ops::Deref for TargetEngine<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        match self {
            TargetEngine::Generators(e) => e,
            TargetEngine::Own(e) => e,
        }
    }
}

/// The in-process generators for builds in `tree`, unless
/// `KEYFAB_SPAWN_GENERATORS` is set (then every call spawns, as make would);
/// `memo` as [`InProcessGenerators::new`].
pub fn in_process_generators(
    tree: &keyfab_tree::Tree,
    exe: &Path,
    make_env: &[(String, String)],
    memo: Option<Arc<keyfab_cas::LocalCas>>,
) -> Option<std::sync::Arc<InProcessGenerators>> {
    if std::env::var_os("KEYFAB_SPAWN_GENERATORS").is_some() {
        return None;
    }
    InProcessGenerators::new(tree, exe, make_env, memo)
        .ok()
        .map(std::sync::Arc::new)
}

impl keyfab_build::exec::GeneratorHost for InProcessGenerators {
    fn salt(&self) -> String {
        // Besides the files they read: the year of the copyright lines, the
        // environment the generators read, the userspace they search.
        let userspace = self
            .ctx
            .tree
            .userspace()
            .map(|u| u.root.display().to_string());
        format!(
            "year={} skip_schema_validation={} userspace={userspace:?}",
            self.year,
            skip_schema_validation()
        )
    }

    fn platform(&self, keyboard: &str) -> Option<String> {
        let info = self.engine().info_json(keyboard);
        let key = info.value.get("platform_key")?.as_str()?;
        Some(key.to_string())
    }

    fn generate(&self, argv: &[String]) -> Option<Result<Generation, String>> {
        let [exe, qmk, sub, rest @ ..] = argv else {
            return None;
        };
        if *exe != self.exe || qmk != "qmk" {
            return None;
        }
        let &(_, kind) = KINDS.iter().find(|(n, _)| n == sub)?;
        let a = parse_args(rest).ok()?;
        let output = a.output.clone().filter(|o| o.as_os_str() != "-")?;
        Some(
            self.run(kind, &a, &output)
                .map_err(|e| format!("keyfab: error: {e:#}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> QmkArgs {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn argparse_forms() {
        let a = p(&[
            "--quiet",
            "--escape",
            "--keyboard",
            "planck/rev6",
            "--output",
            "x/y.mk",
        ]);
        assert_eq!(a.keyboard.as_deref(), Some("planck/rev6"));
        assert!(a.quiet && a.escape);
        assert_eq!(a.output, Some(PathBuf::from("x/y.mk")));
        let a = p(&["-kb", "kb", "--quiet", "--include", "--output", "o.h"]);
        assert_eq!(a.include, Some(None));
        let a = p(&["-kb=kb", "--include", "kb.h", "-oout.h", "km.json"]);
        assert_eq!(a.include, Some(Some("kb.h".into())));
        assert_eq!(a.output, Some(PathBuf::from("out.h")));
        assert_eq!(a.filename.as_deref(), Some("km.json"));
        let a = p(&["--skip-all", "-q", "-o", "v.h"]);
        assert!(a.skip_all && a.quiet);
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&["-o".into()]).is_err());
        assert!(parse_args(&["a".into(), "b".into()]).is_err());
    }
}

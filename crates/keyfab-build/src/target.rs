//! One build target, end to end: resolve `keyboard:keymap`, get its plan
//! (from the cache or make), run it, and report. The CLI's `build`, and the
//! sweep, watch and audit front-ends, all go through here.

use crate::db::{self, BuildDb, Db, PlanRecord, TargetInput};
use crate::exec::{BuildError, BuildReport, EarlyCompiles, Executor};
use crate::plan::{self, Plan, Step};
use crate::plan_cache::{self, PlanCacheError, PlanContext};
use crate::provenance::{self, Collector, Log, Previous};
use keyfab_cas::{Digest, LocalCas, Provenance, RunClock, RunId};
use keyfab_tree::Tree;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Tree(#[from] keyfab_tree::TreeError),
    #[error("planning {target}")]
    Plan {
        target: String,
        source: PlanCacheError,
    },
    #[error("building {target}")]
    Build { target: String, source: BuildError },
    #[error(transparent)]
    Cache(#[from] keyfab_cas::CasError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// QMK's `check-size`: the firmware is bigger than the MCU's flash
    /// leaves it (its bootloader's part taken).
    #[error("{target}: {}", too_large(*size, *max))]
    TooLarge { target: String, size: u64, max: u64 },
}

impl TargetError {
    /// Where the build stopped: `plan`, `build`, or `setup` (before either).
    pub fn stage(&self) -> &'static str {
        match self {
            TargetError::Plan { .. } => "plan",
            TargetError::Build { .. } => "build",
            TargetError::TooLarge { .. } => "size",
            _ => "setup",
        }
    }

    /// What went wrong, without the target's name.
    pub fn cause(&self) -> String {
        match self {
            TargetError::Build { source, .. } => source.to_string(),
            TargetError::Plan { source, .. } => source.to_string(),
            TargetError::TooLarge { size, max, .. } => too_large(*size, *max),
            other => other.to_string(),
        }
    }

    /// The build was interrupted (not a failure of the target).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            TargetError::Build {
                source: BuildError::Cancelled,
                ..
            }
        )
    }
}

/// How to build: the same for every target of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `-e VAR=VALUE` make variables.
    pub env: Vec<(String, String)>,
    /// make's `COLOR`, as QMK's CLI sets it (true unless `NO_COLOR` is
    /// set): it is in the compilers' flags, so a later `qmk compile` in
    /// the same `.build` reuses the objects only when the two agree.
    pub color: bool,
    /// The generator command make calls as `$(QMK_BIN)`.
    pub qmk_bin: String,
    /// This keyfab binary (it answers probes and records generator calls).
    pub keyfab_exe: PathBuf,
    pub cache_dir: PathBuf,
    /// Remove `.build/obj_<target>` first.
    pub clean: bool,
    /// What QMK's `cc-option` probes answered so far in this run.
    pub probe_answers: std::sync::Arc<crate::probe::Answers>,
    /// `keyfab-shell`, the `SHELL` make plans with (QMK's trivial
    /// `$(shell …)` pipelines then start no processes); `None`: make's own.
    pub make_shell: Option<PathBuf>,
    /// Start compiling while make still prints a fresh plan
    /// ([`crate::exec::Executor::with_early`]): for one target at a time,
    /// since in a sweep the other targets keep the cores busy instead.
    pub early_compiles: bool,
    /// Copy the firmware out of `.build/` as QMK's `cpfirmware` does (to
    /// the tree's root, and the userspace's); off, it stays in `.build/`
    /// (an audit's rebuild must not replace the user's files).
    pub copy_firmware: bool,
}

/// A resolved target: the keyboard folder, the keymap, and the folders its
/// plan depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub keyboard: String,
    pub keymap: String,
    /// Tree-relative: the keyboard's folder chain and the keymap folder.
    pub folders: Vec<PathBuf>,
    /// Extra make variables (a configurator keymap's `KEYMAP_JSON`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub make_vars: Vec<String>,
    /// Extra files the plan depends on (tree-relative).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
}

impl Target {
    pub fn name(&self) -> String {
        format!("{}:{}", self.keyboard, self.keymap)
    }

    /// QMK's `TARGET`: `<keyboard with / as _>_<keymap>`.
    pub fn file_stem(&self) -> String {
        format!("{}_{}", self.keyboard.replace('/', "_"), self.keymap)
    }
}

/// What one target's build did.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub firmware: Vec<String>,
    /// Bytes of firmware as QMK counts them (data bytes of the .hex).
    pub size: Option<u64>,
    pub max_size: Option<u64>,
    pub plan_from_cache: bool,
    pub plan_ms: u128,
    pub total_ms: u128,
    #[serde(flatten)]
    pub build: BuildReport,
}

/// Locates `keymap` for a keyboard folder the way QMK's make does;
/// `community_layouts` are the keyboard's. `keyboard` is already resolved
/// (`Tree::resolve_keyboard`): every caller has done that, and doing it again
/// would re-read the alias table once per target of a sweep.
pub fn resolve(
    tree: &Tree,
    keyboard: &str,
    keymap: &str,
    community_layouts: &[String],
) -> Result<Target, TargetError> {
    if !tree.is_keyboard(keyboard) {
        // Not a folder name: let resolution explain (alias, cycle, closest names).
        tree.resolve_keyboard(keyboard)?;
    }
    let location = tree.require_keymap(keyboard, keymap, community_layouts)?;
    let mut folders: Vec<PathBuf> = keyfab_tree::keyboard_chain(keyboard)
        .into_iter()
        .map(|f| Path::new("keyboards").join(f))
        .collect();
    folders.push(
        location
            .dir
            .strip_prefix(tree.root())
            .unwrap_or(&location.dir)
            .to_path_buf(),
    );
    Ok(Target {
        keyboard: keyboard.to_string(),
        keymap: keymap.to_string(),
        folders,
        make_vars: Vec::new(),
        files: Vec::new(),
    })
}

/// A target from a QMK Configurator export (`qmk compile keymap.json`): the
/// keymap is written to `.build/obj_<target>/src/keymap.json` (only when its
/// content changed, so timestamps stay) and make is pointed at it, as QMK's
/// `JsonKeymapBuildTarget` does. `json` must already name a resolved keyboard.
pub fn from_configurator_json(
    tree: &Tree,
    json: &serde_json::Value,
) -> Result<Target, TargetError> {
    let keyboard = json
        .get("keyboard")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let keymap = json
        .get("keymap")
        .and_then(|v| v.as_str())
        .unwrap_or("default_json")
        .to_string();
    let mut target = Target {
        folders: keyfab_tree::keyboard_chain(&keyboard)
            .into_iter()
            .map(|f| Path::new("keyboards").join(f))
            .collect(),
        keyboard,
        keymap,
        make_vars: Vec::new(),
        files: Vec::new(),
    };
    let intermediate = format!(".build/obj_{}", target.file_stem());
    let src = format!("{intermediate}/src");
    let keymap_json = format!("{src}/keymap.json");
    let io = |path: &str, e: std::io::Error| TargetError::Io {
        path: path.to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(tree.root().join(&src)).map_err(|e| io(&src, e))?;
    let new = python_compact_json(json);
    let path = tree.root().join(&keymap_json);
    let old = std::fs::read(&path).ok();
    if old.as_deref() != Some(new.as_bytes()) {
        let tmp = tree.root().join(format!("{keymap_json}.tmp"));
        std::fs::write(&tmp, &new).map_err(|e| io(&keymap_json, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&keymap_json, e))?;
    }
    for n in 1..=5 {
        target
            .make_vars
            .push(format!("MAIN_KEYMAP_PATH_{n}={intermediate}"));
    }
    target.make_vars.push(format!("KEYMAP_JSON={keymap_json}"));
    target.make_vars.push(format!("KEYMAP_PATH={src}"));
    target.files.push(PathBuf::from(keymap_json));
    Ok(target)
}

/// `json.dumps(value, separators=(',', ':'))` as Python writes it: compact,
/// non-ASCII escaped as `\uXXXX`.
pub fn python_compact_json(value: &serde_json::Value) -> String {
    let raw = serde_json::to_string(value).expect("JSON values serialize");
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The plan of a target: the one on record in `db` while [`db::plan_fresh`]
/// holds, else from the plan cache, else from make's dry run (`host` runs
/// the generator call made before make starts, when it knows it; `early`
/// is given each step as make prints it).
#[allow(clippy::too_many_arguments)]
pub fn plan_target(
    tree: &Tree,
    cas: &LocalCas,
    clock: &RunClock,
    db: &mut BuildDb,
    target: &Target,
    opts: &Options,
    host: Option<std::sync::Arc<dyn crate::exec::GeneratorHost>>,
    early: Option<&(dyn Fn(&Step) + Sync)>,
) -> Result<(plan_cache::CachedPlan, TargetInput), TargetError> {
    let plan_err = |source| TargetError::Plan {
        target: target.name(),
        source,
    };
    let make = crate::exec::resolve_program(&plan::make_program())
        .ok_or_else(|| plan_err(PlanCacheError::Other("make not found on PATH".into())))?;
    let mut files = vec![make, opts.keyfab_exe.clone()];
    let shell = opts.make_shell.as_deref().and_then(plan::make_shell);
    if shell.is_some() {
        files.extend(opts.make_shell.clone());
    }
    files.extend(target.files.iter().cloned());
    let input = db.target(&target.name(), target.folders.clone(), files);
    if db::plan_fresh(db, input) {
        if let Some(record) = input.planned(db) {
            return Ok((
                plan_cache::CachedPlan {
                    plan: record.plan.clone(),
                    from_cache: true,
                    makefiles: record.makefiles.clone(),
                    compilers: record.compilers.clone(),
                },
                input,
            ));
        }
    }
    let mut args = plan::make_args(&target.keyboard, &target.keymap, opts.color, &opts.env);
    args.extend(target.make_vars.iter().cloned());
    let ctx = PlanContext {
        tree: tree.root(),
        keyboard: &target.keyboard,
        make_args: args,
        qmk_bin: opts.qmk_bin.clone(),
        recorder: format!("{} record-generator", plan::shell_word(&opts.keyfab_exe)),
        prober: format!(
            "{} --cache {} probe-cc-option",
            plan::shell_word(&opts.keyfab_exe),
            plan::shell_word(&opts.cache_dir)
        ),
        answers: &opts.probe_answers,
        host,
        shell,
        early,
    };
    let inputs = db::plan_inputs(db, input).clone();
    let planned = plan_cache::plan_target(cas, clock, &ctx, &inputs).map_err(plan_err)?;
    db.set_plan(
        input,
        PlanRecord {
            plan: planned.plan.clone(),
            inputs,
            makefiles: planned.makefiles.clone(),
            compilers: planned.compilers.clone(),
        },
    );
    // Settle the check now, in this revision: the next no-op build then
    // re-executes nothing at all.
    db::plan_fresh(db, input);
    Ok((planned, input))
}

/// Builds a target with a database of its own (one-shot builds, sweeps).
pub fn build_target(
    tree: &Tree,
    cas: &LocalCas,
    exec: &Executor<'_>,
    target: &Target,
    opts: &Options,
    log: &Log,
) -> Result<(TargetReport, Plan), TargetError> {
    build_target_in(
        &mut BuildDb::new(tree.root()),
        tree,
        cas,
        exec,
        target,
        opts,
        log,
    )
}

/// Builds a target: plan, then every step from the cache where it can.
/// `db` carries what is known from earlier builds in this process (watch).
/// What the build read, ran and wrote goes to `log` (its provenance, see
/// [`provenance_record`]), also when it fails: then `log` holds what was
/// known when it stopped.
pub fn build_target_in(
    db: &mut BuildDb,
    tree: &Tree,
    cas: &LocalCas,
    exec: &Executor<'_>,
    target: &Target,
    opts: &Options,
    log: &Log,
) -> Result<(TargetReport, Plan), TargetError> {
    let started = Instant::now();
    if opts.clean {
        let obj = tree
            .root()
            .join(".build")
            .join(format!("obj_{}", target.file_stem()));
        if obj.exists() {
            std::fs::remove_dir_all(&obj).map_err(|e| TargetError::Io {
                path: obj.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    let clock = RunClock::now();
    // Provenance besides the steps' inputs: the files of the keyboard and
    // keymap folders (what the generators read), then the makefiles make read.
    let mut files: Vec<(String, Digest)> = Vec::new();
    for folder in &target.folders {
        let Ok(entries) = std::fs::read_dir(tree.root().join(folder)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let rel = folder.join(e.file_name());
                files.push((
                    rel.to_string_lossy().into_owned(),
                    cas.file_digest(&e.path(), &clock)?,
                ));
            }
        }
    }
    log.with(|l| files.into_iter().for_each(|(name, d)| l.input(name, d)));
    let ran = if opts.early_compiles {
        exec.with_early(|early| {
            plan_and_run(db, tree, cas, exec, target, opts, log, &clock, Some(early))
        })
    } else {
        plan_and_run(db, tree, cas, exec, target, opts, log, &clock, None)
    }?;
    let Ran {
        plan,
        plan_from_cache,
        planned_at,
        build,
        generated,
    } = ran;
    let plan_ms = planned_at.duration_since(started).as_millis();
    let mut build = BuildReport {
        generated: generated.0,
        generated_from_cache: generated.1,
        ..build
    };
    // QMK's size: of the .hex when there is one (`size --target=ihex`; an
    // ARM .bin carries a 16-byte DFU suffix), else of the firmware.
    let sized = build
        .firmware
        .iter()
        .find(|f| f.ends_with(".hex"))
        .or(build.firmware.first())
        .cloned();
    let size = sized
        .as_ref()
        .and_then(|f| firmware_size(&tree.root().join(f)));
    // QMK's `check-size` (AVR's limit, its bootloader's part taken): a
    // firmware over it fails the build and is removed, so it is never
    // flashed over the bootloader. (QMK's recipe removes the root copy and
    // `.build/T.{hex,bin,uf2}`; the braces only expand where sh is bash.)
    // Its link and conversions stay cached: they are right, only too big.
    if let (Some(size), Some(max)) = (size, plan.max_size) {
        if max > 0 && size > max {
            remove_firmware(tree.root(), &plan);
            return Err(TargetError::TooLarge {
                target: target.name(),
                size,
                max,
            });
        }
        // And warns within its margin of the limit.
        if let (Some(margin), Some(file)) = (plan.size_margin, sized) {
            if max > 0 && size > 0 && max - size < margin {
                build.warnings.push((
                    file,
                    format!(
                        "the firmware size is approaching the maximum: {size}/{max} bytes ({} free)",
                        max - size
                    ),
                ));
            }
        }
    }
    Ok((
        TargetReport {
            target: target.name(),
            firmware: build.firmware.clone(),
            size,
            max_size: plan.max_size,
            plan_from_cache,
            plan_ms,
            total_ms: started.elapsed().as_millis(),
            build,
        },
        plan,
    ))
}

/// What [`plan_and_run`] did.
struct Ran {
    plan: Plan,
    plan_from_cache: bool,
    /// When the plan was there.
    planned_at: Instant,
    build: BuildReport,
    /// Generator calls run, and those from the cache.
    generated: (usize, usize),
}

/// The target's plan, then its generators and steps: with `early`, the
/// compiles make prints start before it is done.
#[allow(clippy::too_many_arguments)]
fn plan_and_run<'a>(
    db: &mut BuildDb,
    tree: &Tree,
    cas: &LocalCas,
    exec: &Executor<'a>,
    target: &Target,
    opts: &Options,
    log: &Log,
    clock: &RunClock,
    early: Option<&EarlyCompiles<'_, '_, 'a>>,
) -> Result<Ran, TargetError> {
    // The executor compiles with the identities the database has now (a
    // watch refreshes them between builds), also before the plan is done.
    exec.know_tools(&db.tool_identities());
    let offer = |step: &Step| {
        if let Some(early) = early {
            early.offer(step)
        }
    };
    let sink = early.map(|_| &offer as &(dyn Fn(&Step) + Sync));
    let (planned, input) = plan_target(
        tree,
        cas,
        clock,
        db,
        target,
        opts,
        exec.generator_host(),
        sink,
    )?;
    let planned_at = Instant::now();
    log.with(|l| {
        for (p, d) in &planned.makefiles {
            l.input(p.to_string_lossy().into_owned(), *d);
        }
    });
    let mut plan = planned.plan;
    if !opts.copy_firmware {
        plan.steps.retain(|s| !matches!(s, Step::Copy { .. }));
    }
    let plan_from_cache = planned.from_cache;
    let build_err = |source| TargetError::Build {
        target: target.name(),
        source,
    };
    // The calls make made while reading the makefiles: run by make itself
    // when it just planned, but through the database all the same, so their
    // outputs are remembered with what they read and the next build (a
    // no-op, a fresh checkout) takes them from the cache.
    let mut generated = run_generators(db, cas, exec, &plan, true, log).map_err(build_err)?;
    let gen_started = Instant::now();
    let steps = run_generators(db, cas, exec, &plan, false, log).map_err(build_err)?;
    generated = (generated.0 + steps.0, generated.1 + steps.1);
    let build = match up_to_date(tree, cas, db, clock, &target.name(), &plan, opts) {
        Some((previous, mut report)) => {
            // This build is the last one again: record it as such.
            log.with(|l| {
                *l = Collector {
                    previous: Some(Box::new(previous)),
                    ..Collector::default()
                }
            });
            report.duration_ms = gen_started.elapsed().as_millis();
            report
        }
        None => {
            // Only now: the shortcut needs no object keys.
            let keys = db::object_keys(db, input);
            // And those planning found (the plan's objcopy, size, …).
            exec.know_tools(&db.tool_identities());
            let mut report = exec.run_steps(&plan, keys, log, early).map_err(build_err)?;
            report.duration_ms = gen_started.elapsed().as_millis();
            report
        }
    };
    Ok(Ran {
        plan,
        plan_from_cache,
        planned_at,
        build,
        generated,
    })
}

/// Runs the plan's generator calls: those make made while reading the
/// makefiles (`parse_time`) or its generator steps. The database answers
/// which calls' outputs still hold ([`db::generated`], from the cache's
/// records of what each call read);
/// only the others run, and what they give is remembered. Returns how many
/// ran and how many came from the cache.
fn run_generators(
    db: &mut BuildDb,
    cas: &LocalCas,
    exec: &Executor<'_>,
    plan: &Plan,
    parse_time: bool,
    log: &Log,
) -> Result<(usize, usize), crate::exec::BuildError> {
    let mut calls: Vec<(&[String], Option<String>)> = Vec::new();
    if parse_time {
        // Each distinct call once (make's restart re-runs its `$(shell …)`).
        for argv in &plan.parse_time {
            if !calls.iter().any(|(a, _)| *a == argv.as_slice()) {
                let out = plan::flag_value(argv, "--output")
                    .or_else(|| plan::flag_value(argv, "-o"))
                    .filter(|o| o != "-");
                calls.push((argv, out));
            }
        }
    } else {
        for step in &plan.steps {
            if let plan::Step::Generate { argv, output } = step {
                calls.push((argv, Some(output.clone())));
            }
        }
    }
    let salt = exec.generator_salt();
    let root = db.root().to_path_buf();
    let mut inputs = Vec::new();
    let mut jobs = Vec::new();
    for (argv, output) in &calls {
        let keyfab = argv.first().and_then(|p| db.file(Path::new(p)).digest(db));
        let head = match (&salt, keyfab, output) {
            (Some(salt), Some(keyfab), Some(_)) => {
                Some(crate::generated::head_key(argv, keyfab, salt))
            }
            _ => None,
        };
        let input = head.map(|h| db.generator(h, || crate::generated::load_known(cas, &h, &root)));
        let known = input.and_then(|i| db::generated(db, i));
        inputs.push(input);
        jobs.push(crate::exec::GenJob {
            argv,
            output: output.as_deref(),
            head,
            known,
            step: !parse_time,
        });
    }
    let outcomes = exec.run_generator_jobs(&jobs, log)?;
    let mut counts = (0, 0);
    for (input, (from_cache, record)) in inputs.into_iter().zip(outcomes) {
        if from_cache {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
        if let (Some(input), Some(record)) = (input, record) {
            db.add_generated(input, record);
            // Settled now: the next build asks a memo, not the reads.
            db::generated(db, input);
        }
    }
    Ok(counts)
}

/// What every provenance record of a run carries: the run, the tree and its
/// revision (found once per run, not once per target), and the caller's
/// notes (e.g. `reproducible`).
#[derive(Debug, Clone)]
pub struct Recording {
    pub run: RunId,
    pub notes: Vec<(String, String)>,
}

impl Recording {
    /// With the tree's revision as found by the caller ([`tree_revision`];
    /// `keyfab build` and `sweep` share version.h's, `keyfab watch` keeps it
    /// between rebuilds: [`crate::watch::Revision`]).
    pub fn at_revision(
        tree: &Tree,
        run: RunId,
        revision: Option<String>,
        notes: Vec<(String, String)>,
    ) -> Recording {
        let mut all = vec![("tree".to_string(), tree.root().display().to_string())];
        if let Some(rev) = revision {
            all.push(("tree_revision".into(), rev));
        }
        all.extend(notes);
        Recording { run, notes: all }
    }
}

/// The longest `error` note a record keeps (a compiler's log can be long).
const MAX_ERROR_NOTE: usize = 4096;

/// The target's last build, when it still holds: its provenance record is
/// the newest of the target, successful, made in this tree with the same
/// options, toolchains and environment; the plan's every step has the
/// command line recorded for it; every input file (sources, headers from
/// depfiles, generated files, makefiles, link inputs) and every output still
/// has its recorded digest (through the stat cache), and the copies to the
/// tree root are in place. Then nothing needs to run: the answer is that
/// record (as what this build read, ran and wrote; parsed once, here) and a
/// report of an all-cached build. Generators have run before (their read
/// sets are not recorded; what they wrote is checked like any input).
#[allow(clippy::too_many_arguments)]
fn up_to_date(
    tree: &Tree,
    cas: &LocalCas,
    db: &BuildDb,
    clock: &RunClock,
    target: &str,
    plan: &Plan,
    opts: &Options,
) -> Option<(Previous, BuildReport)> {
    let row = cas.last_provenance(target).ok()??;
    let (body, p) = (row.body, row.provenance);
    let root = tree.root().display().to_string();
    // The folder is the row's (records before it moved there: the body's).
    let folder = row
        .notes
        .iter()
        .find(|(k, _)| k == "tree")
        .map(|(_, v)| v.as_str())
        .or_else(|| provenance::note(&p, "tree"));
    if !provenance::is_ok(&p)
        || folder != Some(root.as_str())
        || provenance::note(&p, "qmk_bin") != Some(opts.qmk_bin.as_str())
    {
        return None;
    }
    let inputs: std::collections::BTreeMap<&str, Digest> =
        p.inputs.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    // The environment that matters and the `-e` variables, both ways.
    let mut now: Vec<(String, Digest)> = crate::exec::compiler_env()
        .into_iter()
        .map(|(k, v)| (format!("env:{k}"), Digest::of(v.as_bytes())))
        .collect();
    now.extend(
        opts.env
            .iter()
            .map(|(k, v)| (format!("make:{k}"), Digest::of(v.as_bytes()))),
    );
    let recorded = inputs
        .keys()
        .filter(|n| matches!(provenance::input_kind(n), "env" | "make"))
        .count();
    if recorded != now.len() || now.iter().any(|(n, d)| inputs.get(n.as_str()) != Some(d)) {
        return None;
    }
    for (program, id) in &p.toolchains {
        if db.tool(program).identity(db) != Some(*id) {
            return None;
        }
    }
    // The same steps with the same command lines.
    let steps = provenance::steps(&p);
    let mut planned = 0;
    for step in &plan.steps {
        let Some(argv) = step.command_line() else {
            continue;
        };
        planned += 1;
        let name = format!("argv:{}", step.output());
        if inputs.get(name.as_str()) != Some(&provenance::argv_digest(&argv)) {
            return None;
        }
    }
    if planned != steps.len() {
        return None;
    }
    let same = |name: &str, d: &Digest| {
        cas.file_digest(&tree.root().join(name), clock)
            .ok()
            .as_ref()
            == Some(d)
    };
    let files_hold = inputs
        .iter()
        .filter(|(n, _)| matches!(provenance::input_kind(n), "file" | "generated"))
        .all(|(n, d)| same(n, d));
    if !files_hold || !p.outputs.iter().all(|(n, d)| same(n, d)) {
        return None;
    }
    let mut report = BuildReport {
        linked_from_cache: true,
        up_to_date: true,
        ..BuildReport::default()
    };
    for step in &plan.steps {
        match step {
            plan::Step::Compile { .. } => report.compiled_from_cache += 1,
            plan::Step::Convert { output, .. } => report.firmware.push(output.clone()),
            plan::Step::Copy { from, to } => {
                let d = cas.file_digest(&tree.root().join(from), clock).ok()?;
                if !same(to, &d) {
                    return None;
                }
            }
            plan::Step::Stamp { file, holds } => {
                let held = std::fs::read(tree.root().join(file)).ok()?;
                if Some(held) != crate::exec::stamp_bytes(holds) {
                    return None;
                }
            }
            _ => {}
        }
    }
    let previous = Previous {
        body,
        provenance: p,
        steps,
    };
    Some((previous, report))
}

/// The provenance record of a target's build from what `build_target`
/// collected in its [`Log`] (see [`crate::provenance`]): plus the environment
/// that matters, the `-e` variables, the generators (`qmk_bin`), the run's
/// notes, and the outcome (`status`; for a failure its `stage` and `error`).
pub fn provenance_record(
    log: Collector,
    opts: &Options,
    rec: &Recording,
    outcome: Result<(), &TargetError>,
) -> Provenance {
    let mut log = match log.previous {
        Some(previous) => Collector::from_previous(*previous),
        None => log,
    };
    for (k, v) in crate::exec::compiler_env() {
        log.input(format!("env:{k}"), Digest::of(v.as_bytes()));
    }
    for (k, v) in &opts.env {
        log.input(format!("make:{k}"), Digest::of(v.as_bytes()));
    }
    log.into_provenance(record_notes(opts, rec, outcome))
}

/// The notes of a record before its steps: the run's, the environment
/// that matters and the `-e` variables with their values, the generators,
/// the outcome.
fn record_notes(
    opts: &Options,
    rec: &Recording,
    outcome: Result<(), &TargetError>,
) -> Vec<(String, String)> {
    let mut notes = rec.notes.clone();
    for (k, v) in crate::exec::compiler_env() {
        notes.push((format!("env:{k}"), v));
    }
    for (k, v) in &opts.env {
        notes.push((format!("make:{k}"), v.clone()));
    }
    notes.push(("qmk_bin".into(), opts.qmk_bin.clone()));
    match outcome {
        Ok(()) => notes.push(("status".into(), "ok".into())),
        Err(e) => {
            notes.push(("status".into(), "failed".into()));
            notes.push(("stage".into(), e.stage().into()));
            let mut error = crate::exec::plain_text(&e.cause());
            if error.len() > MAX_ERROR_NOTE {
                let mut end = MAX_ERROR_NOTE;
                while !error.is_char_boundary(end) {
                    end -= 1;
                }
                error.truncate(end);
                error.push_str("\n…");
            }
            notes.push(("error".into(), error));
        }
    }
    notes
}

/// Stores the provenance record of a target's build (see
/// [`provenance_record`]) in the index as part of `rec.run`, with the bytes
/// of the generated files it read (small; `audit` diffs them). An
/// interrupted build is not recorded. The run's notes
/// ([`provenance::ROW_NOTES`]: the folder, the revision, `up_to_date`, and `ran`, which
/// steps ran rather than came from the cache) go to the record's row, the
/// rest is its body, stored once per distinct content: a build that read
/// and wrote what an earlier one did (a fresh checkout built from the
/// cache) adds a row naming that body. An up-to-date build whose body is
/// the previous one byte for byte adds such a row (and the note
/// `up_to_date`) without building, serialising or hashing a record.
pub fn record(
    tree: &Tree,
    cas: &LocalCas,
    rec: &Recording,
    target: &str,
    log: Log,
    opts: &Options,
    outcome: Result<(), &TargetError>,
) -> Result<(), keyfab_cas::CasError> {
    if outcome.is_err_and(TargetError::is_cancelled) {
        return Ok(());
    }
    let mut log = log.into_collector();
    let reproduced = outcome.is_ok() && log.previous.is_some();
    let up_to_date = || ("up_to_date".to_string(), "yes".to_string());
    if let Some(previous) = log.previous.take() {
        let (body_notes, mut row_notes) = provenance::split_notes(record_notes(opts, rec, outcome));
        if reproduced && previous.same_record(&body_notes) {
            row_notes.push(up_to_date());
            store_generated(tree, cas, &previous.provenance)?;
            if cas.record_provenance_again(rec.run, target, &previous.body, &row_notes)? {
                return Ok(());
            }
        }
        log = Collector::from_previous(*previous);
    }
    let mut p = provenance_record(log, opts, rec, outcome);
    store_generated(tree, cas, &p)?;
    let (body_notes, mut row_notes) = provenance::split_notes(std::mem::take(&mut p.notes));
    p.notes = body_notes;
    if reproduced {
        row_notes.push(up_to_date());
    }
    cas.record_provenance_with(rec.run, target, &p, &row_notes)
        .map(drop)
}

/// Stores the generated files a record read (`version.h`, …) as blobs, once:
/// a no-op build finds them all in the cache already.
fn store_generated(
    tree: &Tree,
    cas: &LocalCas,
    p: &Provenance,
) -> Result<(), keyfab_cas::CasError> {
    for (name, digest) in &p.inputs {
        if provenance::input_kind(name) == "generated"
            && !is_artifact(name)
            && !cas.has_blob(digest)
        {
            let path = tree.root().join(name);
            if path.is_file() {
                cas.put_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Build products (objects, archives, firmware, maps) among generated files.
fn is_artifact(name: &str) -> bool {
    [".o", ".a", ".elf", ".hex", ".bin", ".uf2", ".map"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// QMK's `git describe` (the `QMK_VERSION` of its version.h): the nearest
/// tag, annotated or not, else the commit; `-dirty` when the work tree
/// differs from `HEAD`.
pub const DESCRIBE: [&str; 5] = ["describe", "--abbrev=6", "--dirty", "--always", "--tags"];

/// The tree's revision, [`DESCRIBE`]d, when `root` is the top of a git
/// checkout (it holds `.git`, a folder or a worktree's pointer file). Trees
/// that are not checkouts cost no process. A build whose version.h asked git
/// the same already has it (`keyfab build` takes it from there: in a
/// checkout of QMK this costs ~0.1 s; without `--tags`, which finds QMK's
/// nearest annotated tag thousands of commits back, ~0.2 s).
pub fn tree_revision(root: &Path) -> Option<String> {
    if !root.join(".git").exists() {
        return None;
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(DESCRIBE)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What [`TargetError::TooLarge`] says, but the target.
fn too_large(size: u64, max: u64) -> String {
    format!(
        "the firmware is too large: {size}/{max} bytes ({} bytes over), so it was removed",
        size - max
    )
}

/// Removes the firmware a build delivered: the files copied to the tree's
/// root and the `.build/` files they were copied from.
fn remove_firmware(root: &Path, plan: &Plan) {
    for step in &plan.steps {
        if let Step::Copy { from, to } = step {
            for f in [from, to] {
                let _ = std::fs::remove_file(root.join(f));
            }
        }
    }
}

/// The firmware's size as QMK reports it: data bytes of an Intel HEX file,
/// or the length of a binary.
pub fn firmware_size(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    if path.extension().is_some_and(|e| e == "hex") {
        let text = String::from_utf8(bytes).ok()?;
        let mut total = 0u64;
        for line in text.lines() {
            let rec = line.trim().strip_prefix(':')?;
            let len = u64::from_str_radix(rec.get(0..2)?, 16).ok()?;
            if rec.get(6..8)? == "00" {
                total += len;
            }
        }
        Some(total)
    } else {
        Some(bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_escapes_like_python() {
        let v = serde_json::json!({"keyboard": "kb", "notes": "Sjögreen 🎹", "layers": [["KC_A"]]});
        assert_eq!(
            python_compact_json(&v),
            r#"{"keyboard":"kb","notes":"Sj\u00f6green \ud83c\udfb9","layers":[["KC_A"]]}"#
        );
    }

    #[test]
    fn hex_size_counts_data_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fw.hex");
        std::fs::write(&p, ":0400000001020304F2\n:020000040000FA\n:00000001FF\n").unwrap();
        assert_eq!(firmware_size(&p), Some(4));
        let b = dir.path().join("fw.bin");
        std::fs::write(&b, [0u8; 10]).unwrap();
        assert_eq!(firmware_size(&b), Some(10));
    }
}

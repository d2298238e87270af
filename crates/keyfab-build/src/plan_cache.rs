//! Plans from the cache.
//!
//! A plan depends on the makefiles make read, on the files the generators
//! that make calls at parse time read, and on which files exist where make
//! looks with `$(wildcard …)`. The cache entry works like a direct-mode
//! compile: the head key covers the command line, the environment, the tool,
//! keyfab itself, the tree's `data/` tables and the keyboard and keymap
//! folders (their file names, and the digest of every file in them but C
//! sources); its manifest lists the makefiles read with their digests, and
//! the identities of the compilers the plan runs (`tool:<program>`): QMK's
//! `cc-option` probes asked them while make planned, so another compiler
//! (an upgrade) may be given other flags.
//! Makefiles make generated under `.build/` are left out of the manifest:
//! they are functions of what the head key covers. The tree's folder is not
//! in the head key (QMK's makefiles work with tree-relative paths), so a
//! checkout in another folder finds the plan; a plan that names its folder
//! is kept under a head of that folder only ([`crate::generated::folder_head`]).

use crate::plan::{self, Plan};
use keyfab_cas::{CommandKey, CompileKey, Digest, LocalCas, NewAction, NewOutput, RunClock};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Appends a generator call make's parse ran to the plan's log (one JSON
/// array of its words per line, what a cached plan replays).
pub fn log_call(log: &Path, argv: &[String]) -> std::io::Result<()> {
    append_line(
        log,
        &serde_json::to_string(argv).map_err(std::io::Error::other)?,
    )
}

/// Appends a `cc-option` answer make's parse got to the plan's log.
pub fn log_answer(log: &Path, answer: &crate::probe::Answer) -> std::io::Result<()> {
    append_line(log, &answer.log_line())
}

fn append_line(log: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?;
    writeln!(f, "{line}")
}

/// Why no plan could be had.
#[derive(Debug, thiserror::Error)]
pub enum PlanCacheError {
    #[error("make could not plan the target:\n{0}")]
    Make(String),
    #[error(transparent)]
    Parse(#[from] plan::PlanError),
    #[error(transparent)]
    Cache(#[from] keyfab_cas::CasError),
    #[error("{0}")]
    Other(String),
}

/// A plan and whether it came from the cache.
pub struct CachedPlan {
    pub plan: Plan,
    pub from_cache: bool,
    /// The makefiles make read (tree-relative) and their digests.
    pub makefiles: Vec<(PathBuf, Digest)>,
    /// The compilers the plan runs and their identities when it was made.
    pub compilers: Vec<(String, Digest)>,
}

/// How a compiler is named among a manifest entry's files.
const TOOL_PREFIX: &str = "tool:";

/// The compiler a manifest entry's file names, if it names one.
fn tool_of(file: &Path) -> Option<&str> {
    file.to_str()?.strip_prefix(TOOL_PREFIX)
}

/// The compilers `plan` runs with their identities now (`None` when one
/// cannot be identified: such a plan is not stored).
fn compiler_identities(plan: &Plan) -> Option<Vec<(String, Digest)>> {
    plan.compilers()
        .into_iter()
        .map(|c| Some((c.clone(), crate::db::tool_identity(&c)?)))
        .collect()
}

/// What a plan depends on besides the makefiles read.
pub struct PlanContext<'a> {
    pub tree: &'a Path,
    /// The target's keyboard (its platform's probes are asked early).
    pub keyboard: &'a str,
    /// make's arguments, without `QMK_BIN`.
    pub make_args: Vec<String>,
    /// The generator command (`QMK_BIN`). This and the two commands below
    /// are command lines as make hands them to a shell: paths quoted and
    /// `$` doubled ([`plan::shell_word`]).
    pub qmk_bin: String,
    /// A command that logs a generator call to the file named by its
    /// `--log` argument and then runs it: `<recorder> --log FILE -- <qmk_bin …>`.
    pub recorder: String,
    /// A command that answers one `cc-option` probe (and logs the answer
    /// to the file named by its `--log` argument).
    pub prober: String,
    /// The answers known before make starts (passed to it, so it asks no
    /// process); what its probes answer is added to them.
    pub answers: &'a crate::probe::Answers,
    /// Runs `qmk_bin`'s generator calls in this process, where it can: the
    /// call made before make starts then costs no process of its own.
    pub host: Option<std::sync::Arc<dyn crate::exec::GeneratorHost>>,
    /// The `SHELL` make runs its `$(shell …)` calls with (`keyfab-shell`,
    /// see [`plan::make_shell`]); `None` leaves the makefiles' own.
    pub shell: Option<String>,
    /// Given each step as soon as make prints it, when the plan is made
    /// afresh (the build then starts compiling before make is done; see
    /// `Executor::with_early`). The plan itself is still read from make's
    /// whole output.
    pub early: Option<&'a (dyn Fn(&plan::Step) + Sync)>,
}

/// Recipes call $(QMK_BIN) too: their generators run directly, not
/// through the recorder and its (by then deleted) temp log.
fn unrecorded(ctx: &PlanContext<'_>, step: &mut plan::Step) {
    if let plan::Step::Generate { argv, .. } = step {
        let prefix_len = shlex::split(&ctx.recorder).map_or(0, |w| w.len()) + 3;
        let recorded = argv.len() > prefix_len
            && argv.get(prefix_len - 3).map(String::as_str) == Some("--log")
            && argv.get(prefix_len - 1).map(String::as_str) == Some("--");
        if recorded {
            argv.drain(..prefix_len);
        }
    }
}

/// The environment variables a plan depends on.
fn plan_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k == "PATH"
                || (k.starts_with("QMK_") || k.starts_with("SKIP_"))
                || k == "SOURCE_DATE_EPOCH"
        })
        .collect()
}

fn head_key(
    ctx: &PlanContext<'_>,
    inputs: &[(PathBuf, Digest)],
) -> Result<keyfab_cas::ActionKey, PlanCacheError> {
    let make = crate::exec::resolve_program(&plan::make_program())
        .ok_or_else(|| PlanCacheError::Other("make not found on PATH".into()))?;
    let inputs = inputs.to_vec();
    if std::env::var_os("KEYFAB_DEBUG_PLAN_KEY").is_some() {
        for (p, d) in &inputs {
            eprintln!("plan input {} {}", p.display(), d.to_hex());
        }
    }
    Ok(CommandKey {
        kind: "plan-head".into(),
        tool: Digest::of(make.as_os_str().as_encoded_bytes()),
        argv: ctx
            .make_args
            .iter()
            .chain(std::iter::once(&ctx.qmk_bin))
            .map(OsString::from)
            .collect(),
        cwd: PathBuf::new(),
        env: plan_env(),
        inputs,
    }
    .key())
}

/// Makes the makefile that make would make and then parse everything again
/// for ([`plan::included_makefile`]), with the generator called as make
/// calls it: logged to `log` with the parse-time calls (so a cached plan
/// replays it), in this process when the host runs it, else through
/// `recorded_qmk_bin`. Returns make's `-o FILE` for it; nothing when it
/// does not apply or the generator failed (make then makes it, and reports
/// a failure itself).
fn premake_included(ctx: &PlanContext<'_>, log: &Path, recorded_qmk_bin: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(ctx.tree.join("builddefs/build_keyboard.mk")) else {
        return Vec::new();
    };
    let Some(made) = plan::included_makefile(&text, &ctx.make_args) else {
        return Vec::new();
    };
    let mut argv = shlex::split(&ctx.qmk_bin).unwrap_or_default();
    argv.extend(made.generator_args.iter().cloned());
    let ran = match ctx.host.as_ref().and_then(|h| h.generate(&argv)) {
        // Failed: make runs it again and reports the failure.
        Some(Err(_)) => false,
        Some(Ok(g)) => crate::plan_host::keep(&g, &argv, log),
        // The words a shell would make of `$(QMK_BIN)`, run without one.
        None => shlex::split(recorded_qmk_bin)
            .filter(|w| !w.is_empty())
            .is_some_and(|words| {
                std::process::Command::new(&words[0])
                    .args(&words[1..])
                    .args(&made.generator_args)
                    .current_dir(ctx.tree)
                    .env_remove("MAKEFLAGS")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }),
    };
    if ran && ctx.tree.join(&made.path).is_file() {
        vec!["-o".into(), made.path]
    } else {
        Vec::new()
    }
}

/// make's message, with a note for each git submodule of the tree that it
/// names and that is not checked out (its folder empty or absent): QMK's
/// ARM builds need `lib/chibios`, and a fresh clone has none of them.
fn with_submodule_hint(tree: &Path, message: String) -> String {
    let modules = std::fs::read_to_string(tree.join(".gitmodules")).unwrap_or_default();
    let notes: String = modules
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "path").then(|| value.trim())
        })
        .filter(|path| message.contains(&format!("{path}/")))
        .filter(|path| std::fs::read_dir(tree.join(path)).map_or(true, |mut d| d.next().is_none()))
        .map(|path| format!("\nnote: {path} is a git submodule that is not checked out: run `qmk git-submodule` (or `git submodule update --init --recursive`) in the tree"))
        .collect();
    message + &notes
}

/// The plan of a target: from the cache when nothing it depends on changed,
/// else from make's dry run (and then stored).
pub fn plan_target(
    cas: &LocalCas,
    clock: &RunClock,
    ctx: &PlanContext<'_>,
    inputs: &[(PathBuf, Digest)],
) -> Result<CachedPlan, PlanCacheError> {
    let anywhere = head_key(ctx, inputs)?;
    let in_folder = crate::generated::folder_head(&anywhere, ctx.tree);
    for head in [anywhere, in_folder] {
        let Some(manifest) = cas.get_manifest(&head)? else {
            continue;
        };
        let holds = |(p, d): &(PathBuf, Digest)| match tool_of(p) {
            Some(program) => crate::db::tool_identity(program).as_ref() == Some(d),
            None => cas.file_digest(&ctx.tree.join(p), clock).ok().as_ref() == Some(d),
        };
        let found = manifest
            .entries
            .iter()
            .find(|e| e.headers.iter().all(holds));
        if let Some(entry) = found {
            if let Some(result) = cas.get_action(&entry.action)? {
                if let Some(bytes) = result
                    .output("plan")
                    .and_then(|o| cas.get_blob(&o.digest).ok().flatten())
                {
                    let stored = serde_json::from_slice::<plan::StoredPlan>(&bytes);
                    if let Some(plan) = stored.ok().and_then(plan::StoredPlan::into_plan) {
                        let (tools, makefiles): (Vec<_>, Vec<_>) = entry
                            .headers
                            .iter()
                            .cloned()
                            .partition(|(p, _)| tool_of(p).is_some());
                        let compilers = tools
                            .iter()
                            .filter_map(|(p, d)| Some((tool_of(p)?.to_string(), *d)))
                            .collect();
                        return Ok(CachedPlan {
                            plan,
                            from_cache: true,
                            makefiles,
                            compilers,
                        });
                    }
                }
            }
        }
    }
    let log = tempfile::NamedTempFile::new()
        .map_err(|e| PlanCacheError::Other(format!("temp file: {e}")))?;
    let qmk_bin = format!(
        "{} --log {} -- {}",
        ctx.recorder,
        plan::shell_word(log.path()),
        ctx.qmk_bin
    );
    let mut args = premake_included(ctx, log.path(), &qmk_bin);
    args.extend(ctx.make_args.iter().cloned());
    args.push(format!("QMK_BIN={qmk_bin}"));
    // Not in the head key: the answers are those of the compilers the
    // manifest names, whichever process gave them.
    let prober = format!("{} --log {}", ctx.prober, plan::shell_word(log.path()));
    args.extend(crate::probe::cc_option_overrides(&prober));
    let answered = ctx.answers.definitions(cas);
    let answered_before = answered.len();
    args.extend(answered);
    // Not in the head key either: the shell's file is one of the plan's
    // inputs, and it prints what /bin/sh prints.
    if let Some(shell) = &ctx.shell {
        args.push(format!("SHELL={shell}"));
    }
    // keyfab-shell sends make's calls of this keyfab here.
    let calls = ctx
        .shell
        .as_ref()
        .and_then(|_| crate::plan_host::Calls::new(ctx, cas, log.path()));
    // Steps go to `ctx.early` as make prints them, until a line does not
    // parse (the whole output's parse then says why).
    let mut parser = ctx.early.map(|_| plan::DryRunParser::default());
    let mut on_line = |line: &str| {
        let (Some(p), Some(early)) = (parser.as_mut(), ctx.early) else {
            return;
        };
        let before = p.steps().len();
        match p.line(line) {
            Ok(()) => p.steps()[before..].iter().for_each(|step| match step {
                plan::Step::Generate { .. } => {
                    let mut step = step.clone();
                    unrecorded(ctx, &mut step);
                    early(&step)
                }
                _ => early(step),
            }),
            Err(_) => parser = None,
        }
    };
    let output = match &calls {
        Some(calls) => crate::plan_host::serve_while(calls, |env| {
            plan::dry_run(ctx.tree, &args, env, &mut on_line)
        }),
        None => plan::dry_run(ctx.tree, &args, &[], &mut on_line),
    }
    .map_err(|message| PlanCacheError::Make(with_submodule_hint(ctx.tree, message)))?;
    if std::env::var_os("KEYFAB_DEBUG_PLAN_KEY").is_some() {
        eprintln!("plan make restarts {}", plan::restarts(&output));
        let answered = calls
            .as_ref()
            .map_or(0, |c| c.answered.load(std::sync::atomic::Ordering::Relaxed));
        eprintln!("plan calls answered in process {answered}");
    }
    let mut plan = plan::parse_dry_run(&output)?;
    for step in &mut plan.steps {
        unrecorded(ctx, step);
    }
    let recorded = std::fs::read_to_string(log.path()).unwrap_or_default();
    let asked = crate::probe::Answer::from_log(&recorded);
    if std::env::var_os("KEYFAB_DEBUG_PLAN_KEY").is_some() {
        eprintln!(
            "plan probes answered before make {answered_before}, asked {}",
            asked.len()
        );
    }
    ctx.answers.learn(cas, asked);
    plan.parse_time = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<Vec<String>>(l).ok())
        .collect();
    let mut makefiles = Vec::new();
    for f in plan::makefiles_read(&output) {
        // Generators print absolute paths; keep everything tree-relative.
        let f = match Path::new(&f).strip_prefix(ctx.tree) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => f,
        };
        let path = ctx.tree.join(&f);
        if f.starts_with(".build/") || !path.is_file() {
            continue;
        }
        makefiles.push((PathBuf::from(&f), cas.file_digest(&path, clock)?));
        if std::env::var_os("KEYFAB_DEBUG_PLAN_KEY").is_some() {
            eprintln!("plan makefile {f} {}", makefiles.last().unwrap().1.to_hex());
        }
    }
    let json = serde_json::to_vec(&plan::StoredPlan::of(&plan))
        .map_err(|e| PlanCacheError::Other(e.to_string()))?;
    let head = if crate::generated::names_folder(&json, ctx.tree) {
        in_folder
    } else {
        anywhere
    };
    // A compiler that cannot be identified (not installed) fails the build
    // with its name at the first compile; such a plan is not kept.
    let compilers = compiler_identities(&plan);
    if let Some(compilers) = &compilers {
        let mut headers = makefiles.clone();
        headers.extend(
            compilers
                .iter()
                .map(|(c, d)| (PathBuf::from(format!("{TOOL_PREFIX}{c}")), *d)),
        );
        let key = CompileKey {
            direct: head,
            headers,
        };
        let action = NewAction::success(vec![NewOutput::bytes("plan", &json)]);
        cas.put_action_in_manifest(&key.key(), &action, &head, &key.headers)?;
    }
    Ok(CachedPlan {
        plan,
        from_cache: false,
        makefiles,
        compilers: compilers.unwrap_or_default(),
    })
}

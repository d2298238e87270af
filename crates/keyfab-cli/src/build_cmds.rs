//! `keyfab build`: plan a target from the tree's makefiles, run it from the cache.

use crate::cli::{BuildArgs, Context};
use anyhow::{bail, Context as _};
use keyfab_build::{db::BuildDb, exec::Executor, plan, plan_cache, probe, provenance::Log, target};
use keyfab_cas::{LocalCas, RunClock};
use std::process::ExitCode;
use std::sync::Arc;

pub fn build(ctx: &Context, a: BuildArgs) -> anyhow::Result<ExitCode> {
    let tree = &ctx.tree;
    // First: it may export SOURCE_DATE_EPOCH, before any thread starts.
    let notes = crate::audit_cmds::reproducible_env(tree.root(), a.reproducible);
    let mut opts = options(ctx, &a.env, a.qmk_bin.as_deref(), a.clean)?;
    crate::audit_cmds::pin_date_macros(&mut opts.env);
    let cas = open_cache(&opts, false)?;
    let host = crate::qmk_cmds::in_process_generators(
        tree,
        &opts.keyfab_exe,
        &opts.env,
        Some(cas.clone()),
    );
    if let Some(h) = &host {
        // A dry run records nothing, and with its plan from the cache it
        // runs no make that asks for version.h: git would only outlive it.
        if !a.dry_run {
            h.prefetch_versions(&opts.env);
        }
    }
    let engine = &*crate::qmk_cmds::TargetEngine::new(host.as_deref(), tree);
    let target = match (&a.keyboard, &a.target) {
        (None, Some(t)) if is_configurator_json(t) => configurator_target(tree, engine, t)?,
        _ => {
            let (kb, km) = match (&a.keyboard, &a.target) {
                (Some(kb), _) => (kb.clone(), a.keymap.clone()),
                (None, Some(t)) => match t.split_once(':') {
                    Some((kb, km)) => (kb.to_string(), Some(km.to_string())),
                    None => (t.clone(), a.keymap.clone()),
                },
                (None, None) => bail!("which target? pass -kb KEYBOARD -km KEYMAP, KEYBOARD:KEYMAP, or a configurator FILE.json (- for stdin)"),
            };
            let Some(km) = km else {
                bail!("missing keymap: pass -km KEYMAP or KEYBOARD:KEYMAP")
            };
            keymap_target(tree, engine, &kb, &km)?
        }
    };
    let generators = host.clone();
    let host = host.map(|h| h as Arc<dyn keyfab_build::exec::GeneratorHost>);
    let mut db = BuildDb::new(tree.root());
    if a.dry_run || a.compiledb {
        let (planned, _) = target::plan_target(
            tree,
            &cas,
            &RunClock::now(),
            &mut db,
            &target,
            &opts,
            host.clone(),
            None,
        )?;
        cas.flush()?;
        if a.compiledb {
            let userspace = tree.userspace().map(|u| u.root.as_path());
            write_compiledb(tree.root(), userspace, &planned.plan)?;
        }
        if a.dry_run {
            for step in &planned.plan.steps {
                println!("{}", serde_json::to_string(step)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let jobs = jobs(a.jobs);
    let exec = Executor::new(tree.root(), &cas, jobs);
    exec.set_generator_host(host);
    let command: Vec<String> = std::env::args().collect();
    let run = cas.begin_run(&command.join(" "))?;
    let log = Log::default();
    let line = crate::progress_line::ProgressLine::start(exec.progress());
    // The database knows the plan when --compiledb made it above.
    let result = target::build_target_in(&mut db, tree, &cas, &exec, &target, &opts, &log);
    drop(line);
    // Provenance of the build, failed ones too (what was known when it stopped).
    let revision = crate::qmk_cmds::tree_revision(generators.as_deref(), &opts.env, tree);
    let rec = target::Recording::at_revision(tree, run, revision, notes);
    let outcome = result.as_ref().map(drop);
    match target::record(tree, &cas, &rec, &target.name(), log, &opts, outcome) {
        Err(e) if result.is_ok() => return Err(e).context("recording the build's provenance"),
        Err(e) => eprintln!("keyfab: warning: recording the failed build's provenance: {e}"),
        Ok(()) => {}
    }
    cas.finish_run(run, if result.is_ok() { "ok" } else { "failed" })?;
    cas.flush()?;
    let (report, _) = result?;
    for (file, log) in &report.build.warnings {
        // In colour for a terminal only (see `plain_text`).
        anstream::eprintln!("keyfab: warning: {file}:\n{log}");
    }
    println!("{}", summary_line(&report));
    Ok(ExitCode::SUCCESS)
}

/// The target of a keyboard (any name QMK resolves) and a keymap, with the
/// community layouts its info gives, where its keymap may also live.
pub(crate) fn keymap_target(
    tree: &keyfab_tree::Tree,
    engine: &keyfab_info::Engine,
    keyboard: &str,
    keymap: &str,
) -> anyhow::Result<target::Target> {
    let res = tree.resolve_keyboard(keyboard)?;
    let (layouts, _) = keyfab_info::community_layouts(engine, &res.keyboard);
    Ok(target::resolve(tree, &res.keyboard, keymap, &layouts)?)
}

/// `-`, a `.json` path, or an existing file: a QMK Configurator export.
fn is_configurator_json(arg: &str) -> bool {
    arg == "-"
        || arg.ends_with(".json")
        || (!arg.contains(':') && std::path::Path::new(arg).is_file())
}

/// Reads a configurator export (a file, or stdin for `-`), validates it
/// against the tree's `qmk.keymap.v1` schema, resolves its keyboard, and
/// writes it where QMK's build expects it.
pub(crate) fn configurator_target(
    tree: &keyfab_tree::Tree,
    engine: &keyfab_info::Engine,
    arg: &str,
) -> anyhow::Result<target::Target> {
    use std::io::Read as _;
    let (shown, text) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the keymap from stdin")?;
        ("<stdin>".to_string(), text)
    } else {
        let text = std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?;
        (arg.to_string(), text)
    };
    let mut json = keyfab_syntax::parse_json(&shown, &text)?;
    if let Err(e) = engine.validate(&json, "qmk.keymap.v1") {
        let at = if e.json_path.is_empty() {
            String::new()
        } else {
            format!(" (at {})", e.json_path)
        };
        bail!("{shown}: not a QMK keymap: {}{at}", e.message);
    }
    let Some(kb) = json
        .get("keyboard")
        .and_then(|k| k.as_str())
        .map(str::to_string)
    else {
        bail!("{shown}: no \"keyboard\"");
    };
    let res = tree.resolve_keyboard(&kb)?;
    json["keyboard"] = serde_json::Value::String(res.keyboard);
    if json.get("keymap").is_none() {
        json["keymap"] = serde_json::Value::String("default_json".into());
    }
    Ok(target::from_configurator_json(tree, &json)?)
}

/// The line people read at the end of a target's build.
pub fn summary_line(r: &target::TargetReport) -> String {
    let size = match (r.size, r.max_size) {
        (Some(s), Some(max)) => format!("{s}/{max} bytes, {} free", max as i64 - s as i64),
        (Some(s), None) => format!("{s} bytes"),
        _ => "no firmware".to_string(),
    };
    format!(
        "{}: {} ({size}), {} compiled, {} from cache, link {}, {} in {} ms, total {} ms{}",
        r.target,
        r.firmware.join(" "),
        r.build.compiled,
        r.build.compiled_from_cache,
        if r.build.linked_from_cache {
            "from cache"
        } else {
            "ran"
        },
        if r.plan_from_cache {
            "plan from cache"
        } else {
            "plan made"
        },
        r.plan_ms,
        r.total_ms,
        if r.build.up_to_date {
            " (up to date: nothing ran)"
        } else {
            ""
        }
    )
}

/// The cache of `opts`, as one shared connection: the build databases' file
/// digests go through its stat table too. `preload`: read the whole stat
/// table at once (a sweep or a watch session looks at most files of the
/// tree, many again and again).
pub fn open_cache(opts: &target::Options, preload: bool) -> anyhow::Result<Arc<LocalCas>> {
    let cas = Arc::new(
        LocalCas::open(&opts.cache_dir)
            .with_context(|| format!("opening the cache at {}", opts.cache_dir.display()))?,
    );
    keyfab_build::db::use_stat_cache(cas.clone());
    if preload {
        cas.preload_stat_cache()
            .context("reading the cache's stat table")?;
    }
    Ok(cas)
}

/// `-j`, else the number of cores.
pub fn jobs(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Build options shared by every target of a run.
pub fn options(
    ctx: &Context,
    env: &[String],
    qmk_bin: Option<&str>,
    clean: bool,
) -> anyhow::Result<target::Options> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(anyhow::anyhow!("-e {e}: expected VAR=VALUE")),
        })
        .collect::<Result<_, _>>()?;
    // QMK's build environment: a userspace is named to make, resolved (its
    // keymaps and `users/` folders are searched after the tree's, and the
    // firmware is copied to its root too).
    if let Some(us) = ctx.tree.userspace() {
        let root = us.root.to_string_lossy().into_owned();
        match env.iter_mut().find(|(k, _)| k == "QMK_USERSPACE") {
            Some((_, v)) => *v = root,
            None => env.push(("QMK_USERSPACE".into(), root)),
        }
    }
    let exe = std::env::current_exe()?;
    let qmk_bin = match (qmk_bin, std::env::var("KEYFAB_QMK_BIN")) {
        (Some(b), _) => b.to_string(),
        (None, Ok(b)) => b,
        (None, Err(_)) => format!("{} qmk", keyfab_build::plan::shell_word(&exe)),
    };
    // Installed (and built) next to this binary.
    let make_shell = Some(exe.with_file_name("keyfab-shell")).filter(|p| p.is_file());
    Ok(target::Options {
        env,
        // milc's default for QMK's `general.color`.
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        qmk_bin,
        make_shell,
        keyfab_exe: exe,
        // Absolute: make runs probes from the tree's folder.
        cache_dir: std::path::absolute(cache_dir(ctx)?)?,
        clean,
        probe_answers: Default::default(),
        early_compiles: true,
        copy_firmware: true,
    })
}

/// The cache folder of `ctx`: `--cache`, else `$KEYFAB_CACHE`, else the
/// user's cache folder.
pub(crate) fn cache_dir(ctx: &Context) -> anyhow::Result<std::path::PathBuf> {
    keyfab_cas::cache_dir(ctx.cache.as_deref(), |k| std::env::var(k).ok()).ok_or_else(|| {
        anyhow::anyhow!("no cache folder: pass --cache DIR or set KEYFAB_CACHE (HOME is not set)")
    })
}

/// `keyfab probe-cc-option CC OPTION FALLBACK EXTRA`: QMK's `cc-option` answer,
/// from the cache when this compiler was asked before.
pub fn probe_cc_option(ctx: &Context, a: crate::cli::ProbeArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = cache_dir(ctx)?;
    let cas = std::sync::Arc::new(LocalCas::open(&cache_dir)?);
    keyfab_build::db::use_stat_cache(cas.clone());
    let dir = std::path::Path::new(".");
    let answer = probe::Answer::ask(&cas, dir, &a.cc, &a.option, &a.fallback, &a.extra)?;
    if let Some(log) = &a.log {
        plan_cache::log_answer(log, &answer)?;
    }
    println!("{}", answer.printed);
    Ok(ExitCode::SUCCESS)
}

/// `keyfab record-generator --log FILE -- CMD…`: append CMD's argv to FILE
/// (one JSON array per line), then run it with our stdio and exit with its
/// status. When CMD is this keyfab's own `qmk` entry point (the default
/// `QMK_BIN`) it runs in this process: make starts a recorder for each
/// generator call while planning, and a second process each would cost as
/// much again.
pub fn record_generator(a: crate::cli::RecordArgs) -> anyhow::Result<ExitCode> {
    let Some((program, rest)) = a.command.split_first() else {
        bail!("record-generator: no command")
    };
    // QMK_BIN may be several words ("keyfab qmk"): make passes them split.
    plan_cache::log_call(&a.log, &a.command)?;
    let ours = rest.first().is_some_and(|w| w == "qmk")
        && std::env::current_exe()
            .ok()
            .zip(std::fs::canonicalize(program).ok())
            .is_some_and(|(me, it)| std::fs::canonicalize(me).is_ok_and(|me| me == it));
    if ours {
        let args = crate::cli::qmk_style_args(a.command.iter().map(std::ffi::OsString::from));
        let parsed = <crate::cli::Cli as clap::Parser>::try_parse_from(args)?;
        // As `main` ends a failed command.
        return Ok(crate::run(parsed).unwrap_or_else(|err| {
            eprintln!("keyfab: error: {err:#}");
            ExitCode::from(crate::EXIT_FAILURE)
        }));
    }
    let status = std::process::Command::new(program).args(rest).status()?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// `compile_commands.json` at the tree root: one entry per compile step, with
/// the exact argv keyfab runs; copied to the userspace's root as QMK copies it.
fn write_compiledb(
    root: &std::path::Path,
    userspace: Option<&std::path::Path>,
    plan: &plan::Plan,
) -> anyhow::Result<()> {
    let entries: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            plan::Step::Compile { source, argv, .. } => Some(serde_json::json!({
                "arguments": argv,
                "directory": root,
                "file": source,
            })),
            _ => None,
        })
        .collect();
    let path = root.join("compile_commands.json");
    let tmp = root.join(".compile_commands.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&entries)? + "\n")?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "keyfab: wrote {} ({} entries)",
        path.display(),
        entries.len()
    );
    if let Some(us) = userspace {
        let copy = us.join("compile_commands.json");
        std::fs::copy(&path, &copy).with_context(|| format!("copying to {}", copy.display()))?;
        eprintln!("keyfab: copied it to {}", copy.display());
    }
    Ok(())
}

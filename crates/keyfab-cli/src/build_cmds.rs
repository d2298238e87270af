//! `keyfab build`: plan a target from the tree's makefiles, run it from the cache.

use crate::cli::{BuildArgs, Context};
use anyhow::{bail, Context as _};
use keyfab_build::{exec::Executor, plan, plan_cache, probe};
use keyfab_cas::{CommandKey, Digest, LocalCas, NewAction, RunClock};
use std::process::ExitCode;

pub fn build(ctx: &Context, a: BuildArgs) -> anyhow::Result<ExitCode> {
    let tree = &ctx.tree;
    let (kb, km) = match (&a.keyboard, &a.target) {
        (Some(kb), _) => (kb.clone(), a.keymap.clone()),
        (None, Some(t)) => match t.split_once(':') {
            Some((kb, km)) => (kb.to_string(), Some(km.to_string())),
            None => (t.clone(), a.keymap.clone()),
        },
        (None, None) => bail!("which target? pass -kb KEYBOARD -km KEYMAP, or KEYBOARD:KEYMAP"),
    };
    let Some(km) = km else {
        bail!("missing keymap: pass -km KEYMAP or KEYBOARD:KEYMAP")
    };
    let res = tree.resolve_keyboard(&kb)?;
    let engine = keyfab_info::Engine::new(tree.clone());
    let (layouts, _) = keyfab_info::community_layouts(&engine, &res.keyboard);
    tree.require_keymap(&res.keyboard, &km, &layouts)?;
    let env: Vec<(String, String)> = a
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(anyhow::anyhow!("-e {e}: expected VAR=VALUE")),
        })
        .collect::<Result<_, _>>()?;
    let qmk_bin = match (&a.qmk_bin, std::env::var("KEYFAB_QMK_BIN")) {
        (Some(b), _) => b.clone(),
        (None, Ok(b)) => b,
        (None, Err(_)) => format!("{} qmk", std::env::current_exe()?.display()),
    };
    let cache_dir = cache_dir(ctx)?;
    let cas = LocalCas::open(&cache_dir)
        .with_context(|| format!("opening the cache at {}", cache_dir.display()))?;
    let exe = std::env::current_exe()?;
    let probe_cmd = format!(
        "{} --cache {} probe-cc-option",
        exe.display(),
        cache_dir.display()
    );
    let mut args = plan::make_args(&res.keyboard, &km, &env);
    args.extend(probe::cc_option_overrides(&probe_cmd));
    let location = tree.require_keymap(&res.keyboard, &km, &layouts)?;
    let mut folders: Vec<std::path::PathBuf> = keyfab_tree::keyboard_chain(&res.keyboard)
        .into_iter()
        .map(|f| std::path::Path::new("keyboards").join(f))
        .collect();
    folders.push(
        location
            .dir
            .strip_prefix(tree.root())
            .unwrap_or(&location.dir)
            .to_path_buf(),
    );
    if a.clean {
        let obj = tree
            .root()
            .join(".build")
            .join(format!("obj_{}_{km}", res.keyboard.replace('/', "_")));
        if obj.exists() {
            std::fs::remove_dir_all(&obj).with_context(|| format!("removing {}", obj.display()))?;
        }
    }
    let started = std::time::Instant::now();
    let clock = RunClock::now();
    let pctx = plan_cache::PlanContext {
        tree: tree.root(),
        make_args: args,
        qmk_bin,
        recorder: format!("{} record-generator", exe.display()),
        folders,
        files: vec![exe.clone()],
    };
    let planned = plan_cache::plan_target(&cas, &clock, &pctx)
        .with_context(|| format!("planning {}:{km}", res.keyboard))?;
    let plan = planned.plan;
    let plan_ms = started.elapsed().as_millis();
    if a.compiledb {
        write_compiledb(tree.root(), &plan)?;
    }
    if a.dry_run {
        cas.flush()?;
        for step in &plan.steps {
            println!("{}", serde_json::to_string(step)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let exec = Executor::new(tree.root(), &cas, jobs);
    let plan_note = if planned.from_cache {
        "plan from cache"
    } else {
        "plan made"
    };
    let result = if planned.from_cache {
        exec.run_parse_time(&plan).and_then(|()| exec.run(&plan))
    } else {
        exec.run(&plan)
    };
    cas.flush()?;
    let report = result?;
    for (file, log) in &report.warnings {
        eprintln!("keyfab: warning: {file}:\n{log}");
    }
    let size = report
        .firmware
        .first()
        .and_then(|f| firmware_size(&tree.root().join(f)));
    println!(
        "{}:{km}: {} ({}), {} compiled, {} from cache, link {}, {plan_note} in {} ms, total {} ms",
        res.keyboard,
        report.firmware.join(" "),
        match (size, plan.max_size) {
            (Some(s), Some(max)) => format!("{s}/{max} bytes, {} free", max as i64 - s as i64),
            (Some(s), None) => format!("{s} bytes"),
            _ => "no firmware".to_string(),
        },
        report.compiled,
        report.compiled_from_cache,
        if report.linked_from_cache {
            "from cache"
        } else {
            "ran"
        },
        plan_ms,
        started.elapsed().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

fn cache_dir(ctx: &Context) -> anyhow::Result<std::path::PathBuf> {
    keyfab_cas::cache_dir(ctx.cache.as_deref(), |k| std::env::var(k).ok()).ok_or_else(|| {
        anyhow::anyhow!("no cache folder: pass --cache DIR or set KEYFAB_CACHE (HOME is not set)")
    })
}

/// The firmware's size as QMK reports it: data bytes of an Intel HEX file,
/// or the length of a binary.
fn firmware_size(path: &std::path::Path) -> Option<u64> {
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

/// `keyfab probe-cc-option CC OPTION FALLBACK EXTRA`: QMK's `cc-option` answer,
/// from the cache when this compiler was asked before.
pub fn probe_cc_option(ctx: &Context, a: crate::cli::ProbeArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = cache_dir(ctx)?;
    let cas = LocalCas::open(&cache_dir)?;
    let clock = RunClock::now();
    let program =
        a.cc.split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string();
    let tool = match keyfab_build::exec::resolve_program(&program) {
        Some(p) => cas.file_digest(&p, &clock)?,
        None => Digest::of(program.as_bytes()),
    };
    let key = CommandKey {
        kind: "cc-option".into(),
        tool,
        argv: vec![
            a.cc.clone().into(),
            a.option.clone().into(),
            a.extra.clone().into(),
        ],
        cwd: "/".into(),
        env: Default::default(),
        inputs: vec![],
    }
    .key();
    let cached = cas
        .get_action(&key)?
        .and_then(|r| cas.get_blob(&r.stdout).ok().flatten());
    let supported = match cached {
        Some(answer) => answer == b"yes",
        None => {
            let ok = std::process::Command::new("sh")
                .arg("-c")
                .arg(probe::probe_script(&a.cc, &a.option, &a.extra))
                .status()?
                .success();
            let mut action = NewAction::success(vec![]);
            action.stdout = if ok { b"yes" } else { b"no" };
            cas.put_action(&key, &action)?;
            cas.flush()?;
            ok
        }
    };
    println!("{}", if supported { &a.option } else { &a.fallback });
    Ok(ExitCode::SUCCESS)
}

/// `keyfab record-generator --log FILE -- CMD…`: append CMD's argv to FILE
/// (one JSON array per line), then run it with our stdio and exit with its status.
pub fn record_generator(a: crate::cli::RecordArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let Some((program, rest)) = a.command.split_first() else {
        bail!("record-generator: no command")
    };
    // QMK_BIN may be several words ("keyfab qmk"): make passes them split.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&a.log)?;
    writeln!(f, "{}", serde_json::to_string(&a.command)?)?;
    drop(f);
    let status = std::process::Command::new(program).args(rest).status()?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// `compile_commands.json` at the tree root: one entry per compile step, with
/// the exact argv keyfab runs.
fn write_compiledb(root: &std::path::Path, plan: &plan::Plan) -> anyhow::Result<()> {
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
    Ok(())
}

//! `keyfab build`: plan a target from the tree's makefiles, run it from the cache.

use crate::cli::{BuildArgs, Context};
use anyhow::{bail, Context as _};
use keyfab_build::{exec::Executor, plan};
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
    let (layouts, _) = keyfab_info::community_layouts(tree, &res.keyboard);
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
    let args = plan::make_args(&res.keyboard, &km, &qmk_bin, &env);
    let started = std::time::Instant::now();
    let dry = plan::dry_run(tree.root(), &args)
        .map_err(|e| anyhow::anyhow!("make could not plan {}:{km}:\n{e}", res.keyboard))?;
    let plan = plan::parse_dry_run(&dry)?;
    let plan_ms = started.elapsed().as_millis();
    if a.dry_run {
        for step in &plan.steps {
            println!("{}", serde_json::to_string(step)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(cache_dir) = keyfab_cas::cache_dir(ctx.cache.as_deref(), |k| std::env::var(k).ok())
    else {
        bail!("no cache folder: pass --cache DIR or set KEYFAB_CACHE (HOME is not set)");
    };
    let cas = keyfab_cas::LocalCas::open(&cache_dir)
        .with_context(|| format!("opening the cache at {}", cache_dir.display()))?;
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let exec = Executor::new(tree.root(), &cas, jobs);
    let result = exec.run(&plan);
    cas.flush()?;
    let report = result?;
    for (file, log) in &report.warnings {
        eprintln!("keyfab: warning: {file}:\n{log}");
    }
    let size = report
        .firmware
        .first()
        .and_then(|f| std::fs::metadata(tree.root().join(f)).ok())
        .map(|m| m.len());
    println!(
        "{}:{km}: {} ({}), {} compiled, {} from cache, link {}, plan {} ms, total {} ms",
        res.keyboard,
        report.firmware.join(" "),
        match (size, plan.max_size) {
            (Some(s), Some(max)) => format!("{s} bytes of file, limit {max}"),
            (Some(s), None) => format!("{s} bytes of file"),
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

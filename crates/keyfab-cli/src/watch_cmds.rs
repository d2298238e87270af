//! `keyfab watch`: build, then rebuild on every relevant change, one line each.

use crate::build_cmds::{options, summary_line};
use crate::cli::{Context, WatchArgs};
use anyhow::{bail, Context as _};
use keyfab_build::{db::BuildDb, exec::Executor, provenance::Log, target, watch};
use keyfab_cas::LocalCas;
use notify::{RecursiveMode, Watcher};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub fn watch(ctx: &Context, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let tree = &ctx.tree;
    if a.targets.is_empty() {
        bail!("which targets? pass KEYBOARD:KEYMAP (one or more)");
    }
    let opts = options(ctx, &a.env, None, false)?;
    let cas = std::sync::Arc::new(
        LocalCas::open(&opts.cache_dir)
            .with_context(|| format!("opening the cache at {}", opts.cache_dir.display()))?,
    );
    // One connection: the databases' file digests use its stat table too.
    keyfab_build::db::use_stat_cache(cas.clone());
    // Most files of the tree will be looked at, many of them again and again:
    // one query for the whole stat table beats one per file.
    cas.preload_stat_cache()
        .context("reading the cache's stat table")?;
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let exec = Executor::new(tree.root(), &cas, jobs);

    // Register the watch before the first build reads anything, so no edit
    // made during it is missed.
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::event::{EventKind, ModifyKind};
        let Ok(event) = res else { return };
        // Reads (make and the compiler open every file) and metadata-only
        // changes are not edits.
        let is_edit = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
        );
        if is_edit {
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    watcher
        .watch(tree.root(), RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", tree.root().display()))?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))?;
    }

    let debounce = Duration::from_millis(a.debounce_ms);
    let mut builds = 0usize;
    let mut changes: Vec<String> = Vec::new();
    // One database for the whole session: a rebuild updates only the inputs
    // of the files that changed, and re-derives only what depends on them.
    let mut db = BuildDb::new(tree.root());
    loop {
        let line = build_all(ctx, &mut db, &cas, &exec, &opts, &a.targets, &changes);
        cas.flush()?;
        println!("{line}");
        std::io::stdout().flush()?;
        builds += 1;
        if a.max_builds.is_some_and(|m| builds >= m) {
            return Ok(ExitCode::SUCCESS);
        }
        // Wait for a relevant change, then for the burst to settle.
        changes = loop {
            if stop.load(Ordering::SeqCst) {
                eprintln!("keyfab: watch stopped");
                cas.flush()?;
                return Ok(ExitCode::from(130));
            }
            let Ok(first) = rx.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let mut batch = vec![first];
            let mut quiet_since = Instant::now();
            while quiet_since.elapsed() < debounce {
                if let Ok(p) = rx.recv_timeout(debounce.saturating_sub(quiet_since.elapsed())) {
                    batch.push(p);
                    quiet_since = Instant::now();
                }
            }
            let relevant = watch::relevant_changes(tree.root(), batch);
            if !relevant.is_empty() {
                // Every known input, not only the paths the events named: a
                // folder moved in one rename (a branch switch) names no file.
                // Unchanged files cost a stat.
                db.refresh_all();
                break relevant;
            }
        };
    }
}

/// Builds every target; returns one line per target, prefixed with what changed.
fn build_all(
    ctx: &Context,
    db: &mut BuildDb,
    cas: &LocalCas,
    exec: &Executor<'_>,
    opts: &target::Options,
    targets: &[String],
    changes: &[String],
) -> String {
    let tree = &ctx.tree;
    let engine = keyfab_info::Engine::new(tree.clone());
    // Fresh generators per rebuild: they keep the files they parsed.
    exec.set_generator_host(crate::qmk_cmds::generator_host(tree, &opts.keyfab_exe));
    let prefix = if changes.is_empty() {
        "build".to_string()
    } else {
        format!("changed {}", watch::describe_changes(changes))
    };
    let mut lines = Vec::new();
    for t in targets {
        let result = (|| -> anyhow::Result<String> {
            let Some((kb, km)) = t.split_once(':') else {
                bail!("{t}: expected KEYBOARD:KEYMAP")
            };
            let res = tree.resolve_keyboard(kb)?;
            let (layouts, _) = keyfab_info::community_layouts(&engine, &res.keyboard);
            let target = target::resolve(tree, &res.keyboard, km, &layouts)?;
            // Not recorded as provenance (yet): see ARCHITECTURE.md.
            let log = Log::default();
            let (report, _) = target::build_target_in(db, tree, cas, exec, &target, opts, &log)?;
            Ok(summary_line(&report))
        })();
        lines.push(match result {
            Ok(line) => format!("{prefix} → {line}"),
            Err(e) => format!(
                "{prefix} → {t}: error: {}",
                format!("{e:#}").replace('\n', "\n    ")
            ),
        });
    }
    lines.join("\n")
}

//! `keyfab watch`: build, then rebuild on every relevant change, one line each.

use crate::build_cmds::{options, summary_line};
use crate::cli::{Context, WatchArgs};
use crate::qmk_cmds::InProcessGenerators;
use anyhow::{bail, Context as _};
use keyfab_build::exec::{Executor, GeneratorHost};
use keyfab_build::{db::BuildDb, provenance::Log, target, watch};
use keyfab_cas::LocalCas;
use notify::{RecursiveMode, Watcher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub fn watch(ctx: &Context, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let tree = &ctx.tree;
    if a.targets.is_empty() {
        bail!("which targets? pass KEYBOARD:KEYMAP (one or more)");
    }
    // First: it reads SOURCE_DATE_EPOCH, as `keyfab build` does (reproducible
    // whenever it is set).
    let notes = crate::audit_cmds::reproducible_env(tree.root(), false);
    let mut opts = options(ctx, &a.env, None, false)?;
    crate::audit_cmds::pin_date_macros(&mut opts.env);
    let cas = crate::build_cmds::open_cache(&opts, true)?;
    let jobs = crate::build_cmds::jobs(a.jobs);
    // Ctrl-C: a running build stops (its compilers, killed by the same
    // Ctrl-C, are an interruption, not a failure to report or record).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))?;
    }
    let exec = Executor::new(tree.root(), &cas, jobs).with_cancel(stop.clone());

    // Register the watch before the first build reads anything, so no edit
    // made during it is missed. It sends (path, whether the event brought
    // it into being); an empty path when events were lost (the kernel's
    // queue overflowed: a big branch switch).
    let (tx, rx) = mpsc::channel::<(PathBuf, bool)>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::event::{EventKind, ModifyKind, RenameMode};
        let Ok(event) = res else { return };
        if event.need_rescan() {
            let _ = tx.send((PathBuf::new(), false));
        }
        // Reads (make and the compiler open every file) and metadata-only
        // changes are not edits.
        let is_edit = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
        );
        if is_edit {
            let n = event.paths.len();
            for (i, p) in event.paths.into_iter().enumerate() {
                let created = match event.kind {
                    EventKind::Create(_) => true,
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)) => true,
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => i + 1 == n,
                    _ => false,
                };
                let _ = tx.send((p, created));
            }
        }
    })?;
    let mut watch_more = |watches: Vec<(PathBuf, bool)>| -> anyhow::Result<()> {
        for (path, recursive) in watches {
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            watcher
                .watch(&path, mode)
                .with_context(|| format!("watching {}", path.display()))?;
        }
        Ok(())
    };
    watch_more(watch::watch_roots(tree.root()))?;
    // A userspace's keymaps and `users/` are inputs as the tree's files are.
    let userspace = tree.userspace().map(|u| u.root.clone());
    if let Some(us) = &userspace {
        watch_more(watch::watch_roots(us))?;
    }

    let debounce = Duration::from_millis(a.debounce_ms);
    let mut builds = 0usize;
    let mut changes: Vec<String> = Vec::new();
    // One database for the whole session: a rebuild updates only the inputs
    // of the files that changed, and re-derives only what depends on them.
    let mut db = BuildDb::new(tree.root());
    // Each rebuild is a run of its own, recorded as `keyfab build` records
    // (so `keyfab explain` compares it with the one before); the tree's
    // revision is described again only when it may have changed.
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut revision = watch::Revision::new(tree.root());
    let mut last_host: Option<Arc<InProcessGenerators>> = None;
    let mut events_lost = false;
    loop {
        // Fresh generators per rebuild (they keep the files they parsed),
        // with the last rebuild's mapping tables and compiled schemas while
        // `data/` is unchanged.
        let host = crate::qmk_cmds::in_process_generators(
            tree,
            &opts.keyfab_exe,
            &opts.env,
            Some(cas.clone()),
        );
        if let (Some(h), Some(prev)) = (&host, &last_host) {
            let tables_changed = events_lost || watch::tables_may_have_changed(&changes);
            if !tables_changed && h.sees(tree) && prev.sees(tree) {
                h.continue_from(prev);
            }
        }
        last_host = host.clone();
        let run = cas.begin_run(&command)?;
        let rec = target::Recording::at_revision(tree, run, revision.current(), notes.clone());
        let (line, ok) = build_all(
            ctx, &mut db, &cas, &exec, host, &opts, &a.targets, &changes, &rec,
        );
        let stopped = stop.load(Ordering::SeqCst);
        let status = match (stopped, ok) {
            (true, _) => "interrupted",
            (false, true) => "ok",
            (false, false) => "failed",
        };
        cas.finish_run(run, status)?;
        cas.flush()?;
        if stopped {
            eprintln!("keyfab: watch stopped");
            return Ok(ExitCode::from(130));
        }
        // A failed compile's message in colour for a terminal only.
        anstream::println!("{line}");
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
            events_lost = batch.iter().any(|(p, _)| p.as_os_str().is_empty());
            let exists = |p: &Path| p.symlink_metadata().is_ok();
            let mut relevant = watch::settled_changes(tree.root(), &batch, exists);
            if let Some(us) = &userspace {
                // Named by their full path: they are not the tree's.
                relevant.extend(
                    watch::settled_changes(us, &batch, exists)
                        .into_iter()
                        .map(|rel| us.join(rel).display().to_string()),
                );
            }
            if events_lost {
                // Anything may have changed: every input, the tables, the revision.
                relevant.insert(0, "(events lost: everything read again)".into());
                revision.saw(&[tree.root().join(".git/HEAD")]);
            } else {
                revision.saw(batch.iter().map(|(p, _)| p));
            }
            // A folder made or moved in at the top: watch it too (what was
            // written in it before is read by the refresh below).
            for root in std::iter::once(tree.root()).chain(userspace.as_deref()) {
                for (p, _) in batch.iter().filter(|(p, _)| p.parent() == Some(root)) {
                    if let Err(e) = watch_more(watch::watch_for(root, p)) {
                        eprintln!("keyfab: warning: {e:#}");
                    }
                }
            }
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

/// Builds every target, recording each in `rec`'s run; returns one line per
/// target, prefixed with what changed, and whether every target built.
#[allow(clippy::too_many_arguments)]
fn build_all(
    ctx: &Context,
    db: &mut BuildDb,
    cas: &LocalCas,
    exec: &Executor<'_>,
    host: Option<Arc<InProcessGenerators>>,
    opts: &target::Options,
    targets: &[String],
    changes: &[String],
    rec: &target::Recording,
) -> (String, bool) {
    let tree = &ctx.tree;
    let engine = &*crate::qmk_cmds::TargetEngine::new(host.as_deref(), tree);
    exec.set_generator_host(host.clone().map(|h| h as Arc<dyn GeneratorHost>));
    let prefix = if changes.is_empty() {
        "build".to_string()
    } else {
        format!("changed {}", watch::describe_changes(changes))
    };
    let mut lines = Vec::new();
    let mut all_ok = true;
    for t in targets {
        let result = (|| -> anyhow::Result<String> {
            let Some((kb, km)) = t.split_once(':') else {
                bail!("{t}: expected KEYBOARD:KEYMAP")
            };
            let target = crate::build_cmds::keymap_target(tree, engine, kb, km)?;
            let log = Log::default();
            let result = target::build_target_in(db, tree, cas, exec, &target, opts, &log);
            // Failed builds too: what was known when it stopped; not
            // interrupted ones.
            let outcome = result.as_ref().map(drop);
            if !exec.cancelled() {
                if let Err(e) = target::record(tree, cas, rec, &target.name(), log, opts, outcome) {
                    eprintln!("keyfab: warning: {t}: provenance not recorded: {e}");
                }
            }
            Ok(summary_line(&result?.0))
        })();
        all_ok &= result.is_ok();
        lines.push(match result {
            Ok(line) => format!("{prefix} → {line}"),
            Err(e) => format!(
                "{prefix} → {t}: error: {}",
                format!("{e:#}").replace('\n', "\n    ")
            ),
        });
    }
    (lines.join("\n"), all_ok)
}

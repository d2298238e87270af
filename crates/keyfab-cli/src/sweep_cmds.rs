//! `keyfab sweep`: select, shard, build on one pool, report.

use crate::cli::Context;
use anyhow::Context as _;
use clap::Args;
use keyfab_build::exec::Executor;
use keyfab_build::sweep::{filter::Filter, report, run, select, shard};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
#[command(
    after_help = "Filters (all must match; values of == and != are case-insensitive globs):\n  \
key==value  key!=value  key<N  key>N  key<=N  key>=N\n  \
exists(key)  absent(key)  length(key, N)  contains(key, value)\n\n\
Examples:\n  keyfab sweep --report out\n  keyfab sweep -f processor==atmega32u4 -f 'exists(features.rgblight)' --shard 1/4 --report out\n  \
keyfab sweep -km all planck/rev6 crkbd"
)]
pub struct SweepArgs {
    /// Targets: KEYBOARD (with -km), KEYBOARD:KEYMAP, all:KEYMAP; default: every keyboard with the keymap
    pub targets: Vec<String>,
    /// The keymap to build on every keyboard that has it, or `all` (QMK's -km also works)
    #[arg(long, default_value = "default")]
    pub keymap: String,
    /// Keep targets whose merged info matches (like `qmk find -f`); repeatable
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    pub filters: Vec<Filter>,
    #[command(flatten)]
    pub run: SweepRunArgs,
}

/// How a sweep builds and reports, whatever its targets.
#[derive(Debug, Args)]
pub struct SweepRunArgs {
    /// Build only shard I of N (1-based): an equal part of the targets, cut by their names alone, so every runner agrees whatever its cache holds
    #[arg(long, value_name = "I/N", value_parser = shard::Shard::parse)]
    pub shard: Option<shard::Shard>,
    /// Parallel jobs for the whole sweep, targets and objects together (default: the number of cores)
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Write sweep.json, junit.xml and index.html here (compared with the report already there)
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Compare with this previous report (a folder or its sweep.json) instead of --report's
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
    /// Set a make variable, like QMK's `-e VAR=VALUE`
    #[arg(short = 'e', long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// Print the selected targets (after filters and shard) and build nothing
    #[arg(long)]
    pub list: bool,
    /// Progress: a bar on a terminal, plain lines otherwise
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// The generator command make calls as $(QMK_BIN) (default: this keyfab's `qmk` entry point)
    #[arg(long, value_name = "CMD")]
    pub qmk_bin: Option<String>,
    /// Stable generated files and dates, as `keyfab build --reproducible` (on whenever SOURCE_DATE_EPOCH is set)
    #[arg(long)]
    pub reproducible: bool,
    /// Leave each firmware in .build/ only: no copy to the tree's root (nor the userspace's), which QMK's build makes
    #[arg(long)]
    pub no_copy: bool,
}

/// `keyfab userspace-compile`: the userspace's targets, as a sweep builds them.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  keyfab userspace-compile\n  keyfab userspace-compile -j 4 --report out"
)]
pub struct UserspaceCompileArgs {
    #[command(flatten)]
    pub run: SweepRunArgs,
}

/// The targets of the userspace's qmk.json, as `qmk userspace-compile`
/// builds them: a keyboard and keymap with make variables of its own, or a
/// configurator export (its path from the userspace's root). A target that
/// names nothing buildable stops the command before any build, naming it.
fn userspace_targets(
    tree: &keyfab_tree::Tree,
    engine: &keyfab_info::Engine,
) -> anyhow::Result<Vec<keyfab_build::target::Target>> {
    let us = crate::tree_cmds::require_userspace(tree)?;
    let qmk_json = us.root.join("qmk.json");
    if us.build_targets.is_empty() {
        anyhow::bail!("{}: no build_targets", qmk_json.display());
    }
    us.build_targets
        .iter()
        .map(|t| match t {
            keyfab_tree::BuildTarget::Keymap {
                keyboard,
                keymap,
                env,
            } => {
                let mut target =
                    crate::build_cmds::keymap_target(tree, engine, keyboard, keymap)
                        .with_context(|| format!("{}: {keyboard}:{keymap}", qmk_json.display()))?;
                target
                    .make_vars
                    .extend(env.iter().map(|(k, v)| format!("{k}={v}")));
                Ok(target)
            }
            keyfab_tree::BuildTarget::JsonFile { path } => {
                let file = us.root.join(path);
                crate::build_cmds::configurator_target(tree, engine, &file.to_string_lossy())
                    .with_context(|| format!("{}: {path}", qmk_json.display()))
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    Auto,
    Bar,
    Plain,
    None,
}

pub fn parse_filter(s: &str) -> Result<Filter, String> {
    Filter::parse(s).map_err(|e| e.message)
}

/// Exit status of an interrupted sweep (as a shell reports SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_sigint(_: libc::c_int) {
    if let Some(flag) = CANCEL.get() {
        if flag.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: stop now (the cache publishes atomically).
            unsafe { libc::_exit(EXIT_INTERRUPTED as libc::c_int) };
        }
    }
}

fn cancel_flag() -> Arc<AtomicBool> {
    let flag = CANCEL
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    // SAFETY: the handler only touches an initialised OnceLock and an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    flag
}

/// Which targets a sweep builds.
enum Selecting {
    /// The tree's keyboards: those named (or all) with the keymap, filtered.
    Tree {
        targets: Vec<String>,
        keymap: String,
        filters: Vec<Filter>,
    },
    /// The userspace's qmk.json `build_targets`.
    Userspace,
}

pub fn sweep(ctx: &Context, a: SweepArgs) -> anyhow::Result<ExitCode> {
    let selecting = Selecting::Tree {
        targets: a.targets,
        keymap: a.keymap,
        filters: a.filters,
    };
    run_sweep(ctx, &a.run, selecting)
}

/// `qmk userspace-compile`: every target of the userspace, on one pool.
pub fn userspace_compile(ctx: &Context, a: UserspaceCompileArgs) -> anyhow::Result<ExitCode> {
    run_sweep(ctx, &a.run, Selecting::Userspace)
}

fn run_sweep(ctx: &Context, a: &SweepRunArgs, selecting: Selecting) -> anyhow::Result<ExitCode> {
    let started_at = Instant::now();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tree = &ctx.tree;
    // First: it may export SOURCE_DATE_EPOCH, before any thread starts.
    let notes = crate::audit_cmds::reproducible_env(tree.root(), a.reproducible);
    let mut opts = crate::build_cmds::options(ctx, &a.env, a.qmk_bin.as_deref(), false)?;
    opts.copy_firmware = !a.no_copy;
    // The other targets keep the cores busy while one plans.
    opts.early_compiles = false;
    crate::audit_cmds::pin_date_macros(&mut opts.env);
    let cas = crate::build_cmds::open_cache(&opts, true)?;
    let jobs = crate::build_cmds::jobs(a.jobs);
    let cancel = cancel_flag();
    let exec = Executor::new(tree.root(), &cas, jobs).with_cancel(cancel.clone());
    // One engine for the whole sweep: the tree does not change under it.
    let generators = crate::qmk_cmds::in_process_generators(
        tree,
        &opts.keyfab_exe,
        &opts.env,
        Some(cas.clone()),
    );
    exec.set_generator_host(
        generators
            .clone()
            .map(|g| g as std::sync::Arc<dyn keyfab_build::exec::GeneratorHost>),
    );

    // Select (info in parallel on the sweep's pool), then shard.
    let engine = keyfab_info::Engine::new(tree.clone());
    let mut targets = match &selecting {
        Selecting::Tree {
            targets,
            keymap,
            filters,
        } => {
            let keymap = select::KeymapSel::parse(keymap);
            let sel = exec.install(|| select::select(&engine, &keymap, targets, filters))?;
            for (t, why) in &sel.skipped {
                eprintln!("keyfab: warning: {t} left out: {why}");
            }
            sel.targets
        }
        Selecting::Userspace => userspace_targets(tree, &engine)?,
    };
    if let Some(s) = a.shard {
        let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
        let keep = shard::select(&names, s);
        targets = keep.into_iter().map(|i| targets[i].clone()).collect();
    }
    if a.list {
        for t in &targets {
            println!("{}", t.name());
        }
        return Ok(ExitCode::SUCCESS);
    }

    // The previous report, read before this sweep overwrites it.
    let previous = match a.compare.as_deref().or(a.report.as_deref()) {
        Some(p) => report::read_previous(p).map_err(anyhow::Error::msg)?,
        None => None,
    };

    let progress = match a.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Progress::Bar,
        Progress::Auto => Progress::Plain,
        p => p,
    };
    // Every target's provenance is recorded in this run, as `keyfab build` does.
    let command: Vec<String> = std::env::args().collect();
    // The tree's revision is version.h's `git describe`: found once, for both.
    let revision = crate::qmk_cmds::tree_revision(generators.as_deref(), &opts.env, tree);
    let run = cas.begin_run(&command.join(" "))?;
    let rec = keyfab_build::target::Recording::at_revision(tree, run, revision, notes);
    let sink = ProgressSink::new(progress, targets.len());
    let results = run::run(tree, &cas, &exec, &targets, &opts, Some(&rec), &sink);
    sink.finish();
    let interrupted = cancel.load(Ordering::SeqCst);
    let failed = results.iter().any(|r| r.status == run::Status::Failed);
    cas.finish_run(
        rec.run,
        match (interrupted, failed) {
            (true, _) => "interrupted",
            (false, true) => "failed",
            (false, false) => "ok",
        },
    )?;
    cas.flush().context("flushing the cache")?;
    for r in &results {
        if let Some(e) = &r.provenance_error {
            eprintln!(
                "keyfab: warning: {}: provenance not recorded: {e}",
                r.target
            );
        }
    }

    let counts = report::Counts::of(&results);
    let compare = previous.as_ref().map(|p| report::compare(p, &results));
    // What the report says was selected.
    let (keymap, filters) = match selecting {
        Selecting::Tree {
            keymap, filters, ..
        } => (keymap, filters.iter().map(|f| f.text.clone()).collect()),
        Selecting::Userspace => ("qmk.json".to_string(), Vec::new()),
    };
    let rep = report::Report {
        format: report::FORMAT,
        tool: format!("keyfab {}", env!("CARGO_PKG_VERSION")),
        started,
        duration_ms: started_at.elapsed().as_millis() as u64,
        tree: tree.root().display().to_string(),
        keymap,
        filters,
        shard: a.shard.map(|s| format!("{}/{}", s.index, s.count)),
        jobs,
        interrupted,
        counts: counts.clone(),
        compare,
        targets: results,
    };
    if let Some(dir) = &a.report {
        report::write(dir, &rep)
            .with_context(|| format!("writing the report to {}", dir.display()))?;
    }
    for t in rep
        .targets
        .iter()
        .filter(|t| t.status == run::Status::Failed)
    {
        eprintln!(
            "keyfab: {} failed ({}):\n{}",
            t.target,
            t.stage.as_deref().unwrap_or("build"),
            t.error.as_deref().unwrap_or("")
        );
    }
    if let Some(c) = &rep.compare {
        println!(
            "since the last sweep: {} new failures, {} fixed, {} firmware changed, {} size changes",
            c.new_failures.len(),
            c.fixed.len(),
            c.hash_changes.len(),
            c.size_deltas.len()
        );
    }
    println!(
        "sweep: {} targets, {} ok, {} failed, {} skipped; {} objects compiled, {} from cache; {} ms",
        counts.total,
        counts.ok,
        counts.failed,
        counts.skipped,
        counts.compiled,
        counts.cached,
        rep.duration_ms
    );
    if let Some(dir) = &a.report {
        println!("report: {}", dir.join("index.html").display());
    }
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if counts.failed > 0 {
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Progress on stderr: an indicatif bar on a terminal, else one line per target.
struct ProgressSink {
    mode: Progress,
    total: usize,
    done: AtomicUsize,
    bar: Option<indicatif::ProgressBar>,
    lock: Mutex<()>,
}

impl ProgressSink {
    fn new(mode: Progress, total: usize) -> ProgressSink {
        let bar = (mode == Progress::Bar).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {wide_msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        ProgressSink {
            mode,
            total,
            done: AtomicUsize::new(0),
            bar,
            lock: Mutex::new(()),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl run::Sink for ProgressSink {
    fn started(&self, t: &keyfab_build::target::Target) {
        if let Some(b) = &self.bar {
            b.set_message(t.name());
        }
    }

    fn finished(&self, r: &run::TargetResult) {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let status = match r.status {
            run::Status::Ok => "ok",
            run::Status::Failed => "FAILED",
            run::Status::Skipped => "skipped",
        };
        let line = format!(
            "[{n:>w$}/{}] {status:<7} {} {:.2}s ({} compiled, {} cached{})",
            self.total,
            r.target,
            r.time_ms as f64 / 1000.0,
            r.compiled,
            r.cached,
            r.size.map(|s| format!(", {s} bytes")).unwrap_or_default(),
            w = self.total.to_string().len()
        );
        match self.mode {
            Progress::Bar => {
                if let Some(b) = &self.bar {
                    if r.status != run::Status::Ok {
                        b.println(line);
                    }
                    b.inc(1);
                }
            }
            Progress::Plain => {
                let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("{line}");
            }
            _ => {}
        }
    }
}

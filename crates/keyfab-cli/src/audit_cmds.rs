//! Provenance front-ends: recording what `keyfab build` built, the
//! reproducible mode, `keyfab audit` (rebuild from nothing elsewhere, on
//! another clock, and compare) and `keyfab explain` (what changed since the
//! previous build of a target, and what re-ran because of it).

use crate::build_cmds::cache_dir;
use crate::cli::{Context, Format};
use anyhow::{bail, Context as _};
use clap::Args;
use keyfab_build::provenance::{self, StepRecord};
use keyfab_build::sweep::filter::Filter;
use keyfab_cas::{Digest, LocalCas, Provenance, RunId};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

// ---------------------------------------------------------------- build side

/// Reproducible mode (`--reproducible`, or whenever `SOURCE_DATE_EPOCH` is
/// set): generated files such as `version.h` take their date from
/// `SOURCE_DATE_EPOCH` (and GCC's `__DATE__`/`__TIME__` follow it). Without
/// one set, `--reproducible` sets it to the time of the tree's last commit
/// (the tree is a git checkout) or 0. Call before anything is spawned: the
/// value is exported to make, the generators and the compilers.
/// Returns the notes that go into the provenance record.
pub fn reproducible_env(root: &Path, flag: bool) -> Vec<(String, String)> {
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() {
        return vec![
            ("reproducible".into(), "yes".into()),
            ("source_date_epoch_from".into(), "environment".into()),
        ];
    }
    if !flag {
        return vec![("reproducible".into(), "no".into())];
    }
    let (epoch, from) = match last_commit_time(root) {
        Some(t) => (t, "last commit"),
        None => ("0".to_string(), "constant"),
    };
    // Edition 2021, and no thread has been started yet.
    std::env::set_var("SOURCE_DATE_EPOCH", &epoch);
    vec![
        ("reproducible".into(), "yes".into()),
        ("source_date_epoch_from".into(), from.into()),
    ]
}

/// In reproducible mode (SOURCE_DATE_EPOCH set, by then), pins `__DATE__`
/// and `__TIME__` to it through QMK's `EXTRAFLAGS` (appended to every
/// compile): GCC honours SOURCE_DATE_EPOCH only from version 7 on, and
/// Debian's avr-gcc is 5.4. Idempotent.
pub fn pin_date_macros(env: &mut Vec<(String, String)>) {
    let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|e| e.trim().parse::<i64>().ok())
    else {
        return;
    };
    let (date, _) = date_strings(epoch);
    let secs = epoch.rem_euclid(86_400);
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let pins =
        format!("-Wno-builtin-macro-redefined -D__DATE__='\"{date}\"' -D__TIME__='\"{time}\"'");
    match env.iter_mut().find(|(k, _)| k == "EXTRAFLAGS") {
        Some((_, v)) if v.contains("-D__DATE__=") => {}
        Some((_, v)) => *v = format!("{v} {pins}"),
        None => env.push(("EXTRAFLAGS".into(), pins)),
    }
}

fn last_commit_time(root: &Path) -> Option<String> {
    // Trees that are not checkouts cost no process (as `tree_revision`).
    if !root.join(".git").exists() {
        return None;
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["log", "-1", "--format=%ct"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !t.is_empty()).then_some(t)
}

// ---------------------------------------------------------------- arguments

#[derive(Debug, Args)]
#[command(
    after_help = "Filters (all must match; values of == and != are case-insensitive globs), as keyfab sweep -f:\n  \
key==value  key!=value  key<N  key>N  key<=N  key>=N\n  \
exists(key)  absent(key)  length(key, N)  contains(key, value)\n\n\
Examples:\n  keyfab audit planck/rev5:default\n  keyfab audit 'planck/*' '*:via'\n  \
keyfab audit -f processor==atmega32u4 -f 'exists(features.command)'"
)]
pub struct AuditArgs {
    /// Targets (`KEYBOARD:KEYMAP`) with a recorded build in the cache; with `*`, every recorded target whose name matches (`planck/*`, `*:via`)
    #[arg(required_unless_present = "filters", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Of the targets (default: every recorded target), audit those whose merged info matches (like `qmk find -f`); repeatable
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = crate::sweep_cmds::parse_filter)]
    pub filters: Vec<Filter>,
    /// Parallel jobs for the rebuild of all the targets together (default: the number of cores)
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Also write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Keep the rebuild's tree copy and cache (their paths are in the report)
    #[arg(long)]
    pub keep: bool,
    /// How far to move the clock of the rebuild with faketime (when installed)
    #[arg(long, default_value = "+3d", value_name = "OFFSET")]
    pub clock_offset: String,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The target (`KEYBOARD:KEYMAP`)
    pub target: String,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `kb:km` as builds record it (aliases and DEFAULT_FOLDER resolved).
fn target_name(ctx: &Context, t: &str) -> anyhow::Result<String> {
    let Some((kb, km)) = t.split_once(':') else {
        bail!("{t}: expected KEYBOARD:KEYMAP")
    };
    let res = ctx.tree.resolve_keyboard(kb)?;
    Ok(format!("{}:{km}", res.keyboard))
}

// ---------------------------------------------------------------- explain

#[derive(Debug, Serialize)]
struct Change {
    input: String,
    kind: &'static str,
    /// added, removed, changed
    how: &'static str,
    /// Steps that re-ran because of it, directly or through what they wrote.
    steps: Vec<String>,
    /// For a file no step reads (keyboard.json, rules.mk, a makefile): the
    /// generated files that changed with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    regenerated: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StepWhy {
    step: String,
    kind: String,
    ran: bool,
    /// Its inputs that changed since the previous build.
    because: Vec<String>,
}

pub fn explain(ctx: &Context, a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let name = target_name(ctx, &a.target)?;
    let dir = cache_dir(ctx)?;
    let cas = LocalCas::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    // The newest build (it may have failed) against the newest successful
    // one before it; failed builds in between are named, not compared.
    let recs = history(&cas, &name, |v| {
        v.len() >= 2 && v[1..].iter().any(|(_, p)| provenance::is_ok(p))
    })?;
    let Some(((run, now), older)) = recs.split_first() else {
        bail!("no recorded build of {name} in {}", dir.display())
    };
    let prev_at = older.iter().position(|(_, p)| provenance::is_ok(p));
    let failed_between: Vec<i64> = older[..prev_at.unwrap_or(older.len())]
        .iter()
        .map(|(r, _)| r.0)
        .collect();
    let empty = Provenance::default();
    let (prev_run, prev) = match prev_at {
        Some(i) => (Some(older[i].0 .0), &older[i].1),
        None => (None, &empty),
    };
    let failed = !provenance::is_ok(now);
    let (changes, steps) = explain_records(prev, now, failed);
    let ran: Vec<&StepWhy> = steps.iter().filter(|s| s.ran).collect();
    let status = provenance::note(now, "status").unwrap_or("ok");
    if a.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "target": name,
                "run": run.0,
                "status": status,
                "stage": provenance::note(now, "stage"),
                "error": provenance::note(now, "error"),
                "previous_run": prev_run,
                "failed_between": failed_between,
                "changed": changes,
                "steps": steps,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let what = if failed {
        format!(
            "failed build {} ({})",
            run.0,
            provenance::note(now, "stage").unwrap_or("build")
        )
    } else {
        format!("build {}", run.0)
    };
    match prev_run {
        Some(p) => println!("{name}: {what} compared with build {p}"),
        None if failed_between.is_empty() => println!("{name}: {what} is the first recorded build"),
        None => println!("{name}: {what}; no successful build recorded before it"),
    }
    if !failed_between.is_empty() {
        let runs: Vec<String> = failed_between.iter().map(i64::to_string).collect();
        println!("  failed builds in between: {}", runs.join(", "));
    }
    if let Some(e) = provenance::note(now, "error") {
        for l in e.lines().take(6) {
            println!("  error: {l}");
        }
        println!("  (the inputs known when it stopped; the failing step is not among its steps)");
    }
    if changes.is_empty() {
        println!("no input changed");
    } else {
        println!("changed inputs:");
    }
    for c in &changes {
        println!("  {} ({}, {})", c.input, c.kind, c.how);
        for g in &c.regenerated {
            println!("    regenerated {g}");
        }
        for s in &c.steps {
            println!("    re-ran {s}");
        }
    }
    let cached = steps.iter().filter(|s| !s.ran).count();
    println!("{} step(s) re-ran, {} from the cache", ran.len(), cached);
    for s in ran {
        if s.because.is_empty() {
            println!(
                "  {} {}: no input changed (not in the cache)",
                s.kind, s.step
            );
        } else {
            println!(
                "  {} {}: because of {}",
                s.kind,
                s.step,
                s.because.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest records of `name`, newest first: pages of growing size until
/// `enough` holds for what was fetched or there are no more.
fn history(
    cas: &LocalCas,
    name: &str,
    enough: impl Fn(&[(RunId, Provenance)]) -> bool,
) -> anyhow::Result<Vec<(RunId, Provenance)>> {
    let mut limit = 4;
    loop {
        let recs = cas.provenance(name, limit)?;
        if recs.len() < limit as usize || enough(&recs) || limit == u32::MAX {
            return Ok(recs);
        }
        limit = limit.saturating_mul(16);
    }
}

/// What changed from `prev` to `now`, and why each step of `now` ran.
/// `now_partial`: `now` is a failed build, whose record holds only the
/// inputs known when it stopped (nothing it lacks was removed).
fn explain_records(
    prev: &Provenance,
    now: &Provenance,
    now_partial: bool,
) -> (Vec<Change>, Vec<StepWhy>) {
    let old: BTreeMap<&str, Digest> = prev.inputs.iter().map(|(k, d)| (k.as_str(), *d)).collect();
    let new: BTreeMap<&str, Digest> = now.inputs.iter().map(|(k, d)| (k.as_str(), *d)).collect();
    let mut changed: BTreeMap<String, &'static str> = BTreeMap::new();
    for (k, d) in &new {
        match old.get(k) {
            None if !prev.inputs.is_empty() => {
                changed.insert(k.to_string(), "added");
            }
            Some(o) if o != d => {
                changed.insert(k.to_string(), "changed");
            }
            _ => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) && !now_partial {
            changed.insert(k.to_string(), "removed");
        }
    }
    let old_tools: BTreeMap<_, _> = prev.toolchains.iter().cloned().collect();
    for (t, d) in &now.toolchains {
        if old_tools.get(t).is_some_and(|o| o != d) {
            changed.insert(format!("tool:{t}"), "changed");
        }
    }
    let steps = provenance::steps(now);
    // Changes every compile, link and conversion depends on.
    let global: Vec<String> = changed
        .keys()
        .filter(|k| k.starts_with("env:") || k.starts_with("make:") || k.starts_with("tool:"))
        .cloned()
        .collect();
    // Steps' outputs that are other steps' inputs (objects, generated keymap.c).
    let produced: BTreeSet<&str> = steps.iter().map(|s| s.output.as_str()).collect();
    let why: Vec<StepWhy> = steps
        .iter()
        .map(|s| StepWhy {
            step: s.output.clone(),
            kind: s.kind.clone(),
            ran: !s.cached && s.kind != "generate",
            because: s
                .inputs
                .iter()
                .filter(|i| changed.contains_key(*i))
                .cloned()
                .chain(global.iter().filter(|_| s.kind != "generate").cloned())
                .collect(),
        })
        .collect();
    let read_by_steps: BTreeSet<&str> = steps
        .iter()
        .flat_map(|s| s.inputs.iter().map(String::as_str))
        .collect();
    // Generated files that changed (by a generator step or while make read
    // the makefiles): consequences of a changed file no step reads.
    let by_generator: BTreeSet<&str> = steps
        .iter()
        .filter(|s| s.kind == "generate")
        .map(|s| s.output.as_str())
        .collect();
    let changed_generated: Vec<String> = changed
        .keys()
        .filter(|k| {
            provenance::is_generated(k)
                && (by_generator.contains(k.as_str()) || !produced.contains(k.as_str()))
        })
        .cloned()
        .collect();
    let metadata_changed = changed
        .keys()
        .any(|k| provenance::input_kind(k) == "file" && !read_by_steps.contains(k.as_str()));
    let mut changes = Vec::new();
    for (input, how) in &changed {
        // Outputs of other steps are consequences, shown under their cause;
        // so are generated files when a file the generators read changed.
        let generated = by_generator.contains(input.as_str());
        if (produced.contains(input.as_str()) && !generated) || (generated && metadata_changed) {
            continue;
        }
        let kind = if input.starts_with("tool:") {
            "toolchain"
        } else {
            provenance::input_kind(input)
        };
        let regenerated = if kind == "file" && !read_by_steps.contains(input.as_str()) {
            changed_generated.clone()
        } else {
            Vec::new()
        };
        let mut roots: Vec<&str> = vec![input.as_str()];
        roots.extend(regenerated.iter().map(String::as_str));
        if kind == "env" || kind == "make" || kind == "toolchain" {
            // Every step that ran depends on these.
            roots.clear();
        }
        let mut reran = downstream(&steps, &roots, &changed);
        if roots.is_empty() {
            reran = why
                .iter()
                .filter(|s| s.ran)
                .map(|s| format!("{} {}", s.kind, s.step))
                .collect();
        }
        changes.push(Change {
            input: input.clone(),
            kind,
            how,
            steps: reran,
            regenerated,
        });
    }
    (changes, why)
}

/// Steps (by output) reached from `roots` through steps that read them and
/// whose outputs changed in turn; generate steps are passed through.
fn downstream(
    steps: &[StepRecord],
    roots: &[&str],
    changed: &BTreeMap<String, &'static str>,
) -> Vec<String> {
    let mut frontier: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    let mut seen: BTreeSet<String> = frontier.iter().cloned().collect();
    let mut out = Vec::new();
    while let Some(name) = frontier.pop() {
        for s in steps.iter().filter(|s| s.inputs.contains(&name)) {
            if seen.insert(s.output.clone()) {
                if !s.cached && s.kind != "generate" {
                    out.push(format!("{} {}", s.kind, s.output));
                }
                if changed.contains_key(&s.output) || s.kind == "generate" || !s.cached {
                    frontier.push(s.output.clone());
                }
            }
        }
    }
    // In build order.
    let order: BTreeMap<String, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{} {}", s.kind, s.output), i))
        .collect();
    out.sort_by_key(|s| order.get(s).copied().unwrap_or(usize::MAX));
    out
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Serialize)]
struct Cause {
    /// The input (or `embedded:…`) that explains the difference.
    input: String,
    /// `generated`, `file`, `argv`, `env`, `make`, `toolchain`, `artifact`,
    /// `embedded`.
    kind: String,
    /// A date, a path, a version string, …
    what: String,
    /// The lines that differ (`-` recorded, `+` rebuilt), or the strings found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Difference {
    artifact: String,
    step: String,
    recorded: Option<String>,
    rebuilt: Option<String>,
    causes: Vec<Cause>,
}

#[derive(Debug, Serialize)]
struct AuditResult {
    target: String,
    pass: bool,
    recorded_run: Option<i64>,
    /// `git describe --always --dirty` of the tree when it was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_revision: Option<String>,
    /// Why there was nothing to compare (no record, a changed tree, a failed rebuild).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    rebuild: serde_json::Value,
    artifacts_compared: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_difference: Option<String>,
    objects_differ: Vec<String>,
    differences: Vec<Difference>,
    /// Differences with the same inputs that are known compiler
    /// non-determinism and never reach the firmware (not a failure).
    noise: Vec<Difference>,
}

pub fn audit(ctx: &Context, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let dir = cache_dir(ctx)?;
    let cas = LocalCas::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let names = audit_targets(ctx, &cas, &a)?;
    let engine = keyfab_info::Engine::new(ctx.tree.clone());
    let mut results: Vec<Option<AuditResult>> = Vec::new();
    let mut pending = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match precheck(ctx, &cas, &engine, name)? {
            Ok(p) => {
                pending.push((i, p));
                results.push(None);
            }
            Err(r) => results.push(Some(r)),
        }
    }
    for (i, r) in rebuild_and_compare(ctx, &cas, pending, &a)? {
        results[i] = Some(r);
    }
    let results: Vec<AuditResult> = results.into_iter().flatten().collect();
    let pass = results.iter().all(|r| r.pass);
    let report = json!({ "pass": pass, "targets": results });
    if let Some(f) = &a.report {
        std::fs::write(f, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", f.display()))?;
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for r in &results {
            print_audit(r);
        }
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAILURE)
    })
}

fn print_audit(r: &AuditResult) {
    let verdict = if r.pass { "PASS" } else { "FAIL" };
    println!("{}: {verdict}", r.target);
    if let Some(run) = r.recorded_run {
        match &r.tree_revision {
            Some(rev) => println!("  recorded build: run {run}, tree {rev}"),
            None => println!("  recorded build: run {run}"),
        }
    }
    if let Some(obj) = r.rebuild.as_object() {
        for (k, v) in obj.iter().filter(|(_, v)| !v.is_null()) {
            let v = v.as_str().map(str::to_string).unwrap_or(v.to_string());
            println!("  rebuild {k}: {v}");
        }
    }
    if let Some(e) = &r.error {
        println!("  {e}");
        return;
    }
    let same = r.artifacts_compared - r.differences.len() - r.noise.len();
    if !r.noise.is_empty() {
        let objects = r
            .noise
            .iter()
            .filter(|d| d.artifact.ends_with(".o"))
            .count();
        let others: Vec<&str> = r
            .noise
            .iter()
            .filter(|d| !d.artifact.ends_with(".o"))
            .map(|d| d.artifact.as_str())
            .collect();
        println!(
            "  known compiler non-determinism, same inputs (not a failure): {objects} LTO object(s){}{}",
            if others.is_empty() { "" } else { ", " },
            others.join(", ")
        );
    }
    if r.pass {
        println!(
            "  {same} artifacts byte-identical to the recorded build, the firmware among them"
        );
        return;
    }
    if let Some(first) = &r.first_difference {
        println!("  first differing artifact: {first}");
    }
    if !r.objects_differ.is_empty() {
        println!("  objects that differ: {}", r.objects_differ.join(", "));
    }
    for d in &r.differences {
        println!("  {} ({}) differs", d.artifact, d.step);
        for c in &d.causes {
            println!("    because of {} [{}]: {}", c.input, c.kind, c.what);
            for l in &c.detail {
                println!("      {l}");
            }
        }
    }
}

impl AuditResult {
    fn new(target: &str) -> AuditResult {
        AuditResult {
            target: target.to_string(),
            pass: false,
            recorded_run: None,
            tree_revision: None,
            error: None,
            rebuild: json!({}),
            artifacts_compared: 0,
            first_difference: None,
            objects_differ: vec![],
            differences: vec![],
            noise: vec![],
        }
    }
}

/// The targets to audit, resolved, each once: the targets given (one with
/// `*` stands for the recorded targets whose names match it; none given,
/// every recorded target), then those whose merged info matches the filters.
fn audit_targets(ctx: &Context, cas: &LocalCas, a: &AuditArgs) -> anyhow::Result<Vec<String>> {
    let recorded = if a.targets.is_empty() || a.targets.iter().any(|t| t.contains('*')) {
        cas.provenance_targets()?
    } else {
        Vec::new()
    };
    let mut names = Vec::new();
    for t in &a.targets {
        if t.contains('*') {
            let matching: Vec<String> = recorded
                .iter()
                .filter(|n| glob_match(t, n))
                .cloned()
                .collect();
            if matching.is_empty() {
                bail!("no recorded build matches {t}");
            }
            names.extend(matching);
        } else {
            names.push(target_name(ctx, t)?);
        }
    }
    if a.targets.is_empty() {
        names = recorded;
    }
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if !a.filters.is_empty() {
        let engine = keyfab_info::Engine::new(ctx.tree.clone());
        let (kept, skipped) =
            keyfab_build::sweep::select::filter_named(&engine, &names, &a.filters);
        for (t, why) in &skipped {
            eprintln!("keyfab: warning: {t} left out: {why}");
        }
        if kept.is_empty() {
            let filters: Vec<&str> = a.filters.iter().map(|f| f.text.as_str()).collect();
            bail!(
                "no recorded build matches the filters {}",
                filters.join(" ")
            );
        }
        names = kept;
    }
    if names.is_empty() {
        bail!("no recorded build in this cache: build targets first");
    }
    Ok(names)
}

/// A target whose recorded build can be rebuilt and compared.
struct Recorded {
    /// Its result so far (the recorded run, the tree's revision).
    result: AuditResult,
    run: RunId,
    provenance: Provenance,
}

/// The newest successful recorded build of `name`, when the tree still is
/// what it built and the target can be rebuilt from it; else the result
/// that says why not.
fn precheck(
    ctx: &Context,
    cas: &LocalCas,
    engine: &keyfab_info::Engine,
    name: &str,
) -> anyhow::Result<Result<Recorded, AuditResult>> {
    let mut result = AuditResult::new(name);
    let recs = history(cas, name, |v| v.iter().any(|(_, p)| provenance::is_ok(p)))?;
    let any = !recs.is_empty();
    let Some((run, recorded)) = recs.into_iter().find(|(_, p)| provenance::is_ok(p)) else {
        result.error = Some(if any {
            format!("no successful recorded build of {name} in this cache (its builds failed): build it, then audit")
        } else {
            format!("no recorded build of {name} in this cache: run `keyfab build {name}` first")
        });
        return Ok(Err(result));
    };
    result.recorded_run = Some(run.0);
    result.tree_revision = provenance::note(&recorded, "tree_revision").map(str::to_string);
    // The tree must still be what was built, or the comparison says nothing.
    let root = ctx.tree.root();
    let clock = keyfab_cas::RunClock::now();
    let mut stale = Vec::new();
    for (input, d) in &recorded.inputs {
        if provenance::input_kind(input) == "file" {
            let path = root.join(input);
            match cas.file_digest(&path, &clock) {
                Ok(now) if now == *d => {}
                _ => stale.push(input.clone()),
            }
        }
    }
    if !stale.is_empty() {
        result.error = Some(format!(
            "the tree changed since the recorded build (run {}): {}; build it again, then audit",
            run.0,
            stale.join(", ")
        ));
        return Ok(Err(result));
    }
    // The rebuild finds the keymap in the tree (not a configurator export).
    if let Some((kb, km)) = name.split_once(':') {
        let info = engine.info_json(kb);
        let layouts = keyfab_info::community_layouts_of(&info.value);
        if let Err(e) = ctx.tree.require_keymap(kb, km, &layouts) {
            result.error = Some(format!("cannot rebuild {name} from the tree: {e}"));
            return Ok(Err(result));
        }
    }
    Ok(Ok(Recorded {
        result,
        run,
        provenance: recorded,
    }))
}

/// What a rebuild takes from a recorded build; targets with the same
/// settings are rebuilt together.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Settings {
    /// `-e VAR=VALUE`
    make: Vec<String>,
    /// The environment that matters (`SOURCE_DATE_EPOCH`, compiler paths).
    env: Vec<(String, String)>,
    reproducible: bool,
    /// The generators, unless keyfab's own.
    qmk_bin: Option<String>,
}

impl Settings {
    fn of(recorded: &Provenance, exe: &Path) -> Settings {
        let mut make = Vec::new();
        let mut env = Vec::new();
        for (k, v) in &recorded.notes {
            if let Some(var) = k.strip_prefix("make:") {
                make.push(format!("{var}={v}"));
            } else if let Some(var) = k.strip_prefix("env:") {
                env.push((var.to_string(), v.clone()));
            }
        }
        Settings {
            make,
            env,
            reproducible: provenance::note(recorded, "reproducible") == Some("yes"),
            qmk_bin: provenance::note(recorded, "qmk_bin")
                .filter(|bin| *bin != format!("{} qmk", exe.display()))
                .map(str::to_string),
        }
    }
}

/// Rebuilds the targets from nothing (one copy of the tree at another
/// absolute path, an empty cache, the clock moved) and compares each with
/// its recorded build. Targets recorded with the same settings are rebuilt
/// by one `keyfab sweep` on one job pool (usually all of them; otherwise one
/// sweep, with a cache of its own, per set of settings). Returns
/// (the target's index in `pending`'s order, its result).
fn rebuild_and_compare(
    ctx: &Context,
    cas: &LocalCas,
    pending: Vec<(usize, Recorded)>,
    a: &AuditArgs,
) -> anyhow::Result<Vec<(usize, AuditResult)>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let root = ctx.tree.root();
    let tmp = tempfile::Builder::new().prefix("keyfab-audit-").tempdir()?;
    let base = if a.keep {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    let tree_name = root.file_name().map_or("tree".into(), |n| n.to_os_string());
    let copy = base.join("elsewhere").join(tree_name);
    let checkouts = copy_tree(root, &copy, &base.join("git"))?;
    let faketime = keyfab_build::exec::resolve_program("faketime");
    let exe = std::env::current_exe()?;
    let jobs = crate::build_cmds::jobs(a.jobs);
    let mut groups: BTreeMap<Settings, Vec<(usize, Recorded)>> = BTreeMap::new();
    for (i, r) in pending {
        groups
            .entry(Settings::of(&r.provenance, &exe))
            .or_default()
            .push((i, r));
    }
    let several = groups.len() > 1;
    let mut out = Vec::new();
    for (g, (settings, members)) in groups.into_iter().enumerate() {
        let suffix = if several {
            format!("-{}", g + 1)
        } else {
            String::new()
        };
        let rcache = base.join(format!("cache{suffix}"));
        let report_dir = base.join(format!("report{suffix}"));
        let mut cmd = match &faketime {
            Some(f) => {
                let mut c = Command::new(f);
                c.args(["-f", &a.clock_offset]).arg(&exe);
                c
            }
            None => {
                // No faketime: at least make sure the wall clock's second differs.
                std::thread::sleep(std::time::Duration::from_millis(1100));
                Command::new(&exe)
            }
        };
        cmd.arg("--tree").arg(&copy).arg("--cache").arg(&rcache);
        // A userspace build is rebuilt with the same userspace (the folder
        // make was given): QMK's objects name its keymaps by absolute path.
        if let Some(us) = settings
            .make
            .iter()
            .find_map(|m| m.strip_prefix("QMK_USERSPACE="))
        {
            cmd.arg("--userspace").arg(us);
        }
        // The firmware stays in the copy's .build/: a userspace build's
        // goes to the user's own userspace otherwise.
        cmd.args([
            "sweep",
            "--no-copy",
            "--progress",
            "none",
            "-j",
            &jobs.to_string(),
        ])
        .arg("--report")
        .arg(&report_dir);
        for m in &settings.make {
            cmd.arg("-e").arg(m);
        }
        if settings.reproducible {
            cmd.arg("--reproducible");
        }
        if let Some(bin) = &settings.qmk_bin {
            cmd.arg("--qmk-bin").arg(bin);
        }
        cmd.args(members.iter().map(|(_, r)| r.result.target.as_str()));
        cmd.env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in &settings.env {
            cmd.env(k, v);
        }
        cmd.current_dir(&copy).env("GIT_OPTIONAL_LOCKS", "0");
        if checkouts > 0 {
            let earlier = std::env::var("GIT_CONFIG_COUNT").ok();
            cmd.envs(git_config_env(earlier.as_deref(), &COPY_STAT_CHECK));
        }
        let rebuild = json!({
            "tree": copy.display().to_string(),
            "cache": rcache.display().to_string(),
            "clock": match &faketime {
                Some(_) => format!("faketime {}", a.clock_offset),
                None => "real clock, a second later (faketime not installed)".to_string(),
            },
            "source_date_epoch": settings.env.iter().find(|(k, _)| k == "SOURCE_DATE_EPOCH").map(|(_, v)| v),
            "targets_rebuilt_together": members.len(),
            "jobs": jobs,
            "kept": a.keep,
        });
        let ran = cmd.output().context("running the rebuild")?;
        let report: Option<serde_json::Value> = std::fs::read(report_dir.join("sweep.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let rcas = match &report {
            Some(_) => Some(LocalCas::open(&rcache)?),
            None => None,
        };
        for (i, rec) in members {
            let Recorded {
                mut result,
                run,
                provenance: recorded,
            } = rec;
            result.rebuild = rebuild.clone();
            let row = report.as_ref().and_then(|r| {
                r["targets"]
                    .as_array()?
                    .iter()
                    .find(|t| t["target"] == result.target.as_str())
                    .cloned()
            });
            match (row, &rcas) {
                (Some(row), Some(rcas)) if row["status"] == "ok" => {
                    let rebuilt = rcas
                        .provenance(&result.target, 1)?
                        .into_iter()
                        .next()
                        .filter(|(_, p)| provenance::is_ok(p));
                    match rebuilt {
                        Some((rrun, rebuilt)) => {
                            let dates = [
                                run_date(cas, run.0).map(|t| ("recorded", t)),
                                run_date(rcas, rrun.0).map(|t| ("rebuilt", t)),
                            ];
                            compare(&mut result, &recorded, &rebuilt, cas, rcas, &dates);
                        }
                        None => result.error = Some("the rebuild recorded no provenance".into()),
                    }
                }
                (Some(row), _) => {
                    result.error = Some(format!(
                        "the rebuild {} ({}):\n{}",
                        if row["status"] == "skipped" {
                            "was interrupted"
                        } else {
                            "failed"
                        },
                        row["stage"].as_str().unwrap_or("build"),
                        row["error"].as_str().unwrap_or("")
                    ));
                }
                (None, _) => {
                    result.error = Some(format!(
                        "the rebuild failed:\n{}{}",
                        String::from_utf8_lossy(&ran.stdout),
                        String::from_utf8_lossy(&ran.stderr)
                    ));
                }
            }
            out.push((i, result));
        }
    }
    Ok(out)
}

/// `*` matches any run of characters (slashes included); the rest literally.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// When a run started (unix seconds).
fn run_date(cas: &LocalCas, run: i64) -> Option<i64> {
    cas.runs(10_000)
        .ok()?
        .into_iter()
        .find(|r| r.id == run)
        .map(|r| r.started_ns / 1_000_000_000)
}

fn compare(
    result: &mut AuditResult,
    recorded: &Provenance,
    rebuilt: &Provenance,
    cas: &LocalCas,
    rcas: &LocalCas,
    dates: &[Option<(&str, i64)>],
) {
    let rec_out: BTreeMap<&str, Digest> = recorded
        .outputs
        .iter()
        .map(|(k, d)| (k.as_str(), *d))
        .collect();
    let new_out: BTreeMap<&str, Digest> = rebuilt
        .outputs
        .iter()
        .map(|(k, d)| (k.as_str(), *d))
        .collect();
    let steps = provenance::steps(rebuilt);
    let rec_steps = provenance::steps(recorded);
    // Build order: the steps' outputs in record order (generators, compiles,
    // then archive, link, conversions), then anything else (map files).
    let mut order: Vec<&str> = steps.iter().map(|s| s.output.as_str()).collect();
    for k in rec_out.keys().chain(new_out.keys()) {
        if !order.contains(k) {
            order.push(k);
        }
    }
    let rec_in: BTreeMap<&str, Digest> = recorded
        .inputs
        .iter()
        .map(|(k, d)| (k.as_str(), *d))
        .collect();
    let new_in: BTreeMap<&str, Digest> = rebuilt
        .inputs
        .iter()
        .map(|(k, d)| (k.as_str(), *d))
        .collect();
    let tree_paths: Vec<String> = [recorded, rebuilt]
        .iter()
        .filter_map(|p| provenance::note(p, "tree").map(str::to_string))
        .collect();
    for out in order {
        let (r, n) = (rec_out.get(out), new_out.get(out));
        if r.is_none() && n.is_none() {
            continue;
        }
        result.artifacts_compared += 1;
        if r == n {
            continue;
        }
        let step = steps
            .iter()
            .chain(rec_steps.iter())
            .find(|s| s.output == out);
        let mut causes = Vec::new();
        if let Some(s) = step {
            for input in &s.inputs {
                let (ri, ni) = (rec_in.get(input.as_str()), new_in.get(input.as_str()));
                if ri == ni {
                    continue;
                }
                let kind = if rec_out.contains_key(input.as_str()) {
                    "artifact"
                } else {
                    provenance::input_kind(input)
                };
                let (what, detail) = match (kind, ri, ni) {
                    ("generated", Some(a), Some(b)) => diff_generated(cas, rcas, a, b, &tree_paths),
                    ("artifact", ..) => (format!("{input} differs (see above)"), vec![]),
                    _ => (format!("its {kind} differs"), vec![]),
                };
                causes.push(Cause {
                    input: input.clone(),
                    kind: kind.to_string(),
                    what,
                    detail,
                });
            }
        }
        // Global inputs: env, make variables, toolchains.
        for (k, d) in &rec_in {
            let kind = provenance::input_kind(k);
            if (kind == "env" || kind == "make") && new_in.get(k) != Some(d) {
                causes.push(Cause {
                    input: k.to_string(),
                    kind: kind.into(),
                    what: "differs between the builds".into(),
                    detail: vec![],
                });
            }
        }
        for (t, d) in &recorded.toolchains {
            if rebuilt.toolchains.iter().any(|(t2, d2)| t2 == t && d2 != d) {
                causes.push(Cause {
                    input: t.clone(),
                    kind: "toolchain".into(),
                    what: "another compiler identity".into(),
                    detail: vec![],
                });
            }
        }
        // What the bytes themselves carry: the tree's path, the build date.
        // (Not for an artifact built from differing artifacts: those carry it.)
        if let (Some(a), Some(b)) = (r, n) {
            if !causes.iter().any(|c| c.kind == "artifact") {
                causes.extend(embedded(cas, rcas, a, b, &tree_paths, dates));
            }
        }
        let mut difference = Difference {
            artifact: out.to_string(),
            step: step.map_or("?".into(), |s| s.kind.clone()),
            recorded: r.map(Digest::to_hex),
            rebuilt: n.map(Digest::to_hex),
            causes: vec![],
        };
        if causes.is_empty() {
            // Same inputs: known compiler non-determinism that does not reach
            // the firmware, or something we cannot name.
            if let Some(c) = r
                .zip(n)
                .and_then(|(a, b)| known_noise(cas, rcas, out, a, b))
            {
                difference.causes.push(c);
                result.noise.push(difference);
                continue;
            }
            causes.push(Cause {
                input: "?".into(),
                kind: "unknown".into(),
                what: "same inputs, different bytes: a non-deterministic step".into(),
                detail: vec![],
            });
        }
        difference.causes = causes;
        if out.ends_with(".o") {
            result.objects_differ.push(out.to_string());
        }
        if result.first_difference.is_none() {
            result.first_difference = Some(out.to_string());
        }
        result.differences.push(difference);
    }
    result.pass = result.differences.is_empty() && result.artifacts_compared > 0;
}

/// Differences with the same inputs that are known and harmless: GCC's LTO
/// objects (`-flto` without `-frandom-seed` streams a random seed, so two
/// compiles of the same file differ) and link maps that name LTO's temp
/// files (`/tmp/ccXXXXXX.ltrans0.ltrans.o`). They never reach the firmware,
/// which is compared on its own.
fn known_noise(
    cas: &LocalCas,
    rcas: &LocalCas,
    artifact: &str,
    a: &Digest,
    b: &Digest,
) -> Option<Cause> {
    let x = cas.get_blob(a).ok().flatten()?;
    let y = rcas.get_blob(b).ok().flatten()?;
    let has = |bytes: &[u8], s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
    if artifact.ends_with(".o") && has(&x, b".gnu.lto_") && has(&y, b".gnu.lto_") {
        return Some(Cause {
            input: "gcc -flto".into(),
            kind: "nondeterministic".into(),
            what: "an LTO object: GCC streams a random seed into it (no -frandom-seed)".into(),
            detail: vec![],
        });
    }
    if artifact.ends_with(".a") && same_archive_members(&x, &y) {
        return Some(Cause {
            input: "ar".into(),
            kind: "nondeterministic".into(),
            what: "the same members: ar without `D` (avr-ar's default) stamps each member's time, owner and mode"
                .into(),
            detail: vec![],
        });
    }
    if artifact.ends_with(".map") {
        let norm = |bytes: &[u8]| -> String {
            let text = String::from_utf8_lossy(bytes);
            text.split_inclusive(char::is_whitespace)
                .map(|w| match w.find("/cc") {
                    Some(i) if w.contains(".ltrans") => &w[..i],
                    _ => w,
                })
                .collect()
        };
        if norm(&x) == norm(&y) {
            return Some(Cause {
                input: "gcc -flto".into(),
                kind: "nondeterministic".into(),
                what: "the link map names LTO's temp files (/tmp/cc….ltrans….o)".into(),
                detail: vec![],
            });
        }
    }
    None
}

/// Whether two `ar` archives hold the same members (names and bytes, in
/// order), whatever their headers' times, owners and modes; members that
/// are both LTO objects count as the same (see [`known_noise`]).
fn same_archive_members(x: &[u8], y: &[u8]) -> bool {
    let (Some(a), Some(b)) = (archive_members(x), archive_members(y)) else {
        return false;
    };
    let lto = |m: &[u8]| m.windows(9).any(|w| w == b".gnu.lto_");
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((n1, d1), (n2, d2))| n1 == n2 && (d1 == d2 || (lto(d1) && lto(d2))))
}

/// An `ar` archive's members as (name field, bytes): each has a 60-byte
/// header (name 16, time 12, uid 6, gid 6, mode 8, size 10, "`\n") and
/// its bytes, padded to an even length. `None` when `bytes` is not one.
fn archive_members(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut rest = bytes.strip_prefix(b"!<arch>\n")?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 60 || &rest[58..60] != b"`\n" {
            return None;
        }
        let size: usize = std::str::from_utf8(&rest[48..58])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let data = rest.get(60..60 + size)?;
        members.push((&rest[..16], data));
        let next = (60 + size + size % 2).min(rest.len());
        rest = &rest[next..];
    }
    Some(members)
}

/// The lines of a generated file that differ between the builds, and what
/// they are (the build date, a path, a version string).
fn diff_generated(
    cas: &LocalCas,
    rcas: &LocalCas,
    a: &Digest,
    b: &Digest,
    tree_paths: &[String],
) -> (String, Vec<String>) {
    let (Some(x), Some(y)) = (
        cas.get_blob(a).ok().flatten(),
        rcas.get_blob(b).ok().flatten(),
    ) else {
        return ("its contents differ".into(), vec![]);
    };
    let (x, y) = (String::from_utf8_lossy(&x), String::from_utf8_lossy(&y));
    let xs: BTreeSet<&str> = x.lines().collect();
    let ys: BTreeSet<&str> = y.lines().collect();
    let mut detail = Vec::new();
    let mut what = BTreeSet::new();
    for l in x.lines().filter(|l| !ys.contains(l)) {
        detail.push(format!("- {l}"));
        what.insert(classify(l, tree_paths));
    }
    for l in y.lines().filter(|l| !xs.contains(l)) {
        detail.push(format!("+ {l}"));
        what.insert(classify(l, tree_paths));
    }
    detail.truncate(12);
    let what: Vec<&str> = what.into_iter().collect();
    (what.join(", "), detail)
}

fn classify(line: &str, tree_paths: &[String]) -> &'static str {
    if tree_paths.iter().any(|p| line.contains(p.as_str())) {
        "a path"
    } else if line.contains("BUILDDATE") || has_date(line) {
        "the build date"
    } else if line.contains("VERSION") || line.contains("GIT_HASH") {
        "a version string"
    } else {
        "its contents"
    }
}

/// `YYYY-MM-DD` somewhere in the text.
fn has_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(10).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[7] == b'-'
            && w[8..].iter().all(u8::is_ascii_digit)
    })
}

/// Strings one artifact carries and the other does not: a tree path, the
/// date of its build in `__DATE__` (`Nov 22 2026`) or ISO form.
fn embedded(
    cas: &LocalCas,
    rcas: &LocalCas,
    a: &Digest,
    b: &Digest,
    tree_paths: &[String],
    dates: &[Option<(&str, i64)>],
) -> Vec<Cause> {
    let (Some(x), Some(y)) = (
        cas.get_blob(a).ok().flatten(),
        rcas.get_blob(b).ok().flatten(),
    ) else {
        return vec![];
    };
    let has =
        |bytes: &[u8], s: &str| !s.is_empty() && bytes.windows(s.len()).any(|w| w == s.as_bytes());
    let mut causes = Vec::new();
    for p in tree_paths {
        if has(&x, p) != has(&y, p) {
            causes.push(Cause {
                input: "embedded:path".into(),
                kind: "embedded".into(),
                what: "a path: the tree's absolute path is in the bytes".into(),
                detail: vec![p.clone()],
            });
            break;
        }
    }
    let mut found = Vec::new();
    for (_, t) in dates.iter().flatten() {
        let (gcc, iso) = date_strings(*t);
        for s in [gcc, iso] {
            if has(&x, &s) != has(&y, &s) && !found.contains(&s) {
                found.push(s);
            }
        }
    }
    if !found.is_empty() {
        causes.push(Cause {
            input: "embedded:date".into(),
            kind: "embedded".into(),
            what: "the build date (__DATE__ or QMK_BUILDDATE) is in the bytes".into(),
            detail: found,
        });
    }
    causes
}

/// `__DATE__` (`Nov  2 2026`) and ISO (`2026-11-02`) forms of a UTC time.
fn date_strings(unix: i64) -> (String, String) {
    let days = unix.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    (
        format!("{} {:>2} {y}", MONTHS[(m - 1) as usize], d),
        format!("{y}-{m:02}-{d:02}"),
    )
}

/// How git compares the copy's files with its index's stat data: by size
/// and whole-second modification time, which the copy keeps
/// ([`copy_dir`]); not by inode or change time, which no copy keeps. With
/// git's defaults every entry looked changed, and `git diff` (version.h's)
/// hashed every tracked file to find it was not: ~3 s of CPU for QMK's 23k.
const COPY_STAT_CHECK: [(&str, &str); 2] =
    [("core.checkStat", "minimal"), ("core.trustCtime", "false")];

/// The environment that adds `settings` to git's configuration (after any
/// `GIT_CONFIG_COUNT` settings already there: `earlier`).
fn git_config_env(earlier: Option<&str>, settings: &[(&str, &str)]) -> Vec<(String, String)> {
    let first: usize = earlier.and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut env = vec![(
        "GIT_CONFIG_COUNT".to_string(),
        (first + settings.len()).to_string(),
    )];
    for (i, (k, v)) in settings.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", first + i), k.to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{}", first + i), v.to_string()));
    }
    env
}

/// Copies a tree for the rebuild: everything but build output (`.build`)
/// and git's folders. Each checkout in it (the tree's, and any other: a
/// ChibiOS submodule, a repository of its own) gets a git folder of its
/// own under `git_dirs` instead, as a linked worktree has: its `HEAD` and
/// index, with everything else from the checkout's (`commondir`). So `git
/// describe` says the same in the copy, and the checkout's index is never
/// written: version.h's `git diff` refreshes and writes the index whatever
/// `GIT_OPTIONAL_LOCKS` says, and the copy's files (new inodes and times)
/// in the checkout's own index made its next `git status` read every
/// tracked file again. Returns how many checkouts it found.
fn copy_tree(src: &Path, dest: &Path, git_dirs: &Path) -> anyhow::Result<usize> {
    let mut checkouts = 0;
    copy_dir(src, dest, true, &mut |from, to| {
        let own = git_dirs.join((checkouts + 1).to_string());
        checkouts += usize::from(link_checkout(from, to, &own)?);
        Ok(())
    })?;
    Ok(checkouts)
}

/// Points the copy's `.git` (`to`) at a git folder of its own (`own`) for
/// the checkout whose `.git` is `from` (a folder, or a file naming one);
/// false when `from` is no git's, and was copied as it is.
fn link_checkout(from: &Path, to: &Path, own: &Path) -> anyhow::Result<bool> {
    let resolve = |base: &Path, named: &str| base.join(named.trim());
    let git_dir = if from.is_dir() {
        from.to_path_buf()
    } else {
        let text =
            std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
        let Some(named) = text.trim().strip_prefix("gitdir:") else {
            // Not git's: a file like any other.
            std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
            return Ok(false);
        };
        resolve(from.parent().unwrap_or(Path::new(".")), named)
    };
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(named) => resolve(&git_dir, &named),
        Err(_) => git_dir.clone(),
    };
    let common = std::path::absolute(&common)?;
    std::fs::create_dir_all(own)?;
    std::fs::write(own.join("commondir"), format!("{}\n", common.display()))?;
    for file in ["HEAD", "index"] {
        let at = git_dir.join(file);
        if at.is_file() {
            std::fs::copy(&at, own.join(file))
                .with_context(|| format!("copying {}", at.display()))?;
        }
    }
    std::fs::write(to, format!("gitdir: {}\n", own.display()))?;
    Ok(true)
}

/// Copies `src` into `dest`, files with their modification times; a `.git`
/// (folder or file) goes to `checkout(its path, where the copy's goes)`;
/// `.build` is left out at the top.
fn copy_dir(
    src: &Path,
    dest: &Path,
    top: bool,
    checkout: &mut dyn FnMut(&Path, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if top && name == ".build" {
            continue;
        }
        let ft = entry.file_type()?;
        let to = dest.join(&name);
        if name == ".git" {
            checkout(&entry.path(), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
        } else if ft.is_dir() {
            copy_dir(&entry.path(), &to, false, checkout)?;
        } else {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            // With its modification time, as git's index knows the file.
            let modified = entry.metadata()?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&to)
                .and_then(|f| f.set_modified(modified))
                .with_context(|| format!("setting the time of {}", to.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Archives `member` (written with `bytes` and time `secs`) with the
    /// host's `ar` in `U` mode (real times, as avr-ar's default).
    fn archive(dir: &Path, name: &str, bytes: &[u8], secs: u64) -> Vec<u8> {
        let member = dir.join("m.o");
        std::fs::write(&member, bytes).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(&member)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let out = dir.join(name);
        let status = std::process::Command::new("ar")
            .arg("rcsU")
            .arg(&out)
            .arg(&member)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(out).unwrap()
    }

    /// An object of the host compiler for `code`.
    fn object(dir: &Path, code: &str) -> Vec<u8> {
        std::fs::write(dir.join("o.c"), code).unwrap();
        let status = std::process::Command::new("cc")
            .args(["-c", "o.c", "-o", "o.o"])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(dir.join("o.o")).unwrap()
    }

    #[test]
    fn archives_differing_only_in_member_headers_are_the_same() {
        let t = tempfile::tempdir().unwrap();
        let obj = object(t.path(), "int f(void) { return 1; }\n");
        let a = archive(t.path(), "a.a", &obj, 1_000_000);
        let b = archive(t.path(), "b.a", &obj, 2_000_000);
        assert_ne!(a, b, "ar U mode stamps the member's time");
        assert_eq!(
            archive_members(&a).unwrap().len(),
            2,
            "symbol table and member"
        );
        assert!(same_archive_members(&a, &b));
        let other = object(t.path(), "int f(void) { return 2; }\n");
        let c = archive(t.path(), "c.a", &other, 1_000_000);
        assert!(!same_archive_members(&a, &c));
        let lto1 = archive(t.path(), "d.a", b"x.gnu.lto_seed1", 1);
        let lto2 = archive(t.path(), "e.a", b"x.gnu.lto_seed2", 2);
        assert!(same_archive_members(&lto1, &lto2));
        assert!(!same_archive_members(b"not an archive", b"not an archive"));
    }

    #[test]
    fn the_copy_keeps_files_modification_times() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/f.c"), "int x;\n").unwrap();
        let then =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        let f = std::fs::File::options()
            .write(true)
            .open(src.join("a/b/f.c"))
            .unwrap();
        f.set_modified(then).unwrap();
        copy_dir(&src, &t.path().join("dest"), true, &mut |_, _| Ok(())).unwrap();
        let copied = t.path().join("dest/a/b/f.c");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "int x;\n");
        assert_eq!(
            std::fs::metadata(&copied).unwrap().modified().unwrap(),
            then
        );
    }

    #[test]
    fn git_config_env_goes_after_settings_already_given() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            git_config_env(None, &COPY_STAT_CHECK),
            [
                pair("GIT_CONFIG_COUNT", "2"),
                pair("GIT_CONFIG_KEY_0", "core.checkStat"),
                pair("GIT_CONFIG_VALUE_0", "minimal"),
                pair("GIT_CONFIG_KEY_1", "core.trustCtime"),
                pair("GIT_CONFIG_VALUE_1", "false"),
            ]
        );
        let after = git_config_env(Some("1"), &[("a.b", "c")]);
        assert_eq!(
            after,
            [
                pair("GIT_CONFIG_COUNT", "2"),
                pair("GIT_CONFIG_KEY_1", "a.b"),
                pair("GIT_CONFIG_VALUE_1", "c"),
            ]
        );
    }

    #[test]
    fn date_macros_pinned_once_after_the_users_extraflags() {
        // SAFETY of the test: no other test of this binary reads SOURCE_DATE_EPOCH.
        std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
        let mut env = vec![("EXTRAFLAGS".to_string(), "-DFOO".to_string())];
        pin_date_macros(&mut env);
        pin_date_macros(&mut env);
        std::env::remove_var("SOURCE_DATE_EPOCH");
        assert_eq!(
            env,
            [(
                "EXTRAFLAGS".to_string(),
                "-DFOO -Wno-builtin-macro-redefined -D__DATE__='\"Nov 14 2023\"' -D__TIME__='\"22:13:20\"'"
                    .to_string()
            )]
        );
        let mut none = vec![];
        pin_date_macros(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("planck/*", "planck/rev5:default"));
        assert!(glob_match("*:via", "a/b:via"));
        assert!(!glob_match("*:via", "a/b:default"));
        assert!(glob_match("solo:default", "solo:default"));
        assert!(glob_match("s*o:*t", "solo:default"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn dates_as_gcc_and_iso_write_them() {
        assert_eq!(
            date_strings(1_700_000_000),
            ("Nov 14 2023".to_string(), "2023-11-14".to_string())
        );
        assert_eq!(date_strings(0).0, "Jan  1 1970");
    }

    #[test]
    fn classifies_version_h_lines() {
        assert_eq!(
            classify("#define QMK_BUILDDATE \"2026-11-22-23:01:02\"", &[]),
            "the build date"
        );
        assert_eq!(
            classify("#define X \"/tmp/a/tree/x\"", &["/tmp/a/tree".into()]),
            "a path"
        );
        assert!(has_date("x 2026-11-22"));
        assert!(!has_date("x 2026-11-2"));
    }
}

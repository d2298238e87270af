//! Build benchmarks (issue #6), whole-process, on the fixture tree or on the
//! real QMK tree (`KEYFAB_QMK_TREE`, target from `BENCH_TARGET`, default
//! planck/rev5:default):
//! - stale plan: a makefile changed, so make's dry run runs (goal ≤ 300 ms),
//!   and those builds whole (every object from the cache);
//! - cached plan: `keyfab build -n` with nothing changed (goal ≤ 5 ms of
//!   planning, reported by keyfab; whole process shown too);
//! - no-op build and fresh-checkout build (no `.build/`) from a warm cache;
//! - cold build (empty cache, no `.build/`) against the CPU time its
//!   compiles, link and conversions took (with what they started: cc1, as,
//!   LTO partitions), divided by the jobs (goal ≤ 1.15); the CPU time comes
//!   from a run whose steps go through a wrapper that logs them (see
//!   `common`), the wall time from a cold run without it just before; the
//!   median ratio of five such pairs;
//! - keymap edit → new firmware (goal ≤ 1.5 s): `BENCH_KEYMAP` (else the
//!   target's `keymap.c` in its keyboard folders) gets a new constant each
//!   time, then is restored.
//!
//! Run: `cargo build --release -p keyfab-cli && cargo run --release -p keyfab-benches --bin bench-build`
//! The benchmark appends a comment to `builddefs/build_keyboard.mk` of a
//! scratch copy (fixture tree) — on a real tree it edits `builddefs/support.mk`
//! in place and restores it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Cold builds measured, each a pair (three pairs were seen to span
/// ratios 1.07..1.44 on a 2-core machine).
const COLD_PAIRS: usize = 5;

fn keyfab_env(
    bin: &Path,
    tree: &Path,
    cache: &Path,
    args: &[&str],
    env: &[(String, std::ffi::OsString)],
) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(bin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--tree")
        .arg(tree)
        .arg("--cache")
        .arg(cache)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run keyfab");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// "plan made in N ms" / "plan from cache in N ms" from the summary line.
fn plan_ms(line: &str) -> f64 {
    let i = line.find(" in ").expect("plan time");
    line[i + 4..].split(' ').next().unwrap().parse().unwrap()
}

/// `keyboards/<folder>/keymaps/<keymap>/keymap.c`, the deepest folder of
/// the keyboard's that has one (QMK's search order for a keymap).
fn keymap_c(tree: &Path, target: &str) -> Option<PathBuf> {
    let (kb, km) = target.split_once(':')?;
    let parts: Vec<&str> = kb.split('/').collect();
    (1..=parts.len()).rev().find_map(|n| {
        let p = tree
            .join("keyboards")
            .join(parts[..n].join("/"))
            .join("keymaps")
            .join(km)
            .join("keymap.c");
        p.is_file().then_some(p)
    })
}

fn main() {
    if let Some(code) = common::wrapper_mode() {
        std::process::exit(code);
    }
    let bin = common::keyfab_bin();
    let (src_tree, what) = common::tree();
    let scratch = tempfile::tempdir().unwrap();
    let (tree, makefile): (PathBuf, PathBuf) = if what == "fixture tree" {
        let t = scratch.path().join("tree");
        common::copy_dir(&src_tree, &t);
        let mk = t.join("builddefs/build_keyboard.mk");
        (t, mk)
    } else {
        let mk = src_tree.join("builddefs/support.mk");
        (src_tree.clone(), mk)
    };
    let original = std::fs::read_to_string(&makefile).unwrap();
    let target = std::env::var("BENCH_TARGET").unwrap_or_else(|_| {
        if what == "fixture tree" {
            "solo:default".into()
        } else {
            "planck/rev5:default".into()
        }
    });
    let cache = scratch.path().join("cache");
    println!("keyfab build benchmarks on the {what}, target {target}");

    let jobs: f64 = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average {}; {jobs} jobs",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    // Cold: the programs are wrapped first (a plan of a throw-away cache
    // names them), then built with an empty cache and no `.build/`.
    let log = scratch.path().join("steps.log");
    let (wrapped, wrap_env) = common::wrap_programs(
        &bin,
        &tree,
        &scratch.path().join("plan-cache"),
        &target,
        &scratch.path().join("wrap"),
        &log,
    );
    // The wrappers that measure the compilers cost a process start per
    // step, so the wall time is a cold build without them (its own empty
    // cache) and the CPU time the same build through them, run right
    // after: the machine's speed drifts (a cold build here varies by
    // ±15%, within a minute), and a pair sees the same. The ratio is the
    // median of the pairs. The last wrapped build's cache and `.build/` are what the
    // later builds start from. What a run leaves is set aside, not
    // deleted (see `common::set_aside`).
    let aside = scratch.path().join("aside");
    let mut pairs = Vec::new();
    // The ratio's floor on these cores: the whole process tree's CPU
    // (keyfab, make, git and the compilers) over the compilers' alone. A
    // build that kept every core busy from start to end would reach it.
    let mut floors = Vec::new();
    let mut last = None;
    for i in 0..COLD_PAIRS {
        common::set_aside(&tree.join(".build"), &aside);
        let plain_cache = scratch.path().join(format!("cache-plain-{i}"));
        let cpu_before = common::children_cpu();
        let (plain, _) = keyfab_env(&bin, &tree, &plain_cache, &["build", &target], &[]);
        let plain_cpu = (common::children_cpu() - cpu_before).as_secs_f64() * 1e3;
        common::set_aside(&tree.join(".build"), &aside);
        common::set_aside(&cache, &aside);
        let since = common::now_ns();
        let (cold, out) = keyfab_env(&bin, &tree, &cache, &["build", &target], &wrap_env);
        let cpu = common::step_cpu_ms(&log, since);
        pairs.push((plain.as_secs_f64() * 1e3, cpu));
        floors.push(plain_cpu / cpu);
        last = Some((since, cold, out));
    }
    let (since, cold, out) = last.unwrap();
    let steps = common::step_sum_ms(&log, since, None);
    let cpu = common::step_cpu_ms(&log, since);
    let ideal = cpu / jobs;
    let cold_ms = cold.as_secs_f64() * 1e3;
    println!("cold build: {cold_ms:.0} ms  ({})", out.trim());
    println!(
        "  steps ({}): {steps:.0} ms wall in all, {cpu:.0} ms CPU, {ideal:.0} ms CPU per job",
        wrapped.join(", ")
    );
    // Where the cold time went: before the first step (planning), the
    // compiles, the link and what came after it.
    let logged = common::logged_steps(&log, since, None);
    let at = |ns: u128| ns.saturating_sub(since) as f64 / 1e6;
    let compiles = logged.iter().filter(|s| s.kind == "compile");
    let first = logged.iter().map(|s| s.start).min().unwrap_or(since);
    let compiles_end = compiles.clone().map(|s| s.end).max().unwrap_or(first);
    // Steps without `-c` before the first compile are make's cc-option probes.
    let compiles_start = compiles.clone().map(|s| s.start).min().unwrap_or(first);
    let links: Vec<_> = logged
        .iter()
        .filter(|s| s.kind == "link" && s.start > compiles_start)
        .collect();
    let (link_start, link_end) = (
        links.iter().map(|s| s.start).min().unwrap_or(compiles_end),
        links.iter().map(|s| s.end).max().unwrap_or(compiles_end),
    );
    println!(
        "  timeline (ms from start): first step {:.0}, compiles {:.0}..{:.0}, link {:.0}..{:.0} ({} link steps, {:.0} ms CPU), exit {cold_ms:.0}",
        at(first),
        at(compiles_start),
        at(compiles_end),
        at(link_start),
        at(link_end),
        links.len(),
        links.iter().map(|s| s.cpu_ns).sum::<u128>() as f64 / 1e6,
    );
    let ratios: Vec<f64> = pairs.iter().map(|(w, c)| w / (c / jobs)).collect();
    let shown: Vec<String> = pairs
        .iter()
        .zip(&ratios)
        .map(|((w, c), r)| format!("{w:.0} ms / {:.0} = {r:.2}", c / jobs))
        .collect();
    println!(
        "  without the measuring wrappers, each over the CPU per job of the wrapped build after it: {} (the last with them: ratio {:.2})",
        shown.join("; "),
        cold_ms / ideal
    );
    let ratio = common::median(ratios);
    let verdict = if ratio <= 1.15 { "ok" } else { "OVER GOAL" };
    println!("cold build / (compiler CPU time / jobs), median of {COLD_PAIRS} pairs: {ratio:.2}; goal 1.15 {verdict}");
    let floor = common::median(floors);
    println!(
        "  its floor with every core busy throughout (all CPU of the build without the wrappers / its compilers' CPU), median: {floor:.2}, i.e. {:.0} ms of CPU besides the compilers'",
        (floor - 1.0) * cpu
    );

    // From here on every build runs the same (wrapped) programs: the cold
    // build's objects are theirs.
    let keyfab = |bin: &Path, tree: &Path, cache: &Path, args: &[&str]| {
        keyfab_env(bin, tree, cache, args, &wrap_env)
    };

    let runs = 7;
    let mut stale = Vec::new();
    let mut stale_builds = Vec::new();
    for i in 0..runs {
        std::fs::write(&makefile, format!("{original}\n# bench {i}\n")).unwrap();
        let (took, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
        stale.push(plan_ms(out.lines().last().unwrap()));
        stale_builds.push(took.as_secs_f64() * 1e3);
    }
    std::fs::write(&makefile, &original).unwrap();
    keyfab(&bin, &tree, &cache, &["build", &target]);
    report("stale plan (make's dry run)", common::median(stale), 300.0);
    // The same builds whole: objects restore from the cache while make
    // still prints the plan.
    println!(
        "makefile edit → firmware (plan made again, objects from the cache), whole process: median {:.0} ms",
        common::median(stale_builds)
    );

    let mut cached = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..runs {
        let (took, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
        cached.push(plan_ms(out.lines().last().unwrap()));
        noop.push(took.as_secs_f64() * 1e3);
    }
    report("cached plan", common::median(cached), 5.0);
    println!(
        "no-op build, whole process: median {:.0} ms ({})",
        common::median(noop),
        checkout_state(&tree)
    );

    // Keymap edit → new firmware: one object compiles, the firmware links.
    let keymap = std::env::var_os("BENCH_KEYMAP")
        .map(PathBuf::from)
        .or_else(|| keymap_c(&tree, &target))
        .expect("the target's keymap.c (set BENCH_KEYMAP)");
    let keymap_text = std::fs::read_to_string(&keymap).unwrap();
    let mut edits = Vec::new();
    let stamp = common::now_ns();
    for i in 0..5 {
        std::fs::write(
            &keymap,
            format!("{keymap_text}\nconst int keyfab_bench_edit_{stamp}_{i} = {i};\n"),
        )
        .unwrap();
        let (took, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
        let line = out.lines().last().unwrap_or_default().to_string();
        assert!(line.contains(" 1 compiled"), "{line}");
        edits.push(took.as_secs_f64() * 1e3);
    }
    std::fs::write(&keymap, &keymap_text).unwrap();
    report(
        "keymap edit → new firmware, whole process",
        common::median(edits),
        1500.0,
    );
    keyfab(&bin, &tree, &cache, &["build", &target]);

    let mut fresh = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(tree.join(".build"));
        let (took, _) = keyfab(&bin, &tree, &cache, &["build", &target]);
        fresh.push(took.as_secs_f64() * 1e3);
    }
    println!(
        "fresh checkout (no .build/), warm cache, whole process: median {:.0} ms",
        common::median(fresh)
    );
}

fn report(name: &str, ms: f64, goal: f64) {
    let ratio = ms / goal;
    println!(
        "{name}: median {ms:.1} ms; goal {goal:.0} ms; ratio {ratio:.2} {}",
        if ratio <= 1.0 { "ok" } else { "OVER GOAL" }
    );
}

/// What version.h's git work is in `tree`, which the no-op mostly waits
/// for: in a dirty checkout a narrowed diff of the path found dirty last
/// time, in a clean one a stat of every tracked file.
fn checkout_state(tree: &Path) -> &'static str {
    let diff = |cached: bool| {
        Command::new("git")
            .args(["diff", "--quiet"])
            .args(cached.then_some("--cached"))
            .current_dir(tree)
            .status()
            .ok()
            .and_then(|s| s.code())
    };
    match (diff(false), diff(true)) {
        (Some(0), Some(0)) => "a clean checkout: git stats every tracked file",
        (Some(0 | 1), Some(0 | 1)) => "a dirty checkout: git diffs the path found dirty last time",
        _ => "not a checkout git can diff",
    }
}

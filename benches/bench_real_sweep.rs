//! The sweep on a real QMK tree (issue #7): `KEYFAB_QMK_TREE` (built in
//! place: use a scratch copy), the targets one per line in
//! `BENCH_TARGETS` (a file). Prints, with the load average:
//! - cold sweep (empty cache, no `.build/`) against the CPU time its
//!   compilers, linkers and converters took, per job (goal ≤ 1.1); the CPU
//!   time from a sweep whose steps run through a wrapper that logs them (see
//!   `common`), the wall time from a cold sweep without it just before;
//!   the median ratio of three such pairs;
//! - no-op sweeps (goal ≤ 0.2 s): wall and keyfab's CPU;
//! - the CI night: a fresh checkout (no `.build/`) with the warm cache (goal
//!   ≤ 100 ms per target), in the same folder, then in another folder (a
//!   hard-linked copy of the tree, as a CI runner with its own workspace).
//!
//! `SOURCE_DATE_EPOCH` is pinned (else `version.h` carries the time of day
//! and the boards that include it recompile on every sweep, as with QMK).
//! `BENCH_CACHE` keeps the cache in a folder of your choosing (default: a
//! temp folder).
//!
//! Run: `cargo build --release -p keyfab-cli && KEYFAB_QMK_TREE=… BENCH_TARGETS=… cargo run --release -p keyfab-benches --bin bench-real-sweep`

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn load() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split(' ').take(3).collect::<Vec<_>>().join(" ")
}

/// Runs a sweep; returns (wall, CPU of keyfab and what it ran, summary line).
fn sweep(
    bin: &Path,
    tree: &Path,
    cache: &Path,
    targets: &[String],
    env: &[(String, std::ffi::OsString)],
) -> (Duration, Duration, String) {
    let cpu = common::children_cpu();
    let start = Instant::now();
    let out = Command::new(bin)
        .arg("--tree")
        .arg(tree)
        .arg("--cache")
        .arg(cache)
        .args(["sweep", "--progress", "none"])
        .args(targets)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run keyfab sweep");
    let wall = start.elapsed();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("sweep:"))
        .unwrap_or_default()
        .to_string();
    assert!(out.status.success(), "{text}");
    (wall, common::children_cpu() - cpu, line)
}

fn main() {
    if let Some(code) = common::wrapper_mode() {
        std::process::exit(code);
    }
    let bin = common::keyfab_bin();
    let (tree, what) = common::tree();
    assert_eq!(
        what, "real QMK tree",
        "set KEYFAB_QMK_TREE (a scratch copy)"
    );
    let list = std::env::var("BENCH_TARGETS").expect("BENCH_TARGETS: a file of targets");
    let targets: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let n = targets.len() as f64;
    let scratch = tempfile::tempdir().unwrap();
    let cache = std::env::var_os("BENCH_CACHE")
        .map(Into::into)
        .unwrap_or_else(|| scratch.path().join("cache"));
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "keyfab sweep on the real tree, {} targets, {jobs} jobs",
        targets.len()
    );

    // The programs to wrap, from the first target's plan (a throw-away cache).
    let log = scratch.path().join("steps.log");
    let (wrapped, env) = common::wrap_programs(
        &bin,
        &tree,
        &scratch.path().join("plan-cache"),
        &targets[0],
        &scratch.path().join("wrap"),
        &log,
    );
    // The wrappers cost a process start per step, so the wall time is a
    // cold sweep without them (its own empty cache) and the CPU time the
    // same sweep through them, run right after: the machine's speed
    // drifts (a cold sweep here varies by seconds), and a pair sees the
    // same. Three pairs; the ratio is their median. The last wrapped
    // sweep's cache and `.build/` are what the later sweeps start from.
    // What a run leaves is set aside, not deleted (see `common::set_aside`).
    let aside = scratch.path().join("aside");
    let mut pairs = Vec::new();
    for i in 0..3 {
        let plain_load = load();
        common::set_aside(&tree.join(".build"), &aside);
        let plain_cache = scratch.path().join(format!("cache-plain-{i}"));
        let (plain, _, _) = sweep(&bin, &tree, &plain_cache, &targets, &[]);
        common::set_aside(&tree.join(".build"), &aside);
        common::set_aside(&cache, &aside);
        let since = common::now_ns();
        let (wall, _, line) = sweep(&bin, &tree, &cache, &targets, &env);
        let cpu = common::step_cpu_ms(&log, since);
        let ratio = plain.as_secs_f64() * 1e3 / (cpu / jobs);
        println!("cold sweep {} (load {plain_load}):", i + 1);
        println!("  {line}");
        println!(
            "  without the wrappers {:.1} s; through them {:.1} s, steps ({}) {:.1} s CPU, {:.1} s per job; ratio {ratio:.2} (with the wrappers {:.2})",
            plain.as_secs_f64(),
            wall.as_secs_f64(),
            wrapped.join(", "),
            cpu / 1e3,
            cpu / jobs / 1e3,
            wall.as_secs_f64() * 1e3 / (cpu / jobs),
        );
        pairs.push(ratio);
    }
    let ratio = common::median(pairs);
    println!(
        "cold sweep / (compiler CPU time / jobs), median of 3 pairs: {ratio:.2}; goal 1.1 {}",
        if ratio <= 1.1 { "ok" } else { "OVER GOAL" }
    );

    for i in 1..=5 {
        let l = load();
        let (wall, cpu, line) = sweep(&bin, &tree, &cache, &targets, &env);
        println!(
            "no-op sweep {i} (load {l}): {:.0} ms wall, {:.0} ms CPU; goal 200 ms {}  [{line}]",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            if wall.as_secs_f64() <= 0.2 {
                "ok"
            } else {
                "OVER GOAL"
            }
        );
    }
    let ci_night = |what: &str, tree: &Path| {
        common::set_aside(&tree.join(".build"), &aside);
        let l = load();
        let (wall, cpu, line) = sweep(&bin, tree, &cache, &targets, &env);
        let per = wall.as_secs_f64() * 1e3 / n;
        println!(
            "CI night {what} (no .build/, warm cache; load {l}): {:.0} ms wall, {per:.0} ms per target, {:.0} ms CPU; goal 100 ms per target {}  [{line}]",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            if per <= 100.0 { "ok" } else { "OVER GOAL" }
        );
    };
    for i in 1..=3 {
        ci_night(&i.to_string(), &tree);
    }
    // Another runner's workspace: the tree in a folder the cache never saw.
    let elsewhere = scratch.path().join("elsewhere");
    common::link_dir(&tree, &elsewhere);
    ci_night("in another folder", &elsewhere);
}

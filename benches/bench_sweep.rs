//! End-to-end sweep benchmark on a synthetic tree (issue #7): N keyboards ×
//! K keymaps of the fixture firmware (`BENCH_N`, default 100; `BENCH_K`,
//! default 1; `BENCH_JOBS`, default all cores). Prints the time, compile
//! counts and peak memory of:
//! - a cold sweep (empty cache);
//! - a no-op sweep (goal ≤ 5 ms per target);
//! - a fresh checkout (no `.build/`) with the warm cache;
//! - one keymap changed (goal: one compile);
//! - one core `.c` changed (goal: one compile per target, nothing else).
//!
//! Each line also gives the sweep's CPU time (user + system, children) and
//! the cache after it (`keyfab cache stats`: blob bytes, provenance rows and
//! the bytes of their distinct bodies in the index), so what a no-op sweep
//! and a fresh checkout add is visible.
//!
//! Run: `cargo build --release -p keyfab-cli && BENCH_N=100 cargo run --release -p keyfab-benches --bin bench-sweep`

mod common;
mod synth;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of the children waited for so far, in MiB.
fn children_maxrss_mib() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

/// The cache's blob bytes, provenance rows and provenance body bytes.
fn cache_stats(bin: &Path, cache: &Path) -> (u64, u64, u64) {
    let out = Command::new(bin)
        .arg("--cache")
        .arg(cache)
        .args(["cache", "stats", "--format", "json"])
        .output()
        .expect("run keyfab cache stats");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let n = |k: &str| v["stats"][k].as_u64().unwrap_or(0);
    (n("bytes"), n("provenance"), n("provenance_body_bytes"))
}

struct Sweep {
    took: Duration,
    cpu: Duration,
    /// The cache after the sweep: blob bytes, provenance rows, bytes of
    /// the provenance bodies the index holds.
    blob_bytes: u64,
    provenance_rows: u64,
    body_bytes: u64,
    targets: u64,
    ok: u64,
    compiled: u64,
    cached: u64,
    plans_made: u64,
    links_ran: u64,
}

fn sweep(bin: &Path, tree: &Path, cache: &Path, report: &Path, jobs: Option<usize>) -> Sweep {
    let mut cmd = Command::new(bin);
    cmd.arg("--tree")
        .arg(tree)
        .arg("--cache")
        .arg(cache)
        .args(["sweep", "-km", "all", "--progress", "none", "--report"])
        .arg(report)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if let Some(j) = jobs {
        cmd.args(["-j", &j.to_string()]);
    }
    let cpu_before = common::children_cpu();
    let start = Instant::now();
    let out = cmd.output().expect("run keyfab");
    let took = start.elapsed();
    let cpu = common::children_cpu().saturating_sub(cpu_before);
    assert!(
        out.status.success(),
        "sweep failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("sweep.json")).unwrap()).unwrap();
    let c = &json["counts"];
    let targets = json["targets"].as_array().unwrap();
    let (blob_bytes, provenance_rows, body_bytes) = cache_stats(bin, cache);
    Sweep {
        took,
        cpu,
        blob_bytes,
        provenance_rows,
        body_bytes,
        targets: c["total"].as_u64().unwrap(),
        ok: c["ok"].as_u64().unwrap(),
        compiled: c["compiled"].as_u64().unwrap(),
        cached: c["cached"].as_u64().unwrap(),
        plans_made: targets
            .iter()
            .filter(|t| t["plan_from_cache"] == false)
            .count() as u64,
        links_ran: targets
            .iter()
            .filter(|t| t["link_from_cache"] == false)
            .count() as u64,
    }
}

fn line(name: &str, s: &Sweep, goal_per_target: Option<Duration>) {
    let per = s.took.as_secs_f64() * 1e3 / s.targets.max(1) as f64;
    let goal = goal_per_target
        .map(|g| {
            let ratio = per / (g.as_secs_f64() * 1e3);
            format!(
                "; goal {:.0} ms/target, ratio {ratio:.2} {}",
                g.as_secs_f64() * 1e3,
                if ratio <= 1.0 { "ok" } else { "OVER GOAL" }
            )
        })
        .unwrap_or_default();
    println!(
        "{name}: {:.2} s (cpu {:.2} s), {per:.1} ms/target; {}/{} ok; {} compiled, {} from cache; {} plans made, {} links ran; peak RSS so far {:.0} MiB; cache: blobs {:.1} MiB, {} provenance rows, bodies {:.1} MiB{goal}",
        s.took.as_secs_f64(),
        s.cpu.as_secs_f64(),
        s.ok,
        s.targets,
        s.compiled,
        s.cached,
        s.plans_made,
        s.links_ran,
        children_maxrss_mib(),
        s.blob_bytes as f64 / (1 << 20) as f64,
        s.provenance_rows,
        s.body_bytes as f64 / (1 << 20) as f64,
    );
}

/// What a sweep added to the cache after `before`.
fn growth(before: &Sweep, after: &Sweep) {
    let per = |a: u64, b: u64| (a as f64 - b as f64) / after.targets.max(1) as f64;
    println!(
        "  added: {:.0} blob bytes/target, {:.0} provenance body bytes/target, {} provenance rows",
        per(after.blob_bytes, before.blob_bytes),
        per(after.body_bytes, before.body_bytes),
        after.provenance_rows as i64 - before.provenance_rows as i64
    );
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

fn main() {
    let bin = common::keyfab_bin();
    let n = env_num("BENCH_N", 100);
    let k = env_num("BENCH_K", 1);
    let jobs = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|j| j.parse().ok());
    let scratch = tempfile::tempdir().unwrap();
    let tree: PathBuf = scratch.path().join("tree");
    let cache = scratch.path().join("cache");
    let report = scratch.path().join("report");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tree");
    let t = Instant::now();
    synth::generate(&src, &tree, n, k);
    println!(
        "synthetic tree: {n} keyboards x {k} keymaps = {} targets, written in {:.1} s; {} cores",
        n * k,
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );

    let cold = sweep(&bin, &tree, &cache, &report, jobs);
    line("cold sweep", &cold, None);
    let noop = sweep(&bin, &tree, &cache, &report, jobs);
    line("no-op sweep", &noop, Some(Duration::from_millis(5)));
    growth(&cold, &noop);
    let noop2 = sweep(&bin, &tree, &cache, &report, jobs);
    line("no-op sweep again", &noop2, Some(Duration::from_millis(5)));
    growth(&noop, &noop2);
    std::fs::remove_dir_all(tree.join(".build")).unwrap();
    let fresh = sweep(&bin, &tree, &cache, &report, jobs);
    line(
        "fresh checkout, warm cache",
        &fresh,
        Some(Duration::from_millis(100)),
    );
    // Everything from the cache, but not up to date: the same bodies as
    // the no-op sweeps' (which steps ran is the rows').
    growth(&noop2, &fresh);

    edit(
        &tree.join("keyboards/synth/kb00000/keymaps/default/keymap.c"),
        |t| t.replace("LAYOUT(KC_A", "LAYOUT(KC_B"),
    );
    let km = sweep(&bin, &tree, &cache, &report, jobs);
    line("one keymap changed", &km, None);
    println!("  expected: 1 compiled; got {}", km.compiled);

    edit(&tree.join("quantum/matrix.c"), |t| {
        t.replace("] ^= MATRIX_SCAN_TOGGLE;", "] ^= 3;")
    });
    let core = sweep(&bin, &tree, &cache, &report, jobs);
    line("one core .c changed", &core, None);
    println!(
        "  expected: {} compiled (matrix.c of each target); got {}",
        core.targets, core.compiled
    );
}

//! Build benchmarks (issue #6), whole-process, on the fixture tree or on the
//! real QMK tree (`KEYFAB_QMK_TREE`, target from `BENCH_TARGET`, default
//! planck/rev5:default):
//! - stale plan: a makefile changed, so make's dry run runs (goal ≤ 300 ms);
//! - cached plan: `keyfab build -n` with nothing changed (goal ≤ 5 ms of
//!   planning, reported by keyfab; whole process shown too);
//! - no-op build and fresh-checkout build (no `.build/`) from a warm cache.
//!
//! Run: `cargo build --release -p keyfab-cli && cargo run --release -p keyfab-benches --bin bench-build`
//! The benchmark appends a comment to `builddefs/build_keyboard.mk` of a
//! scratch copy (fixture tree) — on a real tree it edits `builddefs/support.mk`
//! in place and restores it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn keyfab(bin: &Path, tree: &Path, cache: &Path, args: &[&str]) -> (Duration, String) {
    let start = Instant::now();
    let out = Command::new(bin)
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
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

    let (cold, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
    println!(
        "cold build: {:.0} ms  ({})",
        cold.as_secs_f64() * 1e3,
        out.trim()
    );

    let runs = 7;
    let mut stale = Vec::new();
    for i in 0..runs {
        std::fs::write(&makefile, format!("{original}\n# bench {i}\n")).unwrap();
        let (_, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
        stale.push(plan_ms(out.lines().last().unwrap()));
    }
    std::fs::write(&makefile, &original).unwrap();
    keyfab(&bin, &tree, &cache, &["build", &target]);
    report("stale plan (make's dry run)", median(stale), 300.0);

    let mut cached = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..runs {
        let (took, out) = keyfab(&bin, &tree, &cache, &["build", &target]);
        cached.push(plan_ms(out.lines().last().unwrap()));
        noop.push(took.as_secs_f64() * 1e3);
    }
    report("cached plan", median(cached), 5.0);
    println!("no-op build, whole process: median {:.0} ms", median(noop));

    let mut fresh = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(tree.join(".build"));
        let (took, _) = keyfab(&bin, &tree, &cache, &["build", &target]);
        fresh.push(took.as_secs_f64() * 1e3);
    }
    println!(
        "fresh checkout (no .build/), warm cache, whole process: median {:.0} ms",
        median(fresh)
    );
}

fn report(name: &str, ms: f64, goal: f64) {
    let ratio = ms / goal;
    println!(
        "{name}: median {ms:.1} ms; goal {goal:.0} ms; ratio {ratio:.2} {}",
        if ratio <= 1.0 { "ok" } else { "OVER GOAL" }
    );
}
